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
use netpath_common::{PortKey, PortTarget, SNAT_PORTS, SNAT_PORT_MIN};
use tokio::net::UnixListener;
use tracing::{info, warn};

use crate::{
    api::{EndpointView, ErrorBody, NetworkView, PortView, PortsRequest, StatsView},
    datapath::{be_addr, be_port, Datapath, MapSizes, XdpMode},
    model::{
        Attachment, Connect, Endpoint, EndpointCreate, ModelError, Network, NetworkCreate, State,
        DEFAULT_NETWORK,
    },
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
    /// cgroup v2 directory for the socket hooks (default: the root, found from the mounts).
    pub cgroup: Option<PathBuf>,
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
            ModelError::EndpointExists(_)
            | ModelError::NetnsInUse(..)
            | ModelError::Alloc(_)
            | ModelError::NetworkExists(_)
            | ModelError::Overlap(..)
            | ModelError::NetworkInUse(..)
            | ModelError::AlreadyConnected(..) => StatusCode::CONFLICT,
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
    /// Host-side veths made for attachments, by name.
    links: HashMap<String, EndpointLink>,
    /// Uplink interface names (their addresses are the outbound NAT sources).
    uplinks: Vec<String>,
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

    /// Commits `next` as the desired state (saved first).
    fn commit(&mut self, next: State) -> Result<(), ApiError> {
        self.save(&next)?;
        self.state = next;
        Ok(())
    }

    fn port_entry(&self, ep: &Endpoint, m: &PortMapping) -> Option<(PortKey, PortTarget)> {
        let att = ep.primary()?;
        let link = self.links.get(&att.host_ifname)?;
        Some((
            PortKey {
                addr: be_addr(m.host_ip),
                port: be_port(m.host_port),
                proto: m.proto.number(),
                _pad: 0,
            },
            PortTarget {
                addr: be_addr(att.ip),
                port: be_port(m.container_port),
                _pad: 0,
                ifindex: link.ifindex,
                mac: att.mac,
                gw_mac: link.host_mac,
            },
        ))
    }

    /// Writes the ports of `ep` into the datapath (all or nothing).
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

    /// Removes the ports of `ep` from the datapath and flushes their flows.
    fn uninstall_ports(&mut self, ep: &Endpoint, maps: &[PortMapping]) {
        let Some(ifindex) = ep
            .primary()
            .and_then(|a| self.links.get(&a.host_ifname))
            .map(|l| l.ifindex)
        else {
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

    /// Puts `net` into the datapath and its gateway on the gateway bridge.
    fn realize_network(&mut self, net: &Network) -> Result<(), ApiError> {
        netlink::ensure_gateways(GATEWAY_LINK, &host_addresses(net))?;
        self.dp
            .add_network(net)
            .map_err(|e| internal(format!("network {}: {e}", net.name)))?;
        self.sync_members(net);
        Ok(())
    }

    fn unrealize_network(&mut self, net: &Network) {
        self.dp.remove_network(net);
        let still_used: Vec<Ipv4Addr> = self
            .state
            .networks
            .values()
            .flat_map(host_addresses)
            .collect();
        for addr in host_addresses(net) {
            if still_used.contains(&addr) {
                continue;
            }
            if let Err(e) = netlink::remove_gateway(GATEWAY_LINK, addr) {
                warn!(network = %net.name, "{e}");
            }
        }
    }

    /// Rewrites the member list of `net` (for broadcasts) from the attachments that exist.
    fn sync_members(&mut self, net: &Network) {
        let ifindexes: Vec<u32> = self
            .state
            .members(&net.name)
            .filter_map(|(_, a)| self.links.get(&a.host_ifname).map(|l| l.ifindex))
            .collect();
        if let Err(e) = self.dp.set_members(net.net_id, &ifindexes) {
            warn!(network = %net.name, "members: {e}");
        }
    }

    /// Creates the kernel side of one attachment (veth, routes, maps, program); undone on
    /// failure.
    fn realize_attachment(
        &mut self,
        ep: &Endpoint,
        att: &Attachment,
        primary: bool,
    ) -> Result<(), ApiError> {
        let net = self.state.network(&att.network)?.clone();
        let link = netlink::create_endpoint(&EndpointLinkSpec {
            host_ifname: &att.host_ifname,
            netns: &ep.netns,
            ifname: &att.ifname,
            ip: att.ip,
            prefix: net.subnet.prefix(),
            mac: att.mac,
            gateway: net.gateway,
            default_route: primary && !net.internal,
        })?;
        if let Err(e) = self.attach(att, &net, link) {
            self.unrealize_attachment(att);
            return Err(e);
        }
        Ok(())
    }

    /// Maps and program of an attachment whose veth exists.
    fn attach(
        &mut self,
        att: &Attachment,
        net: &Network,
        link: EndpointLink,
    ) -> Result<(), ApiError> {
        self.links.insert(att.host_ifname.clone(), link);
        self.dp
            .add_attachment(link.ifindex, att.ip, att.mac, link.host_mac, net.net_id)
            .map_err(|e| internal(format!("endpoint maps: {e}")))?;
        self.dp
            .attach_endpoint(&att.host_ifname)
            .map_err(|e| internal(format!("attaching to {}: {e}", att.host_ifname)))?;
        Ok(())
    }

    /// Removes one attachment from the kernel: flows, maps, program, veth.
    fn unrealize_attachment(&mut self, att: &Attachment) {
        if let Some(link) = self.links.remove(&att.host_ifname) {
            let addr = be_addr(att.ip);
            let n = self
                .dp
                .flush_flows(|k, v| v.ifindex == link.ifindex || k.src_addr == addr);
            let n = n + self.dp.flush_snat(|rev| rev.ifindex == link.ifindex);
            info!(interface = %att.host_ifname, flows = n, "flushed flows of removed interface");
            self.dp.remove_attachment(link.ifindex, att.ip);
        }
        self.dp.detach_endpoint(&att.host_ifname);
        if let Err(e) = netlink::delete_link(None, &att.host_ifname) {
            warn!(interface = %att.host_ifname, "{e}");
        }
    }

    /// Every attachment and port of `ep`, out of the kernel.
    fn unrealize_endpoint(&mut self, ep: &Endpoint) {
        self.uninstall_ports(ep, &ep.ports);
        for att in &ep.attachments {
            self.unrealize_attachment(att);
        }
    }

    pub fn create_endpoint(&mut self, req: &EndpointCreate) -> Result<EndpointView, ApiError> {
        let ep = self.state.plan_endpoint(req)?;
        let att = ep.attachments[0].clone();
        self.realize_attachment(&ep, &att, true)?;
        let mut next = self.state.clone();
        next.endpoints.insert(ep.name.clone(), ep.clone());
        let res = self
            .install_ports(&ep, &ep.ports)
            .and_then(|()| self.commit(next));
        if let Err(e) = res {
            self.unrealize_endpoint(&ep);
            return Err(e);
        }
        self.sync_members(&self.state.network(&att.network)?.clone());
        self.write_hosts(&ep);
        info!(endpoint = %ep.name, ip = %att.ip, "endpoint created");
        Ok(self.view(&ep))
    }

    pub fn remove_endpoint(&mut self, name: &str) -> Result<(), ApiError> {
        let ep = self.state.endpoint(name)?.clone();
        let mut next = self.state.clone();
        next.endpoints.remove(name);
        self.commit(next)?;
        self.unrealize_endpoint(&ep);
        self.remove_hosts(&ep);
        for att in &ep.attachments {
            if let Ok(net) = self.state.network(&att.network).cloned() {
                self.sync_members(&net);
            }
        }
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
        if let Err(e) = self.commit(next) {
            self.uninstall_ports(&ep, &maps);
            return Err(e);
        }
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
        self.commit(next)?;
        self.uninstall_ports(&ep, &maps);
        Ok(maps)
    }

    pub fn create_network(&mut self, req: &NetworkCreate) -> Result<NetworkView, ApiError> {
        let routes = netlink::route_subnets()?;
        let net = self.state.plan_network(req, &routes)?;
        self.realize_network(&net)?;
        let mut next = self.state.clone();
        next.networks.insert(net.name.clone(), net.clone());
        if let Err(e) = self.commit(next) {
            self.unrealize_network(&net);
            return Err(e);
        }
        info!(network = %net.name, subnet = %net.subnet, "network created");
        Ok(self.network_view(&net))
    }

    pub fn remove_network(&mut self, name: &str) -> Result<(), ApiError> {
        let net = self.state.plan_network_rm(name)?.clone();
        let mut next = self.state.clone();
        next.networks.remove(name);
        self.commit(next)?;
        self.unrealize_network(&net);
        info!(network = %name, "network removed");
        Ok(())
    }

    pub fn connect(&mut self, network: &str, req: &Connect) -> Result<EndpointView, ApiError> {
        let att = self.state.plan_connect(network, req)?;
        let ep = self.state.endpoint(&req.endpoint)?.clone();
        self.realize_attachment(&ep, &att, false)?;
        let mut next = self.state.clone();
        let mut updated = ep.clone();
        updated.attachments.push(att.clone());
        next.endpoints.insert(ep.name.clone(), updated.clone());
        if let Err(e) = self.commit(next) {
            self.unrealize_attachment(&att);
            return Err(e);
        }
        self.sync_members(&self.state.network(network)?.clone());
        self.write_hosts(&updated);
        info!(endpoint = %ep.name, %network, ip = %att.ip, "connected");
        Ok(self.view(&updated))
    }

    pub fn disconnect(&mut self, network: &str, endpoint: &str) -> Result<EndpointView, ApiError> {
        let att = self.state.plan_disconnect(network, endpoint)?.clone();
        let ep = self.state.endpoint(endpoint)?.clone();
        let mut updated = ep.clone();
        updated.attachments.retain(|a| a.network != network);
        let mut next = self.state.clone();
        next.endpoints.insert(ep.name.clone(), updated.clone());
        self.commit(next)?;
        let moves_ports = ep.primary().is_some_and(|p| p.network == network);
        if moves_ports {
            self.uninstall_ports(&ep, &ep.ports);
        }
        self.unrealize_attachment(&att);
        if moves_ports {
            if let Err(e) = self.install_ports(&updated, &updated.ports) {
                warn!(endpoint = %endpoint, "moving published ports: {e}");
            }
        }
        self.sync_members(&self.state.network(network)?.clone());
        self.write_hosts(&updated);
        info!(%endpoint, %network, "disconnected");
        Ok(self.view(&updated))
    }

    /// Writes the endpoint's hosts file where netpath can manage one: for a namespace named
    /// by `ip netns` (/run/netns/NAME), /etc/netns/NAME/hosts, which `ip netns exec` shows as
    /// /etc/hosts. It names the endpoint and `host.docker.internal`.
    fn write_hosts(&self, ep: &Endpoint) {
        let Some(path) = hosts_file(ep) else { return };
        let mut text = format!(
            "# Written by netpath for endpoint {}.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
            ep.name
        );
        for a in &ep.attachments {
            text += &format!("{}\t{}", a.ip, ep.name);
            for alias in &a.aliases {
                text += &format!(" {alias}");
            }
            text += "\n";
        }
        if let Some(net) = ep
            .primary()
            .and_then(|a| self.state.networks.get(&a.network))
        {
            text += &format!("{}\thost.docker.internal\n", net.host_gateway());
        }
        let res = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                let tmp = path.with_extension("netpath.tmp");
                std::fs::write(&tmp, text)?;
                std::fs::rename(&tmp, &path)
            });
        if let Err(e) = res {
            warn!(endpoint = %ep.name, "writing {}: {e}", path.display());
        }
    }

    fn remove_hosts(&self, ep: &Endpoint) {
        if let Some(path) = hosts_file(ep) {
            let _ = std::fs::remove_file(&path);
            if let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }

    fn view(&self, ep: &Endpoint) -> EndpointView {
        EndpointView::new(ep)
    }

    fn network_view(&self, net: &Network) -> NetworkView {
        NetworkView::new(net, self.state.members(&net.name))
    }

    pub fn endpoints(&self) -> Vec<EndpointView> {
        self.state
            .endpoints
            .values()
            .map(|e| self.view(e))
            .collect()
    }

    pub fn endpoint(&self, name: &str) -> Result<EndpointView, ApiError> {
        Ok(self.view(self.state.endpoint(name)?))
    }

    pub fn networks(&self) -> Vec<NetworkView> {
        self.state
            .networks
            .values()
            .map(|n| self.network_view(n))
            .collect()
    }

    pub fn network(&self, name: &str) -> Result<NetworkView, ApiError> {
        Ok(self.network_view(self.state.network(name)?))
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
            outbound_flows: self.dp.snat.keys().count(),
            published_ports: self.dp.published().len(),
            endpoints: self.dp.endpoints.keys().count(),
            networks: self.dp.networks.keys().count(),
        }
    }

    /// Follows the host's addresses: HOST_ADDRS, and each uplink's address for outbound NAT.
    pub fn sync_host_addrs(&mut self) -> anyhow::Result<()> {
        let addrs = netlink::host_addrs()?;
        self.dp.set_host_addrs(&addrs)?;
        let mut uplinks = Vec::new();
        for name in &self.uplinks {
            if let Some(u) = netlink::link_ipv4(name)? {
                uplinks.push(u);
            }
        }
        self.dp.set_uplinks(&uplinks)?;
        Ok(())
    }

    /// Drops idle outbound NAT entries.
    pub fn expire_snat(&mut self) {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
            .unwrap_or(0);
        let n = self.dp.expire_snat(now);
        if n > 0 {
            info!(flows = n, "expired outbound NAT flows");
        }
    }

    /// Makes the kernel match the desired state after a start: networks are written again,
    /// attachments whose veth survived are re-attached, lost ones re-created while their
    /// namespace exists (the endpoint is dropped otherwise), and map entries nobody asked for
    /// are removed.
    fn reconcile(&mut self) -> anyhow::Result<()> {
        self.dp.clear();
        let gateways: Vec<Ipv4Addr> = self
            .state
            .networks
            .values()
            .flat_map(host_addresses)
            .collect();
        netlink::ensure_gateways(GATEWAY_LINK, &gateways)?;
        for net in self.state.networks.clone().values() {
            self.dp.add_network(net)?;
        }
        let mut next = self.state.clone();
        for ep in self.state.endpoints.clone().values() {
            let mut kept = Ok(());
            for (i, att) in ep.attachments.iter().enumerate() {
                let net = self.state.network(&att.network)?.clone();
                kept = match netlink::link_info(&att.host_ifname)? {
                    Some((ifindex, host_mac)) => self
                        .attach(att, &net, EndpointLink { ifindex, host_mac })
                        .map_err(|e| anyhow::anyhow!("{e}")),
                    None if ep.netns.exists() => self
                        .realize_attachment(ep, att, i == 0)
                        .map_err(|e| anyhow::anyhow!("{e}")),
                    None => Err(anyhow::anyhow!("namespace {} is gone", ep.netns.display())),
                };
                if kept.is_err() {
                    break;
                }
            }
            let kept = kept.and_then(|()| {
                self.install_ports(ep, &ep.ports)
                    .map_err(|e| anyhow::anyhow!("{e}"))
            });
            if let Err(e) = kept {
                warn!(endpoint = %ep.name, "dropping endpoint: {e}");
                for att in &ep.attachments {
                    self.unrealize_attachment(att);
                }
                next.endpoints.remove(&ep.name);
            }
        }
        if next != self.state {
            self.commit(next).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        for net in self.state.networks.clone().values() {
            self.sync_members(net);
        }
        let live: HashSet<u32> = self.links.values().map(|l| l.ifindex).collect();
        self.dp.flush_flows(|_, v| !live.contains(&v.ifindex));
        self.dp.flush_snat(|rev| !live.contains(&rev.ifindex));
        Ok(())
    }
}

/// /etc/netns/NAME/hosts for an endpoint in /run/netns/NAME.
fn hosts_file(ep: &Endpoint) -> Option<PathBuf> {
    let name = ep.netns.strip_prefix("/run/netns").ok()?.to_str()?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    Some(Path::new("/etc/netns").join(name).join("hosts"))
}

/// The host addresses a network needs: its gateway and its host-gateway.
fn host_addresses(net: &Network) -> Vec<Ipv4Addr> {
    let mut v = vec![net.gateway];
    if net.host_gateway() != net.gateway {
        v.push(net.host_gateway());
    }
    v
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
        let routes = netlink::route_subnets()?;
        let net = state.plan_network(
            &NetworkCreate {
                name: DEFAULT_NETWORK.into(),
                ..Default::default()
            },
            &routes,
        )?;
        info!(subnet = %net.subnet, "created the default network");
        state.networks.insert(net.name.clone(), net);
        state.save(path)?;
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
    // Outbound NAT ports are netpath's: the host's own sockets never get them automatically.
    let snat_last = u32::from(SNAT_PORT_MIN) + SNAT_PORTS - 1;
    std::fs::write(
        "/proc/sys/net/ipv4/ip_local_reserved_ports",
        format!("{SNAT_PORT_MIN}-{snat_last}"),
    )
    .context("reserving the outbound NAT ports")?;

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
    let cgroup = match &cfg.cgroup {
        Some(c) => c.clone(),
        None => cgroup_root()?,
    };
    dp.attach_sock_hooks(&cgroup, netns_cookie()?)
        .with_context(|| format!("attaching socket hooks to {}", cgroup.display()))?;
    info!(cgroup = %cgroup.display(), "socket hooks attached");
    let mut agent = Agent {
        state,
        state_path,
        dp,
        links: HashMap::new(),
        uplinks: uplinks.clone(),
    };
    agent.reconcile()?;
    agent.sync_host_addrs()?;
    let agent = Arc::new(Mutex::new(agent));

    let listener = bind_socket(&cfg.socket)?;
    info!(socket = %cfg.socket.display(), "serving the API");

    let watcher = tokio::spawn(watch_addrs(agent.clone()));
    let gc = tokio::spawn(expire_flows(agent.clone()));
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
    gc.abort();
    let _ = std::fs::remove_file(&cfg.socket);
    // Dropping the agent drops the datapath, whose links detach every program.
    drop(agent);
    Ok(())
}

/// The cookie of this thread's network namespace (SO_NETNS_COOKIE on a fresh socket).
fn netns_cookie() -> anyhow::Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").context("socket for the netns cookie")?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid socket, out-pointer and length for an u64 option.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        bail!("SO_NETNS_COOKIE: {}", std::io::Error::last_os_error());
    }
    Ok(cookie)
}

