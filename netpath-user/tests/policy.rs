//! Network policy as Kubernetes' own e2e tests and Cyclonus check it: endpoints in two
//! namespaces and a client outside, policies applied case by case, the reachability of every
//! pair on TCP and UDP computed by the tests' own evaluator of the policies
//! (`common/matrix.rs`, nothing of netpath's), every pair probed with real sockets, the whole
//! matrix compared. The same matrix across two nodes is in `cluster.rs`.
use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
};

use netpath_user::testing::{
    traffic::{tcp_echo_server, udp_server},
    Netns,
};

mod common;
use common::{
    matrix::{cases, check, manifests, namespace_of, tcp_probe, Outside, Pod, Pol, PROBE},
    Topo, HOST, OUTSIDE,
};

struct Scene {
    t: Topo,
    pods: Vec<(Pod, Netns)>,
    dir: netpath_user::scratch::ScratchDir,
}

impl Scene {
    fn new() -> Scene {
        let t = Topo::new();
        let mut pods = Vec::new();
        for (name, ns, app, extra) in [
            ("web", "shop", "web", "-p 8080:80"),
            ("db", "shop", "db", "--named-port pg=5432"),
            ("blog", "blog", "web", ""),
        ] {
            let flags = format!("-n {ns} -l app={app} {extra}");
            let netns = t.endpoint_with(name, &flags);
            tcp_echo_server(&netns, 80);
            tcp_echo_server(&netns, 5432);
            udp_server(&netns, 53);
            let ip = t.ok(&["endpoint", "inspect", name, "--format", "{{.IPAddress}}"]);
            let labels = BTreeMap::from([("app".to_string(), app.to_string())]);
            pods.push((
                Pod {
                    name,
                    ns,
                    labels,
                    ip: ip.trim().parse().unwrap(),
                },
                netns,
            ));
        }
        Scene {
            t,
            pods,
            dir: netpath_user::scratch::ScratchDir::new("policy"),
        }
    }

    fn apply(&self, pols: &[Pol]) {
        self.t.apply_policies(&manifests(pols));
    }

    /// Every pair, and the outside client to web's published port, probed against the
    /// evaluator.
    fn check(&self, case: &str, pols: &[Pol]) {
        let pods: Vec<(&Pod, &Netns)> = self.pods.iter().map(|(p, n)| (p, n)).collect();
        let outside = Outside {
            ns: &self.t.outside,
            addr: OUTSIDE,
            published: (HOST, 8080),
            pod: 0,
            port: 80,
        };
        check(case, pols, &pods, Some(outside));
    }
}

#[test]
fn the_probe_matrix_matches_kubernetes_semantics_case_by_case() {
    let s = Scene::new();
    s.check("no policy", &[]);
    let cases = cases();
    let mut applied: Vec<&str> = Vec::new();
    for (case, pols) in &cases {
        // Policies of the last case that this one does not have go first.
        let keep: Vec<&str> = pols.iter().map(|p| p.name).collect();
        for old in applied.iter().filter(|n| !keep.contains(n)) {
            s.t.ok(&["policy", "rm", "-n", namespace_of(old), old]);
        }
        s.apply(pols);
        applied = keep;
        s.check(case, pols);
    }
}

#[test]
fn policies_follow_live_labels_named_ports_and_outlive_the_agent() {
    let mut s = Scene::new();
    let (web, db) = (&s.pods[0], &s.pods[1]);
    let policy = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchExpressions: [{key: role, operator: In, values: [client]}]}}]
    ports: [{port: pg}]
