//! IPv6 end to end, in namespaces made here with real sockets: dual-stack networks (a subnet
//! asked for and one from the pool), endpoints reaching each other and their gateway over
//! IPv6 with their own addresses, isolation between networks, static `--ip6`, what
//! `inspect` shows, published ports answering IPv6 clients, and every IPv6 input the agent
//! must refuse (nothing changed after).
mod common;

use std::{net::Ipv6Addr, time::Duration};

use common::{ping, tcp_reachable, tcp_request, tcp_server6, Topo};
use serde_json::Value;

const SHORT: Duration = Duration::from_millis(700);

fn inspect(t: &Topo, what: &str, name: &str) -> Value {
    serde_json::from_str(&t.ok(&[what, "inspect", name])).unwrap()
}

/// The IPv6 address `endpoint` has on `network`.
fn ip6_on(t: &Topo, endpoint: &str, network: &str) -> Ipv6Addr {
    inspect(t, "endpoint", endpoint)[0]["Networks"][network]["GlobalIPv6Address"]
        .as_str()
        .unwrap_or_else(|| panic!("{endpoint} has no IPv6 address on {network}"))
        .parse()
        .unwrap()
}

#[test]
fn dual_stack_endpoints_reach_each_other_over_ipv6_and_networks_stay_apart() {
    let t = Topo::new();
    t.ok(&common::words(
        "network create a --ipv6 --subnet 10.60.1.0/24 --subnet fd00:60:1::/64",
    ));
    t.ok(&["network", "create", "b", "--ipv6"]);
    let a = &inspect(&t, "network", "a")[0];
    assert_eq!(a["EnableIPv6"], true);
    let configs = a["IPAM"]["Config"].as_array().unwrap();
    assert_eq!(configs.len(), 2, "{configs:?}");
    assert_eq!(configs[1]["Subnet"], "fd00:60:1::/64");
    assert_eq!(configs[1]["Gateway"], "fd00:60:1::1");
    let b = &inspect(&t, "network", "b")[0];
    let b6 = b["IPAM"]["Config"][1]["Subnet"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        b6.starts_with("fd6e:7470:6174:") && b6.ends_with("::/64"),
        "a /64 of the pool: {b6}"
    );

    let a1 = t.endpoint("a1", &["--network", "a"]);
    let a2 = t.endpoint("a2", &["--network", "a"]);
    let a3 = t.endpoint("a3", &["--network", "a", "--ip6", "fd00:60:1::99"]);
    let b1 = t.endpoint("b1", &["--network", "b"]);
    for ns in [&a1, &a2, &a3, &b1] {
        tcp_server6(ns, 80);
    }
    let (ip_a1, ip_a2) = (ip6_on(&t, "a1", "a"), ip6_on(&t, "a2", "a"));
    assert_eq!(ip_a1, "fd00:60:1::2".parse::<Ipv6Addr>().unwrap());
    assert_eq!(
        ip6_on(&t, "a3", "a"),
        "fd00:60:1::99".parse::<Ipv6Addr>().unwrap()
    );
    let ip_b1 = ip6_on(&t, "b1", "b");
    assert!(
        a1.ip(&["-6", "route", "show", "default"])
            .contains("via fd00:60:1::1"),
        "a default route via the gateway"
    );

    // Within the network: the peer sees the endpoint's own address.
    let reply = tcp_request(&a1, ip_a2, 80, "hello").expect("a1 reaches a2 over IPv6");
    assert_eq!(reply, format!("[{ip_a1}]:{} hello", reply_port(&reply)));
    assert!(tcp_reachable(
        &a2,
        "fd00:60:1::99".parse::<Ipv6Addr>().unwrap(),
        80,
        SHORT
    ));
    assert!(ping(&a1, ip_a2), "echo between peers");
    assert!(
        ping(&a1, "fd00:60:1::1".parse::<Ipv6Addr>().unwrap()),
        "the gateway answers"
    );
    // Across networks: nothing, either way.
    let before = t.stats()["Counters"]["drop_isolation"].as_u64().unwrap();
    assert!(
        !tcp_reachable(&a1, ip_b1, 80, SHORT),
        "a1 must not reach b1"
    );
    assert!(
        !tcp_reachable(&b1, ip_a1, 80, SHORT),
        "b1 must not reach a1"
    );
    let after = t.stats()["Counters"]["drop_isolation"].as_u64().unwrap();
    assert!(after > before, "the isolation drops are counted");
    // The neighbours were netpath's answers: the gateway at the host side's MAC.
    assert!(t.stats()["Counters"]["ndp_reply"].as_u64().unwrap() > 0);

    // Removed endpoints and networks leave no IPv6 gateway or route behind.
    for ep in ["a1", "a2", "a3"] {
        t.ok(&["endpoint", "rm", ep]);
    }
    t.ok(&["network", "rm", "a"]);
    let addrs = t.host.ip(&["-6", "addr"]);
    assert!(!addrs.contains("fd00:60:1::1"), "{addrs}");
    let routes = t.host.ip(&["-6", "route"]);
    assert!(!routes.contains("fd00:60:1::"), "{routes}");
    drop((a1, a2, a3, b1));
}

/// The port of a `[ADDR]:PORT MESSAGE` reply.
fn reply_port(reply: &str) -> &str {
    reply
        .split_once("]:")
        .and_then(|(_, rest)| rest.split_once(' '))
        .map_or("", |(port, _)| port)
}

