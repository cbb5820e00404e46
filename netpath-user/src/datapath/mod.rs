//! The kernel side as the agent sees it: load the embedded object, pin its maps, attach its
//! programs. One module per kernel concern, named as in `netpath-ebpf/src/`, each adding the
//! intent methods of its maps to [`Datapath`]; the maps themselves are private.
//!
//! | module | kernel | maps |
//! |---|---|---|
//! | [`ports`] | `ports.rs` | `PORTS`, `PORTS_ANY`, `HOST_ADDRS` |
//! | [`flows`] | `flows.rs` | `FLOWS` |
//! | [`snat`] | `snat.rs` | `SNAT`, `SNAT_REV`, `UPLINKS` |
//! | [`forward`] | `forward.rs` | `NETWORKS`, `SUBNETS`, `MEMBERS`, `HOST_LOOPBACK` (`hostgw.rs`) |
//! | [`endpoint`] | `endpoint.rs` | `ENDPOINTS`, `ENDPOINTS_BY_ADDR` |
//! | [`sock`] | `sock.rs` | `SOCK_NETNS`, `SOCK_REVNAT` |
//! | [`stats`] | `stats.rs` | `STATS` |
//!
//! Beside them: [`links`] (where programs run, pinned links adopted and swapped atomically),
//! [`migrate`] (pinned maps across versions), [`sync`] (the whole datapath made to match a
//! desired content, as at start), [`sys`] (BPF syscalls aya does not expose).
//!
//! Everything is pinned under the agent's bpffs directory (maps by name, links under
//! `links/`), so the datapath keeps running when the agent stops, for any reason; only
//! `netpath uninstall` takes it down. The agent reaches all of it through [`DatapathOps`],
//! which [`fake::FakeDatapath`] also implements in memory, so its transactions are tested
//! without root.
use std::{
    collections::HashSet,
    net::Ipv4Addr,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use aya::{
    maps::{lpm_trie::LpmTrie, Array, HashMap, MapData, MapError, PerCpuArray},
    programs::{links::FdLink, CgroupSock, CgroupSockAddr, SchedClassifier, Xdp},
    Ebpf, EbpfLoader,
};
use netpath_common::{
    map_names, map_sizes, DnsAddrs, DnsKey, EndpointInfo, FlowKey, FlowNat, LoopbackKey, MemberKey,
    NetworkInfo, PeerInfo, PortKey, PortStats, PortTarget, SnatNat, SnatRev,
};

use crate::model::Network;

pub mod dns;
pub mod endpoint;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod flows;
pub mod forward;
pub mod kernel_log;
pub mod links;
pub mod migrate;
pub mod overlay;
pub mod ports;
pub mod snat;
pub mod sock;
pub mod stats;
pub mod sync;
pub mod sys;

pub use endpoint::AttachmentEntry;
pub use kernel_log::KERNEL_LOG_TARGET;
pub use links::{Hook, HookReport, Hooks, LinkState};
pub use migrate::Migration;
pub use overlay::{OverlayContent, OverlayNetEntry};
pub use stats::DatapathStats;
pub use sync::{Content, SyncReport};

/// Idle timeouts of flows (published and outbound alike), in seconds.
pub mod timeouts {
    /// An established TCP flow.
    pub const TCP: u64 = 7200;
    /// A TCP flow once a FIN or RST was seen.
    pub const TCP_CLOSING: u64 = 10;
    /// UDP and ICMP echo.
    pub const OTHER: u64 = 30;

    /// The timeout of a flow of `proto`, in ns.
    pub fn of(proto: u8, closing: bool) -> u64 {
        const S: u64 = 1_000_000_000;
        S * match proto {
            netpath_common::proto::TCP if closing => TCP_CLOSING,
            netpath_common::proto::TCP => TCP,
            _ => OTHER,
        }
    }
}

/// The eBPF object built from `netpath-ebpf`, embedded in the binary.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netpath"));

/// The benchmark's programs (`netpath-ebpf/src/bench_main.rs`): an object of their own that
/// only the test support carries, loaded beside the product's with the same pin directory so
/// they share its maps.
#[cfg(feature = "testing")]
pub static BENCH_EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netpath-bench"));

/// A loader that pins maps in `pin_dir` (reusing the pins there) at the agent's sizes.
fn sized_loader<'a>(pin_dir: Option<&'a Path>, sizes: &MapSizes) -> EbpfLoader<'a> {
    let mut loader = EbpfLoader::new();
    if let Some(dir) = pin_dir {
        loader.default_map_pin_directory(dir);
    }
    loader
        .map_max_entries(map_names::PORTS, sizes.ports)
        .map_max_entries(map_names::FLOWS, sizes.flows)
        .map_max_entries(map_names::SNAT, sizes.flows)
        .map_max_entries(map_names::SNAT_REV, sizes.flows)
        .map_max_entries(map_names::ENDPOINTS, sizes.endpoints)
        .map_max_entries(map_names::ENDPOINTS_BY_ADDR, sizes.endpoints)
        .map_max_entries(map_names::MEMBERS, sizes.endpoints);
    loader
}

