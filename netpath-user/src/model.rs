//! The desired state: networks, endpoints and their published ports, as plain data.
//!
//! Every request is first *planned* here against the current state (all validation, no
//! kernel access); only a plan that passed is carried out by the agent, so a rejected request
//! changes nothing. The state is saved atomically as JSON in the agent's state directory.
use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    ipam::{self, IpamError, Subnet},
    ports::{self, AllocError, PortIndex, PortMapping, PortSpec, SpecError},
};

/// Name of the network that exists from the start (Docker's default bridge).
pub const DEFAULT_NETWORK: &str = "bridge";

/// A network: a subnet with a gateway on the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub id: String,
    /// Small numeric id: the datapath's key for this network.
    pub net_id: u32,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// Addresses are allocated from here when set (inside the subnet).
    #[serde(default)]
    pub ip_range: Option<Subnet>,
    /// Nothing leaves the network; its ports cannot be published.
    #[serde(default)]
    pub internal: bool,
    /// `--opt KEY=VALUE`, as given.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl Network {
    /// The address endpoints reach the host at (host.docker.internal): `--opt host-gateway`,
    /// else the gateway.
    pub fn host_gateway(&self) -> Ipv4Addr {
        self.options
            .get(HOST_GATEWAY)
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.gateway)
    }

    /// Host-gateway TCP ports the host serves on its loopback (`--opt host-loopback-ports`).
    pub fn host_loopback_ports(&self) -> Vec<u16> {
        self.options
            .get(HOST_LOOPBACK_PORTS)
            .map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Whether endpoints of this network may talk to each other (`--opt icc=false` says no).
    pub fn icc(&self) -> bool {
        ICC_KEYS
            .iter()
            .filter_map(|k| self.options.get(*k))
            .all(|v| v != "false")
    }
}

/// Option keys that set inter-container communication.
const ICC_KEYS: [&str; 2] = ["icc", "com.docker.network.bridge.enable_icc"];
/// Option key of the host-gateway address (host.docker.internal).
pub const HOST_GATEWAY: &str = "host-gateway";
/// Option key of the host-gateway TCP ports served by the host's loopback (beyond Docker).
pub const HOST_LOOPBACK_PORTS: &str = "host-loopback-ports";
/// Every option key a network accepts.
const KNOWN_OPTIONS: [&str; 4] = [ICC_KEYS[0], ICC_KEYS[1], HOST_GATEWAY, HOST_LOOPBACK_PORTS];

/// One interface of an endpoint, on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// Interface name inside the namespace (eth0, eth1, ...).
    pub ifname: String,
    /// Name of the host-side veth in the agent's namespace.
    pub host_ifname: String,
    #[serde(default)]
    pub aliases: Vec<String>,
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
}

impl Endpoint {
    /// The attachment published ports are delivered to.
    pub fn primary(&self) -> Option<&Attachment> {
        self.attachments.first()
    }

    pub fn attachment(&self, network: &str) -> Option<&Attachment> {
        self.attachments.iter().find(|a| a.network == network)
    }
}

/// What `network create` asks for.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NetworkCreate {
    pub name: String,
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub ip_range: Option<String>,
    #[serde(default)]
    pub internal: bool,
    /// KEY=VALUE strings.
    #[serde(default)]
    pub options: Vec<String>,
}

/// What `network connect` asks for.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Connect {
    pub endpoint: String,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// What `endpoint create` asks for.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EndpointCreate {
    pub name: String,
    pub netns: PathBuf,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub ports: Vec<String>,
}

