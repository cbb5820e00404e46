//! What the datapath asks of an address family: its maps (endpoints, peers, networks, subnets,
//! published ports and their flows, outbound NAT, uplinks' addresses), its martians, what every
//! member gets a copy of, its ICMP errors, where its addresses sit and which checksums cover
//! them, how a route is asked for, the paths still IPv4's alone (host-loopback ports). Forwarding,
//! published ports, the endpoint's program and outbound NAT are written once over this trait.
use aya_ebpf::{
    bindings::{bpf_fib_lookup, TC_ACT_SHOT},
    maps::{lpm_trie::Key, Array, HashMap, LruHashMap},
    programs::TcContext,
};
use netpath_common::{
    tail, Counter, EndpointInfo, FlowKey, FlowNat, In6, NetworkInfo, PeerInfo, PortKey, PortSlot,
    PortTarget, RemoteEndpoint, SnatNat, SnatRev,
};
use network_types::ip::Ipv6Hdr;

use crate::{
    csum::csum_replace4,
    endpoint, hostgw,
    icmp::{icmp6_error_about, icmp6_error_inner, icmp_error_about, icmp_error_inner, ErrorAbout},
    maps::{
        ENDPOINTS, ENDPOINTS6, ENDPOINTS_BY_ADDR, ENDPOINTS_BY_ADDR6, FLOWS, FLOWS6, HOST_ADDRS,
        HOST_ADDRS6, NETWORKS, NETWORKS6, PORTS, PORTS6, PORTS_ANY, PORTS_ANY6, SNAT, SNAT6,
        SNAT_REV, SNAT_REV6, SUBNETS, SUBNETS6, UPLINKS, UPLINKS6,
    },
    nat46, overlay,
    packet::Packet,
    parse::{is_multicast6, ptr_at, Flow, IP_DST_OFF, IP_SRC_OFF, L3_OFF},
    policy::Identified,
    replies::Replied,
    snat,
    stats::dropped,
};

/// Address family numbers of route lookups.
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// An address family as the datapath sees it.
pub trait Ip: Identified + Replied {
    /// This family's record of the endpoint behind host-side veth `ifindex`.
    fn endpoint(ifindex: u32) -> Option<EndpointInfo<Self>>;
    /// The endpoint of this node that has address `addr`.
    fn peer(addr: Self) -> Option<PeerInfo>;
    /// This family's side of network `id` (read in place: IPv6's is 72 bytes).
    fn network(id: u32) -> Option<&'static NetworkInfo<Self>>;
    /// The network whose subnet holds `addr`, by the trie (asked by `forward::subnet_of`).
    fn subnet_trie(addr: Self) -> Option<u32>;
    /// Whether every member of `net` gets a copy of a packet to `dst` (broadcast, multicast).
    fn floods(dst: Self, net: &NetworkInfo<Self>) -> bool;
    /// For an ICMP error, the flow of the packet it is about.
    fn error_about(data: usize, data_end: usize, flow: &Flow<Self>) -> Option<FlowKey<Self>>;
    /// The same, with where the carried packet's headers are.
    fn error_inner(data: usize, data_end: usize, flow: &Flow<Self>) -> Option<ErrorAbout<Self>>;
    /// Writes the source or destination (`at`: [`Ip::SRC_OFF`], [`Ip::DST_OFF`]) of the packet
    /// an ICMP error carries at `l3_off`, `from` → `to`, with every checksum over it.
    fn write_inner_addr<P: Packet>(
        pkt: &mut P,
        l3_off: usize,
        at: usize,
        from: Self,
        to: Self,
        csum: usize,
    ) -> bool;
    /// A packet to the host gateway: handed to a host-loopback listener? (True when it was.)
    fn to_host_loopback(ctx: &mut TcContext, ep: &EndpointInfo<Self>, flow: &Flow<Self>) -> bool;
    /// The endpoint on another node that has address `dst`.
    fn remote(dst: Self) -> Option<RemoteEndpoint>;
    /// Offsets of the source and destination addresses in a frame.
    const SRC_OFF: usize;
    const DST_OFF: usize;
    /// Writes address `to` at `off` (`from` before) and the checksums over it: IPv4's header's,
    /// and when `pseudo` the L4 checksum at `csum`, by its pseudo-header (`rewrite.rs` says when).
    fn write_addr<P: Packet>(
        pkt: &mut P,
        off: usize,
        from: Self,
        to: Self,
        csum: usize,
        udp: bool,
        pseudo: bool,
    ) -> bool;
    /// A route lookup's family and addresses.
    fn fib_params(params: &mut bpf_fib_lookup, src: Self, dst: Self);
    /// Outbound NAT by the original 5-tuple, and by the reply's.
    fn snat() -> &'static LruHashMap<FlowKey<Self>, SnatNat<Self>>;
    fn snat_rev() -> &'static LruHashMap<FlowKey<Self>, SnatRev<Self>>;
    /// The address outbound NAT gives flows leaving by uplink `ifindex`.
    fn uplink(ifindex: u32) -> Option<Self>;
    /// Published ports: on one host address, and the slot per protocol and port.
    fn ports() -> &'static HashMap<PortKey<Self>, PortTarget<Self>>;
    fn ports_any() -> &'static Array<PortSlot<Self>>;
    /// Whether `addr` is one of the host's addresses.
    fn host_addr(addr: Self) -> bool;
    /// Translated flows of published ports.
    fn flows() -> &'static LruHashMap<FlowKey<Self>, FlowNat<Self>>;
    /// Whether a published port's target is reached by NAT46 (an IPv4-only endpoint, on IPv6).
    fn nat46(target: &PortTarget<Self>) -> bool;
    /// Whether `addr` may never be on a wire (loopback, "this network"): never translated in.
    fn martian(addr: Self) -> bool;
    /// A packet beyond every network: outbound NAT (`snat::outbound`), or a `routed` one's route.
    fn outbound(
        ctx: &mut TcContext,
        ep: &EndpointInfo<Self>,
        flow: &Flow<Self>,
        ifindex: u32,
        routed: bool,
    ) -> i32;
}

