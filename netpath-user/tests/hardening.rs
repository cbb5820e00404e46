//! What a careful operator tries against a host running netpath, as the attacks are made:
//! crafted frames from a neighbour on the uplink's wire.
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpStream, UdpSocket},
    time::Duration,
};

use netpath_user::testing::{
    mac_of, send_frame, send_frames,
    traffic::{tcp_echo_server, udp_server},
    udp_with, wait_until, Frame, Netns, UDP,
};

mod common;
use common::{Topo, HOST, OUTSIDE};

/// A UDP socket in `ns` on port 80 that reports whether a datagram arrives within `wait`.
fn listening(ns: &Netns) -> UdpSocket {
    let s = ns.run(|| UdpSocket::bind("0.0.0.0:80").expect("bind udp"));
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

fn received(s: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let start = std::time::Instant::now();
    let mut buf = [0u8; 256];
    while start.elapsed() < wait {
        if let Ok(n) = s.recv(&mut buf) {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

/// A neighbour on the uplink's wire sends a UDP datagram to `dst:port`, addressed (L2) to the
/// host's uplink, as `-p 127.0.0.1:...` attacks do (CVE-2020-8558's class).
fn from_the_wire(t: &Topo, dst: [u8; 4], port: u16, payload: &[u8]) {
    let out_if = t
        .outside
        .exec("ip", &["-o", "link", "show", "type", "veth"]);
    let out_if = out_if
        .split(':')
        .nth(1)
        .and_then(|n| n.trim().split('@').next())
        .expect("the outside's veth")
        .to_string();
    let mut frame = Frame::new(OUTSIDE.octets(), dst, UDP);
    frame.src_mac = mac_of(&t.outside, &out_if);
    frame.dst_mac = mac_of(&t.host, &t.uplink);
    send_frame(
        &t.outside,
        &out_if,
        &frame.build(&udp_with(40123, port, payload)),
    );
}

/// The outside namespace's end of the uplink's wire.
fn outside_veth(t: &Topo) -> String {
    let links = t
        .outside
        .exec("ip", &["-o", "link", "show", "type", "veth"]);
    links
        .split(':')
        .nth(1)
        .and_then(|n| n.trim().split('@').next())
        .expect("the outside's veth")
        .to_string()
}

/// The flood the guard's tests send: `N` UDP datagrams to the host's `port`, each from a
/// new client (10.79.x.y), crafted on the uplink's wire.
const N: u64 = 20_000;
fn flood_of_new_clients(t: &Topo, port: u16) {
    let out_if = outside_veth(t);
    let (src_mac, dst_mac) = (mac_of(&t.outside, &out_if), mac_of(&t.host, &t.uplink));
    let frames = (0..N as u32).map(|i| {
        let mut f = Frame::new([10, 79, (i >> 8) as u8, i as u8], HOST.octets(), UDP);
        f.src_mac = src_mac;
        f.dst_mac = dst_mac;
        f.build(&udp_with(20000, port, b"flood"))
    });
    send_frames(&t.outside, &out_if, frames);
}

/// New flows the guard may let in at `--new-flows-per-cpu 1000` since `start`: each CPU the
/// kernel keeps a schedule for, its burst (20 ms of the rate) and 1,000 a second.
fn allowed_since(start: std::time::Instant) -> u64 {
    let cpus = aya::util::nr_cpus().unwrap() as u64;
    cpus * (1 + 20 + 1000 * start.elapsed().as_secs_f64().ceil() as u64)
}

fn counter(t: &Topo, name: &str) -> u64 {
    t.stats()["Counters"][name].as_u64().unwrap_or(0)
}

#[test]
fn loopback_destinations_from_the_wire_are_never_translated() {
    for xdp in ["off", "generic"] {
        let t = Topo::with_xdp(xdp);
        let ep = t.endpoint("web", &["-p", "127.0.0.1:8085:80/udp", "-p", "8086:80/udp"]);
        let sock = listening(&ep);
        // The control: the same crafted frame to the host's own address and a port published
        // on every address arrives (so the frames below could).
        from_the_wire(&t, HOST.octets(), 8086, b"control");
        assert_eq!(
            received(&sock, Duration::from_secs(3)).as_deref(),
            Some(&b"control"[..]),
            "xdp {xdp}"
        );
        // A port published on 127.0.0.1, and one published on every address, reached through
        // 127.0.0.1 from the wire: dropped and counted, never delivered.
        from_the_wire(&t, [127, 0, 0, 1], 8085, b"loopback-bound");
        from_the_wire(&t, [127, 0, 0, 1], 8086, b"every-address");
        from_the_wire(&t, [0, 0, 0, 0], 8086, b"this-network");
        assert_eq!(received(&sock, Duration::from_secs(1)), None, "xdp {xdp}");
        wait_until("the martians counted", Duration::from_secs(5), || {
            counter(&t, "drop_martian") >= 3
        });
        // The host's own processes still reach the loopback-bound port (the socket hooks).
        t.host.run(|| {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.send_to(b"local", "127.0.0.1:8085").unwrap();
        });
        assert_eq!(
            received(&sock, Duration::from_secs(3)).as_deref(),
            Some(&b"local"[..]),
            "xdp {xdp}"
        );
    }
}

#[test]
fn unpublished_ports_are_not_reachable_by_routing_through_the_host() {
    let t = Topo::new();
    let ep = t.endpoint("web", &["-p", "8087:80/udp"]);
    let addr = t
        .ok(&["endpoint", "inspect", "web", "--format", "{{.IPAddress}}"])
        .trim()
        .to_string();
    let ep_addr: std::net::Ipv4Addr = addr.parse().unwrap();
    // The neighbour routes the endpoints' subnet through the host, as an attacker on the LAN
    // would.
    t.outside.ip(&[
        "route",
        "add",
        &format!("{addr}/32"),
        "via",
        &HOST.to_string(),
    ]);
    let sock = listening(&ep);
    common::tcp_server(&ep, 81);

    // Published: reached, with the client's own address.
    t.outside.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"published", (HOST, 8087)).unwrap();
    });
    assert_eq!(
        received(&sock, Duration::from_secs(3)).as_deref(),
        Some(&b"published"[..])
    );

    // Straight at the endpoint's address: UDP, TCP and ICMP go nowhere.
    t.outside.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..3 {
            s.send_to(b"routed", (ep_addr, 80)).unwrap();
        }
    });
    assert_eq!(received(&sock, Duration::from_secs(1)), None);
    assert!(!common::tcp_reachable(
        &t.outside,
        ep_addr,
        81,
        Duration::from_secs(1)
    ));
    assert!(!common::ping(&t.outside, ep_addr));
    wait_until("routed packets counted", Duration::from_secs(5), || {
        counter(&t, "drop_routed") >= 5
    });
    // The endpoint itself still reaches outside, and its replies come back.
    assert!(common::ping(&ep, common::OUTSIDE));
}

