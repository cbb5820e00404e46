//! Support for the tests and the benchmark (feature `testing`, never in the product):
//! namespaces they make themselves (deleted on drop), agents they start ([`agent`]), a
//! private bpffs, several nodes on an underlay with etcd ([`cluster`]), frames built by hand, and checksums computed independently of the
//! datapath.

use std::{
    net::Ipv4Addr,
    path::Path,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

pub mod agent;
pub mod cluster;
pub mod containerd;
pub mod dns;
pub mod docker;
pub mod frame6;
pub mod packet;
pub mod podman;
pub mod traffic;

pub use agent::{stop_child, stop_slot, AgentOptions, AgentProcess};
pub use cluster::{Etcd, Underlay};
use etherparse::{Icmpv4Type, LinkSlice, NetSlice, SlicedPacket, TransportSlice};
pub use traffic::{SteadyTraffic, TrafficResult};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short identifier unique to this process and call (fits interface names).
pub fn unique() -> String {
    format!(
        "{:x}{:x}",
        std::process::id() % 0xfffff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The words of a command line (split on white space), for the CLI's argument lists.
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Runs a command, panicking with its output when it fails (test and bench setup only).
pub fn sh(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{prog} {args:?}: {e}"));
    succeeded(out, &format!("{prog} {args:?}"))
}

/// `--flag DIR/name` for each `(flag, name)`: where an engine keeps its files, each in the
/// test's own directory `dir`.
pub fn dir_flags(dir: &std::path::Path, flags: &[(&str, &str)]) -> Vec<std::ffi::OsString> {
    flags
        .iter()
        .flat_map(|(flag, name)| [flag.into(), dir.join(name).into()])
        .collect()
}

/// Runs an engine's CLI (`cmd`, its arguments given; `what` names it in errors) with no
/// input: its stdout, or an error with its stderr.
pub fn engine_cli(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        anyhow::bail!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The stdout of a command that must have succeeded, panicking with its output if not.
pub fn succeeded(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `cond` until it holds, failing after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A network namespace made by the test, deleted on drop (with every interface in it).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = format!("{prefix}-{}", unique());
        sh("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// `ip netns exec NAME PROG ARGS...`
    pub fn exec(&self, prog: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name, prog];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// Runs `f` on a thread inside this namespace. Sockets made there stay in it.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(move || {
                let file = std::fs::File::open(&path).expect("open netns");
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .expect("namespace thread panicked")
        })
    }

    /// Writes a sysctl of this namespace, e.g. `net/ipv4/ip_forward`.
    pub fn sysctl(&self, key: &str, value: &str) {
        let key = key.to_string();
        let value = value.to_string();
        self.run(move || std::fs::write(format!("/proc/sys/{key}"), value).expect("sysctl"));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if std::path::Path::new(&self.path()).exists() {
            // Cleanup: already gone is as good as removed.
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
        // Files `ip netns exec` would show in it (the agent writes a hosts file there).
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

/// Connects two namespaces with a veth pair: `a_if` in `a`, `b_if` in `b`, both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    sh(
        "ip",
        &[
            "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
            &b.name,
        ],
    );
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

/// The "outside" (10.77.0.1) and the "host" (10.77.0.2) every lab starts from, joined by a
/// veth in a /`prefix`, the host's default route via the outside. Returns the namespaces
/// (named from `outside` and `host`) and their ends of the veth.
pub fn outside_and_host(outside: &str, host: &str, prefix: u8) -> (Netns, Netns, String, String) {
    let (outside, host) = (Netns::new(outside), Netns::new(host));
    let id = unique();
    let (o, h) = (format!("o{id}"), format!("h{id}"));
    veth(&outside, &o, &host, &h);
    outside.ip(&["addr", "add", &format!("10.77.0.1/{prefix}"), "dev", &o]);
    host.ip(&["addr", "add", &format!("10.77.0.2/{prefix}"), "dev", &h]);
    host.ip(&["route", "add", "default", "via", "10.77.0.1"]);
    (outside, host, o, h)
}

/// A namespace where a translated reply can be routed: an "uplink" veth `up0` with
/// 10.0.0.2/24 and a permanent neighbour 10.0.0.1 (02:aa:bb:cc:dd:01), an endpoint
/// host-side veth `ep0`, and forwarding on. Run BPF_PROG_TEST_RUN from inside it (with
/// [`Netns::run`]) and `bpf_fib_lookup` answers from its tables, not the machine's.
pub struct RoutedNs {
    pub ns: Netns,
    pub endpoint_ifindex: u32,
    pub uplink_ifindex: u32,
    pub uplink_mac: [u8; 6],
}

impl RoutedNs {
    pub fn new() -> RoutedNs {
        let ns = Netns::new("nproute");
        ns.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
        ns.ip(&["link", "add", "ep0", "type", "veth", "peer", "name", "ep1"]);
        for l in ["up0", "up1", "ep0", "ep1"] {
            ns.ip(&["link", "set", l, "up"]);
        }
        ns.ip(&["addr", "add", "10.0.0.2/24", "dev", "up0"]);
        ns.ip(&[
            "neigh",
            "replace",
            "10.0.0.1",
            "lladdr",
            "02:aa:bb:cc:dd:01",
            "dev",
            "up0",
            "nud",
            "permanent",
        ]);
        ns.sysctl("net/ipv4/ip_forward", "1");
        let read = |what: &str| ns.exec("cat", &[&format!("/sys/class/net/{what}")]);
        let index = |name: &str| -> u32 {
            read(&format!("{name}/ifindex"))
                .trim()
                .parse()
                .expect("ifindex")
        };
        let mac: Vec<u8> = read("up0/address")
            .trim()
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).expect("mac"))
            .collect();
        let (endpoint_ifindex, uplink_ifindex) = (index("ep0"), index("up0"));
        RoutedNs {
            ns,
            endpoint_ifindex,
            uplink_ifindex,
            uplink_mac: mac.try_into().expect("6-byte mac"),
        }
    }
}

impl Default for RoutedNs {
    fn default() -> Self {
        Self::new()
    }
}

/// A private bpffs instance on a temporary directory, unmounted and removed on drop:
/// somewhere to pin maps for tests and benchmarks without touching the host's bpffs, and
/// one that outlives an agent started with `ip netns exec` (whose own mounts vanish with it).
pub struct ScratchBpffs {
    dir: std::path::PathBuf,
}

impl ScratchBpffs {
    pub fn new() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "netpath-bpffs-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        crate::agent::host::mount("bpffs", "bpf", &dir).map_err(std::io::Error::from)?;
        Ok(ScratchBpffs { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ScratchBpffs {
    fn drop(&mut self) {
        // Cleanup: already gone is as good as removed.
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

// ---- packets ---------------------------------------------------------------------------

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;

/// Internet checksum (RFC 1071) of `data`, folded and complemented.
pub fn inet_checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for data in chunks {
        let mut i = 0;
        while i + 1 < data.len() {
            sum += u32::from(u16::from_be_bytes([data[i], data[i + 1]]));
            i += 2;
        }
        if i < data.len() {
            sum += u32::from(data[i]) << 8;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

/// An Ethernet/IPv4 frame around `l4` (whose checksum field is filled in here for TCP/UDP).
pub struct Frame {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub frag: u16,
}

impl Frame {
    pub fn new(src: [u8; 4], dst: [u8; 4], proto: u8) -> Frame {
        Frame {
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            src: src.into(),
            dst: dst.into(),
            proto,
            frag: 0,
        }
    }

    pub fn build(&self, l4: &[u8]) -> Vec<u8> {
        let mut l4 = l4.to_vec();
        let csum_at = match self.proto {
            TCP => Some(16),
            UDP => Some(6),
            _ => None,
        };
        if let Some(at) = csum_at {
            if self.frag == 0 && l4.len() >= at + 2 {
                l4[at..at + 2].fill(0);
                let c = inet_checksum(&[&pseudo(self.src, self.dst, self.proto, l4.len()), &l4]);
                l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
        }
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0x12, 0x34]);
        ip.extend_from_slice(&self.frag.to_be_bytes());
        ip.extend_from_slice(&[64, self.proto, 0, 0]);
        ip.extend_from_slice(&self.src.octets());
        ip.extend_from_slice(&self.dst.octets());
        let c = inet_checksum(&[&ip]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&l4);
        f
    }
}

/// The MAC address of interface `ifname` in `ns`.
pub fn mac_of(ns: &Netns, ifname: &str) -> [u8; 6] {
    let text = ns.exec("cat", &[&format!("/sys/class/net/{ifname}/address")]);
    let mut mac = [0u8; 6];
    for (b, part) in mac.iter_mut().zip(text.trim().split(':')) {
        *b = u8::from_str_radix(part, 16).expect("a MAC address");
    }
    mac
}

/// Puts `frame` (Ethernet and all) on the wire of `ifname` in `ns` as it is: what a neighbour
/// with a raw socket can send, whatever its addresses say.
pub fn send_frame(ns: &Netns, ifname: &str, frame: &[u8]) {
    send_frames(ns, ifname, std::iter::once(frame.to_vec()));
}

/// [`send_frame`] for many frames, through one socket (a flood).
pub fn send_frames(ns: &Netns, ifname: &str, frames: impl Iterator<Item = Vec<u8>> + Send) {
    let ifname = ifname.to_string();
    ns.run(move || {
        let ifindex = nix::net::if_::if_nametoindex(ifname.as_str()).expect("the interface");
        let sock = packet::PacketSocket::open(ifindex).expect("packet socket");
        for frame in frames {
            sock.send(&frame).expect("sent");
        }
    });
}

/// A TCP header (SYN) with a few payload bytes.
pub fn tcp(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&1000u32.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes());
    h.extend_from_slice(&[0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    h.extend_from_slice(b"hello");
    h
}

/// A UDP header with a payload.
pub fn udp(sport: u16, dport: u16) -> Vec<u8> {
    udp_with(sport, dport, b"ping")
}

/// A UDP header and `payload` (checksum filled in by [`Frame::build`]).
pub fn udp_with(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    h
}

/// A frame as a test sees it: parsed, and its checksums verified, by `etherparse`, a parser
/// independent of both the datapath and [`Frame`]. Accessors panic on a frame that is not
/// Ethernet/IPv4 (a test failure).
pub struct Seen<'a>(pub &'a [u8]);

impl<'a> Seen<'a> {
    fn parsed(&self) -> SlicedPacket<'a> {
        SlicedPacket::from_ethernet(self.0).expect("an Ethernet frame")
    }

    fn ipv4(&self) -> etherparse::Ipv4Header {
        match self.parsed().net {
            Some(NetSlice::Ipv4(ip)) => ip.header().to_header(),
            _ => panic!("not IPv4"),
        }
    }

    fn eth(&self) -> etherparse::Ethernet2Header {
        match self.parsed().link {
            Some(LinkSlice::Ethernet2(e)) => e.to_header(),
            _ => panic!("not Ethernet II"),
        }
    }

    /// (source, destination) ports of TCP or UDP (ICMP echo: the identifier as both).
    fn ports(&self) -> (u16, u16) {
        match self.parsed().transport {
            Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
            Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
            Some(TransportSlice::Icmpv4(i)) => match i.icmp_type() {
                Icmpv4Type::EchoRequest(e) | Icmpv4Type::EchoReply(e) => (e.id, e.id),
                _ => (0, 0),
            },
            _ => panic!("no transport header"),
        }
    }

    pub fn dst_mac(&self) -> [u8; 6] {
        self.eth().destination
    }
    pub fn src_mac(&self) -> [u8; 6] {
        self.eth().source
    }
    pub fn src(&self) -> Ipv4Addr {
        self.ipv4().source.into()
    }
    pub fn dst(&self) -> Ipv4Addr {
        self.ipv4().destination.into()
    }
    pub fn ttl(&self) -> u8 {
        self.ipv4().time_to_live
    }
    pub fn sport(&self) -> u16 {
        self.ports().0
    }
    pub fn dport(&self) -> u16 {
        self.ports().1
    }
    /// The L4 checksum as the frame carries it.
    pub fn l4_csum(&self) -> u16 {
        match self.parsed().transport {
            Some(TransportSlice::Tcp(t)) => t.checksum(),
            Some(TransportSlice::Udp(u)) => u.checksum(),
            Some(TransportSlice::Icmpv4(i)) => i.checksum(),
            _ => panic!("no transport header"),
        }
    }

    /// Both checksums verify from scratch (a UDP checksum of 0 means none).
    pub fn checksums_ok(&self) -> bool {
        let Ok(p) = SlicedPacket::from_ethernet(self.0) else {
            return false;
        };
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            return false;
        };
        let h = ip.header().to_header();
        if h.calc_header_checksum() != h.header_checksum {
            return false;
        }
        match &p.transport {
            Some(TransportSlice::Tcp(t)) => {
                t.calc_checksum_ipv4(h.source, h.destination).ok() == Some(t.checksum())
            }
            Some(TransportSlice::Udp(u)) => {
                u.checksum() == 0
                    || u.to_header().calc_checksum_ipv4(&h, u.payload()).ok() == Some(u.checksum())
            }
            Some(TransportSlice::Icmpv4(i)) => {
                i.icmp_type().calc_checksum(i.payload()) == i.checksum()
            }
            _ => false,
        }
    }
}
