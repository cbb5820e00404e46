//! One-to-one published ports: a client's packet to a port whose endpoint port no other
//! publish maps to, addressed where its replies leave from, is translated with no flow state
//! (`ports::dnat_via`), so a flood of new flows writes nothing. The flow is recorded by its
//! first reply instead: it finds in `REPLIES` the host address and port to leave from, asks
//! the route the way back, and records the flow, so the replies after it are found in
//! `FLOWS` as any published flow's are (`flows::reply_nat`). Written once for both families.
use aya_ebpf::{bindings::TC_ACT_SHOT, maps::HashMap, programs::TcContext};
use netpath_common::{
    event, flow_flags, port_any_index, recent, Addr, Counter, FlowNat, In6, PortKey, PortReply,
    ReplyMacs,
};

use crate::{
    family::Ip,
    fib::{self, Route},
    flows, forward, guard,
    maps::{REPLIES, REPLIES6, REPLY_PORTS},
    parse::{is_link_scoped6, is_multicast6, parse_tracked, Flow, Parsed},
    policy, ports,
    stats::{count, trace},
};

/// An address family's `REPLIES`, and which of its destinations a client can be.
pub trait Replied: Addr {
    fn replies() -> &'static HashMap<PortKey<Self>, PortReply<Self>>;
    /// Multicast and broadcast (and for IPv6 link-local) destinations: never a client's.
    fn group_or_link(addr: Self) -> bool;
}

impl Replied for u32 {
    #[inline(always)]
    fn replies() -> &'static HashMap<PortKey<u32>, PortReply<u32>> {
        &REPLIES
    }
    #[inline(always)]
    fn group_or_link(addr: u32) -> bool {
        u32::from_be(addr) >> 28 == 0xe || addr == u32::MAX
    }
}

impl Replied for In6 {
    #[inline(always)]
    fn replies() -> &'static HashMap<PortKey<In6>, PortReply<In6>> {
        &REPLIES6
    }
    #[inline(always)]
    fn group_or_link(addr: In6) -> bool {
        is_multicast6(&addr) || is_link_scoped6(&addr)
    }
}

/// How `flow`'s source (an endpoint's address and port) replies, if it is a one-to-one
/// published port of the endpoint behind host-side veth `ifindex`. A port no such publish
/// has costs one array read.
#[inline(always)]
fn reply_of<A: Ip>(flow: &Flow<A>, ifindex: u32) -> Option<PortReply<A>> {
    reply_from(flow.src_addr, flow.src_port, flow.proto, ifindex)
}

/// How endpoint address `addr`, port `port` (network order) of `proto` replies, if it is a
/// one-to-one published port of the endpoint behind host-side veth `ifindex`.
#[inline(always)]
pub fn reply_from<A: Ip>(addr: A, port: u16, proto: u8, ifindex: u32) -> Option<PortReply<A>> {
    let n = REPLY_PORTS.get(port_any_index(proto, port))?;
    if *n == 0 {
        return None;
    }
    let key = PortKey {
        addr,
        port,
        proto,
        _pad: 0,
    };
    // SAFETY: map value pointer valid for this program run; copied out at once.
    let r = unsafe { *A::replies().get_ptr(&key)? };
    (r.ifindex == ifindex).then_some(r)
}

/// Whether a packet the endpoint behind `ifindex` sent, found in no flow, is the first reply
/// of a flow translated with no state: from a one-to-one port, to a unicast address beyond
/// this host (not an address of its networks, not one of its own: what the endpoint says to
/// them from that port is its own traffic, never translated), while no policy is in force
/// (then every flow is kept from its first packet, and an endpoint's own connections ask
/// the policy on their way out). An endpoint's own connection from such a port to beyond
/// the host leaves from the published host port, its replies coming back through it.
#[inline(always)]
pub fn is_first_reply<A: Ip>(flow: &Flow<A>, ifindex: u32) -> bool {
    flow.has_ports()
        && reply_of(flow, ifindex).is_some()
        && policy::nothing_to_ask()
        && beyond_host(flow.dst_addr)
}

/// Whether `addr` can be a published port's client beyond this host: a unicast address,
/// not of its networks (a peer, a gateway), not one of its own.
#[inline(always)]
pub fn beyond_host<A: Ip>(addr: A) -> bool {
    !A::group_or_link(addr)
        && !A::martian(addr)
        && forward::subnet_of(addr).is_none()
        && !A::host_addr(addr)
}

/// `netpath_endpoint_reply_tc`, the endpoint programs' tail call for a first reply
/// ([`is_first_reply`]): records the flow, translates the reply and sends it the way the
/// route says.
#[inline(always)]
pub fn first_reply(ctx: &mut TcContext) -> i32 {
    // SAFETY: reading the skb's ifindex field.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // Tracked: a first reply may be a datagram's first fragment, handed on by the fragment
    // program.
    match parse_tracked(ctx.data(), ctx.data_end()) {
        Parsed::Ipv4(flow) => record(ctx, &flow, ifindex),
        Parsed::Ipv6(flow) => record(ctx, &flow, ifindex),
        _ => TC_ACT_SHOT as i32,
    }
}

#[inline(always)]
fn record<A: Ip>(ctx: &mut TcContext, flow: &Flow<A>, ifindex: u32) -> i32 {
    let Some(r) = reply_of(flow, ifindex) else {
        return TC_ACT_SHOT as i32;
    };
    let route = fib::lookup(ctx, flow, r.addr);
    let (via, via_macs) = match route {
        Route::Out {
            ifindex,
            smac,
            dmac,
        } => (
            ifindex,
            ReplyMacs {
                src: smac,
                dst: dmac,
            },
        ),
        // No neighbour yet (or no route): the route is asked again by the next reply.
        _ => (0, ReplyMacs::default()),
    };
    let closing = flow.tcp_closing(ctx.data(), ctx.data_end());
    let now = flows::now();
    let nat = FlowNat {
        addr: r.addr,
        port: r.port,
        // Marked seen by its client's next packet that asks the table.
        recent: recent::unmarked(flows::generation()),
        _pad: 0,
        ifindex,
        client: A::ANY,
        flags: if closing { flow_flags::CLOSING } else { 0 },
        via,
        last_seen: now,
        via_macs,
        stamp: 0,
    };
    // An LRU map makes room; a failed insert leaves the next reply to try again, as does a
    // CPU past its rate of new flows (this reply is translated all the same).
    if guard::new_flow_rate().is_ok() {
        let _ = A::flows().insert(&flow.key(), &nat, 0);
        count(Counter::ReplyRecorded);
    }
    if !ports::reverse_nat(ctx, flow, &nat) {
        return TC_ACT_SHOT as i32;
    }
    count(Counter::RevNat);
    trace(event::trace::REVERSE_NAT, flow, ifindex, r.addr, r.port);
    fib::send(ctx, route)
}
