//! The agent's HTTP+JSON API on its unix socket: paths, request and response bodies.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | /v1/networks | | `[NetworkView]` |
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
    model::{Endpoint, Network},
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

/// A network as `network ls`/`inspect` show it (Docker's field names).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkView {
    pub name: String,
    pub id: String,
    pub driver: String,
    pub subnet: String,
    pub gateway: Ipv4Addr,
}

impl From<&Network> for NetworkView {
    fn from(n: &Network) -> Self {
        NetworkView {
            name: n.name.clone(),
            id: n.id.clone(),
            driver: "netpath".into(),
            subnet: n.subnet.to_string(),
            gateway: n.gateway,
        }
    }
}

/// An endpoint as `endpoint ls`/`inspect` show it.
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
    pub ports: Vec<PortMapping>,
}

impl From<&Endpoint> for EndpointView {
    fn from(e: &Endpoint) -> Self {
        EndpointView {
            name: e.name.clone(),
            id: e.id.clone(),
            network: e.network.clone(),
            ip_address: e.ip,
            mac_address: fmt_mac(&e.mac),
            netns: e.netns.clone(),
            host_interface: e.host_ifname.clone(),
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
    pub published_ports: usize,
    pub endpoints: usize,
}
