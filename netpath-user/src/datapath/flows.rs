//! The flow table of published ports (kernel: `flows.rs`): `FLOWS`, an LRU map keyed by a
//! reply's 5-tuple. The kernel records flows and stamps them; the agent expires idle ones and
//! flushes them when what they lead to goes away, so no stale translation outlives a port or
//! an interface.
use std::{collections::HashSet, net::Ipv4Addr};

use netpath_common::{flow_flags, map_names, FlowKey, FlowNat, PortKey};

#[cfg(feature = "testing")]
use super::DatapathError;
use super::{be_addr, timeouts, Datapath};

impl Datapath {
    /// Removes the flows of host-side veth `ifindex` that came in through `ports` (their
    /// host address, or any address for a port published on every one); returns how many.
    pub fn flush_flows_of(&mut self, ifindex: u32, ports: &[PortKey]) -> usize {
        let doomed: HashSet<(u32, u16, u8)> =
            ports.iter().map(|k| (k.addr, k.port, k.proto)).collect();
        self.flush_flows(|k, v| {
            v.ifindex == ifindex
                && (doomed.contains(&(v.addr, v.port, k.proto))
                    || doomed.contains(&(0, v.port, k.proto)))
        })
        .0
    }

    /// Removes the published flows of an interface going away: those it serves, and those
    /// its address answers; returns how many.
    pub fn flush_interface_flows(&mut self, ifindex: u32, addr: Ipv4Addr) -> usize {
        let addr = be_addr(addr);
        self.flush_flows(|k, v| v.ifindex == ifindex || k.src_addr == addr)
            .0
    }

    /// Removes the published flows of every interface not in `live`; returns how many.
    pub fn flush_flows_except(&mut self, live: &HashSet<u32>) -> usize {
        self.flush_flows(|_, v| !live.contains(&v.ifindex)).0
    }

    /// Removes published flows idle past their [`timeouts`] at `now` (CLOCK_MONOTONIC ns;
    /// the kernel stamps flows with the coarse clock, at most a few ms behind). Returns how
    /// many went and how many are left.
    pub fn expire_flows(&mut self, now: u64) -> (usize, usize) {
        let (n, seen) = self.flush_flows(|k, v| {
            let closing = v.flags & flow_flags::CLOSING != 0;
            now.saturating_sub(v.last_seen) > timeouts::of(k.proto, closing)
        });
        (n, seen - n)
    }

    /// The translation recorded for replies with 5-tuple `key`.
    pub fn flow(&self, key: &FlowKey) -> Option<FlowNat> {
        self.flows.get(key, 0).ok()
    }

    /// How many published flows the table holds.
    pub fn flow_count(&self) -> usize {
        self.flows().len()
    }

    /// Every published flow.
    fn flows(&self) -> Vec<(FlowKey, FlowNat)> {
        self.scan(map_names::FLOWS, &self.whole.flows)
    }

    /// Records a flow as the kernel would (tests and benchmarks set up hits this way).
    #[cfg(feature = "testing")]
    pub fn insert_flow(&mut self, key: FlowKey, nat: FlowNat) -> Result<(), DatapathError> {
        self.flows
            .insert(key, nat, 0)
            .map_err(|e| DatapathError::Map(map_names::FLOWS, e))
    }

    /// Removes the flows `pred` selects: how many, and how many there were.
    pub(super) fn flush_flows(
        &mut self,
        pred: impl Fn(&FlowKey, &FlowNat) -> bool,
    ) -> (usize, usize) {
        let all = self.flows();
        let seen = all.len();
        let doomed: Vec<FlowKey> = all
            .into_iter()
            .filter(|(k, v)| pred(k, v))
            .map(|(k, _)| k)
            .collect();
        let n = doomed
            .iter()
            .filter(|k| self.flows.remove(k).is_ok())
            .count();
        if n > 0 {
            tracing::debug!(map = map_names::FLOWS, flows = n, "flushed");
        }
        (n, seen)
    }
}
