//! Fragments. netpath forwards them as they come and reassembles nothing (whoever receives
//! them does): a TCP or UDP datagram's first fragment has its transport header, whose ports
//! (an ICMP echo's identifier) are remembered here by the datagram's addresses,
//! identification and protocol (`FRAGMENTS`, `FRAGMENTS6`, LRU); its later fragments carry
//! none, and take the first's ports ([`Flow::later`]), so a published port's DNAT and its
//! replies, an outbound flow and its replies translate and judge them as the first (Cilium
//! does the same for its load balancer). A later fragment that comes before its first has no
//! ports and goes on untranslated, as every fragment did before.
//!
//! The programs that parse this way (`parse::parse_tracked`) are the uplink's and NAT46's
//! (both ways), and the endpoint's fragment, first-reply and outbound NAT programs: tracked, a fragment takes a
//! program's paths once more, which the endpoint program's verifier budget has no room for,
//! so it hands its fragments on (`endpoint::host_veth_fragment`), and an IPv4 fragment bound
//! beyond every network to outbound NAT's program (`snat::fragment_from_endpoint`).
use aya_ebpf::maps::LruHashMap;
use netpath_common::{Addr, FragKey};

use crate::parse::{is_icmp, transport_len, Flow};

/// Which part of its datagram a packet is, as parsing reads it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Whole,
    /// The first fragment: the transport header is here.
    First,
    /// A later fragment: no transport header.
    Later,
    /// IPv6 behind extension headers other than a fragment header (not walked to its
    /// transport header).
    Unknown,
}

impl Part {
    /// The part a fragment field says, as (offset in 8-byte units, more fragments).
    #[inline(always)]
    pub fn of((offset, more): (u16, bool)) -> Part {
        match (offset, more) {
            (0, false) => Part::Whole,
            (0, true) => Part::First,
            _ => Part::Later,
        }
    }
}

/// IPv4's flags and fragment offset (host order) as (offset, more fragments).
#[inline(always)]
pub fn ipv4_field(f: u16) -> (u16, bool) {
    (f & 0x1fff, f & 0x2000 != 0)
}

/// IPv6's fragment header's offset and M flag (host order) as (offset, more fragments): both
/// zero is an atomic fragment (RFC 6946), a whole datagram.
#[inline(always)]
pub fn ipv6_field(f: u16) -> (u16, bool) {
    (f >> 3, f & 1 != 0)
}

/// `flow`, of a packet that is `part` of its datagram, as a program sees it: with `TRACK`
/// (`parse::parse_tracked`), a TCP or UDP first fragment (or an ICMP echo's) is a flow with
/// its ports (remembered), a later one has them too when its first was seen (`id`: the
/// datagram's identification as it sits in the header); any other fragment has no ports
/// (`Flow::fragment`).
#[inline(always)]
pub fn track<A: Addr, const TRACK: bool>(
    fragments: &LruHashMap<FragKey<A>, [u16; 2]>,
    mut flow: Flow<A>,
    part: Part,
    id: u32,
) -> Flow<A> {
    if part == Part::Whole {
        return flow;
    }
    // TCP's and UDP's ports; an ICMP echo's identifier, its port (`parse::icmp`), so a big
    // ping's later fragments are translated as its first was too.
    let ported = transport_len(flow.proto).is_some()
        || is_icmp(flow.proto) && (part == Part::Later || flow.src_port != 0 || flow.dst_port != 0);
    if !TRACK || part == Part::Unknown || !ported {
        flow.fragment = true;
        return flow;
    }
    let key = FragKey {
        src_addr: flow.src_addr,
        dst_addr: flow.dst_addr,
        id,
        proto: flow.proto,
        _pad: 0,
        _pad2: 0,
    };
    if part == Part::First {
        // A full table evicts its oldest datagram: its later fragments go untranslated.
        let _ = fragments.insert(&key, &[flow.src_port, flow.dst_port], 0);
    } else if let Some(ports) = fragments.get_ptr(&key) {
        // SAFETY: map value pointer valid for this program run; copied out at once.
        [flow.src_port, flow.dst_port] = unsafe { *ports };
        flow.fragment = false;
        flow.later = true;
    }
    flow
}
