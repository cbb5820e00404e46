//! Overlay networks on this node: requests that need the cluster (a network created or
//! removed for every node, an address taken on one) go to etcd first and change this node
//! only once etcd agreed; what the cluster says is applied here ([`Agent::apply_cluster`]):
//! overlay networks created on other nodes appear, removed ones go, and the overlay maps
//! learn where the other nodes' endpoints are.
use std::{collections::BTreeSet, future::Future, net::Ipv4Addr, sync::Arc};

use tracing::{info, warn};

use super::{service::Shared, store::StateStore, transactions::Agent};
use crate::{
    cluster::{
        overlay::local_claims, Cluster, ClusterView, OverlayEndpoint, OverlayError, OverlayNetwork,
    },
    datapath::{DatapathOps, OverlayContent, OverlayNetEntry},
    error::AgentError,
    model::{
        Connect, EndpointCreate, Network, NetworkCreate, RemoteMember, DEFAULT_NETWORK,
        OVERLAY_DRIVER,
    },
    netlink::LinkOps,
};

/// Runs `f` to completion on this thread (a request's: the API serves on blocking threads).
fn block_on<F: Future>(f: F) -> Result<F::Output, AgentError> {
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

/// Whether `req` asks for an overlay network.
pub fn is_overlay(req: &NetworkCreate) -> bool {
    req.driver.as_deref() == Some(OVERLAY_DRIVER)
}

/// The request a record of the cluster makes on this node (checked like any).
fn request_of(rec: &OverlayNetwork) -> NetworkCreate {
    NetworkCreate {
        name: rec.name.clone(),
        driver: Some(OVERLAY_DRIVER.to_string()),
        subnet: Some(rec.subnet.to_string()),
        gateway: Some(rec.gateway),
        ip_range: rec.ip_range.map(|r| r.to_string()),
        internal: rec.internal,
        options: rec
            .options
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        labels: rec.labels.clone(),
    }
}

/// The endpoints of other, registered nodes on this node's overlay networks, each with its
/// network here and its node's underlay address: what this node can reach across nodes.
fn remote_endpoints<'a>(
    state: &'a crate::model::State,
    view: &'a ClusterView,
) -> impl Iterator<Item = (&'a OverlayEndpoint, &'a Network, Ipv4Addr)> + 'a {
    view.endpoints.values().filter_map(move |e| {
        let net = state.networks.get(&e.network).filter(|n| n.vni.is_some())?;
        let node = view.nodes.get(&e.node).filter(|_| e.node != view.node)?;
        Some((e, net, node.underlay))
    })
}

/// The other nodes' endpoints on this node's overlay networks, for names.
fn remote_members(state: &crate::model::State, view: &ClusterView) -> Vec<RemoteMember> {
    remote_endpoints(state, view)
        .map(|(e, _, _)| RemoteMember {
            network: e.network.clone(),
            name: e.endpoint.clone(),
            id: e.id.clone(),
            ip: e.ip,
            aliases: e.aliases.clone(),
            node: e.node.clone(),
        })
        .collect()
}

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    /// Makes this node match `view`: overlay networks of the cluster created here, those the
    /// cluster no longer has removed (once `view` comes from etcd, not the state file), and
    /// the overlay maps written. What cannot be matched is kept as a problem for `status`.
    pub fn apply_cluster(&mut self, view: &ClusterView) {
        let mut problems = view.conflicts.clone();
        for rec in view.networks.values() {
            match self.state.networks.get(&rec.name) {
                Some(n) if n.vni == Some(rec.vni) => continue,
                Some(n) if n.vni.is_none() => {
                    problems.push(format!(
                        "overlay network {} of the cluster has the name of a network of this node",
                        rec.name
                    ));
                    continue;
                }
                // Removed and created again while this node was away.
                Some(_) => {
                    if let Err(e) = self.remove_network(&rec.name) {
                        problems.push(format!(
                            "overlay network {} changed in the cluster: {}",
                            rec.name, e
                        ));
                        continue;
                    }
                }
                None => {}
            }
            let made = self.plan_network(&request_of(rec)).and_then(|planned| {
                self.add_network(Network {
                    id: rec.id.clone(),
                    vni: Some(rec.vni),
                    ..planned
                })
            });
            match made {
                Ok(_) => {
                    info!(network = %rec.name, vni = rec.vni, "overlay network of the cluster added")
                }
                Err(e) => problems.push(format!(
                    "overlay network {} cannot be made on this node: {}",
                    rec.name, e
                )),
            }
        }
        if view.listed {
            let gone: Vec<String> = self
                .state
                .networks
                .values()
                .filter(|n| n.vni.is_some() && !view.networks.contains_key(&n.name))
                .map(|n| n.name.clone())
                .collect();
            for name in gone {
                match self.remove_network(&name) {
                    Ok(()) => info!(network = %name, "overlay network removed from the cluster"),
                    Err(e) => problems.push(format!(
                        "overlay network {name} is gone from the cluster but stays here: {}",
                        e
                    )),
                }
            }
            // Names of the other nodes' endpoints (they resolve here too).
            self.state.remote = remote_members(&self.state, view);
            // Only what etcd said: before that, the pinned maps keep what they had.
            let content = self.overlay_content(view);
            if self.overlay_written.as_ref() != Some(&content) {
                match self.dp.sync_overlay(&content) {
                    Ok(_) => self.overlay_written = Some(content),
                    Err(e) => problems.push(format!("writing the overlay maps: {e}")),
                }
            }
        }
        for p in problems
            .iter()
            .filter(|p| !self.cluster_problems.contains(p))
        {
            warn!("{p}");
        }
        self.cluster_problems = problems;
    }

    /// What the overlay maps should hold for `view`.
    fn overlay_content(&self, view: &ClusterView) -> OverlayContent {
        let Some(dev) = &self.host.overlay else {
            return OverlayContent::default();
        };
        let local: BTreeSet<Ipv4Addr> = self
            .state
            .endpoints
            .values()
            .flat_map(|e| e.attachments.iter().map(|a| a.ip))
            .collect();
        let mut c = OverlayContent {
            device: dev.ifindex,
            local: view
                .nodes
                .get(&view.node)
                .map_or(Ipv4Addr::UNSPECIFIED, |n| n.underlay),
            ..OverlayContent::default()
        };
        for net in self.state.networks.values() {
            if let Some(vni) = net.vni {
                c.networks.insert(
                    net.net_id,
                    OverlayNetEntry {
                        vni,
                        peers: Vec::new(),
                    },
                );
            }
        }
        let mut peers: BTreeSet<(u32, Ipv4Addr)> = BTreeSet::new();
        for (e, net, node) in remote_endpoints(&self.state, view) {
            peers.insert((net.net_id, node));
            if !local.contains(&e.ip) {
                c.remotes.insert(e.ip, (node, net.net_id));
            }
        }
        for (net_id, node) in peers {
            if let Some(entry) = c.networks.get_mut(&net_id) {
                entry.peers.push(node);
            }
        }
        c
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
    fn overlay_changed(&self, cluster: &Cluster) {
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
                a.state.still_fits(&planned)?;
                a.add_network(Network {
                    vni: Some(rec.vni),
                    ..planned
                })
            })
            .inspect_err(|_| match block_on(cluster.remove_network(&rec.name)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(network = %rec.name, "undoing the network in etcd: {e}")
                }
                Err(e) => tracing::warn!(network = %rec.name, "undoing the network in etcd: {e}"),
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
        self.write(|a| a.remove_network(name))?;
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
            if !still && overlay {
                release(cluster, &att.network, att.ip);
            }
        }
        self.overlay_changed(cluster);
    }
}
