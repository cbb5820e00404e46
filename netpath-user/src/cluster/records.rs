//! The overlay records every node shares in etcd: networks, the addresses taken on them, and
//! what a request about them met.
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use serde::{Deserialize, Serialize};

use super::ClusterError;
use crate::{
    ipam::{Pool, Subnet},
    model::{Network, State},
};

/// The first VNI netpath gives (Docker's overlay driver starts at 4096 too, plus one).
pub const FIRST_VNI: u32 = 4097;
/// The last VNI (24 bits).
pub const LAST_VNI: u32 = (1 << 24) - 1;

/// An overlay network as every node sees it (`PREFIX/networks/NAME`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayNetwork {
    pub name: String,
    pub id: String,
    pub vni: u32,
    #[serde(flatten)]
    pub v4: Pool,
    /// Its IPv6 pool, if it has one (an endpoint's IPv6 address follows its IPv4 one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v6: Option<Pool<Ipv6Addr>>,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The node it was created on.
    pub created_by: String,
}

impl OverlayNetwork {
    /// The record of a network planned on this node, with its VNI (none for a network of
    /// IPv6 alone, which is never an overlay network).
    pub fn of(net: &Network, vni: u32, node: &str) -> Option<OverlayNetwork> {
        Some(OverlayNetwork {
            name: net.name.clone(),
            id: net.id.clone(),
            vni,
            v4: net.v4?,
            v6: net.v6,
            internal: net.internal,
            options: net.options.clone(),
            labels: net.labels.clone(),
            created_by: node.to_string(),
        })
    }

    /// The network this node keeps for it (its own `net_id`, given by the caller).
    pub fn network(&self, net_id: u32) -> Network {
        Network {
            v6: self.v6,
            name: self.name.clone(),
            id: self.id.clone(),
            net_id,
            driver: crate::model::OVERLAY_DRIVER.to_string(),
            v4: Some(self.v4),
            internal: self.internal,
            options: self.options.clone(),
            labels: self.labels.clone(),
            vni: Some(self.vni),
        }
    }
}

/// An address taken on an overlay network (`PREFIX/endpoints/NETWORK/IP`), under the lease
/// of the node whose endpoint has it: a node that dies gives its addresses back with its
/// registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayEndpoint {
    pub network: String,
    pub ip: Ipv4Addr,
    pub node: String,
    /// The endpoint's name, id and aliases on the network (its names on every node).
    pub endpoint: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// What other nodes' network policies select it by: its namespace (none: `default`)
    /// and labels.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The ports it names (policies on other nodes allow egress to them by name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named_ports: Vec<crate::policy::NamedPort>,
}

/// What a request about overlay networks met in etcd.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("etcd is not reachable ({0}): overlay networks cannot change until it is")]
    Unreachable(String),
    #[error(transparent)]
    Etcd(#[from] ClusterError),
    #[error("network {0} already exists (an overlay network of the cluster)")]
    Exists(String),
    #[error("subnet {0} overlaps overlay network {2} ({1})")]
    Overlap(Subnet, Subnet, String),
    #[error("no VNI left")]
    NoVni,
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("network {0} has endpoints on node(s) {1}: remove them first")]
    InUse(String, String),
    #[error(
        "address {ip} is already in use on network {network} (endpoint {endpoint} on node {node})"
    )]
    Taken {
        network: String,
        ip: Ipv4Addr,
        endpoint: String,
        node: String,
    },
    #[error("network {0} is no longer in the cluster")]
    Gone(String),
    #[error("too many nodes asked at once: try again")]
    Contended,
}

impl From<etcd_client::Error> for OverlayError {
    fn from(e: etcd_client::Error) -> Self {
        OverlayError::Etcd(ClusterError::Etcd(e))
    }
}

/// This node's endpoints' addresses on overlay networks, as `state` has them, by key.
pub fn local_claims(state: &State, node: &str) -> BTreeMap<(String, Ipv4Addr), OverlayEndpoint> {
    state
        .endpoints
        .values()
        .flat_map(|e| e.attachments.iter().map(move |a| (e, a)))
        .filter(|(_, a)| {
            state
                .networks
                .get(&a.network)
                .is_some_and(|n| n.vni.is_some())
        })
        // An overlay network's endpoints all have IPv4 (the address claimed).
        .filter_map(|(e, a)| Some((e, a, a.ip?)))
        .map(|(e, a, ip)| {
            (
                (a.network.clone(), ip),
                OverlayEndpoint {
                    network: a.network.clone(),
                    ip,
                    node: node.to_string(),
                    endpoint: e.name.clone(),
                    id: e.id.clone(),
                    aliases: a.aliases.clone(),
                    namespace: e.namespace.clone(),
                    labels: e.labels.clone(),
                    named_ports: e.named_ports.clone(),
                },
            )
        })
        .collect()
}

/// A claim's id in [`super::ClusterView::endpoints`]: `NETWORK/IP`.
pub fn endpoint_id(network: &str, ip: Ipv4Addr) -> String {
    format!("{network}/{ip}")
}
