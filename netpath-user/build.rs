//! Builds the eBPF object (netpath-ebpf) with the nightly toolchain and bpf-linker; the
//! binary embeds it with `aya::include_bytes_aligned!`. Also records the git commit the
//! binary is built from (`netpath version`).
use std::{path::PathBuf, process::Command};

use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

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
    )
}
