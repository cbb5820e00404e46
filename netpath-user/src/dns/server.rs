//! The DNS server: UDP and TCP on port 53 of every network's gateway, of each family (as
//! aardvark-dns listens), following the networks as they come and go. Each query is decided by
//! [`super::answer`] against the names of the state in force (an index rebuilt when the state
//! changes, so a created, removed, connected or disconnected endpoint counts at once);
//! forwarded ones run on their own task. UDP queries are read and answered a batch per system
//! call. One endpoint's flood cannot starve the others: each asker is rate limited, and
//! forwarded queries in flight are capped.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hickory_proto::op::Message;
use parking_lot::{Mutex, RwLock};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::Semaphore,
    task::JoinHandle,
};
use tracing::{debug, warn};

use super::{
    answer::{self, Asked, Decision, Outcome},
    batch,
    names::Index,
    upstream::{self, HostResolv},
};
use crate::model::State;

/// The DNS port.
pub const PORT: u16 = 53;
/// Forwarded queries in flight at once, over every asker.
const MAX_FORWARDS: usize = 1024;
/// TCP connections served at once.
const MAX_TCP: usize = 256;
/// How long a TCP client may take to send its next query.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// How the server is set up.
#[derive(Clone, Debug)]
pub struct DnsOptions {
    /// Queries per second each asker may send (0: no limit); as many again in a burst.
    pub rate_limit: u32,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions { rate_limit: 5000 }
    }
}

