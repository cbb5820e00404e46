//! Packet parsing, written once for XDP and TC: Ethernet, ARP, IPv4, IPv6 (its extension
//! headers walked to the transport header), TCP, UDP, ICMP and ICMPv6.
//!
//! Works on the `data`/`data_end` window both program types expose; every read is bounds
//! checked against `data_end` so the verifier accepts it. What a packet's flow is ([`Flow`])
//! is generic over the address family: the L3 header is read per family (`ipv4`, `ipv6`),
//! the transport header ([`ports`]) and every decision on a flow once for both.
use core::mem::size_of;

use netpath_common::{proto, Addr, FlowKey, In6};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::{
    frag::{self, Part},
    maps::{FRAGMENTS, FRAGMENTS6},
};

/// Offset of the IPv4 header (no VLAN tag: tagged frames are not ours).
pub const L3_OFF: usize = EthHdr::LEN;
/// Offset of the IPv4 header checksum.
pub const IP_CSUM_OFF: usize = L3_OFF + 10;
/// Offset of the IPv4 source address.
pub const IP_SRC_OFF: usize = L3_OFF + 12;
/// Offset of the IPv4 destination address.
pub const IP_DST_OFF: usize = L3_OFF + 16;

/// A packet's addresses and, for TCP and UDP, its ports (a later fragment's are its first
/// fragment's, `frag.rs`); of either address family ([`Ipv4Flow`] is IPv4's).
#[derive(Clone, Copy)]
pub struct Flow<A: Addr> {
    /// Source address, network order.
    pub src_addr: A,
    /// Destination address, network order.
    pub dst_addr: A,
    /// IP protocol number.
    pub proto: u8,
    /// No ports to read or translate: a fragment (but, parsed tracked, a TCP or UDP one or an
    /// ICMP echo's whose ports are known: `frag.rs`), or IPv6 behind extension headers other
    /// than a fragment header.
    pub fragment: bool,
    /// A later fragment with its first fragment's ports (parsed tracked): no transport header,
    /// so its addresses alone are rewritten (`rewrite.rs`).
    pub later: bool,
    /// Offset of the L4 header.
    pub l4_off: usize,
    /// Source port, network order (0 when the packet has none).
    pub src_port: u16,
    /// Destination port, network order (0 when the packet has none).
    pub dst_port: u16,
    /// The packet's length from its IP header (IPv4's total length; IPv6's payload length
    /// and its fixed header), host order.
    pub tot_len: u16,
}

/// An IPv4 packet's flow.
pub type Ipv4Flow = Flow<u32>;
/// An IPv6 packet's flow.
pub type Ipv6Flow = Flow<In6>;

impl<A: Addr> Flow<A> {
    /// TCP or UDP with ports known: a candidate for translation.
    #[inline(always)]
    pub fn has_ports(&self) -> bool {
        !self.fragment && (self.proto == proto::TCP || self.proto == proto::UDP)
    }

    /// The flow's 5-tuple as the flow tables key it.
    #[inline(always)]
    pub fn key(&self) -> FlowKey<A> {
        FlowKey::new(
            self.src_addr,
            self.src_port,
            self.dst_addr,
            self.dst_port,
            self.proto,
        )
    }

    /// An ICMP echo request or reply (its identifier in the port fields).
    #[inline(always)]
    pub fn is_echo(&self) -> bool {
        !self.fragment && is_icmp(self.proto) && (self.src_port != 0 || self.dst_port != 0)
    }

    /// A TCP segment with FIN or RST: its flow is closing.
    #[inline(always)]
    pub fn tcp_closing(&self, data: usize, data_end: usize) -> bool {
        self.tcp_flags(data, data_end) & 0x05 != 0
    }

    /// A TCP segment with SYN: it opens a connection (or answers one opening).
    #[inline(always)]
    pub fn tcp_opening(&self, data: usize, data_end: usize) -> bool {
        self.tcp_flags(data, data_end) & 0x02 != 0
    }

