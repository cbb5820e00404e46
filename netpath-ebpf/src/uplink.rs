//! Traffic arriving on an uplink: published ports are DNAT'd and sent straight into their
//! endpoint; everything else passes untouched.
use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_OK},
    helpers::{bpf_redirect, bpf_redirect_peer},
    programs::{TcContext, XdpContext},
};
use netpath_common::Counter;

use crate::{
    nat,
    parse::{parse, Parsed},
    snat,
    stats::count,
};

/// TC ingress on an uplink: DNAT then `bpf_redirect_peer` into the endpoint's namespace.
#[inline(always)]
pub fn ingress_tc(ctx: &mut TcContext) -> i32 {
    let flow = match parse(ctx.data(), ctx.data_end()) {
        Parsed::Ipv4(flow) if flow.has_ports() || flow.is_echo() => flow,
        Parsed::Ipv4(flow) if flow.fragment => {
            count(Counter::Fragment);
            return TC_ACT_OK as i32;
        }
        Parsed::Malformed => {
            count(Counter::Malformed);
            return TC_ACT_OK as i32;
        }
        _ => {
            count(Counter::Pass);
            return TC_ACT_OK as i32;
        }
    };
    let Some(target) = flow
        .has_ports()
        .then(|| nat::lookup_published(&flow))
        .flatten()
    else {
        let (data, end) = (ctx.data(), ctx.data_end());
        if let Some(rev) = snat::reply(ctx, data, end, &flow) {
            // SAFETY: plain helper call.
            return unsafe { bpf_redirect_peer(rev.ifindex, 0) as i32 };
        }
        count(Counter::Pass);
        return TC_ACT_OK as i32;
    };
    if !nat::dnat(ctx, &flow, &target) {
        return TC_ACT_OK as i32;
    }
    count(Counter::DnatTc);
    // SAFETY: plain helper call.
    unsafe { bpf_redirect_peer(target.ifindex, 0) as i32 }
}

/// XDP on an uplink: the same DNAT, then XDP_REDIRECT to the endpoint's host-side veth
/// (which delivers to its peer, the endpoint's interface).
#[inline(always)]
pub fn ingress_xdp(ctx: &mut XdpContext) -> u32 {
    let flow = match parse(ctx.data(), ctx.data_end()) {
        Parsed::Ipv4(flow) if flow.has_ports() || flow.is_echo() => flow,
        _ => return xdp_action::XDP_PASS,
    };
    let Some(target) = flow
        .has_ports()
        .then(|| nat::lookup_published(&flow))
        .flatten()
    else {
        let (data, end) = (ctx.data(), ctx.data_end());
        if let Some(rev) = snat::reply(ctx, data, end, &flow) {
            // SAFETY: plain helper call.
            return unsafe { bpf_redirect(rev.ifindex, 0) as u32 };
        }
        return xdp_action::XDP_PASS;
    };
    if !nat::dnat(ctx, &flow, &target) {
        return xdp_action::XDP_PASS;
    }
    count(Counter::DnatXdp);
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(target.ifindex, 0) as u32 }
}
