//! A client of the agent's API over its unix socket: one typed method per route, which is
//! all the CLI uses (it never builds a path itself).
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::{de::DeserializeOwned, Serialize};

use super::{
    routes::{Route, RouteKind},
    CheckView, EndpointView, ErrorBody, FirewallView, LabelsUpdate, MonitorEvent, MonitorFilter,
    NetworkView, PolicyApply, PolicyCheck, PolicyRemove, PolicyView, Port, PortView, StatsView,
    VersionView,
};
use crate::model::{Connect, Disconnect, EndpointCreate, NetworkCreate, PortsRequest};

/// Why a request did not succeed; `Display` is the one line the CLI prints.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the netpath agent at {0}: {1} (is `netpath agent` running?)")]
    Connect(PathBuf, std::io::Error),
    #[error("talking to the agent: {0}")]
    Http(String),
    /// The agent refused the request; the message is its one line.
    #[error("Error response from agent: {0}")]
    Refused(String),
    #[error("the netpath agent at {0} did not answer within {1}s (busy or stalled; see its log, or raise --timeout)")]
    Timeout(PathBuf, u64),
}

impl ClientError {
    /// The agent's own message when it refused, else the whole error.
    pub fn message(&self) -> String {
        match self {
            ClientError::Refused(m) => m.clone(),
            e => e.to_string(),
        }
    }
}

/// API client bound to one socket path.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
    timeout: std::time::Duration,
}

/// Where the agent serves its API, and clients look for it, unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/netpath/netpath.sock";

/// How long a request may take, answer included, unless told otherwise (a monitor's stream is
/// not bounded).
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

type Result<T> = std::result::Result<T, ClientError>;

