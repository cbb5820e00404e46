//! ICMP errors about NAT46 flows: a router's ICMPv6 error sent to the host's address about a
//! NAT46 flow's reply (IPv6 from the host, IPv4 as the endpoint sent it) is turned into its
//! ICMPv4 twin, as RFC 7915 translates them, and sent to the endpoint: Packet Too Big becomes
//! fragmentation needed with the MTU 20 bytes smaller (IPv4's header is), so the endpoint's
//! TCP learns the path's MTU (without it, a connection through a smaller link stalls); time
//! exceeded and the unreachables keep their meaning. The error the endpoint gets is from its
//! gateway (where the flow comes from, for it) and carries its own packet as it sent it:
//! its address and port to the gateway's address and the flow's port, and the 4 bytes after
//! the ports (TCP's sequence number, which the endpoint checks) as they were. And the other
//! way: an endpoint's reply that would not fit the uplink once made IPv6 (20 bytes longer)
//! is answered as a router on the way would answer it, fragmentation needed
//! ([`too_big_for_uplink`]). And an error the endpoint itself sends about a client's packet (a
//! UDP port nothing listens on) is made ICMPv6 for the client ([`error_to_client`]).
use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, bpf_check_mtu_ret::BPF_MTU_CHK_RET_FRAG_NEEDED,
        TC_ACT_OK, TC_ACT_SHOT,
    },
    helpers::{bpf_check_mtu, bpf_redirect},
    programs::TcContext,
};
use netpath_common::{proto, Counter};

use crate::{
    csum::{checksum, icmp6_checksum},
    icmp::{icmp6_error_inner, icmp_error_inner},
    maps::{NAT46, NAT46_REPLY},
    nat46_reply::ipv6_header,
    packet::Packet,
    parse::{ptr_at, Ipv4Flow, Ipv6Flow, FRAG_HDR_LEN, L3_OFF},
    ports,
    stats::count,
};

/// Where IPv6's headers sit in an error with no extension headers (the only kind translated,
/// as for NAT46's flows): the ICMPv6 header, the packet it carries and that packet's ports.
const ICMP6_OFF: usize = L3_OFF + 40;
const INNER6_OFF: usize = ICMP6_OFF + 8;
const INNER6_L4_OFF: usize = INNER6_OFF + 40;
/// The ICMPv4 error made: IPv4 header, ICMP header, the carried IPv4 header and the first 8
/// bytes past it (all an ICMPv4 error must carry), after the Ethernet header.
const ERROR4_LEN: u32 = (L3_OFF + 20 + 8 + 20 + 8) as u32;
const ETH_P_IP: u16 = 0x0800;
/// Where IPv4's headers sit in an error without options (the only kind translated, as
/// NAT46 sends none): the ICMP header, the packet it carries and that packet's ports.
const ICMP4_OFF: usize = L3_OFF + 20;
const INNER4_OFF: usize = ICMP4_OFF + 8;
const INNER4_L4_OFF: usize = INNER4_OFF + 20;
/// The ICMPv6 error made: ICMPv6 header, the carried IPv6 header and the first 8 bytes past
/// it; and the whole frame, after the Ethernet and IPv6 headers.
const ERROR6_BODY: usize = 8 + 40 + 8;
const ERROR6_LEN: u32 = (L3_OFF + 40 + ERROR6_BODY) as u32;
const ETH_P_IPV6: u16 = 0x86dd;

/// The IPv4 header of an ICMPv4 error of [`ERROR4_LEN`] from `src` to `dst` (network order),
/// its checksum made.
#[inline(always)]
fn error4_header(src: u32, dst: u32) -> [u32; 5] {
    let mut h = [
        u32::from_ne_bytes([0x45, 0, 0, (ERROR4_LEN as usize - L3_OFF) as u8]),
        0,
        u32::from_ne_bytes([64, 1, 0, 0]),
        src,
        dst,
    ];
    h[2] |= u32::from(checksum(&h)) << 16;
    h
}

/// What became of an ICMPv6 error NAT46's program was handed.
pub enum Error46 {
    /// Translated, for the endpoint behind this host-side veth.
    To(u32),
    /// Not about one of NAT46's flows, or of a kind not translated: left as it is.
    NotOurs,
    /// Dropped for this reason (a rewrite failed half-way).
    Drop(Counter),
}

