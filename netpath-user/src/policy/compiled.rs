//! What the kernel's policy maps hold (`IPCACHE`, `POLICY`, and their tries), as the agent
//! computes it from the policies, and the kernel's verdict on it, computed the same way here:
//! the agent uses it to end the connections a new policy denies, and its tests to check the
//! compiler against the datapath's rules.
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use netpath_common::{direction, identity, PolicyKey};

use crate::ipam::Subnet;

/// The policy maps' content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compiled {
    /// Prefix → identity: every endpoint's address (/32), every prefix an ipBlock names.
    pub ipcache: BTreeMap<Subnet, u32>,
    /// IPv6's ipBlock prefixes → identity (endpoints' IPv6 addresses carry their IPv4
    /// address's, written beside their records).
    pub ipcache6: BTreeMap<Subnet<Ipv6Addr>, u32>,
    /// Identity → the [`direction`]s policies select it in.
    pub subjects: BTreeMap<u32, u32>,
    /// (key, prefix bits) → the number of the policy the rule comes from.
    pub rules: BTreeMap<(PolicyKey, u32), u32>,
}

impl Compiled {
    /// Whether any policy is in force (the kernel's `POLICY_ON`).
    pub fn on(&self) -> bool {
        !self.subjects.is_empty()
    }

    /// The identity of `addr`: its longest prefix's, else WORLD.
    pub fn identity(&self, addr: Ipv4Addr) -> u32 {
        self.ipcache
            .iter()
            .filter(|(s, _)| s.contains(addr))
            .max_by_key(|(s, _)| s.prefix())
            .map_or(identity::WORLD, |(_, id)| *id)
    }

    /// The rule that lets `subject` be reached by / reach `peer` (or every peer) on `proto`
    /// port `port`: the policy's number. Asked in the kernel's order: a rule for the one
    /// port naming the peer, then for every peer, then blocks of ports and whole protocols
    /// (longest first) the same way.
    pub fn rule(&self, dir: u8, subject: u32, peer: u32, proto: u8, port: u16) -> Option<u32> {
        let exact = |p: u32| {
            self.rules
                .get(&(
                    PolicyKey::new(dir, subject, p, proto, port),
                    PolicyKey::PORT,
                ))
                .copied()
        };
        let ranges = |p: u32| {
            let want = PolicyKey::new(dir, subject, p, proto, port);
            self.rules
                .iter()
                .filter(|((k, bits), _)| *bits < PolicyKey::PORT && prefix_matches(k, *bits, &want))
                .max_by_key(|((_, bits), _)| *bits)
                .map(|(_, n)| *n)
        };
        exact(peer)
            .or_else(|| exact(identity::ANY))
            .or_else(|| ranges(peer))
            .or_else(|| ranges(identity::ANY))
    }

    /// The identity of an IPv6 address that is no endpoint's: its longest ipBlock prefix's,
    /// else WORLD.
    pub fn identity6(&self, addr: Ipv6Addr) -> u32 {
        self.ipcache6
            .iter()
            .filter(|(s, _)| s.contains(addr))
            .max_by_key(|(s, _)| s.prefix())
            .map_or(identity::WORLD, |(_, id)| *id)
    }

    /// The kernel's `admit`: may a new flow of `proto` go from `src` to `dst` port `port`?
    pub fn admits(&self, src: Ipv4Addr, dst: Ipv4Addr, port: u16, proto: u8) -> bool {
        if !self.on() {
            return true;
        }
        self.admits_identities(self.identity(src), self.identity(dst), port, proto)
    }

    /// [`Compiled::admits`] between two identities (of addresses of either family).
    pub fn admits_identities(&self, from: u32, to: u32, port: u16, proto: u8) -> bool {
        if !self.on() {
            return true;
        }
        if from == identity::HOST || to == identity::HOST {
            return true;
        }
        let selected = |id: u32, dir: u8| {
            self.subjects
                .get(&id)
                .is_some_and(|f| f & u32::from(dir) != 0)
        };
        (!selected(from, direction::EGRESS)
            || self
                .rule(direction::EGRESS, from, to, proto, port)
                .is_some())
            && (!selected(to, direction::INGRESS)
                || self
                    .rule(direction::INGRESS, to, from, proto, port)
                    .is_some())
    }
}

