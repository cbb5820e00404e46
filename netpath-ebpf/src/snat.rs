//! Outbound source NAT (masquerade, without iptables), of IPv4 and IPv6 alike: packets an
//! endpoint sends beyond the host leave with the uplink's address of their family and a port
//! of netpath's own range; replies are translated back on the uplink and sent straight into
//! the endpoint. ICMP echoes use their identifier as the port. The agent expires idle entries
//! (TCP by state, UDP and ICMP by timeout) from `last_seen`, which packets refresh at most once
//! a second. Replies are looked up only for destination ports of the range: the host's own
//! traffic passes without one. IPv4's is part of the endpoint program; IPv6's, and IPv4's
//! fragments (tracked, `frag.rs`), have programs of their own.
use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_OK, TC_ACT_SHOT},
    helpers::bpf_get_prandom_u32,
    programs::TcContext,
};
use netpath_common::{
    event, net_flags, port_any_index, snat_flags, Counter, EndpointInfo, FlowKey, In6, SnatNat,
    SnatRev, SNAT_PORTS, SNAT_PORT_MIN,
};

use crate::{
    family::Ip,
    fib,
    flows::{now, touch},
    guard::new_flow_rate,
    packet::Packet,
    parse::{is_icmp, parse_tracked, Flow, Parsed},
    policy::{self, Known},
    rewrite::{set_addr, set_icmp_addr, set_port},
    stats::{admitted, count, count_later, dropped, trace},
};

/// Tries at finding a free port before giving up on a packet: with half the range in use
/// (10,000 flows to one destination), 32 random tries all miss once in 4·10⁹ packets.
pub const PORT_TRIES: u32 = 32;

/// A port of the range, at random (network order): a try at a free one.
#[inline(always)]
pub fn random_port() -> u16 {
    // SAFETY: bpf_get_prandom_u32 has no preconditions.
    let r = unsafe { bpf_get_prandom_u32() };
    ((u32::from(SNAT_PORT_MIN) + r % SNAT_PORTS) as u16).to_be()
}

/// Whether `port` (network order) is one outbound NAT hands out.
#[inline(always)]
pub fn in_snat_range(port: u16) -> bool {
    u32::from(u16::from_be(port).wrapping_sub(SNAT_PORT_MIN)) < SNAT_PORTS
}

/// Translatable: TCP, UDP, or an ICMP echo request (outbound) / reply (inbound).
#[inline(always)]
fn translatable<A: Ip>(flow: &Flow<A>) -> bool {
    flow.has_ports() || flow.is_echo()
}

/// Which end of a flow a rewrite changes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Src,
    Dst,
}

/// Rewrites the source or destination of `flow` to `addr:port` (for an ICMP echo, the
/// identifier).
#[inline(always)]
fn rewrite<P: Packet, A: Ip>(pkt: &mut P, flow: &Flow<A>, end: End, addr: A, port: u16) -> bool {
    let (addr_off, old_addr, old_port) = match end {
        End::Src => (A::SRC_OFF, flow.src_addr, flow.src_port),
        End::Dst => (A::DST_OFF, flow.dst_addr, flow.dst_port),
    };
    if is_icmp(flow.proto) {
        let csum = flow.l4_csum_off();
        return set_icmp_addr(pkt, flow, addr_off, old_addr, addr)
            && (flow.later || pkt.set_port(flow.l4_off + 4, old_port, port, csum, false));
    }
    let port_off = if end == End::Src {
        flow.l4_off
    } else {
        flow.l4_off + 2
    };
    set_addr(pkt, flow, addr_off, old_addr, addr) && set_port(pkt, flow, port_off, old_port, port)
}

