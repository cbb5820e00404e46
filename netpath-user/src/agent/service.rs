//! The agent as the API serves it ([`Shared`], which implements [`Service`]): one
//! transaction at a time under a lock, and queries answered from a snapshot of the desired
//! state taken after each change, so a long request (publishing 10,000 ports, say) never
//! holds up a query. Neither lock poisons: a request that panics leaves both usable.
use std::{collections::BTreeMap, sync::Arc};

use netpath_common::Counter;
use parking_lot::{Mutex, RwLock};

use super::{api_metrics::ApiMetrics, monitor::Hub, store::StateStore, Agent};
use crate::{
    api::{
        ApiError, EndpointView, MonitorEvent, MonitorFilter, NetworkView, Port, PortView, Service,
        StatsView, VersionView,
    },
    datapath::DatapathOps,
    error::AgentError,
    model::{Connect, Disconnect, EndpointCreate, NetworkCreate, PortsRequest, State},
    netlink::LinkOps,
};

/// The agent behind its lock, the latest committed state for queries, and the monitors'
/// hub.
pub struct Shared<D, L, S> {
    agent: Mutex<Agent<D, L, S>>,
    state: Arc<RwLock<Arc<State>>>,
    hub: Option<Arc<Hub>>,
    api: ApiMetrics,
    dns: Option<Arc<crate::dns::server::DnsServer>>,
    pub(super) cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl<D: DatapathOps, L: LinkOps, S: StateStore> Shared<D, L, S> {
    pub fn new(agent: Agent<D, L, S>) -> Self {
        let state = Arc::new(RwLock::new(Arc::new(agent.state.clone())));
        Shared {
            agent: Mutex::new(agent),
            state,
            hub: None,
            api: ApiMetrics::default(),
            dns: None,
            cluster: None,
        }
    }

    /// Answers for the nodes `cluster` knows.
    pub fn set_cluster(&mut self, cluster: Arc<crate::cluster::Cluster>) {
        self.cluster = Some(cluster);
    }

    /// Counts what `dns` does among its statistics and metrics.
    pub fn set_dns(&mut self, dns: Arc<crate::dns::server::DnsServer>) {
        self.dns = Some(dns);
    }

    /// The DNS server's counters, by name (none without a server).
    pub fn dns_counters(&self) -> Vec<(&'static str, u64)> {
        self.dns
            .as_ref()
            .map(|d| d.counters.all())
            .unwrap_or_default()
    }

    /// Serves monitors from a hub describing events with this state; the receiver sees the
    /// flags the kernel should have.
    pub fn with_monitor(mut self) -> (Self, Arc<Hub>, tokio::sync::watch::Receiver<u32>) {
        let (hub, flags) = Hub::new(self.state.clone());
        self.hub = Some(hub.clone());
        (self, hub, flags)
    }

    /// Runs `f` on the agent (one at a time), then publishes the state it left for queries.
    pub fn write<T>(&self, f: impl FnOnce(&mut Agent<D, L, S>) -> T) -> T {
        let mut agent = self.agent.lock();
        let out = f(&mut agent);
        if **self.state.read() != agent.state {
            // Names follow at once: the kernel's, then the server's (a new snapshot, and its
            // listeners on the networks' gateways).
            agent.sync_dns_names();
            *self.state.write() = Arc::new(agent.state.clone());
            if let Some(dns) = &self.dns {
                dns.sync_listeners(&agent.state);
            }
        }
        out
    }

    /// The published state, shared (what the DNS server and monitors read).
    pub fn state_handle(&self) -> Arc<RwLock<Arc<State>>> {
        self.state.clone()
    }

    /// Runs `f` on the agent (one at a time) for what only it knows: the kernel's maps and
    /// links, its history.
    pub fn inspect<T>(&self, f: impl FnOnce(&Agent<D, L, S>) -> T) -> T {
        f(&self.agent.lock())
    }

    /// Monitors listening now.
    pub(super) fn monitors(&self) -> usize {
        self.hub.as_ref().map_or(0, |h| h.subscribers())
    }

    /// This node among the others (none when on its own).
    pub(super) fn cluster_health(&self) -> Option<crate::api::health::ClusterHealth> {
        self.cluster.as_ref().map(|c| {
            let v = c.view();
            crate::api::health::ClusterHealth {
                connected: v.connected,
                error: v.error,
                nodes: v.nodes.len(),
                overlay_networks: v.networks.len(),
                remote_endpoints: v.endpoints.values().filter(|e| e.node != v.node).count(),
                node: v.node,
            }
        })
    }

    /// An overlay network's view with the nodes that have endpoints on it.
    fn with_peers(&self, mut v: NetworkView) -> NetworkView {
        let Some(cluster) = &self.cluster else {
            return v;
        };
        let view = cluster.view();
        if !view.networks.contains_key(&v.name) {
            return v;
        }
        let names: std::collections::BTreeSet<&str> = view
            .endpoints
            .values()
            .filter(|e| e.network == v.name)
            .map(|e| e.node.as_str())
            .collect();
        v.peers = Some(
            names
                .into_iter()
                .filter_map(|n| view.nodes.get(n))
                .map(|n| crate::api::PeerView {
                    name: n.name.clone(),
                    ip: n.underlay,
                })
                .collect(),
        );
        v
    }

    /// How the API answered.
    pub fn api_metrics(&self) -> &ApiMetrics {
        &self.api
    }

    /// The latest committed state.
    pub fn state(&self) -> Arc<State> {
        self.state.read().clone()
    }
}

/// The network `name` means: its own name, or the name its engine gave it (Docker's, which
/// `network ls` shows) when no network has that name and one network has that label.
fn network_named(state: &State, name: &str) -> String {
    if state.networks.contains_key(name) {
        return name.to_string();
    }
    let mut by_label = state.networks.values().filter(|n| {
        n.labels
            .get(crate::docker::engine::NETWORK_NAME_LABEL)
            .is_some_and(|l| l == name)
    });
    match (by_label.next(), by_label.next()) {
        (Some(n), None) => n.name.clone(),
        _ => name.to_string(),
    }
}

fn network_view(state: &State, name: &str) -> Result<NetworkView, ApiError> {
    let net = state.network(&network_named(state, name))?;
    Ok(NetworkView::new(net, state.members(&net.name)))
}

impl<D, L, S> Service for Shared<D, L, S>
where
    D: DatapathOps + 'static,
    L: LinkOps + 'static,
    S: StateStore + 'static,
{
    fn version(&self) -> VersionView {
        VersionView::current()
    }

    fn stats(&self) -> StatsView {
        let s = self.inspect(|a| a.dp.stats());
        StatsView {
            counters: s
                .counters
                .iter()
                .map(|(c, v): &(Counter, u64)| (c.name(), *v))
                .chain(self.dns_counters())
                .map(|(c, v)| (c.to_string(), v))
                .collect(),
            flows: s.flows,
            outbound_flows: s.outbound_flows,
            published_ports: s.published_ports,
            endpoints: s.endpoints,
            networks: s.networks,
        }
    }

    fn health(&self) -> crate::api::health::HealthView {
        let monitors = self.monitors();
        let mut h = self.inspect(|a| a.health(monitors));
        h.cluster = self.cluster_health();
        if h.cluster.is_some() {
            h.problems
                .extend(self.inspect(|a| a.cluster_problems.clone()));
            h.healthy = h.problems.is_empty();
        }
        if let Some(dns) = &self.dns {
            let listening = dns.addresses();
            for net in self.state().networks.values() {
                for gw in net.gateways() {
                    let up = listening.contains(&(net.name.clone(), gw));
                    let address = std::net::SocketAddr::new(gw, crate::dns::server::PORT);
                    if !up {
                        h.problems.push(format!(
                            "the DNS server of network {} is not listening on {address}",
                            net.name
                        ));
                    }
                    h.dns.push(crate::api::health::DnsView {
                        network: net.name.clone(),
                        address: address.to_string(),
                        listening: up,
                    });
                }
            }
            h.healthy = h.problems.is_empty();
        }
        h
    }

    fn networks(&self) -> Vec<NetworkView> {
        let state = self.state();
        state
            .networks
            .values()
            .map(|n| self.with_peers(NetworkView::new(n, state.members(&n.name))))
            .collect()
    }

    fn network(&self, name: &str) -> Result<NetworkView, ApiError> {
        network_view(&self.state(), name).map(|v| self.with_peers(v))
    }

    fn create_network(&self, req: &NetworkCreate) -> Result<NetworkView, ApiError> {
        let net = if req.is_overlay() {
            self.create_overlay_network(req)?
        } else {
            self.write(|a| a.create_network(req))?
        };
        network_view(&self.state(), &net.name)
    }

    fn remove_network(&self, name: &str) -> Result<(), ApiError> {
        let name = &network_named(&self.state(), name);
        if self.cluster_of(name)?.is_some() {
            return Ok(self.remove_overlay_network(name)?);
        }
        Ok(self.write(|a| a.remove_network(name))?)
    }

    fn connect(&self, network: &str, req: &Connect) -> Result<EndpointView, ApiError> {
        let ep = match self.cluster_of(network)? {
            Some(cluster) => self.connect_overlay(cluster, network, req)?,
            None => self.write(|a| a.connect(network, req))?,
        };
        Ok(EndpointView::new(&ep, &self.state()))
    }

    fn disconnect(&self, network: &str, req: &Disconnect) -> Result<EndpointView, ApiError> {
        let before = self.state().endpoint(&req.endpoint)?.clone();
        let ep = self.write(|a| a.disconnect(network, &req.endpoint))?;
        self.release_overlay(&before);
        Ok(EndpointView::new(&ep, &self.state()))
    }

    fn endpoints(&self) -> Vec<EndpointView> {
        let state = self.state();
        state
            .endpoints
            .values()
            .map(|e| EndpointView::new(e, &state))
            .collect()
    }

    fn endpoint(&self, name: &str) -> Result<EndpointView, ApiError> {
        let state = self.state();
        Ok(EndpointView::new(state.endpoint(name)?, &state))
    }

    fn create_endpoint(&self, req: &EndpointCreate) -> Result<EndpointView, ApiError> {
        let network = req
            .network
            .as_deref()
            .unwrap_or(crate::model::DEFAULT_NETWORK);
        let ep = match self.cluster_of(network)? {
            Some(cluster) => self.create_overlay_endpoint(cluster, req)?,
            None => self.write(|a| a.create_endpoint(req))?,
        };
        Ok(EndpointView::new(&ep, &self.state()))
    }

    fn remove_endpoint(&self, name: &str) -> Result<(), ApiError> {
        let before = self.state().endpoint(name)?.clone();
        self.write(|a| a.remove_endpoint(name))?;
        self.release_overlay(&before);
        Ok(())
    }

    fn prune(&self) -> Result<Vec<String>, ApiError> {
        let before = self.state();
        let pruned = self.write(|a| a.prune())?;
        for name in &pruned {
            if let Some(ep) = before.endpoints.get(name) {
                self.release_overlay(ep);
            }
        }
        Ok(pruned)
    }

    fn publish(&self, endpoint: &str, req: &PortsRequest) -> Result<Vec<Port>, ApiError> {
        let maps = self.write(|a| a.publish(endpoint, &req.specs))?;
        Ok(maps.into_iter().map(Port::from).collect())
    }

    fn unpublish(&self, endpoint: &str, req: &PortsRequest) -> Result<Vec<Port>, ApiError> {
        let maps = self.write(|a| a.unpublish(endpoint, &req.specs))?;
        Ok(maps.into_iter().map(Port::from).collect())
    }

    fn observe(&self, route: &'static str, status: hyper::StatusCode, took: std::time::Duration) {
        self.api.observe(route, status, took);
    }

    fn monitor(
        &self,
        filter: MonitorFilter,
    ) -> Result<tokio::sync::mpsc::Receiver<MonitorEvent>, ApiError> {
        let hub = self
            .hub
            .as_ref()
            .ok_or_else(|| ApiError::internal("this agent has no monitor"))?;
        if let Some(e) = &filter.endpoint {
            self.state().endpoint(e)?;
        }
        Ok(hub.subscribe(filter.checked()?))
    }

    fn nodes(&self) -> Result<crate::cluster::ClusterView, ApiError> {
        self.cluster
            .as_ref()
            .map(|c| c.view())
            .ok_or_else(|| AgentError::NotInCluster.into())
    }

    fn set_labels(
        &self,
        network_key: &str,
        networks: &BTreeMap<String, String>,
        endpoint_key: &str,
        endpoints: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        self.write(|a| a.set_labels(network_key, networks, endpoint_key, endpoints))?;
        Ok(())
    }

    fn ports(&self) -> Vec<PortView> {
        self.state()
            .endpoints
            .values()
            .flat_map(|e| {
                e.ports.iter().map(|m| PortView {
                    endpoint: e.name.clone(),
                    port: Port::from(*m),
                })
            })
            .collect()
    }
}
