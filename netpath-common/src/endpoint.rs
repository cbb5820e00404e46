//! Endpoints: the values of `ENDPOINTS` (by host-side veth) and `ENDPOINTS_BY_ADDR` (by
//! address) (kernel: `endpoint.rs`).
use crate::{Addr, AddrIdentity};

/// Value of the endpoints map, keyed by the host-side veth's ifindex: one attachment of an
/// endpoint to one network, in one address family.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EndpointInfo<A: Addr = u32> {
    /// The endpoint's address on this network, network order.
    pub addr: A,
    /// Id of the network (key of `NETWORKS`).
    pub network: u32,
    /// The endpoint interface's MAC.
    pub mac: [u8; 6],
    /// The host-side veth's MAC (answers ARP for the gateway and peers).
    pub host_mac: [u8; 6],
    /// The address's identity for network policy (as `IPCACHE` has it), so the path that
    /// read this record needs no lookup of its own.
    pub identity: AddrIdentity,
}

/// Value of `ENDPOINTS_BY_ADDR`: how to deliver to an endpoint address (of either family:
/// the key carries the address).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PeerInfo {
    /// Ifindex of the peer's host-side veth (`bpf_redirect_peer` target).
    pub ifindex: u32,
    /// Id of the peer's network.
    pub network: u32,
    /// The peer interface's MAC (destination of forwarded frames).
    pub mac: [u8; 6],
    /// The peer's host-side veth MAC (source of forwarded frames: its gateway's MAC).
    pub host_mac: [u8; 6],
    /// The address's identity for network policy (as `IPCACHE` has it).
    pub identity: AddrIdentity,
}

crate::layout!(EndpointInfo, 28, addr @ 0, network @ 4, mac @ 8, host_mac @ 14, identity @ 20);
crate::layout!(
    EndpointInfo<crate::In6>,
    40,
    addr @ 0,
    network @ 16,
    mac @ 20,
    host_mac @ 26,
    identity @ 32
);
crate::layout!(PeerInfo, 28, ifindex @ 0, network @ 4, mac @ 8, host_mac @ 14, identity @ 20);
crate::pod!(EndpointInfo<A>, PeerInfo);
