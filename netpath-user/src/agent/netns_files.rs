//! Files for endpoints in namespaces made with `ip netns add`: `ip netns exec NAME` shows
//! `/etc/netns/NAME/hosts` as `/etc/hosts` and `/etc/netns/NAME/resolv.conf` as
//! `/etc/resolv.conf`. The agent keeps a block in the hosts file naming the endpoint (with its
//! aliases) and `host.docker.internal`, and writes the resolv.conf that points the endpoint at
//! its network's DNS server. What it did not write stays: its block is added to a hosts file
//! that exists and taken out again on removal, a file it created is deleted once nothing else
//! is in it, and a resolv.conf someone else wrote is left alone. Other namespaces get none.
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use tracing::warn;

use crate::model::{Endpoint, State};

/// Where the per-namespace files live (`/etc/netns`; tests point it elsewhere).
#[derive(Clone, Debug)]
pub struct NetnsFiles {
    root: PathBuf,
}

impl NetnsFiles {
    /// The directory the files go under.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Default for NetnsFiles {
    fn default() -> Self {
        NetnsFiles {
            root: PathBuf::from("/etc/netns"),
        }
    }
}

/// The first line of a file the agent created.
const CREATED: &str = "# Created by netpath; netpath removes it with its endpoint.";
/// The first line of a resolv.conf the agent wrote.
const RESOLV_MARK: &str = "# Written by netpath for this endpoint; netpath removes it with it.";

/// What a created file holds besides the agent's block.
const BASE: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

fn begin(ep: &str) -> String {
    format!("# BEGIN netpath endpoint {ep}")
}

fn end(ep: &str) -> String {
    format!("# END netpath endpoint {ep}")
}

