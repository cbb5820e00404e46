//! Nodes sharing one etcd: registration under a lease, the others' view, a dead node's
//! registration gone within its lease, restarts, etcd stopped and started, a name another
//! node holds; overlay networks across the nodes (traffic, policy, allocation, faults).
//! Every node and etcd (Debian's etcd-server, started here with its own data directory) in
//! its own namespace on one underlay bridge.
mod common;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use hickory_proto::rr::RecordType;
use netpath_user::scratch::ScratchDir;

const ETCD_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);

/// An agent in `ns` (uplink `ul0`; its files and pins named after the namespace) joined to
/// etcd as `name`.
fn agent(ns: &Netns, name: &str, dir: &ScratchDir, bpffs: &ScratchBpffs) -> AgentProcess {
    agent_with(ns, name, dir, bpffs, &[])
}

fn agent_with(
    ns: &Netns,
    name: &str,
    dir: &ScratchDir,
    bpffs: &ScratchBpffs,
    extra: &[&str],
) -> AgentProcess {
    agent_of(
        ns,
        name,
        dir,
        bpffs,
        &format!("http://{ETCD_ADDR}:2379"),
        extra,
    )
}

/// The same with etcd at `etcd`.
fn agent_of(
    ns: &Netns,
    name: &str,
    dir: &ScratchDir,
    bpffs: &ScratchBpffs,
    etcd: &str,
    extra: &[&str],
) -> AgentProcess {
    let mut opts = AgentOptions::new(BIN, &ns.name, "ul0", &dir.join(&ns.name));
    opts.bpffs = bpffs.path().join(&ns.name);
    opts.extra = vec![
        "--etcd".into(),
        etcd.to_string(),
        "--node-name".into(),
        name.into(),
    ];
    opts.extra.extend(extra.iter().map(|s| s.to_string()));
    AgentProcess::start(opts).expect("agent starts")
}

/// `netpath node ls`: (names with underlays, whether it said it is disconnected).
fn nodes(a: &AgentProcess) -> (Vec<String>, bool) {
    let out = a
        .cli(&["node", "ls", "--format", "{{.ID}}={{.Underlay}}"])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let disconnected = String::from_utf8_lossy(&out.stderr).contains("not connected to etcd");
    (names, disconnected)
}

#[test]
fn nodes_register_see_each_other_and_leave_with_their_lease() {
    let mut ul = Underlay::new();
    let etcd_ns = ul.member("np-etcd", ETCD_ADDR);
    let n1 = ul.member("np-n1", Ipv4Addr::new(10, 77, 0, 1));
    let n2 = ul.member("np-n2", Ipv4Addr::new(10, 77, 0, 2));
    let n3 = ul.member("np-n3", Ipv4Addr::new(10, 77, 0, 3));
    let dir = ScratchDir::new("cluster");
    let bpffs = ScratchBpffs::new().unwrap();
    let mut etcd = Etcd::start(&etcd_ns, ETCD_ADDR, dir.join("etcd"));

    let a1 = agent_with(&n1, "n1", &dir, &bpffs, &["--metrics", "10.77.0.1:9142"]);
    let mut a2 = agent(&n2, "n2", &dir, &bpffs);
    let both = vec!["n1=10.77.0.1".to_string(), "n2=10.77.0.2".to_string()];
    wait_until("both nodes to see both", Duration::from_secs(20), || {
        nodes(&a1) == (both.clone(), false) && nodes(&a2) == (both.clone(), false)
    });

    let status = a1.cli(&["status"]).unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("node n1, 2 nodes, etcd connected"),
        "{status}"
    );
    let metrics = n2.exec("curl", &["-sf", "http://10.77.0.1:9142/metrics"]);
    assert!(metrics.contains("netpath_cluster_connected 1"), "{metrics}");
    assert!(metrics.contains("netpath_cluster_nodes 2"), "{metrics}");
    promtool_accepts(&metrics);

    // A name another node holds is not taken over: the third node says why, n1 stays.
    let a3 = agent(&n3, "n1", &dir, &bpffs);
    wait_until("the clash to be reported", Duration::from_secs(20), || {
        let out = a3.cli(&["node", "ls"]).unwrap();
        String::from_utf8_lossy(&out.stderr).contains("registered by the node at 10.77.0.1")
    });
    assert_eq!(nodes(&a1).0, both);
    drop(a3);

    // A node that dies loses its registration within the lease's TTL.
    a2.kill();
    wait_until(
        "n2 to leave n1's view",
        Duration::from_secs(netpath_user::cluster::LEASE_TTL_SECS as u64 + 10),
        || nodes(&a1).0 == ["n1=10.77.0.1"],
    );
    // Back again: registered once, seen by both.
    let a2 = agent(&n2, "n2", &dir, &bpffs);
    wait_until("n2 back in both views", Duration::from_secs(20), || {
        nodes(&a1) == (both.clone(), false) && nodes(&a2) == (both.clone(), false)
    });

    // etcd stopped: each node keeps what it knew and says it is disconnected; etcd back:
    // they re-sync.
    etcd.stop();
    wait_until("n1 to notice etcd is gone", Duration::from_secs(20), || {
        nodes(&a1) == (both.clone(), true)
    });
    let status = a1.cli(&["status"]).unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("etcd not connected ("), "{status}");
    etcd.run(&etcd_ns);
    wait_until("both to re-sync", Duration::from_secs(30), || {
        nodes(&a1) == (both.clone(), false) && nodes(&a2) == (both.clone(), false)
    });

    // A restart within the lease takes the registration back (same name, same address):
    // connected again, both nodes listed once.
    drop(a1);
    let a1 = agent(&n1, "n1", &dir, &bpffs);
    wait_until("n1 back within its lease", Duration::from_secs(20), || {
        nodes(&a1) == (both.clone(), false) && nodes(&a2) == (both.clone(), false)
    });
    drop(a1);
    drop(a2);
    drop(etcd);
}

