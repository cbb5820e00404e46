//! Published ports as transactions: `publish` and `unpublish`, the steps that write a
//! port's datapath entries and stats slot (each with its undo), and what the host must hold
//! of a state's ports (reserved, or bound by their runtime).
use tracing::info;

use super::{
    journal::{Then, Tx, Undo},
    ports::{port_key, port_key_target},
    slots::port_id,
    store::StateStore,
    Agent,
};
use crate::{
    datapath::{AnyPortKey, AnyPortTarget, DatapathOps},
    error::AgentError,
    model::{Endpoint, ModelError},
    netlink::LinkOps,
    ports::PortMapping,
};

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    pub fn publish(
        &mut self,
        name: &str,
        specs: &[String],
    ) -> Result<Vec<PortMapping>, AgentError> {
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
    ) -> Result<Vec<PortMapping>, AgentError> {
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

    /// The datapath entry of mapping `m` of `ep`, delivered to its primary interface.
    pub(super) fn port_entry(
        &self,
        ep: &Endpoint,
        m: &PortMapping,
    ) -> Result<(AnyPortKey, AnyPortTarget), AgentError> {
        let att = ep.primary().ok_or_else(|| {
            AgentError::internal(format!("endpoint {} has no interface", ep.name))
        })?;
        let link = self.links.get(&att.host_ifname).ok_or_else(|| {
            AgentError::internal(format!(
                "interface {} of {} is missing",
                att.host_ifname, ep.name
            ))
        })?;
        let slot = self.slots.get(&port_id(&port_key(m))).unwrap_or(0);
        port_key_target(att, link, m, slot).ok_or_else(|| {
            AgentError::internal(format!(
                "{m}: endpoint {} has no IPv6 address on {}",
                ep.name, att.network
            ))
        })
    }

    /// Gives the ports of `maps` stats slots (new ones zeroed, all at once; released again on
    /// rollback).
    pub(super) fn take_slots(&mut self, tx: &mut Tx, maps: &[PortMapping]) {
        let mut new = Vec::new();
        for m in maps {
            let id = port_id(&port_key(m));
            let (slot, fresh) = self.slots.take(id);
            if fresh {
                new.push(slot);
                tx.undo(Undo::ReleaseSlot(id));
            }
        }
        if !new.is_empty() {
            self.dp.reset_port_stats(&new);
        }
    }

    /// Publishes `maps` of `ep`.
    pub(super) fn install_ports(
        &mut self,
        tx: &mut Tx,
        ep: &Endpoint,
        maps: &[PortMapping],
    ) -> Result<(), AgentError> {
        tx.reserve(2 * maps.len());
        self.take_slots(tx, maps);
        for m in maps {
            let (k, v) = self.port_entry(ep, m)?;
            self.dp
                .publish(k, v)
                .map_err(|e| AgentError::internal(format!("publishing {m}: {e}")))?;
            tx.undo(Undo::Unpublish(k));
        }
        Ok(())
    }

    /// Stops publishing `maps` of `ep`; their flows go after the commit.
    pub(super) fn uninstall_ports(
        &mut self,
        tx: &mut Tx,
        ep: &Endpoint,
        maps: &[PortMapping],
    ) -> Result<(), AgentError> {
        let mut keys = Vec::new();
        let mut ifindex = 0;
        for m in maps {
            let (k, v) = self.port_entry(ep, m)?;
            self.dp.unpublish(&k)?;
            tx.undo(Undo::Publish(k, Box::new(v)));
            tx.then(Then::ReleaseSlot(port_id(&k)));
            keys.push(k);
            ifindex = v.ifindex;
        }
        if !keys.is_empty() {
            tx.then(Then::FlushPortFlows(ifindex, keys));
        }
        Ok(())
    }
}
