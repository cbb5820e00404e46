//! Neighbour discovery for endpoints, IPv6's ARP (`arp.rs` is IPv4's): the host-side veth
//! answers an endpoint's neighbour solicitations for its gateway and for the peers on its
//! network with its own MAC, so all of an endpoint's IPv6 traffic comes to netpath's programs
//! at layer 3. What an endpoint says about neighbours is checked as well: an advertisement only
//! for an address of its own, and no router advertisement or redirect at all, so a container
//! can pass itself off neither as the gateway nor as another endpoint, nor as anyone's router.
use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::bpf_redirect,
    programs::TcContext,
};
use netpath_common::{proto, Counter, EndpointInfo, In6};
use network_types::ip::Ipv6Hdr;

use crate::{
    family::{drop, Ip},
    parse::{in6_at, is_link_scoped6, ptr_at, Ipv6Flow, L3_OFF},
    stats::count,
};

const ROUTER_SOLICITATION: u8 = 133;
const ROUTER_ADVERTISEMENT: u8 = 134;
const NEIGHBOUR_SOLICITATION: u8 = 135;
const NEIGHBOUR_ADVERTISEMENT: u8 = 136;
const REDIRECT: u8 = 137;

/// Where a neighbour discovery message without extension headers starts.
const ND_OFF: usize = L3_OFF + Ipv6Hdr::LEN;
/// A solicitation's length without options, and with the source's link-layer address.
const NS_LEN: usize = 24;
const NS_WITH_SLLA_LEN: usize = 32;
/// Option types: the source's and the target's link-layer address.
const OPT_SOURCE_LLA: u8 = 1;
const OPT_TARGET_LLA: u8 = 2;
/// Advertisement flags: router, solicited, override.
const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;

/// Neighbour discovery from an endpoint (`ep`: its IPv6 record on this interface's network,
/// if it has one): `Some(verdict)` for a neighbour discovery message (answered, passed to the
/// host, or dropped as a spoof), `None` for any other packet. The caller checked the frame's
/// source MAC.
#[inline(always)]
pub fn from_endpoint(
    ctx: &mut TcContext,
    ep: Option<&EndpointInfo<In6>>,
    flow: &Ipv6Flow,
    ifindex: u32,
) -> Option<i32> {
    if flow.proto != proto::ICMPV6 || flow.fragment || flow.later {
        return None;
    }
    // SAFETY: bounds checked by ptr_at.
    let head = unsafe { *ptr_at::<[u8; 4]>(ctx.data(), ctx.data_end(), flow.l4_off)? };
    let kind = head[0];
    if !(ROUTER_SOLICITATION..=REDIRECT).contains(&kind) {
        return None;
    }
    let own = |a: &In6| ep.is_some_and(|e| e.addr == *a) || is_link_scoped6(a);
    if !own(&flow.src_addr) || kind == ROUTER_ADVERTISEMENT || kind == REDIRECT {
        return Some(drop(Counter::DropSpoof, flow, ifindex));
    }
    if kind == NEIGHBOUR_ADVERTISEMENT || kind == NEIGHBOUR_SOLICITATION {
        let target = in6_at(ctx.data(), ctx.data_end(), flow.l4_off + 8)?;
        if kind == NEIGHBOUR_ADVERTISEMENT && !own(&target) {
            return Some(drop(Counter::DropSpoof, flow, ifindex));
        }
        if kind == NEIGHBOUR_SOLICITATION {
            if let Some(ep) = ep {
                if let Some(router) = answerable(ep, target) {
                    let flags = NA_SOLICITED | NA_OVERRIDE | if router { NA_ROUTER } else { 0 };
                    let verdict = answer(ctx, &ep.host_mac, flow, ifindex, flags);
                    if verdict != NOT_ANSWERED {
                        return Some(verdict);
                    }
                }
            }
        }
    }
    // The rest of the link's own chatter (solicitations for the host's link-local address,
    // router solicitations, advertisements of its own address): the host's.
    count(Counter::Pass);
    Some(TC_ACT_OK as i32)
}

