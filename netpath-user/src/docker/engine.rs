//! dockerd's own view, read from its Engine API (`--docker-host`, Docker's `DOCKER_HOST`):
//! which networks and which container endpoints Docker has, and their names.
//!
//! A driver hears only what dockerd tells it while it is up. A container removed or stopped,
//! or a network removed, while the agent was down leaves a netpath endpoint (its port, its
//! address) or network (its subnet) that Docker will never ask about again. At start, before
//! the plugin answers dockerd, the agent reads this view once and removes what Docker no
//! longer has ([`super::Plugin::reconcile`]). Docker never tells a driver the names of its
//! networks and containers either; the agent reads them here, at start and then every
//! [`NAMES_INTERVAL`], and keeps them as labels, so netpath's lists show Docker's names.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context as _};
use http_body_util::{BodyExt as _, Empty};
use hyper::{body::Bytes, Request};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use std::sync::Arc;

use tracing::{debug, warn};

use super::Plugin;
use crate::{api::Service, ipam::Subnet};

/// How often the names are read again.
pub const NAMES_INTERVAL: Duration = Duration::from_secs(5);
/// How long one read may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The label holding a Docker network's name.
pub const NETWORK_NAME_LABEL: &str = "com.docker.network.name";
/// The label holding the name of the container an endpoint belongs to.
pub const CONTAINER_NAME_LABEL: &str = "com.docker.container.name";

