//! The CNI plugin (`netpath-cni`): the CNI 1.0/1.1 commands as requests to the agent's API,
//! so a runtime that speaks CNI (Podman's CNI backend, containerd and nerdctl, Kubernetes)
//! puts its containers on netpath networks, with the same datapath as the CLI and Docker.
//!
//! A container is one netpath endpoint; each CNI network it joins is one of its attachments
//! (the first `ADD` creates the endpoint in `CNI_NETNS`, later ones connect it), named
//! `CNI_IFNAME`. The network configuration names the netpath network (`network`, else the
//! configuration's `name`) and the agent's socket (`socket`). Runtime capabilities:
//! `portMappings` (published ports), `ips` (a static address), `mac`.
use std::{collections::BTreeMap, path::PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{
    agent::config::DEFAULT_SOCKET,
    api::{
        client::{Client, ClientError},
        EndpointView, NetworkView,
    },
    ipam::cidr_address,
    model::{
        short_id, valid_name, Connect, Disconnect, EndpointCreate, Engine, EngineKind, PortsRequest,
    },
};

/// The CNI versions this plugin speaks.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The label holding an endpoint's CNI container id.
pub const CONTAINER_LABEL: &str = "cni.containerid";

/// A CNI error: the code and message the spec's error result carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The error as the spec shows it on stdout.
    pub fn to_json(&self, version: &str) -> Value {
        json!({"cniVersion": version, "code": self.code, "msg": self.msg, "details": self.details})
    }
}

/// Error codes of the spec (and netpath's own, from 100).
pub mod codes {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    /// The agent refused the request (its message says why).
    pub const REFUSED: u32 = 100;
}

/// What the runtime sets in the environment.
#[derive(Clone, Debug, Default)]
pub struct Env {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
}

impl Env {
    pub fn from_process() -> Env {
        let var = |k| std::env::var(k).unwrap_or_default();
        Env {
            command: var("CNI_COMMAND"),
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: var("CNI_ARGS"),
        }
    }

    /// `CNI_ARGS` (`K=V;K=V`) value of `key`.
    fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

/// The network configuration on stdin (the keys netpath reads; the rest is ignored).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(default)]
    pub r#type: String,
    /// The netpath network (default: `name`).
    #[serde(default)]
    pub network: Option<String>,
    /// The agent's API socket.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    #[serde(default)]
    pub prev_result: Option<Value>,
    /// GC: the attachments to keep.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
}

/// `runtimeConfig`: what the runtime's capabilities carry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
}

/// One `portMappings` entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

/// One attachment GC keeps.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

impl NetConf {
    fn network(&self) -> &str {
        self.network.as_deref().unwrap_or(&self.name)
    }
}

/// Runs one CNI command; `Ok(Some(result))` is printed on stdout.
pub async fn run(env: &Env, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    if env.command == "VERSION" {
        return Ok(Some(
            json!({"cniVersion": "1.1.0", "supportedVersions": SUPPORTED}),
        ));
    }
    let conf: NetConf = serde_json::from_slice(stdin)
        .map_err(|e| CniError::new(codes::DECODE, format!("network configuration: {e}")))?;
    if !SUPPORTED.contains(&conf.cni_version.as_str()) {
        return Err(CniError::new(
            codes::INCOMPATIBLE_VERSION,
            format!(
                "netpath-cni speaks CNI {}, not {}",
                SUPPORTED.join(", "),
                conf.cni_version
            ),
        ));
    }
    let client = Client::new(conf.socket.clone().unwrap_or_else(|| DEFAULT_SOCKET.into()));
    let cni = Cni {
        env,
        conf: &conf,
        client,
    };
    match env.command.as_str() {
        "ADD" => cni.add().await.map(Some),
        "DEL" => cni.del().await.map(|()| None),
        "CHECK" => cni.check().await.map(|()| None),
        "GC" => cni.gc().await.map(|()| None),
        "STATUS" => cni.status().await.map(|()| None),
        "" => Err(CniError::new(codes::INVALID_ENV, "CNI_COMMAND is not set")),
        other => Err(CniError::new(
            codes::INVALID_ENV,
            format!("unknown CNI_COMMAND {other:?}"),
        )),
    }
}

struct Cni<'a> {
    env: &'a Env,
    conf: &'a NetConf,
    client: Client,
}

fn from_client(e: ClientError) -> CniError {
    match e {
        ClientError::Connect(..) => CniError::new(codes::TRY_AGAIN, e.to_string()),
        ClientError::Refused(m) => CniError::new(codes::REFUSED, m),
        other => CniError::new(codes::IO, other.to_string()),
    }
}

