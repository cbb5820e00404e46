//! Reaching the host and published ports from the host side: hairpin (an endpoint reaching a
//! published port through a host address), and host-local access through the socket hooks.
mod common;

use std::net::Ipv4Addr;

use common::{tcp_request, tcp_server, Topo, HOST};
use serde_json::Value;

fn ip_of(t: &Topo, endpoint: &str) -> Ipv4Addr {
    let v: Value = serde_json::from_str(&t.ok(&["endpoint", "inspect", endpoint])).unwrap();
    v[0]["IPAddress"].as_str().unwrap().parse().unwrap()
}

#[test]
fn hairpin_through_host_and_gateway_addresses_including_its_own_port() {
    let t = Topo::new();
    t.ok(&["network", "create", "other", "--subnet", "10.10.7.0/24"]);
    let web = t.endpoint("web", &["-p", "8080:80", "-p", "5353:53/udp"]);
    tcp_server(&web, 80);
    common::udp_server(&web, 53);
    let client = t.endpoint("client", &[]);
    let far = t.endpoint("far", &["--network", "other"]);
    let gateway: Ipv4Addr = "10.210.0.1".parse().unwrap();
    for (who, ns) in [("client", &client), ("far", &far)] {
        for to in [HOST, gateway] {
            let r = tcp_request(ns, to, 8080, "hi")
                .unwrap_or_else(|e| panic!("{who} -> {to}:8080: {e}"));
            let seen: Ipv4Addr = r.split(':').next().unwrap().parse().unwrap();
            assert_eq!(
                seen,
                ip_of(&t, who),
                "{who} -> {to}: the server sees the endpoint itself"
            );
        }
    }
    // Its own published port: the connection reaches it from its gateway.
    for to in [HOST, gateway] {
        let r =
            tcp_request(&web, to, 8080, "me").unwrap_or_else(|e| panic!("web -> {to}:8080: {e}"));
        let seen: Ipv4Addr = r.split(':').next().unwrap().parse().unwrap();
        assert_eq!(seen, gateway, "self-hairpin comes from the gateway: {r}");
        assert!(r.ends_with(" me"));
    }
    assert!(t.stats()["Counters"]["hairpin"].as_u64().unwrap() >= 6);
}

#[test]
fn host_processes_reach_published_ports_through_socket_hooks() {
    use std::{
        io::{Read, Write},
        net::{SocketAddr, TcpStream, UdpSocket},
        time::Duration,
    };
    let t = Topo::new();
    let web = t.endpoint_with("web", "-p 8080:80 -p 127.0.0.1:8081:80 -p 5353:53/udp");
    tcp_server(&web, 80);
    common::udp_server(&web, 53);
    let gateway: Ipv4Addr = "10.210.0.1".parse().unwrap();
    for (to, port) in [
        (Ipv4Addr::LOCALHOST, 8080),
        (HOST, 8080),
        (gateway, 8080),
        (Ipv4Addr::LOCALHOST, 8081),
    ] {
        let addr = SocketAddr::from((to, port));
        let mut c = t
            .host
            .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(3)))
            .unwrap_or_else(|e| panic!("host -> {addr}: {e}"));
        assert_eq!(
            c.peer_addr().unwrap(),
            addr,
            "getpeername shows the published address"
        );
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c.write_all(b"hi").unwrap();
        let mut r = String::new();
        c.read_to_string(&mut r).unwrap();
        assert!(r.ends_with(" hi"), "{addr}: {r}");
    }
    // UDP, unconnected: the reply's source is the published address.
    let s = t.host.run(|| UdpSocket::bind("0.0.0.0:0").unwrap());
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 64];
    let mut from = None;
    for _ in 0..5 {
        s.send_to(b"u", "127.0.0.1:5353").unwrap();
        if let Ok((_, f)) = s.recv_from(&mut buf) {
            from = Some(f);
            break;
        }
    }
    assert_eq!(from, Some("127.0.0.1:5353".parse().unwrap()));
    // Other namespaces are untouched: the outside has nothing on its own 127.0.0.1:8080.
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
    assert!(t
        .outside
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(1)))
        .is_err());
    // Unpublishing stops it at once.
    t.ok(&["port", "unpublish", "web", "8080:80"]);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
    assert!(t
        .host
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(1)))
        .is_err());
}

