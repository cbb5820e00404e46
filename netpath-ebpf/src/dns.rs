//! The DNS fast path: an endpoint's A or AAAA query to its network's gateway, for a name of
//! that network, answered here — the query turned into its answer in place and sent straight back
//! — with the same bytes the agent's server would write (`netpath-user/src/dns/answer.rs`).
//! Anything else (other types, names it does not know, EDNS, more than one question, TCP,
//! IP options) goes on to the agent's server untouched.
use aya_ebpf::{
    bindings::TC_ACT_SHOT,
    helpers::{bpf_redirect, bpf_skb_change_tail},
    maps::HashMap,
    programs::TcContext,
};
use netpath_common::{
    proto, Addr, Counter, DnsAddrs, DnsKey, EndpointInfo, In6, DNS_ADDRS, DNS_NAME_LEN, DNS_PORT,
    DNS_TTL,
};

use crate::{
    maps::{DNS_NAMES, DNS_NAMES6, NETWORKS},
    parse::{ptr_at, Ipv4Flow, IP_CSUM_OFF, L3_OFF},
    stats::count,
};

/// Offsets in a frame whose IPv4 header has no options.
const UDP_OFF: usize = L3_OFF + 20;
const DNS_OFF: usize = UDP_OFF + 8;
const QNAME_OFF: usize = DNS_OFF + 12;
/// An answer before its address: a pointer to the question's name, type, class IN, TTL,
/// the address's length.
const RR_HEAD_LEN: usize = 12;

/// The records of an address family: their type, and the names' addresses of it.
trait Records: Addr {
    const TYPE: u8;
    fn names() -> &'static HashMap<DnsKey, DnsAddrs<Self>>;
}

impl Records for u32 {
    const TYPE: u8 = 1;
    fn names() -> &'static HashMap<DnsKey, DnsAddrs<u32>> {
        &DNS_NAMES
    }
}

impl Records for In6 {
    const TYPE: u8 = 28;
    fn names() -> &'static HashMap<DnsKey, DnsAddrs<In6>> {
        &DNS_NAMES6
    }
}

/// Appends the answers of `key`'s addresses of family `A` after the question (which ends at
/// `tail`), turning the order one step; how many and their bytes, or None when the name has
/// none (the packet untouched) and `Some(Err)` when the packet could not be grown or written.
#[inline(always)]
fn write_answers<A: Records>(
    ctx: &mut TcContext,
    key: &DnsKey,
    tail: usize,
) -> Option<Result<(usize, usize), ()>> {
    let addrs = A::names().get_ptr_mut(key)?;
    // SAFETY: map value pointer valid for this program run, all it is read in. `next` only
    // turns the order: a race between CPUs repeats an order, nothing worse.
    let (n, start) = unsafe {
        let n = ((*addrs).count as usize).min(DNS_ADDRS);
        let next = (*addrs).next;
        (*addrs).next = next.wrapping_add(1);
        (n, next as usize)
    };
    if n == 0 {
        return None;
    }
    let len = core::mem::size_of::<A>();
    let rr_len = RR_HEAD_LEN + len;
    // SAFETY: plain helper call on this program's skb.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, ctx.len() + (n * rr_len) as u32, 0) } != 0 {
        return Some(Err(()));
    }
    let ttl = DNS_TTL.to_be_bytes();
    let head: [u8; RR_HEAD_LEN] = [
        0xc0,
        0x0c,
        0,
        A::TYPE,
        0,
        1,
        ttl[0],
        ttl[1],
        ttl[2],
        ttl[3],
        0,
        len as u8,
    ];
    let mut ok = true;
    for i in 0..DNS_ADDRS {
        if i >= n {
            break;
        }
        // The mask keeps the index provably in bounds for the verifier (DNS_ADDRS is a power
        // of two, n ≤ it); black_box keeps LLVM from dropping it as redundant.
        let at = core::hint::black_box((start + i) % n) & (DNS_ADDRS - 1);
        // SAFETY: as above; the index is in bounds.
        let Some(addr) = (unsafe { (*addrs).addrs.get(at).copied() }) else {
            break;
        };
        let off = tail + 4 + i * rr_len;
        ok &= ctx.store(off, &head, 0).is_ok() && ctx.store(off + RR_HEAD_LEN, &addr, 0).is_ok();
    }
    Some(if ok { Ok((n, n * rr_len)) } else { Err(()) })
}