/// `text` without the block of endpoint `ep`.
fn without_block(text: &str, ep: &str) -> String {
    let (b, e) = (begin(ep), end(ep));
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line == b {
            inside = true;
        } else if line == e {
            inside = false;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

impl NetnsFiles {
    pub fn new(root: impl Into<PathBuf>) -> NetnsFiles {
        NetnsFiles { root: root.into() }
    }

    /// `ROOT/NAME/` for an endpoint in /run/netns/NAME.
    fn dir_of(&self, ep: &Endpoint) -> Option<PathBuf> {
        // A container engine writes its containers' files itself.
        if ep.engine.is_some() {
            return None;
        }
        let name = ep.netns.strip_prefix("/run/netns").ok()?.to_str()?;
        if name.is_empty() || name.contains('/') || name == ".." || name == "." {
            return None;
        }
        Some(self.root.join(name))
    }

    /// `ROOT/NAME/hosts` for an endpoint in /run/netns/NAME.
    pub fn path_of(&self, ep: &Endpoint) -> Option<PathBuf> {
        self.dir_of(ep).map(|d| d.join("hosts"))
    }

    /// `ROOT/NAME/resolv.conf` for an endpoint in /run/netns/NAME.
    pub fn resolv_path_of(&self, ep: &Endpoint) -> Option<PathBuf> {
        self.dir_of(ep).map(|d| d.join("resolv.conf"))
    }

    /// Writes the endpoint's resolv.conf (`conf`), unless one the agent did not write is there.
    fn write_resolv(&self, ep: &Endpoint, conf: &str) {
        let Some(path) = self.resolv_path_of(ep) else {
            return;
        };
        let text = format!("{RESOLV_MARK}\n{conf}");
        match std::fs::read_to_string(&path) {
            Ok(old) if !old.starts_with(RESOLV_MARK) => {
                warn!(endpoint = %ep.name, "{} was not written by netpath: left as it is", path.display());
                return;
            }
            // Already so (an agent's start rewrites nothing it finds right).
            Ok(old) if old == text => return,
            _ => {}
        }
        if let Err(e) = write_atomic(&path, &text) {
            warn!(endpoint = %ep.name, "writing {}: {e}", path.display());
        }
    }

    /// Removes the endpoint's resolv.conf if the agent wrote it; the file when it did.
    fn remove_resolv(&self, ep: &Endpoint) -> Option<PathBuf> {
        let path = self.resolv_path_of(ep)?;
        let old = std::fs::read_to_string(&path).ok()?;
        if !old.starts_with(RESOLV_MARK) {
            return None;
        }
        if let Err(e) = std::fs::remove_file(&path) {
            warn!(endpoint = %ep.name, "removing {}: {e}", path.display());
        }
        Some(path)
    }

    /// The agent's block for `ep` in `state`.
    pub fn block(ep: &Endpoint, state: &State) -> String {
        let mut text = begin(&ep.name) + "\n";
        // IPv4's address, or IPv6's on a network of IPv6 alone.
        for (a, ip) in ep
            .attachments
            .iter()
            .filter_map(|a| Some((a, a.ips().next()?)))
        {
            text += &format!("{ip}\t{}", ep.name);
            for alias in &a.aliases {
                text += &format!(" {alias}");
            }
            text += "\n";
        }
        let net = ep.primary().and_then(|a| state.networks.get(&a.network));
        let host = net.and_then(|n| {
            n.host_gateway()
                .map(IpAddr::V4)
                .or(n.gateways().first().copied())
        });
        if let Some(host) = host {
            text += &format!("{host}\thost.docker.internal\n");
        }
        text + &end(&ep.name) + "\n"
    }

    /// Writes (or rewrites) the endpoint's block in its hosts file, keeping everything else
    /// in the file, and its resolv.conf (`resolv`, when there is one to write). Failures are
    /// logged, not fatal.
    pub fn write(&self, ep: &Endpoint, state: &State, resolv: Option<&str>) {
        if let Some(conf) = resolv {
            self.write_resolv(ep, conf);
        }
        let Some(path) = self.path_of(ep) else { return };
        let res = match std::fs::read_to_string(&path) {
            Ok(old) => Ok((without_block(&old, &ep.name), Some(old))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok((format!("{CREATED}\n{BASE}"), None))
            }
            Err(e) => Err(e),
        }
        .and_then(|(rest, old)| {
            let text = rest + &Self::block(ep, state);
            match old {
                Some(old) if old == text => Ok(()),
                _ => write_atomic(&path, &text),
            }
        });
        if let Err(e) = res {
            warn!(endpoint = %ep.name, "writing {}: {e}", path.display());
        }
    }

    /// Takes the endpoint's block out of its hosts file (a file the agent created goes when
    /// nothing else is in it) and removes the resolv.conf it wrote. Returns the files changed.
    pub fn remove(&self, ep: &Endpoint) -> Vec<PathBuf> {
        let mut changed: Vec<PathBuf> = self.remove_resolv(ep).into_iter().collect();
        changed.extend(self.remove_hosts(ep));
        if let Some(dir) = self.dir_of(ep) {
            // Goes only when empty: files of others keep the directory, as they should.
            let _ = std::fs::remove_dir(dir);
        }
        changed
    }

    fn remove_hosts(&self, ep: &Endpoint) -> Option<PathBuf> {
        let path = self.path_of(ep)?;
        let old = std::fs::read_to_string(&path).ok()?;
        let rest = without_block(&old, &ep.name);
        if rest == old {
            return None;
        }
        let ours_only = rest == format!("{CREATED}\n{BASE}");
        let res = if ours_only {
            std::fs::remove_file(&path)
        } else {
            write_atomic(&path, &rest)
        };
        if let Err(e) = res {
            warn!(endpoint = %ep.name, "updating {}: {e}", path.display());
        }
        Some(path)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(name: &str, netns: &str) -> Endpoint {
        Endpoint {
            name: name.into(),
            id: "ab".into(),
            netns: netns.into(),
            attachments: Vec::new(),
            ports: Vec::new(),
            labels: Default::default(),
            netns_id: None,
            dns: Default::default(),
            engine: None,
            namespace: "default".into(),
            named_ports: Vec::new(),
        }
    }

    #[test]
    fn keeps_what_it_did_not_write() {
        let root = crate::scratch::ScratchDir::new("hosts");
        let files = NetnsFiles::new(root.to_path_buf());
        let state = State::default();

        // A file the user wrote: our block comes and goes, their lines stay.
        let ep = endpoint("web", "/run/netns/userns");
        let path = files.path_of(&ep).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let user = "10.0.0.9\tdb.internal\n";
        std::fs::write(&path, user).unwrap();
        // And a resolv.conf the user wrote is theirs.
        let resolv = files.resolv_path_of(&ep).unwrap();
        std::fs::write(&resolv, "nameserver 192.0.2.1\n").unwrap();
        files.write(&ep, &state, Some("nameserver 10.1.0.1\n"));
        files.write(&ep, &state, Some("nameserver 10.1.0.1\n"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(user), "{text}");
        assert_eq!(text.matches("# BEGIN netpath").count(), 1, "{text}");
        assert_eq!(
            std::fs::read_to_string(&resolv).unwrap(),
            "nameserver 192.0.2.1\n"
        );
        assert_eq!(files.remove(&ep), vec![path.clone()]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), user);
        assert!(resolv.exists());

        // A file netpath created goes with the endpoint, and so does its directory.
        let ep = endpoint("api", "/run/netns/ours");
        let path = files.path_of(&ep).unwrap();
        files.write(&ep, &state, Some("nameserver 10.1.0.1\n"));
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("localhost"));
        let resolv = std::fs::read_to_string(files.resolv_path_of(&ep).unwrap()).unwrap();
        assert!(resolv.ends_with("nameserver 10.1.0.1\n"), "{resolv}");
        assert_eq!(files.remove(&ep).len(), 2);
        assert!(!path.exists() && !path.parent().unwrap().exists());

        assert_eq!(files.path_of(&endpoint("x", "/proc/1/ns/net")), None);
    }

    #[test]
    fn leaves_files_that_are_already_right() {
        use std::os::unix::fs::MetadataExt as _;
        let root = crate::scratch::ScratchDir::new("hosts-same");
        let files = NetnsFiles::new(root.to_path_buf());
        let state = State::default();
        let ep = endpoint("web", "/run/netns/same");
        let (hosts, resolv) = (
            files.path_of(&ep).unwrap(),
            files.resolv_path_of(&ep).unwrap(),
        );
        let inodes = || [&hosts, &resolv].map(|p| std::fs::metadata(p).expect("written").ino());
        files.write(&ep, &state, Some("nameserver 10.1.0.1\n"));
        let first = inodes();
        // Written again as it is (a restart's reconcile): neither file is replaced.
        files.write(&ep, &state, Some("nameserver 10.1.0.1\n"));
        assert_eq!(inodes(), first);
        // What changed is written (by a rename: a new inode).
        files.write(&ep, &state, Some("nameserver 10.1.0.2\n"));
        let now = inodes();
        assert_eq!(now[0], first[0]);
        assert_ne!(now[1], first[1]);
        assert!(std::fs::read_to_string(&resolv)
            .unwrap()
            .ends_with("10.1.0.2\n"));
    }
}
