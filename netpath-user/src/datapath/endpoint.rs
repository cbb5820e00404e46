//! Endpoints (kernel: `endpoint.rs`, the program on each endpoint's host-side veth):
//! `ENDPOINTS` by the veth's ifindex, `ENDPOINTS_BY_ADDR` by address, each with the address's
//! identity for network policy as the policy maps have it (`policy.rs` keeps them in step).
//! The program's link on each veth is a [`super::Hook::Endpoint`].
use std::net::Ipv4Addr;

use netpath_common::{map_names, EndpointInfo, PeerInfo};

use super::{be_addr, removed, Datapath, DatapathError};

/// One attachment of an endpoint to a network, as the maps hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachmentEntry {
    /// Ifindex of the host-side veth.
    pub ifindex: u32,
    /// The endpoint's address on the network.
    pub ip: Ipv4Addr,
    /// The endpoint interface's MAC.
    pub mac: [u8; 6],
    /// The host-side veth's MAC.
    pub host_mac: [u8; 6],
    /// The network's datapath id.
    pub net_id: u32,
}

impl Datapath {
    /// Writes an endpoint's attachment to a network: by its veth and by its address.
    pub fn add_attachment(&mut self, e: &AttachmentEntry) -> Result<(), DatapathError> {
        let addr = be_addr(e.ip);
        let identity = self.policy_identity_of(addr);
        let info = EndpointInfo {
            addr,
            network: e.net_id,
            mac: e.mac,
            host_mac: e.host_mac,
            identity,
        };
        self.endpoints
            .insert(e.ifindex, info, 0)
            .map_err(|err| DatapathError::Map(map_names::ENDPOINTS, err))?;
        let peer = PeerInfo {
            ifindex: e.ifindex,
            network: e.net_id,
            mac: e.mac,
            host_mac: e.host_mac,
            identity,
        };
        if let Err(err) = self.endpoints_by_addr.insert(addr, peer, 0) {
            // Undoing the first half; if even that fails, the next sync removes it.
            let _ = self.endpoints.remove(&e.ifindex);
            return Err(DatapathError::Map(map_names::ENDPOINTS_BY_ADDR, err));
        }
        Ok(())
    }

    /// Removes an attachment's map entries.
    pub fn remove_attachment(&mut self, ifindex: u32, ip: Ipv4Addr) -> Result<(), DatapathError> {
        removed(map_names::ENDPOINTS, self.endpoints.remove(&ifindex))?;
        removed(
            map_names::ENDPOINTS_BY_ADDR,
            self.endpoints_by_addr.remove(&be_addr(ip)),
        )
    }

    /// How many endpoint interfaces the maps hold.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.keys().filter(Result::is_ok).count()
    }
}