    /// A TCP segment's flags; none for anything else, or a later fragment (no TCP header).
    #[inline(always)]
    fn tcp_flags(&self, data: usize, data_end: usize) -> u8 {
        if self.proto != proto::TCP || self.later {
            return 0;
        }
        // SAFETY: bounds checked by ptr_at.
        ptr_at::<u8>(data, data_end, self.l4_off + 13).map_or(0, |f| unsafe { *f })
    }

    /// Offset of the L4 checksum field (TCP, UDP or ICMP).
    #[inline(always)]
    pub fn l4_csum_off(&self) -> usize {
        match self.proto {
            proto::TCP => self.l4_off + 16,
            proto::ICMP | proto::ICMPV6 => self.l4_off + 2,
            _ => self.l4_off + 6,
        }
    }
}

/// What a frame is, as far as netpath cares.
pub enum Parsed {
    /// An ARP frame with a complete Ethernet/IPv4 ARP body.
    Arp,
    /// IPv4.
    Ipv4(Ipv4Flow),
    /// IPv6.
    Ipv6(Ipv6Flow),
    /// VLAN-tagged, anything else: not ours.
    Other,
    /// Headers shorter than they claim.
    Malformed,
}

/// The IPv6 address at `off` in the packet window (bounds checked), read as the four 32-bit
/// words the maps key it by: four loads, where composing it from its 16 bytes keeps dozens of
/// values live and spills them, past the 512-byte stack. Like every read of the packet the
/// loads may be unaligned, which the kernel allows on every architecture it runs this on.
#[inline(always)]
pub fn in6_at(data: usize, data_end: usize, off: usize) -> Option<In6> {
    let p = ptr_at::<[u32; 4]>(data, data_end, off)?;
    // SAFETY: bounds checked by ptr_at.
    Some(In6 {
        words: unsafe { p.read() },
    })
}

/// A bounds-checked pointer to a `T` at `off` in the packet window.
#[inline(always)]
pub fn ptr_at<T>(data: usize, data_end: usize, off: usize) -> Option<*mut T> {
    if data + off + size_of::<T>() > data_end {
        return None;
    }
    Some((data + off) as *mut T)
}

/// ICMP echo request or reply.
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_ECHO_REPLY: u8 = 0;
/// ICMPv6 echo request or reply.
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;

/// ICMP or ICMPv6.
#[inline(always)]
pub fn is_icmp(p: u8) -> bool {
    p == proto::ICMP || p == proto::ICMPV6
}

/// ICMP or ICMPv6: an echo's identifier plays the port's part (the request's source port,
/// the reply's destination port), so echoes go through NAT like flows; other ICMP has no
/// ports. None when the header is cut short.
#[inline(always)]
fn icmp<A: Addr>(data: usize, data_end: usize, mut flow: Flow<A>) -> Option<Flow<A>> {
    // SAFETY: bounds checked by ptr_at.
    let h = unsafe { *ptr_at::<[u8; 8]>(data, data_end, flow.l4_off)? };
    let id = u16::from_ne_bytes([h[4], h[5]]);
    let (request, reply) = if flow.proto == proto::ICMP {
        (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY)
    } else {
        (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY)
    };
    if h[0] == request {
        flow.src_port = id;
    } else if h[0] == reply {
        flow.dst_port = id;
    }
    Some(flow)
}

/// A flow's transport part, of either family: TCP's and UDP's ports, ICMP's echo identifier.
#[inline(always)]
fn transport<A: Addr>(data: usize, data_end: usize, mut flow: Flow<A>) -> Option<Flow<A>> {
    if flow.fragment {
        return Some(flow);
    }
    if is_icmp(flow.proto) {
        return icmp(data, data_end, flow);
    }
    let Some(l4_len) = transport_len(flow.proto) else {
        return Some(flow);
    };
    let [src, dst] = ports(data, data_end, flow.l4_off, l4_len)?;
    flow.src_port = src;
    flow.dst_port = dst;
    Some(flow)
}

/// Length of an ARP body for Ethernet/IPv4.
pub const ARP_LEN: usize = 28;

