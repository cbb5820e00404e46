//! Types shared by the kernel programs (`netpath-ebpf`) and the agent (`netpath-user`).
//!
//! Every map key and value is `#[repr(C)]` with explicit padding fields, so that a key built
//! in userspace hashes to the same bytes as one built in the kernel. Addresses and ports are
//! stored in **network byte order** everywhere (keys and values alike); the field docs repeat
//! it. With feature `user`, each type implements `aya::Pod` so it can go through aya's typed maps.
#![no_std]

/// Names of the pinned maps, as the kernel object declares them and the agent opens them.
pub mod map_names {
    /// [`crate::PortKey`] → [`crate::PortTarget`]: ports published on one host address.
    pub const PORTS: &str = "PORTS";
    /// Array of [`crate::PortSlot`] by [`crate::port_any_index`]: ports published on every
    /// host address (Docker's `0.0.0.0`, the common case) — an array lookup, no hashing —
    /// and, for the others, whether `PORTS` has the port on some address at all.
    pub const PORTS_ANY: &str = "PORTS_ANY";
    /// Host IPv4 address (network order `u32`) → `u32` flags: the agent's own addresses.
    pub const HOST_ADDRS: &str = "HOST_ADDRS";
    /// [`crate::FlowKey`] → [`crate::FlowNat`]: LRU table of translated flows.
    pub const FLOWS: &str = "FLOWS";
    /// Host-side veth ifindex (`u32`) → [`crate::EndpointInfo`].
    pub const ENDPOINTS: &str = "ENDPOINTS";
    /// Endpoint IPv4 address (network order `u32`) → [`crate::PeerInfo`]: where to forward.
    pub const ENDPOINTS_BY_ADDR: &str = "ENDPOINTS_BY_ADDR";
    /// Network id (`u32`) → [`crate::NetworkInfo`].
    pub const NETWORKS: &str = "NETWORKS";
    /// LPM trie of network subnets → network id (`u32`).
    pub const SUBNETS: &str = "SUBNETS";
    /// [`crate::MemberKey`] → host-side veth ifindex (`u32`): a network's members, for
    /// broadcast and multicast.
    pub const MEMBERS: &str = "MEMBERS";
    /// [`crate::LoopbackKey`] → `u8`: host-gateway TCP ports served by the host's loopback.
    pub const HOST_LOOPBACK: &str = "HOST_LOOPBACK";
    /// [`crate::port_any_index`] (`u32`) → `u8` 1: a published port its runtime holds itself
    /// (podman binds the ports it publishes through CNI), which host sockets may bind.
    pub const BIND_ALLOWED: &str = "BIND_ALLOWED";
    /// Outbound source NAT, by the original 5-tuple ([`crate::FlowKey`] → [`crate::SnatNat`]).
    pub const SNAT: &str = "SNAT";
    /// Outbound source NAT, by the reply's 5-tuple on the uplink ([`crate::FlowKey`] →
    /// [`crate::SnatRev`]).
    pub const SNAT_REV: &str = "SNAT_REV";
    /// Uplink ifindex (`u32`) → its IPv4 address (network order `u32`): source of outbound NAT.
    pub const UPLINKS: &str = "UPLINKS";
    /// Array of one `u64`: the netns cookie of the agent; socket hooks act only there.
    pub const SOCK_NETNS: &str = "SOCK_NETNS";
    /// [`crate::SockRevKey`] → [`crate::SockRevNat`]: what a socket asked for, by socket.
    pub const SOCK_REVNAT: &str = "SOCK_REVNAT";
    /// Per-CPU array of `u64` counters indexed by [`crate::Counter`].
    pub const STATS: &str = "STATS";
    /// Per-CPU array of [`crate::PortStats`] by [`crate::PortTarget::stats`]: what each
    /// published port received.
    pub const PORT_STATS: &str = "PORT_STATS";
    /// Ring buffer of [`crate::Event`]s for `netpath monitor` (not pinned).
    pub const EVENTS: &str = "EVENTS";
    /// Array of one `u32`, [`crate::monitor`] flags: what goes into `EVENTS` (not pinned).
    pub const MONITOR: &str = "MONITOR";
    /// [`crate::DnsKey`] → [`crate::DnsAddrs`]: the names the DNS fast path answers.
    pub const DNS_NAMES: &str = "DNS_NAMES";
    /// Overlay networks by network id: VNI, VXLAN device, how many other nodes are members.
    pub const OVERLAY_NETS: &str = "OVERLAY_NETS";
    /// Overlay networks by VNI (decapsulated traffic finds its network here).
    pub const OVERLAY_VNIS: &str = "OVERLAY_VNIS";
    /// Endpoints on other nodes by address: which node (its underlay address), which network.
    pub const REMOTES: &str = "REMOTES";
    /// The other nodes with endpoints on each overlay network, slots 0..OverlayNet::peers
    /// (broadcasts go to each).
    pub const OVERLAY_PEERS: &str = "OVERLAY_PEERS";
}

