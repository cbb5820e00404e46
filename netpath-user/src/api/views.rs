//! Response bodies: networks, endpoints, ports and counters as the CLI and Docker's words show
//! them (`docker network inspect`, `docker inspect`, `docker port`).
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use serde::{Deserialize, Serialize};

use crate::{
    ipam::fmt_mac,
    model::{short_id, Attachment, DnsSettings, Endpoint, Network},
    ports::{PortMapping, Proto},
};

/// One published port, in the shape of Docker's `Port` (`GET /containers/json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Port {
    /// Host address (`0.0.0.0`, `::`: every host address of that family).
    #[serde(rename = "IP")]
    pub ip: std::net::IpAddr,
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
        let host = std::net::SocketAddr::new(self.ip, self.public_port);
        write!(f, "{}/{} -> {host}", self.private_port, self.proto)
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
    /// Docker's `EnableIPv4` (false: a network of IPv6 alone).
    #[serde(rename = "EnableIPv4", default = "yes")]
    pub enable_ipv4: bool,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub internal: bool,
    pub attachable: bool,
    /// host.docker.internal for this network's endpoints.
    /// The host's IPv4 address for the network's endpoints (none on a network of IPv6 alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_gateway: Option<Ipv4Addr>,
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
    pub ip: std::net::IpAddr,
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
    pub gateway: IpAddr,
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
            enable_ipv4: n.v4.is_some(),
            enable_ipv6: n.v6.is_some(),
            ipam: Ipam {
                driver: "default".into(),
                config: n
                    .v4
                    .map(|p| IpamConfig {
                        subnet: p.subnet.to_string(),
                        gateway: p.gateway.into(),
                        ip_range: p.ip_range.map(|r| r.to_string()),
                    })
                    .into_iter()
                    .chain(n.v6.map(|p| IpamConfig {
                        subnet: p.subnet.to_string(),
                        gateway: p.gateway.into(),
                        ip_range: p.ip_range.map(|r| r.to_string()),
                    }))
                    .collect(),
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
                            ipv4_address: match (a.ip, &n.v4) {
                                (Some(ip), Some(p)) => format!("{ip}/{}", p.subnet.prefix()),
                                _ => String::new(),
                            },
                            ipv6_address: match (a.ip6, &n.v6) {
                                (Some(ip6), Some(p)) => format!("{ip6}/{}", p.subnet.prefix()),
                                _ => String::new(),
                            },
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
    /// Its IPv4 address; "" on a network of IPv6 alone, as Docker shows it.
    #[serde(rename = "IPAddress", with = "ip_or_empty")]
    pub ip_address: Option<Ipv4Addr>,
    /// Its IPv6 address there (Docker's word), on a network with IPv6.
    #[serde(
        rename = "GlobalIPv6Address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_address: Option<Ipv6Addr>,
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
    /// Its IPv4 address; "" on a network of IPv6 alone, as Docker shows it.
    #[serde(rename = "IPAddress", with = "ip_or_empty")]
    pub ip_address: Option<Ipv4Addr>,
    /// The primary interface's IPv6 address, on a network with IPv6.
    #[serde(
        rename = "GlobalIPv6Address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_address: Option<Ipv6Addr>,
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
    /// The namespace network policies see it in.
    #[serde(default)]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named_ports: Vec<crate::policy::NamedPort>,
}

impl EndpointView {
    /// `e` as shown, with `state` (its networks' DNS servers).
    pub fn new(e: &Endpoint, state: &crate::model::State) -> Self {
        let primary = e.primary();
        let mut dns = e.dns.clone();
        if dns.servers.is_empty() {
            dns.servers = primary
                .and_then(|a| state.networks.get(&a.network))
                .and_then(|n| n.gateways().first().copied())
                .into_iter()
                .collect();
        }
        EndpointView {
            name: e.name.clone(),
            id: e.id.clone(),
            network: primary.map(|a| a.network.clone()).unwrap_or_default(),
            ip_address: primary.and_then(|a| a.ip),
            ipv6_address: primary.and_then(|a| a.ip6),
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
                            ipv6_address: a.ip6,
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
            namespace: e.namespace.clone(),
            named_ports: e.named_ports.clone(),
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

fn yes() -> bool {
    true
}

/// An IPv4 address that may be absent, written as Docker writes it: the address, or "".
mod ip_or_empty {
    use std::net::Ipv4Addr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ip: &Option<Ipv4Addr>, s: S) -> Result<S::Ok, S::Error> {
        match ip {
            Some(ip) => s.collect_str(ip),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Addr>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(serde::de::Error::custom)
    }
}