/// An IPv4 header's length in 32-bit words (IHL); None when it is not IPv4's or too short.
#[inline(always)]
pub fn header_words(ip: &Ipv4Hdr) -> Option<usize> {
    let ihl = (ip.vihl & 0x0f) as usize;
    (ip.vihl >> 4 == 4 && ihl >= 5).then_some(ihl)
}

/// Whether the frame in `[data, data_end)` is IPv6: what an entry point asks before handing
/// it on to its IPv6 program (one read, no parse twice).
#[inline(always)]
pub fn is_ipv6(data: usize, data_end: usize) -> bool {
    // SAFETY: bounds checked by ptr_at.
    ptr_at::<EthHdr>(data, data_end, 0)
        .is_some_and(|e| unsafe { (*e).ether_type } == EtherType::Ipv6 as u16)
}

/// Parses the frame in `[data, data_end)`; every fragment has no ports.
#[inline(always)]
pub fn parse(data: usize, data_end: usize) -> Parsed {
    parse_frame::<false>(data, data_end)
}

/// Parses the frame in `[data, data_end)`, fragments tracked: a TCP or UDP fragment has its
/// datagram's ports, once its first fragment was seen (`frag.rs`).
#[inline(always)]
pub fn parse_tracked(data: usize, data_end: usize) -> Parsed {
    parse_frame::<true>(data, data_end)
}

#[inline(always)]
fn parse_frame<const TRACK: bool>(data: usize, data_end: usize) -> Parsed {
    let Some(eth) = ptr_at::<EthHdr>(data, data_end, 0) else {
        return Parsed::Malformed;
    };
    // SAFETY: bounds checked by ptr_at.
    let ether_type = unsafe { (*eth).ether_type };
    if ether_type == EtherType::Arp as u16 {
        if data + L3_OFF + ARP_LEN > data_end {
            return Parsed::Malformed;
        }
        return Parsed::Arp;
    }
    let parsed = if ether_type == EtherType::Ipv4 as u16 {
        ipv4::<TRACK>(data, data_end).map(Parsed::Ipv4)
    } else if ether_type == EtherType::Ipv6 as u16 {
        ipv6::<TRACK>(data, data_end).map(Parsed::Ipv6)
    } else {
        return Parsed::Other;
    };
    parsed.unwrap_or(Parsed::Malformed)
}

/// An IPv4 packet's flow; None when its headers are cut short.
#[inline(always)]
fn ipv4<const TRACK: bool>(data: usize, data_end: usize) -> Option<Ipv4Flow> {
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ptr_at::<Ipv4Hdr>(data, data_end, L3_OFF)? };
    let ihl = header_words(ip)?;
    let part = Part::of(frag::ipv4_field(u16::from_be_bytes(ip.frags)));
    let flow = transport(
        data,
        data_end,
        Ipv4Flow {
            src_addr: u32::from_ne_bytes(ip.src_addr),
            dst_addr: u32::from_ne_bytes(ip.dst_addr),
            proto: ip.proto,
            fragment: part == Part::Later || (!TRACK && part != Part::Whole),
            later: false,
            l4_off: L3_OFF + ihl * 4,
            src_port: 0,
            dst_port: 0,
            tot_len: u16::from_be_bytes(ip.tot_len),
        },
    )?;
    let id = u32::from(u16::from_ne_bytes(ip.id));
    Some(frag::track::<_, TRACK>(&FRAGMENTS, flow, part, id))
}

/// IPv6 extension headers walked to find the transport protocol (hop-by-hop options,
/// routing, fragment, destination options); past them a packet's protocol is the header
/// that comes next.
const IPV6_EXTENSIONS: usize = 4;
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
/// IPv6's fragment header: its next-header value, and its fixed length.
pub const IPV6_FRAGMENT: u8 = 44;
pub const FRAG_HDR_LEN: usize = 8;
const IPV6_DEST_OPTS: u8 = 60;

