//! Traffic arriving on an uplink, IPv4 and IPv6 alike: published ports are DNAT'd and sent
//! straight into their endpoint (an IPv6 client of an IPv4-only endpoint handed to NAT46's
//! program), replies of outbound flows translated back to theirs; what no wire may carry
//! (loopback addresses) is dropped, and so is what was routed at a network's addresses unless
//! the network is routed (then it is delivered to the endpoint, policy judging it);
//! everything else passes untouched. One decision for XDP and TC; only the redirect differs. An uplink
//! runs one of them: the agent attaches TC only where XDP is off, since XDP decides everything
//! TC would and a TC ingress program costs the host's own packets even when it only passes
//! them.
use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_OK, TC_ACT_SHOT},
    helpers::{bpf_redirect, bpf_redirect_peer},
    programs::{TcContext, XdpContext},
};
use netpath_common::{event, net_flags, tail, Counter, In6};

use crate::{
    family::Ip,
    forward,
    icmp::{self, Back},
    maps::{TAIL_CALLS, TAIL_CALLS_XDP},
    nat46::{self, Outcome},
    packet::Packet,
    parse::{is_icmp, is_ipv6, parse, parse_tracked, Flow, Parsed},
    policy::{self, Known},
    ports::{self, Dnat, Published},
    snat,
    stats::{count, count_later, count_port, trace},
};

/// What an uplink does with a packet.
enum Verdict {
    /// Dropped, counted under this reason.
    Drop(Counter),
    /// DNAT'd to a published port's endpoint (this host-side veth).
    Dnat(u32),
    /// A reply of an outbound flow, translated back to its endpoint (this host-side veth).
    Reply(u32),
    /// An IPv6 client of a port whose endpoint has IPv4 alone: on to NAT46's program.
    Nat46,
    /// Not ours: on to the host stack, counted under this reason.
    Pass(Counter),
}

/// The loopback device's index, the same in every namespace: an "uplink" there (a host that
/// serves only itself, as in the README's walkthrough) carries 127.0.0.0/8 legitimately.
const LOOPBACK_IFINDEX: u32 = 1;

/// What passes untranslated: on to the host, unless it was routed at a network's addresses.
/// Those are reached from outside only through published ports (Docker 28 drops direct routed
/// access the same way) unless the network is routed (`net_flags::ROUTED`, per family), whose
/// endpoints it is delivered to here ([`routed_in`]).
#[inline(always)]
fn untouched<P: Packet, A: Ip>(pkt: &mut P, flow: &Flow<A>, reason: Counter) -> Verdict {
    let Some(id) = forward::subnet_of(flow.dst_addr) else {
        return Verdict::Pass(reason);
    };
    let routed = A::network(id).is_some_and(|n| n.flags & net_flags::ROUTED != 0);
    if pkt.ingress_ifindex() == LOOPBACK_IFINDEX {
        Verdict::Pass(reason)
    } else if routed {
        routed_in(pkt, flow, reason)
    } else {
        Verdict::Drop(Counter::DropRouted)
    }
}

/// A packet for an endpoint of a routed network, from outside: delivered straight into it,
/// its addresses as they are, once the policy lets the connection in (remembered both ways,
/// as between endpoints). What is no endpoint's (the gateway) goes to the host.
#[inline(always)]
fn routed_in<P: Packet, A: Ip>(pkt: &mut P, flow: &Flow<A>, reason: Counter) -> Verdict {
    let Some(peer) = A::peer(flow.dst_addr) else {
        return Verdict::Pass(reason);
    };
    let known = Known {
        src: None,
        dst: Some(peer.identity),
    };
    let (data, end) = (pkt.data(), pkt.data_end());
    if let Err(reason) = policy::admit_tracked(flow, known, || A::error_about(data, end, flow)) {
        return Verdict::Drop(reason);
    }
    if !pkt.set_macs(&peer.host_mac, &peer.mac) {
        return Verdict::Pass(Counter::Malformed);
    }
    count(Counter::RoutedIn);
    Verdict::Reply(peer.ifindex)
}

/// The entry program's decision, on what is not IPv6 (handed on before: see [`ingress_tc`]).
#[inline(always)]
fn decide<P: Packet>(pkt: &mut P) -> Verdict {
    match parse_tracked(pkt.data(), pkt.data_end()) {
        Parsed::Ipv4(flow) => decide_ip(pkt, &flow),
        Parsed::Malformed => Verdict::Pass(Counter::Malformed),
        _ => Verdict::Pass(Counter::Pass),
    }
}

