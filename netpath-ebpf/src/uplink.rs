//! Traffic arriving on an uplink: published ports are DNAT'd and sent straight into their
//! endpoint, replies of outbound flows translated back to theirs; everything else passes
//! untouched. One decision for XDP and TC; only the redirect differs. An uplink runs one of
//! them: the agent attaches TC only where XDP is off, since XDP decides everything TC would
//! and a TC ingress program costs the host's own packets even when it only passes them.
use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_OK},
    helpers::{bpf_redirect, bpf_redirect_peer},
    programs::{TcContext, XdpContext},
};
use netpath_common::{event, Counter};

use crate::{
    packet::Packet,
    parse::{parse, Parsed},
    ports::{self, Dnat, Published},
    snat,
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
    let published = if flow.has_ports() {
        ports::lookup_port(flow.dst_addr, flow.dst_port, flow.proto)
    } else {
        Published::NOTHING
    };
    if published.found() {
        match ports::dnat(pkt, &flow, &published) {
            Dnat::Done => {
                let target = &published.target;
                count_port(target.stats, pkt.len());
                trace(event::trace::DNAT, &flow, 0, target.addr, target.port);
                return Verdict::Dnat(target.ifindex);
            }
            Dnat::Failed => return Verdict::Pass(Counter::Pass),
            // Routed through the host to another address: maybe an outbound flow's reply.
            Dnat::NotHere => {}
        }
    }
    let (data, end) = (pkt.data(), pkt.data_end());
    match snat::reply(pkt, data, end, &flow) {
        Some(rev) => Verdict::Reply(rev.ifindex),
        None => Verdict::Pass(Counter::Pass),
    }
}

/// TC ingress on an uplink: `bpf_redirect_peer` into the endpoint's namespace.
#[inline(always)]
pub fn ingress_tc(ctx: &mut TcContext) -> i32 {
    let ifindex = match decide(ctx) {
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
/// peer, the endpoint's interface); everything else passes, counted with its reason.
#[inline(always)]
pub fn ingress_xdp(ctx: &mut XdpContext) -> u32 {
    let ifindex = match decide(ctx) {
        Verdict::Dnat(ifindex) => {
            count(Counter::DnatXdp);
            ifindex
        }
        Verdict::Reply(ifindex) => ifindex,
        Verdict::Pass(reason) => {
            count(reason);
            return xdp_action::XDP_PASS;
        }
    };
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(ifindex, 0) as u32 }
}