macro_rules! dns_counters {
    ($($(#[doc = $doc:literal])* $field:ident, $name:literal;)*) => {
        /// What the server did, counted (`netpath stats`, metrics).
        #[derive(Debug, Default)]
        pub struct DnsCounters {
            $($(#[doc = $doc])* pub $field: AtomicU64,)*
        }

        impl DnsCounters {
            /// Every counter by its name in `netpath stats`.
            pub fn all(&self) -> Vec<(&'static str, u64)> {
                vec![$(($name, self.$field.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

dns_counters! {
    /// Answered from the asker's networks.
    local, "dns_local";
    /// Names that do not exist for the asker.
    nxdomain, "dns_nxdomain";
    /// Refused: not an endpoint, or not class IN.
    refused, "dns_refused";
    /// Unreadable queries answered FORMERR.
    formerr, "dns_formerr";
    /// Other operations answered NOTIMP.
    notimp, "dns_notimp";
    /// Sent upstream.
    forwarded, "dns_forwarded";
    /// Forwarded but no upstream answered (SERVFAIL).
    upstream_failures, "dns_upstream_failures";
    /// Not DNS queries at all: dropped.
    dropped, "dns_dropped";
    /// Over an asker's rate: dropped.
    rate_limited, "dns_rate_limited";
}

/// A network's listeners on one of its gateways.
struct Listening {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The server; see the module docs.
pub struct DnsServer {
    state: Arc<RwLock<Arc<State>>>,
    /// The index of the state it was built from.
    index: Mutex<(Arc<State>, Arc<Index>)>,
    resolv: Arc<HostResolv>,
    pub counters: DnsCounters,
    rotate: AtomicUsize,
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    forwards: Arc<Semaphore>,
    tcp: Arc<Semaphore>,
    /// By network and gateway.
    listening: Mutex<HashMap<(String, IpAddr), Listening>>,
}

impl DnsServer {
    pub fn new(
        state: Arc<RwLock<Arc<State>>>,
        resolv: Arc<HostResolv>,
        opts: &DnsOptions,
    ) -> Arc<DnsServer> {
        let now = state.read().clone();
        let limiter = NonZeroU32::new(opts.rate_limit).map(|n| {
            RateLimiter::keyed(
                Quota::per_second(n)
                    .allow_burst(n.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN))),
            )
        });
        Arc::new(DnsServer {
            index: Mutex::new((now.clone(), Arc::new(Index::new(&now)))),
            state,
            resolv,
            counters: DnsCounters::default(),
            rotate: AtomicUsize::new(0),
            limiter,
            forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
            tcp: Arc::new(Semaphore::new(MAX_TCP)),
            listening: Mutex::new(HashMap::new()),
        })
    }

    /// The names of the state in force.
    fn index(&self) -> Arc<Index> {
        let now = self.state.read().clone();
        let mut ix = self.index.lock();
        if !Arc::ptr_eq(&ix.0, &now) {
            *ix = (now.clone(), Arc::new(Index::new(&now)));
        }
        ix.1.clone()
    }

    /// Where each network's server listens (their gateways).
    pub fn addresses(&self) -> Vec<(String, IpAddr)> {
        let mut v: Vec<_> = self.listening.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// Listens on every network's gateways (IPv4's and IPv6's), and on nothing else (from
    /// within the runtime).
    pub fn sync_listeners(self: &Arc<Self>, state: &State) {
        let want: std::collections::HashSet<(String, IpAddr)> = state
            .networks
            .values()
            .flat_map(|n| n.gateways().into_iter().map(|gw| (n.name.clone(), gw)))
            .collect();
        self.listening.lock().retain(|at, _| want.contains(at));
        for (net, addr) in want {
            let at = (net, addr);
            if self.listening.lock().contains_key(&at) {
                continue;
            }
            match self.listen(&at.0, addr) {
                Ok(l) => {
                    debug!(network = at.0, %addr, "DNS listening");
                    self.listening.lock().insert(at, l);
                }
                Err(e) => warn!(network = at.0, %addr, "DNS cannot listen: {e}"),
            }
        }
    }

    fn listen(self: &Arc<Self>, net: &str, addr: IpAddr) -> std::io::Result<Listening> {
        let at = SocketAddr::from((addr, PORT));
        let udp = std::net::UdpSocket::bind(at)?;
        udp.set_nonblocking(true)?;
        let udp = Arc::new(UdpSocket::from_std(udp)?);
        let tcp = std::net::TcpListener::bind(at)?;
        tcp.set_nonblocking(true)?;
        let tcp = TcpListener::from_std(tcp)?;
        let tasks = vec![
            tokio::spawn(self.clone().serve_udp(net.to_string(), udp)),
            tokio::spawn(self.clone().serve_tcp(net.to_string(), tcp)),
        ];
        Ok(Listening { tasks })
    }

    /// Whether `from` may ask now.
    fn admit(&self, from: IpAddr) -> bool {
        let ok = self
            .limiter
            .as_ref()
            .is_none_or(|l| l.check_key(&from).is_ok());
        if !ok {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Decides `query` from `from`, asked on `net`, and counts it.
    pub fn decide(&self, query: &[u8], from: IpAddr, net: &str, udp: bool) -> Decision {
        let index = self.index();
        let d = answer::decide(
            query,
            Asked {
                names: &index,
                from,
                network: net,
                rotate: self.rotate.fetch_add(1, Ordering::Relaxed),
                udp,
            },
        );
        let c = &self.counters;
        match d.outcome {
            Outcome::Local => &c.local,
            Outcome::NxDomain => &c.nxdomain,
            Outcome::Refused => &c.refused,
            Outcome::FormErr => &c.formerr,
            Outcome::NotImp => &c.notimp,
            Outcome::Forward => &c.forwarded,
            Outcome::Dropped => &c.dropped,
        }
        .fetch_add(1, Ordering::Relaxed);
        d
    }

    /// The upstream's answer to `query`, or SERVFAIL; over UDP, one too big for the client
    /// is truncated (it asks again over TCP).
    async fn forwarded(&self, query: &[u8], udp: bool) -> Option<Vec<u8>> {
        let own: Vec<IpAddr> = self.addresses().into_iter().map(|(_, a)| a).collect();
        let servers = self.resolv.servers(&own);
        match upstream::forward(&servers, query, !udp).await {
            Ok(a) => {
                let fits = Message::from_vec(query)
                    .map(|q| a.len() <= answer::client_limit(&q))
                    .unwrap_or(false);
                if !udp || fits {
                    return Some(a);
                }
                Message::from_vec(&a).ok()?.truncate().to_vec().ok()
            }
            Err(e) => {
                debug!("forwarding: {e}");
                self.counters
                    .upstream_failures
                    .fetch_add(1, Ordering::Relaxed);
                answer::servfail(query)
            }
        }
    }

    /// Answers the queries on `sock` a batch at a time ([`batch::serve`]); forwarded ones go
    /// on their own tasks.
    async fn serve_udp(self: Arc<Self>, net: String, sock: Arc<UdpSocket>) {
        batch::serve(&sock, |query, from| {
            if !self.admit(from.ip()) {
                return None;
            }
            let d = self.decide(query, from.ip(), &net, true);
            if d.reply.is_none() && d.outcome == Outcome::Forward {
                let Ok(permit) = self.forwards.clone().try_acquire_owned() else {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    return None;
                };
                let (me, sock, query) = (self.clone(), sock.clone(), query.to_vec());
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Some(a) = me.forwarded(&query, true).await {
                        // A reply that cannot be sent is a lost datagram: the asker asks
                        // again.
                        let _ = sock.send_to(&a, from).await;
                    }
                });
            }
            d.reply
        })
        .await;
    }

    async fn serve_tcp(self: Arc<Self>, net: String, listener: TcpListener) {
        loop {
            let (conn, from) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!(network = %net, "DNS accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = self.tcp.clone().try_acquire_owned() else {
                continue;
            };
            let (me, net) = (self.clone(), net.clone());
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = me.tcp_conn(&net, conn, from).await {
                    debug!(network = %net, "DNS over TCP: {e}");
                }
            });
        }
    }

    /// Queries on one TCP connection, each with its 2-byte length, until the client goes.
    async fn tcp_conn(
        &self,
        net: &str,
        mut conn: TcpStream,
        from: SocketAddr,
    ) -> std::io::Result<()> {
        loop {
            let Ok(len) = tokio::time::timeout(TCP_IDLE, conn.read_u16()).await else {
                return Ok(());
            };
            let mut query = vec![0u8; usize::from(len?)];
            tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut query))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            if !self.admit(from.ip()) {
                return Ok(());
            }
            let d = self.decide(&query, from.ip(), net, false);
            let reply = match (d.reply, d.outcome) {
                (Some(r), _) => r,
                (None, Outcome::Forward) => match self.forwarded(&query, false).await {
                    Some(a) => a,
                    None => return Ok(()),
                },
                (None, _) => return Ok(()),
            };
            let Ok(n) = u16::try_from(reply.len()) else {
                return Ok(());
            };
            let mut out = n.to_be_bytes().to_vec();
            out.extend_from_slice(&reply);
            conn.write_all(&out).await?;
        }
    }
}
