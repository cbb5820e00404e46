//! What the cluster says, applied on this node ([`Agent::apply_cluster`]): overlay networks
//! created on other nodes appear, removed ones go, and the overlay maps learn where the other
//! nodes' endpoints are.
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
};

use tracing::{info, warn};

use super::{store::StateStore, Agent};
use crate::{
    cluster::{ClusterView, OverlayEndpoint, OverlayNetwork},
    datapath::{DatapathOps, OverlayContent, OverlayNetEntry},
    model::{Network, NetworkCreate, RemoteMember, OVERLAY_DRIVER},
    netlink::LinkOps,
};

/// The request a record of the cluster makes on this node (checked like any).
fn request_of(rec: &OverlayNetwork) -> NetworkCreate {
    NetworkCreate {
        name: rec.name.clone(),
        driver: Some(OVERLAY_DRIVER.to_string()),
        subnet: Some(rec.v4.subnet.to_string()),
        gateway: Some(rec.v4.gateway),
        ip_range: rec.v4.ip_range.map(|r| r.to_string()),
        ipv6: rec.v6.is_some(),
        subnet6: rec.v6.map(|p| p.subnet.to_string()),
        internal: rec.internal,
        options: rec
            .options
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        labels: rec.labels.clone(),
        ..Default::default()
    }
}

/// The endpoints of other, registered nodes on this node's overlay networks, each with its
/// network here and its node's underlay address: what this node can reach across nodes.
fn remote_endpoints<'a>(
    state: &'a crate::model::State,
    view: &'a ClusterView,
) -> impl Iterator<Item = (&'a OverlayEndpoint, &'a Network, IpAddr)> + 'a {
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
            namespace: if e.namespace.is_empty() {
                crate::policy::DEFAULT_NAMESPACE.into()
            } else {
                e.namespace.clone()
            },
            labels: e.labels.clone(),
            named_ports: e.named_ports.clone(),
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
            if let Some(dev) = &self.host.overlay {
                // The VXLAN packets of a node with an IPv4 underlay address cannot reach one
                // with an IPv6 address, nor would the other node know them as this one's.
                for n in view
                    .nodes
                    .values()
                    .filter(|n| n.underlay.is_ipv6() != dev.underlay.is_ipv6())
                {
                    problems.push(format!(
                        "node {} has an underlay address of the other family ({}) than this \
                         node's ({}): overlay traffic does not go between them",
                        n.name, n.underlay, dev.underlay
                    ));
                }
            }
            // Names of the other nodes' endpoints (they resolve here too).
            self.state.remote = remote_members(&self.state, view);
            // The cluster's policies, and the others' labels: what they select them by.
            self.adopt_cluster_policies(view);
            // Only what etcd said: before that, the pinned maps keep what they had.
            let content = self.overlay_content(view);
            if self.overlay_written.as_ref() != Some(&content) {
                match self.dp.sync_overlay(&content) {
                    Ok(_) => self.overlay_written = Some(content),
                    Err(e) => problems.push(format!("writing the overlay maps: {e}")),
                }
            }
            // After the overlay maps: the other nodes' IPv6 addresses get their identities.
            self.sync_policy();
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
            .flat_map(|e| e.attachments.iter().filter_map(|a| a.ip))
            .collect();
        let mut c = OverlayContent {
            device: dev.ifindex,
            local: dev.underlay,
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
        let mut peers: BTreeSet<(u32, IpAddr)> = BTreeSet::new();
        // Only the nodes of this node's family (see apply_cluster's problems).
        let reachable = remote_endpoints(&self.state, view)
            .filter(|(_, _, node)| node.is_ipv6() == dev.underlay.is_ipv6());
        for (e, net, node) in reachable {
            peers.insert((net.net_id, node));
            if !local.contains(&e.ip) {
                c.remotes.insert(e.ip, (node, net.net_id));
                if let Some(ip6) = net.overlay_ip6(e.ip) {
                    c.remotes6.insert(ip6, e.ip);
                }
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