impl Cni<'_> {
    fn need(&self, what: &str, v: &str) -> Result<(), CniError> {
        if v.is_empty() {
            return Err(CniError::new(
                codes::INVALID_ENV,
                format!("{what} is not set"),
            ));
        }
        Ok(())
    }

    /// The endpoint of this container, if it has one.
    async fn endpoint(&self) -> Result<Option<EndpointView>, CniError> {
        Ok(self
            .client
            .endpoints()
            .await
            .map_err(from_client)?
            .into_iter()
            .find(|e| {
                e.engine
                    .as_ref()
                    .is_some_and(|g| g.kind == EngineKind::Cni && g.id == self.env.container_id)
            }))
    }

    fn specs(&self) -> Result<Vec<String>, CniError> {
        self.conf
            .runtime_config
            .port_mappings
            .iter()
            .map(|p| {
                let proto = p.protocol.as_deref().unwrap_or("tcp").to_ascii_lowercase();
                if proto != "tcp" && proto != "udp" {
                    return Err(CniError::new(
                        codes::INVALID_CONFIG,
                        format!("netpath publishes TCP and UDP ports, not {proto}"),
                    ));
                }
                let ip = match p.host_ip.as_deref() {
                    None | Some("") | Some("0.0.0.0") => String::new(),
                    Some(ip) => format!("{ip}:"),
                };
                Ok(format!("{ip}{}:{}/{proto}", p.host_port, p.container_port))
            })
            .collect()
    }

    /// The address asked for: the `ips` capability, else `IP` in `CNI_ARGS` (Podman's way).
    fn static_ip(&self) -> Result<Option<std::net::Ipv4Addr>, CniError> {
        let asked = self
            .conf
            .runtime_config
            .ips
            .first()
            .map(String::as_str)
            .or_else(|| self.env.arg("IP"));
        cidr_address(asked.unwrap_or_default())
            .map_err(|e| CniError::new(codes::INVALID_CONFIG, e.to_string()))
    }

    async fn add(&self) -> Result<Value, CniError> {
        self.need("CNI_CONTAINERID", &self.env.container_id)?;
        self.need("CNI_NETNS", &self.env.netns)?;
        self.need("CNI_IFNAME", &self.env.ifname)?;
        let network = self.conf.network();
        let ip = self.static_ip()?;
        let specs = self.specs()?;
        let mac = self
            .conf
            .runtime_config
            .mac
            .clone()
            .or_else(|| self.env.arg("MAC").map(str::to_string));
        let ep = match self.endpoint().await? {
            None => {
                let req = EndpointCreate {
                    name: self.endpoint_name().await?,
                    netns: PathBuf::from(&self.env.netns),
                    network: Some(network.to_string()),
                    ip,
                    ports: specs,
                    labels: BTreeMap::from([(
                        CONTAINER_LABEL.to_string(),
                        self.env.container_id.clone(),
                    )]),
                    ifname: Some(self.env.ifname.clone()),
                    mac,
                    engine: Some(Engine {
                        kind: EngineKind::Cni,
                        id: self.env.container_id.clone(),
                    }),
                    ..EndpointCreate::default()
                };
                self.client
                    .create_endpoint(&req)
                    .await
                    .map_err(from_client)?
            }
            Some(ep) if ep.networks.contains_key(network) => ep,
            Some(ep) => {
                let ep = self
                    .client
                    .connect(
                        network,
                        &Connect {
                            endpoint: ep.name.clone(),
                            ip,
                            ifname: Some(self.env.ifname.clone()),
                            mac,
                            ..Connect::default()
                        },
                    )
                    .await
                    .map_err(from_client)?;
                if !specs.is_empty() {
                    self.client
                        .publish(&ep.name, &PortsRequest { specs })
                        .await
                        .map_err(from_client)?;
                }
                ep
            }
        };
        let net = self.client.network(network).await.map_err(from_client)?;
        self.result(&ep, &net)
    }

    /// The endpoint's name: the pod's or container's name when the runtime gives one that is
    /// free, else `cni-` and the container id's first 12 characters.
    async fn endpoint_name(&self) -> Result<String, CniError> {
        let taken: Vec<String> = self
            .client
            .endpoints()
            .await
            .map_err(from_client)?
            .into_iter()
            .map(|e| e.name)
            .collect();
        let wanted = self
            .env
            .arg("K8S_POD_NAME")
            .filter(|n| valid_name(n) && !taken.iter().any(|t| t == n));
        Ok(match wanted {
            Some(n) => n.to_string(),
            None => format!("cni-{}", short_id(&self.env.container_id, 12)),
        })
    }

    /// The CNI result of `ep` on `net`.
    fn result(&self, ep: &EndpointView, net: &NetworkView) -> Result<Value, CniError> {
        let att = ep.networks.get(&net.name).ok_or_else(|| {
            CniError::new(
                codes::UNKNOWN_CONTAINER,
                format!("endpoint {} is not on network {}", ep.name, net.name),
            )
        })?;
        let config = net.ipam.config.first();
        let prefix = config
            .and_then(|c| c.subnet.split_once('/'))
            .map_or("32", |(_, p)| p);
        let gateway = config.map(|c| c.gateway.to_string()).unwrap_or_default();
        let mut ip = json!({
            "address": format!("{}/{prefix}", att.ip_address),
            "interface": 0,
        });
        let mut routes = Vec::new();
        if !net.internal {
            ip["gateway"] = gateway.clone().into();
            routes.push(json!({"dst": "0.0.0.0/0", "gw": gateway}));
        }
        Ok(json!({
            "cniVersion": self.conf.cni_version,
            "interfaces": [{
                "name": att.interface,
                "mac": att.mac_address,
                "sandbox": self.env.netns,
            }],
            "ips": [ip],
            "routes": routes,
            "dns": {
                "nameservers": [gateway],
                "search": ep.dns.search,
                "options": ep.dns.options,
            },
        }))
    }

    async fn del(&self) -> Result<(), CniError> {
        self.need("CNI_CONTAINERID", &self.env.container_id)?;
        let Some(ep) = self.endpoint().await? else {
            return Ok(());
        };
        let network = self.conf.network();
        if !ep.networks.contains_key(network) {
            return Ok(());
        }
        self.detach(&ep, network).await
    }

    /// Takes `ep` off `network`: the endpoint goes with its last network.
    async fn detach(&self, ep: &EndpointView, network: &str) -> Result<(), CniError> {
        let res = if ep.networks.len() == 1 {
            self.client.remove_endpoint(&ep.name).await
        } else {
            self.client
                .disconnect(
                    network,
                    &Disconnect {
                        endpoint: ep.name.clone(),
                    },
                )
                .await
                .map(drop)
        };
        res.map_err(from_client)
    }

    async fn check(&self) -> Result<(), CniError> {
        self.need("CNI_CONTAINERID", &self.env.container_id)?;
        let network = self.conf.network();
        let ep = self.endpoint().await?.ok_or_else(|| {
            CniError::new(
                codes::UNKNOWN_CONTAINER,
                format!(
                    "container {} has no netpath endpoint",
                    self.env.container_id
                ),
            )
        })?;
        let att = ep.networks.get(network).ok_or_else(|| {
            CniError::new(
                codes::UNKNOWN_CONTAINER,
                format!("endpoint {} is not on network {network}", ep.name),
            )
        })?;
        if !self.env.ifname.is_empty() && att.interface != self.env.ifname {
            return Err(CniError::new(
                codes::INVALID_CONFIG,
                format!(
                    "endpoint {} has {} on {network}, not {}",
                    ep.name, att.interface, self.env.ifname
                ),
            ));
        }
        if !self.env.netns.is_empty() && ep.netns.as_path() != std::path::Path::new(&self.env.netns)
        {
            return Err(CniError::new(
                codes::INVALID_CONFIG,
                format!(
                    "endpoint {} is in {}, not {}",
                    ep.name,
                    ep.netns.display(),
                    self.env.netns
                ),
            ));
        }
        // What the runtime was told must still hold.
        let told = self
            .conf
            .prev_result
            .as_ref()
            .and_then(|r| r["ips"][0]["address"].as_str())
            .map(str::to_string);
        if let Some(told) = told {
            if cidr_address(&told).ok().flatten() != Some(att.ip_address) {
                return Err(CniError::new(
                    codes::INVALID_CONFIG,
                    format!("address is {}, the runtime was told {told}", att.ip_address),
                ));
            }
        }
        Ok(())
    }

    /// Removes the network's CNI attachments the runtime no longer knows.
    async fn gc(&self) -> Result<(), CniError> {
        let keep = self.conf.valid_attachments.clone().unwrap_or_default();
        let network = self.conf.network();
        for ep in self.client.endpoints().await.map_err(from_client)? {
            let Some(id) = ep
                .engine
                .as_ref()
                .filter(|g| g.kind == EngineKind::Cni)
                .map(|g| g.id.clone())
            else {
                continue;
            };
            let Some(att) = ep.networks.get(network) else {
                continue;
            };
            if keep
                .iter()
                .any(|k| k.container_id == id && k.ifname == att.interface)
            {
                continue;
            }
            self.detach(&ep, network).await?;
        }
        Ok(())
    }

    async fn status(&self) -> Result<(), CniError> {
        self.client
            .network(self.conf.network())
            .await
            .map(drop)
            .map_err(|e| CniError::new(codes::NOT_AVAILABLE, e.to_string()))
    }
}

/// The plugin's `main`: reads the environment and stdin, prints the result or the error,
/// and says by the exit status which it was.
pub fn main() -> std::process::ExitCode {
    use std::io::{IsTerminal, Read};
    let env = Env::from_process();
    let mut stdin = Vec::new();
    let version = |stdin: &[u8]| {
        serde_json::from_slice::<Value>(stdin)
            .ok()
            .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
            .unwrap_or_else(|| "1.0.0".into())
    };
    // Runtimes hand every command, VERSION too, its configuration on stdin; only someone
    // asking VERSION by hand at a terminal is not waited for.
    let res = if env.command == "VERSION" && std::io::stdin().is_terminal() {
        Ok(())
    } else {
        std::io::stdin()
            .read_to_end(&mut stdin)
            .map(drop)
            .map_err(|e| CniError::new(codes::IO, format!("reading stdin: {e}")))
    }
    .and_then(|()| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CniError::new(codes::IO, e.to_string()))
    })
    .and_then(|rt| rt.block_on(run(&env, &stdin)));
    match res {
        Ok(Some(out)) => {
            println!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Ok(None) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            println!("{}", e.to_json(&version(&stdin)));
            std::process::ExitCode::FAILURE
        }
    }
}
