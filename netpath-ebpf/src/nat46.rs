//! NAT46 of published ports: an IPv6 client of a port published on IPv6 (`[::]`, or an IPv6
//! host address) whose endpoint has IPv4 alone. What Docker needs docker-proxy for, in the
//! kernel: the uplink's IPv6 program finds the port's target IPv4-mapped and hands the packet
//! on to [`from_client`] (a program of its own, XDP and TC), which rewrites it as IPv4 from
//! the endpoint network's gateway and a port of outbound NAT's range — one per client flow, so
//! flows of clients that share a source port stay apart — and sends it into the endpoint. The
//! endpoint's replies, to the gateway and that port, are found by the endpoint program
//! ([`is_reply`]) and rewritten as IPv6 by [`to_client`], out of the uplink the client came
//! in on. The endpoint sees the gateway as its client, as behind docker-proxy. The
//! published ports' firewall and the policy judge the flow's first packet as for any client
//! (the client's IPv6 identity, the endpoint's IPv4 one); the agent expires idle flows.
use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_SHOT},
    helpers::{bpf_csum_diff, bpf_redirect},
    programs::TcContext,
};
use netpath_common::{
    event, flow_flags::CLOSING, proto, Counter, FlowKey, In6, Nat46, Nat46Reply, PortTarget,
};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    csum::checksum,
    family::Ip,
    flows::{now, recorded_recent, seen_now, touch, unseen_in_flood, Via},
    guard,
    icmp::icmp_error_about,
    icmp46::{self, Error46},
    maps::{FLOWS, NAT46, NAT46_REPLY},
    packet::{ipv6_header, Packet},
    parse::{parse, ptr_at, Ipv4Flow, Ipv6Flow, Parsed, L3_OFF},
    policy, ports,
    snat::{in_snat_range, random_port, PORT_TRIES},
    stats::{admitted, count, count_port, dropped, trace},
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
/// Where the transport header sits in either family's translated packet (no options, no
/// extension headers: neither is translated).
const L4_OFF4: usize = L3_OFF + Ipv4Hdr::LEN;
const L4_OFF6: usize = L3_OFF + Ipv6Hdr::LEN;

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
    let Parsed::Ipv6(flow) = parse(pkt.data(), pkt.data_end()) else {
        return Outcome::Pass(Counter::Malformed);
    };
    if flow.proto == proto::ICMPV6 {
        return match icmp46::error_to_endpoint(pkt, &flow) {
            Error46::To(ifindex) => Outcome::Error(ifindex),
            Error46::Drop(reason) => Outcome::Drop(reason),
            Error46::NotOurs => Outcome::Pass(Counter::Pass),
        };
    }
    // Extension headers are not folded away (RFC 7915 would): a client of a published port
    // sends none, and what has them goes on to the host untranslated.
    if !flow.has_ports() || flow.l4_off != L4_OFF6 {
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
    let unseen = unseen_in_flood(&known.key, known.now);
    let found = if unseen { None } else { known.refresh() };
    let src = match found {
        Some(n) => n,
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
        seen_now(&self.key, &mut n.recent, self.now);
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
        _pad: 0,
        last_seen: now,
    };
    let key = known.key;
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
                recent: recorded_recent(&key, unseen, now),
                _pad: 0,
                ifindex: target.ifindex,
                flags: reply.flags,
                last_seen: now,
            };
            if NAT46.insert(&key, &nat, 0).is_ok() {
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

/// The 5-tuple of a packet's addresses as `bpf_csum_diff` reads them.
#[inline(always)]
fn csum_diff(from: &mut [u32], to: &mut [u32]) -> Option<u32> {
    // SAFETY: two buffers on the stack, of the sizes given, as the helper reads them.
    let d = unsafe {
        bpf_csum_diff(
            from.as_mut_ptr(),
            (from.len() * 4) as u32,
            to.as_mut_ptr(),
            (to.len() * 4) as u32,
            0,
        )
    };
    (d >= 0).then_some(d as u32)
}

/// Rewrites an IPv6 packet as IPv4 to `to`, framed for the endpoint of `target`.
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
    let (s, d) = (flow.src_addr.words, flow.dst_addr.words);
    let mut from = [s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3]];
    let mut into = [to.src, to.dst];
    let Some(diff) = csum_diff(&mut from, &mut into) else {
        return false;
    };
    let tos = (w0 >> 20) & 0xff;
    let tot_len = (w1 >> 16) + Ipv4Hdr::LEN as u32;
    let (ttl, protocol) = (w1 & 0xff, u32::from(flow.proto));
    // Don't fragment: IPv6 is never fragmented on its way either.
    let mut hdr = [
        ((0x45 << 24) | (tos << 16) | tot_len).to_be(),
        0x4000u32.to_be(),
        ((ttl << 24) | (protocol << 16)).to_be(),
        to.src,
        to.dst,
    ];
    hdr[2] |= u32::from(checksum(&hdr)) << 16;
    let udp = flow.proto == proto::UDP;
    let csum = flow.l4_csum_off() - L4_OFF6 + L4_OFF4;
    pkt.change_family(true)
        && pkt.set_l3(L3_OFF, &hdr)
        && pkt.set_eth(&target.gw_mac, &target.mac, ETH_P_IP.to_be())
        && pkt.pseudo_csum_diff(csum, diff, udp)
        && pkt.set_port(L4_OFF4, flow.src_port, to.src_port, csum, udp)
        && pkt.set_port(L4_OFF4 + 2, flow.dst_port, to.dst_port, csum, udp)
}

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
    let Parsed::Ipv4(flow) = parse(ctx.data(), ctx.data_end()) else {
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
    if let Some(verdict) = icmp46::too_big_for_uplink(ctx, &flow, r.via, ifindex) {
        return verdict;
    }
    let closing = flow.tcp_closing(ctx.data(), ctx.data_end());
    touch(&mut r.last_seen, &mut r.flags, CLOSING, now(), closing);
    if !to_ipv6(ctx, &flow, r) {
        return TC_ACT_SHOT as i32;
    }
    count(Counter::Nat46Reply);
    // The new source is an IPv6 address, which an IPv4 event cannot carry: its port only.
    trace(event::trace::REVERSE_NAT, &flow, ifindex, 0, r.port);
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(r.via, 0) as i32 }
}