/// Why a request was refused. Each message is one line, shown as is by the CLI.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid name {0:?}: use letters, digits, '_', '.', '-', starting with a letter or digit, at most 64")]
    BadName(String),
    #[error("endpoint {0:?} already exists")]
    EndpointExists(String),
    #[error("no such endpoint: {0}")]
    NoEndpoint(String),
    #[error("no such network: {0}")]
    NoNetwork(String),
    #[error("network namespace {0:?} is already used by endpoint {1:?}")]
    NetnsInUse(PathBuf, String),
    #[error("network namespace {0:?} does not exist")]
    NoNetns(PathBuf),
    #[error("{0}")]
    Ipam(#[from] IpamError),
    #[error("{0}")]
    Spec(#[from] SpecError),
    #[error("{0}")]
    Alloc(#[from] AllocError),
    #[error("no published port of {0} matches {1}")]
    NoMatch(String, String),
    #[error("no port spec given")]
    NoSpecs,
    #[error("network with name {0} already exists")]
    NetworkExists(String),
    #[error("invalid pool request: Pool overlaps with other one on this address space ({0} overlaps {1} of network {2})")]
    Overlap(Subnet, Subnet, String),
    #[error("no matching subnet for gateway {0}")]
    GatewayOutside(Ipv4Addr),
    #[error("gateway {0} is the network or broadcast address of {1}")]
    GatewayReserved(Ipv4Addr, Subnet),
    #[error("ip-range {0} is not inside subnet {1}")]
    RangeOutside(Subnet, Subnet),
    #[error("--gateway and --ip-range need --subnet")]
    NeedsSubnet,
    #[error("invalid option {0:?}: expected KEY=VALUE")]
    BadOption(String),
    #[error("unknown option {0:?} (known: {1})")]
    UnknownOption(String, String),
    #[error("invalid value {1:?} for option {0}: expected true or false")]
    BadOptionValue(String, String),
    #[error("error while removing network: network {0} has active endpoints ({1})")]
    NetworkInUse(String, String),
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("endpoint {0} is already connected to network {1}")]
    AlreadyConnected(String, String),
    #[error("endpoint {0} is not connected to network {1}")]
    NotConnected(String, String),
    #[error("endpoint {0} has no other network; remove the endpoint instead")]
    LastNetwork(String),
    #[error("network {0} is internal: its ports cannot be published")]
    InternalPorts(String),
    #[error("invalid alias {0:?}")]
    BadAlias(String),
    #[error(
        "invalid host-loopback-ports {0:?}: expected ports from 1 to 65535, separated by commas"
    )]
    BadPortList(String),
    #[error("invalid host-gateway {0:?}: expected an IPv4 address")]
    BadHostGateway(String),
    #[error("endpoint {0} is on 16 networks already")]
    TooManyNetworks(String),
}

