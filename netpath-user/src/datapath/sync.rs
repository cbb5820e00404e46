//! The whole datapath made to match a desired content, as the agent does at start: every map
//! the agent writes is compared with what its state says and only differences are written,
//! new entries before stale ones go, so traffic through entries that stay never misses.
use std::collections::{BTreeMap, HashMap as StdHashMap};
use std::hash::Hash;

use aya::maps::{HashMap, MapData};
use netpath_common::{map_names, EndpointInfo, In6, LoopbackKey, MemberKey, PeerInfo};

use super::{
    be_addr, be_port, forward::network_info, removed, AnyPortKey, AnyPortTarget, AttachmentEntry,
    Datapath, DatapathError,
};
use crate::model::Network;

/// What the maps the agent writes should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Content {
    /// Published ports and their targets, of both families (IPv4 mapped).
    pub ports: Vec<(AnyPortKey, AnyPortTarget)>,
    pub networks: Vec<Network>,
    /// Member interfaces by network id, in slot order.
    pub members: BTreeMap<u32, Vec<u32>>,
    pub attachments: Vec<AttachmentEntry>,
    /// The published ports' firewall.
    pub published_from: crate::policy::PublishedFrom,
    /// The policy maps.
    pub policy: crate::policy::Compiled,
}

/// Entries written and removed by a sync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub written: usize,
    pub removed: usize,
}

impl SyncReport {
    fn add(&mut self, (w, r): (usize, usize)) {
        self.written += w;
        self.removed += r;
    }
}

/// Makes `map` hold exactly `want`: writes what is missing or different, then removes the
/// rest. Returns (written, removed).
pub(super) fn sync_hash<K, V>(
    name: &'static str,
    map: &mut HashMap<MapData, K, V>,
    want: &StdHashMap<K, V>,
) -> Result<(usize, usize), DatapathError>
where
    K: aya::Pod + Eq + Hash,
    V: aya::Pod + PartialEq,
{
    let have: StdHashMap<K, V> = map.iter().filter_map(Result::ok).collect();
    let mut written = 0;
    for (k, v) in want {
        if have.get(k) != Some(v) {
            map.insert(k, v, 0)
                .map_err(|e| DatapathError::Map(name, e))?;
            written += 1;
        }
    }
    let mut gone = 0;
    for k in have.keys().filter(|k| !want.contains_key(k)) {
        removed(name, map.remove(k))?;
        gone += 1;
    }
    Ok((written, gone))
}

impl Datapath {
    /// Makes the maps the agent writes hold exactly `c`.
    pub fn sync(&mut self, c: &Content) -> Result<super::SyncReport, DatapathError> {
        let mut report = SyncReport::default();

        // Published ports.
        type Ports = StdHashMap<(In6, u16, u8), (AnyPortKey, AnyPortTarget)>;
        let want: Ports = c
            .ports
            .iter()
            .map(|(k, t)| ((k.addr, k.port, k.proto), (*k, *t)))
            .collect();
        // As this process knows them: it read them whole when it opened the maps.
        let have: Ports = self
            .published_any_known()
            .into_iter()
            .map(|(k, t)| ((k.addr, k.port, k.proto), (k, t)))
            .collect();
        for (id, (k, t)) in &want {
            if have.get(id).map(|(_, h)| h) != Some(t) {
                self.publish_any(k, t)?;
                report.written += 1;
            }
        }
        for (id, (k, _)) in &have {
            if !want.contains_key(id) {
                self.unpublish_any(k)?;
                report.removed += 1;
            }
        }
        report.written += self.recount_specific()?;
        self.set_published_from(&c.published_from)?;
        self.set_policy(&c.policy)?;

        // Endpoints, by interface and by address.
        let eps: StdHashMap<u32, EndpointInfo> = c
            .attachments
            .iter()
            .map(|a| {
                (
                    a.ifindex,
                    EndpointInfo {
                        addr: be_addr(a.ip),
                        network: a.net_id,
                        mac: a.mac,
                        host_mac: a.host_mac,
                        identity: self.attachment_identity(be_addr(a.ip), a.ip6.map(be_addr)),
                    },
                )
            })
            .collect();
        let peers: StdHashMap<u32, PeerInfo> = c
            .attachments
            .iter()
            .filter(|a| !a.ip.is_unspecified())
            .map(|a| {
                (
                    be_addr(a.ip),
                    PeerInfo {
                        ifindex: a.ifindex,
                        network: a.net_id,
                        mac: a.mac,
                        host_mac: a.host_mac,
                        identity: self.policy_identity_of(be_addr(a.ip)),
                    },
                )
            })
            .collect();
        report.add(sync_hash(map_names::ENDPOINTS, &mut self.endpoints, &eps)?);
        report.add(sync_hash(
            map_names::ENDPOINTS_BY_ADDR,
            &mut self.endpoints_by_addr,
            &peers,
        )?);

        // Members, then networks (whose member counts they are).
        let mut members = StdHashMap::new();
        for (net, ifs) in &c.members {
            for (slot, ifindex) in ifs.iter().enumerate() {
                members.insert(
                    MemberKey {
                        network: *net,
                        slot: slot as u32,
                    },
                    *ifindex,
                );
            }
        }
        self.members_written.clear();
        report.add(sync_hash(map_names::MEMBERS, &mut self.members, &members)?);
        let nets: StdHashMap<u32, _> = c
            .networks
            .iter()
            .map(|n| {
                let count = c.members.get(&n.net_id).map_or(0, Vec::len) as u32;
                (n.net_id, network_info(n, count))
            })
            .collect();
        report.add(sync_hash(map_names::NETWORKS, &mut self.networks, &nets)?);
        let loopback: StdHashMap<LoopbackKey, u8> = c
            .networks
            .iter()
            .flat_map(|n| {
                n.host_loopback_ports().into_iter().map(|p| {
                    (
                        LoopbackKey {
                            network: n.net_id,
                            port: be_port(p),
                            _pad: 0,
                        },
                        1u8,
                    )
                })
            })
            .collect();
        report.add(sync_hash(
            map_names::HOST_LOOPBACK,
            &mut self.host_loopback,
            &loopback,
        )?);

        report.add(self.sync6(&c.attachments, &c.networks, &c.members)?);

        // Subnets (an LPM trie: keys by prefix and address).
        let want: StdHashMap<(u32, u32), u32> = c
            .networks
            .iter()
            .filter_map(|n| {
                let s = n.v4?.subnet;
                Some(((u32::from(s.prefix()), be_addr(s.addr())), n.net_id))
            })
            .collect();
        report.add(super::subnets::sync_subnets(
            map_names::SUBNETS,
            &mut self.subnets,
            &mut self.no_subnet,
            &want,
        )?);
        // Whether a port is one to one depends on its endpoint's network, written just now
        // (what was read of the networks before is forgotten).
        self.replies.forget_routed();
        self.settle_all()?;
        Ok(report)
    }
}