/// Loads the benchmark's object beside a datapath pinned in `pin_dir` (at `sizes`): its
/// programs see the same maps.
#[cfg(feature = "testing")]
pub fn load_bench_object(pin_dir: &Path, sizes: &MapSizes) -> Result<Ebpf, DatapathError> {
    Ok(sized_loader(Some(pin_dir), sizes).load(BENCH_EBPF_OBJECT)?)
}

/// Program names in the object (the entry points of `netpath-ebpf/src/main.rs`).
pub mod programs {
    pub const UPLINK_XDP: &str = "netpath_uplink_xdp";
    pub const UPLINK_TC: &str = "netpath_uplink_tc";
    pub const ENDPOINT_TC: &str = "netpath_endpoint_tc";
    pub const OVERLAY_TC: &str = "netpath_overlay_tc";
    pub const XDP_PASS: &str = "netpath_xdp_pass";
    /// The socket hook that refuses binding a published port (a `cgroup_sock` program; the
    /// others are `cgroup_sock_addr`).
    pub const SOCK_BIND: &str = "netpath_sock_post_bind4";
    /// Socket hooks (cgroup v2): connect4, sendmsg4, recvmsg4, getpeername4, post_bind4.
    pub const SOCK: [&str; 5] = [
        "netpath_sock_connect4",
        "netpath_sock_sendmsg4",
        "netpath_sock_recvmsg4",
        "netpath_sock_getpeername4",
        SOCK_BIND,
    ];
    /// Every program of the object.
    pub const ALL: [&str; 10] = [
        UPLINK_XDP,
        UPLINK_TC,
        ENDPOINT_TC,
        OVERLAY_TC,
        XDP_PASS,
        SOCK[0],
        SOCK[1],
        SOCK[2],
        SOCK[3],
        SOCK[4],
    ];
}

/// Errors from loading, attaching and map access.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {0}: {1}")]
    Program(&'static str, String),
    #[error("map {0}: {1}")]
    Map(&'static str, aya::maps::MapError),
    #[error("map {0} missing from the object")]
    MissingMap(&'static str),
    #[error("program {0} missing from the object")]
    MissingProgram(&'static str),
    #[error("cgroup {0}: {1}")]
    Cgroup(String, String),
    /// Pinned objects that cannot be used as they are.
    #[error("{0}")]
    Pins(String),
    /// A fault injected by a test double.
    #[error("{0}: injected failure")]
    Injected(String),
}

/// How the uplink XDP fast path is attached.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// No XDP program: the TC program handles everything.
    Off,
    /// Native (driver) XDP.
    Native,
    /// Generic (skb) XDP.
    Generic,
}

/// Map sizes the agent asks for at load time.
#[derive(Clone, Copy, Debug)]
pub struct MapSizes {
    pub ports: u32,
    pub flows: u32,
    pub endpoints: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        MapSizes {
            ports: map_sizes::PORTS,
            flows: map_sizes::FLOWS,
            endpoints: map_sizes::ENDPOINTS,
        }
    }
}

/// What flow expiry removed, and what is left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    pub published: usize,
    pub outbound: usize,
    pub published_left: usize,
    pub outbound_left: usize,
}

