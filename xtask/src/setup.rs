//! `cargo xtask setup`: installs what building, testing and benchmarking need, saying what each
//! piece is for, and stops with one line when a piece cannot be had. Quick when all is there.
//!
//! Everything the build needs is named here, never assumed from the machine: `cargo xtask
//! fresh` proves it by running setup and the tests in a Debian root that has only the Rust
//! toolchain, git and a C linker.
use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::{cargo, root, status, succeeds};

/// Where LLVM 22 lives once Debian's llvm-22-dev is installed.
pub const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// A Debian package setup installs, and what it is for.
pub struct Need {
    pub package: &'static str,
    pub why: &'static str,
}

const fn need(package: &'static str, why: &'static str) -> Need {
    Need { package, why }
}

/// Debian packages: first what the build needs, then the tools tests and the bench drive.
pub const DEBIAN: &[Need] = &[
    need(
        "gcc",
        "build: the linker of every Rust binary, C parts of crates",
    ),
    need("libc6-dev", "build: C library headers and startup files"),
    need("git", "build: the commit `netpath version` reports"),
    need(
        "llvm-22-dev",
        "build: bpf-linker links the kernel programs with LLVM 22",
    ),
    need("zlib1g-dev", "build: bpf-linker"),
    need("libzstd-dev", "build: bpf-linker"),
    need(
        "protobuf-compiler",
        "build: etcd-client's gRPC code (protoc)",
    ),
    need(
        "libprotobuf-dev",
        "build: google/protobuf/*.proto, which etcd's protos import",
    ),
    need("dpkg-dev", "package: dpkg-shlibdeps for the .deb's Depends"),
    need(
        "mmdebstrap",
        "package and fresh: a clean Debian root to install into",
    ),
    need("iproute2", "tests: namespaces, veths"),
    need("ethtool", "tests: offloads"),
    need("iputils-ping", "tests: ICMP"),
    need("curl", "tests: HTTP clients"),
    need("python3", "README walkthroughs: the example HTTP server"),
    need("iptables", "bench: the iptables baseline"),
    need("nftables", "tests: no rule is ever installed"),
    need(
        "docker.io",
        "tests and bench: Docker's plugin, the docker-proxy baseline",
    ),
    need("busybox-static", "tests: the offline container image"),
    need("dnsperf", "bench: DNS"),
    need("aardvark-dns", "bench: the DNS baseline"),
    need("dnsmasq-base", "bench: the DNS baseline"),
    need("fonts-dejavu-core", "bench: the report's charts"),
    need("bpftool", "tests: what is attached and loaded"),
    need("prometheus", "tests: promtool checks the metrics"),
    need("podman", "tests: the CNI plugin under podman"),
    need("containerd", "tests: the CNI plugin under ctr run --cni"),
    need("containernetworking-plugins", "tests: CNI"),
    need("linux-perf", "bench: where the CPU goes"),
    need("etcd-server", "tests: overlay networks across nodes"),
    need("systemd", "tests: systemd-analyze verifies the unit"),
    need(
        "man-db",
        "tests: systemd-analyze checks the unit's man: pages with man",
    ),
    need("procps", "tests: sysctl, ps"),
    need("kmod", "tests: kernel modules"),
    need("xz-utils", "package: compressed packages"),
];

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// The version apt would install, if any archive it knows has the package.
fn candidate(pkg: &str) -> Option<String> {
    let out = Command::new("apt-cache")
        .args(["policy", pkg])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Candidate:")
                .map(|c| c.trim().to_string())
        })
        .filter(|c| c != "(none)")
}

fn bpf_linker_ok() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("0.13"))
}

fn step(msg: &str) {
    eprintln!("setup: {msg}");
}

/// Runs apt-get quietly into `log`; on failure, one line naming the log.
fn apt(args: &[&str], log: &Path, what: &str) -> Result<()> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let st = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .context("running apt-get (is this Debian?)")?;
    if !st.success() {
        let tail = std::fs::read_to_string(log).unwrap_or_default();
        let last = tail
            .lines()
            .rev()
            .find(|l| l.starts_with("E:"))
            .unwrap_or("no error line");
        bail!(
            "{what} failed ({st}): {last} (full output: {})",
            log.display()
        );
    }
    Ok(())
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&Need> = DEBIAN
        .iter()
        .filter(|n| !dpkg_installed(n.package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let logs = root().join("target/xtask");
    std::fs::create_dir_all(&logs)?;
    // Package lists may be missing (a new machine) or old: update once when anything is to do.
    apt(&["update"], &logs.join("apt-update.log"), "apt-get update")?;
    for n in &missing {
        if candidate(n.package).is_none() {
            bail!(
                "Debian package {} ({}) cannot be installed: no archive in /etc/apt/sources.list(.d) has it",
                n.package,
                n.why
            );
        }
    }
    step("installing from Debian:");
    for n in &missing {
        eprintln!("  {:<30} {}", n.package, n.why);
    }
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(missing.iter().map(|n| n.package));
    apt(&args, &logs.join("apt-install.log"), "apt-get install")
}

/// Installs what is missing, saying each step.
pub fn setup() -> Result<()> {
    debian_packages()?;
    if !succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        step("installing the nightly toolchain (the kernel programs need it)");
        status(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let src = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("rustup component list")?;
    if !String::from_utf8_lossy(&src.stdout).contains("rust-src") {
        step("adding rust-src to nightly (the kernel programs build core with -Z build-std)");
        status(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    if !bpf_linker_ok() {
        step("building bpf-linker 0.13 against LLVM 22 (the kernel programs' linker; about a minute)");
        status(
            Command::new(cargo())
                .args([
                    "install",
                    "--quiet",
                    "bpf-linker",
                    "--version",
                    "^0.13",
                    "--no-default-features",
                    "--features",
                    "llvm-22",
                ])
                .env("LLVM_PREFIX", LLVM_PREFIX),
        )
        .context("bpf-linker could not be built")?;
    }
    step("all present");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_package_says_what_it_is_for_and_appears_once() {
        let mut seen = std::collections::BTreeSet::new();
        for n in DEBIAN {
            assert!(!n.why.is_empty(), "{}", n.package);
            assert!(seen.insert(n.package), "{} listed twice", n.package);
        }
        // What etcd-client's build needs beside protoc: the missing piece of issue 21.
        assert!(seen.contains("libprotobuf-dev"));
    }
}
