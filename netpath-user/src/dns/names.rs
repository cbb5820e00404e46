//! Which names a network has and what a name means to an endpoint asking: pure functions of
//! the desired state, shared by the userspace server and the kernel fast path's map (so both
//! give the same answer).
//!
//! On network N, an endpoint attached to N answers to its name, its short id, `NAME.N`, and
//! each alias it has on N; several endpoints sharing a name answer with all their addresses.
//! `host.docker.internal` is N's host-gateway (and its IPv6 gateway on a network with IPv6).
//! A name has the addresses of both families (A and AAAA). Endpoints of other nodes on an
//! overlay network answer the same way. Names are compared without regard to case.
use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::{
    datapath::dns::{dns_addrs, KernelNames},
    model::{short_id, Network, State},
};

/// The name of the host, from every network.
pub const HOST_DOCKER_INTERNAL: &str = "host.docker.internal";

/// How long answers may be cached (Docker's embedded DNS uses the same).
pub const TTL: u32 = 600;

/// A name's addresses of both families, each list in a stable order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Addrs {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
}

impl Addrs {
    /// IPv4 addresses alone.
    pub fn v4(v4: Vec<Ipv4Addr>) -> Addrs {
        Addrs { v4, v6: Vec::new() }
    }

    fn add(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) if !self.v4.contains(&a) => self.v4.push(a),
            IpAddr::V6(a) if !self.v6.contains(&a) => self.v6.push(a),
            _ => {}
        }
    }
}

/// What a name means to the endpoint that asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A local name: its addresses (none of a type: the name exists, without addresses of
    /// that type).
    Local(Addrs),
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
pub fn network_names(state: &State, net: &Network) -> BTreeMap<String, Addrs> {
    let mut names: BTreeMap<String, Addrs> = BTreeMap::new();
    let mut add = |name: String, ip: IpAddr| names.entry(normalize(&name)).or_default().add(ip);
    for (ep, att) in state.members(&net.name) {
        for ip in att.ips() {
            add(ep.name.clone(), ip);
            add(short_id(&ep.id, 12).to_string(), ip);
            add(format!("{}.{}", ep.name, net.name), ip);
            for alias in &att.aliases {
                add(alias.clone(), ip);
            }
        }
    }
    // Endpoints of other nodes on an overlay network answer to the same names.
    for r in state.remote.iter().filter(|r| r.network == net.name) {
        let ips = [
            Some(IpAddr::V4(r.ip)),
            net.overlay_ip6(r.ip).map(IpAddr::V6),
        ];
        for ip in ips.into_iter().flatten() {
            add(r.name.clone(), ip);
            if !r.id.is_empty() {
                add(short_id(&r.id, 12).to_string(), ip);
            }
            add(format!("{}.{}", r.name, net.name), ip);
            for alias in &r.aliases {
                add(alias.clone(), ip);
            }
        }
    }
    if let Some(hg) = net.host_gateway() {
        add(HOST_DOCKER_INTERNAL.into(), hg.into());
    }
    if let Some(p) = &net.v6 {
        add(HOST_DOCKER_INTERNAL.into(), p.gateway.into());
    }
    names
}

/// The names of every network and who is where, computed once per state: what a query
/// looks up.
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// Network → its names.
    names: HashMap<String, BTreeMap<String, Addrs>>,
    /// Endpoint address (of either family) → the endpoint's networks (name, internal), its
    /// first first.
    askers: HashMap<IpAddr, Vec<(String, bool)>>,
    /// Address (of either family) → (endpoint, network) on each network.
    pointers: HashMap<IpAddr, Vec<(String, String)>>,
    /// Every network's subnets.
    subnets: Vec<crate::ipam::Subnet>,
    subnets6: Vec<crate::ipam::Subnet<Ipv6Addr>>,
}

