//! Minimal Debian roots made on the spot with mmdebstrap, from the archives this machine's apt
//! uses: a fresh machine for `cargo xtask fresh`, a host with no Rust, no LLVM and no source
//! tree for the package tests. Commands run inside one through [`in_root`]: a private mount
//! namespace with /proc, /sys, /dev and a /run of its own, chrooted; when the command ends the
//! mounts go with the namespace.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::status;

/// Debian 12.
pub const SUITE: &str = "bookworm";

/// The apt sources this machine uses (enabled `.sources` and `.list` files).
fn host_sources() -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let main = Path::new("/etc/apt/sources.list");
    if std::fs::read_to_string(main).is_ok_and(|s| s.lines().any(|l| l.starts_with("deb"))) {
        out.push(main.to_path_buf());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .context("/etc/apt/sources.list.d")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sources" || e == "list"))
        .collect();
    entries.sort();
    out.extend(entries);
    if out.is_empty() {
        bail!("this machine's apt has no sources: nothing to make a Debian root from");
    }
    Ok(out)
}

/// Makes a minbase Debian root with `include` (comma-joined packages) as the tarball `tar`.
pub fn make(tar: &Path, include: &[&str]) -> Result<()> {
    if let Some(dir) = tar.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log = tar.with_extension("log");
    let file = std::fs::File::create(&log)?;
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--variant=minbase", "--mode=root", "--format=tar"]);
    if !include.is_empty() {
        cmd.arg(format!("--include={}", include.join(",")));
    }
    cmd.arg(SUITE)
        .arg(tar)
        .args(host_sources()?)
        .stdout(file.try_clone()?)
        .stderr(file);
    let st = cmd
        .status()
        .context("running mmdebstrap (cargo xtask setup installs it)")?;
    if !st.success() {
        bail!("mmdebstrap failed ({st}): see {}", log.display());
    }
    Ok(())
}

/// Unpacks `tar` into a new directory `dir` (anything there before is removed first).
pub fn unpack(tar: &Path, dir: &Path) -> Result<()> {
    remove(dir)?;
    std::fs::create_dir_all(dir)?;
    status(
        Command::new("tar")
            .args(["-x", "--numeric-owner", "-f"])
            .arg(tar)
            .arg("-C")
            .arg(dir),
    )
}

/// Removes a root, unmounting anything still mounted below it first.
pub fn remove(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = dir.canonicalize()?;
    let mut below: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| Path::new(m).starts_with(&prefix))
        .collect();
    below.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in below {
        status(Command::new("umount").args(["-l", m]))?;
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

/// A command that runs `script` (bash) as root inside `dir`, in a mount namespace of its own
/// with the kernel's file systems mounted as on a machine: /proc, /sys (with cgroup2 below),
/// /dev, and an empty /run. The root is made the mount namespace's own root (pivot_root, not a
/// chroot), as `/` is on a machine: `ip netns exec` remounts it, and a process that enters a
/// mount namespace made inside (nsenter --mount, as the tests do for dockerd) lands in it.
pub fn in_root(dir: &Path, script: &str) -> Command {
    let d = dir.display();
    let mounts = format!(
        "set -e\n\
         mount --bind {d} {d}\n\
         mount -t proc proc {d}/proc\n\
         mount --rbind /sys {d}/sys\n\
         mount --rbind /dev {d}/dev\n\
         mount -t tmpfs -o mode=755 tmpfs {d}/run\n\
         cp /etc/resolv.conf {d}/etc/resolv.conf\n\
         cd {d}\n\
         mkdir -p .oldroot\n\
         pivot_root . .oldroot\n\
         umount -l /.oldroot\n\
         rmdir /.oldroot\n\
         exec /bin/bash -c \"$0\""
    );
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--fork",
        "--",
        "/bin/sh",
        "-c",
    ])
    .arg(mounts)
    .arg(script)
    .env_clear()
    .env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    )
    .env("HOME", "/root")
    .env("LANG", "C.UTF-8");
    cmd
}
