//! Datagrams larger than the path: fragmented on the wire, translated fragment by fragment (a
//! published port's DNAT and its replies, an outbound flow and its replies, a big ping through
//! outbound NAT, NAT46 both ways), reassembled by whoever receives them; refused as a whole
//! when the policy refuses the first. A user checks that the whole datagram arrived, byte for byte, from the
//! address it should come from. Real UDP sockets across namespaces, TC and XDP, IPv4 and
//! IPv6.
mod common;

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    time::Duration,
};

use common::{ping_of, wait_until, Netns, Topo, HOST, OUTSIDE};

/// Bigger than the uplink's 1500-byte MTU twice over: three fragments each way it goes.
const BIG: usize = 4000;

/// The bytes of a big datagram: no two fragments alike.
fn big_payload() -> Vec<u8> {
    (0..BIG).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// FNV-1a of `bytes`: what the server answers about a datagram, to compare with the sent one.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A UDP server in `ns` (`[::]`, both families) answering each datagram with
/// "PEER LENGTH FNV", a short reply.
fn measuring_server(ns: &Netns, port: u16) {
    let s = ns.run(|| UdpSocket::bind(("::", port)).expect("bind udp"));
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, peer)) = s.recv_from(&mut buf) {
            let reply = format!("{peer} {n} {:x}", fnv(&buf[..n]));
            let _ = s.send_to(reply.as_bytes(), peer);
        }
    });
}

/// A UDP server in `ns` (`[::]`, both families) answering each datagram with the big payload.
fn big_server(ns: &Netns, port: u16) {
    let s = ns.run(|| UdpSocket::bind(("::", port)).expect("bind udp"));
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((_, peer)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&big_payload(), peer);
        }
    });
}