/// IPv6 to a published port, decided in the entry program when it is one to one or its flow
/// is kept already (no tail call: neither builds more than the flow's key, so IPv6's state
/// never meets the entry program's stack). `None`, nothing written, for anything else (a new
/// kept flow, NAT46, a fragment, what is not a published port), which IPv6's program decides.
#[inline(always)]
fn published6<P: Packet>(pkt: &mut P) -> Option<Verdict> {
    let Parsed::Ipv6(flow) = parse(pkt.data(), pkt.data_end()) else {
        return None;
    };
    // Loopback either way is left to IPv6's program, which drops it: no wire carries it.
    if !flow.has_ports() || In6::martian(flow.src_addr) || In6::martian(flow.dst_addr) {
        return None;
    }
    let target = ports::lookup_port(flow.dst_addr, flow.dst_port, flow.proto).target?;
    if In6::nat46(target) {
        return None;
    }
    let done = match ports::stateless(pkt, &flow, target) {
        Some(done) => done,
        None => ports::kept(pkt, &flow, target)?,
    };
    Some(match done {
        Dnat::Done => {
            count_port(target.stats, pkt.len());
            trace(event::trace::DNAT, &flow, 0, target.addr, target.port);
            Verdict::Dnat(target.ifindex)
        }
        Dnat::Denied(reason) => Verdict::Drop(reason),
        _ => Verdict::Pass(Counter::Pass),
    })
}

/// The IPv6 program's decision.
#[inline(always)]
fn decide6<P: Packet>(pkt: &mut P) -> Verdict {
    match parse_tracked(pkt.data(), pkt.data_end()) {
        Parsed::Ipv6(flow) => decide_ip(pkt, &flow),
        _ => Verdict::Pass(Counter::Malformed),
    }
}

/// An IP packet of either family: what no wire may carry (loopback addresses: a port
/// published on `127.0.0.1` or `[::1]` must not answer the LAN, CVE-2020-8558's class) is
/// dropped, published ports DNAT'd, replies of outbound flows translated back.
#[inline(always)]
fn decide_ip<P: Packet, A: Ip>(pkt: &mut P, flow: &Flow<A>) -> Verdict {
    if (A::martian(flow.dst_addr) || A::martian(flow.src_addr))
        && pkt.ingress_ifindex() != LOOPBACK_IFINDEX
    {
        return Verdict::Drop(Counter::DropMartian);
    }
    if !flow.has_ports() && !flow.is_echo() {
        if is_icmp(flow.proto) {
            match icmp::error_back(pkt, flow) {
                Back::To(ifindex) => {
                    count(Counter::IcmpErrorBack);
                    return Verdict::Reply(ifindex);
                }
                Back::Failed => return Verdict::Drop(Counter::Malformed),
                Back::Nat46 => return Verdict::Nat46,
                Back::NotOurs => {}
            }
        }
        let reason = if flow.fragment {
            Counter::Fragment
        } else {
            Counter::Pass
        };
        return untouched(pkt, flow, reason);
    }
    let published = if flow.has_ports() {
        ports::lookup_port(flow.dst_addr, flow.dst_port, flow.proto)
    } else {
        Published::NOTHING
    };
    if let Some(target) = published.target {
        if A::nat46(target) {
            return Verdict::Nat46;
        }
        match ports::dnat(pkt, flow, target, published.anywhere) {
            Dnat::Done => {
                count_port(target.stats, pkt.len());
                count_later(flow);
                trace(event::trace::DNAT, flow, 0, target.addr, target.port);
                return Verdict::Dnat(target.ifindex);
            }
            Dnat::Failed => return Verdict::Pass(Counter::Pass),
            Dnat::Denied(reason) => return Verdict::Drop(reason),
            // Routed through the host to another address: maybe an outbound flow's reply.
            Dnat::NotHere => {}
        }
    }
    outbound_reply(pkt, flow)
}

/// A reply of an outbound flow, translated back to its endpoint; else what passes untouched.
#[inline(always)]
fn outbound_reply<P: Packet, A: Ip>(pkt: &mut P, flow: &Flow<A>) -> Verdict {
    let (data, end) = (pkt.data(), pkt.data_end());
    match snat::reply(pkt, data, end, flow) {
        Some(rev) => {
            count_later(flow);
            Verdict::Reply(rev.ifindex)
        }
        None => untouched(pkt, flow, Counter::Pass),
    }
}

/// TC ingress on an uplink: `bpf_redirect_peer` into the endpoint's namespace. IPv6 is handed
/// on first, by its Ethernet type alone, to a program of its own (IPv6's keys and translation
/// do not fit a 512-byte stack beside IPv4's, as Cilium splits its families).
#[inline(always)]
pub fn ingress_tc(ctx: &mut TcContext) -> i32 {
    if is_ipv6(ctx.data(), ctx.data_end()) {
        if let Some(verdict) = published6(ctx) {
            return tc_verdict(ctx, verdict);
        }
        // SAFETY: the slot holds this load's program; the call does not return.
        unsafe { TAIL_CALLS.tail_call(ctx, tail::UPLINK6) };
        aya_log_ebpf::debug!(ctx, "uplink: no IPv6 program, passed to the host stack");
        return TC_ACT_OK as i32;
    }
    let verdict = decide(ctx);
    // Logged here alone: a log call's frame on top of IPv6's program would not fit its stack.
    if matches!(verdict, Verdict::Pass(Counter::Malformed)) {
        aya_log_ebpf::debug!(ctx, "uplink: malformed headers, passed to the host stack");
    }
    tc_verdict(ctx, verdict)
}

