use super::*;

fn state() -> State {
    let mut s = State::default();
    let subnet: Subnet = "172.17.0.0/16".parse().unwrap();
    s.networks.insert(
        DEFAULT_NETWORK.into(),
        Network {
            name: DEFAULT_NETWORK.into(),
            id: new_id(),
            subnet,
            gateway: subnet.first_host(),
        },
    );
    s
}

fn req(name: &str, ip: Option<[u8; 4]>, ports: &[&str]) -> EndpointCreate {
    EndpointCreate {
        name: name.into(),
        netns: "/proc/self/ns/net".into(),
        network: None,
        ip: ip.map(Into::into),
        ports: ports.iter().map(|s| s.to_string()).collect(),
    }
}

fn add(s: &mut State, r: &EndpointCreate) -> Endpoint {
    let mut ep = s.plan_endpoint(r).unwrap();
    ep.netns = format!("/x/{}", r.name).into(); // distinct namespaces
    s.endpoints.insert(ep.name.clone(), ep.clone());
    ep
}

#[test]
fn endpoint_gets_next_ip_and_docker_mac() {
    let mut s = state();
    let a = add(&mut s, &req("a", None, &["8080:80"]));
    assert_eq!(a.ip, Ipv4Addr::new(172, 17, 0, 2));
    assert_eq!(ipam::fmt_mac(&a.mac), "02:42:ac:11:00:02");
    let b = add(&mut s, &req("b", None, &[]));
    assert_eq!(b.ip, Ipv4Addr::new(172, 17, 0, 3));
    assert_eq!(a.ports.len(), 1);
}

#[test]
fn rejects_bad_requests() {
    let mut s = state();
    add(&mut s, &req("a", Some([172, 17, 0, 5]), &["8080:80"]));
    let before = s.clone();
    let cases = [
        req("a", None, &[]),
        req("-bad", None, &[]),
        req("b", Some([172, 17, 0, 5]), &[]),
        req("b", Some([10, 0, 0, 5]), &[]),
        req("b", Some([172, 17, 0, 1]), &[]),
        req("b", None, &["8080:81"]),
        req("b", None, &["80:0"]),
        req("b", None, &["9000:80", "9000:81"]),
        EndpointCreate {
            network: Some("nope".into()),
            ..req("b", None, &[])
        },
        EndpointCreate {
            netns: "/nonexistent/ns".into(),
            ..req("b", None, &[])
        },
    ];
    for r in &cases {
        assert!(s.plan_endpoint(r).is_err(), "{r:?} accepted");
    }
    assert_eq!(s, before);
}

#[test]
fn publish_and_unpublish_plans() {
    let mut s = state();
    add(&mut s, &req("a", None, &["8000-8002:80-82"]));
    assert!(s.plan_publish("a", &["8001:90".into()]).is_err());
    assert_eq!(
        s.plan_publish("a", &["9000:90/udp".into()]).unwrap().len(),
        1
    );
    assert!(s.plan_publish("zz", &["9000:90".into()]).is_err());
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
    let dir = std::env::temp_dir().join(format!("netpath-state-{}", new_id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.json");
    assert_eq!(State::load(&path).unwrap(), State::default());
    let mut s = state();
    add(&mut s, &req("a", None, &["8080:80"]));
    s.save(&path).unwrap();
    assert_eq!(State::load(&path).unwrap(), s);
    fs::remove_dir_all(&dir).unwrap();
}
