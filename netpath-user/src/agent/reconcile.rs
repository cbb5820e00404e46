//! Reconcile at start: make the kernel match the desired state. Networks are written
//! again, attachments whose veth survived are adopted, lost ones re-created while their
//! namespace exists (the endpoint is dropped otherwise), and map entries and flows nobody
//! asked for are removed.
use std::collections::HashSet;

use anyhow::Context as _;
use tracing::{info, warn};

use super::{
    journal::Tx,
    store::StateStore,
    transactions::{host_addresses, Agent},
};
use crate::{datapath::DatapathOps, netlink::LinkOps};

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    pub fn reconcile(&mut self) -> anyhow::Result<()> {
        self.dp.clear();
        self.links.clear();
        let networks: Vec<_> = self.state.networks.values().cloned().collect();
        for net in &networks {
            for addr in host_addresses(net) {
                self.net
                    .add_gateway(addr)
                    .with_context(|| format!("gateway of network {}", net.name))?;
            }
            self.dp
                .add_network(net)
                .with_context(|| format!("network {}", net.name))?;
        }
        let mut next = self.state.clone();
        for ep in self.state.endpoints.clone().values() {
            let mut tx = Tx::default();
            let mut kept: anyhow::Result<()> = Ok(());
            for (i, att) in ep.attachments.iter().enumerate() {
                let Some(net) = self.state.networks.get(&att.network).cloned() else {
                    kept = Err(anyhow::anyhow!("network {} does not exist", att.network));
                    break;
                };
                kept = match self.net.link_info(&att.host_ifname) {
                    Ok(Some(link)) => self
                        .adopt_attachment(&mut tx, att, &net, link)
                        .map_err(anyhow::Error::from),
                    Ok(None) if ep.netns.exists() => self
                        .realize_attachment(&mut tx, ep, att, &net, i == 0)
                        .map_err(anyhow::Error::from),
                    Ok(None) => Err(anyhow::anyhow!("namespace {} is gone", ep.netns.display())),
                    Err(e) => Err(e.into()),
                };
                if kept.is_err() {
                    break;
                }
            }
            let kept = kept.and_then(|()| {
                self.install_ports(&mut tx, ep, &ep.ports)
                    .map_err(anyhow::Error::from)
            });
            if let Err(e) = kept {
                warn!(endpoint = %ep.name, "dropping endpoint: {e:#}");
                self.rollback_tx(tx);
                for att in &ep.attachments {
                    if let Err(e) = self.net.delete_link(&att.host_ifname) {
                        warn!(interface = %att.host_ifname, "{e}");
                    }
                }
                next.endpoints.remove(&ep.name);
            }
        }
        if next != self.state {
            self.commit(next).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        for net in &networks {
            let mut tx = Tx::default();
            let state = self.state.clone();
            if let Err(e) = self.sync_members(&mut tx, &state, &net.name) {
                warn!(network = %net.name, "members: {e}");
            }
        }
        let live: HashSet<u32> = self.links.values().map(|l| l.ifindex).collect();
        let n = self.dp.flush_flows_except(&live);
        info!(
            networks = self.state.networks.len(),
            endpoints = self.state.endpoints.len(),
            stale_flows = n,
            "reconciled"
        );
        for ep in self.state.endpoints.values() {
            self.hosts.write(ep, &self.state);
        }
        Ok(())
    }
}