/// ICMPv6 type and code → ICMPv4's (RFC 7915, section 5.2), with Packet Too Big's MTU made
/// IPv4's. `None`: not translated (a parameter problem other than an unknown next header,
/// whose pointer would need translating too).
#[inline(always)]
fn icmp4_of(kind: u8, code: u8, mtu: u32) -> Option<(u8, u8, u16)> {
    Some(match (kind, code) {
        // Destination unreachable: no route, beyond scope, address → host unreachable;
        // administratively prohibited → its IPv4 twin; port → port.
        (1, 0 | 2 | 3) => (3, 1, 0),
        (1, 1) => (3, 10, 0),
        (1, 4) => (3, 3, 0),
        // Packet too big → fragmentation needed, the MTU less IPv6's 20 extra header bytes.
        (2, _) => (3, 4, mtu.saturating_sub(20).min(0xffff) as u16),
        // Time exceeded keeps its code.
        (3, c) => (11, c, 0),
        // Parameter problem, unrecognised next header → protocol unreachable.
        (4, 1) => (3, 2, 0),
        _ => return None,
    })
}

/// An ICMPv6 error `flow` about a NAT46 flow's reply (the uplink found it so: `Back::Nat46`),
/// made its ICMPv4 twin for the endpoint the flow goes to.
#[inline(always)]
pub fn error_to_endpoint<P: Packet>(pkt: &mut P, flow: &Ipv6Flow) -> Error46 {
    let (data, end) = (pkt.data(), pkt.data_end());
    let Some(e) = icmp6_error_inner(data, end, flow) else {
        return Error46::NotOurs;
    };
    if flow.l4_off != ICMP6_OFF || e.l3_off != INNER6_OFF || e.l4_off != INNER6_L4_OFF {
        return Error46::NotOurs;
    }
    // The reply the error is about left from the published port to the client's: the
    // client's flow is the reverse.
    let Some(nat) = NAT46.get_ptr(&e.key.reversed()) else {
        return Error46::NotOurs;
    };
    // SAFETY: map value pointer valid for this program run; copied out.
    let nat = unsafe { *nat };
    let Some(target) = ports::lookup(e.key.src_addr, e.key.src_port, e.key.proto) else {
        return Error46::NotOurs;
    };
    let Some(ep_addr) = target.addr.mapped_v4() else {
        return Error46::NotOurs;
    };
    if target.ifindex != nat.ifindex {
        return Error46::NotOurs;
    }
    // SAFETY (all reads): bounds checked by ptr_at; read before anything is written.
    let Some(icmp6) = ptr_at::<[u8; 8]>(data, end, ICMP6_OFF).map(|p| unsafe { *p }) else {
        return Error46::NotOurs;
    };
    let Some(inner6) = ptr_at::<[u8; 8]>(data, end, INNER6_OFF).map(|p| unsafe { *p }) else {
        return Error46::NotOurs;
    };
    let Some(after_ports) = ptr_at::<u32>(data, end, INNER6_L4_OFF + 4).map(|p| unsafe { *p })
    else {
        return Error46::NotOurs;
    };
    let mtu = u32::from_be_bytes([icmp6[4], icmp6[5], icmp6[6], icmp6[7]]);
    let Some((kind, code, mtu4)) = icmp4_of(icmp6[0], icmp6[1], mtu) else {
        return Error46::NotOurs;
    };
    // The packet the endpoint sent, as it sent it: its traffic class, length and hop limit
    // from the IPv6 header it became.
    let tos = (inner6[0] << 4) | (inner6[1] >> 4);
    let tot_len = u16::from_be_bytes([inner6[4], inner6[5]]).saturating_add(20);
    let [len_hi, len_lo] = tot_len.to_be_bytes();
    let mut inner = [
        u32::from_ne_bytes([0x45, tos, len_hi, len_lo]),
        u32::from_ne_bytes([0, 0, 0x40, 0]),
        u32::from_ne_bytes([inner6[7], e.key.proto, 0, 0]),
        ep_addr,
        nat.addr,
    ];
    inner[2] |= u32::from(checksum(&inner)) << 16;
    let [mtu_hi, mtu_lo] = mtu4.to_be_bytes();
    let mut body = [
        u32::from_ne_bytes([kind, code, 0, 0]),
        u32::from_ne_bytes([0, 0, mtu_hi, mtu_lo]),
        inner[0],
        inner[1],
        inner[2],
        inner[3],
        inner[4],
        u32::from(target.port) | (u32::from(nat.port) << 16),
        after_ports,
    ];
    body[0] |= u32::from(checksum(&body)) << 16;
    let outer = error4_header(nat.addr, ep_addr);
    let done = pkt.change_family(true, false)
        && pkt.set_l3(L3_OFF, &outer)
        && pkt.set_l3(L3_OFF + 20, &body)
        && pkt.truncate(ERROR4_LEN)
        && pkt.set_eth(&target.gw_mac, &target.mac, ETH_P_IP.to_be());
    if done {
        Error46::To(target.ifindex)
    } else {
        Error46::Drop(Counter::Malformed)
    }
}

