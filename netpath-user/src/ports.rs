//! Published ports: Docker's `-p` syntax, and the mappings a spec resolves to.
//!
//! `[HOSTIP:][HOSTPORT:]CONTAINERPORT[/PROTO]`, where either port may be a range `A-B`:
//! `8000-8002:80-82` maps one to one, `8000-8010:80` takes one free host port of the range,
//! `80` alone (or `HOSTIP::80`) takes an ephemeral host port.
use std::{fmt, net::Ipv4Addr, str::FromStr};

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

/// Error when a spec cannot be satisfied given what is already published.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllocError {
    #[error("Bind for {0}:{1} failed: port is already allocated")]
    Allocated(Ipv4Addr, u16),
    #[error("no free host port in {0} for {1}")]
    RangeExhausted(PortRange, String),
}

/// Resolves `spec` into concrete mappings, given every mapping already published (`taken`,
/// plus the ones resolved earlier in the same request, which the caller appends).
pub fn resolve(spec: &PortSpec, taken: &[PortMapping]) -> Result<Vec<PortMapping>, AllocError> {
    let host_ip = spec.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mapping = |host_port, container_port| PortMapping {
        host_ip,
        host_port,
        container_port,
        proto: spec.proto,
    };
    let free = |m: &PortMapping, also: &[PortMapping]| {
        !taken.iter().chain(also).any(|t| t.conflicts_with(m))
    };
    let mut out = Vec::new();
    match spec.host_ports {
        Some(h) if h.len() == spec.container_ports.len() => {
            for (hp, cp) in h.iter().zip(spec.container_ports.iter()) {
                let m = mapping(hp, cp);
                if !free(&m, &out) {
                    return Err(AllocError::Allocated(host_ip, hp));
                }
                out.push(m);
            }
        }
        Some(h) => {
            // One container port, a range of host ports: take the first free one.
            let cp = spec.container_ports.start;
            let m = h
                .iter()
                .map(|hp| mapping(hp, cp))
                .find(|m| free(m, &[]))
                .ok_or_else(|| AllocError::RangeExhausted(h, spec.to_string()))?;
            out.push(m);
        }
        None => {
            let range = PortRange {
                start: EPHEMERAL_START,
                end: EPHEMERAL_END,
            };
            for cp in spec.container_ports.iter() {
                let m = range
                    .iter()
                    .map(|hp| mapping(hp, cp))
                    .find(|m| free(m, &out))
                    .ok_or_else(|| AllocError::RangeExhausted(range, spec.to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<PortSpec, SpecError> {
        s.parse()
    }

    fn r(start: u16, end: u16) -> PortRange {
        PortRange { start, end }
    }

    #[test]
    fn accepts_what_docker_accepts() {
        let ok: &[(&str, Option<Ipv4Addr>, Option<PortRange>, PortRange, Proto)] = &[
            ("80", None, None, r(80, 80), Proto::Tcp),
            ("8080:80", None, Some(r(8080, 8080)), r(80, 80), Proto::Tcp),
            ("8080:80/udp", None, Some(r(8080, 8080)), r(80, 80), Proto::Udp),
            ("8080:80/TCP", None, Some(r(8080, 8080)), r(80, 80), Proto::Tcp),
            (
                "127.0.0.1:8080:80",
                Some(Ipv4Addr::LOCALHOST),
                Some(r(8080, 8080)),
                r(80, 80),
                Proto::Tcp,
            ),
            ("127.0.0.1::80", Some(Ipv4Addr::LOCALHOST), None, r(80, 80), Proto::Tcp),
            ("0.0.0.0:8080:80", None, Some(r(8080, 8080)), r(80, 80), Proto::Tcp),
            (":80", None, None, r(80, 80), Proto::Tcp),
            ("8000-8002:80-82", None, Some(r(8000, 8002)), r(80, 82), Proto::Tcp),
            ("8000-8010:80", None, Some(r(8000, 8010)), r(80, 80), Proto::Tcp),
            ("80-82", None, None, r(80, 82), Proto::Tcp),
            ("65535:65535/udp", None, Some(r(65535, 65535)), r(65535, 65535), Proto::Udp),
            ("1:1", None, Some(r(1, 1)), r(1, 1), Proto::Tcp),
        ];
        for (s, ip, host, container, proto) in ok {
            let spec = p(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(spec.host_ip, *ip, "{s}");
            assert_eq!(spec.host_ports, *host, "{s}");
            assert_eq!(spec.container_ports, *container, "{s}");
            assert_eq!(spec.proto, *proto, "{s}");
        }
    }

    #[test]
    fn rejects_what_docker_rejects() {
        let bad: &[(&str, fn(&SpecError) -> bool)] = &[
            ("", |e| matches!(e, SpecError::NoContainerPort(_))),
            ("8080:", |e| matches!(e, SpecError::NoContainerPort(_))),
            ("0", |e| matches!(e, SpecError::BadPort(_))),
            ("0:80", |e| matches!(e, SpecError::BadPort(_))),
            ("65536:80", |e| matches!(e, SpecError::BadPort(_))),
            ("80:70000", |e| matches!(e, SpecError::BadPort(_))),
            ("-1", |e| matches!(e, SpecError::BadPort(_))),
            ("abc", |e| matches!(e, SpecError::BadPort(_))),
            ("80/sctpx", |e| matches!(e, SpecError::BadProto(_))),
            ("80/", |e| matches!(e, SpecError::BadProto(_))),
            ("82-80", |e| matches!(e, SpecError::BackwardsRange(_))),
            ("8000-8001:80-82", |e| matches!(e, SpecError::UnequalRanges(_))),
            ("8000:80-82", |e| matches!(e, SpecError::UnequalRanges(_))),
            ("1.2.3:80:80", |e| matches!(e, SpecError::BadHostIp(_))),
            ("localhost:80:80", |e| matches!(e, SpecError::BadHostIp(_))),
            ("1:2:3:4", |e| matches!(e, SpecError::TooManyColons(_))),
            ("::1:80:80", |e| matches!(e, SpecError::TooManyColons(_))),
            (" 80", |e| matches!(e, SpecError::BadPort(_))),
            ("+80", |e| matches!(e, SpecError::BadPort(_))),
        ];
        for (s, want) in bad {
            match p(s) {
                Ok(spec) => panic!("{s:?} accepted as {spec:?}"),
                Err(e) => assert!(want(&e), "{s:?}: unexpected {e:?}"),
            }
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["80/tcp", "8080:80/udp", "127.0.0.1:8080:80/tcp", "127.0.0.1::80/tcp", "8000-8002:80-82/tcp"] {
            assert_eq!(p(s).unwrap().to_string(), s);
        }
    }

    fn m(ip: [u8; 4], hp: u16, cp: u16, proto: Proto) -> PortMapping {
        PortMapping {
            host_ip: ip.into(),
            host_port: hp,
            container_port: cp,
            proto,
        }
    }

    #[test]
    fn resolves_ranges_one_to_one() {
        let got = resolve(&p("8000-8002:80-82").unwrap(), &[]).unwrap();
        assert_eq!(
            got,
            vec![
                m([0; 4], 8000, 80, Proto::Tcp),
                m([0; 4], 8001, 81, Proto::Tcp),
                m([0; 4], 8002, 82, Proto::Tcp)
            ]
        );
    }

    #[test]
    fn host_range_takes_first_free_port() {
        let taken = [m([0; 4], 8000, 80, Proto::Tcp), m([0; 4], 8001, 81, Proto::Tcp)];
        let got = resolve(&p("8000-8010:90").unwrap(), &taken).unwrap();
        assert_eq!(got, vec![m([0; 4], 8002, 90, Proto::Tcp)]);
        // A full range is an error.
        let err = resolve(&p("8000-8001:90").unwrap(), &taken).unwrap_err();
        assert!(matches!(err, AllocError::RangeExhausted(..)));
    }

    #[test]
    fn ephemeral_ports_are_distinct_and_in_range() {
        let taken = [m([0; 4], EPHEMERAL_START, 80, Proto::Tcp)];
        let got = resolve(&p("80-81").unwrap(), &taken).unwrap();
        assert_eq!(got.len(), 2);
        assert_ne!(got[0].host_port, got[1].host_port);
        for g in &got {
            assert!((EPHEMERAL_START + 1..=EPHEMERAL_END).contains(&g.host_port));
        }
    }

    #[test]
    fn conflicts_follow_bind_rules() {
        let any = m([0; 4], 8080, 80, Proto::Tcp);
        let lo = m([127, 0, 0, 1], 8080, 80, Proto::Tcp);
        let other = m([10, 0, 0, 5], 8080, 80, Proto::Tcp);
        let udp = m([0; 4], 8080, 80, Proto::Udp);
        assert!(any.conflicts_with(&lo));
        assert!(lo.conflicts_with(&any));
        assert!(!lo.conflicts_with(&other));
        assert!(!any.conflicts_with(&udp));
        let err = resolve(&p("8080:81").unwrap(), &[lo]).unwrap_err();
        assert_eq!(err, AllocError::Allocated(Ipv4Addr::UNSPECIFIED, 8080));
        assert_eq!(
            err.to_string(),
            "Bind for 0.0.0.0:8080 failed: port is already allocated"
        );
        assert!(resolve(&p("10.0.0.5:8080:80").unwrap(), &[lo]).is_ok());
    }

    #[test]
    fn unpublish_matching() {
        let a = m([0; 4], 8001, 81, Proto::Tcp);
        assert!(spec_matches(&p("8000-8002:80-82").unwrap(), &a));
        assert!(spec_matches(&p("81").unwrap(), &a));
        assert!(!spec_matches(&p("81/udp").unwrap(), &a));
        assert!(!spec_matches(&p("8000:81").unwrap(), &a));
        assert!(!spec_matches(&p("127.0.0.1:8001:81").unwrap(), &a));
    }
}
