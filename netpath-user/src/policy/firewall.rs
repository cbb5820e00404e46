//! The published ports' firewall: which clients may reach a published port from outside the
//! host. Docker's published ports walk past the host's firewall; this list is what an operator
//! says instead, in one line (`--published-from 10.0.0.0/8`). Empty: every client, as Docker.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use netpath_common::published_from;
use serde::{Deserialize, Serialize};

use crate::ipam::{Family, IpamError, Subnet};

/// One client prefix of the list, of either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Prefix {
    V4(Subnet<Ipv4Addr>),
    V6(Subnet<Ipv6Addr>),
}

impl Prefix {
    /// The prefix of a subnet of either family.
    pub fn of(s: &crate::ipam::AnySubnet) -> Option<Prefix> {
        match s.addr {
            IpAddr::V4(a) => Subnet::new(a, s.prefix).ok().map(Prefix::V4),
            IpAddr::V6(a) => Subnet::new(a, s.prefix).ok().map(Prefix::V6),
        }
    }

    /// Whether `other` (of the same family) lies within this prefix.
    pub fn covers(&self, other: &Prefix) -> bool {
        match (self, other) {
            (Prefix::V4(s), Prefix::V4(o)) => s.covers(o),
            (Prefix::V6(s), Prefix::V6(o)) => s.covers(o),
            _ => false,
        }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self, addr) {
            (Prefix::V4(s), IpAddr::V4(a)) => s.contains(a),
            (Prefix::V6(s), IpAddr::V6(a)) => s.contains(a),
            _ => false,
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prefix::V4(s) => s.fmt(f),
            Prefix::V6(s) => s.fmt(f),
        }
    }
}

impl Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The client prefixes published ports answer, or none for everyone. Kept sorted and without
/// repeats, so two lists that say the same compare equal. While there is a list, a client of
/// either family is let in only by a prefix of its own family.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PublishedFrom(Vec<Prefix>);

/// A list of prefixes as [`parse_prefix`] reads each.
impl<'de> Deserialize<'de> for PublishedFrom {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        let prefixes = v
            .iter()
            .map(|s| parse_prefix(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(serde::de::Error::custom)?;
        Ok(PublishedFrom::new(prefixes))
    }
}

impl PublishedFrom {
    /// The list of `prefixes`, in any order, repeats dropped.
    pub fn new(prefixes: impl IntoIterator<Item = Prefix>) -> Self {
        let mut v: Vec<Prefix> = prefixes.into_iter().collect();
        v.sort();
        v.dedup();
        PublishedFrom(v)
    }

    /// No list: every client may reach the published ports.
    pub fn is_everyone(&self) -> bool {
        self.0.is_empty()
    }

    pub fn prefixes(&self) -> &[Prefix] {
        &self.0
    }

    /// Whether a client at `addr` may open a flow to a published port.
    pub fn allows(&self, addr: IpAddr) -> bool {
        self.is_everyone() || self.0.iter().any(|s| s.contains(addr))
    }

    /// What IPv4's kernel trie holds for this list: each IPv4 prefix allowed and, while there
    /// is a list, the whole address space denied (the longest match decides); nothing for
    /// none.
    pub fn trie(&self) -> Vec<(Subnet<Ipv4Addr>, u8)> {
        self.trie_of(|p| match p {
            Prefix::V4(s) => Some(*s),
            Prefix::V6(_) => None,
        })
    }

    /// The same for IPv6's trie.
    pub fn trie6(&self) -> Vec<(Subnet<Ipv6Addr>, u8)> {
        self.trie_of(|p| match p {
            Prefix::V6(s) => Some(*s),
            Prefix::V4(_) => None,
        })
    }

