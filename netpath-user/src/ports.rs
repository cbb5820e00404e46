//! Published ports: Docker's `-p` syntax, and the mappings a spec resolves to.
//!
//! `[HOSTIP:][HOSTPORT:]CONTAINERPORT[/PROTO]`, where either port may be a range `A-B`:
//! `8000-8002:80-82` maps one to one, `8000-8010:80` takes one free host port of the range,
//! `80` alone (or `HOSTIP::80`) takes an ephemeral host port. An IPv6 host address goes in
//! brackets (`[::1]:8080:80`). With no host address a port is published on every address of
//! both families (`0.0.0.0` and `[::]`, as Docker), with one its family's alone.
use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use serde::{Deserialize, Serialize};

/// Transport protocol of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The IP protocol number (the datapath's key).
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => netpath_common::proto::TCP,
            Proto::Udp => netpath_common::proto::UDP,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// An inclusive port range; a single port is a range of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn len(self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    pub fn is_empty(self) -> bool {
        false
    }

    pub fn iter(self) -> impl Iterator<Item = u16> {
        self.start..=self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// One published port: host address and port to endpoint port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    /// `0.0.0.0` publishes on every host IPv4 address, `::` on every IPv6 one.
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl PortMapping {
    /// Two mappings cannot both exist: same protocol and host port, and the same host
    /// address or either on every address of the other's family (what makes Docker say "port
    /// is already allocated").
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && self.host_ip.is_ipv4() == other.host_ip.is_ipv4()
            && (self.host_ip == other.host_ip
                || self.host_ip.is_unspecified()
                || other.host_ip.is_unspecified())
    }

    /// The host address and port, as Docker writes them (`0.0.0.0:8080`, `[::]:8080`).
    pub fn host(&self) -> SocketAddr {
        SocketAddr::new(self.host_ip, self.host_port)
    }
}

impl fmt::Display for PortMapping {
    /// `docker port` style: `80/tcp -> 0.0.0.0:8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} -> {}",
            self.container_port,
            self.proto,
            self.host()
        )
    }
}

/// First port of the ephemeral range (Linux's default `ip_local_port_range`, as Docker uses).
pub const EPHEMERAL_START: u16 = 32768;
/// Last port of the ephemeral range.
pub const EPHEMERAL_END: u16 = 60999;

/// netpath's outbound NAT ports (reserved from the host's ephemeral range): never
/// published, never handed out as ephemeral ports.
pub const OUTBOUND: PortRange = PortRange {
    start: netpath_common::SNAT_PORT_MIN,
    end: (netpath_common::SNAT_PORT_MIN as u32 + netpath_common::SNAT_PORTS - 1) as u16,
};

impl PortRange {
    pub fn contains(self, p: u16) -> bool {
        (self.start..=self.end).contains(&p)
    }
}

/// Error when a spec cannot be satisfied given what is already published.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllocError {
    #[error("Bind for {0} failed: port is already allocated")]
    Allocated(SocketAddr),
    #[error("Bind for {0} failed: address already in use (a process of the host has it)")]
    InUse(SocketAddr),
    #[error("port {0} is in netpath's outbound NAT range {OUTBOUND}: publish another port")]
    Outbound(u16),
    #[error("no free host port in {0} for {1}")]
    RangeExhausted(PortRange, String),
}

/// Whether a host process holds a mapping's host address and port (asked of the host by the
/// agent; nothing in tests).
pub type Busy<'a> = &'a dyn Fn(&PortMapping) -> bool;

/// Host ports handed out for `-p CONTAINERPORT`: the ephemeral range without the outbound
/// NAT ports.
fn ephemeral_ports() -> impl Iterator<Item = u16> {
    (EPHEMERAL_START..=EPHEMERAL_END).filter(|p| !OUTBOUND.contains(*p))
}

/// Published (protocol, host port) → host addresses: conflict checks in constant time, so a
/// range of 65,535 ports resolves in linear time.
#[derive(Clone, Debug, Default)]
pub struct PortIndex(HashMap<(Proto, u16), Vec<IpAddr>>);

impl PortIndex {
    pub fn new(maps: impl IntoIterator<Item = PortMapping>) -> Self {
        let mut idx = PortIndex::default();
        for m in maps {
            idx.insert(&m);
        }
        idx
    }

    pub fn insert(&mut self, m: &PortMapping) {
        self.0
            .entry((m.proto, m.host_port))
            .or_default()
            .push(m.host_ip);
    }

