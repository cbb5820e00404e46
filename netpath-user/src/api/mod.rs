//! The agent's HTTP+JSON API on its unix socket.
//!
//! | module | concern |
//! |---|---|
//! | here | response bodies (views), errors, the [`Service`] the agent implements |
//! | [`routes`] | every route, defined once: method, path, how names travel in it |
//! | [`server`] | the HTTP server: accept, read (bounded), route, answer |
//! | [`client`] | typed client methods, what the CLI calls |
//! | [`health`] | what `netpath status` shows |
//!
//! Request bodies are the model's requests ([`crate::model::requests`]). Every key on the
//! wire is in Docker's style (`Name`, `IPAddress`, `PrivatePort`), unknown keys in a request
//! are refused, and errors answer 4xx/5xx with `{"message": "one line"}` (Docker's error body).
//! The state file is a different format ([`crate::model::State`]): what the agent keeps is
//! not what it shows.
use std::{collections::BTreeMap, net::Ipv4Addr, path::PathBuf};

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use crate::{
    ipam::fmt_mac,
    model::{
        short_id, Attachment, Connect, Disconnect, DnsSettings, Endpoint, EndpointCreate, Network,
        NetworkCreate, PortsRequest,
    },
    ports::{PortMapping, Proto},
};

pub mod client;
pub mod health;
pub mod routes;
pub mod server;

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

/// Error body (Docker's shape).
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
}

/// What the agent serves; [`server`] routes requests to it. Implementations do their own
/// locking (the agent's: one change at a time, queries from a snapshot), so every method takes
/// `&self` and requests run side by side.
pub trait Service: Send + Sync + 'static {
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
        Err(not_in_a_cluster())
    }
    /// A request to `route` was answered with `status` after `took` (for metrics).
    fn observe(&self, route: &'static str, status: StatusCode, took: std::time::Duration) {
        let _ = (route, status, took);
    }
    /// Datapath events as they happen, until the receiver is dropped.
    fn monitor(
        &self,
        filter: MonitorFilter,
    ) -> Result<tokio::sync::mpsc::Receiver<MonitorEvent>, ApiError>;
}

/// What `netpath monitor` asks for (the query of `GET /v1/monitor`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitorFilter {
    /// Only events of this endpoint.
    pub endpoint: Option<String>,
    /// Only drops for this reason (`isolation` or `drop_isolation`).
    pub reason: Option<String>,
    /// Translations too, not only drops.
    pub trace: bool,
}

impl MonitorFilter {
    /// As a query string.
    pub fn to_query(&self) -> String {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        let mut q = Vec::new();
        if let Some(e) = &self.endpoint {
            q.push(format!(
                "endpoint={}",
                utf8_percent_encode(e, NON_ALPHANUMERIC)
            ));
        }
        if let Some(r) = &self.reason {
            q.push(format!(
                "reason={}",
                utf8_percent_encode(r, NON_ALPHANUMERIC)
            ));
        }
        if self.trace {
            q.push("trace=1".into());
        }
        q.join("&")
    }

    /// The filter as the agent applies it: a reason there is none of is refused; asking for
    /// a trace's reason asks for traces.
    pub fn checked(mut self) -> Result<MonitorFilter, ApiError> {
        if let Some(r) = &self.reason {
            let r = r.strip_prefix("drop_").unwrap_or(r);
            if !monitor_reasons().contains(&r) {
                return Err(ApiError::bad_request(format!(
                    "unknown reason {:?} (known: {})",
                    routes::echo(r),
                    monitor_reasons().join(", ")
                )));
            }
            self.trace |= TRACES.iter().any(|(_, name)| *name == r);
        }
        Ok(self)
    }

    /// From a query string; unknown keys are refused.
    pub fn from_query(query: &str) -> Result<MonitorFilter, ApiError> {
        let mut f = MonitorFilter::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned();
            match k {
                "endpoint" => f.endpoint = Some(v),
                "reason" => f.reason = Some(v),
                "trace" => f.trace = v == "1" || v == "true",
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown monitor filter {:?} (known: endpoint, reason, trace)",
                        routes::echo(other)
                    )))
                }
            }
        }
        Ok(f)
    }
}

/// What the kernel traces, by name.
const TRACES: [(u8, &str); 5] = [
    (netpath_common::event::trace::DNAT, "dnat"),
    (netpath_common::event::trace::REVERSE_NAT, "reverse_nat"),
    (netpath_common::event::trace::HAIRPIN, "hairpin"),
    (netpath_common::event::trace::SNAT, "snat"),
    (netpath_common::event::trace::SNAT_REPLY, "snat_reply"),
];

