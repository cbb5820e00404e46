//! `netpath uninstall`: takes down everything an agent made and gives back what it changed.
//! Programs are detached and unpinned, maps unpinned, endpoint veths (with their routes and
//! the interfaces in the containers) and the gateway bridge deleted, the agent's part of
//! hosts files removed, sysctls and reserved ports restored from the host record, mounts it
//! made undone, and the state directory removed. Each removal is reported. It refuses while
//! an agent holds the state directory.
use std::{
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use super::{
    host::{is_bpffs, HostRecord, PinLock, StateLock},
    netns_files::NetnsFiles,
    reserved::{self, RESERVED_PORTS},
    store::StateFile,
    GATEWAY_LINK, VXLAN_LINK,
};
use crate::{
    datapath::{kept, links::pinned_names, sys},
    netlink,
};

/// Where the agent being removed kept its things.
#[derive(Clone, Debug)]
pub struct Uninstall {
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    pub socket: PathBuf,
    pub hosts: NetnsFiles,
}

/// What an uninstall did, one line each.
#[derive(Debug, Default)]
pub struct Removed(pub Vec<String>);

impl Removed {
    fn say(&mut self, line: String) {
        self.0.push(line);
    }
}

impl Uninstall {
    pub fn run(&self) -> anyhow::Result<Removed> {
        let lock = if self.state_dir.exists() {
            Some(
                StateLock::take(&self.state_dir)
                    .context("stop the agent first (for systemd: systemctl stop netpath)")?,
            )
        } else {
            None
        };
        // Nor while another agent uses the pin directory (it may have another state directory).
        let _pins = if self.bpffs.is_dir() {
            Some(PinLock::take(&self.bpffs)?)
        } else {
            None
        };
        let mut out = Removed::default();
        let state = StateFile::in_dir(&self.state_dir)
            .load()
            .unwrap_or_default();
        let record = HostRecord::load(&self.state_dir)?;

        // Programs first: traffic stops being translated before anything else goes.
        let links = self.bpffs.join("links");
        for name in pinned_names(&links) {
            let path = links.join(&name);
            let id = sys::obj_get(&path).ok().and_then(|fd| {
                let info = sys::link_info(fd.as_fd()).ok();
                // Unpinning below removes the link anyway once nothing holds it.
                let _ = sys::link_detach(fd.as_fd());
                info.map(|i| i.id)
            });
            remove_file(&path)?;
            out.say(match id {
                Some(id) => format!("detached {name} (link {id})"),
                None => format!("removed pin {name}"),
            });
        }
        // Goes only when empty; pins netpath did not make keep it, as they should.
        let _ = std::fs::remove_dir(&links);
        // The programs kept for the next start (see `datapath::kept`).
        let kept = self.bpffs.join(kept::DIR);
        for build in pinned_names(&kept) {
            kept::remove_dir(&kept.join(&build));
            out.say(format!("unpinned the programs of build {build}"));
        }
        let _ = std::fs::remove_dir(&kept);
        let mut maps = 0;
        for name in pinned_names(&self.bpffs) {
            let path = self.bpffs.join(&name);
            // The kernel's own (bpf_preload's iterators at the root of a bpffs mount) stay.
            if path.is_dir() || PRELOADED.contains(&name.as_str()) {
                continue;
            }
            remove_file(&path)?;
            maps += 1;
        }
        if maps > 0 {
            out.say(format!(
                "unpinned {maps} maps from {}",
                self.bpffs.display()
            ));
        }
        if std::fs::remove_dir(&self.bpffs).is_ok() {
            out.say(format!("removed {}", self.bpffs.display()));
        }

        // Interfaces: every endpoint veth (its peer in the container and its route go with
        // it), known to the state or not, then the gateway bridge.
        let mut veths: Vec<String> = state
            .endpoints
            .values()
            .flat_map(|e| e.attachments.iter().map(|a| a.host_ifname.clone()))
            .collect();
        veths.extend(netlink::endpoint_links().unwrap_or_default().into_keys());
        veths.sort();
        veths.dedup();
        for v in veths {
            if netlink::link_info(&v)?.is_some() {
                netlink::delete_link(None, &v)?;
                out.say(format!("deleted veth {v}"));
            }
        }
        if netlink::link_info(GATEWAY_LINK)?.is_some() {
            netlink::delete_link(None, GATEWAY_LINK)?;
            out.say(format!(
                "deleted bridge {GATEWAY_LINK} and its gateway addresses"
            ));
        }
        if netlink::link_info(VXLAN_LINK)?.is_some() {
            netlink::delete_link(None, VXLAN_LINK)?;
            out.say(format!("deleted VXLAN device {VXLAN_LINK}"));
        }
        for ep in state.endpoints.values() {
            for path in self.hosts.remove(ep) {
                out.say(format!("removed netpath's entries from {}", path.display()));
            }
        }

        // What the agent changed on the host, given back.
        for (path, before) in &record.sysctls {
            std::fs::write(path, before).with_context(|| format!("restoring {path}"))?;
            out.say(format!("restored {} = {before}", sysctl_name(path)));
        }
        if let Some(released) = reserved::release(Path::new(RESERVED_PORTS), &record)? {
            out.say(format!("released reserved ports {released}"));
        }
        for m in record.mounts.iter().rev() {
            // A bpffs that still holds pins (another agent's, under another directory) stays.
            let others: Vec<String> = if is_bpffs(m) {
                pinned_names(m)
                    .into_iter()
                    .filter(|n| !n.ends_with(".debug"))
                    .collect()
            } else {
                Vec::new()
            };
            if !others.is_empty() {
                out.say(format!(
                    "left {} mounted: it still holds {}",
                    m.display(),
                    others.join(", ")
                ));
            } else if nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH).is_ok() {
                out.say(format!("unmounted {}", m.display()));
            }
        }
        for socket in std::iter::once(&self.socket).chain(&record.sockets) {
            let is_socket = std::fs::symlink_metadata(socket)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
            // A socket something still answers on is another agent's: left alone.
            if is_socket && std::os::unix::net::UnixStream::connect(socket).is_ok() {
                out.say(format!(
                    "left {}: another agent answers there",
                    socket.display()
                ));
            } else if is_socket {
                remove_file(socket)?;
                out.say(format!("removed {}", socket.display()));
            }
        }
        // Directories it made, innermost first, while nothing else is in them.
        for d in record.dirs.iter().rev() {
            if std::fs::remove_dir(d).is_ok() {
                out.say(format!("removed {}", d.display()));
            }
        }
        for f in [
            "state.json",
            "host.json",
            crate::docker::ipam::POOLS_FILE,
            crate::docker::ipam::POOLS6_FILE,
        ] {
            let p = self.state_dir.join(f);
            if p.exists() {
                remove_file(&p)?;
            }
        }
        if lock.is_some() {
            drop(lock);
            // The lock file alone: absent is what was wanted.
            let _ = std::fs::remove_file(self.state_dir.join("lock"));
            if std::fs::remove_dir(&self.state_dir).is_ok() {
                out.say(format!("removed {}", self.state_dir.display()));
            }
        }
        Ok(out)
    }
}

/// What the kernel puts at the root of each bpffs it mounts when bpf_preload is built in:
/// not netpath's, and not removable.
const PRELOADED: [&str; 2] = ["maps.debug", "progs.debug"];

fn remove_file(p: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", p.display())),
    }
}

/// `net.ipv4.ip_forward` for `/proc/sys/net/ipv4/ip_forward`.
fn sysctl_name(path: &str) -> String {
    path.strip_prefix("/proc/sys/")
        .unwrap_or(path)
        .replace('/', ".")
}

#[cfg(test)]
mod tests {
    #[test]
    fn sysctl_names() {
        assert_eq!(
            super::sysctl_name(super::super::host::IP_FORWARD),
            "net.ipv4.ip_forward"
        );
    }
}