#[test]
fn host_docker_internal_resolves_and_reaches_the_host() {
    use std::net::TcpListener;
    let t = Topo::new();
    t.ok(&common::words(
        "network create app --subnet 10.10.8.0/24 --opt host-gateway=10.10.8.254",
    ));
    let ep = t.endpoint("web", &[]);
    let app = t.endpoint("api", &["--network", "app"]);
    // A service of the host, on every address, TCP and UDP.
    let l = t.host.run(|| TcpListener::bind("0.0.0.0:7000").unwrap());
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            drop(c);
        }
    });
    common::udp_server(&t.host, 7001);
    for (ns, want) in [(&ep, "10.210.0.1"), (&app, "10.10.8.254")] {
        let line = ns.exec("getent", &["ahostsv4", "host.docker.internal"]);
        let ip: Ipv4Addr = line.split_whitespace().next().unwrap().parse().unwrap();
        assert_eq!(ip.to_string(), want, "{line}");
        assert!(
            common::tcp_reachable(ns, ip, 7000, std::time::Duration::from_secs(2)),
            "{want}:7000"
        );
    }
    let v: Value = serde_json::from_str(&t.ok(&["network", "inspect", "app", "bridge"])).unwrap();
    assert_eq!(v[0]["HostGateway"], "10.10.8.254");
    assert_eq!(v[1]["HostGateway"], "10.210.0.1");
    // The endpoint's own name resolves too; the file goes with the endpoint.
    assert!(ep
        .exec("getent", &["ahostsv4", "web"])
        .starts_with("10.210.0."));
    t.ok(&["endpoint", "rm", "web"]);
    assert!(!std::path::Path::new(&format!("/etc/netns/{}/hosts", ep.name)).exists());
}

#[test]
fn host_loopback_ports_reach_services_bound_to_localhost_only() {
    use std::{
        io::{Read, Write},
        net::TcpListener,
        time::Duration,
    };
    let t = Topo::new();
    t.ok(&common::words(
        "network create db --subnet 10.10.6.0/24 --opt host-loopback-ports=5432",
    ));
    let app = t.endpoint("app", &["--network", "db"]);
    let plain = t.endpoint("plain", &[]);
    // Two host services bound to 127.0.0.1 only: one allowed, one not.
    for port in [5432u16, 6000] {
        let l = t
            .host
            .run(|| TcpListener::bind(("127.0.0.1", port)).unwrap());
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let local = c.local_addr().unwrap();
                // The peer may be gone: a server answers whoever is still there.
                let _ = write!(c, "{local}");
            }
        });
    }
    let hgw: Ipv4Addr = "10.10.6.1".parse().unwrap();
    let addr = std::net::SocketAddr::from((hgw, 5432));
    let mut c = app
        .run(|| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
        .expect("allowed loopback port reachable through the host-gateway");
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut seen = String::new();
    c.read_to_string(&mut seen).unwrap();
    assert_eq!(
        seen, "10.10.6.1:5432",
        "the host answers from the host-gateway address"
    );
    assert!(
        !common::tcp_reachable(&app, hgw, 6000, Duration::from_millis(700)),
        "port not on the list"
    );
    let bridge_gw: Ipv4Addr = "10.210.0.1".parse().unwrap();
    assert!(
        !common::tcp_reachable(&plain, bridge_gw, 5432, Duration::from_millis(700)),
        "network without the option"
    );
    assert!(t.stats()["Counters"]["host_loopback"].as_u64().unwrap() >= 1);
    t.refused(&common::words(
        "network create x --opt host-loopback-ports=5432,0",
    ));
    t.refused(&["network", "create", "x", "--opt", "host-loopback-ports=abc"]);
}
