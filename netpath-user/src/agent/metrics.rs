//! Prometheus metrics and a health probe, served over HTTP on `--metrics ADDR:PORT`
//! (`GET /metrics`, `GET /healthz`). What the datapath counted, per published port too, how
//! full its maps are, whether its hooks run this agent's programs, what the agent did (the
//! reconcile, repairs) and how its API answers. Everything but the API's figures is read
//! from the kernel and the agent at scrape time; nothing is kept twice.
use std::{
    convert::Infallible,
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{body::Incoming, Request, Response, StatusCode};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::{exponential_buckets, Histogram},
        MetricType,
    },
    registry::Registry,
};

use super::{
    health::Reconciled, publish::port_key, service::Shared, slots::port_id, store::StateStore,
    transactions::Agent,
};
use crate::{
    api::{health::HealthView, server::Body},
    datapath::{DatapathOps, DatapathStats},
    netlink::LinkOps,
    ports::PortMapping,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

type Seconds = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn api_buckets() -> Histogram {
    // 100 µs to about 3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

/// How the API answers: requests by route and status, and how long they took.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    seconds: Seconds,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests: Family::default(),
            seconds: Family::new_with_constructor(api_buckets),
        }
    }
}

impl ApiMetrics {
    pub fn observe(&self, route: &'static str, status: StatusCode, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                code: status.as_u16(),
            })
            .inc();
        self.seconds
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
    }
}

/// What a scrape reads from the agent, under its lock once.
pub struct Snapshot {
    pub stats: DatapathStats,
    pub health: HealthView,
    pub started: SystemTime,
    pub reconciled: Option<Reconciled>,
    /// Each published port, its endpoint, and what it received.
    pub ports: Vec<(String, PortMapping, netpath_common::PortStats)>,
    /// The DNS server's counters, by name (`dns_local`, ...).
    pub dns: Vec<(&'static str, u64)>,
}

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    /// Everything the metrics show; `monitors` listen now.
    pub fn snapshot(&self, monitors: usize) -> Snapshot {
        let stats = self.dp.stats();
        let ports = self
            .state
            .endpoints
            .values()
            .flat_map(|ep| ep.ports.iter().map(move |m| (ep, m)))
            .filter_map(|(ep, m)| {
                let slot = self.slots.get(&port_id(&port_key(m)))?;
                Some((ep.name.clone(), *m, self.dp.port_stats(slot)))
            })
            .collect();
        Snapshot {
            health: self.health_of(&stats, monitors),
            stats,
            started: self.started,
            reconciled: self.last_reconcile.clone(),
            ports,
            dns: Vec::new(),
        }
    }
}

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
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
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
        family(
            &mut enc,
            "netpath_map_entries",
            "Entries in a datapath map.",
            MetricType::Gauge,
            h.maps.iter().map(|m| {
                (
                    [("map", m.name.as_str())],
                    ConstGauge::new(m.entries as i64),
                )
            }),
        )?;
        family(
            &mut enc,
            "netpath_map_capacity",
            "Capacity of a datapath map.",
            MetricType::Gauge,
            h.maps.iter().map(|m| {
                (
                    [("map", m.name.as_str())],
                    ConstGauge::new(m.capacity as i64),
                )
            }),
        )?;
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

/// Reads a [`Snapshot`] at each scrape.
struct AgentCollector<D, L, S>(Arc<Shared<D, L, S>>);

impl<D, L, S> fmt::Debug for AgentCollector<D, L, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AgentCollector")
    }
}

impl<D, L, S> Collector for AgentCollector<D, L, S>
where
    D: DatapathOps + 'static,
    L: LinkOps + 'static,
    S: StateStore + 'static,
{
    fn encode(&self, enc: DescriptorEncoder) -> fmt::Result {
        self.0.snapshot().encode(enc)
    }
}

/// Every metric of `shared`.
pub fn registry<D, L, S>(shared: Arc<Shared<D, L, S>>) -> Registry
where
    D: DatapathOps + 'static,
    L: LinkOps + 'static,
    S: StateStore + 'static,
{
    let mut r = Registry::default();
    let api = shared.api_metrics().clone();
    r.register(
        "netpath_api_requests",
        "API requests answered, by route and HTTP status",
        api.requests,
    );
    r.register(
        "netpath_api_request_duration_seconds",
        "How long the API took to answer, by route",
        api.seconds,
    );
    r.register_collector(Box::new(AgentCollector(shared)));
    r
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}

/// Answers `GET /metrics` and `GET /healthz` (200 `ok`, or 503 and each problem).
pub async fn handle<D, L, S>(
    shared: Arc<Shared<D, L, S>>,
    registry: Arc<Registry>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible>
where
    D: DatapathOps + 'static,
    L: LinkOps + 'static,
    S: StateStore + 'static,
{
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != hyper::Method::GET {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "GET only\n".into(),
        ));
    }
    let path = req.uri().path().to_string();
    let resp = tokio::task::spawn_blocking(move || match path.as_str() {
        "/metrics" => {
            let mut out = String::new();
            match prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
                Ok(()) => text(
                    StatusCode::OK,
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    out,
                ),
                Err(_) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    PLAIN,
                    "encoding the metrics failed\n".into(),
                ),
            }
        }
        "/healthz" => {
            use crate::api::Service as _;
            let h = shared.health();
            if h.healthy {
                // Pressure is said, but it is no failure: a probe must not restart the agent.
                let mut body = "ok\n".to_string();
                for w in &h.warnings {
                    body += &format!("warning: {w}\n");
                }
                text(StatusCode::OK, PLAIN, body)
            } else {
                let mut body = h.problems.join("\n");
                body.push('\n');
                text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, body)
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: GET /metrics or /healthz\n".into(),
        ),
    })
    .await
    .unwrap_or_else(|e| text(StatusCode::INTERNAL_SERVER_ERROR, PLAIN, format!("{e}\n")));
    Ok(resp)
}
