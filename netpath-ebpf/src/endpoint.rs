//! Traffic leaving an endpoint (TC ingress of its host-side veth): ARP and neighbour
//! discovery, anti-spoofing, reverse NAT of published flows and their redirect out of the
//! host; IPv4 and IPv6 alike from anti-spoofing on (`forward::route`).
use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::{bpf_redirect, bpf_redirect_peer},
    programs::TcContext,
};
use netpath_common::{event, net_flags, tail, Counter, EndpointInfo, In6, PortTarget, DNS_PORT};

use crate::{
    arp, dns,
    family::{drop, Ip},
    fib, flows, forward,
    icmp::{self, Out},
    maps::{ENDPOINTS, TAIL_CALLS},
    nat46_reply, ndp,
    packet::Packet,
    parse::{
        is_ipv6, is_link_scoped6, parse, parse_tracked, ptr_at, Flow, Ipv4Flow, Ipv6Flow, Parsed,
    },
    ports::{self, Dnat},
    replies,
    stats::{count, count_later, count_port, trace},
};

/// A packet the endpoint sent, seen at TC ingress of its host-side veth (the veth's
/// ingress is the endpoint's egress).
#[inline(always)]
pub fn host_veth_ingress(ctx: &mut TcContext) -> i32 {
    // SAFETY: reading the skb's ifindex field.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    if is_ipv6(ctx.data(), ctx.data_end()) {
        // A reply of a published flow is translated here, as IPv4's, with no tail call (the
        // flow's key is the only IPv6 key on this stack); the rest goes to IPv6's program.
        if let Parsed::Ipv6(flow) = parse(ctx.data(), ctx.data_end()) {
            if let Some(verdict) = to_fragments(ctx, &flow, ifindex) {
                return verdict;
            }
            if let Some(verdict) = reply(ctx, &flow, ifindex) {
                return verdict;
            }
        }
        // SAFETY: the slot holds this load's IPv6 program; the call does not return.
        unsafe { TAIL_CALLS.tail_call(ctx, tail::ENDPOINT6) };
        aya_log_ebpf::debug!(
            ctx,
            "endpoint interface {}: no IPv6 program, dropped",
            ifindex
        );
        return TC_ACT_SHOT as i32;
    }
    let parsed = parse(ctx.data(), ctx.data_end());
    if let Parsed::Ipv4(flow) = &parsed {
        if let Some(verdict) = to_fragments(ctx, flow, ifindex) {
            return verdict;
        }
        if let Some(verdict) = reply(ctx, flow, ifindex) {
            return verdict;
        }
    }
    // SAFETY: map value pointer valid for this program run; copied out at once.
    let Some(ep) = ENDPOINTS.get_ptr(&ifindex).map(|e| unsafe { *e }) else {
        count(Counter::Pass);
        return TC_ACT_OK as i32;
    };
    match parsed {
        // An endpoint of IPv6 alone (its record's address 0.0.0.0) has no IPv4 to speak.
        Parsed::Arp if ep.addr == 0 => {
            count(Counter::DropSpoof);
            TC_ACT_SHOT as i32
        }
        Parsed::Arp => arp::answer(ctx, &ep, ifindex),
        Parsed::Ipv4(flow) => ipv4(ctx, &ep, &flow, ifindex),
        Parsed::Ipv6(_) | Parsed::Other => {
            count(Counter::Pass);
            TC_ACT_OK as i32
        }
        Parsed::Malformed => {
            aya_log_ebpf::debug!(
                ctx,
                "endpoint interface {}: malformed headers, passed to the host stack",
                ifindex
            );
            count(Counter::Malformed);
            TC_ACT_OK as i32
        }
    }
}

/// A fragment from the endpoint (or a packet behind IPv6 extension headers), not yet seen by
/// the fragment program: handed to it (`tail::FRAG`); the verdict should the call fail (no
/// such program). `None`, for anything else, to go on. Its protocol is not asked here: the
/// endpoint program would then be verified once per protocol of what goes on.
#[inline(always)]
fn to_fragments<A: Ip>(ctx: &mut TcContext, flow: &Flow<A>, ifindex: u32) -> Option<i32> {
    if !flow.fragment || ctx.cb()[0] == tail::FRAG_SEEN {
        return None;
    }
    Some(hand_on(ctx, tail::FRAG, flow, ifindex))
}

