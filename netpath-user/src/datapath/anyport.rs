//! A published port as the agent holds it, of either family ([`AnyPortKey`], IPv4's
//! addresses IPv4-mapped), and split into its family's maps where it is written
//! ([`AnyPort::split`]).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netpath_common::{Addr, In6, PortKey, PortTarget};

use super::{be_addr, DatapathError};
use crate::ipam::Family;

/// A published port's key as the agent holds it, of either family: IPv4's addresses
/// IPv4-mapped (`::ffff:a.b.c.d`; `0.0.0.0` is `::ffff:0.0.0.0`, never `::`), so the agent's
/// bookkeeping (journal, stats slots, drift) has one type; each family's maps get their own
/// where they are written ([`AnyPort::split`]).
pub type AnyPortKey = PortKey<In6>;
/// A published port's target as the agent holds it (the endpoint's address mapped the same).
pub type AnyPortTarget = PortTarget<In6>;

/// The address no publish's replies leave from (a target's `host`): the flows are kept.
pub(super) const NO_HOST: In6 = In6 { words: [0; 4] };

/// `addr` as an [`AnyPortKey`] holds it.
pub fn any_addr(addr: IpAddr) -> In6 {
    match addr {
        IpAddr::V4(a) => be_addr(a.to_ipv6_mapped()),
        IpAddr::V6(a) => be_addr(a),
    }
}

/// The address an [`AnyPortKey`] holds.
pub fn addr_of(addr: In6) -> IpAddr {
    let a = Ipv6Addr::from_kernel(addr);
    a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4)
}

/// A published port's key in one family's form.
pub enum AnyKey {
    V4(PortKey),
    V6(PortKey<In6>),
}

impl AnyKey {
    /// `key` as its family's maps hold it.
    pub fn of(key: &AnyPortKey) -> AnyKey {
        match v4_of(key.addr) {
            Some(addr) => AnyKey::V4(PortKey {
                addr,
                port: key.port,
                proto: key.proto,
                _pad: 0,
            }),
            None => AnyKey::V6(*key),
        }
    }
}

/// A published port in one family's maps.
pub enum AnyPort {
    V4(PortKey, PortTarget),
    V6(PortKey<In6>, PortTarget<In6>),
}

impl AnyPort {
    /// The port `key` → `target` in its family's maps; both addresses of one family.
    pub fn split(key: &AnyPortKey, target: &AnyPortTarget) -> Result<AnyPort, DatapathError> {
        match (AnyKey::of(key), v4_of(target.addr)) {
            (AnyKey::V4(k), Some(ep)) => Ok(AnyPort::V4(
                k,
                PortTarget {
                    addr: ep,
                    ..narrow(target)
                },
            )),
            // An IPv4 endpoint behind a port published on IPv6: reached by NAT46, the
            // target's address left IPv4-mapped (what the kernel recognises it by).
            (AnyKey::V6(k), _) => Ok(AnyPort::V6(k, *target)),
            _ => Err(DatapathError::MixedFamilies(format!(
                "{}:{}",
                addr_of(key.addr),
                u16::from_be(key.port)
            ))),
        }
    }
}

/// The IPv4 address an IPv4-mapped one holds (network order).
pub(super) fn v4_of(addr: In6) -> Option<u32> {
    Ipv6Addr::from_kernel(addr)
        .to_ipv4_mapped()
        .map(Ipv4Addr::to_kernel)
}

/// `t` with its address left out (of the other family).
fn narrow(t: &AnyPortTarget) -> PortTarget {
    PortTarget {
        addr: 0,
        port: t.port,
        stats: t.stats,
        ifindex: t.ifindex,
        mac: t.mac,
        gw_mac: t.gw_mac,
        host: v4_of(t.host).unwrap_or(0),
    }
}

/// IPv4's port as the agent holds it.
pub(super) fn widen(k: PortKey, t: PortTarget) -> (AnyPortKey, AnyPortTarget) {
    let mapped = |a: u32| any_addr(IpAddr::V4(Ipv4Addr::from_kernel(a)));
    (
        PortKey {
            addr: mapped(k.addr),
            port: k.port,
            proto: k.proto,
            _pad: 0,
        },
        PortTarget {
            addr: mapped(t.addr),
            port: t.port,
            stats: t.stats,
            ifindex: t.ifindex,
            mac: t.mac,
            gw_mac: t.gw_mac,
            host: if t.host == 0 {
                In6::ANY
            } else {
                mapped(t.host)
            },
        },
    )
}

impl super::Datapath {
    /// Every published port of both families in the kernel's maps, as the agent holds them
    /// (`host` left out).
    pub fn published_any(&self) -> Vec<(AnyPortKey, AnyPortTarget)> {
        let v4 = self.published::<u32>().into_iter();
        any_ports(v4, self.published::<In6>())
    }

    /// [`published_any`](Self::published_any) as this process wrote it
    /// ([`Datapath::published_known`]).
    pub fn published_any_known(&self) -> Vec<(AnyPortKey, AnyPortTarget)> {
        let v4 = self.published_known::<u32>().into_iter();
        any_ports(v4, self.published_known::<In6>())
    }
}

/// Publishes of both families as the agent holds them (`host` left out).
fn any_ports(
    v4: impl Iterator<Item = (PortKey, PortTarget)>,
    v6: Vec<(PortKey<In6>, PortTarget<In6>)>,
) -> Vec<(AnyPortKey, AnyPortTarget)> {
    v4.map(|(k, t)| widen(k, t))
        .chain(v6)
        .map(|(k, t)| (k, AnyPortTarget { host: NO_HOST, ..t }))
        .collect()
}
