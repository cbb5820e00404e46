//! Networks: endpoint-to-endpoint forwarding inside a network (veth to veth with
//! `bpf_redirect_peer`), broadcast and multicast to the network's members, and the policy
//! between networks (isolation, icc=false, internal); endpoints on other nodes through
//! [`overlay`]. Written once for IPv4 and IPv6 (`family::Ip` says how they differ).
use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::bpf_redirect_peer,
    programs::TcContext,
};
use netpath_common::{
    map_sizes, net_flags, no_subnet, AddrIdentity, Counter, EndpointInfo, MemberKey,
};

use crate::{
    family::{drop, Ip},
    maps::{MEMBERS, NO_SUBNET},
    overlay,
    packet::Packet,
    parse::Flow,
    policy::{self, Known},
    stats::{admitted, count},
};

/// The network whose subnet holds `addr`: the subnets' trie (a helper call and a walk),
/// asked only where the agent has not said no subnet is (`NO_SUBNET`: the host's own
/// traffic, addressed to no network, costs a bit read).
#[inline(always)]
pub fn subnet_of<A: Ip>(addr: A) -> Option<u32> {
    if NO_SUBNET
        .get(A::FAMILY)
        .is_some_and(|blocks| no_subnet::holds(blocks, addr))
    {
        return None;
    }
    A::subnet_trie(addr)
}

/// May endpoint `ep` (on a network of `flags`) reach a peer endpoint (on `peer_network`; of
/// this node when its identity is known, `peer_identity`, else of another): the same network,
/// icc, then the policy (the connection remembered). `Err`: the packet was dropped and
/// counted, and what the program returns.
#[inline(always)]
fn between<A: Ip>(
    ctx: &TcContext,
    ep: &EndpointInfo<A>,
    flags: u32,
    peer_network: u32,
    peer_identity: Option<AddrIdentity>,
    flow: &Flow<A>,
    ifindex: u32,
) -> Result<(), i32> {
    if peer_network != ep.network {
        return Err(drop(Counter::DropIsolation, flow, ifindex));
    }
    if flags & net_flags::NO_ICC != 0 {
        return Err(drop(Counter::DropIcc, flow, ifindex));
    }
    let known = Known {
        src: Some(ep.identity),
        dst: peer_identity,
    };
    // The packet's window read once, before the lookups (nothing here moves the packet).
    let (data, end) = (ctx.data(), ctx.data_end());
    match policy::admit_tracked(flow, known, || A::error_about(data, end, flow)) {
        Ok(by) => {
            admitted(by, flow, ifindex);
            Ok(())
        }
        Err(reason) => Err(drop(reason, flow, ifindex)),
    }
}

/// What happens to a packet an endpoint sent from its own address, of either family (after
/// anti-spoofing and reverse NAT).
#[inline(always)]
pub fn route<A: Ip>(
    ctx: &mut TcContext,
    ep: &EndpointInfo<A>,
    flow: &Flow<A>,
    ifindex: u32,
) -> i32 {
    let Some(net) = A::network(ep.network) else {
        count(Counter::Pass);
        return TC_ACT_OK as i32;
    };
    let dst = flow.dst_addr;
    if dst == net.host_gateway && net.flags & net_flags::INTERNAL == 0 {
        // host.docker.internal: the host answers (on its loopback for the allowed ports).
        if A::to_host_loopback(ctx, ep, flow) {
            count(Counter::HostLoopback);
        } else {
            count(Counter::Pass);
        }
        return TC_ACT_OK as i32;
    }
    if A::floods(dst, net) {
        flood(ctx, ep.network, net.members, ifindex);
        if overlay::spans_nodes(net.flags) {
            overlay::flood(ctx, ep.network);
        }
        // The host is on every network too (the gateway side): it gets the original.
        return TC_ACT_OK as i32;
    }
    if let Some(peer) = A::peer(dst) {
        // Both ends are endpoints of this node: their identities came with their records.
        if let Err(dropped) = between(
            ctx,
            ep,
            net.flags,
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
    if overlay::spans_nodes(net.flags) {
        if let Some(peer) = A::remote(dst) {
            if let Err(dropped) = between(ctx, ep, net.flags, peer.network, None, flow, ifindex) {
                return dropped;
            }
            return overlay::encap(ctx, ep.network, &peer);
        }
    }
    match subnet_of(dst) {
        Some(id) if id == ep.network => {
            if dst == net.gateway {
                count(Counter::Pass);
                TC_ACT_OK as i32
            } else {
                drop(Counter::DropNoRoute, flow, ifindex)
            }
        }
        // Another network's subnet: its gateway is the host, the rest is isolated.
        Some(id) => {
            let other_gw = A::network(id).map(|n| n.gateway);
            if other_gw == Some(dst) && net.flags & net_flags::INTERNAL == 0 {
                count(Counter::Pass);
                TC_ACT_OK as i32
            } else {
                drop(Counter::DropIsolation, flow, ifindex)
            }
        }
        None if net.flags & net_flags::INTERNAL != 0 => drop(Counter::DropInternal, flow, ifindex),
        // Beyond the networks: out of an uplink with source NAT (a routed network's with the
        // endpoint's own address), or to the host.
        None => A::outbound(ctx, ep, flow, ifindex, net.flags & net_flags::ROUTED != 0),
    }
}

/// Sends a copy of the packet to every member of the network but the sender (egress of each
/// member's host-side veth, i.e. into the member).
#[inline(always)]
pub fn flood(ctx: &mut TcContext, network: u32, members: u32, sender: u32) {
    let n = if members > map_sizes::MEMBERS_PER_NETWORK {
        map_sizes::MEMBERS_PER_NETWORK
    } else {
        members
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