/// A map value copied out (the pointer is valid for this program run).
#[inline(always)]
fn copied<T: Copy>(p: Option<*const T>) -> Option<T> {
    // SAFETY: map value pointers are valid for this program run; copied out at once.
    p.map(|v| unsafe { *v })
}

impl Ip for u32 {
    #[inline(always)]
    fn endpoint(ifindex: u32) -> Option<EndpointInfo<u32>> {
        copied(ENDPOINTS.get_ptr(&ifindex))
    }
    #[inline(always)]
    fn peer(addr: u32) -> Option<PeerInfo> {
        copied(ENDPOINTS_BY_ADDR.get_ptr(&addr))
    }
    #[inline(always)]
    fn network(id: u32) -> Option<&'static NetworkInfo<u32>> {
        // SAFETY: map values stay valid for this program run, all it reads them in.
        unsafe { NETWORKS.get(&id) }
    }
    #[inline(always)]
    fn subnet_trie(addr: u32) -> Option<u32> {
        SUBNETS.get(&Key::new(32, addr)).copied()
    }
    #[inline(always)]
    fn floods(dst: u32, net: &NetworkInfo<u32>) -> bool {
        dst == u32::MAX || dst == net.broadcast() || u32::from_be(dst) >> 28 == 0xe
    }
    #[inline(always)]
    fn error_about(data: usize, data_end: usize, flow: &Flow<u32>) -> Option<FlowKey<u32>> {
        icmp_error_about(data, data_end, flow)
    }
    #[inline(always)]
    fn error_inner(data: usize, data_end: usize, flow: &Flow<u32>) -> Option<ErrorAbout<u32>> {
        icmp_error_inner(data, data_end, flow)
    }
    #[inline(always)]
    fn write_inner_addr<P: Packet>(
        pkt: &mut P,
        l3_off: usize,
        at: usize,
        from: u32,
        to: u32,
        csum: usize,
    ) -> bool {
        // The carried header's checksum changes with its address, and the error's checksum
        // covers both.
        let Some(c) = ptr_at::<u16>(pkt.data(), pkt.data_end(), l3_off + 10) else {
            return false;
        };
        // SAFETY: bounds checked by ptr_at.
        let old = unsafe { c.read() };
        let new = csum_replace4(old, from, to);
        pkt.set_word(l3_off + at - L3_OFF, from, to, csum)
            && pkt.set_port(l3_off + 10, old, new, csum, false)
    }
    #[inline(always)]
    fn to_host_loopback(ctx: &mut TcContext, ep: &EndpointInfo<u32>, flow: &Flow<u32>) -> bool {
        hostgw::to_loopback(ctx, ep, flow)
    }
    #[inline(always)]
    fn remote(dst: u32) -> Option<RemoteEndpoint> {
        overlay::remote(dst)
    }
    const SRC_OFF: usize = IP_SRC_OFF;
    const DST_OFF: usize = IP_DST_OFF;
    #[inline(always)]
    fn write_addr<P: Packet>(
        pkt: &mut P,
        off: usize,
        from: u32,
        to: u32,
        csum: usize,
        udp: bool,
        pseudo: bool,
    ) -> bool {
        if pseudo {
            pkt.set_addr(off, from, to, csum, udp)
        } else {
            pkt.set_addr_l3(off, from, to)
        }
    }
    #[inline(always)]
    fn fib_params(params: &mut bpf_fib_lookup, src: u32, dst: u32) {
        params.family = AF_INET;
        params.__bindgen_anon_3.ipv4_src = src;
        params.__bindgen_anon_4.ipv4_dst = dst;
    }
    #[inline(always)]
    fn snat() -> &'static LruHashMap<FlowKey<u32>, SnatNat<u32>> {
        &SNAT
    }
    #[inline(always)]
    fn snat_rev() -> &'static LruHashMap<FlowKey<u32>, SnatRev<u32>> {
        &SNAT_REV
    }
    #[inline(always)]
    fn uplink(ifindex: u32) -> Option<u32> {
        copied(UPLINKS.get_ptr(&ifindex))
    }
    #[inline(always)]
    fn ports() -> &'static HashMap<PortKey<u32>, PortTarget<u32>> {
        &PORTS
    }
    #[inline(always)]
    fn ports_any() -> &'static Array<PortSlot<u32>> {
        &PORTS_ANY
    }
    #[inline(always)]
    fn host_addr(addr: u32) -> bool {
        HOST_ADDRS.get_ptr(&addr).is_some()
    }
    #[inline(always)]
    fn flows() -> &'static LruHashMap<FlowKey<u32>, FlowNat<u32>> {
        &FLOWS
    }
    #[inline(always)]
    fn nat46(_: &PortTarget<u32>) -> bool {
        false
    }
    /// 127.0.0.0/8 and 0.0.0.0/8.
    #[inline(always)]
    fn martian(addr: u32) -> bool {
        let first = u32::from_be(addr) >> 24;
        first == 127 || first == 0
    }
    #[inline(always)]
    fn outbound(
        ctx: &mut TcContext,
        ep: &EndpointInfo<u32>,
        flow: &Flow<u32>,
        ifindex: u32,
        routed: bool,
    ) -> i32 {
        if routed {
            snat::routed(ctx, ep, flow, ifindex)
        } else if flow.fragment {
            endpoint::hand_on(ctx, tail::SNAT_FRAG, flow, ifindex)
        } else {
            snat::outbound(ctx, ep, flow, ifindex)
        }
    }
}

