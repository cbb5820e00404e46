//! Fragmented datagrams: the key of `FRAGMENTS` and `FRAGMENTS6` (kernel: `frag.rs`).
use crate::Addr;

/// Key of the fragment tables (`FRAGMENTS`, `FRAGMENTS6`): a fragmented datagram, by its
/// addresses, its IP identification (IPv4's 16 bits, IPv6's fragment header's 32) and its
/// protocol. Its first fragment's ports are the value (`[u16; 2]`, source then destination,
/// network order), so its later fragments, which carry no transport header, are translated
/// and judged as its first was (Cilium's `ipv4_frag_datagrams` does the same).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FragKey<A: Addr = u32> {
    pub src_addr: A,
    pub dst_addr: A,
    /// Network order.
    pub id: u32,
    pub proto: u8,
    pub _pad: u8,
    pub _pad2: u16,
}

crate::layout!(FragKey, 16, src_addr @ 0, dst_addr @ 4, id @ 8, proto @ 12, _pad @ 13, _pad2 @ 14);
crate::layout!(FragKey<crate::In6>, 40, src_addr @ 0, dst_addr @ 16, id @ 32, proto @ 36, _pad @ 37, _pad2 @ 38);
crate::pod!(FragKey<A>);