/// Default sizes of the maps; the agent may override them at load time.
pub mod map_sizes {
    pub const PORTS: u32 = 131_072;
    pub const HOST_ADDRS: u32 = 256;
    pub const FLOWS: u32 = 262_144;
    pub const ENDPOINTS: u32 = 16_384;
    pub const NETWORKS: u32 = 1024;
    /// Members of one network that receive its broadcasts (the datapath's loop bound).
    pub const MEMBERS_PER_NETWORK: u32 = 64;
    /// Published ports counted one by one (slot 0 is "not counted").
    pub const PORT_STATS: u32 = 16384;
    /// Bytes of the monitor's ring buffer.
    pub const EVENTS: u32 = 256 * 1024;
    /// Names the DNS fast path knows (of every network).
    pub const DNS_NAMES: u32 = 65_536;
    /// Endpoints on other nodes (all overlay networks together).
    pub const REMOTES: u32 = 65_536;
    /// Other nodes one overlay network's broadcasts reach.
    pub const PEERS_PER_NETWORK: u32 = 64;
}

/// IP protocol numbers netpath translates.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

/// Entries of the `PORTS_ANY` array: TCP ports, then UDP ports.
pub const PORTS_ANY_LEN: u32 = 2 * 65536;

/// Index into `PORTS_ANY` of (protocol, port in network order). [`port_any_key`] is its inverse.
#[inline(always)]
pub fn port_any_index(proto: u8, port_be: u16) -> u32 {
    (u32::from(proto == proto::UDP) << 16) | u32::from(u16::from_be(port_be))
}

/// The (protocol, port in network order) of a `PORTS_ANY` index: the inverse of
/// [`port_any_index`].
#[inline(always)]
pub fn port_any_key(index: u32) -> (u8, u16) {
    let proto = if index >> 16 == 1 {
        proto::UDP
    } else {
        proto::TCP
    };
    (proto, (index as u16).to_be())
}

/// Key of the published-ports map: where a client sends a packet.
///
/// `addr` is the host address the port is published on, network order; `0` stands for every
/// host address (Docker's `0.0.0.0`). `port` is the host port, network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PortKey {
    /// Host IPv4 address, network order (0 = any host address).
    pub addr: u32,
    /// Host port, network order.
    pub port: u16,
    /// IP protocol ([`proto::TCP`] or [`proto::UDP`]).
    pub proto: u8,
    pub _pad: u8,
}

/// Value of the published-ports map: the endpoint that serves a published port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortTarget {
    /// Endpoint IPv4 address, network order.
    pub addr: u32,
    /// Container port, network order.
    pub port: u16,
    /// This port's slot in `PORT_STATS` (0: not counted on its own).
    pub stats: u16,
    /// Ifindex of the endpoint's host-side veth (redirect target).
    pub ifindex: u32,
    /// MAC of the endpoint's interface (destination of the DNAT'd frame).
    pub mac: [u8; 6],
    /// MAC of the host-side veth (source of the DNAT'd frame: the endpoint's gateway).
    pub gw_mac: [u8; 6],
}

