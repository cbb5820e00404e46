//! What forwarding asks of an address family: its maps (endpoints, peers, networks, subnets),
//! which destinations every member gets a copy of, the ICMP errors it has, and the paths that
//! are still one family's own (host-loopback ports, other nodes, source NAT). Forwarding
//! (`forward::route`) and the endpoint's program are written once over this trait; IPv4 and
//! IPv6 differ only here.
use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    maps::lpm_trie::Key,
    programs::TcContext,
};
use netpath_common::{Counter, EndpointInfo, FlowKey, In6, NetworkInfo, PeerInfo, RemoteEndpoint};

use crate::{
    hostgw,
    maps::{
        ENDPOINTS, ENDPOINTS6, ENDPOINTS_BY_ADDR, ENDPOINTS_BY_ADDR6, NETWORKS, NETWORKS6, SUBNETS,
        SUBNETS6,
    },
    overlay,
    parse::{icmp6_error_about, icmp_error_about, Flow},
    policy::{self, Identified, Known},
    snat,
    stats::{admitted, count, dropped},
};

/// An address family as forwarding sees it.
pub trait Ip: Identified {
    /// This family's record of the endpoint behind host-side veth `ifindex`.
    fn endpoint(ifindex: u32) -> Option<EndpointInfo<Self>>;
    /// The endpoint of this node that has address `addr`.
    fn peer(addr: Self) -> Option<PeerInfo>;
    /// This family's side of network `id`.
    fn network(id: u32) -> Option<NetworkInfo<Self>>;
    /// The network whose subnet holds `addr`.
    fn subnet_of(addr: Self) -> Option<u32>;
    /// Whether every member of `net` gets a copy of a packet to `dst` (broadcast, multicast).
    fn floods(dst: Self, net: &NetworkInfo<Self>) -> bool;
    /// For an ICMP error, the flow of the packet it is about.
    fn error_about(data: usize, data_end: usize, flow: &Flow<Self>) -> Option<FlowKey<Self>>;
    /// A packet to the host gateway: handed to a host-loopback listener? (True when it was.)
    fn to_host_loopback(ctx: &mut TcContext, ep: &EndpointInfo<Self>, flow: &Flow<Self>) -> bool;
    /// The endpoint on another node that has address `dst`.
    fn remote(dst: Self) -> Option<RemoteEndpoint>;
    /// A packet beyond every network, from a network that is neither internal nor routed.
    fn outbound(
        ctx: &mut TcContext,
        ep: &EndpointInfo<Self>,
        flow: &Flow<Self>,
        ifindex: u32,
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
    fn network(id: u32) -> Option<NetworkInfo<u32>> {
        copied(NETWORKS.get_ptr(&id))
    }
    #[inline(always)]
    fn subnet_of(addr: u32) -> Option<u32> {
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
    fn to_host_loopback(ctx: &mut TcContext, ep: &EndpointInfo<u32>, flow: &Flow<u32>) -> bool {
        hostgw::to_loopback(ctx, ep, flow)
    }
    #[inline(always)]
    fn remote(dst: u32) -> Option<RemoteEndpoint> {
        overlay::remote(dst)
    }
    #[inline(always)]
    fn outbound(
        ctx: &mut TcContext,
        ep: &EndpointInfo<u32>,
        flow: &Flow<u32>,
        ifindex: u32,
    ) -> i32 {
        snat::outbound(ctx, ep, flow, ifindex)
    }
}

/// Whether `addr` is multicast (ff00::/8).
#[inline(always)]
pub fn is_multicast6(addr: &In6) -> bool {
    u32::from_be(addr.words[0]) >> 24 == 0xff
}

/// Whether `addr` is link-local unicast (fe80::/10) or unspecified (`::`): the addresses
/// neighbour discovery and the link's own chatter (MLD, router solicitations) come from.
#[inline(always)]
pub fn is_link_scoped6(addr: &In6) -> bool {
    u32::from_be(addr.words[0]) >> 22 == 0x3fa || *addr == In6::default()
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
    fn network(id: u32) -> Option<NetworkInfo<In6>> {
        copied(NETWORKS6.get_ptr(&id))
    }
    #[inline(always)]
    fn subnet_of(addr: In6) -> Option<u32> {
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
    fn to_host_loopback(_: &mut TcContext, _: &EndpointInfo<In6>, _: &Flow<In6>) -> bool {
        false
    }
    #[inline(always)]
    fn remote(_dst: In6) -> Option<RemoteEndpoint> {
        None
    }
    /// No source NAT for IPv6 yet: what the policy lets out goes to the host stack, which
    /// delivers what is the host's own and forwards the rest only where the host forwards
    /// IPv6 itself.
    #[inline(always)]
    fn outbound(
        ctx: &mut TcContext,
        ep: &EndpointInfo<In6>,
        flow: &Flow<In6>,
        ifindex: u32,
    ) -> i32 {
        let known = Known {
            src: Some(ep.identity),
            dst: None,
        };
        let about = || icmp6_error_about(ctx.data(), ctx.data_end(), flow);
        match policy::admit_tracked(flow, known, about) {
            Ok(by) => admitted(by, flow, ifindex),
            Err(reason) => return drop(reason, flow, ifindex),
        }
        count(Counter::Pass);
        TC_ACT_OK as i32
    }
}

/// Drops a packet, counted (and reported) under `reason`; what the program returns.
#[inline(always)]
pub fn drop<A: netpath_common::Addr>(reason: Counter, flow: &Flow<A>, ifindex: u32) -> i32 {
    dropped(reason, flow, ifindex);
    TC_ACT_SHOT as i32
}
