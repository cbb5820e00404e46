//! The kernel side as the agent sees it: load the embedded object, pin its maps, attach its
//! programs. One module per kernel concern, named as in `netpath-ebpf/src/`, each adding the
//! intent methods of its maps to [`Datapath`]; the maps themselves are private.
//!
//! | module | kernel | maps |
//! |---|---|---|
//! | [`ports`] | `ports.rs` | `PORTS`, `PORTS_ANY`, `HOST_ADDRS` (and their IPv6 twins) |
//! | [`flows`] | `flows.rs` | `FLOWS`, `FLOWS6`, `NEW_FLOW_RATE`, `NEW_FLOW_TAT` (`RECENT_FLOWS` is the kernel's alone) |
//! | [`nat46`] | `nat46.rs` | `NAT46`, `NAT46_REPLY` |
//! | [`firewall`] | `policy.rs` | `PUBLISHED_FROM`, `PUBLISHED_FROM6` |
//! | [`policy`] | `policy.rs` | `IPCACHE`, `IPCACHE_PREFIXES`, `POLICY`, `POLICY_RANGES`, `POLICY_ON`, `POLICY_CT` |
//! | [`snat`] | `snat.rs` | `SNAT`, `SNAT_REV`, `UPLINKS` |
//! | [`forward`] | `forward.rs` | `NETWORKS`, `SUBNETS`, `MEMBERS`, `HOST_LOOPBACK` (`hostgw.rs`) |
//! | [`endpoint`] | `endpoint.rs` | `ENDPOINTS`, `ENDPOINTS_BY_ADDR` |
//! | [`sock`] | `sock.rs` | `SOCK_NETNS`, `SOCK_REVNAT`, `SOCK_REVNAT6` |
//! | [`stats`] | `stats.rs` | `STATS` |
//!
//! Beside them: `open` (loading the object), `ops` ([`DatapathOps`], what the agent asks by
//! intent), [`links`] (where programs run, pinned links adopted and swapped atomically),
//! [`migrate`] (pinned maps across versions), [`sync`] (the whole datapath made to match a
//! desired content, as at start), [`sys`] (BPF syscalls aya does not expose).
//!
//! Everything is pinned under the agent's bpffs directory (maps by name, links under
//! `links/`), so the datapath keeps running when the agent stops, for any reason; only
//! `netpath uninstall` takes it down. The agent reaches all of it through [`DatapathOps`],
//! which [`fake::FakeDatapath`] also implements in memory, so its transactions are tested
//! without root.
use std::path::{Path, PathBuf};

use aya::{
    maps::{lpm_trie::LpmTrie, Array, HashMap, MapData, MapError, PerCpuArray},
    programs::links::FdLink,
    Ebpf, EbpfLoader,
};
use netpath_common::{
    map_names, map_sizes, DnsAddrs, DnsKey, EndpointInfo, FlowKey, FlowNat, LoopbackKey, MemberKey,
    NetworkInfo, NewFlowRate, PeerInfo, PortKey, PortStats, PortTarget, SnatNat, SnatRev,
};

mod anyport;
pub mod dns;
pub mod endpoint;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod firewall;
pub mod flows;
pub mod forward;
pub mod hook;
mod ipv6;
pub mod kept;
pub mod kernel_log;
mod keys;
pub mod links;
mod load;
pub mod migrate;
pub mod nat46;
mod open;
mod ops;
pub mod overlay;
pub mod policy;
pub mod ports;
pub mod programs;
mod replies;
mod slots;
pub mod snat;
pub mod sock;
pub mod stats;
mod subnets;
pub mod sync;
pub mod sys;

pub use anyport::{addr_of, any_addr, AnyKey, AnyPort, AnyPortKey, AnyPortTarget};
pub use endpoint::AttachmentEntry;
pub use kernel_log::KERNEL_LOG_TARGET;
pub use keys::{be_addr, be_port, flow_key};
pub(crate) use keys::{lpm_key, subnet_of};
pub use links::{Hook, HookReport, Hooks, LinkState};
use load::program_error;
pub use migrate::Migration;
use open::take_map;
pub use ops::{DatapathOps, Expired, PinnedMap};
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
    for (name, n) in sizes.overrides() {
        loader.map_max_entries(name, n);
    }
    loader
}

