//! Every transaction, failed at every step it takes: the desired state, the saved state and
//! the (fake) kernel are exactly as before; and when it succeeds, the kernel is what the new
//! state says. No root needed.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::PathBuf,
};

use super::{store::MemoryStore, transactions::host_addresses, Agent};
use crate::{
    datapath::{any_addr, be_port, fake::FakeDatapath, fake::Faults, DatapathOps},
    error::AgentError,
    model::{Connect, EndpointCreate, NetworkCreate, State},
    netlink::fake::FakeLinks,
};

type FakeAgent = Agent<FakeDatapath, FakeLinks, MemoryStore>;

/// Files standing in for namespaces (planning checks that the path exists).
struct Scratch(crate::scratch::ScratchDir);

impl Scratch {
    fn new() -> Scratch {
        let dir = crate::scratch::ScratchDir::new("unit");
        Scratch(dir)
    }

    fn netns(&self, name: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, b"").unwrap();
        p
    }
}

fn network(name: &str, subnet: &str, options: &[&str]) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        subnet: Some(subnet.into()),
        options: options.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn endpoint(s: &Scratch, name: &str, network: Option<&str>, ports: &[&str]) -> EndpointCreate {
    EndpointCreate {
        name: name.into(),
        netns: s.netns(name),
        network: network.map(Into::into),
        ports: ports.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    }
}

/// A populated agent: networks bridge, back (own host-gateway and loopback ports) and
/// empty; endpoints a (ports, also on back) and b on bridge.
fn scene(faults: &Faults) -> (FakeAgent, Scratch) {
    let s = Scratch::new();
    let mut links = FakeLinks::new(faults.clone());
    links.addrs.insert(Ipv4Addr::LOCALHOST);
    links.addrs.insert(Ipv4Addr::new(192, 168, 77, 2));
    links.routes.push("192.168.77.0/24".parse().unwrap());
    links.busy_ports.insert(2222);
    let mut a = Agent::new(
        State::default(),
        FakeDatapath::new(faults.clone()),
        links,
        MemoryStore {
            saved: None,
            faults: faults.clone(),
        },
        super::HostHooks::default(),
    )
    .with_netns_files(super::netns_files::NetnsFiles::new(s.0.join("etc-netns")));
    faults.fail_at(0);
    a.create_network(&network("bridge", "172.17.0.0/16", &[]))
        .unwrap();
    a.create_network(&network(
        "back",
        "10.9.0.0/24",
        &["host-gateway=10.9.0.254", "host-loopback-ports=5432"],
    ))
    .unwrap();
    a.create_network(&network("empty", "10.8.0.0/24", &[]))
        .unwrap();
    a.create_endpoint(&endpoint(
        &s,
        "a",
        None,
        &["8080:80", "127.0.0.1:5353:53/udp"],
    ))
    .unwrap();
    a.create_endpoint(&endpoint(&s, "b", None, &[])).unwrap();
    a.connect(
        "back",
        &Connect {
            endpoint: "a".into(),
            ..Default::default()
        },
    )
    .unwrap();
    check_consistent(&a, false);
    (a, s)
}

#[derive(Debug, PartialEq)]
struct Snapshot {
    state: State,
    saved: Option<State>,
    dp: FakeDatapath,
    links: FakeLinks,
    known: BTreeMap<String, (u32, [u8; 6])>,
    slots: super::slots::Slots,
}

fn snapshot(a: &FakeAgent) -> Snapshot {
    Snapshot {
        state: a.state.clone(),
        saved: a.store.saved.clone(),
        dp: a.dp.clone(),
        links: a.net.clone(),
        known: a
            .links
            .iter()
            .map(|(k, v)| (k.clone(), (v.ifindex, v.host_mac)))
            .collect(),
        slots: a.slots.clone(),
    }
}

