//! Networks end to end: isolation between networks, internal networks, icc=false, several
//! networks per endpoint, broadcasts, anti-spoofing, and refused requests — all in namespaces
//! made here, with real sockets.
mod common;

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, UdpSocket},
    time::Duration,
};

use common::{ping, tcp_reachable, tcp_request, tcp_server, Netns, Topo, HOST};
use serde_json::Value;

const SHORT: Duration = Duration::from_millis(700);

fn ip_on(t: &Topo, endpoint: &str, network: &str) -> Ipv4Addr {
    let v: Value = serde_json::from_str(&t.ok(&["endpoint", "inspect", endpoint])).unwrap();
    v[0]["Networks"][network]["IPAddress"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Every (source, destination address) pair, checked with TCP and ICMP in parallel.
fn matrix(
    eps: &BTreeMap<&str, Netns>,
    targets: &[(&str, Ipv4Addr)],
) -> BTreeMap<(String, String), (bool, bool)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = eps
            .iter()
            .flat_map(|(src, ns)| {
                targets.iter().map(move |(label, ip)| {
                    let ip = *ip;
                    s.spawn(move || {
                        let tcp = tcp_reachable(ns, ip, 80, SHORT);
                        let icmp = ping(ns, ip);
                        ((src.to_string(), label.to_string()), (tcp, icmp))
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn isolation_matrix_with_internal_and_multi_network_endpoints() {
    let t = Topo::new();
    t.networks(&[("a", "10.10.1.0/24"), ("b", "10.10.2.0/24")]);
    t.ok(&common::words(
        "network create c --subnet 10.10.3.0/24 --internal",
    ));
    let mut eps = BTreeMap::new();
    // Each endpoint on its network; "m" is connected to "b" as well below.
    let placed = [
        ("a1", "a"),
        ("a2", "a"),
        ("b1", "b"),
        ("b2", "b"),
        ("c1", "c"),
        ("c2", "c"),
        ("m", "a"),
    ];
    for (name, net) in placed {
        let ns = t.endpoint(name, &["--network", net]);
        tcp_server(&ns, 80);
        eps.insert(name, ns);
    }
    t.ok(&["network", "connect", "b", "m"]);
    assert!(
        eps["m"].ip(&["-o", "addr"]).contains("eth1"),
        "connect adds eth1"
    );
    let mut targets = Vec::new();
    let labels: Vec<(String, Ipv4Addr)> = placed
        .iter()
        .chain(&[("m", "b")])
        .map(|(e, n)| (format!("{e}@{n}"), ip_on(&t, e, n)))
        .collect();
    for (l, ip) in &labels {
        targets.push((l.as_str(), *ip));
    }
    let got = matrix(&eps, &targets);
    let net_of = |label: &str| label.split('@').nth(1).unwrap().to_string();
    fn nets_of(ep: &str) -> Vec<String> {
        match ep {
            "m" => vec!["a".into(), "b".into()],
            e => vec![e[..1].to_string()],
        }
    }
    for ((src, dst), (tcp, icmp)) in &got {
        let dst_ep = dst.split('@').next().unwrap();
        // Its own addresses are local; others only on a network it shares.
        let want = src == dst_ep || nets_of(src).contains(&net_of(dst));
        assert_eq!(*tcp, want, "tcp {src} -> {dst}");
        assert_eq!(*icmp, want, "icmp {src} -> {dst}");
    }
    // Internal: no default route is given, and even with one of its own nothing leaves;
    // the gateway still answers.
    assert!(!eps["c1"].ip(&["route"]).contains("default"));
    eps["c1"].ip(&["route", "add", "default", "via", "10.10.3.1"]);
    assert!(!tcp_reachable(&eps["c1"], HOST, 22, SHORT));
    assert!(ping(&eps["c1"], "10.10.3.1".parse::<Ipv4Addr>().unwrap()));
    assert!(!ping(&eps["c1"], HOST));
    assert!(ping(&eps["a1"], HOST), "a normal network reaches the host");

    // connect and disconnect flip cells, live.
    let c1 = ip_on(&t, "c1", "c");
    assert!(!tcp_reachable(&eps["a1"], c1, 80, SHORT));
    t.ok(&["network", "connect", "c", "a1"]);
    assert!(
        tcp_reachable(&eps["a1"], c1, 80, SHORT),
        "a1 reaches c1 once on c"
    );
    t.ok(&["network", "disconnect", "c", "a1"]);
    assert!(
        !tcp_reachable(&eps["a1"], c1, 80, SHORT),
        "and no longer after disconnect"
    );
    assert!(!eps["a1"].ip(&["-o", "addr"]).contains("eth1"));
    let s = t.stats();
    assert!(s["Counters"]["drop_isolation"].as_u64().unwrap() > 0);
    assert!(s["Counters"]["drop_internal"].as_u64().unwrap() > 0);
    assert!(s["Counters"]["forward"].as_u64().unwrap() > 0);
}

fn udp_listener(ns: &Netns) -> UdpSocket {
    let s = ns.run(|| UdpSocket::bind("0.0.0.0:9999").unwrap());
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

#[test]
fn broadcasts_reach_exactly_the_networks_members() {
    let t = Topo::new();
    t.networks(&[("a", "10.10.1.0/24"), ("b", "10.10.2.0/24")]);
    let a1 = t.endpoint("a1", &["--network", "a"]);
    let a2 = t.endpoint("a2", &["--network", "a"]);
    let m = t.endpoint("m", &["--network", "b"]);
    t.ok(&["network", "connect", "a", "m"]);
    let b1 = t.endpoint("b1", &["--network", "b"]);
    let listeners: Vec<(&str, UdpSocket)> = [("a2", &a2), ("m", &m), ("b1", &b1)]
        .into_iter()
        .map(|(n, ns)| (n, udp_listener(ns)))
        .collect();
    let sender = a1.run(|| UdpSocket::bind("0.0.0.0:0").unwrap());
    sender.set_broadcast(true).unwrap();
    let mut heard = BTreeMap::new();
    for _ in 0..5 {
        sender.send_to(b"hello", "10.10.1.255:9999").unwrap();
        for (n, l) in &listeners {
            let mut buf = [0u8; 16];
            if let Ok((len, _)) = l.recv_from(&mut buf) {
                assert_eq!(&buf[..len], b"hello");
                heard.insert(*n, true);
            }
        }
        if heard.len() == 2 {
            break;
        }
    }
    assert!(heard.contains_key("a2"), "a2 is on a");
    assert!(heard.contains_key("m"), "m is on a (through eth1)");
    assert!(!heard.contains_key("b1"), "b1 is not on a");
    assert!(t.stats()["Counters"]["flood"].as_u64().unwrap() >= 2);
}

#[test]
fn icc_false_keeps_peers_apart_but_published_ports_work() {
    let t = Topo::new();
    t.ok(&common::words(
        "network create quiet --subnet 10.10.4.0/24 --opt icc=false",
    ));
    let d1 = t.endpoint("d1", &["--network", "quiet"]);
    let d2 = t.endpoint("d2", &["--network", "quiet", "-p", "8080:80"]);
    tcp_server(&d2, 80);
    let d2_ip = ip_on(&t, "d2", "quiet");
    assert!(!tcp_reachable(&d1, d2_ip, 80, SHORT));
    assert!(!ping(&d1, d2_ip));
    assert!(
        tcp_request(&t.outside, HOST, 8080, "x").is_ok(),
        "published port still answers"
    );
    assert!(t.stats()["Counters"]["drop_icc"].as_u64().unwrap() > 0);
    let v: Value = serde_json::from_str(&t.ok(&["network", "inspect", "quiet"])).unwrap();
    assert_eq!(v[0]["Options"]["icc"], "false");
}

#[test]
fn spoofed_sources_are_dropped_and_counted() {
    let t = Topo::new();
    t.ok(&["network", "create", "a", "--subnet", "10.10.1.0/24"]);
    let a1 = t.endpoint("a1", &["--network", "a", "--ip", "10.10.1.10"]);
    let a2 = t.endpoint("a2", &["--network", "a", "--ip", "10.10.1.20"]);
    tcp_server(&a2, 80);
    assert!(tcp_reachable(
        &a1,
        "10.10.1.20".parse::<Ipv4Addr>().unwrap(),
        80,
        SHORT
    ));
    // a1 claims another address of the network.
    a1.ip(&["addr", "add", "10.10.1.99/32", "dev", "eth0"]);
    let before = t.stats()["Counters"]["drop_spoof"].as_u64().unwrap();
    let spoofed = a1.run(|| {
        let s = std::net::TcpStream::connect_timeout(
            &"10.10.1.20:80".parse().unwrap(),
            Duration::from_millis(1),
        );
        drop(s);
        let sock = UdpSocket::bind("10.10.1.99:0").unwrap();
        sock.send_to(b"x", "10.10.1.20:9").is_ok()
    });
    assert!(spoofed);
    common::wait_until(
        "the spoofed packet to be counted",
        Duration::from_secs(3),
        || t.stats()["Counters"]["drop_spoof"].as_u64().unwrap() > before,
    );
}

#[test]
fn inspect_and_ls_look_like_docker() {
    let t = Topo::new();
    t.ok(&common::words(
        "network create web --subnet 10.10.5.0/24 --gateway 10.10.5.254 --ip-range 10.10.5.128/25",
    ));
    // Kept: an endpoint whose namespace is gone is removed (repair).
    let _w1 = t.endpoint("w1", &["--network", "web"]);
    let v: Value = serde_json::from_str(&t.ok(&["network", "inspect", "web"])).unwrap();
    let n = &v[0];
    assert_eq!(n["Name"], "web");
    assert_eq!(n["Driver"], "bridge", "Docker's name for the driver");
    assert_eq!(n["Internal"], false);
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "10.10.5.0/24");
    assert_eq!(n["IPAM"]["Config"][0]["Gateway"], "10.10.5.254");
    assert_eq!(n["IPAM"]["Config"][0]["IPRange"], "10.10.5.128/25");
    let members = n["Containers"].as_object().unwrap();
    assert_eq!(members.len(), 1);
    let w1 = members.values().next().unwrap();
    assert_eq!(w1["Name"], "w1");
    assert_eq!(w1["IPv4Address"], "10.10.5.128/24");
    assert_eq!(w1["MacAddress"], "02:42:0a:0a:05:80");
    let ls = t.ok(&["network", "ls"]);
    assert!(ls.contains("web") && ls.contains("bridge"), "{ls}");
}

#[test]
fn rejected_network_requests_change_nothing() {
    let t = Topo::new();
    t.ok(&["network", "create", "a", "--subnet", "10.10.1.0/24"]);
    let _a1 = t.endpoint("a1", &["--network", "a", "--ip", "10.10.1.10"]);
    let _b1 = t.endpoint("b1", &[]);
    let snapshot = || {
        (
            t.ok(&["network", "ls"]),
            t.ok(&["network", "inspect", "a", "bridge"]),
            t.ok(&["endpoint", "ls"]),
            t.stats()["Networks"].clone(),
            t.stats()["Endpoints"].clone(),
            t.host.ip(&["-o", "link"]).lines().count(),
            t.host.ip(&["-o", "addr"]).lines().count(),
        )
    };
    let before = snapshot();
    let cases: &[&[&str]] = &[
        &["network", "create", "a"],
        &["network", "create", "x", "--subnet", "10.10.1.128/25"],
        &common::words("network create x --subnet 10.10.9.0/24 --gateway 10.10.8.1"),
        &common::words("network create x --subnet 10.10.9.0/24 --ip-range 10.10.8.0/25"),
        &["network", "create", "x", "--subnet", "10.10.9.0/33"],
        &["network", "create", "bad/name"],
        &["network", "create", "x", "--opt", "nope=1"],
        &["network", "create", "x", "--opt", "icc=perhaps"],
        &["network", "rm", "a"],
        &["network", "rm", "bridge"],
        &["network", "rm", "nope"],
        &["network", "connect", "a", "b1", "--ip", "10.10.1.10"],
        &["network", "connect", "a", "b1", "--ip", "10.10.2.10"],
        &["network", "connect", "a", "a1"],
        &["network", "connect", "nope", "b1"],
        &["network", "disconnect", "a", "b1"],
        &["network", "disconnect", "a", "a1"],
        &common::words("endpoint create z --netns /proc/self/ns/net --network a --ip 10.10.1.10"),
    ];
    for args in cases {
        t.refused(args);
        assert_eq!(snapshot(), before, "{args:?} changed something");
    }
}

#[test]
fn dockers_common_network_options_are_honoured_or_noted() {
    let t = Topo::new();
    // What a compose file sets: an MTU, a default host address for published ports, a bridge
    // name and an interface prefix (the last two mean nothing here: accepted and noted).
    t.ok(&common::words("network create small --subnet 10.41.0.0/24 -o com.docker.network.driver.mtu=1400 -o com.docker.network.bridge.host_binding_ipv4=127.0.0.1 -o com.docker.network.bridge.name=br-small -o com.docker.network.container_iface_prefix=eth"));
    let a = t.endpoint("a", &["--network", "small", "-p", "8090:80"]);
    tcp_server(&a, 80);
    assert!(a.ip(&["link", "show", "eth0"]).contains("mtu 1400"));
    assert_eq!(t.ok(&["port", "a"]), "80/tcp -> 127.0.0.1:8090\n");
    assert!(tcp_request(&t.host, Ipv4Addr::LOCALHOST, 8090, "local").is_ok());
    assert!(!tcp_reachable(&t.outside, HOST, 8090, SHORT));
    let log = t.agent_log();
    assert!(
        log.contains("com.docker.network.bridge.name=br-small"),
        "{log}"
    );

    // Masquerading off: endpoints go out with their own addresses and the network is
    // reached by routing; a masqueraded network beside it still goes out as the host.
    t.ok(&common::words("network create flat --subnet 10.42.0.0/24 -o com.docker.network.bridge.enable_ip_masquerade=false"));
    t.outside
        .ip(&["route", "add", "10.42.0.0/24", "via", &HOST.to_string()]);
    let b = t.endpoint("b", &["--network", "flat"]);
    let c = t.endpoint("c", &[]);
    let b_ip = ip_on(&t, "b", "flat");
    tcp_server(&t.outside, 7000);
    tcp_server(&b, 81);
    let seen = |ns: &Netns| {
        let r = tcp_request(ns, common::OUTSIDE, 7000, "out").unwrap();
        r.split(':').next().unwrap().to_string()
    };
    assert_eq!(seen(&b), b_ip.to_string());
    assert_eq!(seen(&c), HOST.to_string());
    assert!(tcp_reachable(&t.outside, b_ip, 81, Duration::from_secs(2)));
    // Both ways in eBPF: routed out by the endpoint's program, delivered by the uplink's.
    let counters = &t.stats()["Counters"];
    assert!(counters["routed_out"].as_u64().unwrap() >= 1, "{counters}");
    assert!(counters["routed_in"].as_u64().unwrap() >= 1, "{counters}");

    // Values that cannot be used: one line each, nothing made.
    for (opt, says) in [
        (
            "com.docker.network.driver.mtu=10",
            "an MTU from 68 to 65535",
        ),
        (
            "com.docker.network.bridge.host_binding_ipv4=here",
            "an IPv4 address",
        ),
        (
            "com.docker.network.bridge.enable_ip_masquerade=maybe",
            "true or false",
        ),
        (
            "com.docker.network.bridge.gateway_mode_ipv4=bridged",
            "nat or routed",
        ),
        ("com.example.unknown=1", "unknown option"),
    ] {
        let e = t.refused(&["network", "create", "bad", "-o", opt]);
        assert!(e.contains(says), "{opt}: {e}");
    }
    // By name: an ID is hex, and "bad" is hex too.
    let names = t.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!names.lines().any(|n| n == "bad"), "{names}");
}
