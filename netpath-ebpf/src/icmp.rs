//! ICMP errors: what they quote of the packet they are about (parsed here once for every
//! path that asks: policy's tracking of a flow's errors, overlay, the NAT), and errors about
//! translated flows carried back to the endpoint whose packet they are about: a router's Packet Too Big (IPv6) or fragmentation needed (IPv4), time exceeded or
//! unreachable, sent to the host's address about a packet netpath translated — an outbound
//! flow's (source NAT: the uplink's address and a port of its range) or a published port's
//! reply (the host's address and published port). The error's destination and what it
//! carries of the packet are translated back, as the kernel's own NAT does for its flows, so
//! the endpoint's stack learns the path's MTU (without it, TCP through a smaller link stalls)
//! and its sockets see their errors. Written once for both families and for XDP and TC.
use netpath_common::{proto, Addr, FlowKey, FlowNat, In6, ReplyMacs};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    family::Ip,
    packet::Packet,
    parse::{
        header_words, in6_at, is_icmp, ports as read_ports, ptr_at, transport_len, Flow, Ipv4Flow,
        Ipv6Flow, ICMPV6_ECHO_REQUEST, ICMP_ECHO_REQUEST,
    },
    ports, replies, rewrite,
    snat::in_snat_range,
};

/// Where the packet an ICMP error of protocol `icmp` (one of `errors`) carries starts; None
/// for any other packet.
#[inline(always)]
fn error_inner<A: Addr>(
    data: usize,
    data_end: usize,
    flow: &Flow<A>,
    icmp: u8,
    errors: &[u8],
) -> Option<usize> {
    if flow.proto != icmp || flow.fragment || flow.later {
        return None;
    }
    // SAFETY: bounds checked by ptr_at. The whole ICMP header is read (one byte at a
    // variable offset is a bound the verifier cannot follow once compiled).
    let header = unsafe { *ptr_at::<[u8; 8]>(data, data_end, flow.l4_off)? };
    errors.contains(&header[0]).then_some(flow.l4_off + 8)
}

/// ICMP errors that carry the start of the packet they are about: destination unreachable
/// (Packet Too Big's IPv4 form among them), time exceeded, parameter problem.
const ICMP_ERRORS: [u8; 3] = [3, 11, 12];

/// What an ICMP error carries of the packet it is about: that packet's flow as it went (from
/// the error's destination), where its IP header starts and where its transport header does.
#[derive(Clone, Copy)]
pub struct ErrorAbout<A: Addr> {
    pub key: FlowKey<A>,
    pub l3_off: usize,
    pub l4_off: usize,
}

/// For an ICMP error, the flow of the packet it is about, as that packet went (from the
/// error's destination): the IPv4 header and ports the error carries. None for any other
/// packet, or when what it carries is cut short.
#[inline(always)]
pub fn icmp_error_about(data: usize, data_end: usize, flow: &Ipv4Flow) -> Option<FlowKey<u32>> {
    icmp_error_inner(data, data_end, flow).map(|e| e.key)
}

/// [`icmp_error_about`] with where the carried packet's headers are.
#[inline(always)]
pub fn icmp_error_inner(data: usize, data_end: usize, flow: &Ipv4Flow) -> Option<ErrorAbout<u32>> {
    let inner = error_inner(data, data_end, flow, proto::ICMP, &ICMP_ERRORS)?;
    // SAFETY (all reads): bounds checked by ptr_at.
    let ip = unsafe { &*ptr_at::<Ipv4Hdr>(data, data_end, inner)? };
    let l4_off = inner + header_words(ip)? * 4;
    let [src_port, dst_port] = inner_ports(data, data_end, ip.proto, l4_off)?;
    Some(ErrorAbout {
        key: FlowKey::new(
            u32::from_ne_bytes(ip.src_addr),
            src_port,
            u32::from_ne_bytes(ip.dst_addr),
            dst_port,
            ip.proto,
        ),
        l3_off: inner,
        l4_off,
    })
}