#[test]
fn a_node_on_its_own_and_bad_cluster_flags_are_refused_plainly() {
    let mut ul = Underlay::new();
    let n1 = ul.member("np-n1", Ipv4Addr::new(10, 77, 0, 1));
    let dir = ScratchDir::new("cluster");
    let bpffs = ScratchBpffs::new().unwrap();
    let mut opts = AgentOptions::new(BIN, &n1.name, "ul0", &dir.join("alone"));
    opts.bpffs = bpffs.path().join("alone");
    let alone = AgentProcess::start(opts.clone()).unwrap();
    let out = alone.cli(&["node", "ls"]).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("on its own: start the agent with --etcd"),
        "{err}"
    );
    let status = alone.cli(&["status"]).unwrap();
    assert!(String::from_utf8_lossy(&status.stdout).contains("none (this node is on its own)"));
    drop(alone);

    for (extra, says) in [
        (
            vec![
                "--etcd",
                "http://10.77.0.100:2379",
                "--etcd-cert",
                "/nonexistent.pem",
            ],
            "--etcd-cert and --etcd-key go together",
        ),
        (
            vec![
                "--etcd",
                "http://10.77.0.100:2379",
                "--node-name",
                "bad name",
            ],
            "invalid node name",
        ),
    ] {
        let mut o = opts.clone();
        o.extra = extra.iter().map(|s| s.to_string()).collect();
        let err = AgentProcess::start(o).err().expect("refused").to_string();
        assert!(err.contains(says), "{extra:?}: {err}");
    }
}

// ---- Overlay networks ----