/// A slot of `PORTS_ANY`: one (protocol, port) of the host. One array read decides what most
/// packets need: published on every host address (`target.ifindex` not 0), published on some
/// addresses only (`specific` of them, in `PORTS`), or not published at all (neither: no hash
/// lookup). A port is never published both ways at once.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortSlot {
    pub target: PortTarget,
    /// How many host addresses publish this port in `PORTS`.
    pub specific: u32,
}

impl PortSlot {
    /// Whether the port is published in any way (outbound NAT must not hand it out).
    #[inline(always)]
    pub fn published(&self) -> bool {
        self.target.ifindex != 0 || self.specific != 0
    }
}

/// Key of the flow table: a connection's 5-tuple as its *replies* leave the endpoint
/// (source = endpoint address and container port, destination = the client).
/// All fields network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src_addr: u32,
    pub dst_addr: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    /// Padding as integers, not a byte array: zeroing an array costs the kernel programs a
    /// call to a byte-by-byte `memset` on every key they build.
    pub _pad: u8,
    pub _pad2: u16,
}

impl FlowKey {
    /// The 5-tuple of `proto` from `src_addr:src_port` to `dst_addr:dst_port` (network order),
    /// padding zeroed.
    #[inline(always)]
    pub const fn new(
        src_addr: u32,
        src_port: u16,
        dst_addr: u32,
        dst_port: u16,
        proto: u8,
    ) -> Self {
        FlowKey {
            src_addr,
            dst_addr,
            src_port,
            dst_port,
            proto,
            _pad: 0,
            _pad2: 0,
        }
    }

    /// The same flow seen from the other end: its replies' 5-tuple.
    #[inline(always)]
    pub const fn reversed(&self) -> Self {
        FlowKey::new(
            self.dst_addr,
            self.dst_port,
            self.src_addr,
            self.src_port,
            self.proto,
        )
    }

    /// The 5-tuple of the replies to this flow once its source is translated to
    /// `addr:port` (outbound NAT): from the destination, to `addr:port`.
    #[inline(always)]
    pub const fn reply_to(&self, addr: u32, port: u16) -> Self {
        FlowKey::new(self.dst_addr, self.dst_port, addr, port, self.proto)
    }
}

/// Value of the flow table: what a reply's source is translated back to, and when the
/// flow was last seen (the agent expires idle flows).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowNat {
    /// Host address the client connected to, network order.
    pub addr: u32,
    /// Host port the client connected to, network order.
    pub port: u16,
    pub _pad: u16,
    /// Ifindex of the endpoint's host-side veth.
    pub ifindex: u32,
    /// For an endpoint reaching its own published port (self-hairpin, whose source was
    /// replaced by its gateway so the reply leaves it): the endpoint's address, which the
    /// reply's destination is translated back to. 0 otherwise.
    pub client: u32,
    /// [`flow_flags`].
    pub flags: u32,
    /// The uplink the client's packets arrive on: replies go back out of it, to the
    /// neighbour they came from (`via_macs`), without a route lookup. 0 (hairpin, flows of
    /// an older build): the route decides.
    pub via: u32,
    /// `bpf_ktime_get_coarse_ns` of the last packet either way, refreshed at most every
    /// [`FLOW_REFRESH_NS`].
    pub last_seen: u64,
    /// The replies' Ethernet source (the uplink's MAC) and destination (the neighbour the
    /// client's packets came from), as they are written into the frame.
    pub via_macs: ReplyMacs,
    pub _pad3: u32,
}

/// Source and destination MACs of a reply sent without a route lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReplyMacs {
    pub src: [u8; 6],
    pub dst: [u8; 6],
}

impl FlowNat {
    /// Whether `other` translates the same way (times and flags aside).
    #[inline(always)]
    pub fn same_translation(&self, other: &FlowNat) -> bool {
        self.addr == other.addr
            && self.port == other.port
            && self.ifindex == other.ifindex
            && self.client == other.client
            && self.via == other.via
            && self.via_macs == other.via_macs
    }
}

/// Flags of published-port flows.
pub mod flow_flags {
    /// A TCP FIN or RST was seen: the flow is closing.
    pub const CLOSING: u32 = 1;
}

/// How stale a flow's `last_seen` may get before a packet refreshes it: a write to the flow
/// at most this often, not one per packet.
pub const FLOW_REFRESH_NS: u64 = 1_000_000_000;

