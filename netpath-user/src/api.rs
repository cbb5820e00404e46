//! The agent's HTTP+JSON API on its unix socket: paths, request and response bodies.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | /v1/networks | | `[NetworkView]` |
//! | POST | /v1/networks | `NetworkCreate` | `NetworkView` |
//! | GET | /v1/networks/NAME | | `NetworkView` |
//! | DELETE | /v1/networks/NAME | | `{}` |
//! | POST | /v1/networks/NAME/connect | `Connect` | `EndpointView` |
//! | POST | /v1/networks/NAME/disconnect | `Connect` (endpoint only) | `EndpointView` |
//! | GET | /v1/endpoints | | `[EndpointView]` |
//! | POST | /v1/endpoints | `EndpointCreate` | `EndpointView` |
//! | GET | /v1/endpoints/NAME | | `EndpointView` |
//! | DELETE | /v1/endpoints/NAME | | `{}` |
//! | POST | /v1/endpoints/NAME/publish | `PortsRequest` | `[PortMapping]` added |
//! | POST | /v1/endpoints/NAME/unpublish | `PortsRequest` | `[PortMapping]` removed |
//! | GET | /v1/ports | | `[PortView]` |
//! | GET | /v1/stats | | `StatsView` |
//!
//! Errors answer 4xx/5xx with `{"error": "one line"}`.
use std::{collections::BTreeMap, net::Ipv4Addr, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::{
    ipam::fmt_mac,
    model::{Attachment, Endpoint, Network},
    ports::PortMapping,
};

/// Body of publish and unpublish.
#[derive(Debug, Serialize, Deserialize)]
pub struct PortsRequest {
    pub specs: Vec<String>,
}

/// Error body.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
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
            scope: "local".into(),
            driver: "netpath".into(),
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
                            endpoint_id: format!("{}-{}", &e.id[..12.min(e.id.len())], a.ifname),
                            mac_address: fmt_mac(&a.mac),
                            ipv4_address: format!("{}/{}", a.ip, n.subnet.prefix()),
                            ipv6_address: String::new(),
                        },
                    )
                })
                .collect(),
            options: n.options.clone(),
            labels: BTreeMap::new(),
        }
    }
}

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
    pub ports: Vec<PortMapping>,
}

impl EndpointView {
    pub fn new(e: &Endpoint) -> Self {
        let primary = e.primary();
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
            ports: e.ports.clone(),
        }
    }
}

/// One published port and its endpoint (`port ls`).
#[derive(Debug, Serialize, Deserialize)]
pub struct PortView {
    pub endpoint: String,
    #[serde(flatten)]
    pub mapping: PortMapping,
}

/// Counter totals (`stats`).
#[derive(Debug, Serialize, Deserialize)]
pub struct StatsView {
    pub counters: BTreeMap<String, u64>,
    pub flows: usize,
    /// Outbound (source NAT) flows.
    pub outbound_flows: usize,
    pub published_ports: usize,
    pub endpoints: usize,
    pub networks: usize,
}
