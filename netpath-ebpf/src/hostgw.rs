//! host.docker.internal: ports of a network's host-gateway address that the host serves on
//! its loopback only (`--opt host-loopback-ports`). A connection to such a port is handed to
//! the listening socket on 127.0.0.1 with `bpf_sk_assign`: nothing is rewritten, the host
//! answers from the host-gateway address, and no other port of the loopback is exposed.
use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{bpf_sock_tuple, BPF_F_CURRENT_NETNS},
    helpers::{bpf_sk_assign, bpf_sk_lookup_tcp, bpf_sk_release},
    programs::TcContext,
};
use netpath_common::{proto, EndpointInfo, LoopbackKey};

use crate::{maps::HOST_LOOPBACK, parse::Ipv4Flow};

/// 127.0.0.1, network order.
const LOOPBACK: u32 = u32::from_ne_bytes([127, 0, 0, 1]);

/// Looks up the TCP socket for `flow` with destination `daddr` (established, request or
/// listener), or null.
#[inline(always)]
fn lookup(ctx: &TcContext, flow: &Ipv4Flow, daddr: u32) -> *mut aya_ebpf::bindings::bpf_sock {
    // SAFETY: all-zero is a valid tuple.
    let mut tuple: bpf_sock_tuple = unsafe { zeroed() };
    // Writing a union field is safe: the IPv4 member.
    tuple.__bindgen_anon_1.ipv4.saddr = flow.src_addr;
    tuple.__bindgen_anon_1.ipv4.daddr = daddr;
    tuple.__bindgen_anon_1.ipv4.sport = flow.src_port;
    tuple.__bindgen_anon_1.ipv4.dport = flow.dst_port;
    // SAFETY: tuple is valid for the size passed (its IPv4 part).
    unsafe {
        bpf_sk_lookup_tcp(
            ctx.skb.skb as *mut _,
            &mut tuple,
            size_of::<[u32; 3]>() as u32,
            BPF_F_CURRENT_NETNS as u64,
            0,
        )
    }
}

/// For a TCP packet to the host-gateway on an allowed port: when no socket would take it as
/// addressed, hands it to the host's listener on 127.0.0.1. True when it did.
#[inline(always)]
pub fn to_loopback(ctx: &mut TcContext, ep: &EndpointInfo, flow: &Ipv4Flow) -> bool {
    if flow.proto != proto::TCP || flow.fragment {
        return false;
    }
    let key = LoopbackKey {
        network: ep.network,
        port: flow.dst_port,
        _pad: 0,
    };
    if HOST_LOOPBACK.get_ptr(&key).is_none() {
        return false;
    }
    // A socket for the address as sent (the connection once accepted, or a listener on it):
    // the stack delivers normally.
    let sk = lookup(ctx, flow, flow.dst_addr);
    if !sk.is_null() {
        // SAFETY: releasing the reference the lookup took.
        unsafe { bpf_sk_release(sk as *mut _) };
        return false;
    }
    let sk = lookup(ctx, flow, LOOPBACK);
    if sk.is_null() {
        return false;
    }
    // SAFETY: sk is a referenced socket from the lookup; released right after.
    let rc = unsafe { bpf_sk_assign(ctx.skb.skb as *mut _, sk as *mut _, 0) };
    // SAFETY: releasing the reference the lookup took.
    unsafe { bpf_sk_release(sk as *mut _) };
    rc == 0
}