/// `netpath ARGS...` on `a`, which must succeed: its output.
fn ok(a: &AgentProcess, args: &[&str]) -> String {
    let out = a.cli(args).unwrap();
    assert!(
        out.status.success(),
        "netpath {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `netpath ARGS...` on `a`, which must fail: what it said.
fn refused(a: &AgentProcess, args: &[&str]) -> String {
    let out = a.cli(args).unwrap();
    assert!(!out.status.success(), "netpath {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An endpoint `name` made by `a` on `network`, in a namespace of its own: the namespace and
/// the address the endpoint's eth0 has.
fn endpoint_on(a: &AgentProcess, name: &str, network: &str, extra: &[&str]) -> (Netns, Ipv4Addr) {
    let ns = Netns::new("np-ep");
    let path = ns.path();
    let mut args = vec![
        "endpoint",
        "create",
        name,
        "--netns",
        &path,
        "--network",
        network,
    ];
    args.extend_from_slice(extra);
    ok(a, &args);
    let ip = eth0_addr(&ns);
    (ns, ip)
}

/// The IPv4 address of eth0 in `ns`.
fn eth0_addr(ns: &Netns) -> Ipv4Addr {
    let out = ns.ip(&["-4", "-o", "addr", "show", "dev", "eth0"]);
    let cidr = out
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no address on eth0: {out}"));
    cidr.split('/').next().unwrap().parse().unwrap()
}

/// The MTU of eth0 in `ns`.
fn eth0_mtu(ns: &Netns) -> u32 {
    let out = ns.ip(&["-o", "link", "show", "dev", "eth0"]);
    let mut words = out.split_whitespace();
    words.find(|w| *w == "mtu");
    words.next().unwrap().parse().unwrap()
}

/// A TCP server in `ns` that tells each client the address it came from.
fn who_server(ns: &Netns, port: u16) {
    let l = ns.run(|| std::net::TcpListener::bind(("0.0.0.0", port)).unwrap());
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            use std::io::Write as _;
            let peer = c
                .peer_addr()
                .map(|p| p.ip().to_string())
                .unwrap_or_default();
            // The peer may be gone: a server answers whoever is still there.
            let _ = c.write_all(peer.as_bytes());
        }
    });
}

/// What the TCP server at `addr:port` tells a client in `ns` (none within a second).
fn ask_tcp(ns: &Netns, addr: Ipv4Addr, port: u16) -> Option<String> {
    ns.run(|| {
        use std::io::Read as _;
        let mut c = TcpStream::connect_timeout(
            &SocketAddrV4::new(addr, port).into(),
            Duration::from_secs(1),
        )
        .ok()?;
        c.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        let mut s = String::new();
        c.read_to_string(&mut s).ok()?;
        Some(s)
    })
}

/// What the UDP server at `addr:port` (`udp_server`: "PEER_IP:PORT MESSAGE") answers a
/// datagram from `ns` with (none within a second).
fn ask_udp(ns: &Netns, addr: Ipv4Addr, port: u16) -> Option<String> {
    ns.run(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        s.send_to(b"hi", (addr, port)).ok()?;
        let mut buf = [0u8; 128];
        let n = s.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

/// Whether one ping from `ns` to `addr` is answered within a second.
fn pings(ns: &Netns, addr: Ipv4Addr) -> bool {
    Command::new("ip")
        .args(["netns", "exec", &ns.name, "ping", "-c", "1", "-W", "1"])
        .arg(addr.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A counter of `netpath stats` on `a`.
fn counter(a: &AgentProcess, name: &str) -> u64 {
    ok(a, &["stats"])
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next().unwrap().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no counter {name}"))
}

/// The overlay networks `a` lists: `NAME ID SCOPE`.
fn overlay_networks(a: &AgentProcess) -> Vec<String> {
    ok(
        a,
        &[
            "network",
            "ls",
            "--no-trunc",
            "--filter",
            "driver=overlay",
            "--format",
            "{{.Name}} {{.ID}} {{.Scope}}",
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// The lease `key` lives on in etcd (read from `ns`, on the underlay), if it exists.
fn lease_of(ns: &Netns, key: &str) -> Option<i64> {
    ns.run(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut c = etcd_client::Client::connect([format!("http://{ETCD_ADDR}:2379")], None)
                .await
                .unwrap();
            let r = c.get(key, None).await.unwrap();
            r.kvs().first().map(|kv| kv.lease())
        })
    })
}

/// Two nodes and etcd on one underlay, each agent joined as n1 and n2.
struct TwoNodes {
    n1: Netns,
    n2: Netns,
    etcd_ns: Netns,
    a1: AgentProcess,
    a2: AgentProcess,
    etcd: Etcd,
    dir: ScratchDir,
    bpffs: ScratchBpffs,
    ul: Underlay,
}

impl TwoNodes {
    fn start() -> TwoNodes {
        TwoNodes::on([
            ETCD_ADDR.into(),
            Ipv4Addr::new(10, 77, 0, 1).into(),
            Ipv4Addr::new(10, 77, 0, 2).into(),
        ])
    }

    /// etcd, n1 and n2 at these underlay addresses.
    fn on([etcd_at, n1_at, n2_at]: [IpAddr; 3]) -> TwoNodes {
        let mut ul = Underlay::new();
        let etcd_ns = ul.member("np-etcd", etcd_at);
        let n1 = ul.member("np-n1", n1_at);
        let n2 = ul.member("np-n2", n2_at);
        let dir = ScratchDir::new("cluster");
        let bpffs = ScratchBpffs::new().unwrap();
        let etcd = Etcd::start(&etcd_ns, etcd_at, dir.join("etcd"));
        let a1 = agent_of(&n1, "n1", &dir, &bpffs, &etcd.url(), &[]);
        let a2 = agent_of(&n2, "n2", &dir, &bpffs, &etcd.url(), &[]);
        let both = vec![format!("n1={n1_at}"), format!("n2={n2_at}")];
        wait_until("both nodes to see both", Duration::from_secs(20), || {
            nodes(&a1) == (both.clone(), false) && nodes(&a2) == (both.clone(), false)
        });
        TwoNodes {
            n1,
            n2,
            etcd_ns,
            a1,
            a2,
            etcd,
            dir,
            bpffs,
            ul,
        }
    }

    /// Overlay network `name` made on n1 and seen by n2 with the same id.
    fn overlay(&self, name: &str, subnet: &str, extra: &[&str]) {
        let mut args = vec![
            "network", "create", name, "--driver", "overlay", "--subnet", subnet,
        ];
        args.extend_from_slice(extra);
        ok(&self.a1, &args);
        let on_n1: Vec<String> = overlay_networks(&self.a1)
            .into_iter()
            .filter(|l| l.starts_with(&format!("{name} ")))
            .collect();
        assert_eq!(on_n1.len(), 1, "{on_n1:?}");
        wait_until(
            &format!("n2 to list {name}"),
            Duration::from_secs(10),
            || overlay_networks(&self.a2).contains(&on_n1[0]),
        );
    }
}

#[test]
fn overlay_networks_carry_traffic_between_nodes_with_their_policy() {
    let t = TwoNodes::start();
    // Made on one node, the network is every node's: the same id, global scope, a VNI.
    t.overlay("ov1", "10.190.0.0/24", &[]);
    let ls = overlay_networks(&t.a2);
    assert!(ls[0].ends_with(" global"), "{ls:?}");
    let vni = ok(
        &t.a2,
        &["network", "inspect", "ov1", "--format", "{{json .Options}}"],
    );
    assert!(vni.contains("vxlanid_list"), "{vni}");

    let (a, a_ip) = endpoint_on(&t.a1, "a", "ov1", &[]);
    let (b, b_ip) = endpoint_on(&t.a2, "b", "ov1", &[]);
    assert_ne!(a_ip, b_ip);
    // Room for VXLAN on a 1500-byte underlay.
    assert_eq!(eth0_mtu(&a), 1450);
    assert_eq!(eth0_mtu(&b), 1450);

    // ICMP, TCP and UDP across nodes, each side seeing the other's own address.
    wait_until(
        "a to ping b on the other node",
        Duration::from_secs(10),
        || pings(&a, b_ip),
    );
    assert!(pings(&b, a_ip));
    who_server(&b, 80);
    who_server(&a, 80);
    assert_eq!(
        ask_tcp(&a, b_ip, 80).as_deref(),
        Some(a_ip.to_string().as_str())
    );
    assert_eq!(
        ask_tcp(&b, a_ip, 80).as_deref(),
        Some(b_ip.to_string().as_str())
    );
    udp_server(&b, 53_000);
    let udp = ask_udp(&a, b_ip, 53_000).expect("a UDP answer from b");
    assert!(udp.starts_with(&format!("{a_ip}:")), "{udp}");
    // A transfer of full-size segments (the MTU leaves room for the encapsulation).
    tcp_echo_server(&b, 81);
    assert!(echoes_4mib(&a, b_ip, 81));
    // Names across nodes: the other node's endpoint by its name and NAME.NETWORK, from the
    // agent's server and the kernel's fast path alike (both answer on the gateway).
    let gw = Ipv4Addr::new(10, 210, 0, 1);
    wait_until("b's name to resolve on n1", Duration::from_secs(10), || {
        dns::addresses(&dns::ask(&a, gw, "b", RecordType::A)) == [b_ip]
    });
    assert_eq!(
        dns::addresses(&dns::ask(&a, gw, "b.ov1", RecordType::A)),
        [b_ip]
    );
    assert_eq!(
        dns::addresses(&dns::ask(
            &b,
            Ipv4Addr::new(10, 210, 0, 1),
            "a",
            RecordType::A
        )),
        [a_ip]
    );
    let peers = ok(
        &t.a1,
        &["network", "inspect", "ov1", "--format", "{{json .Peers}}"],
    );
    assert!(
        peers.contains(r#"{"IP":"10.77.0.1","Name":"n1"}"#)
            && peers.contains(r#"{"IP":"10.77.0.2","Name":"n2"}"#),
        "{peers}"
    );
    let status = ok(&t.a1, &["status"]);
    assert!(
        status.contains("1 overlay networks, 1 endpoints on other nodes"),
        "{status}"
    );
    assert!(counter(&t.a1, "overlay_encap") > 0);
    assert!(counter(&t.a2, "overlay_decap") > 0);
    assert_eq!(counter(&t.a2, "drop_overlay"), 0);

    // A broadcast on the network reaches members on the other node.
    assert_eq!(broadcast_heard(&a, &b, "10.190.0.255"), Some(a_ip.into()));

    // Outbound from an overlay endpoint, and a port published on one.
    let (c_ns, _) = endpoint_on(&t.a2, "c", "ov1", &["-p", "8080:80"]);
    who_server(&c_ns, 80);
    assert_eq!(
        ask_tcp(&t.etcd_ns, Ipv4Addr::new(10, 77, 0, 2), 8080).as_deref(),
        Some("10.77.0.100"),
        "a client on the underlay reaches the published port with its own address"
    );
    who_server(&t.etcd_ns, 2000);
    assert_eq!(
        ask_tcp(&a, ETCD_ADDR, 2000).as_deref(),
        Some("10.77.0.1"),
        "outbound from an overlay endpoint leaves with its node's address"
    );

    // Isolation across nodes: another overlay network is not reachable from ov1.
    t.overlay("ov2", "10.211.0.0/24", &[]);
    let (d, d_ip) = endpoint_on(&t.a2, "d", "ov2", &[]);
    who_server(&d, 80);
    let isolated = counter(&t.a1, "drop_isolation");
    assert_eq!(ask_tcp(&a, d_ip, 80), None);
    assert!(!pings(&a, d_ip));
    assert!(counter(&t.a1, "drop_isolation") > isolated);
    // ... nor the other way, nor from a network of one node (the default bridge).
    assert_eq!(ask_tcp(&d, a_ip, 80), None);
    let (local, _) = endpoint_on(&t.a1, "l", "bridge", &[]);
    assert_eq!(ask_tcp(&local, b_ip, 80), None);
    assert!(!pings(&local, b_ip));

    // --internal across nodes: members reach each other, nothing outside.
    t.overlay("ovi", "10.212.0.0/24", &["--internal"]);
    let (e, _) = endpoint_on(&t.a1, "e", "ovi", &[]);
    let (f, f_ip) = endpoint_on(&t.a2, "f", "ovi", &[]);
    who_server(&f, 80);
    wait_until("e to reach f", Duration::from_secs(10), || {
        ask_tcp(&e, f_ip, 80).is_some()
    });
    assert_eq!(ask_tcp(&e, ETCD_ADDR, 2000), None);

    // icc=false across nodes: members cannot reach each other.
    t.overlay("ovn", "10.213.0.0/24", &["--opt", "icc=false"]);
    let (g, _) = endpoint_on(&t.a1, "g", "ovn", &[]);
    let (h, h_ip) = endpoint_on(&t.a2, "h", "ovn", &[]);
    who_server(&h, 80);
    let icc = counter(&t.a1, "drop_icc");
    // (Until n1 hears of h, its packets are dropped as to an unknown address: wait for the
    // policy's own reason.)
    wait_until(
        "n1 to drop g's packets to h for icc",
        Duration::from_secs(10),
        || {
            assert_eq!(ask_tcp(&g, h_ip, 80), None);
            counter(&t.a1, "drop_icc") > icc
        },
    );

    // An address another node has is refused, by name of the holder; nothing is made.
    let spare = Netns::new("np-ep");
    let err = refused(
        &t.a1,
        &[
            "endpoint",
            "create",
            "x",
            "--netns",
            &spare.path(),
            "--network",
            "ov1",
            "--ip",
            &b_ip.to_string(),
        ],
    );
    assert!(
        err.contains(&format!(
            "address {b_ip} is already in use on network ov1 (endpoint b on node n2)"
        )),
        "{err}"
    );
    assert_eq!(spare.ip(&["-o", "link", "show"]).lines().count(), 1);
    assert!(!ok(&t.a1, &["endpoint", "ls", "-q"]).contains('x'));
    // A request refused on its own merits asks nothing of etcd: no address is taken.
    let err = refused(
        &t.a1,
        &[
            "endpoint",
            "create",
            "a",
            "--netns",
            &spare.path(),
            "--network",
            "ov1",
        ],
    );
    assert!(err.contains("already exists"), "{err}");
    // n1's endpoints as n2 knows them: a, e and g, no more.
    wait_until(
        "n2 to know n1's three endpoints",
        Duration::from_secs(10),
        || ok(&t.a2, &["status"]).contains("4 overlay networks, 3 endpoints on other nodes"),
    );

    // VXLAN's port is the node's: publishing it is refused like any port the host holds.
    let err = refused(&t.a1, &["port", "publish", "a", "4789:4789/udp"]);
    assert!(err.contains("Bind for 0.0.0.0:4789 failed"), "{err}");

    // A network with endpoints on any node stays; without, it goes for every node.
    let err = refused(&t.a1, &["network", "rm", "ov2"]);
    assert!(
        err.contains("network ov2 has endpoints on node(s) n2"),
        "{err}"
    );
    ok(&t.a2, &["endpoint", "rm", "d"]);
    ok(&t.a1, &["network", "rm", "ov2"]);
    wait_until("ov2 to be gone from n2", Duration::from_secs(10), || {
        !overlay_networks(&t.a2)
            .iter()
            .any(|l| l.starts_with("ov2 "))
    });
    drop((a, b, c_ns, d, e, f, g, h, local));
}

#[test]
fn network_policies_select_endpoints_of_other_nodes_by_their_labels() {
    let mut t = TwoNodes::start();
    t.overlay("ovp", "10.195.0.0/24", &[]);
    let (web, _) = endpoint_on(&t.a1, "web", "ovp", &["-n", "shop", "-l", "app=web"]);
    let (other, _) = endpoint_on(&t.a1, "other", "ovp", &["-n", "shop", "-l", "app=other"]);
    let (db, db_ip) = endpoint_on(
        &t.a2,
        "db",
        "ovp",
        &["-n", "shop", "-l", "app=db", "--named-port", "sql=80"],
    );
    who_server(&db, 80);
    wait_until("web to reach db", Duration::from_secs(10), || {
        ask_tcp(&web, db_ip, 80).is_some()
    });
    // On n2, db admits the web endpoints of its namespace, wherever they run.
    let file = t.dir.join("db.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: shop}\nspec: {podSelector: {matchLabels: {app: db}}, ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]}\n",
    )
    .unwrap();
    ok(&t.a2, &["policy", "apply", "-f", file.to_str().unwrap()]);
    // The cluster's policy: n1 holds it too.
    let listed = |a: &AgentProcess| ok(a, &["policy", "ls", "-n", "shop", "-q"]);
    wait_until("n1 to hold n2's policy", Duration::from_secs(10), || {
        listed(&t.a1).trim() == "db"
    });
    let reply = ask_tcp(&web, db_ip, 80).expect("web is admitted");
    assert!(reply.starts_with(&eth0_addr(&web).to_string()), "{reply}");
    assert_eq!(ask_tcp(&other, db_ip, 80), None);
    // Refused where it was sent: n1 holds the cluster's policy too.
    assert!(counter(&t.a1, "drop_policy") > 0);
    // Labels change on n1; n2 hears of it through etcd and decides on the new ones.
    ok(&t.a1, &["endpoint", "update", "web", "--label", "app=gone"]);
    ok(
        &t.a1,
        &["endpoint", "update", "other", "--label", "app=web"],
    );
    wait_until(
        "n2 to admit other and refuse web",
        Duration::from_secs(10),
        || ask_tcp(&other, db_ip, 80).is_some() && ask_tcp(&web, db_ip, 80).is_none(),
    );
    // On n1, the web endpoints may reach only the port db (on n2) names `sql`: the name is
    // known here from db's record, and means 80.
    let egress = |port: &str| {
        std::fs::write(
            &file,
            format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: out, namespace: shop}}\nspec: {{podSelector: {{matchLabels: {{app: web}}}}, policyTypes: [Egress], egress: [{{ports: [{{port: {port}}}]}}]}}\n"),
        )
        .unwrap();
        ok(&t.a1, &["policy", "apply", "-f", file.to_str().unwrap()]);
    };
    egress("sql");
    assert!(ask_tcp(&other, db_ip, 80).is_some(), "sql is 80 on db");
    egress("81");
    assert_eq!(ask_tcp(&other, db_ip, 80), None);
    // Removed on n2, it goes on n1 too.
    ok(&t.a2, &["policy", "rm", "-n", "shop", "out"]);
    wait_until("n1 to drop the policy", Duration::from_secs(10), || {
        listed(&t.a1).trim() == "db" && ask_tcp(&other, db_ip, 80).is_some()
    });
    // A node away while a policy goes takes the cluster's set when it is back.
    t.a1.kill();
    ok(&t.a2, &["policy", "rm", "-n", "shop", "db"]);
    t.a1 = agent(&t.n1, "n1", &t.dir, &t.bpffs);
    wait_until(
        "n1 back without the policy",
        Duration::from_secs(20),
        || listed(&t.a1).trim().is_empty() && ask_tcp(&web, db_ip, 80).is_some(),
    );
    drop((web, other, db));
}

#[test]
fn the_probe_matrix_holds_across_two_nodes() {
    use common::matrix::{cases, check, manifests, namespace_of, tcp_probe, Pod};
    use netpath_user::testing::traffic::{tcp_echo_server, udp_server};

    let t = TwoNodes::start();
    t.overlay("ovm", "10.196.0.0/24", &[]);
    // web and blog on n1, db on n2: pairs on one node and pairs across the overlay.
    let mut pods = Vec::new();
    for (name, ns, app, node, extra) in [
        ("web", "shop", "web", &t.a1, None),
        ("db", "shop", "db", &t.a2, Some("pg=5432")),
        ("blog", "blog", "web", &t.a1, None),
    ] {
        let label = format!("app={app}");
        let mut args = vec!["-n", ns, "-l", &label];
        if let Some(p) = extra {
            args.extend(["--named-port", p]);
        }
        let (netns, ip) = endpoint_on(node, name, "ovm", &args);
        tcp_echo_server(&netns, 80);
        tcp_echo_server(&netns, 5432);
        udp_server(&netns, 53);
        let labels = [("app".to_string(), app.to_string())].into();
        pods.push((
            Pod {
                name,
                ns,
                labels,
                ip,
            },
            netns,
        ));
    }
    let (web, db) = (&pods[0], &pods[1]);
    wait_until(
        "web to reach db across the nodes",
        Duration::from_secs(10),
        || tcp_probe(&web.1, db.0.ip, 80),
    );
    let probed: Vec<(&Pod, &Netns)> = pods.iter().map(|(p, n)| (p, n)).collect();
    check("no policy", &[], &probed, None);
    // What a node enforces: the policies it holds, manifests and all.
    let held = |a: &AgentProcess| {
        ok(
            a,
            &[
                "policy",
                "ls",
                "-A",
                "--format",
                "{{.Namespace}}/{{.Name}} {{json .Manifest}}",
            ],
        )
    };
    let file = t.dir.join("matrix.yaml");
    let mut applied: Vec<&str> = Vec::new();
    // Each case applied on one node, in turns: the cluster's policies hold on both.
    for (i, (case, pols)) in cases().iter().enumerate() {
        let on = if i % 2 == 0 { &t.a1 } else { &t.a2 };
        let keep: Vec<&str> = pols.iter().map(|p| p.name).collect();
        for old in applied.iter().filter(|n| !keep.contains(n)) {
            ok(on, &["policy", "rm", "-n", namespace_of(old), old]);
        }
        std::fs::write(&file, manifests(pols)).unwrap();
        ok(on, &["policy", "apply", "-f", file.to_str().unwrap()]);
        applied = keep;
        wait_until(
            "both nodes to hold the case's policies",
            Duration::from_secs(10),
            || {
                let (a, b) = (held(&t.a1), held(&t.a2));
                a == b && a.lines().count() == pols.len()
            },
        );
        check(case, pols, &probed, None);
    }
    drop(pods);
}

#[test]
fn overlay_addresses_stay_unique_and_nodes_ride_out_faults() {
    let mut t = TwoNodes::start();
    t.overlay("ov1", "10.220.0.0/24", &[]);

    // Both nodes allocate at once: every address distinct.
    let made: Vec<(Netns, Ipv4Addr)> = std::thread::scope(|s| {
        let jobs: Vec<_> = (0..8)
            .map(|i| {
                let a = if i % 2 == 0 { &t.a1 } else { &t.a2 };
                s.spawn(move || endpoint_on(a, &format!("p{i}"), "ov1", &[]))
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    let mut ips: Vec<Ipv4Addr> = made.iter().map(|(_, ip)| *ip).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), made.len(), "{ips:?}");
    let (a, _) = &made[0]; // on n1
    let (b, b_ip) = &made[1]; // on n2
    who_server(b, 80);
    wait_until("p0 to reach p1", Duration::from_secs(10), || {
        ask_tcp(a, *b_ip, 80).is_some()
    });

    // etcd stopped: traffic goes on with what the nodes know; requests that need etcd fail
    // plainly and change nothing; the rest of the API works.
    t.etcd.stop();
    wait_until("n1 to notice etcd is gone", Duration::from_secs(20), || {
        nodes(&t.a1).1
    });
    assert!(ask_tcp(a, *b_ip, 80).is_some());
    let err = refused(
        &t.a1,
        &common::words("network create ov9 --driver overlay --subnet 10.229.0.0/24"),
    );
    assert!(err.contains("etcd is not reachable"), "{err}");
    let spare = Netns::new("np-ep");
    let spare_path = spare.path();
    let late = [
        "endpoint",
        "create",
        "late",
        "--netns",
        &spare_path,
        "--network",
        "ov1",
    ];
    let err = refused(&t.a1, &late);
    assert!(err.contains("etcd is not reachable"), "{err}");
    // Policies are the cluster's: none applied while etcd is away.
    let file = t.dir.join("away.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny}\nspec: {podSelector: {}}\n",
    )
    .unwrap();
    let err = refused(&t.a1, &["policy", "apply", "-f", file.to_str().unwrap()]);
    assert!(err.contains("etcd is not reachable"), "{err}");
    assert_eq!(ok(&t.a1, &["policy", "ls", "-A", "-q"]), "");
    assert_eq!(spare.ip(&["-o", "link", "show"]).lines().count(), 1);
    ok(&t.a1, &["network", "create", "local1"]);
    t.etcd.run(&t.etcd_ns);
    wait_until("both to re-sync", Duration::from_secs(30), || {
        !nodes(&t.a1).1 && !nodes(&t.a2).1
    });
    ok(&t.a1, &late);
    assert!(!ips.contains(&eth0_addr(&spare)));

    // A node whose agent dies leaves with its lease: its endpoints are no longer reached;
    // back, they are (registered once).
    t.a2.kill();
    wait_until(
        "n2's endpoints to leave n1's view",
        Duration::from_secs(netpath_user::cluster::LEASE_TTL_SECS as u64 + 10),
        || ask_tcp(a, *b_ip, 80).is_none(),
    );
    assert_eq!(nodes(&t.a1).0, ["n1=10.77.0.1"]);
    t.a2 = agent(&t.n2, "n2", &t.dir, &t.bpffs);
    wait_until("n2's endpoints back", Duration::from_secs(20), || {
        ask_tcp(a, *b_ip, 80).is_some()
    });
    assert_eq!(nodes(&t.a1).0, ["n1=10.77.0.1", "n2=10.77.0.2"]);

    // A restart within the lease moves the node's registration and all its addresses to
    // the new lease together: none stays on the old one (which expires with nothing on it).
    let old = lease_of(&t.etcd_ns, "/netpath/nodes/n2");
    t.a2.stop();
    t.a2 = agent(&t.n2, "n2", &t.dir, &t.bpffs);
    let n2_keys: Vec<String> = made
        .iter()
        .skip(1)
        .step_by(2)
        .map(|(_, ip)| format!("/netpath/endpoints/ov1/{ip}"))
        .collect();
    wait_until(
        "n2's registration and addresses on one new lease",
        Duration::from_secs(20),
        || {
            let new = lease_of(&t.etcd_ns, "/netpath/nodes/n2");
            new.is_some() && new != old && n2_keys.iter().all(|k| lease_of(&t.etcd_ns, k) == new)
        },
    );
    assert!(ask_tcp(a, *b_ip, 80).is_some());

    // An address given back and taken on another node: traffic to it goes to the new
    // holder, never to the node that had it.
    ok(&t.a2, &["endpoint", "rm", "p1"]);
    let reused = Netns::new("np-ep");
    let ip = b_ip.to_string();
    wait_until("n1 to hear p1 is gone", Duration::from_secs(10), || {
        t.a1.cli(&[
            "endpoint",
            "create",
            "reused",
            "--netns",
            &reused.path(),
            "--network",
            "ov1",
            "--ip",
            &ip,
        ])
        .unwrap()
        .status
        .success()
    });
    who_server(&reused, 80);
    let (c, _) = &made[3]; // on n2
    wait_until(
        "n2 to send p1's old address to n1",
        Duration::from_secs(10),
        || ask_tcp(c, *b_ip, 80).is_some(),
    );
}

/// The global IPv6 address of eth0 in `ns`.
fn eth0_addr6(ns: &Netns) -> std::net::Ipv6Addr {
    let out = ns.ip(&["-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"]);
    let cidr = out
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .unwrap_or_else(|| panic!("no IPv6 address on eth0: {out}"));
    cidr.split('/').next().unwrap().parse().unwrap()
}

/// Whether 4 MiB sent from `ns` to the echo server at `addr:port` come back whole (full-size
/// segments: the MTU leaves room for the encapsulation).
fn echoes_4mib(ns: &Netns, addr: impl Into<IpAddr>, port: u16) -> bool {
    let to = std::net::SocketAddr::new(addr.into(), port);
    ns.run(|| {
        use std::io::{Read as _, Write as _};
        let mut c = TcpStream::connect(to).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let data = vec![7u8; 4 << 20];
        let mut w = c.try_clone().unwrap();
        let sender = std::thread::spawn(move || w.write_all(&data).unwrap());
        let mut got = vec![0u8; 4 << 20];
        c.read_exact(&mut got).unwrap();
        sender.join().unwrap();
        got.iter().all(|b| *b == 7)
    })
}

/// Who `to` heard a UDP broadcast from when `from` sent one to `broadcast` (None within two
/// seconds).
fn broadcast_heard(from: &Netns, to: &Netns, broadcast: &str) -> Option<IpAddr> {
    let got = to.run(|| std::net::UdpSocket::bind(("0.0.0.0", 53_001)).unwrap());
    got.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    from.run(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_broadcast(true).unwrap();
        s.send_to(b"all", (broadcast, 53_001)).unwrap();
    });
    let mut buf = [0u8; 8];
    let (n, who) = got.recv_from(&mut buf).ok()?;
    (&buf[..n] == b"all").then_some(who.ip())
}

/// Nodes whose only underlay is IPv6: overlay networks carry IPv4 and IPv6 between endpoints
/// on them (VXLAN over IPv6, the endpoints' MTU leaving room for its 70 bytes), broadcasts
/// included, each side seeing the other's own address; a node whose underlay address is
/// IPv4 is named as a problem, never sent to.
#[test]
fn overlay_networks_run_over_an_ipv6_underlay() {
    let at = |last| IpAddr::from(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, last));
    let mut t = TwoNodes::on([at(0x100), at(1), at(2)]);
    t.overlay(
        "ovu",
        "10.193.0.0/24",
        &["--ipv6", "--subnet", "fd00:193::/64"],
    );
    let (a, a_ip) = endpoint_on(&t.a1, "a", "ovu", &[]);
    let (b, b_ip) = endpoint_on(&t.a2, "b", "ovu", &[]);
    assert_eq!((eth0_mtu(&a), eth0_mtu(&b)), (1430, 1430));

    // IPv4 inside IPv6.
    who_server(&b, 80);
    wait_until(
        "a to reach b over the IPv6 underlay",
        Duration::from_secs(10),
        || ask_tcp(&a, b_ip, 80).is_some(),
    );
    assert_eq!(
        ask_tcp(&a, b_ip, 80).as_deref(),
        Some(a_ip.to_string().as_str())
    );
    assert!(pings(&b, a_ip));
    tcp_echo_server(&b, 81);
    assert!(echoes_4mib(&a, b_ip, 81));
    assert_eq!(broadcast_heard(&a, &b, "10.193.0.255"), Some(a_ip.into()));
    // IPv6 inside IPv6.
    let (a6, b6) = (eth0_addr6(&a), eth0_addr6(&b));
    common::tcp_server6(&b, 82);
    let r = tcp_request(&a, b6, 82, "hi").expect("a to reach b over IPv6");
    assert!(r.starts_with(&format!("[{a6}]:")), "{r}");
    assert!(counter(&t.a1, "overlay_encap") > 0);
    assert!(counter(&t.a2, "overlay_decap") > 0);
    assert_eq!(counter(&t.a2, "drop_overlay"), 0);
    let peers = ok(
        &t.a1,
        &["network", "inspect", "ovu", "--format", "{{json .Peers}}"],
    );
    assert!(
        peers.contains(r#"{"IP":"fd00:77::1","Name":"n1"}"#)
            && peers.contains(r#"{"IP":"fd00:77::2","Name":"n2"}"#),
        "{peers}"
    );

    // A third node whose uplink has an IPv4 address: its underlay is IPv4, which n1's VXLAN
    // packets cannot reach (nor n3 know them as n1's).
    let n3 = t.ul.member("np-n3", at(3));
    n3.ip(&["addr", "add", "10.77.0.3/24", "dev", "ul0"]);
    let a3 = agent_of(&n3, "n3", &t.dir, &t.bpffs, &t.etcd.url(), &[]);
    // `status` says so (and fails: a problem is a problem).
    let says = "node n3 has an underlay address of the other family (10.77.0.3) than this \
                node's (fd00:77::1)";
    wait_until(
        "n1 to name n3 as a problem",
        Duration::from_secs(20),
        || {
            let out = t.a1.cli(&["status"]).unwrap();
            !out.status.success() && String::from_utf8_lossy(&out.stdout).contains(says)
        },
    );
    assert_eq!(
        ask_tcp(&a, b_ip, 80).as_deref(),
        Some(a_ip.to_string().as_str()),
        "n1 and n2 go on"
    );
    drop((a3, a, b));
}

/// An overlay network with IPv6 (over the IPv4 underlay): each endpoint's IPv6 address
/// follows its IPv4 one (the address taken in etcd holds both), and endpoints on two nodes
/// reach each other over IPv6 with their own addresses, by name (AAAA) too; an ingress
/// policy holds across nodes for IPv6 as for IPv4; what an overlay network cannot take is
/// refused in one line.
#[test]
fn overlay_networks_carry_ipv6_between_nodes() {
    let t = TwoNodes::start();
    t.overlay(
        "ov6",
        "10.191.0.0/24",
        &["--ipv6", "--subnet", "fd00:191::/64"],
    );
    let (a, a_ip) = endpoint_on(&t.a1, "a", "ov6", &[]);
    let (b, b_ip) = endpoint_on(&t.a2, "b", "ov6", &[]);
    let (a6, b6) = (eth0_addr6(&a), eth0_addr6(&b));
    let at = |ip: Ipv4Addr| -> std::net::Ipv6Addr {
        format!("fd00:191::{:x}", ip.octets()[3]).parse().unwrap()
    };
    assert_eq!((a6, b6), (at(a_ip), at(b_ip)), "IPv6 follows IPv4");
    let inspect = ok(&t.a2, &["network", "inspect", "ov6"]);
    assert!(
        inspect.contains("fd00:191::/64") && inspect.contains("\"fd00:191::1\""),
        "{inspect}"
    );

    // TCP across nodes over IPv6, each side seeing the other's own address.
    for ns in [&a, &b] {
        common::tcp_server6(ns, 80);
    }
    let mut reply = String::new();
    wait_until("a to reach b over IPv6", Duration::from_secs(10), || {
        tcp_request(&a, b6, 80, "hi").map(|r| reply = r).is_ok()
    });
    assert!(reply.starts_with(&format!("[{a6}]:")), "{reply}");
    let r = tcp_request(&b, a6, 80, "back").expect("b to reach a over IPv6");
    assert!(r.starts_with(&format!("[{b6}]:")), "{r}");
    assert!(counter(&t.a2, "overlay_decap") >= 1);
    // By name: the other node's endpoint answers AAAA with its IPv6 address.
    let gw = Ipv4Addr::new(10, 191, 0, 1);
    wait_until("b's AAAA on n1", Duration::from_secs(10), || {
        dns::addresses6(&dns::ask(&a, gw, "b", RecordType::AAAA)) == [b6]
    });

    // An ingress policy on b lets nothing in: over IPv6 as over IPv4.
    let closed = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: closed, namespace: default}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n";
    let file = t.dir.join("closed.yaml");
    std::fs::write(&file, closed).unwrap();
    ok(&t.a2, &["policy", "apply", "-f", file.to_str().unwrap()]);
    wait_until("b closed over IPv6", Duration::from_secs(10), || {
        tcp_request(&a, b6, 80, "x").is_err()
    });
    ok(&t.a2, &["policy", "rm", "closed"]);
    wait_until("b open again", Duration::from_secs(10), || {
        tcp_request(&a, b6, 80, "x").is_ok()
    });

    // What an overlay network cannot take.
    let err = refused(
        &t.a1,
        &[
            "network",
            "create",
            "bad6",
            "--driver",
            "overlay",
            "--ipv6",
            "--subnet",
            "10.192.0.0/24",
            "--subnet",
            "fd00:192::/64",
            "--gateway",
            "fd00:192::99",
        ],
    );
    assert!(err.contains("follow its IPv4 ones"), "{err}");
    let ns = Netns::new("np-ep");
    let err = refused(
        &t.a1,
        &[
            "endpoint",
            "create",
            "c",
            "--netns",
            &ns.path(),
            "--network",
            "ov6",
            "--ip6",
            "fd00:191::77",
        ],
    );
    assert!(err.contains("--ip6 on an overlay network"), "{err}");
    drop((a, b));
}
