//! Checking a state read from disk: every reference resolves, nothing is claimed twice, every
//! name and id is one netpath could have made. What fails is dropped, and each problem is
//! said in one line naming what it concerns, so a hand-edited or damaged state file never
//! wedges the agent and never loads silently wrong.
use std::collections::{BTreeMap, BTreeSet};

use super::{valid_name, State};
use crate::ports::{PortIndex, OUTBOUND};

/// One problem found in a state, and what was done about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem(pub String);

fn hex_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl State {
    /// This state without what is wrong in it, and what was wrong.
    pub fn validated(mut self) -> (State, Vec<Problem>) {
        let mut problems = Vec::new();
        let mut say = |s: String| problems.push(Problem(s));

        // Networks: names, ids, datapath ids and subnets each claimed once.
        let mut net_ids = BTreeSet::new();
        let mut subnets = Vec::new();
        let mut subnets6: Vec<(String, crate::ipam::Subnet<std::net::Ipv6Addr>)> = Vec::new();
        let names: Vec<String> = self.networks.keys().cloned().collect();
        for key in names {
            let n = &self.networks[&key];
            let why = if let Some(why) = identity_problem(&key, &n.name, &n.id) {
                Some(why)
            } else if !net_ids.insert(n.net_id) || n.net_id == 0 {
                Some(format!("repeats datapath id {}", n.net_id))
            } else if n.v4.is_none() && n.v6.is_none() {
                Some("has no subnet".to_string())
            } else {
                pool_problem(&subnets, n.v4.as_ref())
                    .or_else(|| pool_problem(&subnets6, n.v6.as_ref()))
            };
            match why {
                Some(why) => {
                    say(format!("network {:?} {why}: dropped", n.name));
                    self.networks.remove(&key);
                }
                None => {
                    subnets.extend(n.v4.map(|p| (n.name.clone(), p.subnet)));
                    subnets6.extend(n.v6.map(|p| (n.name.clone(), p.subnet)));
                }
            }
        }

        // Endpoints: names, ids, namespaces; attachments on networks that exist, with
        // addresses and veth names of their own; ports published once, outside the outbound
        // range.
        let mut addrs: BTreeMap<(String, std::net::IpAddr), String> = BTreeMap::new();
        let mut veths = BTreeSet::new();
        let mut netns = BTreeMap::new();
        let mut taken = PortIndex::default();
        let names: Vec<String> = self.endpoints.keys().cloned().collect();
        for key in names {
            let mut ep = self.endpoints[&key].clone();
            let why = if let Some(why) = identity_problem(&key, &ep.name, &ep.id) {
                Some(why)
            } else if let Some(other) = netns.get(&ep.netns) {
                Some(format!(
                    "uses namespace {} of endpoint {other}",
                    ep.netns.display()
                ))
            } else {
                None
            };
            if let Some(why) = why {
                say(format!("endpoint {key:?} {why}: dropped"));
                self.endpoints.remove(&key);
                continue;
            }
            let mut kept = Vec::new();
            for a in ep.attachments.drain(..) {
                let why = match self.networks.get(&a.network) {
                    None => Some(format!("network {} does not exist", a.network)),
                    Some(n) if a.ip.is_some() != n.v4.is_some() => Some(format!(
                        "has {} IPv4 address on a network {} IPv4",
                        if a.ip.is_some() { "an" } else { "no" },
                        if n.v4.is_some() { "with" } else { "without" }
                    )),
                    Some(n)
                        if a.ip
                            .is_some_and(|ip| !n.v4.is_some_and(|p| p.subnet.contains(ip))) =>
                    {
                        Some(format!(
                            "address {} is outside the network's IPv4 subnet",
                            a.ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)
                        ))
                    }
                    Some(n)
                        if a.ip6
                            .is_some_and(|ip6| !n.v6.is_some_and(|p| p.subnet.contains(ip6))) =>
                    {
                        Some(format!(
                            "address {} is outside the network's IPv6 subnet",
                            a.ip6.unwrap_or(std::net::Ipv6Addr::UNSPECIFIED)
                        ))
                    }
                    Some(_) => {
                        let ips = a.ips();
                        let twice = ips
                            .clone()
                            .find_map(|ip| Some((ip, addrs.get(&(a.network.clone(), ip))?)));
                        if let Some((ip, other)) = twice {
                            Some(format!("address {ip} is also endpoint {other}'s"))
                        } else if !veths.insert(a.host_ifname.clone()) {
                            Some(format!("veth {} is claimed twice", a.host_ifname))
                        } else if kept
                            .iter()
                            .any(|k: &super::Attachment| k.network == a.network)
                        {
                            Some(format!("is on network {} twice", a.network))
                        } else {
                            None
                        }
                    }
                };
                match why {
                    Some(why) => say(format!(
                        "endpoint {:?}: its interface {} {why}: dropped",
                        ep.name, a.ifname
                    )),
                    None => {
                        for ip in a.ips() {
                            addrs.insert((a.network.clone(), ip), ep.name.clone());
                        }
                        kept.push(a);
                    }
                }
            }
            ep.attachments = kept;
            if ep.attachments.is_empty() {
                say(format!(
                    "endpoint {:?} has no interface left: dropped",
                    ep.name
                ));
                self.endpoints.remove(&key);
                continue;
            }
            let mut ports = Vec::new();
            for m in ep.ports.drain(..) {
                if OUTBOUND.contains(m.host_port) {
                    say(format!(
                        "endpoint {:?}: published port {m} is in the outbound NAT range: dropped",
                        ep.name
                    ));
                } else if taken.conflicts(&m) {
                    say(format!(
                        "endpoint {:?}: published port {m} is published twice: dropped",
                        ep.name
                    ));
                } else {
                    taken.insert(&m);
                    ports.push(m);
                }
            }
            ep.ports = ports;
            // Docker's endpoints share their container's sandbox, which the agent may not see.
            if !ep.handed_over() {
                netns.insert(ep.netns.clone(), ep.name.clone());
            }
            self.endpoints.insert(key, ep);
        }
        (self, problems)
    }
}

