//! Docker's `-p` syntax parsed: `[HOSTIP:][HOSTPORT:]CONTAINERPORT[/PROTO]`, an IPv6 host
//! address in brackets.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use super::{PortRange, Proto};

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
    #[error("invalid host IP {0:?}: expected an IP address (IPv6 in brackets: [::1])")]
    BadHostIp(String),
    #[error("invalid protocol {0:?}: expected tcp or udp")]
    BadProto(String),
    #[error("invalid port spec {0:?}: host range and container range differ in size")]
    UnequalRanges(String),
}

/// A parsed `-p` spec, before host ports are chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// Host address to publish on (`0.0.0.0`, `[::]`: every address of that family); `None`
    /// is every host address of both families.
    pub host_ip: Option<IpAddr>,
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
        // `[IPV6]:HOSTPORT:CONTAINERPORT`: the brackets hold the colons of the address.
        let (bracketed, rest) = match rest.strip_prefix('[') {
            Some(r) => {
                let (ip, after) = r
                    .split_once("]:")
                    .ok_or_else(|| SpecError::BadHostIp(spec.to_string()))?;
                (Some(ip), after)
            }
            None => (None, rest),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, container) = match (bracketed, parts.as_slice()) {
            (None, [c]) => ("", "", *c),
            (None, [h, c]) => ("", *h, *c),
            (None, [ip, h, c]) => (*ip, *h, *c),
            (Some(ip), [h, c]) => (ip, *h, *c),
            _ => return Err(SpecError::TooManyColons(spec.to_string())),
        };
        if container.is_empty() {
            return Err(SpecError::NoContainerPort(spec.to_string()));
        }
        let host_ip = if ip.is_empty() {
            None
        } else if bracketed.is_some() {
            let addr = ip
                .parse::<Ipv6Addr>()
                .map_err(|_| SpecError::BadHostIp(ip.to_string()))?;
            Some(IpAddr::V6(addr))
        } else {
            let addr = ip
                .parse::<Ipv4Addr>()
                .map_err(|_| SpecError::BadHostIp(ip.to_string()))?;
            Some(IpAddr::V4(addr))
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
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        match (self.host_ip, self.host_ports) {
            (_, Some(h)) => write!(f, "{h}:")?,
            (Some(_), None) => f.write_str(":")?,
            (None, None) => {}
        }
        write!(f, "{}/{}", self.container_ports, self.proto)
    }
}
