//! Who may reach what (kernel: `policy.rs`): the published ports' firewall, `PUBLISHED_FROM`;
//! network policy's `IPCACHE`, `POLICY_SUBJECTS`, `POLICY`, `POLICY_ON` and `POLICY_CT`.
use std::{collections::BTreeMap, net::Ipv4Addr};

use aya::maps::lpm_trie::Key as LpmKey;
use netpath_common::{map_names, FlowKey, PolicyKey};

use super::{be_addr, removed, Datapath, DatapathError};
use crate::{
    ipam::Subnet,
    policy::{Compiled, PublishedFrom},
};

fn trie_key(s: &Subnet) -> LpmKey<u32> {
    LpmKey::new(u32::from(s.prefix()), be_addr(s.addr()))
}

impl Datapath {
    /// Makes the published ports' firewall `list`, then removes the flows of clients it no
    /// longer lets in (their next packet is a new flow, and is refused). At no moment does the
    /// trie let in a client that neither the old nor the new list lets in: allowed prefixes
    /// are written before the deny-all entry, which goes before they do. Returns the flows
    /// removed.
    pub fn set_published_from(&mut self, list: &PublishedFrom) -> Result<usize, DatapathError> {
        let want = list.trie();
        let (denies, allows): (Vec<_>, Vec<_>) = want
            .iter()
            .partition(|(_, v)| *v == netpath_common::published_from::DENY);
        for (s, v) in allows.iter().chain(&denies) {
            self.published_from
                .insert(&trie_key(s), v, 0)
                .map_err(|e| DatapathError::Map(map_names::PUBLISHED_FROM, e))?;
        }
        let mut stale: Vec<LpmKey<u32>> = self
            .published_from
            .keys()
            .filter_map(Result::ok)
            .filter(|k| {
                !want.iter().any(|(s, _)| {
                    let w = trie_key(s);
                    (w.prefix_len(), w.data()) == (k.prefix_len(), k.data())
                })
            })
            .collect();
        // The widest (the deny-all) first.
        stale.sort_by_key(|k| k.prefix_len());
        for k in &stale {
            removed(map_names::PUBLISHED_FROM, self.published_from.remove(k))?;
        }
        // A flow's client is its replies' destination. Endpoints of this host's networks reach
        // published ports by hairpin, which the list does not govern.
        let local: Vec<Subnet> = self
            .subnets
            .keys()
            .filter_map(Result::ok)
            .filter_map(|k| {
                Subnet::new(Ipv4Addr::from(u32::from_be(k.data())), k.prefix_len() as u8).ok()
            })
            .collect();
        Ok(self
            .flush_flows(|k, _| {
                let client = Ipv4Addr::from(u32::from_be(k.dst_addr));
                !list.allows(client) && !local.iter().any(|s| s.contains(client))
            })
            .0)
    }
}

impl Datapath {
    /// Makes the policy maps hold `c`. No moment lets a flow through that neither the old
    /// nor the new content allows: rules and identities are added first, then the subjects
    /// (and `POLICY_ON`), and only then is what went removed, in the opposite order. Then
    /// the connections the new content denies are ended: their `POLICY_CT` entries and their
    /// published flows go, so their next packet is asked again. Returns how many went.
    pub fn set_policy(&mut self, c: &Compiled) -> Result<usize, DatapathError> {
        // What the maps hold: as this process last wrote them, else as read (an earlier
        // agent's). Only the difference is written.
        let old = match self.policy_written.take() {
            Some(old) => old,
            None => self.policy_content(),
        };
        let map = |name| move |e| DatapathError::Map(name, e);
        let rule_key = |(k, bits): &(PolicyKey, u32)| LpmKey::new(*bits, *k);
        for (k, n) in changed(&c.rules, &old.rules) {
            self.policy
                .insert(&rule_key(k), n, 0)
                .map_err(map(map_names::POLICY))?;
        }
        for (s, id) in changed(&c.ipcache, &old.ipcache) {
            self.ipcache
                .insert(&trie_key(s), id, 0)
                .map_err(map(map_names::IPCACHE))?;
        }
        for (id, dirs) in changed(&c.subjects, &old.subjects) {
            self.policy_subjects
                .insert(id, dirs, 0)
                .map_err(map(map_names::POLICY_SUBJECTS))?;
        }
        self.policy_on
            .set(0, u32::from(c.on()), 0)
            .map_err(map(map_names::POLICY_ON))?;
        for id in gone(&old.subjects, &c.subjects) {
            removed(map_names::POLICY_SUBJECTS, self.policy_subjects.remove(id))?;
        }
        for s in gone(&old.ipcache, &c.ipcache) {
            removed(map_names::IPCACHE, self.ipcache.remove(&trie_key(s)))?;
        }
        for k in gone(&old.rules, &c.rules) {
            removed(map_names::POLICY, self.policy.remove(&rule_key(k)))?;
        }
        self.policy_written = Some(c.clone());
        Ok(self.end_denied(c))
    }

    /// The policy maps' content as the kernel holds it.
    fn policy_content(&self) -> Compiled {
        Compiled {
            ipcache: self.policy_identities().into_iter().collect(),
            subjects: self.policy_subjects.iter().filter_map(Result::ok).collect(),
            rules: self
                .policy
                .iter()
                .filter_map(Result::ok)
                .map(|(k, n)| ((k.data(), k.prefix_len()), n))
                .collect(),
        }
    }

    /// The identities `IPCACHE` holds, by prefix.
    pub fn policy_identities(&self) -> Vec<(Subnet, u32)> {
        self.ipcache
            .iter()
            .filter_map(Result::ok)
            .map(|(k, id)| (subnet_of(&k), id))
            .collect()
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
        let doomed: Vec<FlowKey> = self
            .scan::<FlowKey, u32>(map_names::POLICY_CT, &self.whole.policy_ct)
            .into_iter()
            .map(|(k, _)| k)
            .filter(denied)
            .collect();
        for k in &doomed {
            // Gone already (expired, evicted) is as good as removed.
            let _ = self.policy_ct.remove(k);
        }
        // A published flow is keyed by its replies: the client connected to the endpoint.
        doomed.len() + self.flush_flows(|k, _| denied(&k.reversed())).0
    }
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

/// The subnet an `IPCACHE` key stands for.
fn subnet_of(k: &LpmKey<u32>) -> Subnet {
    Subnet::new(Ipv4Addr::from(u32::from_be(k.data())), k.prefix_len() as u8)
        .unwrap_or_else(|_| Subnet::new(Ipv4Addr::UNSPECIFIED, 0).expect("0.0.0.0/0"))
}
