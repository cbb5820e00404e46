//! Address management for both families: subnets, gateways, address allocation, subnet
//! pools. [`Subnet`] is generic over the [`Family`]; `Subnet` alone is IPv4's.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

mod family;
mod pool;
mod subnet;

pub use family::Family;
pub use pool::Pool;
pub use subnet::{AnySubnet, Subnet};

/// Why a subnet, address or allocation was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    #[error("invalid subnet {0:?}: expected {1}/N")]
    BadSubnet(String, &'static str),
    #[error("invalid subnet {0}: host bits are set (did you mean {1}?)")]
    HostBits(String, AnySubnet),
    #[error("address {0} is not in subnet {1}")]
    OutsideSubnet(IpAddr, AnySubnet),
    #[error("address {0} is reserved in subnet {1} (network, broadcast or gateway)")]
    Reserved(IpAddr, AnySubnet),
    #[error("address {0} is already in use")]
    InUse(IpAddr),
    #[error("no free address left in {0}")]
    Exhausted(AnySubnet),
    #[error("no free subnet in the address pools: every candidate overlaps a network or route")]
    NoFreeSubnet,
    #[error("invalid address {0:?}: expected {1} or {1}/N")]
    BadAddress(String, &'static str),
}

/// The address of family `A` in `ADDR` or `ADDR/N` (the form engines hand addresses in:
/// `A.B.C.D/N`, `X:X::X/N`); `None` for an empty string.
pub fn cidr_address<A: Family>(s: &str) -> Result<Option<A>, IpamError> {
    if s.is_empty() {
        return Ok(None);
    }
    let (addr, prefix) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
    match (addr.parse(), prefix.map(str::parse::<u8>)) {
        (Ok(a), None) => Ok(Some(a)),
        (Ok(a), Some(Ok(p))) if p <= A::BITS => Ok(Some(a)),
        _ => Err(IpamError::BadAddress(s.to_string(), A::FORM)),
    }
}

/// netpath's default address pools: 10.210.0.0/16 … 10.239.0.0/16, then 10.200.0.0/24 …
/// 10.200.255.0/24. Apart from Docker's (172.17–31.0.0/16, 192.168.0.0/20 steps: docker0
/// and Docker's own networks), Podman's (10.88/10.89) and Kubernetes' usual service and pod
/// ranges (10.96/12, 10.244/16, 10.42–43/16), so none of them ever picks a subnet netpath
/// picked without knowing it.
pub fn default_pool() -> impl Iterator<Item = Subnet> {
    let net = |a: Ipv4Addr, prefix| Subnet::new(a, prefix).expect("host bits are zero");
    let b = (210u8..=239).map(move |x| net(Ipv4Addr::new(10, x, 0, 0), 16));
    let c = (0u8..=255).map(move |i| net(Ipv4Addr::new(10, 200, i, 0), 24));
    b.chain(c)
}

/// netpath's default IPv6 pool: the /64s of fd6e:7470:6174::/48, a unique-local prefix
/// ("ntpat"), as Docker takes /64s of a unique-local /48 for `--ipv6` without a subnet.
pub fn default_pool6() -> impl Iterator<Item = Subnet<Ipv6Addr>> {
    (0u16..=u16::MAX).map(|i| {
        let a = Ipv6Addr::new(0xfd6e, 0x7470, 0x6174, i, 0, 0, 0, 0);
        Subnet::new(a, 64).expect("host bits are zero")
    })
}

/// The first subnet of `pool` that overlaps none of `taken` (networks and host routes).
pub fn pick_subnet<A: Family>(
    pool: impl Iterator<Item = Subnet<A>>,
    taken: &[Subnet<A>],
) -> Result<Subnet<A>, IpamError> {
    pool.into_iter()
        .find(|s| !taken.iter().any(|t| t.prefix() > 0 && t.overlaps(s)))
        .ok_or(IpamError::NoFreeSubnet)
}

/// Docker's MAC for an endpoint address: 02:42 followed by the four address bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests;
