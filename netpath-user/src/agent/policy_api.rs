//! The API's policy routes ([`PolicyService`]) for the agent: changes go through its lock
//! like every other write (in a cluster, through etcd first); `policy check` reads the
//! compiled content it last wrote, without writing anything.
use std::{collections::BTreeMap, net::IpAddr};

use netpath_common::{direction, identity};

use super::{overlay::block_on, policy::policies, service::Shared, store::StateStore};
use crate::{
    api::{
        ApiError, CheckSide, CheckView, EndpointView, FirewallView, LabelsUpdate, PolicyApply,
        PolicyCheck, PolicyRemove, PolicyService, PolicyView,
    },
    datapath::DatapathOps,
    error::AgentError,
    model::State,
    netlink::LinkOps,
    policy::{parse_manifests, spec::Policy, Compiled, Manifest},
    ports::Proto,
};

/// An endpoint by name (its first address of the family, IPv6's when `v6`), or an address:
/// the endpoint (if one) and the address.
fn resolve(state: &State, who: &str, v6: bool) -> Result<(Option<String>, IpAddr), ApiError> {
    if let Some(e) = state.endpoints.get(who) {
        let ip = if v6 {
            let ip6 = e.attachments.iter().find_map(|a| a.ip6);
            IpAddr::V6(ip6.ok_or_else(|| {
                ApiError::bad_request(format!("endpoint {who} has no IPv6 address"))
            })?)
        } else {
            let ip = e.attachments.iter().find_map(|a| a.ip);
            IpAddr::V4(ip.ok_or_else(|| {
                ApiError::bad_request(format!("endpoint {who} has no IPv4 address"))
            })?)
        };
        return Ok((Some(e.name.clone()), ip));
    }
    let ip: IpAddr = who.parse().map_err(|_| {
        ApiError::bad_request(format!("{who:?} is neither an endpoint nor an address"))
    })?;
    if ip.is_ipv6() != v6 {
        return Err(ApiError::bad_request(format!(
            "{who} is of the other family than the other side's address"
        )));
    }
    let ep = state
        .endpoints
        .values()
        .find(|e| e.attachments.iter().any(|a| a.ips().any(|x| x == ip)));
    Ok((ep.map(|e| e.name.clone()), ip))
}

/// The identity of `ip` as the kernel knows it: an endpoint's IPv6 address carries its IPv4
/// address's (as `IPCACHE6` has it; one of IPv6 alone, its own), any other address its
/// longest ipBlock's, or the world.
fn identity_of(c: &Compiled, state: &State, ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(a) => c.identity(a),
        IpAddr::V6(a) => state
            .endpoints
            .values()
            .flat_map(|e| &e.attachments)
            .find(|att| att.ip6 == Some(a))
            .and_then(|att| att.ip)
            .map_or_else(|| c.identity6(a), |ip| c.identity(ip)),
    }
}

/// The policies that select endpoint `name` in `dir`.
fn selecting(state: &State, all: &[Policy], name: &Option<String>, dir: u8) -> Vec<String> {
    let Some(ep) = name.as_ref().and_then(|n| state.endpoints.get(n)) else {
        return Vec::new();
    };
    all.iter()
        .filter(|p| p.namespace == ep.namespace && p.pods.matches(&ep.labels))
        .filter(|p| {
            if dir == direction::INGRESS {
                p.ingress.is_some()
            } else {
                p.egress.is_some()
            }
        })
        .map(Policy::key)
        .collect()
}

fn side(
    c: &Compiled,
    all: &[Policy],
    endpoint: Option<String>,
    selected_by: Vec<String>,
    rule: Option<u32>,
    host: bool,
) -> CheckSide {
    let allowed_by = rule.and_then(|n| all.get(n as usize - 1)).map(Policy::key);
    let verdict = if host {
        "host"
    } else if selected_by.is_empty() || !c.on() {
        "open"
    } else if allowed_by.is_some() {
        "allowed"
    } else {
        "denied"
    };
    CheckSide {
        endpoint,
        selected_by,
        allowed_by,
        verdict: verdict.into(),
    }
}