/// A fragment from an endpoint (`netpath_endpoint_frag_tc`, the endpoint program's tail
/// call), of either family: a TCP or UDP reply of a published flow translated as its first
/// fragment was (`frag.rs`: its first's ports remembered here, each later one given them),
/// an IPv4 one of a NAT46 flow handed on to NAT46's reply program, which makes it IPv6;
/// anything else handed back, marked, to go on as fragments always did: IPv4 to the endpoint
/// program, IPv6 to its own.
#[inline(always)]
pub fn host_veth_fragment(ctx: &mut TcContext) -> i32 {
    // SAFETY: reading the skb's ifindex field.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let verdict = match parse_tracked(ctx.data(), ctx.data_end()) {
        Parsed::Ipv4(flow) if nat46_reply::is_reply(ctx, &flow, ifindex) => {
            Some(hand_on(ctx, tail::NAT46_REPLY, &flow, ifindex))
        }
        Parsed::Ipv4(flow) => fragment_reply(ctx, &flow, ifindex),
        Parsed::Ipv6(flow) => fragment_reply(ctx, &flow, ifindex),
        _ => None,
    };
    if let Some(verdict) = verdict {
        return verdict;
    }
    ctx.cb_mut()[0] = tail::FRAG_SEEN;
    let slot = if is_ipv6(ctx.data(), ctx.data_end()) {
        tail::ENDPOINT6
    } else {
        tail::ENDPOINT
    };
    // SAFETY: the slot holds this load's program; the call does not return.
    unsafe { TAIL_CALLS.tail_call(ctx, slot) };
    TC_ACT_SHOT as i32
}

/// Hands `flow`, an endpoint's packet, to the program in tail-call `slot` (one with the
/// stack or verifier budget its path needs, `tail`); dropped as unroutable if the slot is
/// empty.
#[inline(always)]
pub fn hand_on<A: netpath_common::Addr>(
    ctx: &mut TcContext,
    slot: u32,
    flow: &Flow<A>,
    ifindex: u32,
) -> i32 {
    // SAFETY: the slot holds this load's program; the call does not return.
    unsafe { TAIL_CALLS.tail_call(ctx, slot) };
    drop(Counter::DropNoRoute, flow, ifindex)
}

#[inline(always)]
fn fragment_reply<A: Ip>(ctx: &mut TcContext, flow: &Flow<A>, ifindex: u32) -> Option<i32> {
    let verdict = reply(ctx, flow, ifindex)?;
    count_later(flow);
    Some(verdict)
}

/// IPv6 from an endpoint (`netpath_endpoint6_tc`, the endpoint program's tail call), once
/// the entry program found it no reply of a published flow.
#[inline(always)]
pub fn host_veth_ingress6(ctx: &mut TcContext) -> i32 {
    // SAFETY: reading the skb's ifindex field.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    match parse(ctx.data(), ctx.data_end()) {
        Parsed::Ipv6(flow) => ipv6(ctx, &flow, ifindex),
        _ => {
            count(Counter::Malformed);
            TC_ACT_OK as i32
        }
    }
}

/// IPv6 from an endpoint to a published port through a host address, handed on by
/// `netpath_endpoint6_tc` (which checked its source): hairpin. A program of its own, as the
/// translation's IPv6 keys do not fit the endpoint program's stack beside forwarding.
#[inline(always)]
pub fn host_veth_hairpin6(ctx: &mut TcContext) -> i32 {
    // SAFETY: reading the skb's ifindex field.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    match (parse(ctx.data(), ctx.data_end()), In6::endpoint(ifindex)) {
        (Parsed::Ipv6(flow), Some(ep)) => {
            hairpin(ctx, &ep, &flow, ifindex).unwrap_or(TC_ACT_SHOT as i32)
        }
        _ => TC_ACT_SHOT as i32,
    }
}

