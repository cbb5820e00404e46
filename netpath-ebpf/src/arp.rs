//! ARP for endpoints: the host-side veth answers an endpoint's requests for its gateway and
//! for the peers on its network (on any node) with its own MAC, so all of an endpoint's
//! traffic comes to netpath's programs at layer 3. Requests for anything else go unanswered,
//! as on a bridge where nobody has that address; requests never reach other namespaces.
use aya_ebpf::{bindings::TC_ACT_OK, helpers::bpf_redirect, programs::TcContext};
use netpath_common::{Counter, EndpointInfo};
use network_types::arp::ArpHdr;

use crate::{
    maps::{ENDPOINTS_BY_ADDR, NETWORKS},
    overlay,
    parse::{ptr_at, L3_OFF},
    stats::count,
};

const ARP_REQUEST: u16 = 1;

/// The endpoint's gateway or host-gateway, or a peer on the endpoint's network (on this node
/// or, for an overlay network, on another).
#[inline(always)]
fn answerable(ep: &EndpointInfo, target: u32) -> bool {
    // SAFETY: map value pointers valid for this program run.
    let gateway = NETWORKS
        .get_ptr(&ep.network)
        .map(|n| unsafe { (*n).gateway });
    gateway == Some(target)
        || ENDPOINTS_BY_ADDR
            .get_ptr(&target)
            .is_some_and(|p| unsafe { (*p).network } == ep.network)
        || overlay::remote(target).is_some_and(|r| r.network == ep.network)
}
const ARP_REPLY: u16 = 2;

/// Turns an endpoint's ARP request into the reply and sends it back to the endpoint.
/// Anything else (replies, probes for the endpoint's own address) goes on to the host.
#[inline(always)]
pub fn answer(ctx: &mut TcContext, ep: &EndpointInfo, ifindex: u32) -> i32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    let (Some(eth), Some(arp)) = (
        ptr_at::<[u8; 12]>(data, end, 0),
        ptr_at::<ArpHdr>(data, end, L3_OFF),
    ) else {
        return TC_ACT_OK as i32;
    };
    // SAFETY: bounds checked by ptr_at.
    let (eth, arp) = unsafe { (&mut *eth, &mut *arp) };
    let target = u32::from_ne_bytes(arp.tpa);
    if !answerable(ep, target)
        || u16::from_be_bytes(arp.oper) != ARP_REQUEST
        || u16::from_be_bytes(arp.htype) != 1
        || u16::from_be_bytes(arp.ptype) != 0x0800
        || arp.hlen != 6
        || arp.plen != 4
        || target == ep.addr
        || arp.tpa == arp.spa
    {
        return TC_ACT_OK as i32;
    }
    let requester_mac = arp.sha;
    let requester_ip = arp.spa;
    eth[..6].copy_from_slice(&requester_mac);
    eth[6..].copy_from_slice(&ep.host_mac);
    arp.oper = ARP_REPLY.to_be_bytes();
    arp.tha = requester_mac;
    arp.tpa = requester_ip;
    arp.sha = ep.host_mac;
    arp.spa = target.to_ne_bytes();
    count(Counter::ArpReply);
    // SAFETY: plain helper call; redirect to the veth's egress, i.e. back into the endpoint.
    unsafe { bpf_redirect(ifindex, 0) as i32 }
}
