//! What the agent sets up on the host: a lock on its state directory, a bpffs for its pins,
//! the cgroup v2 directory of its socket hooks, its namespace's cookie, and the sysctls it
//! needs (IPv4 forwarding on; reserved ports are [`super::reserved`]'s).
//! Every change is recorded with what was there before ([`HostRecord`], `host.json` in the
//! state directory) so that `netpath uninstall` gives it back.
use std::{
    collections::BTreeMap,
    fs::File,
    io::{Read as _, Seek as _, Write as _},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tracing::info;

/// The sysctl that turns IPv4 forwarding on.
pub const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// What the agent changed on the host, and what was there before (`STATE_DIR/host.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostRecord {
    /// Sysctl file → its value before the agent first changed it.
    pub sysctls: BTreeMap<String, String>,
    /// Port ranges the agent added to `ip_local_reserved_ports` (not there before; kept by
    /// [`super::reserved::ReservedPorts`]).
    pub reserved_ports: Vec<String>,
    /// Filesystems the agent mounted.
    pub mounts: Vec<PathBuf>,
    /// Directories the agent created outside its state directory, outermost first.
    pub dirs: Vec<PathBuf>,
    /// Sockets the agent serves besides its API's (Docker's plugin), removed by uninstall
    /// when an agent that was killed left them.
    pub sockets: Vec<PathBuf>,
}

impl HostRecord {
    /// Records a socket the agent serves at `path`.
    pub fn add_socket(&mut self, path: &Path) {
        if !self.sockets.iter().any(|s| s == path) {
            self.sockets.push(path.to_path_buf());
        }
    }

    /// Creates `dir` and its missing parents, recording those it made.
    pub fn create_dir(&mut self, dir: &Path) -> anyhow::Result<()> {
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|p| !p.exists())
            .map(Path::to_path_buf)
            .collect();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for d in missing.into_iter().rev() {
            if !self.dirs.contains(&d) {
                self.dirs.push(d);
            }
        }
        Ok(())
    }

    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("host.json")
    }

    /// The record of `state_dir` (empty when there is none).
    pub fn load(state_dir: &Path) -> anyhow::Result<HostRecord> {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).with_context(|| format!("reading {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HostRecord::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes it atomically.
    pub fn save(&self, state_dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(state_dir);
        crate::model::write_json(&path, self).with_context(|| format!("writing {}", path.display()))
    }

    /// Sets sysctl `path` to `value`. The value before is recorded (the first time only)
    /// and the record saved in `state_dir` before anything changes.
    pub fn set_sysctl(&mut self, state_dir: &Path, path: &str, value: &str) -> anyhow::Result<()> {
        let before = std::fs::read_to_string(path)
            .with_context(|| format!("reading {path}"))?
            .trim()
            .to_string();
        if before == value {
            return Ok(());
        }
        if !self.sysctls.contains_key(path) {
            self.sysctls.insert(path.to_string(), before);
            self.save(state_dir)?;
        }
        std::fs::write(path, value).with_context(|| format!("writing {value} to {path}"))?;
        info!(sysctl = path, value, "set");
        Ok(())
    }
}

/// An exclusive lock on a state directory, held while the agent (or `uninstall`) runs.
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Takes the lock of `state_dir` or says who holds it; touches nothing else.
    pub fn take(state_dir: &Path) -> anyhow::Result<StateLock> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let path = state_dir.join("lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a file we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let mut holder = String::new();
            // Only for the message: a holder that cannot be read is said as unknown.
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            bail!(
                "another netpath agent{} is using the state directory {}",
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                },
                state_dir.display()
            );
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        Ok(StateLock { _file: file })
    }
}

/// An exclusive lock on a pin directory, held while the agent (or `uninstall`) uses its maps
/// and links: a second agent on the same directory would rewrite the first's maps. bpffs holds
/// no regular files, so the lock is a flock on the directory itself.
pub struct PinLock {
    _dir: File,
}