    /// Whether `m` conflicts with anything indexed ([`PortMapping::conflicts_with`]).
    pub fn conflicts(&self, m: &PortMapping) -> bool {
        self.0.get(&(m.proto, m.host_port)).is_some_and(|ips| {
            ips.iter()
                .any(|ip| m.conflicts_with(&PortMapping { host_ip: *ip, ..*m }))
        })
    }
}

/// The host addresses a spec publishes on: its own, else every address of IPv4 and, when
/// the endpoint has an IPv6 address (`ipv6`), of IPv6 too.
pub fn host_ips(spec: &PortSpec, ipv6: bool) -> Vec<IpAddr> {
    host_ips_of(spec, true, ipv6)
}

/// [`host_ips`] for an endpoint of IPv6 alone too (`ipv4` false: no `0.0.0.0`).
pub fn host_ips_of(spec: &PortSpec, ipv4: bool, ipv6: bool) -> Vec<IpAddr> {
    match spec.host_ip {
        Some(ip) => vec![ip],
        None => [
            ipv4.then_some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            ipv6.then_some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        ]
        .into_iter()
        .flatten()
        .collect(),
    }
}

/// Resolves `spec` into concrete mappings on each of `ips` (the same host port on each, as
/// Docker publishes one port on both families), given every mapping already published
/// (`taken`, which the caller extends with the result before resolving the next spec of a
/// request) and what host processes hold (`busy`). Explicit ports must be free and outside
/// the outbound NAT range; chosen ones skip both. Linear in the ports asked for.
pub fn resolve(
    spec: &PortSpec,
    ips: &[IpAddr],
    taken: &PortIndex,
    busy: Busy<'_>,
) -> Result<Vec<PortMapping>, AllocError> {
    let mappings = |host_port, container_port| {
        ips.iter().map(move |&host_ip| PortMapping {
            host_ip,
            host_port,
            container_port,
            proto: spec.proto,
        })
    };
    // Why `hp` cannot serve `cp` on every address, if it cannot.
    let refused = |hp: u16, cp: u16, mine: &PortIndex| {
        mappings(hp, cp).find_map(|m| {
            if taken.conflicts(&m) || mine.conflicts(&m) {
                Some(AllocError::Allocated(m.host()))
            } else if busy(&m) {
                Some(AllocError::InUse(m.host()))
            } else {
                None
            }
        })
    };
    let mut mine = PortIndex::default();
    let mut out = Vec::new();
    match spec.host_ports {
        Some(h) if h.len() == spec.container_ports.len() => {
            for (hp, cp) in h.iter().zip(spec.container_ports.iter()) {
                if OUTBOUND.contains(hp) {
                    return Err(AllocError::Outbound(hp));
                }
                if let Some(e) = refused(hp, cp, &mine) {
                    return Err(e);
                }
                out.extend(mappings(hp, cp));
            }
        }
        Some(h) => {
            // One container port, a range of host ports: take the first free one.
            let cp = spec.container_ports.start;
            let hp = h
                .iter()
                .filter(|hp| !OUTBOUND.contains(*hp))
                .find(|hp| refused(*hp, cp, &mine).is_none())
                .ok_or_else(|| AllocError::RangeExhausted(h, spec.to_string()))?;
            out.extend(mappings(hp, cp));
        }
        None => {
            // One pass over the ephemeral ports for all container ports of the spec.
            let mut free = ephemeral_ports();
            for cp in spec.container_ports.iter() {
                let hp = free
                    .by_ref()
                    .find(|hp| refused(*hp, cp, &mine).is_none())
                    .ok_or_else(|| {
                        AllocError::RangeExhausted(
                            PortRange {
                                start: EPHEMERAL_START,
                                end: EPHEMERAL_END,
                            },
                            spec.to_string(),
                        )
                    })?;
                for m in mappings(hp, cp) {
                    mine.insert(&m);
                    out.push(m);
                }
            }
        }
    }
    Ok(out)
}

/// Whether `m` is one of the mappings `spec` names (for unpublish): same protocol and
/// container port in range, and the host address and ports when the spec gives them.
pub fn spec_matches(spec: &PortSpec, m: &PortMapping) -> bool {
    let cp = spec.container_ports;
    if m.proto != spec.proto || m.container_port < cp.start || m.container_port > cp.end {
        return false;
    }
    if let Some(ip) = spec.host_ip {
        if m.host_ip != ip {
            return false;
        }
    }
    match spec.host_ports {
        Some(h) if h.len() == cp.len() => {
            // One to one: the host port must be the container port's partner.
            m.host_port == h.start + (m.container_port - cp.start)
        }
        Some(h) => m.host_port >= h.start && m.host_port <= h.end,
        None => true,
    }
}

pub mod busy;
mod spec;
#[cfg(test)]
mod tests;

pub use spec::{PortSpec, SpecError};
