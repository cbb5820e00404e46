//! Names of the pinned maps and their default sizes: the kernel object declares them
//! (`netpath-ebpf/src/maps.rs`) and the agent opens them by these names.

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
    /// Array of one [`crate::NewFlowRate`]: how fast each CPU may begin new flows (the flood
    /// guard; 0: no limit).
    pub const NEW_FLOW_RATE: &str = "NEW_FLOW_RATE";
    /// Per-CPU array of one `u64`: each CPU's place in that schedule (GCRA's theoretical
    /// arrival time of its next new flow, `bpf_ktime_get_coarse_ns`).
    pub const NEW_FLOW_TAT: &str = "NEW_FLOW_TAT";
    /// Array of 8 one-byte slots per entry: the flows seen lately ([`crate::recent`]), each
    /// slot the generation its flows were last marked in.
    pub const RECENT_FLOWS: &str = "RECENT_FLOWS";
    /// Host-side veth ifindex (`u32`) → [`crate::EndpointInfo`].
    pub const ENDPOINTS: &str = "ENDPOINTS";
    /// Endpoint IPv4 address (network order `u32`) → [`crate::PeerInfo`]: where to forward.
    pub const ENDPOINTS_BY_ADDR: &str = "ENDPOINTS_BY_ADDR";
    /// Network id (`u32`) → [`crate::NetworkInfo`].
    pub const NETWORKS: &str = "NETWORKS";
    /// LPM trie of network subnets → network id (`u32`).
    pub const SUBNETS: &str = "SUBNETS";
    /// Array, an entry per family ([`crate::Addr::FAMILY`]): the blocks of the address
    /// space no network's subnet overlaps ([`crate::no_subnet`]), where `SUBNETS` and
    /// `SUBNETS6` are not asked.
    pub const NO_SUBNET: &str = "NO_SUBNET";
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
    /// [`crate::DnsKey`] → [`crate::DnsAddrs`]: the names the DNS fast path answers (A).
    pub const DNS_NAMES: &str = "DNS_NAMES";
    /// [`crate::DnsKey`] → [`crate::DnsAddrs`]`<In6>`: the same names' AAAA.
    pub const DNS_NAMES6: &str = "DNS_NAMES6";
    /// Overlay networks by network id: VNI, VXLAN device, how many other nodes are members.
    pub const OVERLAY_NETS: &str = "OVERLAY_NETS";
    /// Overlay networks by VNI (decapsulated traffic finds its network here).
    pub const OVERLAY_VNIS: &str = "OVERLAY_VNIS";
    /// Endpoints on other nodes by address: which node (its underlay address), which network.
    pub const REMOTES: &str = "REMOTES";
    /// The same by IPv6 address (an overlay network with IPv6).
    pub const REMOTES6: &str = "REMOTES6";
    /// The other nodes with endpoints on each overlay network, slots 0..OverlayNet::peers
    /// (broadcasts go to each).
    pub const OVERLAY_PEERS: &str = "OVERLAY_PEERS";
    /// LPM trie of IPv4 source prefixes → [`crate::published_from`] verdict: the firewall
    /// of published ports. Empty: every source may reach them.
    pub const PUBLISHED_FROM: &str = "PUBLISHED_FROM";
    /// IPv4 address → [`crate::AddrIdentity`]: every endpoint's address (here and on other
    /// nodes) and every /32 an ipBlock names, with the directions policies select it in.
    pub const IPCACHE: &str = "IPCACHE";
    /// LPM trie of IPv4 prefixes → identity (`u32`): the ipBlock prefixes shorter than /32,
    /// asked when `IPCACHE` does not hold the address; what neither holds is
    /// [`crate::identity::WORLD`].
    pub const IPCACHE_PREFIXES: &str = "IPCACHE_PREFIXES";
    /// [`crate::PolicyKey`] → `u32`, the number of the policy allowing it: rules for one port
    /// (exact match, the common case).
    pub const POLICY: &str = "POLICY";
    /// LPM trie of [`crate::PolicyKey`] → `u32`: rules for a block of ports, a whole protocol
    /// or every port.
    pub const POLICY_RANGES: &str = "POLICY_RANGES";
    /// [`crate::FlowKey`] → [`crate::tracked`] (both ways: as its first packet went, and its
    /// replies' way): connections a policy allowed on paths that keep no other flow state
    /// (endpoint to endpoint), so their packets pass on one lookup.
    pub const POLICY_CT: &str = "POLICY_CT";
    /// Array of one `u32`: [`crate::policy_on`] flags (0: no policy in force).
    pub const POLICY_ON: &str = "POLICY_ON";

    // IPv6's twins of the maps above: the same values, keyed by [`crate::In6`].
    /// Host-side veth ifindex (`u32`) → [`crate::EndpointInfo`]`<In6>`: an endpoint's IPv6
    /// address on that interface's network.
    pub const ENDPOINTS6: &str = "ENDPOINTS6";
    /// Endpoint IPv6 address → [`crate::PeerInfo`].
    pub const ENDPOINTS_BY_ADDR6: &str = "ENDPOINTS_BY_ADDR6";
    /// Network id (`u32`) → [`crate::NetworkInfo`]`<In6>`: a dual-stack network's IPv6 subnet.
    pub const NETWORKS6: &str = "NETWORKS6";
    /// LPM trie of the networks' IPv6 subnets → network id (`u32`).
    pub const SUBNETS6: &str = "SUBNETS6";
    /// IPv6 address → [`crate::AddrIdentity`], as `IPCACHE`.
    pub const IPCACHE6: &str = "IPCACHE6";
    /// LPM trie of IPv6 ipBlock prefixes shorter than /128 → identity, as `IPCACHE_PREFIXES`.
    pub const IPCACHE_PREFIXES6: &str = "IPCACHE_PREFIXES6";
    /// [`crate::FlowKey`]`<In6>` → [`crate::tracked`], as `POLICY_CT`.
    pub const POLICY_CT6: &str = "POLICY_CT6";
    /// Outbound NAT of IPv6, by the original 5-tuple and by the reply's, as `SNAT` and
    /// `SNAT_REV`.
    pub const SNAT6: &str = "SNAT6";
    pub const SNAT_REV6: &str = "SNAT_REV6";
    /// Uplink ifindex (`u32`) → its global IPv6 address: source of IPv6's outbound NAT.
    pub const UPLINKS6: &str = "UPLINKS6";
    /// Program array of the programs an entry point hands a packet on to, by
    /// [`crate::tail`] slot (each load fills it with its own programs).
    pub const TAIL_CALLS: &str = "TAIL_CALLS";
    /// The same for XDP programs (a program array holds programs of one type).
    pub const TAIL_CALLS_XDP: &str = "TAIL_CALLS_XDP";
    /// IPv6's published ports: [`crate::PortKey`]`<In6>` → [`crate::PortTarget`]`<In6>` on
    /// one host address, and the array of [`crate::PortSlot`]`<In6>` for `[::]`, as `PORTS`
    /// and `PORTS_ANY`.
    pub const PORTS6: &str = "PORTS6";
    pub const PORTS_ANY6: &str = "PORTS_ANY6";
    /// The host's IPv6 addresses (→ `u32` flags), as `HOST_ADDRS`.
    pub const HOST_ADDRS6: &str = "HOST_ADDRS6";
    /// [`crate::FlowKey`]`<In6>` → [`crate::FlowNat`]`<In6>`: translated IPv6 flows, as `FLOWS`.
    pub const FLOWS6: &str = "FLOWS6";
    /// LPM trie of IPv6 source prefixes → [`crate::published_from`] verdict, as
    /// `PUBLISHED_FROM`.
    pub const PUBLISHED_FROM6: &str = "PUBLISHED_FROM6";
    /// [`crate::SockRevKey6`] → [`crate::SockRevNat`]`<In6>`: what an IPv6 socket asked for,
    /// as `SOCK_REVNAT`.
    pub const SOCK_REVNAT6: &str = "SOCK_REVNAT6";
    /// NAT46 of published ports: [`crate::FlowKey`]`<In6>` of an IPv6 client's flow →
    /// [`crate::Nat46`], the IPv4 source it is given.
    pub const NAT46: &str = "NAT46";
    /// [`crate::FlowKey`] of the IPv4 replies → [`crate::Nat46Reply`], the IPv6 flow they
    /// answer.
    pub const NAT46_REPLY: &str = "NAT46_REPLY";
    /// How replies of one-to-one published ports leave (endpoint address and port → host
    /// address and port), IPv4's and IPv6's.
    pub const REPLIES: &str = "REPLIES";
    pub const REPLIES6: &str = "REPLIES6";
    /// By protocol and container port (`PORTS_ANY`'s index): how many `REPLIES` entries of
    /// either family have it, so a packet from any other port is not looked up there.
    pub const REPLY_PORTS: &str = "REPLY_PORTS";
    /// LRU tables of [`crate::FragKey`] → the first fragment's ports (`[u16; 2]`), IPv4's and
    /// IPv6's: what a datagram's later fragments are translated by.
    pub const FRAGMENTS: &str = "FRAGMENTS";
    pub const FRAGMENTS6: &str = "FRAGMENTS6";
}