/// A NAT46 flow's reply from the endpoint behind host-side veth `back` that, made IPv6 (20
/// bytes longer; a `fragment` 28, its fragment header too), would not fit uplink `via`, and
/// may not be fragmented: don't fragment set (as Linux sets it on a datagram it sends
/// whole), or a fragment already (which netpath cannot fragment again). The frame becomes
/// the fragmentation needed a router on the way would send, from the gateway (the client the
/// endpoint sees), with the uplink's MTU less the growth, quoting the reply's header and
/// first 8 bytes, and goes back to the endpoint, whose kernel takes it as the path's MTU
/// (a first fragment's quote has the ports its socket is found by) and sends the next
/// datagram in pieces that fit; a later fragment too big is dropped. `None`: it fits, or
/// may be fragmented (left to the uplink, as it was).
#[inline(always)]
pub fn too_big_for_uplink(
    ctx: &mut TcContext,
    flow: &Ipv4Flow,
    via: u32,
    back: u32,
    fragment: bool,
) -> Option<i32> {
    // IPv6's fixed header is 20 bytes longer than IPv4's; a fragment carries its fragment
    // header too.
    let growth = 20 + if fragment { FRAG_HDR_LEN as u32 } else { 0 };
    let mut mtu: u32 = 0;
    // SAFETY: the program's own skb; `mtu` on the stack, written by the helper.
    let rc = unsafe { bpf_check_mtu(ctx.skb.skb.cast(), via, &mut mtu, growth as i32, 0) };
    if rc != i64::from(BPF_MTU_CHK_RET_FRAG_NEEDED) {
        return None;
    }
    if flow.later {
        count(Counter::DropFragment);
        return Some(TC_ACT_SHOT as i32);
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    // SAFETY (all reads): bounds checked by ptr_at; copied out before anything is written.
    let quoted = unsafe { *ptr_at::<[u32; 7]>(data, end, L3_OFF)? };
    let eth = unsafe { *ptr_at::<[u8; 12]>(data, end, 0)? };
    let df = quoted[1].to_ne_bytes()[2] & 0x40 != 0;
    if !df && !fragment {
        return None;
    }
    let [mtu_hi, mtu_lo] = (mtu.saturating_sub(growth).min(0xffff) as u16).to_be_bytes();
    let mut body = [
        u32::from_ne_bytes([3, 4, 0, 0]),
        u32::from_ne_bytes([0, 0, mtu_hi, mtu_lo]),
        quoted[0],
        quoted[1],
        quoted[2],
        quoted[3],
        quoted[4],
        quoted[5],
        quoted[6],
    ];
    body[0] |= u32::from(checksum(&body)) << 16;
    let outer = error4_header(flow.dst_addr, flow.src_addr);
    let mut gw = [0u8; 6];
    let mut ep = [0u8; 6];
    gw.copy_from_slice(&eth[..6]);
    ep.copy_from_slice(&eth[6..]);
    // Room for the error's own IPv4 and ICMP headers before the quoted one, which stays put.
    let done = ctx.adjust_room(28, BPF_ADJ_ROOM_MAC, 0).is_ok()
        && ctx.truncate(ERROR4_LEN)
        && ctx.set_l3(L3_OFF, &outer)
        && ctx.set_l3(L3_OFF + 20, &body)
        && ctx.set_macs(&gw, &ep);
    if !done {
        return Some(TC_ACT_SHOT as i32);
    }
    count(Counter::IcmpErrorBack);
    // SAFETY: plain helper call.
    Some(unsafe { bpf_redirect(back, 0) as i32 })
}

/// ICMPv4 type and code → ICMPv6's (RFC 7915, section 4.2), with the word after them:
/// fragmentation needed's MTU made IPv6's (20 bytes more), protocol unreachable's pointer at
/// the next header. `None`: not translated (a parameter problem, whose pointer would need
/// translating; a code with no twin).
#[inline(always)]
fn icmp6_of(kind: u8, code: u8, mtu: u16) -> Option<(u8, u8, u32)> {
    Some(match (kind, code) {
        // Net, host, source route and the rest of the unreachables → no route.
        (3, 0 | 1 | 5..=8 | 11 | 12) => (1, 0, 0),
        // Protocol unreachable → parameter problem, unrecognised next header, at byte 6.
        (3, 2) => (4, 1, 6),
        (3, 3) => (1, 4, 0),
        // Fragmentation needed → Packet Too Big.
        (3, 4) => (2, 0, u32::from(mtu) + 20),
        // Administratively prohibited, in its three forms.
        (3, 9 | 10 | 13) => (1, 1, 0),
        // Time exceeded keeps its code.
        (11, c) => (3, c, 0),
        _ => return None,
    })
}

/// An ICMPv4 error the endpoint behind host-side veth `ifindex` sent about a NAT46 flow's
/// packet (to its gateway, which it sees as the client: `nat46_reply::is_reply` found the flow),
/// made its ICMPv6 twin (RFC 7915) for the IPv6 client: from the address the client reached,
/// carrying the client's packet as the client sent it, out of the uplink the flow came in on.
/// So a UDP port nothing listens on refuses an IPv6 client at once, as it refuses an IPv4
/// one. An error of a kind not translated goes on to the host, as before.
#[inline(always)]
pub fn error_to_client(ctx: &mut TcContext, flow: &Ipv4Flow, ifindex: u32) -> i32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    let Some(e) = icmp_error_inner(data, end, flow) else {
        return TC_ACT_SHOT as i32;
    };
    if flow.l4_off != ICMP4_OFF || e.l3_off != INNER4_OFF || e.l4_off != INNER4_L4_OFF {
        return TC_ACT_OK as i32;
    }
    let Some(r) = NAT46_REPLY.get_ptr(&e.key.reversed()) else {
        return TC_ACT_SHOT as i32;
    };
    // SAFETY: map value pointer valid for this program run; copied out.
    let r = unsafe { *r };
    if r.ifindex != ifindex {
        return TC_ACT_SHOT as i32;
    }
    // SAFETY (all reads): bounds checked by ptr_at; read before anything is written.
    let Some(icmp4) = ptr_at::<[u8; 8]>(data, end, ICMP4_OFF).map(|p| unsafe { *p }) else {
        return TC_ACT_SHOT as i32;
    };
    let Some(inner4) = ptr_at::<[u8; 12]>(data, end, INNER4_OFF).map(|p| unsafe { *p }) else {
        return TC_ACT_SHOT as i32;
    };
    let Some(after_ports) = ptr_at::<u32>(data, end, INNER4_L4_OFF + 4).map(|p| unsafe { *p })
    else {
        return TC_ACT_SHOT as i32;
    };
    let mtu = u16::from_be_bytes([icmp4[6], icmp4[7]]);
    let Some((kind, code, word)) = icmp6_of(icmp4[0], icmp4[1], mtu) else {
        return TC_ACT_OK as i32;
    };
    // The packet the client sent, as it sent it: its traffic class, length and hop limit
    // from the IPv4 header it became.
    let tos = u32::from(inner4[1]);
    let payload = u32::from(u16::from_be_bytes([inner4[2], inner4[3]])).saturating_sub(20);
    let inner = ipv6_header(
        tos,
        payload,
        inner4[9],
        u32::from(inner4[8]),
        &r.client,
        &r.addr,
    );
    let mut body = [0u32; ERROR6_BODY / 4];
    body[0] = u32::from_ne_bytes([kind, code, 0, 0]);
    body[1] = word.to_be();
    body[2..12].copy_from_slice(&inner);
    body[12] = u32::from(r.client_port) | (u32::from(r.port) << 16);
    body[13] = after_ports;
    body[0] |= u32::from(icmp6_checksum(&r.addr, &r.client, &body)) << 16;
    let outer = ipv6_header(0, ERROR6_BODY as u32, proto::ICMPV6, 64, &r.addr, &r.client);
    let done = ctx.change_family(false, false)
        && ctx.truncate(ERROR6_LEN)
        && ctx.set_l3(L3_OFF, &outer)
        && ctx.set_l3(L3_OFF + 40, &body)
        && ctx.set_eth(&r.via_macs.src, &r.via_macs.dst, ETH_P_IPV6.to_be());
    if !done {
        return TC_ACT_SHOT as i32;
    }
    count(Counter::IcmpErrorOut);
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(r.via, 0) as i32 }
}
