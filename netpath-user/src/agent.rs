//! The node agent: owns the datapath and the desired state, serves the API.
use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use netpath_common::{EndpointInfo, PortKey, PortTarget};
use tokio::net::UnixListener;
use tracing::{info, warn};

use crate::{
    api::{EndpointView, ErrorBody, NetworkView, PortView, PortsRequest, StatsView},
    datapath::{be_addr, be_port, Datapath, MapSizes, XdpMode},
    ipam,
    model::{self, Endpoint, EndpointCreate, ModelError, Network, State, DEFAULT_NETWORK},
    netlink::{self, EndpointLink, EndpointLinkSpec, NetError},
    ports::PortMapping,
};

/// Name of the port-less bridge that carries the networks' gateway addresses.
pub const GATEWAY_LINK: &str = "netpath0";
/// Name of an endpoint's interface inside its namespace.
pub const ENDPOINT_IFNAME: &str = "eth0";

/// How the agent was started.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub uplinks: Vec<String>,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    pub xdp: XdpMode,
    pub sizes: MapSizes,
}

/// An API failure: HTTP status and one line.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct ApiError {
    pub status: StatusCode,
    pub msg: String,
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        let status = match e {
            ModelError::NoEndpoint(_) | ModelError::NoNetwork(_) => StatusCode::NOT_FOUND,
            ModelError::EndpointExists(_) | ModelError::NetnsInUse(..) | ModelError::Alloc(_) => {
                StatusCode::CONFLICT
            }
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError {
            status,
            msg: e.to_string(),
        }
    }
}

impl From<NetError> for ApiError {
    fn from(e: NetError) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            msg: e.to_string(),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        msg: e.to_string(),
    }
}

/// The agent's state: desired state, datapath, and what it made in the kernel.
pub struct Agent {
    state: State,
    state_path: PathBuf,
    dp: Datapath,
    links: HashMap<String, EndpointLink>,
}

impl Agent {
    fn save(&self, state: &State) -> Result<(), ApiError> {
        state.save(&self.state_path).map_err(|e| {
            internal(format!(
                "saving state to {}: {e}",
                self.state_path.display()
            ))
        })
    }

    fn network(&self, name: &str) -> Result<&Network, ApiError> {
        Ok(self
            .state
            .networks
            .get(name)
            .ok_or_else(|| ModelError::NoNetwork(name.to_string()))?)
    }

    fn port_entry(&self, ep: &Endpoint, m: &PortMapping) -> Option<(PortKey, PortTarget)> {
        let link = self.links.get(&ep.name)?;
        Some((
            PortKey {
                addr: be_addr(m.host_ip),
                port: be_port(m.host_port),
                proto: m.proto.number(),
                _pad: 0,
            },
            PortTarget {
                addr: be_addr(ep.ip),
                port: be_port(m.container_port),
                _pad: 0,
                ifindex: link.ifindex,
                mac: ep.mac,
                gw_mac: link.host_mac,
            },
        ))
    }

    /// Writes the ports of `ep` into the PORTS map (all or nothing).
    fn install_ports(&mut self, ep: &Endpoint, maps: &[PortMapping]) -> Result<(), ApiError> {
        let mut done = Vec::new();
        for m in maps {
            let Some((k, v)) = self.port_entry(ep, m) else {
                continue;
            };
            if let Err(e) = self.dp.publish(k, v) {
                for k in done {
                    let _ = self.dp.unpublish(&k);
                }
                return Err(internal(format!("publishing {m}: {e}")));
            }
            done.push(k);
        }
        Ok(())
    }

    /// Removes the ports of `ep` from the PORTS map and flushes their flows.
    fn uninstall_ports(&mut self, ep: &Endpoint, maps: &[PortMapping]) {
        let Some(ifindex) = self.links.get(&ep.name).map(|l| l.ifindex) else {
            return;
        };
        for m in maps {
            if let Some((k, _)) = self.port_entry(ep, m) {
                let _ = self.dp.unpublish(&k);
            }
        }
        let doomed: HashSet<(u32, u16, u8)> = maps
            .iter()
            .map(|m| (be_addr(m.host_ip), be_port(m.host_port), m.proto.number()))
            .collect();
        let n = self.dp.flush_flows(|k, v| {
            v.ifindex == ifindex
                && (doomed.contains(&(v.addr, v.port, k.proto))
                    || doomed.contains(&(0, v.port, k.proto)))
        });
        info!(endpoint = %ep.name, flows = n, "flushed flows of unpublished ports");
    }

