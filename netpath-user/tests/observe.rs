//! What an operator watches: `netpath monitor` (drops with reason and 5-tuple, opt-in
//! traces, filters), `netpath status` and `/healthz` (hooks, maps, drift repaired and
//! counted), Prometheus metrics (checked by `promtool`, moving with real traffic) and the
//! kernel programs' opt-in log.
mod common;

use std::{
    io::{BufRead, BufReader},
    net::Ipv4Addr,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{promtool_accepts, tcp_request, tcp_server, Netns, Topo, BIN, HOST};
use netpath_user::testing::{mac_of, send_frame, stop_child, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(500);

fn ip_of(t: &Topo, endpoint: &str) -> Ipv4Addr {
    let v: Value = serde_json::from_str(&t.ok(&["endpoint", "inspect", endpoint])).unwrap();
    let nets = v[0]["Networks"].as_object().unwrap();
    nets.values().next().unwrap()["IPAddress"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn health(t: &Topo) -> (bool, Value) {
    let out = t.cli(&["status", "--format", "json"]);
    let v = serde_json::from_slice(&out.stdout).expect("status JSON");
    (out.status.success(), v)
}

/// A running `netpath monitor --format json ARGS`, its events as they come.
struct Monitor {
    child: Child,
    events: mpsc::Receiver<Value>,
}

impl Monitor {
    fn start(t: &Topo, args: &[&str]) -> Monitor {
        let mut child = Command::new(BIN)
            .env("NETPATH_SOCKET", t.socket())
            .args(["monitor", "--format", "json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("netpath monitor");
        let (tx, events) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).expect("one JSON event per line");
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Monitor { child, events }
    }

    /// Every event up to and including the first `want` accepts.
    fn until(&self, what: &str, want: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) => {
                    let done = want(&e);
                    seen.push(e);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("no {what} event; saw {seen:#?}"),
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

fn monitors(t: &Topo) -> u64 {
    health(t).1["Monitors"].as_u64().unwrap()
}

fn is(e: &Value, kind: &str, reason: &str) -> bool {
    e["Kind"] == kind && e["Reason"] == reason
}

#[test]
fn the_monitor_shows_drops_and_opt_in_traces() {
    let mut t = Topo::new();
    t.networks(&[("a", "10.60.1.0/24"), ("b", "10.60.2.0/24")]);
    let a1 = t.endpoint("a1", &["--network", "a"]);
    let b1 = t.endpoint("b1", &["--network", "b", "-p", "8080:80"]);
    tcp_server(&b1, 80);
    let (a1_ip, b1_ip) = (ip_of(&t, "a1"), ip_of(&t, "b1"));

    let drops = Monitor::start(&t, &[]);
    let of_a1 = Monitor::start(&t, &["--endpoint", "a1"]);
    let of_b1 = Monitor::start(&t, &["--endpoint", "b1", "--reason", "isolation"]);
    let traces = Monitor::start(&t, &["--trace"]);
    wait_until("four monitors listening", WAIT, || monitors(&t) == 4);

    // A published port: traced (DNAT and its replies) for the monitor that asked.
    let reply = tcp_request(&t.outside, HOST, 8080, "hi").expect("published port");
    assert!(reply.ends_with("hi"), "{reply}");
    let dnat = traces
        .until("dnat", |e| is(e, "trace", "dnat"))
        .pop()
        .unwrap();
    assert_eq!(dnat["Protocol"], "tcp");
    assert_eq!(dnat["Destination"], format!("{HOST}:8080"));
    assert_eq!(dnat["Translated"], format!("{b1_ip}:80"));
    assert_eq!(dnat["Endpoint"], "b1");
    traces.until("reverse nat", |e| is(e, "trace", "reverse_nat"));

    // Across networks: dropped, with reason and 5-tuple, to each monitor it concerns.
    assert!(!common::tcp_reachable(&a1, b1_ip, 80, SHORT));
    let is_isolation = |e: &Value| {
        is(e, "drop", "isolation")
            && e["Destination"] == format!("{b1_ip}:80")
            && e["Source"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("{a1_ip}:")))
    };
    let seen = drops.until("isolation drop", is_isolation);
    assert!(
        seen.iter().all(|e| e["Kind"] == "drop"),
        "a monitor that did not ask for traces got some: {seen:#?}"
    );
    let e = seen.last().unwrap();
    assert_eq!(
        (&e["Protocol"], &e["Endpoint"]),
        (&"tcp".into(), &"a1".into())
    );
    assert!(e["Interface"].as_str().unwrap().starts_with("np"), "{e}");
    of_a1.until("a1's drop", is_isolation);
    // b1's monitor sees what was meant for b1, and only isolation drops.
    let seen = of_b1.until("the drop meant for b1", is_isolation);
    assert!(seen.iter().all(|e| is(e, "drop", "isolation")), "{seen:#?}");

    // Filters that name nothing are refused in one line.
    let err = t.refused(&["monitor", "--reason", "nope"]);
    assert!(
        err.contains("unknown reason") && err.contains("isolation"),
        "{err}"
    );
    let err = t.refused(&["monitor", "--endpoint", "ghost"]);
    assert!(err.contains("ghost"), "{err}");

    // Monitors that go stop costing the kernel anything.
    drop((drops, of_a1, of_b1, traces));
    wait_until("no monitor listening", WAIT, || monitors(&t) == 0);

    // An agent of the same build started again keeps the programs the kernel runs, and what
    // they report still reaches its monitors (their ring is taken from them).
    t.kill_agent();
    t.start_agent();
    let log = t.agent_log();
    assert!(log.contains("programs kept from its last start"), "{log}");
    let traces = Monitor::start(&t, &["--trace"]);
    wait_until("a monitor listening", WAIT, || monitors(&t) == 1);
    let reply = tcp_request(&t.outside, HOST, 8080, "again").expect("published port");
    assert!(reply.ends_with("again"), "{reply}");
    traces.until("dnat after the restart", |e| is(e, "trace", "dnat"));
}

fn detach(link_id: u64) {
    netpath_user::testing::sh("bpftool", &["link", "detach", "id", &link_id.to_string()]);
}

/// The HTTP status of the agent's `/healthz`, asked from `ns`.
fn healthz(ns: &Netns) -> String {
    let url = "http://10.77.0.2:9142/healthz";
    ns.exec(
        "curl",
        &["-s", "-o", "/dev/null", "-w", "%{http_code}", url],
    )
}

#[test]
fn status_shows_hooks_maps_and_the_drift_it_repaired() {
    let t = Topo::with_agent_args(&["--metrics", "10.77.0.2:9142"]);
    let web = t.endpoint("web", &["-p", "8080:80"]);
    tcp_server(&web, 80);
    let (ok, h) = health(&t);
    assert!(ok, "{h:#}");
    assert_eq!(h["Healthy"], true);
    let version: Value = serde_json::from_str(&t.ok(&["version", "--format", "json"])).unwrap();
    assert_eq!(h["Version"], version["Agent"]["Version"]);
    // Uplink TC, the endpoint's veth, the socket hooks: each attached and current.
    let hooks = h["Hooks"].as_array().unwrap();
    let names: Vec<&str> = hooks.iter().map(|x| x["Hook"].as_str().unwrap()).collect();
    assert!(
        names.contains(&format!("uplink-tc@{}", t.uplink).as_str()),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("endpoint@np")),
        "{names:?}"
    );
    assert!(names.contains(&"sock@netpath_sock_connect4"), "{names:?}");
    assert!(hooks
        .iter()
        .all(|x| x["Attached"] == true && x["Current"] == true && x["Wanted"] == true));
    let map = |name: &str| {
        h["Maps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("map {name} in {h:#}"))
    };
    assert_eq!(map("FLOWS")["Capacity"], 262_144);
    // The one publish, on both families.
    assert_eq!(map("PORTS")["Entries"], 2);
    assert_eq!(map("ENDPOINTS")["Entries"], 1);
    assert!(h["PinnedMaps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["Name"] == "FLOWS" && m["SetAside"] == false));
    assert!(h["LastReconcile"]["Seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(h["Repairs"], 0);
    assert!(
        h["Dns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["Network"] == "bridge" && d["Listening"] == true),
        "{h:#}"
    );
    let text = t.ok(&["status"]);
    assert!(text.contains("Health:") && text.contains("OK"), "{text}");

    // Someone detaches the endpoint's program: the agent says so, puts it back, counts it.
    let link = hooks
        .iter()
        .find(|x| x["Hook"].as_str().unwrap().starts_with("endpoint@"))
        .unwrap()["LinkId"]
        .as_u64()
        .unwrap();
    detach(link);
    let (ok, h) = health(&t);
    if h["Repairs"] == 0 {
        // (Unless the periodic check repaired it in between.)
        assert!(!ok, "status exits non-zero with a problem");
        let problems = h["Problems"].to_string();
        assert!(problems.contains("is not attached"), "{problems}");
        assert_eq!(healthz(&t.outside), "503");
    }
    wait_until("the drift repaired", Duration::from_secs(20), || {
        let (ok, h) = health(&t);
        ok && h["Repairs"] == 1
    });
    assert!(
        t.agent_log().contains("program attached again"),
        "{}",
        t.agent_log()
    );
    let reply = tcp_request(&t.outside, HOST, 8080, "back").expect("the port works again");
    assert!(reply.ends_with("back"), "{reply}");
    assert_eq!(healthz(&t.outside), "200");
}

/// One sample of a scrape: the value of `name{labels...}` (labels as they appear).
fn sample(scrape: &str, name: &str, labels: &str) -> Option<f64> {
    let want = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    scrape.lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == want).then(|| v.parse().ok()).flatten()
    })
}

fn scrape(ns: &Netns) -> String {
    ns.exec("curl", &["-sf", "http://10.77.0.2:9142/metrics"])
}

#[test]
fn metrics_pass_promtool_and_move_with_traffic() {
    let t = Topo::with_agent_args(&["--metrics", "10.77.0.2:9142", "--max-flows", "4096"]);
    t.networks(&[("a", "10.60.1.0/24"), ("b", "10.60.2.0/24")]);
    let web = t.endpoint("web", &["--network", "a", "-p", "8080:80"]);
    let other = t.endpoint("other", &["--network", "b"]);
    tcp_server(&web, 80);
    t.refused(&["network", "create", "a"]);

    let before = scrape(&t.outside);
    promtool_accepts(&before);

    let port =
        r#"endpoint="web",host_ip="0.0.0.0",host_port="8080",protocol="tcp",container_port="80""#;
    const N: usize = 5;
    for i in 0..N {
        let reply = tcp_request(&t.outside, HOST, 8080, &format!("r{i}")).unwrap();
        assert!(reply.ends_with(&format!("r{i}")), "{reply}");
    }
    assert!(!common::tcp_reachable(&other, ip_of(&t, "web"), 80, SHORT));
    let after = scrape(&t.outside);
    let grew = |name: &str, labels: &str| {
        sample(&after, name, labels).unwrap_or_else(|| panic!("{name}{{{labels}}} in\n{after}"))
            - sample(&before, name, labels).unwrap_or(0.0)
    };
    // Each connection: at least SYN, ACK with data, FIN.
    assert!(grew("netpath_port_packets_total", port) >= (3 * N) as f64);
    assert!(grew("netpath_port_bytes_total", port) >= (3 * N * 40) as f64);
    assert!(grew("netpath_datapath_packets_total", r#"counter="dnat_tc""#) >= (3 * N) as f64);
    assert!(grew("netpath_datapath_packets_total", r#"counter="reverse_nat""#) >= N as f64);
    assert!(grew("netpath_datapath_drops_total", r#"reason="isolation""#) >= 1.0);
    assert_eq!(
        sample(&after, "netpath_map_capacity", r#"map="FLOWS""#),
        Some(4096.0)
    );
    assert!(sample(&after, "netpath_map_entries", r#"map="FLOWS""#).unwrap() >= 1.0);
    // The one publish, on both families.
    assert_eq!(
        sample(&after, "netpath_map_entries", r#"map="PORTS""#),
        Some(2.0)
    );
    assert_eq!(sample(&after, "netpath_endpoints", ""), Some(2.0));
    assert_eq!(sample(&after, "netpath_healthy", ""), Some(1.0));
    assert_eq!(
        sample(&after, "netpath_hooks", r#"state="current""#),
        sample(&after, "netpath_hooks", r#"state="wanted""#)
    );
    assert!(sample(&after, "netpath_reconcile_duration_seconds", "").unwrap() > 0.0);
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        after.contains(&format!("netpath_build_info{{version=\"{version}\",")),
        "{after}"
    );
    // The API: answers by route and status, and how long they took.
    let api = |route: &str, code: u16| {
        sample(
            &after,
            "netpath_api_requests_total",
            &format!(r#"route="{route}",code="{code}""#),
        )
    };
    assert_eq!(api("EndpointCreate", 200), Some(2.0));
    assert_eq!(api("NetworkCreate", 409), Some(1.0));
    assert!(
        sample(
            &after,
            "netpath_api_request_duration_seconds_count",
            r#"route="EndpointCreate""#
        ) == Some(2.0)
    );

    // A port published after another is gone takes its counters' slot (the lowest free
    // one), and starts at zero all the same.
    t.ok(&["port", "unpublish", "web", "8080:80"]);
    t.ok(&["port", "publish", "web", "8081:80"]);
    let fresh = scrape(&t.outside);
    let next =
        r#"endpoint="web",host_ip="0.0.0.0",host_port="8081",protocol="tcp",container_port="80""#;
    assert_eq!(sample(&fresh, "netpath_port_packets_total", port), None);
    assert_eq!(
        sample(&fresh, "netpath_port_packets_total", next),
        Some(0.0),
        "{fresh}"
    );
    assert_eq!(sample(&fresh, "netpath_port_bytes_total", next), Some(0.0));
    let reply = tcp_request(&t.outside, HOST, 8081, "again").unwrap();
    assert!(reply.ends_with("again"), "{reply}");
    let counted = scrape(&t.outside);
    let packets = sample(&counted, "netpath_port_packets_total", next).unwrap();
    assert!(
        (3.0..20.0).contains(&packets),
        "{packets} packets for one connection"
    );
}

/// Sends one frame from `ns`'s eth0 whose IPv4 header claims more than it has.
fn send_malformed(ns: &Netns) {
    let mut frame = vec![0xff; 6];
    frame.extend(mac_of(ns, "eth0"));
    frame.extend([0x08, 0x00]);
    // Version 4, header length 60 bytes; the frame ends after 20.
    frame.extend([0x4f, 0, 0, 60, 0, 0, 0, 0, 64, 6, 0, 0]);
    frame.extend([10, 9, 9, 9, 10, 9, 9, 1]);
    send_frame(ns, "eth0", &frame);
}

#[test]
fn the_kernel_logs_only_when_asked() {
    let quiet = Topo::new();
    let ns = quiet.endpoint("q", &[]);
    send_malformed(&ns);
    wait_until("the malformed frame counted", WAIT, || {
        quiet.stats()["Counters"]["malformed"].as_u64() >= Some(1)
    });
    assert!(
        !quiet.agent_log().contains("netpath_kernel"),
        "{}",
        quiet.agent_log()
    );

    let chatty = Topo::with_agent_args(&["--ebpf-log", "debug"]);
    let ns = chatty.endpoint("c", &[]);
    send_malformed(&ns);
    wait_until("the kernel's log line", WAIT, || {
        chatty.agent_log().contains("malformed headers")
    });
    let log = chatty.agent_log();
    let line = log
        .lines()
        .find(|l| l.contains("malformed headers"))
        .unwrap();
    assert!(
        line.contains("DEBUG") && line.contains("netpath_kernel"),
        "{line}"
    );
}

#[test]
fn the_monitor_shows_each_policy_verdict_and_the_policy_that_decided() {
    let t = Topo::new();
    let web = t.endpoint("web", &["-l", "app=web"]);
    let other = t.endpoint("other", &[]);
    let db = t.endpoint("db", &["-l", "app=db"]);
    tcp_server(&db, 5432);
    let db_ip = ip_of(&t, "db");
    t.apply_policies(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db}\nspec: {podSelector: {matchLabels: {app: db}}, ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]}\n",
    );
    let traces = Monitor::start(&t, &["--trace"]);
    wait_until("a monitor listening", WAIT, || monitors(&t) == 1);

    assert!(common::tcp_reachable(&web, db_ip, 5432, WAIT));
    let allowed = traces
        .until("an allowed verdict", |e| is(e, "trace", "allowed"))
        .pop()
        .unwrap();
    assert_eq!(allowed["Policy"], "default/db");
    assert_eq!(allowed["Protocol"], "tcp");
    assert_eq!(allowed["Destination"], format!("{db_ip}:5432"));
    assert_eq!(allowed["Endpoint"], "web");

    assert!(!common::tcp_reachable(&other, db_ip, 5432, SHORT));
    let denied = traces
        .until("a denied verdict", |e| is(e, "drop", "policy"))
        .pop()
        .unwrap();
    assert_eq!(denied["Destination"], format!("{db_ip}:5432"));
    assert_eq!(denied["Endpoint"], "other");
}
