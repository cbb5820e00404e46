//! Network policy (kernel: `policy.rs`): `IPCACHE`, `IPCACHE_PREFIXES`, `POLICY`,
//! `POLICY_RANGES`, `POLICY_ON` and `POLICY_CT`, and IPv6's `IPCACHE_PREFIXES6` (the rest of
//! IPv6's in `ipv6.rs`).
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use aya::maps::{lpm_trie::Key as LpmKey, HashMap, MapData};
use netpath_common::{map_names, policy_on, tracked, AddrIdentity, FlowKey, In6, PolicyKey};

use super::{be_addr, lpm_key, removed, subnet_of, Datapath, DatapathError};
use crate::{
    ipam::Subnet,
    policy::{Compiled, Prefix},
};

/// The policy maps' entries, as [`Compiled`] content is laid out in them: exact addresses and
/// one-port rules in the hash maps, the rest in the tries, the selections carried with the
/// addresses' identities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct PolicyMaps {
    /// `IPCACHE`: address (network order) → identity and selections.
    hosts: BTreeMap<u32, AddrIdentity>,
    /// `IPCACHE_PREFIXES`.
    prefixes: BTreeMap<Subnet, u32>,
    /// `IPCACHE_PREFIXES6`: IPv6's ipBlocks, of every length (`IPCACHE6` holds the endpoints'
    /// addresses, written with their records).
    prefixes6: BTreeMap<Subnet<Ipv6Addr>, u32>,
    /// `POLICY`: one-port rules.
    rules: BTreeMap<PolicyKey, u32>,
    /// `POLICY_RANGES`: (key, prefix bits).
    ranges: BTreeMap<(PolicyKey, u32), u32>,
    /// `POLICY_ON`'s flags.
    on: u32,
}

impl PolicyMaps {
    fn of(c: &Compiled) -> Self {
        let mut m = PolicyMaps::default();
        if !c.on() {
            return m;
        }
        for (s, id) in &c.ipcache {
            if s.prefix() == 32 {
                let selected = c.subjects.get(id).copied().unwrap_or(0);
                m.hosts.insert(
                    be_addr(s.addr()),
                    AddrIdentity {
                        identity: *id,
                        selected,
                    },
                );
            } else {
                m.prefixes.insert(*s, *id);
            }
        }
        m.prefixes6 = c.ipcache6.clone();
        for ((k, bits), n) in &c.rules {
            if *bits == PolicyKey::PORT {
                m.rules.insert(*k, *n);
            } else {
                m.ranges.insert((*k, *bits), *n);
            }
        }
        m.on = policy_on::ENFORCED
            | if m.ranges.is_empty() {
                0
            } else {
                policy_on::RANGES
            }
            | if m.prefixes.is_empty() && m.prefixes6.is_empty() {
                0
            } else {
                policy_on::PREFIXES
            };
        m
    }
}

impl Datapath {
    /// Makes the policy maps hold `c`. No moment lets a flow through that neither the old
    /// nor the new content allows: rules, prefixes and addresses' identities (with their
    /// selections) are added first, then `POLICY_ON` (keeping the tries looked up while they
    /// still hold old entries), and only then is what went removed, rules last. Then the
    /// connections the new content denies are ended: their `POLICY_CT` entries and their
    /// published flows go, so their next packet is asked again. Returns how many went.
    pub fn set_policy(&mut self, c: &Compiled) -> Result<usize, DatapathError> {
        let new = PolicyMaps::of(c);
        self.identities6 = identities6(c);
        // What the maps hold: as this process last wrote them, else as read (an earlier
        // agent's). Only the difference is written.
        let old = match self.policy_written.take() {
            Some(old) => old,
            None => self.policy_maps(),
        };
        let map = |name| move |e| DatapathError::Map(name, e);
        let range_key = |(k, bits): &(PolicyKey, u32)| LpmKey::new(*bits, *k);
        for (k, n) in changed(&new.rules, &old.rules) {
            self.policy
                .insert(k, n, 0)
                .map_err(map(map_names::POLICY))?;
        }
        for (k, n) in changed(&new.ranges, &old.ranges) {
            self.policy_ranges
                .insert(&range_key(k), n, 0)
                .map_err(map(map_names::POLICY_RANGES))?;
        }
        for (s, id) in changed(&new.prefixes, &old.prefixes) {
            self.ipcache_prefixes
                .insert(&lpm_key(s), id, 0)
                .map_err(map(map_names::IPCACHE_PREFIXES))?;
        }
        for (s, id) in changed(&new.prefixes6, &old.prefixes6) {
            self.v6
                .ipcache_prefixes_mut()
                .insert(&lpm_key(s), id, 0)
                .map_err(map(map_names::IPCACHE_PREFIXES6))?;
        }
        for (a, id) in changed(&new.hosts, &old.hosts) {
            self.ipcache
                .insert(a, id, 0)
                .map_err(map(map_names::IPCACHE))?;
        }
        self.restamp_endpoints(&new.hosts)?;
        self.restamp6(&new.hosts)?;
        let tries = policy_on::RANGES | policy_on::PREFIXES;
        let during = if new.on == 0 {
            0
        } else {
            new.on | (old.on & tries)
        };
        let firewall = self.firewall_flag();
        self.policy_on
            .set(0, during | firewall, 0)
            .map_err(map(map_names::POLICY_ON))?;
        for a in gone(&old.hosts, &new.hosts) {
            removed(map_names::IPCACHE, self.ipcache.remove(a))?;
        }
        for s in gone(&old.prefixes, &new.prefixes) {
            removed(
                map_names::IPCACHE_PREFIXES,
                self.ipcache_prefixes.remove(&lpm_key(s)),
            )?;
        }
        for s in gone(&old.prefixes6, &new.prefixes6) {
            removed(
                map_names::IPCACHE_PREFIXES6,
                self.v6.ipcache_prefixes_mut().remove(&lpm_key(s)),
            )?;
        }
        for k in gone(&old.ranges, &new.ranges) {
            removed(
                map_names::POLICY_RANGES,
                self.policy_ranges.remove(&range_key(k)),
            )?;
        }
        for k in gone(&old.rules, &new.rules) {
            removed(map_names::POLICY, self.policy.remove(k))?;
        }
        if during != new.on {
            self.policy_on
                .set(0, new.on | firewall, 0)
                .map_err(map(map_names::POLICY_ON))?;
        }
        self.policy_written = Some(new);
        Ok(self.end_denied(c) + self.end_denied6(c))
    }