    /// Creates the kernel side of `ep` (veth, routes, maps, program); undone on failure.
    fn realize_endpoint(&mut self, ep: &Endpoint) -> Result<(), ApiError> {
        let net = self.network(&ep.network)?.clone();
        let link = netlink::create_endpoint(&EndpointLinkSpec {
            host_ifname: &ep.host_ifname,
            netns: &ep.netns,
            ifname: ENDPOINT_IFNAME,
            ip: ep.ip,
            prefix: net.subnet.prefix(),
            mac: ep.mac,
            gateway: net.gateway,
        })?;
        self.links.insert(ep.name.clone(), link);
        if let Err(e) = self.attach_endpoint(ep, &net, link) {
            self.unrealize_endpoint(ep);
            return Err(e);
        }
        Ok(())
    }

    fn attach_endpoint(
        &mut self,
        ep: &Endpoint,
        net: &Network,
        link: EndpointLink,
    ) -> Result<(), ApiError> {
        let info = EndpointInfo {
            addr: be_addr(ep.ip),
            gateway: be_addr(net.gateway),
            mac: ep.mac,
            host_mac: link.host_mac,
        };
        self.dp
            .endpoints
            .insert(link.ifindex, info, 0)
            .map_err(|e| internal(format!("endpoint map: {e}")))?;
        self.dp
            .attach_endpoint(&ep.host_ifname)
            .map_err(|e| internal(format!("attaching to {}: {e}", ep.host_ifname)))?;
        self.install_ports(ep, &ep.ports)
    }

    /// Removes everything of `ep` from the kernel: ports, flows, map entry, program, veth.
    fn unrealize_endpoint(&mut self, ep: &Endpoint) {
        self.uninstall_ports(ep, &ep.ports);
        if let Some(link) = self.links.remove(&ep.name) {
            let addr = be_addr(ep.ip);
            let n = self
                .dp
                .flush_flows(|k, v| v.ifindex == link.ifindex || k.src_addr == addr);
            info!(endpoint = %ep.name, flows = n, "flushed flows of removed endpoint");
            let _ = self.dp.endpoints.remove(&link.ifindex);
        }
        self.dp.detach_endpoint(&ep.host_ifname);
        if let Err(e) = netlink::delete_link(None, &ep.host_ifname) {
            warn!(endpoint = %ep.name, "{e}");
        }
    }

    pub fn create_endpoint(&mut self, req: &EndpointCreate) -> Result<EndpointView, ApiError> {
        let ep = self.state.plan_endpoint(req)?;
        self.realize_endpoint(&ep)?;
        let mut next = self.state.clone();
        next.endpoints.insert(ep.name.clone(), ep.clone());
        if let Err(e) = self.save(&next) {
            self.unrealize_endpoint(&ep);
            return Err(e);
        }
        self.state = next;
        info!(endpoint = %ep.name, ip = %ep.ip, "endpoint created");
        Ok((&ep).into())
    }

    pub fn remove_endpoint(&mut self, name: &str) -> Result<(), ApiError> {
        let ep = self.state.endpoint(name)?.clone();
        let mut next = self.state.clone();
        next.endpoints.remove(name);
        self.save(&next)?;
        self.state = next;
        self.unrealize_endpoint(&ep);
        info!(endpoint = %name, "endpoint removed");
        Ok(())
    }

    pub fn publish(&mut self, name: &str, specs: &[String]) -> Result<Vec<PortMapping>, ApiError> {
        let maps = self.state.plan_publish(name, specs)?;
        let mut next = self.state.clone();
        let ep = next
            .endpoints
            .get_mut(name)
            .ok_or_else(|| ModelError::NoEndpoint(name.to_string()))?;
        ep.ports.extend(&maps);
        let ep = ep.clone();
        self.install_ports(&ep, &maps)?;
        if let Err(e) = self.save(&next) {
            self.uninstall_ports(&ep, &maps);
            return Err(e);
        }
        self.state = next;
        Ok(maps)
    }

    pub fn unpublish(
        &mut self,
        name: &str,
        specs: &[String],
    ) -> Result<Vec<PortMapping>, ApiError> {
        let maps = self.state.plan_unpublish(name, specs)?;
        let mut next = self.state.clone();
        let ep = next
            .endpoints
            .get_mut(name)
            .ok_or_else(|| ModelError::NoEndpoint(name.to_string()))?;
        ep.ports.retain(|m| !maps.contains(m));
        let ep = ep.clone();
        self.save(&next)?;
        self.state = next;
        self.uninstall_ports(&ep, &maps);
        Ok(maps)
    }

    pub fn endpoints(&self) -> Vec<EndpointView> {
        self.state.endpoints.values().map(Into::into).collect()
    }

    pub fn endpoint(&self, name: &str) -> Result<EndpointView, ApiError> {
        Ok(self.state.endpoint(name)?.into())
    }

    pub fn networks(&self) -> Vec<NetworkView> {
        self.state.networks.values().map(Into::into).collect()
    }

