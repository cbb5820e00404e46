//! The host's resolvers: where queries that are not ours go (`/etc/resolv.conf` as the agent
//! sees it, re-read when it changes, or `--dns`), what endpoints' resolv.conf files say, and
//! forwarding itself: UDP from a fresh port per query, the same server again over TCP when
//! the answer was truncated, the next server on a timeout, and the upstream's answer passed
//! back as it came (errors included).
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use parking_lot::Mutex;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
};

use crate::model::DnsSettings;

/// How long one upstream server gets to answer.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the host's resolv.conf is checked for changes, at most.
const RECHECK: Duration = Duration::from_secs(1);

/// The host's resolver configuration, re-read when the file changes.
pub struct HostResolv {
    path: PathBuf,
    /// `--dns`: these instead of the file's nameservers.
    fixed: Vec<IpAddr>,
    cache: Mutex<Cached>,
}

struct Cached {
    checked: Option<Instant>,
    mtime: Option<SystemTime>,
    conf: resolv_conf::Config,
}

impl HostResolv {
    /// The configuration in `path` (normally /etc/resolv.conf); `fixed` servers, when any,
    /// replace its nameservers.
    pub fn new(path: impl Into<PathBuf>, fixed: Vec<IpAddr>) -> HostResolv {
        HostResolv {
            path: path.into(),
            fixed,
            cache: Mutex::new(Cached {
                checked: None,
                mtime: None,
                conf: resolv_conf::Config::new(),
            }),
        }
    }

    /// The configuration as the file says now (an unreadable file counts as empty).
    pub fn conf(&self) -> resolv_conf::Config {
        let mut c = self.cache.lock();
        if c.checked.is_none_or(|t| t.elapsed() >= RECHECK) {
            c.checked = Some(Instant::now());
            let mtime = std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .ok();
            if mtime != c.mtime {
                c.mtime = mtime;
                c.conf = std::fs::read(&self.path)
                    .ok()
                    .map(|b| resolv_conf::Config::parse_with_errors(&b).0)
                    .unwrap_or_default();
            }
        }
        c.conf.clone()
    }

    /// Where forwarded queries go, minus `own` (the agent's own listeners: no loops).
    pub fn servers(&self, own: &[IpAddr]) -> Vec<SocketAddr> {
        let ips: Vec<IpAddr> = if self.fixed.is_empty() {
            self.conf()
                .nameservers
                .into_iter()
                .map(IpAddr::from)
                .collect()
        } else {
            self.fixed.clone()
        };
        ips.into_iter()
            .filter(|ip| !own.contains(ip))
            .map(|ip| SocketAddr::new(ip, 53))
            .collect()
    }

    /// The resolv.conf of an endpoint whose own settings are `dns`, using `server` (its
    /// network's DNS) unless it names servers: the host's search domains and options unless
    /// it names its own.
    pub fn endpoint_conf(&self, dns: &DnsSettings, server: IpAddr) -> String {
        let host = self.conf();
        let mut c = resolv_conf::Config::new();
        c.nameservers = if dns.servers.is_empty() {
            vec![server.into()]
        } else {
            dns.servers.iter().map(|s| (*s).into()).collect()
        };
        match (dns.search.is_empty(), host.get_search()) {
            (false, _) => c.set_search(dns.search.clone()),
            (true, Some(s)) => c.set_search(s.clone()),
            (true, None) => {
                if let Some(d) = host.get_domain() {
                    c.set_domain(d.clone());
                }
            }
        }
        let options = if dns.options.is_empty() {
            host
        } else {
            resolv_conf::Config::parse(format!("options {}\n", dns.options.join(" ")))
                .unwrap_or_default()
        };
        c.ndots = options.ndots;
        c.timeout = options.timeout;
        c.attempts = options.attempts;
        c.rotate = options.rotate;
        c.no_check_names = options.no_check_names;
        c.edns0 = options.edns0;
        c.single_request = options.single_request;
        c.single_request_reopen = options.single_request_reopen;
        c.no_tld_query = options.no_tld_query;
        c.use_vc = options.use_vc;
        c.trust_ad = options.trust_ad;
        c.no_aaaa = options.no_aaaa;
        c.to_string()
    }
}

/// Why a query could not be forwarded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForwardError {
    #[error("no upstream DNS server")]
    NoServers,
    #[error("no upstream DNS server answered")]
    NoAnswer,
}

