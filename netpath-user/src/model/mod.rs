//! The desired state: networks, endpoints and their published ports, as plain data.
//!
//! | module | concern |
//! |---|---|
//! | here | the state's types ([`State`] is what the state file holds) |
//! | [`requests`] | what each request asks for (the API's request bodies) |
//! | [`options`] | network options: the keys, their values, what they mean |
//! | [`plan`] | validation and planning of every request, without side effects ([`ModelError`]) |
//! | [`validate`] | checking a state read from disk |
//! | [`identity`] | a number for each set of endpoint labels, what policy will key on |
//!
//! Every request is first *planned* against the current state (all validation, no kernel
//! access); only a plan that passed is carried out by the agent, so a rejected request
//! changes nothing. The state is saved atomically as JSON in the agent's state directory.
use std::{
    collections::BTreeMap,
    fs,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    ipam::Pool,
    policy::{NamedPort, PublishedFrom, DEFAULT_NAMESPACE},
    ports::PortMapping,
};

pub mod identity;
pub mod options;
pub mod plan;
pub mod requests;
pub mod validate;

pub use options::{HOST_GATEWAY, HOST_LOOPBACK_PORTS};
pub use plan::ModelError;
pub use requests::{Connect, Disconnect, DnsSettings, EndpointCreate, NetworkCreate, PortsRequest};

/// The longest piece of a refused input an error message repeats.
pub const ECHO_MAX: usize = 64;

/// `s`, cut to [`ECHO_MAX`] characters for an error message.
pub fn echo(s: &str) -> String {
    match s.char_indices().nth(ECHO_MAX) {
        Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

/// Labels of a network or an endpoint (`--label KEY=VALUE`), what policies select on.
pub type Labels = BTreeMap<String, String>;

/// Name of the network that exists from the start (Docker's default bridge).
pub const DEFAULT_NETWORK: &str = "bridge";
/// The driver of every netpath network, as Docker names it.
pub const DEFAULT_DRIVER: &str = "bridge";
/// The driver of networks that span the nodes of a cluster (VXLAN between nodes).
pub const OVERLAY_DRIVER: &str = "overlay";
/// Driver names `network create -d` accepts (netpath's own name included).
pub const DRIVERS: [&str; 3] = [DEFAULT_DRIVER, "netpath", OVERLAY_DRIVER];
/// Networks one endpoint can be on (host-side veth names have one hex digit for the slot).
pub const MAX_NETWORKS_PER_ENDPOINT: usize = 16;

fn default_driver() -> String {
    DEFAULT_DRIVER.to_string()
}

/// A network: a subnet with a gateway on the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub id: String,
    /// Small numeric id: the datapath's key for this network.
    pub net_id: u32,
    /// As asked (`bridge` or `netpath`); both mean netpath's datapath.
    #[serde(default = "default_driver")]
    pub driver: String,
    /// Its IPv4 subnet, gateway and range (the state file keeps the fields at the top); none
    /// for a network of IPv6 alone (Docker's `--ipv4=false`).
    #[serde(flatten)]
    pub v4: Option<Pool>,
    /// Its IPv6 subnet, gateway and range (`--ipv6`); none for a network of IPv4 alone.
    #[serde(default, rename = "ipv6", skip_serializing_if = "Option::is_none")]
    pub v6: Option<Pool<Ipv6Addr>>,
    /// Nothing leaves the network; its ports cannot be published.
    #[serde(default)]
    pub internal: bool,
    /// `--opt KEY=VALUE`, as given.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// An overlay network's VXLAN network identifier (the same on every node); none for a
    /// network of this host alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
}

/// The address of IPv6 pool `v6` at the offset `ip` has in IPv4 pool `v4`: an overlay
/// network's IPv6 addresses follow its IPv4 ones, so the address every node takes in etcd
/// (IPv4's) holds both, and every node derives the other alike.
pub fn overlay_ip6(v4: &Pool, v6: &Pool<Ipv6Addr>, ip: Ipv4Addr) -> Option<Ipv6Addr> {
    let offset = u32::from(ip).checked_sub(u32::from(v4.subnet.addr()))?;
    let at = v6.subnet.addr().to_bits().checked_add(u128::from(offset))?;
    Some(Ipv6Addr::from_bits(at)).filter(|a| v6.subnet.contains(*a))
}

impl Network {
    /// An overlay network's IPv6 address of the endpoint whose IPv4 address is `ip` (None on
    /// any other network, or one without IPv6).
    pub fn overlay_ip6(&self, ip: Ipv4Addr) -> Option<Ipv6Addr> {
        overlay_ip6(
            self.v4.as_ref()?,
            self.v6.as_ref().filter(|_| self.vni.is_some())?,
            ip,
        )
    }

    /// Its IPv4 gateway (none on a network of IPv6 alone).
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        self.v4.as_ref().map(|p| p.gateway)
    }

    /// Its gateways, IPv4's first: where the host answers (DNS among others).
    pub fn gateways(&self) -> Vec<std::net::IpAddr> {
        let v6 = self.v6.map(|p| p.gateway.into());
        [self.gateway().map(Into::into), v6]
            .into_iter()
            .flatten()
            .collect()
    }
}

