//! The agent's HTTP+JSON API on its unix socket.
//!
//! | module | concern |
//! |---|---|
//! | here | errors, the [`Service`] the agent implements, versions |
//! | `views` | response bodies: networks, endpoints, ports, counters |
//! | `monitor` | what `netpath monitor` asks for and is sent |
//! | [`routes`] | every route, defined once: method, path, how names travel in it |
//! | [`server`] | the HTTP server: accept, read (bounded), route, answer |
//! | `dispatch` | one request to the [`Service`]: decode, call, encode |
//! | [`client`] | typed client methods, what the CLI calls |
//! | [`health`] | what `netpath status` shows |
//!
//! Request bodies are the model's requests ([`crate::model::requests`]). Every key on the
//! wire is in Docker's style (`Name`, `IPAddress`, `PrivatePort`), unknown keys in a request
//! are refused, and errors answer 4xx/5xx with `{"message": "one line"}` (Docker's error body).
//! The state file is a different format ([`crate::model::State`]): what the agent keeps is
//! not what it shows.
use std::collections::BTreeMap;

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use crate::{
    error::{AgentError, Kind},
    model::{Connect, Disconnect, EndpointCreate, ModelError, NetworkCreate, PortsRequest},
    version,
};

pub mod client;
mod dispatch;
pub mod health;
mod monitor;
mod policy;
pub mod routes;
pub mod server;
mod views;

pub use monitor::{monitor_reasons, trace_name, MonitorEvent, MonitorFilter};
pub use policy::{
    CheckSide, CheckView, FirewallView, LabelsUpdate, PolicyApply, PolicyCheck, PolicyRemove,
    PolicyService, PolicyView,
};
pub use views::{
    EndpointNetwork, EndpointView, Ipam, IpamConfig, NetworkMember, NetworkView, PeerView, Port,
    PortView, StatsView, VXLAN_ID_OPTION,
};

/// Version of this API; `netpath version` shows it beside the agent's.
pub const API_VERSION: &str = "1";

/// An API failure: HTTP status and one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct ApiError {
    pub status: StatusCode,
    pub msg: String,
}

impl ApiError {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            msg: msg.into(),
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, msg)
    }

    pub fn internal(msg: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, msg.to_string())
    }
}

/// The agent's errors as HTTP says them: the kind of failure decides the status.
impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        let status = match e.kind() {
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::Invalid => StatusCode::BAD_REQUEST,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        AgentError::from(e).into()
    }
}

/// Error body (Docker's shape).
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
}

/// What the agent serves; [`server`] routes requests to it. Implementations do their own
/// locking (the agent's: one change at a time, queries from a snapshot), so every method takes
/// `&self` and requests run side by side.
pub trait Service: PolicyService + Send + Sync + 'static {
    fn version(&self) -> VersionView;
    fn stats(&self) -> StatsView;
    fn health(&self) -> health::HealthView;
    fn networks(&self) -> Vec<NetworkView>;
    fn network(&self, name: &str) -> Result<NetworkView, ApiError>;
    fn create_network(&self, req: &NetworkCreate) -> Result<NetworkView, ApiError>;
    fn remove_network(&self, name: &str) -> Result<(), ApiError>;
    fn connect(&self, network: &str, req: &Connect) -> Result<EndpointView, ApiError>;
    fn disconnect(&self, network: &str, req: &Disconnect) -> Result<EndpointView, ApiError>;
    fn endpoints(&self) -> Vec<EndpointView>;
    fn endpoint(&self, name: &str) -> Result<EndpointView, ApiError>;
    fn create_endpoint(&self, req: &EndpointCreate) -> Result<EndpointView, ApiError>;
    fn remove_endpoint(&self, name: &str) -> Result<(), ApiError>;
    /// Removes the endpoints whose namespace is gone; their names.
    fn prune(&self) -> Result<Vec<String>, ApiError>;
    fn publish(&self, endpoint: &str, req: &PortsRequest) -> Result<Vec<Port>, ApiError>;
    fn unpublish(&self, endpoint: &str, req: &PortsRequest) -> Result<Vec<Port>, ApiError>;
    fn ports(&self) -> Vec<PortView>;
    /// Sets label `network_key` on the networks and `endpoint_key` on the endpoints named
    /// (name → value): what an engine calls them. Nothing else changes.
    fn set_labels(
        &self,
        _network_key: &str,
        _networks: &BTreeMap<String, String>,
        _endpoint_key: &str,
        _endpoints: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        Ok(())
    }
    /// The nodes this node knows (refused when it is on its own).
    fn nodes(&self) -> Result<crate::cluster::ClusterView, ApiError> {
        Err(AgentError::NotInCluster.into())
    }
    /// A request to `route` was answered with `status` after `took` (for metrics).
    fn observe(&self, _route: &'static str, _status: StatusCode, _took: std::time::Duration) {}
    /// Datapath events as they happen, until the receiver is dropped.
    fn monitor(
        &self,
        filter: MonitorFilter,
    ) -> Result<tokio::sync::mpsc::Receiver<MonitorEvent>, ApiError>;
}

/// Versions of one side (client or agent), as `netpath version` shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VersionView {
    /// The package version (`NETPATH_VERSION` at build time; default the crate's).
    pub version: String,
    pub api_version: String,
    pub git_commit: String,
    /// SHA-256 of the embedded eBPF object: which kernel programs this build loads.
    #[serde(default, rename = "EbpfSHA256")]
    pub ebpf_sha256: String,
    /// Cargo features compiled in beyond the product (`testing` in test builds only).
    #[serde(default)]
    pub features: Vec<String>,
    pub os: String,
    pub arch: String,
}

pub use crate::version::VERSION_LINE;

impl VersionView {
    /// This build's versions.
    pub fn current() -> VersionView {
        VersionView {
            version: version::VERSION.to_string(),
            api_version: API_VERSION.to_string(),
            git_commit: version::GIT_COMMIT.to_string(),
            ebpf_sha256: version::EBPF_SHA256.to_string(),
            features: version::FEATURES.iter().map(|f| f.to_string()).collect(),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
        }
    }
}
