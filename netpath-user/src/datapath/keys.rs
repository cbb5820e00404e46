//! Values as the maps hold them: addresses and ports in network order, flow keys, and the
//! LPM trie key of a subnet of either family (and back).
use aya::maps::lpm_trie::Key as LpmKey;
use netpath_common::FlowKey;

use crate::ipam::{Family, Subnet};

/// An address of either family as the maps store it: network order (`u32` or `In6`).
pub fn be_addr<A: Family>(a: A) -> A::Kernel {
    a.to_kernel()
}

/// The LPM trie key of subnet `s` of either family (every trie the agent writes is so keyed).
pub(crate) fn lpm_key<A: Family>(s: &Subnet<A>) -> LpmKey<A::Kernel>
where
    A::Kernel: aya::Pod,
{
    LpmKey::new(u32::from(s.prefix()), be_addr(s.addr()))
}

/// The subnet an LPM trie key stands for (None with host bits set: never the agent's).
pub(crate) fn subnet_of<A: Family>(k: &LpmKey<A::Kernel>) -> Option<Subnet<A>>
where
    A::Kernel: aya::Pod,
{
    Subnet::new(A::from_kernel(k.data()), k.prefix_len() as u8).ok()
}

/// A port as the maps store it: network order.
pub fn be_port(p: u16) -> u16 {
    p.to_be()
}

/// The flow table's key of the flow of `proto` from `src` to `dst` (address and port as the
/// std types hold them), in the maps' order.
pub fn flow_key<A: Family>(src: (A, u16), dst: (A, u16), proto: u8) -> FlowKey<A::Kernel> {
    FlowKey::new(
        be_addr(src.0),
        be_port(src.1),
        be_addr(dst.0),
        be_port(dst.1),
        proto,
    )
}