/// A packet an endpoint sends beyond the host: translated and sent out of the uplink the
/// route names. Anything not leaving through an uplink goes to the host stack untouched.
#[inline(always)]
pub fn outbound<A: Ip>(
    ctx: &mut TcContext,
    ep: &EndpointInfo<A>,
    flow: &Flow<A>,
    ifindex: u32,
) -> i32 {
    if !translatable(flow) || flow.dst_port != 0 && is_icmp(flow.proto) {
        count(Counter::Pass);
        return TC_ACT_OK as i32;
    }
    let route = fib::lookup(ctx, flow, flow.src_addr);
    let Some(out) = route.ifindex() else {
        count(Counter::Pass);
        return TC_ACT_OK as i32;
    };
    let Some(uplink) = A::uplink(out) else {
        count(Counter::Pass);
        return TC_ACT_OK as i32;
    };
    let key = flow.key();
    let now = now();
    let fin = flow.tcp_closing(ctx.data(), ctx.data_end());
    let nat = match A::snat().get_ptr_mut(&key) {
        // SAFETY: map value pointer valid for this program run.
        Some(n) => unsafe {
            touch(
                &mut (*n).last_seen,
                &mut (*n).flags,
                snat_flags::CLOSING,
                now,
                fin,
            );
            *n
        },
        // A later fragment whose first fragment made no flow (refused): it goes no further
        // than its first did, nor takes a port of its own.
        None if flow.later => {
            dropped(Counter::DropFragment, flow, ifindex);
            return TC_ACT_SHOT as i32;
        }
        None => {
            // A new outbound flow: the policy decides before a port is taken for it (the
            // endpoint's identity came with its record), then the flood guard.
            let known = Known {
                src: Some(ep.identity),
                dst: None,
            };
            match policy::admit_known(
                flow.src_addr,
                flow.dst_addr,
                known,
                flow.dst_port,
                flow.proto,
            ) {
                Ok(by) => admitted(by, flow, ifindex),
                Err(reason) => {
                    dropped(reason, flow, ifindex);
                    return TC_ACT_SHOT as i32;
                }
            }
            if let Err(reason) = new_flow_rate() {
                dropped(reason, flow, ifindex);
                return TC_ACT_SHOT as i32;
            }
            match allocate(&key, uplink, ep, ifindex, now) {
                Some(n) => n,
                None => {
                    // The monitor's drop event says which flow.
                    aya_log_ebpf::warn!(
                        ctx,
                        "outbound NAT: no free port on uplink {} for a flow from port {}",
                        out,
                        u16::from_be(flow.src_port)
                    );
                    dropped(Counter::DropSnatPorts, flow, ifindex);
                    return TC_ACT_SHOT as i32;
                }
            }
        }
    };
    if !rewrite(ctx, flow, End::Src, nat.addr, nat.port) {
        return TC_ACT_SHOT as i32;
    }
    count(Counter::Snat);
    count_later(flow);
    trace(event::trace::SNAT, flow, ifindex, nat.addr, nat.port);
    fib::send(ctx, route)
}

/// Finds a free port of the range for `key` on `uplink` and records both directions.
#[inline(always)]
fn allocate<A: Ip>(
    key: &FlowKey<A>,
    uplink: A,
    ep: &EndpointInfo<A>,
    ifindex: u32,
    now: u64,
) -> Option<SnatNat<A>> {
    let rev = SnatRev {
        addr: key.src_addr,
        port: key.src_port,
        _pad: 0,
        ifindex,
        flags: 0,
        mac: ep.mac,
        host_mac: ep.host_mac,
        _pad2: Default::default(),
        last_seen: now,
    };
    for _ in 0..PORT_TRIES {
        let port = random_port();
        if !is_icmp(key.proto) {
            // SAFETY: map value pointer valid for this program run.
            let published = A::ports_any()
                .get_ptr(port_any_index(key.proto, port))
                .is_some_and(|s| unsafe { (*s).published() });
            if published {
                continue;
            }
        }
        let rkey = key.reply_to(uplink, port);
        if A::snat_rev()
            .insert(&rkey, &rev, BPF_NOEXIST as u64)
            .is_ok()
        {
            let nat = SnatNat {
                addr: uplink,
                port,
                _pad: 0,
                flags: 0,
                _pad2: Default::default(),
                last_seen: now,
            };
            if A::snat().insert(key, &nat, 0).is_ok() {
                return Some(nat);
            }
            // Undoing the reverse entry just made; the packet is dropped either way.
            let _ = A::snat_rev().remove(&rkey);
            return None;
        }
    }
    None
}