/// The fake kernel is exactly what the state says (`leftovers`: veths and gateway
/// addresses whose removal after the commit failed may remain).
fn check_consistent(a: &FakeAgent, leftovers: bool) {
    let st = &a.state;
    // What the cluster says of other nodes is not saved (etcd has it).
    let without_remote = |s: &State| State {
        remote: Vec::new(),
        ..s.clone()
    };
    assert_eq!(
        a.store.saved.as_ref().map(without_remote),
        Some(without_remote(st)),
        "the saved state is the state"
    );
    let nets: BTreeMap<u32, _> = st
        .networks
        .values()
        .map(|n| (n.net_id, n.clone()))
        .collect();
    assert_eq!(a.dp.networks, nets, "networks");
    assert_eq!(
        a.dp.published_from, st.published_from,
        "published ports' firewall"
    );
    let gateways: BTreeSet<std::net::IpAddr> =
        st.networks.values().flat_map(host_addresses).collect();
    if leftovers {
        assert!(a.net.gateways.is_superset(&gateways), "gateways");
    } else {
        assert_eq!(a.net.gateways, gateways, "gateways");
    }
    let mut names = BTreeSet::new();
    let mut ports = BTreeMap::new();
    for ep in st.endpoints.values() {
        for (i, att) in ep.attachments.iter().enumerate() {
            names.insert(att.host_ifname.clone());
            let link = a.links.get(&att.host_ifname).expect("veth known");
            assert_eq!(
                a.net.veths.get(&att.host_ifname).map(|v| v.link),
                Some(*link),
                "veth {}",
                att.host_ifname
            );
            let e =
                a.dp.attachments
                    .get(&link.ifindex)
                    .expect("attachment in maps");
            assert_eq!((Some(e.ip), e.mac), (att.ip, att.mac));
            assert_eq!(e.net_id, st.networks[&att.network].net_id);
            assert!(a.dp.attached.contains(&att.host_ifname), "program attached");
            if i == 0 {
                for m in &ep.ports {
                    let key = (m.host_ip, be_port(m.host_port), m.proto.number());
                    let to = match m.host_ip {
                        std::net::IpAddr::V4(_) => std::net::IpAddr::V4(att.ip.unwrap()),
                        std::net::IpAddr::V6(_) => std::net::IpAddr::V6(att.ip6.unwrap()),
                    };
                    ports.insert(key, (any_addr(to), be_port(m.container_port), link.ifindex));
                }
            }
        }
    }
    let known: BTreeSet<String> = a.links.keys().cloned().collect();
    assert_eq!(known, names, "interfaces the agent knows");
    let attached: BTreeSet<String> = a.dp.attached.iter().cloned().collect();
    assert_eq!(attached, names, "programs attached");
    assert_eq!(a.dp.attachments.len(), names.len(), "attachments in maps");
    let veths: BTreeSet<String> = a.net.veths.keys().cloned().collect();
    if leftovers {
        assert!(veths.is_superset(&names), "veths");
    } else {
        assert_eq!(veths, names, "veths");
    }
    let published: BTreeMap<_, _> =
        a.dp.ports
            .iter()
            .map(|(k, t)| (*k, (t.addr, t.port, t.ifindex)))
            .collect();
    assert_eq!(published, ports, "published ports");
    for net in st.networks.values() {
        // In any order: an endpoint's slot stays as others come and go.
        let want: BTreeSet<u32> = st
            .members(&net.name)
            .map(|(_, att)| a.links[&att.host_ifname].ifindex)
            .collect();
        let have = a.dp.members(net.net_id);
        assert_eq!(have.len(), want.len(), "members of {}: {have:?}", net.name);
        assert_eq!(
            have.into_iter().collect::<BTreeSet<_>>(),
            want,
            "members of {}",
            net.name
        );
    }
}

/// Fails `tx` at each of its steps in turn, then lets it succeed.
fn every_failure(name: &str, tx: impl Fn(&mut FakeAgent, &Scratch) -> Result<(), AgentError>) {
    let mut failures = 0;
    for n in 1.. {
        let faults = Faults::none();
        let (mut a, s) = scene(&faults);
        let before = snapshot(&a);
        faults.fail_at(n);
        let res = tx(&mut a, &s);
        if !faults.fired() {
            res.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_ne!(snapshot(&a).state, before.state, "{name} changed nothing");
            check_consistent(&a, false);
            break;
        }
        match res {
            Err(_) => {
                failures += 1;
                assert_eq!(snapshot(&a), before, "{name} failing at step {n}");
            }
            // Only what runs after the commit can fail without failing the request.
            Ok(()) => check_consistent(&a, true),
        }
        assert!(n < 100, "{name} never finished");
    }
    assert!(failures >= 2, "{name}: only {failures} failure points");
}

#[test]
fn create_endpoint_rolls_back() {
    every_failure("create endpoint", |a, s| {
        a.create_endpoint(&endpoint(s, "c", None, &["9090:90", "9091:91/udp"]))
            .map(drop)
    });
    every_failure("create endpoint on back", |a, s| {
        a.create_endpoint(&endpoint(s, "c", Some("back"), &["9090:90"]))
            .map(drop)
    });
}

