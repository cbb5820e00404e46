//! Overlay requests on this node: what needs the cluster (a network created or removed for
//! every node, an address taken on one) goes to etcd first, without the agent's lock, and
//! changes this node only once etcd agreed. What the cluster says back is applied by
//! [`super::follow`].
use std::{future::Future, net::Ipv4Addr, sync::Arc};

use super::{service::Shared, store::StateStore, Agent};
use crate::{
    cluster::{overlay::local_claims, Cluster, OverlayError},
    datapath::DatapathOps,
    error::AgentError,
    model::{Connect, EndpointCreate, Network, NetworkCreate, DEFAULT_NETWORK},
    netlink::LinkOps,
};

/// Runs `f` to completion on this thread (a request's: the API serves on blocking threads).
pub(super) fn block_on<F: Future>(f: F) -> Result<F::Output, AgentError> {
    let rt = tokio::runtime::Handle::try_current()
        .map_err(|_| AgentError::internal("no runtime to reach etcd from"))?;
    Ok(rt.block_on(f))
}

/// Gives an address back to etcd (which says itself when etcd is away: the next session
/// does it then).
fn release(cluster: &Cluster, network: &str, ip: std::net::Ipv4Addr) {
    if let Err(e) = block_on(cluster.release(network, ip)) {
        tracing::warn!(%network, %ip, "giving the address back to etcd: {e}");
    }
}

