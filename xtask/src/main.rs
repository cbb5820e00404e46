//! `cargo xtask setup | run | test | bench`: the project's own bootstrap and entry points.
use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: LLVM 22, rust-src for nightly, bpf-linker, test tools.
    Setup,
    /// Build and run the agent (arguments after `--` go to `netpath agent`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build and run every test: unit, BPF_PROG_TEST_RUN datapath, end to end.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install the agent: binary, systemd unit, example configuration, man pages, completions.
    Install {
        /// Install under this directory instead of / (packaging, tests).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Where the binary and its pages go, below the root.
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
    },
    /// Run benchmark scenarios (default: all).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Setup => setup(),
        Cmd::Run { args } => run(&args),
        Cmd::Test { args } => test(&args),
        Cmd::Bench { args } => bench(&args),
        Cmd::Install { root, prefix } => install(&root, &prefix),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where LLVM 22 lives once Debian's llvm-22-dev is installed.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// Debian packages: LLVM for bpf-linker, and the tools tests and bench drive.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "iproute2",
    "ethtool",
    "iputils-ping",
    "iptables",
    "nftables",
    "docker.io",
    "busybox-static",
    "dnsperf",
    "aardvark-dns",
    "dnsmasq-base",
    "fonts-dejavu-core",
    "bpftool",
    "prometheus",
    "gcc",
    "libc6-dev",
    "podman",
    "containernetworking-plugins",
    "linux-perf",
    // Overlay networks: etcd for the tests, protoc for etcd-client's gRPC code.
    "etcd-server",
    "protobuf-compiler",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn status(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn step(msg: &str) {
    eprintln!("setup: {msg}");
}

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn bpf_linker_ok() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("0.13"))
}

