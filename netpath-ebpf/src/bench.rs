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
use netpath_common::{
    direction, gen_vary, port_any_index, proto, GenConfig, PolicyKey, GEN_TEMPLATE_LEN,
};

use crate::{
    maps::{ENDPOINTS_BY_ADDR, FLOWS, FLOWS6, IPCACHE, POLICY, PORTS_ANY},
    packet::Packet,
    parse::{parse, ptr_at, Flow, Ipv4Flow, Parsed, IP_DST_OFF, IP_SRC_OFF},
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
    let mut t = cfg.template;
    gen_vary(&mut t, seq, cfg.src_addrs, cfg.src_ports);
    // SAFETY: bounds checked by ptr_at.
    unsafe { frame.write_unaligned(t) };
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(cfg.ifindex, 0) as u32 }
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
