//! Docker drives netpath: a real dockerd (Debian's docker.io) in the test's host namespace,
//! with netpath's agent serving its network and IPAM plugin, Docker's own bridge and iptables
//! off. Every case checks with real traffic: from the outside namespace through published
//! ports (the client's address kept), and between containers.
mod common;

use std::{net::Ipv4Addr, time::Duration};

use common::*;
use netpath_user::testing::docker::{Dockerd, DockerdOptions, IMAGE};
use serde_json::Value;

/// A dockerd and an agent serving it the `netpath` plugin, in one host namespace.
struct Lab {
    // Dropped first: containers go while the agent still answers Docker.
    d: Dockerd,
    t: Topo,
    /// The plugin socket's directory, removed after dockerd and the agent are gone.
    _plugins: netpath_user::scratch::ScratchDir,
}

impl Lab {
    fn new() -> Lab {
        Lab::with(false)
    }

    fn with(live_restore: bool) -> Lab {
        Lab::with_options(DockerdOptions {
            own_rules: false,
            live_restore,
            // Without Docker's bridge, the host is reached at its uplink address.
            host_gateway_ip: Some(HOST),
            ..DockerdOptions::default()
        })
    }

    /// dockerd as Docker's defaults have it (docker0, iptables, docker-proxy) and netpath's
    /// plugin beside it.
    fn beside_docker0() -> Lab {
        Lab::with_options(DockerdOptions::default())
    }

    fn with_options(opts: DockerdOptions) -> Lab {
        let plugins = netpath_user::scratch::ScratchDir::new("plugins");
        let dir = plugins.display().to_string();
        let mut t =
            Topo::with_agent_args(&["--docker-plugin", "netpath", "--docker-plugin-dir", &dir]);
        let d = Dockerd::start_with(
            &t.host,
            &DockerdOptions {
                plugins: Some(plugins.to_path_buf()),
                ..opts
            },
        )
        .expect("dockerd");
        // The agent reads dockerd's own view too (its socket is known only now).
        t.stop_agent();
        let host = format!("unix://{}", d.socket().display());
        t.set_agent_args(&[
            "--docker-plugin",
            "netpath",
            "--docker-plugin-dir",
            &dir,
            "--docker-host",
            &host,
        ]);
        t.start_agent();
        d.image().expect("the test image");
        Lab {
            d,
            t,
            _plugins: plugins,
        }
    }

    fn docker(&self, args: &[&str]) -> String {
        self.d
            .docker(args)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.d.log()))
            .trim()
            .to_string()
    }

    /// `docker WORDS…` (split on white space): what it printed.
    fn words(&self, line: &str) -> String {
        self.docker(&line.split_whitespace().collect::<Vec<_>>())
    }

    /// `docker WORDS…`, which must fail: what Docker said.
    fn words_err(&self, line: &str) -> String {
        self.docker_err(&line.split_whitespace().collect::<Vec<_>>())
    }

    /// `docker run -d FLAGS… IMAGE` (FLAGS split on white space): the container's id.
    fn run(&self, flags: &str) -> String {
        self.docker(&self.run_args(flags))
    }

    /// `docker run -d FLAGS… IMAGE`, which must fail: what Docker said.
    fn run_err(&self, flags: &str) -> String {
        self.docker_err(&self.run_args(flags))
    }

    fn run_args<'a>(&self, flags: &'a str) -> Vec<&'a str> {
        let mut args = vec!["run", "-d"];
        args.extend(flags.split_whitespace());
        args.push(IMAGE);
        args
    }

    fn docker_err(&self, args: &[&str]) -> String {
        match self.d.docker(args) {
            Ok(out) => panic!("docker {args:?} succeeded: {out}"),
            Err(e) => format!("{e:#}"),
        }
    }

    /// `docker inspect` of one object.
    fn inspect(&self, what: &str) -> Value {
        let v: Value = serde_json::from_str(&self.docker(&["inspect", what])).unwrap();
        v[0].clone()
    }

    /// The container's address on Docker network `net`.
    fn ip(&self, container: &str, net: &str) -> Ipv4Addr {
        self.inspect(container)["NetworkSettings"]["Networks"][net]["IPAddress"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// What the container's `/cgi-bin/ip` answers to a request from the outside namespace to
    /// HOST:port: the client's address as the container saw it.
    fn seen_from_outside(&self, port: u16) -> std::io::Result<String> {
        http_get(&self.t.outside, HOST, port, "/cgi-bin/ip")
    }

    /// The netpath endpoint of `container` on Docker network `net`.
    fn endpoint_of(&self, container: &str, net: &str) -> String {
        let id = self.inspect(container)["NetworkSettings"]["Networks"][net]["EndpointID"]
            .as_str()
            .unwrap()
            .to_string();
        id[..12].to_string()
    }

    fn netpath_json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.t.ok(args)).unwrap()
    }
}