/// An IPv6 DNS query from the endpoint to its network's gateway, handed on by
/// `netpath_endpoint6_tc` (which checked its source): answered by the fast path, or passed
/// to the agent's server on the host, as the query would have been.
#[inline(always)]
pub fn host_veth_dns6(ctx: &mut TcContext) -> i32 {
    // SAFETY: reading the skb's ifindex field.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    match (parse(ctx.data(), ctx.data_end()), In6::endpoint(ifindex)) {
        (Parsed::Ipv6(flow), Some(ep)) => {
            dns::answer(ctx, &ep, &flow, ifindex).unwrap_or_else(|| {
                count(Counter::Pass);
                TC_ACT_OK as i32
            })
        }
        _ => TC_ACT_SHOT as i32,
    }
}

/// Whether the frame comes from `mac` (its Ethernet source).
#[inline(always)]
fn from_mac(ctx: &TcContext, mac: &[u8; 6]) -> bool {
    // SAFETY: bounds checked by ptr_at.
    ptr_at::<[u8; 6]>(ctx.data(), ctx.data_end(), 6).is_some_and(|m| unsafe { *m } == *mac)
}

/// An IPv6 packet from the endpoint: neighbour discovery, then from the endpoint's own
/// address on this network as IPv4 is (`forward::route`). The link's own chatter (link-local
/// or unspecified sources) goes to the host only, never to a peer; any other source is a spoof,
/// on a network without IPv6 as well.
#[inline(always)]
fn ipv6(ctx: &mut TcContext, flow: &Ipv6Flow, ifindex: u32) -> i32 {
    let ep = In6::endpoint(ifindex);
    if ep.is_some_and(|e| !from_mac(ctx, &e.mac)) {
        return drop(Counter::DropSpoof, flow, ifindex);
    }
    if let Some(verdict) = ndp::from_endpoint(ctx, ep.as_ref(), flow, ifindex) {
        return verdict;
    }
    match ep {
        Some(ep) if flow.src_addr == ep.addr => {
            if let Some(verdict) = error_out(ctx, flow, ifindex) {
                return verdict;
            }
            if dns::asks_gateway(&ep, flow) {
                return hand_on(ctx, tail::DNS6, flow, ifindex);
            }
            if let Some((target, _)) = hairpin_target(&ep, flow, ifindex) {
                // A port whose endpoint has IPv4 alone: NAT46's program, as for a client
                // from outside.
                let slot = if In6::nat46(&target) {
                    tail::NAT46
                } else {
                    tail::HAIRPIN6
                };
                return hand_on(ctx, slot, flow, ifindex);
            }
            forward::route(ctx, &ep, flow, ifindex)
        }
        _ if is_link_scoped6(&flow.src_addr) => {
            count(Counter::Pass);
            TC_ACT_OK as i32
        }
        _ => drop(Counter::DropSpoof, flow, ifindex),
    }
}

#[inline(always)]
fn ipv4(ctx: &mut TcContext, ep: &EndpointInfo, flow: &Ipv4Flow, ifindex: u32) -> i32 {
    // 0.0.0.0: an endpoint of IPv6 alone, whose every IPv4 packet is a spoof.
    if ep.addr == 0 || flow.src_addr != ep.addr || !from_mac(ctx, &ep.mac) {
        return drop(Counter::DropSpoof, flow, ifindex);
    }
    if let Some(verdict) = error_out(ctx, flow, ifindex) {
        return verdict;
    }
    if nat46_reply::is_reply(ctx, flow, ifindex) {
        return hand_on(ctx, tail::NAT46_REPLY, flow, ifindex);
    }
    if let Some(verdict) = dns::answer(ctx, ep, flow, ifindex) {
        return verdict;
    }
    if let Some(verdict) = hairpin(ctx, ep, flow, ifindex) {
        return verdict;
    }
    forward::route(ctx, ep, flow, ifindex)
}