#[test]
fn remove_endpoint_rolls_back() {
    every_failure("remove endpoint", |a, _| a.remove_endpoint("a"));
}

#[test]
fn publish_and_unpublish_roll_back() {
    every_failure("publish", |a, _| {
        a.publish("a", &["7000-7002:70-72".into()]).map(drop)
    });
    every_failure("unpublish", |a, _| {
        a.unpublish("a", &["8080:80".into(), "127.0.0.1:5353:53/udp".into()])
            .map(drop)
    });
}

#[test]
fn networks_roll_back() {
    every_failure("create network", |a, _| {
        a.create_network(&network(
            "new",
            "10.10.0.0/24",
            &["host-gateway=10.10.0.200", "host-loopback-ports=80,443"],
        ))
        .map(drop)
    });
    every_failure("remove network", |a, _| a.remove_network("empty"));
}

#[test]
fn connect_and_disconnect_roll_back() {
    every_failure("connect", |a, _| {
        a.connect(
            "back",
            &Connect {
                endpoint: "b".into(),
                aliases: vec!["bee".into()],
                ..Default::default()
            },
        )
        .map(drop)
    });
    every_failure("disconnect", |a, _| a.disconnect("back", "a").map(drop));
    // Its primary network: the published ports move to back, or stay where they were.
    every_failure("disconnect primary", |a, _| {
        a.disconnect("bridge", "a").map(drop)
    });
}

#[test]
fn the_firewall_rolls_back() {
    every_failure("set published-from", |a, _| {
        a.set_published_from("10.0.0.0/8".parse().unwrap())
            .map(drop)
    });
}

/// Each kind of undo step is played back by some failure above, and the failure walk checks
/// that it restores what was there (a kind no failure reaches would be untested rollback).
#[test]
fn every_kind_of_undo_step_is_played_back_by_some_failure() {
    super::journal::played::take();
    create_endpoint_rolls_back();
    remove_endpoint_rolls_back();
    publish_and_unpublish_roll_back();
    networks_roll_back();
    connect_and_disconnect_roll_back();
    the_firewall_rolls_back();
    let played = super::journal::played::take();
    let missing: Vec<_> = super::journal::Undo::NAMES
        .iter()
        .filter(|n| !played.contains(*n))
        .collect();
    assert!(missing.is_empty(), "never played back: {missing:?}");
}

#[test]
fn refused_requests_change_nothing() {
    let faults = Faults::none();
    let (mut a, s) = scene(&faults);
    let before = snapshot(&a);
    assert!(a.create_endpoint(&endpoint(&s, "a", None, &[])).is_err());
    assert!(a
        .create_endpoint(&endpoint(&s, "c", None, &["8080:80"]))
        .is_err());
    assert!(a.publish("b", &["8080:81".into()]).is_err());
    assert!(a.remove_network("back").is_err());
    assert!(a.disconnect("back", "b").is_err());
    assert!(a
        .create_network(&network("clash", "10.9.0.128/25", &[]))
        .is_err());
    // What the host says no to: its routes and addresses, special blocks, its busy ports,
    // addresses it does not have, the outbound NAT range.
    for (subnet, why) in [
        ("192.168.77.0/25", "overlaps the host's route"),
        ("127.0.0.0/16", "is loopback"),
        ("224.1.0.0/16", "is multicast"),
    ] {
        let err = a.create_network(&network("x", subnet, &[])).unwrap_err();
        assert!(err.to_string().contains(why), "{subnet}: {err}");
    }
    for (spec, why) in [
        ("2222:22", "address already in use"),
        // Past the first probes, the socket tables name the busy port.
        ("2000-2299:2000-2299", "2222 failed: address already in use"),
        ("10.1.2.3:8000:80", "not an address of this host"),
        ("45000:80", "outbound NAT range"),
    ] {
        let err = a.publish("b", &[spec.into()]).unwrap_err();
        assert!(err.to_string().contains(why), "{spec}: {err}");
    }
    let err = a
        .create_endpoint(&EndpointCreate {
            network: Some("back".into()),
            ip: Some(Ipv4Addr::new(10, 9, 0, 254)),
            ..endpoint(&s, "c", None, &[])
        })
        .unwrap_err();
    assert!(err.to_string().contains("host-gateway"), "{err}");
    assert_eq!(snapshot(&a), before);
}

