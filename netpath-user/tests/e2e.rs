//! End to end: an "outside" namespace, a "host" namespace running its own agent with the
//! uplink veth between them, endpoint namespaces made through the CLI, real TCP and UDP
//! sockets. Every namespace is made here and deleted on drop, pass or fail.
mod common;

use std::net::Ipv4Addr;

use common::{
    tcp_request, tcp_server, udp_request, udp_server, wait_until, Netns, Topo, HOST, OUTSIDE,
    TIMEOUT,
};
use serde_json::Value;

fn client_ip(reply: &str) -> &str {
    reply.split(':').next().unwrap()
}

/// An endpoint "web" with a TCP server published on 8080 and a UDP one on 5353.
fn web_on_8080_and_5353(t: &Topo) -> Netns {
    let ep = t.endpoint("web", &["-p", "8080:80", "-p", "5353:53/udp"]);
    tcp_server(&ep, 80);
    udp_server(&ep, 53);
    ep
}

#[test]
fn tcp_and_udp_reach_the_endpoint_with_the_clients_address() {
    let t = Topo::new();
    let _web = web_on_8080_and_5353(&t);
    let r = tcp_request(&t.outside, HOST, 8080, "hello").expect("tcp through 8080");
    assert!(r.ends_with(" hello"), "{r}");
    assert_eq!(
        client_ip(&r),
        OUTSIDE.to_string(),
        "the server sees the client's address"
    );
    let r = udp_request(&t.outside, HOST, 5353, "ping").expect("udp through 5353");
    assert_eq!(client_ip(&r), OUTSIDE.to_string());
    assert!(r.ends_with(" ping"));
    let s = t.stats();
    assert!(s["Counters"]["dnat_tc"].as_u64().unwrap() >= 2);
    assert!(s["Counters"]["reverse_nat"].as_u64().unwrap() >= 2);
    // Each port is the only publish of its container port, on a host of one uplink address:
    // the clients' packets kept no state; each flow was recorded by its first reply.
    assert!(
        s["Counters"]["dnat_stateless"].as_u64().unwrap() >= 2,
        "{s}"
    );
    assert!(
        s["Counters"]["reply_recorded"].as_u64().unwrap() >= 2,
        "{s}"
    );
}

#[test]
fn a_udp_port_nothing_listens_on_refuses_the_client_as_dockers_does() {
    let t = Topo::new();
    let _ep = t.endpoint("quiet", &["-p", "5454:54/udp"]);
    // The endpoint's stack answers port unreachable; it reaches the client from the port it
    // used, so its connected socket is refused rather than left waiting.
    let e = udp_request(&t.outside, HOST, 5454, "anyone?").expect_err("nothing listens");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    let s = t.stats();
    assert!(
        s["Counters"]["icmp_error_out"].as_u64().unwrap() >= 1,
        "{s}"
    );
}

#[test]
fn ranges_and_ephemeral_ports() {
    let t = Topo::new();
    let ep = t.endpoint("web", &["-p", "8000-8002:80-82"]);
    for p in 80..=82 {
        tcp_server(&ep, p);
    }
    for (host_port, msg) in [(8000, "a"), (8001, "b"), (8002, "c")] {
        let r = tcp_request(&t.outside, HOST, host_port, msg).unwrap();
        assert!(r.ends_with(&format!(" {msg}")), "{host_port}: {r}");
    }
    // One free port of a host range, then an ephemeral port; both are reported.
    let out = t.ok(&["port", "publish", "web", "8000-8010:82"]);
    // On both families, one host port (this host has IPv6).
    assert_eq!(out.trim(), "82/tcp -> 0.0.0.0:8003\n82/tcp -> [::]:8003");
    let out = t.ok(&["port", "publish", "web", "81"]);
    let host_port: u16 = out.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert!((32768..=60999).contains(&host_port), "{out}");
    assert!(tcp_request(&t.outside, HOST, 8003, "d")
        .unwrap()
        .ends_with(" d"));
    assert!(tcp_request(&t.outside, HOST, host_port, "e")
        .unwrap()
        .ends_with(" e"));
    let ls = t.ok(&["port", "ls", "web"]);
    assert!(ls.contains("82/tcp -> 0.0.0.0:8003"), "{ls}");
    assert!(
        ls.contains(&format!("81/tcp -> 0.0.0.0:{host_port}")),
        "{ls}"
    );
}

