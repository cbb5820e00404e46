//! What dockerd changed while nobody answered it, made netpath's too at start (endpoints of
//! containers that stopped or went, networks Docker removed, their addresses and pools); and
//! Docker's names kept as labels.

use tracing::{info, warn};

use super::{engine, Plugin, NETWORK_LABEL};
use crate::{
    api::{ApiError, Service},
    model::{short_id, EngineKind},
};

impl<S: Service> Plugin<S> {
    /// Makes netpath hold what dockerd holds (`view`, read before the plugin answers it): the
    /// endpoints of containers that stopped or went, and the networks Docker removed, while
    /// nobody answered it are removed, and so are their addresses and pools. What it removed,
    /// one line each.
    pub fn reconcile(&self, view: &engine::EngineView) -> Vec<String> {
        let mut out = Vec::new();
        for ep in self.svc.endpoints() {
            let Some(id) = ep.engine.as_ref().filter(|g| g.kind == EngineKind::Docker) else {
                continue;
            };
            if view.endpoints.contains_key(&id.id) {
                continue;
            }
            match self.svc.remove_endpoint(&ep.name) {
                Ok(()) => out.push(format!(
                    "endpoint {} (Docker endpoint {})",
                    ep.name,
                    short_id(&id.id, 12)
                )),
                Err(e) => {
                    warn!(endpoint = %ep.name, "removing what Docker no longer has: {}", e.msg)
                }
            }
        }
        for net in self.svc.networks() {
            let Some(id) = net.labels.get(NETWORK_LABEL) else {
                continue;
            };
            if view.networks.contains_key(id) {
                continue;
            }
            match self.svc.remove_network(&net.name) {
                Ok(()) => out.push(format!(
                    "network {} (Docker network {})",
                    net.name,
                    short_id(id, 12)
                )),
                Err(e) => {
                    warn!(network = %net.name, "removing what Docker no longer has: {}", e.msg)
                }
            }
        }
        match self.pools().reconcile(
            &view.subnets,
            &view.subnets6,
            &view.addresses,
            &view.addresses6,
        ) {
            Ok(released) => out.extend(released),
            Err(e) => warn!("giving back Docker's address pools: {e}"),
        }
        for what in &out {
            info!(removed = %what, "Docker let it go while the agent was down");
        }
        out
    }

    /// Labels netpath's networks and endpoints with the names Docker gives them (`view`).
    pub fn name(&self, view: &engine::EngineView) -> Result<(), ApiError> {
        let networks = self
            .svc
            .networks()
            .into_iter()
            .filter_map(|n| {
                let name = view.networks.get(n.labels.get(NETWORK_LABEL)?)?;
                Some((n.name, name.clone()))
            })
            .collect();
        let endpoints = self
            .svc
            .endpoints()
            .into_iter()
            .filter_map(|e| {
                let id = e.engine.filter(|g| g.kind == EngineKind::Docker)?.id;
                Some((e.name, view.endpoints.get(&id)?.clone()))
            })
            .collect();
        self.svc.set_labels(
            engine::NETWORK_NAME_LABEL,
            &networks,
            engine::CONTAINER_NAME_LABEL,
            &endpoints,
        )
    }
}
