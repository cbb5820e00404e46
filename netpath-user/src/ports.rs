//! Published ports: Docker's `-p` syntax, and the mappings a spec resolves to.
//!
//! `[HOSTIP:][HOSTPORT:]CONTAINERPORT[/PROTO]`, where either port may be a range `A-B`:
//! `8000-8002:80-82` maps one to one, `8000-8010:80` takes one free host port of the range,
//! `80` alone (or `HOSTIP::80`) takes an ephemeral host port.
use std::{collections::HashMap, fmt, net::Ipv4Addr, str::FromStr};

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

/// Why a `-p` spec was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("invalid port spec {0:?}: too many colons")]
    TooManyColons(String),
    #[error("invalid port spec {0:?}: no container port")]
    NoContainerPort(String),
    #[error("invalid port {0:?}: ports are numbers from 1 to 65535")]
    BadPort(String),
    #[error("invalid port range {0:?}: start is above end")]
    BackwardsRange(String),
    #[error("invalid host IP {0:?}: expected an IPv4 address")]
    BadHostIp(String),
    #[error("invalid protocol {0:?}: expected tcp or udp")]
    BadProto(String),
    #[error("invalid port spec {0:?}: host range and container range differ in size")]
    UnequalRanges(String),
}

/// A parsed `-p` spec, before host ports are chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// Host address to publish on; `None` is every host address (0.0.0.0).
    pub host_ip: Option<Ipv4Addr>,
    /// Host ports; `None` takes ephemeral ports.
    pub host_ports: Option<PortRange>,
    pub container_ports: PortRange,
    pub proto: Proto,
}

fn parse_port(s: &str) -> Result<u16, SpecError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SpecError::BadPort(s.to_string()));
    }
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(SpecError::BadPort(s.to_string())),
    }
}

fn parse_range(s: &str) -> Result<PortRange, SpecError> {
    let (start, end) = match s.split_once('-') {
        Some((a, b)) => (parse_port(a)?, parse_port(b)?),
        None => {
            let p = parse_port(s)?;
            (p, p)
        }
    };
    if start > end {
        return Err(SpecError::BackwardsRange(s.to_string()));
    }
    Ok(PortRange { start, end })
}

impl FromStr for PortSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        let (rest, proto) = match spec.rsplit_once('/') {
            Some((rest, proto)) => {
                let proto = match proto.to_ascii_lowercase().as_str() {
                    "tcp" => Proto::Tcp,
                    "udp" => Proto::Udp,
                    _ => return Err(SpecError::BadProto(proto.to_string())),
                };
                (rest, proto)
            }
            None => (spec, Proto::Tcp),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, container) = match parts.as_slice() {
            [c] => ("", "", *c),
            [h, c] => ("", *h, *c),
            [ip, h, c] => (*ip, *h, *c),
            _ => return Err(SpecError::TooManyColons(spec.to_string())),
        };
        if container.is_empty() {
            return Err(SpecError::NoContainerPort(spec.to_string()));
        }
        let host_ip = if ip.is_empty() {
            None
        } else {
            let addr = ip
                .parse::<Ipv4Addr>()
                .map_err(|_| SpecError::BadHostIp(ip.to_string()))?;
            (!addr.is_unspecified()).then_some(addr)
        };
        let container_ports = parse_range(container)?;
        let host_ports = if host.is_empty() {
            None
        } else {
            Some(parse_range(host)?)
        };
        if let Some(h) = host_ports {
            if container_ports.len() > 1 && h.len() != container_ports.len() {
                return Err(SpecError::UnequalRanges(spec.to_string()));
            }
        }
        Ok(PortSpec {
            host_ip,
            host_ports,
            container_ports,
            proto,
        })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        match (self.host_ip, self.host_ports) {
            (_, Some(h)) => write!(f, "{h}:")?,
            (Some(_), None) => f.write_str(":")?,
            (None, None) => {}
        }
        write!(f, "{}/{}", self.container_ports, self.proto)
    }
}

/// One published port: host address and port to endpoint port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    /// 0.0.0.0 publishes on every host address.
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl PortMapping {
    /// Two mappings cannot both exist: same protocol and host port, and the same host
    /// address or either on every address (what makes Docker say "port is already allocated").
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && (self.host_ip == other.host_ip
                || self.host_ip.is_unspecified()
                || other.host_ip.is_unspecified())
    }
}

impl fmt::Display for PortMapping {
    /// `docker port` style: `80/tcp -> 0.0.0.0:8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} -> {}:{}",
            self.container_port, self.proto, self.host_ip, self.host_port
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
    #[error("Bind for {0}:{1} failed: port is already allocated")]
    Allocated(Ipv4Addr, u16),
    #[error("Bind for {0}:{1} failed: address already in use (a process of the host has it)")]
    InUse(Ipv4Addr, u16),
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
pub struct PortIndex(HashMap<(Proto, u16), Vec<Ipv4Addr>>);

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

/// Resolves `spec` into concrete mappings, given every mapping already published (`taken`,
/// which the caller extends with the result before resolving the next spec of a request) and
/// what host processes hold (`busy`). Explicit ports must be free and outside the outbound
/// NAT range; chosen ones skip both. Linear in the ports asked for.
pub fn resolve(
    spec: &PortSpec,
    taken: &PortIndex,
    busy: Busy<'_>,
) -> Result<Vec<PortMapping>, AllocError> {
    let host_ip = spec.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mapping = |host_port, container_port| PortMapping {
        host_ip,
        host_port,
        container_port,
        proto: spec.proto,
    };
    let mut mine = PortIndex::default();
    let mut out = Vec::new();
    match spec.host_ports {
        Some(h) if h.len() == spec.container_ports.len() => {
            for (hp, cp) in h.iter().zip(spec.container_ports.iter()) {
                let m = mapping(hp, cp);
                if OUTBOUND.contains(hp) {
                    return Err(AllocError::Outbound(hp));
                }
                if taken.conflicts(&m) {
                    return Err(AllocError::Allocated(host_ip, hp));
                }
                if busy(&m) {
                    return Err(AllocError::InUse(host_ip, hp));
                }
                out.push(m);
            }
        }
        Some(h) => {
            // One container port, a range of host ports: take the first free one.
            let cp = spec.container_ports.start;
            let m = h
                .iter()
                .filter(|hp| !OUTBOUND.contains(*hp))
                .map(|hp| mapping(hp, cp))
                .find(|m| !taken.conflicts(m) && !busy(m))
                .ok_or_else(|| AllocError::RangeExhausted(h, spec.to_string()))?;
            out.push(m);
        }
        None => {
            // One pass over the ephemeral ports for all container ports of the spec.
            let mut free = ephemeral_ports();
            for cp in spec.container_ports.iter() {
                let m = free
                    .by_ref()
                    .map(|hp| mapping(hp, cp))
                    .find(|m| !taken.conflicts(m) && !mine.conflicts(m) && !busy(m))
                    .ok_or_else(|| {
                        AllocError::RangeExhausted(
                            PortRange {
                                start: EPHEMERAL_START,
                                end: EPHEMERAL_END,
                            },
                            spec.to_string(),
                        )
                    })?;
                mine.insert(&m);
                out.push(m);
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
#[cfg(test)]
mod tests;
