//! NAT46's replies (`nat46.rs`): what an IPv4-only endpoint sends back to an IPv6 client of
//! its published port, to its gateway and the port the flow was given, found by the endpoint
//! program ([`is_reply`]) and rewritten as IPv6 by [`to_client`] (a program of its own), from
//! the address and port the client reached, out of the uplink the client came in on. An ICMP
//! error the endpoint sends about the client's packets is made ICMPv6 (`icmp46.rs`).
use aya_ebpf::{bindings::TC_ACT_SHOT, helpers::bpf_redirect, programs::TcContext};
use netpath_common::{event, flow_flags::CLOSING, proto, Counter, In6, Nat46Reply};
use network_types::ip::Ipv4Hdr;

use crate::{
    csum::csum_diff,
    flows::touch_reply,
    icmp::icmp_error_about,
    icmp46,
    maps::NAT46_REPLY,
    nat46::{L4_OFF4, L4_OFF6},
    packet::Packet,
    parse::{parse_tracked, ptr_at, Ipv4Flow, Parsed, FRAG_HDR_LEN, IPV6_FRAGMENT, L3_OFF},
    snat::in_snat_range,
    stats::{count, count_later, dropped, trace},
};

const ETH_P_IPV6: u16 = 0x86dd;

/// Whether a packet leaving the endpoint behind host-side veth `ifindex` is the reply of a
/// NAT46 flow sent to it (to its gateway, at a port of outbound NAT's range), or an ICMP error
/// about one of the flow's packets.
#[inline(always)]
pub fn is_reply<P: Packet>(pkt: &P, flow: &Ipv4Flow, ifindex: u32) -> bool {
    let key = if flow.has_ports() {
        flow.key()
    } else {
        match icmp_error_about(pkt.data(), pkt.data_end(), flow) {
            // The packet the error is about came from the gateway's port, as a reply goes to it.
            Some(about) => about.reversed(),
            None => return false,
        }
    };
    in_snat_range(key.dst_port)
        // SAFETY: map value pointer valid for this program run; read at once.
        && NAT46_REPLY
            .get_ptr(&key)
            .is_some_and(|r| unsafe { (*r).ifindex } == ifindex)
}

/// A NAT46 flow's reply, handed on by the endpoint program when [`is_reply`]: rewritten as
/// IPv6 from the address and port the client reached, and sent out of the uplink it came in
/// on, to the neighbour it came from. An ICMP error is made ICMPv6 (`icmp46.rs`).
#[inline(always)]
pub fn to_client(ctx: &mut TcContext) -> i32 {
    // SAFETY: reading the skb's ifindex field.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // Tracked: a later fragment takes its first's ports (the fragment program saw the first).
    let Parsed::Ipv4(flow) = parse_tracked(ctx.data(), ctx.data_end()) else {
        return TC_ACT_SHOT as i32;
    };
    if flow.proto == proto::ICMP {
        return icmp46::error_to_client(ctx, &flow, ifindex);
    }
    let Some(r) = NAT46_REPLY.get_ptr_mut(&flow.key()) else {
        return TC_ACT_SHOT as i32;
    };
    // SAFETY: map value pointer valid for this program run, all it is read in.
    let r = unsafe { &mut *r };
    if r.ifindex != ifindex || flow.l4_off != L4_OFF4 {
        dropped(Counter::Malformed, &flow, ifindex);
        return TC_ACT_SHOT as i32;
    }
    let fragment = is_fragment(ctx);
    if let Some(verdict) = icmp46::too_big_for_uplink(ctx, &flow, r.via, ifindex, fragment) {
        return verdict;
    }
    let closing = flow.tcp_closing(ctx.data(), ctx.data_end());
    touch_reply(
        &mut r.last_seen,
        &mut r.stamp,
        &mut r.flags,
        CLOSING,
        closing,
    );
    if !to_ipv6(ctx, &flow, r, fragment) {
        return TC_ACT_SHOT as i32;
    }
    count(Counter::Nat46Reply);
    count_later(&flow);
    // The new source is an IPv6 address, which an IPv4 event cannot carry: its port only.
    trace(event::trace::REVERSE_NAT, &flow, ifindex, 0, r.port);
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(r.via, 0) as i32 }
}

