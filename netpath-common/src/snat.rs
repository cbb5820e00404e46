//! Outbound source NAT: the values of `SNAT` and `SNAT_REV`, keyed by [`crate::FlowKey`]
//! (kernel: `snat.rs`).
use crate::Addr;

/// First port of outbound NAT (the agent reserves the range from the host's ephemeral ports).
pub const SNAT_PORT_MIN: u16 = 40000;
/// Number of outbound NAT ports.
pub const SNAT_PORTS: u32 = 20000;

/// Flags of outbound NAT entries.
pub mod snat_flags {
    /// A TCP FIN or RST was seen: the flow is closing.
    pub const CLOSING: u32 = 1;
}

/// Value of `SNAT`: the translated source of an outbound flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SnatNat<A: Addr = u32> {
    /// Uplink address, network order.
    pub addr: A,
    /// Allocated port (or ICMP id), network order.
    pub port: u16,
    pub _pad: u16,
    /// [`snat_flags`].
    pub flags: u32,
    pub _pad2: A::Pad,
    /// `bpf_ktime_get_ns` of the last outbound packet.
    pub last_seen: u64,
}

/// Value of `SNAT_REV`: where a reply to an outbound flow goes back to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SnatRev<A: Addr = u32> {
    /// Endpoint address, network order.
    pub addr: A,
    /// Endpoint port (or ICMP id), network order.
    pub port: u16,
    pub _pad: u16,
    /// Endpoint's host-side veth.
    pub ifindex: u32,
    /// [`snat_flags`].
    pub flags: u32,
    pub mac: [u8; 6],
    pub host_mac: [u8; 6],
    pub _pad2: A::Pad,
    /// `bpf_ktime_get_ns` of the last reply.
    pub last_seen: u64,
}

crate::layout!(SnatNat, 24, addr @ 0, port @ 4, _pad @ 6, flags @ 8, _pad2 @ 12, last_seen @ 16);
crate::layout!(SnatNat<crate::In6>, 32, addr @ 0, port @ 16, _pad @ 18, flags @ 20, last_seen @ 24);
crate::layout!(SnatRev, 40, addr @ 0, port @ 4, _pad @ 6, ifindex @ 8, flags @ 12, mac @ 16, host_mac @ 22, _pad2 @ 28, last_seen @ 32);
crate::layout!(SnatRev<crate::In6>, 48, addr @ 0, port @ 16, _pad @ 18, ifindex @ 20, flags @ 24, mac @ 28, host_mac @ 34, last_seen @ 40);
crate::pod!(SnatNat<A>, SnatRev<A>);