/// The whole desired state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub networks: BTreeMap<String, Network>,
    pub endpoints: BTreeMap<String, Endpoint>,
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

    /// Writes the state file atomically: a temporary file, fsync, rename.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
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

    /// A free address of `net` (or checks the one asked for).
    fn address(&self, net: &Network, want: Option<Ipv4Addr>) -> Result<Ipv4Addr, ModelError> {
        let used: Vec<Ipv4Addr> = self.members(&net.name).map(|(_, a)| a.ip).collect();
        match want {
            Some(ip) => {
                net.subnet.check_assignable(ip, net.gateway)?;
                if used.contains(&ip) {
                    return Err(IpamError::InUse(ip).into());
                }
                Ok(ip)
            }
            None => {
                // From the ip-range when there is one: all of it is allocatable but what the
                // subnet reserves (its network and broadcast addresses, the gateway).
                let pool = net.ip_range.unwrap_or(net.subnet);
                let ip = pool
                    .addresses()
                    .find(|ip| {
                        !used.contains(ip) && net.subnet.check_assignable(*ip, net.gateway).is_ok()
                    })
                    .ok_or(IpamError::Exhausted(pool))?;
                Ok(ip)
            }
        }
    }

    /// Validates a network request against the networks and the host's routes (`routes`,
    /// only consulted when the subnet is chosen here) and returns the network it would create.
    pub fn plan_network(
        &self,
        req: &NetworkCreate,
        routes: &[Subnet],
    ) -> Result<Network, ModelError> {
        if !valid_name(&req.name) {
            return Err(ModelError::BadName(req.name.clone()));
        }
        if self.networks.contains_key(&req.name) {
            return Err(ModelError::NetworkExists(req.name.clone()));
        }
        let mut options = BTreeMap::new();
        for o in &req.options {
            let (k, v) = o
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| ModelError::BadOption(o.clone()))?;
            if !KNOWN_OPTIONS.contains(&k) {
                return Err(ModelError::UnknownOption(
                    k.to_string(),
                    KNOWN_OPTIONS.join(", "),
                ));
            }
            if ICC_KEYS.contains(&k) && v != "true" && v != "false" {
                return Err(ModelError::BadOptionValue(k.to_string(), v.to_string()));
            }
            if k == HOST_GATEWAY && v.parse::<Ipv4Addr>().is_err() {
                return Err(ModelError::BadHostGateway(v.to_string()));
            }
            if k == HOST_LOOPBACK_PORTS
                && !v
                    .split(',')
                    .all(|p| p.trim().parse::<u16>().is_ok_and(|p| p != 0))
            {
                return Err(ModelError::BadPortList(v.to_string()));
            }
            options.insert(k.to_string(), v.to_string());
        }
        let subnet = match &req.subnet {
            Some(s) => {
                let subnet: Subnet = s.parse()?;
                if let Some(n) = self.networks.values().find(|n| n.subnet.overlaps(&subnet)) {
                    return Err(ModelError::Overlap(subnet, n.subnet, n.name.clone()));
                }
                subnet
            }
            None => {
                if req.gateway.is_some() || req.ip_range.is_some() {
                    return Err(ModelError::NeedsSubnet);
                }
                let mut taken: Vec<Subnet> = routes.to_vec();
                taken.extend(self.networks.values().map(|n| n.subnet));
                ipam::pick_subnet(&taken)?
            }
        };
        let gateway = match req.gateway {
            Some(gw) => {
                if !subnet.contains(gw) {
                    return Err(ModelError::GatewayOutside(gw));
                }
                if subnet.prefix() < 31 && (gw == subnet.addr() || gw == subnet.broadcast()) {
                    return Err(ModelError::GatewayReserved(gw, subnet));
                }
                gw
            }
            None => subnet.first_host(),
        };
        let ip_range = match &req.ip_range {
            Some(r) => {
                let r: Subnet = r.parse()?;
                if !subnet.contains(r.addr()) || r.prefix() < subnet.prefix() {
                    return Err(ModelError::RangeOutside(r, subnet));
                }
                Some(r)
            }
            None => None,
        };
        let net_id = (1..)
            .find(|i| !self.networks.values().any(|n| n.net_id == *i))
            .unwrap_or(u32::MAX);
        Ok(Network {
            name: req.name.clone(),
            id: new_id(),
            net_id,
            subnet,
            gateway,
            ip_range,
            internal: req.internal,
            options,
        })
    }

    /// Validates removing a network.
    pub fn plan_network_rm(&self, name: &str) -> Result<&Network, ModelError> {
        let net = self.network(name)?;
        if name == DEFAULT_NETWORK {
            return Err(ModelError::Predefined(name.to_string()));
        }
        let users: Vec<&str> = self.members(name).map(|(e, _)| e.name.as_str()).collect();
        if !users.is_empty() {
            return Err(ModelError::NetworkInUse(name.to_string(), users.join(", ")));
        }
        Ok(net)
    }

    /// Validates an endpoint request and returns the endpoint it would create.
    pub fn plan_endpoint(&self, req: &EndpointCreate) -> Result<Endpoint, ModelError> {
        if !valid_name(&req.name) {
            return Err(ModelError::BadName(req.name.clone()));
        }
        if self.endpoints.contains_key(&req.name) {
            return Err(ModelError::EndpointExists(req.name.clone()));
        }
        if let Some(e) = self.endpoints.values().find(|e| e.netns == req.netns) {
            return Err(ModelError::NetnsInUse(req.netns.clone(), e.name.clone()));
        }
        if !req.netns.exists() {
            return Err(ModelError::NoNetns(req.netns.clone()));
        }
        let net = self.network(req.network.as_deref().unwrap_or(DEFAULT_NETWORK))?;
        let ip = self.address(net, req.ip)?;
        let id = new_id();
        let mut ep = Endpoint {
            name: req.name.clone(),
            attachments: vec![Attachment {
                network: net.name.clone(),
                ip,
                mac: ipam::mac_for(ip),
                ifname: "eth0".into(),
                host_ifname: host_ifname(&id, 0),
                aliases: Vec::new(),
            }],
            id,
            netns: req.netns.clone(),
            ports: Vec::new(),
        };
        if !req.ports.is_empty() && net.internal {
            return Err(ModelError::InternalPorts(net.name.clone()));
        }
        ep.ports = self.resolve_specs(&req.ports)?;
        Ok(ep)
    }

    /// Validates `network connect` and returns the new attachment.
    pub fn plan_connect(&self, network: &str, req: &Connect) -> Result<Attachment, ModelError> {
        let ep = self.endpoint(&req.endpoint)?;
        let net = self.network(network)?;
        if ep.attachment(network).is_some() {
            return Err(ModelError::AlreadyConnected(
                ep.name.clone(),
                network.to_string(),
            ));
        }
        if let Some(a) = req.aliases.iter().find(|a| !valid_name(a)) {
            return Err(ModelError::BadAlias(a.clone()));
        }
        let ip = self.address(net, req.ip)?;
        let n = (0..)
            .find(|i| !ep.attachments.iter().any(|a| a.ifname == format!("eth{i}")))
            .unwrap_or(0);
        let slot = (0..16)
            .find(|i| {
                !ep.attachments
                    .iter()
                    .any(|a| a.host_ifname == host_ifname(&ep.id, *i))
            })
            .ok_or_else(|| ModelError::TooManyNetworks(ep.name.clone()))?;
        Ok(Attachment {
            network: network.to_string(),
            ip,
            mac: ipam::mac_for(ip),
            ifname: format!("eth{n}"),
            host_ifname: host_ifname(&ep.id, slot),
            aliases: req.aliases.clone(),
        })
    }

    /// Validates `network disconnect`; returns the attachment it removes.
    pub fn plan_disconnect(
        &self,
        network: &str,
        endpoint: &str,
    ) -> Result<&Attachment, ModelError> {
        let ep = self.endpoint(endpoint)?;
        self.network(network)?;
        let a = ep
            .attachment(network)
            .ok_or_else(|| ModelError::NotConnected(endpoint.to_string(), network.to_string()))?;
        if ep.attachments.len() == 1 {
            return Err(ModelError::LastNetwork(endpoint.to_string()));
        }
        if ep.primary().is_some_and(|p| p.network == network) && !ep.ports.is_empty() {
            // The ports would move to the next network; refuse if it is internal.
            if let Some(next) = ep.attachments.get(1) {
                if self.network(&next.network)?.internal {
                    return Err(ModelError::InternalPorts(next.network.clone()));
                }
            }
        }
        Ok(a)
    }

    /// Resolves `-p` specs against everything already published.
    fn resolve_specs(&self, specs: &[String]) -> Result<Vec<PortMapping>, ModelError> {
        let parsed = specs
            .iter()
            .map(|s| s.parse::<PortSpec>())
            .collect::<Result<Vec<_>, _>>()?;
        let mut taken = PortIndex::new(self.all_ports());
        let mut out = Vec::new();
        for spec in &parsed {
            let got = ports::resolve(spec, &taken)?;
            for m in &got {
                taken.insert(m);
            }
            out.extend(got);
        }
        Ok(out)
    }

    /// Validates a publish request: the new mappings for `endpoint`.
    pub fn plan_publish(
        &self,
        endpoint: &str,
        specs: &[String],
    ) -> Result<Vec<PortMapping>, ModelError> {
        let ep = self.endpoint(endpoint)?;
        if specs.is_empty() {
            return Err(ModelError::NoSpecs);
        }
        if let Some(p) = ep.primary() {
            if self.network(&p.network)?.internal {
                return Err(ModelError::InternalPorts(p.network.clone()));
            }
        }
        self.resolve_specs(specs)
    }

    /// Validates an unpublish request: the mappings of `endpoint` it removes. Every spec must
    /// match at least one published mapping.
    pub fn plan_unpublish(
        &self,
        endpoint: &str,
        specs: &[String],
    ) -> Result<Vec<PortMapping>, ModelError> {
        let ep = self.endpoint(endpoint)?;
        if specs.is_empty() {
            return Err(ModelError::NoSpecs);
        }
        let mut out: Vec<PortMapping> = Vec::new();
        for s in specs {
            let spec: PortSpec = s.parse()?;
            let hits: Vec<_> = ep
                .ports
                .iter()
                .filter(|m| ports::spec_matches(&spec, m))
                .copied()
                .collect();
            if hits.is_empty() {
                return Err(ModelError::NoMatch(endpoint.to_string(), s.clone()));
            }
            for h in hits {
                if !out.contains(&h) {
                    out.push(h);
                }
            }
        }
        Ok(out)
    }
}

/// Host-side veth name of an endpoint's `slot`-th interface: "np" + 10 hex digits of the id,
/// then the slot when it is not the first (at most 15 characters, IFNAMSIZ).
fn host_ifname(id: &str, slot: usize) -> String {
    let base = &id[..10.min(id.len())];
    if slot == 0 {
        format!("np{base}")
    } else {
        format!("np{base}{slot:x}")
    }
}

#[cfg(test)]
mod tests;
