//! The published ports' firewall (kernel: `policy::published_from`): `PUBLISHED_FROM` and
//! `PUBLISHED_FROM6`, a trie per family, written so that no moment lets in a client neither
//! the old list nor the new one does, then the flows of clients it no longer lets in ended.
use std::net::{Ipv4Addr, Ipv6Addr};

use aya::maps::{lpm_trie::Key as LpmKey, LpmTrie, MapData};
use netpath_common::{map_names, policy_on, In6};

use super::{lpm_key, removed, subnet_of, Datapath, DatapathError};
use crate::{
    ipam::{Family, Subnet},
    policy::PublishedFrom,
};

/// Makes a family's firewall trie hold `want`, never letting in a client that neither what it
/// held nor `want` lets in: allowed prefixes are written before the deny-all entry, which goes
/// before they do.
fn sync_firewall<A: Family>(
    name: &'static str,
    trie: &mut LpmTrie<MapData, A::Kernel, u8>,
    want: &[(Subnet<A>, u8)],
) -> Result<(), DatapathError>
where
    A::Kernel: aya::Pod,
{
    let (denies, allows): (Vec<_>, Vec<_>) = want
        .iter()
        .partition(|(_, v)| *v == netpath_common::published_from::DENY);
    for (s, v) in allows.iter().chain(&denies) {
        trie.insert(&lpm_key(s), v, 0)
            .map_err(|e| DatapathError::Map(name, e))?;
    }
    let mut stale: Vec<LpmKey<A::Kernel>> = trie
        .keys()
        .filter_map(Result::ok)
        .filter(|k| {
            !want.iter().any(|(s, _)| {
                let w = lpm_key(s);
                (w.prefix_len(), w.data()) == (k.prefix_len(), k.data())
            })
        })
        .collect();
    // The widest (the deny-all) first.
    stale.sort_by_key(|k| k.prefix_len());
    for k in &stale {
        removed(name, trie.remove(k))?;
    }
    Ok(())
}

/// The subnets a family's trie of networks holds.
fn subnets_of<A: Family>(trie: &LpmTrie<MapData, A::Kernel, u32>) -> Vec<Subnet<A>>
where
    A::Kernel: aya::Pod,
{
    trie.keys()
        .filter_map(Result::ok)
        .filter_map(|k| subnet_of(&k))
        .collect()
}

impl Datapath {
    /// Makes the published ports' firewall `list`, both families' tries, then removes the
    /// flows of clients it no longer lets in (their next packet is a new flow, and is
    /// refused). Returns the flows removed.
    pub fn set_published_from(&mut self, list: &PublishedFrom) -> Result<usize, DatapathError> {
        let (trie, trie6) = (list.trie(), list.trie6());
        let on = !trie.is_empty() || !trie6.is_empty();
        // Flows from uplinks are kept (`policy_on::FIREWALL`) before any client is judged,
        // and translated with no state again only once none is.
        if on {
            self.set_firewall_on(true)?;
        }
        sync_firewall(map_names::PUBLISHED_FROM, &mut self.published_from, &trie)?;
        sync_firewall(
            map_names::PUBLISHED_FROM6,
            self.v6.published_from_mut(),
            &trie6,
        )?;
        if !on {
            self.set_firewall_on(false)?;
        }
        // A flow's client is its replies' destination. Endpoints of this host's networks reach
        // published ports by hairpin, which the list does not govern.
        let local: Vec<Subnet<Ipv4Addr>> = subnets_of(&self.subnets);
        let local6: Vec<Subnet<Ipv6Addr>> = subnets_of(self.v6.subnets());
        let v4 = self.flush_flows::<u32>(|k, _| {
            let client = Ipv4Addr::from_kernel(k.dst_addr);
            !list.allows(client.into()) && !local.iter().any(|s| s.contains(client))
        });
        let v6 = self.flush_flows::<In6>(|k, _| {
            let client = Ipv6Addr::from_kernel(k.dst_addr);
            !list.allows(client.into()) && !local6.iter().any(|s| s.contains(client))
        });
        Ok(v4.0 + v6.0)
    }
}

impl Datapath {
    /// Sets or clears `POLICY_ON`'s firewall flag, the policy's flags as they are.
    fn set_firewall_on(&mut self, on: bool) -> Result<(), DatapathError> {
        let word = self.policy_on.get(&0, 0).unwrap_or(0) & !policy_on::FIREWALL;
        let word = word | if on { policy_on::FIREWALL } else { 0 };
        self.policy_on
            .set(0, word, 0)
            .map_err(|e| DatapathError::Map(map_names::POLICY_ON, e))
    }

    /// `POLICY_ON`'s firewall flag as the map holds it (kept by the policy's writes).
    pub(super) fn firewall_flag(&self) -> u32 {
        self.policy_on.get(&0, 0).unwrap_or(0) & policy_on::FIREWALL
    }
}
