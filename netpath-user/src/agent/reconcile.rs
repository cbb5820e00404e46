//! Reconcile at start: make the kernel match the desired state without a moment of
//! disruption. The datapath of an earlier agent is still running: its veths are adopted, the
//! maps are brought to the state by writing only what differs ([`DatapathOps::sync`]), its
//! links are swapped to this build's programs atomically ([`DatapathOps::ensure_hooks`]), and
//! only then is anything nobody asked for removed. Attachments whose veth is gone are
//! re-created while their namespace exists; an endpoint whose namespace is gone is dropped.
use std::collections::{BTreeMap, HashSet};

use anyhow::Context as _;
use tracing::{info, warn};

use super::{
    ports::{port_key, port_key_target},
    slots::port_id,
    store::StateStore,
    transactions::host_addresses,
    Agent,
};
use crate::{
    api::health::ReconcileReport,
    datapath::{AttachmentEntry, Content, DatapathOps, Hooks},
    model::State,
    netlink::{EndpointLinkSpec, LinkOps},
};

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    /// What the maps should hold for the desired state and the interfaces known now; every
    /// published port gets its stats slot (kept from the maps when it had one).
    pub(super) fn content(&mut self, state: &State) -> Content {
        for (k, t) in self.dp.published() {
            self.slots.adopt(port_id(&k), t.stats);
        }
        let wanted: std::collections::HashSet<_> = state
            .endpoints
            .values()
            .flat_map(|e| e.ports.iter().map(|m| port_id(&port_key(m))))
            .collect();
        let stale: Vec<_> = self
            .slots
            .iter()
            .filter(|(id, _)| !wanted.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.slots.release(&id);
        }
        let mut c = Content {
            networks: state.networks.values().cloned().collect(),
            published_from: state.published_from.clone(),
            policy: self.compiled_policy(),
            ..Content::default()
        };
        let mut fresh = Vec::new();
        for ep in state.endpoints.values() {
            for att in &ep.attachments {
                let (Some(link), Some(net)) = (
                    self.links.get(&att.host_ifname),
                    state.networks.get(&att.network),
                ) else {
                    continue;
                };
                c.attachments.push(AttachmentEntry::of(
                    att,
                    link.ifindex,
                    link.host_mac,
                    net.net_id,
                ));
            }
            if let (Some(att), true) = (ep.primary(), !ep.ports.is_empty()) {
                if let Some(link) = self.links.get(&att.host_ifname).copied() {
                    for m in &ep.ports {
                        let (slot, new) = self.slots.take(port_id(&port_key(m)));
                        if new {
                            fresh.push(slot);
                        }
                        // A port of a family the endpoint has no address of has nowhere to
                        // go (planning refuses it; a state edited by hand could hold one).
                        c.ports.extend(port_key_target(att, &link, m, slot));
                    }
                }
            }
        }
        if !fresh.is_empty() {
            self.dp.reset_port_stats(&fresh);
        }
        let mut members: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for net in state.networks.values() {
            let ifs: Vec<u32> = state
                .members(&net.name)
                .filter_map(|(_, a)| self.links.get(&a.host_ifname).map(|l| l.ifindex))
                .collect();
            if !ifs.is_empty() {
                members.insert(net.net_id, ifs);
            }
        }
        c.members = members;
        c
    }

    /// Whether `ep`'s namespace path still leads to the namespace it was made in.
    fn same_netns(&self, ep: &crate::model::Endpoint) -> bool {
        match (ep.netns_id, self.net.netns_id(&ep.netns)) {
            (_, Err(_)) => false,
            (Some(want), Ok(have)) => want == have,
            (None, Ok(_)) => true,
        }
    }

    /// The hooks the desired state needs.
    pub(super) fn hooks(&self) -> Hooks {
        Hooks {
            uplinks: self.host.uplinks.clone(),
            endpoints: self.links.keys().cloned().collect(),
            overlay: self.host.overlay.as_ref().map(|o| o.name.clone()),
            cgroup: self.host.cgroup.clone(),
        }
    }

    /// Makes the kernel match the state (see the module docs); what it did is kept for
    /// `netpath status`.
    pub fn reconcile(&mut self) -> anyhow::Result<ReconcileReport> {
        let at = std::time::SystemTime::now();
        let began = std::time::Instant::now();
        let mut report = ReconcileReport::default();
        for net in self.state.networks.values() {
            for addr in host_addresses(net) {
                self.net
                    .add_gateway(addr)
                    .with_context(|| format!("gateway of network {}", net.name))?;
            }
        }
        self.links.clear();
        // Every endpoint veth there is, in one dump: adopted, or (unnamed) orphans.
        let present = self
            .net
            .endpoint_links()
            .context("listing endpoint veths")?;
        let mut next = self.state.clone();
        for ep in self.state.endpoints.values() {
            let mut made = Vec::new();
            let mut kept: anyhow::Result<()> = Ok(());
            for (i, att) in ep.attachments.iter().enumerate() {
                let Some(net) = self.state.networks.get(&att.network) else {
                    kept = Err(anyhow::anyhow!("network {} does not exist", att.network));
                    break;
                };
                kept = match present.get(&att.host_ifname).copied() {
                    Some(link) => {
                        report.adopted += 1;
                        self.links.insert(att.host_ifname.clone(), link);
                        Ok(())
                    }
                    // Only its engine can put an interface back into its container.
                    None if ep.handed_over() => Err(anyhow::anyhow!(
                        "its veth {} is gone (the engine's container went away)",
                        att.host_ifname
                    )),
                    None if !self.same_netns(ep) => Err(anyhow::anyhow!(
                        "namespace {} is gone, or now leads to another namespace",
                        ep.netns.display()
                    )),
                    None => self
                        .net
                        .create_endpoint(&EndpointLinkSpec {
                            handover: false,
                            ..self.link_spec(ep, att, net, i == 0)
                        })
                        .map(|link| {
                            report.recreated += 1;
                            made.push(att.host_ifname.clone());
                            self.links.insert(att.host_ifname.clone(), link);
                        })
                        .map_err(anyhow::Error::from),
                };
                if kept.is_err() {
                    break;
                }
            }
            if let Err(e) = kept {
                warn!(endpoint = %ep.name, "dropping endpoint: {e:#}");
                for att in &ep.attachments {
                    self.links.remove(&att.host_ifname);
                    if let Err(e) = self.net.delete_link(&att.host_ifname) {
                        warn!(interface = %att.host_ifname, "{e}");
                    }
                }
                report.dropped.push(format!("{}: {e:#}", ep.name));
                next.endpoints.remove(&ep.name);
            }
        }
        if next != self.state {
            self.commit(next).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        // Veths of endpoints nobody knows: an agent killed while creating one left it, with
        // its route and the interface in the container.
        for name in self
            .net
            .endpoint_links()
            .context("listing endpoint veths")?
            .into_keys()
        {
            if !self.links.contains_key(&name) {
                match self.net.delete_link(&name) {
                    Ok(()) => report.orphans.push(name),
                    Err(e) => warn!(interface = %name, "removing an orphan veth: {e}"),
                }
            }
        }
        let state = self.state.clone();
        self.adopt_policy_identities();
        let content = self.content(&state);
        let sync = self.dp.sync(&content).context("writing the maps")?;
        self.policy_written = Some(content.policy.clone());
        report.written = sync.written;
        report.removed = sync.removed;
        let hooks = self.hooks();
        let h = self
            .dp
            .ensure_hooks(&hooks, self.host.netns_cookie)
            .context("attaching the programs")?;
        report.hooks_kept = h.kept;
        report.hooks_updated = h.updated;
        report.hooks_attached = h.attached.len();
        report.hooks_removed = h.removed.len();
        self.dp.finish_migrations();
        let live: HashSet<u32> = self.links.values().map(|l| l.ifindex).collect();
        report.stale_flows = self.dp.flush_flows_except(&live);
        self.sync_dns_names();
        for ep in self.state.endpoints.values() {
            self.write_netns_files(ep);
        }
        info!(
            networks = self.state.networks.len(),
            endpoints = self.state.endpoints.len(),
            adopted = report.adopted,
            recreated = report.recreated,
            dropped = report.dropped.len(),
            orphans = report.orphans.len(),
            written = report.written,
            removed = report.removed,
            hooks_kept = report.hooks_kept,
            hooks_updated = report.hooks_updated,
            hooks_attached = report.hooks_attached,
            hooks_removed = report.hooks_removed,
            stale_flows = report.stale_flows,
            "reconciled"
        );
        self.last_reconcile = Some(super::health::Reconciled {
            at,
            took: began.elapsed(),
            report: report.clone(),
        });
        Ok(report)
    }
}