    /// An address's identity as the policy maps have it (WORLD when they do not, as the
    /// kernel would find it): what its endpoint's records carry.
    pub(super) fn policy_identity_of(&self, addr: u32) -> AddrIdentity {
        let hosts = self.policy_written.as_ref().map(|m| &m.hosts);
        identity_in(hosts, addr)
    }

    /// The identity of an endpoint's attachment: its IPv4 address's, or for an attachment of
    /// IPv6 alone (no IPv4 address: `ip` unspecified) its IPv6 address's.
    pub(super) fn attachment_identity(&self, ip: u32, ip6: Option<In6>) -> AddrIdentity {
        match ip6 {
            Some(a6) if ip == 0 => self
                .identities6
                .get(&a6)
                .copied()
                .unwrap_or(AddrIdentity::WORLD),
            _ => self.policy_identity_of(ip),
        }
    }

    /// Brings every endpoint record (`ENDPOINTS_BY_ADDR`, `ENDPOINTS`) whose identity differs
    /// from `hosts` (the policy maps' new content) in step. Every record is looked at, not
    /// only the addresses whose identity changed: a record written before the maps were read
    /// back (a new process) may carry another.
    fn restamp_endpoints(
        &mut self,
        hosts: &BTreeMap<u32, AddrIdentity>,
    ) -> Result<(), DatapathError> {
        let stale: Vec<(u32, netpath_common::PeerInfo)> = self
            .endpoints_by_addr
            .iter()
            .filter_map(Result::ok)
            .filter(|(a, p)| p.identity != identity_in(Some(hosts), *a))
            .collect();
        for (addr, mut peer) in stale {
            let identity = identity_in(Some(hosts), addr);
            if let Ok(mut info) = self.endpoints.get(&peer.ifindex, 0) {
                info.identity = identity;
                self.endpoints
                    .insert(peer.ifindex, info, 0)
                    .map_err(|e| DatapathError::Map(map_names::ENDPOINTS, e))?;
            }
            peer.identity = identity;
            self.endpoints_by_addr
                .insert(addr, peer, 0)
                .map_err(|e| DatapathError::Map(map_names::ENDPOINTS_BY_ADDR, e))?;
        }
        // Endpoints of IPv6 alone (no record by an IPv4 address): by their IPv6 address.
        let alone: Vec<(u32, netpath_common::EndpointInfo)> = self
            .endpoints
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, info)| info.addr == 0)
            .collect();
        for (ifindex, mut info) in alone {
            let a6 = self.endpoint6_addr(ifindex);
            let identity = self.attachment_identity(0, a6);
            if identity != info.identity {
                info.identity = identity;
                self.endpoints
                    .insert(ifindex, info, 0)
                    .map_err(|e| DatapathError::Map(map_names::ENDPOINTS, e))?;
            }
        }
        Ok(())
    }

    /// The policy maps' entries as the kernel holds them.
    fn policy_maps(&self) -> PolicyMaps {
        PolicyMaps {
            hosts: self.ipcache.iter().filter_map(Result::ok).collect(),
            prefixes: self
                .ipcache_prefixes
                .iter()
                .filter_map(Result::ok)
                .map(|(k, id)| {
                    let all = || Subnet::new(Ipv4Addr::UNSPECIFIED, 0).expect("0.0.0.0/0");
                    (subnet_of(&k).unwrap_or_else(all), id)
                })
                .collect(),
            prefixes6: self
                .v6
                .ipcache_prefixes()
                .iter()
                .filter_map(Result::ok)
                .filter_map(|(k, id)| Some((subnet_of(&k)?, id)))
                .collect(),
            rules: self.policy.iter().filter_map(Result::ok).collect(),
            ranges: self
                .policy_ranges
                .iter()
                .filter_map(Result::ok)
                .map(|(k, n)| ((k.data(), k.prefix_len()), n))
                .collect(),
            on: self.policy_on.get(&0, 0).unwrap_or(0) & !policy_on::FIREWALL,
        }
    }

    /// The identities the maps hold, by prefix of either family (an exact IPv4 address as
    /// its /32; IPv6's ipBlocks of every length).
    pub fn policy_identities(&self) -> Vec<(Prefix, u32)> {
        let m = self.policy_maps();
        let hosts = m.hosts.iter().filter_map(|(a, id)| {
            Subnet::new(Ipv4Addr::from(u32::from_be(*a)), 32)
                .ok()
                .map(|s| (Prefix::V4(s), id.identity))
        });
        let prefixes = m.prefixes.into_iter().map(|(s, id)| (Prefix::V4(s), id));
        let prefixes6 = m.prefixes6.into_iter().map(|(s, id)| (Prefix::V6(s), id));
        hosts.chain(prefixes).chain(prefixes6).collect()
    }

    /// Ends the connections `c` denies: tracked ones and published ones.
    fn end_denied(&mut self, c: &Compiled) -> usize {
        let v4 = |a: u32| Ipv4Addr::from(u32::from_be(a));
        let denied = |k: &FlowKey| {
            !c.admits(
                v4(k.src_addr),
                v4(k.dst_addr),
                u16::from_be(k.dst_port),
                k.proto,
            )
        };
        // Read in batches: the table may hold as many connections as the flow table.
        let tracked = self.scan::<FlowKey, u32>(map_names::POLICY_CT, &self.whole.policy_ct);
        let connections = end_tracked(&mut self.policy_ct, tracked, denied);
        // A published flow is keyed by its replies: the client connected to the endpoint.
        connections + self.flush_flows(|k, _| denied(&k.reversed())).0
    }
}

