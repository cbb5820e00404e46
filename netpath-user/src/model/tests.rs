use super::{plan::*, *};

/// The host of these tests: loopback and one address, no routes, nothing bound.
fn host() -> HostView<'static> {
    const ADDRS: [Ipv4Addr; 2] = [Ipv4Addr::LOCALHOST, Ipv4Addr::new(10, 0, 0, 5)];
    HostView {
        addrs: &ADDRS,
        ..HostView::empty()
    }
}
use crate::ipam::{self, Subnet};

fn state() -> State {
    let mut s = State::default();
    let net = s
        .plan_network(
            &NetworkCreate {
                name: DEFAULT_NETWORK.into(),
                subnet: Some("172.17.0.0/16".into()),
                ..Default::default()
            },
            host(),
        )
        .unwrap();
    s.networks.insert(net.name.clone(), net);
    s
}

fn net(s: &mut State, r: NetworkCreate) -> Network {
    let n = s.plan_network(&r, host()).unwrap();
    s.networks.insert(n.name.clone(), n.clone());
    n
}

fn create(name: &str) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        ..Default::default()
    }
}

/// Network `name` on `subnet`.
fn subnet(name: &str, subnet: &str) -> NetworkCreate {
    NetworkCreate {
        subnet: Some(subnet.into()),
        ..create(name)
    }
}

/// `r` on network `net`.
fn on(net: &str, r: EndpointCreate) -> EndpointCreate {
    EndpointCreate {
        network: Some(net.into()),
        ..r
    }
}

