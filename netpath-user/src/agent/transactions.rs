//! The agent's transactions: every request that changes something is planned against the
//! desired state ([`crate::model::plan`]), carried out step by step in the kernel with each
//! step's undo journaled ([`super::journal`]), and committed by saving the new state. If any step or
//! the save fails, the journal is played back and the request changes nothing. What cannot
//! be undone (flushing flows, deleting a veth, removing a gateway address, hosts files)
//! happens only after the commit.
use std::net::IpAddr;

use tracing::info;

use super::{
    journal::{Then, Undo},
    store::StateStore,
    Agent,
};
use crate::{
    datapath::DatapathOps,
    error::AgentError,
    model::{Connect, Endpoint, EndpointCreate, Network, NetworkCreate},
    netlink::LinkOps,
};

/// The host addresses a network needs: its gateways and its host-gateway.
pub fn host_addresses(net: &Network) -> Vec<IpAddr> {
    let mut v = net.gateways();
    if let Some(hg) = net.host_gateway().filter(|hg| Some(*hg) != net.gateway()) {
        v.insert(1, hg.into());
    }
    v
}

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    /// Writes `ep`'s hosts file and resolv.conf (for `ip netns` namespaces).
    pub(super) fn write_netns_files(&self, ep: &Endpoint) {
        let resolv = ep
            .primary()
            .and_then(|a| self.state.networks.get(&a.network))
            .and_then(|n| n.gateways().first().copied())
            .map(|gw| self.resolv.endpoint_conf(&ep.dns, gw));
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
        info!(endpoint = %ep.name, ip = ?att.ip, ip6 = ?att.ip6, "endpoint created");
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
        self.with_host_routes(|s, host| s.plan_network(req, host))
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
            tx.undo(Undo::RemoveNetwork(Box::new(net.clone())));
            a.commit(next)
        })?;
        info!(
            network = %net.name,
            subnet = ?net.v4.map(|p| p.subnet),
            subnet6 = ?net.v6.map(|p| p.subnet),
            "network created"
        );
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
        let still_used: Vec<IpAddr> = next.networks.values().flat_map(host_addresses).collect();
        self.transact(|a, tx| {
            let members = a.dp.members(net.net_id);
            a.dp.remove_network(&net)?;
            tx.undo(Undo::SetMembers(net.net_id, members));
            tx.undo(Undo::AddNetwork(Box::new(net.clone())));
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
        info!(endpoint = %updated.name, %network, ip = ?att.ip, ip6 = ?att.ip6, "connected");
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