/// A map pinned in the pin directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedMap {
    /// Its pin's name (`FLOWS`, or `FLOWS@old` while set aside).
    pub name: String,
    pub id: u32,
    pub capacity: u32,
    /// Set aside at load (see [`migrate`]), until every hook runs this build's programs.
    pub set_aside: bool,
}

/// What the agent asks of the datapath, by intent. Every change either happens whole or
/// returns an error having changed nothing; removing what is absent is not an error.
pub trait DatapathOps: Send {
    /// Publishes `key` (address 0: every host address) to `target`.
    fn publish(&mut self, key: PortKey, target: PortTarget) -> Result<(), DatapathError>;
    /// Stops publishing `key`.
    fn unpublish(&mut self, key: &PortKey) -> Result<(), DatapathError>;
    /// Replaces the set of host addresses (where a publish on every address answers).
    fn set_host_addrs(&mut self, addrs: &HashSet<Ipv4Addr>) -> Result<(), DatapathError>;
    /// Removes the published flows of host-side veth `ifindex` through `ports`; how many.
    fn flush_flows_of(&mut self, ifindex: u32, ports: &[PortKey]) -> usize;
    /// Removes every flow of an interface going away (published and outbound); how many.
    fn flush_interface_flows(&mut self, ifindex: u32, addr: Ipv4Addr) -> usize;
    /// Removes every flow of interfaces not in `live` (after a restart); how many.
    fn flush_flows_except(&mut self, live: &HashSet<u32>) -> usize;
    /// Makes `uplinks` (ifindex → address) the sources of outbound NAT.
    fn set_uplinks(&mut self, uplinks: &[(u32, Ipv4Addr)]) -> Result<(), DatapathError>;
    /// Removes flows idle past their timeout at `now` (CLOCK_MONOTONIC ns).
    fn expire(&mut self, now: u64) -> Expired;
    /// Writes a network (flags, subnet, gateways, host-loopback ports); members are kept.
    fn add_network(&mut self, net: &Network) -> Result<(), DatapathError>;
    /// Removes a network, its subnet, member slots and host-loopback ports.
    fn remove_network(&mut self, net: &Network) -> Result<(), DatapathError>;
    /// The member interfaces of network `net_id`, in slot order.
    fn members(&self, net_id: u32) -> Vec<u32>;
    /// Makes `ifindexes` the members of network `net_id` (for broadcasts).
    fn set_members(&mut self, net_id: u32, ifindexes: &[u32]) -> Result<(), DatapathError>;
    /// Writes one attachment of an endpoint to a network: by veth and by address.
    fn add_attachment(&mut self, entry: &AttachmentEntry) -> Result<(), DatapathError>;
    /// Removes an attachment's entries.
    fn remove_attachment(&mut self, ifindex: u32, ip: Ipv4Addr) -> Result<(), DatapathError>;
    /// Runs the endpoint program at the host-side veth `ifname` (a pinned link).
    fn attach_endpoint(&mut self, ifname: &str) -> Result<(), DatapathError>;
    /// Takes it away.
    fn detach_endpoint(&mut self, ifname: &str) -> Result<(), DatapathError>;
    /// Makes every map the agent writes hold exactly `content`, changing only what differs
    /// (traffic keeps flowing through entries that stay).
    fn sync(&mut self, content: &Content) -> Result<SyncReport, DatapathError>;
    /// Makes the overlay maps (other nodes' endpoints) hold exactly `content`; how many
    /// entries changed.
    fn sync_overlay(&mut self, content: &OverlayContent) -> Result<usize, DatapathError>;
    /// Makes exactly `want` the hooks netpath runs at (socket hooks for the namespace with
    /// `netns_cookie`): pinned links adopted and swapped to this build's programs, missing
    /// ones attached, others detached.
    fn ensure_hooks(
        &mut self,
        want: &Hooks,
        netns_cookie: u64,
    ) -> Result<HookReport, DatapathError>;
    /// The pinned links and their state.
    fn links(&self) -> Vec<LinkState>;
    /// This build's programs as loaded: name, id and tag.
    fn programs(&self) -> Vec<(&'static str, sys::ProgInfo)>;
    /// Makes the DNS fast path answer exactly `names` (by network and name).
    fn set_dns_names(
        &mut self,
        names: &std::collections::HashMap<DnsKey, DnsAddrs>,
    ) -> Result<(), DatapathError>;
    /// The maps pinned in the pin directory (those set aside too).
    fn pinned_maps(&self) -> Vec<PinnedMap>;
    /// Every published port in the maps, with its target.
    fn published(&self) -> Vec<(PortKey, PortTarget)>;
    /// What the published port counting into `slot` received (all CPUs).
    fn port_stats(&self, slot: u16) -> PortStats;
    /// Zeroes the counters of `slot` (before a port is given it).
    fn reset_port_stats(&mut self, slot: u16);
    /// What the datapath reports to monitors (`netpath_common::monitor` flags; 0: nothing).
    fn set_monitor(&mut self, flags: u32) -> Result<(), DatapathError>;
    /// Makes exactly `ports` (protocol, host port) the published ports host sockets may
    /// bind: their runtime holds them itself.
    fn set_bind_allowed(&mut self, _ports: &HashSet<(u8, u16)>) -> Result<(), DatapathError> {
        Ok(())
    }
    /// Drops what was set aside at load once every hook runs this build's programs.
    fn finish_migrations(&mut self) {}
    /// Counters and map occupancy.
    fn stats(&self) -> DatapathStats;
}

/// The loaded object and its maps. Links are pinned (see [`links`]); with no pin directory
/// (tests, benchmarks) they are held here instead and detach when this is dropped.
pub struct Datapath {
    ebpf: Ebpf,
    pin_dir: Option<PathBuf>,
    /// The cgroup v2 directory of the socket hooks.
    cgroup: Option<PathBuf>,
    /// Links of an unpinned datapath.
    held: std::collections::HashMap<Hook, FdLink>,
    /// Maps set aside at load (see [`migrate`]).
    migrations: Vec<Migration>,
    sizes: MapSizes,
    /// Id and tag of each program of this build, as loaded.
    loaded: std::collections::BTreeMap<&'static str, sys::ProgInfo>,
    /// The maps read whole, by descriptor ([`Datapath::scan`]).
    whole: Whole,
    /// The programs' log records, when they log.
    kernel_log: Option<kernel_log::KernelLog>,
    ports: HashMap<MapData, PortKey, PortTarget>,
    ports_any: Array<MapData, netpath_common::PortSlot>,
    /// The `PORTS_ANY` slots this process read or wrote: a publish reads its slot from here,
    /// not by a syscall (only this agent writes the slots).
    port_slots: std::collections::HashMap<u32, netpath_common::PortSlot>,
    host_addrs: HashMap<MapData, u32, u32>,
    flows: HashMap<MapData, FlowKey, FlowNat>,
    endpoints: HashMap<MapData, u32, EndpointInfo>,
    endpoints_by_addr: HashMap<MapData, u32, PeerInfo>,
    networks: HashMap<MapData, u32, NetworkInfo>,
    subnets: LpmTrie<MapData, u32, u32>,
    members: HashMap<MapData, MemberKey, u32>,
    snat: HashMap<MapData, FlowKey, SnatNat>,
    snat_rev: HashMap<MapData, FlowKey, SnatRev>,
    uplinks: HashMap<MapData, u32, u32>,
    host_loopback: HashMap<MapData, LoopbackKey, u8>,
    bind_allowed: HashMap<MapData, u32, u8>,
    stats: PerCpuArray<MapData, u64>,
    port_stats: PerCpuArray<MapData, PortStats>,
    monitor: Array<MapData, u32>,
    events: Option<aya::maps::RingBuf<MapData>>,
    dns_names: HashMap<MapData, DnsKey, DnsAddrs>,
    overlay_nets: HashMap<MapData, u32, netpath_common::OverlayNet>,
    overlay_vnis: HashMap<MapData, u32, u32>,
    remotes: HashMap<MapData, u32, netpath_common::RemoteEndpoint>,
    overlay_peers: HashMap<MapData, MemberKey, u32>,
    /// What `DNS_NAMES` holds, as last written ([`dns`]).
    dns_written: Option<std::collections::HashMap<DnsKey, DnsAddrs>>,
}

/// Descriptors of the maps read whole: published ports, flow tables.
struct Whole {
    dns_names: std::os::fd::OwnedFd,
    ports: std::os::fd::OwnedFd,
    ports_any: std::os::fd::OwnedFd,
    flows: std::os::fd::OwnedFd,
    snat: std::os::fd::OwnedFd,
    snat_rev: std::os::fd::OwnedFd,
}

/// A second descriptor of map `name` (array or hash).
fn map_fd(ebpf: &Ebpf, name: &'static str) -> Result<std::os::fd::OwnedFd, DatapathError> {
    use aya::maps::Map;
    let data = match ebpf.map(name).ok_or(DatapathError::MissingMap(name))? {
        Map::Array(d) | Map::HashMap(d) | Map::LruHashMap(d) => d,
        _ => {
            return Err(DatapathError::Pins(format!(
                "map {name}: not an array or hash"
            )))
        }
    };
    data.fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| DatapathError::Pins(format!("map {name}: {e}")))
}