/// TC ingress on an uplink, IPv6 (`netpath_uplink6_tc`, the uplink program's tail call).
#[inline(always)]
pub fn ingress_tc6(ctx: &mut TcContext) -> i32 {
    let verdict = decide6(ctx);
    tc_verdict(ctx, verdict)
}

/// TC ingress on an uplink, NAT46 (`netpath_uplink_nat46_tc`, the IPv6 program's tail call).
#[inline(always)]
pub fn ingress_tc46(ctx: &mut TcContext) -> i32 {
    let verdict = nat46_verdict(ctx);
    tc_verdict(ctx, verdict)
}

/// XDP on an uplink, NAT46 (`netpath_uplink_nat46_xdp`, the IPv6 program's tail call).
#[inline(always)]
pub fn ingress_xdp46(ctx: &mut XdpContext) -> u32 {
    let verdict = nat46_verdict(ctx);
    xdp_verdict(ctx, verdict)
}

#[inline(always)]
fn nat46_verdict<P: Packet>(pkt: &mut P) -> Verdict {
    match nat46::from_client(pkt) {
        Outcome::To(ifindex) => Verdict::Dnat(ifindex),
        Outcome::Error(ifindex) => {
            count(Counter::IcmpErrorBack);
            Verdict::Reply(ifindex)
        }
        Outcome::Drop(reason) => Verdict::Drop(reason),
        Outcome::Pass(reason) => Verdict::Pass(reason),
    }
}

#[inline(always)]
fn tc_verdict(ctx: &mut TcContext, verdict: Verdict) -> i32 {
    let ifindex = match verdict {
        Verdict::Dnat(ifindex) => {
            count(Counter::DnatTc);
            ifindex
        }
        Verdict::Reply(ifindex) => ifindex,
        Verdict::Nat46 => {
            // SAFETY: the slot holds this load's program; the call does not return.
            unsafe { TAIL_CALLS.tail_call(ctx, tail::NAT46) };
            count(Counter::Pass);
            return TC_ACT_OK as i32;
        }
        Verdict::Drop(reason) => {
            count(reason);
            return TC_ACT_SHOT as i32;
        }
        Verdict::Pass(reason) => {
            count(reason);
            return TC_ACT_OK as i32;
        }
    };
    // SAFETY: plain helper call.
    unsafe { bpf_redirect_peer(ifindex, 0) as i32 }
}

/// XDP on an uplink: XDP_REDIRECT to the endpoint's host-side veth (which delivers to its
/// peer, the endpoint's interface); everything else passes, counted with its reason.
#[inline(always)]
pub fn ingress_xdp(ctx: &mut XdpContext) -> u32 {
    if is_ipv6(ctx.data(), ctx.data_end()) {
        if let Some(verdict) = published6(ctx) {
            return xdp_verdict(ctx, verdict);
        }
        // SAFETY: the slot holds this load's program; the call does not return.
        unsafe { TAIL_CALLS_XDP.tail_call(ctx, tail::UPLINK6) };
        return xdp_action::XDP_PASS;
    }
    let verdict = decide(ctx);
    xdp_verdict(ctx, verdict)
}

/// XDP on an uplink, IPv6 (`netpath_uplink6_xdp`, the uplink program's tail call).
#[inline(always)]
pub fn ingress_xdp6(ctx: &mut XdpContext) -> u32 {
    let verdict = decide6(ctx);
    xdp_verdict(ctx, verdict)
}

#[inline(always)]
fn xdp_verdict(ctx: &XdpContext, verdict: Verdict) -> u32 {
    let ifindex = match verdict {
        Verdict::Dnat(ifindex) => {
            count(Counter::DnatXdp);
            ifindex
        }
        Verdict::Reply(ifindex) => ifindex,
        Verdict::Nat46 => {
            // SAFETY: the slot holds this load's program; the call does not return.
            unsafe { TAIL_CALLS_XDP.tail_call(ctx, tail::NAT46) };
            count(Counter::Pass);
            return xdp_action::XDP_PASS;
        }
        Verdict::Drop(reason) => {
            count(reason);
            return xdp_action::XDP_DROP;
        }
        Verdict::Pass(reason) => {
            count(reason);
            return xdp_action::XDP_PASS;
        }
    };
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(ifindex, 0) as u32 }
}