";
    let file = s.dir.join("db.yaml");
    std::fs::write(&file, policy).unwrap();
    let file = file.to_str().unwrap().to_string();
    assert_eq!(
        s.t.ok(&["policy", "apply", "-f", &file]).trim(),
        "networkpolicy shop/db created"
    );
    assert_eq!(
        s.t.ok(&["policy", "apply", "-f", &file]).trim(),
        "networkpolicy shop/db unchanged"
    );
    assert!(!tcp_probe(&web.1, db.0.ip, 5432), "web has no role yet");

    // A label on the live endpoint: its next connection is allowed, on the named port only.
    s.t.ok(&["endpoint", "update", "web", "--label", "role=client"]);
    assert!(tcp_probe(&web.1, db.0.ip, 5432));
    assert!(!tcp_probe(&web.1, db.0.ip, 80));
    let check = s.t.ok(&["policy", "check", "web", "db", "5432"]);
    assert!(
        check.contains("ingress db <- web: selected by shop/db; allowed by shop/db"),
        "{check}"
    );
    assert!(
        check.contains("egress  web -> db: no policy selects it: open"),
        "{check}"
    );
    assert!(check.ends_with("web -> db 5432/tcp: allowed\n"), "{check}");
    let check = s.t.ok(&["policy", "check", "blog", "db", "5432"]);
    assert!(check.contains("denied: no rule"), "{check}");
    let ls = s.t.ok(&["policy", "ls", "-n", "shop"]);
    assert!(
        ls.lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().eq(["db", "Ingress", "db"])),
        "{ls}"
    );
    assert_eq!(s.t.ok(&["policy", "ls", "-A", "-q"]).trim(), "db");

    // The label goes again: an open connection of web stops at its next packet.
    let mut conn = web
        .1
        .run(|| TcpStream::connect_timeout(&SocketAddr::from((db.0.ip, 5432)), PROBE))
        .unwrap();
    conn.set_read_timeout(Some(PROBE)).unwrap();
    let mut buf = [0u8; 4];
    conn.write_all(b"ping").unwrap();
    conn.read_exact(&mut buf).unwrap();
    s.t.ok(&["endpoint", "update", "web", "--label-rm", "role"]);
    conn.write_all(b"ping").unwrap();
    assert!(
        conn.read_exact(&mut buf).is_err(),
        "the connection outlived its policy"
    );
    let drops = s.t.stats()["Counters"]["drop_policy"].as_u64().unwrap_or(0);
    assert!(drops > 0);

    // Enforced while the agent is down, and still after it comes back.
    s.t.stop_agent();
    assert!(!tcp_probe(&web.1, db.0.ip, 5432));
    assert!(
        tcp_probe(&db.1, web.0.ip, 80),
        "what no policy selects stays open"
    );
    s.t.start_agent();
    assert!(!tcp_probe(&web.1, db.0.ip, 5432));
    s.t.ok(&["endpoint", "update", "web", "--label", "role=client"]);
    assert!(tcp_probe(&web.1, db.0.ip, 5432));

    // A bad file changes nothing: its good documents are not applied either.
    let bad = format!("{}---\n{}", policy.replace("name: db,", "name: other,"), "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec: {podSelector: {}, ingress: [{ports: [{port: 0}]}]}\n");
    std::fs::write(s.dir.join("bad.yaml"), bad).unwrap();
    let err = s.t.refused(&[
        "policy",
        "apply",
        "-f",
        s.dir.join("bad.yaml").to_str().unwrap(),
    ]);
    assert!(
        err.contains("document 2 (NetworkPolicy \"x\"): spec.ingress[0].ports[0].port"),
        "{err}"
    );
    let unknown_name = policy.replace("port: pg", "port: http");
    std::fs::write(s.dir.join("name.yaml"), unknown_name).unwrap();
    let err = s.t.refused(&[
        "policy",
        "apply",
        "-f",
        s.dir.join("name.yaml").to_str().unwrap(),
    ]);
    assert!(
        err.contains("named port \"http\" is declared by no endpoint"),
        "{err}"
    );
    assert_eq!(s.t.ok(&["policy", "ls", "-A", "-q"]).trim(), "db");
    assert!(tcp_probe(&web.1, db.0.ip, 5432));

    // Removed: open again.
    assert_eq!(s.t.ok(&["policy", "rm", "-n", "shop", "db"]).trim(), "db");
    assert!(tcp_probe(&web.1, db.0.ip, 80));
    s.t.refused(&["policy", "rm", "-n", "shop", "db"]);
}
