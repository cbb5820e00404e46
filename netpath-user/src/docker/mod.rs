//! Docker's network and IPAM plugin, served by the agent (`--docker-plugin NAME`) on
//! `/run/docker/plugins/NAME.sock`: dockerd's calls become the agent's own requests
//! ([`Service`]), so a Docker network is a netpath network and a container's interface an
//! endpoint of it, with the same datapath, state and refusals as the CLI's.
//!
//! | module | concern |
//! |---|---|
//! | here | the calls, one function each |
//! | `addresses` | the IPAM calls that take netpath's networks into account (pools, addresses) |
//! | `ports` | published ports: program, revoke, what Docker is told |
//! | `reconcile` | what dockerd changed while nobody answered it; Docker's names |
//! | `serve` | the plugin's socket: one HTTP request, one call |
//! | [`protocol`] | the JSON bodies of moby's `remote.md` and `ipam.md` |
//! | [`engine`] | dockerd's own view (its Engine API): what to reconcile, Docker's names |
//! | [`ipam`] | netpath's address pools for Docker (`--ipam-driver netpath`) |
//!
//! What maps to what:
//! - a network (`CreateNetwork`) is a netpath network named by the first 12 digits of
//!   Docker's id (Docker does not tell a driver its name), labelled with the whole id;
//! - an endpoint (`CreateEndpoint`) is a netpath endpoint with Docker's address and MAC, named
//!   likewise. Its veth pair is made at once, the peer left in the agent's namespace; `Join`
//!   hands the peer to dockerd, which moves it into the container, names it `ethN` and sets
//!   its address and routes (the gateway `Join` returns, so Docker adds no docker_gwbridge);
//! - published ports arrive in `ProgramExternalConnectivity` and go into the eBPF DNAT
//!   (`-P` comes as host port 0: an ephemeral port); `EndpointOperInfo` tells Docker the
//!   ports chosen, for `docker port`, `docker ps` and `docker inspect`.
use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};
use tracing::info;

use crate::{
    api::{ApiError, EndpointView, NetworkView, Service},
    ipam::{cidr_address, Subnet},
    model::{short_id, EndpointCreate, Engine, EngineKind, NetworkCreate},
    netlink::handover_name,
};

mod addresses;
pub mod engine;
pub mod ipam;
mod ports;
use ports::proto;
pub mod protocol;
mod reconcile;
mod serve;

pub use serve::{serve, socket_path};

use ipam::Pools;
use protocol::*;

/// The label holding a netpath network's or endpoint's Docker network id.
pub const NETWORK_LABEL: &str = crate::model::DOCKER_NETWORK_LABEL;
/// The label holding a netpath endpoint's Docker endpoint id.
pub const ENDPOINT_LABEL: &str = "com.docker.endpoint.id";
/// The label holding an endpoint's exposed ports (`80/tcp,53/udp`), for `EndpointOperInfo`.
pub const EXPOSED_LABEL: &str = "com.docker.network.endpoint.exposedports";
/// The driver name Docker's networks get in netpath.
const DRIVER: &str = "netpath";

/// Why a call was refused: one line, which `docker` prints after "Error response from daemon".
type Refusal = String;

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Refusal {
        e.msg
    }
}

/// The plugin: the agent's service, and the IPAM driver's pools.
pub struct Plugin<S> {
    svc: Arc<S>,
    pools: parking_lot::Mutex<Pools>,
}

impl<S: Service> Plugin<S> {
    pub fn new(svc: Arc<S>, pools: Pools) -> Plugin<S> {
        Plugin {
            svc,
            pools: parking_lot::Mutex::new(pools),
        }
    }