    pub fn ports(&self) -> Vec<PortView> {
        self.state
            .endpoints
            .values()
            .flat_map(|e| {
                e.ports.iter().map(|m| PortView {
                    endpoint: e.name.clone(),
                    mapping: *m,
                })
            })
            .collect()
    }

    pub fn stats(&self) -> StatsView {
        StatsView {
            counters: self
                .dp
                .counters()
                .into_iter()
                .map(|(c, v)| (c.name().to_string(), v))
                .collect(),
            flows: self.dp.flows.keys().count(),
            published_ports: self.dp.published().len(),
            endpoints: self.dp.endpoints.keys().count(),
        }
    }

    pub fn sync_host_addrs(&mut self) -> anyhow::Result<()> {
        let addrs = netlink::host_addrs()?;
        self.dp.set_host_addrs(&addrs)?;
        Ok(())
    }

    /// Makes the kernel match the desired state after a start: endpoints whose veth survived
    /// are re-attached, lost ones are re-created while their namespace exists (dropped
    /// otherwise), and map entries nobody asked for are removed.
    fn reconcile(&mut self) -> anyhow::Result<()> {
        let gateways: Vec<Ipv4Addr> = self.state.networks.values().map(|n| n.gateway).collect();
        netlink::ensure_gateways(GATEWAY_LINK, &gateways)?;
        for (key, _) in self.dp.published() {
            let _ = self.dp.unpublish(&key);
        }
        for key in self
            .dp
            .endpoints
            .keys()
            .filter_map(Result::ok)
            .collect::<Vec<_>>()
        {
            let _ = self.dp.endpoints.remove(&key);
        }
        let mut next = self.state.clone();
        for ep in self.state.endpoints.clone().values() {
            let net = self.network(&ep.network)?.clone();
            let kept = match netlink::link_info(&ep.host_ifname)? {
                Some((ifindex, host_mac)) => {
                    let link = EndpointLink { ifindex, host_mac };
                    self.links.insert(ep.name.clone(), link);
                    self.attach_endpoint(ep, &net, link)
                        .map_err(|e| anyhow::anyhow!("{e}"))
                }
                None if ep.netns.exists() => self
                    .realize_endpoint(ep)
                    .map_err(|e| anyhow::anyhow!("{e}")),
                None => Err(anyhow::anyhow!("namespace {} is gone", ep.netns.display())),
            };
            if let Err(e) = kept {
                warn!(endpoint = %ep.name, "dropping endpoint: {e}");
                next.endpoints.remove(&ep.name);
            }
        }
        let live: HashSet<u32> = self.links.values().map(|l| l.ifindex).collect();
        self.dp.flush_flows(|_, v| !live.contains(&v.ifindex));
        if next != self.state {
            self.save(&next).map_err(|e| anyhow::anyhow!("{e}"))?;
            self.state = next;
        }
        Ok(())
    }
}

