//! Drift: what changed under the agent while it ran. An endpoint whose namespace is gone is
//! removed (its veth went with the namespace); an endpoint veth someone deleted is made
//! again while its namespace lives; a hook that lost its program gets it back. The agent
//! runs this when netlink says a link went away, and every [`super::tasks::DRIFT_INTERVAL`];
//! `netpath endpoint prune` runs the first part on demand.
use tracing::{info, warn};

use super::{store::StateStore, Agent};
use crate::{
    datapath::AttachmentEntry,
    datapath::{DatapathOps, Hook},
    error::AgentError,
    model::Endpoint,
    netlink::LinkOps,
};

/// What a repair did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    /// Endpoints removed because their namespace is gone.
    pub pruned: Vec<String>,
    /// Endpoint interfaces made again.
    pub recreated: Vec<String>,
    /// Hooks whose program was attached again.
    pub reattached: Vec<Hook>,
}

impl Repairs {
    pub fn count(&self) -> usize {
        self.pruned.len() + self.recreated.len() + self.reattached.len()
    }
}

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    /// Whether `ep`'s namespace still exists and is the one it was made in. An endpoint
    /// handed to an engine lives while its veths do (its container's namespace holds the
    /// peers, and they go with it).
    pub(super) fn netns_alive(
        &self,
        ep: &Endpoint,
        veths: Option<&std::collections::BTreeMap<String, crate::netlink::EndpointLink>>,
    ) -> bool {
        if ep.handed_over() {
            return veths.is_none_or(|present| {
                ep.attachments
                    .iter()
                    .all(|a| present.contains_key(&a.host_ifname))
            });
        }
        match (self.net.netns_id(&ep.netns), ep.netns_id) {
            (Ok(have), Some(want)) => have == want,
            (Ok(_), None) => true,
            (Err(_), _) => false,
        }
    }

    /// Whether `ifindex` is one of the endpoints' host-side veths.
    pub fn owns_link(&self, ifindex: u32) -> bool {
        self.links.values().any(|l| l.ifindex == ifindex)
    }

    /// Removes every endpoint whose namespace is gone; their names.
    pub fn prune(&mut self) -> Result<Vec<String>, AgentError> {
        let veths = if self.state.endpoints.values().any(Endpoint::handed_over) {
            self.net.endpoint_links().ok()
        } else {
            None
        };
        let gone: Vec<String> = self
            .state
            .endpoints
            .values()
            .filter(|e| !self.netns_alive(e, veths.as_ref()))
            .map(|e| e.name.clone())
            .collect();
        for name in &gone {
            self.remove_endpoint(name)?;
            info!(endpoint = %name, "removed: its network namespace is gone");
        }
        Ok(gone)
    }

    /// Repairs drift (see the module docs).
    pub fn repair(&mut self) -> Result<Repairs, AgentError> {
        let mut out = Repairs {
            pruned: self.prune()?,
            ..Repairs::default()
        };
        // Every endpoint veth there is, in one dump.
        let present = self.net.endpoint_links()?;
        for ep in self.state.endpoints.values().cloned().collect::<Vec<_>>() {
            if ep.handed_over() {
                // Its engine made the container's side; only the engine can make it again.
                continue;
            }
            for (i, att) in ep.attachments.iter().enumerate() {
                let known = self.links.get(&att.host_ifname).copied();
                let now = present.get(&att.host_ifname).copied();
                if now.is_some() && now == known {
                    continue;
                }
                let Some(net) = self.state.networks.get(&att.network).cloned() else {
                    continue;
                };
                if let Some(old) = known {
                    let entry = AttachmentEntry::of(att, old.ifindex, old.host_mac, net.net_id);
                    self.dp.remove_attachment(&entry)?;
                    if let Some(ip) = att.ip {
                        self.dp.flush_interface_flows(old.ifindex, ip);
                    }
                }
                if now.is_some() {
                    // Someone made an interface of that name: not ours to keep.
                    self.net.delete_link(&att.host_ifname)?;
                }
                let res = self.transact(|a, tx| {
                    a.realize_attachment(tx, &ep, att, &net, i == 0)?;
                    if i == 0 {
                        a.install_ports(tx, &ep, &ep.ports)?;
                    }
                    let state = a.state.clone();
                    a.sync_members(tx, &state, &att.network)
                });
                match res {
                    Ok(()) => {
                        warn!(endpoint = %ep.name, interface = %att.host_ifname, "made again: it was gone");
                        out.recreated.push(att.host_ifname.clone());
                    }
                    Err(e) => {
                        warn!(endpoint = %ep.name, interface = %att.host_ifname, "making it again: {e}")
                    }
                }
            }
        }
        let hooks = self.hooks();
        let report = self.dp.ensure_hooks(&hooks, self.host.netns_cookie)?;
        for hook in &report.attached {
            warn!(%hook, "program attached again: it had lost it");
        }
        out.reattached = report.attached;
        if out.count() > 0 {
            self.repairs += out.count() as u64;
            self.last_repair = Some(std::time::SystemTime::now());
        }
        Ok(out)
    }
}