    /// Answers one call (`method` is the path without its `/`, such as
    /// `NetworkDriver.Join`). `None`: no such method (Docker then takes it as unsupported).
    pub fn call(&self, method: &str, body: &[u8]) -> Option<Result<Value, Refusal>> {
        let res = match method {
            "Plugin.Activate" => to_value(&Activate {
                implements: vec!["NetworkDriver", "IpamDriver"],
            }),
            "NetworkDriver.GetCapabilities" => to_value(&Capabilities {
                scope: "local",
                connectivity_scope: "local",
            }),
            "NetworkDriver.CreateNetwork" => parse(body).and_then(|r| self.create_network(&r)),
            "NetworkDriver.DeleteNetwork" => parse(body).and_then(|r| self.delete_network(&r)),
            "NetworkDriver.AllocateNetwork" => Ok(json!({ "Options": {} })),
            "NetworkDriver.FreeNetwork"
            | "NetworkDriver.DiscoverNew"
            | "NetworkDriver.DiscoverDelete"
            | "NetworkDriver.Leave" => Ok(json!({})),
            "NetworkDriver.CreateEndpoint" => parse(body).and_then(|r| self.create_endpoint(&r)),
            "NetworkDriver.DeleteEndpoint" => parse(body).and_then(|r| self.delete_endpoint(&r)),
            "NetworkDriver.EndpointOperInfo" => parse(body).and_then(|r| self.endpoint_info(&r)),
            "NetworkDriver.Join" => parse(body).and_then(|r| self.join(&r)),
            "NetworkDriver.ProgramExternalConnectivity" => {
                parse(body).and_then(|r| self.program_ports(&r))
            }
            "NetworkDriver.RevokeExternalConnectivity" => {
                parse(body).and_then(|r| self.revoke_ports(&r))
            }
            "IpamDriver.GetCapabilities" => to_value(&IpamCapabilities {
                requires_mac_address: false,
                requires_request_replay: false,
            }),
            "IpamDriver.GetDefaultAddressSpaces" => to_value(&AddressSpaces {
                local_default_address_space: ipam::ADDRESS_SPACE,
                global_default_address_space: ipam::ADDRESS_SPACE,
            }),
            "IpamDriver.RequestPool" => parse(body).and_then(|r| self.request_pool(&r)),
            "IpamDriver.ReleasePool" => parse::<ReleasePool>(body).and_then(|r| {
                self.pools()
                    .release_pool(&r.pool_id)
                    .map_err(|e| e.to_string())?;
                Ok(json!({}))
            }),
            "IpamDriver.RequestAddress" => parse(body).and_then(|r| self.request_address(&r)),
            "IpamDriver.ReleaseAddress" => parse::<AddressRequest>(body).and_then(|r| {
                self.pools()
                    .release_address(&r)
                    .map_err(|e| e.to_string())?;
                Ok(json!({}))
            }),
            _ => return None,
        };
        Some(res)
    }