/// Whether the endpoint's solicitation for `target` is netpath's to answer: its gateway or
/// host gateway (`Some(true)`: a router), or a peer on its network, here or on another node
/// (`Some(false)`).
#[inline(never)]
fn answerable(ep: &EndpointInfo<In6>, target: In6) -> Option<bool> {
    if target == ep.addr {
        return None;
    }
    let net = In6::network(ep.network)?;
    if target == net.gateway || target == net.host_gateway {
        return Some(true);
    }
    let here = In6::peer(target).is_some_and(|p| p.network == ep.network);
    let elsewhere = || In6::remote(target).is_some_and(|r| r.network == ep.network);
    (here || elsewhere()).then_some(false)
}

/// What [`answer`] returns for a solicitation it leaves alone.
const NOT_ANSWERED: i32 = i32::MIN;

/// Turns the solicitation into the advertisement (`flags`, the host side's `mac`) and sends it
/// back to the endpoint: only the common shapes (no extension headers, no option or the
/// source's link-layer address, not duplicate address detection), which keep the packet's
/// length; [`NOT_ANSWERED`] otherwise.
#[inline(always)]
fn answer(ctx: &mut TcContext, mac: &[u8; 6], flow: &Ipv6Flow, ifindex: u32, flags: u8) -> i32 {
    if flow.l4_off != ND_OFF || flow.src_addr == In6::default() {
        return NOT_ANSWERED;
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    let done = match usize::from(flow.tot_len) - Ipv6Hdr::LEN {
        NS_LEN => rewrite::<NS_LEN>(data, end, mac, flags),
        NS_WITH_SLLA_LEN => rewrite::<NS_WITH_SLLA_LEN>(data, end, mac, flags),
        _ => false,
    };
    if !done {
        return TC_ACT_SHOT as i32;
    }
    count(Counter::NdpReply);
    // SAFETY: plain helper call; redirect to the veth's egress, i.e. back into the endpoint.
    unsafe { bpf_redirect(ifindex, 0) as i32 }
}

/// Rewrites a solicitation of `N` bytes in place into the advertisement of its target with
/// `mac`: Ethernet and IPv6 addresses turned round (the target is the new source), hop limit
/// 255, type, flags, the option made the target's, the checksum computed anew.
#[inline(always)]
fn rewrite<const N: usize>(data: usize, end: usize, mac: &[u8; 6], flags: u8) -> bool {
    let (Some(eth), Some(ip), Some(body)) = (
        ptr_at::<[u8; 12]>(data, end, 0),
        ptr_at::<Ipv6Hdr>(data, end, L3_OFF),
        ptr_at::<[u8; N]>(data, end, ND_OFF),
    ) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at; the three do not overlap.
    let (eth, ip, body) = unsafe { (&mut *eth, &mut *ip, &mut *body) };
    if N == NS_WITH_SLLA_LEN && (body[NS_LEN] != OPT_SOURCE_LLA || body[NS_LEN + 1] != 1) {
        return false;
    }
    let requester = [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]];
    eth[..6].copy_from_slice(&requester);
    eth[6..].copy_from_slice(mac);
    let mut target = [0u8; 16];
    target.copy_from_slice(&body[8..24]);
    ip.dst_addr = ip.src_addr;
    ip.src_addr = target;
    ip.hop_limit = 255;
    body[0] = NEIGHBOUR_ADVERTISEMENT;
    body[1] = 0;
    body[2] = 0;
    body[3] = 0;
    body[4] = flags;
    body[5] = 0;
    body[6] = 0;
    body[7] = 0;
    if N == NS_WITH_SLLA_LEN {
        body[NS_LEN] = OPT_TARGET_LLA;
        body[NS_LEN + 2..NS_LEN + 8].copy_from_slice(mac);
    }
    let sum = checksum(&ip.src_addr, &ip.dst_addr, body);
    body[2..4].copy_from_slice(&sum.to_be_bytes());
    true
}

/// The ICMPv6 checksum of `body` (its checksum field zero) between `src` and `dst`: the
/// pseudo-header (addresses, length, next header) and the message, folded.
#[inline(always)]
fn checksum<const N: usize>(src: &[u8; 16], dst: &[u8; 16], body: &[u8; N]) -> u16 {
    let mut sum = N as u32 + u32::from(proto::ICMPV6);
    for i in 0..8 {
        sum += u32::from(u16::from_be_bytes([src[2 * i], src[2 * i + 1]]));
        sum += u32::from(u16::from_be_bytes([dst[2 * i], dst[2 * i + 1]]));
    }
    for i in 0..N / 2 {
        sum += u32::from(u16::from_be_bytes([body[2 * i], body[2 * i + 1]]));
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