/// Whether the first `bits` bits of `rule` and `key` agree.
fn prefix_matches(rule: &PolicyKey, bits: u32, key: &PolicyKey) -> bool {
    let (whole, rest) = ((bits / 8) as usize, bits % 8);
    if rule.bytes[..whole] != key.bytes[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        rule.bytes[whole] & mask == key.bytes[whole] & mask
    }
}

/// The power-of-two blocks of ports that cover `start..=end` exactly: (first port, prefix
/// bits of the port), as the trie holds a range.
pub fn port_blocks(start: u16, end: u16) -> Vec<(u16, u32)> {
    let mut out = Vec::new();
    let (mut at, end) = (u32::from(start), u32::from(end));
    while at <= end {
        // The largest block aligned at `at` that stays within the range.
        let mut size = if at == 0 {
            1 << 16
        } else {
            1u32 << at.trailing_zeros()
        };
        while at + size - 1 > end {
            size >>= 1;
        }
        out.push((at as u16, 16 - size.trailing_zeros()));
        at += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_become_exact_blocks() {
        assert_eq!(port_blocks(80, 80), [(80, 16)]);
        assert_eq!(port_blocks(0, 65535), [(0, 0)]);
        assert_eq!(port_blocks(8000, 8007), [(8000, 13)]);
        assert_eq!(
            port_blocks(32000, 32768),
            [(32000, 8), (32256, 7), (32768, 16)]
        );
        for (s, e) in [(1, 1000), (443, 8443), (1024, 65535), (65535, 65535)] {
            let blocks = port_blocks(s, e);
            let covered: u32 = blocks.iter().map(|(_, bits)| 1u32 << (16 - bits)).sum();
            assert_eq!(covered, u32::from(e - s) + 1, "{s}-{e}");
            for (p, bits) in blocks {
                let size = 1u32 << (16 - bits);
                assert_eq!(u32::from(p) % size, 0, "{s}-{e}: block {p}/{bits} aligned");
            }
        }
    }

    #[test]
    fn the_verdict_is_the_kernels() {
        let ep = |n| Subnet::new(Ipv4Addr::new(10, 0, 0, n), 32).unwrap();
        let (web, db) = (300, 301);
        let mut c = Compiled::default();
        c.ipcache.insert(ep(2), web);
        c.ipcache.insert(ep(3), db);
        c.ipcache
            .insert("192.0.2.0/24".parse().unwrap(), identity::FIRST_OF_CIDRS);
        // db: ingress from web on TCP 5432 only; web: open.
        c.subjects.insert(db, u32::from(direction::INGRESS));
        c.rules.insert(
            (
                PolicyKey::new(direction::INGRESS, db, web, 6, 5432),
                PolicyKey::PORT,
            ),
            1,
        );
        // And from 192.0.2.0/24 on every port of every protocol.
        c.rules.insert(
            (
                PolicyKey::new(direction::INGRESS, db, identity::FIRST_OF_CIDRS, 0, 0),
                PolicyKey::ALL_PORTS,
            ),
            2,
        );
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3));
        assert!(c.admits(a, b, 5432, 6));
        assert!(!c.admits(a, b, 5433, 6));
        assert!(!c.admits(a, b, 5432, 17));
        assert!(c.admits(b, a, 80, 6), "web is selected by nothing");
        assert!(c.admits(Ipv4Addr::new(192, 0, 2, 9), b, 22, 17));
        assert!(!c.admits(Ipv4Addr::new(198, 51, 100, 1), b, 22, 17));
        assert_eq!(
            c.rule(direction::INGRESS, db, identity::FIRST_OF_CIDRS, 17, 9),
            Some(2)
        );
    }
}