/// What dockerd has: networks by id, and the endpoints of its running containers by
/// endpoint id, each with its name (the container's, for an endpoint); the subnets of its
/// networks and the addresses its containers hold (for the IPAM pools).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineView {
    pub networks: BTreeMap<String, String>,
    pub endpoints: BTreeMap<String, String>,
    pub subnets: Vec<Subnet>,
    pub addresses: BTreeSet<Ipv4Addr>,
    pub subnets6: Vec<Subnet<std::net::Ipv6Addr>>,
    pub addresses6: BTreeSet<std::net::Ipv6Addr>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkSummary {
    id: String,
    name: String,
    #[serde(rename = "IPAM", default)]
    ipam: Option<NetworkIpam>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkIpam {
    #[serde(default)]
    config: Option<Vec<IpamConfig>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IpamConfig {
    #[serde(default)]
    subnet: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerSummary {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    network_settings: Option<ContainerNetworks>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerNetworks {
    #[serde(default)]
    networks: BTreeMap<String, ContainerEndpoint>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerEndpoint {
    #[serde(rename = "EndpointID", default)]
    endpoint_id: String,
    #[serde(rename = "IPAddress", default)]
    ip_address: String,
    #[serde(rename = "GlobalIPv6Address", default)]
    ipv6_address: String,
}

/// The socket path of a `unix://PATH` Docker host (or a plain path).
pub fn socket_of(host: &str) -> anyhow::Result<&Path> {
    let path = host.strip_prefix("unix://").unwrap_or(host);
    if !path.starts_with('/') {
        bail!("docker host {host:?}: expected unix:///PATH");
    }
    Ok(Path::new(path))
}

/// `GET path` on dockerd's socket, decoded.
async fn get<T: serde::de::DeserializeOwned>(socket: &Path, path: &str) -> anyhow::Result<T> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to dockerd at {}", socket.display()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(hyper::header::HOST, "docker")
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "dockerd answered {status} to {path}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    serde_json::from_slice(&body).with_context(|| format!("reading dockerd's answer to {path}"))
}

/// Reads dockerd's networks and its containers' endpoints.
pub async fn fetch(socket: &Path) -> anyhow::Result<EngineView> {
    tokio::time::timeout(TIMEOUT, async {
        let networks: Vec<NetworkSummary> = get(socket, "/networks").await?;
        let containers: Vec<ContainerSummary> = get(socket, "/containers/json?all=1").await?;
        Ok(view(networks, containers))
    })
    .await
    .unwrap_or_else(|_| {
        bail!(
            "dockerd at {} did not answer within {TIMEOUT:?}",
            socket.display()
        )
    })
}

/// At start, before the plugin answers dockerd: reads dockerd's view and removes what Docker
/// let go of meanwhile ([`super::Plugin::reconcile`]), then takes Docker's names. A dockerd
/// that does not answer is noted, and nothing is removed.
pub async fn reconcile_then_name<S: Service + 'static>(plugin: Arc<Plugin<S>>, socket: &Path) {
    match fetch(socket).await {
        Ok(view) => {
            let res = tokio::task::spawn_blocking(move || {
                plugin.reconcile(&view);
                plugin.name(&view)
            })
            .await;
            if let Ok(Err(e)) = res {
                warn!("labelling Docker's names: {}", e.msg);
            }
        }
        Err(e) => warn!(
            "{e:#}: what Docker removed while the agent was down stays until Docker asks again"
        ),
    }
}

/// Takes Docker's names again every [`NAMES_INTERVAL`] (networks and containers made since).
pub async fn keep_naming<S: Service + 'static>(plugin: Arc<Plugin<S>>, socket: PathBuf) {
    let mut reachable = true;
    loop {
        tokio::time::sleep(NAMES_INTERVAL).await;
        match fetch(&socket).await {
            Ok(view) => {
                reachable = true;
                let plugin = plugin.clone();
                let res = tokio::task::spawn_blocking(move || plugin.name(&view)).await;
                if let Ok(Err(e)) = res {
                    warn!("labelling Docker's names: {}", e.msg);
                }
            }
            Err(e) if reachable => {
                reachable = false;
                debug!("reading Docker's names: {e:#}");
            }
            Err(_) => {}
        }
    }
}

fn view(networks: Vec<NetworkSummary>, containers: Vec<ContainerSummary>) -> EngineView {
    let mut out = EngineView::default();
    for n in networks {
        let configs = n.ipam.and_then(|i| i.config).unwrap_or_default();
        out.subnets.extend(
            configs
                .iter()
                .filter_map(|c| c.subnet.parse::<Subnet>().ok()),
        );
        out.subnets6.extend(
            configs
                .iter()
                .filter_map(|c| c.subnet.parse::<Subnet<std::net::Ipv6Addr>>().ok()),
        );
        out.networks.insert(n.id, n.name);
    }
    for c in containers {
        let name = c
            .names
            .first()
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default();
        for ep in c
            .network_settings
            .into_iter()
            .flat_map(|s| s.networks.into_values())
        {
            if !ep.endpoint_id.is_empty() {
                out.endpoints.insert(ep.endpoint_id, name.clone());
                out.addresses.extend(ep.ip_address.parse::<Ipv4Addr>());
                out.addresses6
                    .extend(ep.ipv6_address.parse::<std::net::Ipv6Addr>());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dockers_lists() {
        let networks: Vec<NetworkSummary> = serde_json::from_str(
            r#"[{"Name":"web","Id":"aaa","Driver":"netpath","Labels":{},
                  "IPAM":{"Driver":"netpath","Config":[{"Subnet":"10.31.0.0/24"}]}},
                {"Name":"bridge","Id":"bbb","Driver":"bridge"}]"#,
        )
        .unwrap();
        let containers: Vec<ContainerSummary> = serde_json::from_str(
            r#"[{"Id":"c1","Names":["/front"],"State":"running",
                 "NetworkSettings":{"Networks":{"web":{"EndpointID":"e1","NetworkID":"aaa",
                   "IPAddress":"10.31.0.2"}}}},
                {"Id":"c2","Names":["/stopped"],"State":"exited",
                 "NetworkSettings":{"Networks":{"web":{"EndpointID":"","NetworkID":"aaa"}}}}]"#,
        )
        .unwrap();
        let v = view(networks, containers);
        assert_eq!(v.networks["aaa"], "web");
        assert_eq!(v.networks.len(), 2);
        assert_eq!(v.endpoints.len(), 1, "a stopped container has no endpoint");
        assert_eq!(v.endpoints["e1"], "front");
        assert_eq!(v.subnets, ["10.31.0.0/24".parse::<Subnet>().unwrap()]);
        assert_eq!(v.addresses.len(), 1);
        assert_eq!(
            socket_of("unix:///run/docker.sock").unwrap(),
            Path::new("/run/docker.sock")
        );
        assert!(socket_of("tcp://1.2.3.4:2375").is_err());
    }
}
