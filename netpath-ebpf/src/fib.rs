//! Route lookups for packets netpath sends out itself (translated replies, outbound NAT):
//! the FIB names the interface and the neighbour table the MACs, bypassing the host's
//! netfilter.
use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, TC_ACT_OK, TC_ACT_SHOT,
    },
    helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};
use netpath_common::Counter;

use crate::{family::Ip, packet::Packet, parse::Flow, stats::count};

/// Where the FIB sends a packet.
#[derive(Clone, Copy)]
pub enum Route {
    /// Out of `ifindex` with these MACs.
    Out {
        ifindex: u32,
        smac: [u8; 6],
        dmac: [u8; 6],
    },
    /// Out of `ifindex`, neighbour not resolved yet.
    NoNeigh { ifindex: u32 },
    /// Not forwarded (local, unreachable, ...): the host stack decides.
    Host,
}

impl Route {
    pub fn ifindex(&self) -> Option<u32> {
        match self {
            Route::Out { ifindex, .. } | Route::NoNeigh { ifindex } => Some(*ifindex),
            Route::Host => None,
        }
    }
}

/// Looks up the route of `flow` (of either family) with source `src_addr`, as if it arrived
/// on the skb's device (for IPv6 the kernel asks that device to forward: the agent turns
/// forwarding on for its endpoints' host sides).
#[inline(always)]
pub fn lookup<A: Ip>(ctx: &TcContext, flow: &Flow<A>, src_addr: A) -> Route {
    // SAFETY: all-zero is a valid bpf_fib_lookup.
    let mut params: bpf_fib_lookup = unsafe { zeroed() };
    A::fib_params(&mut params, src_addr, flow.dst_addr);
    params.l4_protocol = flow.proto;
    params.__bindgen_anon_1.tot_len = flow.tot_len;
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
        Route::Out {
            ifindex: params.ifindex,
            smac: params.smac,
            dmac: params.dmac,
        }
    } else if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        Route::NoNeigh {
            ifindex: params.ifindex,
        }
    } else {
        Route::Host
    }
}

/// Sends the packet along `route`.
#[inline(always)]
pub fn send(ctx: &mut TcContext, route: Route) -> i32 {
    match route {
        Route::Out {
            ifindex,
            smac,
            dmac,
        } => {
            if !ctx.set_macs(&smac, &dmac) {
                return TC_ACT_SHOT as i32;
            }
            // SAFETY: plain helper call.
            unsafe { bpf_redirect(ifindex, 0) as i32 }
        }
        // SAFETY: plain helper call; the kernel resolves the neighbour.
        Route::NoNeigh { ifindex } => unsafe {
            bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) as i32
        },
        Route::Host => {
            aya_log_ebpf::debug!(ctx, "no route or neighbour: handed to the host stack");
            count(Counter::FibMiss);
            TC_ACT_OK as i32
        }
    }
}
