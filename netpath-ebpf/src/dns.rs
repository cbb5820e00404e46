//! The DNS fast path: an endpoint's A or AAAA query to its network's gateway (over IPv4 or
//! IPv6, UDP's checksum kept over IPv6), for a name of that network, answered here — the
//! query turned into its answer in place and sent straight back — with the same bytes the
//! agent's server would write (`netpath-user/src/dns/answer.rs`).
//! Anything else (other types, names it does not know, EDNS, more than one question, TCP,
//! IP options) goes on to the agent's server untouched.
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_SHOT},
    helpers::{bpf_csum_diff, bpf_redirect, bpf_skb_change_tail},
    maps::HashMap,
    programs::TcContext,
};
use netpath_common::{
    proto, Addr, Counter, DnsAddrs, DnsKey, EndpointInfo, In6, DNS_ADDRS, DNS_NAME_LEN, DNS_PORT,
    DNS_TTL,
};

use crate::{
    maps::{DNS_NAMES, DNS_NAMES6, NETWORKS, NETWORKS6},
    parse::{ptr_at, Flow, Ipv4Flow, Ipv6Flow, IP_CSUM_OFF, L3_OFF},
    stats::count,
};

/// Where UDP starts in a frame: after IPv4's header without options, or IPv6's without
/// extension headers (anything else goes to the server).
const UDP_OFF: usize = L3_OFF + 20;
const UDP6_OFF: usize = L3_OFF + 40;
/// Offsets from the UDP header: the DNS header, the question's name.
const DNS_AT: usize = 8;
const QNAME_AT: usize = DNS_AT + 12;
/// An answer before its address: a pointer to the question's name, type, class IN, TTL,
/// the address's length.
const RR_HEAD_LEN: usize = 12;

/// The records of an address family: their type, and the names' addresses of it.
pub trait Records: Addr {
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
/// `tail`), turning the order one step; how many, their bytes and (when `sum_them`) their
/// checksum as `bpf_csum_diff` adds it, or None when the name has none (the packet untouched)
/// and `Some(Err)` when the packet could not be grown or written.
#[inline(always)]
fn write_answers<A: Records>(
    ctx: &mut TcContext,
    key: &DnsKey,
    tail: usize,
    sum_them: bool,
) -> Option<Result<Appended, ()>> {
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
    let mut sum = 0u32;
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
        if sum_them {
            let (mut h, mut a) = (head, addr);
            // SAFETY: stack buffers of 12 and 4 or 16 bytes, as the helper reads them.
            let d = unsafe {
                let d = bpf_csum_diff(core::ptr::null_mut(), 0, h.as_mut_ptr().cast(), 12, sum);
                bpf_csum_diff(
                    core::ptr::null_mut(),
                    0,
                    (&mut a as *mut A).cast(),
                    len as u32,
                    d as u32,
                )
            };
            ok &= d >= 0;
            sum = d as u32;
        }
    }
    Some(if ok {
        Ok(Appended {
            n,
            len: n * rr_len,
            sum,
        })
    } else {
        Err(())
    })
}

/// What [`write_answers`] appended.
struct Appended {
    n: usize,
    len: usize,
    /// Their checksum (when asked for), as at an even offset.
    sum: u32,
}

/// The family's half of the fast path: where UDP starts, and the IP header's part of
/// turning a query into its answer (addresses swapped, lengths grown by `grow`) and the UDP
/// checksum's.
pub trait Query: Addr {
    const UDP_OFF: usize;
    /// Whether the UDP checksum is kept (IPv6's is mandatory; IPv4's is left out).
    const SUM: bool;
    /// The network's gateway, where queries are answered.
    fn gateway(network: u32) -> Option<Self>;
    fn finish(ctx: &mut TcContext, flow: &Flow<Self>, t: &Turned) -> bool;
}

impl Query for u32 {
    const UDP_OFF: usize = UDP_OFF;
    const SUM: bool = false;

    #[inline(always)]
    fn gateway(network: u32) -> Option<u32> {
        // SAFETY: map value pointer valid for this program run.
        NETWORKS.get_ptr(&network).map(|n| unsafe { (*n).gateway })
    }