/// The label of a network Docker made through the plugin: Docker's id of it.
pub const DOCKER_NETWORK_LABEL: &str = "com.docker.network.id";

/// One interface of an endpoint, on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    /// Its IPv4 address; none on a network of IPv6 alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// Its IPv6 address, on a network with IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    pub mac: [u8; 6],
    /// Interface name inside the namespace (eth0, eth1, ...).
    pub ifname: String,
    /// Name of the host-side veth in the agent's namespace.
    pub host_ifname: String,
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl Attachment {
    /// Its addresses, IPv4's first.
    pub fn ips(&self) -> impl Iterator<Item = std::net::IpAddr> + Clone {
        let v4 = self.ip.map(std::net::IpAddr::V4);
        v4.into_iter().chain(self.ip6.map(std::net::IpAddr::V6))
    }
}

/// A network namespace's identity: the device and inode of its nsfs file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

/// An endpoint: a network namespace with one interface per network it is on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub id: String,
    /// The namespace's path (e.g. /run/netns/NAME or /proc/PID/ns/net).
    pub netns: PathBuf,
    /// The first is eth0, the primary: published ports lead there.
    pub attachments: Vec<Attachment>,
    pub ports: Vec<PortMapping>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Which namespace `netns` led to when the endpoint was made (checked at every start).
    #[serde(default)]
    pub netns_id: Option<NetnsId>,
    /// Resolver settings asked for at creation (empty: the agent's).
    #[serde(default, skip_serializing_if = "DnsSettings::is_empty")]
    pub dns: DnsSettings,
    /// The container engine that made it, when not `netpath endpoint create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    /// The namespace network policies see it in (Kubernetes' pod namespace).
    #[serde(
        default = "default_namespace",
        skip_serializing_if = "is_default_namespace"
    )]
    pub namespace: String,
    /// Its ports by name, for policies' named ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named_ports: Vec<NamedPort>,
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_string()
}

fn is_default_namespace(ns: &str) -> bool {
    ns == DEFAULT_NAMESPACE
}

/// A container engine that drives endpoints through one of netpath's plugins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Docker's network plugin: the agent makes the veth pair and hands the peer to dockerd,
    /// which moves it into the container and sets its name, address and routes.
    Docker,
    /// The CNI plugin: the agent makes the interface in the namespace, as for the CLI.
    Cni,
}

/// Who made an endpoint, in the engine's own words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Engine {
    pub kind: EngineKind,
    /// Docker: the endpoint's id; CNI: the container's id.
    pub id: String,
}

impl Endpoint {
    /// Whether the container side of its interfaces belongs to an engine (Docker), which
    /// moves it into a namespace the agent may not even see.
    pub fn handed_over(&self) -> bool {
        self.engine
            .as_ref()
            .is_some_and(|e| e.kind == EngineKind::Docker)
    }

