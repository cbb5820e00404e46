//! Names end to end: endpoints and aliases resolve on the networks they share and nowhere
//! else, round robin, changes at once, host.docker.internal, reverse names, forwarding to an
//! upstream in the outside namespace (TCP when truncated, errors passed back, resolv.conf
//! re-read), internal networks, resolv.conf files, bad input and floods, and the kernel fast
//! path giving the server's bytes.
mod common;

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, Ipv6Addr, UdpSocket},
    sync::atomic::Ordering,
    time::Duration,
};

use common::{wait_until, Netns, Topo, OUTSIDE};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{rdata::PTR, Name, RData, RecordType},
};
use netpath_user::testing::dns::{
    addresses, ask, ask_tcp, ask_udp, query_bytes, FakeUpstream, BIG, SMALL,
};
use serde_json::Value;

fn inspect(t: &Topo, ep: &str) -> Value {
    serde_json::from_str::<Value>(&t.ok(&["endpoint", "inspect", ep])).unwrap()[0].clone()
}

fn ip_on(t: &Topo, ep: &str, net: &str) -> Ipv4Addr {
    inspect(t, ep)["Networks"][net]["IPAddress"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn gateway(t: &Topo, net: &str) -> Ipv4Addr {
    let v: Value = serde_json::from_str(&t.ok(&["network", "inspect", net])).unwrap();
    v[0]["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn stat(t: &Topo, name: &str) -> u64 {
    t.stats()["Counters"][name].as_u64().unwrap_or(0)
}

fn rcode(m: &Message) -> ResponseCode {
    m.metadata.response_code
}

/// The response code of an A query for `name` from `ns` to `server`.
fn a_rcode(ns: &Netns, server: Ipv4Addr, name: &str) -> ResponseCode {
    rcode(&ask(ns, server, name, RecordType::A))
}

#[test]
fn names_and_aliases_on_shared_networks_only() {
    let t = Topo::new();
    // Names that are no network's go here (and do not exist there either).
    let _upstream = FakeUpstream::start(&t.outside, OUTSIDE);
    t.networks(&[("front", "10.62.1.0/24"), ("back", "10.62.2.0/24")]);
    let f1 = t.endpoint("front1", &["--network", "front"]);
    let _f2 = t.endpoint("front2", &["--network", "front", "--alias", "web"]);
    let _f3 = t.endpoint("front3", &["--network", "front", "--alias", "web"]);
    let b1 = t.endpoint("back1", &["--network", "back"]);
    let m = t.endpoint("both", &["--network", "front"]);
    t.ok(&["network", "connect", "back", "both", "--alias", "api"]);
    let (gw_front, gw_back) = (gateway(&t, "front"), gateway(&t, "back"));
    let front2 = ip_on(&t, "front2", "front");

    // By name and by alias, on a shared network; case does not matter.
    assert_eq!(
        addresses(&ask(&f1, gw_front, "front2", RecordType::A)),
        [front2]
    );
    assert_eq!(
        addresses(&ask(&f1, gw_front, "FRONT2.front", RecordType::A)),
        [front2]
    );
    // A name on a network the asker is not on does not exist for it.
    let r = ask(&f1, gw_front, "back1", RecordType::A);
    assert_eq!(rcode(&r), ResponseCode::NXDomain);
    // An endpoint on both networks sees both, and its alias there.
    assert_eq!(
        addresses(&ask(&m, gw_front, "back1", RecordType::A)),
        [ip_on(&t, "back1", "back")]
    );
    assert_eq!(
        addresses(&ask(&b1, gw_back, "api", RecordType::A)),
        [ip_on(&t, "both", "back")]
    );
    assert_eq!(a_rcode(&f1, gw_front, "api"), ResponseCode::NXDomain);
    // A shared alias: every address, in turning order.
    let webs: BTreeSet<Ipv4Addr> =
        [ip_on(&t, "front2", "front"), ip_on(&t, "front3", "front")].into();
    let orders: BTreeSet<Vec<Ipv4Addr>> = (0..4)
        .map(|_| addresses(&ask(&f1, gw_front, "web", RecordType::A)))
        .collect();
    assert!(orders
        .iter()
        .all(|o| o.iter().copied().collect::<BTreeSet<_>>() == webs));
    assert_eq!(orders.len(), 2, "both orders seen: {orders:?}");
    // The host, a known name's IPv6 (none), a reverse name.
    assert_eq!(
        addresses(&ask(&f1, gw_front, "host.docker.internal", RecordType::A)),
        [gw_front]
    );
    let r = ask(&f1, gw_front, "front2", RecordType::AAAA);
    assert_eq!((rcode(&r), r.answers.len()), (ResponseCode::NoError, 0));
    let [a, b, c, d] = front2.octets();
    let r = ask(
        &f1,
        gw_front,
        &format!("{d}.{c}.{b}.{a}.in-addr.arpa"),
        RecordType::PTR,
    );
    assert_eq!(
        r.answers[0].data,
        RData::PTR(PTR(Name::from_ascii("front2.front.").unwrap()))
    );
    // TTLs as Docker's.
    assert_eq!(
        ask(&f1, gw_front, "front2", RecordType::A).answers[0].ttl,
        600
    );

    // Changes count at once.
    t.ok(&["endpoint", "rm", "front3"]);
    assert_eq!(
        addresses(&ask(&f1, gw_front, "web", RecordType::A)),
        [front2]
    );
    t.ok(&["network", "disconnect", "back", "both"]);
    assert_eq!(a_rcode(&m, gw_front, "back1"), ResponseCode::NXDomain);
    assert_eq!(a_rcode(&b1, gw_back, "api"), ResponseCode::NXDomain);
    t.ok(&["network", "connect", "back", "both"]);
    assert_eq!(
        addresses(&ask(&m, gw_front, "back1", RecordType::A)).len(),
        1
    );

    // Through the resolver of the namespace: its resolv.conf names the gateway.
    let out = f1.exec("getent", &["hosts", "front2"]);
    assert!(out.starts_with(&front2.to_string()), "{out}");
    assert_eq!(
        inspect(&t, "front1")["Dns"]["Servers"][0],
        gw_front.to_string()
    );
    // The kernel answered the plain A queries; the server the rest.
    assert!(stat(&t, "dns_kernel") > 0 && stat(&t, "dns_local") > 0);
}

/// The kernel's fast path and the agent's server give the same bytes, A and AAAA, asked at
/// either gateway (IPv4's or IPv6's); what the kernel does not know, the server answers.
#[test]
fn the_kernel_and_the_server_give_the_same_bytes() {
    let fast = Topo::new();
    let slow = Topo::with_agent_args(&["--dns-fast-path", "false"]);
    let mut answers = Vec::new();
    for t in [&fast, &slow] {
        t.ok(&common::words(
            "network create front --ipv6 --subnet 10.62.1.0/24 --subnet fd00:62:1::/64",
        ));
        let asker = t.endpoint("asker", &["--network", "front"]);
        // Kept until asked about: an endpoint whose namespace is gone is removed (repair).
        let peer = t.endpoint("peer", &["--network", "front", "--alias", "Svc"]);
        // Over IPv4 and over IPv6, to the gateway of each family.
        let mut all = Vec::new();
        let gw6: std::net::IpAddr = "fd00:62:1::1".parse().unwrap();
        for server in [gateway(t, "front").into(), gw6] {
            for qtype in [RecordType::A, RecordType::AAAA] {
                let q = query_bytes(0x4242, "Peer", qtype);
                all.push(ask_udp(&asker, server, &q).unwrap());
            }
        }
        // What the kernel does not answer (a reverse name), at the IPv6 gateway: the server.
        let o = ip_on(t, "peer", "front").octets();
        let rev = format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0]);
        let q = query_bytes(0x4343, &rev, RecordType::PTR);
        let ptr = Message::from_vec(&ask_udp(&asker, gw6, &q).unwrap()).unwrap();
        assert_eq!(ptr.answers.len(), 1, "{ptr:?}");
        answers.push(all);
        drop(peer);
    }
    assert_eq!(answers[0], answers[1], "A, then AAAA, over IPv4 then IPv6");
    assert_eq!(
        answers[0][..2],
        answers[0][2..],
        "the same over either family"
    );
    let aaaa = Message::from_vec(&answers[0][1]).unwrap();
    assert_eq!(aaaa.answers.len(), 1, "{aaaa:?}");
    assert_eq!(
        stat(&fast, "dns_kernel"),
        4,
        "A and AAAA in the kernel, twice"
    );
    assert_eq!(
        stat(&fast, "dns_local"),
        1,
        "the reverse name, by the server"
    );
    assert_eq!(stat(&slow, "dns_kernel"), 0);
    assert_eq!(stat(&slow, "dns_local"), 5);
}

#[test]
fn other_names_go_upstream() {
    let t = Topo::new();
    let upstream = FakeUpstream::start(&t.outside, OUTSIDE);
    t.ok(&["network", "create", "front", "--subnet", "10.62.1.0/24"]);
    t.ok(&common::words(
        "network create vault --subnet 10.62.3.0/24 --internal",
    ));
    let ep = t.endpoint("web", &["--network", "front"]);
    let safe = t.endpoint("safe", &["--network", "vault"]);
    let gw = gateway(&t, "front");

    assert_eq!(
        addresses(&ask(&ep, gw, "small.example", RecordType::A)),
        [SMALL]
    );
    // The upstream's errors come back as they were.
    assert_eq!(a_rcode(&ep, gw, "refused.example"), ResponseCode::Refused);
    assert_eq!(a_rcode(&ep, gw, "nothing.example"), ResponseCode::NXDomain);
    // Too big for UDP: the agent fetches it over TCP, tells the UDP client to ask again
    // over TCP, and answers that in full.
    let q = query_bytes(7, "big.example", RecordType::A);
    let udp = Message::from_vec(&ask_udp(&ep, gw, &q).unwrap()).unwrap();
    assert!(udp.metadata.truncation, "truncated over UDP");
    let tcp = Message::from_vec(&ask_tcp(&ep, gw, &q).unwrap()).unwrap();
    assert_eq!(addresses(&tcp).len(), BIG);
    // Local names over TCP too.
    let q = query_bytes(8, "web", RecordType::A);
    let local = Message::from_vec(&ask_tcp(&ep, gw, &q).unwrap()).unwrap();
    assert_eq!(addresses(&local), [ip_on(&t, "web", "front")]);

    // An internal network answers its names and nothing from outside.
    let before = upstream.queries.load(Ordering::SeqCst);
    let vgw = gateway(&t, "vault");
    assert_eq!(a_rcode(&safe, vgw, "small.example"), ResponseCode::NXDomain);
    assert_eq!(addresses(&ask(&safe, vgw, "safe", RecordType::A)).len(), 1);
    assert_eq!(
        upstream.queries.load(Ordering::SeqCst),
        before,
        "nothing left the network"
    );

    // No upstream answering: SERVFAIL.
    drop(upstream);
    wait_until("the upstream gone", Duration::from_secs(5), || {
        t.outside.run(|| UdpSocket::bind((OUTSIDE, 53))).is_ok()
    });
    let r = ask(&ep, gw, "small.example", RecordType::A);
    assert_eq!(rcode(&r), ResponseCode::ServFail);
    assert!(stat(&t, "dns_upstream_failures") >= 1);
}

/// An upstream resolver of IPv6: the host's resolv.conf naming one, the agent's server
/// forwards to it (over UDP, and TCP for what UDP truncates).
#[test]
fn upstream_resolvers_are_reached_over_ipv6() {
    let t = Topo::new();
    t.ipv6_uplink();
    let upstream = FakeUpstream::start(&t.outside, "fd00:77::1".parse::<Ipv6Addr>().unwrap());
    let host_resolv = format!("/etc/netns/{}/resolv.conf", t.host.name);
    std::fs::write(&host_resolv, "nameserver fd00:77::1\n").unwrap();
    let ep = t.endpoint("web", &[]);
    let gw = gateway(&t, "bridge");
    wait_until(
        "an answer from the IPv6 upstream",
        Duration::from_secs(10),
        || addresses(&ask(&ep, gw, "small.example", RecordType::A)) == [SMALL],
    );
    assert!(upstream.queries.load(Ordering::SeqCst) > 0);
    let q = query_bytes(9, "big.example", RecordType::A);
    let tcp = Message::from_vec(&ask_tcp(&ep, gw, &q).unwrap()).unwrap();
    assert_eq!(addresses(&tcp).len(), BIG, "over TCP to the IPv6 upstream");
}

#[test]
fn resolv_conf_follows_the_host_and_the_endpoint() {
    let t = Topo::new();
    // The agent's resolv.conf, changed in place (the file `ip netns exec` shows it).
    let host_resolv = format!("/etc/netns/{}/resolv.conf", t.host.name);
    std::fs::write(
        &host_resolv,
        format!("nameserver {OUTSIDE}\nsearch corp.example\noptions ndots:2\n"),
    )
    .unwrap();
    // A second resolver outside (its address answered for by the outside namespace).
    t.outside.ip(&["addr", "add", "10.77.0.3/32", "dev", "lo"]);
    let second = FakeUpstream::start(&t.outside, Ipv4Addr::new(10, 77, 0, 3));
    let ep = t.endpoint("web", &[]);
    let conf = std::fs::read_to_string(format!("/etc/netns/{}/resolv.conf", ep.name)).unwrap();
    let gw = gateway(&t, "bridge");
    assert!(conf.contains(&format!("nameserver {gw}")), "{conf}");
    assert!(
        conf.contains("search corp.example") && conf.contains("ndots:2"),
        "{conf}"
    );
    // A new nameserver in the host's file is used once seen.
    std::fs::write(&host_resolv, "nameserver 10.77.0.3\n").unwrap();
    wait_until("the new upstream asked", Duration::from_secs(10), || {
        let r = ask(&ep, gw, "small.example", RecordType::A);
        rcode(&r) == ResponseCode::NoError && second.queries.load(Ordering::SeqCst) > 0
    });
    // The endpoint's own settings win, and show.
    let own = t.endpoint_with(
        "own",
        "--dns 10.77.0.3 --dns-search lab.example --dns-option ndots:1",
    );
    let path = format!("/etc/netns/{}/resolv.conf", own.name);
    let conf = std::fs::read_to_string(&path).unwrap();
    assert!(
        conf.contains("nameserver 10.77.0.3") && conf.contains("search lab.example"),
        "{conf}"
    );
    let v = inspect(&t, "own");
    assert_eq!(v["Dns"]["Search"][0], "lab.example");
    assert_eq!(v["Dns"]["Servers"][0], "10.77.0.3");
    let other = Netns::new("npdns");
    let err = t.refused(&[
        "endpoint",
        "create",
        "bad",
        "--netns",
        &other.path(),
        "--dns-option",
        "ndots:1\nnameserver 6.6.6.6",
    ]);
    assert!(err.contains("invalid DNS option"), "{err}");
    // Removal takes the file.
    t.ok(&["endpoint", "rm", "own"]);
    assert!(!std::path::Path::new(&path).exists());
}

#[test]
fn bad_queries_and_floods() {
    let t = Topo::with_agent_args(&["--dns-rate-limit", "100"]);
    let flooder = t.endpoint("flooder", &[]);
    let good = t.endpoint("good", &[]);
    let gw = gateway(&t, "bridge");
    // Garbage of every length, then a query still answered.
    let sock = flooder.run(|| UdpSocket::bind("0.0.0.0:0")).unwrap();
    sock.connect((gw, 53)).unwrap();
    for i in 0..500usize {
        let junk: Vec<u8> = (0..(i % 600)).map(|_| rand::random::<u8>()).collect();
        // A flood: a datagram the kernel drops (ICMP refused, full buffer) is part of it.
        let _ = sock.send(&junk);
    }
    let mut truncated = query_bytes(9, "good", RecordType::A);
    truncated.truncate(20);
    let r = Message::from_vec(&ask_udp(&good, gw, &truncated).unwrap()).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    assert!(stat(&t, "dns_formerr") >= 1);
    // A flood from one endpoint (AAAA: past the kernel, to the server) is held back; the
    // other endpoint is still answered.
    // The flood goes on until the server has held some back (the socket's buffer drops
    // much of a burst before the server sees it), and the other endpoint is answered during it.
    let q = query_bytes(10, "good", RecordType::AAAA);
    let start = std::time::Instant::now();
    while stat(&t, "dns_rate_limited") == 0 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "a flood of 100+ queries/s was never rate limited: {}",
            t.stats()["Counters"]
        );
        for _ in 0..2_000 {
            // A flood: a datagram the kernel drops (full buffer) is part of it.
            let _ = sock.send(&q);
        }
        let r = ask(&good, gw, "flooder", RecordType::AAAA);
        assert_eq!(rcode(&r), ResponseCode::NoError);
    }
    assert_eq!(
        addresses(&ask(&good, gw, "flooder", RecordType::A)).len(),
        1
    );
}

#[test]
fn port_53_can_be_published_and_the_networks_keep_their_dns() {
    let t = Topo::new();
    let _upstream = FakeUpstream::start(&t.outside, OUTSIDE);
    let dns = t.endpoint("resolver", &["-p", "53:53/udp"]);
    common::udp_server(&dns, 53);
    let other = t.endpoint("client", &[]);
    // From outside, port 53 of the host is the endpoint's.
    let reply = common::udp_request(&t.outside, common::HOST, 53, "hello").unwrap();
    assert!(reply.ends_with("hello"), "{reply}");
    // Endpoints asking their gateway still get the network's DNS, fast path or not.
    let gw = gateway(&t, "bridge");
    let r = ask(&other, gw, "resolver", RecordType::AAAA);
    assert_eq!((rcode(&r), r.answers.len()), (ResponseCode::NoError, 0));
    assert_eq!(
        addresses(&ask(&dns, gw, "client", RecordType::A)),
        [ip_on(&t, "client", "bridge")]
    );
}
