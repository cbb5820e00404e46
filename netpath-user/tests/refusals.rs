//! What the agent accepts, and what it must refuse: each case a new user hit, tried again
//! against a real agent in namespaces made here. A refusal is one line, and changes nothing.
mod common;

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::unix::fs::MetadataExt as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{tcp_server, wait_until, Netns, Topo, HOST, TIMEOUT};
use serde_json::Value;

fn ports_of(t: &Topo, ep: &str) -> Vec<u16> {
    let v: Value = serde_json::from_str(&t.ok(&["endpoint", "inspect", ep])).unwrap();
    v[0]["Ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["PublicPort"].as_u64().unwrap() as u16)
        .collect()
}

#[test]
fn publishes_the_host_needs_are_refused() {
    let t = Topo::new();
    let _ep = t.endpoint("web", &[]);
    // The outbound NAT range: refused, and never handed out as an ephemeral port.
    let err = t.refused(&["port", "publish", "web", "45000:80"]);
    assert!(err.contains("outbound NAT range 40000-59999"), "{err}");
    t.ok(&["port", "publish", "web", "1-1000"]);
    let ports = ports_of(&t, "web");
    assert_eq!(ports.len(), 2000, "1,000 ports on both families");
    assert!(
        ports.iter().all(|p| !(40000..=59999).contains(p)),
        "{ports:?}"
    );

    // A port a host process listens on: refused, and its connections go on.
    let listener = t.host.run(|| TcpListener::bind(("0.0.0.0", 7000)).unwrap());
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        for _ in 0..2 {
            c.read_exact(&mut buf).unwrap();
            c.write_all(&buf).unwrap();
        }
    });
    let mut client = t
        .outside
        .run(|| TcpStream::connect_timeout(&(HOST, 7000).into(), TIMEOUT))
        .unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut echo = |m: &[u8; 5]| {
        client.write_all(m).unwrap();
        let mut back = [0u8; 5];
        client.read_exact(&mut back).unwrap();
        back
    };
    assert_eq!(&echo(b"one  "), b"one  ");
    let err = t.refused(&["port", "publish", "web", "7000:80"]);
    assert!(
        err.contains("Bind for 0.0.0.0:7000 failed: address already in use"),
        "{err}"
    );
    assert_eq!(
        &echo(b"two  "),
        b"two  ",
        "the host's connection is untouched"
    );
    server.join().unwrap();

    // An address the host does not have.
    let err = t.refused(&["port", "publish", "web", "10.9.9.9:8080:80"]);
    assert!(err.contains("not an address of this host"), "{err}");
    assert_eq!(ports_of(&t, "web").len(), 2000, "nothing changed");
}

#[test]
fn networks_the_host_needs_are_refused() {
    let t = Topo::new();
    let routes_before = t.host.ip(&["route"]);
    for (subnet, why) in [
        ("10.77.0.0/24", "overlaps the host's route to 10.77.0.0/24"),
        ("10.77.0.0/16", "overlaps the host's route"),
        ("127.0.0.0/8", "is loopback"),
        ("224.0.0.0/8", "is multicast"),
        ("169.254.0.0/24", "is link-local"),
    ] {
        let err = t.refused(&["network", "create", "x", "--subnet", subnet]);
        assert!(err.contains(why), "{subnet}: {err}");
    }
    t.host.ip(&["addr", "add", "10.200.0.9/32", "dev", "lo"]);
    let err = t.refused(&["network", "create", "x", "--subnet", "10.200.0.0/24"]);
    assert!(err.contains("holds the host's address 10.200.0.9"), "{err}");
    assert_eq!(
        t.host.ip(&["route"]),
        routes_before,
        "host routing untouched"
    );
    assert_eq!(t.ok(&["network", "ls", "-q"]).lines().count(), 1);

    // An endpoint may not take the network's host-gateway address.
    t.ok(&common::words(
        "network create app --subnet 10.60.0.0/24 -o host-gateway=10.60.0.250",
    ));
    let err = t.refused(&common::words(
        "endpoint create e --netns npnone --network app --ip 10.60.0.250",
    ));
    assert!(
        err.contains("host-gateway") || err.contains("does not exist"),
        "{err}"
    );
    let ns = Netns::new("nphg");
    let err = t.refused(&common::words(&format!(
        "endpoint create e --netns {} --network app --ip 10.60.0.250",
        ns.name
    )));
    assert!(err.contains("is the host-gateway of network app"), "{err}");
}

