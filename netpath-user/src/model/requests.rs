//! What each request asks for: the API's request bodies (JSON keys in Docker's style, unknown
//! keys refused) and the input of planning ([`super::plan`]).
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use serde::{Deserialize, Serialize};

/// What `network create` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct NetworkCreate {
    pub name: String,
    /// `bridge` (the default) or `netpath`.
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default, rename = "IPRange")]
    pub ip_range: Option<String>,
    /// `--ipv6`: an IPv6 subnet as well (`subnet6`, or the next free /64 of the pool).
    #[serde(default, rename = "EnableIPv6")]
    pub ipv6: bool,
    /// `--ipv4=false`: no IPv4 subnet (a network of IPv6 alone, with `--ipv6`); unset: IPv4.
    #[serde(default, rename = "EnableIPv4")]
    pub ipv4: Option<bool>,
    #[serde(default, rename = "SubnetIPv6")]
    pub subnet6: Option<String>,
    #[serde(default, rename = "GatewayIPv6")]
    pub gateway6: Option<Ipv6Addr>,
    #[serde(default, rename = "IPRangeIPv6")]
    pub ip_range6: Option<String>,
    #[serde(default)]
    pub internal: bool,
    /// KEY=VALUE strings.
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl NetworkCreate {
    /// Whether it asks for IPv4 (unless `--ipv4=false`).
    pub fn wants_ipv4(&self) -> bool {
        self.ipv4 != Some(false)
    }

    /// Whether it asks for an overlay network (one across the nodes of a cluster).
    pub fn is_overlay(&self) -> bool {
        self.driver.as_deref() == Some(super::OVERLAY_DRIVER)
    }
}

/// What `network connect` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Connect {
    pub endpoint: String,
    #[serde(default, rename = "IPAddress")]
    pub ip: Option<Ipv4Addr>,
    /// Its IPv6 address (`--ip6`), on a network with IPv6.
    #[serde(default, rename = "IPv6Address")]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The interface's name in the namespace (the CNI plugin's `CNI_IFNAME`); `ethN` if unset.
    #[serde(default)]
    pub ifname: Option<String>,
    /// The interface's MAC (`aa:bb:cc:dd:ee:ff`); derived from the address if unset.
    #[serde(default, rename = "MacAddress")]
    pub mac: Option<String>,
}

/// What `network disconnect` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Disconnect {
    pub endpoint: String,
}

/// What `endpoint create` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EndpointCreate {
    pub name: String,
    /// Path of the network namespace.
    pub netns: PathBuf,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default, rename = "IPAddress")]
    pub ip: Option<Ipv4Addr>,
    /// Its IPv6 address (`--ip6`), on a network with IPv6.
    #[serde(default, rename = "IPv6Address")]
    pub ip6: Option<Ipv6Addr>,
    /// Docker `-p` specs.
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// More names on its first network (`--alias`, Docker's `--network-alias`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Resolver settings for its namespace (`--dns`, `--dns-search`, `--dns-option`).
    #[serde(default)]
    pub dns: DnsSettings,
    /// The interface's name in the namespace; `eth0` if unset.
    #[serde(default)]
    pub ifname: Option<String>,
    /// The interface's MAC (`aa:bb:cc:dd:ee:ff`); derived from the address if unset.
    #[serde(default, rename = "MacAddress")]
    pub mac: Option<String>,
    /// The engine making it (the plugins say so); none for the CLI.
    #[serde(default)]
    pub engine: Option<super::Engine>,
    /// The namespace network policies see it in; `default` if unset.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Its ports by name for policies' named ports: `NAME=PORT[/PROTO]`.
    #[serde(default)]
    pub named_ports: Vec<String>,
}

/// An endpoint's resolver settings, as Docker's `--dns`, `--dns-search` and `--dns-option`:
/// empty fields take the agent's (its DNS server on the gateway, the host's search domains
/// and options).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[serde(default)]
pub struct DnsSettings {
    pub servers: Vec<std::net::IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl DnsSettings {
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

/// Body of publish and unpublish: Docker `-p` specs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PortsRequest {
    pub specs: Vec<String>,
}