#[test]
fn reconcile_rebuilds_the_kernel_from_the_state() {
    let faults = Faults::none();
    let (mut a, s) = scene(&faults);
    // A restart: a fresh datapath, the veths still there but one; its namespace gone too.
    let lost = a.state.endpoints["b"].attachments[0].host_ifname.clone();
    a.net.veths.remove(&lost);
    std::fs::remove_file(s.0.join("b")).unwrap();
    a.dp = FakeDatapath::new(faults.clone());
    a.links.clear();
    a.reconcile().unwrap();
    assert!(
        !a.state.endpoints.contains_key("b"),
        "b's namespace is gone"
    );
    check_consistent(&a, false);
}

#[test]
fn queries_never_wait_for_a_change_in_progress() {
    use std::sync::{mpsc, Arc};

    use crate::api::Service;

    let faults = Faults::none();
    let (a, _s) = scene(&faults);
    let shared = Arc::new(super::Shared::new(a));
    let (started, wait_started) = mpsc::channel();
    let (finish, wait_finish) = mpsc::channel::<()>();
    let writer = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            shared.write(|_| {
                started.send(()).unwrap();
                wait_finish.recv().unwrap();
            })
        })
    };
    wait_started.recv().unwrap();
    // The agent is held by a change; queries are answered from the snapshot all the same.
    assert_eq!(shared.networks().len(), 3);
    assert_eq!(shared.endpoint("a").unwrap().name, "a");
    assert_eq!(shared.ports().len(), 2);
    finish.send(()).unwrap();
    writer.join().unwrap();
    // And a change shows in the next query.
    shared.remove_endpoint("b").unwrap();
    assert!(shared.endpoint("b").is_err());
}

/// What the cluster says, as this node ("n1") would see it.
fn view(
    networks: &[(&str, &str, u32)],
    endpoints: &[(&str, &str, &str)],
) -> crate::cluster::ClusterView {
    use crate::cluster::{ClusterView, NodeRecord, OverlayEndpoint, OverlayNetwork};
    let node = |name: &str, last: u8| {
        (
            name.to_string(),
            NodeRecord {
                name: name.into(),
                underlay: Ipv4Addr::new(10, 77, 0, last).into(),
                version: String::new(),
            },
        )
    };
    ClusterView {
        node: "n1".into(),
        connected: true,
        listed: true,
        nodes: [node("n1", 1), node("n2", 2)].into(),
        networks: networks
            .iter()
            .map(|(name, subnet, vni)| {
                let subnet: crate::ipam::Subnet = subnet.parse().unwrap();
                (
                    name.to_string(),
                    OverlayNetwork {
                        name: name.to_string(),
                        id: format!("id-{name}"),
                        vni: *vni,
                        v4: crate::ipam::Pool {
                            subnet,
                            gateway: subnet.first_host(),
                            ip_range: None,
                        },
                        v6: None,
                        internal: false,
                        options: BTreeMap::new(),
                        labels: BTreeMap::new(),
                        created_by: "n2".into(),
                    },
                )
            })
            .collect(),
        endpoints: endpoints
            .iter()
            .map(|(network, ip, node)| {
                (
                    format!("{network}/{ip}"),
                    OverlayEndpoint {
                        network: network.to_string(),
                        ip: ip.parse().unwrap(),
                        node: node.to_string(),
                        endpoint: format!("x{}", ip.rsplit('.').next().unwrap_or("")),
                        id: String::new(),
                        aliases: vec!["xa".into()],
                        namespace: String::new(),
                        labels: Default::default(),
                        named_ports: Vec::new(),
                    },
                )
            })
            .collect(),
        ..ClusterView::default()
    }
}