#[test]
fn ipv6_requests_the_agent_cannot_honour_are_refused_and_change_nothing() {
    let t = Topo::new();
    t.ok(&common::words(
        "network create a --ipv6 --subnet 10.61.1.0/24 --subnet fd00:61:1::/64",
    ));
    t.ok(&["network", "create", "plain", "--subnet", "10.61.2.0/24"]);
    // An IPv6 prefix of the host's own uplink.
    t.host.ip(&[
        "-6",
        "addr",
        "add",
        "fd00:77::2/64",
        "dev",
        &t.uplink,
        "nodad",
    ]);
    let networks_before = t.ok(&["network", "ls", "-q"]);
    let cases: &[(&str, &str)] = &[
        ("network create x --ipv6 --subnet fe80::/64", "link-local"),
        ("network create x --ipv6 --subnet ff05::/64", "multicast"),
        ("network create x --ipv6 --subnet ::1/128", "loopback"),
        (
            "network create x --ipv6 --subnet fd00:61:1::/96",
            "overlaps",
        ),
        ("network create x --ipv6 --subnet fd00:61::/32", "overlaps"),
        ("network create x --ipv6 --subnet fd00:77::/64", "route"),
        (
            "network create x --ipv6 --subnet fd00:62::5/128",
            "too small",
        ),
        (
            "network create x --ipv6 --subnet fd00:62::1/64",
            "host bits",
        ),
        ("network create x --subnet fd00:62::/64", "--ipv6"),
        ("network create x --ipv6 --gateway fd00:62::1", "--subnet"),
        (
            "network create x --ipv6 --subnet fd00:62::/64 --gateway fd00:63::1",
            "gateway",
        ),
        (
            "network create x --ipv6 --subnet fd00:62::/64 --subnet fd00:63::/64",
            "at most one",
        ),
    ];
    for (cmd, why) in cases {
        let err = t.refused(&common::words(cmd));
        assert!(err.contains(why), "{cmd}: {err}");
    }
    assert_eq!(
        t.ok(&["network", "ls", "-q"]),
        networks_before,
        "no network half made"
    );
    let links_before = t.host.ip(&["-o", "link"]);
    let ep_cases: &[(&[&str], &str)] = &[
        (&["--network", "a", "--ip6", "fd00:99::5"], "not in subnet"),
        (&["--network", "a", "--ip6", "fd00:61:1::1"], "reserved"),
        (
            &["--network", "plain", "--ip6", "fd00:61:1::5"],
            "no IPv6 subnet",
        ),
    ];
    let ns = common::Netns::new("npep");
    for (flags, why) in ep_cases {
        let mut args = vec!["endpoint", "create", "e", "--netns"];
        let path = ns.path();
        args.push(&path);
        args.extend_from_slice(flags);
        let err = t.refused(&args);
        assert!(err.contains(why), "{flags:?}: {err}");
    }
    assert_eq!(t.host.ip(&["-o", "link"]), links_before, "no veth left");
    assert_eq!(t.ok(&["endpoint", "ls", "-q"]), "", "no endpoint half made");
    let _e = t.endpoint("e", &["--network", "a", "--ip6", "fd00:61:1::5"]);
    let err = t.refused(&common::words(
        "endpoint create f --netns nonexistent --network a --ip6 fd00:61:1::5",
    ));
    assert!(!err.is_empty());
}

#[test]
fn the_default_network_has_ipv6_when_the_configuration_asks() {
    let t = Topo::with_agent_args(&["--default-subnet6", "fd00:64::/64"]);
    let bridge = &inspect(&t, "network", "bridge")[0];
    assert_eq!(bridge["EnableIPv6"], true);
    assert_eq!(bridge["IPAM"]["Config"][1]["Subnet"], "fd00:64::/64");
    let ns = t.endpoint("d1", &[]);
    assert_eq!(
        ip6_on(&t, "d1", "bridge"),
        "fd00:64::2".parse::<Ipv6Addr>().unwrap()
    );
    assert!(
        ping(&ns, "fd00:64::1".parse::<Ipv6Addr>().unwrap()),
        "its gateway answers"
    );
    // Without the setting the default network is IPv4's alone.
    let plain = Topo::new();
    assert_eq!(inspect(&plain, "network", "bridge")[0]["EnableIPv6"], false);
}

fn endpoints_reach_ipv6_outside(t: Topo) {
    t.ipv6_uplink();
    let outside: Ipv6Addr = "fd00:77::1".parse().unwrap();
    tcp_server6(&t.outside, 9000);
    t.ok(&common::words(
        "network create a --ipv6 --subnet 10.62.1.0/24 --subnet fd00:62:1::/64",
    ));
    let ep = t.endpoint("web", &["--network", "a"]);
    // The agent takes the uplink's new address as it appears.
    let mut reply = String::new();
    common::wait_until(
        "the endpoint reaching the outside over IPv6",
        Duration::from_secs(10),
        || {
            tcp_request(&ep, outside, 9000, "t")
                .map(|r| reply = r)
                .is_ok()
        },
    );
    let peer: std::net::SocketAddr = reply.split(' ').next().unwrap().parse().unwrap();
    assert_eq!(
        peer.ip(),
        "fd00:77::2".parse::<std::net::IpAddr>().unwrap(),
        "leaves with the uplink's address: {reply}"
    );
    assert!(
        (40000..60000).contains(&peer.port()),
        "a port of netpath's range: {reply}"
    );
    assert!(ping(&ep, outside), "ICMPv6 echo");
    let s = t.stats();
    assert!(s["Counters"]["snat"].as_u64().unwrap() >= 2, "{s}");
    assert!(s["Counters"]["snat_reply"].as_u64().unwrap() >= 2, "{s}");
    assert!(s["OutboundFlows"].as_u64().unwrap() >= 2, "{s}");
    // Removing the endpoint takes its outbound flows with it.
    t.ok(&["endpoint", "rm", "web"]);
    assert_eq!(t.stats()["OutboundFlows"].as_u64().unwrap(), 0);
    // An internal network's endpoints do not leave.
    t.ok(&common::words(
        "network create closed --internal --ipv6 --subnet 10.62.9.0/24 --subnet fd00:62:9::/64",
    ));
    let closed = t.endpoint("closed1", &["--network", "closed"]);
    closed.ip(&["-6", "route", "add", "default", "via", "fd00:62:9::1"]);
    assert!(!ping(&closed, outside));
}

