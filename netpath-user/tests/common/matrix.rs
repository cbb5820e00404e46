//! The probe matrix's evaluator, shared by the one-node and the two-node matrices: pods and
//! policies as the tests write them, Kubernetes' verdict on every pair computed here (nothing
//! of netpath's), the policies as manifests, the probes, and the cases both matrices run.
use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use netpath_user::testing::Netns;

pub const PROBE: Duration = Duration::from_millis(600);

/// A pod as the evaluator sees it.
#[derive(Clone)]
pub struct Pod {
    pub name: &'static str,
    pub ns: &'static str,
    pub labels: BTreeMap<String, String>,
    pub ip: Ipv4Addr,
}

/// A peer of a rule, as the test writes it.
#[derive(Clone)]
pub enum Peer {
    Pods {
        pods: Option<(&'static str, &'static str)>,
        namespaces: Option<(&'static str, &'static str)>,
    },
    Block(&'static str, Vec<&'static str>),
}

/// A rule: peers (empty: all) and ports (empty: all): (protocol, port).
#[derive(Clone)]
pub struct Rule {
    pub peers: Vec<Peer>,
    pub ports: Vec<(&'static str, u16)>,
}

/// A policy, as the test writes it: selecting `app` (None: every pod) in `ns`.
#[derive(Clone)]
pub struct Pol {
    pub name: &'static str,
    pub ns: &'static str,
    pub app: Option<&'static str>,
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
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
pub fn expected(
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
pub fn manifests(pols: &[Pol]) -> String {
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
pub fn tcp_probe(ns: &Netns, to: Ipv4Addr, port: u16) -> bool {
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
pub fn udp_probe(ns: &Netns, to: Ipv4Addr, port: u16) -> bool {
    ns.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect((to, port)).unwrap();
        s.set_read_timeout(Some(PROBE / 3)).unwrap();
        let mut buf = [0u8; 64];
        (0..3).any(|_| s.send(b"ping").is_ok() && s.recv(&mut buf).is_ok())
    })
}

/// The probes: (protocol, port).
pub const PORTS: [(&str, u16); 3] = [("tcp", 80), ("tcp", 5432), ("udp", 53)];

pub fn pods(app: &'static str) -> Peer {
    Peer::Pods {
        pods: Some(("app", app)),
        namespaces: None,
    }
}

/// The cases both matrices run, in order (each one's policies replace the last one's).
pub fn cases() -> Vec<(&'static str, Vec<Pol>)> {
    let deny_shop = Pol {
        name: "deny",
        ns: "shop",
        app: None,
        ingress: Some(vec![]),
        egress: None,
    };
    vec![
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
    ]
}

/// The policy of `name` in the cases (its namespace, for `policy rm`).
pub fn namespace_of(name: &str) -> &'static str {
    if name == "dns-only" {
        "blog"
    } else {
        "shop"
    }
}

/// A client outside reaching a pod through a published port (the pod sees its address).
pub struct Outside<'a> {
    pub ns: &'a Netns,
    pub addr: Ipv4Addr,
    /// The published address and port.
    pub published: (Ipv4Addr, u16),
    /// The pod behind it (index in the pods), and its port.
    pub pod: usize,
    pub port: u16,
}

/// Every pair of `pods` on each of [`PORTS`] (and `outside`, when given) probed at once and
/// compared with the evaluator's verdict under `pols`; panics with the whole matrix when any
/// differs.
pub fn check(case: &str, pols: &[Pol], pods: &[(&Pod, &Netns)], outside: Option<Outside>) {
    let mut wrong = Vec::new();
    let mut table = String::new();
    std::thread::scope(|s| {
        let mut probes = Vec::new();
        for (src, src_ns) in pods {
            for (dst, _) in pods {
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
        if let Some(o) = &outside {
            let pod = pods[o.pod].0;
            let want = expected(pols, (None, o.addr), pod, "tcp", o.port);
            let (ns, (to, port)) = (o.ns, o.published);
            let h = s.spawn(move || tcp_probe(ns, to, port));
            probes.push((
                format!("outside -> {} {port}:{}/tcp", pod.name, o.port),
                want,
                h,
            ));
        }
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
