//! Prometheus metrics and a health probe, served over HTTP on `--metrics ADDR:PORT`
//! (`GET /metrics`, `GET /healthz`). What the datapath counted, per published port too, how
//! full its maps are, whether its hooks run this agent's programs, what the agent did (the
//! reconcile, repairs) and how its API answers. Everything but the API's figures is read
//! from the kernel and the agent at scrape time; nothing is kept twice.
use std::{convert::Infallible, fmt, sync::Arc, time::SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{body::Incoming, Request, Response, StatusCode};
use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, registry::Registry};

mod encode;

use super::{
    health::Reconciled, ports::port_key, service::Shared, slots::port_id, store::StateStore, Agent,
};
use crate::{
    api::{health::HealthView, server::Body},
    datapath::{DatapathOps, DatapathStats},
    netlink::LinkOps,
    ports::PortMapping,
};

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

impl<D, L, S> Shared<D, L, S>
where
    D: DatapathOps,
    L: LinkOps,
    S: StateStore,
{
    /// What the metrics read at a scrape.
    pub fn snapshot(&self) -> Snapshot {
        let monitors = self.monitors();
        let mut s = self.inspect(|a| a.snapshot(monitors));
        s.dns = self.dns_counters();
        s.health.cluster = self.cluster_health();
        s
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
    shared.api_metrics().register(&mut r);
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