/// The name of trace `what` (an `event::trace` constant).
pub fn trace_name(what: u8) -> &'static str {
    TRACES
        .iter()
        .find(|(w, _)| *w == what)
        .map_or("trace", |(_, name)| name)
}

/// The reasons a monitor can ask for: drop reasons, then traces.
pub fn monitor_reasons() -> Vec<&'static str> {
    let drops = netpath_common::Counter::ALL
        .iter()
        .filter_map(|c| c.name().strip_prefix("drop_"));
    drops.chain(TRACES.iter().map(|(_, name)| *name)).collect()
}

/// One datapath event, as `netpath monitor` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MonitorEvent {
    /// When the agent read it (RFC 3339, UTC).
    pub time: String,
    /// `drop` or `trace`.
    pub kind: String,
    /// Why it was dropped (`isolation`, `spoof`, ...) or what was done (`dnat`, `snat`, ...).
    pub reason: String,
    /// `tcp`, `udp`, `icmp` (or the protocol number).
    pub protocol: String,
    /// As the packet came: `ADDR:PORT`.
    pub source: String,
    pub destination: String,
    /// What a translation wrote (`ADDR:PORT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translated: Option<String>,
    /// The interface it came in on (none for an uplink's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The endpoint concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
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

/// What a request about other nodes gets from a node on its own.
pub fn not_in_a_cluster() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "this node is on its own: start the agent with --etcd URL to join others",
    )
}

/// Cargo features this build has beyond the product's.
const FEATURES: &[&str] = &[
    #[cfg(feature = "testing")]
    "testing",
];

/// `netpath --version`: the version, the commit and the kernel programs' hash, on one line.
pub static VERSION_LINE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let v = VersionView::current();
    let mut line = format!(
        "{} (commit {}, ebpf sha256:{})",
        v.version,
        v.git_commit,
        &v.ebpf_sha256[..v.ebpf_sha256.len().min(16)]
    );
    if !v.features.is_empty() {
        line += &format!(" [{}]", v.features.join(","));
    }
    line
});

impl VersionView {
    /// This build's versions.
    pub fn current() -> VersionView {
        VersionView {
            version: env!("NETPATH_VERSION").to_string(),
            api_version: API_VERSION.to_string(),
            git_commit: env!("NETPATH_GIT_COMMIT").to_string(),
            ebpf_sha256: env!("NETPATH_EBPF_SHA256").to_string(),
            features: FEATURES.iter().map(|f| f.to_string()).collect(),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
        }
    }
}

/// One published port, in the shape of Docker's `Port` (`GET /containers/json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Port {
    /// Host address (0.0.0.0: every host address).
    #[serde(rename = "IP")]
    pub ip: Ipv4Addr,
    /// The endpoint's port.
    #[serde(rename = "PrivatePort")]
    pub private_port: u16,
    /// The host's port.
    #[serde(rename = "PublicPort")]
    pub public_port: u16,
    #[serde(rename = "Type")]
    pub proto: Proto,
}

impl From<PortMapping> for Port {
    fn from(m: PortMapping) -> Port {
        Port {
            ip: m.host_ip,
            private_port: m.container_port,
            public_port: m.host_port,
            proto: m.proto,
        }
    }
}

impl std::fmt::Display for Port {
    /// `docker port` style: `80/tcp -> 0.0.0.0:8080`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} -> {}:{}",
            self.private_port, self.proto, self.ip, self.public_port
        )
    }
}

/// A network as `network ls`/`inspect` show it, shaped like `docker network inspect`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkView {
    pub name: String,
    pub id: String,
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub internal: bool,
    pub attachable: bool,
    /// host.docker.internal for this network's endpoints.
    pub host_gateway: Ipv4Addr,
    /// By endpoint id.
    pub containers: BTreeMap<String, NetworkMember>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// An overlay network's nodes with endpoints on it (Docker's `Peers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<PeerView>>,
}

