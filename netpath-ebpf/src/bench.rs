//! Benchmark tools, never attached by the agent: a packet generator for BPF_PROG_TEST_RUN in
//! live-frames mode, a counting sink, the "redirect only" ceilings (XDP's and TC's), and
//! floors: what reading a frame's headers costs, what one flow-table lookup adds to it,
//! whatever a program does beyond them, and the two lookups any verdict of network policy
//! makes.
use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_OK, TC_ACT_SHOT},
    helpers::{bpf_redirect, bpf_redirect_peer},
    macros::map,
    maps::{Array, PerCpuArray},
    programs::{TcContext, XdpContext},
};
use netpath_common::{direction, port_any_index, proto, GenConfig, PolicyKey, GEN_TEMPLATE_LEN};

use crate::{
    maps::{ENDPOINTS_BY_ADDR, FLOWS, FLOWS6, IPCACHE, POLICY, PORTS_ANY},
    packet::Packet,
    parse::{parse, ptr_at, Flow, Ipv4Flow, Parsed, IP_CSUM_OFF, IP_DST_OFF, IP_SRC_OFF, L3_OFF},
};

/// The generator's configuration (one entry).
#[map]
pub static BENCH_GEN: Array<GenConfig> = Array::with_max_entries(1, 0);

/// Per-CPU sequence number of generated frames.
#[map]
pub static BENCH_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Packets the sink received.
#[map]
pub static BENCH_SINK: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Where the ceiling program redirects everything.
#[map]
pub static BENCH_REDIRECT: Array<u32> = Array::with_max_entries(1, 0);

/// Writes the template (varying source address and port) and sends the frame on.
#[inline(always)]
pub fn generate(ctx: &mut XdpContext) -> u32 {
    let Some(cfg) = BENCH_GEN.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let Some(frame) = ptr_at::<[u8; GEN_TEMPLATE_LEN]>(ctx.data(), ctx.data_end(), 0) else {
        return xdp_action::XDP_ABORTED;
    };
    let seq = match BENCH_SEQ.get_ptr_mut(0) {
        // SAFETY: per-CPU slot.
        Some(s) => unsafe {
            *s = (*s).wrapping_add(1);
            *s
        },
        None => 0,
    };
    let ports = if cfg.src_ports == 0 { 1 } else { cfg.src_ports };
    let addrs = if cfg.src_addrs == 0 { 1 } else { cfg.src_addrs };
    let mut t = cfg.template;
    if t[12] == 0x86 && t[13] == 0xdd {
        vary6(&mut t, seq % ports, (seq / ports) % addrs);
        // SAFETY: bounds checked by ptr_at.
        unsafe { frame.write_unaligned(t) };
        // SAFETY: plain helper call.
        return unsafe { bpf_redirect(cfg.ifindex, 0) as u32 };
    }
    let port = u16::from_be_bytes([t[34], t[35]]).wrapping_add((seq % ports) as u16);
    t[34..36].copy_from_slice(&port.to_be_bytes());
    let addr = u32::from_be_bytes([t[26], t[27], t[28], t[29]]).wrapping_add((seq / ports) % addrs);
    t[26..30].copy_from_slice(&addr.to_be_bytes());
    t[IP_CSUM_OFF] = 0;
    t[IP_CSUM_OFF + 1] = 0;
    let mut sum: u32 = 0;
    let mut i = L3_OFF;
    while i < L3_OFF + 20 {
        sum += u32::from(u16::from_be_bytes([t[i], t[i + 1]]));
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    t[IP_CSUM_OFF..IP_CSUM_OFF + 2].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    // SAFETY: bounds checked by ptr_at.
    unsafe { frame.write_unaligned(t) };
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(cfg.ifindex, 0) as u32 }
}

/// An IPv6 template's source port and the last word of its source address moved on by
/// `port` and `addr`, its UDP checksum kept right (RFC 1624, 16 bits at a time).
#[inline(always)]
fn vary6(t: &mut [u8; GEN_TEMPLATE_LEN], port: u32, addr: u32) {
    const SRC_LO: usize = L3_OFF + 8 + 12;
    const SPORT: usize = L3_OFF + 40;
    const CSUM: usize = SPORT + 6;
    let old_port = u16::from_be_bytes([t[SPORT], t[SPORT + 1]]);
    let new_port = old_port.wrapping_add(port as u16);
    let old_lo = u32::from_be_bytes([t[SRC_LO], t[SRC_LO + 1], t[SRC_LO + 2], t[SRC_LO + 3]]);
    let new_lo = old_lo.wrapping_add(addr);
    t[SPORT..SPORT + 2].copy_from_slice(&new_port.to_be_bytes());
    t[SRC_LO..SRC_LO + 4].copy_from_slice(&new_lo.to_be_bytes());
    let check = u16::from_be_bytes([t[CSUM], t[CSUM + 1]]);
    let mut sum = u32::from(!check)
        + u32::from(!old_port)
        + u32::from(new_port)
        + u32::from(!(old_lo >> 16) as u16)
        + (new_lo >> 16)
        + u32::from(!(old_lo as u16))
        + (new_lo & 0xffff);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let mut new = !(sum as u16);
    if new == 0 {
        new = 0xffff;
    }
    t[CSUM..CSUM + 2].copy_from_slice(&new.to_be_bytes());
}

