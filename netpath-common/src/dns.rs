//! The kernel's DNS fast path: the keys and values of `DNS_NAMES` (kernel: `dns.rs`).
use crate::Addr;

/// The longest name the DNS fast path answers, in wire format with its final zero label
/// (longer names go to the agent's server).
pub const DNS_NAME_LEN: usize = 64;
/// The most addresses a name has for the DNS fast path (names with more go to the server).
/// A power of two: the fast path masks its index with it.
pub const DNS_ADDRS: usize = 8;
const _: () = assert!(DNS_ADDRS.is_power_of_two());
/// The UDP port of DNS.
pub const DNS_PORT: u16 = 53;
/// How long answers of the DNS fast path (and the agent's server) may be cached.
pub const DNS_TTL: u32 = 600;

/// Key of `DNS_NAMES`: a name of a network, in wire format (length-prefixed labels, the
/// final zero included), lower case, zero padded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DnsKey {
    /// Id of the network (key of `NETWORKS`).
    pub network: u32,
    pub name: [u8; DNS_NAME_LEN],
}

impl DnsKey {
    /// The key of `name` (dotted, a final dot optional) on `network`: lower case, wire
    /// format. None when it does not fit [`DNS_NAME_LEN`] or has an empty or over-long label.
    pub fn new(network: u32, name: &str) -> Option<DnsKey> {
        let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
        let mut key = DnsKey {
            network,
            name: [0; DNS_NAME_LEN],
        };
        let mut at = 0;
        for label in name.split(|b| *b == b'.') {
            if label.is_empty() || label.len() > 63 || at + 1 + label.len() + 1 > DNS_NAME_LEN {
                return None;
            }
            key.name[at] = label.len() as u8;
            for (i, b) in label.iter().enumerate() {
                key.name[at + 1 + i] = b.to_ascii_lowercase();
            }
            at += 1 + label.len();
        }
        Some(key)
    }
}

/// Value of `DNS_NAMES`: the name's addresses (A records; AAAA with IPv6 addresses),
/// answered starting at `next`, which the fast path advances (round robin).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DnsAddrs<A: Addr = u32> {
    /// Addresses in use (1..=DNS_ADDRS).
    pub count: u32,
    pub next: u32,
    /// Network order.
    pub addrs: [A; DNS_ADDRS],
}

crate::layout!(DnsKey, 68, network @ 0, name @ 4);
crate::layout!(DnsAddrs, 40, count @ 0, next @ 4, addrs @ 8);
crate::layout!(DnsAddrs<crate::In6>, 136, count @ 0, next @ 4, addrs @ 8);
crate::pod!(DnsKey, DnsAddrs<A>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_wire_format() {
        let k = DnsKey::new(7, "Web.Front.").unwrap();
        assert_eq!(k.network, 7);
        assert_eq!(&k.name[..11], b"\x03web\x05front\x00");
        assert!(DnsKey::new(1, "a..b").is_none());
        assert!(DnsKey::new(1, &"x".repeat(64)).is_none());
        assert!(DnsKey::new(1, &"x".repeat(62)).is_some());
        assert!(
            DnsKey::new(1, &"x".repeat(63)).is_none(),
            "63 + length + zero > 64"
        );
    }
}