    #[inline(always)]
    fn finish(ctx: &mut TcContext, flow: &Ipv4Flow, t: &Turned) -> bool {
        let (old_tot, new_tot) = (flow.tot_len, flow.tot_len + t.grow);
        ctx.store(L3_OFF + 12, &[flow.dst_addr, flow.src_addr], 0)
            .is_ok()
            && ctx
                .l3_csum_replace(
                    IP_CSUM_OFF,
                    u64::from(old_tot.to_be()),
                    u64::from(new_tot.to_be()),
                    2,
                )
                .is_ok()
            && ctx.store(L3_OFF + 2, &new_tot.to_be(), 0).is_ok()
            // The UDP checksum left out (allowed over IPv4).
            && ctx.store(UDP_OFF + 6, &0u16, 0).is_ok()
    }
}

impl Query for In6 {
    const UDP_OFF: usize = UDP6_OFF;
    const SUM: bool = true;

    #[inline(always)]
    fn gateway(network: u32) -> Option<In6> {
        // SAFETY: map value pointer valid for this program run.
        NETWORKS6.get_ptr(&network).map(|n| unsafe { (*n).gateway })
    }

    #[inline(always)]
    fn finish(ctx: &mut TcContext, flow: &Ipv6Flow, t: &Turned) -> bool {
        // The checksum follows each change but the swaps (sums unchanged): the length in the
        // pseudo-header and in the UDP header, the DNS flags and answer count, and the
        // answers appended (their sum turned a byte when they start at an odd offset).
        const CSUM: usize = UDP6_OFF + 6;
        let m = BPF_F_MARK_MANGLED_0 as u64;
        let (old_len, new_len) = (
            u64::from(t.udp_len.to_be()),
            u64::from((t.udp_len + t.grow).to_be()),
        );
        let appended = if t.odd { t.sum.rotate_right(8) } else { t.sum };
        let payload = (flow.tot_len - 40 + t.grow).to_be();
        ctx.l4_csum_replace(CSUM, old_len, new_len, m | BPF_F_PSEUDO_HDR as u64 | 2)
            .is_ok()
            && ctx.l4_csum_replace(CSUM, old_len, new_len, m | 2).is_ok()
            && ctx
                .l4_csum_replace(CSUM, t.flags.0.into(), t.flags.1.into(), m | 2)
                .is_ok()
            && ctx
                .l4_csum_replace(CSUM, 0, u64::from((t.n as u16).to_be()), m | 2)
                .is_ok()
            && ctx.l4_csum_replace(CSUM, 0, appended.into(), m).is_ok()
            && ctx.store(L3_OFF + 4, &payload, 0).is_ok()
            && ctx
                .store(L3_OFF + 8, &[flow.dst_addr, flow.src_addr], 0)
                .is_ok()
    }
}

/// A query turned into its answer: what the family's [`Query::finish`] needs.
pub struct Turned {
    /// Answers and their bytes.
    n: usize,
    grow: u16,
    /// The query's UDP length.
    udp_len: u16,
    /// The DNS flags' word before and after (as in the packet).
    flags: (u16, u16),
    /// The answers' checksum (IPv6), and whether they start at an odd offset from UDP's.
    sum: u32,
    odd: bool,
}

/// Answers `flow` if it is a query the fast path knows (an IPv4 one from the endpoint
/// program, an IPv6 one from `netpath_endpoint_dns6_tc`); the verdict, or None to go on.
#[inline(always)]
pub fn answer<A: Query + Records>(
    ctx: &mut TcContext,
    ep: &EndpointInfo<A>,
    flow: &Flow<A>,
    ifindex: u32,
) -> Option<i32> {
    if !asks_gateway(ep, flow) {
        return None;
    }
    let t = match turn::<A>(ctx, ep.network)? {
        Ok(t) => t,
        Err(()) => return Some(TC_ACT_SHOT as i32),
    };
    if !A::finish(ctx, flow, &t) {
        return Some(TC_ACT_SHOT as i32);
    }
    count(Counter::DnsKernel);
    // SAFETY: plain helper call: out of the host-side veth, into the endpoint.
    Some(unsafe { bpf_redirect(ifindex, 0) as i32 })
}