/// Value of the endpoints map, keyed by the host-side veth's ifindex: one attachment of an
/// endpoint to one network.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EndpointInfo {
    /// The endpoint's IPv4 address on this network, network order.
    pub addr: u32,
    /// Id of the network (key of `NETWORKS`).
    pub network: u32,
    /// The endpoint interface's MAC.
    pub mac: [u8; 6],
    /// The host-side veth's MAC (answers ARP for the gateway and peers).
    pub host_mac: [u8; 6],
}

/// Value of `ENDPOINTS_BY_ADDR`: how to deliver to an endpoint address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PeerInfo {
    /// Ifindex of the peer's host-side veth (`bpf_redirect_peer` target).
    pub ifindex: u32,
    /// Id of the peer's network.
    pub network: u32,
    /// The peer interface's MAC (destination of forwarded frames).
    pub mac: [u8; 6],
    /// The peer's host-side veth MAC (source of forwarded frames: its gateway's MAC).
    pub host_mac: [u8; 6],
}

/// Network flags.
pub mod net_flags {
    /// `--internal`: nothing leaves the network.
    pub const INTERNAL: u32 = 1;
    /// `--opt icc=false`: endpoints of the network cannot reach each other.
    pub const NO_ICC: u32 = 2;
    /// `--driver overlay`: the network spans nodes (`OVERLAY_NETS` has its VNI).
    pub const OVERLAY: u32 = 4;
    /// `-o masquerade=false` (Docker's `enable_ip_masquerade=false`, `gateway_mode_ipv4=routed`):
    /// endpoints' traffic leaves with their own addresses, and uplinks let traffic routed at
    /// the network's addresses through.
    pub const ROUTED: u32 = 8;
}

/// Value of `NETWORKS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NetworkInfo {
    /// Subnet address, network order.
    pub subnet: u32,
    /// Subnet mask, network order.
    pub mask: u32,
    /// Gateway (a host address), network order.
    pub gateway: u32,
    /// [`net_flags`].
    pub flags: u32,
    /// Number of `MEMBERS` slots in use (0..members).
    pub members: u32,
    /// The host-gateway address (host.docker.internal), network order: the host.
    pub host_gateway: u32,
}

impl NetworkInfo {
    /// The subnet's broadcast address, network order.
    #[inline(always)]
    pub fn broadcast(&self) -> u32 {
        self.subnet | !self.mask
    }
}

/// Key of `MEMBERS`: slot `slot` of network `network`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MemberKey {
    pub network: u32,
    pub slot: u32,
}

/// Value of `OVERLAY_NETS`: an overlay network on this node.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OverlayNet {
    /// The VXLAN network identifier on the wire.
    pub vni: u32,
    /// Ifindex of this node's VXLAN device (external mode: one for every network).
    pub device: u32,
    /// Number of `OVERLAY_PEERS` slots in use (0..peers).
    pub peers: u32,
    /// This node's underlay address, network order: the outer source (0: the route's).
    pub local: u32,
}

/// Value of `REMOTES` (keyed by the endpoint's address, network order): where an endpoint on
/// another node lives.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RemoteEndpoint {
    /// The node's underlay address, network order (the outer destination).
    pub node: u32,
    /// Id of the endpoint's network on this node (key of `NETWORKS`).
    pub network: u32,
}

/// The VXLAN UDP port (IANA's).
pub const VXLAN_PORT: u16 = 4789;
/// Bytes VXLAN adds over IPv4: outer IPv4 (20), UDP (8), VXLAN (8), inner Ethernet (14).
pub const VXLAN_OVERHEAD: u32 = 50;

/// First port of outbound NAT (the agent reserves the range from the host's ephemeral ports).
pub const SNAT_PORT_MIN: u16 = 40000;
/// Number of outbound NAT ports.
pub const SNAT_PORTS: u32 = 20000;

/// Flags of outbound NAT entries.
pub mod snat_flags {
    /// A TCP FIN or RST was seen: the flow is closing.
    pub const CLOSING: u32 = 1;
}

