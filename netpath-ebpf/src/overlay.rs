//! Overlay networks across nodes: VXLAN through one external-mode (collect-metadata) device.
//!
//! Out: a packet an endpoint sends to an endpoint on another node gets its tunnel key (the
//! other node's underlay address, the network's VNI) and is redirected to the VXLAN device,
//! which encapsulates it. In: the device's TC ingress sees the inner frame with the tunnel
//! key it came with; the VNI must be one of this node's overlay networks and the inner source
//! an endpoint of that network on the very node that sent it (`REMOTES`), so a stale or
//! forged packet never reaches an endpoint. The underlay is IPv4 or IPv6 (the device listens
//! on both; a node's address says which its packets take). Delivery is as within a node:
//! MACs rewritten, `bpf_redirect_peer` into the endpoint.
use aya_ebpf::{
    bindings::{bpf_tunnel_key, BPF_F_TUNINFO_IPV6, TC_ACT_SHOT},
    helpers::{bpf_redirect, bpf_redirect_peer, bpf_skb_get_tunnel_key, bpf_skb_set_tunnel_key},
    programs::TcContext,
};
use netpath_common::{
    map_sizes, net_flags, Counter, In6, MemberKey, NetworkInfo, OverlayNet, RemoteEndpoint,
    Underlay,
};

use crate::{
    family::Ip,
    forward,
    maps::{OVERLAY_NETS, OVERLAY_PEERS, OVERLAY_VNIS, REMOTES, REMOTES6},
    packet::Packet,
    parse::{parse, Flow, Parsed},
    policy::{self, Known},
    stats::{admitted, count, dropped},
};

/// The outer packets' TTL.
const TUNNEL_TTL: u8 = 64;
/// What `bpf_skb_get_tunnel_key` says (negated) when the key is of the other family.
const EPROTO: i32 = 71;

/// The endpoint on another node `dst` (network order) is, if any.
#[inline(always)]
pub fn remote(dst: u32) -> Option<RemoteEndpoint> {
    // SAFETY: map value pointer valid for this program run; copied out at once.
    REMOTES.get_ptr(&dst).map(|r| unsafe { *r })
}

/// The same for an IPv6 address.
#[inline(always)]
pub fn remote6(dst: &In6) -> Option<RemoteEndpoint> {
    // SAFETY: map value pointer valid for this program run; copied out at once.
    REMOTES6.get_ptr(dst).map(|r| unsafe { *r })
}

/// Gives the packet its tunnel key: to `node` on the network's VNI, from this node's underlay
/// address (the one the other nodes check). Both are held as the key holds them, so either
/// family is one straight copy: a broadcast's loop over the peers never forks on the family
/// in the verifier.
#[inline(always)]
fn set_tunnel(ctx: &mut TcContext, node: &Underlay, ov: &OverlayNet) -> bool {
    // SAFETY: an all-zero bpf_tunnel_key is valid (plain integers and unions of them).
    let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    key.tunnel_id = ov.vni;
    key.tunnel_ttl = TUNNEL_TTL;
    key.__bindgen_anon_1.remote_ipv6 = node.words;
    key.__bindgen_anon_3.local_ipv6 = ov.local.words;
    // SAFETY: the key lives on the stack for the call; its size is the kernel's struct's.
    let ret = unsafe {
        bpf_skb_set_tunnel_key(
            ctx.skb.skb,
            &mut key,
            core::mem::size_of::<bpf_tunnel_key>() as u32,
            u64::from(node.v6) * BPF_F_TUNINFO_IPV6 as u64,
        )
    };
    ret == 0
}

/// The tunnel key a decapsulated packet came with: its VNI and the underlay address that
/// sent it (None: the packet had no key).
#[inline(always)]
fn tunnel_key(ctx: &TcContext) -> Option<(u32, Underlay)> {
    // SAFETY: an all-zero bpf_tunnel_key is valid.
    let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    let size = core::mem::size_of::<bpf_tunnel_key>() as u32;
    let mut v6 = 0;
    // SAFETY: the key lives on the stack for the call; its size is the kernel's struct's.
    let mut ret = unsafe { bpf_skb_get_tunnel_key(ctx.skb.skb, &mut key, size, 0) };
    if ret == -(EPROTO as i64) {
        // An IPv6 underlay's key is read only when asked for as IPv6.
        v6 = 1;
        // SAFETY: as above.
        ret = unsafe {
            bpf_skb_get_tunnel_key(ctx.skb.skb, &mut key, size, BPF_F_TUNINFO_IPV6 as u64)
        };
    }
    // SAFETY: an IPv4 key fills the union's first word and zeroes the others; an IPv6 key
    // fills the four.
    let words = unsafe { key.__bindgen_anon_1.remote_ipv6 };
    (ret == 0).then_some((key.tunnel_id, Underlay { words, v6 }))
}

