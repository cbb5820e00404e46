//! Traffic arriving on an uplink: published ports are DNAT'd and sent straight into their
//! endpoint, replies of outbound flows translated back to theirs; everything else passes
//! untouched. One decision for XDP and TC; only the redirect differs. Where XDP runs, it
//! decides once: a packet it passes carries the verdict in its metadata, and TC, which sees
//! the packet next, takes it from there instead of deciding again — the host's own traffic
//! pays for one decision, not two.
use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_OK},
    helpers::{bpf_redirect, bpf_redirect_peer, bpf_xdp_adjust_meta},
    programs::{TcContext, XdpContext},
};
use netpath_common::{event, Counter, XDP_PASSED_TAG};

use crate::{
    packet::Packet,
    parse::{parse, ptr_at, Parsed},
    ports, snat,
    stats::{count, count_port, trace},
};

/// What an uplink does with a packet.
enum Verdict {
    /// DNAT'd to a published port's endpoint (this host-side veth).
    Dnat(u32),
    /// A reply of an outbound flow, translated back to its endpoint (this host-side veth).
    Reply(u32),
    /// Not ours: on to the host stack, counted under this reason.
    Pass(Counter),
}

#[inline(always)]
fn decide<P: Packet>(pkt: &mut P) -> Verdict {
    let flow = match parse(pkt.data(), pkt.data_end()) {
        Parsed::Ipv4(flow) if flow.has_ports() || flow.is_echo() => flow,
        Parsed::Ipv4(flow) if flow.fragment => return Verdict::Pass(Counter::Fragment),
        Parsed::Malformed => return Verdict::Pass(Counter::Malformed),
        _ => return Verdict::Pass(Counter::Pass),
    };
    if let Some(target) = flow
        .has_ports()
        .then(|| ports::lookup_published(&flow))
        .flatten()
    {
        if ports::dnat(pkt, &flow, &target) {
            count_port(target.stats, pkt.len());
            trace(event::trace::DNAT, &flow, 0, target.addr, target.port);
            return Verdict::Dnat(target.ifindex);
        }
        return Verdict::Pass(Counter::Pass);
    }
    let (data, end) = (pkt.data(), pkt.data_end());
    match snat::reply(pkt, data, end, &flow) {
        Some(rev) => Verdict::Reply(rev.ifindex),
        None => Verdict::Pass(Counter::Pass),
    }
}

/// Tags a packet XDP passes with `reason` (when the driver keeps metadata; if not, TC just
/// decides again).
#[inline(always)]
fn mark_passed(ctx: &mut XdpContext, reason: Counter) {
    // SAFETY: plain helper call; packet pointers are read again below.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -4) } != 0 {
        return;
    }
    if let Some(m) = ptr_at::<u32>(ctx.metadata(), ctx.data(), 0) {
        // SAFETY: bounds checked by ptr_at.
        unsafe { *m = XDP_PASSED_TAG | reason as u32 };
    }
}

/// What XDP decided for this packet, if it passed it.
#[inline(always)]
fn passed_by_xdp(ctx: &TcContext) -> Option<Counter> {
    // SAFETY: reading the skb's packet pointers.
    let (meta, data) = unsafe { ((*ctx.skb.skb).data_meta, (*ctx.skb.skb).data) };
    let m = ptr_at::<u32>(meta as usize, data as usize, 0)?;
    // SAFETY: bounds checked by ptr_at.
    let v = unsafe { *m };
    if v & !0xff != XDP_PASSED_TAG {
        return None;
    }
    Some(match v & 0xff {
        r if r == Counter::Malformed as u32 => Counter::Malformed,
        r if r == Counter::Fragment as u32 => Counter::Fragment,
        _ => Counter::Pass,
    })
}

/// TC ingress on an uplink: `bpf_redirect_peer` into the endpoint's namespace.
#[inline(always)]
pub fn ingress_tc(ctx: &mut TcContext) -> i32 {
    let verdict = match passed_by_xdp(ctx) {
        Some(reason) => Verdict::Pass(reason),
        None => decide(ctx),
    };
    let ifindex = match verdict {
        Verdict::Dnat(ifindex) => {
            count(Counter::DnatTc);
            ifindex
        }
        Verdict::Reply(ifindex) => ifindex,
        Verdict::Pass(reason) => {
            if reason == Counter::Malformed {
                aya_log_ebpf::debug!(ctx, "uplink: malformed headers, passed to the host stack");
            }
            count(reason);
            return TC_ACT_OK as i32;
        }
    };
    // SAFETY: plain helper call.
    unsafe { bpf_redirect_peer(ifindex, 0) as i32 }
}

/// XDP on an uplink: XDP_REDIRECT to the endpoint's host-side veth (which delivers to its
/// peer, the endpoint's interface). Passing is counted by TC, which sees those packets next
/// and takes the reason from the metadata.
#[inline(always)]
pub fn ingress_xdp(ctx: &mut XdpContext) -> u32 {
    let ifindex = match decide(ctx) {
        Verdict::Dnat(ifindex) => {
            count(Counter::DnatXdp);
            ifindex
        }
        Verdict::Reply(ifindex) => ifindex,
        Verdict::Pass(reason) => {
            mark_passed(ctx, reason);
            return xdp_action::XDP_PASS;
        }
    };
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(ifindex, 0) as u32 }
}