#[test]
fn endpoints_reach_ipv6_beyond_the_host_through_source_nat() {
    endpoints_reach_ipv6_outside(Topo::new());
}

#[test]
fn replies_of_ipv6_source_nat_come_back_on_xdp_too() {
    endpoints_reach_ipv6_outside(Topo::with_xdp("native"));
}

#[test]
fn names_have_aaaa_records_on_dual_stack_networks() {
    use hickory_proto::rr::RecordType;
    use netpath_user::testing::dns::{addresses, addresses6, ask};
    let t = Topo::new();
    t.ok(&common::words(
        "network create a --ipv6 --subnet 10.63.1.0/24 --subnet fd00:63:1::/64",
    ));
    t.ok(&common::words("network create plain --subnet 10.63.2.0/24"));
    let web = t.endpoint("web", &["--network", "a", "--alias", "www"]);
    let _db = t.endpoint("db", &["--network", "a", "--ip6", "fd00:63:1::db"]);
    let _old = t.endpoint("old", &["--network", "plain"]);
    let gw: std::net::Ipv4Addr = "10.63.1.1".parse().unwrap();
    let db6: Ipv6Addr = "fd00:63:1::db".parse().unwrap();
    // AAAA for names, aliases and NAME.NETWORK; A as before.
    assert_eq!(addresses6(&ask(&web, gw, "db", RecordType::AAAA)), [db6]);
    assert_eq!(addresses6(&ask(&web, gw, "db.a", RecordType::AAAA)), [db6]);
    assert_eq!(
        addresses6(&ask(&web, gw, "www", RecordType::AAAA)),
        [ip6_on(&t, "web", "a")]
    );
    assert_eq!(
        addresses(&ask(&web, gw, "db", RecordType::A)),
        ["10.63.1.3".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    // host.docker.internal: the host, by its IPv6 gateway address too.
    assert_eq!(
        addresses6(&ask(&web, gw, "host.docker.internal", RecordType::AAAA)),
        ["fd00:63:1::1".parse::<Ipv6Addr>().unwrap()]
    );
    // The reverse name of an IPv6 address.
    let m = ask(
        &web,
        gw,
        "b.d.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.3.6.0.0.0.0.d.f.ip6.arpa",
        RecordType::PTR,
    );
    assert_eq!(m.answers.len(), 1, "{m:?}");
    assert_eq!(m.answers[0].data.to_string(), "db.a.");
    // A name of a network without IPv6 exists without AAAA records: NOERROR, no answer.
    let old_gw: std::net::Ipv4Addr = "10.63.2.1".parse().unwrap();
    let m = ask(&_old, old_gw, "old", RecordType::AAAA);
    assert_eq!(
        m.metadata.response_code,
        hickory_proto::op::ResponseCode::NoError
    );
    assert!(m.answers.is_empty());
}

#[test]
fn ipv6_outlives_the_agent_and_a_restart_adopts_it() {
    let mut t = Topo::new();
    t.ipv6_uplink();
    t.ok(&common::words(
        "network create a --ipv6 --subnet 10.64.1.0/24 --subnet fd00:64:1::/64",
    ));
    let a1 = t.endpoint("a1", &["--network", "a"]);
    let a2 = t.endpoint("a2", &["--network", "a", "-p", "8080:80"]);
    tcp_server6(&a2, 80);
    tcp_server6(&t.outside, 9000);
    let (ip2, outside, host) = (
        ip6_on(&t, "a2", "a"),
        "fd00:77::1".parse::<Ipv6Addr>().unwrap(),
        "fd00:77::2".parse::<Ipv6Addr>().unwrap(),
    );
    let works = |t: &Topo, what: &str| {
        common::wait_until(what, Duration::from_secs(10), || {
            tcp_reachable(&a1, ip2, 80, SHORT)
                && tcp_reachable(&a1, outside, 9000, SHORT)
                && tcp_reachable(&t.outside, host, 8080, SHORT)
        });
    };
    works(&t, "IPv6 to the peer, the outside and from it");
    // The datapath goes on while no agent runs.
    t.kill_agent();
    assert!(
        tcp_reachable(&a1, ip2, 80, SHORT),
        "to the peer, agent away"
    );
    assert!(
        tcp_reachable(&a1, outside, 9000, SHORT),
        "to the outside, agent away"
    );
    assert!(ping(&a1, ip2));
    assert!(
        tcp_reachable(&t.outside, host, 8080, SHORT),
        "the published port from an IPv6 client, agent away"
    );
    // A new agent adopts what is there: the same addresses and ports, nothing rewritten away.
    t.start_agent();
    works(&t, "IPv6 after the restart");
    assert_eq!(ip6_on(&t, "a2", "a"), ip2);
    assert_eq!(
        t.ok(&["port", "a2"]),
        "80/tcp -> 0.0.0.0:8080\n80/tcp -> [::]:8080\n"
    );
    let status: Value = serde_json::from_str(&t.ok(&["status", "--format", "json"])).unwrap();
    assert_eq!(
        status["Healthy"], true,
        "no drift between the maps and the state: {status}"
    );
    let a3 = t.endpoint("a3", &["--network", "a"]);
    let ip3 = ip6_on(&t, "a3", "a");
    assert!(
        ip3 != ip2 && ip3 != ip6_on(&t, "a1", "a"),
        "a free address: {ip3}"
    );
    assert!(ping(&a3, ip2), "a new endpoint reaches the old ones");
    drop(a3);
}

/// A dual-stack endpoint's port published on both families, as Docker does with `-p
/// 8080:80`: an IPv6 client outside reaches it with its own address, on TC or XDP; a port
/// published on `[::1]` does not answer the LAN; unpublished, it answers no one.
fn published_ports_answer_ipv6_clients(t: Topo) {
    t.ipv6_uplink();
    let host: Ipv6Addr = "fd00:77::2".parse().unwrap();
    t.ok(&common::words(
        "network create a --ipv6 --subnet 10.63.1.0/24 --subnet fd00:63:1::/64",
    ));
    let web = t.endpoint("web", &["--network", "a", "-p", "8080:80"]);
    tcp_server6(&web, 80);
    assert_eq!(
        t.ok(&["port", "web"]),
        "80/tcp -> 0.0.0.0:8080\n80/tcp -> [::]:8080\n"
    );
    // UDP and ranges as TCP: the client's own address seen, one to one.
    t.ok(&[
        "port",
        "publish",
        "web",
        "5353:53/udp",
        "[::]:9000-9001:80-81",
    ]);
    common::udp_server6(&web, 53);
    tcp_server6(&web, 81);
    let r = common::udp_request(&t.outside, host, 5353, "u").expect("UDP over IPv6");
    assert!(r.starts_with("[fd00:77::1]:"), "{r}");
    // Where nothing listens, the endpoint's port unreachable reaches the client.
    t.ok(&["port", "publish", "web", "[::]:5454:54/udp"]);
    let e = common::udp_request(&t.outside, host, 5454, "anyone?").expect_err("nothing listens");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    t.ok(&["port", "unpublish", "web", "[::]:5454:54/udp"]);
    let r = tcp_request(&t.outside, host, 9001, "range").expect("a range's second port");
    assert!(
        r.starts_with("[fd00:77::1]:") && r.ends_with(" range"),
        "{r}"
    );
    t.ok(&[
        "port",
        "unpublish",
        "web",
        "5353:53/udp",
        "[::]:9000-9001:80-81",
    ]);
    assert!(common::udp_request(&t.outside, host, 5353, "gone").is_err());
    let mut reply = String::new();
    common::wait_until(
        "an IPv6 client reaching the published port",
        Duration::from_secs(10),
        || {
            tcp_request(&t.outside, host, 8080, "hi")
                .map(|r| reply = r)
                .is_ok()
        },
    );
    let peer: std::net::SocketAddr = reply.split(' ').next().unwrap().parse().unwrap();
    assert_eq!(
        peer.ip(),
        "fd00:77::1".parse::<std::net::IpAddr>().unwrap(),
        "the endpoint sees the client's own address: {reply}"
    );
    let s = t.stats();
    let dnat =
        s["Counters"]["dnat_tc"].as_u64().unwrap() + s["Counters"]["dnat_xdp"].as_u64().unwrap();
    assert!(dnat >= 1, "{s}");

    // A network policy's IPv6 ipBlock: its clients let in, the rest not.
    let policy = |cidr: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: web, namespace: default}}\nspec:\n  podSelector: {{}}\n  ingress:\n  - from: [{{ipBlock: {{cidr: \"{cidr}\"}}}}]\n"
        )
    };
    t.apply_policies(&policy("fd00:77::/64"));
    assert!(tcp_request(&t.outside, host, 8080, "in the block").is_ok());
    t.apply_policies(&policy("fd00:99::/64"));
    assert!(
        !tcp_reachable(&t.outside, host, 8080, SHORT),
        "outside the block"
    );
    // `policy check` says the same over IPv6, the endpoint by name standing for its IPv6
    // address.
    let check = t.ok(&["policy", "check", "fd00:77::1", "web", "80"]);
    assert!(
        check.ends_with("fd00:77::1 -> web 80/tcp: denied\n"),
        "{check}"
    );
    let check = t.ok(&["policy", "check", "fd00:99::7", "web", "80"]);
    assert!(
        check
            .contains("ingress web <- fd00:99::7: selected by default/web; allowed by default/web"),
        "{check}"
    );
    assert!(
        check.ends_with("fd00:99::7 -> web 80/tcp: allowed\n"),
        "{check}"
    );
    let err = t.refused(&["policy", "check", "10.0.0.1", "fd00:99::7", "80"]);
    assert!(err.contains("of the other family"), "{err}");
    t.ok(&["policy", "rm", "web"]);
    assert!(tcp_request(&t.outside, host, 8080, "no policy").is_ok());

    // The firewall's list holds IPv6 clients to its IPv6 prefixes.
    t.ok(&["firewall", "set", "10.0.0.0/8"]);
    assert!(
        !tcp_reachable(&t.outside, host, 8080, SHORT),
        "not on the list"
    );
    t.ok(&["firewall", "add", "fd00:77::1"]);
    assert_eq!(
        t.ok(&["firewall", "show"]).trim(),
        "published ports answer: 10.0.0.0/8, fd00:77::1/128"
    );
    assert!(tcp_request(&t.outside, host, 8080, "listed").is_ok());
    t.ok(&["firewall", "clear"]);

    // One address of the host: that one answers; [::1] is the host's alone.
    t.ok(&[
        "port",
        "publish",
        "web",
        "[fd00:77::2]:8081:80",
        "[::1]:8082:80",
    ]);
    assert!(tcp_request(&t.outside, host, 8081, "one").is_ok());
    assert!(!tcp_reachable(&t.outside, host, 8082, SHORT));
    let refused = t.refused(&["port", "publish", "web", "[fd00:99::1]:8083:80"]);
    assert!(refused.contains("not an address of this host"), "{refused}");

    // Gone when unpublished: nothing answers, neither family.
    t.ok(&["port", "unpublish", "web", "8080:80"]);
    assert_eq!(
        t.ok(&["port", "web"]),
        "80/tcp -> [::1]:8082\n80/tcp -> [fd00:77::2]:8081\n"
    );
    assert!(!tcp_reachable(&t.outside, host, 8080, SHORT));

    // An endpoint of IPv4 alone publishes on both families too, as Docker does: IPv6
    // clients reach it by NAT46, in the kernel, and it sees its gateway as the client (as
    // behind docker-proxy), a port of its own for each client flow.
    t.ok(&common::words(
        "network create v4only --subnet 10.63.2.0/24",
    ));
    let old = t.endpoint(
        "old",
        &["--network", "v4only", "-p", "9090:80", "-p", "5354:53/udp"],
    );
    common::tcp_server(&old, 80);
    common::udp_server(&old, 53);
    assert_eq!(
        t.ok(&["port", "old"]),
        "53/udp -> 0.0.0.0:5354\n53/udp -> [::]:5354\n80/tcp -> 0.0.0.0:9090\n80/tcp -> [::]:9090\n"
    );
    let r = tcp_request(&t.outside, host, 9090, "46").expect("an IPv6 client of an IPv4 endpoint");
    let (peer, msg) = r.split_once(' ').unwrap();
    let peer: std::net::SocketAddr = peer.parse().unwrap();
    assert_eq!(
        (peer.ip().to_string().as_str(), msg),
        ("10.63.2.1", "46"),
        "the endpoint sees its gateway: {r}"
    );
    assert!((40000..60000).contains(&peer.port()), "{r}");
    let again = tcp_request(&t.outside, host, 9090, "46").unwrap();
    assert_ne!(
        again.split(' ').next(),
        Some(r.split(' ').next().unwrap()),
        "a port per flow"
    );
    let r = common::udp_request(&t.outside, host, 5354, "u46").expect("UDP by NAT46");
    assert!(r.starts_with("10.63.2.1:") && r.ends_with(" u46"), "{r}");
    // A port nothing listens on refuses the IPv6 client at once: the endpoint's port
    // unreachable is made ICMPv6.
    t.ok(&["port", "publish", "old", "[::]:5455:55/udp"]);
    let e = common::udp_request(&t.outside, host, 5455, "anyone?").expect_err("nothing listens");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    t.ok(&["port", "unpublish", "old", "[::]:5455:55/udp"]);
    let c = &t.stats()["Counters"];
    assert!(c["nat46"].as_u64().unwrap() >= 3, "{c}");
    assert!(c["nat46_reply"].as_u64().unwrap() >= 3, "{c}");
    // A dual-stack endpoint reaches it through the host's IPv6 address (hairpin, by NAT46).
    let r = tcp_request(&web, host, 9090, "hairpin").expect("hairpin by NAT46");
    assert!(
        r.starts_with("10.63.2.1:") && r.ends_with(" hairpin"),
        "{r}"
    );
    // The host's own IPv6 sockets reach it through the socket hooks.
    let r = tcp_request(
        &t.host,
        "::1".parse::<std::net::IpAddr>().unwrap(),
        9090,
        "local",
    );
    assert!(r.as_deref().is_ok_and(|r| r.ends_with(" local")), "{r:?}");
    // The published ports' firewall holds NAT46's clients as any other.
    t.ok(&["firewall", "set", "10.0.0.0/8"]);
    assert!(
        !tcp_reachable(&t.outside, host, 9090, SHORT),
        "not on the list"
    );
    t.ok(&["firewall", "clear"]);
    // An IPv6 address of the host alone, and gone when unpublished.
    t.ok(&["port", "publish", "old", "[fd00:77::2]:9091:80"]);
    assert!(tcp_request(&t.outside, host, 9091, "one").is_ok());
    t.ok(&[
        "port",
        "unpublish",
        "old",
        "9090:80",
        "[fd00:77::2]:9091:80",
    ]);
    assert!(!tcp_reachable(&t.outside, host, 9090, SHORT));
    assert!(!tcp_reachable(&t.outside, host, 9091, SHORT));
    assert_eq!(
        t.ok(&["port", "old"]),
        "53/udp -> 0.0.0.0:5354\n53/udp -> [::]:5354\n"
    );
}

#[test]
fn published_ports_answer_ipv6_clients_on_tc() {
    published_ports_answer_ipv6_clients(Topo::new());
}

#[test]
fn published_ports_answer_ipv6_clients_on_xdp() {
    published_ports_answer_ipv6_clients(Topo::with_xdp("native"));
}

/// The host's own processes reach a port published on IPv6 through the socket hooks (`[::1]`,
/// the host's address; getpeername and a UDP reply's source show the published address),
/// may not bind it, and endpoints reach it through the host's address (hairpin; their own
/// port from their gateway).
#[test]
fn ipv6_published_ports_answer_the_host_and_endpoints() {
    use std::{
        io::{Read, Write},
        net::{SocketAddr, TcpStream, UdpSocket},
    };
    let t = Topo::new();
    t.ipv6_uplink();
    let host: Ipv6Addr = "fd00:77::2".parse().unwrap();
    t.ok(&common::words(
        "network create a --ipv6 --subnet 10.64.1.0/24 --subnet fd00:64:1::/64",
    ));
    let web = t.endpoint_with(
        "web",
        "--network a -p 8080:80 -p [::1]:8081:80 -p 5353:53/udp",
    );
    tcp_server6(&web, 80);
    common::udp_server6(&web, 53);
    // `[::ffff:127.0.0.1]`: a dual-stack socket reaching IPv4's published port.
    for to in [
        "[::1]:8080",
        "[fd00:77::2]:8080",
        "[::1]:8081",
        "[::ffff:127.0.0.1]:8080",
    ] {
        let addr: SocketAddr = to.parse().unwrap();
        let mut c = t
            .host
            .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(3)))
            .unwrap_or_else(|e| panic!("host -> {addr}: {e}"));
        assert_eq!(c.peer_addr().unwrap(), addr, "getpeername shows {addr}");
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c.write_all(b"hi").unwrap();
        let mut r = String::new();
        c.read_to_string(&mut r).unwrap();
        assert!(r.ends_with(" hi"), "{addr}: {r}");
    }
    let s = t.host.run(|| UdpSocket::bind("[::]:0").unwrap());
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 64];
    let mut from = None;
    for _ in 0..5 {
        s.send_to(b"u", "[::1]:5353").unwrap();
        if let Ok((_, f)) = s.recv_from(&mut buf) {
            from = Some(f);
            break;
        }
    }
    assert_eq!(from, Some("[::1]:5353".parse().unwrap()));
    // Held as docker-proxy holds it: a host socket may not bind it.
    let err = t
        .host
        .run(|| std::net::TcpListener::bind("[::]:8080"))
        .expect_err("a host socket bound a published IPv6 port");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    // `[::]` takes IPv4's port too (a dual-stack socket): one published on IPv4 alone is held.
    t.ok(&["port", "publish", "web", "0.0.0.0:8090:80"]);
    let err = t
        .host
        .run(|| std::net::TcpListener::bind("[::]:8090"))
        .expect_err("a host socket bound [::] of a port published on IPv4");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    assert!(t
        .host
        .run(|| std::net::TcpListener::bind("[::]:8091"))
        .is_ok());

    // Endpoints through the host's address: with their own address, the port's own
    // endpoint from its gateway.
    let client = t.endpoint("client", &["--network", "a"]);
    let r = tcp_request(&client, host, 8080, "c").expect("client -> [host]:8080");
    let seen: SocketAddr = r.split(' ').next().unwrap().parse().unwrap();
    assert_eq!(
        seen.ip(),
        std::net::IpAddr::V6(ip6_on(&t, "client", "a")),
        "{r}"
    );
    let r = tcp_request(&web, host, 8080, "me").expect("web -> [host]:8080");
    let seen: SocketAddr = r.split(' ').next().unwrap().parse().unwrap();
    assert_eq!(
        seen.ip(),
        "fd00:64:1::1".parse::<std::net::IpAddr>().unwrap(),
        "self-hairpin comes from the gateway: {r}"
    );
    assert!(t.stats()["Counters"]["hairpin"].as_u64().unwrap() >= 2);
}