/// Whether the IPv4 packet is a fragment of its datagram (more fragments, or an offset).
#[inline(always)]
fn is_fragment(ctx: &TcContext) -> bool {
    // SAFETY: bounds checked by ptr_at.
    ptr_at::<u16>(ctx.data(), ctx.data_end(), L3_OFF + 6)
        .is_some_and(|f| unsafe { u16::from_be(*f) } & 0x3fff != 0)
}

/// Rewrites an IPv4 reply as IPv6 from `r.addr`, `r.port` to the client, framed for the
/// uplink's neighbour. A fragment gets a fragment header of its IPv4 fields (RFC 7915: the
/// identification zero-extended, the offset, more fragments); a later one has no transport
/// header to rewrite.
#[inline(always)]
fn to_ipv6(ctx: &mut TcContext, flow: &Ipv4Flow, r: &Nat46Reply, fragment: bool) -> bool {
    let Some(h) = ptr_at::<[u32; 3]>(ctx.data(), ctx.data_end(), L3_OFF) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at.
    let (w0, w1, w2) = unsafe {
        (
            u32::from_be((*h)[0]),
            u32::from_be((*h)[1]),
            u32::from_be((*h)[2]),
        )
    };
    let (a, c) = (r.addr.words, r.client.words);
    let mut from = [flow.src_addr, flow.dst_addr];
    let mut into = [a[0], a[1], a[2], a[3], c[0], c[1], c[2], c[3]];
    let Some(diff) = csum_diff(&mut from, &mut into) else {
        return false;
    };
    let tos = (w0 >> 16) & 0xff;
    let mut payload = (w0 & 0xffff).saturating_sub(Ipv4Hdr::LEN as u32);
    let hops = w2 >> 24;
    let (next, l4_off) = if fragment {
        payload += FRAG_HDR_LEN as u32;
        (IPV6_FRAGMENT, L4_OFF6 + FRAG_HDR_LEN)
    } else {
        (flow.proto, L4_OFF6)
    };
    let hdr = ipv6_header(tos, payload, next, hops, &r.addr, &r.client);
    // Next header, reserved, offset and M flag, identification.
    let offset_m = ((w1 & 0x1fff) << 3) | ((w1 >> 13) & 1);
    let frag_hdr = [
        (u32::from(flow.proto) << 24 | offset_m).to_be(),
        (w1 >> 16).to_be(),
    ];
    let udp = flow.proto == proto::UDP;
    let csum = flow.l4_csum_off() - L4_OFF4 + l4_off;
    ctx.change_family(false, fragment)
        && ctx.set_l3(L3_OFF, &hdr)
        && (!fragment || ctx.set_l3(L4_OFF6, &frag_hdr))
        && ctx.set_eth(&r.via_macs.src, &r.via_macs.dst, ETH_P_IPV6.to_be())
        && (flow.later
            || ctx.pseudo_csum_diff(csum, diff, udp)
                && ctx.set_port(l4_off, flow.src_port, r.port, csum, udp)
                && ctx.set_port(l4_off + 2, flow.dst_port, r.client_port, csum, udp))
}

/// An IPv6 header (words as they sit in memory) of traffic class `tos`, `payload` bytes of
/// `next`, hop limit `hops`, from `src` to `dst`: what NAT46's translations write whole.
#[inline(always)]
pub fn ipv6_header(tos: u32, payload: u32, next: u8, hops: u32, src: &In6, dst: &In6) -> [u32; 10] {
    let (s, d) = (src.words, dst.words);
    [
        ((6 << 28) | (tos << 20)).to_be(),
        ((payload << 16) | (u32::from(next) << 8) | hops).to_be(),
        s[0],
        s[1],
        s[2],
        s[3],
        d[0],
        d[1],
        d[2],
        d[3],
    ]
}
