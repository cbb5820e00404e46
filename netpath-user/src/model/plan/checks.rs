//! The pieces of a request checked on their own: interface names, MACs, labels, aliases and
//! resolver settings.
use std::{collections::BTreeMap, net::Ipv4Addr};

use crate::{policy::NamedPort, ports::Proto};

use super::ModelError;
use crate::{
    ipam,
    model::{valid_name, DnsSettings},
};

/// An interface name the kernel takes (IFNAMSIZ, no separators).
pub(super) fn check_ifname(name: &str) -> Result<String, ModelError> {
    let ok = (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(name.to_string())
    } else {
        Err(ModelError::BadIfname(name.to_string()))
    }
}

/// The MAC asked for (unicast, not zero), else Docker's MAC for the IPv4 address (for an
/// endpoint of IPv6 alone, the same form from the last four bytes of its IPv6 address).
pub(super) fn check_mac(
    mac: Option<&str>,
    ip: Option<Ipv4Addr>,
    ip6: Option<std::net::Ipv6Addr>,
) -> Result<[u8; 6], ModelError> {
    let Some(text) = mac else {
        let o = ip6.map_or([0; 16], |a| a.octets());
        let v4 = ip.unwrap_or(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
        return Ok(ipam::mac_for(v4));
    };
    let bad = || ModelError::BadMac(text.to_string());
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(&parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(bad());
    }
    Ok(mac)
}

/// Labels as given; a key must not be empty.
pub(super) fn check_labels(
    labels: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ModelError> {
    if let Some(k) = labels.keys().find(|k| k.trim().is_empty()) {
        return Err(ModelError::BadLabel(k.clone()));
    }
    Ok(labels.clone())
}

/// The namespace asked for (a DNS label), `default` if none.
pub(super) fn check_namespace(ns: Option<&str>) -> Result<String, ModelError> {
    let ns = ns.unwrap_or(crate::policy::DEFAULT_NAMESPACE);
    if !crate::policy::select::valid_dns_label(ns) {
        return Err(ModelError::BadNamespace(ns.to_string()));
    }
    Ok(ns.to_string())
}

/// `NAME=PORT[/PROTO]` each, names unique.
pub(super) fn check_named_ports(specs: &[String]) -> Result<Vec<NamedPort>, ModelError> {
    let mut out: Vec<NamedPort> = Vec::new();
    for s in specs {
        let bad = || ModelError::BadNamedPort(s.clone());
        let (name, rest) = s.split_once('=').ok_or_else(bad)?;
        let (port, proto) = match rest.split_once('/') {
            Some((p, "tcp")) => (p, Proto::Tcp),
            Some((p, "udp")) => (p, Proto::Udp),
            Some(_) => return Err(bad()),
            None => (rest, Proto::Tcp),
        };
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
        if !crate::policy::select::valid_port_name(name) || out.iter().any(|n| n.name == name) {
            return Err(bad());
        }
        out.push(NamedPort {
            name: name.to_string(),
            port,
            proto,
        });
    }
    Ok(out)
}

/// Names an alias may not take: they name the host, to every endpoint.
const RESERVED_ALIASES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "host.docker.internal",
    "gateway.docker.internal",
];

/// Aliases as asked, each a valid name that does not name the host, without repeats.
pub(super) fn check_aliases(aliases: &[String]) -> Result<Vec<String>, ModelError> {
    let mut out: Vec<String> = Vec::new();
    for a in aliases {
        if !valid_name(a) {
            return Err(ModelError::BadAlias(a.clone()));
        }
        let bare = a.trim_end_matches('.').to_ascii_lowercase();
        if RESERVED_ALIASES.contains(&bare.as_str()) {
            return Err(ModelError::ReservedAlias(a.clone()));
        }
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// A domain name as resolv.conf can carry it: labels of letters, digits, `-` and `_`, at most
/// 63 characters each and 253 in all.
pub fn valid_domain(d: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Resolver settings that can go into a resolv.conf as they are.
pub(super) fn check_dns(dns: &DnsSettings) -> Result<DnsSettings, ModelError> {
    if let Some(s) = dns.servers.iter().find(|s| {
        s.is_unspecified()
            || s.is_multicast()
            || matches!(s, std::net::IpAddr::V4(a) if a.is_broadcast())
    }) {
        return Err(ModelError::BadDnsServer(*s));
    }
    if let Some(d) = dns.search.iter().find(|d| !valid_domain(d)) {
        return Err(ModelError::BadDnsSearch(d.clone()));
    }
    let option = |o: &str| {
        !o.is_empty()
            && o.len() <= 64
            && o.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
    };
    if let Some(o) = dns.options.iter().find(|o| !option(o)) {
        return Err(ModelError::BadDnsOption(o.clone()));
    }
    Ok(dns.clone())
}