/// A far host behind the outside, `PREFIX::2` on a 1280-byte link to the outside
/// (`PREFIX::1`), which routes between it and the host.
fn far_host(t: &Topo, prefix: &str) -> common::Netns {
    let far = common::Netns::new("npfar");
    let id = common::unique();
    let (o, f) = (format!("of{id}"), format!("f{id}"));
    common::veth(&t.outside, &o, &far, &f);
    for (ns, dev, host) in [(&t.outside, &o, 1), (&far, &f, 2)] {
        ns.ip(&["link", "set", dev, "mtu", "1280"]);
        let addr = format!("{prefix}::{host}/64");
        ns.ip(&["-6", "addr", "add", &addr, "dev", dev, "nodad"]);
    }
    far.ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        &format!("{prefix}::1"),
    ]);
    t.outside.sysctl("net/ipv6/conf/all/forwarding", "1");
    far
}

/// The path MTU `ip ROUTE_GET` shows in `ns` (`route get` of a destination), if it knows one.
fn path_mtu(ns: &common::Netns, route_get: &[&str]) -> Option<String> {
    let route = ns.ip(route_get);
    route
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .map(str::to_string)
}

/// Path MTU discovery through outbound NAT: an endpoint's datagram too big for a link beyond
/// the outside router is refused there with a Packet Too Big to the host's address, which
/// netpath carries back to the endpoint; its stack then knows the path's MTU.
#[test]
fn packet_too_big_about_an_outbound_flow_reaches_its_endpoint() {
    let t = Topo::new();
    t.ipv6_uplink();
    let _far = far_host(&t, "fd00:78");
    t.ok(&common::words(
        "network create a --ipv6 --subnet 10.65.1.0/24 --subnet fd00:65:1::/64",
    ));
    let ep = t.endpoint("web", &["--network", "a"]);
    let far_addr: Ipv6Addr = "fd00:78::2".parse().unwrap();
    let sock = ep.run(|| std::net::UdpSocket::bind("[::]:0").unwrap());
    let mtu = || path_mtu(&ep, &["-6", "route", "get", "fd00:78::2"]);
    assert_eq!(mtu(), None, "no path MTU known yet");
    common::wait_until(
        "the endpoint learning the path's MTU",
        Duration::from_secs(10),
        || {
            // 1,400 bytes: through the host's links, not the far one.
            let _ = sock.send_to(&[7u8; 1400], (far_addr, 9000));
            mtu().as_deref() == Some("1280")
        },
    );
    let s = t.stats();
    assert!(
        s["Counters"]["icmp_error_back"].as_u64().unwrap() >= 1,
        "{s}"
    );
}

