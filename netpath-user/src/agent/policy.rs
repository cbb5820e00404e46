//! Who may reach what, as the agent changes it: the published ports' firewall, network
//! policies and namespaces applied and removed, endpoints' labels changed; after each commit
//! the policies are compiled again and the kernel's policy maps made to match.
use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use tracing::{info, warn};

use super::{journal::Undo, store::StateStore, Agent};
use crate::{
    datapath::DatapathOps,
    error::AgentError,
    model::{Labels, ModelError, State},
    netlink::LinkOps,
    policy::{
        blocks, compile,
        spec::{self, Policy},
        Compiled, Manifest, Member, NamedPort, Prefix, PublishedFrom,
    },
};

/// The label an endpoint's namespace adds to its identity's label set.
const NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// The one label of an ipBlock prefix's set.
const CIDR_LABEL: &str = "netpath.cidr";

/// The policies `state` holds, read back from their manifests (checked when applied).
pub fn policies(state: &State) -> Vec<Policy> {
    state
        .policies
        .iter()
        .filter_map(|(key, m)| {
            let ns = key.split_once('/').map_or("default", |(ns, _)| ns);
            let np: NetworkPolicy = serde_json::from_value(m.clone()).ok()?;
            Policy::from_k8s(&np, ns).ok()
        })
        .collect()
}