/// Rewrites an IPv4 reply as IPv6 from `r.addr`, `r.port` to the client, framed for the
/// uplink's neighbour.
#[inline(always)]
fn to_ipv6(ctx: &mut TcContext, flow: &Ipv4Flow, r: &Nat46Reply) -> bool {
    let Some(h) = ptr_at::<[u32; 3]>(ctx.data(), ctx.data_end(), L3_OFF) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at.
    let (w0, w2) = unsafe { (u32::from_be((*h)[0]), u32::from_be((*h)[2])) };
    let (a, c) = (r.addr.words, r.client.words);
    let mut from = [flow.src_addr, flow.dst_addr];
    let mut into = [a[0], a[1], a[2], a[3], c[0], c[1], c[2], c[3]];
    let Some(diff) = csum_diff(&mut from, &mut into) else {
        return false;
    };
    let tos = (w0 >> 16) & 0xff;
    let payload = (w0 & 0xffff).saturating_sub(Ipv4Hdr::LEN as u32);
    let hops = w2 >> 24;
    let hdr = ipv6_header(tos, payload, flow.proto, hops, &r.addr, &r.client);
    let udp = flow.proto == proto::UDP;
    let csum = flow.l4_csum_off() - L4_OFF4 + L4_OFF6;
    ctx.change_family(false)
        && ctx.set_l3(L3_OFF, &hdr)
        && ctx.set_eth(&r.via_macs.src, &r.via_macs.dst, ETH_P_IPV6.to_be())
        && ctx.pseudo_csum_diff(csum, diff, udp)
        && ctx.set_port(L4_OFF6, flow.src_port, r.port, csum, udp)
        && ctx.set_port(L4_OFF6 + 2, flow.dst_port, r.client_port, csum, udp)
}