/// Nodes on an IPv6 underlay: the overlay maps hold their IPv6 addresses; a node whose
/// underlay address is of the other family is a problem, never a destination.
#[test]
fn an_ipv6_underlay_is_carried_and_a_node_of_the_other_family_is_left_out() {
    let faults = Faults::default();
    let (mut a, _s) = scene(&faults);
    a.host.overlay = Some(super::OverlayDevice {
        name: "netpath-vxlan".into(),
        ifindex: 99,
        mtu: 1430,
        underlay: std::net::Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1).into(),
    });
    let mut v = view(
        &[("ov", "10.210.0.0/24", 4097)],
        &[("ov", "10.210.0.9", "n2"), ("ov", "10.210.0.8", "n3")],
    );
    let n6 = |last: u16| std::net::Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, last);
    v.nodes.get_mut("n1").unwrap().underlay = n6(1).into();
    v.nodes.get_mut("n2").unwrap().underlay = n6(2).into();
    let mut n3 = v.nodes["n2"].clone();
    n3.name = "n3".into();
    n3.underlay = Ipv4Addr::new(10, 77, 0, 3).into();
    v.nodes.insert("n3".into(), n3);
    a.apply_cluster(&v);
    let net_id = a.state.networks["ov"].net_id;
    assert_eq!(a.dp.overlay.local, std::net::IpAddr::from(n6(1)));
    assert_eq!(
        a.dp.overlay.networks[&net_id].peers,
        vec![std::net::IpAddr::from(n6(2))]
    );
    assert_eq!(
        a.dp.overlay.remotes,
        [(Ipv4Addr::new(10, 210, 0, 9), (n6(2).into(), net_id))].into()
    );
    assert_eq!(a.cluster_problems.len(), 1, "{:?}", a.cluster_problems);
    assert!(
        a.cluster_problems[0].contains("node n3 has an underlay address of the other family"),
        "{:?}",
        a.cluster_problems
    );
}

#[test]
fn what_the_cluster_says_is_applied_to_this_node() {
    let faults = Faults::default();
    let (mut a, s) = scene(&faults);
    a.host.overlay = Some(super::OverlayDevice {
        name: "netpath-vxlan".into(),
        ifindex: 99,
        mtu: 1450,
        underlay: Ipv4Addr::new(10, 77, 0, 1).into(),
    });
    // A network of the cluster is made here with its id and VNI; the other node's endpoint
    // (and only a known node's) goes into the overlay maps.
    a.apply_cluster(&view(
        &[("ov", "10.210.0.0/24", 4097)],
        &[
            ("ov", "10.210.0.9", "n2"),
            ("ov", "10.210.0.7", "gone-node"),
        ],
    ));
    assert!(a.cluster_problems.is_empty(), "{:?}", a.cluster_problems);
    let ov = a.state.networks["ov"].clone();
    assert_eq!(
        (ov.vni, ov.id.as_str(), ov.driver.as_str()),
        (Some(4097), "id-ov", "overlay")
    );
    let want = crate::datapath::OverlayContent {
        device: 99,
        local: Ipv4Addr::new(10, 77, 0, 1).into(),
        networks: [(
            ov.net_id,
            crate::datapath::OverlayNetEntry {
                vni: 4097,
                peers: vec![Ipv4Addr::new(10, 77, 0, 2).into()],
            },
        )]
        .into(),
        remotes: [(
            Ipv4Addr::new(10, 210, 0, 9),
            (Ipv4Addr::new(10, 77, 0, 2).into(), ov.net_id),
        )]
        .into(),
        remotes6: Default::default(),
    };
    assert_eq!(a.dp.overlay, want);
    // Its names resolve here, on that network.
    assert_eq!(a.state.remote.len(), 1);
    let ix = crate::dns::names::Index::new(&a.state);
    assert_eq!(
        ix.network("ov").and_then(|n| n.get("x9.ov")),
        Some(&crate::dns::names::Addrs::v4(vec![Ipv4Addr::new(
            10, 210, 0, 9
        )]))
    );
    assert_eq!(
        ix.network("ov").and_then(|n| n.get("xa")),
        Some(&crate::dns::names::Addrs::v4(vec![Ipv4Addr::new(
            10, 210, 0, 9
        )]))
    );
    assert_eq!(a.dp.networks[&ov.net_id], ov);
    check_consistent(&a, false);

    // An endpoint here on it gets the overlay MTU.
    let c = a
        .create_endpoint(&endpoint(&s, "c", Some("ov"), &[]))
        .unwrap();
    assert_eq!(a.net.veths[&c.attachments[0].host_ifname].mtu, Some(1450));

    // Names and subnets this node already uses are problems, not changes.
    let before = a.state.clone();
    a.apply_cluster(&view(
        &[
            ("ov", "10.210.0.0/24", 4097),
            ("back", "10.211.0.0/24", 4098),
            ("clash", "172.17.5.0/24", 4099),
        ],
        &[],
    ));
    assert_eq!(
        (&a.state.networks, &a.state.endpoints),
        (&before.networks, &before.endpoints)
    );
    assert_eq!(a.cluster_problems.len(), 2, "{:?}", a.cluster_problems);
    assert!(
        a.cluster_problems[0].contains("back"),
        "{:?}",
        a.cluster_problems
    );

    // Gone from the cluster: removed here, unless this node still has endpoints on it.
    a.apply_cluster(&view(&[], &[]));
    assert!(a.state.networks.contains_key("ov"));
    assert!(
        a.cluster_problems[0].contains("stays here"),
        "{:?}",
        a.cluster_problems
    );
    a.remove_endpoint("c").unwrap();
    a.apply_cluster(&view(&[], &[]));
    assert!(!a.state.networks.contains_key("ov"));
    assert!(a.dp.overlay.networks.is_empty() && a.dp.overlay.remotes.is_empty());
    check_consistent(&a, false);

    // Not yet heard from etcd (the state file's view): nothing is removed.
    a.apply_cluster(&view(&[("ov", "10.210.0.0/24", 4097)], &[]));
    let mut unlisted = view(&[], &[]);
    unlisted.listed = false;
    a.apply_cluster(&unlisted);
    assert!(a.state.networks.contains_key("ov"));
}