/// Installs what is missing, saying each step; quick when everything is there.
fn setup() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if !missing.is_empty() {
        step(&format!(
            "installing Debian packages: {}",
            missing.join(" ")
        ));
        status(Command::new("apt-get").args(["update", "-qq"]))?;
        status(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    if !succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        step("installing the nightly toolchain");
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
        step("adding rust-src to nightly (eBPF builds core with -Z build-std)");
        status(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    if !bpf_linker_ok() {
        step("building bpf-linker 0.13 against LLVM 22 (about a minute)");
        status(
            Command::new(cargo())
                .args([
                    "install",
                    "bpf-linker",
                    "--version",
                    "^0.13",
                    "--no-default-features",
                    "--features",
                    "llvm-22",
                ])
                .env("LLVM_PREFIX", LLVM_PREFIX),
        )?;
    }
    if !succeeds(Command::new("cargo-nextest").arg("--version"))
        && !succeeds(Command::new(cargo()).args(["nextest", "--version"]))
    {
        step("cargo-nextest not found: tests run with cargo test");
    }
    step("all present");
    Ok(())
}

fn run(args: &[String]) -> Result<()> {
    setup()?;
    status(Command::new(cargo()).current_dir(root()).args([
        "build",
        "--release",
        "-p",
        "netpath-user",
    ]))?;
    let bin = root().join("target/release/netpath");
    eprintln!("xtask: starting {} agent {}", bin.display(), args.join(" "));
    status(Command::new(bin).arg("agent").args(args))
}

fn test(args: &[String]) -> Result<()> {
    setup()?;
    if !nix_is_root() {
        bail!("the datapath and end-to-end tests need root (BPF, namespaces)");
    }
    let upgrade = build_upgrade(false)?;
    status(
        Command::new(cargo())
            .current_dir(root())
            .args([
                "test",
                "--workspace",
                "--exclude",
                "netpath-ebpf",
                "--all-targets",
            ])
            .args(args)
            .env("NETPATH_UPGRADE_BIN", upgrade),
    )?;
    if args.is_empty() {
        unit_tests_unprivileged()?;
    }
    Ok(())
}

/// A second build of the agent whose kernel programs differ (another build tag), in its own
/// target directory: what the upgrade tests and benchmark swap to.
fn build_upgrade(release: bool) -> Result<PathBuf> {
    let dir = root().join("target/upgrade");
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root())
        .args(["build", "--quiet", "-p", "netpath-user", "--bin", "netpath"])
        .arg("--target-dir")
        .arg(&dir)
        .env("NETPATH_EBPF_BUILD_TAG", "1");
    if release {
        cmd.arg("--release");
    }
    status(&mut cmd)?;
    Ok(dir
        .join(if release { "release" } else { "debug" })
        .join("netpath"))
}

/// The unit tests (parser, IPAM, model, planning, rollback with fakes, API, CLI formatting)
/// need no privilege: run them again as `nobody` to keep it so.
fn unit_tests_unprivileged() -> Result<()> {
    let out = Command::new(cargo())
        .current_dir(root())
        .args([
            "test",
            "-p",
            "netpath-common",
            "-p",
            "netpath-user",
            "--lib",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("building the unit tests")?;
    if !out.status.success() {
        bail!("building the unit tests failed");
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact" && msg["profile"]["test"] == true {
            if let Some(exe) = msg["executable"].as_str() {
                binaries.push(exe.to_string());
            }
        }
    }
    if binaries.len() < 2 {
        bail!("expected the unit-test binaries of netpath-common and netpath-user, found {binaries:?}");
    }
    for exe in binaries {
        eprintln!("xtask: {exe} as nobody");
        status(
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(&exe)
                .env("TMPDIR", "/tmp"),
        )?;
    }
    Ok(())
}

fn bench(args: &[String]) -> Result<()> {
    setup()?;
    // The benchmark starts the real agent: build both binaries side by side.
    status(Command::new(cargo()).current_dir(root()).args([
        "build",
        "--release",
        "-p",
        "netpath-user",
        "-p",
        "bench",
    ]))?;
    let upgrade = build_upgrade(true)?;
    status(
        Command::new(root().join("target/release/bench"))
            .current_dir(root())
            .args(args)
            .env("NETPATH_UPGRADE_BIN", upgrade),
    )
}

/// Builds the release binary and installs it with everything an operator needs.
fn install(root_dir: &Path, prefix: &Path) -> Result<()> {
    setup()?;
    status(Command::new(cargo()).current_dir(root()).args([
        "build",
        "--release",
        "-p",
        "netpath-user",
    ]))?;
    let installed = install_into(root_dir, prefix, &root().join("target/release/netpath"))?;
    for line in installed {
        eprintln!("installed {line}");
    }
    eprintln!(
        "next: systemctl daemon-reload && systemctl enable --now netpath \
         (edit /etc/netpath/netpath.toml first: uplinks, xdp, metrics, docker-plugin)"
    );
    Ok(())
}

/// Lays out the installation of `bin` under `root_dir`: what it installed.
fn install_into(root_dir: &Path, prefix: &Path, bin: &Path) -> Result<Vec<String>> {
    let under = |p: &Path| root_dir.join(p.strip_prefix("/").unwrap_or(p));
    let dist = root().join("netpath-user/dist");
    let mut out = Vec::new();
    let bin_dir = under(&prefix.join("bin"));
    std::fs::create_dir_all(&bin_dir)?;
    let exe = bin_dir.join("netpath");
    std::fs::copy(bin, &exe).with_context(|| format!("copying {}", bin.display()))?;
    out.push(exe.display().to_string());

    // The CNI plugin, where CNI runtimes look (Debian's podman: /usr/lib/cni; containerd and
    // Kubernetes: /opt/cni/bin).
    let cni = bin.with_file_name("netpath-cni");
    for dir in ["/usr/lib/cni", "/opt/cni/bin"] {
        let dir = under(Path::new(dir));
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(&cni, dir.join("netpath-cni"))
            .with_context(|| format!("copying {}", cni.display()))?;
        out.push(dir.join("netpath-cni").display().to_string());
    }

    let unit_dir = under(Path::new("/etc/systemd/system"));
    std::fs::create_dir_all(&unit_dir)?;
    let unit = std::fs::read_to_string(dist.join("netpath.service"))?.replace(
        "/usr/local/bin/netpath",
        &prefix.join("bin/netpath").display().to_string(),
    );
    std::fs::write(unit_dir.join("netpath.service"), unit)?;
    out.push(unit_dir.join("netpath.service").display().to_string());

    let conf_dir = under(Path::new("/etc/netpath"));
    std::fs::create_dir_all(&conf_dir)?;
    let conf = if conf_dir.join("netpath.toml").exists() {
        conf_dir.join("netpath.toml.example")
    } else {
        conf_dir.join("netpath.toml")
    };
    std::fs::copy(dist.join("netpath.toml"), &conf)?;
    out.push(conf.display().to_string());

    let man = under(&prefix.join("share/man/man1"));
    status(Command::new(&exe).arg("man").arg("--dir").arg(&man))?;
    out.push(format!("{}/netpath*.1", man.display()));
    for (shell, dir, file) in [
        ("bash", "share/bash-completion/completions", "netpath"),
        ("zsh", "share/zsh/site-functions", "_netpath"),
        ("fish", "share/fish/vendor_completions.d", "netpath.fish"),
    ] {
        let dir = under(&prefix.join(dir));
        std::fs::create_dir_all(&dir)?;
        let text = Command::new(&exe)
            .args(["completion", shell])
            .output()
            .with_context(|| format!("{shell} completions"))?;
        if !text.status.success() {
            bail!("netpath completion {shell} failed");
        }
        std::fs::write(dir.join(file), text.stdout)?;
        out.push(dir.join(file).display().to_string());
    }
    Ok(out)
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_lays_out_an_operators_files() {
        let tmp = std::env::temp_dir().join(format!("netpath-install-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        // A stand-in for the binary: answers `man --dir D` and `completion SHELL`.
        let fake = tmp.join("netpath-fake");
        std::fs::write(
            &fake,
            "#!/bin/sh\nif [ \"$1\" = man ]; then mkdir -p \"$3\" && echo .TH > \"$3/netpath.1\"; \
             else echo \"complete $2\"; fi\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(tmp.join("netpath-cni"), "#!/bin/sh\n").unwrap();
        let root_dir = tmp.join("root");
        install_into(&root_dir, Path::new("/usr/local"), &fake).unwrap();
        let unit =
            std::fs::read_to_string(root_dir.join("etc/systemd/system/netpath.service")).unwrap();
        assert!(unit
            .contains("ExecStart=/usr/local/bin/netpath agent --config /etc/netpath/netpath.toml"));
        assert!(unit.contains("Type=notify"));
        for f in [
            "usr/local/bin/netpath",
            "usr/lib/cni/netpath-cni",
            "opt/cni/bin/netpath-cni",
            "etc/netpath/netpath.toml",
            "usr/local/share/man/man1/netpath.1",
            "usr/local/share/bash-completion/completions/netpath",
            "usr/local/share/zsh/site-functions/_netpath",
        ] {
            assert!(root_dir.join(f).exists(), "{f}");
        }
        // A configuration already there is kept; the example goes beside it.
        std::fs::write(
            root_dir.join("etc/netpath/netpath.toml"),
            "xdp = \"native\"\n",
        )
        .unwrap();
        install_into(&root_dir, Path::new("/usr/local"), &fake).unwrap();
        assert_eq!(
            std::fs::read_to_string(root_dir.join("etc/netpath/netpath.toml")).unwrap(),
            "xdp = \"native\"\n"
        );
        assert!(root_dir.join("etc/netpath/netpath.toml.example").exists());
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
