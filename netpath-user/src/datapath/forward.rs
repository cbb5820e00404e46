//! Networks (kernel: `forward.rs`, and `hostgw.rs` for the host-loopback ports): `NETWORKS`
//! by id (and their IPv6 side, `ipv6.rs`; their subnets, `subnets.rs`), `MEMBERS` for
//! broadcasts, and `HOST_LOOPBACK`, the host-gateway TCP ports served by the host's loopback.
use netpath_common::{map_names, net_flags, LoopbackKey, MemberKey, NetworkInfo};

use super::{be_addr, be_port, removed, Datapath, DatapathError};
use crate::model::Network;

/// The [`net_flags`] of `net` for a family, `routed` or not.
pub(super) fn network_flags(net: &Network, routed: bool) -> u32 {
    let mut flags = 0;
    if net.internal {
        flags |= net_flags::INTERNAL;
    }
    if !net.icc() {
        flags |= net_flags::NO_ICC;
    }
    if net.vni.is_some() {
        flags |= net_flags::OVERLAY;
    }
    if routed {
        flags |= net_flags::ROUTED;
    }
    flags
}

/// The `NETWORKS` value of `net`, with `members` member slots. A network of IPv6 alone has
/// one too (its flags and members): its subnet, gateway and host-gateway all 0.0.0.0, with a
/// mask no address but that one matches.
pub fn network_info(net: &Network, members: u32) -> NetworkInfo {
    let flags = network_flags(net, net.routed());
    let Some(v4) = &net.v4 else {
        return NetworkInfo {
            subnet: 0,
            mask: u32::MAX,
            gateway: 0,
            flags,
            members,
            host_gateway: 0,
        };
    };
    let prefix = v4.subnet.prefix();
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    NetworkInfo {
        subnet: be_addr(v4.subnet.addr()),
        mask: mask.to_be(),
        gateway: be_addr(v4.gateway),
        flags,
        members,
        host_gateway: be_addr(net.host_gateway().unwrap_or(v4.gateway)),
    }
}

impl Datapath {
    /// Writes a network (its flags, subnet and gateway); its member count is kept.
    pub fn add_network(&mut self, net: &Network) -> Result<(), DatapathError> {
        self.replies.forget_routed();
        let members = self.networks.get(&net.net_id, 0).map_or(0, |n| n.members);
        self.networks
            .insert(net.net_id, network_info(net, members), 0)
            .map_err(|e| DatapathError::Map(map_names::NETWORKS, e))?;
        self.add_network6(net, members)?;
        self.add_subnets(net)?;
        for port in net.host_loopback_ports() {
            self.host_loopback
                .insert(loopback_key(net, port), 1, 0)
                .map_err(|e| DatapathError::Map(map_names::HOST_LOOPBACK, e))?;
        }
        Ok(())
    }

    /// Removes a network, its member slots, subnet and host-loopback ports.
    pub fn remove_network(&mut self, net: &Network) -> Result<(), DatapathError> {
        self.replies.forget_routed();
        self.set_members(net.net_id, &[])?;
        self.members_written.remove(&net.net_id);
        removed(map_names::NETWORKS, self.networks.remove(&net.net_id))?;
        self.remove_subnets(net)?;
        self.remove_network6(net)?;
        for port in net.host_loopback_ports() {
            removed(
                map_names::HOST_LOOPBACK,
                self.host_loopback.remove(&loopback_key(net, port)),
            )?;
        }
        Ok(())
    }

    /// The member interfaces of network `net_id`, in slot order: as this process last wrote
    /// them, else read from the map.
    pub fn members(&self, net_id: u32) -> Vec<u32> {
        if let Some(m) = self.members_written.get(&net_id) {
            return m.clone();
        }
        let n = self.networks.get(&net_id, 0).map_or(0, |n| n.members);
        (0..n)
            .filter_map(|slot| {
                self.members
                    .get(
                        &MemberKey {
                            network: net_id,
                            slot,
                        },
                        0,
                    )
                    .ok()
            })
            .collect()
    }

    /// Makes `ifindexes` the members of network `net_id` (slots 0..n, for broadcasts). Only
    /// the slots that change are written: an endpoint joining a network of thousands writes
    /// its own slot.
    pub fn set_members(&mut self, net_id: u32, ifindexes: &[u32]) -> Result<(), DatapathError> {
        let err = |e| DatapathError::Map(map_names::MEMBERS, e);
        let Ok(mut info) = self.networks.get(&net_id, 0) else {
            return Ok(());
        };
        // What this process last wrote is known slot by slot; a map read is not (a slot it
        // cannot read is left out), so without it every slot is written. Taken out while the
        // map is written: a failure leaves the cache unsure (gone), not wrong.
        let known = self.members_written.remove(&net_id).unwrap_or_default();
        for (slot, ifindex) in ifindexes.iter().enumerate() {
            if known.get(slot) == Some(ifindex) {
                continue;
            }
            let key = MemberKey {
                network: net_id,
                slot: slot as u32,
            };
            self.members.insert(key, ifindex, 0).map_err(err)?;
        }
        for slot in ifindexes.len() as u32..info.members {
            let key = MemberKey {
                network: net_id,
                slot,
            };
            removed(map_names::MEMBERS, self.members.remove(&key))?;
        }
        info.members = ifindexes.len() as u32;
        self.networks
            .insert(net_id, info, 0)
            .map_err(|e| DatapathError::Map(map_names::NETWORKS, e))?;
        self.set_members6(net_id, info.members)?;
        self.members_written.insert(net_id, ifindexes.to_vec());
        Ok(())
    }

    /// Every network the maps hold, by id.
    pub fn network_ids(&self) -> Vec<u32> {
        self.networks.keys().filter_map(Result::ok).collect()
    }
}

fn loopback_key(net: &Network, port: u16) -> LoopbackKey {
    LoopbackKey {
        network: net.net_id,
        port: be_port(port),
        _pad: 0,
    }
}