#[test]
fn a_flood_that_fills_the_flow_table_is_a_warning_not_a_failed_liveness() {
    // With no flood guard: every new flow is let in, and the table fills.
    let t = Topo::with_agent_args(&["--metrics", "127.0.0.1:9142", "--new-flows-per-cpu", "0"]);
    // A port published one to one keeps no flow for clients that never hear back; one
    // published on two host ports keeps every flow from its first packet.
    let _ep = t.endpoint(
        "web",
        &[
            "-p",
            "8087:81/udp",
            "-p",
            "8088:80/udp",
            "-p",
            "8089:80/udp",
        ],
    );
    // A flood from outside: a new flow for every datagram (a new source port each).
    let out_if = outside_veth(&t);
    let (src_mac, dst_mac) = (mac_of(&t.outside, &out_if), mac_of(&t.host, &t.uplink));
    let flood = |n: u32, port: u16| {
        (0..n).map(move |i| {
            let mut f = Frame::new(
                [10, 78, (i >> 16) as u8, (i >> 8) as u8],
                HOST.octets(),
                UDP,
            );
            f.src_mac = src_mac;
            f.dst_mac = dst_mac;
            f.build(&udp_with(20000 + (i & 0xff) as u16, port, b"flood"))
        })
    };
    send_frames(&t.outside, &out_if, flood(50_000, 8087));
    wait_until(
        "the one-to-one flood translated",
        Duration::from_secs(10),
        || counter(&t, "dnat_stateless") >= 50_000,
    );
    assert_eq!(
        t.stats()["Flows"],
        0,
        "no flow kept for the one-to-one flood"
    );
    // 250,000 sources: the default table (262,144 flows, LRU) fills to its high-water mark.
    send_frames(&t.outside, &out_if, flood(250_000, 8088));
    let health = || -> serde_json::Value {
        serde_json::from_str(&t.ok(&["status", "--format", "json"])).unwrap()
    };
    let start = std::time::Instant::now();
    while health()["Warnings"].as_array().is_none_or(|w| w.is_empty()) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no warning: {}",
            t.ok(&["status", "-v"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let h = health();
    assert_eq!(h["Healthy"], true, "{h}");
    assert!(h["Problems"].as_array().unwrap().is_empty(), "{h}");
    assert!(h["Warnings"][0].as_str().unwrap().contains("FLOWS"), "{h}");
    let probe = t.host.exec(
        "curl",
        &[
            "-s",
            "-w",
            "\n%{http_code}",
            "http://127.0.0.1:9142/healthz",
        ],
    );
    assert!(probe.ends_with("\n200"), "{probe}");
    assert!(probe.contains("warning: map FLOWS"), "{probe}");
}

/// The flood guard as an operator sets it: past its rate, new flows from the wire are
/// dropped and counted before they take a slot of the table, and once the flood is over new
/// clients are let in again.
#[test]
fn the_flood_guard_drops_new_flows_past_its_rate_and_counts_them() {
    let t = Topo::with_agent_args(&["--new-flows-per-cpu", "1000"]);
    let config = std::process::Command::new(env!("CARGO_BIN_EXE_netpath"))
        .args(["agent", "--new-flows-per-cpu", "1000", "--print-config"])
        .output()
        .unwrap();
    let config = String::from_utf8_lossy(&config.stdout);
    assert!(config.contains("new-flows-per-cpu = 1000"), "{config}");
    // One container port on two host ports: every flow is kept, so every one is new work.
    let ep = t.endpoint("web", &["-p", "8088:80/udp", "-p", "8089:80/udp"]);
    let start = std::time::Instant::now();
    flood_of_new_clients(&t, 8088);
    let flows = || t.stats()["Flows"].as_u64().unwrap();
    wait_until(
        "every frame kept or dropped",
        Duration::from_secs(10),
        || counter(&t, "drop_new_flow_rate") + flows() >= N,
    );
    let allowed = allowed_since(start);
    let kept = flows();
    assert!(kept <= allowed, "{kept} flows kept, {allowed} allowed");
    assert_eq!(counter(&t, "drop_new_flow_rate") + kept, N);
    // A new client once the flood is over is let in.
    udp_server(&ep, 80);
    wait_until("a new client let in", Duration::from_secs(10), || {
        common::udp_request(&t.outside, HOST, 8089, "after").is_ok()
    });
}

/// A port published one to one keeps no flow, and a flood of new clients to it is held to
/// the guard's rate all the same (dropped in the uplink's program, counted), while a client
/// that asked before the flood and a TCP connection made before it go on through it.
#[test]
fn a_flood_to_a_port_published_one_to_one_is_held_to_the_rate_and_its_clients_go_on() {
    let t = Topo::with_agent_args(&["--new-flows-per-cpu", "1000"]);
    let ep = t.endpoint("web", &["-p", "8090:80/udp", "-p", "8091:81"]);
    udp_server(&ep, 80);
    tcp_echo_server(&ep, 81);
    let client = t
        .outside
        .run(|| UdpSocket::bind("0.0.0.0:0"))
        .expect("bind the client");
    client.connect((HOST, 8090)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let ask = || {
        let mut buf = [0u8; 64];
        client.send(b"ask").is_ok() && client.recv(&mut buf).is_ok()
    };
    wait_until("the client answered", Duration::from_secs(10), ask);
    let mut conn = t
        .outside
        .run(|| TcpStream::connect((HOST, 8091)))
        .expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let echoed = |conn: &mut TcpStream| {
        let mut b = [0u8; 4];
        conn.write_all(b"ping").is_ok() && conn.read_exact(&mut b).is_ok() && &b == b"ping"
    };
    assert!(echoed(&mut conn), "the connection answers before the flood");

    let let_in = counter(&t, "dnat_stateless");
    let start = std::time::Instant::now();
    flood_of_new_clients(&t, 8090);
    let admitted = || counter(&t, "dnat_stateless") - let_in;
    wait_until(
        "every frame let in or dropped",
        Duration::from_secs(10),
        || counter(&t, "drop_new_flow_rate") + admitted() >= N,
    );
    let allowed = allowed_since(start);
    assert!(
        admitted() <= allowed,
        "{} let in, {allowed} allowed",
        admitted()
    );
    assert_eq!(counter(&t, "drop_new_flow_rate") + admitted(), N);
    // The client and the connection made before go on, at once.
    assert!(ask(), "the client that asked before the flood is answered");
    assert!(echoed(&mut conn), "the connection goes on");
}

#[test]
fn idle_connections_do_not_stall_the_api_and_the_cli_gives_up_with_a_reason() {
    let t = Topo::new();
    // A few hundred connections that never send a request.
    let idle: Vec<std::os::unix::net::UnixStream> = (0..300)
        .map(|_| std::os::unix::net::UnixStream::connect(t.socket()).expect("connect"))
        .collect();
    let start = std::time::Instant::now();
    let v = t.ok(&["version", "--format", "{{.Agent.Version}}"]);
    assert!(!v.trim().is_empty());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "a well-behaved client waited {:?} behind idle connections",
        start.elapsed()
    );
    // The agent closes them when their headers are overdue.
    for mut c in idle {
        use std::io::Read as _;
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 1];
        assert!(
            matches!(c.read(&mut buf), Ok(0)),
            "an idle connection kept open"
        );
    }

    // An agent that accepts and never answers: the CLI stops with one line, not a hang.
    let dir =
        std::env::temp_dir().join(format!("netpath-stall-{}", netpath_user::testing::unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("stalled.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let held = std::thread::spawn(move || listener.accept().map(|(c, _)| c));
    let out = std::process::Command::new(common::BIN)
        .args(["--timeout", "1", "--socket"])
        .arg(&socket)
        .arg("version")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did not answer within 1s"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    drop(held.join());
    let _ = std::fs::remove_dir_all(&dir); // scratch
}

#[test]
fn an_unreadable_state_file_stops_the_start_and_leaves_the_datapath_alone() {
    let mut t = Topo::new();
    let ep = t.endpoint("web", &["-p", "8089:80/udp"]);
    common::udp_server(&ep, 80);
    assert!(common::udp_request(&t.outside, HOST, 8089, "before").is_ok());
    t.stop_agent();
    let path = t.state_dir().join("state.json");
    let good = std::fs::read(&path).unwrap();
    let gateways = |t: &Topo| t.host.ip(&["-o", "-4", "addr", "show", "dev", "netpath0"]);
    let gateways_before = gateways(&t);
    for (what, bytes) in [
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("corrupt", b"{\"networks\": 42}".to_vec()),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let err = t.start_agent_failing();
        assert!(
            err.contains("not a netpath state") && err.contains("nothing was changed"),
            "{what}: {err}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{what}: the file is as it was"
        );
        // The running datapath still serves, and no default network was made anew.
        let r = common::udp_request(&t.outside, HOST, 8089, what);
        assert!(r.is_ok(), "{what}: the published port stopped answering");
        assert_eq!(gateways(&t), gateways_before, "{what}");
        assert!(
            !common::state_set_aside(&t.state_dir()),
            "{what}: nothing to set aside"
        );
    }
    // Restored by the operator: the agent starts and adopts it all.
    std::fs::write(&path, &good).unwrap();
    t.start_agent();
    assert_eq!(
        t.ok(&["endpoint", "ls", "--format", "{{.Name}}"]).trim(),
        "web"
    );
    assert!(common::udp_request(&t.outside, HOST, 8089, "after").is_ok());
}

#[test]
fn a_second_agent_on_the_same_pins_is_refused_and_the_first_keeps_serving() {
    let t = Topo::new();
    let ep = t.endpoint("web", &["-p", "8090:80/udp"]);
    common::udp_server(&ep, 80);
    assert!(common::udp_request(&t.outside, HOST, 8090, "first").is_ok());
    let dir = std::env::temp_dir().join(format!(
        "netpath-second-{}",
        netpath_user::testing::unique()
    ));
    let mut second = t.agent_opts();
    second.dir = dir.clone();
    second.socket = dir.join("netpath.sock");
    second.state_dir = dir.join("state");
    let err = match netpath_user::testing::AgentProcess::start(second.clone()) {
        Ok(_) => panic!("a second agent started on the first's pins"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("another netpath agent is using the pin directory"),
        "{err}"
    );
    // Nor may its uninstall take the first's datapath down.
    let out = second.uninstall().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("another netpath agent is using the pin directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(common::udp_request(&t.outside, HOST, 8090, "still").is_ok());
    assert_eq!(
        t.ok(&["endpoint", "ls", "--format", "{{.Name}}"]).trim(),
        "web"
    );
    assert!(t.ok(&["status"]).contains("Health:           OK"));
    let _ = std::fs::remove_dir_all(&dir); // scratch

    // Whatever else writes the maps (as a second agent did, emptying them): the health says
    // the datapath no longer holds what the state does.
    let slot = t.pins().join("PORTS_ANY");
    let index = (1u32 << 16) | 8090; // UDP, port 8090
    let mut args = vec![
        "map".to_string(),
        "update".into(),
        "pinned".into(),
        slot.display().to_string(),
        "key".into(),
    ];
    args.extend(index.to_le_bytes().iter().map(|b| b.to_string()));
    args.push("value".into());
    args.extend(std::iter::repeat_n(
        "0".to_string(),
        std::mem::size_of::<netpath_common::PortSlot>(),
    ));
    common::sh(
        "bpftool",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let status = t.cli(&["status"]);
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(
        said.contains("1 published port(s) missing from the datapath") && said.contains("8090"),
        "{said}"
    );
}

/// Binds `addr` with `proto` ("tcp"/"udp") in `ns`: the error's kind, or None when bound.
fn bind_error(ns: &Netns, proto: &str, addr: &str) -> Option<std::io::ErrorKind> {
    let addr = addr.to_string();
    let proto = proto.to_string();
    ns.run(move || {
        if proto == "tcp" {
            std::net::TcpListener::bind(&addr).err().map(|e| e.kind())
        } else {
            UdpSocket::bind(&addr).err().map(|e| e.kind())
        }
    })
}

#[test]
fn published_ports_are_never_the_hosts_source_ports_and_binding_one_is_refused() {
    use std::io::ErrorKind::AddrInUse;
    let t = Topo::new();
    // The host picks its own ports from 100; ephemeral publishes take the first 50 of them.
    t.host.sysctl("net/ipv4/ip_local_port_range", "32768 32867");
    let ep = t.endpoint_with("web", "-p 1000-1049 -p 2000-2049/udp -p 127.0.0.1:9100:80");
    // IPv4's host ports (IPv6 has the same: this host has IPv6).
    let ports = t.ok(&["port", "web"]);
    let published: Vec<u16> = ports
        .lines()
        .filter(|l| !l.contains("[::]"))
        .filter_map(|l| l.rsplit(':').next()?.trim().parse().ok())
        .collect();
    assert_eq!(published.len(), 101, "{published:?}");
    assert_eq!(ports.lines().count(), 201, "{ports}");
    assert!(
        (32768..32818).all(|p| published.contains(&p)),
        "{published:?}"
    );
    let reserved = t
        .host
        .exec("cat", &["/proc/sys/net/ipv4/ip_local_reserved_ports"]);
    assert!(
        reserved.contains("9100") && reserved.contains("32768-32817"),
        "{reserved}"
    );

    // The host's own connections out: every one gets its replies (none is handed to the
    // endpoint), and none comes from a published port.
    common::tcp_server(&t.outside, 7000);
    for i in 0..40 {
        let reply = common::tcp_request(&t.host, OUTSIDE, 7000, "out")
            .unwrap_or_else(|e| panic!("host connection {i}: {e}"));
        let port: u16 = reply
            .split_whitespace()
            .next()
            .and_then(|a| a.rsplit(':').next()?.parse().ok())
            .expect("the server says the client's port");
        assert!(!published.contains(&port), "connection {i} from {port}");
    }

    // A host socket binding a published port is refused as if docker-proxy held it; the
    // same port in another namespace, or one not published, binds.
    assert_eq!(bind_error(&t.host, "tcp", "0.0.0.0:32768"), Some(AddrInUse));
    assert_eq!(
        bind_error(&t.host, "tcp", "10.77.0.2:32800"),
        Some(AddrInUse)
    );
    assert_eq!(bind_error(&t.host, "udp", "0.0.0.0:32768"), Some(AddrInUse));
    assert_eq!(
        bind_error(&t.host, "tcp", "127.0.0.1:9100"),
        Some(AddrInUse)
    );
    assert_eq!(bind_error(&t.host, "tcp", "0.0.0.0:9100"), Some(AddrInUse));
    assert_eq!(bind_error(&t.host, "tcp", "10.77.0.2:9100"), None);
    assert_eq!(bind_error(&t.host, "udp", "0.0.0.0:9100"), None);
    assert_eq!(bind_error(&t.host, "tcp", "0.0.0.0:32850"), None);
    assert_eq!(bind_error(&ep, "tcp", "0.0.0.0:32768"), None);

    // Unpublished, the port is the host's again.
    t.ok(&["port", "unpublish", "web", "127.0.0.1:9100:80"]);
    assert_eq!(bind_error(&t.host, "tcp", "127.0.0.1:9100"), None);
    let reserved = t
        .host
        .exec("cat", &["/proc/sys/net/ipv4/ip_local_reserved_ports"]);
    assert!(!reserved.contains("9100"), "{reserved}");
}

/// The answer of a UDP server behind `HOST:port` to a datagram from `src` (an address of the
/// outside namespace), if one comes within a second or so.
fn udp_answer_from(t: &Topo, src: Ipv4Addr, port: u16) -> Option<String> {
    let s = t
        .outside
        .run(|| UdpSocket::bind((src, 0)).expect("bind the client"));
    s.connect((HOST, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 128];
    for _ in 0..4 {
        s.send(b"hello").unwrap();
        if let Ok(n) = s.recv(&mut buf) {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}

#[test]
fn published_ports_answer_only_the_clients_the_operator_lets_in() {
    // Two clients on the LAN: OUTSIDE, and a neighbour beside it.
    const NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
    let mut t = Topo::with_agent_args(&["--published-from", &format!("{OUTSIDE}")]);
    let out_if = outside_veth(&t);
    t.outside
        .ip(&["addr", "add", &format!("{NEIGHBOUR}/24"), "dev", &out_if]);
    let ep = t.endpoint("web", &["-p", "8090:80", "-p", "8091:81/udp"]);
    tcp_echo_server(&ep, 80);
    udp_server(&ep, 81);
    assert_eq!(
        t.ok(&["firewall", "show"]).trim(),
        format!("published ports answer: {OUTSIDE}/32")
    );

    // The flag's client is answered, with its own address kept; the neighbour is not.
    let answer = udp_answer_from(&t, OUTSIDE, 8091).expect("the listed client is answered");
    assert!(answer.starts_with(&format!("{OUTSIDE}:")), "{answer}");
    assert_eq!(udp_answer_from(&t, NEIGHBOUR, 8091), None);
    assert!(counter(&t, "drop_firewall") >= 1);

    // A connection of the listed client, alive.
    let mut conn = t
        .outside
        .run(|| TcpStream::connect_timeout(&(HOST, 8090).into(), Duration::from_secs(3)))
        .expect("the listed client connects");
    conn.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 16];
    conn.write_all(b"ping").unwrap();
    assert_eq!(conn.read(&mut buf).unwrap(), 4);

    // On the running agent, the list becomes the neighbour: it is answered, and the other
    // client's flows (the connection, the datagrams) stop at their next packet.
    let out = t.ok(&["firewall", "set", &NEIGHBOUR.to_string()]);
    assert!(out.contains("stopped 2 flows"), "{out}");
    assert!(udp_answer_from(&t, NEIGHBOUR, 8091).is_some());
    assert_eq!(udp_answer_from(&t, OUTSIDE, 8091), None);
    conn.write_all(b"ping").unwrap();
    assert!(
        conn.read(&mut buf).is_err(),
        "the stopped connection answered"
    );

    // Enforced while the agent is down (the kernel keeps the list), and back as the flag
    // says once it starts again: the flag replaces the list at start.
    t.stop_agent();
    assert_eq!(udp_answer_from(&t, OUTSIDE, 8091), None);
    assert!(udp_answer_from(&t, NEIGHBOUR, 8091).is_some());
    t.start_agent();
    assert_eq!(
        t.ok(&["firewall", "show", "-q"]).trim(),
        format!("{OUTSIDE}/32")
    );
    assert!(udp_answer_from(&t, OUTSIDE, 8091).is_some());

    // add, rm, clear; bad input changes nothing.
    t.ok(&["firewall", "add", "10.77.0.48/29"]);
    assert!(udp_answer_from(&t, NEIGHBOUR, 8091).is_some());
    let err = t.refused(&["firewall", "rm", "192.0.2.0/24"]);
    assert!(err.contains("192.0.2.0/24 is not on the list"), "{err}");
    let err = t.refused(&["firewall", "add", "10.77.0.1/24"]);
    assert!(err.contains("host bits"), "{err}");
    assert_eq!(
        t.ok(&["firewall", "show", "-q"]),
        format!("{OUTSIDE}/32\n10.77.0.48/29\n")
    );
    t.ok(&["firewall", "rm", "10.77.0.48/29"]);
    assert_eq!(udp_answer_from(&t, NEIGHBOUR, 8091), None);
    t.ok(&["firewall", "clear"]);
    assert!(udp_answer_from(&t, NEIGHBOUR, 8091).is_some());
    assert_eq!(
        t.ok(&["firewall", "show"]).trim(),
        "published ports answer: everyone"
    );
}
