//! Policies compiled into the kernel's numbers (`Compiled`): each selected identity's
//! directions, and a rule per (subject, peer, protocol, block of ports) that some policy
//! allows — so the maps grow with identities and rules, not with endpoints × rules.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use netpath_common::{direction, identity, PolicyKey};

use super::firewall::Prefix;
use super::{
    compiled::{port_blocks, Compiled},
    select::{namespace_labels, Labels, Namespaces},
    spec::{Peer, Policy, PortRef, Rule},
};
use crate::{ipam::Subnet, ports::Proto};

/// A port an endpoint names (Kubernetes' container port names): `http` → 80/tcp.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct NamedPort {
    pub name: String,
    pub port: u16,
    pub proto: Proto,
}

/// What the policies see of one identity: its endpoints' namespace and labels (the same for
/// all), the ports they name, their addresses.
#[derive(Clone, Debug, Default)]
pub struct Member {
    pub identity: u32,
    pub namespace: String,
    pub labels: Labels,
    pub ports: Vec<NamedPort>,
    /// Its addresses: an attachment's IPv4 address (its IPv6 one carries the same identity
    /// in the kernel), or its IPv6 address on a network of IPv6 alone.
    pub addrs: Vec<IpAddr>,
}

/// The prefixes the ipBlocks of `policies` name (blocks and their excepts), of both
/// families: each needs an identity of its own.
pub fn blocks(policies: &[Policy]) -> BTreeSet<Prefix> {
    let mut blocks = BTreeSet::new();
    for r in policies
        .iter()
        .flat_map(|p| p.ingress.iter().chain(&p.egress).flatten())
    {
        for peer in &r.peers {
            if let Peer::Block { cidr, except } = peer {
                blocks.extend(std::iter::once(cidr).chain(except).filter_map(Prefix::of));
            }
        }
    }
    blocks
}

/// The peers a rule names, as identities ([`identity::ANY`] for every peer).
fn peers(
    rule: &Rule,
    policy: &Policy,
    members: &[Member],
    namespaces: &Namespaces,
    cidrs: &BTreeMap<Prefix, u32>,
) -> BTreeSet<u32> {
    if rule.peers.is_empty() {
        return BTreeSet::from([identity::ANY]);
    }
    let mut out = BTreeSet::new();
    for peer in &rule.peers {
        match peer {
            Peer::Pods {
                pods,
                namespaces: ns_sel,
            } => {
                for m in members {
                    let in_ns = match ns_sel {
                        None => m.namespace == policy.namespace,
                        Some(sel) => sel.matches(&namespace_labels(
                            &m.namespace,
                            namespaces.get(&m.namespace),
                        )),
                    };
                    if in_ns && pods.as_ref().is_none_or(|sel| sel.matches(&m.labels)) {
                        out.insert(m.identity);
                    }
                }
            }
            Peer::Block { cidr, except } => {
                let (Some(cidr), except) = (
                    Prefix::of(cidr),
                    except.iter().filter_map(Prefix::of).collect::<Vec<_>>(),
                ) else {
                    continue;
                };
                for (s, id) in cidrs {
                    if cidr.covers(s) && !except.iter().any(|e| e.covers(s)) {
                        out.insert(*id);
                    }
                }
            }
        }
    }
    out
}

/// Every (protocol, port, prefix bits) a rule allows towards `dest` (the endpoint whose
/// port it is: the subject for ingress, the peer for egress; None: a peer that is not an
/// endpoint, whose ports have no names).
fn port_keys(rule: &Rule, dest: Option<&Member>) -> Vec<(u8, u16, u32)> {
    if rule.ports.is_empty() {
        return vec![(0, 0, PolicyKey::ALL_PORTS)];
    }
    let mut out = Vec::new();
    for p in &rule.ports {
        let proto = p.proto.number();
        match (&p.port, p.end) {
            (None, _) => out.push((proto, 0, PolicyKey::PROTOCOL)),
            (Some(PortRef::Number(n)), end) => out.extend(
                port_blocks(*n, end.unwrap_or(*n))
                    .into_iter()
                    .map(|(at, bits)| (proto, at, PolicyKey::PROTOCOL + bits)),
            ),
            (Some(PortRef::Name(name)), _) => out.extend(
                dest.iter()
                    .flat_map(|m| &m.ports)
                    .filter(|np| np.name == *name && np.proto == p.proto)
                    .map(|np| (proto, np.port, PolicyKey::PORT)),
            ),
        }
    }
    out
}

/// `policies` (numbered in order, from 1) over `members`, each prefix of [`blocks`] with its
/// identity in `cidrs`: the maps' content. Empty when no policy selects anything.
pub fn compile(
    members: &[Member],
    policies: &[Policy],
    namespaces: &Namespaces,
    cidrs: &BTreeMap<Prefix, u32>,
) -> Compiled {
    let mut c = Compiled::default();
    for (n, policy) in policies.iter().enumerate() {
        let number = n as u32 + 1;
        let subjects = members
            .iter()
            .filter(|m| m.namespace == policy.namespace && policy.pods.matches(&m.labels));
        for subject in subjects {
            for (dir, rules) in [
                (direction::INGRESS, &policy.ingress),
                (direction::EGRESS, &policy.egress),
            ] {
                let Some(rules) = rules else { continue };
                *c.subjects.entry(subject.identity).or_default() |= u32::from(dir);
                for rule in rules {
                    for peer in peers(rule, policy, members, namespaces, cidrs) {
                        let dest = if dir == direction::INGRESS {
                            Some(subject)
                        } else {
                            members.iter().find(|m| m.identity == peer)
                        };
                        let mut keys: Vec<(u32, (u8, u16, u32))> = port_keys(rule, dest)
                            .into_iter()
                            .map(|k| (peer, k))
                            .collect();
                        if dir == direction::EGRESS && peer == identity::ANY {
                            // Every peer by a port name: each endpoint that names it.
                            let numbered = port_keys(rule, None);
                            for m in members {
                                keys.extend(
                                    port_keys(rule, Some(m))
                                        .into_iter()
                                        .filter(|k| !numbered.contains(k))
                                        .map(|k| (m.identity, k)),
                                );
                            }
                        }
                        for (peer, (proto, port, bits)) in keys {
                            let key = PolicyKey::new(dir, subject.identity, peer, proto, port);
                            c.rules.entry((key, bits)).or_insert(number);
                        }
                    }
                }
            }
        }
    }
    if c.on() {
        for m in members {
            for a in &m.addrs {
                match *a {
                    IpAddr::V4(a) => c
                        .ipcache
                        .insert(Subnet::new(a, 32).expect("a /32"), m.identity),
                    IpAddr::V6(a) => c
                        .ipcache6
                        .insert(Subnet::new(a, 128).expect("a /128"), m.identity),
                };
            }
        }
        for (p, id) in cidrs {
            match p {
                Prefix::V4(s) => c.ipcache.insert(*s, *id),
                Prefix::V6(s) => c.ipcache6.insert(*s, *id),
            };
        }
    }
    c
}
