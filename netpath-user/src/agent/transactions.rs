//! The agent's transactions: every request that changes something is planned against the
//! desired state ([`crate::model::plan`]), carried out step by step in the kernel with each
//! step's undo journaled ([`super::journal`]), and committed by saving the new state. If any step or
//! the save fails, the journal is played back and the request changes nothing. What cannot
//! be undone (flushing flows, deleting a veth, removing a gateway address, hosts files)
//! happens only after the commit.
use std::{collections::HashMap, net::Ipv4Addr};

use tracing::info;

use super::{
    journal::{Then, Undo},
    netns_files::NetnsFiles,
    reserved::ReservedPorts,
    slots::Slots,
    store::StateStore,
};
use crate::{
    datapath::{DatapathOps, XdpMode},
    error::AgentError,
    model::{Connect, Endpoint, EndpointCreate, Network, NetworkCreate, State},
    netlink::{EndpointLink, LinkOps},
};

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

    pub fn create_endpoint(&mut self, req: &EndpointCreate) -> Result<Endpoint, AgentError> {
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

    pub fn remove_endpoint(&mut self, name: &str) -> Result<(), AgentError> {
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

    pub fn create_network(&mut self, req: &NetworkCreate) -> Result<Network, AgentError> {
        let net = self.plan_network(req)?;
        self.add_network(net)
    }

    /// Checks a network request against the networks and the host; changes nothing.
    pub fn plan_network(&self, req: &NetworkCreate) -> Result<Network, AgentError> {
        self.with_host(|s, host| s.plan_network(req, host))
    }

    /// Creates a planned network (an overlay network: with the cluster's id and VNI).
    pub fn add_network(&mut self, net: Network) -> Result<Network, AgentError> {
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

    pub fn remove_network(&mut self, name: &str) -> Result<(), AgentError> {
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

    pub fn connect(&mut self, network: &str, req: &Connect) -> Result<Endpoint, AgentError> {
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
    pub fn disconnect(&mut self, network: &str, endpoint: &str) -> Result<Endpoint, AgentError> {
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