/// Counts a UDP packet and says whether it was one: the sinks drop UDP and let everything
/// else (ARP above all) pass, so the endpoint still answers its neighbours.
#[inline(always)]
fn count_udp(data: usize, data_end: usize) -> bool {
    match parse(data, data_end) {
        Parsed::Ipv4(Flow {
            proto: proto::UDP, ..
        })
        | Parsed::Ipv6(Flow {
            proto: proto::UDP, ..
        }) => {
            if let Some(c) = BENCH_SINK.get_ptr_mut(0) {
                // SAFETY: per-CPU slot.
                unsafe { *c += 1 };
            }
            true
        }
        _ => false,
    }
}

/// The sink, at the endpoint's TC ingress: every variant's packets pass there, whatever path
/// they took (`bpf_redirect_peer`, an XDP_REDIRECT turned into an skb by the veth's NAPI, the
/// bridge), so every variant is counted at the same place, having paid for its delivery.
#[inline(always)]
pub fn sink_tc(ctx: &mut TcContext) -> i32 {
    if count_udp(ctx.data(), ctx.data_end()) {
        TC_ACT_SHOT as i32
    } else {
        TC_ACT_OK as i32
    }
}

/// Hands every skb to the peer of one interface (`bpf_redirect_peer`: the way netpath's TC
/// path delivers into an endpoint) without looking at it: the ceiling of a TC path.
#[inline(always)]
pub fn redirect_peer_only() -> i32 {
    match BENCH_REDIRECT.get(0) {
        // SAFETY: plain helper call.
        Some(ifindex) => unsafe { bpf_redirect_peer(*ifindex, 0) as i32 },
        None => TC_ACT_OK as i32,
    }
}

/// Redirects every frame to one interface without looking at it.
#[inline(always)]
pub fn redirect_only(_ctx: &XdpContext) -> u32 {
    match BENCH_REDIRECT.get(0) {
        // SAFETY: plain helper call.
        Some(ifindex) => unsafe { bpf_redirect(*ifindex, 0) as u32 },
        None => xdp_action::XDP_PASS,
    }
}

/// Reads the frame's headers (the one parse every packet program starts with), then sends it
/// where `verdict` says: the floor of any program that looks at a frame.
#[inline(always)]
pub fn parse_only(ctx: &XdpContext, verdict: u32) -> u32 {
    match parse(ctx.data(), ctx.data_end()) {
        Parsed::Malformed => xdp_action::XDP_ABORTED,
        _ => verdict,
    }
}

/// The headers between `data` and `data_end` read and their flow looked up in the flow
/// table of their family: the floor of any path that keeps per-flow state. Whether it was
/// found.
#[inline(always)]
pub fn parse_and_lookup(data: usize, data_end: usize) -> bool {
    match parse(data, data_end) {
        Parsed::Ipv4(flow) => flow.has_ports() && FLOWS.get_ptr(&flow.key()).is_some(),
        Parsed::Ipv6(flow) => flow.has_ports() && FLOWS6.get_ptr(&flow.key()).is_some(),
        _ => false,
    }
}

/// The headers read, the destination port's slot in `PORTS_ANY` read, the destination
/// address and port rewritten to its endpoint's (both checksums updated) and the MACs, and
/// the frame redirected to the endpoint (passed when there is none): the floor of any DNAT
/// that keeps no state, all of a one-to-one port's path but its checks and counters.
#[inline(always)]
pub fn slot_rewrite_redirect(ctx: &mut XdpContext) -> u32 {
    let Parsed::Ipv4(flow) = parse(ctx.data(), ctx.data_end()) else {
        return xdp_action::XDP_PASS;
    };
    let Some(slot) = PORTS_ANY.get(port_any_index(flow.proto, flow.dst_port)) else {
        return xdp_action::XDP_PASS;
    };
    let t = &slot.target;
    if t.ifindex == 0 {
        return xdp_action::XDP_PASS;
    }
    let (csum, udp) = (flow.l4_csum_off(), flow.proto == proto::UDP);
    if ctx.set_addr(IP_DST_OFF, flow.dst_addr, t.addr, csum, udp)
        && ctx.set_port(flow.l4_off + 2, flow.dst_port, t.port, csum, udp)
        && ctx.set_macs(&t.gw_mac, &t.mac)
    {
        // SAFETY: plain helper call.
        unsafe { bpf_redirect(t.ifindex, 0) as u32 }
    } else {
        xdp_action::XDP_ABORTED
    }
}

