//! A real podman (Debian's) on its CNI backend for tests: its own storage, run and
//! configuration directories, its CNI plugins and network configurations from the test,
//! inside the test's network namespace. Containers run from a root filesystem
//! ([`super::docker::rootfs`]), so no image is pulled. Everything goes on drop.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Result;

use super::{unique, Netns};

pub struct Podman {
    dir: PathBuf,
    ns: String,
}

impl Podman {
    /// A podman whose CNI plugins are in `plugins` and whose networks are the
    /// `NAME.conflist` files `networks` gives.
    pub fn new(ns: &Netns, plugins: &[&Path], networks: &[(&str, String)]) -> Result<Podman> {
        let dir = std::env::temp_dir().join(format!("netpath-podman-{}", unique()));
        let net_d = dir.join("net.d");
        std::fs::create_dir_all(&net_d)?;
        for (name, conf) in networks {
            std::fs::write(net_d.join(format!("{name}.conflist")), conf)?;
        }
        let dirs: Vec<String> = plugins
            .iter()
            .map(|p| format!("{:?}", p.display().to_string()))
            .collect();
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{events}\"\n\
                 [network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [{dirs}]\n\
                 network_config_dir = \"{net_d}\"\n",
                events = dir.join("events.log").display(),
                dirs = dirs.join(", "),
                net_d = net_d.display(),
            ),
        )?;
        let p = Podman { dir, ns: ns.path() };
        p.rootfs()?;
        Ok(p)
    }

    /// The root filesystem containers run from.
    pub fn rootfs(&self) -> Result<PathBuf> {
        let root = self.dir.join("rootfs");
        if !root.exists() {
            super::docker::rootfs(&root)?;
        }
        Ok(root)
    }

    /// Runs podman; its stdout, or an error with its stderr.
    pub fn podman(&self, args: &[&str]) -> Result<String> {
        let out = super::engine_cli(
            Command::new("nsenter")
                .arg(format!("--net={}", self.ns))
                .arg("--")
                .arg("podman")
                .args(super::dir_flags(
                    &self.dir,
                    &[
                        ("--root", "root"),
                        ("--runroot", "run"),
                        ("--tmpdir", "tmp"),
                    ],
                ))
                .args(["--storage-driver", "vfs"])
                .args(args)
                .env("CONTAINERS_CONF", self.dir.join("containers.conf")),
            &format!("podman {args:?} (Debian package podman)"),
        )?;
        Ok(out.trim().to_string())
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Cleanup: already gone is as good as removed.
        let _ = self.podman(&["rm", "-af", "-t", "0"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
