//! The published ports' firewall: which clients may reach a published port from outside the
//! host. Docker's published ports walk past the host's firewall; this list is what an operator
//! says instead, in one line (`--published-from 10.0.0.0/8`). Empty: every client, as Docker.
use std::{fmt, net::Ipv4Addr, str::FromStr};

use netpath_common::published_from;
use serde::{Deserialize, Serialize};

use crate::ipam::{IpamError, Subnet};

/// The client prefixes published ports answer, or none for everyone. Kept sorted and without
/// repeats, so two lists that say the same compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PublishedFrom(Vec<Subnet>);

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
    pub fn new(prefixes: impl IntoIterator<Item = Subnet>) -> Self {
        let mut v: Vec<Subnet> = prefixes.into_iter().collect();
        v.sort();
        v.dedup();
        PublishedFrom(v)
    }

    /// No list: every client may reach the published ports.
    pub fn is_everyone(&self) -> bool {
        self.0.is_empty()
    }

    pub fn prefixes(&self) -> &[Subnet] {
        &self.0
    }

    /// Whether a client at `addr` may open a flow to a published port.
    pub fn allows(&self, addr: Ipv4Addr) -> bool {
        self.is_everyone() || self.0.iter().any(|s| s.contains(addr))
    }

    /// What the kernel's trie holds for this list: each prefix allowed and, while there is a
    /// list, the whole address space denied (the longest match decides); nothing for none.
    pub fn trie(&self) -> Vec<(Subnet, u8)> {
        let mut t: Vec<(Subnet, u8)> = self.0.iter().map(|s| (*s, published_from::ALLOW)).collect();
        let all = Subnet::new(Ipv4Addr::UNSPECIFIED, 0).expect("0.0.0.0/0 is a subnet");
        if !self.is_everyone() && !self.0.contains(&all) {
            t.push((all, published_from::DENY));
        }
        t
    }
}

/// One prefix of the list, as an operator writes it: a CIDR, or an address alone for itself.
pub fn parse_prefix(s: &str) -> Result<Subnet, IpamError> {
    match s.parse::<Ipv4Addr>() {
        Ok(addr) => Subnet::new(addr, 32),
        Err(_) => Subnet::from_str(s),
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
        assert!(none.allows(Ipv4Addr::new(203, 0, 113, 9)));
        assert!(none.trie().is_empty());
        assert_eq!(none.to_string(), "everyone");
    }

    #[test]
    fn a_list_allows_its_prefixes_only() {
        let l = list("10.0.0.0/8, 192.168.1.7");
        assert!(l.allows(Ipv4Addr::new(10, 200, 0, 1)));
        assert!(l.allows(Ipv4Addr::new(192, 168, 1, 7)));
        assert!(!l.allows(Ipv4Addr::new(192, 168, 1, 8)));
        assert_eq!(l.to_string(), "10.0.0.0/8, 192.168.1.7/32");
        let t = l.trie();
        assert_eq!(t.len(), 3);
        assert_eq!(t[2], ("0.0.0.0/0".parse().unwrap(), published_from::DENY));
        // The whole space allowed needs no deny entry.
        assert_eq!(list("0.0.0.0/0").trie().len(), 1);
        assert_eq!(list("10.0.0.0/8,10.0.0.0/8"), list("10.0.0.0/8"));
    }

    #[test]
    fn bad_prefixes_are_refused_by_name() {
        let err = "10.0.0.1/8".parse::<PublishedFrom>().unwrap_err();
        assert!(err.to_string().contains("10.0.0.1/8"), "{err}");
        assert!("10.0.0.0/33".parse::<PublishedFrom>().is_err());
        assert!("example.com".parse::<PublishedFrom>().is_err());
    }
}
