//! NAT46 of published ports (kernel: `nat46.rs`): `NAT46` by an IPv6 client's 5-tuple and
//! `NAT46_REPLY` by the IPv4 replies'. The kernel allocates and records a flow's two entries;
//! the agent expires idle flows and flushes those whose endpoint or port goes away, both
//! entries together (the reply's entry names the client's, so it leads).
use std::collections::{HashMap as StdHashMap, HashSet};

use aya::{
    maps::{HashMap, MapData},
    Ebpf,
};
use netpath_common::{flow_flags, map_names, FlowKey, In6, Nat46, Nat46Reply, PortKey};

use super::{take_map, timeouts, Datapath, DatapathError};

/// The NAT46 tables' handles.
pub(super) struct Maps46 {
    flows: HashMap<MapData, FlowKey<In6>, Nat46>,
    replies: HashMap<MapData, FlowKey, Nat46Reply>,
}

impl Maps46 {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Maps46, DatapathError> {
        Ok(Maps46 {
            flows: take_map(ebpf, map_names::NAT46)?,
            replies: take_map(ebpf, map_names::NAT46_REPLY)?,
        })
    }
}

/// The client's 5-tuple of the flow whose replies are `rkey`.
fn client_key(rkey: &FlowKey, r: &Nat46Reply) -> FlowKey<In6> {
    FlowKey::new(r.client, r.client_port, r.addr, r.port, rkey.proto)
}

impl Datapath {
    /// NAT46 flows by the IPv6 client's 5-tuple.
    pub fn nat46_flows(&self) -> Vec<(FlowKey<In6>, Nat46)> {
        self.nat46.flows.iter().filter_map(Result::ok).collect()
    }

    /// NAT46 flows by their IPv4 replies' 5-tuple.
    pub fn nat46_replies(&self) -> Vec<(FlowKey, Nat46Reply)> {
        self.nat46.replies.iter().filter_map(Result::ok).collect()
    }

    /// Removes the NAT46 flows (both entries) whose reply entry `pred` selects, and client
    /// entries left without one (a reply's entry evicted); how many flows went, and how many
    /// there were.
    pub(super) fn flush_nat46(
        &mut self,
        pred: impl Fn(&FlowKey, &Nat46Reply, Option<&Nat46>) -> bool,
    ) -> (usize, usize) {
        let flows: StdHashMap<FlowKey<In6>, Nat46> = self.nat46_flows().into_iter().collect();
        let replies = self.nat46_replies();
        let seen = replies.len();
        let mut answered = HashSet::new();
        let mut doomed = Vec::new();
        for (rkey, r) in &replies {
            let ckey = client_key(rkey, r);
            answered.insert(ckey);
            if pred(rkey, r, flows.get(&ckey)) {
                doomed.push((Some(*rkey), ckey));
            }
        }
        let n = doomed.len();
        doomed.extend(
            flows
                .keys()
                .filter(|k| !answered.contains(*k))
                .map(|k| (None, *k)),
        );
        // Gone already (its flow ended meanwhile) is what was wanted.
        for (rkey, ckey) in &doomed {
            if let Some(rkey) = rkey {
                let _ = self.nat46.replies.remove(rkey);
            }
            let _ = self.nat46.flows.remove(ckey);
        }
        if n > 0 {
            tracing::debug!(map = map_names::NAT46, flows = n, "flushed");
        }
        (n, seen)
    }

    /// Removes the NAT46 flows of host-side veth `ifindex` that came in through `ports`
    /// (their host address, or any address for a port published on every one); how many.
    pub(super) fn flush_nat46_of(&mut self, ifindex: u32, ports: &[PortKey<In6>]) -> usize {
        let through = super::flows::came_through(ports);
        self.flush_nat46(|k, r, _| r.ifindex == ifindex && through(r.addr, r.port, k.proto))
            .0
    }

    /// Removes the NAT46 flows of the interfaces `pred` selects; how many.
    pub(super) fn flush_nat46_where(&mut self, pred: impl Fn(u32) -> bool) -> usize {
        self.flush_nat46(|_, r, _| pred(r.ifindex)).0
    }

    /// Removes the NAT46 flows idle past their [`timeouts`] at `now` (the last packet either
    /// way counts); how many went, and how many there were.
    pub(super) fn expire_nat46(&mut self, now: u64) -> (usize, usize) {
        self.flush_nat46(|k, r, f| {
            let last = f.map_or(r.last_seen, |f| f.last_seen.max(r.last_seen));
            let closing = (r.flags | f.map_or(0, |f| f.flags)) & flow_flags::CLOSING != 0;
            now.saturating_sub(last) > timeouts::of(k.proto, closing)
        })
    }
}