/// A reply's headers read, its flow looked up, its source rewritten to the flow's published
/// address and port (TC's checksum helpers) and its MACs, and the skb redirected the flow's
/// way back: the floor of reverse NAT, all of its path but the checks, the flow's freshness
/// and the counters. Passed when there is no flow.
#[inline(always)]
pub fn reverse_floor(ctx: &mut TcContext) -> i32 {
    let Parsed::Ipv4(flow) = parse(ctx.data(), ctx.data_end()) else {
        return TC_ACT_OK as i32;
    };
    // SAFETY: map value pointer valid for this program run; read at once.
    let Some(nat) = FLOWS.get_ptr(&flow.key()).map(|n| unsafe { *n }) else {
        return TC_ACT_OK as i32;
    };
    let (csum, udp) = (flow.l4_csum_off(), flow.proto == proto::UDP);
    if ctx.set_addr(IP_SRC_OFF, flow.src_addr, nat.addr, csum, udp)
        && ctx.set_port(flow.l4_off, flow.src_port, nat.port, csum, udp)
        && ctx.set_macs(&nat.via_macs.src, &nat.via_macs.dst)
    {
        // SAFETY: plain helper call.
        unsafe { bpf_redirect(nat.via, 0) as i32 }
    } else {
        TC_ACT_SHOT as i32
    }
}

/// Floor of any verdict on identities: the headers read, then the two lookups it cannot do
/// without — the peer's identity (`IPCACHE`) and a rule (`POLICY`), exact maps both. Passed
/// (dropped when the rule is there, which the benchmark never makes it).
#[inline(always)]
pub fn policy_floor(data: usize, data_end: usize) -> u32 {
    match parse(data, data_end) {
        Parsed::Ipv4(flow) => {
            // SAFETY: map value pointer valid for this program run; read at once.
            let peer = IPCACHE
                .get_ptr(&flow.src_addr)
                .map_or(0, |id| unsafe { (*id).identity });
            let key = PolicyKey::new(direction::INGRESS, 0, peer, flow.proto, flow.dst_port);
            if POLICY.get_ptr(&key).is_some() {
                xdp_action::XDP_DROP
            } else {
                xdp_action::XDP_PASS
            }
        }
        _ => xdp_action::XDP_ABORTED,
    }
}

/// The headers read and both ends' endpoint records (as the endpoint-to-endpoint path reads
/// them, policy or none): the flow and the identities the records carry; None when an end
/// has no record.
#[inline(always)]
fn with_records(data: usize, data_end: usize) -> Option<(Ipv4Flow, crate::policy::Known)> {
    let Parsed::Ipv4(flow) = parse(data, data_end) else {
        return None;
    };
    // SAFETY (both): map value pointers valid for this program run; read at once.
    let src = unsafe { (*ENDPOINTS_BY_ADDR.get_ptr(&flow.src_addr)?).identity };
    let dst = unsafe { (*ENDPOINTS_BY_ADDR.get_ptr(&flow.dst_addr)?).identity };
    let known = crate::policy::Known {
        src: Some(src),
        dst: Some(dst),
    };
    Some((flow, known))
}

/// An XDP verdict of a policy verdict: passed when allowed, dropped when denied.
#[inline(always)]
fn xdp_of(verdict: Result<u32, netpath_common::Counter>) -> u32 {
    match verdict {
        Ok(_) => xdp_action::XDP_PASS,
        Err(_) => xdp_action::XDP_DROP,
    }
}

/// After [`with_records`], the verdict on the identities the records carry
/// (`policy::admit_known`): passed when allowed, dropped when denied, aborted when an end has
/// no record.
#[inline(always)]
pub fn policy_admit_records(data: usize, data_end: usize) -> u32 {
    let Some((flow, known)) = with_records(data, data_end) else {
        return xdp_action::XDP_ABORTED;
    };
    xdp_of(crate::policy::admit_known(
        flow.src_addr,
        flow.dst_addr,
        known,
        flow.dst_port,
        flow.proto,
    ))
}

/// After [`with_records`], the endpoint-to-endpoint path's whole policy work on a packet
/// (`policy::admit_tracked`): repeated, every packet but the first is one of a connection
/// already allowed — what an established connection's packets pay.
#[inline(always)]
pub fn policy_tracked(data: usize, data_end: usize) -> u32 {
    let Some((flow, known)) = with_records(data, data_end) else {
        return xdp_action::XDP_ABORTED;
    };
    xdp_of(crate::policy::admit_tracked(&flow, known, || None))
}

/// The headers read and the network policy's verdict on the packet as a new flow
/// (`policy::admit`, every lookup it makes): passed when allowed, dropped when denied.
#[inline(always)]
pub fn policy_admit(data: usize, data_end: usize) -> u32 {
    match parse(data, data_end) {
        Parsed::Ipv4(flow) => xdp_of(crate::policy::admit(
            flow.src_addr,
            flow.dst_addr,
            flow.dst_port,
            flow.proto,
        )),
        _ => xdp_action::XDP_ABORTED,
    }
}
