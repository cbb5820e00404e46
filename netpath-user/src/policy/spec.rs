//! A NetworkPolicy as netpath keeps it: Kubernetes' v1 spec, checked and read once
//! (`Policy::from_k8s`), with the meaning of every default spelled out (an absent `from` is
//! every peer, absent `ports` every port, `policyTypes` from what the spec holds).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::{
    api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort},
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::select::{bad, selector, valid_dns_label, valid_port_name, FieldError, Selector};
use crate::{
    ipam::{AnySubnet, Subnet},
    ports::Proto,
};

/// A policy of namespace `namespace`: which of its endpoints it selects, and for each
/// direction it governs (None: it does not) the rules that allow traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    pub pods: Selector,
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
}

/// One ingress or egress rule: traffic with one of `peers` (empty: any peer at all) on one
/// of `ports` (empty: every port of every protocol).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub peers: Vec<Peer>,
    pub ports: Vec<PortRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Endpoints matching `pods` (None: all) in the namespaces matching `namespaces` (None:
    /// the policy's own).
    Pods {
        pods: Option<Selector>,
        namespaces: Option<Selector>,
    },
    /// Addresses in `cidr` but in none of `except` (addresses that are not endpoints').
    Block {
        cidr: AnySubnet,
        except: Vec<AnySubnet>,
    },
}

/// A protocol and a port, a range of ports (`end`), a named port, or every port (`port`
/// None).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRule {
    pub proto: Proto,
    pub port: Option<PortRef>,
    pub end: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    Number(u16),
    Name(String),
}
fn subnet(field: &str, s: &str) -> Result<AnySubnet, FieldError> {
    let parsed: Result<AnySubnet, _> = if s.contains(':') {
        s.parse::<Subnet<Ipv6Addr>>().map(Into::into)
    } else {
        s.parse::<Subnet<Ipv4Addr>>().map(Into::into)
    };
    parsed.or_else(|e| bad(field, e.to_string()))
}

/// Whether `inner` lies within `outer` and is smaller (the same family).
fn strictly_within(inner: &AnySubnet, outer: &AnySubnet) -> bool {
    inner.prefix > outer.prefix
        && match (inner.addr, outer.addr) {
            (IpAddr::V4(i), IpAddr::V4(o)) => {
                Subnet::new(o, outer.prefix).is_ok_and(|o| o.contains(i))
            }
            (IpAddr::V6(i), IpAddr::V6(o)) => {
                Subnet::new(o, outer.prefix).is_ok_and(|o| o.contains(i))
            }
            _ => false,
        }
}

fn peer(field: &str, p: &NetworkPolicyPeer) -> Result<Peer, FieldError> {
    match (&p.ip_block, &p.pod_selector, &p.namespace_selector) {
        (Some(b), None, None) => {
            let cidr = subnet(&format!("{field}.ipBlock.cidr"), &b.cidr)?;
            let mut except = Vec::new();
            for (i, e) in b.except.iter().flatten().enumerate() {
                let at = format!("{field}.ipBlock.except[{i}]");
                let e = subnet(&at, e)?;
                if !strictly_within(&e, &cidr) {
                    return bad(at, format!("{e} is not inside the block {cidr}"));
                }
                except.push(e);
            }
            Ok(Peer::Block { cidr, except })
        }
        (Some(_), _, _) => bad(
            format!("{field}.ipBlock"),
            "cannot be combined with podSelector or namespaceSelector",
        ),
        (None, None, None) => bad(field, "must name podSelector, namespaceSelector or ipBlock"),
        (None, pods, namespaces) => Ok(Peer::Pods {
            pods: pods
                .as_ref()
                .map(|s| selector(&format!("{field}.podSelector"), s))
                .transpose()?,
            namespaces: namespaces
                .as_ref()
                .map(|s| selector(&format!("{field}.namespaceSelector"), s))
                .transpose()?,
        }),
    }
}
fn port(field: &str, p: &NetworkPolicyPort) -> Result<PortRule, FieldError> {
    let proto = match p.protocol.as_deref().unwrap_or("TCP") {
        "TCP" => Proto::Tcp,
        "UDP" => Proto::Udp,
        "SCTP" => {
            return bad(
                format!("{field}.protocol"),
                "SCTP is not supported by netpath",
            )
        }
        o => {
            return bad(
                format!("{field}.protocol"),
                format!("{o:?} is not one of TCP, UDP, SCTP"),
            )
        }
    };
    let port = match &p.port {
        None => None,
        Some(IntOrString::Int(n)) => match u16::try_from(*n) {
            Ok(n) if n > 0 => Some(PortRef::Number(n)),
            _ => {
                return bad(
                    format!("{field}.port"),
                    format!("{n} is not a port (1-65535)"),
                )
            }
        },
        Some(IntOrString::String(s)) if valid_port_name(s) => Some(PortRef::Name(s.clone())),
        Some(IntOrString::String(s)) => {
            return bad(format!("{field}.port"), format!("{s:?} is not a port name"))
        }
    };
    let end = match (p.end_port, &port) {
        (None, _) => None,
        (Some(e), Some(PortRef::Number(start))) => match u16::try_from(e) {
            Ok(e) if e >= *start => Some(e),
            _ => {
                return bad(
                    format!("{field}.endPort"),
                    format!("{e} must be a port at or above port {start}"),
                )
            }
        },
        (Some(_), _) => return bad(format!("{field}.endPort"), "needs a numbered port"),
    };
    Ok(PortRule { proto, port, end })
}