/// What is wrong with the name and id of an object listed under `key`, if anything.
fn identity_problem(key: &str, name: &str, id: &str) -> Option<String> {
    if name != key {
        Some(format!("is listed as {key:?}"))
    } else if !valid_name(name) {
        Some("has an invalid name".to_string())
    } else if !hex_id(id) {
        Some(format!("has an invalid id {id:?}"))
    } else {
        None
    }
}

/// What is wrong with a network's pool of one family, if anything: a subnet overlapping one
/// of `taken` (another network's), a gateway outside it.
fn pool_problem<A: crate::ipam::Family>(
    taken: &[(String, crate::ipam::Subnet<A>)],
    pool: Option<&crate::ipam::Pool<A>>,
) -> Option<String> {
    let p = pool?;
    if let Some((other, s)) = taken.iter().find(|(_, s)| s.overlaps(&p.subnet)) {
        Some(format!(
            "subnet {} overlaps network {other} ({s})",
            p.subnet
        ))
    } else if !p.subnet.contains(p.gateway) {
        Some(format!("gateway {} is outside {}", p.gateway, p.subnet))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(json: &str) -> State {
        serde_json::from_str(json).unwrap()
    }

    const NET: &str = r#""bridge": {"name": "bridge", "id": "aa", "net_id": 1,
        "subnet": "172.17.0.0/16", "gateway": "172.17.0.1"}"#;

    fn ep(name: &str, id: &str, net: &str, ip: &str, veth: &str, ports: &str) -> String {
        format!(
            r#""{name}": {{"name": "{name}", "id": "{id}", "netns": "/run/netns/{name}",
            "attachments": [{{"network": "{net}", "ip": "{ip}", "mac": [2,66,0,0,0,0],
            "ifname": "eth0", "host_ifname": "{veth}"}}], "ports": [{ports}]}}"#
        )
    }

    #[test]
    fn a_good_state_passes_untouched() {
        let s = state(&format!(
            r#"{{"networks": {{{NET}}}, "endpoints": {{{}}}}}"#,
            ep("web", "ab", "bridge", "172.17.0.2", "npab", "")
        ));
        let (v, problems) = s.clone().validated();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(v, s);
        // A network's pool is written where earlier versions wrote its fields.
        let written = serde_json::to_string(&s).unwrap();
        assert!(
            written.contains(r#""subnet":"172.17.0.0/16","gateway":"172.17.0.1""#),
            "{written}"
        );
    }

    #[test]
    fn dangling_duplicate_and_invalid_entries_are_named_and_dropped() {
        let port =
            r#"{"host_ip": "0.0.0.0", "host_port": 8080, "container_port": 80, "proto": "tcp"}"#;
        let outbound =
            r#"{"host_ip": "0.0.0.0", "host_port": 45000, "container_port": 80, "proto": "tcp"}"#;
        let s = state(&format!(
            r#"{{"networks": {{{NET}}}, "endpoints": {{{}, {}, {}, {}, {}}}}}"#,
            ep(
                "a",
                "a1",
                "bridge",
                "172.17.0.2",
                "npa1",
                &format!("{port}, {outbound}")
            ),
            ep("b", "b1", "bridge", "172.17.0.2", "npb1", ""),
            ep("c", "c1", "back", "10.0.0.2", "npc1", ""),
            ep("d", "é", "bridge", "172.17.0.4", "npd1", ""),
            ep("e", "e1", "bridge", "172.17.0.5", "npe1", port),
        ));
        let (v, problems) = s.validated();
        let said: Vec<String> = problems.into_iter().map(|p| p.0).collect();
        let has = |s: &str| said.iter().any(|p| p.contains(s));
        assert!(has("endpoint \"a\": published port 80/tcp -> 0.0.0.0:45000 is in the outbound NAT range"), "{said:?}");
        assert!(has("address 172.17.0.2 is also endpoint a's"), "{said:?}");
        assert!(has("network back does not exist"), "{said:?}");
        assert!(has("endpoint \"d\" has an invalid id"), "{said:?}");
        assert!(
            has("endpoint \"e\": published port 80/tcp -> 0.0.0.0:8080 is published twice"),
            "{said:?}"
        );
        assert_eq!(v.endpoints.keys().collect::<Vec<_>>(), ["a", "e"]);
        assert_eq!(v.endpoints["a"].ports.len(), 1);
        assert!(v.endpoints["e"].ports.is_empty());
    }
}