/// A packet arriving on an uplink: if it answers an outbound flow, translates its destination
/// back to the endpoint and says where to send it.
#[inline(always)]
pub fn reply<P: Packet, A: Ip>(
    pkt: &mut P,
    data: usize,
    data_end: usize,
    flow: &Flow<A>,
) -> Option<SnatRev<A>> {
    if !translatable(flow) || is_icmp(flow.proto) && flow.src_port != 0 {
        return None;
    }
    // Outbound NAT only hands out ports (and echo identifiers) of its range: anything else
    // is the host's own traffic, decided without a lookup.
    if !in_snat_range(flow.dst_port) {
        return None;
    }
    let key = flow.key();
    let fin = flow.tcp_closing(data, data_end);
    let rev = A::snat_rev().get_ptr_mut(&key)?;
    // SAFETY: map value pointer valid for this program run.
    let rev = unsafe {
        touch(
            &mut (*rev).last_seen,
            &mut (*rev).flags,
            snat_flags::CLOSING,
            now(),
            fin,
        );
        *rev
    };
    if !rewrite(pkt, flow, End::Dst, rev.addr, rev.port) || !pkt.set_macs(&rev.host_mac, &rev.mac) {
        return None;
    }
    count(Counter::SnatReply);
    trace(
        event::trace::SNAT_REPLY,
        flow,
        rev.ifindex,
        rev.addr,
        rev.port,
    );
    Some(rev)
}

/// A routed network's endpoint to beyond every network: out of the interface the route names,
/// its addresses as they are, once the policy lets the connection out (remembered both ways:
/// its replies come in through the uplink's routed delivery). Both families (IPv6's from its
/// own program, `netpath_endpoint_snat6_tc`).
#[inline(always)]
pub fn routed<A: Ip>(
    ctx: &mut TcContext,
    ep: &EndpointInfo<A>,
    flow: &Flow<A>,
    ifindex: u32,
) -> i32 {
    let known = Known {
        src: Some(ep.identity),
        dst: None,
    };
    let (data, end) = (ctx.data(), ctx.data_end());
    if let Err(reason) = policy::admit_tracked(flow, known, || A::error_about(data, end, flow)) {
        dropped(reason, flow, ifindex);
        return TC_ACT_SHOT as i32;
    }
    match fib::lookup(ctx, flow, flow.src_addr) {
        fib::Route::Host => {
            count(Counter::Pass);
            TC_ACT_OK as i32
        }
        route => {
            count(Counter::RoutedOut);
            fib::send(ctx, route)
        }
    }
}

/// IPv6 from an endpoint to beyond every network, handed on by `netpath_endpoint6_tc` (which
/// checked its source): outbound NAT, or for a routed network the route alone. Parsed tracked
/// (`frag.rs`): a datagram's later fragments leave with the address and port its first got.
#[inline(always)]
pub fn from_endpoint6(ctx: &mut TcContext) -> i32 {
    // SAFETY: reading the skb's ifindex field.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    match (
        parse_tracked(ctx.data(), ctx.data_end()),
        In6::endpoint(ifindex),
    ) {
        (Parsed::Ipv6(flow), Some(ep)) => {
            let net = In6::network(ep.network);
            if net.is_some_and(|n| n.flags & net_flags::ROUTED != 0) {
                routed(ctx, &ep, &flow, ifindex)
            } else {
                outbound(ctx, &ep, &flow, ifindex)
            }
        }
        _ => TC_ACT_SHOT as i32,
    }
}

/// An IPv4 fragment from an endpoint to beyond every network, handed on by the endpoint
/// program (which checked its source, the fragment program having seen it): outbound NAT,
/// parsed tracked (`frag.rs`), the first fragment's ports known to its later ones.
#[inline(always)]
pub fn fragment_from_endpoint(ctx: &mut TcContext) -> i32 {
    // SAFETY: reading the skb's ifindex field.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    match (
        parse_tracked(ctx.data(), ctx.data_end()),
        u32::endpoint(ifindex),
    ) {
        (Parsed::Ipv4(flow), Some(ep)) => outbound(ctx, &ep, &flow, ifindex),
        _ => TC_ACT_SHOT as i32,
    }
}
