//! Network policy as Kubernetes' own e2e tests and Cyclonus check it: endpoints in two
//! namespaces and a client outside, policies applied case by case, the reachability of every
//! pair on TCP and UDP computed by this file's own evaluator of the policies (nothing of
//! netpath's), every pair probed with real sockets, the whole matrix compared.
use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use netpath_user::testing::{
    traffic::{tcp_echo_server, udp_server},
    Netns,
};

mod common;
use common::{Topo, HOST, OUTSIDE};

const PROBE: Duration = Duration::from_millis(600);

/// A pod as the evaluator sees it.
#[derive(Clone)]
struct Pod {
    name: &'static str,
    ns: &'static str,
    labels: BTreeMap<String, String>,
    ip: Ipv4Addr,
}

/// A peer of a rule, as the test writes it.
#[derive(Clone)]
enum Peer {
    Pods {
        pods: Option<(&'static str, &'static str)>,
        namespaces: Option<(&'static str, &'static str)>,
    },
    Block(&'static str, Vec<&'static str>),
}

/// A rule: peers (empty: all) and ports (empty: all): (protocol, port).
#[derive(Clone)]
struct Rule {
    peers: Vec<Peer>,
    ports: Vec<(&'static str, u16)>,
}

/// A policy, as the test writes it: selecting `app` (None: every pod) in `ns`.
#[derive(Clone)]
struct Pol {
    name: &'static str,
    ns: &'static str,
    app: Option<&'static str>,
    ingress: Option<Vec<Rule>>,
    egress: Option<Vec<Rule>>,
}

fn cidr_contains(cidr: &str, ip: Ipv4Addr) -> bool {
    let (a, p) = cidr.split_once('/').unwrap();
    let (a, p): (Ipv4Addr, u32) = (a.parse().unwrap(), p.parse().unwrap());
    let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
    u32::from(ip) & mask == u32::from(a) & mask
}

/// Namespace labels: its name, and the team label the test gives namespace "blog".
fn ns_label(ns: &str, key: &str) -> Option<String> {
    match key {
        "kubernetes.io/metadata.name" => Some(ns.to_string()),
        "team" if ns == "blog" => Some("writers".into()),
        _ => None,
    }
}

impl Rule {
    /// Whether the rule matches traffic with `peer` (a pod, or an address outside) on
    /// `proto`/`port`, for a policy of namespace `ns`.
    fn matches(&self, ns: &str, peer: (Option<&Pod>, Ipv4Addr), proto: &str, port: u16) -> bool {
        let ports_ok =
            self.ports.is_empty() || self.ports.iter().any(|(p, n)| *p == proto && *n == port);
        let peer_ok = self.peers.is_empty()
            || self.peers.iter().any(|p| match (p, peer.0) {
                (Peer::Pods { pods, namespaces }, Some(pod)) => {
                    let ns_ok = match namespaces {
                        None => pod.ns == ns,
                        Some((k, v)) => ns_label(pod.ns, k).as_deref() == Some(*v),
                    };
                    ns_ok
                        && pods
                            .is_none_or(|(k, v)| pod.labels.get(k).map(String::as_str) == Some(v))
                }
                (Peer::Pods { .. }, None) => false,
                // ipBlock: addresses that are not endpoints'.
                (Peer::Block(cidr, except), None) => {
                    cidr_contains(cidr, peer.1) && !except.iter().any(|e| cidr_contains(e, peer.1))
                }
                (Peer::Block(..), Some(_)) => false,
            });
        ports_ok && peer_ok
    }
}

/// Kubernetes' verdict on `src` → `dst` on `proto`/`port`: egress of the source, then
/// ingress of the destination; a side no policy selects in that direction is open.
fn expected(
    pols: &[Pol],
    src: (Option<&Pod>, Ipv4Addr),
    dst: &Pod,
    proto: &str,
    port: u16,
) -> bool {
    let selects = |p: &Pol, pod: &Pod| {
        p.ns == pod.ns
            && p.app
                .is_none_or(|a| pod.labels.get("app").map(String::as_str) == Some(a))
    };
    let dst_peer = (Some(dst), dst.ip);
    let egress_ok = match src.0 {
        None => true,
        Some(s) => {
            let sel: Vec<&Pol> = pols
                .iter()
                .filter(|p| p.egress.is_some() && selects(p, s))
                .collect();
            sel.is_empty()
                || sel.iter().any(|p| {
                    p.egress
                        .as_ref()
                        .unwrap()
                        .iter()
                        .any(|r| r.matches(p.ns, dst_peer, proto, port))
                })
        }
    };
    let sel: Vec<&Pol> = pols
        .iter()
        .filter(|p| p.ingress.is_some() && selects(p, dst))
        .collect();
    let ingress_ok = sel.is_empty()
        || sel.iter().any(|p| {
            p.ingress
                .as_ref()
                .unwrap()
                .iter()
                .any(|r| r.matches(p.ns, src, proto, port))
        });
    egress_ok && ingress_ok
}

fn yaml_peer(p: &Peer) -> String {
    match p {
        Peer::Pods { pods, namespaces } => {
            let mut parts = Vec::new();
            if let Some((k, v)) = pods {
                parts.push(format!("podSelector: {{matchLabels: {{{k}: {v}}}}}"));
            }
            if let Some((k, v)) = namespaces {
                parts.push(format!("namespaceSelector: {{matchLabels: {{{k}: {v}}}}}"));
            }
            format!("{{{}}}", parts.join(", "))
        }
        Peer::Block(cidr, except) => {
            format!(
                "{{ipBlock: {{cidr: {cidr}, except: [{}]}}}}",
                except.join(", ")
            )
        }
    }
}

fn yaml_rules(rules: &[Rule], peers_key: &str) -> String {
    rules
        .iter()
        .map(|r| {
            let peers: Vec<String> = r.peers.iter().map(yaml_peer).collect();
            let ports: Vec<String> = r
                .ports
                .iter()
                .map(|(p, n)| format!("{{protocol: {}, port: {n}}}", p.to_uppercase()))
                .collect();
            let mut fields = Vec::new();
            if !peers.is_empty() {
                fields.push(format!("{peers_key}: [{}]", peers.join(", ")));
            }
            if !ports.is_empty() {
                fields.push(format!("ports: [{}]", ports.join(", ")));
            }
            format!("{{{}}}", fields.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The policies as kubectl-style manifests, with the Namespace that labels "blog".
fn manifests(pols: &[Pol]) -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: blog, labels: {team: writers}}\n",
    );
    for p in pols {
        let mut types = Vec::new();
        let mut spec = vec![match p.app {
            Some(a) => format!("podSelector: {{matchLabels: {{app: {a}}}}}"),
            None => "podSelector: {}".into(),
        }];
        if let Some(r) = &p.ingress {
            types.push("Ingress");
            spec.push(format!("ingress: [{}]", yaml_rules(r, "from")));
        }
        if let Some(r) = &p.egress {
            types.push("Egress");
            spec.push(format!("egress: [{}]", yaml_rules(r, "to")));
        }
        spec.push(format!("policyTypes: [{}]", types.join(", ")));
        out += &format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {}, namespace: {}}}\nspec: {{{}}}\n",
            p.name,
            p.ns,
            spec.join(", ")
        );
    }
    out
}

