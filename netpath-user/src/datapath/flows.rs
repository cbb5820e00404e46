//! The flow tables of published ports (kernel: `flows.rs`): `FLOWS` and `FLOWS6`, LRU maps
//! keyed by a reply's 5-tuple (and NAT46's, [`super::nat46`], flushed and expired with them). The kernel records flows and stamps them; the agent expires idle ones and
//! flushes them when what they lead to goes away, so no stale translation outlives a port or
//! an interface. `NEW_FLOW_RATE` says how fast each CPU may begin new flows (the flood
//! guard), `NEW_FLOW_TAT` is where each CPU stands in that schedule.
use std::{collections::HashSet, net::Ipv4Addr, os::fd::AsFd};

use netpath_common::{flow_flags, map_names, Addr, FlowKey, FlowNat, In6, NewFlowRate, PortKey};

use super::DatapathError;
use super::{
    anyport::{AnyKey, AnyPortKey},
    be_addr,
    ports::PortFamily,
    sys, timeouts, Datapath,
};

/// Whether a flow that reached host address `addr`, `port` and `proto` came in through one
/// of `ports` (that address, or every address for a port published on every one).
pub(super) fn came_through<A: Addr>(ports: &[PortKey<A>]) -> impl Fn(A, u16, u8) -> bool {
    let published: HashSet<(A, u16, u8)> =
        ports.iter().map(|k| (k.addr, k.port, k.proto)).collect();
    move |addr, port, proto| {
        published.contains(&(addr, port, proto)) || published.contains(&(A::ANY, port, proto))
    }
}

impl Datapath {
    /// Lets each CPU begin at most `per_cpu` new flows a second (the flood guard; 0: no
    /// limit). A new flow past it is dropped and counted (`drop_new_flow_rate`).
    pub fn set_new_flow_rate(&mut self, per_cpu: u32) -> Result<(), DatapathError> {
        self.new_flow_rate
            .set(0, NewFlowRate::per_cpu(per_cpu), 0)
            .map_err(|e| DatapathError::Map(map_names::NEW_FLOW_RATE, e))
    }

    /// How many new flows a second each CPU may begin (0: no limit).
    pub fn new_flow_rate(&self) -> u64 {
        self.new_flow_rate.get(&0, 0).map_or(0, |r| r.per_second())
    }

    /// Removes the published flows of host-side veth `ifindex` through `ports` (as the agent
    /// holds them), of both families; how many.
    pub fn flush_flows_of_any(&mut self, ifindex: u32, ports: &[AnyPortKey]) -> usize {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for k in ports {
            match AnyKey::of(k) {
                AnyKey::V4(k) => v4.push(k),
                AnyKey::V6(k) => v6.push(k),
            }
        }
        self.flush_flows_of(ifindex, &v4)
            + self.flush_flows_of(ifindex, &v6)
            + self.flush_nat46_of(ifindex, &v6)
    }

    /// Removes the flows of host-side veth `ifindex` that came in through `ports` (their
    /// host address, or any address for a port published on every one); returns how many.
    pub fn flush_flows_of<A: PortFamily>(&mut self, ifindex: u32, ports: &[PortKey<A>]) -> usize {
        let through = came_through(ports);
        self.flush_flows::<A>(|k, v| v.ifindex == ifindex && through(v.addr, v.port, k.proto))
            .0
    }

    /// Removes the published flows of an interface going away: those it serves, and those
    /// its address answers; returns how many.
    pub fn flush_interface_flows(&mut self, ifindex: u32, addr: Ipv4Addr) -> usize {
        let addr = be_addr(addr);
        self.flush_flows::<u32>(|k, v| v.ifindex == ifindex || k.src_addr == addr)
            .0
            + self.flush_flows::<In6>(|_, v| v.ifindex == ifindex).0
            + self.flush_nat46_where(|i| i == ifindex)
    }

    /// Removes the published flows of every interface not in `live`; returns how many.
    pub fn flush_flows_except(&mut self, live: &HashSet<u32>) -> usize {
        self.flush_flows::<u32>(|_, v| !live.contains(&v.ifindex)).0
            + self.flush_flows::<In6>(|_, v| !live.contains(&v.ifindex)).0
            + self.flush_nat46_where(|i| !live.contains(&i))
    }

    /// Removes published flows idle past their [`timeouts`] at `now` (CLOCK_MONOTONIC ns;
    /// the kernel stamps flows with the coarse clock, at most a few ms behind). Returns how
    /// many went and how many are left.
    pub fn expire_flows(&mut self, now: u64) -> (usize, usize) {
        let (n4, seen4) = self.expire::<u32>(now);
        let (n6, seen6) = self.expire::<In6>(now);
        let (n46, seen46) = self.expire_nat46(now);
        (n4 + n6 + n46, seen4 + seen6 + seen46 - n4 - n6 - n46)
    }

    fn expire<A: PortFamily>(&mut self, now: u64) -> (usize, usize) {
        self.flush_flows::<A>(|k, v| {
            let closing = v.flags & flow_flags::CLOSING != 0;
            now.saturating_sub(v.last_seen) > timeouts::of(k.proto, closing)
        })
    }

    /// The translation recorded for replies with 5-tuple `key`.
    pub fn flow<A: PortFamily>(&self, key: &FlowKey<A>) -> Option<FlowNat<A>> {
        A::flows(self).get(key, 0).ok()
    }

    /// How many published flows the tables hold (counted as they are read: a full table is
    /// not copied).
    pub fn flow_count(&self) -> usize {
        self.count_flows::<u32>() + self.count_flows::<In6>() + self.nat46_replies().len()
    }

    fn count_flows<A: PortFamily>(&self) -> usize {
        let mut n = 0;
        let read = sys::for_each_batch(
            A::whole(self)[2].as_fd(),
            |keys: &[FlowKey<A>], _: &[FlowNat<A>]| n += keys.len(),
        );
        if let Err(e) = read {
            tracing::warn!(map = A::NAMES[2], "reading the map: {e}");
        }
        n
    }

    /// Records a flow as the kernel would (tests and benchmarks set up hits this way).
    #[cfg(feature = "testing")]
    pub fn insert_flow<A: PortFamily>(
        &mut self,
        key: FlowKey<A>,
        nat: FlowNat<A>,
    ) -> Result<(), DatapathError> {
        A::maps(self)
            .flows
            .insert(key, nat, 0)
            .map_err(|e| DatapathError::Map(A::NAMES[2], e))
    }

    /// Removes the flows of family `A` that `pred` selects: how many, and how many there were.
    /// The table is read a batch at a time and each batch's doomed flows removed before the
    /// next is read, so a full table (a flood's) costs the agent no memory beyond a batch.
    pub(super) fn flush_flows<A: PortFamily>(
        &mut self,
        pred: impl Fn(&FlowKey<A>, &FlowNat<A>) -> bool,
    ) -> (usize, usize) {
        let Ok(fd) = A::whole(self)[2].try_clone() else {
            return (0, 0);
        };
        let flows = A::maps(self).flows;
        let (mut n, mut seen) = (0, 0);
        let read = sys::for_each_batch(fd.as_fd(), |keys: &[FlowKey<A>], values| {
            seen += keys.len();
            n += keys
                .iter()
                .zip(values)
                .filter(|(k, v)| pred(k, v) && flows.remove(k).is_ok())
                .count();
        });
        if let Err(e) = read {
            tracing::warn!(map = A::NAMES[2], "reading the map: {e}");
        }
        if n > 0 {
            tracing::debug!(map = A::NAMES[2], flows = n, "flushed");
        }
        (n, seen)
    }
}
