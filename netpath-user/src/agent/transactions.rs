//! The agent's transactions: every request that changes something is planned against the
//! desired state ([`crate::model::plan`]), carried out step by step in the kernel with each
//! step's undo journaled ([`super::journal`]), and committed by saving the new state. If any step or
//! the save fails, the journal is played back and the request changes nothing. What cannot
//! be undone (flushing flows, deleting a veth, removing a gateway address, hosts files)
//! happens only after the commit.
use std::{collections::HashMap, net::Ipv4Addr};

use hyper::StatusCode;
use netpath_common::{PortKey, PortTarget};
use tracing::info;

use super::{
    journal::{Then, Tx, Undo},
    netns_files::NetnsFiles,
    reserved::{snat_ports, PortSet, ReservedPorts},
    slots::{port_id, Slots},
    store::StateStore,
};
use crate::{
    api::ApiError,
    datapath::{be_addr, be_port, AttachmentEntry, DatapathError, DatapathOps, XdpMode},
    model::{
        plan::HostView, Attachment, Connect, Endpoint, EndpointCreate, ModelError, Network,
        NetworkCreate, State,
    },
    netlink::{EndpointLink, EndpointLinkSpec, LinkOps, NetError},
    ports::PortMapping,
};

/// Busy-port probes a request makes one by one before it reads the host's socket tables.
const PROBES_BEFORE_TABLES: usize = 64;

/// The agent: desired state, the kernel behind its traits, and what it made there.
pub struct Agent<D, L, S> {
    pub(super) state: State,
    pub(super) dp: D,
    pub(super) net: L,
    pub(super) store: S,
    /// Host-side veths made for attachments, by name.
    pub(super) links: HashMap<String, EndpointLink>,
    /// Where the datapath hooks in beside the endpoints.
    pub(super) host: HostHooks,
    pub(super) files: NetnsFiles,
    /// Repairs of drift made since start ([`super::repair`]).
    pub(super) repairs: u64,
    /// Each published port's `PORT_STATS` slot.
    pub(super) slots: Slots,
    /// The host's resolvers: endpoints' resolv.conf files take its search and options.
    pub(super) resolv: std::sync::Arc<crate::dns::upstream::HostResolv>,
    /// Whether the kernel answers DNS queries it can (`--dns-fast-path`).
    pub(super) dns_fast_path: bool,
    /// When this agent started, its reconcile and its last repair ([`super::health`]).
    pub(super) started: std::time::SystemTime,
    pub(super) last_reconcile: Option<super::health::Reconciled>,
    pub(super) last_repair: Option<std::time::SystemTime>,
    /// What the overlay maps were last made to hold ([`super::overlay`]).
    pub(super) overlay_written: Option<crate::datapath::OverlayContent>,
    /// What keeps this node from matching the cluster, as last found.
    pub(super) cluster_problems: Vec<String>,
    /// The host's reserved ports, kept to the outbound NAT and published ports at each
    /// commit (none in unit tests).
    pub(super) reserved: Option<ReservedPorts>,
}

/// The hooks of the host itself: uplinks (their addresses are also the outbound NAT
/// sources) and the socket hooks' cgroup and namespace.
#[derive(Clone, Debug, Default)]
pub struct HostHooks {
    pub uplinks: Vec<(String, XdpMode)>,
    pub cgroup: Option<std::path::PathBuf>,
    pub netns_cookie: u64,
    /// The VXLAN device of overlay networks, and the MTU that fits inside it (a node in a
    /// cluster).
    pub overlay: Option<OverlayDevice>,
}

/// This node's VXLAN device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayDevice {
    pub name: String,
    pub ifindex: u32,
    /// The MTU of overlay endpoints' interfaces: the underlay's less the encapsulation.
    pub mtu: u32,
}

/// What the host must hold of a state's published ports.
pub(super) struct HeldPorts {
    /// Ports the host never picks for its own sockets: the outbound NAT ports and every
    /// published host port.
    reserved: PortSet,
    /// Published ports whose runtime holds them itself (CNI's: podman binds the ports it
    /// publishes), which host sockets may bind.
    runtime_held: std::collections::HashSet<(u8, u16)>,
}