/// Whether a TCP connection from `ns` to `to:port` is answered (the echo server echoes).
fn tcp_probe(ns: &Netns, to: Ipv4Addr, port: u16) -> bool {
    ns.run(|| {
        let Ok(mut c) = TcpStream::connect_timeout(&SocketAddr::from((to, port)), PROBE) else {
            return false;
        };
        c.set_read_timeout(Some(PROBE)).unwrap();
        let mut buf = [0u8; 4];
        c.write_all(b"ping").is_ok() && c.read_exact(&mut buf).is_ok()
    })
}

/// Whether a UDP datagram from `ns` to `to:port` is answered (three tries).
fn udp_probe(ns: &Netns, to: Ipv4Addr, port: u16) -> bool {
    ns.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect((to, port)).unwrap();
        s.set_read_timeout(Some(PROBE / 3)).unwrap();
        let mut buf = [0u8; 64];
        (0..3).any(|_| s.send(b"ping").is_ok() && s.recv(&mut buf).is_ok())
    })
}

/// The probes: (protocol, port).
const PORTS: [(&str, u16); 3] = [("tcp", 80), ("tcp", 5432), ("udp", 53)];

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

    /// Every pair (and the outside client to web's published port) probed against the
    /// evaluator; panics with the whole matrix when any differs.
    fn check(&self, case: &str, pols: &[Pol]) {
        let mut wrong = Vec::new();
        let mut table = String::new();
        std::thread::scope(|s| {
            let mut probes = Vec::new();
            for (src, src_ns) in &self.pods {
                for (dst, _) in &self.pods {
                    if src.name == dst.name {
                        continue;
                    }
                    for (proto, port) in PORTS {
                        let want = expected(pols, (Some(src), src.ip), dst, proto, port);
                        let h = s.spawn(move || match proto {
                            "tcp" => tcp_probe(src_ns, dst.ip, port),
                            _ => udp_probe(src_ns, dst.ip, port),
                        });
                        probes.push((
                            format!("{} -> {} {port}/{proto}", src.name, dst.name),
                            want,
                            h,
                        ));
                    }
                }
            }
            // From outside, through the published port: the endpoint sees the client's address.
            let web = &self.pods[0].0;
            let want = expected(pols, (None, OUTSIDE), web, "tcp", 80);
            let outside = &self.t.outside;
            let h = s.spawn(move || tcp_probe(outside, HOST, 8080));
            probes.push(("outside -> web 8080:80/tcp".into(), want, h));
            for (what, want, h) in probes {
                let got = h.join().unwrap();
                table += &format!("  {what}: expected {want}, got {got}\n");
                if got != want {
                    wrong.push(what);
                }
            }
        });
        assert!(wrong.is_empty(), "{case}: {wrong:?} differ\n{table}");
    }
}