/// Runs the CLI against `t` with a deadline: a request that hangs fails the test.
fn cli_within(t: &Topo, args: &[&str], limit: Duration) -> std::process::Output {
    let mut child = Command::new(common::BIN)
        .env("NETPATH_SOCKET", t.socket())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            // It may have exited already; either way it is gone.
            let _ = child.kill();
            panic!("netpath {args:?} did not answer within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn namespaces_are_checked_without_blocking() {
    let t = Topo::new();
    let dir = std::env::temp_dir().join(format!("netpath-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("pipe");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let out = cli_within(
        &t,
        &["endpoint", "create", "p", "--netns", fifo.to_str().unwrap()],
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a network namespace"), "{err}");
    // The agent was not held up: the next request answers.
    assert!(cli_within(&t, &["network", "ls"], Duration::from_secs(10))
        .status
        .success());
    let err = t.refused(&["endpoint", "create", "p", "--netns", "/proc/self/ns/mnt"]);
    assert!(err.contains("is not a network namespace"), "{err}");
    let err = t.refused(&["endpoint", "create", "p", "--netns", dir.to_str().unwrap()]);
    assert!(err.contains("is not a network namespace"), "{err}");
    // The agent's own namespace, by any path.
    let own = format!("/proc/{}/ns/net", t.agent_pid());
    let err = t.refused(&["endpoint", "create", "p", "--netns", &own]);
    assert!(err.contains("is the agent's own"), "{err}");
    let err = t.refused(&["endpoint", "create", "p", "--netns", &t.host.name]);
    assert!(err.contains("is the agent's own"), "{err}");
    // One namespace, two paths: one endpoint.
    let ns = Netns::new("npdup");
    t.ok(&["endpoint", "create", "a", "--netns", &ns.name]);
    let link = dir.join("link");
    std::os::unix::fs::symlink(ns.path(), &link).unwrap();
    let err = t.refused(&["endpoint", "create", "b", "--netns", link.to_str().unwrap()]);
    assert!(err.contains("already used by endpoint \"a\""), "{err}");
    // Cleanup: already gone is as good as removed.
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_namespace_path_that_now_leads_elsewhere_is_not_followed() {
    let mut t = Topo::new();
    let dir = std::env::temp_dir().join(format!("netpath-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (Netns::new("npna"), Netns::new("npnb"));
    let link = dir.join("ns");
    std::os::unix::fs::symlink(a.path(), &link).unwrap();
    t.ok(&["endpoint", "create", "x", "--netns", link.to_str().unwrap()]);
    assert!(a.ip(&["link"]).contains("eth0"));
    t.stop_agent();
    // While the agent is away, A goes (and the veth with it) and the path is re-pointed.
    drop(a);
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(b.path(), &link).unwrap();
    t.start_agent();
    assert!(
        !t.ok(&["endpoint", "ls"]).contains(" x "),
        "endpoint x dropped"
    );
    assert!(!b.ip(&["link"]).contains("eth0"), "nothing made in B");
    assert!(
        t.agent_log().contains("leads to another namespace"),
        "{}",
        t.agent_log()
    );
    // Cleanup: already gone is as good as removed.
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_requests_are_refused_whole_and_briefly() {
    let t = Topo::new();
    let (code, body) = t.http(
        "POST",
        "/v1/networks",
        Some(br#"{"Name": "n", "Subnet": "10.50.0.0/24", "Colour": "red"}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("unknown field `Colour`"), "{body}");
    let big = vec![b'x'; 50 << 20];
    let start = Instant::now();
    let (code, body) = t.http("POST", "/v1/networks", Some(&big));
    assert_eq!(code, 413, "{body}");
    assert!(start.elapsed() < Duration::from_secs(15));
    let name = "n".repeat(10 << 20);
    let body = format!(r#"{{"Name": "{name}"}}"#);
    let (code, answer) = t.http("POST", "/v1/networks", Some(body.as_bytes()));
    assert!(code == 400 || code == 413, "{code}");
    assert!(
        answer.len() < 1000,
        "the name is not echoed: {} bytes",
        answer.len()
    );
    assert_eq!(t.ok(&["network", "ls", "-q"]).lines().count(), 1);
    assert!(t.agent_log().contains("refused"), "refusals are logged");
}

#[test]
fn running_out_of_descriptors_backs_off_and_recovers() {
    let t = Topo::new();
    let pid = t.agent_pid().to_string();
    assert!(Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=64:"])
        .status()
        .unwrap()
        .success());
    let before = t.agent_log().lines().count();
    let idle: Vec<_> = (0..150)
        .filter_map(|_| std::os::unix::net::UnixStream::connect(t.socket()).ok())
        .collect();
    // Let the agent meet its limit for a while: a second of accept errors.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let logged = t.agent_log().lines().count() - before;
    assert!(
        logged < 40,
        "{logged} lines logged in a second: it backs off"
    );
    drop(idle);
    assert!(Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=1024:"])
        .status()
        .unwrap()
        .success());
    wait_until("the API answering again", Duration::from_secs(30), || {
        t.cli(&["network", "ls"]).status.success()
    });
}

#[test]
fn orphans_of_a_killed_request_are_swept_at_start() {
    let mut t = Topo::new();
    let ns = Netns::new("nporph");
    t.stop_agent();
    // What an agent killed half way through `endpoint create` leaves: a veth with its
    // peer configured in the namespace, and a route.
    t.host.ip(&common::words(&format!(
        "link add np0123456789 type veth peer name eth0 netns {}",
        ns.name
    )));
    t.host.ip(&["link", "set", "np0123456789", "up"]);
    t.host
        .ip(&["route", "add", "10.210.0.99/32", "dev", "np0123456789"]);
    ns.ip(&["addr", "add", "10.210.0.99/16", "dev", "eth0"]);
    t.start_agent();
    assert!(!t.host.ip(&["link"]).contains("np0123456789"));
    assert!(!t.host.ip(&["route"]).contains("10.210.0.99"));
    assert!(!ns.ip(&["link"]).contains("eth0"));
    assert!(t.agent_log().contains("orphans=1"), "{}", t.agent_log());
    t.ok(&common::words(&format!(
        "endpoint create x --netns {} --ip 10.210.0.99",
        ns.name
    )));
}

#[test]
fn one_agent_per_state_directory_and_host_settings_kept() {
    let mut t = Topo::new();
    let pid = t.agent_pid();
    // A second agent on the same state directory: refused before it touches anything.
    let mut second = t.agent_opts();
    second.dir = second.dir.join("second");
    second.socket = second.dir.join("netpath.sock");
    let err = match netpath_user::testing::AgentProcess::start(second) {
        Ok(_) => panic!("a second agent started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(&format!(
            "another netpath agent (pid {pid}) is using the state directory"
        )),
        "{err}"
    );
    assert!(
        t.cli(&["network", "ls"]).status.success(),
        "the first serves on"
    );

    // The operator's reserved ports stay; netpath's are added, and given back.
    t.stop_agent();
    assert!(t.uninstall().status.success());
    let reserved = |t: &Topo| {
        t.host
            .exec("cat", &["/proc/sys/net/ipv4/ip_local_reserved_ports"])
            .trim()
            .to_string()
    };
    t.host
        .sysctl("net/ipv4/ip_local_reserved_ports", "1000-2000");
    // A start that fails changes no sysctl.
    t.set_agent_args(&["--uplink", "nonexistent0"]);
    let err = t.start_agent_failing();
    assert!(err.contains("nonexistent0"), "{err}");
    assert_eq!(reserved(&t), "1000-2000");
    assert_eq!(
        t.host
            .exec("cat", &["/proc/sys/net/ipv4/ip_forward"])
            .trim(),
        "0"
    );
    t.set_agent_args(&[]);
    t.start_agent();
    assert_eq!(reserved(&t), "1000-2000,40000-59999");
    t.stop_agent();
    assert!(t.uninstall().status.success());
    assert_eq!(reserved(&t), "1000-2000");
}

#[test]
fn endpoints_whose_namespace_is_gone_go() {
    let t = Topo::new();
    let gone = Netns::new("npgone");
    t.ok(&common::words(&format!(
        "endpoint create gone --netns {} --ip 10.210.0.50",
        gone.name
    )));
    drop(gone);
    wait_until("the agent to notice", Duration::from_secs(20), || {
        !t.ok(&["endpoint", "ls"]).contains("gone")
    });
    assert!(t.agent_log().contains("its network namespace is gone"));
    // Its address is free again.
    let again = Netns::new("npagain");
    t.ok(&common::words(&format!(
        "endpoint create again --netns {} --ip 10.210.0.50",
        again.name
    )));

    // A namespace kept alive by a process but no longer reachable by its path: the veth
    // stays, so only a prune (or the periodic check) finds it.
    let held = Netns::new("npheld");
    t.ok(&["endpoint", "create", "held", "--netns", &held.name]);
    let mut sleeper = Command::new("ip")
        .args(["netns", "exec", &held.name, "sleep", "60"])
        .spawn()
        .unwrap();
    wait_until(
        "the sleeper in the namespace",
        Duration::from_secs(5),
        || {
            !held
                .exec("ip", &["netns", "pids", &held.name])
                .trim()
                .is_empty()
        },
    );
    Command::new("ip")
        .args(["netns", "del", &held.name])
        .status()
        .unwrap();
    let out = t.ok(&["endpoint", "prune"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["Deleted endpoints:", "held"]
    );
    // It may have exited already; either way it is gone.
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn a_damaged_state_file_is_set_aside_and_said_exactly() {
    let mut t = Topo::new();
    let _a = t.endpoint("a", &["--ip", "10.210.0.10"]);
    t.stop_agent();
    let path = t.state_dir().join("state.json");
    let mut state: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let a = state["endpoints"]["a"].clone();
    let mut dangling = a.clone();
    dangling["name"] = "dangling".into();
    dangling["id"] = "b".repeat(64).into();
    dangling["netns"] = "/run/netns/nowhere".into();
    dangling["attachments"][0]["network"] = "nonet".into();
    dangling["attachments"][0]["host_ifname"] = "npbbbbbbbbbb".into();
    let mut twin = a.clone();
    twin["name"] = "twin".into();
    twin["id"] = "c".repeat(64).into();
    twin["netns"] = "/run/netns/twin".into();
    twin["attachments"][0]["host_ifname"] = "npcccccccccc".into();
    let mut weird = a.clone();
    weird["name"] = "weird".into();
    weird["id"] = "é".repeat(20).into();
    state["endpoints"]["dangling"] = dangling;
    state["endpoints"]["twin"] = twin;
    state["endpoints"]["weird"] = weird;
    std::fs::write(&path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    t.start_agent();
    let log = t.agent_log();
    let file = path.display().to_string();
    for want in [
        format!("{file}: endpoint \"dangling\": its interface eth0 network nonet does not exist"),
        format!("{file}: endpoint \"twin\": its interface eth0 address 10.210.0.10 is also endpoint a's"),
        format!("{file}: endpoint \"weird\" has an invalid id"),
        "the file as it was is kept as".to_string(),
    ] {
        assert!(log.contains(&want), "{want:?} in:\n{log}");
    }
    assert!(common::state_set_aside(&t.state_dir()));
    let names = t.ok(&["endpoint", "ls", "--format", "{{.Name}}"]);
    assert_eq!(names.trim(), "a");
    let ns = Netns::new("npafter");
    t.ok(&["endpoint", "create", "after", "--netns", &ns.name]);
}

#[test]
fn the_socket_is_roots_unless_a_group_is_named() {
    let mut t = Topo::new();
    let md = std::fs::metadata(t.socket()).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o777), (0, 0o600));
    t.stop_agent();
    t.set_agent_args(&["--socket-group", "nogroup"]);
    t.start_agent();
    let md = std::fs::metadata(t.socket()).unwrap();
    let nogroup = nix::unistd::Group::from_name("nogroup")
        .unwrap()
        .unwrap()
        .gid;
    assert_eq!((md.gid(), md.mode() & 0o777), (nogroup.as_raw(), 0o660));
    t.stop_agent();
    t.set_agent_args(&["--socket-group", "no-such-group"]);
    let err = t.start_agent_failing();
    assert!(err.contains("no such group: no-such-group"), "{err}");
}

#[test]
fn a_big_publish_leaves_the_api_answering() {
    let t = Topo::new();
    let _ep = t.endpoint("web", &[]);
    // 20,000 ports in one request; queries go on meanwhile from the state's snapshot.
    let socket = t.socket().to_path_buf();
    let big = std::thread::spawn(move || {
        Command::new(common::BIN)
            .env("NETPATH_SOCKET", socket)
            .args(["port", "publish", "web", "10000-29999:10000-29999"])
            .output()
            .unwrap()
    });
    for _ in 0..5 {
        assert!(t.cli(&["network", "ls"]).status.success());
    }
    let out = big.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ports_of(&t, "web").len(), 40000, "on both families");
    tcp_server(&_ep, 29999);
    let r = common::tcp_request(&t.outside, HOST, 29999, "last").unwrap();
    assert!(r.ends_with(" last"), "{r}");
}