impl PinLock {
    /// Takes the lock of `dir` (which exists) or says that another agent holds it.
    pub fn take(dir: &Path) -> anyhow::Result<PinLock> {
        let file = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            bail!(
                "another netpath agent is using the pin directory {} (its maps and links): \
                 give each agent its own --bpffs",
                dir.display()
            );
        }
        Ok(PinLock { _dir: file })
    }
}

/// Whether `p` is on a bpffs.
pub fn is_bpffs(p: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    nix::sys::statfs::statfs(p)
        .map(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
        .unwrap_or(false)
}

/// Makes sure `dir` is on a bpffs, mounting one where needed (inside `ip netns exec` /sys is
/// a fresh sysfs without one); a mount made is recorded.
pub fn ensure_bpffs(dir: &Path, record: &mut HostRecord) -> anyhow::Result<()> {
    if dir.exists() && is_bpffs(dir) {
        return Ok(());
    }
    if std::fs::create_dir_all(dir).is_ok() {
        if !is_bpffs(dir) {
            mount_bpffs(dir)?;
            record.mounts.push(dir.to_path_buf());
        }
        return Ok(());
    }
    // The nearest existing ancestor is not writable (e.g. sysfs): mount bpffs there.
    let ancestor = dir
        .ancestors()
        .find(|p| p.exists())
        .context("no existing ancestor of the bpffs dir")?;
    if is_bpffs(ancestor) {
        bail!("cannot create {} on bpffs", dir.display());
    }
    mount_bpffs(ancestor)?;
    record.mounts.push(ancestor.to_path_buf());
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn mount_bpffs(at: &Path) -> anyhow::Result<()> {
    mount("bpffs", "bpf", at).with_context(|| format!("mounting bpffs at {}", at.display()))?;
    info!(at = %at.display(), "mounted bpffs");
    Ok(())
}

/// Mounts a kernel filesystem of type `fstype` (named `source`) at `at`, with no options.
pub fn mount(source: &str, fstype: &str, at: &Path) -> nix::Result<()> {
    nix::mount::mount(
        Some(source),
        at,
        Some(fstype),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
}

/// The cookie of this thread's network namespace (SO_NETNS_COOKIE on a fresh socket).
pub fn netns_cookie() -> anyhow::Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    // SAFETY: plain socket creation; owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!(
            "socket for the netns cookie: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: fd is a new socket nothing else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid socket, out-pointer and length for an u64 option.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        bail!("SO_NETNS_COOKIE: {}", std::io::Error::last_os_error());
    }
    Ok(cookie)
}

/// The root of the cgroup v2 hierarchy: its mount point, or a private mount when none is
/// visible (inside `ip netns exec`, /sys is a fresh sysfs without cgroup mounts; the mount
/// made is recorded).
pub fn cgroup_root(state_dir: &Path, record: &mut HostRecord) -> anyhow::Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    for line in mounts.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPEROPTS
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = pre.split(' ').collect();
        if post.split(' ').next() == Some("cgroup2") && fields.get(3) == Some(&"/") {
            if let Some(mp) = fields.get(4) {
                return Ok(PathBuf::from(mp));
            }
        }
    }
    // The agent's own mount point, in its state directory: nothing else uses it.
    let dir = state_dir.join("cgroup2");
    record.create_dir(&dir)?;
    mount("cgroup2", "cgroup2", &dir)
        .with_context(|| format!("mounting cgroup2 at {}", dir.display()))?;
    info!(at = %dir.display(), "mounted cgroup2");
    record.mounts.push(dir.clone());
    Ok(dir)
}

/// Tells systemd (`Type=notify`) how the agent is: `READY=1`, `STOPPING=1`, `STATUS=...`.
/// Does nothing when not started by systemd (no `NOTIFY_SOCKET`).
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let res = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
        }
        None => sock.send_to(state.as_bytes(), Path::new(&path)),
    };
    if let Err(e) = res {
        tracing::warn!("telling systemd {state:?}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_agent_per_state_dir() {
        let dir = crate::scratch::ScratchDir::new("lock");
        let held = StateLock::take(&dir).unwrap();
        let err = StateLock::take(&dir).err().unwrap().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(held);
        assert!(StateLock::take(&dir).is_ok());
    }
}