/// Each item of an optional list read by `read`, its field `field[i]`.
fn each<T, U>(
    items: &Option<Vec<T>>,
    field: &str,
    read: impl Fn(&str, &T) -> Result<U, FieldError>,
) -> Result<Vec<U>, FieldError> {
    items
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, t)| read(&format!("{field}[{i}]"), t))
        .collect()
}

fn rules(
    field: &str,
    rules: impl Iterator<
        Item = (
            Option<Vec<NetworkPolicyPeer>>,
            Option<Vec<NetworkPolicyPort>>,
        ),
    >,
    peers_field: &str,
) -> Result<Vec<Rule>, FieldError> {
    let mut out = Vec::new();
    for (i, (peers, ports)) in rules.enumerate() {
        let at = format!("{field}[{i}]");
        out.push(Rule {
            peers: each(&peers, &format!("{at}.{peers_field}"), peer)?,
            ports: each(&ports, &format!("{at}.ports"), port)?,
        });
    }
    Ok(out)
}

/// How a policy is named across namespaces: `NAMESPACE/NAME`.
pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl Policy {
    /// The policy a manifest describes, in namespace `namespace` (the manifest's or
    /// `default`), every field checked.
    pub fn from_k8s(np: &NetworkPolicy, namespace: &str) -> Result<Policy, FieldError> {
        let name = np.metadata.name.clone().unwrap_or_default();
        if !valid_dns_label(&name) {
            return bad(
                "metadata.name",
                format!("{name:?} is not a valid name (a DNS label)"),
            );
        }
        if !valid_dns_label(namespace) {
            return bad(
                "metadata.namespace",
                format!("{namespace:?} is not a valid namespace (a DNS label)"),
            );
        }
        let Some(spec) = &np.spec else {
            return bad("spec", "missing");
        };
        let pods = selector(
            "spec.podSelector",
            spec.pod_selector
                .as_ref()
                .unwrap_or(&LabelSelector::default()),
        )?;
        let has_egress = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
        let types = match &spec.policy_types {
            Some(t) if t.is_empty() => return bad("spec.policyTypes", "must not be empty"),
            Some(t) => {
                if let Some(o) = t
                    .iter()
                    .find(|t| !matches!(t.as_str(), "Ingress" | "Egress"))
                {
                    return bad(
                        "spec.policyTypes",
                        format!("{o:?} is not Ingress or Egress"),
                    );
                }
                (
                    t.iter().any(|t| t == "Ingress"),
                    t.iter().any(|t| t == "Egress"),
                )
            }
            None => (true, has_egress),
        };
        let ingress = rules(
            "spec.ingress",
            spec.ingress
                .iter()
                .flatten()
                .map(|r| (r.from.clone(), r.ports.clone())),
            "from",
        )?;
        let egress = rules(
            "spec.egress",
            spec.egress
                .iter()
                .flatten()
                .map(|r| (r.to.clone(), r.ports.clone())),
            "to",
        )?;
        Ok(Policy {
            namespace: namespace.to_string(),
            name,
            pods,
            ingress: types.0.then_some(ingress),
            egress: types.1.then_some(egress),
        })
    }

    /// `NAMESPACE/NAME`: how the state keys it.
    pub fn key(&self) -> String {
        key(&self.namespace, &self.name)
    }

    /// The named ports its rules use.
    pub fn port_names(&self) -> impl Iterator<Item = &str> {
        self.ingress
            .iter()
            .chain(&self.egress)
            .flatten()
            .flat_map(|r| &r.ports)
            .filter_map(|p| match &p.port {
                Some(PortRef::Name(n)) => Some(n.as_str()),
                _ => None,
            })
    }
}