impl Client {
    pub fn new(socket: impl AsRef<Path>) -> Self {
        Client {
            socket: socket.as_ref().to_path_buf(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same client with every request bounded by `timeout`.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub async fn version(&self) -> Result<VersionView> {
        self.get(Route::new(RouteKind::Version)).await
    }

    pub async fn stats(&self) -> Result<StatsView> {
        self.get(Route::new(RouteKind::Stats)).await
    }

    pub async fn health(&self) -> Result<super::health::HealthView> {
        self.get(Route::new(RouteKind::Health)).await
    }

    pub async fn networks(&self) -> Result<Vec<NetworkView>> {
        self.get(Route::new(RouteKind::NetworkList)).await
    }

    pub async fn network(&self, name: &str) -> Result<NetworkView> {
        self.get(Route::named(RouteKind::NetworkInspect, name))
            .await
    }

    pub async fn create_network(&self, req: &NetworkCreate) -> Result<NetworkView> {
        self.call(Route::new(RouteKind::NetworkCreate), Some(req))
            .await
    }

    pub async fn remove_network(&self, name: &str) -> Result<()> {
        self.remove_network_forced(name, false).await
    }

    /// `force`: even a network Docker owns.
    pub async fn remove_network_forced(&self, name: &str, force: bool) -> Result<()> {
        let route = Route::named(RouteKind::NetworkRemove, name).forced(force);
        self.call::<(), serde_json::Value>(route, None)
            .await
            .map(drop)
    }

    pub async fn connect(&self, network: &str, req: &Connect) -> Result<EndpointView> {
        self.call(Route::named(RouteKind::NetworkConnect, network), Some(req))
            .await
    }

    pub async fn disconnect(&self, network: &str, req: &Disconnect) -> Result<EndpointView> {
        self.call(
            Route::named(RouteKind::NetworkDisconnect, network),
            Some(req),
        )
        .await
    }

    pub async fn endpoints(&self) -> Result<Vec<EndpointView>> {
        self.get(Route::new(RouteKind::EndpointList)).await
    }

    pub async fn endpoint(&self, name: &str) -> Result<EndpointView> {
        self.get(Route::named(RouteKind::EndpointInspect, name))
            .await
    }

    pub async fn create_endpoint(&self, req: &EndpointCreate) -> Result<EndpointView> {
        self.call(Route::new(RouteKind::EndpointCreate), Some(req))
            .await
    }

    pub async fn remove_endpoint(&self, name: &str) -> Result<()> {
        self.remove_endpoint_forced(name, false).await
    }

    /// `force`: even an endpoint Docker owns.
    pub async fn remove_endpoint_forced(&self, name: &str, force: bool) -> Result<()> {
        let route = Route::named(RouteKind::EndpointRemove, name).forced(force);
        self.call::<(), serde_json::Value>(route, None)
            .await
            .map(drop)
    }

    pub async fn prune(&self) -> Result<Vec<String>> {
        self.call::<(), _>(Route::new(RouteKind::EndpointPrune), None)
            .await
    }

    pub async fn publish(&self, endpoint: &str, req: &PortsRequest) -> Result<Vec<Port>> {
        self.call(Route::named(RouteKind::Publish, endpoint), Some(req))
            .await
    }

    pub async fn unpublish(&self, endpoint: &str, req: &PortsRequest) -> Result<Vec<Port>> {
        self.call(Route::named(RouteKind::Unpublish, endpoint), Some(req))
            .await
    }

    pub async fn nodes(&self) -> Result<crate::cluster::ClusterView> {
        self.get(Route::new(RouteKind::NodeList)).await
    }

    pub async fn firewall(&self) -> Result<FirewallView> {
        self.get(Route::new(RouteKind::Firewall)).await
    }

    pub async fn set_firewall(&self, req: &FirewallView) -> Result<FirewallView> {
        self.call(Route::new(RouteKind::FirewallSet), Some(req))
            .await
    }

    pub async fn policies(&self) -> Result<Vec<PolicyView>> {
        self.get(Route::new(RouteKind::PolicyList)).await
    }

    pub async fn apply_policies(&self, req: &PolicyApply) -> Result<Vec<String>> {
        self.call(Route::new(RouteKind::PolicyApply), Some(req))
            .await
    }

    pub async fn remove_policies(&self, req: &PolicyRemove) -> Result<()> {
        self.call::<_, serde_json::Value>(Route::new(RouteKind::PolicyRemove), Some(req))
            .await
            .map(drop)
    }

    pub async fn check_policy(&self, req: &PolicyCheck) -> Result<CheckView> {
        self.call(Route::new(RouteKind::PolicyCheck), Some(req))
            .await
    }

    pub async fn update_labels(&self, endpoint: &str, req: &LabelsUpdate) -> Result<EndpointView> {
        self.call(Route::named(RouteKind::EndpointLabels, endpoint), Some(req))
            .await
    }

    pub async fn ports(&self) -> Result<Vec<PortView>> {
        self.get(Route::new(RouteKind::PortList)).await
    }

    /// Streams the datapath's events; `each` gets them one by one until it returns false or
    /// the agent goes.
    pub async fn monitor(
        &self,
        filter: &MonitorFilter,
        mut each: impl FnMut(MonitorEvent) -> bool,
    ) -> Result<()> {
        let http = |e: &dyn std::fmt::Display| ClientError::Http(e.to_string());
        let route = Route::new(RouteKind::Monitor);
        let query = filter.to_query();
        let uri = if query.is_empty() {
            route.path()
        } else {
            format!("{}?{query}", route.path())
        };
        let resp = self.send(route, uri, Vec::new()).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body.collect().await.map_err(|e| http(&e))?.to_bytes();
            return Err(refusal(status, &bytes));
        }
        let mut pending: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| {
                ClientError::Http("the agent ended the stream (did it stop?)".into())
            })?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            pending.extend_from_slice(data);
            while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                let e: MonitorEvent = serde_json::from_slice(&line).map_err(|e| http(&e))?;
                if !each(e) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn get<T: DeserializeOwned>(&self, route: Route) -> Result<T> {
        self.call::<(), T>(route, None).await
    }

    /// Sends one request; the response as it comes.
    async fn send(
        &self,
        route: Route,
        uri: String,
        body: Vec<u8>,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let http = |e: &dyn std::fmt::Display| ClientError::Http(e.to_string());
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| ClientError::Connect(self.socket.clone(), e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| http(&e))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(route.kind.method())
            .uri(uri)
            .header(hyper::header::HOST, "netpath")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| http(&e))?;
        sender.send_request(req).await.map_err(|e| http(&e))
    }

    /// Sends one request and decodes the answer, within the client's timeout.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        route: Route,
        body: Option<&B>,
    ) -> Result<T> {
        tokio::time::timeout(self.timeout, self.call_unbounded(route, body))
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Timeout(
                    self.socket.clone(),
                    self.timeout.as_secs(),
                ))
            })
    }

    async fn call_unbounded<B: Serialize, T: DeserializeOwned>(
        &self,
        route: Route,
        body: Option<&B>,
    ) -> Result<T> {
        let http = |e: &dyn std::fmt::Display| ClientError::Http(e.to_string());
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| http(&e))?,
            None => Vec::new(),
        };
        let uri = route.path();
        let resp = self.send(route, uri, bytes).await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| http(&e))?
            .to_bytes();
        if !status.is_success() {
            return Err(refusal(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| http(&e))
    }
}

/// The agent's refusal in `body`.
fn refusal(status: hyper::StatusCode, body: &[u8]) -> ClientError {
    let msg = serde_json::from_slice::<ErrorBody>(body)
        .map(|e| e.message)
        .unwrap_or_else(|_| format!("agent answered {status}"));
    ClientError::Refused(msg)
}

impl Client {}