/// The body of `GET path` from `ns` to `to:port`, an address as [`plain_addr`] shows it.
fn http_get(
    ns: &Netns,
    to: impl Into<std::net::IpAddr>,
    port: u16,
    path: &str,
) -> std::io::Result<String> {
    let resp = tcp_request(ns, to, port, &format!("GET {path} HTTP/1.0\r\n\r\n"))?;
    let resp = resp.replace("\r\n", "\n");
    Ok(plain_addr(
        resp.split_once("\n\n").map_or(resp.as_str(), |(_, b)| b),
    ))
}

/// busybox httpd's `REMOTE_ADDR` (`[::ffff:10.0.0.1]`) as a plain IPv4 address.
fn plain_addr(s: &str) -> String {
    s.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_start_matches("::ffff:")
        .to_string()
}

/// The endpoint veths (and handed-over peers) in `ns`.
fn endpoint_links(ns: &Netns) -> Vec<String> {
    ns.ip(&["-o", "link"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| netpath_user::netlink::is_endpoint_veth_name(n) || n.starts_with("nx"))
        .collect()
}

/// Waits until the container's server answers inside it.
fn serving(lab: &Lab, container: &str) {
    let start = std::time::Instant::now();
    while let Err(e) = http_from(lab, container, "127.0.0.1") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{container}'s server does not answer: {e}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What `/cgi-bin/ip` of `to` (port 80) answers a request from inside `container`: the
/// requester's address as the server saw it. Connections time out after 2 s (busybox nc;
/// its wget crashes with a timeout).
fn http_from(lab: &Lab, container: &str, to: &str) -> Result<String, String> {
    let script = format!("printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {to} 80");
    let out = lab
        .d
        .docker(&["exec", container, "sh", "-c", &script])
        .map_err(|e| format!("{e:#}"))?;
    let out = out.replace("\r\n", "\n");
    match out.split_once("\n\n") {
        Some((_, body)) if !body.trim().is_empty() => Ok(plain_addr(body)),
        _ => Err(format!("no answer from {to}: {out:?}")),
    }
}

/// Waits until the container's server answers from outside on `port`.
fn wait_serving(lab: &Lab, port: u16) {
    wait_until("the container's server", Duration::from_secs(10), || {
        lab.seen_from_outside(port).is_ok()
    });
}

#[test]
fn docker_run_publishes_through_netpath_and_names_resolve() {
    let lab = Lab::new();
    let id = lab.words("network create -d netpath --ipam-driver netpath --subnet 10.31.0.0/24 --gateway 10.31.0.1 web");
    // The same network, in netpath's words.
    let nets = lab.netpath_json(&["network", "inspect", &id[..12]]);
    assert_eq!(nets[0]["IPAM"]["Config"][0]["Subnet"], "10.31.0.0/24");
    let net = lab.inspect("web");
    assert_eq!(net["IPAM"]["Config"][0]["Gateway"], "10.31.0.1");

    lab.run("--name front --network web -p 8080:80");
    wait_serving(&lab, 8080);
    // The client's own address reaches the container.
    assert_eq!(lab.seen_from_outside(8080).unwrap(), OUTSIDE.to_string());
    let front_ip = lab.ip("front", "web");
    assert!("10.31.0.0/24"
        .parse::<netpath_user::ipam::Subnet>()
        .unwrap()
        .contains(front_ip));
    // The mapping, by the container's endpoint (dockerd cannot show a plugin's mappings in
    // `docker port`: moby/libnetwork#2451).
    let endpoint = lab.endpoint_of("front", "web");
    // Docker's `::` binding too, though the container has IPv4 alone: reached by NAT46.
    assert_eq!(
        lab.t.ok(&["port", &endpoint]),
        "80/tcp -> 0.0.0.0:8080\n80/tcp -> [::]:8080\n"
    );

    // One container reaches another by name.
    lab.docker(&["run", "-d", "--name", "back", "--network", "web", IMAGE]);
    let back_ip = lab.ip("back", "web");
    serving(&lab, "back");
    assert_eq!(
        http_from(&lab, "back", "front").unwrap(),
        back_ip.to_string()
    );
    let resolv = lab.docker(&["exec", "back", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains("nameserver 127.0.0.11"),
        "Docker's embedded DNS: {resolv}"
    );

    // The gateway came from netpath: Docker added no gateway bridge network of its own.
    let nets = lab.docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.contains("docker_gwbridge"), "{nets}");
    let routes = lab.docker(&["exec", "back", "ip", "route"]);
    assert!(
        routes.starts_with("default via 10.31.0.1 dev eth0"),
        "{routes}"
    );

    // Nothing of netpath's is a NAT rule.
    let rules = lab.t.host.exec("iptables-save", &[]);
    assert!(
        !rules.contains("DNAT") && !rules.contains("MASQUERADE"),
        "{rules}"
    );

    // docker rm -f and docker network rm leave nothing behind.
    lab.docker(&["rm", "-f", "front", "back"]);
    assert_eq!(lab.t.ok(&["endpoint", "ls", "-q"]), "");
    assert_eq!(
        lab.t.ok(&["port", "ls"]).lines().count(),
        1,
        "only the heading"
    );
    assert!(lab.seen_from_outside(8080).is_err());
    lab.docker(&["network", "rm", "web"]);
    let left = lab.t.ok(&["network", "ls", "-q"]);
    assert!(!left.contains(&id[..12]), "{left}");
    assert_eq!(endpoint_links(&lab.t.host), Vec::<String>::new());
}

/// `docker network create -d netpath --ipam-driver netpath NAME` with more flags.
fn create(lab: &Lab, name: &str, flags: &[&str]) -> String {
    let mut args = vec![
        "network",
        "create",
        "-d",
        "netpath",
        "--ipam-driver",
        "netpath",
    ];
    args.extend_from_slice(flags);
    args.push(name);
    lab.docker(&args)
}

/// A UDP echo server in the container on `port`.
fn udp_echo(lab: &Lab, container: &str, port: u16) {
    lab.docker(&["exec", "-d", container, "udp-echo", &port.to_string()]);
}

#[test]
fn every_form_of_publish_reaches_the_container() {
    let lab = Lab::new();
    create(&lab, "pub", &["--subnet", "10.32.0.0/24"]);
    lab.run("--name pc --network pub -p 8080:80 -p 127.0.0.1:8081:80 -p 9000-9001:80 -p 7000-7001:7000-7001 -p 5353:5353/udp -p 80");
    lab.run("--name all --network pub -P");
    wait_serving(&lab, 8080);
    let ep = lab.endpoint_of("pc", "pub");
    let ports = lab.t.ok(&["port", &ep]);
    // IPv4's mappings (Docker's `::` bindings are published too: NAT46).
    assert!(ports.contains("80/tcp -> [::]:8080\n"), "{ports}");
    let mapping = |proto_port: &str| -> Vec<(Ipv4Addr, u16)> {
        ports
            .lines()
            .filter_map(|l| l.split_once(" -> "))
            .filter(|(c, _)| *c == proto_port)
            .filter_map(|(_, h)| {
                let (ip, port) = h.rsplit_once(':').unwrap();
                Some((ip.parse().ok()?, port.parse().unwrap()))
            })
            .collect()
    };
    let tcp80 = mapping("80/tcp");
    // 8080, 127.0.0.1:8081, one of 9000-9001, one ephemeral.
    assert_eq!(tcp80.len(), 4, "{ports}");
    assert!(tcp80.contains(&(Ipv4Addr::LOCALHOST, 8081)), "{ports}");
    let ranged = tcp80
        .iter()
        .find(|(_, p)| (9000..=9001).contains(p))
        .unwrap()
        .1;
    let ephemeral = tcp80
        .iter()
        .find(|(ip, p)| ip.is_unspecified() && *p != 8080 && *p != ranged)
        .unwrap()
        .1;
    for port in [8080, ranged, ephemeral] {
        assert_eq!(
            lab.seen_from_outside(port).unwrap(),
            OUTSIDE.to_string(),
            "port {port}"
        );
    }
    // Host-local only: from the host itself, not from outside.
    let local = http_get(&lab.t.host, Ipv4Addr::LOCALHOST, 8081, "/cgi-bin/ip").unwrap();
    assert!(!local.is_empty());
    assert!(lab.seen_from_outside(8081).is_err());
    // A range, one to one.
    assert_eq!(mapping("7000/tcp"), vec![(Ipv4Addr::UNSPECIFIED, 7000)]);
    assert_eq!(mapping("7001/tcp"), vec![(Ipv4Addr::UNSPECIFIED, 7001)]);
    // UDP.
    udp_echo(&lab, "pc", 5353);
    wait_until("the UDP echo", Duration::from_secs(10), || {
        udp_request(&lab.t.outside, HOST, 5353, "ping").is_ok_and(|r| r == "ping")
    });
    // -P: EXPOSE 80 of the image, on an ephemeral port.
    let all = lab.t.ok(&["port", &lab.endpoint_of("all", "pub")]);
    let first = all.lines().next().unwrap_or_default();
    let (_, host) = first.split_once(" -> ").expect(&all);
    assert!(all.starts_with("80/tcp -> 0.0.0.0:"), "{all}");
    let port: u16 = host.rsplit_once(':').unwrap().1.parse().unwrap();
    wait_serving(&lab, port);
    assert_eq!(lab.seen_from_outside(port).unwrap(), OUTSIDE.to_string());
}

#[test]
fn ipv6_networks_give_containers_their_ipv6_addresses() {
    let lab = Lab::new();
    create(
        &lab,
        "six",
        &common::words("--ipv6 --subnet 10.37.0.0/24 --subnet fd00:37::/64"),
    );
    let net = lab.inspect("six");
    assert_eq!(net["EnableIPv6"], true, "{net}");
    lab.run("--name s1 --network six --ip6 fd00:37::10");
    lab.docker(&["run", "-d", "--name", "s2", "--network", "six", IMAGE]);
    let v6 = |c: &str| {
        lab.inspect(c)["NetworkSettings"]["Networks"]["six"]["GlobalIPv6Address"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(v6("s1"), "fd00:37::10");
    let s2 = v6("s2");
    assert!(
        s2.starts_with("fd00:37::"),
        "allocated from the subnet: {s2:?}"
    );
    // netpath's endpoint has it, and the two reach each other over IPv6 (veth to veth).
    let ep: Value = lab.netpath_json(&["endpoint", "inspect", &lab.endpoint_of("s1", "six")]);
    assert_eq!(ep[0]["GlobalIPv6Address"], "fd00:37::10", "{ep}");
    wait_until("s2 reaching s1 over IPv6", Duration::from_secs(10), || {
        lab.d
            .docker(&["exec", "s2", "ping", "-c1", "-W1", "fd00:37::10"])
            .is_ok()
    });
    assert!(lab.t.stats()["Counters"]["ndp_reply"].as_u64().unwrap() > 0);

    // `-p` publishes on both families; an IPv6 client outside keeps its own address.
    lab.t.ipv6_uplink();
    lab.run("--name s3 --network six -p 8081:80");
    let ports = lab.t.ok(&["port", &lab.endpoint_of("s3", "six")]);
    assert!(ports.contains("80/tcp -> [::]:8081"), "{ports}");
    let host6: std::net::Ipv6Addr = "fd00:77::2".parse().unwrap();
    let mut seen = String::new();
    wait_until(
        "an IPv6 client reaching s3",
        Duration::from_secs(10),
        || {
            http_get(&lab.t.outside, host6, 8081, "/cgi-bin/ip")
                .map(|s| seen = s)
                .is_ok()
        },
    );
    assert_eq!(seen, "fd00:77::1");

    // A container of IPv4 alone on a network without IPv6: Docker's `::` binding of `-p`
    // reaches it from an IPv6 client by NAT46, the container seeing its gateway.
    create(&lab, "four", &["--subnet", "10.38.0.0/24"]);
    lab.run("--name s4 --network four -p 8082:80");
    let mut seen = String::new();
    wait_until(
        "an IPv6 client reaching s4",
        Duration::from_secs(10),
        || {
            http_get(&lab.t.outside, host6, 8082, "/cgi-bin/ip")
                .map(|s| seen = s)
                .is_ok()
        },
    );
    assert_eq!(seen, "10.38.0.1");
}

#[test]
fn networks_isolate_and_connect_live() {
    let lab = Lab::new();
    create(
        &lab,
        "a",
        &["--subnet", "10.33.0.0/24", "--ip-range", "10.33.0.128/25"],
    );
    create(&lab, "b", &["--subnet", "10.34.0.0/24"]);
    create(
        &lab,
        "quiet",
        &common::words("--subnet 10.35.0.0/24 -o com.docker.network.bridge.enable_icc=false"),
    );
    create(&lab, "inner", &["--subnet", "10.36.0.0/24", "--internal"]);
    lab.run("--name a1 --network a --ip 10.33.0.10");
    lab.docker(&["run", "-d", "--name", "a2", "--network", "a", IMAGE]);
    lab.docker(&["run", "-d", "--name", "b1", "--network", "b", IMAGE]);
    assert_eq!(lab.ip("a1", "a"), Ipv4Addr::new(10, 33, 0, 10));
    let a2 = lab.ip("a2", "a");
    assert!(a2.octets()[3] >= 128, "from the ip-range: {a2}");
    let get = |from: &str, to: Ipv4Addr| http_from(&lab, from, &to.to_string());
    // Servers up first: what fails later fails for the network's reasons.
    for c in ["a1", "a2", "b1"] {
        serving(&lab, c);
    }
    assert_eq!(
        get("a2", Ipv4Addr::new(10, 33, 0, 10)).unwrap(),
        a2.to_string()
    );
    let b1 = lab.ip("b1", "b");
    assert!(get("a1", b1).is_err(), "networks are isolated");

    // Connected live, with an alias; then disconnected.
    lab.docker(&["network", "connect", "--alias", "bee", "b", "a1"]);
    let a1_on_b = lab.ip("a1", "b");
    assert_eq!(get("a1", b1).unwrap(), a1_on_b.to_string());
    assert_eq!(http_from(&lab, "b1", "bee").unwrap(), b1.to_string());
    lab.docker(&["network", "disconnect", "b", "a1"]);
    assert!(get("a1", b1).is_err());
    assert!(http_from(&lab, "b1", "bee").is_err());

    // icc=false: no container-to-container traffic on the network.
    lab.docker(&["run", "-d", "--name", "q1", "--network", "quiet", IMAGE]);
    lab.docker(&["run", "-d", "--name", "q2", "--network", "quiet", IMAGE]);
    serving(&lab, "q2");
    assert!(get("q1", lab.ip("q2", "quiet")).is_err(), "icc=false");

    // Internal: members talk, nothing leaves, no ports.
    lab.docker(&["run", "-d", "--name", "i1", "--network", "inner", IMAGE]);
    lab.docker(&["run", "-d", "--name", "i2", "--network", "inner", IMAGE]);
    let i2 = lab.ip("i2", "inner");
    serving(&lab, "i2");
    assert_eq!(get("i1", i2).unwrap(), lab.ip("i1", "inner").to_string());
    assert!(get("i1", OUTSIDE).is_err());
    // As with Docker's bridge, -p on an internal network publishes nothing (dockerd does not
    // ask a driver to).
    lab.docker(&["run", "-d", "--network", "inner", "-p", "8088:80", IMAGE]);
    assert!(lab.seen_from_outside(8088).is_err());

    // host.docker.internal: the host's own service, by name.
    tcp_server(&lab.t.host, 7777);
    lab.run("--name hg --network a --add-host host.docker.internal:host-gateway");
    let hosts = lab.docker(&["exec", "hg", "cat", "/etc/hosts"]);
    let gw = hosts
        .lines()
        .find(|l| l.ends_with("host.docker.internal"))
        .expect(&hosts);
    assert!(gw.starts_with(&format!("{HOST}\t")), "{gw}");
    let said = lab.docker(&[
        "exec",
        "hg",
        "sh",
        "-c",
        "echo hi | nc -w 2 host.docker.internal 7777",
    ]);
    assert!(said.ends_with("hi"), "{said}");
    // Outbound through netpath's source NAT.
    tcp_server(&lab.t.outside, 7778);
    let said = lab.docker(&[
        "exec",
        "hg",
        "sh",
        "-c",
        &format!("echo out | nc -w 2 {OUTSIDE} 7778"),
    ]);
    assert!(
        said.starts_with(&HOST.to_string()),
        "NATed to the host's address: {said}"
    );
}

#[test]
fn containers_stay_connected_across_restarts_of_everything() {
    let mut lab = Lab::with(true);
    create(&lab, "life", &["--subnet", "10.37.0.0/24"]);
    lab.run("--name web --network life -p 8080:80");
    lab.docker(&["run", "-d", "--name", "peer", "--network", "life", IMAGE]);
    wait_serving(&lab, 8080);
    serving(&lab, "peer");
    let reach = |lab: &Lab, after: &str| {
        wait_serving(lab, 8080);
        assert_eq!(
            lab.seen_from_outside(8080).unwrap(),
            OUTSIDE.to_string(),
            "{after}"
        );
        let peer = lab.ip("peer", "life").to_string();
        assert_eq!(http_from(lab, "peer", "web"), Ok(peer), "{after}");
    };
    reach(&lab, "start");

    lab.docker(&["restart", "-t", "1", "web"]);
    reach(&lab, "docker restart");
    lab.docker(&["stop", "-t", "1", "web"]);
    assert!(
        lab.seen_from_outside(8080).is_err(),
        "a stopped container publishes nothing"
    );
    lab.docker(&["start", "web"]);
    reach(&lab, "docker stop, start");

    // dockerd restarts; with live-restore its containers run on, connected.
    lab.d.restart().expect("dockerd restart");
    reach(&lab, "dockerd restart");
    // The agent restarts (killed, even): nothing of Docker's is lost.
    lab.t.kill_agent();
    assert_eq!(
        lab.seen_from_outside(8080).unwrap(),
        OUTSIDE.to_string(),
        "the datapath runs on"
    );
    lab.t.start_agent();
    reach(&lab, "agent restart");
    lab.docker(&["run", "-d", "--name", "late", "--network", "life", IMAGE]);
    serving(&lab, "late");
    assert_eq!(
        http_from(&lab, "late", "web").unwrap(),
        lab.ip("late", "life").to_string()
    );

    // Every trace goes with the containers and the network.
    lab.docker(&["rm", "-f", "web", "peer", "late"]);
    lab.docker(&["network", "rm", "life"]);
    assert_eq!(lab.t.ok(&["endpoint", "ls", "-q"]), "");
    assert_eq!(
        lab.t.ok(&["network", "ls", "-q"]).lines().count(),
        1,
        "only bridge"
    );
    assert_eq!(endpoint_links(&lab.t.host), Vec::<String>::new());
    let stats = lab.t.stats();
    for what in ["Endpoints", "PublishedPorts", "Flows"] {
        assert_eq!(stats[what].as_u64(), Some(0), "{what}: {stats}");
    }
}

#[test]
fn refusals_reach_docker_as_one_line_and_change_nothing() {
    let lab = Lab::new();
    create(&lab, "one", &["--subnet", "10.38.0.0/24"]);
    // A pool overlapping another network's.
    let e =
        lab.words_err("network create -d netpath --ipam-driver netpath --subnet 10.38.0.0/16 two");
    assert!(e.contains("overlaps"), "{e}");
    // An IPv6 subnet no network may use.
    let e = lab
        .words_err("network create -d netpath --ipv6 --subnet 10.39.0.0/24 --subnet fe80::/64 six");
    assert!(e.contains("link-local"), "{e}");
    // An option netpath does not know.
    let e = lab.words_err(
        "network create -d netpath --subnet 10.39.0.0/24 -o com.example.colour=blue opt",
    );
    assert!(e.contains("com.example.colour"), "{e}");
    // A host port a host process holds.
    tcp_server(&lab.t.host, 2222);
    let e = lab.run_err("--name busy --network one -p 2222:80");
    assert!(e.contains("2222"), "{e}");
    let said: Vec<&str> = e.lines().filter(|l| l.contains("2222")).collect();
    assert_eq!(said.len(), 1, "{e}");
    assert!(said[0].contains("in use"), "{e}");
    // A static address outside the subnet.
    let e = lab.docker_err(&["run", "-d", "--network", "one", "--ip", "10.99.0.5", IMAGE]);
    assert!(e.contains("10.99.0.5"), "{e}");
    let nets = lab.t.ok(&["network", "ls", "-q"]);
    assert_eq!(nets.lines().count(), 2, "bridge and one: {nets}");
    assert_eq!(lab.t.ok(&["endpoint", "ls", "-q"]), "");
    assert_eq!(endpoint_links(&lab.t.host), Vec::<String>::new());

    // An agent killed leaves its plugin socket; uninstall takes it, the pools and the state
    // directory away.
    let socket = lab._plugins.join("netpath.sock");
    assert!(lab._plugins.join("netpath.sock").exists());
    let mut lab = lab;
    lab.t.kill_agent();
    let out = lab.t.uninstall();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!socket.exists(), "the plugin socket is gone");
    assert!(!lab.t.state_dir().exists(), "the state directory is gone");
}

#[test]
fn the_cli_does_not_take_dockers_endpoints_and_networks_from_under_it() {
    let lab = Lab::new();
    let id = create(&lab, "owned", &["--subnet", "10.41.0.0/24"]);
    lab.docker(&["run", "-d", "--name", "held", "--network", "owned", IMAGE]);
    let ep = lab
        .t
        .ok(&["endpoint", "ls", "--format", "{{.Name}}"])
        .trim()
        .to_string();
    assert!(!ep.is_empty());
    // netpath names Docker's networks by Docker's short id.
    let net = &id[..12];
    // Refused, each with its owner named, and nothing changed.
    let e = lab.t.refused(&["endpoint", "rm", &ep]);
    assert!(e.contains("is Docker's") && e.contains("--force"), "{e}");
    let e = lab.t.refused(&["network", "rm", net]);
    assert!(e.contains("is Docker's") && e.contains(&id[..12]), "{e}");
    let names = lab.t.ok(&["endpoint", "ls", "--format", "{{.Name}}"]);
    assert_eq!(names.trim(), ep);
    assert!(lab
        .docker(&["exec", "held", "ip", "addr", "show", "eth0"])
        .contains("10.41.0."));
    // Docker takes them down itself.
    lab.docker(&["rm", "-f", "held"]);
    lab.docker(&["network", "rm", "owned"]);
    assert_eq!(lab.t.ok(&["endpoint", "ls", "-q"]), "");
}

/// The subnet of Docker network `net`.
fn docker_subnet(lab: &Lab, net: &str) -> netpath_user::ipam::Subnet {
    lab.inspect(net)["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn beside_dockers_own_bridge_no_subnet_and_no_port_is_taken_twice() {
    use netpath_user::ipam::Subnet;
    let lab = Lab::beside_docker0();
    let docker_pools: [Subnet; 2] = [
        "172.16.0.0/12".parse().unwrap(),
        "192.168.0.0/16".parse().unwrap(),
    ];
    let apart = |s: Subnet| docker_pools.iter().all(|p| !p.overlaps(&s));
    // netpath's default network and a network Docker asks netpath for without --subnet:
    // neither on docker0's subnet nor in Docker's pools.
    let bridge = lab.netpath_json(&["network", "inspect", "bridge"]);
    let default: Subnet = bridge[0]["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(apart(default), "{default}");
    create(&lab, "np", &[]);
    assert!(apart(docker_subnet(&lab, "np")));
    // Docker's own networks come from its pools as before, and its bridge works: a
    // container there reaches its gateway (docker0).
    lab.docker(&["network", "create", "dn"]);
    assert!(!apart(docker_subnet(&lab, "dn")));
    lab.docker(&["run", "-d", "--name", "plain", IMAGE]);
    let gw = lab.inspect("plain")["NetworkSettings"]["Networks"]["bridge"]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(gw, "172.17.0.1");
    lab.docker(&["exec", "plain", "ping", "-c1", "-W2", &gw]);

    // A port netpath publishes is held: Docker's bridge cannot publish it too...
    lab.run("--name web --network np -p 8080:80 -p 80");
    wait_serving(&lab, 8080);
    let e = lab.docker_err(&["run", "-d", "--name", "twin", "-p", "8080:80", IMAGE]);
    assert!(
        e.contains("address already in use") || e.contains("already allocated"),
        "{e}"
    );
    // ... an ephemeral publish of Docker's own gets another port than netpath's ...
    let ep = lab.endpoint_of("web", "np");
    let ours: u16 = lab
        .t
        .ok(&["port", &ep, "80"])
        .lines()
        .filter_map(|l| l.rsplit(':').next()?.trim().parse().ok())
        .find(|p| *p != 8080)
        .expect("netpath's ephemeral port");
    lab.docker(&["rm", "-f", "twin"]);
    lab.docker(&["run", "-d", "--name", "theirs", "-p", "80", IMAGE]);
    let theirs: u16 = lab
        .docker(&["port", "theirs", "80/tcp"])
        .lines()
        .filter_map(|l| l.rsplit(':').next()?.trim().parse().ok())
        .next()
        .expect("Docker's ephemeral port");
    assert_ne!(theirs, ours);
    // ... and each answers as its owner says.
    assert_eq!(lab.seen_from_outside(ours).unwrap(), OUTSIDE.to_string());
    assert!(lab.seen_from_outside(theirs).is_ok());
    // The reverse: a port docker-proxy holds is refused by netpath.
    let e = lab
        .t
        .refused(&["port", "publish", &ep, &format!("{theirs}:80")]);
    assert!(e.contains("already in use"), "{e}");
}

#[test]
fn what_docker_changes_while_the_agent_is_down_is_reconciled_and_names_are_dockers() {
    let mut lab = Lab::new();
    // A static --ip needs a subnet the user gave; the other takes one of netpath's pools.
    create(&lab, "web", &["--subnet", "10.47.0.0/24"]);
    create(&lab, "gone", &[]);
    let web_subnet = docker_subnet(&lab, "web");
    let gone_subnet = docker_subnet(&lab, "gone").to_string();
    let fixed_ip = Ipv4Addr::from(u32::from(web_subnet.addr()) + 50).to_string();
    lab.run("--name front --network web -p 8080:80");
    lab.docker(&[
        "run",
        "-d",
        "--name",
        "fixed",
        "--network",
        "web",
        "--ip",
        &fixed_ip,
        IMAGE,
    ]);
    wait_serving(&lab, 8080);
    // Docker's names, where netpath's lists had its ids.
    wait_until(
        "Docker's names in netpath's lists",
        Duration::from_secs(15),
        || {
            let nets = lab.t.ok(&["network", "ls", "--format", "{{.Name}}"]);
            let ports = lab.t.ok(&["port", "ls"]);
            nets.lines().any(|l| l == "web") && ports.contains("front")
        },
    );
    let inspected = lab.netpath_json(&["network", "inspect", "web"]);
    assert_eq!(
        inspected[0]["IPAM"]["Config"][0]["Subnet"],
        web_subnet.to_string()
    );

    // The agent goes down; meanwhile Docker stops one container, removes another and a
    // network (its calls to the plugin fail, and it goes on).
    lab.t.kill_agent();
    // At once: each waits out dockerd's retries of the plugin that does not answer.
    std::thread::scope(|s| {
        for args in [
            &["stop", "-t", "1", "front"][..],
            &["rm", "-f", "fixed"],
            &["network", "rm", "gone"],
        ] {
            let d = &lab.d;
            s.spawn(move || d.docker(args).unwrap_or_else(|e| panic!("{args:?}: {e:#}")));
        }
    });
    lab.t.start_agent();
    wait_until(
        "the stale endpoints removed",
        Duration::from_secs(15),
        || {
            lab.t.ok(&["endpoint", "ls", "-q"]).trim().is_empty()
                && !lab
                    .t
                    .ok(&["network", "ls", "--format", "{{.Name}}"])
                    .contains("gone")
        },
    );
    // The port, the static address and the container start again as if nothing happened.
    lab.docker(&["start", "front"]);
    wait_serving(&lab, 8080);
    assert_eq!(lab.seen_from_outside(8080).unwrap(), OUTSIDE.to_string());
    lab.docker(&[
        "run",
        "-d",
        "--name",
        "fixed2",
        "--network",
        "web",
        "--ip",
        &fixed_ip,
        IMAGE,
    ]);
    assert_eq!(lab.ip("fixed2", "web").to_string(), fixed_ip);
    // The removed network's subnet is free again for Docker's next network.
    create(&lab, "again", &["--subnet", &gone_subnet]);
}
