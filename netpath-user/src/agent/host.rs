//! What the agent sets up on the host before it serves: a bpffs for its pins, the cgroup v2
//! directory of its socket hooks, its namespace's cookie, and the sysctls it needs
//! (IPv4 forwarding on; the outbound NAT ports reserved from the host's ephemeral range).
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use netpath_common::{SNAT_PORTS, SNAT_PORT_MIN};
use tracing::info;

/// Makes sure `dir` is on a bpffs, mounting one where needed (inside `ip netns exec` /sys is
/// a fresh sysfs without one).
pub fn ensure_bpffs(dir: &Path) -> anyhow::Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    let is_bpffs = |p: &Path| {
        nix::sys::statfs::statfs(p)
            .map(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
            .unwrap_or(false)
    };
    if dir.exists() && is_bpffs(dir) {
        return Ok(());
    }
    if std::fs::create_dir_all(dir).is_ok() {
        if !is_bpffs(dir) {
            mount_bpffs(dir)?;
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
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn mount_bpffs(at: &Path) -> anyhow::Result<()> {
    nix::mount::mount(
        Some("bpffs"),
        at,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mounting bpffs at {}", at.display()))?;
    info!(at = %at.display(), "mounted bpffs");
    Ok(())
}

/// Turns IPv4 forwarding on (the host routes endpoints' traffic that netpath passes on).
pub fn enable_forwarding() -> anyhow::Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").context("enabling IPv4 forwarding")
}

/// Reserves the outbound NAT ports: the host's own sockets never get them automatically.
pub fn reserve_snat_ports() -> anyhow::Result<()> {
    let last = u32::from(SNAT_PORT_MIN) + SNAT_PORTS - 1;
    std::fs::write(
        "/proc/sys/net/ipv4/ip_local_reserved_ports",
        format!("{SNAT_PORT_MIN}-{last}"),
    )
    .context("reserving the outbound NAT ports")
}

/// The cookie of this thread's network namespace (SO_NETNS_COOKIE on a fresh socket).
pub fn netns_cookie() -> anyhow::Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").context("socket for the netns cookie")?;
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
/// visible (inside `ip netns exec`, /sys is a fresh sysfs without cgroup mounts).
pub fn cgroup_root() -> anyhow::Result<PathBuf> {
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
    let dir = PathBuf::from("/run/netpath/cgroup2");
    std::fs::create_dir_all(&dir)?;
    nix::mount::mount(
        Some("cgroup2"),
        &dir,
        Some("cgroup2"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mounting cgroup2 at {}", dir.display()))?;
    info!(at = %dir.display(), "mounted cgroup2");
    Ok(dir)
}