#[test]
fn host_ip_binding() {
    let t = Topo::new();
    let uplink = t.uplink.clone();
    t.host.ip(&["addr", "add", "10.77.0.3/24", "dev", &uplink]);
    let ep = t.endpoint(
        "web",
        &["-p", "10.77.0.3:8081:80", "-p", "127.0.0.1:8082:80"],
    );
    tcp_server(&ep, 80);
    let second: Ipv4Addr = "10.77.0.3".parse().unwrap();
    wait_until("the agent to learn 10.77.0.3", TIMEOUT, || {
        tcp_request(&t.outside, second, 8081, "x").is_ok()
    });
    assert!(
        tcp_request(&t.outside, HOST, 8081, "x").is_err(),
        "8081 bound to 10.77.0.3 only"
    );
    assert!(
        tcp_request(&t.outside, HOST, 8082, "x").is_err(),
        "127.0.0.1 publish unreachable from outside"
    );
    assert!(tcp_request(&t.outside, second, 8082, "x").is_err());
}

#[test]
fn unpublish_stops_traffic_and_flushes_flows() {
    let t = Topo::new();
    let _web = web_on_8080_and_5353(&t);
    assert!(tcp_request(&t.outside, HOST, 8080, "x").is_ok());
    assert!(udp_request(&t.outside, HOST, 5353, "x").is_ok());
    assert!(t.stats()["Flows"].as_u64().unwrap() >= 2);
    assert_eq!(
        t.ok(&["port", "unpublish", "web", "5353:53/udp"]).trim(),
        "53/udp -> 0.0.0.0:5353\n53/udp -> [::]:5353"
    );
    assert!(
        udp_request(&t.outside, HOST, 5353, "x").is_err(),
        "unpublished UDP port still answers"
    );
    t.ok(&["port", "unpublish", "web", "8080:80"]);
    assert!(tcp_request(&t.outside, HOST, 8080, "x").is_err());
    assert_eq!(t.stats()["Flows"].as_u64().unwrap(), 0, "flows flushed");
    assert_eq!(t.ok(&["port", "ls", "web"]), "");
}

#[test]
fn endpoint_removal_flushes_its_flows_and_veth() {
    let t = Topo::new();
    let ep = t.endpoint("web", &["-p", "5353:53/udp"]);
    udp_server(&ep, 53);
    assert!(udp_request(&t.outside, HOST, 5353, "x").is_ok());
    let host_if = {
        let v: Value = serde_json::from_str(&t.ok(&["endpoint", "inspect", "web"])).unwrap();
        v[0]["HostInterface"].as_str().unwrap().to_string()
    };
    assert!(t.host.ip(&["link"]).contains(&host_if));
    t.ok(&["endpoint", "rm", "web"]);
    let s = t.stats();
    assert_eq!(s["Flows"].as_u64().unwrap(), 0);
    assert_eq!(s["PublishedPorts"].as_u64().unwrap(), 0);
    assert_eq!(s["Endpoints"].as_u64().unwrap(), 0);
    assert!(!t.host.ip(&["link"]).contains(&host_if), "veth removed");
    assert!(!ep.ip(&["link"]).contains("eth0"));
    assert!(udp_request(&t.outside, HOST, 5353, "x").is_err());
}

#[test]
fn two_host_ports_to_one_container_port() {
    let t = Topo::new();
    let ep = t.endpoint_with("web", "-p 8080:80 -p 8081:80 -p 5353:53/udp -p 5354:53/udp");
    tcp_server(&ep, 80);
    udp_server(&ep, 53);
    for port in [8080, 8081, 8080, 8081] {
        assert!(
            tcp_request(&t.outside, HOST, port, "t").is_ok(),
            "tcp {port}"
        );
    }
    // Connected UDP sockets only accept replies from the exact address and port they asked.
    for port in [5353, 5354, 5353, 5354] {
        assert!(
            udp_request(&t.outside, HOST, port, "u").is_ok(),
            "udp {port}"
        );
    }
    // Two host ports on one container port: flows kept from their first packet.
    let s = t.stats();
    assert_eq!(s["Counters"]["dnat_stateless"], 0, "{s}");
    assert_eq!(s["Counters"]["reply_recorded"], 0, "{s}");
}

