//! Published ports: DNAT on the uplink, reverse NAT of replies leaving an endpoint.
use netpath_common::{port_any_index, proto, FlowNat, PortKey, PortTarget};

use crate::{
    flows::{self, Via},
    maps::{HOST_ADDRS, PORTS, PORTS_ANY},
    packet::Packet,
    parse::{ptr_at, Ipv4Flow, IP_DST_OFF, IP_SRC_OFF},
};

/// The endpoint serving `flow`'s destination, if it is a published port.
#[inline(always)]
pub fn lookup_published(flow: &Ipv4Flow) -> Option<PortTarget> {
    lookup(flow.dst_addr, flow.dst_port, flow.proto)
}

/// The endpoint behind host address `addr`, port `port` (both network order) and `proto`.
/// The port's array slot decides first: published on every host address (valid when `addr`
/// is one of the host's addresses), not published anywhere (the host's own traffic: no hash
/// lookup), or published on some addresses, of which this may be one. The one
/// published-port lookup: packets (uplink, hairpin) and sockets (`sock.rs`).
#[inline(always)]
pub fn lookup(addr: u32, port: u16, proto: u8) -> Option<PortTarget> {
    let slot = PORTS_ANY.get_ptr(port_any_index(proto, port))?;
    // SAFETY: map value pointer valid for this program run; read at once.
    let (target, specific) = unsafe { ((*slot).target, (*slot).specific) };
    if target.ifindex != 0 {
        return HOST_ADDRS.get_ptr(&addr).map(|_| target);
    }
    if specific == 0 {
        return None;
    }
    let key = PortKey {
        addr,
        port,
        proto,
        _pad: 0,
    };
    // SAFETY: map value pointer valid for this program run; copied out at once.
    PORTS.get_ptr(&key).map(|t| unsafe { *t })
}

/// Translates `flow`'s destination to `target` and addresses the frame to the endpoint;
/// records the flow so its replies are translated back, and sent back the way this packet
/// came (out of the uplink it arrived on, to the neighbour that sent it). False when a
/// read or write failed.
#[inline(always)]
pub fn dnat<P: Packet>(pkt: &mut P, flow: &Ipv4Flow, target: &PortTarget) -> bool {
    let Some(eth) = ptr_at::<[u8; 12]>(pkt.data(), pkt.data_end(), 0) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at; copied out before any rewrite.
    let eth = unsafe { *eth };
    let mut via = Via {
        ifindex: pkt.ingress_ifindex(),
        ..Via::default()
    };
    via.macs.src.copy_from_slice(&eth[..6]);
    via.macs.dst.copy_from_slice(&eth[6..]);
    dnat_via(pkt, flow, target, 0, &via)
}

/// [`dnat`] for a packet of an endpoint (hairpin): the replies' route is looked up, and when
/// `masq` is not 0 the source becomes `masq` too: an endpoint reaching its own published port
/// must see the connection come from elsewhere (its gateway), or its replies would never
/// leave it to be translated.
#[inline(always)]
pub fn dnat_masq<P: Packet>(pkt: &mut P, flow: &Ipv4Flow, target: &PortTarget, masq: u32) -> bool {
    dnat_via(pkt, flow, target, masq, &Via::default())
}

#[inline(always)]
fn dnat_via<P: Packet>(
    pkt: &mut P,
    flow: &Ipv4Flow,
    target: &PortTarget,
    masq: u32,
    via: &Via,
) -> bool {
    let closing = flow.tcp_closing(pkt.data(), pkt.data_end());
    flows::record(flow, target, masq, via, closing);
    let udp = flow.proto == proto::UDP;
    let csum = flow.l4_csum_off();
    pkt.set_addr(IP_DST_OFF, flow.dst_addr, target.addr, csum, udp)
        && pkt.set_port(flow.l4_off + 2, flow.dst_port, target.port, csum, udp)
        && (masq == 0 || pkt.set_addr(IP_SRC_OFF, flow.src_addr, masq, csum, udp))
        && pkt.set_macs(&target.gw_mac, &target.mac)
}

/// Translates a reply's source back to the published address and port in `nat` (and, for a
/// self-hairpin flow, its destination back to the endpoint).
#[inline(always)]
pub fn reverse_nat<P: Packet>(pkt: &mut P, flow: &Ipv4Flow, nat: &FlowNat) -> bool {
    let udp = flow.proto == proto::UDP;
    let csum = flow.l4_csum_off();
    pkt.set_addr(IP_SRC_OFF, flow.src_addr, nat.addr, csum, udp)
        && pkt.set_port(flow.l4_off, flow.src_port, nat.port, csum, udp)
        && (nat.client == 0 || pkt.set_addr(IP_DST_OFF, flow.dst_addr, nat.client, csum, udp))
}
