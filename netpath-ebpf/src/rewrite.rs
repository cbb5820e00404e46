//! A flow's rewrites, written once for every translation (published ports, their replies,
//! outbound NAT, ICMP errors): an address with every checksum over it, a port with the
//! transport checksum. A later fragment has no transport header (`frag.rs`): its addresses
//! alone are written (`Flow::later`), the first fragment's transport checksum covering the
//! whole datagram, translated alike.
use netpath_common::{proto, Addr, In6};

use crate::{family::Ip, packet::Packet, parse::Flow};

/// Writes address `to` at `off` (`from` before) of `flow`'s packet, TCP or UDP: the IPv4
/// header checksum and the transport checksum, whose pseudo-header has the address (but in a
/// later fragment, which carries none).
#[inline(always)]
pub fn set_addr<P: Packet, A: Ip>(pkt: &mut P, flow: &Flow<A>, off: usize, from: A, to: A) -> bool {
    let udp = flow.proto == proto::UDP;
    A::write_addr(pkt, off, from, to, flow.l4_csum_off(), udp, !flow.later)
}

/// Writes port `to` at `off` (`from` before) and the transport checksum; nothing in a later
/// fragment, whose port is its first's.
#[inline(always)]
pub fn set_port<P: Packet, A: Ip>(
    pkt: &mut P,
    flow: &Flow<A>,
    off: usize,
    from: u16,
    to: u16,
) -> bool {
    flow.later || pkt.set_port(off, from, to, flow.l4_csum_off(), flow.proto == proto::UDP)
}

/// Writes address `to` at `off` of an ICMP message's packet: ICMPv6's checksum covers it
/// through its pseudo-header (but in a later fragment, which carries none), IPv4's ICMP's
/// does not.
#[inline(always)]
pub fn set_icmp_addr<P: Packet, A: Ip>(
    pkt: &mut P,
    flow: &Flow<A>,
    off: usize,
    from: A,
    to: A,
) -> bool {
    let pseudo = A::FAMILY == <In6 as Addr>::FAMILY && !flow.later;
    A::write_addr(pkt, off, from, to, flow.l4_csum_off(), false, pseudo)
}