/// An IPv6 packet's flow; None when its headers are cut short. A fragment header right after
/// the fixed header (where every stack puts it) is read: the packet's part of its datagram and
/// the datagram's identification. Other extension headers are walked for the protocol alone,
/// the packet taken as having no ports: its transport header's offset would be one the
/// verifier follows path by path through everything after, past its limits, for what
/// containers rarely send.
#[inline(always)]
fn ipv6<const TRACK: bool>(data: usize, data_end: usize) -> Option<Ipv6Flow> {
    // SAFETY (all reads): bounds checked by ptr_at.
    let ip = unsafe { &*ptr_at::<Ipv6Hdr>(data, data_end, L3_OFF)? };
    if ip.vcf[0] >> 4 != 6 {
        return None;
    }
    let mut next = ip.next_hdr;
    let mut off = L3_OFF + Ipv6Hdr::LEN;
    let (mut part, mut id) = (Part::Whole, 0);
    // Read only where fragments are tracked: elsewhere (the endpoint's entry programs) a
    // fragment is walked past as any extension header, on stacks with no room to spare.
    if TRACK && next == IPV6_FRAGMENT {
        let h = unsafe { *ptr_at::<[u8; 8]>(data, data_end, off)? };
        part = Part::of(frag::ipv6_field(u16::from_be_bytes([h[2], h[3]])));
        id = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
        next = h[0];
        off += FRAG_HDR_LEN;
    }
    let l4_off = off;
    for _ in 0..IPV6_EXTENSIONS {
        if !matches!(
            next,
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_FRAGMENT | IPV6_DEST_OPTS
        ) {
            break;
        }
        // Each starts with the next header and (but the fragment header's fixed 8 bytes) its
        // length in 8-byte units past the first.
        let h = unsafe { *ptr_at::<[u8; 2]>(data, data_end, off)? };
        off += if next == IPV6_FRAGMENT {
            FRAG_HDR_LEN
        } else {
            (h[1] as usize + 1) * 8
        };
        next = h[0];
    }
    if off != l4_off {
        part = Part::Unknown;
    }
    let flow = transport(
        data,
        data_end,
        Ipv6Flow {
            src_addr: in6_at(data, data_end, L3_OFF + 8)?,
            dst_addr: in6_at(data, data_end, L3_OFF + 24)?,
            proto: next,
            fragment: matches!(part, Part::Later | Part::Unknown)
                || (!TRACK && part != Part::Whole),
            later: false,
            l4_off,
            src_port: 0,
            dst_port: 0,
            tot_len: u16::from_be_bytes(ip.payload_len).wrapping_add(Ipv6Hdr::LEN as u16),
        },
    )?;
    Some(frag::track::<_, TRACK>(&FRAGMENTS6, flow, part, id))
}

/// The length of the transport header whose ports a flow is keyed by: TCP's and UDP's (other
/// protocols have no ports).
#[inline(always)]
pub fn transport_len(proto: u8) -> Option<usize> {
    match proto {
        proto::TCP => Some(20),
        proto::UDP => Some(8),
        _ => None,
    }
}

/// The source and destination ports (network order) of the transport header of `l4_len`
/// bytes at `l4_off`, of either address family; None when it is cut short.
#[inline(always)]
pub fn ports(data: usize, data_end: usize, l4_off: usize, l4_len: usize) -> Option<[u16; 2]> {
    if data + l4_off + l4_len > data_end {
        return None;
    }
    let ports = ptr_at::<[u16; 2]>(data, data_end, l4_off)?;
    // SAFETY: bounds checked by ptr_at.
    Some(unsafe { *ports })
}

/// Whether `addr` is multicast (ff00::/8).
#[inline(always)]
pub fn is_multicast6(addr: &In6) -> bool {
    u32::from_be(addr.words[0]) >> 24 == 0xff
}

/// Whether `addr` is link-local unicast (fe80::/10) or unspecified (`::`): the addresses
/// neighbour discovery and the link's own chatter (MLD, router solicitations) come from.
#[inline(always)]
pub fn is_link_scoped6(addr: &In6) -> bool {
    u32::from_be(addr.words[0]) >> 22 == 0x3fa || *addr == In6::default()
}