/// Whether `flow` is a DNS query over UDP to the gateway of `ep`'s network, with no IP
/// options or extension headers: what the fast path may answer.
#[inline(always)]
pub fn asks_gateway<A: Query>(ep: &EndpointInfo<A>, flow: &Flow<A>) -> bool {
    flow.proto == proto::UDP
        && !flow.fragment
        && flow.dst_port == DNS_PORT.to_be()
        && flow.l4_off == A::UDP_OFF
        && A::gateway(ep.network) == Some(flow.dst_addr)
}

/// The part of the answer both families share: the question read, the answers appended,
/// the DNS header, MACs and ports turned round. None: not a query the fast path knows (the
/// packet untouched); `Some(Err)`: it could not be written.
#[inline(always)]
fn turn<A: Query + Records>(ctx: &mut TcContext, network: u32) -> Option<Result<Turned, ()>> {
    let udp_off = A::UDP_OFF;
    let (dns_off, qname_off) = (udp_off + DNS_AT, udp_off + QNAME_AT);
    let (data, end) = (ctx.data(), ctx.data_end());
    // SAFETY (every read below): bounds checked by ptr_at.
    let hdr = unsafe { *ptr_at::<[u8; 12]>(data, end, dns_off)? };
    // A standard query (QR 0, opcode 0, not truncated) with one question and nothing else.
    if hdr[2] & 0xfa != 0 || hdr[4..12] != [0, 1, 0, 0, 0, 0, 0, 0] {
        return None;
    }
    let mut key = DnsKey {
        network,
        name: [0; DNS_NAME_LEN],
    };
    let mut name_len = 0;
    for i in 0..DNS_NAME_LEN {
        let b = unsafe { *ptr_at::<u8>(data, end, qname_off + i)? };
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
    let tail = qname_off + name_len;
    let qtype = unsafe { *ptr_at::<[u8; 4]>(data, end, tail)? };
    let udp_len = u16::from_be(unsafe { *ptr_at::<u16>(data, end, udp_off + 4)? });
    if qtype[0] != 0 || qtype[2..] != [0, 1] || usize::from(udp_len) != tail + 4 - udp_off {
        return None;
    }
    // The MACs and ports to swap, read before the packet moves.
    let macs = unsafe { *ptr_at::<[u8; 12]>(data, end, 0)? };
    let ports = unsafe { *ptr_at::<[u16; 2]>(data, end, udp_off)? };
    let written = match qtype[1] {
        1 => write_answers::<u32>(ctx, &key, tail, A::SUM)?,
        28 => write_answers::<In6>(ctx, &key, tail, A::SUM)?,
        _ => return None,
    };
    let Ok(a) = written else {
        return Some(Err(()));
    };
    let grow = a.len as u16;
    // Header: a response (QR), authoritative (AA), RD as asked, recursion available, and
    // the answer count.
    let flags = [0x84 | (hdr[2] & 0x01), 0x80];
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&macs[6..]);
    swapped[6..].copy_from_slice(&macs[..6]);
    let udp = [ports[1], ports[0], (udp_len + grow).to_be()];
    let ok = ctx.store(dns_off + 2, &flags, 0).is_ok()
        && ctx.store(dns_off + 6, &(a.n as u16).to_be(), 0).is_ok()
        && ctx.store(0, &swapped, 0).is_ok()
        && ctx.store(udp_off, &udp, 0).is_ok();
    Some(if ok {
        Ok(Turned {
            n: a.n,
            grow,
            udp_len,
            flags: (
                u16::from_ne_bytes([hdr[2], hdr[3]]),
                u16::from_ne_bytes(flags),
            ),
            sum: a.sum,
            odd: (tail + 4 - udp_off) % 2 == 1,
        })
    } else {
        Err(())
    })
}