/// Sends an endpoint's packet to `peer`, an endpoint on another node, through the VXLAN
/// device. The caller checked the network and its policy.
#[inline(always)]
pub fn encap(ctx: &mut TcContext, network: u32, peer: &RemoteEndpoint) -> i32 {
    // SAFETY: map value pointer valid for this program run; copied out at once.
    let Some(ov) = OVERLAY_NETS.get_ptr(&network).map(|o| unsafe { *o }) else {
        return TC_ACT_SHOT as i32;
    };
    if !set_tunnel(ctx, &peer.node, &ov) {
        return TC_ACT_SHOT as i32;
    }
    count(Counter::Encap);
    // SAFETY: plain helper call; the device's egress encapsulates.
    unsafe { bpf_redirect(ov.device, 0) as i32 }
}

/// A copy of a broadcast to every other node with members on the network.
#[inline(always)]
pub fn flood(ctx: &mut TcContext, network: u32) {
    // SAFETY: map value pointer valid for this program run; copied out at once.
    let Some(ov) = OVERLAY_NETS.get_ptr(&network).map(|o| unsafe { *o }) else {
        return;
    };
    for slot in 0..map_sizes::PEERS_PER_NETWORK {
        if slot >= ov.peers {
            break;
        }
        // SAFETY: map value pointer valid for this program run.
        let Some(node) = OVERLAY_PEERS
            .get_ptr(&MemberKey { network, slot })
            .map(|n| unsafe { *n })
        else {
            continue;
        };
        if set_tunnel(ctx, &node, &ov) && ctx.clone_redirect(ov.device, 0).is_ok() {
            count(Counter::Encap);
        }
    }
}

/// A packet the VXLAN device decapsulated (its TC ingress).
#[inline(always)]
pub fn device_ingress(ctx: &mut TcContext) -> i32 {
    // SAFETY: reading the skb's ifindex field.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let key = tunnel_key(ctx);
    match parse(ctx.data(), ctx.data_end()) {
        Parsed::Ipv4(flow) => decap(ctx, key, &flow, ifindex),
        Parsed::Ipv6(flow) => decap(ctx, key, &flow, ifindex),
        // Nothing else crosses: ARP and neighbour discovery are answered on each node.
        _ => {
            count(Counter::DropOverlay);
            TC_ACT_SHOT as i32
        }
    }
}

/// A decapsulated packet of either family with the tunnel key it came with (its VNI and the
/// underlay address that sent it): the VNI one of this node's overlay networks, its source an
/// endpoint of that network on the node that sent it; then delivered.
#[inline(always)]
fn decap<A: Ip>(
    ctx: &mut TcContext,
    key: Option<(u32, Underlay)>,
    flow: &Flow<A>,
    ifindex: u32,
) -> i32 {
    let Some((vni, from)) = key else {
        return drop(flow, ifindex);
    };
    // SAFETY: map value pointers valid for this program run; copied out at once.
    let Some(network) = OVERLAY_VNIS.get_ptr(&vni).map(|n| unsafe { *n }) else {
        return drop(flow, ifindex);
    };
    // The source must be an endpoint of this network on the node the packet came from.
    match A::remote(flow.src_addr) {
        Some(r) if r.node == from && r.network == network => {}
        _ => return drop(flow, ifindex),
    }
    let Some(net) = A::network(network) else {
        return drop(flow, ifindex);
    };
    deliver(ctx, network, net, flow, ifindex)
}

#[inline(always)]
fn deliver<A: Ip>(
    ctx: &mut TcContext,
    network: u32,
    net: &NetworkInfo<A>,
    flow: &Flow<A>,
    ifindex: u32,
) -> i32 {
    let dst = flow.dst_addr;
    if A::floods(dst, net) {
        // Every member here; the sender's node gave its own host the original.
        forward::flood(ctx, network, net.members, ifindex);
        return TC_ACT_SHOT as i32;
    }
    let Some(peer) = A::peer(dst) else {
        // Not (or no longer) here: never to whoever has the address elsewhere.
        dropped(Counter::DropNoRoute, flow, ifindex);
        return TC_ACT_SHOT as i32;
    };
    if peer.network != network {
        dropped(Counter::DropIsolation, flow, ifindex);
        return TC_ACT_SHOT as i32;
    }
    if net.flags & net_flags::NO_ICC != 0 {
        dropped(Counter::DropIcc, flow, ifindex);
        return TC_ACT_SHOT as i32;
    }
    let known = Known {
        src: None,
        dst: Some(peer.identity),
    };
    let (data, end) = (ctx.data(), ctx.data_end());
    match policy::admit_tracked(flow, known, || A::error_about(data, end, flow)) {
        Ok(by) => admitted(by, flow, ifindex),
        Err(reason) => {
            dropped(reason, flow, ifindex);
            return TC_ACT_SHOT as i32;
        }
    }
    if !ctx.set_macs(&peer.host_mac, &peer.mac) {
        return TC_ACT_SHOT as i32;
    }
    count(Counter::Decap);
    // SAFETY: plain helper call.
    unsafe { bpf_redirect_peer(peer.ifindex, 0) as i32 }
}

#[inline(always)]
fn drop<A: netpath_common::Addr>(flow: &Flow<A>, ifindex: u32) -> i32 {
    dropped(Counter::DropOverlay, flow, ifindex);
    TC_ACT_SHOT as i32
}

/// Whether a network of `flags` spans nodes.
#[inline(always)]
pub fn spans_nodes(flags: u32) -> bool {
    flags & net_flags::OVERLAY != 0
}