/// Sends a datagram from `client` to `to` until `mtu` (the endpoint's path MTU) says `want`:
/// the endpoint's answers learning it, less IPv4's 20 bytes.
fn asks_until_mtu(
    client: &std::net::UdpSocket,
    to: &str,
    mtu: impl Fn() -> Option<String>,
    want: &str,
) {
    common::wait_until(
        &format!("the endpoint learning path MTU {want}"),
        Duration::from_secs(10),
        || {
            let _ = client.send_to(b"q", to);
            mtu().as_deref() == Some(want)
        },
    );
}

/// Path MTU discovery through NAT46: an IPv4-only endpoint's reply to an IPv6 client, too big
/// for a link on the client's side of the outside router, is refused there with a Packet Too
/// Big to the host's address; netpath gives it to the endpoint as fragmentation needed, the
/// MTU 20 bytes smaller (IPv4's header is), and the endpoint's stack then knows the path's
/// MTU towards the client it sees (its gateway). A reply too big for the uplink itself once
/// made IPv6 is answered so by netpath.
#[test]
fn packet_too_big_about_a_nat46_reply_reaches_the_ipv4_endpoint() {
    let t = Topo::new();
    t.ipv6_uplink();
    let far = far_host(&t, "fd00:79");
    t.ok(&common::words("network create v4 --subnet 10.67.1.0/24"));
    let ep = t.endpoint("old", &["--network", "v4", "-p", "5354:53/udp"]);
    // The endpoint answers every datagram with 1,400 bytes: 1,420 as IPv6, past the far link.
    let server = ep.run(|| std::net::UdpSocket::bind("0.0.0.0:53").unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((_, from)) = server.recv_from(&mut buf) {
            let _ = server.send_to(&[7u8; 1400], from);
        }
    });
    let client = far.run(|| std::net::UdpSocket::bind("[::]:0").unwrap());
    let mtu = || path_mtu(&ep, &["route", "get", "10.67.1.1"]);
    assert_eq!(mtu(), None, "no path MTU known yet");
    asks_until_mtu(&client, "[fd00:77::2]:5354", mtu, "1260");
    let c = &t.stats()["Counters"];
    assert!(c["nat46"].as_u64().unwrap() >= 1, "{c}");
    assert!(c["icmp_error_back"].as_u64().unwrap() >= 1, "{c}");

    // A reply too big for the uplink itself once made IPv6 (1,500 bytes as IPv4), from another
    // endpoint (this one knows a smaller path MTU now): netpath answers it as a router would,
    // and the endpoint learns the uplink's MTU less 20.
    let ep = t.endpoint("old2", &["--network", "v4", "-p", "5355:54/udp"]);
    let mtu = || path_mtu(&ep, &["route", "get", "10.67.1.1"]);
    let big = ep.run(|| std::net::UdpSocket::bind("0.0.0.0:54").unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((_, from)) = big.recv_from(&mut buf) {
            let _ = big.send_to(&[7u8; 1472], from);
        }
    });
    let near = t
        .outside
        .run(|| std::net::UdpSocket::bind("[::]:0").unwrap());
    asks_until_mtu(&near, "[fd00:77::2]:5355", mtu, "1480");
}