/// Answers `flow` if it is a query the fast path knows; the verdict, or None to go on.
#[inline(always)]
pub fn answer(
    ctx: &mut TcContext,
    ep: &EndpointInfo,
    flow: &Ipv4Flow,
    ifindex: u32,
) -> Option<i32> {
    if flow.proto != proto::UDP
        || flow.fragment
        || flow.dst_port != DNS_PORT.to_be()
        || flow.l4_off != UDP_OFF
    {
        return None;
    }
    // SAFETY: map value pointer valid for this program run.
    let gateway = NETWORKS
        .get_ptr(&ep.network)
        .map(|n| unsafe { (*n).gateway })?;
    if flow.dst_addr != gateway {
        return None;
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    // SAFETY (every read below): bounds checked by ptr_at.
    let hdr = unsafe { *ptr_at::<[u8; 12]>(data, end, DNS_OFF)? };
    // A standard query (QR 0, opcode 0, not truncated) with one question and nothing else.
    if hdr[2] & 0xfa != 0 || hdr[4..12] != [0, 1, 0, 0, 0, 0, 0, 0] {
        return None;
    }
    let mut key = DnsKey {
        network: ep.network,
        name: [0; DNS_NAME_LEN],
    };
    let mut name_len = 0;
    for i in 0..DNS_NAME_LEN {
        let b = unsafe { *ptr_at::<u8>(data, end, QNAME_OFF + i)? };
        key.name[i] = b.to_ascii_lowercase();
        if b == 0 {
            name_len = i + 1;
            break;
        }
    }
    if name_len == 0 {
        return None;
    }
    // Type A or AAAA, class IN, and nothing after the question.
    let tail = QNAME_OFF + name_len;
    let qtype = unsafe { *ptr_at::<[u8; 4]>(data, end, tail)? };
    let udp_len = u16::from_be(unsafe { *ptr_at::<u16>(data, end, UDP_OFF + 4)? }) as usize;
    if qtype[0] != 0 || qtype[2..] != [0, 1] || udp_len != tail + 4 - UDP_OFF {
        return None;
    }
    // The MACs and ports to swap, read before the packet moves.
    let macs = unsafe { *ptr_at::<[u8; 12]>(data, end, 0)? };
    let ports = unsafe { *ptr_at::<[u16; 2]>(data, end, UDP_OFF)? };
    let old_tot = flow.tot_len;
    let written = match qtype[1] {
        1 => write_answers::<u32>(ctx, &key, tail)?,
        28 => write_answers::<In6>(ctx, &key, tail)?,
        _ => return None,
    };
    let Ok((n, grow)) = written else {
        return Some(TC_ACT_SHOT as i32);
    };
    let grow = grow as u16;
    let mut ok = true;
    // Header: a response (QR), authoritative (AA), RD as asked, recursion available, and
    // the answer count.
    let flags = [0x84 | (hdr[2] & 0x01), 0x80];
    ok &= ctx.store(DNS_OFF + 2, &flags, 0).is_ok();
    ok &= ctx.store(DNS_OFF + 6, &(n as u16).to_be(), 0).is_ok();
    // Back where it came from: MACs, addresses and ports swapped (sums unchanged), lengths
    // grown, the UDP checksum left out (allowed over IPv4).
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&macs[6..]);
    swapped[6..].copy_from_slice(&macs[..6]);
    ok &= ctx.store(0, &swapped, 0).is_ok();
    ok &= ctx
        .store(L3_OFF + 12, &[flow.dst_addr, flow.src_addr], 0)
        .is_ok();
    let new_tot = old_tot + grow;
    ok &= ctx
        .l3_csum_replace(
            IP_CSUM_OFF,
            u64::from(old_tot.to_be()),
            u64::from(new_tot.to_be()),
            2,
        )
        .is_ok();
    ok &= ctx.store(L3_OFF + 2, &new_tot.to_be(), 0).is_ok();
    let udp = [ports[1], ports[0], (udp_len as u16 + grow).to_be(), 0];
    ok &= ctx.store(UDP_OFF, &udp, 0).is_ok();
    if !ok {
        return Some(TC_ACT_SHOT as i32);
    }
    count(Counter::DnsKernel);
    // SAFETY: plain helper call: out of the host-side veth, into the endpoint.
    Some(unsafe { bpf_redirect(ifindex, 0) as i32 })
}