impl<D, L, S> Shared<D, L, S>
where
    D: DatapathOps,
    L: LinkOps,
    S: StateStore,
{
    fn overlay_cluster(&self) -> Result<&Arc<Cluster>, AgentError> {
        self.cluster.as_ref().ok_or_else(|| {
            AgentError::invalid(
                "overlay networks span the nodes of a cluster: start the agent with --etcd",
            )
        })
    }

    /// The cluster, when `network` is an overlay network (an error when this node is on its
    /// own, which cannot happen for a network the cluster made).
    pub(super) fn cluster_of(&self, network: &str) -> Result<Option<&Arc<Cluster>>, AgentError> {
        let overlay = self
            .state()
            .networks
            .get(network)
            .is_some_and(|n| n.vni.is_some());
        if overlay {
            self.overlay_cluster().map(Some)
        } else {
            Ok(None)
        }
    }

    /// After a change of this node's overlay endpoints: the cluster knows which addresses
    /// are this node's, and the maps follow.
    pub(super) fn overlay_changed(&self, cluster: &Cluster) {
        let claims = local_claims(&self.state(), cluster.node_name());
        if let Err(e) = block_on(cluster.update_local(claims)) {
            tracing::warn!("writing this node's addresses to etcd: {e}; the next session does");
        }
        let view = cluster.view();
        self.write(|a| a.apply_cluster(&view));
    }

    /// `network create --driver overlay`: checked here, made in etcd (name, subnet and VNI
    /// free in the cluster), then here; other nodes make it when they hear of it.
    pub(super) fn create_overlay_network(
        &self,
        req: &NetworkCreate,
    ) -> Result<Network, AgentError> {
        let cluster = self.overlay_cluster()?;
        // Planned under the lock, asked of etcd without it (other requests go on meanwhile),
        // then made here once the plan is checked against the state as it is now.
        let planned = self.inspect(|a| a.plan_network(req))?;
        let rec = block_on(cluster.create_network(&planned))??;
        let net = self
            .write(|a| {
                // This node's follower may have made it from the record already.
                if let Some(made) = a.state.networks.get(&planned.name) {
                    if made.vni == Some(rec.vni) {
                        return Ok(made.clone());
                    }
                }
                a.state.still_fits(&planned)?;
                a.add_network(Network {
                    vni: Some(rec.vni),
                    ..planned
                })
            })
            .inspect_err(|_| {
                let undone = block_on(cluster.remove_network(&rec.name))
                    .and_then(|r| r.map_err(AgentError::from));
                if let Err(e) = undone {
                    tracing::warn!(network = %rec.name, "undoing the network in etcd: {e}");
                }
            })?;
        self.overlay_changed(cluster);
        Ok(net)
    }

    /// `network rm` of an overlay network: refused while any node has endpoints on it.
    pub(super) fn remove_overlay_network(&self, name: &str) -> Result<(), AgentError> {
        let cluster = self.overlay_cluster()?;
        // Checked under the lock, removed from etcd without it, then here (the plan checked
        // again: an endpoint of this node may have joined meanwhile, and etcd refuses the
        // removal of a network any node has endpoints on).
        self.inspect(|a| a.state.plan_network_rm(name).map(drop))?;
        block_on(cluster.remove_network(name))??;
        self.write(|a| {
            if !a.state.networks.contains_key(name) {
                return Ok(()); // this node's follower removed it already, from etcd's word
            }
            a.remove_network(name)
        })?;
        self.overlay_changed(cluster);
        Ok(())
    }

    /// An address of overlay network `network` for `endpoint`, taken in etcd: the one asked
    /// for, or the first free one (tried again past addresses other nodes took meanwhile).
    fn claim(
        &self,
        cluster: &Cluster,
        network: &str,
        want: Option<Ipv4Addr>,
        endpoint: &str,
    ) -> Result<Ipv4Addr, AgentError> {
        let mut lost: Vec<Ipv4Addr> = Vec::new();
        loop {
            let mut elsewhere: Vec<Ipv4Addr> = cluster
                .view()
                .endpoints
                .values()
                .filter(|e| e.network == network)
                .map(|e| e.ip)
                .collect();
            elsewhere.extend(&lost);
            let ip = self
                .state()
                .free_address(network, want, &elsewhere)
                .map_err(AgentError::from)?;
            match block_on(cluster.claim(network, ip, endpoint))? {
                Ok(()) => return Ok(ip),
                Err(OverlayError::Taken { .. }) if want.is_none() && lost.len() < 64 => {
                    lost.push(ip)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Makes an attachment on overlay network `network` with `make`, given its address:
    /// the address is taken in etcd first (`want`, or the first free one), and given back
    /// when the attachment cannot be made.
    fn with_claim<T>(
        &self,
        cluster: &Cluster,
        network: &str,
        want: Option<Ipv4Addr>,
        endpoint: &str,
        make: impl FnOnce(&mut Agent<D, L, S>, Ipv4Addr) -> Result<T, AgentError>,
    ) -> Result<T, AgentError> {
        let ip = self.claim(cluster, network, want, endpoint)?;
        let made = self.write(|a| make(a, ip));
        if made.is_err() {
            release(cluster, network, ip);
        }
        self.overlay_changed(cluster);
        made
    }

    /// `endpoint create` on an overlay network (see [`Self::with_claim`]).
    pub(super) fn create_overlay_endpoint(
        &self,
        cluster: &Cluster,
        req: &EndpointCreate,
    ) -> Result<crate::model::Endpoint, AgentError> {
        let network = req.network.as_deref().unwrap_or(DEFAULT_NETWORK);
        // Refused here before anything is asked of etcd (the address aside).
        self.inspect(|a| a.with_host(|s, host| s.plan_endpoint(req, host)))?;
        self.with_claim(cluster, network, req.ip, &req.name, |a, ip| {
            a.create_endpoint(&EndpointCreate {
                ip: Some(ip),
                ..req.clone()
            })
        })
    }

    /// `network connect` to an overlay network (see [`Self::with_claim`]).
    pub(super) fn connect_overlay(
        &self,
        cluster: &Cluster,
        network: &str,
        req: &Connect,
    ) -> Result<crate::model::Endpoint, AgentError> {
        self.state().plan_connect(network, req)?;
        self.with_claim(cluster, network, req.ip, &req.endpoint, |a, ip| {
            a.connect(
                network,
                &Connect {
                    ip: Some(ip),
                    ..req.clone()
                },
            )
        })
    }

    /// Gives back the overlay addresses an endpoint no longer has (after it was removed or
    /// disconnected).
    pub(super) fn release_overlay(&self, before: &crate::model::Endpoint) {
        let Some(cluster) = &self.cluster else { return };
        let state = self.state();
        let now = state.endpoints.get(&before.name);
        for att in &before.attachments {
            let still = now.is_some_and(|e| e.attachment(&att.network).is_some());
            let overlay = state
                .networks
                .get(&att.network)
                .is_some_and(|n| n.vni.is_some());
            if let (false, true, Some(ip)) = (still, overlay, att.ip) {
                release(cluster, &att.network, ip);
            }
        }
        self.overlay_changed(cluster);
    }
}