/// Docker's `gateway_mode_ipv6=routed` beside NAT'd IPv4: the network's IPv6 addresses are
/// reached from outside by routing (the client's own address seen) and its endpoints go out
/// with their own, in eBPF both ways, though the host does not forward IPv6; an ingress policy
/// holds for what is routed in; IPv4 leaves NAT'd as before. On TC and XDP.
fn a_routed_ipv6_network_is_reached_and_goes_out_without_nat(t: Topo) {
    t.ipv6_uplink();
    t.ok(&common::words(
        "network create r --ipv6 --subnet 10.66.1.0/24 --subnet fd00:66:1::/64 -o com.docker.network.bridge.gateway_mode_ipv6=routed",
    ));
    let e = t.endpoint("e", &["--network", "r"]);
    tcp_server6(&e, 80);
    tcp_server6(&t.outside, 9000);
    let ip = ip6_on(&t, "e", "r");
    t.outside
        .ip(&["-6", "route", "add", "fd00:66:1::/64", "via", "fd00:77::2"]);
    assert_eq!(
        t.host
            .exec("sysctl", &["-n", "net.ipv6.conf.all.forwarding"])
            .trim(),
        "0",
        "the host itself does not forward IPv6"
    );
    let mut r = String::new();
    common::wait_until(
        "the outside reaching the endpoint by routing",
        Duration::from_secs(10),
        || tcp_request(&t.outside, ip, 80, "in").map(|x| r = x).is_ok(),
    );
    assert!(
        r.starts_with("[fd00:77::1]:"),
        "the client's own address: {r}"
    );
    let r = tcp_request(&e, "fd00:77::1".parse::<Ipv6Addr>().unwrap(), 9000, "out")
        .expect("out by routing");
    assert!(
        r.starts_with(&format!("[{ip}]:")),
        "the endpoint's own address, no NAT: {r}"
    );
    // IPv4 of the same network is NAT'd: the outside sees the host.
    common::tcp_server(&t.outside, 9001);
    let r = tcp_request(&e, common::OUTSIDE, 9001, "v4").expect("IPv4 out");
    assert!(r.starts_with(&format!("{}:", common::HOST)), "{r}");
    let c = &t.stats()["Counters"];
    assert!(c["routed_in"].as_u64().unwrap() >= 1, "{c}");
    assert!(c["routed_out"].as_u64().unwrap() >= 1, "{c}");
    assert!(c["snat"].as_u64().unwrap() >= 1, "{c}");

    // An ingress policy holds for what is routed in.
    t.apply_policies(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: closed, namespace: default}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n",
    );
    assert!(
        !tcp_reachable(&t.outside, ip, 80, SHORT),
        "refused by the policy"
    );
    t.ok(&["policy", "rm", "closed"]);
    assert!(tcp_request(&t.outside, ip, 80, "again").is_ok());

    // A network left in NAT mode is not reached by routing; a mode netpath does not know is
    // refused.
    t.ok(&common::words(
        "network create n --ipv6 --subnet 10.66.2.0/24 --subnet fd00:66:2::/64",
    ));
    let n = t.endpoint("n1", &["--network", "n"]);
    tcp_server6(&n, 80);
    t.outside
        .ip(&["-6", "route", "add", "fd00:66:2::/64", "via", "fd00:77::2"]);
    assert!(!tcp_reachable(&t.outside, ip6_on(&t, "n1", "n"), 80, SHORT));
    let refused = t.refused(&common::words(
        "network create bad --ipv6 -o com.docker.network.bridge.gateway_mode_ipv6=bridge",
    ));
    assert!(refused.contains("nat or routed"), "{refused}");
}