#[test]
fn health_says_where_the_maps_differ_from_the_state() {
    let faults = Faults::default();
    let (mut a, _s) = scene(&faults);
    assert!(a.health(0).healthy, "{:?}", a.health(0).problems);
    // Someone else writes the maps: a published port goes, another appears, a network goes.
    let (key, _) = a.dp.published()[0];
    a.dp.unpublish(&key).unwrap();
    let mut other = key;
    other.port = be_port(9999);
    let stray = netpath_common::PortTarget {
        addr: any_addr(Ipv4Addr::new(10, 0, 0, 9).into()),
        port: be_port(80),
        stats: 0,
        ifindex: 99,
        mac: [0; 6],
        gw_mac: [0; 6],
        host: Default::default(),
    };
    a.dp.publish(other, stray).unwrap();
    let empty = a.state.networks["empty"].clone();
    a.dp.remove_network(&empty).unwrap();
    let h = a.health(0);
    assert!(!h.healthy);
    let said = h.problems.join("\n");
    assert!(
        said.contains("1 published port(s) missing from the datapath"),
        "{said}"
    );
    assert!(
        said.contains("in the datapath that the state does not have") && said.contains(":9999/"),
        "{said}"
    );
    assert!(
        said.contains("the datapath has 2 network(s), the state 3"),
        "{said}"
    );
}

/// A new agent process takes over the numbers the kernel's maps hold for ipBlocks of either
/// family: rewriting the maps at start moves no number from one prefix to another (while
/// they are rewritten, the old numbers still judge some packets).
#[test]
fn a_restart_keeps_the_numbers_of_ipblocks_of_both_families() {
    let faults = Faults::none();
    let (mut a, _s) = scene(&faults);
    let policy = |name: &str, cidr: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress: [{{to: [{{ipBlock: {{cidr: \"{cidr}\"}}}}]}}]\n"
        )
    };
    let apply = |a: &mut FakeAgent, text: &str| {
        a.apply_policies(crate::policy::parse_manifests(text).unwrap())
            .unwrap();
    };
    apply(&mut a, &policy("kept", "2001:db8:2::/48"));
    apply(&mut a, &policy("gone", "2001:db8:1::/48"));
    apply(&mut a, &policy("four", "192.0.2.0/24"));
    // A number freed below the others': a fresh numbering would move the IPv6 prefix.
    a.remove_policies("default", &["gone".into()]).unwrap();
    let v6: crate::ipam::Subnet<std::net::Ipv6Addr> = "2001:db8:2::/48".parse().unwrap();
    let v4: crate::ipam::Subnet = "192.0.2.0/24".parse().unwrap();
    let before = (a.dp.policy.ipcache6[&v6], a.dp.policy.ipcache[&v4]);
    // A new process: its numbering starts empty, the kernel's maps keep what they hold.
    a.identities = Default::default();
    a.block_identities =
        crate::model::identity::Identities::starting_at(netpath_common::identity::FIRST_OF_CIDRS);
    a.policy_written = None;
    a.reconcile().unwrap();
    assert_eq!(
        (a.dp.policy.ipcache6[&v6], a.dp.policy.ipcache[&v4]),
        before,
        "the same numbers after the restart"
    );
}
