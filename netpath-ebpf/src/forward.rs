//! Networks: endpoint-to-endpoint forwarding inside a network (veth to veth with
//! `bpf_redirect_peer`), broadcast and multicast to the network's members, and the policy
//! between networks (isolation, icc=false, internal); endpoints on other nodes through
//! [`overlay`].
use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::bpf_redirect_peer,
    maps::lpm_trie::Key,
    programs::TcContext,
};
use netpath_common::{map_sizes, net_flags, Counter, EndpointInfo, MemberKey, NetworkInfo};

use crate::{
    hostgw,
    maps::{ENDPOINTS_BY_ADDR, MEMBERS, NETWORKS, SUBNETS},
    overlay,
    packet::Packet,
    parse::{icmp_error_about, Ipv4Flow},
    policy::{self, Known},
    snat,
    stats::{admitted, count, dropped},
};

/// May endpoint `ep` reach a peer endpoint (on `peer_network`; of this node when its
/// identity is known, `peer_identity`, else of another): the same network, icc, then the
/// policy (the connection remembered). `Err`: the packet was dropped and counted, and what
/// the program returns.
#[inline(always)]
fn between(
    ctx: &TcContext,
    ep: &EndpointInfo,
    net: &NetworkInfo,
    peer_network: u32,
    peer_identity: Option<netpath_common::AddrIdentity>,
    flow: &Ipv4Flow,
    ifindex: u32,
) -> Result<(), i32> {
    if peer_network != ep.network {
        return Err(drop(Counter::DropIsolation, flow, ifindex));
    }
    if net.flags & net_flags::NO_ICC != 0 {
        return Err(drop(Counter::DropIcc, flow, ifindex));
    }
    let known = Known {
        src: Some(ep.identity),
        dst: peer_identity,
    };
    match policy::admit_tracked(flow, known, || {
        icmp_error_about(ctx.data(), ctx.data_end(), flow)
    }) {
        Ok(by) => {
            admitted(by, flow, ifindex);
            Ok(())
        }
        Err(reason) => Err(drop(reason, flow, ifindex)),
    }
}

/// What happens to an IPv4 packet an endpoint sent (after anti-spoofing and reverse NAT).
#[inline(always)]
pub fn route(ctx: &mut TcContext, ep: &EndpointInfo, flow: &Ipv4Flow, ifindex: u32) -> i32 {
    // SAFETY: map value pointer valid for this program run; copied out at once.
    let Some(net) = NETWORKS.get_ptr(&ep.network).map(|n| unsafe { *n }) else {
        count(Counter::Pass);
        return TC_ACT_OK as i32;
    };
    let dst = flow.dst_addr;
    if dst == net.host_gateway && net.flags & net_flags::INTERNAL == 0 {
        // host.docker.internal: the host answers (on its loopback for the allowed ports).
        if hostgw::to_loopback(ctx, ep, flow) {
            count(Counter::HostLoopback);
        } else {
            count(Counter::Pass);
        }
        return TC_ACT_OK as i32;
    }
    if dst == u32::MAX || dst == net.broadcast() || is_multicast(dst) {
        flood(ctx, ep.network, &net, ifindex);
        if overlay::spans_nodes(&net) {
            overlay::flood(ctx, ep.network);
        }
        // The host is on every network too (the gateway side): it gets the original.
        return TC_ACT_OK as i32;
    }
    // SAFETY: map value pointer valid for this program run; copied out at once.
    if let Some(peer) = ENDPOINTS_BY_ADDR.get_ptr(&dst).map(|p| unsafe { *p }) {
        // Both ends are endpoints of this node: their identities came with their records.
        if let Err(dropped) = between(
            ctx,
            ep,
            &net,
            peer.network,
            Some(peer.identity),
            flow,
            ifindex,
        ) {
            return dropped;
        }
        if !ctx.set_macs(&peer.host_mac, &peer.mac) {
            return TC_ACT_SHOT as i32;
        }
        count(Counter::Forward);
        // SAFETY: plain helper call.
        return unsafe { bpf_redirect_peer(peer.ifindex, 0) as i32 };
    }
    if overlay::spans_nodes(&net) {
        if let Some(peer) = overlay::remote(dst) {
            if let Err(dropped) = between(ctx, ep, &net, peer.network, None, flow, ifindex) {
                return dropped;
            }
            return overlay::encap(ctx, ep.network, &peer);
        }
    }
    match SUBNETS.get(Key::new(32, dst)) {
        Some(id) if *id == ep.network => {
            if dst == net.gateway {
                count(Counter::Pass);
                TC_ACT_OK as i32
            } else {
                drop(Counter::DropNoRoute, flow, ifindex)
            }
        }
        // Another network's subnet: its gateway is the host, the rest is isolated.
        Some(id) => {
            // SAFETY: map value pointer valid for this program run.
            let other_gw = NETWORKS.get_ptr(id).map(|n| unsafe { (*n).gateway });
            if other_gw == Some(dst) && net.flags & net_flags::INTERNAL == 0 {
                count(Counter::Pass);
                TC_ACT_OK as i32
            } else {
                drop(Counter::DropIsolation, flow, ifindex)
            }
        }
        None if net.flags & net_flags::INTERNAL != 0 => drop(Counter::DropInternal, flow, ifindex),
        // A routed network: out with the endpoint's own address, as the host routes it.
        None if net.flags & net_flags::ROUTED != 0 => {
            count(Counter::Pass);
            TC_ACT_OK as i32
        }
        // Beyond the networks: out of an uplink with source NAT, or to the host.
        None => snat::outbound(ctx, ep, flow, ifindex),
    }
}

#[inline(always)]
fn drop(reason: Counter, flow: &Ipv4Flow, ifindex: u32) -> i32 {
    dropped(reason, flow, ifindex);
    TC_ACT_SHOT as i32
}

#[inline(always)]
pub fn is_multicast(addr_be: u32) -> bool {
    u32::from_be(addr_be) >> 28 == 0xe
}

/// Sends a copy of the packet to every member of the network but the sender (egress of each
/// member's host-side veth, i.e. into the member).
#[inline(always)]
pub fn flood(ctx: &mut TcContext, network: u32, net: &NetworkInfo, sender: u32) {
    let n = if net.members > map_sizes::MEMBERS_PER_NETWORK {
        map_sizes::MEMBERS_PER_NETWORK
    } else {
        net.members
    };
    for slot in 0..map_sizes::MEMBERS_PER_NETWORK {
        if slot >= n {
            break;
        }
        let key = MemberKey { network, slot };
        // SAFETY: map value pointer valid for this program run.
        let Some(ifindex) = MEMBERS.get_ptr(&key).map(|i| unsafe { *i }) else {
            continue;
        };
        if ifindex != sender && ctx.clone_redirect(ifindex, 0).is_ok() {
            count(Counter::Flood);
        }
    }
}
