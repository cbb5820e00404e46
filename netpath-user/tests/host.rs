//! Reaching the host and published ports from the host side: hairpin (an endpoint reaching a
//! published port through a host address), and host-local access through the socket hooks.
mod common;

use std::net::Ipv4Addr;

use common::{tcp_request, tcp_server, Topo, HOST};
use serde_json::Value;

fn ip_of(t: &Topo, endpoint: &str) -> Ipv4Addr {
    let v: Value = serde_json::from_str(&t.ok(&["endpoint", "inspect", endpoint])).unwrap();
    v[0]["IPAddress"].as_str().unwrap().parse().unwrap()
}

#[test]
fn hairpin_through_host_and_gateway_addresses() {
    let t = Topo::new();
    t.ok(&["network", "create", "other", "--subnet", "10.10.7.0/24"]);
    let web = t.endpoint("web", &["-p", "8080:80"]);
    tcp_server(&web, 80);
    let client = t.endpoint("client", &[]);
    let far = t.endpoint("far", &["--network", "other"]);
    let gateway: Ipv4Addr = "172.17.0.1".parse().unwrap();
    for (who, ns) in [("client", &client), ("far", &far)] {
        for to in [HOST, gateway] {
            let r = tcp_request(ns, to, 8080, "hi")
                .unwrap_or_else(|e| panic!("{who} -> {to}:8080: {e}"));
            let seen: Ipv4Addr = r.split(':').next().unwrap().parse().unwrap();
            assert_eq!(
                seen,
                ip_of(&t, who),
                "{who} -> {to}: the server sees the endpoint itself"
            );
        }
    }
    assert!(t.stats()["counters"]["hairpin"].as_u64().unwrap() >= 4);
}
