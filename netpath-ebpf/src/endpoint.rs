//! Traffic leaving an endpoint (TC ingress of its host-side veth): ARP, anti-spoofing,
//! reverse NAT of published flows and their redirect out of the host.
use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::bpf_redirect_peer,
    programs::TcContext,
};
use netpath_common::{net_flags, Counter, EndpointInfo, PortTarget};

use crate::{
    arp, fib, flows, forward,
    maps::{ENDPOINTS, NETWORKS},
    nat,
    parse::{parse, ptr_at, Ipv4Flow, Parsed},
    stats::count,
};

/// Entry for a packet an endpoint sent.
#[inline(always)]
pub fn egress(ctx: &mut TcContext) -> i32 {
    // SAFETY: reading the skb's ifindex field.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: map value pointer valid for this program run; copied out at once.
    let Some(ep) = ENDPOINTS.get_ptr(&ifindex).map(|e| unsafe { *e }) else {
        count(Counter::Pass);
        return TC_ACT_OK as i32;
    };
    match parse(ctx.data(), ctx.data_end()) {
        Parsed::Arp => arp::answer(ctx, &ep, ifindex),
        Parsed::Ipv4(flow) => ipv4(ctx, &ep, &flow, ifindex),
        Parsed::Other => {
            count(Counter::Pass);
            TC_ACT_OK as i32
        }
        Parsed::Malformed => {
            count(Counter::Malformed);
            TC_ACT_OK as i32
        }
    }
}

#[inline(always)]
fn ipv4(ctx: &mut TcContext, ep: &EndpointInfo, flow: &Ipv4Flow, ifindex: u32) -> i32 {
    let Some(src_mac) = ptr_at::<[u8; 6]>(ctx.data(), ctx.data_end(), 6) else {
        return TC_ACT_SHOT as i32;
    };
    // SAFETY: bounds checked by ptr_at.
    if flow.src_addr != ep.addr || unsafe { *src_mac } != ep.mac {
        count(Counter::DropSpoof);
        return TC_ACT_SHOT as i32;
    }
    if flow.has_ports() {
        if let Some(rev) = flows::reply_nat(flow) {
            if !nat::reverse_nat(ctx, flow, &rev) {
                return TC_ACT_SHOT as i32;
            }
            count(Counter::RevNat);
            let route = fib::lookup(ctx, flow, rev.addr);
            return fib::send(ctx, route);
        }
        if let Some(target) = hairpin_target(ep, flow, ifindex) {
            if !nat::dnat(ctx, flow, &target) {
                return TC_ACT_SHOT as i32;
            }
            count(Counter::Hairpin);
            // SAFETY: plain helper call.
            return unsafe { bpf_redirect_peer(target.ifindex, 0) as i32 };
        }
    }
    forward::route(ctx, ep, flow, ifindex)
}

/// Hairpin: the endpoint addressed another endpoint's published port through a host address
/// (a host IP, a gateway). Its replies come back through the flow table like any client's.
/// Internal networks reach nothing outside, published ports included; an endpoint's own
/// published port is left to the host (that needs source NAT, not done here).
#[inline(always)]
fn hairpin_target(ep: &EndpointInfo, flow: &Ipv4Flow, ifindex: u32) -> Option<PortTarget> {
    // SAFETY: map value pointer valid for this program run.
    let flags = NETWORKS
        .get_ptr(&ep.network)
        .map_or(0, |n| unsafe { (*n).flags });
    if flags & net_flags::INTERNAL != 0 {
        return None;
    }
    nat::lookup_published(flow).filter(|t| t.ifindex != ifindex)
}