/// Makes sure `dir` is on a bpffs, mounting one where needed (inside `ip netns exec` /sys is
/// a fresh sysfs without one).
pub fn ensure_bpffs(dir: &Path) -> anyhow::Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    let is_bpffs = |p: &Path| {
        nix::sys::statfs::statfs(p)
            .map(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
            .unwrap_or(false)
    };
    if dir.exists() && is_bpffs(dir) {
        return Ok(());
    }
    if std::fs::create_dir_all(dir).is_ok() {
        if !is_bpffs(dir) {
            mount_bpffs(dir)?;
        }
        return Ok(());
    }
    // The nearest existing ancestor is not writable (e.g. sysfs): mount bpffs there.
    let ancestor = dir
        .ancestors()
        .find(|p| p.exists())
        .context("no existing ancestor of the bpffs dir")?;
    if is_bpffs(ancestor) {
        bail!("cannot create {} on bpffs", dir.display());
    }
    mount_bpffs(ancestor)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn mount_bpffs(at: &Path) -> anyhow::Result<()> {
    nix::mount::mount(
        Some("bpffs"),
        at,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mounting bpffs at {}", at.display()))?;
    info!(at = %at.display(), "mounted bpffs");
    Ok(())
}

/// Loads state, creating the default network (a subnet no route of this host uses).
fn load_state(path: &Path) -> anyhow::Result<State> {
    let mut state = State::load(path).with_context(|| format!("reading {}", path.display()))?;
    if !state.networks.contains_key(DEFAULT_NETWORK) {
        let mut taken = netlink::route_subnets()?;
        taken.extend(state.networks.values().map(|n| n.subnet));
        let subnet = ipam::pick_subnet(&taken)?;
        state.networks.insert(
            DEFAULT_NETWORK.into(),
            Network {
                name: DEFAULT_NETWORK.into(),
                id: model::new_id(),
                subnet,
                gateway: subnet.first_host(),
            },
        );
        state.save(path)?;
        info!(%subnet, "created the default network");
    }
    Ok(state)
}

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(cfg: AgentConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating {}", cfg.state_dir.display()))?;
    let state_path = cfg.state_dir.join("state.json");
    let state = load_state(&state_path)?;
    ensure_bpffs(&cfg.bpffs)?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").context("enabling IPv4 forwarding")?;

    let uplinks = if cfg.uplinks.is_empty() {
        vec![netlink::default_route_interface()?
            .context("no default route: name the uplink with --uplink IFACE")?]
    } else {
        cfg.uplinks.clone()
    };
    let mut dp = Datapath::load(Some(&cfg.bpffs), cfg.sizes).context("loading the datapath")?;
    for up in &uplinks {
        dp.attach_uplink(up, cfg.xdp)
            .with_context(|| format!("attaching to uplink {up}"))?;
        info!(uplink = %up, xdp = ?cfg.xdp, "attached");
    }
    let mut agent = Agent {
        state,
        state_path,
        dp,
        links: HashMap::new(),
    };
    agent.reconcile()?;
    agent.sync_host_addrs()?;
    let agent = Arc::new(Mutex::new(agent));

    let listener = bind_socket(&cfg.socket)?;
    info!(socket = %cfg.socket.display(), "serving the API");

    let watcher = tokio::spawn(watch_addrs(agent.clone()));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let (stream, _) = match conn {
                    Ok(c) => c,
                    Err(e) => { warn!("accept: {e}"); continue; }
                };
                let agent = agent.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(agent.clone(), req));
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await
                    {
                        warn!("connection: {e}");
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    info!("shutting down: detaching programs");
    watcher.abort();
    let _ = std::fs::remove_file(&cfg.socket);
    // Dropping the agent drops the datapath, whose links detach every program.
    drop(agent);
    Ok(())
}

fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another agent is serving {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Follows address changes over netlink and keeps HOST_ADDRS in step.
async fn watch_addrs(agent: Arc<Mutex<Agent>>) {
    use futures::StreamExt;
    let Ok((conn, _h, mut msgs)) =
        rtnetlink::new_multicast_connection(&[rtnetlink::MulticastGroup::Ipv4Ifaddr])
    else {
        warn!("cannot follow address changes");
        return;
    };
    tokio::spawn(conn);
    while msgs.next().await.is_some() {
        let agent = agent.clone();
        let res = tokio::task::spawn_blocking(move || match agent.lock() {
            Ok(mut a) => a.sync_host_addrs(),
            Err(_) => Err(anyhow::anyhow!("agent lock poisoned")),
        })
        .await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("syncing host addresses: {e}"),
            Err(e) => warn!("syncing host addresses: {e}"),
        }
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn handle(
    agent: Arc<Mutex<Agent>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error_response(&ApiError {
                status: StatusCode::BAD_REQUEST,
                msg: format!("reading request: {e}"),
            }))
        }
    };
    let res = tokio::task::spawn_blocking(move || {
        let mut agent = agent.lock().map_err(|_| internal("agent lock poisoned"))?;
        route(&mut agent, &method, &path, &body)
    })
    .await
    .unwrap_or_else(|e| Err(internal(e)));
    Ok(match res {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => error_response(&e),
    })
}

fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&ErrorBody {
        error: e.msg.clone(),
    })
    .unwrap_or_default();
    json_response(e.status, body)
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        msg: format!("invalid request body: {e}"),
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(v).map_err(internal)
}

fn route(agent: &mut Agent, method: &Method, path: &str, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::GET, ["v1", "networks"]) => to_json(&agent.networks()),
        (&Method::GET, ["v1", "endpoints"]) => to_json(&agent.endpoints()),
        (&Method::POST, ["v1", "endpoints"]) => {
            let req: EndpointCreate = parse_body(body)?;
            to_json(&agent.create_endpoint(&req)?)
        }
        (&Method::GET, ["v1", "endpoints", name]) => to_json(&agent.endpoint(name)?),
        (&Method::DELETE, ["v1", "endpoints", name]) => {
            agent.remove_endpoint(name)?;
            Ok(b"{}".to_vec())
        }
        (&Method::POST, ["v1", "endpoints", name, "publish"]) => {
            let req: PortsRequest = parse_body(body)?;
            to_json(&agent.publish(name, &req.specs)?)
        }
        (&Method::POST, ["v1", "endpoints", name, "unpublish"]) => {
            let req: PortsRequest = parse_body(body)?;
            to_json(&agent.unpublish(name, &req.specs)?)
        }
        (&Method::GET, ["v1", "ports"]) => to_json(&agent.ports()),
        (&Method::GET, ["v1", "stats"]) => to_json(&agent.stats()),
        _ => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            msg: format!("no such API path: {method} {path}"),
        }),
    }
}
