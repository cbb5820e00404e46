use std::net::Ipv4Addr;

use super::*;
use crate::dns::test_state::{ip, state};

#[test]
fn names_of_a_network() {
    let s = state();
    let back = network_names(&s, &s.networks["back"]);
    let (api, api2) = (ip(&s, "api", "back"), ip(&s, "api2", "back"));
    assert_eq!(
        back["svc"].v4,
        [api, api2],
        "a shared alias has every address"
    );
    assert_eq!(back["db"].v4, [ip(&s, "db", "back")]);
    assert_eq!(back["db.back"].v4, [ip(&s, "db", "back")]);
    let short = short_id(&s.endpoints["db"].id, 12).to_string();
    assert_eq!(back[&short].v4, [ip(&s, "db", "back")]);
    assert_eq!(
        back[HOST_DOCKER_INTERNAL].v4,
        [s.networks["back"].host_gateway().unwrap()]
    );
    assert!(!back.contains_key("web"), "web is not on back");
}

#[test]
fn what_a_name_means_to_whom() {
    let s = state();
    let resolve = |from: Ipv4Addr, network: &str, name: &str| {
        Index::new(&s).resolve(from.into(), network, name, false)
    };
    let web = ip(&s, "web", "front");
    let api_front = ip(&s, "api", "front");
    let api_back = ip(&s, "api", "back");
    // On a shared network; case and a trailing dot do not matter.
    assert_eq!(
        resolve(web, "front", "API."),
        Resolved::Local(Addrs::v4(vec![api_front]))
    );
    // On another network than the asker's: does not exist for it, and is not forwarded.
    assert_eq!(resolve(web, "front", "db"), Resolved::NxDomain);
    // An endpoint on both networks sees both; the network asked first.
    assert_eq!(
        resolve(api_back, "back", "db"),
        Resolved::Local(Addrs::v4(vec![ip(&s, "db", "back")]))
    );
    assert_eq!(
        resolve(api_back, "back", "api"),
        Resolved::Local(Addrs::v4(vec![api_back]))
    );
    assert_eq!(
        resolve(api_front, "front", "api"),
        Resolved::Local(Addrs::v4(vec![api_front]))
    );
    // Not ours: forwarded, except for an endpoint only on internal networks.
    assert_eq!(resolve(web, "front", "example.com"), Resolved::Forward);
    let safe = ip(&s, "safe", "vault");
    assert_eq!(resolve(safe, "vault", "example.com"), Resolved::NxDomain);
    assert_eq!(
        resolve(safe, "vault", "host.docker.internal"),
        Resolved::Local(Addrs::v4(vec![s.networks["vault"].host_gateway().unwrap()]))
    );
    // Someone who is not an endpoint.
    assert_eq!(
        Index::new(&s).resolve(Ipv4Addr::new(192, 0, 2, 9).into(), "front", "web", false),
        Resolved::Refused
    );
}

#[test]
fn reverse_names() {
    let s = state();
    let web = ip(&s, "web", "front");
    let [a, b, c, d] = ip(&s, "api", "front").octets();
    let rev = format!("{d}.{c}.{b}.{a}.in-addr.arpa");
    assert_eq!(
        Index::new(&s).resolve(web.into(), "front", &rev, true),
        Resolved::Pointer("api.front".into())
    );
    let [a, b, c, d] = ip(&s, "db", "back").octets();
    let hidden = format!("{d}.{c}.{b}.{a}.in-addr.arpa.");
    assert_eq!(
        Index::new(&s).resolve(web.into(), "front", &hidden, true),
        Resolved::NxDomain
    );
    assert_eq!(
        Index::new(&s).resolve(web.into(), "front", "4.3.2.1.in-addr.arpa", true),
        Resolved::Forward
    );
}