/// Value of `SNAT`: the translated source of an outbound flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SnatNat {
    /// Uplink address, network order.
    pub addr: u32,
    /// Allocated port (or ICMP id), network order.
    pub port: u16,
    pub _pad: u16,
    /// [`snat_flags`].
    pub flags: u32,
    pub _pad2: u32,
    /// `bpf_ktime_get_ns` of the last outbound packet.
    pub last_seen: u64,
}

/// Value of `SNAT_REV`: where a reply to an outbound flow goes back to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SnatRev {
    /// Endpoint address, network order.
    pub addr: u32,
    /// Endpoint port (or ICMP id), network order.
    pub port: u16,
    pub _pad: u16,
    /// Endpoint's host-side veth.
    pub ifindex: u32,
    /// [`snat_flags`].
    pub flags: u32,
    pub mac: [u8; 6],
    pub host_mac: [u8; 6],
    pub _pad2: u32,
    /// `bpf_ktime_get_ns` of the last reply.
    pub last_seen: u64,
}

/// Key of `HOST_LOOPBACK`: a network and a port of its host-gateway (network order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LoopbackKey {
    pub network: u32,
    pub port: u16,
    pub _pad: u16,
}

/// Key of `SOCK_REVNAT`: a socket and the endpoint address its hook sent it to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SockRevKey {
    /// Socket cookie.
    pub cookie: u64,
    /// Endpoint address, network order.
    pub addr: u32,
    /// Container port, network order.
    pub port: u16,
    pub _pad: u16,
}

/// Value of `SOCK_REVNAT`: the published address and port the socket asked for.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SockRevNat {
    /// Network order.
    pub addr: u32,
    /// Network order.
    pub port: u16,
    pub _pad: u16,
}

/// Value of `PORT_STATS`: what a published port received (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortStats {
    pub packets: u64,
    pub bytes: u64,
}

/// What `netpath monitor` asks the datapath for (`MONITOR[0]`).
pub mod monitor {
    /// Every dropped packet, with its reason.
    pub const DROPS: u32 = 1;
    /// Every translation (DNAT, reverse NAT, hairpin, outbound SNAT and its replies).
    pub const TRACE: u32 = 2;
}

/// Kinds of [`Event`].
pub mod event {
    /// A packet dropped; `what` is the [`crate::Counter`] of the reason.
    pub const DROP: u8 = 1;
    /// A packet translated; `what` is a [`trace`] kind.
    pub const TRACE: u8 = 2;

    /// What a trace event saw.
    pub mod trace {
        /// To a published port's endpoint (the new destination in `nat_*`).
        pub const DNAT: u8 = 1;
        /// A reply of a published port (its new source in `nat_*`).
        pub const REVERSE_NAT: u8 = 2;
        /// An endpoint to a published port through a host address.
        pub const HAIRPIN: u8 = 3;
        /// Outbound, source translated (the new source in `nat_*`).
        pub const SNAT: u8 = 4;
        /// A reply of an outbound flow (its new destination in `nat_*`).
        pub const SNAT_REPLY: u8 = 5;
    }
}

/// A packet the datapath reports to `netpath monitor`, through the `EVENTS` ring buffer.
/// Addresses and ports network order, as seen before translation.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Event {
    /// [`event::DROP`] or [`event::TRACE`].
    pub kind: u8,
    /// The drop reason ([`Counter`] index) or the trace kind.
    pub what: u8,
    pub proto: u8,
    pub _pad: u8,
    /// The interface the packet came in on.
    pub ifindex: u32,
    pub src_addr: u32,
    pub dst_addr: u32,
    pub src_port: u16,
    pub dst_port: u16,
    /// What a translation wrote (address and port), for traces.
    pub nat_addr: u32,
    pub nat_port: u16,
    pub _pad2: u16,
    pub _pad3: u32,
}