impl Index {
    pub fn new(state: &State) -> Index {
        let mut ix = Index::default();
        for net in state.networks.values() {
            ix.names.insert(net.name.clone(), network_names(state, net));
            ix.subnets.extend(net.v4.map(|p| p.subnet));
            ix.subnets6.extend(net.v6.map(|p| p.subnet));
        }
        for ep in state.endpoints.values() {
            let nets: Vec<(String, bool)> = ep
                .attachments
                .iter()
                .filter_map(|a| state.networks.get(&a.network))
                .map(|n| (n.name.clone(), n.internal))
                .collect();
            for a in &ep.attachments {
                for ip in a.ips() {
                    ix.askers.insert(ip, nets.clone());
                    ix.pointers
                        .entry(ip)
                        .or_default()
                        .push((ep.name.clone(), a.network.clone()));
                }
            }
        }
        for r in &state.remote {
            let ip6 = state
                .networks
                .get(&r.network)
                .and_then(|n| n.overlay_ip6(r.ip));
            for ip in [Some(IpAddr::V4(r.ip)), ip6.map(IpAddr::V6)]
                .into_iter()
                .flatten()
            {
                ix.pointers
                    .entry(ip)
                    .or_default()
                    .push((r.name.clone(), r.network.clone()));
            }
        }
        ix
    }

    /// The names of network `net` (for the kernel's map).
    pub fn network(&self, net: &str) -> Option<&BTreeMap<String, Addrs>> {
        self.names.get(net)
    }

    /// What `name` means to the endpoint at `asker` that asked the server of network
    /// `arrived`. The asker's networks are searched, the one asked first; a name that exists
    /// only on networks it is not on does not exist for it; anything else is forwarded when
    /// one of its networks reaches out (an endpoint only on internal networks gets no answers
    /// from outside).
    pub fn resolve(&self, asker: IpAddr, arrived: &str, name: &str, ptr: bool) -> Resolved {
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
            let Some(ip) = reverse(&name) else {
                return not_here();
            };
            let pointers = self.pointers.get(&ip).map(Vec::as_slice).unwrap_or(&[]);
            for (net, _) in &nets {
                if let Some((peer, _)) = pointers.iter().find(|(_, n)| n == net) {
                    return Resolved::Pointer(format!("{peer}.{net}"));
                }
            }
            let ours = match ip {
                IpAddr::V4(a) => self.subnets.iter().any(|s| s.contains(a)),
                IpAddr::V6(a) => self.subnets6.iter().any(|s| s.contains(a)),
            };
            return if ours { Resolved::NxDomain } else { not_here() };
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
/// addresses of the record's family), A and AAAA; the server answers the rest.
pub fn kernel_names(state: &State, index: &Index) -> KernelNames {
    let mut out = KernelNames::default();
    for net in state.networks.values() {
        for (name, addrs) in index.network(&net.name).into_iter().flatten() {
            let Some(key) = netpath_common::DnsKey::new(net.net_id, name) else {
                continue;
            };
            if let Some(v) = dns_addrs(&addrs.v4) {
                out.a.insert(key, v);
            }
            if let Some(v) = dns_addrs(&addrs.v6) {
                out.aaaa.insert(key, v);
            }
        }
    }
    out
}

/// The address a reverse name stands for: `d.c.b.a.in-addr.arpa` for a.b.c.d, and the 32
/// nibbles of `ip6.arpa`, last first, for an IPv6 address.
fn reverse(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".ip6.arpa") {
        let nibbles: Vec<u8> = rest
            .split('.')
            .map(|n| u8::from_str_radix(n, 16).ok().filter(|_| n.len() == 1))
            .collect::<Option<_>>()?;
        if nibbles.len() != 32 {
            return None;
        }
        let bits = nibbles
            .iter()
            .rev()
            .fold(0u128, |acc, n| (acc << 4) | u128::from(*n));
        return Some(Ipv6Addr::from(bits).into());
    }
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let octets: Vec<u8> = rest
        .split('.')
        .map(|o| o.parse().ok())
        .collect::<Option<_>>()?;
    match octets[..] {
        [d, c, b, a] => Some(Ipv4Addr::new(a, b, c, d).into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