impl HeldPorts {
    pub(super) fn of(state: &State) -> HeldPorts {
        let mut reserved = snat_ports();
        let mut runtime_held = std::collections::HashSet::new();
        for e in state.endpoints.values() {
            let cni = e
                .engine
                .as_ref()
                .is_some_and(|g| g.kind == crate::model::EngineKind::Cni);
            for m in &e.ports {
                reserved.insert(m.host_port);
                if cni {
                    runtime_held.insert((m.proto.number(), m.host_port));
                }
            }
        }
        HeldPorts {
            reserved,
            runtime_held,
        }
    }
}

/// The datapath key of mapping `m`.
pub(super) fn port_key(m: &PortMapping) -> PortKey {
    PortKey {
        addr: be_addr(m.host_ip),
        port: be_port(m.host_port),
        proto: m.proto.number(),
        _pad: 0,
    }
}

/// The datapath entry of mapping `m` delivered to attachment `att` behind `link`, counted
/// into stats slot `slot`.
pub(super) fn port_key_target(
    att: &Attachment,
    link: &EndpointLink,
    m: &PortMapping,
    slot: u16,
) -> (PortKey, PortTarget) {
    (
        port_key(m),
        PortTarget {
            addr: be_addr(att.ip),
            port: be_port(m.container_port),
            stats: slot,
            ifindex: link.ifindex,
            mac: att.mac,
            gw_mac: link.host_mac,
        },
    )
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
        ApiError::new(status, e.to_string())
    }
}

impl From<NetError> for ApiError {
    fn from(e: NetError) -> Self {
        ApiError::internal(e)
    }
}

impl From<DatapathError> for ApiError {
    fn from(e: DatapathError) -> Self {
        ApiError::internal(e)
    }
}

