//! The compiler against Kubernetes' semantics, through the kernel's verdict computed on its
//! output ([`Compiled::admits`]).
use std::net::Ipv4Addr;

use super::{select::Namespaces, *};
use crate::ports::Proto;

fn labels(pairs: &[(&str, &str)]) -> select::Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn member(id: u32, ns: &str, app: &str, last: u8) -> Member {
    Member {
        identity: id,
        namespace: ns.into(),
        labels: labels(&[("app", app)]),
        ports: vec![NamedPort {
            name: "metrics".into(),
            port: 9100,
            proto: Proto::Tcp,
        }],
        addrs: vec![Ipv4Addr::new(10, 0, 0, last).into()],
    }
}

/// A NetworkPolicy manifest of `metadata` (flow style) and `spec` (its lines, indented).
fn np(metadata: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {metadata}\nspec:{spec}"
    )
}

/// Each prefix the policies name, numbered in order.
fn numbered(p: &[spec::Policy]) -> std::collections::BTreeMap<Prefix, u32> {
    blocks(p)
        .into_iter()
        .enumerate()
        .map(|(i, s)| (s, netpath_common::identity::FIRST_OF_CIDRS + i as u32))
        .collect()
}

fn policies(yaml: &str) -> Vec<spec::Policy> {
    parse_manifests(yaml)
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            Manifest::Policy { policy, .. } => Some(policy),
            Manifest::Namespace { .. } => None,
        })
        .collect()
}

const WEB: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DB: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const OTHER_WEB: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const TCP: u8 = 6;
const UDP: u8 = 17;

fn scene() -> Vec<Member> {
    vec![
        member(300, "shop", "web", 1),
        member(301, "shop", "db", 2),
        member(302, "blog", "web", 3),
    ]
}

#[test]
fn no_policy_writes_nothing_and_allows_everything() {
    let c = compile(&scene(), &[], &Namespaces::new(), &Default::default());
    assert_eq!(c, Compiled::default());
    assert!(c.admits(OTHER_WEB, DB, 1, TCP));
}

#[test]
fn ingress_rules_select_peers_by_labels_namespaces_and_blocks() {
    let p = policies(&np(
        "{name: db, namespace: shop}",
        r#"
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 5432}, {port: metrics}]
  - from: [{ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}}]
    ports: [{protocol: UDP, port: 5000, endPort: 5010}]
"#,
    ));
    let c = compile(&scene(), &p, &Namespaces::new(), &numbered(&p));
    assert!(c.admits(WEB, DB, 5432, TCP), "web in its namespace");
    assert!(c.admits(WEB, DB, 9100, TCP), "the named port");
    assert!(!c.admits(WEB, DB, 5433, TCP));
    assert!(
        !c.admits(OTHER_WEB, DB, 5432, TCP),
        "web of another namespace"
    );
    assert!(c.admits(Ipv4Addr::new(192, 0, 2, 7), DB, 5010, UDP));
    assert!(!c.admits(Ipv4Addr::new(192, 0, 2, 7), DB, 5011, UDP));
    assert!(
        !c.admits(Ipv4Addr::new(192, 0, 2, 200), DB, 5000, UDP),
        "the except"
    );
    assert!(
        c.admits(DB, WEB, 80, TCP),
        "db's egress and web's ingress are open"
    );
}

/// IPv6 ipBlocks select IPv6 addresses alone (an endpoint's IPv6 address has its IPv4
/// address's identity, judged here by that identity).
#[test]
fn ipv6_blocks_select_ipv6_clients() {
    let p = policies(&np(
        "{name: db, namespace: shop}",
        r#"
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{ipBlock: {cidr: "2001:db8::/32", except: ["2001:db8:bad::/48"]}}]
    ports: [{port: 5432}]
"#,
    ));
    let c = compile(&scene(), &p, &Namespaces::new(), &numbered(&p));
    let db = c.identity(DB);
    let id6 = |a: &str| c.identity6(a.parse().unwrap());
    assert_ne!(id6("2001:db8:1::7"), netpath_common::identity::WORLD);
    assert!(c.admits_identities(id6("2001:db8:1::7"), db, 5432, TCP));
    assert!(!c.admits_identities(id6("2001:db8:1::7"), db, 5433, TCP));
    assert!(
        !c.admits_identities(id6("2001:db8:bad::7"), db, 5432, TCP),
        "the except"
    );
    assert!(!c.admits_identities(id6("2001:db9::7"), db, 5432, TCP));
    assert!(
        !c.admits(Ipv4Addr::new(192, 0, 2, 7), DB, 5432, TCP),
        "no IPv4 address is in an IPv6 block"
    );
    assert_eq!(
        c.ipcache6.len(),
        2,
        "the block and its except, each an identity"
    );
}

#[test]
fn namespace_selectors_and_egress_policies() {
    let p = policies(&np(
        "{name: web-out, namespace: blog}",
        r#"
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {team: shop}}, podSelector: {matchExpressions: [{key: app, operator: In, values: [db]}]}}]
  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]
    ports: [{protocol: UDP, port: 53}]
"#,
    ));
    let mut ns = Namespaces::new();
    ns.insert("shop".into(), labels(&[("team", "shop")]));
    let c = compile(&scene(), &p, &ns, &numbered(&p));
    assert!(c.admits(OTHER_WEB, DB, 1234, TCP));
    assert!(!c.admits(OTHER_WEB, WEB, 80, TCP));
    assert!(c.admits(OTHER_WEB, Ipv4Addr::new(8, 8, 8, 8), 53, UDP));
    assert!(!c.admits(OTHER_WEB, Ipv4Addr::new(8, 8, 8, 8), 443, TCP));
    // By the namespace's own name label, with no Namespace manifest.
    let p = policies(&np(
        "{name: deny, namespace: shop}",
        r#"
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: blog}}}]
"#,
    ));
    let c = compile(&scene(), &p, &Namespaces::new(), &numbered(&p));
    assert!(c.admits(OTHER_WEB, DB, 1, TCP));
    assert!(!c.admits(WEB, DB, 1, TCP));
}

#[test]
fn a_policy_with_no_rules_denies_its_direction() {
    let p = policies(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: d, namespace: shop}\nspec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n",
    );
    let c = compile(&scene(), &p, &Namespaces::new(), &numbered(&p));
    assert!(!c.admits(WEB, DB, 5432, TCP));
    assert!(!c.admits(OTHER_WEB, DB, 5432, TCP));
    assert!(!c.admits(WEB, Ipv4Addr::new(1, 1, 1, 1), 443, TCP));
    assert!(
        c.admits(OTHER_WEB, Ipv4Addr::new(1, 1, 1, 1), 443, TCP),
        "blog is not selected"
    );
}
