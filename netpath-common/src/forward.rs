//! Networks: the values of `NETWORKS` and the keys of `MEMBERS`, what forwarding between
//! endpoints decides on (kernel: `forward.rs`).
use crate::Addr;

/// Network flags.
pub mod net_flags {
    /// `--internal`: nothing leaves the network.
    pub const INTERNAL: u32 = 1;
    /// `--opt icc=false`: endpoints of the network cannot reach each other.
    pub const NO_ICC: u32 = 2;
    /// `--driver overlay`: the network spans nodes (`OVERLAY_NETS` has its VNI).
    pub const OVERLAY: u32 = 4;
    /// `-o masquerade=false` (Docker's `enable_ip_masquerade=false`, `gateway_mode_ipv4=routed`):
    /// endpoints' traffic leaves with their own addresses, and uplinks let traffic routed at
    /// the network's addresses through.
    pub const ROUTED: u32 = 8;
}

/// Value of `NETWORKS`: a network's subnet of one address family, and what it allows.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NetworkInfo<A: Addr = u32> {
    /// Subnet address, network order.
    pub subnet: A,
    /// Subnet mask, network order.
    pub mask: A,
    /// Gateway (a host address), network order.
    pub gateway: A,
    /// [`net_flags`].
    pub flags: u32,
    /// Number of `MEMBERS` slots in use (0..members).
    pub members: u32,
    /// The host-gateway address (host.docker.internal), network order: the host.
    pub host_gateway: A,
}

impl NetworkInfo<u32> {
    /// The subnet's broadcast address, network order (IPv4 only: IPv6 has none).
    #[inline(always)]
    pub fn broadcast(&self) -> u32 {
        self.subnet | !self.mask
    }
}

/// Key of `MEMBERS`: slot `slot` of network `network`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MemberKey {
    pub network: u32,
    pub slot: u32,
}

crate::layout!(NetworkInfo, 24, subnet @ 0, mask @ 4, gateway @ 8, flags @ 12, members @ 16, host_gateway @ 20);
crate::layout!(NetworkInfo<crate::In6>, 72, subnet @ 0, mask @ 16, gateway @ 32, flags @ 48, members @ 52, host_gateway @ 56);
crate::layout!(MemberKey, 8, network @ 0, slot @ 4);
crate::pod!(NetworkInfo<A>, MemberKey);