/// The host addresses a network needs: its gateway and its host-gateway.
pub fn host_addresses(net: &Network) -> Vec<Ipv4Addr> {
    let mut v = vec![net.gateway];
    if net.host_gateway() != net.gateway {
        v.push(net.host_gateway());
    }
    v
}

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    pub fn new(state: State, dp: D, net: L, store: S, host: HostHooks) -> Self {
        Agent {
            state,
            dp,
            net,
            store,
            links: HashMap::new(),
            host,
            files: NetnsFiles::default(),
            repairs: 0,
            slots: Slots::default(),
            resolv: std::sync::Arc::new(crate::dns::upstream::HostResolv::new(
                "/etc/resolv.conf",
                Vec::new(),
            )),
            dns_fast_path: true,
            started: std::time::SystemTime::now(),
            overlay_written: None,
            cluster_problems: Vec::new(),
            last_reconcile: None,
            last_repair: None,
            reserved: None,
        }
    }

    /// Keeps the host's reserved ports from now on, starting with the state as it is.
    pub fn reserve_ports(&mut self, reserved: ReservedPorts) -> Result<(), ApiError> {
        self.reserved = Some(reserved);
        let held = HeldPorts::of(&self.state);
        self.hold_ports(&held)
    }

    /// Holds published ports on the host: the kernel never picks one for a host socket
    /// (reserved ports), and host sockets may not bind one unless its runtime holds it.
    pub(super) fn hold_ports(&mut self, held: &HeldPorts) -> Result<(), ApiError> {
        if let Some(r) = &mut self.reserved {
            r.sync(&held.reserved)
                .map_err(|e| ApiError::internal(format!("reserving ports: {e:#}")))?;
        }
        Ok(self.dp.set_bind_allowed(&held.runtime_held)?)
    }

    /// Where hosts files go (tests).
    pub fn with_netns_files(mut self, files: NetnsFiles) -> Self {
        self.files = files;
        self
    }

    /// Uses `resolv` for endpoints' resolv.conf files, and answers DNS in the kernel when
    /// `fast_path`.
    pub fn with_dns(
        mut self,
        resolv: std::sync::Arc<crate::dns::upstream::HostResolv>,
        fast_path: bool,
    ) -> Self {
        self.resolv = resolv;
        self.dns_fast_path = fast_path;
        self
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Writes `ep`'s hosts file and resolv.conf (for `ip netns` namespaces).
    pub(super) fn write_netns_files(&self, ep: &Endpoint) {
        let resolv = ep
            .primary()
            .and_then(|a| self.state.networks.get(&a.network))
            .map(|n| self.resolv.endpoint_conf(&ep.dns, n.gateway));
        self.files.write(ep, &self.state, resolv.as_deref());
    }

    /// Makes the kernel's DNS fast path answer the names of the state (none when it is off).
    pub fn sync_dns_names(&mut self) {
        let names = if self.dns_fast_path {
            let index = crate::dns::names::Index::new(&self.state);
            crate::dns::names::kernel_names(&self.state, &index)
        } else {
            Default::default()
        };
        if let Err(e) = self.dp.set_dns_names(&names) {
            tracing::error!("writing the DNS fast path's names: {e}");
        }
    }

    // ---- steps ----------------------------------------------------------------------------

    /// The datapath entry of mapping `m` of `ep`, delivered to its primary interface.
    fn port_entry(
        &self,
        ep: &Endpoint,
        m: &PortMapping,
    ) -> Result<(PortKey, PortTarget), ApiError> {
        let att = ep
            .primary()
            .ok_or_else(|| ApiError::internal(format!("endpoint {} has no interface", ep.name)))?;
        let link = self.links.get(&att.host_ifname).ok_or_else(|| {
            ApiError::internal(format!(
                "interface {} of {} is missing",
                att.host_ifname, ep.name
            ))
        })?;
        let slot = self.slots.get(&port_id(&port_key(m))).unwrap_or(0);
        Ok(port_key_target(att, link, m, slot))
    }

    /// Gives the port of `m` a stats slot (zeroed if new; released again on rollback).
    pub(super) fn take_slot(&mut self, tx: &mut Tx, m: &PortMapping) {
        let id = port_id(&port_key(m));
        let (slot, new) = self.slots.take(id);
        if new {
            self.dp.reset_port_stats(slot);
            tx.undo(Undo::ReleaseSlot(id));
        }
    }

    /// Publishes `maps` of `ep`.
    pub(super) fn install_ports(
        &mut self,
        tx: &mut Tx,
        ep: &Endpoint,
        maps: &[PortMapping],
    ) -> Result<(), ApiError> {
        for m in maps {
            self.take_slot(tx, m);
            let (k, v) = self.port_entry(ep, m)?;
            self.dp
                .publish(k, v)
                .map_err(|e| ApiError::internal(format!("publishing {m}: {e}")))?;
            tx.undo(Undo::Unpublish(k));
        }
        Ok(())
    }

    /// Stops publishing `maps` of `ep`; their flows go after the commit.
    fn uninstall_ports(
        &mut self,
        tx: &mut Tx,
        ep: &Endpoint,
        maps: &[PortMapping],
    ) -> Result<(), ApiError> {
        let mut keys = Vec::new();
        let mut ifindex = 0;
        for m in maps {
            let (k, v) = self.port_entry(ep, m)?;
            self.dp.unpublish(&k)?;
            tx.undo(Undo::Publish(k, v));
            tx.then(Then::ReleaseSlot(port_id(&k)));
            keys.push(k);
            ifindex = v.ifindex;
        }
        if !keys.is_empty() {
            tx.then(Then::FlushPortFlows(ifindex, keys));
        }
        Ok(())
    }

    /// What an attachment's veth pair is made of.
    pub(super) fn link_spec<'a>(
        &self,
        ep: &'a Endpoint,
        att: &'a Attachment,
        net: &Network,
        primary: bool,
    ) -> EndpointLinkSpec<'a> {
        EndpointLinkSpec {
            host_ifname: &att.host_ifname,
            netns: &ep.netns,
            ifname: &att.ifname,
            ip: att.ip,
            prefix: net.subnet.prefix(),
            mac: att.mac,
            gateway: net.gateway,
            // The network's own MTU (`-o mtu=`), within what an overlay's tunnel carries.
            mtu: match (net.mtu(), net.vni.and(self.host.overlay.as_ref())) {
                (Some(m), Some(o)) => Some(m.min(o.mtu)),
                (m, o) => m.or(o.map(|o| o.mtu)),
            },
            default_route: primary && !net.internal,
            handover: ep.handed_over(),
        }
    }

    /// Creates the kernel side of one attachment: veth, maps, program.
    pub(super) fn realize_attachment(
        &mut self,
        tx: &mut Tx,
        ep: &Endpoint,
        att: &Attachment,
        net: &Network,
        primary: bool,
    ) -> Result<(), ApiError> {
        let link = self
            .net
            .create_endpoint(&self.link_spec(ep, att, net, primary))?;
        tx.undo(Undo::DeleteLink(att.host_ifname.clone()));
        self.adopt_attachment(tx, att, net, link)
    }

    /// Maps and program of an attachment whose veth exists.
    pub(super) fn adopt_attachment(
        &mut self,
        tx: &mut Tx,
        att: &Attachment,
        net: &Network,
        link: EndpointLink,
    ) -> Result<(), ApiError> {
        self.links.insert(att.host_ifname.clone(), link);
        let entry = AttachmentEntry {
            ifindex: link.ifindex,
            ip: att.ip,
            mac: att.mac,
            host_mac: link.host_mac,
            net_id: net.net_id,
        };
        self.dp
            .add_attachment(&entry)
            .map_err(|e| ApiError::internal(format!("endpoint maps: {e}")))?;
        tx.undo(Undo::RemoveAttachment(link.ifindex, att.ip));
        self.dp
            .attach_endpoint(&att.host_ifname)
            .map_err(|e| ApiError::internal(format!("attaching to {}: {e}", att.host_ifname)))?;
        tx.undo(Undo::Detach(att.host_ifname.clone()));
        Ok(())
    }

    /// Takes one attachment out of the datapath; its flows and veth go after the commit.
    fn unrealize_attachment(&mut self, tx: &mut Tx, att: &Attachment) -> Result<(), ApiError> {
        if let Some(link) = self.links.get(&att.host_ifname).copied() {
            self.dp.detach_endpoint(&att.host_ifname)?;
            tx.undo(Undo::Attach(att.host_ifname.clone()));
            let entry = AttachmentEntry {
                ifindex: link.ifindex,
                ip: att.ip,
                mac: att.mac,
                host_mac: link.host_mac,
                net_id: self
                    .state
                    .networks
                    .get(&att.network)
                    .map_or(0, |n| n.net_id),
            };
            self.dp.remove_attachment(link.ifindex, att.ip)?;
            tx.undo(Undo::AddAttachment(entry));
            self.links.remove(&att.host_ifname);
            tx.undo(Undo::RestoreLink(att.host_ifname.clone(), link));
            tx.then(Then::FlushInterfaceFlows(link.ifindex, att.ip));
        }
        tx.then(Then::DeleteLink(att.host_ifname.clone()));
        Ok(())
    }

    /// Makes the member list of `network` (for broadcasts) what `next` says.
    pub(super) fn sync_members(
        &mut self,
        tx: &mut Tx,
        next: &State,
        network: &str,
    ) -> Result<(), ApiError> {
        let Some(net) = next.networks.get(network) else {
            return Ok(());
        };
        let want: Vec<u32> = next
            .members(network)
            .filter_map(|(_, a)| self.links.get(&a.host_ifname).map(|l| l.ifindex))
            .collect();
        let have = self.dp.members(net.net_id);
        if want != have {
            self.dp.set_members(net.net_id, &want)?;
            tx.undo(Undo::SetMembers(net.net_id, have));
        }
        Ok(())
    }

    // ---- transactions -----------------------------------------------------------------------

    /// The identity of the namespace a request names: it must be a network namespace, not
    /// the agent's own, and not one another endpoint already has (under any path).
    fn check_netns(&self, path: &std::path::Path) -> Result<crate::model::NetnsId, ApiError> {
        use crate::netlink::netns::NetnsError;
        let id = self.net.netns_id(path).map_err(|e| {
            let status = match e {
                NetnsError::Missing(_) => StatusCode::NOT_FOUND,
                NetnsError::NotNetns(..) => StatusCode::BAD_REQUEST,
            };
            ApiError::new(status, e.to_string())
        })?;
        if self.net.own_netns().ok() == Some(id) {
            return Err(ApiError::bad_request(format!(
                "network namespace {} is the agent's own: an endpoint needs a namespace of its own",
                crate::api::routes::echo(&path.display().to_string())
            )));
        }
        if let Some(e) = self
            .state
            .endpoints
            .values()
            .find(|e| e.netns_id == Some(id))
        {
            return Err(ModelError::NetnsInUse(path.to_path_buf(), e.name.clone()).into());
        }
        Ok(id)
    }

    /// Runs `f` with what planning needs to know of the host, read now (ports busy on the
    /// host: probed one by one, then through the socket tables past [`PROBES_BEFORE_TABLES`]).
    pub(super) fn with_host<T>(
        &self,
        f: impl FnOnce(&State, HostView<'_>) -> Result<T, ModelError>,
    ) -> Result<T, ApiError> {
        let routes = self.net.route_subnets()?;
        let addrs: Vec<Ipv4Addr> = self.net.host_addrs()?.into_iter().collect();
        let net = &self.net;
        let gateways: Vec<Ipv4Addr> = self.state.networks.values().map(|n| n.gateway).collect();
        // A few ports are probed each; past that the socket tables, read once, say which can
        // be busy (a port no socket holds is free without a probe). Reading them walks every
        // TCP connection of the host, so a request of a few ports does not.
        let probes = std::cell::Cell::new(0usize);
        let bound = std::cell::OnceCell::new();
        let busy = |m: &PortMapping| {
            probes.set(probes.get() + 1);
            if probes.get() > PROBES_BEFORE_TABLES
                && bound
                    .get_or_init(|| net.bound_ports())
                    .as_ref()
                    .is_some_and(|b| !b.contains(&(m.proto, m.host_port)))
            {
                return false;
            }
            if !net.port_busy(m) {
                return false;
            }
            // The agent's own DNS servers hold port 53 of the gateways (and keep it: the
            // datapath hands endpoints' queries to them before any publish). A publish on
            // every address is busy only when another address's port is taken.
            if m.host_port == crate::dns::server::PORT && m.host_ip.is_unspecified() {
                return addrs
                    .iter()
                    .filter(|a| !gateways.contains(a))
                    .any(|a| net.port_busy(&PortMapping { host_ip: *a, ..*m }));
            }
            true
        };
        Ok(f(
            &self.state,
            HostView {
                routes: &routes,
                addrs: &addrs,
                busy: &busy,
            },
        )?)
    }

    pub fn create_endpoint(&mut self, req: &EndpointCreate) -> Result<Endpoint, ApiError> {
        let mut ep = self.with_host(|s, host| s.plan_endpoint(req, host))?;
        if !ep.handed_over() {
            ep.netns_id = Some(self.check_netns(&req.netns)?);
        }
        let att = ep.attachments[0].clone();
        let net = self.state.network(&att.network)?.clone();
        let mut next = self.state.clone();
        next.endpoints.insert(ep.name.clone(), ep.clone());
        self.transact(|a, tx| {
            a.realize_attachment(tx, &ep, &att, &net, true)?;
            a.install_ports(tx, &ep, &ep.ports)?;
            a.sync_members(tx, &next, &net.name)?;
            a.commit(next)?;
            tx.then(Then::WriteNetnsFiles(ep.name.clone()));
            Ok(())
        })?;
        info!(endpoint = %ep.name, ip = %att.ip, "endpoint created");
        Ok(ep)
    }

    pub fn remove_endpoint(&mut self, name: &str) -> Result<(), ApiError> {
        let ep = self.state.endpoint(name)?.clone();
        let mut next = self.state.clone();
        next.endpoints.remove(name);
        self.transact(|a, tx| {
            a.uninstall_ports(tx, &ep, &ep.ports)?;
            for att in &ep.attachments {
                a.unrealize_attachment(tx, att)?;
                a.sync_members(tx, &next, &att.network)?;
            }
            a.commit(next)?;
            tx.then(Then::RemoveNetnsFiles(Box::new(ep.clone())));
            Ok(())
        })?;
        info!(endpoint = %name, "endpoint removed");
        Ok(())
    }

    pub fn publish(&mut self, name: &str, specs: &[String]) -> Result<Vec<PortMapping>, ApiError> {
        let maps = self.with_host(|s, host| s.plan_publish(name, specs, host))?;
        let mut next = self.state.clone();
        let ep = next
            .endpoints
            .get_mut(name)
            .ok_or_else(|| ModelError::NoEndpoint(name.to_string()))?;
        ep.ports.extend(&maps);
        let ep = ep.clone();
        self.transact(|a, tx| {
            a.install_ports(tx, &ep, &maps)?;
            a.commit(next)
        })?;
        info!(endpoint = %name, ports = maps.len(), "published");
        Ok(maps)
    }

    pub fn unpublish(
        &mut self,
        name: &str,
        specs: &[String],
    ) -> Result<Vec<PortMapping>, ApiError> {
        let maps = self.state.plan_unpublish(name, specs)?;
        let ep = self.state.endpoint(name)?.clone();
        let mut next = self.state.clone();
        if let Some(e) = next.endpoints.get_mut(name) {
            e.ports.retain(|m| !maps.contains(m));
        }
        self.transact(|a, tx| {
            a.uninstall_ports(tx, &ep, &maps)?;
            a.commit(next)
        })?;
        info!(endpoint = %name, ports = maps.len(), "unpublished");
        Ok(maps)
    }

    pub fn create_network(&mut self, req: &NetworkCreate) -> Result<Network, ApiError> {
        let net = self.plan_network(req)?;
        self.add_network(net)
    }

    /// Checks a network request against the networks and the host; changes nothing.
    pub fn plan_network(&self, req: &NetworkCreate) -> Result<Network, ApiError> {
        self.with_host(|s, host| s.plan_network(req, host))
    }

    /// Creates a planned network (an overlay network: with the cluster's id and VNI).
    pub fn add_network(&mut self, net: Network) -> Result<Network, ApiError> {
        let mut next = self.state.clone();
        next.networks.insert(net.name.clone(), net.clone());
        self.transact(|a, tx| {
            for addr in host_addresses(&net) {
                if a.net.add_gateway(addr)? {
                    tx.undo(Undo::RemoveGateway(addr));
                }
            }
            a.dp.add_network(&net)?;
            tx.undo(Undo::RemoveNetwork(net.clone()));
            a.commit(next)
        })?;
        info!(network = %net.name, subnet = %net.subnet, "network created");
        let noted = net.noted_options();
        if !noted.is_empty() {
            info!(
                network = %net.name,
                options = %noted.join(" "),
                "accepted options that change nothing here: netpath has no bridge per network \
                 and names the interfaces in the namespace eth0, eth1, ..."
            );
        }
        Ok(net)
    }

    pub fn remove_network(&mut self, name: &str) -> Result<(), ApiError> {
        let net = self.state.plan_network_rm(name)?.clone();
        let mut next = self.state.clone();
        next.networks.remove(name);
        let still_used: Vec<Ipv4Addr> = next.networks.values().flat_map(host_addresses).collect();
        self.transact(|a, tx| {
            let members = a.dp.members(net.net_id);
            a.dp.remove_network(&net)?;
            tx.undo(Undo::SetMembers(net.net_id, members));
            tx.undo(Undo::AddNetwork(net.clone()));
            a.commit(next)?;
            for addr in host_addresses(&net) {
                if !still_used.contains(&addr) {
                    tx.then(Then::RemoveGateway(addr));
                }
            }
            Ok(())
        })?;
        info!(network = %name, "network removed");
        Ok(())
    }

    pub fn connect(&mut self, network: &str, req: &Connect) -> Result<Endpoint, ApiError> {
        let att = self.state.plan_connect(network, req)?;
        let net = self.state.network(network)?.clone();
        let mut updated = self.state.endpoint(&req.endpoint)?.clone();
        updated.attachments.push(att.clone());
        let mut next = self.state.clone();
        next.endpoints.insert(updated.name.clone(), updated.clone());
        self.transact(|a, tx| {
            a.realize_attachment(tx, &updated, &att, &net, false)?;
            a.sync_members(tx, &next, network)?;
            a.commit(next)?;
            tx.then(Then::WriteNetnsFiles(updated.name.clone()));
            Ok(())
        })?;
        info!(endpoint = %updated.name, %network, ip = %att.ip, "connected");
        Ok(updated)
    }

    /// Disconnects `endpoint` from `network`. When that was its primary network, its
    /// published ports move to the next one, in the same transaction.
    pub fn disconnect(&mut self, network: &str, endpoint: &str) -> Result<Endpoint, ApiError> {
        let att = self.state.plan_disconnect(network, endpoint)?.clone();
        let ep = self.state.endpoint(endpoint)?.clone();
        let mut updated = ep.clone();
        updated.attachments.retain(|a| a.network != network);
        let mut next = self.state.clone();
        next.endpoints.insert(ep.name.clone(), updated.clone());
        let moves_ports = ep.primary().is_some_and(|p| p.network == network);
        self.transact(|a, tx| {
            if moves_ports {
                a.uninstall_ports(tx, &ep, &ep.ports)?;
            }
            a.unrealize_attachment(tx, &att)?;
            if moves_ports {
                a.install_ports(tx, &updated, &updated.ports)?;
            }
            a.sync_members(tx, &next, network)?;
            a.commit(next)?;
            tx.then(Then::WriteNetnsFiles(updated.name.clone()));
            Ok(())
        })?;
        info!(%endpoint, %network, "disconnected");
        Ok(updated)
    }
}
