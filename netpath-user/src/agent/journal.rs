//! The journal of a transaction: each step's undo ([`Undo`]), played back in reverse if a
//! later step or the commit fails, and what runs only once the commit succeeded ([`Then`]).
use std::net::{IpAddr, Ipv4Addr};

use tracing::{info, warn};

use super::{slots::PortId, store::StateStore, Agent};
use crate::{
    datapath::{AnyPortKey, AnyPortTarget, AttachmentEntry, DatapathOps},
    error::AgentError,
    model::{Endpoint, Network, State},
    netlink::{EndpointLink, LinkOps},
    policy::PublishedFrom,
};

/// How to take back one step. Kept small (what is large is boxed): a publish of a range
/// journals two steps per port.
#[derive(Debug)]
pub enum Undo {
    DeleteLink(String),
    RestoreLink(String, EndpointLink),
    RemoveAttachment(AttachmentEntry),
    AddAttachment(AttachmentEntry),
    Detach(String),
    Attach(String),
    Unpublish(AnyPortKey),
    Publish(AnyPortKey, Box<AnyPortTarget>),
    SetMembers(u32, Vec<u32>),
    RemoveNetwork(Box<Network>),
    AddNetwork(Box<Network>),
    RemoveGateway(IpAddr),
    ReleaseSlot(PortId),
    SetPublishedFrom(PublishedFrom),
}

const _: () = assert!(std::mem::size_of::<Undo>() <= 48);

impl Undo {
    /// Every kind of undo step, by [`Undo::name`].
    pub const NAMES: [&'static str; 14] = [
        "DeleteLink",
        "RestoreLink",
        "RemoveAttachment",
        "AddAttachment",
        "Detach",
        "Attach",
        "Unpublish",
        "Publish",
        "SetMembers",
        "RemoveNetwork",
        "AddNetwork",
        "RemoveGateway",
        "ReleaseSlot",
        "SetPublishedFrom",
    ];

    /// The kind of step, for the tests that play every kind back.
    pub fn name(&self) -> &'static str {
        match self {
            Undo::DeleteLink(_) => "DeleteLink",
            Undo::RestoreLink(..) => "RestoreLink",
            Undo::RemoveAttachment(..) => "RemoveAttachment",
            Undo::AddAttachment(_) => "AddAttachment",
            Undo::Detach(_) => "Detach",
            Undo::Attach(_) => "Attach",
            Undo::Unpublish(_) => "Unpublish",
            Undo::Publish(..) => "Publish",
            Undo::SetMembers(..) => "SetMembers",
            Undo::RemoveNetwork(_) => "RemoveNetwork",
            Undo::AddNetwork(_) => "AddNetwork",
            Undo::RemoveGateway(_) => "RemoveGateway",
            Undo::ReleaseSlot(_) => "ReleaseSlot",
            Undo::SetPublishedFrom(_) => "SetPublishedFrom",
        }
    }
}

/// The kinds of undo step played back on this thread (unit tests: which steps the failure
/// walks reached).
#[cfg(test)]
pub(super) mod played {
    use std::{cell::RefCell, collections::BTreeSet};

    thread_local! {
        static PLAYED: RefCell<BTreeSet<&'static str>> = const { RefCell::new(BTreeSet::new()) };
    }

    pub fn record(name: &'static str) {
        PLAYED.with(|p| p.borrow_mut().insert(name));
    }

    /// What was played since the last call, forgotten.
    pub fn take() -> BTreeSet<&'static str> {
        PLAYED.with(|p| std::mem::take(&mut *p.borrow_mut()))
    }
}

/// What happens once the new state is committed (cannot be undone; failures are logged).
#[derive(Debug)]
pub enum Then {
    FlushPortFlows(u32, Vec<AnyPortKey>),
    FlushInterfaceFlows(u32, Ipv4Addr),
    DeleteLink(String),
    RemoveGateway(IpAddr),
    WriteNetnsFiles(String),
    RemoveNetnsFiles(Box<Endpoint>),
    /// The port's stats slot, unless the port is published again.
    ReleaseSlot(PortId),
}

/// The journal of one transaction.
#[derive(Debug, Default)]
pub struct Tx {
    undo: Vec<Undo>,
    then: Vec<Then>,
}

impl Tx {
    pub(super) fn undo(&mut self, u: Undo) {
        self.undo.push(u);
    }

    /// Room for `n` more undo steps (a range's ports, journaled without regrowing).
    pub(super) fn reserve(&mut self, n: usize) {
        self.undo.reserve(n);
    }

