//! `ADD`: the container's endpoint made (or connected to one more network), its ports
//! published, and the result the runtime reads.
use std::{collections::BTreeMap, path::PathBuf};

use serde_json::{json, Value};

use super::{codes, from_client, Cni, CniError, CONTAINER_LABEL};
use crate::{
    api::{EndpointView, NetworkView},
    ipam::cidr_address,
    model::{short_id, valid_name, Connect, EndpointCreate, Engine, EngineKind, PortsRequest},
};

impl Cni<'_> {
    pub(super) fn need(&self, what: &str, v: &str) -> Result<(), CniError> {
        if v.is_empty() {
            return Err(CniError::new(
                codes::INVALID_ENV,
                format!("{what} is not set"),
            ));
        }
        Ok(())
    }

    /// The endpoint of this container, if it has one.
    pub(super) async fn endpoint(&self) -> Result<Option<EndpointView>, CniError> {
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

    pub(super) fn specs(&self) -> Result<Vec<String>, CniError> {
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
    pub(super) fn static_ip(&self) -> Result<Option<std::net::Ipv4Addr>, CniError> {
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

    pub(super) async fn add(&self) -> Result<Value, CniError> {
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
                    // The pod's namespace, as Kubernetes' runtimes say it: what network
                    // policies select it in.
                    namespace: self.env.arg("K8S_POD_NAMESPACE").map(str::to_string),
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
    pub(super) async fn endpoint_name(&self) -> Result<String, CniError> {
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
    pub(super) fn result(&self, ep: &EndpointView, net: &NetworkView) -> Result<Value, CniError> {
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
}
