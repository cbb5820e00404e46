//! What the datapath counts and reports: the `STATS` counters and drop reasons, what each
//! published port received (`PORT_STATS`), and the events `netpath monitor` streams
//! (kernel: `stats.rs`).
use crate::Addr;

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
    /// A packet dropped; `what` is the [`Counter`] of the reason.
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
        /// A new flow a network policy allowed (the policy's number in `nat_port`).
        pub const POLICY: u8 = 6;
    }
}

/// A packet the datapath reports to `netpath monitor`, through the `EVENTS` ring buffer.
/// Addresses and ports network order, as seen before translation.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Event<A: Addr = u32> {
    /// [`event::DROP`] or [`event::TRACE`].
    pub kind: u8,
    /// The drop reason ([`Counter`] index) or the trace kind.
    pub what: u8,
    pub proto: u8,
    pub _pad: u8,
    /// The interface the packet came in on.
    pub ifindex: u32,
    pub src_addr: A,
    pub dst_addr: A,
    pub src_port: u16,
    pub dst_port: u16,
    /// What a translation wrote (address and port), for traces.
    pub nat_addr: A,
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
    /// Fragments passed untranslated: of no TCP or UDP datagram, or before their first.
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
    /// Dropped on an uplink: a new flow to a published port from a source outside the
    /// published ports' allow-list (`--published-from`).
    DropFirewall = 27, "drop_firewall";
    /// Dropped: a new flow no network policy allows.
    DropPolicy = 28, "drop_policy";
    /// IPv6 neighbour solicitations answered for an endpoint (its gateway, its peers).
    NdpReply = 29, "ndp_reply";
    /// ICMP errors about a translated flow (Packet Too Big, fragmentation needed, time
    /// exceeded, unreachable) carried back through the NAT to the endpoint they concern.
    IcmpErrorBack = 30, "icmp_error_back";
    /// Packets of IPv6 clients translated to IPv4 for a published port's IPv4-only endpoint
    /// (NAT46).
    Nat46 = 31, "nat46";
    /// Their replies translated back to IPv6.
    Nat46Reply = 32, "nat46_reply";
    /// Packets from an uplink delivered to an endpoint of a routed network (no NAT).
    RoutedIn = 33, "routed_in";
    /// IPv6 packets of a routed network's endpoint routed out in eBPF (no NAT).
    RoutedOut = 34, "routed_out";
    /// Published-port packets translated with no flow state (a one-to-one mapping).
    DnatStateless = 35, "dnat_stateless";
    /// First replies of such flows, which recorded the flow for the replies after them.
    ReplyRecorded = 36, "reply_recorded";
    /// Dropped: a new flow beyond the rate its CPU may begin them at (the flood guard,
    /// `--new-flows-per-cpu`); the flows already made go on. (A one-to-one port's first reply
    /// past it is translated, only not recorded, and not counted here.)
    DropNewFlowRate = 37, "drop_new_flow_rate";
    /// ICMP errors an endpoint sent about a client's packet of a published port (a UDP port
    /// unreachable) carried out through the NAT to the client.
    IcmpErrorOut = 38, "icmp_error_out";
    /// Later fragments of a datagram translated as its first fragment was (its ports
    /// remembered: a published port's DNAT and its replies, an outbound flow and its replies).
    FragmentNat = 39, "fragment_nat";
    /// Dropped: a later fragment an endpoint sent beyond the host whose first fragment made no
    /// outbound flow (refused by the policy, the flood guard, or no free port): untranslated,
    /// it would leave with the endpoint's own address, past the refusal.
    DropFragment = 40, "drop_fragment";
}

// Each counter's index is its position in the list (the STATS array is indexed by it).
const _: () = {
    let mut i = 0;
    while i < Counter::ALL.len() {
        assert!(Counter::ALL[i] as usize == i);
        i += 1;
    }
};

crate::layout!(PortStats, 16, packets @ 0, bytes @ 8);
crate::layout!(Event, 32, kind @ 0, what @ 1, proto @ 2, _pad @ 3, ifindex @ 4, src_addr @ 8, dst_addr @ 12, src_port @ 16, dst_port @ 18, nat_addr @ 20, nat_port @ 24, _pad2 @ 26, _pad3 @ 28);
crate::layout!(Event<crate::In6>, 68, ifindex @ 4, src_addr @ 8, dst_addr @ 24, src_port @ 40, dst_port @ 42, nat_addr @ 44, nat_port @ 60, _pad2 @ 62, _pad3 @ 64);
crate::pod!(PortStats, Event<A>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_names_are_unique() {
        for (i, a) in Counter::ALL.iter().enumerate() {
            for b in &Counter::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }
}
