//! Overlay networks across nodes: the values of `OVERLAY_NETS` and `REMOTES` (kernel:
//! `overlay.rs`). The underlay (the nodes' addresses) is IPv4.

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
    /// This node's underlay address, network order: the outer source (0: the route's).
    pub local: u32,
}

/// Value of `REMOTES` (keyed by the endpoint's address, network order): where an endpoint on
/// another node lives.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RemoteEndpoint {
    /// The node's underlay address, network order (the outer destination).
    pub node: u32,
    /// Id of the endpoint's network on this node (key of `NETWORKS`).
    pub network: u32,
}

/// The VXLAN UDP port (IANA's).
pub const VXLAN_PORT: u16 = 4789;
/// Bytes VXLAN adds over IPv4: outer IPv4 (20), UDP (8), VXLAN (8), inner Ethernet (14).
pub const VXLAN_OVERHEAD: u32 = 50;

crate::layout!(OverlayNet, 16, vni @ 0, device @ 4, peers @ 8, local @ 12);
crate::layout!(RemoteEndpoint, 8, node @ 0, network @ 4);
crate::pod!(OverlayNet, RemoteEndpoint);