macro_rules! take_map {
    ($ebpf:expr, $name:expr) => {{
        let map = $ebpf
            .take_map($name)
            .ok_or(DatapathError::MissingMap($name))?;
        map.try_into().map_err(|e| DatapathError::Map($name, e))?
    }};
}

impl Datapath {
    /// Loads the embedded object without pins (tests, benchmarks): nothing outlives it.
    pub fn load(pin_dir: Option<&Path>, sizes: MapSizes) -> Result<Self, DatapathError> {
        Datapath::open(pin_dir, sizes, false, 0)
    }

    /// Loads the embedded object. With `pin_dir`, maps are pinned there (and reused from
    /// there when compatible, see [`migrate`]) and so are links; `reset_flows` lets live maps
    /// whose layout changed start empty instead of refusing. The programs log at
    /// `log_level` (aya-log's numbering, 0: not at all; see [`kernel_log`]).
    pub fn open(
        pin_dir: Option<&Path>,
        sizes: MapSizes,
        reset_flows: bool,
        log_level: u8,
    ) -> Result<Self, DatapathError> {
        let mut migrations = match pin_dir {
            Some(dir) => migrate::prepare(dir, &sizes, reset_flows)?,
            None => Vec::new(),
        };
        let mut loader = sized_loader(pin_dir, &sizes);
        loader.override_global(kernel_log::LEVEL_GLOBAL, &log_level, true);
        let mut ebpf = loader.load(EBPF_OBJECT)?;
        let kernel_log = if log_level > 0 {
            Some(
                aya_log::EbpfLogger::init_with_logger(&mut ebpf, kernel_log::ToTracing)
                    .map_err(|e| DatapathError::Pins(format!("the kernel log: {e}")))?,
            )
        } else {
            None
        };
        for name in [
            programs::UPLINK_TC,
            programs::ENDPOINT_TC,
            programs::OVERLAY_TC,
        ] {
            let prog: &mut SchedClassifier = program(&mut ebpf, name)?;
            prog.load().map_err(|e| program_error(name, e))?;
        }
        for name in [programs::UPLINK_XDP, programs::XDP_PASS] {
            let prog: &mut Xdp = program(&mut ebpf, name)?;
            prog.load().map_err(|e| program_error(name, e))?;
        }
        for name in programs::SOCK {
            if name == programs::SOCK_BIND {
                let prog: &mut CgroupSock = program(&mut ebpf, name)?;
                prog.load().map_err(|e| program_error(name, e))?;
            } else {
                let prog: &mut CgroupSockAddr = program(&mut ebpf, name)?;
                prog.load().map_err(|e| program_error(name, e))?;
            }
        }
        if let Some(dir) = pin_dir {
            migrate::copy_live(dir, &mut migrations);
        }
        let whole = Whole {
            dns_names: map_fd(&ebpf, map_names::DNS_NAMES)?,
            ports: map_fd(&ebpf, map_names::PORTS)?,
            ports_any: map_fd(&ebpf, map_names::PORTS_ANY)?,
            flows: map_fd(&ebpf, map_names::FLOWS)?,
            snat: map_fd(&ebpf, map_names::SNAT)?,
            snat_rev: map_fd(&ebpf, map_names::SNAT_REV)?,
        };
        let mut dp = Datapath {
            whole,
            ports: take_map!(ebpf, map_names::PORTS),
            ports_any: take_map!(ebpf, map_names::PORTS_ANY),
            port_slots: std::collections::HashMap::new(),
            host_addrs: take_map!(ebpf, map_names::HOST_ADDRS),
            flows: take_map!(ebpf, map_names::FLOWS),
            endpoints: take_map!(ebpf, map_names::ENDPOINTS),
            endpoints_by_addr: take_map!(ebpf, map_names::ENDPOINTS_BY_ADDR),
            networks: take_map!(ebpf, map_names::NETWORKS),
            subnets: take_map!(ebpf, map_names::SUBNETS),
            members: take_map!(ebpf, map_names::MEMBERS),
            snat: take_map!(ebpf, map_names::SNAT),
            snat_rev: take_map!(ebpf, map_names::SNAT_REV),
            uplinks: take_map!(ebpf, map_names::UPLINKS),
            host_loopback: take_map!(ebpf, map_names::HOST_LOOPBACK),
            bind_allowed: take_map!(ebpf, map_names::BIND_ALLOWED),
            stats: take_map!(ebpf, map_names::STATS),
            port_stats: take_map!(ebpf, map_names::PORT_STATS),
            monitor: take_map!(ebpf, map_names::MONITOR),
            dns_names: take_map!(ebpf, map_names::DNS_NAMES),
            overlay_nets: take_map!(ebpf, map_names::OVERLAY_NETS),
            overlay_vnis: take_map!(ebpf, map_names::OVERLAY_VNIS),
            remotes: take_map!(ebpf, map_names::REMOTES),
            overlay_peers: take_map!(ebpf, map_names::OVERLAY_PEERS),
            dns_written: None,
            events: Some(take_map!(ebpf, map_names::EVENTS)),
            ebpf,
            pin_dir: pin_dir.map(Path::to_path_buf),
            cgroup: None,
            held: std::collections::HashMap::new(),
            migrations,
            sizes,
            loaded: std::collections::BTreeMap::new(),
            kernel_log,
        };
        for name in programs::ALL {
            if let Some(info) = dp.program_info(name) {
                dp.loaded.insert(name, info);
            }
        }
        Ok(dp)
    }

