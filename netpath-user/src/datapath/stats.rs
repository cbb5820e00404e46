//! Counters and drop reasons (kernel: `stats.rs`, the per-CPU `STATS` array), and how full
//! each map the agent watches is.
use netpath_common::{Counter, PortStats};
use std::os::fd::AsFd;

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
    /// Capacity of the published-port flow table.
    pub flows_capacity: usize,
    /// Capacity of the outbound flow tables.
    pub outbound_capacity: usize,
    /// Capacity of the published-port maps (`PORTS` for one address, plus every slot of
    /// `PORTS_ANY`).
    pub ports_capacity: usize,
    /// Capacity of the endpoint maps.
    pub endpoints_capacity: usize,
    /// Capacity of the network maps.
    pub networks_capacity: usize,
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

    /// What the published port counting into `slot` received, summed over CPUs.
    pub fn port_stats(&self, slot: u16) -> PortStats {
        self.port_stats
            .get(&u32::from(slot), 0)
            .map(|per_cpu| {
                per_cpu.iter().fold(PortStats::default(), |a, s| PortStats {
                    packets: a.packets + s.packets,
                    bytes: a.bytes + s.bytes,
                })
            })
            .unwrap_or_default()
    }

    /// Zeroes `slots` on every CPU, in a few calls however many there are.
    pub fn reset_port_stats(&mut self, slots: &[u16]) {
        let cpus = aya::util::nr_cpus().unwrap_or(1);
        let keys: Vec<u32> = slots.iter().map(|s| u32::from(*s)).collect();
        let zero = vec![PortStats::default(); keys.len() * cpus];
        if let Err(e) = super::sys::update_batch(self.whole.port_stats.as_fd(), &keys, &zero) {
            tracing::warn!(
                slots = slots.len(),
                "zeroing published ports' counters: {e}; they show their old counts"
            );
        }
    }

    /// Counters and occupancy.
    pub fn stats(&self) -> DatapathStats {
        DatapathStats {
            counters: self.counters(),
            flows: self.flow_count(),
            outbound_flows: self.outbound_count(),
            published_ports: self.published_known::<u32>().len()
                + self.published_known::<netpath_common::In6>().len(),
            endpoints: self.endpoint_count(),
            networks: self.network_ids().len(),
            flows_capacity: self.sizes.flows as usize,
            outbound_capacity: self.sizes.flows as usize,
            ports_capacity: (self.sizes.ports + netpath_common::PORTS_ANY_LEN) as usize,
            endpoints_capacity: self.sizes.endpoints as usize,
            networks_capacity: netpath_common::map_sizes::NETWORKS as usize,
        }
    }
}