/// `msg` sent from `ns` to `to:port` on a connected socket, and the reply; tried until one
/// comes back within the test's timeout (neighbours resolve, an agent notices an address).
fn exchange(ns: &Netns, to: IpAddr, port: u16, msg: &[u8]) -> Vec<u8> {
    let any: SocketAddr = match to {
        IpAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
        IpAddr::V6(_) => "[::]:0".parse().unwrap(),
    };
    let s = ns.run(|| UdpSocket::bind(any)).expect("bind");
    s.connect((to, port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let mut reply = Vec::new();
    wait_until(
        &format!("a reply from {to}:{port}"),
        Duration::from_secs(10),
        || {
            s.send(msg).expect("send");
            match s.recv(&mut buf) {
                Ok(n) => {
                    reply = buf[..n].to_vec();
                    true
                }
                Err(_) => false,
            }
        },
    );
    reply
}

/// `client` (in `ns`) sends a big datagram to `to:port`, a published port or an endpoint's
/// address: the server gets all of it, from the client's own address.
fn a_big_datagram_arrives(ns: &Netns, to: IpAddr, port: u16, client: IpAddr) {
    let payload = big_payload();
    let reply = exchange(ns, to, port, &payload);
    let reply = String::from_utf8(reply).expect("a text reply");
    let mut words = reply.split(' ');
    let peer: SocketAddr = words.next().unwrap().parse().expect("the peer");
    // A dual-stack socket names an IPv4 peer as a mapped address.
    let peer_ip = match peer.ip() {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
        a => a,
    };
    assert_eq!(
        peer_ip, client,
        "the server sees the client's address: {reply}"
    );
    assert_eq!(words.next(), Some(BIG.to_string().as_str()), "{reply}");
    assert_eq!(
        words.next(),
        Some(format!("{:x}", fnv(&payload)).as_str()),
        "every byte as sent: {reply}"
    );
}

/// A client outside asks a published port whose server answers with a big datagram: all of
/// it comes back, from the port the client asked (a connected socket takes nothing else).
fn a_big_reply_comes_back_from_a_published_port(t: &Topo, host: IpAddr, port: u16) {
    let reply = exchange(&t.outside, host, port, b"give");
    assert_eq!(reply.len(), BIG, "the whole reply");
    assert!(reply == big_payload(), "every byte as sent");
}

/// Each big datagram's later fragments (two of each: a request and a reply to a published port,
/// a request and a reply through outbound NAT, a ping and its answer) were translated by its
/// first's ports.
fn later_fragments_were_translated(t: &Topo) {
    let s = t.stats();
    assert!(
        s["Counters"]["fragment_nat"].as_u64().unwrap() >= 6 * 2,
        "{s}"
    );
}

/// An endpoint asks a server outside, which answers with a big datagram: all of it comes
/// back through the endpoint's outbound NAT.
fn a_big_reply_reaches_an_outbound_endpoint(ep: &Netns, server: IpAddr) {
    let reply = exchange(ep, server, 9100, b"give");
    assert_eq!(reply.len(), BIG, "the whole reply");
    assert!(reply == big_payload(), "every byte as sent");
}

/// Every endpoint's egress denied (a NetworkPolicy of no egress rule): a big datagram's first
/// fragment makes no outbound flow, and its later fragments go no further than it did
/// (`drop_fragment`), none of it reaching the server outside.
fn later_fragments_go_no_further_than_a_refused_first(t: &Topo, ep: &Netns, server: IpAddr) {
    t.apply_policies(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: no-egress, namespace: default}\nspec: {podSelector: {}, policyTypes: [Egress]}\n",
    );
    let dropped = || t.stats()["Counters"]["drop_fragment"].as_u64().unwrap();
    let before = dropped();
    let any: SocketAddr = match server {
        IpAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
        IpAddr::V6(_) => "[::]:0".parse().unwrap(),
    };
    let s = ep.run(|| UdpSocket::bind(any)).expect("bind");
    wait_until(
        "the later fragments of a refused datagram dropped",
        Duration::from_secs(10),
        || {
            // Refused: the send itself may report the policy's drop.
            let _ = s.send_to(&big_payload(), (server, 9300));
            dropped() >= before + 2
        },
    );
    let mut buf = [0u8; 64];
    assert!(
        s.set_read_timeout(Some(Duration::from_millis(300))).is_ok() && s.recv(&mut buf).is_err(),
        "no answer: the refused datagram reached no server"
    );
}

/// Where one family's run sends its datagrams: the host's uplink address, the client outside,
/// and the endpoints `web` (published, serving) and `db` (its peer on network `a`).
struct Addrs {
    host: IpAddr,
    outside: IpAddr,
    web: IpAddr,
    db: IpAddr,
}

/// Every way a big datagram goes, on network `a` (made by the caller) with `a`'s addresses.
fn big_datagrams_go_every_way(t: &Topo, a: Addrs) {
    let flag = if a.web.is_ipv4() { "--ip" } else { "--ip6" };
    let (web_ip, db_ip) = (a.web.to_string(), a.db.to_string());
    let web = t.endpoint(
        "web",
        &[
            "--network",
            "a",
            flag,
            &web_ip,
            "-p",
            "5353:53/udp",
            "-p",
            "5454:54/udp",
        ],
    );
    let db = t.endpoint("db", &["--network", "a", flag, &db_ip]);
    measuring_server(&web, 53);
    big_server(&web, 54);
    a_big_datagram_arrives(&t.outside, a.host, 5353, a.outside);
    // Between endpoints the fragments go as they are, handed back by the fragment program.
    a_big_datagram_arrives(&db, a.web, 53, a.db);
    a_big_reply_comes_back_from_a_published_port(t, a.host, 5454);
    big_server(&t.outside, 9100);
    a_big_reply_reaches_an_outbound_endpoint(&web, a.outside);
    // An endpoint's own big datagram to the outside leaves with the host's address, all of it.
    measuring_server(&t.outside, 9200);
    a_big_datagram_arrives(&web, a.outside, 9200, a.host);
    // A big ping through outbound NAT, and its big answer: the echo's identifier is its port.
    wait_until("a big ping answered", Duration::from_secs(10), || {
        ping_of(&web, a.outside, BIG)
    });
    later_fragments_were_translated(t);
    measuring_server(&t.outside, 9300);
    later_fragments_go_no_further_than_a_refused_first(t, &web, a.outside);
}

fn ipv4(t: Topo) {
    t.ok(&common::words("network create a --subnet 10.64.2.0/24"));
    let addrs = Addrs {
        host: HOST.into(),
        outside: OUTSIDE.into(),
        web: "10.64.2.10".parse().unwrap(),
        db: "10.64.2.11".parse().unwrap(),
    };
    big_datagrams_go_every_way(&t, addrs);
}

/// NAT46: an IPv6 client's big datagram to a port published by an endpoint of IPv4 alone
/// arrives whole, from the gateway (the client it sees); the endpoint's big answer comes
/// back whole as IPv6 fragments. Its first try's first fragment, 28 bytes longer as IPv6,
/// would not fit the uplink: the endpoint is told the path's MTU (fragmentation needed) and
/// the client's next try is answered in fragments that fit.
fn big_datagrams_cross_nat46(t: &Topo, host: IpAddr) {
    t.ok(&common::words("network create b --subnet 10.64.3.0/24"));
    let web4 = t.endpoint(
        "web4",
        &["--network", "b", "-p", "5355:53/udp", "-p", "5455:54/udp"],
    );
    measuring_server(&web4, 53);
    big_server(&web4, 54);
    let translated = || t.stats()["Counters"]["fragment_nat"].as_u64().unwrap();
    let before = translated();
    a_big_datagram_arrives(&t.outside, host, 5355, "10.64.3.1".parse().unwrap());
    a_big_reply_comes_back_from_a_published_port(t, host, 5455);
    // Two later fragments each way, at least, translated by their first's flow.
    assert!(translated() >= before + 4, "{}", t.stats());
}

fn ipv6(t: Topo) {
    t.ipv6_uplink();
    t.ok(&common::words(
        "network create a --ipv6 --subnet 10.64.1.0/24 --subnet fd00:64:1::/64",
    ));
    let addrs = Addrs {
        host: "fd00:77::2".parse().unwrap(),
        outside: "fd00:77::1".parse().unwrap(),
        web: "fd00:64:1::10".parse().unwrap(),
        db: "fd00:64:1::11".parse().unwrap(),
    };
    let host = addrs.host;
    big_datagrams_go_every_way(&t, addrs);
    big_datagrams_cross_nat46(&t, host);
}

#[test]
fn big_udp_datagrams_cross_published_ports_and_outbound_nat_on_tc() {
    ipv4(Topo::new());
}

#[test]
fn big_udp_datagrams_cross_published_ports_and_outbound_nat_on_xdp() {
    ipv4(Topo::with_xdp("native"));
}

#[test]
fn big_ipv6_udp_datagrams_cross_published_ports_and_outbound_nat_on_tc() {
    ipv6(Topo::new());
}

#[test]
fn big_ipv6_udp_datagrams_cross_published_ports_and_outbound_nat_on_xdp() {
    ipv6(Topo::with_xdp("native"));
}