/// A reply of a published flow sent to this interface's endpoint: translated back and sent
/// the way its client came (or where the route says). The flow vouches for the source (its
/// key's source is the endpoint address the flow was sent to, on this interface), so replies
/// need neither the endpoint's entry nor anti-spoofing: one lookup before the rewrite. `None`
/// when the packet is no such reply.
#[inline(always)]
fn reply<A: Ip>(ctx: &mut TcContext, flow: &Flow<A>, ifindex: u32) -> Option<i32> {
    if !flow.has_ports() {
        return None;
    }
    let closing = flow.tcp_closing(ctx.data(), ctx.data_end());
    let Some(rev) = flows::reply_nat(flow, ifindex, closing) else {
        if replies::is_first_reply(flow, ifindex) {
            // SAFETY: the slot holds this load's program; the call does not return.
            unsafe { TAIL_CALLS.tail_call(ctx, tail::REPLY) };
        }
        return None;
    };
    if !ports::reverse_nat(ctx, flow, rev) {
        return Some(TC_ACT_SHOT as i32);
    }
    count(Counter::RevNat);
    trace(event::trace::REVERSE_NAT, flow, ifindex, rev.addr, rev.port);
    if rev.via != 0 {
        if !ctx.set_macs(&rev.via_macs.src, &rev.via_macs.dst) {
            return Some(TC_ACT_SHOT as i32);
        }
        // SAFETY: plain helper call.
        return Some(unsafe { bpf_redirect(rev.via, 0) as i32 });
    }
    let mut out = *flow;
    if rev.client != A::ANY {
        out.dst_addr = rev.client;
    }
    let route = fib::lookup(ctx, &out, rev.addr);
    Some(fib::send(ctx, route))
}

/// An ICMP error the endpoint sent about a client's packet of a published port, translated
/// back ([`icmp::error_out`]) and sent to the client. `None` when the packet is no such error.
#[inline(always)]
fn error_out<A: Ip>(ctx: &mut TcContext, flow: &Flow<A>, ifindex: u32) -> Option<i32> {
    let out = icmp::error_out(ctx, flow, ifindex)?;
    Some(match out {
        Out::Via(via, macs) if ctx.set_macs(&macs.src, &macs.dst) => {
            count(Counter::IcmpErrorOut);
            // SAFETY: plain helper call.
            unsafe { bpf_redirect(via, 0) as i32 }
        }
        Out::Route(src) => {
            count(Counter::IcmpErrorOut);
            let route = fib::lookup(ctx, flow, src);
            fib::send(ctx, route)
        }
        Out::Via(..) | Out::Failed => TC_ACT_SHOT as i32,
    })
}

/// Hairpin: the endpoint addressed a published port through a host address (a host IP, a
/// gateway): DNAT'd to the port's endpoint, its replies coming back through the flow table
/// like any client's. `None` when the packet is no such thing.
#[inline(always)]
fn hairpin<A: Ip>(
    ctx: &mut TcContext,
    ep: &EndpointInfo<A>,
    flow: &Flow<A>,
    ifindex: u32,
) -> Option<i32> {
    if !flow.has_ports() {
        return None;
    }
    let (target, masq) = hairpin_target(ep, flow, ifindex)?;
    if A::nat46(&target) {
        return Some(drop(Counter::DropNoRoute, flow, ifindex));
    }
    match ports::dnat_masq(ctx, flow, ifindex, &target, masq) {
        Dnat::Done => {}
        Dnat::Denied(reason) => return Some(drop(reason, flow, ifindex)),
        Dnat::NotHere | Dnat::Failed => return Some(TC_ACT_SHOT as i32),
    }
    count(Counter::Hairpin);
    count_port(target.stats, u64::from(ctx.len()));
    trace(
        event::trace::HAIRPIN,
        flow,
        ifindex,
        target.addr,
        target.port,
    );
    // SAFETY: plain helper call.
    Some(unsafe { bpf_redirect_peer(target.ifindex, 0) as i32 })
}

/// The port a hairpin packet reaches. When the port is its own, its source becomes its
/// gateway (returned beside the target; ANY otherwise) so the replies leave it. Internal
/// networks reach nothing outside, published ports included.
#[inline(always)]
fn hairpin_target<A: Ip>(
    ep: &EndpointInfo<A>,
    flow: &Flow<A>,
    ifindex: u32,
) -> Option<(PortTarget<A>, A)> {
    let (flags, gateway) = A::network(ep.network).map_or((0, A::ANY), |n| (n.flags, n.gateway));
    if flags & net_flags::INTERNAL != 0 {
        return None;
    }
    // The network's DNS server (the agent's, on the gateway) comes before any publish.
    if flow.dst_addr == gateway && flow.dst_port == DNS_PORT.to_be() {
        return None;
    }
    if !flow.has_ports() {
        return None;
    }
    let target = ports::lookup_published(flow)?;
    if target.ifindex != ifindex {
        return Some((target, A::ANY));
    }
    (gateway != A::ANY).then_some((target, gateway))
}