impl Ip for In6 {
    #[inline(always)]
    fn endpoint(ifindex: u32) -> Option<EndpointInfo<In6>> {
        copied(ENDPOINTS6.get_ptr(&ifindex))
    }
    #[inline(always)]
    fn peer(addr: In6) -> Option<PeerInfo> {
        copied(ENDPOINTS_BY_ADDR6.get_ptr(&addr))
    }
    #[inline(always)]
    fn network(id: u32) -> Option<&'static NetworkInfo<In6>> {
        // SAFETY: map values stay valid for this program run, all it reads them in.
        unsafe { NETWORKS6.get(&id) }
    }
    #[inline(always)]
    fn subnet_trie(addr: In6) -> Option<u32> {
        SUBNETS6.get(&Key::new(128, addr)).copied()
    }
    #[inline(always)]
    fn floods(dst: In6, _net: &NetworkInfo<In6>) -> bool {
        is_multicast6(&dst)
    }
    #[inline(always)]
    fn error_about(data: usize, data_end: usize, flow: &Flow<In6>) -> Option<FlowKey<In6>> {
        icmp6_error_about(data, data_end, flow)
    }
    #[inline(always)]
    fn error_inner(data: usize, data_end: usize, flow: &Flow<In6>) -> Option<ErrorAbout<In6>> {
        icmp6_error_inner(data, data_end, flow)
    }
    #[inline(always)]
    fn write_inner_addr<P: Packet>(
        pkt: &mut P,
        l3_off: usize,
        at: usize,
        from: In6,
        to: In6,
        csum: usize,
    ) -> bool {
        let off = l3_off + at - L3_OFF;
        (0..4).all(|i| pkt.set_word(off + 4 * i, from.words[i], to.words[i], csum))
    }
    #[inline(always)]
    fn to_host_loopback(_: &mut TcContext, _: &EndpointInfo<In6>, _: &Flow<In6>) -> bool {
        false
    }
    #[inline(always)]
    fn remote(dst: In6) -> Option<RemoteEndpoint> {
        overlay::remote6(&dst)
    }
    const SRC_OFF: usize = L3_OFF + 8;
    const DST_OFF: usize = L3_OFF + 8 + 16;
    #[inline(always)]
    fn write_addr<P: Packet>(
        pkt: &mut P,
        off: usize,
        from: In6,
        to: In6,
        csum: usize,
        udp: bool,
        pseudo: bool,
    ) -> bool {
        if pseudo {
            pkt.set_addr6(off, &from, &to, csum, udp)
        } else {
            pkt.set_addr6_l3(off, &from, &to)
        }
    }
    #[inline(always)]
    fn fib_params(params: &mut bpf_fib_lookup, src: In6, dst: In6) {
        params.family = AF_INET6;
        params.__bindgen_anon_3.ipv6_src = src.words;
        params.__bindgen_anon_4.ipv6_dst = dst.words;
    }
    #[inline(always)]
    fn snat() -> &'static LruHashMap<FlowKey<In6>, SnatNat<In6>> {
        &SNAT6
    }
    #[inline(always)]
    fn snat_rev() -> &'static LruHashMap<FlowKey<In6>, SnatRev<In6>> {
        &SNAT_REV6
    }
    #[inline(always)]
    fn uplink(ifindex: u32) -> Option<In6> {
        copied(UPLINKS6.get_ptr(&ifindex))
    }
    #[inline(always)]
    fn ports() -> &'static HashMap<PortKey<In6>, PortTarget<In6>> {
        &PORTS6
    }
    #[inline(always)]
    fn ports_any() -> &'static Array<PortSlot<In6>> {
        &PORTS_ANY6
    }
    #[inline(always)]
    fn host_addr(addr: In6) -> bool {
        HOST_ADDRS6.get_ptr(&addr).is_some()
    }
    #[inline(always)]
    fn flows() -> &'static LruHashMap<FlowKey<In6>, FlowNat<In6>> {
        &FLOWS6
    }
    #[inline(always)]
    fn nat46(target: &PortTarget<In6>) -> bool {
        nat46::is_nat46(target)
    }
    /// `::1`, and IPv4's loopback mapped (`::ffff:127.0.0.0/104`). Not `::`: duplicate
    /// address detection sends from it.
    #[inline(always)]
    fn martian(addr: In6) -> bool {
        let w = addr.words;
        if w[0] != 0 || w[1] != 0 {
            return false;
        }
        let w3 = u32::from_be(w[3]);
        match u32::from_be(w[2]) {
            0 => w3 == 1,
            0xffff => w3 >> 24 == 127,
            _ => false,
        }
    }
    /// Handed on to a program of its own (`netpath_endpoint_snat6_tc`, a tail call, which sees
    /// whether the network is routed): IPv6's keys and route lookup do not fit the endpoint
    /// program's 512-byte stack beside the rest.
    #[inline(always)]
    fn outbound(
        ctx: &mut TcContext,
        _: &EndpointInfo<In6>,
        flow: &Flow<In6>,
        i: u32,
        _: bool,
    ) -> i32 {
        endpoint::hand_on(ctx, tail::SNAT6, flow, i)
    }
}

const _: () = assert!(<In6 as Ip>::DST_OFF + 16 == L3_OFF + Ipv6Hdr::LEN);

/// Drops a packet, counted (and reported) under `reason`; what the program returns.
#[inline(always)]
pub fn drop<A: netpath_common::Addr>(reason: Counter, flow: &Flow<A>, ifindex: u32) -> i32 {
    dropped(reason, flow, ifindex);
    TC_ACT_SHOT as i32
}
