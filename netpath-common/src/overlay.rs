//! Overlay networks across nodes: the values of `OVERLAY_NETS`, `REMOTES` and
//! `OVERLAY_PEERS` (kernel: `overlay.rs`). The underlay (the nodes' addresses) is IPv4 or
//! IPv6, each address held as the tunnel key holds it ([`Underlay`]).

/// A node's underlay address as `bpf_tunnel_key` holds it, so that the kernel copies it in
/// and compares it without a branch on its family: IPv4's in host order in the first word
/// (the others zero, as the kernel leaves them), IPv6's four words in network order; `v6`
/// is the helpers' `BPF_F_TUNINFO_IPV6` flag (1) for IPv6, 0 for IPv4.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Underlay {
    pub words: [u32; 4],
    pub v6: u32,
}

impl Underlay {
    /// IPv4 address `v4` (network order).
    pub const fn v4(v4: u32) -> Self {
        Underlay {
            words: [u32::from_be(v4), 0, 0, 0],
            v6: 0,
        }
    }

    /// IPv6 address `v6` (network order, as [`crate::In6`] holds it).
    pub const fn v6(v6: crate::In6) -> Self {
        Underlay {
            words: v6.words,
            v6: 1,
        }
    }
}

/// Value of `OVERLAY_NETS`: an overlay network on this node.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OverlayNet {
    /// The VXLAN network identifier on the wire.
    pub vni: u32,
    /// Ifindex of this node's VXLAN device (external mode: one for every network).
    pub device: u32,
    /// Number of `OVERLAY_PEERS` slots in use (0..peers).
    pub peers: u32,
    /// This node's underlay address: the outer source (the other nodes' addresses are of
    /// its family).
    pub local: Underlay,
}

/// Value of `REMOTES` (keyed by the endpoint's address, network order): where an endpoint on
/// another node lives.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RemoteEndpoint {
    /// The node's underlay address (the outer destination).
    pub node: Underlay,
    /// Id of the endpoint's network on this node (key of `NETWORKS`).
    pub network: u32,
}

/// The VXLAN UDP port (IANA's).
pub const VXLAN_PORT: u16 = 4789;
/// Bytes VXLAN adds over IPv4: outer IPv4 (20), UDP (8), VXLAN (8), inner Ethernet (14).
pub const VXLAN_OVERHEAD: u32 = 50;
/// Bytes VXLAN adds over IPv6: the outer header is 40 bytes, not 20.
pub const VXLAN6_OVERHEAD: u32 = 70;

crate::layout!(Underlay, 20, words @ 0, v6 @ 16);
crate::layout!(OverlayNet, 32, vni @ 0, device @ 4, peers @ 8, local @ 12);
crate::layout!(RemoteEndpoint, 24, node @ 0, network @ 20);
crate::pod!(Underlay, OverlayNet, RemoteEndpoint);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underlay_addresses_are_held_as_the_tunnel_key_holds_them() {
        let v4 = Underlay::v4(u32::from_ne_bytes([10, 77, 0, 1]));
        assert_eq!(v4.words, [0x0a4d_0001, 0, 0, 0]);
        assert_eq!(v4.v6, 0);
        let o = [0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let v6 = Underlay::v6(crate::In6::from_octets(o));
        assert_eq!(v6.words, crate::In6::from_octets(o).words);
        assert_eq!(v6.v6, 1);
    }
}
