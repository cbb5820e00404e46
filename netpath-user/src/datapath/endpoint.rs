//! Endpoints (kernel: `endpoint.rs`, the program on each endpoint's host-side veth):
//! `ENDPOINTS` by the veth's ifindex, `ENDPOINTS_BY_ADDR` by address (and their IPv6 twins,
//! `ipv6.rs`), each with the address's
//! identity for network policy as the policy maps have it (`policy.rs` keeps them in step).
//! The program's link on each veth is a [`super::Hook::Endpoint`].
use std::net::{Ipv4Addr, Ipv6Addr};

use netpath_common::{map_names, EndpointInfo, PeerInfo};

use super::{be_addr, removed, Datapath, DatapathError};

/// One attachment of an endpoint to a network, as the maps hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachmentEntry {
    /// Ifindex of the host-side veth.
    pub ifindex: u32,
    /// The endpoint's IPv4 address on the network; unspecified (0.0.0.0) on a network of IPv6
    /// alone: its record then says the endpoint has no IPv4 (the kernel drops what IPv4 and
    /// ARP it sends), and no record is kept by that address.
    pub ip: Ipv4Addr,
    /// Its IPv6 address there, on a network with IPv6.
    pub ip6: Option<Ipv6Addr>,
    /// The endpoint interface's MAC.
    pub mac: [u8; 6],
    /// The host-side veth's MAC.
    pub host_mac: [u8; 6],
    /// The network's datapath id.
    pub net_id: u32,
}

impl AttachmentEntry {
    /// The entry of attachment `att` behind host-side veth `ifindex` (MAC `host_mac`), on
    /// the network of datapath id `net_id`.
    pub fn of(
        att: &crate::model::Attachment,
        ifindex: u32,
        host_mac: [u8; 6],
        net_id: u32,
    ) -> AttachmentEntry {
        AttachmentEntry {
            ifindex,
            ip: att.ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            ip6: att.ip6,
            mac: att.mac,
            host_mac,
            net_id,
        }
    }
}

impl Datapath {
    /// Writes an endpoint's attachment to a network: by its veth and by its address.
    pub fn add_attachment(&mut self, e: &AttachmentEntry) -> Result<(), DatapathError> {
        let addr = be_addr(e.ip);
        let identity = self.attachment_identity(addr, e.ip6.map(be_addr));
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
        if addr == 0 {
            // IPv6 alone: nothing by an IPv4 address.
        } else if let Err(err) = self.endpoints_by_addr.insert(addr, peer, 0) {
            // Undoing the first half; if even that fails, the next sync removes it.
            let _ = self.endpoints.remove(&e.ifindex);
            return Err(DatapathError::Map(map_names::ENDPOINTS_BY_ADDR, err));
        }
        if let Err(err) = self.add_attachment6(e, identity) {
            let _ = self.remove_attachment(e);
            return Err(err);
        }
        Ok(())
    }

    /// Removes an attachment's map entries (of both families).
    pub fn remove_attachment(&mut self, e: &AttachmentEntry) -> Result<(), DatapathError> {
        removed(map_names::ENDPOINTS, self.endpoints.remove(&e.ifindex))?;
        if !e.ip.is_unspecified() {
            removed(
                map_names::ENDPOINTS_BY_ADDR,
                self.endpoints_by_addr.remove(&be_addr(e.ip)),
            )?;
        }
        self.remove_attachment6(e)
    }

    /// How many endpoint interfaces the maps hold.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.keys().filter(Result::is_ok).count()
    }
}
