//! A subnet of either family in CIDR form: containment, overlap, the addresses a host may
//! have, allocation.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
};

use serde::{Deserialize, Serialize};

use super::{
    family::{mask, Family},
    IpamError,
};

/// A subnet in CIDR form, with host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet<A: Family = Ipv4Addr> {
    addr: A,
    prefix: u8,
}

/// A subnet of either family, as errors and views name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AnySubnet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl<A: Family> From<Subnet<A>> for AnySubnet {
    fn from(s: Subnet<A>) -> Self {
        AnySubnet {
            addr: s.addr.into(),
            prefix: s.prefix,
        }
    }
}

impl fmt::Display for AnySubnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<A: Family> Subnet<A> {
    /// A subnet from an address and prefix length; host bits must be zero.
    pub fn new(addr: A, prefix: u8) -> Result<Self, IpamError> {
        if prefix > A::BITS {
            return Err(IpamError::BadSubnet(format!("{addr}/{prefix}"), A::FORM));
        }
        let s = Subnet {
            addr: A::from_bits(addr.to_bits() & mask(A::BITS, prefix)),
            prefix,
        };
        if s.addr != addr {
            return Err(IpamError::HostBits(format!("{addr}/{prefix}"), s.into()));
        }
        Ok(s)
    }

    /// The subnet of `prefix` bits that holds `addr` (its host bits cleared).
    pub fn containing(addr: A, prefix: u8) -> Result<Self, IpamError> {
        Subnet::new(
            A::from_bits(addr.to_bits() & mask(A::BITS, prefix.min(A::BITS))),
            prefix,
        )
    }

    pub fn addr(&self) -> A {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(&self) -> u128 {
        mask(A::BITS, self.prefix)
    }

    pub fn contains(&self, ip: A) -> bool {
        ip.to_bits() & self.mask() == self.addr.to_bits()
    }

    /// Whether `other` lies wholly within this subnet.
    pub fn covers(&self, other: &Subnet<A>) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    pub fn overlaps(&self, other: &Subnet<A>) -> bool {
        let m = mask(A::BITS, self.prefix.min(other.prefix));
        self.addr.to_bits() & m == other.addr.to_bits() & m
    }

    /// The subnet's last address (IPv4's broadcast).
    pub fn broadcast(&self) -> A {
        A::from_bits(self.last_bits())
    }

    fn last_bits(&self) -> u128 {
        self.addr.to_bits() | (mask(A::BITS, A::BITS) & !self.mask())
    }

    /// Whether the subnet's first and last addresses are no host's: the network address
    /// always but in the smallest subnets, and IPv4's broadcast.
    fn ends_reserved(&self) -> (bool, bool) {
        let small = self.prefix + 1 >= A::BITS; // /31 and /32, /127 and /128
        (!small, A::BROADCAST && !small)
    }

    /// The first usable address: Docker's default gateway.
    pub fn first_host(&self) -> A {
        A::from_bits(self.addr.to_bits() + u128::from(self.ends_reserved().0))
    }

    /// Usable host addresses (network and broadcast excluded where they are reserved).
    pub fn hosts(&self) -> impl Iterator<Item = A> {
        let start = self.first_host().to_bits();
        let end = self.last_bits() - u128::from(self.ends_reserved().1);
        (start..=end).map(A::from_bits)
    }

    /// Every address of the subnet, network and broadcast included.
    pub fn addresses(&self) -> impl Iterator<Item = A> {
        (self.addr.to_bits()..=self.last_bits()).map(A::from_bits)
    }

    /// Whether `ip` is the subnet's network address or broadcast, where those are no host's.
    pub fn is_reserved(&self, ip: A) -> bool {
        let (first, last) = self.ends_reserved();
        (first && ip == self.addr) || (last && ip == self.broadcast())
    }

    /// Checks that `ip` may be given to an endpoint: inside, not network/broadcast/gateway.
    pub fn check_assignable(&self, ip: A, gateway: A) -> Result<(), IpamError> {
        if !self.contains(ip) {
            return Err(IpamError::OutsideSubnet(ip.into(), (*self).into()));
        }
        if ip == gateway || self.is_reserved(ip) {
            return Err(IpamError::Reserved(ip.into(), (*self).into()));
        }
        Ok(())
    }

    /// The first address of `range` (the whole subnet when none) an endpoint may have
    /// (assignable with `gateway`) that `taken` does not hold: all of a range is allocatable
    /// but what the subnet reserves.
    pub fn first_free(
        &self,
        range: Option<Subnet<A>>,
        gateway: A,
        taken: impl Fn(&A) -> bool,
    ) -> Result<A, IpamError> {
        let from = range.unwrap_or(*self);
        from.addresses()
            .find(|ip| !taken(ip) && self.check_assignable(*ip, gateway).is_ok())
            .ok_or(IpamError::Exhausted(from.into()))
    }

    /// The first assignable address not in `used`.
    pub fn allocate(&self, gateway: A, used: &[A]) -> Result<A, IpamError> {
        self.first_free(None, gateway, |ip| used.contains(ip))
    }
}

impl<A: Family> fmt::Display for Subnet<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<A: Family> FromStr for Subnet<A> {
    type Err = IpamError;

    fn from_str(s: &str) -> Result<Self, IpamError> {
        let bad = || IpamError::BadSubnet(s.to_string(), A::FORM);
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: A = a.parse().map_err(|_| bad())?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        Subnet::new(addr, prefix)
    }
}

impl<A: Family> Serialize for Subnet<A> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de, A: Family> Deserialize<'de> for Subnet<A> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