/// Declares [`Counter`] from one list: each variant with its index, doc and the name
/// `netpath stats` and the metrics show, so the enum, [`Counter::COUNT`], [`Counter::ALL`]
/// and [`Counter::name`] can never disagree.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $variant:ident = $index:literal, $name:literal;)*) => {
        /// Packet counters and drop reasons, the index into the per-CPU `STATS` array.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Counter {
            $($(#[doc = $doc])* $variant = $index,)*
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];
            /// Number of counters; the size of the `STATS` array.
            pub const COUNT: u32 = Counter::ALL.len() as u32;

            /// Name shown by `netpath stats` (and in metrics).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)*
                }
            }
        }
    };
}

counters! {
    /// Published-port packets translated on the TC path.
    DnatTc = 0, "dnat_tc";
    /// Published-port packets translated on the XDP path.
    DnatXdp = 1, "dnat_xdp";
    /// Replies translated back to the published address.
    RevNat = 2, "reverse_nat";
    /// Packets handed on untouched.
    Pass = 3, "pass";
    /// ARP requests answered for an endpoint.
    ArpReply = 4, "arp_reply";
    /// Dropped: source address or MAC not the endpoint's own.
    DropSpoof = 5, "drop_spoof";
    /// Fragments passed to the host stack (no ports to match).
    Fragment = 6, "fragment";
    /// A reply's route lookup failed; handed to the host stack.
    FibMiss = 7, "fib_miss";
    /// Headers shorter than they claim: passed untouched.
    Malformed = 8, "malformed";
    /// Forwarded endpoint to endpoint within a network.
    Forward = 9, "forward";
    /// Broadcast or multicast copies delivered to a network's members.
    Flood = 10, "flood";
    /// Dropped: destination on another network.
    DropIsolation = 11, "drop_isolation";
    /// Dropped: endpoints of an icc=false network.
    DropIcc = 12, "drop_icc";
    /// Dropped: leaving an internal network.
    DropInternal = 13, "drop_internal";
    /// Dropped: an address of the network that no endpoint has.
    DropNoRoute = 14, "drop_no_route";
    /// An endpoint reached a published port through a host address (hairpin).
    Hairpin = 15, "hairpin";
    /// Outbound packets whose source was translated to the uplink's address.
    Snat = 16, "snat";
    /// Replies of outbound flows translated back to the endpoint.
    SnatReply = 17, "snat_reply";
    /// Outbound packets dropped: no free NAT port.
    DropSnatPorts = 18, "drop_snat_ports";
    /// Connections to a host-gateway port handed to a host socket on 127.0.0.1.
    HostLoopback = 19, "host_loopback";
    /// Monitor events lost: the ring buffer was full (the agent read too slowly).
    EventsLost = 20, "events_lost";
    /// DNS queries answered in the kernel (the fast path).
    DnsKernel = 21, "dns_kernel";
    /// Packets to an endpoint on another node, encapsulated (VXLAN).
    Encap = 22, "overlay_encap";
    /// Packets from another node, decapsulated and delivered to an endpoint.
    Decap = 23, "overlay_decap";
    /// Dropped: decapsulated traffic of an unknown VNI, or whose source is not an endpoint of
    /// that network on the node that sent it.
    DropOverlay = 24, "drop_overlay";
    /// Dropped on an uplink: a loopback or "this network" address (127.0.0.0/8, 0.0.0.0/8) as
    /// source or destination, which no wire may carry (CVE-2020-8558's class).
    DropMartian = 25, "drop_martian";
    /// Dropped on an uplink: addressed to a network's own addresses (an endpoint, a gateway)
    /// rather than to a published port. From outside, only published ports reach an endpoint.
    DropRouted = 26, "drop_routed";
}

// Each counter's index is its position in the list (the STATS array is indexed by it).
const _: () = {
    let mut i = 0;
    while i < Counter::ALL.len() {
        assert!(Counter::ALL[i] as usize == i);
        i += 1;
    }
};

/// Layout of every map key and value, checked at compile time: both sides (and the bytes
/// the kernel hashes) depend on it, so a field added without its padding fails the build.
mod layout {
    use core::mem::{offset_of, size_of};

    use super::*;

    macro_rules! layout {
        ($t:ty, $size:expr, $($field:ident @ $off:expr),*) => {
            const _: () = assert!(size_of::<$t>() == $size);
            $(const _: () = assert!(offset_of!($t, $field) == $off);)*
        };
    }