    pub(super) fn then(&mut self, t: Then) {
        self.then.push(t);
    }
}

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    /// Runs `f` as one transaction: its journal is played back if it fails, its
    /// after-commit steps run if it succeeds.
    pub(super) fn transact<T>(
        &mut self,
        f: impl FnOnce(&mut Self, &mut Tx) -> Result<T, AgentError>,
    ) -> Result<T, AgentError> {
        let mut tx = Tx::default();
        match f(self, &mut tx) {
            Ok(v) => {
                self.finish(tx.then);
                Ok(v)
            }
            Err(e) => {
                self.rollback(tx.undo);
                Err(e)
            }
        }
    }

    /// Saves `next` and makes it the desired state: the last step of every transaction.
    pub(super) fn commit(&mut self, next: State) -> Result<(), AgentError> {
        // Published ports are held before the state says they are published.
        self.hold_ports(&super::ports::HeldPorts::of(&next))?;
        self.store
            .save(&next)
            .map_err(|e| AgentError::internal(format!("saving the state: {e}")))?;
        self.state = next;
        self.sync_policy();
        Ok(())
    }

    pub(super) fn rollback(&mut self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            #[cfg(test)]
            played::record(u.name());
            let res: Result<(), String> = match &u {
                Undo::DeleteLink(name) => {
                    self.links.remove(name);
                    self.net.delete_link(name).map_err(|e| e.to_string())
                }
                Undo::RestoreLink(name, link) => {
                    self.links.insert(name.clone(), *link);
                    Ok(())
                }
                Undo::RemoveAttachment(e) => {
                    self.dp.remove_attachment(e).map_err(|e| e.to_string())
                }
                Undo::AddAttachment(e) => self.dp.add_attachment(e).map_err(|e| e.to_string()),
                Undo::Detach(name) => self.dp.detach_endpoint(name).map_err(|e| e.to_string()),
                Undo::Attach(name) => self.dp.attach_endpoint(name).map_err(|e| e.to_string()),
                Undo::Unpublish(k) => self.dp.unpublish(k).map_err(|e| e.to_string()),
                Undo::Publish(k, t) => self.dp.publish(*k, **t).map_err(|e| e.to_string()),
                Undo::SetMembers(id, m) => self.dp.set_members(*id, m).map_err(|e| e.to_string()),
                Undo::RemoveNetwork(n) => self.dp.remove_network(n).map_err(|e| e.to_string()),
                Undo::AddNetwork(n) => self.dp.add_network(n).map_err(|e| e.to_string()),
                Undo::RemoveGateway(a) => self.net.remove_gateway(*a).map_err(|e| e.to_string()),
                Undo::ReleaseSlot(id) => {
                    self.slots.release(id);
                    Ok(())
                }
                Undo::SetPublishedFrom(list) => self
                    .dp
                    .set_published_from(list)
                    .map(drop)
                    .map_err(|e| e.to_string()),
            };
            if let Err(e) = res {
                warn!("undoing {u:?}: {e}");
            }
        }
    }

    fn finish(&mut self, then: Vec<Then>) {
        for t in then {
            match t {
                Then::FlushPortFlows(ifindex, keys) => {
                    let n = self.dp.flush_flows_of(ifindex, &keys);
                    info!(ifindex, flows = n, "flushed flows of unpublished ports");
                }
                Then::FlushInterfaceFlows(ifindex, ip) => {
                    let n = self.dp.flush_interface_flows(ifindex, ip);
                    info!(ifindex, flows = n, "flushed flows of a removed interface");
                }
                Then::DeleteLink(name) => {
                    if let Err(e) = self.net.delete_link(&name) {
                        warn!(interface = %name, "{e}");
                    }
                }
                Then::RemoveGateway(addr) => {
                    if let Err(e) = self.net.remove_gateway(addr) {
                        warn!(gateway = %addr, "{e}");
                    }
                }
                Then::WriteNetnsFiles(name) => {
                    if let Some(ep) = self.state.endpoints.get(&name) {
                        self.write_netns_files(ep);
                    }
                }
                Then::ReleaseSlot(id) => {
                    let still = self.state.endpoints.values().any(|e| {
                        e.ports
                            .iter()
                            .any(|m| super::slots::port_id(&super::ports::port_key(m)) == id)
                    });
                    if !still {
                        self.slots.release(&id);
                    }
                }
                Then::RemoveNetnsFiles(ep) => {
                    self.files.remove(&ep);
                }
            }
        }
    }
}