    /// The reader of the programs' log records, when they log (once).
    pub fn take_kernel_log(&mut self) -> Option<kernel_log::KernelLog> {
        self.kernel_log.take()
    }

    /// The ring buffer of monitor events (once: whoever takes it reads it).
    pub fn take_events(&mut self) -> Option<aya::maps::RingBuf<MapData>> {
        self.events.take()
    }

    /// The maps replaced at load.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// Drops the pins of the maps set aside at load: call once every hook runs this build's
    /// programs.
    pub fn finish_migrations(&mut self) {
        if let Some(dir) = &self.pin_dir {
            migrate::finish(dir, &self.migrations);
        }
    }

    /// The loaded TC program `name` (for BPF_PROG_TEST_RUN in tests and bench).
    pub fn classifier(
        &mut self,
        name: &'static str,
    ) -> Result<&mut SchedClassifier, DatapathError> {
        program(&mut self.ebpf, name)
    }

    /// The loaded XDP program `name`.
    pub fn xdp(&mut self, name: &'static str) -> Result<&mut Xdp, DatapathError> {
        program(&mut self.ebpf, name)
    }

    /// Every entry of a map read whole (in a few batch calls); `K` and `V` must be its types.
    fn scan<K: aya::Pod, V: aya::Pod>(
        &self,
        name: &'static str,
        fd: &std::os::fd::OwnedFd,
    ) -> Vec<(K, V)> {
        sys::lookup_batch(fd.as_fd()).unwrap_or_else(|e| {
            tracing::warn!(map = name, "reading the map: {e}");
            Vec::new()
        })
    }

