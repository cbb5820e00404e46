//! Traffic leaving an endpoint (TC ingress of its host-side veth): ARP, anti-spoofing,
//! reverse NAT of published flows and their redirect out of the host.
use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, TC_ACT_OK, TC_ACT_SHOT,
    },
    helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    programs::TcContext,
};
use netpath_common::{net_flags, Counter, EndpointInfo, PortTarget};

use crate::{
    arp, flows, forward,
    maps::{ENDPOINTS, NETWORKS},
    nat,
    packet::Packet,
    parse::{parse, ptr_at, Ipv4Flow, Parsed},
    stats::count,
};

const AF_INET: u8 = 2;

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
            return redirect_out(ctx, flow, rev.addr);
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

/// Sends a translated reply straight out of the interface the route to its destination
/// names, with the MACs the FIB and neighbour tables give, bypassing the host's netfilter.
#[inline(always)]
fn redirect_out(ctx: &mut TcContext, flow: &Ipv4Flow, src_addr: u32) -> i32 {
    // SAFETY: all-zero is a valid bpf_fib_lookup.
    let mut params: bpf_fib_lookup = unsafe { zeroed() };
    params.family = AF_INET;
    params.l4_protocol = flow.proto;
    params.__bindgen_anon_1.tot_len = flow.tot_len;
    params.__bindgen_anon_3.ipv4_src = src_addr;
    params.__bindgen_anon_4.ipv4_dst = flow.dst_addr;
    // SAFETY: reading the skb's ifindex field.
    params.ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: params is a valid bpf_fib_lookup of the size passed.
    let rc = unsafe {
        fib_lookup(
            ctx.skb.skb as *mut _,
            &mut params,
            size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    if rc == BPF_FIB_LKUP_RET_SUCCESS as i64 {
        if !ctx.set_macs(&params.smac, &params.dmac) {
            return TC_ACT_SHOT as i32;
        }
        // SAFETY: plain helper call.
        return unsafe { bpf_redirect(params.ifindex, 0) as i32 };
    }
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        // SAFETY: plain helper call; the kernel resolves the neighbour.
        return unsafe { bpf_redirect_neigh(params.ifindex, core::ptr::null_mut(), 0, 0) as i32 };
    }
    count(Counter::FibMiss);
    TC_ACT_OK as i32
}