/// The ports of a packet an ICMP error carries: TCP's and UDP's (an error carries the first 8
/// bytes past the header: the ports, not the whole header), an echo request's identifier as
/// its source port; none for anything else.
#[inline(always)]
fn inner_ports(data: usize, data_end: usize, proto: u8, l4_off: usize) -> Option<[u16; 2]> {
    if transport_len(proto).is_some() {
        return read_ports(data, data_end, l4_off, 4);
    }
    if is_icmp(proto) {
        // SAFETY: bounds checked by ptr_at.
        let h = unsafe { *ptr_at::<[u8; 8]>(data, data_end, l4_off)? };
        if h[0] == ICMP_ECHO_REQUEST || h[0] == ICMPV6_ECHO_REQUEST {
            return Some([u16::from_ne_bytes([h[4], h[5]]), 0]);
        }
    }
    Some([0, 0])
}

/// ICMPv6 errors, which carry the start of the packet they are about: destination
/// unreachable, packet too big, time exceeded, parameter problem.
const ICMPV6_ERRORS: [u8; 4] = [1, 2, 3, 4];

/// [`icmp_error_about`] for ICMPv6: the IPv6 header and ports an error carries (the packet's
/// own header, not walked past extension headers: a flow with them is asked as a new one).
#[inline(always)]
pub fn icmp6_error_about(data: usize, data_end: usize, flow: &Ipv6Flow) -> Option<FlowKey<In6>> {
    icmp6_error_inner(data, data_end, flow).map(|e| e.key)
}

/// [`icmp6_error_about`] with where the carried packet's headers are.
#[inline(always)]
pub fn icmp6_error_inner(data: usize, data_end: usize, flow: &Ipv6Flow) -> Option<ErrorAbout<In6>> {
    let inner = error_inner(data, data_end, flow, proto::ICMPV6, &ICMPV6_ERRORS)?;
    // SAFETY (all reads): bounds checked by ptr_at.
    let ip = unsafe { &*ptr_at::<Ipv6Hdr>(data, data_end, inner)? };
    let l4_off = inner + Ipv6Hdr::LEN;
    let [src_port, dst_port] = inner_ports(data, data_end, ip.next_hdr, l4_off)?;
    Some(ErrorAbout {
        key: FlowKey::new(
            in6_at(data, data_end, inner + 8)?,
            src_port,
            in6_at(data, data_end, inner + 24)?,
            dst_port,
            ip.next_hdr,
        ),
        l3_off: inner,
        l4_off,
    })
}

/// Where the packet an error is about came from.
struct Origin<A: Ip> {
    /// The endpoint's address and port (or echo identifier).
    addr: A,
    port: u16,
    /// Its host-side veth, and the MACs a frame to it carries.
    ifindex: u32,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
}

/// What became of an ICMP error.
pub enum Back {
    /// Not about a flow netpath translated.
    NotOurs,
    /// Translated back, for the endpoint behind this host-side veth.
    To(u32),
    /// About a published port's reply whose endpoint has IPv4 alone: NAT46's program turns it
    /// into its ICMPv4 twin ([`crate::icmp46::error_to_endpoint`]).
    Nat46,
    /// A rewrite failed half-way: not to be delivered.
    Failed,
}

/// Where an endpoint's ICMP error goes once translated ([`error_out`]).
pub enum Out<A: Ip> {
    /// Back the way the flow's client came: out of this interface, with these MACs.
    Via(u32, ReplyMacs),
    /// Where the route to the client says, from this host address.
    Route(A),
    /// A rewrite failed half-way: not to be sent.
    Failed,
}