    layout!(PortKey, 8, addr @ 0, port @ 4, proto @ 6, _pad @ 7);
    layout!(PortTarget, 24, addr @ 0, port @ 4, stats @ 6, ifindex @ 8, mac @ 12, gw_mac @ 18);
    layout!(PortStats, 16, packets @ 0, bytes @ 8);
    layout!(Event, 32, kind @ 0, what @ 1, proto @ 2, _pad @ 3, ifindex @ 4, src_addr @ 8, dst_addr @ 12, src_port @ 16, dst_port @ 18, nat_addr @ 20, nat_port @ 24, _pad2 @ 26, _pad3 @ 28);
    layout!(FlowKey, 16, src_addr @ 0, dst_addr @ 4, src_port @ 8, dst_port @ 10, proto @ 12, _pad @ 13);
    layout!(FlowNat, 48, addr @ 0, port @ 4, _pad @ 6, ifindex @ 8, client @ 12, flags @ 16, via @ 20, last_seen @ 24, via_macs @ 32, _pad3 @ 44);
    layout!(ReplyMacs, 12, src @ 0, dst @ 6);
    layout!(EndpointInfo, 20, addr @ 0, network @ 4, mac @ 8, host_mac @ 14);
    layout!(PeerInfo, 20, ifindex @ 0, network @ 4, mac @ 8, host_mac @ 14);
    layout!(NetworkInfo, 24, subnet @ 0, mask @ 4, gateway @ 8, flags @ 12, members @ 16, host_gateway @ 20);
    layout!(MemberKey, 8, network @ 0, slot @ 4);
    layout!(OverlayNet, 16, vni @ 0, device @ 4, peers @ 8, local @ 12);
    layout!(RemoteEndpoint, 8, node @ 0, network @ 4);
    layout!(SnatNat, 24, addr @ 0, port @ 4, _pad @ 6, flags @ 8, _pad2 @ 12, last_seen @ 16);
    layout!(SnatRev, 40, addr @ 0, port @ 4, _pad @ 6, ifindex @ 8, flags @ 12, mac @ 16, host_mac @ 22, _pad2 @ 28, last_seen @ 32);
    layout!(LoopbackKey, 8, network @ 0, port @ 4, _pad @ 6);
    layout!(SockRevKey, 16, cookie @ 0, addr @ 8, port @ 12, _pad @ 14);
    layout!(SockRevNat, 8, addr @ 0, port @ 4, _pad @ 6);
    layout!(DnsKey, 68, network @ 0, name @ 4);
    layout!(DnsAddrs, 40, count @ 0, next @ 4, addrs @ 8);
    layout!(GenConfig, 80, ifindex @ 0, src_addrs @ 4, src_ports @ 8, _pad @ 12, template @ 16);
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are #[repr(C)] plain-old-data with explicit padding fields.
    unsafe impl aya::Pod for PortKey {}
    unsafe impl aya::Pod for PortTarget {}
    unsafe impl aya::Pod for PortSlot {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowNat {}
    unsafe impl aya::Pod for ReplyMacs {}
    unsafe impl aya::Pod for EndpointInfo {}
    unsafe impl aya::Pod for PeerInfo {}
    unsafe impl aya::Pod for NetworkInfo {}
    unsafe impl aya::Pod for MemberKey {}
    unsafe impl aya::Pod for OverlayNet {}
    unsafe impl aya::Pod for RemoteEndpoint {}
    unsafe impl aya::Pod for SockRevKey {}
    unsafe impl aya::Pod for SnatNat {}
    unsafe impl aya::Pod for LoopbackKey {}
    unsafe impl aya::Pod for SnatRev {}
    unsafe impl aya::Pod for SockRevNat {}
    unsafe impl aya::Pod for PortStats {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for DnsKey {}
    unsafe impl aya::Pod for DnsAddrs {}
}

/// The longest name the DNS fast path answers, in wire format with its final zero label
/// (longer names go to the agent's server).
pub const DNS_NAME_LEN: usize = 64;
/// The most addresses a name has for the DNS fast path (names with more go to the server).
/// A power of two: the fast path masks its index with it.
pub const DNS_ADDRS: usize = 8;
const _: () = assert!(DNS_ADDRS.is_power_of_two());
/// The UDP port of DNS.
pub const DNS_PORT: u16 = 53;
/// How long answers of the DNS fast path (and the agent's server) may be cached.
pub const DNS_TTL: u32 = 600;

/// Key of `DNS_NAMES`: a name of a network, in wire format (length-prefixed labels, the
/// final zero included), lower case, zero padded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DnsKey {
    /// Id of the network (key of `NETWORKS`).
    pub network: u32,
    pub name: [u8; DNS_NAME_LEN],
}

impl DnsKey {
    /// The key of `name` (dotted, a final dot optional) on `network`: lower case, wire
    /// format. None when it does not fit [`DNS_NAME_LEN`] or has an empty or over-long label.
    pub fn new(network: u32, name: &str) -> Option<DnsKey> {
        let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
        let mut key = DnsKey {
            network,
            name: [0; DNS_NAME_LEN],
        };
        let mut at = 0;
        for label in name.split(|b| *b == b'.') {
            if label.is_empty() || label.len() > 63 || at + 1 + label.len() + 1 > DNS_NAME_LEN {
                return None;
            }
            key.name[at] = label.len() as u8;
            for (i, b) in label.iter().enumerate() {
                key.name[at + 1 + i] = b.to_ascii_lowercase();
            }
            at += 1 + label.len();
        }
        Some(key)
    }
}

/// Value of `DNS_NAMES`: the name's addresses, answered starting at `next`, which the fast
/// path advances (round robin).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DnsAddrs {
    /// Addresses in use (1..=DNS_ADDRS).
    pub count: u32,
    pub next: u32,
    /// Network order.
    pub addrs: [u32; DNS_ADDRS],
}