/// The root of the cgroup v2 hierarchy: its mount point, or a private mount when none is
/// visible (inside `ip netns exec`, /sys is a fresh sysfs without cgroup mounts).
fn cgroup_root() -> anyhow::Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    for line in mounts.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPEROPTS
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = pre.split(' ').collect();
        if post.split(' ').next() == Some("cgroup2") && fields.get(3) == Some(&"/") {
            if let Some(mp) = fields.get(4) {
                return Ok(PathBuf::from(mp));
            }
        }
    }
    let dir = PathBuf::from("/run/netpath/cgroup2");
    std::fs::create_dir_all(&dir)?;
    nix::mount::mount(
        Some("cgroup2"),
        &dir,
        Some("cgroup2"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mounting cgroup2 at {}", dir.display()))?;
    info!(at = %dir.display(), "mounted cgroup2");
    Ok(dir)
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

/// Expires idle outbound NAT flows every few seconds.
async fn expire_flows(agent: Arc<Mutex<Agent>>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        let agent = agent.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(mut a) = agent.lock() {
                a.expire_snat();
            }
        })
        .await;
    }
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
        (&Method::POST, ["v1", "networks"]) => {
            let req: NetworkCreate = parse_body(body)?;
            to_json(&agent.create_network(&req)?)
        }
        (&Method::GET, ["v1", "networks", name]) => to_json(&agent.network(name)?),
        (&Method::DELETE, ["v1", "networks", name]) => {
            agent.remove_network(name)?;
            Ok(b"{}".to_vec())
        }
        (&Method::POST, ["v1", "networks", name, "connect"]) => {
            let req: Connect = parse_body(body)?;
            to_json(&agent.connect(name, &req)?)
        }
        (&Method::POST, ["v1", "networks", name, "disconnect"]) => {
            let req: Connect = parse_body(body)?;
            to_json(&agent.disconnect(name, &req.endpoint)?)
        }
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
