//! Outbound source NAT (kernel: `snat.rs`): `SNAT` by the original 5-tuple, `SNAT_REV` by the
//! reply's, and `UPLINKS`, the addresses outbound flows leave with; IPv6's twins (`SNAT6`,
//! `SNAT_REV6`, `UPLINKS6`) the same way. The kernel allocates; the agent expires idle flows
//! and flushes those of interfaces that go away, both directions together, both families
//! alike.
use std::{
    collections::{HashMap as StdHashMap, HashSet},
    net::Ipv4Addr,
};

use aya::maps::{HashMap, MapData};
use netpath_common::{map_names, snat_flags, Addr, FlowKey, SnatNat, SnatRev};

use super::{be_addr, removed, timeouts, Datapath, DatapathError};

/// One family's outbound NAT tables.
pub(super) struct Tables<'a, A: Addr> {
    pub snat: &'a mut HashMap<MapData, FlowKey<A>, SnatNat<A>>,
    pub snat_rev: &'a mut HashMap<MapData, FlowKey<A>, SnatRev<A>>,
}

impl<A: Addr + aya::Pod> Tables<'_, A> {
    /// Removes the flows (both directions) of `replies` that `pred` selects.
    fn flush(
        &mut self,
        replies: Vec<(FlowKey<A>, SnatRev<A>)>,
        pred: impl Fn(&SnatRev<A>) -> bool,
    ) -> usize {
        let doomed: Vec<(FlowKey<A>, FlowKey<A>)> = replies
            .into_iter()
            .filter(|(_, rev)| pred(rev))
            .map(|(rkey, rev)| {
                // The original flow: from the endpoint to the reply's source.
                let fwd =
                    FlowKey::new(rev.addr, rev.port, rkey.src_addr, rkey.src_port, rkey.proto);
                (fwd, rkey)
            })
            .collect();
        // Expired entries: one already gone (its flow ended meanwhile) is what was wanted.
        for (fwd, rkey) in &doomed {
            let _ = self.snat.remove(fwd);
            let _ = self.snat_rev.remove(rkey);
        }
        doomed.len()
    }

    /// Removes the flows idle past their [`timeouts`] at `now`; (removed, left).
    fn expire(
        &mut self,
        flows: Vec<(FlowKey<A>, SnatNat<A>)>,
        replies: Vec<(FlowKey<A>, SnatRev<A>)>,
        now: u64,
    ) -> (usize, usize) {
        let replies: StdHashMap<FlowKey<A>, SnatRev<A>> = replies.into_iter().collect();
        let seen = flows.len();
        let mut doomed = Vec::new();
        for (k, nat) in flows {
            let rkey = k.reply_to(nat.addr, nat.port);
            let rev = replies.get(&rkey).copied();
            let last = rev.map_or(nat.last_seen, |r| r.last_seen.max(nat.last_seen));
            let closing = (nat.flags | rev.map_or(0, |r| r.flags)) & snat_flags::CLOSING != 0;
            if now.saturating_sub(last) > timeouts::of(k.proto, closing) {
                doomed.push((k, rkey));
            }
        }
        // As above: gone already is what was wanted.
        for (k, r) in &doomed {
            let _ = self.snat.remove(k);
            let _ = self.snat_rev.remove(r);
        }
        (doomed.len(), seen - doomed.len())
    }
}

impl Datapath {
    /// Makes `uplinks` (ifindex → address) the sources of outbound NAT.
    pub fn set_uplinks(&mut self, uplinks: &[(u32, Ipv4Addr)]) -> Result<(), DatapathError> {
        let err = |e| DatapathError::Map(map_names::UPLINKS, e);
        let want: StdHashMap<u32, u32> = uplinks.iter().map(|(i, a)| (*i, be_addr(*a))).collect();
        for k in self
            .uplinks
            .keys()
            .filter_map(Result::ok)
            .collect::<Vec<_>>()
        {
            if !want.contains_key(&k) {
                removed(map_names::UPLINKS, self.uplinks.remove(&k))?;
            }
        }
        for (i, a) in want {
            self.uplinks.insert(i, a, 0).map_err(err)?;
        }
        self.set_reply_uplink(false, uplinks.iter().map(|(_, a)| (*a).into()))
    }

    /// Removes the outbound flows of host-side veth `ifindex`; returns how many.
    pub fn flush_outbound_of(&mut self, ifindex: u32) -> usize {
        self.flush_outbound(|i| i == ifindex)
    }

    /// Removes the outbound flows of every interface not in `live`; returns how many.
    pub fn flush_outbound_except(&mut self, live: &HashSet<u32>) -> usize {
        self.flush_outbound(|i| !live.contains(&i))
    }

    /// How many outbound flows the tables hold (both families).
    pub fn outbound_count(&self) -> usize {
        self.outbound_flows().len() + self.outbound_flows6().len()
    }

    /// Outbound flows by their original 5-tuple.
    pub fn outbound_flows(&self) -> Vec<(FlowKey, SnatNat)> {
        self.scan(map_names::SNAT, &self.whole.snat)
    }

    /// Outbound flows by their reply's 5-tuple.
    fn outbound_replies(&self) -> Vec<(FlowKey, SnatRev)> {
        self.scan(map_names::SNAT_REV, &self.whole.snat_rev)
    }

    /// Records both directions of an outbound flow as the kernel would (tests).
    #[cfg(feature = "testing")]
    pub fn insert_outbound(
        &mut self,
        key: FlowKey,
        nat: SnatNat,
        rev: SnatRev,
    ) -> Result<(), DatapathError> {
        self.snat
            .insert(key, nat, 0)
            .map_err(|e| DatapathError::Map(map_names::SNAT, e))?;
        self.snat_rev
            .insert(key.reply_to(nat.addr, nat.port), rev, 0)
            .map_err(|e| DatapathError::Map(map_names::SNAT_REV, e))
    }

    /// Reply-side entries (tests check both directions go together).
    pub fn outbound_reply_count(&self) -> usize {
        self.outbound_replies().len()
    }

    /// IPv4's outbound NAT tables.
    fn snat_tables(&mut self) -> Tables<'_, u32> {
        Tables {
            snat: &mut self.snat,
            snat_rev: &mut self.snat_rev,
        }
    }

    /// Removes the outbound flows (both directions, both families) whose reply side's
    /// interface `pred` selects.
    fn flush_outbound(&mut self, pred: impl Fn(u32) -> bool) -> usize {
        let replies = self.outbound_replies();
        let mut n = self.snat_tables().flush(replies, |r| pred(r.ifindex));
        let replies = self.outbound_replies6();
        n += self.snat_tables6().flush(replies, |r| pred(r.ifindex));
        n
    }

    /// Removes outbound flows idle past their [`timeouts`] at `now` (CLOCK_MONOTONIC ns, the
    /// clock of `bpf_ktime_get_ns`); the last packet either way counts. Both directions go
    /// together. Returns how many flows were removed and how many are left.
    pub fn expire_outbound(&mut self, now: u64) -> (usize, usize) {
        let (flows, replies) = (self.outbound_flows(), self.outbound_replies());
        let (gone, left) = self.snat_tables().expire(flows, replies, now);
        let (flows, replies) = (self.outbound_flows6(), self.outbound_replies6());
        let (gone6, left6) = self.snat_tables6().expire(flows, replies, now);
        (gone + gone6, left + left6)
    }
}