/// Configuration of the benchmark's packet generator (`netpath_bench_gen`), the single
/// entry of its `BENCH_GEN` array. Not used by the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenConfig {
    /// Where generated frames are sent (`bpf_redirect` target).
    pub ifindex: u32,
    /// Number of distinct source addresses, counted up from the template's (1 = fixed).
    pub src_addrs: u32,
    /// Number of distinct source ports, counted up from the template's (1 = fixed).
    pub src_ports: u32,
    pub _pad: u32,
    /// The frame's first 64 bytes (Ethernet, IPv4, UDP, payload), written on every run:
    /// live-frame pages come back as the receiver left them.
    pub template: [u8; 64],
}

/// Size of [`GenConfig::template`].
pub const GEN_TEMPLATE_LEN: usize = 64;

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] plain-old-data with explicit padding.
unsafe impl aya::Pod for GenConfig {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_any_key_inverts_port_any_index() {
        for proto in [proto::TCP, proto::UDP] {
            for port in [1u16, 80, 8080, 65535] {
                let be = port.to_be();
                assert_eq!(port_any_key(port_any_index(proto, be)), (proto, be));
            }
        }
        assert!(port_any_index(proto::UDP, 65535u16.to_be()) < PORTS_ANY_LEN);
    }

    #[test]
    fn reply_keys() {
        let k = FlowKey::new(1, 10, 2, 20, proto::TCP);
        assert_eq!(k.reversed(), FlowKey::new(2, 20, 1, 10, proto::TCP));
        assert_eq!(k.reversed().reversed(), k);
        assert_eq!(k.reply_to(9, 90), FlowKey::new(2, 20, 9, 90, proto::TCP));
    }

    #[test]
    fn counter_names_are_unique() {
        let k = DnsKey::new(7, "Web.Front.").unwrap();
        assert_eq!(k.network, 7);
        assert_eq!(&k.name[..11], b"\x03web\x05front\x00");
        assert!(DnsKey::new(1, "a..b").is_none());
        assert!(DnsKey::new(1, &"x".repeat(64)).is_none());
        assert!(DnsKey::new(1, &"x".repeat(62)).is_some());
        assert!(
            DnsKey::new(1, &"x".repeat(63)).is_none(),
            "63 + length + zero > 64"
        );
        for (i, a) in Counter::ALL.iter().enumerate() {
            for b in &Counter::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }
}