fn req(name: &str, ip: Option<[u8; 4]>, ports: &[&str]) -> EndpointCreate {
    EndpointCreate {
        name: name.into(),
        netns: "/proc/self/ns/net".into(),
        network: None,
        ip: ip.map(Into::into),
        ports: ports.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn add(s: &mut State, r: &EndpointCreate) -> Endpoint {
    let mut ep = s.plan_endpoint(r, host()).unwrap();
    ep.netns = format!("/x/{}", r.name).into(); // distinct namespaces
    s.endpoints.insert(ep.name.clone(), ep.clone());
    ep
}

#[test]
fn endpoint_gets_next_ip_and_docker_mac() {
    let mut s = state();
    let a = add(&mut s, &req("a", None, &["8080:80"]));
    assert_eq!(a.attachments[0].ip, Some(Ipv4Addr::new(172, 17, 0, 2)));
    assert_eq!(ipam::fmt_mac(&a.attachments[0].mac), "02:42:ac:11:00:02");
    assert_eq!(a.attachments[0].ifname, "eth0");
    let b = add(&mut s, &req("b", None, &[]));
    assert_eq!(b.attachments[0].ip, Some(Ipv4Addr::new(172, 17, 0, 3)));
    assert_eq!(a.ports.len(), 1);
}

/// Every request of `cases` is refused (a plan reads the state: nothing can have changed).
fn refused<R: std::fmt::Debug, T>(cases: &[R], plan: impl Fn(&R) -> Result<T, ModelError>) {
    for r in cases {
        assert!(plan(r).is_err(), "{r:?} accepted");
    }
}

#[test]
fn rejects_bad_requests() {
    let mut s = state();
    add(&mut s, &req("a", Some([172, 17, 0, 5]), &["8080:80"]));
    let cases = [
        req("a", None, &[]),
        req("-bad", None, &[]),
        req("b", Some([172, 17, 0, 5]), &[]),
        req("b", Some([10, 0, 0, 5]), &[]),
        req("b", Some([172, 17, 0, 1]), &[]),
        req("b", None, &["8080:81"]),
        req("b", None, &["80:0"]),
        req("b", None, &["9000:80", "9000:81"]),
        on("nope", req("b", None, &[])),
        EndpointCreate {
            netns: "/nonexistent/ns".into(),
            ..req("b", None, &[])
        },
    ];
    refused(&cases, |r| s.plan_endpoint(r, host()));
}

#[test]
fn publish_and_unpublish_plans() {
    let mut s = state();
    add(&mut s, &req("a", None, &["8000-8002:80-82"]));
    assert!(s.plan_publish("a", &["8001:90".into()], host()).is_err());
    assert_eq!(
        s.plan_publish("a", &["9000:90/udp".into()], host())
            .unwrap()
            .len(),
        1
    );
    assert!(s.plan_publish("zz", &["9000:90".into()], host()).is_err());
    assert_eq!(
        s.plan_unpublish("a", &["8000-8002:80-82".into()])
            .unwrap()
            .len(),
        3
    );
    assert_eq!(s.plan_unpublish("a", &["81".into()]).unwrap().len(), 1);
    assert!(s.plan_unpublish("a", &["81/udp".into()]).is_err());
}

#[test]
fn save_and_load_round_trip() {
    let dir = crate::scratch::ScratchDir::new("state");
    let path = dir.join("state.json");
    assert_eq!(State::load(&path).unwrap(), State::default());
    let mut s = state();
    add(&mut s, &req("a", None, &["8080:80"]));
    s.save(&path).unwrap();
    assert_eq!(State::load(&path).unwrap(), s);
}

#[test]
fn networks_get_pool_subnets_and_docker_rules() {
    let mut s = state();
    let host_route: Subnet = "10.210.0.0/16".parse().unwrap();
    let routes = [host_route];
    let a = s
        .plan_network(
            &create("a"),
            HostView {
                routes: &routes,
                ..host()
            },
        )
        .unwrap();
    assert_eq!(
        a.v4.unwrap().subnet.to_string(),
        "10.211.0.0/16",
        "skips a host route"
    );
    assert_eq!(a.v4.unwrap().gateway, Ipv4Addr::new(10, 211, 0, 1));
    s.networks.insert(a.name.clone(), a);
    let b = net(
        &mut s,
        NetworkCreate {
            gateway: Some("10.5.0.254".parse().unwrap()),
            ip_range: Some("10.5.0.128/25".into()),
            internal: true,
            options: vec!["icc=false".into()],
            ..subnet("b", "10.5.0.0/24")
        },
    );
    assert!(b.internal);
    assert!(!b.icc());
    assert_eq!(b.net_id, 3);
    let bad = [
        create("a"),
        create("bad name"),
        subnet("c", "10.5.0.0/16"),
        NetworkCreate {
            gateway: Some("10.7.0.1".parse().unwrap()),
            ..subnet("c", "10.6.0.0/24")
        },
        NetworkCreate {
            gateway: Some("10.6.0.255".parse().unwrap()),
            ..subnet("c", "10.6.0.0/24")
        },
        NetworkCreate {
            ip_range: Some("10.7.0.0/25".into()),
            ..subnet("c", "10.6.0.0/24")
        },
        NetworkCreate {
            ip_range: Some("10.6.0.0/23".into()),
            ..subnet("c", "10.6.0.0/24")
        },
        NetworkCreate {
            gateway: Some("10.6.0.1".parse().unwrap()),
            ..create("c")
        },
        NetworkCreate {
            options: vec!["mtu=10".into()],
            ..create("c")
        },
        NetworkCreate {
            options: vec!["icc=maybe".into()],
            ..create("c")
        },
        NetworkCreate {
            options: vec!["icc".into()],
            ..create("c")
        },
        subnet("c", "10.6.0.1/24"),
    ];
    refused(&bad, |r| s.plan_network(r, host()));
}

#[test]
fn ip_range_bounds_allocation_and_internal_networks_refuse_ports() {
    let mut s = state();
    net(
        &mut s,
        NetworkCreate {
            ip_range: Some("10.5.0.128/25".into()),
            internal: true,
            ..subnet("b", "10.5.0.0/24")
        },
    );
    let r = on("b", req("x", None, &[]));
    let x = add(&mut s, &r);
    assert_eq!(x.attachments[0].ip, Some(Ipv4Addr::new(10, 5, 0, 128)));
    let r = on("b", req("y", None, &["8080:80"]));
    assert!(matches!(
        s.plan_endpoint(&r, host()),
        Err(ModelError::InternalPorts(_))
    ));
    assert!(matches!(
        s.plan_publish("x", &["8080:80".into()], host()),
        Err(ModelError::InternalPorts(_))
    ));
}

#[test]
fn connect_disconnect_and_network_removal() {
    let mut s = state();
    net(&mut s, subnet("b", "10.5.0.0/24"));
    let a = add(&mut s, &req("a", None, &[]));
    let att = s
        .plan_connect(
            "b",
            &Connect {
                endpoint: "a".into(),
                ip: None,
                aliases: vec!["web".into()],
                ..Connect::default()
            },
        )
        .unwrap();
    assert_eq!(att.ifname, "eth1");
    assert_eq!(att.ip, Some(Ipv4Addr::new(10, 5, 0, 2)));
    assert_ne!(att.host_ifname, a.attachments[0].host_ifname);
    assert!(att.host_ifname.len() < 15);
    s.endpoints.get_mut("a").unwrap().attachments.push(att);
    assert!(matches!(
        s.plan_connect(
            "b",
            &Connect {
                endpoint: "a".into(),
                ..Default::default()
            }
        ),
        Err(ModelError::AlreadyConnected(..))
    ));
    assert!(matches!(
        s.plan_network_rm("b"),
        Err(ModelError::NetworkInUse(..))
    ));
    assert!(matches!(
        s.plan_network_rm(DEFAULT_NETWORK),
        Err(ModelError::Predefined(_))
    ));
    assert!(s.plan_disconnect("b", "a").is_ok());
    s.endpoints
        .get_mut("a")
        .unwrap()
        .attachments
        .retain(|x| x.network != "b");
    assert!(matches!(
        s.plan_disconnect("b", "a"),
        Err(ModelError::NotConnected(..))
    ));
    assert!(matches!(
        s.plan_disconnect(DEFAULT_NETWORK, "a"),
        Err(ModelError::LastNetwork(_))
    ));
    assert!(s.plan_network_rm("b").is_ok());
}

#[test]
fn drivers_and_labels() {
    let mut s = state();
    let n = net(
        &mut s,
        NetworkCreate {
            driver: Some("netpath".into()),
            labels: [("team".to_string(), "web".to_string())].into(),
            ..create("n")
        },
    );
    assert_eq!(n.driver, "netpath");
    assert_eq!(n.labels["team"], "web");
    assert_eq!(net(&mut s, create("m")).driver, "bridge");
    assert!(matches!(
        s.plan_network(
            &NetworkCreate {
                driver: Some("macvlan".into()),
                ..create("o")
            },
            host()
        ),
        Err(ModelError::UnknownDriver(_))
    ));
    assert!(matches!(
        s.plan_network(
            &NetworkCreate {
                labels: [(" ".to_string(), String::new())].into(),
                ..create("o")
            },
            host()
        ),
        Err(ModelError::BadLabel(_))
    ));
}

#[test]
fn ids_are_cut_on_characters_and_veth_names_stay_valid() {
    assert_eq!(short_id("abcdef", 3), "abc");
    assert_eq!(short_id("ab", 12), "ab");
    assert_eq!(short_id("éééé", 2), "éé");
    let name = host_ifname("ééééééééééééé0123456789abcdef", 3);
    assert!(name.len() <= 15 && name.is_ascii(), "{name}");
}

#[test]
fn requests_refuse_unknown_keys() {
    let ok: Result<NetworkCreate, _> =
        serde_json::from_str(r#"{"Name":"n","Subnet":"10.1.0.0/24"}"#);
    assert_eq!(ok.unwrap().subnet.as_deref(), Some("10.1.0.0/24"));
    let bad: Result<NetworkCreate, _> = serde_json::from_str(r#"{"Name":"n","Subnett":"x"}"#);
    assert!(bad.unwrap_err().to_string().contains("unknown field"));
}

#[test]
fn docker_endpoints_share_sandboxes_and_cni_ones_name_their_interface() {
    let mut s = state();
    let docker = |name: &str| EndpointCreate {
        name: name.into(),
        netns: PathBuf::new(),
        engine: Some(super::Engine {
            kind: super::EngineKind::Docker,
            id: format!("{name:0>64}"),
        }),
        ..Default::default()
    };
    // No namespace to check, and two of them with the same (empty) one.
    for name in ["d1", "d2"] {
        let ep = s.plan_endpoint(&docker(name), host()).unwrap();
        assert!(ep.handed_over());
        s.endpoints.insert(ep.name.clone(), ep);
    }
    let (kept, problems) = s.clone().validated();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(kept.endpoints.len(), 2);
    let refused = s
        .plan_connect(
            DEFAULT_NETWORK,
            &Connect {
                endpoint: "d1".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(refused, ModelError::DockerOwned(_)), "{refused}");
    // CNI: the runtime's interface name and MAC; bad ones refused.
    let mut r = req("c", None, &[]);
    r.ifname = Some("net1".into());
    r.mac = Some("02:00:00:00:00:07".into());
    let ep = s.plan_endpoint(&r, host()).unwrap();
    assert_eq!(ep.attachments[0].ifname, "net1");
    assert_eq!(ipam::fmt_mac(&ep.attachments[0].mac), "02:00:00:00:00:07");
    for (ifname, mac) in [
        ("a/b", None),
        ("much-too-long-ifname", None),
        ("eth0", Some("01:00:00:00:00:07")),
        ("eth0", Some("02:00:00:00:07")),
    ] {
        let mut r = req("c", None, &[]);
        r.ifname = Some(ifname.into());
        r.mac = mac.map(Into::into);
        assert!(s.plan_endpoint(&r, host()).is_err(), "{ifname} {mac:?}");
    }
}

#[test]
fn a_host_gateway_that_would_break_the_host_or_an_endpoint_is_refused() {
    let s = state();
    let routes: [Subnet; 2] = ["10.0.0.0/24".parse().unwrap(), "0.0.0.0/0".parse().unwrap()];
    let host = HostView {
        routes: &routes,
        ..host()
    };
    let with = |hg: &str| NetworkCreate {
        name: "hg".into(),
        subnet: Some("10.30.0.0/24".into()),
        options: vec![format!("{HOST_GATEWAY}={hg}")],
        ..Default::default()
    };
    for bad in [
        "127.0.0.1",       // loopback
        "0.0.0.0",         // unspecified
        "255.255.255.255", // broadcast
        "224.0.0.1",       // multicast
        "10.30.0.0",       // the subnet's network address
        "10.30.0.255",     // and its broadcast
        "172.17.0.2",      // an address of the default network (an endpoint's)
        "10.0.0.1",        // the uplink's router, on the host's own link
    ] {
        let err = s.plan_network(&with(bad), host).unwrap_err();
        assert!(
            matches!(err, ModelError::HostGatewayUnusable(..)),
            "{bad}: {err}"
        );
    }
    for good in ["10.0.0.5", "10.30.0.1", "10.30.0.254", "192.0.2.7"] {
        let n = s.plan_network(&with(good), host).unwrap();
        assert_eq!(n.host_gateway().unwrap().to_string(), good);
    }
}

#[test]
fn aliases_that_name_the_host_are_refused() {
    let mut s = state();
    for bad in [
        "localhost",
        "host.docker.internal",
        "Host.Docker.Internal.",
        "gateway.docker.internal",
    ] {
        let mut r = req("a", None, &[]);
        r.aliases = vec![bad.into()];
        assert!(
            matches!(
                s.plan_endpoint(&r, host()),
                Err(ModelError::ReservedAlias(_))
            ),
            "{bad}"
        );
    }
    let mut r = req("a", None, &[]);
    r.aliases = vec!["localhost-api".into()];
    add(&mut s, &r);
}

#[test]
fn ipv6_pools_are_planned_as_ipv4_ones() {
    let mut s = state();
    let dual = |name: &str| NetworkCreate {
        ipv6: true,
        ..create(name)
    };
    // From the pool, past a network's and the host's prefixes.
    let host6: [std::net::Ipv6Addr; 1] = ["fd6e:7470:6174:1::5".parse().unwrap()];
    let a = s
        .plan_network(
            &dual("a"),
            HostView {
                addrs6: &host6,
                ..host()
            },
        )
        .unwrap();
    let p = a.v6.unwrap();
    assert_eq!(p.subnet.to_string(), "fd6e:7470:6174::/64");
    assert_eq!(p.gateway.to_string(), "fd6e:7470:6174::1");
    s.networks.insert(a.name.clone(), a);
    let b = s
        .plan_network(
            &dual("b"),
            HostView {
                addrs6: &host6,
                ..host()
            },
        )
        .unwrap();
    assert_eq!(
        b.v6.unwrap().subnet.to_string(),
        "fd6e:7470:6174:2::/64",
        "past network a's and the host's /64s"
    );
    // A range, a gateway, static and allocated addresses; connect too.
    let c = net(
        &mut s,
        NetworkCreate {
            ipv6: true,
            subnet6: Some("fd00:c::/64".into()),
            gateway6: Some("fd00:c::fe".parse().unwrap()),
            ip_range6: Some("fd00:c::100/120".into()),
            ..subnet("c", "10.44.0.0/24")
        },
    );
    let e1 = add(&mut s, &on("c", req("e1", None, &[])));
    assert_eq!(
        e1.attachments[0].ip6.unwrap().to_string(),
        "fd00:c::100",
        "from the range"
    );
    let e2 = add(
        &mut s,
        &EndpointCreate {
            ip6: Some("fd00:c::7".parse().unwrap()),
            ..on("c", req("e2", None, &[]))
        },
    );
    assert_eq!(e2.attachments[0].ip6.unwrap().to_string(), "fd00:c::7");
    let plain = add(&mut s, &req("plain", None, &[]));
    assert_eq!(
        plain.attachments[0].ip6, None,
        "no IPv6 on the default network"
    );
    let att = s
        .plan_connect(
            &c.name,
            &Connect {
                endpoint: "plain".into(),
                ..Connect::default()
            },
        )
        .unwrap();
    assert_eq!(att.ip6.unwrap().to_string(), "fd00:c::101");
    // Refused: taken, reserved, outside, on a network without IPv6.
    let bad_eps = [
        EndpointCreate {
            ip6: Some("fd00:c::7".parse().unwrap()),
            ..on("c", req("x", None, &[]))
        },
        EndpointCreate {
            ip6: Some("fd00:c::fe".parse().unwrap()),
            ..on("c", req("x", None, &[]))
        },
        EndpointCreate {
            ip6: Some("fd00:c::".parse().unwrap()),
            ..on("c", req("x", None, &[]))
        },
        EndpointCreate {
            ip6: Some("fd00:d::7".parse().unwrap()),
            ..on("c", req("x", None, &[]))
        },
        EndpointCreate {
            ip6: Some("fd00:c::7".parse().unwrap()),
            ..req("x", None, &[])
        },
    ];
    refused(&bad_eps, |r| s.plan_endpoint(r, host()));
    // An overlay network's IPv6 addresses follow its IPv4 ones, the gateway's too; it takes
    // no IPv6 gateway of its own, nor a subnet too long to follow IPv4's.
    let ov = s
        .plan_network(
            &NetworkCreate {
                driver: Some("overlay".into()),
                subnet: Some("10.144.0.0/24".into()),
                subnet6: Some("fd00:144::/64".into()),
                ..dual("x")
            },
            host(),
        )
        .unwrap();
    assert_eq!(ov.v6.unwrap().gateway.to_string(), "fd00:144::1");
    let bad_nets = [
        NetworkCreate {
            driver: Some("overlay".into()),
            gateway6: Some("fd00:f::9".parse().unwrap()),
            ..dual("x")
        },
        NetworkCreate {
            driver: Some("overlay".into()),
            subnet6: Some("fd00:f::/112".into()),
            ..dual("x")
        },
        NetworkCreate {
            subnet6: Some("fd00:c:0:0:1::/80".into()),
            ..dual("x")
        },
        NetworkCreate {
            subnet6: Some("fd00:e::/64".into()),
            ..create("x")
        },
    ];
    refused(&bad_nets, |r| s.plan_network(r, host()));
    // A state with IPv6 survives a round trip, and its checks.
    let (back, problems) = serde_json::from_str::<State>(&serde_json::to_string(&s).unwrap())
        .unwrap()
        .validated();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(back, s);
}

/// Docker's `--ipv4=false`: a network of IPv6 alone, its endpoints with an IPv6 address and
/// none of IPv4 (their MAC from the IPv6 one); what cannot be is refused in one line.
#[test]
fn networks_of_ipv6_alone() {
    let mut s = state();
    let six = |name: &str| NetworkCreate {
        ipv4: Some(false),
        ipv6: true,
        subnet6: Some("fd00:60::/64".into()),
        ..create(name)
    };
    let n = net(&mut s, six("v6"));
    assert_eq!(n.v4, None);
    assert_eq!(n.v6.unwrap().gateway.to_string(), "fd00:60::1");
    assert_eq!(n.host_gateway(), None);
    let e = add(&mut s, &on("v6", req("e", None, &[])));
    let a = &e.attachments[0];
    assert_eq!((a.ip, a.ip6), (None, Some("fd00:60::2".parse().unwrap())));
    assert_eq!(a.mac, [0x02, 0x42, 0, 0, 0, 2]);
    // Its state survives a save and a load unchanged.
    let text = serde_json::to_string(&s).unwrap();
    let back: State = serde_json::from_str(&text).unwrap();
    assert_eq!(back, s);

    let cases = [
        (
            NetworkCreate {
                ipv6: false,
                subnet6: None,
                ..six("x")
            },
            "IPv4 or IPv6 must be enabled",
        ),
        (
            NetworkCreate {
                subnet: Some("10.61.0.0/24".into()),
                ..six("x")
            },
            "goes against --ipv4=false",
        ),
        (
            NetworkCreate {
                driver: Some(OVERLAY_DRIVER.into()),
                ..six("x")
            },
            "an overlay network needs IPv4",
        ),
    ];
    for (r, says) in cases {
        let err = s.plan_network(&r, host()).unwrap_err().to_string();
        assert!(err.contains(says), "{r:?}: {err}");
    }
    let err = s
        .plan_endpoint(&on("v6", req("x", Some([10, 0, 0, 9]), &[])), host())
        .unwrap_err()
        .to_string();
    assert_eq!(err, "network v6 has no IPv4 subnet");
}