#[test]
fn rejected_requests_change_nothing() {
    let t = Topo::new();
    let ep = t.endpoint("web", &["-p", "8080:80"]);
    let spare = Netns::new("npep");
    let spare_path = spare.path();
    let snapshot = || {
        (
            t.ok(&["endpoint", "ls"]),
            t.ok(&["port", "ls"]),
            t.host.ip(&["-o", "link"]).lines().count(),
            spare.ip(&["-o", "link"]).lines().count(),
            t.stats()["PublishedPorts"].clone(),
        )
    };
    let before = snapshot();
    let cases = [
        "port publish web 8080:81".to_string(),
        "port publish web 0".to_string(),
        "port publish web 70000:80".to_string(),
        "port publish web 8000-8001:80-82".to_string(),
        "port publish web 9000:80/sctp".to_string(),
        "port publish web 9000:80 8080:80".to_string(),
        "port publish nope 9000:80".to_string(),
        "port unpublish web 9999:80".to_string(),
        format!("endpoint create web --netns {spare_path}"),
        format!("endpoint create db --netns {spare_path} --ip 10.1.2.3"),
        format!("endpoint create db --netns {spare_path} -p 8080:5432"),
        format!("endpoint create db --netns {spare_path} -p x"),
        format!("endpoint create bad/name --netns {spare_path}"),
        format!("endpoint create db --netns {spare_path} --network nope"),
        "endpoint rm nope".to_string(),
    ];
    for line in &cases {
        t.refused(&common::words(line));
        assert_eq!(snapshot(), before, "{line} changed something");
    }
    // The IP of an existing endpoint.
    let ip = {
        let v: Value = serde_json::from_str(&t.ok(&["endpoint", "inspect", "web"])).unwrap();
        v[0]["IPAddress"].as_str().unwrap().to_string()
    };
    t.refused(&common::words(&format!(
        "endpoint create db --netns {spare_path} --ip {ip}"
    )));
    assert_eq!(snapshot(), before);
    // A namespace that already has an eth0: refused after the kernel said so, veth rolled back.
    spare.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    let spare_links = spare.ip(&["-o", "link"]).lines().count();
    let host_links = t.host.ip(&["-o", "link"]).lines().count();
    t.refused(&["endpoint", "create", "db", "--netns", &spare_path]);
    assert_eq!(spare.ip(&["-o", "link"]).lines().count(), spare_links);
    assert_eq!(t.host.ip(&["-o", "link"]).lines().count(), host_links);
    assert_eq!(t.ok(&["endpoint", "ls"]), before.0);
    drop(ep);
}

#[test]
fn the_agent_keeps_its_state_across_restarts() {
    let mut t = Topo::new();
    let ep = t.endpoint("web", &["-p", "8080:80"]);
    tcp_server(&ep, 80);
    assert!(tcp_request(&t.outside, HOST, 8080, "a").is_ok());
    t.stop_agent();
    assert!(
        tcp_request(&t.outside, HOST, 8080, "b")
            .unwrap()
            .ends_with(" b"),
        "the datapath keeps working while the agent is stopped"
    );
    t.start_agent();
    assert!(tcp_request(&t.outside, HOST, 8080, "c")
        .unwrap()
        .ends_with(" c"));
    assert!(t
        .ok(&["port", "ls", "web"])
        .contains("80/tcp -> 0.0.0.0:8080"));
}

#[test]
fn xdp_fast_path() {
    let t = Topo::with_xdp("native");
    let _web = web_on_8080_and_5353(&t);
    let r = tcp_request(&t.outside, HOST, 8080, "x").expect("tcp via xdp");
    assert_eq!(client_ip(&r), OUTSIDE.to_string());
    let r = udp_request(&t.outside, HOST, 5353, "y").expect("udp via xdp");
    assert_eq!(client_ip(&r), OUTSIDE.to_string());
    let s = t.stats();
    assert!(s["Counters"]["dnat_xdp"].as_u64().unwrap() >= 2, "{s}");
    // The host's own traffic: XDP passes it (no TC program on this uplink: XDP decides
    // everything); it reaches the host's server and is counted as passed.
    tcp_server(&t.host, 9000);
    let passed = |s: &serde_json::Value| s["Counters"]["pass"].as_u64().unwrap();
    let before = passed(&s);
    let r = tcp_request(&t.outside, HOST, 9000, "h").expect("the host's own service");
    assert_eq!(client_ip(&r), OUTSIDE.to_string());
    let s = t.stats();
    assert!(passed(&s) > before, "{s}");
    assert_eq!(s["Counters"]["dnat_tc"].as_u64().unwrap(), 0, "{s}");
}
