//! Hosts files for endpoints in namespaces made with `ip netns add`: `ip netns exec NAME`
//! shows `/etc/netns/NAME/hosts` as `/etc/hosts`, so the agent writes one there naming the
//! endpoint (with its aliases) and `host.docker.internal`. Other namespaces get none.
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::model::{Endpoint, State};

/// Where the per-namespace files live (`/etc/netns`; tests point it elsewhere).
#[derive(Clone, Debug)]
pub struct HostsFiles {
    root: PathBuf,
}

impl Default for HostsFiles {
    fn default() -> Self {
        HostsFiles {
            root: PathBuf::from("/etc/netns"),
        }
    }
}

impl HostsFiles {
    pub fn new(root: impl Into<PathBuf>) -> HostsFiles {
        HostsFiles { root: root.into() }
    }

    /// `ROOT/NAME/hosts` for an endpoint in /run/netns/NAME.
    pub fn path_of(&self, ep: &Endpoint) -> Option<PathBuf> {
        let name = ep.netns.strip_prefix("/run/netns").ok()?.to_str()?;
        if name.is_empty() || name.contains('/') || name == ".." || name == "." {
            return None;
        }
        Some(self.root.join(name).join("hosts"))
    }

    /// What the file says for `ep` in `state`.
    pub fn contents(ep: &Endpoint, state: &State) -> String {
        let mut text = format!(
            "# Written by netpath for endpoint {}.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
            ep.name
        );
        for a in &ep.attachments {
            text += &format!("{}\t{}", a.ip, ep.name);
            for alias in &a.aliases {
                text += &format!(" {alias}");
            }
            text += "\n";
        }
        if let Some(net) = ep.primary().and_then(|a| state.networks.get(&a.network)) {
            text += &format!("{}\thost.docker.internal\n", net.host_gateway());
        }
        text
    }

    /// Writes the endpoint's file (atomically); failures are logged, not fatal.
    pub fn write(&self, ep: &Endpoint, state: &State) {
        let Some(path) = self.path_of(ep) else { return };
        if let Err(e) = write_atomic(&path, &Self::contents(ep, state)) {
            warn!(endpoint = %ep.name, "writing {}: {e}", path.display());
        }
    }

    /// Removes the endpoint's file, and its directory when that is left empty.
    pub fn remove(&self, ep: &Endpoint) {
        if let Some(path) = self.path_of(ep) {
            let _ = std::fs::remove_file(&path);
            if let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("netpath.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