/// Slots of `TAIL_CALLS`: the programs an entry point hands a packet on to, each with a stack
/// and a verifier budget of its own (IPv6's paths beside IPv4's, as Cilium splits them).
pub mod tail {
    /// The endpoint program's IPv6 (`netpath_endpoint6_tc`).
    pub const ENDPOINT6: u32 = 0;
    /// Its outbound NAT (`netpath_endpoint_snat6_tc`).
    pub const SNAT6: u32 = 1;
    /// The uplink programs' IPv6 (`netpath_uplink6_tc` in `TAIL_CALLS`,
    /// `netpath_uplink6_xdp` in `TAIL_CALLS_XDP`).
    pub const UPLINK6: u32 = 2;
    /// The endpoint program's IPv6 hairpin (`netpath_endpoint_hairpin6_tc`).
    pub const HAIRPIN6: u32 = 3;
    /// NAT46 of a published port: an IPv6 client's packet translated to IPv4
    /// (`netpath_uplink_nat46_tc` in `TAIL_CALLS`, `netpath_uplink_nat46_xdp` in
    /// `TAIL_CALLS_XDP`).
    pub const NAT46: u32 = 4;
    /// Its replies, translated to IPv6 (`netpath_endpoint_nat46_tc`).
    pub const NAT46_REPLY: u32 = 5;
    /// The DNS fast path of IPv6 queries (`netpath_endpoint_dns6_tc`).
    pub const DNS6: u32 = 6;
    /// The first reply of a one-to-one published port's flow, of either family, which
    /// records the flow (`netpath_endpoint_reply_tc`).
    pub const REPLY: u32 = 7;
    /// A fragment an endpoint sent, of either family: a published flow's reply translated as
    /// its first fragment was, the rest handed back (`netpath_endpoint_frag_tc`).
    pub const FRAG: u32 = 8;
    /// The endpoint program itself (`netpath_endpoint_tc`): where the fragment program hands
    /// back an IPv4 fragment that is no reply, marked ([`FRAG_SEEN`]) so it goes on.
    pub const ENDPOINT: u32 = 9;
    /// Outbound NAT of an IPv4 fragment an endpoint sent (`netpath_endpoint_snat_frag_tc`),
    /// reached from the endpoint program once the fragment program saw it.
    pub const SNAT_FRAG: u32 = 10;
    /// Slots in all.
    pub const SLOTS: u32 = 11;
    /// What the fragment program writes in an skb's first control-buffer word before it hands
    /// the packet back: seen, not to be handed on again.
    pub const FRAG_SEEN: u32 = 0x6672_6167;
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
    /// Source prefixes of the published ports' firewall.
    pub const PUBLISHED_FROM: u32 = 4096;
    /// Endpoints' addresses (and /32 ipBlocks).
    pub const IPCACHE: u32 = 65_536;
    /// ipBlock prefixes shorter than /32.
    pub const IPCACHE_PREFIXES: u32 = 16_384;
    /// Policy rules for one port.
    pub const POLICY: u32 = 131_072;
    /// Policy rules for blocks of ports (endPort split into power-of-two blocks), whole
    /// protocols and every port.
    pub const POLICY_RANGES: u32 = 131_072;
    /// Fragmented datagrams in flight, per family (Cilium's default too).
    pub const FRAGMENTS: u32 = 8192;
}
