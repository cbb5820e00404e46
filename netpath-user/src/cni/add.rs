//! `ADD`: the container's endpoint made (or connected to one more network), its ports
//! published, and the result the runtime reads.
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

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
                    None | Some("") => String::new(),
                    Some(ip) if ip.contains(':') => format!("[{ip}]:"),
                    Some(ip) => format!("{ip}:"),
                };
                Ok(format!("{ip}{}:{}/{proto}", p.host_port, p.container_port))
            })
            .collect()
    }

    /// The addresses asked for, IPv4's and IPv6's: the `ips` capability (one of each family
    /// at most), else `IP` in `CNI_ARGS` (Podman's way).
    pub(super) fn static_ips(&self) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>), CniError> {
        let bad = |e: String| CniError::new(codes::INVALID_CONFIG, e);
        let ips = &self.conf.runtime_config.ips;
        let (v6, v4): (Vec<&String>, Vec<&String>) = ips.iter().partition(|s| s.contains(':'));
        if v4.len() > 1 || v6.len() > 1 {
            return Err(bad("ips: at most one IPv4 and one IPv6 address".into()));
        }
        let asked = v4
            .first()
            .map(|s| s.as_str())
            .or_else(|| self.env.arg("IP").filter(|_| ips.is_empty()));
        let ip = cidr_address(asked.unwrap_or_default()).map_err(|e| bad(e.to_string()))?;
        let ip6 = cidr_address(v6.first().map_or("", |s| s.as_str()))
            .map_err(|e| bad(format!("ips: {e}")))?;
        Ok((ip, ip6))
    }

    pub(super) async fn add(&self) -> Result<Value, CniError> {
        self.need("CNI_CONTAINERID", &self.env.container_id)?;
        self.need("CNI_NETNS", &self.env.netns)?;
        self.need("CNI_IFNAME", &self.env.ifname)?;
        let network = self.conf.network();
        let (ip, ip6) = self.static_ips()?;
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
                    ip6,
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
                            ip6,
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
        // Each family's address with its pool's prefix and gateway (IPv4's first).
        let family = |addr: Option<std::net::IpAddr>, default_route: &str| {
            let addr = addr?;
            let config = net
                .ipam
                .config
                .iter()
                .find(|c| c.gateway.is_ipv6() == addr.is_ipv6())?;
            let prefix = config.subnet.split_once('/').map_or("", |(_, p)| p);
            let gateway = config.gateway.to_string();
            let mut ip = json!({"address": format!("{addr}/{prefix}"), "interface": 0});
            let mut route = None;
            if !net.internal {
                ip["gateway"] = gateway.clone().into();
                route = Some(json!({"dst": default_route, "gw": gateway}));
            }
            Some((ip, route, gateway))
        };
        let v4 = family(att.ip_address.map(Into::into), "0.0.0.0/0");
        let v6 = family(att.ipv6_address.map(Into::into), "::/0");
        let gateway = v4.as_ref().map(|(_, _, g)| g.clone()).unwrap_or_default();
        let (ips, routes): (Vec<Value>, Vec<Option<Value>>) =
            v4.into_iter().chain(v6).map(|(ip, r, _)| (ip, r)).unzip();
        let routes: Vec<Value> = routes.into_iter().flatten().collect();
        Ok(json!({
            "cniVersion": self.conf.cni_version,
            "interfaces": [{
                "name": att.interface,
                "mac": att.mac_address,
                "sandbox": self.env.netns,
            }],
            "ips": ips,
            "routes": routes,
            "dns": {
                "nameservers": [gateway],
                "search": ep.dns.search,
                "options": ep.dns.options,
            },
        }))
    }
}
