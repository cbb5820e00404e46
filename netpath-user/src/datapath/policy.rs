//! Who may reach what (kernel: `policy.rs`): the published ports' firewall, `PUBLISHED_FROM`.
use std::net::Ipv4Addr;

use aya::maps::lpm_trie::Key as LpmKey;
use netpath_common::map_names;

use super::{be_addr, removed, Datapath, DatapathError};
use crate::{ipam::Subnet, policy::PublishedFrom};

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
