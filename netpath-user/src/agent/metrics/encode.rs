//! Every metric of a [`Snapshot`] written for a scrape: names, help, types and labels.
use std::{fmt, time::SystemTime};

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
};

use super::Snapshot;
use crate::ports::PortMapping;

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Writes one metric without labels.
fn single(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> fmt::Result {
    metric.encode(enc.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Writes one metric with one sample per label set.
fn family<S: EncodeLabelSet, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: impl IntoIterator<Item = (S, M)>,
) -> fmt::Result {
    let mut fam = enc.encode_descriptor(name, help, None, metric_type)?;
    for (labels, m) in samples {
        m.encode(fam.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Snapshot {
    pub(super) fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let h = &self.health;
        family(
            &mut enc,
            "netpath_build_info",
            "The agent's version, commit and eBPF object (always 1).",
            MetricType::Gauge,
            [(
                [
                    ("version", h.version.as_str()),
                    ("commit", &h.git_commit),
                    ("ebpf_sha256", &h.ebpf_sha256),
                ],
                ConstGauge::new(1i64),
            )],
        )?;
        single(
            &mut enc,
            "netpath_agent_start_time_seconds",
            "When the agent started (Unix time).",
            &ConstGauge::new(unix_seconds(self.started)),
        )?;
        single(
            &mut enc,
            "netpath_healthy",
            "1 when netpath status reports no problem.",
            &ConstGauge::new(i64::from(h.healthy)),
        )?;
        let counters = &self.stats.counters;
        family(
            &mut enc,
            "netpath_datapath_packets",
            "Packets the datapath handled, by what it did (netpath stats).",
            MetricType::Counter,
            counters
                .iter()
                .filter(|(c, _)| {
                    !c.name().starts_with("drop_") && *c != netpath_common::Counter::EventsLost
                })
                .map(|(c, v)| ([("counter", c.name())], ConstCounter::new(*v))),
        )?;
        family(
            &mut enc,
            "netpath_datapath_drops",
            "Packets the datapath dropped, by reason (netpath monitor shows each).",
            MetricType::Counter,
            counters.iter().filter_map(|(c, v)| {
                let reason = c.name().strip_prefix("drop_")?;
                Some(([("reason", reason)], ConstCounter::new(*v)))
            }),
        )?;
        let lost = counters
            .iter()
            .find(|(c, _)| *c == netpath_common::Counter::EventsLost)
            .map_or(0, |(_, v)| *v);
        single(
            &mut enc,
            "netpath_monitor_events_lost",
            "Monitor events the kernel could not queue (the agent read too slowly).",
            &ConstCounter::new(lost),
        )?;
        let port_labels = |ep: &str, m: &PortMapping| {
            [
                ("endpoint", ep.to_string()),
                ("host_ip", m.host_ip.to_string()),
                ("host_port", m.host_port.to_string()),
                ("protocol", m.proto.to_string()),
                ("container_port", m.container_port.to_string()),
            ]
        };
        family(
            &mut enc,
            "netpath_port_packets",
            "Packets received on a published port.",
            MetricType::Counter,
            self.ports
                .iter()
                .map(|(ep, m, s)| (port_labels(ep, m), ConstCounter::new(s.packets))),
        )?;
        family(
            &mut enc,
            "netpath_port_bytes",
            "Bytes received on a published port.",
            MetricType::Counter,
            self.ports
                .iter()
                .map(|(ep, m, s)| (port_labels(ep, m), ConstCounter::new(s.bytes))),
        )?;
        type MapFigure = fn(&crate::api::health::MapView) -> usize;
        let map_figures: [(&str, &str, MapFigure); 2] = [
            ("netpath_map_entries", "Entries in a datapath map.", |m| {
                m.entries
            }),
            ("netpath_map_capacity", "Capacity of a datapath map.", |m| {
                m.capacity
            }),
        ];
        for (name, help, figure) in map_figures {
            family(
                &mut enc,
                name,
                help,
                MetricType::Gauge,
                h.maps.iter().map(|m| {
                    (
                        [("map", m.name.as_str())],
                        ConstGauge::new(figure(m) as i64),
                    )
                }),
            )?;
        }
        single(
            &mut enc,
            "netpath_networks",
            "Networks.",
            &ConstGauge::new(h.networks as i64),
        )?;
        single(
            &mut enc,
            "netpath_endpoints",
            "Endpoints.",
            &ConstGauge::new(h.endpoints as i64),
        )?;
        let wanted = h.hooks.iter().filter(|x| x.wanted);
        let count = |f: fn(&&crate::api::health::HookView) -> bool| {
            ConstGauge::new(wanted.clone().filter(f).count() as i64)
        };
        family(
            &mut enc,
            "netpath_hooks",
            "Hooks the state needs, by state: wanted, attached, current (this agent's program).",
            MetricType::Gauge,
            [
                ([("state", "wanted")], count(|_| true)),
                ([("state", "attached")], count(|x| x.attached)),
                ([("state", "current")], count(|x| x.current)),
            ],
        )?;
        if let Some(r) = &self.reconciled {
            single(
                &mut enc,
                "netpath_reconcile_duration_seconds",
                "How long the reconcile at start took.",
                &ConstGauge::new(r.took.as_secs_f64()),
            )?;
            single(
                &mut enc,
                "netpath_reconcile_timestamp_seconds",
                "When the reconcile at start ran (Unix time).",
                &ConstGauge::new(unix_seconds(r.at)),
            )?;
        }
        single(
            &mut enc,
            "netpath_repairs",
            "Drift repaired: endpoints pruned or made again, hooks attached again.",
            &ConstCounter::new(h.repairs),
        )?;
        family(
            &mut enc,
            "netpath_dns_queries",
            "DNS queries the agent's server handled, by outcome (the kernel's fast path counts as netpath_datapath_packets_total{counter=\"dns_kernel\"}).",
            MetricType::Counter,
            self.dns.iter().map(|(name, v)| {
                let outcome = name.strip_prefix("dns_").unwrap_or(name);
                ([("outcome", outcome)], ConstCounter::new(*v))
            }),
        )?;
        if let Some(c) = &h.cluster {
            single(
                &mut enc,
                "netpath_cluster_connected",
                "Whether this node's session with etcd is up (1) or not (0).",
                &ConstGauge::new(i64::from(c.connected)),
            )?;
            single(
                &mut enc,
                "netpath_cluster_nodes",
                "Nodes this node knows through etcd, itself included (as last known when not connected).",
                &ConstGauge::new(c.nodes as i64),
            )?;
            single(
                &mut enc,
                "netpath_overlay_networks",
                "Overlay networks of the cluster.",
                &ConstGauge::new(c.overlay_networks as i64),
            )?;
            single(
                &mut enc,
                "netpath_overlay_remote_endpoints",
                "Endpoints of other nodes on overlay networks, as this node knows them.",
                &ConstGauge::new(c.remote_endpoints as i64),
            )?;
        }
        single(
            &mut enc,
            "netpath_monitors",
            "netpath monitor clients listening.",
            &ConstGauge::new(h.monitors as i64),
        )
    }
}