/// A node with endpoints on an overlay network.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PeerView {
    pub name: String,
    #[serde(rename = "IP")]
    pub ip: Ipv4Addr,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    pub driver: String,
    pub config: Vec<IpamConfig>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    pub subnet: String,
    pub gateway: Ipv4Addr,
    #[serde(rename = "IPRange", skip_serializing_if = "Option::is_none", default)]
    pub ip_range: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkMember {
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub mac_address: String,
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

impl NetworkView {
    pub fn new<'a>(
        n: &Network,
        members: impl Iterator<Item = (&'a Endpoint, &'a Attachment)>,
    ) -> Self {
        NetworkView {
            name: n.name.clone(),
            id: n.id.clone(),
            // Docker's words: an overlay network on a key-value store is "global".
            scope: if n.vni.is_some() { "global" } else { "local" }.into(),
            driver: n.driver.clone(),
            enable_ipv6: false,
            ipam: Ipam {
                driver: "default".into(),
                config: vec![IpamConfig {
                    subnet: n.subnet.to_string(),
                    gateway: n.gateway,
                    ip_range: n.ip_range.map(|r| r.to_string()),
                }],
            },
            internal: n.internal,
            attachable: true,
            host_gateway: n.host_gateway(),
            containers: members
                .map(|(e, a)| {
                    (
                        e.id.clone(),
                        NetworkMember {
                            name: e.name.clone(),
                            endpoint_id: format!("{}-{}", short_id(&e.id, 12), a.ifname),
                            mac_address: fmt_mac(&a.mac),
                            ipv4_address: format!("{}/{}", a.ip, n.subnet.prefix()),
                            ipv6_address: String::new(),
                        },
                    )
                })
                .collect(),
            options: {
                let mut o = n.options.clone();
                if let Some(vni) = n.vni {
                    o.insert(VXLAN_ID_OPTION.into(), vni.to_string());
                }
                o
            },
            labels: n.labels.clone(),
            peers: None,
        }
    }
}

/// Where `network inspect` shows an overlay network's VNI (Docker's option name).
pub const VXLAN_ID_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// One network of an endpoint.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointNetwork {
    #[serde(rename = "IPAddress")]
    pub ip_address: Ipv4Addr,
    pub mac_address: String,
    pub interface: String,
    pub host_interface: String,
    pub aliases: Vec<String>,
}

/// An endpoint as `endpoint ls`/`inspect` show it. The top-level address fields are those of
/// the primary interface (eth0), where published ports lead.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointView {
    pub name: String,
    pub id: String,
    pub network: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: Ipv4Addr,
    pub mac_address: String,
    pub netns: PathBuf,
    pub host_interface: String,
    /// Every network, by name.
    pub networks: BTreeMap<String, EndpointNetwork>,
    pub ports: Vec<Port>,
    pub labels: BTreeMap<String, String>,
    /// Its resolver: the servers its resolv.conf names (its network's DNS on the gateway,
    /// unless it asked for others), and the search domains and options it asked for (empty:
    /// the host's).
    pub dns: DnsSettings,
    /// The container engine that made it (through a plugin), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<crate::model::Engine>,
}

impl EndpointView {
    /// `e` as shown, with `state` (its networks' DNS servers).
    pub fn new(e: &Endpoint, state: &crate::model::State) -> Self {
        let primary = e.primary();
        let mut dns = e.dns.clone();
        if dns.servers.is_empty() {
            dns.servers = primary
                .and_then(|a| state.networks.get(&a.network))
                .map(|n| vec![n.gateway])
                .unwrap_or_default();
        }
        EndpointView {
            name: e.name.clone(),
            id: e.id.clone(),
            network: primary.map(|a| a.network.clone()).unwrap_or_default(),
            ip_address: primary.map_or(Ipv4Addr::UNSPECIFIED, |a| a.ip),
            mac_address: primary.map(|a| fmt_mac(&a.mac)).unwrap_or_default(),
            netns: e.netns.clone(),
            host_interface: primary.map(|a| a.host_ifname.clone()).unwrap_or_default(),
            networks: e
                .attachments
                .iter()
                .map(|a| {
                    (
                        a.network.clone(),
                        EndpointNetwork {
                            ip_address: a.ip,
                            mac_address: fmt_mac(&a.mac),
                            interface: a.ifname.clone(),
                            host_interface: a.host_ifname.clone(),
                            aliases: a.aliases.clone(),
                        },
                    )
                })
                .collect(),
            ports: e.ports.iter().copied().map(Port::from).collect(),
            labels: e.labels.clone(),
            dns,
            engine: e.engine.clone(),
        }
    }
}

/// One published port and its endpoint (`port ls`).
#[derive(Debug, Serialize, Deserialize)]
pub struct PortView {
    #[serde(rename = "Endpoint")]
    pub endpoint: String,
    #[serde(flatten)]
    pub port: Port,
}

/// Counter totals and map occupancy (`stats`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatsView {
    /// By counter name (`dnat_tc`, `drop_isolation`, ...).
    pub counters: BTreeMap<String, u64>,
    pub flows: usize,
    /// Outbound (source NAT) flows.
    pub outbound_flows: usize,
    pub published_ports: usize,
    pub endpoints: usize,
    pub networks: usize,
}