/// An ICMP error the endpoint behind host-side veth `ifindex` sent (`flow`, from its own
/// address) about a client's TCP or UDP packet of a published port — a UDP port unreachable
/// above all: its source and the packet it carries translated back to the host address and
/// port the client used, as conntrack does for Docker's DNAT, so the client's socket learns
/// of it. The flow is found as a reply's would be: in the flow table, or for a one-to-one port
/// whose flow no reply recorded yet, in `REPLIES`. `None`, nothing written, for any other
/// packet, and for an error to no client beyond the host ([`replies::beyond_host`]: a
/// hairpin client, NAT46's gateway), which goes on as before. The carried packet's own
/// transport checksum is left as it came (no stack reads it: the error's own checksum covers
/// the change).
#[inline(always)]
pub fn error_out<P: Packet, A: Ip>(pkt: &mut P, flow: &Flow<A>, ifindex: u32) -> Option<Out<A>> {
    let e = A::error_inner(pkt.data(), pkt.data_end(), flow)?;
    if e.key.dst_addr != flow.src_addr || transport_len(e.key.proto).is_none() {
        return None;
    }
    // To a client beyond the host: not a peer, a gateway (NAT46's client), the host itself.
    if !replies::beyond_host(flow.dst_addr) {
        return None;
    }
    let (addr, port, out) = match A::flows().get_ptr(&e.key.reversed()) {
        Some(nat) => {
            // SAFETY: map value pointer valid for this program run.
            let nat = unsafe { &*nat };
            // Another endpoint's flow, or a self-hairpin one (its client is the gateway).
            if nat.ifindex != ifindex || nat.client != A::ANY {
                return None;
            }
            let out = if nat.via != 0 {
                Out::Via(nat.via, nat.via_macs)
            } else {
                Out::Route(nat.addr)
            };
            (nat.addr, nat.port, out)
        }
        None => {
            let r = replies::reply_from(e.key.dst_addr, e.key.dst_port, e.key.proto, ifindex)?;
            (r.addr, r.port, Out::Route(r.addr))
        }
    };
    let csum = flow.l4_csum_off();
    let done = rewrite::set_icmp_addr(pkt, flow, A::SRC_OFF, flow.src_addr, addr)
        && A::write_inner_addr(pkt, e.l3_off, A::DST_OFF, e.key.dst_addr, addr, csum)
        && pkt.set_port(e.l4_off + 2, e.key.dst_port, port, csum, false);
    Some(if done { out } else { Out::Failed })
}

/// Where an error's packet came from.
enum Found<A: Ip> {
    Endpoint(Origin<A>),
    /// A NAT46 flow's reply (IPv6 from the host, IPv4 from the endpoint).
    Nat46,
}

/// An ICMP error `flow` arriving on an uplink: translated back to the endpoint its packet
/// came from, if netpath translated that packet.
#[inline(always)]
pub fn error_back<P: Packet, A: Ip>(pkt: &mut P, flow: &Flow<A>) -> Back {
    let Some(e) = A::error_inner(pkt.data(), pkt.data_end(), flow) else {
        return Back::NotOurs;
    };
    let o = match origin(&e.key) {
        Some(Found::Endpoint(o)) => o,
        Some(Found::Nat46) => return Back::Nat46,
        None => return Back::NotOurs,
    };
    let csum = flow.l4_csum_off();
    let port_off = if is_icmp(e.key.proto) {
        e.l4_off + 4
    } else {
        e.l4_off
    };
    let done = rewrite::set_icmp_addr(pkt, flow, A::DST_OFF, flow.dst_addr, o.addr)
        && A::write_inner_addr(pkt, e.l3_off, A::SRC_OFF, e.key.src_addr, o.addr, csum)
        && pkt.set_port(port_off, e.key.src_port, o.port, csum, false)
        && pkt.set_macs(&o.src_mac, &o.dst_mac);
    if done {
        Back::To(o.ifindex)
    } else {
        Back::Failed
    }
}

/// The endpoint a packet (`key`, as it left the host) came from: an outbound flow's, by the
/// record of its replies; a published port's reply, by its port and flow.
#[inline(always)]
fn origin<A: Ip>(key: &FlowKey<A>) -> Option<Found<A>> {
    if in_snat_range(key.src_port) {
        let rev = A::snat_rev().get_ptr(&key.reversed())?;
        // SAFETY: map value pointer valid for this program run; fields copied out.
        return Some(Found::Endpoint(unsafe {
            Origin {
                addr: (*rev).addr,
                port: (*rev).port,
                ifindex: (*rev).ifindex,
                src_mac: (*rev).host_mac,
                dst_mac: (*rev).mac,
            }
        }));
    }
    if is_icmp(key.proto) {
        return None;
    }
    let target = ports::lookup(key.src_addr, key.src_port, key.proto)?;
    if A::nat46(&target) {
        return Some(Found::Nat46);
    }
    // The flow as its replies leave the endpoint, sent to this endpoint.
    let flow = FlowKey::new(
        target.addr,
        target.port,
        key.dst_addr,
        key.dst_port,
        key.proto,
    );
    let nat: *const FlowNat<A> = A::flows().get_ptr(&flow)?;
    // SAFETY: map value pointer valid for this program run.
    if unsafe { (*nat).ifindex } != target.ifindex {
        return None;
    }
    Some(Found::Endpoint(Origin {
        addr: target.addr,
        port: target.port,
        ifindex: target.ifindex,
        src_mac: target.gw_mac,
        dst_mac: target.mac,
    }))
}
