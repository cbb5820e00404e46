//! `cargo xtask fresh`: the README's two commands, from a clean clone, on a machine that has
//! only what this project's machines start with — Debian 12, root, the Rust toolchain (stable
//! and nightly without rust-src, through rustup), git and a C linker — made on the spot with
//! mmdebstrap. A piece `cargo xtask setup` forgets fails here, whatever the developer's
//! machine happens to have.
//!
//! `--quick` (what CI runs) proves the build: setup, every target built, the unit tests, and
//! `cargo xtask run` reaching ready in a throwaway namespace. Without it, `cargo xtask test`
//! runs in full inside the root as well.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

use crate::{debroot, root, status};

/// What a machine of this project's kind has before anything of the project runs.
const BASE: &[&str] = &["ca-certificates", "git", "gcc", "libc6-dev"];

/// The rustup proxies a machine's toolchain comes with (all links to rustup itself).
const RUSTUP_BINS: &[&str] = &[
    "rustup",
    "cargo",
    "rustc",
    "rustdoc",
    "rustfmt",
    "cargo-fmt",
    "cargo-clippy",
    "clippy-driver",
    "rust-gdb",
    "rust-lldb",
];

/// The README's `cargo xtask run`, as a new user would try it, but on a throwaway namespace's
/// default route: the agent comes up, answers status, and is stopped.
const RUN_SMOKE: &str = r#"
ip netns add fresh-run
ip netns add fresh-gw
ip link add fr0 netns fresh-run type veth peer name fr1 netns fresh-gw
ip -n fresh-run addr add 192.0.2.2/24 dev fr0; ip -n fresh-run link set fr0 up
ip -n fresh-run link set lo up; ip -n fresh-run route add default via 192.0.2.1
ip -n fresh-gw addr add 192.0.2.1/24 dev fr1; ip -n fresh-gw link set fr1 up
ip netns exec fresh-run cargo xtask run > /tmp/run.log 2>&1 & RUN=$!
for i in $(seq 600); do
    [ -S /run/netpath/netpath.sock ] && break
    kill -0 $RUN 2>/dev/null || { cat /tmp/run.log; echo "cargo xtask run exited"; exit 1; }
    sleep 0.5
done
[ -S /run/netpath/netpath.sock ] || { cat /tmp/run.log; echo "no agent socket after 300 s"; exit 1; }
ip netns exec fresh-run target/release/netpath status
AGENT=$(pgrep -x netpath)  # by name: the script's own text holds the path
kill $AGENT; wait $RUN || true
ip netns exec fresh-run target/release/netpath uninstall
ip netns del fresh-run; ip netns del fresh-gw
echo "fresh: cargo xtask run: agent ready, status answered, stopped"
"#;

pub fn fresh(quick: bool, keep: bool) -> Result<()> {
    crate::setup::setup()?;
    let work = root().join("target/fresh");
    let dir = work.join("root");
    debroot::remove(&dir)?;
    let t0 = Instant::now();
    let tar = work.join("bookworm.tar");
    eprintln!("fresh: making a Debian 12 root ({})", BASE.join(", "));
    debroot::make(&tar, BASE)?;
    debroot::unpack(&tar, &dir)?;
    std::fs::remove_file(&tar)?;
    let made = t0.elapsed();
    copy_toolchain(&dir)?;
    copy_trust(&dir)?;
    eprintln!("fresh: cloning HEAD of {}", root().display());
    status(
        Command::new("git")
            .args(["clone", "--quiet", "--no-hardlinks"])
            .arg(root())
            .arg(dir.join("build/netpath")),
    )?;
    let tests = if quick {
        "cargo xtask setup\n\
         cargo build --release\n\
         cargo test --workspace --exclude netpath-ebpf --all-targets --no-run\n\
         cargo test -p netpath-common -p netpath-user -p xtask --lib\n"
    } else {
        "cargo xtask test\n"
    };
    let script = format!(
        "set -euo pipefail\n\
         export PATH=/root/.cargo/bin:$PATH CI=true CARGO_INCREMENTAL=0\n\
         update-ca-certificates >/dev/null\n\
         cd /build/netpath\n\
         # A machine of this kind has nightly without rust-src: setup must add it.\n\
         rustup component remove --toolchain nightly rust-src 2>/dev/null || true\n\
         {tests}{RUN_SMOKE}"
    );
    eprintln!(
        "fresh: running {} inside {}",
        if quick {
            "setup, the build, the unit tests and `cargo xtask run`"
        } else {
            "`cargo xtask test` and `cargo xtask run`"
        },
        dir.display()
    );
    let t1 = Instant::now();
    let st = debroot::in_root(&dir, &script)
        .status()
        .context("running the fresh root")?;
    let ran = t1.elapsed();
    eprintln!(
        "fresh: root made in {:.0} s, build and tests {:.0} s, in all {:.0} s: {}",
        made.as_secs_f64(),
        ran.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        if st.success() { "passed" } else { "FAILED" }
    );
    if !keep {
        debroot::remove(&dir)?;
    }
    if !st.success() {
        bail!("a clean clone does not build and test on a fresh machine ({st})");
    }
    Ok(())
}

/// The machine's own certificate authorities (a new machine of this kind has them: the
/// registries are reached through them).
fn copy_trust(dir: &Path) -> Result<()> {
    let local = Path::new("/usr/local/share/ca-certificates");
    let dst = dir.join(local.strip_prefix("/")?);
    std::fs::create_dir_all(&dst)?;
    if let Ok(entries) = std::fs::read_dir(local) {
        for e in entries {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "crt") {
                std::fs::copy(&p, dst.join(p.file_name().context("a file name")?))?;
            }
        }
    }
    Ok(())
}

fn rustup_home() -> PathBuf {
    std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.rustup"))
}

fn cargo_bin() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// The machine's Rust toolchain as a new machine has it: rustup with stable and nightly, its
/// proxies, cargo-nextest; none of what setup adds (rust-src is removed inside, bpf-linker
/// and the registry are not copied).
fn copy_toolchain(dir: &Path) -> Result<()> {
    let home = rustup_home();
    let dst = dir.join("root/.rustup");
    std::fs::create_dir_all(dst.join("toolchains"))?;
    std::fs::copy(home.join("settings.toml"), dst.join("settings.toml"))?;
    let mut copied = 0;
    for entry in std::fs::read_dir(home.join("toolchains"))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("stable-") || name.starts_with("nightly-") {
            status(
                Command::new("cp")
                    .arg("-a")
                    .arg(&path)
                    .arg(dst.join("toolchains")),
            )?;
            copied += 1;
        }
    }
    if copied < 2 {
        bail!(
            "rustup has no stable and nightly toolchains in {}",
            home.display()
        );
    }
    let bin = dir.join("root/.cargo/bin");
    std::fs::create_dir_all(&bin)?;
    for name in RUSTUP_BINS {
        let src = cargo_bin().join(name);
        if src.exists() {
            std::fs::copy(&src, bin.join(name))?;
        }
    }
    if let Ok(nextest) = which_in_path("cargo-nextest") {
        std::fs::copy(nextest, dir.join("usr/local/bin/cargo-nextest"))?;
    }
    Ok(())
}

fn which_in_path(name: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not on PATH"))
}