    /// Id and tag of this build's program `name` as loaded.
    fn program_info(&mut self, name: &'static str) -> Option<sys::ProgInfo> {
        let fd = match name {
            programs::UPLINK_XDP | programs::XDP_PASS => {
                let p: &mut Xdp = program(&mut self.ebpf, name).ok()?;
                p.fd().ok()?.as_fd().try_clone_to_owned().ok()?
            }
            programs::SOCK_BIND => {
                let p: &mut CgroupSock = program(&mut self.ebpf, name).ok()?;
                p.fd().ok()?.as_fd().try_clone_to_owned().ok()?
            }
            n if programs::SOCK.contains(&n) => {
                let p: &mut CgroupSockAddr = program(&mut self.ebpf, name).ok()?;
                p.fd().ok()?.as_fd().try_clone_to_owned().ok()?
            }
            _ => {
                let p: &mut SchedClassifier = program(&mut self.ebpf, name).ok()?;
                p.fd().ok()?.as_fd().try_clone_to_owned().ok()?
            }
        };
        sys::prog_info(&fd).ok()
    }
}

impl DatapathOps for Datapath {
    fn publish(&mut self, key: PortKey, target: PortTarget) -> Result<(), DatapathError> {
        Datapath::publish(self, key, target)
    }
    fn unpublish(&mut self, key: &PortKey) -> Result<(), DatapathError> {
        Datapath::unpublish(self, key)
    }
    fn set_host_addrs(&mut self, addrs: &HashSet<Ipv4Addr>) -> Result<(), DatapathError> {
        Datapath::set_host_addrs(self, addrs)
    }
    fn flush_flows_of(&mut self, ifindex: u32, ports: &[PortKey]) -> usize {
        Datapath::flush_flows_of(self, ifindex, ports)
    }
    fn flush_interface_flows(&mut self, ifindex: u32, addr: Ipv4Addr) -> usize {
        Datapath::flush_interface_flows(self, ifindex, addr)
            + Datapath::flush_outbound_of(self, ifindex)
    }
    fn flush_flows_except(&mut self, live: &HashSet<u32>) -> usize {
        Datapath::flush_flows_except(self, live) + Datapath::flush_outbound_except(self, live)
    }
    fn set_uplinks(&mut self, uplinks: &[(u32, Ipv4Addr)]) -> Result<(), DatapathError> {
        Datapath::set_uplinks(self, uplinks)
    }
    fn expire(&mut self, now: u64) -> Expired {
        let (published, published_left) = Datapath::expire_flows(self, now);
        let (outbound, outbound_left) = Datapath::expire_outbound(self, now);
        Expired {
            published,
            outbound,
            published_left,
            outbound_left,
        }
    }
    fn add_network(&mut self, net: &Network) -> Result<(), DatapathError> {
        Datapath::add_network(self, net)
    }
    fn remove_network(&mut self, net: &Network) -> Result<(), DatapathError> {
        Datapath::remove_network(self, net)
    }
    fn members(&self, net_id: u32) -> Vec<u32> {
        Datapath::members(self, net_id)
    }
    fn set_members(&mut self, net_id: u32, ifindexes: &[u32]) -> Result<(), DatapathError> {
        Datapath::set_members(self, net_id, ifindexes)
    }
    fn add_attachment(&mut self, entry: &AttachmentEntry) -> Result<(), DatapathError> {
        Datapath::add_attachment(self, entry)
    }
    fn remove_attachment(&mut self, ifindex: u32, ip: Ipv4Addr) -> Result<(), DatapathError> {
        Datapath::remove_attachment(self, ifindex, ip)
    }
    fn attach_endpoint(&mut self, ifname: &str) -> Result<(), DatapathError> {
        self.ensure_link(&Hook::Endpoint(ifname.to_string()))
            .map(drop)
    }
    fn detach_endpoint(&mut self, ifname: &str) -> Result<(), DatapathError> {
        self.remove_link(&Hook::Endpoint(ifname.to_string()))
    }
    fn sync(&mut self, content: &Content) -> Result<SyncReport, DatapathError> {
        Datapath::sync(self, content)
    }
    fn sync_overlay(&mut self, content: &OverlayContent) -> Result<usize, DatapathError> {
        Datapath::sync_overlay(self, content)
    }
    fn ensure_hooks(
        &mut self,
        want: &Hooks,
        netns_cookie: u64,
    ) -> Result<HookReport, DatapathError> {
        Datapath::ensure_hooks(self, want, netns_cookie)
    }
    fn links(&self) -> Vec<LinkState> {
        Datapath::links(self)
    }
    fn programs(&self) -> Vec<(&'static str, sys::ProgInfo)> {
        self.loaded.iter().map(|(n, p)| (*n, p.clone())).collect()
    }
    fn set_dns_names(
        &mut self,
        names: &std::collections::HashMap<DnsKey, DnsAddrs>,
    ) -> Result<(), DatapathError> {
        Datapath::set_dns_names(self, names).map(drop)
    }
    fn pinned_maps(&self) -> Vec<PinnedMap> {
        let Some(dir) = &self.pin_dir else {
            return Vec::new();
        };
        links::pinned_names(dir)
            .into_iter()
            .filter_map(|name| {
                let fd = sys::obj_get(&dir.join(&name)).ok()?;
                let info = sys::map_info(fd.as_fd()).ok()?;
                Some(PinnedMap {
                    set_aside: name.ends_with(migrate::SET_ASIDE),
                    name,
                    id: info.id,
                    capacity: info.max_entries,
                })
            })
            .collect()
    }
    fn finish_migrations(&mut self) {
        Datapath::finish_migrations(self)
    }
    fn published(&self) -> Vec<(PortKey, PortTarget)> {
        Datapath::published(self)
    }
    fn port_stats(&self, slot: u16) -> PortStats {
        Datapath::port_stats(self, slot)
    }
    fn reset_port_stats(&mut self, slot: u16) {
        Datapath::reset_port_stats(self, slot)
    }
    fn set_bind_allowed(&mut self, ports: &HashSet<(u8, u16)>) -> Result<(), DatapathError> {
        let want: std::collections::HashMap<u32, u8> = ports
            .iter()
            .map(|(proto, port)| (netpath_common::port_any_index(*proto, be_port(*port)), 1))
            .collect();
        sync::sync_hash(map_names::BIND_ALLOWED, &mut self.bind_allowed, &want).map(drop)
    }
    fn set_monitor(&mut self, flags: u32) -> Result<(), DatapathError> {
        self.monitor
            .set(0, flags, 0)
            .map_err(|e| DatapathError::Map(map_names::MONITOR, e))
    }
    fn stats(&self) -> DatapathStats {
        Datapath::stats(self)
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, DatapathError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(DatapathError::MissingProgram(name))?
        .try_into()
        .map_err(|e| program_error(name, e))
}

/// Removing an absent key is what the caller wanted: not an error.
fn removed(name: &'static str, res: Result<(), MapError>) -> Result<(), DatapathError> {
    match res {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(DatapathError::Map(name, e)),
    }
}

/// A program error with its causes, on one line (aya's messages name the syscall; the cause
/// says why it failed).
fn program_error(name: &'static str, e: aya::programs::ProgramError) -> DatapathError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    DatapathError::Program(name, msg)
}

/// An address as the maps store it: network order.
pub fn be_addr(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

/// A port as the maps store it: network order.
pub fn be_port(p: u16) -> u16 {
    p.to_be()
}
