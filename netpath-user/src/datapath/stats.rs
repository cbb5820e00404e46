//! Counters and drop reasons (kernel: `stats.rs`, the per-CPU `STATS` array), and how full
//! each map the agent watches is.
use netpath_common::Counter;

use super::Datapath;

/// What the datapath counted, and what its maps hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatapathStats {
    /// Every counter, summed over CPUs, in [`Counter::ALL`] order.
    pub counters: Vec<(Counter, u64)>,
    /// Published-port flows.
    pub flows: usize,
    /// Outbound (source NAT) flows.
    pub outbound_flows: usize,
    /// Published ports in the maps.
    pub published_ports: usize,
    /// Endpoint interfaces in the maps.
    pub endpoints: usize,
    /// Networks in the maps.
    pub networks: usize,
}

impl Datapath {
    /// Sums of every counter over all CPUs.
    pub fn counters(&self) -> Vec<(Counter, u64)> {
        Counter::ALL
            .iter()
            .map(|c| {
                let v = self
                    .stats
                    .get(&(*c as u32), 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                (*c, v)
            })
            .collect()
    }

    /// The sum of one counter over all CPUs.
    pub fn counter(&self, c: Counter) -> u64 {
        self.stats
            .get(&(c as u32), 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }

    /// Counters and occupancy.
    pub fn stats(&self) -> DatapathStats {
        DatapathStats {
            counters: self.counters(),
            flows: self.flow_count(),
            outbound_flows: self.outbound_count(),
            published_ports: self.published().len(),
            endpoints: self.endpoint_count(),
            networks: self.network_ids().len(),
        }
    }
}
