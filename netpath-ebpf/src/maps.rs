//! Every map the kernel programs use. All but the ring buffer and the monitor flags are
//! pinned by name under the agent's bpffs directory;
//! sizes here are defaults the agent overrides at load time.
use aya_ebpf::{
    macros::map,
    maps::{lpm_trie::LpmTrie, Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use netpath_common::{
    map_sizes, no_subnet, recent, tail, AddrIdentity, Counter, DnsAddrs, DnsKey, EndpointInfo,
    FlowKey, FlowNat, FragKey, In6, LoopbackKey, MemberKey, Nat46, Nat46Reply, NetworkInfo,
    NewFlowRate, OverlayNet, PeerInfo, PolicyKey, PortKey, PortReply, PortSlot, PortStats,
    PortTarget, RemoteEndpoint, SnatNat, SnatRev, SockRevKey, SockRevKey6, SockRevNat, Underlay,
    PORTS_ANY_LEN,
};

/// `BPF_F_NO_PREALLOC`, required by LPM tries.
const NO_PREALLOC: u32 = 1;

/// Published ports: (host address, host port, protocol) → endpoint.
#[map]
pub static PORTS: HashMap<PortKey, PortTarget> = HashMap::pinned(map_sizes::PORTS, 0);

/// Every host port, indexed by `port_any_index`: published on every host address, on some,
/// or not at all.
#[map]
pub static PORTS_ANY: Array<PortSlot> = Array::pinned(PORTS_ANY_LEN, 0);

/// Published ports whose runtime holds them itself, by `port_any_index`: host sockets may
/// bind these.
#[map]
pub static BIND_ALLOWED: HashMap<u32, u8> = HashMap::pinned(PORTS_ANY_LEN, NO_PREALLOC);

/// The agent's own IPv4 addresses (network order); a wildcard publish answers on each.
#[map]
pub static HOST_ADDRS: HashMap<u32, u32> = HashMap::pinned(map_sizes::HOST_ADDRS, 0);

/// NAT state of published flows, keyed by the reply's 5-tuple.
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowNat> = LruHashMap::pinned(map_sizes::FLOWS, 0);

/// How fast each CPU may begin new flows (the flood guard); 0 (unset): no limit.
#[map]
pub static NEW_FLOW_RATE: Array<NewFlowRate> = Array::pinned(1, 0);

/// Each CPU's place in that schedule.
#[map]
pub static NEW_FLOW_TAT: PerCpuArray<u64> = PerCpuArray::pinned(1, 0);

/// The flows seen lately, a byte per slot (`netpath_common::recent`): what a flood's frames
/// are refused by without a look into `FLOWS`.
#[map]
pub static RECENT_FLOWS: Array<[u8; 8]> = Array::pinned(recent::ENTRIES, 0);

/// Endpoints by the ifindex of their host-side veth.
#[map]
pub static ENDPOINTS: HashMap<u32, EndpointInfo> = HashMap::pinned(map_sizes::ENDPOINTS, 0);

/// Endpoints by address: where frames for a peer go.
#[map]
pub static ENDPOINTS_BY_ADDR: HashMap<u32, PeerInfo> = HashMap::pinned(map_sizes::ENDPOINTS, 0);

/// Networks by id.
#[map]
pub static NETWORKS: HashMap<u32, NetworkInfo> = HashMap::pinned(map_sizes::NETWORKS, 0);

/// Subnets of the networks → network id.
#[map]
pub static SUBNETS: LpmTrie<u32, u32> = LpmTrie::pinned(map_sizes::NETWORKS, NO_PREALLOC);

/// The blocks no network's subnet overlaps, an entry per family (`no_subnet`): where
/// `SUBNETS` and `SUBNETS6` are not asked.
#[map]
pub static NO_SUBNET: Array<no_subnet::Blocks> = Array::pinned(2, 0);

/// Members of each network, slots 0..NetworkInfo::members, for broadcast and multicast.
#[map]
pub static MEMBERS: HashMap<MemberKey, u32> = HashMap::pinned(map_sizes::ENDPOINTS, 0);

/// Host-gateway TCP ports served by sockets on the host's 127.0.0.1, per network.
#[map]
pub static HOST_LOOPBACK: HashMap<LoopbackKey, u8> = HashMap::pinned(4096, 0);

/// Outbound NAT by the original 5-tuple.
#[map]
pub static SNAT: LruHashMap<FlowKey, SnatNat> = LruHashMap::pinned(map_sizes::FLOWS, 0);

/// Outbound NAT by the reply's 5-tuple.
#[map]
pub static SNAT_REV: LruHashMap<FlowKey, SnatRev> = LruHashMap::pinned(map_sizes::FLOWS, 0);

/// Uplinks and their addresses (source of outbound NAT).
#[map]
pub static UPLINKS: HashMap<u32, u32> = HashMap::pinned(64, 0);

/// The agent's netns cookie: the socket hooks act only on sockets of that namespace.
#[map]
pub static SOCK_NETNS: Array<u64> = Array::pinned(1, 0);

/// What each socket asked for, so replies and peer names show the published address.
#[map]
pub static SOCK_REVNAT: LruHashMap<SockRevKey, SockRevNat> =
    LruHashMap::pinned(map_sizes::FLOWS, 0);

/// Per-CPU packet counters, indexed by [`Counter`].
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::pinned(Counter::COUNT, 0);

/// What each published port received, per CPU, by its `PortTarget::stats` slot.
#[map]
pub static PORT_STATS: PerCpuArray<PortStats> = PerCpuArray::pinned(map_sizes::PORT_STATS, 0);

/// Events for `netpath monitor` (drops, traces). Not pinned: it belongs to these programs
/// (an agent that keeps them across a restart takes it from them, see `datapath::kept`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(map_sizes::EVENTS, 0);

/// What `EVENTS` gets (`netpath_common::monitor` flags); 0 when no monitor listens, and then
/// each report site costs one array read. Not pinned, as `EVENTS`.
#[map]
pub static MONITOR: Array<u32> = Array::with_max_entries(1, 0);

/// The names the DNS fast path answers, by network.
#[map]
pub static DNS_NAMES: HashMap<DnsKey, DnsAddrs> =
    HashMap::pinned(map_sizes::DNS_NAMES, NO_PREALLOC);

/// The names the DNS fast path answers AAAA for: their IPv6 addresses.
#[map]
pub static DNS_NAMES6: HashMap<DnsKey, DnsAddrs<In6>> =
    HashMap::pinned(map_sizes::DNS_NAMES, NO_PREALLOC);

/// Overlay networks of this node by network id.
#[map]
pub static OVERLAY_NETS: HashMap<u32, OverlayNet> = HashMap::pinned(map_sizes::NETWORKS, 0);

/// Overlay networks by VNI → network id.
#[map]
pub static OVERLAY_VNIS: HashMap<u32, u32> = HashMap::pinned(map_sizes::NETWORKS, 0);

/// Endpoints on other nodes by address.
#[map]
pub static REMOTES: HashMap<u32, RemoteEndpoint> = HashMap::pinned(map_sizes::REMOTES, 0);

/// IPv6 addresses of endpoints on other nodes, as `REMOTES`.
#[map]
pub static REMOTES6: HashMap<In6, RemoteEndpoint> =
    HashMap::pinned(map_sizes::REMOTES, NO_PREALLOC);

/// The published ports' firewall: source prefixes → `published_from` verdict (empty: no list).
#[map]
pub static PUBLISHED_FROM: LpmTrie<u32, u8> =
    LpmTrie::pinned(map_sizes::PUBLISHED_FROM, NO_PREALLOC);

/// Addresses' identities for network policy, exact: endpoints (here and on other nodes) and
/// /32 ipBlocks, each with the directions policies select it in.
#[map]
pub static IPCACHE: HashMap<u32, AddrIdentity> = HashMap::pinned(map_sizes::IPCACHE, NO_PREALLOC);

/// ipBlock prefixes shorter than /32 → identity, for addresses `IPCACHE` does not hold.
#[map]
pub static IPCACHE_PREFIXES: LpmTrie<u32, u32> =
    LpmTrie::pinned(map_sizes::IPCACHE_PREFIXES, NO_PREALLOC);

/// Policy rules for one port: who may reach whom (`PolicyKey`) → the policy's number.
#[map]
pub static POLICY: HashMap<PolicyKey, u32> = HashMap::pinned(map_sizes::POLICY, NO_PREALLOC);

/// Policy rules for blocks of ports, whole protocols and every port (`PolicyKey` prefixes).
#[map]
pub static POLICY_RANGES: LpmTrie<PolicyKey, u32> =
    LpmTrie::pinned(map_sizes::POLICY_RANGES, NO_PREALLOC);

/// Connections policy allowed on the paths with no flow state of their own (their replies
/// pass on one lookup).
#[map]
pub static POLICY_CT: LruHashMap<FlowKey, u32> = LruHashMap::pinned(map_sizes::FLOWS, 0);

/// `[0]`: `policy_on` flags; 0 while no policy is in force (then `admit` reads nothing more).
#[map]
pub static POLICY_ON: Array<u32> = Array::pinned(1, 0);

/// Other nodes with members of each overlay network (their underlay addresses).
#[map]
pub static OVERLAY_PEERS: HashMap<MemberKey, Underlay> =
    HashMap::pinned(map_sizes::NETWORKS * map_sizes::PEERS_PER_NETWORK, 0);

/// The programs entry points hand packets on to (`netpath_common::tail` slots). Pinned like
/// the other maps: the kernel empties a program array once no process and no pin holds it,
/// so an unpinned one would stop IPv6 the moment the agent exits. Each load fills it with
/// its own programs (an upgrade's old programs, until their hooks are swapped, call the new).
#[map]
pub static TAIL_CALLS: ProgramArray = ProgramArray::pinned(tail::SLOTS, 0);

/// The XDP programs entry points hand packets on to, by the same slots (a program array
/// holds programs of one type).
#[map]
pub static TAIL_CALLS_XDP: ProgramArray = ProgramArray::pinned(tail::SLOTS, 0);

// IPv6's twins of the maps above (`map_names` says what each holds).

/// Endpoints' IPv6 addresses by the ifindex of their host-side veth.
#[map]
pub static ENDPOINTS6: HashMap<u32, EndpointInfo<In6>> = HashMap::pinned(map_sizes::ENDPOINTS, 0);

/// Endpoints by IPv6 address.
#[map]
pub static ENDPOINTS_BY_ADDR6: HashMap<In6, PeerInfo> = HashMap::pinned(map_sizes::ENDPOINTS, 0);

/// Dual-stack networks' IPv6 side by id.
#[map]
pub static NETWORKS6: HashMap<u32, NetworkInfo<In6>> = HashMap::pinned(map_sizes::NETWORKS, 0);

/// IPv6 subnets of the networks → network id.
#[map]
pub static SUBNETS6: LpmTrie<In6, u32> = LpmTrie::pinned(map_sizes::NETWORKS, NO_PREALLOC);

/// IPv6 addresses' identities for network policy, exact.
#[map]
pub static IPCACHE6: HashMap<In6, AddrIdentity> = HashMap::pinned(map_sizes::IPCACHE, NO_PREALLOC);

/// IPv6 ipBlock prefixes shorter than /128 → identity.
#[map]
pub static IPCACHE_PREFIXES6: LpmTrie<In6, u32> =
    LpmTrie::pinned(map_sizes::IPCACHE_PREFIXES, NO_PREALLOC);

/// IPv6 connections policy allowed on the stateless paths.
#[map]
pub static POLICY_CT6: LruHashMap<FlowKey<In6>, u32> = LruHashMap::pinned(map_sizes::FLOWS, 0);

/// Outbound NAT of IPv6 by the original 5-tuple.
#[map]
pub static SNAT6: LruHashMap<FlowKey<In6>, SnatNat<In6>> = LruHashMap::pinned(map_sizes::FLOWS, 0);

/// Outbound NAT of IPv6 by the reply's 5-tuple.
#[map]
pub static SNAT_REV6: LruHashMap<FlowKey<In6>, SnatRev<In6>> =
    LruHashMap::pinned(map_sizes::FLOWS, 0);

/// Uplinks and their IPv6 addresses (source of IPv6's outbound NAT).
#[map]
pub static UPLINKS6: HashMap<u32, In6> = HashMap::pinned(64, 0);

/// IPv6's published ports on one host address, as `PORTS`.
#[map]
pub static PORTS6: HashMap<PortKey<In6>, PortTarget<In6>> = HashMap::pinned(map_sizes::PORTS, 0);

/// IPv6's published ports on every host address (`[::]`), a slot per protocol and port, as
/// `PORTS_ANY`.
#[map]
pub static PORTS_ANY6: Array<PortSlot<In6>> = Array::pinned(PORTS_ANY_LEN, 0);

/// The host's own IPv6 addresses, where a publish on every address answers.
#[map]
pub static HOST_ADDRS6: HashMap<In6, u32> = HashMap::pinned(map_sizes::HOST_ADDRS, 0);

/// Translated IPv6 flows of published ports, as `FLOWS`.
#[map]
pub static FLOWS6: LruHashMap<FlowKey<In6>, FlowNat<In6>> = LruHashMap::pinned(map_sizes::FLOWS, 0);

/// The published ports' firewall for IPv6 clients, as `PUBLISHED_FROM`.
#[map]
pub static PUBLISHED_FROM6: LpmTrie<In6, u8> =
    LpmTrie::pinned(map_sizes::PUBLISHED_FROM, NO_PREALLOC);

/// What IPv6 sockets asked for, as `SOCK_REVNAT`.
#[map]
pub static SOCK_REVNAT6: LruHashMap<SockRevKey6, SockRevNat<In6>> =
    LruHashMap::pinned(map_sizes::FLOWS, 0);

/// NAT46 of published ports: an IPv6 client's flow → the IPv4 source it is given.
#[map]
pub static NAT46: LruHashMap<FlowKey<In6>, Nat46> = LruHashMap::pinned(map_sizes::FLOWS, 0);

/// NAT46's replies by their IPv4 5-tuple → the IPv6 flow they answer.
#[map]
pub static NAT46_REPLY: LruHashMap<FlowKey, Nat46Reply> = LruHashMap::pinned(map_sizes::FLOWS, 0);

/// How the replies of one-to-one published ports leave: (endpoint address, container port,
/// protocol) → host address and port, for the replies of flows translated with no state.
#[map]
pub static REPLIES: HashMap<PortKey, PortReply> = HashMap::pinned(map_sizes::PORTS, 0);

/// IPv6's, as `REPLIES`.
#[map]
pub static REPLIES6: HashMap<PortKey<In6>, PortReply<In6>> = HashMap::pinned(map_sizes::PORTS, 0);

/// How many `REPLIES` entries of either family have a (protocol, container port), by
/// `port_any_index`: a packet from any other port is no such reply, and costs one array read.
#[map]
pub static REPLY_PORTS: Array<u32> = Array::pinned(PORTS_ANY_LEN, 0);

/// The first fragment's ports of each fragmented IPv4 datagram in flight (`frag.rs`).
#[map]
pub static FRAGMENTS: LruHashMap<FragKey, [u16; 2]> = LruHashMap::pinned(map_sizes::FRAGMENTS, 0);

/// IPv6's, as `FRAGMENTS`.
#[map]
pub static FRAGMENTS6: LruHashMap<FragKey<In6>, [u16; 2]> =
    LruHashMap::pinned(map_sizes::FRAGMENTS, 0);