#[test]
fn a_routed_ipv6_network_is_reached_and_goes_out_without_nat_on_tc() {
    a_routed_ipv6_network_is_reached_and_goes_out_without_nat(Topo::new());
}

#[test]
fn a_routed_ipv6_network_is_reached_and_goes_out_without_nat_on_xdp() {
    a_routed_ipv6_network_is_reached_and_goes_out_without_nat(Topo::with_xdp("native"));
}

/// A network of IPv6 alone (Docker's `--ipv4=false`): its endpoints have an IPv6 address and
/// no IPv4 one; they reach each other with their own addresses and by name (the namespace's
/// resolver: the gateway's IPv6 address, answered in the kernel), the outside through source
/// NAT, and are reached on a published port by an IPv6 client with its own address; IPv4
/// they send is a spoof; `inspect` says what Docker says.
#[test]
fn a_network_of_ipv6_alone() {
    let t = Topo::new();
    t.ipv6_uplink();
    t.ok(&common::words(
        "network create six --ipv4=false --ipv6 --subnet fd00:64::/64",
    ));
    let n = &inspect(&t, "network", "six")[0];
    assert_eq!(
        (n["EnableIPv4"].as_bool(), n["EnableIPv6"].as_bool()),
        (Some(false), Some(true))
    );
    let configs = n["IPAM"]["Config"].as_array().unwrap();
    assert_eq!(configs.len(), 1, "{configs:?}");
    assert_eq!(configs[0]["Subnet"], "fd00:64::/64");
    let a = t.endpoint("a", &["--network", "six"]);
    let b = t.endpoint("b", &["--network", "six"]);
    assert!(
        a.ip(&["-4", "-o", "addr", "show", "dev", "eth0"])
            .trim()
            .is_empty(),
        "no IPv4 address inside"
    );
    let e = &inspect(&t, "endpoint", "a")[0];
    assert_eq!(e["Networks"]["six"]["IPAddress"], "");
    let (a6, b6) = (ip6_on(&t, "a", "six"), ip6_on(&t, "b", "six"));
    assert_eq!(a6, "fd00:64::2".parse::<Ipv6Addr>().unwrap());

    // Endpoint to endpoint, and by name through the namespace's own resolver.
    tcp_server6(&b, 80);
    let r = tcp_request(&a, b6, 80, "hi").expect("a reaches b");
    assert!(r.starts_with(&format!("[{a6}]:")), "{r}");
    let out = a.exec("getent", &["ahostsv6", "b"]);
    assert!(out.starts_with(&b6.to_string()), "{out}");
    assert!(t.stats()["Counters"]["dns_kernel"].as_u64().unwrap() >= 1);

    // Out through source NAT on the uplink's IPv6 address.
    tcp_server6(&t.outside, 9000);
    let outside: Ipv6Addr = "fd00:77::1".parse().unwrap();
    let mut reply = String::new();
    common::wait_until("a reaching the outside", Duration::from_secs(10), || {
        tcp_request(&a, outside, 9000, "out")
            .map(|r| reply = r)
            .is_ok()
    });
    assert!(reply.starts_with("[fd00:77::2]:"), "{reply}");

    // A published port answers an IPv6 client, which b sees with its own address.
    t.ok(&["port", "publish", "b", "8080:80"]);
    let host: Ipv6Addr = "fd00:77::2".parse().unwrap();
    let r = tcp_request(&t.outside, host, 8080, "in").expect("the published port");
    assert!(r.starts_with("[fd00:77::1]:"), "{r}");

    // Network policy knows them by their IPv6 address: a labelled peer let in, the world
    // (the outside client of the published port) not.
    t.ok(&["endpoint", "update", "a", "--label", "app=a"]);
    t.apply_policies(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: six, namespace: default}\nspec:\n  podSelector: {}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: a}}}]\n",
    );
    assert!(tcp_request(&a, b6, 80, "labelled").is_ok(), "a is let in");
    assert!(
        !tcp_reachable(&t.outside, host, 8080, SHORT),
        "the world is not"
    );
    t.ok(&["policy", "rm", "six"]);
    assert!(tcp_request(&t.outside, host, 8080, "open").is_ok());

    // What a network of IPv6 alone cannot take, refused in one line.
    let err = t.refused(&["port", "publish", "b", "127.0.0.1:8081:80"]);
    assert!(err.contains("has no IPv4 address"), "{err}");
    let err = t.refused(&["network", "connect", "six", "a"]);
    assert!(err.contains("already"), "{err}");
    let ns = common::Netns::new("np-ep");
    let err = t.refused(&[
        "endpoint",
        "create",
        "c",
        "--netns",
        &ns.path(),
        "--network",
        "six",
        "--ip",
        "10.64.0.9",
    ]);
    assert!(err.contains("network six has no IPv4 subnet"), "{err}");
    let err = t.refused(&["network", "create", "none", "--ipv4=false"]);
    assert!(err.contains("IPv4 or IPv6 must be enabled"), "{err}");
    let err = t.refused(&common::words(
        "network create mixed --ipv4=false --ipv6 --subnet 10.65.0.0/24",
    ));
    assert!(err.contains("goes against --ipv4=false"), "{err}");

    // IPv4 from an endpoint of IPv6 alone is a spoof.
    let spoofs = t.stats()["Counters"]["drop_spoof"].as_u64().unwrap_or(0);
    a.ip(&["addr", "add", "10.64.0.5/24", "dev", "eth0"]);
    assert!(!ping(
        &a,
        "10.64.0.1".parse::<std::net::Ipv4Addr>().unwrap()
    ));
    assert!(t.stats()["Counters"]["drop_spoof"].as_u64().unwrap() > spoofs);
}