    /// The attachment published ports are delivered to.
    pub fn primary(&self) -> Option<&Attachment> {
        self.attachments.first()
    }

    pub fn attachment(&self, network: &str) -> Option<&Attachment> {
        self.attachments.iter().find(|a| a.network == network)
    }
}

/// The whole desired state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub networks: BTreeMap<String, Network>,
    pub endpoints: BTreeMap<String, Endpoint>,
    /// The clients published ports answer (`--published-from`); none: everyone.
    #[serde(default, skip_serializing_if = "PublishedFrom::is_everyone")]
    pub published_from: PublishedFrom,
    /// Network policies by `NAMESPACE/NAME`: their manifests as applied.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub policies: BTreeMap<String, serde_json::Value>,
    /// Namespaces' labels, from `Namespace` manifests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespaces: BTreeMap<String, Labels>,
    /// Endpoints of other nodes on this node's overlay networks, as the cluster says (their
    /// names resolve here); not saved: etcd has them.
    #[serde(skip)]
    pub remote: Vec<RemoteMember>,
}

/// An endpoint of another node on an overlay network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteMember {
    pub network: String,
    pub name: String,
    /// Its id (its short id is one of its names), when the node said.
    pub id: String,
    pub ip: Ipv4Addr,
    pub aliases: Vec<String>,
    pub node: String,
    /// What network policies select it by.
    pub namespace: String,
    pub labels: Labels,
    /// The ports it names.
    pub named_ports: Vec<NamedPort>,
}

/// Docker's name rule for containers and networks.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A random 64-hex-digit id, like Docker's.
pub fn new_id() -> String {
    (0..4)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect()
}

impl State {
    /// Reads the state file; a missing file is the empty state.
    pub fn load(path: &Path) -> std::io::Result<State> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the state file atomically ([`write_json`]).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        write_json(path, self)
    }

    /// Every published mapping, of every endpoint.
    pub fn all_ports(&self) -> Vec<PortMapping> {
        self.endpoints
            .values()
            .flat_map(|e| e.ports.iter().copied())
            .collect()
    }

    pub fn endpoint(&self, name: &str) -> Result<&Endpoint, ModelError> {
        self.endpoints
            .get(name)
            .ok_or_else(|| ModelError::NoEndpoint(name.to_string()))
    }

    pub fn network(&self, name: &str) -> Result<&Network, ModelError> {
        self.networks
            .get(name)
            .ok_or_else(|| ModelError::NoNetwork(name.to_string()))
    }

    /// The endpoints attached to `network`, with their attachment.
    pub fn members<'a>(
        &'a self,
        network: &'a str,
    ) -> impl Iterator<Item = (&'a Endpoint, &'a Attachment)> + 'a {
        self.endpoints
            .values()
            .filter_map(move |e| e.attachment(network).map(|a| (e, a)))
    }
}

/// Writes `value` as JSON to `path` atomically: a temporary file, fsync, rename, and the
/// directory synced, so a crash leaves the old file or the new one, whole. Every file the
/// agent keeps in its state directory is written so.
pub fn write_json(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let f = fs::File::create(&tmp)?;
    // Written as it is made: a state of many ports is never held whole as text.
    let mut w = std::io::BufWriter::new(f);
    serde_json::to_writer_pretty(&mut w, value).map_err(std::io::Error::other)?;
    let f = w
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The first `n` characters of an id (Docker shows 12): never splits a character.
pub fn short_id(id: &str, n: usize) -> &str {
    id.char_indices().nth(n).map_or(id, |(i, _)| &id[..i])
}

/// Host-side veth name of an endpoint's `slot`-th interface: "np" + 10 hex digits of the id,
/// then the slot when it is not the first (at most 15 characters, IFNAMSIZ). Only hex digits
/// of the id count, so an id from a hand-edited state file still makes a valid name.
fn host_ifname(id: &str, slot: usize) -> String {
    let base: String = id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(10)
        .collect();
    if slot == 0 {
        format!("np{base}")
    } else {
        format!("np{base}{slot:x}")
    }
}

#[cfg(test)]
mod tests;
