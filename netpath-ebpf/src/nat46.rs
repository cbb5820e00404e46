//! NAT46 of published ports: an IPv6 client of a port published on IPv6 (`[::]`, or an IPv6
//! host address) whose endpoint has IPv4 alone. What Docker needs docker-proxy for, in the
//! kernel: the uplink's IPv6 program finds the port's target IPv4-mapped and hands the packet
//! on to [`from_client`] (a program of its own, XDP and TC), which rewrites it as IPv4 from
//! the endpoint network's gateway and a port of outbound NAT's range — one per client flow, so
//! flows of clients that share a source port stay apart — and sends it into the endpoint. The
//! endpoint's replies, to the gateway and that port, are found by the endpoint program and
//! rewritten as IPv6 (`nat46_reply.rs`), out of the uplink the client came in on. The
//! endpoint sees the gateway as its client, as behind docker-proxy. The published ports'
//! firewall and the policy judge the flow's first packet as for any client (the client's
//! IPv6 identity, the endpoint's IPv4 one); the agent expires idle flows. Fragments both ways
//! (`frag.rs`): each program parses tracked, a later fragment translated by its first's flow.
use aya_ebpf::bindings::BPF_NOEXIST;
use netpath_common::{
    event, flow_flags::CLOSING, proto, Counter, FlowKey, In6, Nat46, Nat46Reply, PortTarget,
};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    csum::{checksum, csum_diff},
    family::Ip,
    flows::{now, recorded_recent, seen_now, touch, unseen_in_flood, Via},
    guard,
    icmp46::{self, Error46},
    maps::{FLOWS, NAT46, NAT46_REPLY},
    packet::Packet,
    parse::{parse_tracked, ptr_at, Ipv6Flow, Parsed, FRAG_HDR_LEN, L3_OFF},
    policy, ports,
    snat::{random_port, PORT_TRIES},
    stats::{admitted, count, count_later, count_port, trace},
};

const ETH_P_IP: u16 = 0x0800;
/// Where the transport header sits in either family's translated packet (no options, no
/// extension headers: neither is translated; an IPv6 fragment's fragment header is folded
/// into IPv4's fields one way and made of them the other).
pub const L4_OFF4: usize = L3_OFF + Ipv4Hdr::LEN;
pub const L4_OFF6: usize = L3_OFF + Ipv6Hdr::LEN;

/// What became of an IPv6 client's packet.
pub enum Outcome {
    /// Translated and addressed to the endpoint behind this host-side veth.
    To(u32),
    /// An ICMPv6 error about one of the flows, made ICMPv4 for the endpoint behind this
    /// host-side veth (`icmp46.rs`).
    Error(u32),
    /// Dropped for this reason.
    Drop(Counter),
    /// Not translated: on to the host stack, counted under this reason.
    Pass(Counter),
}

/// Whether a published port's target is reached by NAT46: an IPv4 endpoint's address,
/// IPv4-mapped, behind a port published on IPv6.
#[inline(always)]
pub fn is_nat46(target: &PortTarget<In6>) -> bool {
    target.addr.mapped_v4().is_some()
}