/// What applying `new` over `old` (what was there) did, as kubectl says it.
fn applied<T: PartialEq>(old: Option<T>, new: &T) -> &'static str {
    match old {
        None => "created",
        Some(old) if old == *new => "unchanged",
        Some(_) => "configured",
    }
}

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    /// Makes `list` the clients published ports answer: the kernel's trie first, then the
    /// saved state. The flows of clients the list no longer lets in are removed, so their
    /// connections stop at their next packet. Returns how many flows went.
    pub fn set_published_from(&mut self, list: PublishedFrom) -> Result<usize, AgentError> {
        if list == self.state.published_from {
            return Ok(0);
        }
        let mut next = self.state.clone();
        next.published_from = list.clone();
        let old = self.state.published_from.clone();
        let flows = self.transact(|a, tx| {
            let flows = a.dp.set_published_from(&list)?;
            tx.undo(Undo::SetPublishedFrom(old));
            a.commit(next)?;
            Ok(flows)
        })?;
        info!(published_from = %list, flows, "published ports' firewall changed");
        Ok(flows)
    }

    /// What the policies see of the endpoints, this node's and the other nodes' (by their
    /// etcd records): one member for each identity.
    fn members(&mut self) -> Vec<Member> {
        // (namespace, labels, named ports, addresses) of each endpoint.
        let local = self.state.endpoints.values().map(|e| {
            let addrs: Vec<_> = e
                .attachments
                .iter()
                .filter_map(|a| a.ips().next())
                .collect();
            (&e.namespace, &e.labels, e.named_ports.as_slice(), addrs)
        });
        let remote = self.state.remote.iter().map(|r| {
            (
                &r.namespace,
                &r.labels,
                r.named_ports.as_slice(),
                vec![r.ip.into()],
            )
        });
        let all: Vec<_> = local.chain(remote).collect();
        let sets: Vec<Labels> = all
            .iter()
            .map(|(ns, labels, _, _)| {
                let mut l = (*labels).clone();
                l.insert(NAMESPACE_LABEL.into(), (*ns).clone());
                l
            })
            .collect();
        self.identities.assign(&sets);
        let mut by_id: BTreeMap<u32, Member> = BTreeMap::new();
        for ((ns, labels, ports, addrs), set) in all.into_iter().zip(&sets) {
            let Some(id) = self.identities.of(set) else {
                continue;
            };
            let m = by_id.entry(id.0).or_insert_with(|| Member {
                identity: id.0,
                namespace: ns.clone(),
                labels: labels.clone(),
                ..Member::default()
            });
            m.ports.extend(ports.iter().cloned());
            m.addrs.extend(addrs);
        }
        by_id.into_values().collect()
    }

    /// Takes over the identities the kernel's maps hold (an earlier agent's numbers) for the
    /// sets that still exist, so that rewriting the maps at start moves no number from one
    /// set to another (while they are rewritten, the old numbers still judge some addresses).
    pub(super) fn adopt_policy_identities(&mut self) {
        for (prefix, id) in self.dp.policy_identities() {
            let id = crate::model::identity::Identity(id);
            if id.0 >= netpath_common::identity::FIRST_OF_CIDRS {
                let set = Labels::from([(CIDR_LABEL.to_string(), prefix.to_string())]);
                self.block_identities.adopt(&set, id);
            } else if let Some(ep) = self.state.endpoints.values().find(|e| match prefix {
                Prefix::V4(s) => {
                    s.prefix() == 32 && e.attachments.iter().any(|a| a.ip == Some(s.addr()))
                }
                // An endpoint of IPv6 alone: its identity is its IPv6 address's.
                Prefix::V6(s) => {
                    s.prefix() == 128
                        && e.attachments
                            .iter()
                            .any(|a| a.ip.is_none() && a.ip6 == Some(s.addr()))
                }
            }) {
                let mut set = ep.labels.clone();
                set.insert(NAMESPACE_LABEL.into(), ep.namespace.clone());
                self.identities.adopt(&set, id);
            }
        }
    }

    /// The policy maps' content for the current state.
    pub(super) fn compiled_policy(&mut self) -> Compiled {
        if self.state.policies.is_empty() {
            // Nothing to select: no identity is needed (they are given when one is).
            return Compiled::default();
        }
        let members = self.members();
        let all = policies(&self.state);
        // Each prefix an ipBlock names is a set of its own, numbered apart from the
        // endpoints' and kept while some policy names it.
        let blocks = blocks(&all);
        let sets: Vec<Labels> = blocks
            .iter()
            .map(|b| Labels::from([(CIDR_LABEL.to_string(), b.to_string())]))
            .collect();
        self.block_identities.assign(&sets);
        let cidrs = blocks
            .iter()
            .zip(&sets)
            .filter_map(|(b, set)| Some((*b, self.block_identities.of(set)?.0)))
            .collect();
        compile(&members, &all, &self.state.namespaces, &cidrs)
    }

    /// Makes the kernel's policy maps match the state, when they do not already.
    pub(super) fn sync_policy(&mut self) {
        let c = self.compiled_policy();
        if self.policy_written.as_ref() == Some(&c) {
            return;
        }
        match self.dp.set_policy(&c) {
            Ok(ended) => {
                info!(
                    subjects = c.subjects.len(),
                    rules = c.rules.len(),
                    ended,
                    "policy maps written"
                );
                self.policy_written = Some(c);
            }
            Err(e) => warn!("writing the policy maps: {e}"),
        }
    }

    /// Applies a file of manifests, all or nothing: each policy replaces the one of its
    /// name, each namespace's labels replace its own. What each did, as kubectl says it.
    pub fn apply_policies(&mut self, manifests: Vec<Manifest>) -> Result<Vec<String>, AgentError> {
        let (next, done) = self.plan_policies(manifests)?;
        self.transact(|a, _| a.commit(next))?;
        info!(applied = done.len(), "policies applied");
        Ok(done)
    }

    /// The state with `manifests` applied (refused whole when one cannot be), and what each
    /// did.
    pub fn plan_policies(
        &self,
        manifests: Vec<Manifest>,
    ) -> Result<(State, Vec<String>), AgentError> {
        let mut next = self.state.clone();
        let mut done = Vec::new();
        for m in manifests {
            match m {
                Manifest::Policy { policy, manifest } => {
                    // Declared by an endpoint of this node or of another.
                    if let Some(name) = policy.port_names().find(|n| {
                        let named = |ports: &[NamedPort]| ports.iter().any(|p| p.name == *n);
                        !next.endpoints.values().any(|e| named(&e.named_ports))
                            && !next.remote.iter().any(|r| named(&r.named_ports))
                    }) {
                        return Err(ModelError::UnknownPortName(policy.key(), name.into()).into());
                    }
                    let what = applied(
                        next.policies.insert(policy.key(), manifest.clone()),
                        &manifest,
                    );
                    done.push(format!("networkpolicy {} {what}", policy.key()));
                }
                Manifest::Namespace { name, labels } => {
                    let what = applied(
                        next.namespaces.insert(name.clone(), labels.clone()),
                        &labels,
                    );
                    done.push(format!("namespace {name} {what}"));
                }
            }
        }
        Ok((next, done))
    }

    /// Removes the policies `names` of `namespace`; every one must exist (else nothing goes).
    pub fn remove_policies(&mut self, namespace: &str, names: &[String]) -> Result<(), AgentError> {
        let (next, _) = self.plan_removal(namespace, names)?;
        self.transact(|a, _| a.commit(next))?;
        info!(namespace, removed = names.len(), "policies removed");
        Ok(())
    }

    /// The state without the policies `names` of `namespace` (refused when one is not there),
    /// and their keys.
    pub fn plan_removal(
        &self,
        namespace: &str,
        names: &[String],
    ) -> Result<(State, Vec<String>), AgentError> {
        let mut next = self.state.clone();
        let keys: Vec<String> = names.iter().map(|n| spec::key(namespace, n)).collect();
        for key in &keys {
            if next.policies.remove(key).is_none() {
                return Err(ModelError::NoPolicy(key.clone()).into());
            }
        }
        Ok((next, keys))
    }

    /// In a cluster, the policies and namespaces are the cluster's: once etcd has been
    /// listed, this node takes its set (what was applied here while this node was away
    /// included, and what was removed meanwhile dropped).
    pub(super) fn adopt_cluster_policies(&mut self, view: &crate::cluster::ClusterView) {
        if !view.listed
            || (self.state.policies == view.policies && self.state.namespaces == view.namespaces)
        {
            return;
        }
        let mut next = self.state.clone();
        next.policies.clone_from(&view.policies);
        next.namespaces.clone_from(&view.namespaces);
        match self.transact(|a, _| a.commit(next)) {
            Ok(()) => info!(
                policies = view.policies.len(),
                namespaces = view.namespaces.len(),
                "network policies of the cluster taken"
            ),
            Err(e) => warn!("taking the cluster's network policies: {e}"),
        }
    }

    /// Sets labels `set` and removes labels `remove` of endpoint `name`: its next flows are
    /// decided on the new labels. The endpoint as it is now.
    pub fn update_labels(
        &mut self,
        name: &str,
        set: &Labels,
        remove: &[String],
    ) -> Result<crate::model::Endpoint, AgentError> {
        let mut next = self.state.clone();
        let ep = next
            .endpoints
            .get_mut(name)
            .ok_or_else(|| ModelError::NoEndpoint(name.to_string()))?;
        if let Some(k) = remove.iter().find(|k| !ep.labels.contains_key(*k)) {
            return Err(ModelError::NoLabel(name.to_string(), k.clone()).into());
        }
        if let Some(e) = crate::policy::select::check_labels("label", set).err() {
            return Err(ModelError::BadLabel(format!("{}: {}", e.field, e.message)).into());
        }
        for k in remove {
            ep.labels.remove(k);
        }
        ep.labels.extend(set.clone());
        let ep = ep.clone();
        self.transact(|a, _| a.commit(next))?;
        info!(endpoint = %name, "labels changed");
        Ok(ep)
    }
}