impl<D, L, S> PolicyService for Shared<D, L, S>
where
    D: DatapathOps + 'static,
    L: LinkOps + 'static,
    S: StateStore + 'static,
{
    fn firewall(&self) -> FirewallView {
        self.state().published_from.clone().into()
    }

    fn set_firewall(&self, req: &FirewallView) -> Result<FirewallView, ApiError> {
        let flows_removed = self.write(|a| a.set_published_from(req.published_from.clone()))?;
        Ok(FirewallView {
            flows_removed,
            ..req.clone()
        })
    }

    fn policies(&self) -> Vec<PolicyView> {
        let state = self.state();
        policies(&state)
            .into_iter()
            .map(|p| PolicyView {
                policy_types: [
                    ("Ingress", p.ingress.is_some()),
                    ("Egress", p.egress.is_some()),
                ]
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(t, _)| t.to_string())
                .collect(),
                selected: state
                    .endpoints
                    .values()
                    .filter(|e| e.namespace == p.namespace && p.pods.matches(&e.labels))
                    .map(|e| e.name.clone())
                    .collect(),
                manifest: state.policies.get(&p.key()).cloned().unwrap_or_default(),
                namespace: p.namespace,
                name: p.name,
            })
            .collect()
    }

    fn apply_policies(&self, req: &PolicyApply) -> Result<Vec<String>, ApiError> {
        let manifests =
            parse_manifests(&req.manifests).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let Some(cluster) = &self.cluster else {
            return Ok(self.write(|a| a.apply_policies(manifests))?);
        };
        // The cluster's: checked here, written to etcd for every node, then taken here.
        let (mut policies, mut namespaces) = (BTreeMap::new(), BTreeMap::new());
        for m in &manifests {
            match m {
                Manifest::Policy { policy, manifest } => {
                    policies.insert(policy.key(), manifest.clone());
                }
                Manifest::Namespace { name, labels } => {
                    namespaces.insert(name.clone(), labels.clone());
                }
            }
        }
        let (_, done) = self.inspect(|a| a.plan_policies(manifests))?;
        block_on(cluster.put_policies(&policies, &namespaces, &[]))?.map_err(AgentError::from)?;
        let view = cluster.view();
        self.write(|a| a.adopt_cluster_policies(&view));
        Ok(done)
    }

    fn remove_policies(&self, req: &PolicyRemove) -> Result<(), ApiError> {
        let Some(cluster) = &self.cluster else {
            return Ok(self.write(|a| a.remove_policies(&req.namespace, &req.names))?);
        };
        let (_, gone) = self.inspect(|a| a.plan_removal(&req.namespace, &req.names))?;
        block_on(cluster.put_policies(&BTreeMap::new(), &BTreeMap::new(), &gone))?
            .map_err(AgentError::from)?;
        let view = cluster.view();
        self.write(|a| a.adopt_cluster_policies(&view));
        Ok(())
    }

    fn check_policy(&self, req: &PolicyCheck) -> Result<CheckView, ApiError> {
        let proto = match req.proto.as_str() {
            "tcp" | "" => Proto::Tcp,
            "udp" => Proto::Udp,
            p => return Err(ApiError::bad_request(format!("protocol {p:?}: tcp or udp"))),
        };
        let state = self.state();
        // IPv6 when either side is an IPv6 address (an endpoint by name then stands for its
        // IPv6 address).
        let v6 = [&req.from, &req.to]
            .iter()
            .any(|w| w.parse::<std::net::Ipv6Addr>().is_ok());
        let (from, src) = resolve(&state, &req.from, v6)?;
        let (to, dst) = resolve(&state, &req.to, v6)?;
        let c = self
            .inspect(|a| a.policy_written.clone())
            .unwrap_or_default();
        let all = policies(&state);
        let (f, t) = (identity_of(&c, &state, src), identity_of(&c, &state, dst));
        let host = f == identity::HOST || t == identity::HOST;
        let p = proto.number();
        // One side's part: `who` (an endpoint, or none) as `subject` towards `peer`.
        let part = |dir, who: &Option<String>, subject, peer| {
            let rule = c.rule(dir, subject, peer, p, req.port);
            side(
                &c,
                &all,
                who.clone(),
                selecting(&state, &all, who, dir),
                rule,
                host,
            )
        };
        let egress = part(direction::EGRESS, &from, f, t);
        let ingress = part(direction::INGRESS, &to, t, f);
        Ok(CheckView {
            allowed: c.admits_identities(f, t, req.port, p),
            egress,
            ingress,
        })
    }

    fn update_labels(&self, endpoint: &str, req: &LabelsUpdate) -> Result<EndpointView, ApiError> {
        let ep = self.write(|a| a.update_labels(endpoint, &req.set, &req.remove))?;
        // Other nodes' policies select it by its labels too: its records in etcd follow.
        if let Some(cluster) = &self.cluster {
            self.overlay_changed(cluster);
        }
        Ok(EndpointView::new(&ep, &self.state()))
    }
}