/// An IPv6 client's packet to a port whose target [`is_nat46`], arriving on an uplink.
#[inline(always)]
pub fn from_client<P: Packet>(pkt: &mut P) -> Outcome {
    // Tracked: a later fragment takes its first's ports, and the first's flow.
    let Parsed::Ipv6(flow) = parse_tracked(pkt.data(), pkt.data_end()) else {
        return Outcome::Pass(Counter::Malformed);
    };
    if flow.proto == proto::ICMPV6 {
        return match icmp46::error_to_endpoint(pkt, &flow) {
            Error46::To(ifindex) => Outcome::Error(ifindex),
            Error46::Drop(reason) => Outcome::Drop(reason),
            Error46::NotOurs => Outcome::Pass(Counter::Pass),
        };
    }
    // Extension headers but a fragment header are not folded away (RFC 7915 would): a
    // client of a published port sends none, and what has them goes on to the host
    // untranslated (tracked parsing gives those no ports).
    if !flow.has_ports() {
        return Outcome::Pass(Counter::Pass);
    }
    let published = ports::lookup_port(flow.dst_addr, flow.dst_port, flow.proto);
    let Some(target) = published.target else {
        return Outcome::Pass(Counter::Pass);
    };
    let Some(ep_addr) = target.addr.mapped_v4() else {
        return Outcome::Pass(Counter::Pass);
    };
    let known = Known {
        key: flow.key(),
        ifindex: target.ifindex,
        closing: flow.tcp_closing(pkt.data(), pkt.data_end()),
        now: now(),
    };
    // Under a flood a flow not seen lately is not looked up: taken for a new one, as a
    // published flow's (`flows::Entry::refresh`).
    let unseen = unseen_in_flood(&known.key, known.now) && !flow.later;
    let found = if unseen { None } else { known.refresh() };
    let src = match found {
        Some(n) => n,
        // A later fragment makes no flow: its first made none (refused), or it has gone.
        None if flow.later => return Outcome::Drop(Counter::DropFragment),
        None => {
            if published.anywhere && !In6::host_addr(flow.dst_addr) {
                return Outcome::Pass(Counter::Pass);
            }
            match admit(pkt, &flow, target, ep_addr, &known, unseen) {
                Ok(n) => n,
                // Counted by the uplink's verdict, as its other drops.
                Err(reason) => return Outcome::Drop(reason),
            }
        }
    };
    let to = Ipv4Ends {
        src: src.addr,
        dst: ep_addr,
        src_port: src.port,
        dst_port: target.port,
    };
    if !to_ipv4(pkt, &flow, &to, target) {
        return Outcome::Drop(Counter::Malformed);
    }
    count(Counter::Nat46);
    count_later(&flow);
    count_port(target.stats, pkt.len());
    trace(
        event::trace::DNAT,
        &flow,
        pkt.ingress_ifindex(),
        target.addr,
        target.port,
    );
    Outcome::To(target.ifindex)
}

/// A client's packet as its flow's `NAT46` entry knows it.
struct Known {
    key: FlowKey<In6>,
    /// The endpoint the port is published to now.
    ifindex: u32,
    /// TCP said FIN or RST.
    closing: bool,
    now: u64,
}

impl Known {
    /// The flow's entry, if it is recorded for this endpoint: refreshed (and marked closing
    /// when TCP said FIN/RST, and seen once a generation).
    #[inline(always)]
    fn refresh(&self) -> Option<Nat46> {
        let n = NAT46.get_ptr_mut(&self.key)?;
        // SAFETY: map value pointer valid for this program run.
        let n = unsafe { &mut *n };
        if n.ifindex != self.ifindex {
            return None;
        }
        touch(
            &mut n.last_seen,
            &mut n.flags,
            CLOSING,
            self.now,
            self.closing,
        );
        seen_now(&self.key, &mut n.recent);
        Some(*n)
    }
}

/// A new flow: the firewall and the policy asked, a port found for it and both directions
/// recorded. So is, under a flood, a flow not seen lately (`unseen`: not looked up); once
/// the guard lets it through, a quiet flow found recorded after all is refreshed, not made
/// anew. `Err`: why it is dropped.
#[inline(always)]
fn admit<P: Packet>(
    pkt: &P,
    flow: &Ipv6Flow,
    target: &PortTarget<In6>,
    ep_addr: u32,
    known: &Known,
    unseen: bool,
) -> Result<Nat46, Counter> {
    // The way back: the uplink the client's packets arrive on, and its neighbour there.
    let back = Via::back_to_sender(pkt).ok_or(Counter::Malformed)?;
    let via = back.ifindex;
    // The published ports' firewall holds clients from outside; an endpoint here (hairpin,
    // its source checked by its program) is asked of the policy alone.
    if In6::endpoint(via).is_none() {
        policy::published_from(flow.src_addr)?;
    }
    let by = policy::admit_nat46(flow.src_addr, ep_addr, target.port, flow.proto)?;
    admitted(by, flow, via);
    guard::new_flow_rate()?;
    if unseen {
        if let Some(n) = known.refresh() {
            return Ok(n);
        }
    }
    let gateway = u32::endpoint(target.ifindex)
        .and_then(|ep| u32::network(ep.network))
        .map(|n| n.gateway)
        .ok_or(Counter::DropNoRoute)?;
    let (now, closing) = (known.now, known.closing);
    let reply = Nat46Reply {
        client: flow.src_addr,
        addr: flow.dst_addr,
        client_port: flow.src_port,
        port: flow.dst_port,
        ifindex: target.ifindex,
        flags: if closing { CLOSING } else { 0 },
        via,
        via_macs: back.macs,
        stamp: 0,
        last_seen: now,
    };
    let key = &known.key;
    for _ in 0..PORT_TRIES {
        let port = random_port();
        let rkey = FlowKey::new(ep_addr, target.port, gateway, port, flow.proto);
        // The endpoint reaching its own published port holds a 5-tuple of this shape too.
        if FLOWS.get_ptr(&rkey).is_some() {
            continue;
        }
        if NAT46_REPLY
            .insert(&rkey, &reply, BPF_NOEXIST as u64)
            .is_ok()
        {
            let nat = Nat46 {
                addr: gateway,
                port,
                recent: recorded_recent(key, unseen),
                _pad: 0,
                ifindex: target.ifindex,
                flags: reply.flags,
                last_seen: now,
            };
            if NAT46.insert(key, &nat, 0).is_ok() {
                return Ok(nat);
            }
            // Undoing the reply's entry just made; the packet is dropped either way.
            let _ = NAT46_REPLY.remove(&rkey);
            break;
        }
    }
    Err(Counter::DropSnatPorts)
}