/// Removes from `table` the connections of `tracked` (its entries) that `denied` says no to;
/// returns how many. Each connection is there both ways; both are judged the way its first
/// packet went.
pub(super) fn end_tracked<A: netpath_common::Addr + aya::Pod>(
    table: &mut HashMap<MapData, FlowKey<A>, u32>,
    tracked: Vec<(FlowKey<A>, u32)>,
    denied: impl Fn(&FlowKey<A>) -> bool,
) -> usize {
    let doomed: Vec<(FlowKey<A>, u32)> = tracked
        .into_iter()
        .filter(|(k, way)| match *way {
            tracked::REPLY => denied(&k.reversed()),
            _ => denied(k),
        })
        .collect();
    for (k, _) in &doomed {
        // Gone already (expired, evicted) is as good as removed.
        let _ = table.remove(k);
    }
    doomed
        .iter()
        .filter(|(_, way)| *way != tracked::REPLY)
        .count()
}

/// The identities `c` gives addresses of IPv6 alone (its exact IPv6 entries), with the
/// directions policies select them in.
fn identities6(c: &Compiled) -> std::collections::HashMap<In6, AddrIdentity> {
    c.ipcache6
        .iter()
        .filter(|(s, _)| s.prefix() == 128)
        .map(|(s, id)| {
            let selected = c.subjects.get(id).copied().unwrap_or(0);
            let identity = AddrIdentity {
                identity: *id,
                selected,
            };
            (be_addr(s.addr()), identity)
        })
        .collect()
}

/// `addr`'s identity in `hosts`, WORLD when it has none.
fn identity_in(hosts: Option<&BTreeMap<u32, AddrIdentity>>, addr: u32) -> AddrIdentity {
    hosts
        .and_then(|h| h.get(&addr))
        .copied()
        .unwrap_or(AddrIdentity::WORLD)
}

/// The entries of `new` that `old` does not hold with the same value.
fn changed<'a, K: Ord, V: PartialEq>(
    new: &'a BTreeMap<K, V>,
    old: &'a BTreeMap<K, V>,
) -> impl Iterator<Item = (&'a K, &'a V)> {
    new.iter().filter(move |(k, v)| old.get(k) != Some(v))
}

/// The keys of `old` that `new` does not have.
fn gone<'a, K: Ord, V>(
    old: &'a BTreeMap<K, V>,
    new: &'a BTreeMap<K, V>,
) -> impl Iterator<Item = &'a K> {
    old.keys().filter(move |k| !new.contains_key(k))
}
