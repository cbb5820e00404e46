//! `OVERLAY_NETS`, `OVERLAY_VNIS`, `REMOTES`, `REMOTES6`, `OVERLAY_PEERS`: what this node knows of the
//! other nodes' endpoints on overlay networks, written by difference from what the cluster
//! says (see `crate::cluster`), new entries before stale ones go.
use std::{
    collections::{BTreeMap, HashMap as StdHashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use netpath_common::{map_names, map_sizes, In6, MemberKey, OverlayNet, RemoteEndpoint, Underlay};

use super::{be_addr, sync::sync_hash, Datapath, DatapathError};

/// One overlay network on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OverlayNetEntry {
    pub vni: u32,
    /// The other nodes with endpoints on it, by underlay address (broadcasts reach each).
    pub peers: Vec<IpAddr>,
}

/// What the overlay maps should hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayContent {
    /// Ifindex of the VXLAN device.
    pub device: u32,
    /// This node's underlay address, IPv4 or IPv6: the outer source, and the family of every
    /// tunnel (the agent gives only peers of this family).
    pub local: IpAddr,
    /// By network id.
    pub networks: BTreeMap<u32, OverlayNetEntry>,
    /// Endpoints on other nodes: address → (the node's underlay address, network id).
    pub remotes: BTreeMap<Ipv4Addr, (IpAddr, u32)>,
    /// Their IPv6 addresses (on a network with IPv6) → their IPv4 address.
    pub remotes6: BTreeMap<Ipv6Addr, Ipv4Addr>,
}

/// A node's underlay address as the tunnel key holds it.
pub fn underlay(addr: IpAddr) -> Underlay {
    match addr {
        IpAddr::V4(a) => Underlay::v4(be_addr(a)),
        IpAddr::V6(a) => Underlay::v6(be_addr(a)),
    }
}

impl Default for OverlayContent {
    fn default() -> Self {
        OverlayContent {
            device: 0,
            local: Ipv4Addr::UNSPECIFIED.into(),
            networks: BTreeMap::new(),
            remotes: BTreeMap::new(),
            remotes6: BTreeMap::new(),
        }
    }
}

impl OverlayContent {
    /// The maps' entries.
    #[allow(clippy::type_complexity)]
    pub fn entries(
        &self,
    ) -> (
        StdHashMap<u32, OverlayNet>,
        StdHashMap<u32, u32>,
        StdHashMap<u32, RemoteEndpoint>,
        StdHashMap<MemberKey, Underlay>,
    ) {
        let mut nets = StdHashMap::new();
        let mut vnis = StdHashMap::new();
        let mut peers = StdHashMap::new();
        for (id, n) in &self.networks {
            let slots = n.peers.len().min(map_sizes::PEERS_PER_NETWORK as usize);
            nets.insert(
                *id,
                OverlayNet {
                    vni: n.vni,
                    device: self.device,
                    peers: slots as u32,
                    local: underlay(self.local),
                },
            );
            vnis.insert(n.vni, *id);
            for (slot, node) in n.peers.iter().take(slots).enumerate() {
                peers.insert(
                    MemberKey {
                        network: *id,
                        slot: slot as u32,
                    },
                    underlay(*node),
                );
            }
        }
        let remotes = self
            .remotes
            .iter()
            .map(|(ip, (node, network))| {
                (
                    be_addr(*ip),
                    RemoteEndpoint {
                        node: underlay(*node),
                        network: *network,
                    },
                )
            })
            .collect();
        (nets, vnis, remotes, peers)
    }
}

impl OverlayContent {
    /// `REMOTES6`'s entries: each IPv6 address where its IPv4 one leads.
    fn entries6(&self) -> StdHashMap<In6, RemoteEndpoint> {
        self.remotes6
            .iter()
            .filter_map(|(ip6, ip)| {
                let (node, network) = self.remotes.get(ip)?;
                let r = RemoteEndpoint {
                    node: underlay(*node),
                    network: *network,
                };
                Some((be_addr(*ip6), r))
            })
            .collect()
    }
}

impl Datapath {
    /// Makes the overlay maps hold exactly `c`; returns how many entries changed.
    pub fn sync_overlay(&mut self, c: &OverlayContent) -> Result<usize, DatapathError> {
        let (nets, vnis, remotes, peers) = c.entries();
        // Where packets go first, then what leads there.
        let (w1, r1) = sync_hash(map_names::REMOTES, &mut self.remotes, &remotes)?;
        let (w0, r0) = sync_hash(map_names::REMOTES6, &mut self.remotes6, &c.entries6())?;
        self.remote_addrs6 = c
            .remotes6
            .iter()
            .map(|(ip6, ip)| (be_addr(*ip6), be_addr(*ip)))
            .collect();
        let (w2, r2) = sync_hash(map_names::OVERLAY_PEERS, &mut self.overlay_peers, &peers)?;
        let (w3, r3) = sync_hash(map_names::OVERLAY_VNIS, &mut self.overlay_vnis, &vnis)?;
        let (w4, r4) = sync_hash(map_names::OVERLAY_NETS, &mut self.overlay_nets, &nets)?;
        Ok(w0 + r0 + w1 + r1 + w2 + r2 + w3 + r3 + w4 + r4)
    }
}
