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
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
}

/// An endpoint: one network interface (`eth0`) in a network namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub id: String,
    /// The namespace's path (e.g. /run/netns/NAME or /proc/PID/ns/net).
    pub netns: PathBuf,
    pub network: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// Name of the host-side veth in the agent's namespace.
    pub host_ifname: String,
    pub ports: Vec<PortMapping>,
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
        let net_name = req.network.as_deref().unwrap_or(DEFAULT_NETWORK);
        let net = self
            .networks
            .get(net_name)
            .ok_or_else(|| ModelError::NoNetwork(net_name.to_string()))?;
        let used: Vec<Ipv4Addr> = self
            .endpoints
            .values()
            .filter(|e| e.network == net.name)
            .map(|e| e.ip)
            .collect();
        let ip = match req.ip {
            Some(ip) => {
                net.subnet.check_assignable(ip, net.gateway)?;
                if used.contains(&ip) {
                    return Err(IpamError::InUse(ip).into());
                }
                ip
            }
            None => net.subnet.allocate(net.gateway, &used)?,
        };
        let id = new_id();
        let mut ep = Endpoint {
            name: req.name.clone(),
            host_ifname: format!("np{}", &id[..10]),
            id,
            netns: req.netns.clone(),
            network: net.name.clone(),
            ip,
            mac: ipam::mac_for(ip),
            ports: Vec::new(),
        };
        ep.ports = self.resolve_specs(&req.ports)?;
        Ok(ep)
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
        self.endpoint(endpoint)?;
        if specs.is_empty() {
            return Err(ModelError::NoSpecs);
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

#[cfg(test)]
mod tests;
