//! DNS for tests: a client that asks from inside a namespace (UDP or TCP), and an upstream
//! resolver in a namespace the test made, answering fixed names (and over UDP, truncating
//! the big one, so the answer needs TCP).
use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use hickory_proto::{
    op::{Message, OpCode, Query, ResponseCode},
    rr::{rdata::A, Name, RData, Record, RecordType},
};

use super::Netns;

/// How long a test waits for an answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// The query for `name`/`qtype` with id `id` (RD set), as bytes.
pub fn query_bytes(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).expect("a name"),
        qtype,
    ));
    m.to_vec().expect("a query")
}

/// Sends `query` from `ns` to `server`:53 over UDP; the answer's bytes.
pub fn ask_udp(ns: &Netns, server: impl Into<IpAddr>, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let server = server.into();
    let any: SocketAddr = match server {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = ns.run(|| UdpSocket::bind(any))?;
    sock.connect((server, 53))?;
    sock.set_read_timeout(Some(Duration::from_millis(700)))?;
    let mut buf = vec![0u8; 65535];
    let mut last = None;
    // Datagrams may be lost while neighbours resolve: a few tries.
    for _ in 0..4 {
        sock.send(query)?;
        match sock.recv(&mut buf) {
            Ok(n) => return Ok(buf[..n].to_vec()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::ErrorKind::TimedOut.into()))
}

/// Sends `query` from `ns` to `server`:53 over TCP; the answer's bytes.
pub fn ask_tcp(ns: &Netns, server: impl Into<IpAddr>, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let addr = SocketAddr::new(server.into(), 53);
    let mut s = ns.run(|| TcpStream::connect_timeout(&addr, ANSWER_TIMEOUT))?;
    s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut msg = (query.len() as u16).to_be_bytes().to_vec();
    msg.extend_from_slice(query);
    s.write_all(&msg)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// Asks `server` from `ns` for `name`/`qtype` over UDP: the answer.
pub fn ask(ns: &Netns, server: impl Into<IpAddr>, name: &str, qtype: RecordType) -> Message {
    let server = server.into();
    let q = query_bytes(rand::random(), name, qtype);
    let a = ask_udp(ns, server, &q).unwrap_or_else(|e| panic!("asking {server} for {name}: {e}"));
    Message::from_vec(&a).expect("a DNS answer")
}

/// The A addresses of an answer, in order.
pub fn addresses(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(A(a)) => Some(a),
            _ => None,
        })
        .collect()
}

/// The AAAA addresses of an answer, in order.
pub fn addresses6(m: &Message) -> Vec<std::net::Ipv6Addr> {
    m.answers
        .iter()
        .filter_map(|r| match r.data {
            RData::AAAA(hickory_proto::rr::rdata::AAAA(a)) => Some(a),
            _ => None,
        })
        .collect()
}

/// A resolver "on the internet", in a test's namespace, on port 53 of `addr`:
/// `small.example` is 192.0.2.7; `big.example` has 60 addresses (over UDP: a truncated
/// answer); `refused.example` is refused; anything else does not exist.
pub struct FakeUpstream {
    /// Queries it received.
    pub queries: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// `small.example`'s address.
pub const SMALL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
/// How many addresses `big.example` has.
pub const BIG: usize = 60;

fn upstream_answer(query: &[u8], udp: bool) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries.first()?.clone();
    let mut r = Message::response(q.metadata.id, OpCode::Query);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.add_query(question.clone());
    let name = question.name().to_ascii().to_ascii_lowercase();
    let a = |ip: Ipv4Addr| Record::from_rdata(question.name().clone(), 300, RData::A(A(ip)));
    match name.as_str() {
        "small.example." => {
            r.add_answer(a(SMALL));
        }
        "big.example." if udp => {
            r.metadata.truncation = true;
        }
        "big.example." => {
            for i in 0..BIG {
                r.add_answer(a(Ipv4Addr::new(198, 51, 100, i as u8 + 1)));
            }
        }
        "refused.example." => r.metadata.response_code = ResponseCode::Refused,
        _ => r.metadata.response_code = ResponseCode::NXDomain,
    }
    r.to_vec().ok()
}

impl FakeUpstream {
    /// Serves on `addr`:53 (UDP and TCP) inside `ns` until dropped.
    pub fn start(ns: &Netns, addr: impl Into<IpAddr>) -> FakeUpstream {
        let addr: IpAddr = addr.into();
        let udp = ns
            .run(|| UdpSocket::bind((addr, 53)))
            .expect("upstream UDP");
        let tcp = ns
            .run(|| TcpListener::bind((addr, 53)))
            .expect("upstream TCP");
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        let queries = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (queries, stop) = (queries.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((n, from)) = udp.recv_from(&mut buf) {
                        queries.fetch_add(1, Ordering::SeqCst);
                        if let Some(a) = upstream_answer(&buf[..n], true) {
                            // The peer may be gone: a server answers whoever is still there.
                            let _ = udp.send_to(&a, from);
                        }
                    }
                }
            });
        }
        {
            let (queries, stop) = (queries.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((mut c, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    queries.fetch_add(1, Ordering::SeqCst);
                    // A socket option that does not take leaves the default: only timing changes.
                    let _ = c.set_nonblocking(false);
                    let _ = c.set_read_timeout(Some(ANSWER_TIMEOUT));
                    let mut len = [0u8; 2];
                    if c.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if c.read_exact(&mut q).is_err() {
                        continue;
                    }
                    if let Some(a) = upstream_answer(&q, false) {
                        let mut out = (a.len() as u16).to_be_bytes().to_vec();
                        out.extend_from_slice(&a);
                        // The peer may be gone: a server answers whoever is still there.
                        let _ = c.write_all(&out);
                    }
                }
            });
        }
        FakeUpstream { queries, stop }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Endpoint `name` of the model on `network` with one interface (eth0) at `ip` and `ip6`,
/// MAC `mac`, answering to `aliases`: the state the tests of names and of the kernel's fast
/// path build.
pub fn endpoint_record(
    name: &str,
    network: &str,
    (ip, ip6): (Ipv4Addr, Option<std::net::Ipv6Addr>),
    mac: [u8; 6],
    aliases: Vec<String>,
) -> crate::model::Endpoint {
    crate::model::Endpoint {
        name: name.into(),
        id: format!("{name:0>64}"),
        netns: format!("/x/{name}").into(),
        attachments: vec![crate::model::Attachment {
            network: network.into(),
            ip: Some(ip),
            ip6,
            mac,
            ifname: "eth0".into(),
            host_ifname: format!("np{name}"),
            aliases,
        }],
        ports: Vec::new(),
        labels: Default::default(),
        netns_id: None,
        dns: Default::default(),
        engine: None,
        namespace: "default".into(),
        named_ports: Vec::new(),
    }
}