fn pods(app: &'static str) -> Peer {
    Peer::Pods {
        pods: Some(("app", app)),
        namespaces: None,
    }
}

#[test]
fn the_probe_matrix_matches_kubernetes_semantics_case_by_case() {
    let s = Scene::new();
    s.check("no policy", &[]);
    let deny_shop = Pol {
        name: "deny",
        ns: "shop",
        app: None,
        ingress: Some(vec![]),
        egress: None,
    };
    let cases: Vec<(&str, Vec<Pol>)> = vec![
        ("default deny ingress in shop", vec![deny_shop.clone()]),
        (
            "db admits web of its namespace on 5432, and the writers' namespace on anything",
            vec![
                deny_shop.clone(),
                Pol {
                    name: "db",
                    ns: "shop",
                    app: Some("db"),
                    ingress: Some(vec![
                        Rule {
                            peers: vec![pods("web")],
                            ports: vec![("tcp", 5432)],
                        },
                        Rule {
                            peers: vec![Peer::Pods {
                                pods: None,
                                namespaces: Some(("team", "writers")),
                            }],
                            ports: vec![],
                        },
                    ]),
                    egress: None,
                },
            ],
        ),
        (
            "web admits the outside by ipBlock; blog may only send DNS",
            vec![
                Pol {
                    name: "web",
                    ns: "shop",
                    app: Some("web"),
                    ingress: Some(vec![Rule {
                        peers: vec![Peer::Block("10.77.0.0/24", vec!["10.77.0.128/25"])],
                        ports: vec![("tcp", 80)],
                    }]),
                    egress: None,
                },
                Pol {
                    name: "dns-only",
                    ns: "blog",
                    app: None,
                    ingress: None,
                    egress: Some(vec![Rule {
                        peers: vec![],
                        ports: vec![("udp", 53)],
                    }]),
                },
            ],
        ),
        (
            "the outside's address excepted; web's egress to db by both selectors",
            vec![Pol {
                name: "web",
                ns: "shop",
                app: Some("web"),
                ingress: Some(vec![Rule {
                    peers: vec![Peer::Block("10.77.0.0/24", vec!["10.77.0.0/30"])],
                    ports: vec![],
                }]),
                egress: Some(vec![Rule {
                    peers: vec![Peer::Pods {
                        pods: Some(("app", "db")),
                        namespaces: Some(("kubernetes.io/metadata.name", "shop")),
                    }],
                    ports: vec![("tcp", 5432)],
                }]),
            }],
        ),
    ];
    let mut applied: Vec<&str> = Vec::new();
    for (case, pols) in &cases {
        // Policies of the last case that this one does not have go first.
        let keep: Vec<&str> = pols.iter().map(|p| p.name).collect();
        for old in applied.iter().filter(|n| !keep.contains(n)) {
            let ns = if *old == "dns-only" { "blog" } else { "shop" };
            s.t.ok(&["policy", "rm", "-n", ns, old]);
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