/// Loads the benchmark's object beside a datapath pinned in `pin_dir` (at `sizes`): its
/// programs see the same maps.
#[cfg(feature = "testing")]
pub fn load_bench_object(pin_dir: &Path, sizes: &MapSizes) -> Result<Ebpf, DatapathError> {
    Ok(sized_loader(Some(pin_dir), sizes).load(BENCH_EBPF_OBJECT)?)
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
    /// A published port whose host address and endpoint address are of different families.
    #[error("published port {0}: the endpoint has no address of the host address's family")]
    MixedFamilies(String),
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

impl MapSizes {
    /// The maps whose capacity the agent sets, and what it sets: the one list the loader and
    /// the pinned maps' comparison (`migrate`) both read.
    pub fn overrides(&self) -> [(&'static str, u32); 15] {
        [
            (map_names::PORTS, self.ports),
            (map_names::PORTS6, self.ports),
            (map_names::FLOWS, self.flows),
            (map_names::SNAT, self.flows),
            (map_names::SNAT_REV, self.flows),
            (map_names::POLICY_CT, self.flows),
            (map_names::FLOWS6, self.flows),
            (map_names::SNAT6, self.flows),
            (map_names::SNAT_REV6, self.flows),
            (map_names::POLICY_CT6, self.flows),
            (map_names::NAT46, self.flows),
            (map_names::NAT46_REPLY, self.flows),
            (map_names::ENDPOINTS, self.endpoints),
            (map_names::ENDPOINTS_BY_ADDR, self.endpoints),
            (map_names::MEMBERS, self.endpoints),
        ]
    }
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

/// The loaded object and its maps. Links are pinned (see [`links`]); with no pin directory
/// (tests, benchmarks) they are held here instead and detach when this is dropped.
pub struct Datapath {
    ebpf: Ebpf,
    /// This build's programs when kept from its last start ([`kept`]); else they are in
    /// `ebpf`.
    kept: load::Kept,
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
    /// The `PORTS_ANY` slots this process read or wrote ([`ports::PortMaps`]).
    port_slots: slots::SlotCache<u32>,
    host_addrs: HashMap<MapData, u32, u32>,
    flows: HashMap<MapData, FlowKey, FlowNat>,
    new_flow_rate: Array<MapData, NewFlowRate>,
    endpoints: HashMap<MapData, u32, EndpointInfo>,
    endpoints_by_addr: HashMap<MapData, u32, PeerInfo>,
    networks: HashMap<MapData, u32, NetworkInfo>,
    subnets: LpmTrie<MapData, u32, u32>,
    /// `NO_SUBNET`: both families' blocks no subnet overlaps ([`subnets::write_no_subnet`]).
    no_subnet: Array<MapData, netpath_common::no_subnet::Blocks>,
    published_from: LpmTrie<MapData, u32, u8>,
    ipcache: HashMap<MapData, u32, netpath_common::AddrIdentity>,
    ipcache_prefixes: LpmTrie<MapData, u32, u32>,
    policy: HashMap<MapData, netpath_common::PolicyKey, u32>,
    policy_ranges: LpmTrie<MapData, netpath_common::PolicyKey, u32>,
    policy_ct: HashMap<MapData, FlowKey, u32>,
    policy_on: Array<MapData, u32>,
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
    dns_names6: HashMap<MapData, DnsKey, DnsAddrs<netpath_common::In6>>,
    overlay_nets: HashMap<MapData, u32, netpath_common::OverlayNet>,
    overlay_vnis: HashMap<MapData, u32, u32>,
    remotes: HashMap<MapData, u32, netpath_common::RemoteEndpoint>,
    remotes6: HashMap<MapData, netpath_common::In6, netpath_common::RemoteEndpoint>,
    /// Other nodes' endpoints' IPv6 addresses → their IPv4 one (whose identity they carry).
    remote_addrs6: std::collections::HashMap<netpath_common::In6, u32>,
    overlay_peers: HashMap<MapData, MemberKey, netpath_common::Underlay>,
    /// IPv6's twins of the endpoint and network maps.
    v6: ipv6::Maps6,
    /// NAT46's flow tables.
    nat46: nat46::Maps46,
    /// One-to-one published ports' replies.
    replies: replies::Replies,
    /// What `DNS_NAMES` holds, as last written ([`dns`]).
    dns_written: dns::Written,
    /// Each network's `MEMBERS` slots, as this process last wrote them ([`forward`]).
    members_written: std::collections::HashMap<u32, Vec<u32>>,
    /// What this process last wrote to the policy maps (only the difference is written).
    policy_written: Option<policy::PolicyMaps>,
    /// Endpoints of IPv6 alone: their identities by IPv6 address, as the last policy gave them.
    identities6: std::collections::HashMap<netpath_common::In6, netpath_common::AddrIdentity>,
}

/// Descriptors of the maps read or written whole: published ports, flow tables, the ports'
/// counters (zeroed many at once).
struct Whole {
    dns_names: std::os::fd::OwnedFd,
    ports: std::os::fd::OwnedFd,
    ports_any: std::os::fd::OwnedFd,
    flows: std::os::fd::OwnedFd,
    ports6: std::os::fd::OwnedFd,
    ports_any6: std::os::fd::OwnedFd,
    flows6: std::os::fd::OwnedFd,
    snat: std::os::fd::OwnedFd,
    snat_rev: std::os::fd::OwnedFd,
    policy_ct: std::os::fd::OwnedFd,
    port_stats: std::os::fd::OwnedFd,
    replies: std::os::fd::OwnedFd,
    replies6: std::os::fd::OwnedFd,
}

/// Removing an absent key is what the caller wanted: not an error.
fn removed(name: &'static str, res: Result<(), MapError>) -> Result<(), DatapathError> {
    match res {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(DatapathError::Map(name, e)),
    }
}
