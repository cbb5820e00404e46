//! IPv4 address management: subnets, gateways, address allocation, subnet pools.
use std::{fmt, net::Ipv4Addr, str::FromStr};

use serde::{Deserialize, Serialize};

/// An IPv4 subnet in CIDR form, with host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    addr: Ipv4Addr,
    prefix: u8,
}

/// Why a subnet, address or allocation was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    #[error("invalid subnet {0:?}: expected A.B.C.D/N")]
    BadSubnet(String),
    #[error("invalid subnet {0}: host bits are set (did you mean {1}?)")]
    HostBits(String, Subnet),
    #[error("address {0} is not in subnet {1}")]
    OutsideSubnet(Ipv4Addr, Subnet),
    #[error("address {0} is reserved in subnet {1} (network, broadcast or gateway)")]
    Reserved(Ipv4Addr, Subnet),
    #[error("address {0} is already in use")]
    InUse(Ipv4Addr),
    #[error("no free address left in {0}")]
    Exhausted(Subnet),
    #[error("no free subnet in the address pools: every candidate overlaps a network or route")]
    NoFreeSubnet,
    #[error("invalid address {0:?}: expected A.B.C.D or A.B.C.D/N")]
    BadAddress(String),
}

/// The address of `A.B.C.D` or `A.B.C.D/N` (the form engines hand addresses in); `None` for
/// an empty string.
pub fn cidr_address(s: &str) -> Result<Option<Ipv4Addr>, IpamError> {
    if s.is_empty() {
        return Ok(None);
    }
    let (addr, prefix) = s.split_once('/').unwrap_or((s, "32"));
    match (addr.parse(), prefix.parse::<u8>()) {
        (Ok(a), Ok(p)) if p <= 32 => Ok(Some(a)),
        _ => Err(IpamError::BadAddress(s.to_string())),
    }
}

impl Subnet {
    /// A subnet from an address and prefix length; host bits must be zero.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, IpamError> {
        if prefix > 32 {
            return Err(IpamError::BadSubnet(format!("{addr}/{prefix}")));
        }
        let s = Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        };
        if s.addr != addr {
            return Err(IpamError::HostBits(format!("{addr}/{prefix}"), s));
        }
        Ok(s)
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        let m = mask(self.prefix.min(other.prefix));
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }

    /// The first usable address: Docker's default gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + u32::from(self.prefix < 31))
    }

    /// Usable host addresses (network and broadcast excluded for prefixes below /31).
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let start = u32::from(self.first_host());
        let end = if self.prefix < 31 {
            u32::from(self.broadcast()) - 1
        } else {
            u32::from(self.broadcast())
        };
        (start..=end).map(Ipv4Addr::from)
    }

    /// Every address of the subnet, network and broadcast included.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.addr)..=u32::from(self.broadcast())).map(Ipv4Addr::from)
    }

    /// Checks that `ip` may be given to an endpoint: inside, not network/broadcast/gateway.
    pub fn check_assignable(&self, ip: Ipv4Addr, gateway: Ipv4Addr) -> Result<(), IpamError> {
        if !self.contains(ip) {
            return Err(IpamError::OutsideSubnet(ip, *self));
        }
        if ip == gateway || (self.prefix < 31 && (ip == self.addr || ip == self.broadcast())) {
            return Err(IpamError::Reserved(ip, *self));
        }
        Ok(())
    }

    /// The first assignable address not in `used`.
    pub fn allocate(&self, gateway: Ipv4Addr, used: &[Ipv4Addr]) -> Result<Ipv4Addr, IpamError> {
        self.hosts()
            .find(|ip| *ip != gateway && !used.contains(ip))
            .ok_or(IpamError::Exhausted(*self))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = IpamError;

    fn from_str(s: &str) -> Result<Self, IpamError> {
        let bad = || IpamError::BadSubnet(s.to_string());
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        Subnet::new(addr, prefix)
    }
}

impl Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// netpath's default address pools: 10.210.0.0/16 … 10.239.0.0/16, then 10.200.0.0/24 …
/// 10.200.255.0/24. Apart from Docker's (172.17–31.0.0/16, 192.168.0.0/20 steps: docker0
/// and Docker's own networks), Podman's (10.88/10.89) and Kubernetes' usual service and pod
/// ranges (10.96/12, 10.244/16, 10.42–43/16), so none of them ever picks a subnet netpath
/// picked without knowing it.
pub fn default_pool() -> impl Iterator<Item = Subnet> {
    let b = (210u8..=239).map(|x| Subnet {
        addr: Ipv4Addr::new(10, x, 0, 0),
        prefix: 16,
    });
    let c = (0u8..=255).map(|i| Subnet {
        addr: Ipv4Addr::new(10, 200, i, 0),
        prefix: 24,
    });
    b.chain(c)
}

/// The first subnet of the pool that overlaps none of `taken` (networks and host routes).
pub fn pick_subnet(taken: &[Subnet]) -> Result<Subnet, IpamError> {
    default_pool()
        .find(|s| !taken.iter().any(|t| t.prefix > 0 && t.overlaps(s)))
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