    fn pools(&self) -> parking_lot::MutexGuard<'_, Pools> {
        self.pools.lock()
    }

    /// The netpath network of Docker network `id`.
    fn network(&self, id: &str) -> Option<NetworkView> {
        self.svc
            .networks()
            .into_iter()
            .find(|n| n.labels.get(NETWORK_LABEL).map(String::as_str) == Some(id))
    }

    fn network_or_refuse(&self, id: &str) -> Result<NetworkView, Refusal> {
        self.network(id).ok_or_else(|| {
            format!(
                "netpath has no network for Docker network {}",
                short_id(id, 12)
            )
        })
    }

    fn endpoint_or_refuse(&self, id: &str) -> Result<EndpointView, Refusal> {
        self.endpoint(id).ok_or_else(|| {
            format!(
                "netpath has no endpoint for Docker endpoint {}",
                short_id(id, 12)
            )
        })
    }

    /// The netpath endpoint of Docker endpoint `id`.
    fn endpoint(&self, id: &str) -> Option<EndpointView> {
        self.svc.endpoints().into_iter().find(|e| {
            e.engine
                .as_ref()
                .is_some_and(|g| g.kind == EngineKind::Docker && g.id == id)
        })
    }

    fn create_network(&self, req: &CreateNetwork) -> Result<Value, Refusal> {
        let data = match req.ipv4_data.as_deref() {
            Some([one]) => one,
            _ => return Err("a netpath network has exactly one IPv4 subnet".into()),
        };
        let data6 = match req.ipv6_data.as_deref() {
            None | Some([]) => None,
            Some([one]) => Some(one),
            Some(_) => return Err("a netpath network has at most one IPv6 subnet".into()),
        };
        if truthy(req.options.get(keys::ENABLE_IPV6)) && data6.is_none() {
            return Err("--ipv6 needs an IPv6 subnet from the IPAM driver".into());
        }
        let (subnet6, gateway6, ip_range6) = match data6 {
            Some(d) => {
                let s: crate::ipam::Subnet<std::net::Ipv6Addr> =
                    d.pool.parse().map_err(|e| format!("{e}"))?;
                let gw = d
                    .gateway
                    .split_once('/')
                    .map_or(d.gateway.as_str(), |(a, _)| a);
                let gw = (!gw.is_empty())
                    .then(|| gw.parse::<std::net::Ipv6Addr>())
                    .transpose()
                    .map_err(|e| format!("gateway: {e}"))?;
                let range = self.pools().by_subnet6(s).and_then(|p| p.range);
                (Some(s.to_string()), gw, range.map(|r| r.to_string()))
            }
            None => (None, None, None),
        };
        let subnet: Subnet = data.pool.parse().map_err(|e| format!("{e}"))?;
        let gateway = cidr_address(&data.gateway).map_err(|e| format!("gateway: {e}"))?;
        let ip_range = self
            .pools()
            .by_subnet(subnet)
            .and_then(|p| p.range)
            .map(|r| r.to_string());
        let options = match req.options.get(keys::GENERIC) {
            Some(Value::Object(o)) => o
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect(),
            _ => Vec::new(),
        };
        let create = NetworkCreate {
            name: short_id(&req.network_id, 12).to_string(),
            driver: Some(DRIVER.into()),
            subnet: Some(subnet.to_string()),
            gateway,
            ip_range,
            ipv4: None,
            ipv6: data6.is_some(),
            subnet6,
            gateway6,
            ip_range6,
            internal: truthy(req.options.get(keys::INTERNAL)),
            options,
            labels: [(NETWORK_LABEL.to_string(), req.network_id.clone())].into(),
        };
        let net = self.svc.create_network(&create)?;
        info!(network = %net.name, docker = %short_id(&req.network_id, 12), "Docker network created");
        Ok(json!({}))
    }

    fn delete_network(&self, req: &NetworkRef) -> Result<Value, Refusal> {
        if let Some(net) = self.network(&req.network_id) {
            self.svc.remove_network(&net.name)?;
        }
        Ok(json!({}))
    }

    fn create_endpoint(&self, req: &CreateEndpoint) -> Result<Value, Refusal> {
        let net = self.network_or_refuse(&req.network_id)?;
        let iface = req.interface.clone().unwrap_or_default();
        let ip = cidr_address(&iface.address).map_err(|e| e.to_string())?;
        let ip6 = cidr_address(&iface.address_ipv6).map_err(|e| e.to_string())?;
        let mut labels: BTreeMap<String, String> = [
            (NETWORK_LABEL.to_string(), req.network_id.clone()),
            (ENDPOINT_LABEL.to_string(), req.endpoint_id.clone()),
        ]
        .into();
        let exposed: Vec<TransportPort> = option(req.options.as_ref(), keys::EXPOSED_PORTS)?;
        if !exposed.is_empty() {
            let list: Result<Vec<String>, Refusal> = exposed
                .iter()
                .map(|p| Ok(format!("{}/{}", p.port, proto(p.proto)?)))
                .collect();
            labels.insert(EXPOSED_LABEL.to_string(), list?.join(","));
        }
        let create = EndpointCreate {
            name: short_id(&req.endpoint_id, 12).to_string(),
            netns: PathBuf::new(),
            network: Some(net.name.clone()),
            ip,
            ip6,
            mac: (!iface.mac_address.is_empty()).then(|| iface.mac_address.clone()),
            labels,
            engine: Some(Engine {
                kind: EngineKind::Docker,
                id: req.endpoint_id.clone(),
            }),
            ..EndpointCreate::default()
        };
        let ep = self.svc.create_endpoint(&create)?;
        info!(endpoint = %ep.name, network = %net.name, ip = ?ep.ip_address, "Docker endpoint created");
        // Docker refuses an answer that changes what it set: only a MAC it left to us.
        to_value(&CreateEndpointResponse {
            interface: iface.mac_address.is_empty().then(|| Interface {
                mac_address: ep.mac_address.clone(),
                ..Interface::default()
            }),
        })
    }

    fn delete_endpoint(&self, req: &EndpointRef) -> Result<Value, Refusal> {
        if let Some(ep) = self.endpoint(&req.endpoint_id) {
            self.svc.remove_endpoint(&ep.name)?;
        }
        Ok(json!({}))
    }

    fn join(&self, req: &EndpointRef) -> Result<Value, Refusal> {
        let ep = self.endpoint_or_refuse(&req.endpoint_id)?;
        let net = self.network_or_refuse(&req.network_id)?;
        // Each family's gateway, none on an internal network (no default route).
        let gateway = |v6: bool| {
            net.ipam
                .config
                .iter()
                .find(|c| c.gateway.is_ipv6() == v6 && !net.internal)
                .map(|c| c.gateway.to_string())
                .unwrap_or_default()
        };
        to_value(&JoinResponse {
            interface_name: InterfaceName {
                src_name: handover_name(&ep.host_interface),
                dst_prefix: "eth".into(),
            },
            gateway: gateway(false),
            gateway6: gateway(true),
            disable_gateway_service: false,
        })
    }
}

/// Docker's booleans arrive as `true` or `"true"`.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

/// Option `key` of a call, decoded (absent or null: the default).
fn option<T: DeserializeOwned + Default>(
    options: Option<&BTreeMap<String, Value>>,
    key: &str,
) -> Result<T, Refusal> {
    match options.and_then(|o| o.get(key)) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| format!("option {key}: {e}")),
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, Refusal> {
    serde_json::to_value(v).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