/// The IPv4 addresses and ports a translated packet gets.
struct Ipv4Ends {
    src: u32,
    dst: u32,
    src_port: u16,
    dst_port: u16,
}

/// Rewrites an IPv6 packet as IPv4 to `to`, framed for the endpoint of `target`. A
/// fragment's fragment header goes, its fields made IPv4's (RFC 7915: the identification's
/// low 16 bits, the offset, more fragments); a later fragment has no transport header to
/// rewrite (its first's checksum covers the datagram).
#[inline(always)]
fn to_ipv4<P: Packet>(
    pkt: &mut P,
    flow: &Ipv6Flow,
    to: &Ipv4Ends,
    target: &PortTarget<In6>,
) -> bool {
    // What the IPv6 header says, read before it goes: traffic class, payload length, hops.
    let Some(h) = ptr_at::<[u32; 2]>(pkt.data(), pkt.data_end(), L3_OFF) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at.
    let (w0, w1) = unsafe { (u32::from_be((*h)[0]), u32::from_be((*h)[1])) };
    // Tracked parsing puts the transport header past IPv6's only behind a fragment header.
    let fragment = flow.l4_off != L4_OFF6;
    // Don't fragment, for a whole datagram: IPv6 is never fragmented on its way either.
    let mut frag_word = 0x4000;
    let mut payload = w1 >> 16;
    if fragment {
        // Next header, reserved, offset and M flag, identification.
        let Some(f) = ptr_at::<[u16; 4]>(pkt.data(), pkt.data_end(), L4_OFF6) else {
            return false;
        };
        // SAFETY: bounds checked by ptr_at.
        let (offset_m, id) = unsafe { (u32::from(u16::from_be((*f)[1])), u16::from_be((*f)[3])) };
        frag_word = (u32::from(id) << 16) | (offset_m >> 3) | ((offset_m & 1) << 13);
        payload = payload.saturating_sub(FRAG_HDR_LEN as u32);
    }
    let (s, d) = (flow.src_addr.words, flow.dst_addr.words);
    let mut from = [s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3]];
    let mut into = [to.src, to.dst];
    let Some(diff) = csum_diff(&mut from, &mut into) else {
        return false;
    };
    let tos = (w0 >> 20) & 0xff;
    let tot_len = payload + Ipv4Hdr::LEN as u32;
    let (ttl, protocol) = (w1 & 0xff, u32::from(flow.proto));
    let mut hdr = [
        ((0x45 << 24) | (tos << 16) | tot_len).to_be(),
        frag_word.to_be(),
        ((ttl << 24) | (protocol << 16)).to_be(),
        to.src,
        to.dst,
    ];
    hdr[2] |= u32::from(checksum(&hdr)) << 16;
    let udp = flow.proto == proto::UDP;
    let csum = flow.l4_csum_off() - flow.l4_off + L4_OFF4;
    pkt.change_family(true, fragment)
        && pkt.set_l3(L3_OFF, &hdr)
        && pkt.set_eth(&target.gw_mac, &target.mac, ETH_P_IP.to_be())
        && (flow.later
            || pkt.pseudo_csum_diff(csum, diff, udp)
                && pkt.set_port(L4_OFF4, flow.src_port, to.src_port, csum, udp)
                && pkt.set_port(L4_OFF4 + 2, flow.dst_port, to.dst_port, csum, udp))
}
