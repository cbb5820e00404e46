//! Endpoints (kernel: `endpoint.rs`, the program on each endpoint's host-side veth):
//! `ENDPOINTS` by the veth's ifindex, `ENDPOINTS_BY_ADDR` by address, and the TC link of
//! each veth.
use std::net::Ipv4Addr;

use netpath_common::{map_names, EndpointInfo, PeerInfo};

use super::{attach_tc, be_addr, clear_hash, programs, removed, Datapath, DatapathError};

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
        let info = EndpointInfo {
            addr,
            network: e.net_id,
            mac: e.mac,
            host_mac: e.host_mac,
        };
        self.endpoints
            .insert(e.ifindex, info, 0)
            .map_err(|err| DatapathError::Map(map_names::ENDPOINTS, err))?;
        let peer = PeerInfo {
            ifindex: e.ifindex,
            network: e.net_id,
            mac: e.mac,
            host_mac: e.host_mac,
        };
        if let Err(err) = self.endpoints_by_addr.insert(addr, peer, 0) {
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

    /// Attaches the endpoint program to the host-side veth `ifname`.
    pub fn attach_endpoint(&mut self, ifname: &str) -> Result<(), DatapathError> {
        let link = attach_tc(
            self.classifier(programs::ENDPOINT_TC)?,
            programs::ENDPOINT_TC,
            ifname,
        )?;
        self.endpoint_links.insert(ifname.to_string(), link);
        Ok(())
    }

    /// Detaches the endpoint program from `ifname` (dropping the link detaches it).
    pub fn detach_endpoint(&mut self, ifname: &str) {
        self.endpoint_links.remove(ifname);
    }

    pub(super) fn clear_endpoints(&mut self) {
        clear_hash(&mut self.endpoints);
        clear_hash(&mut self.endpoints_by_addr);
    }
}
