//! IPv6 frames for the datapath tests: headers, checksums (TCP, UDP, ICMPv6) and the
//! neighbour discovery messages an endpoint sends.
use std::net::Ipv6Addr;

use super::inet_checksum;

pub const ICMPV6: u8 = 58;

/// An Ethernet frame with an IPv6 header and no extension headers.
pub struct Frame6 {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next: u8,
    pub hop_limit: u8,
}

/// The IPv6 pseudo-header of a transport checksum.
fn pseudo6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, next]);
    p
}

impl Frame6 {
    pub fn new(src: &str, dst: &str, next: u8) -> Frame6 {
        Frame6 {
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            src: src.parse().expect("an IPv6 address"),
            dst: dst.parse().expect("an IPv6 address"),
            next,
            hop_limit: 64,
        }
    }

    /// The frame around `l4`, its checksum (TCP, UDP, ICMPv6) computed.
    pub fn build(&self, l4: &[u8]) -> Vec<u8> {
        let mut l4 = l4.to_vec();
        let at = match self.next {
            6 => Some(16),
            17 => Some(6),
            ICMPV6 => Some(2),
            _ => None,
        };
        if let Some(at) = at.filter(|at| l4.len() >= at + 2) {
            l4[at..at + 2].fill(0);
            let c = inet_checksum(&[&pseudo6(self.src, self.dst, self.next, l4.len()), &l4]);
            l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        f.extend_from_slice(&[self.next, self.hop_limit]);
        f.extend_from_slice(&self.src.octets());
        f.extend_from_slice(&self.dst.octets());
        f.extend_from_slice(&l4);
        f
    }
}

/// Whether the transport message of `frame` (TCP, UDP or ICMPv6; no extension headers) has a
/// right checksum.
pub fn checksum_ok6(frame: &[u8]) -> bool {
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[22..38]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[38..54]).unwrap());
    let body = &frame[54..];
    inet_checksum(&[&pseudo6(src, dst, frame[20], body.len()), body]) == 0
}

/// The solicited-node multicast address of `target`.
pub fn solicited_node(target: Ipv6Addr) -> Ipv6Addr {
    let o = target.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// A neighbour discovery message of type `kind` (135 solicitation, 136 advertisement) about
/// `target`, from `src` (MAC `mac`) to `dst`, with the sender's link-layer address option
/// (type 1 for a solicitation, 2 for an advertisement).
pub fn nd(kind: u8, mac: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let mut f = Frame6::new("::", "::", ICMPV6);
    f.src = src;
    f.dst = dst;
    f.src_mac = mac;
    let o = dst.octets();
    f.dst_mac = if o[0] == 0xff {
        [0x33, 0x33, o[12], o[13], o[14], o[15]]
    } else {
        [0x0a, 0, 0, 0, 0, 0x99]
    };
    f.hop_limit = 255;
    let mut l4 = vec![kind, 0, 0, 0, 0, 0, 0, 0];
    l4.extend_from_slice(&target.octets());
    l4.extend_from_slice(&[if kind == 135 { 1 } else { 2 }, 1]);
    l4.extend_from_slice(&mac);
    f.build(&l4)
}