    fn trie_of<A: Family>(
        &self,
        of: impl Fn(&Prefix) -> Option<Subnet<A>>,
    ) -> Vec<(Subnet<A>, u8)> {
        let mut t: Vec<(Subnet<A>, u8)> = self
            .0
            .iter()
            .filter_map(of)
            .map(|s| (s, published_from::ALLOW))
            .collect();
        let all = Subnet::new(A::from_bits(0), 0).expect("the whole space is a subnet");
        if !self.is_everyone() && !t.iter().any(|(s, _)| *s == all) {
            t.push((all, published_from::DENY));
        }
        t
    }
}

/// One prefix of the list, as an operator writes it: a CIDR of either family, or an address
/// alone for itself.
pub fn parse_prefix(s: &str) -> Result<Prefix, IpamError> {
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => Subnet::new(a, 32).map(Prefix::V4),
        Ok(IpAddr::V6(a)) => Subnet::new(a, 128).map(Prefix::V6),
        Err(_) if s.contains(':') => Subnet::from_str(s).map(Prefix::V6),
        Err(_) => Subnet::from_str(s).map(Prefix::V4),
    }
}

impl FromStr for PublishedFrom {
    type Err = IpamError;

    /// Prefixes separated by commas (or nothing, for everyone).
    fn from_str(s: &str) -> Result<Self, IpamError> {
        let prefixes = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(parse_prefix)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PublishedFrom::new(prefixes))
    }
}

impl fmt::Display for PublishedFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_everyone() {
            return f.write_str("everyone");
        }
        let v: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&v.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> PublishedFrom {
        s.parse().unwrap()
    }

    #[test]
    fn no_list_allows_everyone_and_writes_nothing() {
        let none = PublishedFrom::default();
        assert!(none.allows(Ipv4Addr::new(203, 0, 113, 9).into()));
        assert!(none.allows("2001:db8::9".parse().unwrap()));
        assert!(none.trie().is_empty() && none.trie6().is_empty());
        assert_eq!(none.to_string(), "everyone");
    }

    #[test]
    fn a_list_allows_its_prefixes_only() {
        let l = list("10.0.0.0/8, 192.168.1.7");
        assert!(l.allows(Ipv4Addr::new(10, 200, 0, 1).into()));
        assert!(l.allows(Ipv4Addr::new(192, 168, 1, 7).into()));
        assert!(!l.allows(Ipv4Addr::new(192, 168, 1, 8).into()));
        assert!(
            !l.allows("2001:db8::9".parse().unwrap()),
            "no IPv6 prefix: no IPv6 client"
        );
        assert_eq!(l.trie6(), [("::/0".parse().unwrap(), published_from::DENY)]);
        assert_eq!(l.to_string(), "10.0.0.0/8, 192.168.1.7/32");
        let t = l.trie();
        assert_eq!(t.len(), 3);
        assert_eq!(t[2], ("0.0.0.0/0".parse().unwrap(), published_from::DENY));
        // The whole space allowed needs no deny entry.
        assert_eq!(list("0.0.0.0/0").trie().len(), 1);
        assert_eq!(list("10.0.0.0/8,10.0.0.0/8"), list("10.0.0.0/8"));
    }

    #[test]
    fn ipv6_prefixes_let_in_ipv6_clients_alone() {
        let l = list("2001:db8::/32, fd00::7, 10.0.0.0/8");
        assert!(l.allows("2001:db8:1::5".parse().unwrap()));
        assert!(l.allows("fd00::7".parse().unwrap()));
        assert!(!l.allows("fd00::8".parse().unwrap()));
        assert!(!l.allows(Ipv4Addr::new(192, 0, 2, 1).into()));
        assert_eq!(l.to_string(), "10.0.0.0/8, 2001:db8::/32, fd00::7/128");
        assert_eq!(l.trie6().len(), 3, "two allowed, ::/0 denied");
        assert_eq!(l.trie().len(), 2, "one allowed, 0.0.0.0/0 denied");
        // IPv6 alone in the list: no IPv4 client.
        assert_eq!(
            list("2001:db8::/32").trie(),
            [("0.0.0.0/0".parse().unwrap(), published_from::DENY)]
        );
        assert!("2001:db8::1/32".parse::<PublishedFrom>().is_err());
        assert!("2001:db8::/129".parse::<PublishedFrom>().is_err());
    }

    #[test]
    fn bad_prefixes_are_refused_by_name() {
        let err = "10.0.0.1/8".parse::<PublishedFrom>().unwrap_err();
        assert!(err.to_string().contains("10.0.0.1/8"), "{err}");
        assert!("10.0.0.0/33".parse::<PublishedFrom>().is_err());
        assert!("example.com".parse::<PublishedFrom>().is_err());
    }
}
