//! Which names a network has and what a name means to an endpoint asking: pure functions of
//! the desired state, shared by the userspace server and the kernel fast path's map (so both
//! give the same answer).
//!
//! On network N, an endpoint attached to N answers to its name, its short id, `NAME.N`, and
//! each alias it has on N; several endpoints sharing a name answer with all their addresses.
//! `host.docker.internal` is N's host-gateway. Endpoints of other nodes on an overlay network
//! answer the same way. Names are compared without regard to case.
use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
};

use crate::model::{short_id, Network, State};

/// The name of the host, from every network.
pub const HOST_DOCKER_INTERNAL: &str = "host.docker.internal";

/// How long answers may be cached (Docker's embedded DNS uses the same).
pub const TTL: u32 = 600;

/// What a name means to the endpoint that asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A local name: its addresses (none: the name exists, without addresses of this type).
    Local(Vec<Ipv4Addr>),
    /// A reverse (PTR) name of a local address: the name to answer.
    Pointer(String),
    /// A name the asker may not see (on another network), or nothing to forward to.
    NxDomain,
    /// Not ours: ask the upstream resolvers.
    Forward,
    /// The asker is not an endpoint: no answer for it.
    Refused,
}

/// Lower case, without a trailing dot.
pub fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Every name of network `net`, normalized, with its addresses in a stable order (by
/// endpoint name).
pub fn network_names(state: &State, net: &Network) -> BTreeMap<String, Vec<Ipv4Addr>> {
    let mut names: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    let mut add = |name: String, ip: Ipv4Addr| {
        let addrs = names.entry(normalize(&name)).or_default();
        if !addrs.contains(&ip) {
            addrs.push(ip);
        }
    };
    for (ep, att) in state.members(&net.name) {
        add(ep.name.clone(), att.ip);
        add(short_id(&ep.id, 12).to_string(), att.ip);
        add(format!("{}.{}", ep.name, net.name), att.ip);
        for alias in &att.aliases {
            add(alias.clone(), att.ip);
        }
    }
    // Endpoints of other nodes on an overlay network answer to the same names.
    for r in state.remote.iter().filter(|r| r.network == net.name) {
        add(r.name.clone(), r.ip);
        if !r.id.is_empty() {
            add(short_id(&r.id, 12).to_string(), r.ip);
        }
        add(format!("{}.{}", r.name, net.name), r.ip);
        for alias in &r.aliases {
            add(alias.clone(), r.ip);
        }
    }
    add(HOST_DOCKER_INTERNAL.into(), net.host_gateway());
    names
}

/// The names of every network and who is where, computed once per state: what a query
/// looks up.
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// Network → its names.
    names: HashMap<String, BTreeMap<String, Vec<Ipv4Addr>>>,
    /// Endpoint address → the endpoint's networks (name, internal), its first first.
    askers: HashMap<Ipv4Addr, Vec<(String, bool)>>,
    /// Address → (endpoint, network) on each network.
    pointers: HashMap<Ipv4Addr, Vec<(String, String)>>,
    /// Every network's subnet.
    subnets: Vec<crate::ipam::Subnet>,
}

impl Index {
    pub fn new(state: &State) -> Index {
        let mut ix = Index::default();
        for net in state.networks.values() {
            ix.names.insert(net.name.clone(), network_names(state, net));
            ix.subnets.push(net.v4.subnet);
        }
        for ep in state.endpoints.values() {
            let nets: Vec<(String, bool)> = ep
                .attachments
                .iter()
                .filter_map(|a| state.networks.get(&a.network))
                .map(|n| (n.name.clone(), n.internal))
                .collect();
            for a in &ep.attachments {
                ix.askers.insert(a.ip, nets.clone());
                ix.pointers
                    .entry(a.ip)
                    .or_default()
                    .push((ep.name.clone(), a.network.clone()));
            }
        }
        for r in &state.remote {
            ix.pointers
                .entry(r.ip)
                .or_default()
                .push((r.name.clone(), r.network.clone()));
        }
        ix
    }

    /// The names of network `net` (for the kernel's map).
    pub fn network(&self, net: &str) -> Option<&BTreeMap<String, Vec<Ipv4Addr>>> {
        self.names.get(net)
    }

    /// What `name` means to the endpoint at `asker` that asked the server of network
    /// `arrived`. The asker's networks are searched, the one asked first; a name that exists
    /// only on networks it is not on does not exist for it; anything else is forwarded when
    /// one of its networks reaches out (an endpoint only on internal networks gets no answers
    /// from outside).
    pub fn resolve(&self, asker: Ipv4Addr, arrived: &str, name: &str, ptr: bool) -> Resolved {
        let Some(nets) = self.askers.get(&asker) else {
            return Resolved::Refused;
        };
        let name = normalize(name);
        let mut nets: Vec<&(String, bool)> = nets.iter().collect();
        nets.sort_by_key(|(n, _)| n != arrived);
        let may_forward = nets.iter().any(|(_, internal)| !internal);
        let not_here = || {
            if may_forward {
                Resolved::Forward
            } else {
                Resolved::NxDomain
            }
        };
        if ptr {
            let Some(ip) = reverse_v4(&name) else {
                return not_here();
            };
            let pointers = self.pointers.get(&ip).map(Vec::as_slice).unwrap_or(&[]);
            for (net, _) in &nets {
                if let Some((peer, _)) = pointers.iter().find(|(_, n)| n == net) {
                    return Resolved::Pointer(format!("{peer}.{net}"));
                }
            }
            return if self.subnets.iter().any(|s| s.contains(ip)) {
                Resolved::NxDomain
            } else {
                not_here()
            };
        }
        for (net, _) in &nets {
            if let Some(addrs) = self.names.get(net).and_then(|n| n.get(&name)) {
                return Resolved::Local(addrs.clone());
            }
        }
        // A name of another network: it does not exist here (and is not sent upstream).
        if self.names.values().any(|n| n.contains_key(&name)) {
            Resolved::NxDomain
        } else {
            not_here()
        }
    }
}

/// What the kernel's fast path answers: each network's names, those that fit it (names up to
/// [`netpath_common::DNS_NAME_LEN`] bytes, at most [`netpath_common::DNS_ADDRS`]
/// addresses); the server answers the rest.
pub fn kernel_names(
    state: &State,
    index: &Index,
) -> HashMap<netpath_common::DnsKey, netpath_common::DnsAddrs> {
    let mut out = HashMap::new();
    for net in state.networks.values() {
        for (name, addrs) in index.network(&net.name).into_iter().flatten() {
            let key = netpath_common::DnsKey::new(net.net_id, name);
            if let (Some(k), Some(v)) = (key, crate::datapath::dns::dns_addrs(addrs)) {
                out.insert(k, v);
            }
        }
    }
    out
}

/// `d.c.b.a.in-addr.arpa` as the address a.b.c.d.
fn reverse_v4(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let octets: Vec<u8> = rest
        .split('.')
        .map(|o| o.parse().ok())
        .collect::<Option<_>>()?;
    match octets[..] {
        [d, c, b, a] => Some(Ipv4Addr::new(a, b, c, d)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