/// Forwards `query` to `servers` in turn: over UDP unless `tcp`, then over TCP to the same
/// server when the UDP answer was truncated. The first answer whose id matches is returned as
/// it came.
pub async fn forward(
    servers: &[SocketAddr],
    query: &[u8],
    tcp: bool,
) -> Result<Vec<u8>, ForwardError> {
    if servers.is_empty() {
        return Err(ForwardError::NoServers);
    }
    for server in servers {
        let answer = if tcp {
            over_tcp(*server, query).await
        } else {
            match over_udp(*server, query).await {
                Some(a) if truncated(&a) => over_tcp(*server, query).await.or(Some(a)),
                other => other,
            }
        };
        if let Some(a) = answer {
            return Ok(a);
        }
    }
    Err(ForwardError::NoAnswer)
}

fn truncated(answer: &[u8]) -> bool {
    answer.len() > 2 && answer[2] & 0x02 != 0
}

fn same_id(query: &[u8], answer: &[u8]) -> bool {
    answer.len() >= 12 && query.len() >= 2 && answer[..2] == query[..2]
}

async fn over_udp(server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).await.ok()?;
    sock.connect(server).await.ok()?;
    sock.send(query).await.ok()?;
    let mut buf = vec![0u8; 65535];
    let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        if same_id(query, &buf[..n]) {
            buf.truncate(n);
            return Some(buf);
        }
    }
}

async fn over_tcp(server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(query.len()).ok()?;
    let exchange = async {
        let mut s = TcpStream::connect(server).await.ok()?;
        let mut msg = len.to_be_bytes().to_vec();
        msg.extend_from_slice(query);
        s.write_all(&msg).await.ok()?;
        let n = s.read_u16().await.ok()?;
        let mut buf = vec![0u8; usize::from(n)];
        s.read_exact(&mut buf).await.ok()?;
        same_id(query, &buf).then_some(buf)
    };
    tokio::time::timeout(UPSTREAM_TIMEOUT, exchange)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's resolvers as `text` says, and the directory their file is in.
    fn host(text: &str) -> (HostResolv, crate::scratch::ScratchDir) {
        let dir = crate::scratch::ScratchDir::new("resolv");
        let path = dir.join("resolv.conf");
        std::fs::write(&path, text).unwrap();
        (HostResolv::new(path, Vec::new()), dir)
    }

    #[test]
    fn endpoints_get_the_gateway_and_the_hosts_search_and_options() {
        let (h, _dir) = host(
            "nameserver 192.0.2.53\nsearch corp.example lab.example\noptions ndots:3 timeout:2\n",
        );
        let gw = Ipv4Addr::new(10, 1, 0, 1);
        let conf = h.endpoint_conf(&DnsSettings::default(), gw.into());
        let parsed = resolv_conf::Config::parse(&conf).unwrap();
        assert_eq!(parsed.nameservers, vec![gw.into()]);
        assert_eq!(
            parsed.get_search(),
            Some(&vec!["corp.example".to_string(), "lab.example".to_string()])
        );
        assert_eq!((parsed.ndots, parsed.timeout), (3, 2));
        // Its own settings win.
        let own = DnsSettings {
            servers: vec![Ipv4Addr::new(9, 9, 9, 9).into()],
            search: vec!["mine.example".into()],
            options: vec!["ndots:1".into(), "rotate".into()],
        };
        let parsed = resolv_conf::Config::parse(h.endpoint_conf(&own, gw.into())).unwrap();
        assert_eq!(parsed.nameservers, vec![Ipv4Addr::new(9, 9, 9, 9).into()]);
        assert_eq!(parsed.get_search(), Some(&vec!["mine.example".to_string()]));
        assert!(parsed.rotate && parsed.ndots == 1 && parsed.timeout == 5);
        // Upstreams are the file's, minus the agent's own addresses.
        let (h, _dir) = host("nameserver 10.1.0.1\nnameserver 192.0.2.53\n");
        assert_eq!(
            h.servers(&[gw.into()]),
            vec!["192.0.2.53:53".parse().unwrap()]
        );
    }

    #[test]
    fn a_changed_file_is_read_again() {
        let (h, _dir) = host("nameserver 192.0.2.1\n");
        assert_eq!(h.servers(&[]), vec!["192.0.2.1:53".parse().unwrap()]);
        std::fs::write(&h.path, "nameserver 192.0.2.2\n").unwrap();
        // Make the change visible now: a later mtime, and the recheck interval passed.
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&h.path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        h.cache.lock().checked = None;
        assert_eq!(h.servers(&[]), vec!["192.0.2.2:53".parse().unwrap()]);
        let _ = std::fs::remove_file(&h.path); // a test's scratch: what is left is harmless
    }
}
