//! Builds the eBPF objects (netpath-ebpf: the product's and the benchmark's) with the nightly
//! toolchain and bpf-linker; the binary embeds the product's with
//! `aya::include_bytes_aligned!`. Also records what `netpath version` reports: the version
//! (`NETPATH_VERSION`, set by packaging; default the crate's), the git commit, and the SHA-256
//! of the embedded object.
use std::{path::PathBuf, process::Command};

use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};
use sha2::Digest as _;

fn git_commit(dir: &std::path::Path) -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .current_dir(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) if !c.is_empty() => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c}-dirty")
            } else {
                c
            }
        }
        _ => "unknown".to_string(),
    }
}

fn main() -> anyhow::Result<()> {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?);
    let repo = manifest_dir.join("..");
    println!(
        "cargo:rustc-env=NETPATH_GIT_COMMIT={}",
        std::env::var("NETPATH_GIT_COMMIT").unwrap_or_else(|_| git_commit(&repo))
    );
    for f in [".git/HEAD", ".git/index"] {
        if repo.join(f).exists() {
            println!("cargo:rerun-if-changed={}", repo.join(f).display());
        }
    }
    println!("cargo:rerun-if-env-changed=NETPATH_GIT_COMMIT");
    println!(
        "cargo:rustc-env=NETPATH_VERSION={}",
        std::env::var("NETPATH_VERSION")
            .unwrap_or_else(|_| std::env::var("CARGO_PKG_VERSION").unwrap_or_default())
    );
    println!("cargo:rerun-if-env-changed=NETPATH_VERSION");
    // The kernel programs' build tag (see netpath-ebpf's main.rs): a new one rebuilds them.
    println!("cargo:rerun-if-env-changed=NETPATH_EBPF_BUILD_TAG");
    let root = manifest_dir.join("../netpath-ebpf");
    let root = root
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", root.display()))?;
    aya_build::build_ebpf(
        [Package {
            name: "netpath-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        Toolchain::default(),
    )?;
    let out = PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR")?);
    let object = std::fs::read(out.join("netpath")).context("the built eBPF object")?;
    let digest = sha2::Sha256::digest(&object);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=NETPATH_EBPF_SHA256={hex}");
    Ok(())
}
