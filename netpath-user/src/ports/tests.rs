use super::*;

fn p(s: &str) -> Result<PortSpec, SpecError> {
    s.parse()
}

/// `spec` resolved for an IPv4-only endpoint against the ports `taken`, no host socket
/// holding any port.
fn free(spec: &str, taken: &PortIndex) -> Result<Vec<PortMapping>, AllocError> {
    let spec = p(spec).unwrap();
    resolve(&spec, &host_ips(&spec, false), taken, &|_| false)
}

/// The same for a dual-stack endpoint.
fn free_dual(spec: &str, taken: &PortIndex) -> Result<Vec<PortMapping>, AllocError> {
    let spec = p(spec).unwrap();
    resolve(&spec, &host_ips(&spec, true), taken, &|_| false)
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn r(start: u16, end: u16) -> PortRange {
    PortRange { start, end }
}

/// Spec, host IP, host ports, container ports, protocol.
type Accepted = (
    &'static str,
    Option<IpAddr>,
    Option<PortRange>,
    PortRange,
    Proto,
);
/// Spec and the error it must give.
type Rejected = (&'static str, fn(&SpecError) -> bool);

#[test]
fn accepts_what_docker_accepts() {
    #[rustfmt::skip]
    let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
    let lo6: IpAddr = Ipv6Addr::LOCALHOST.into();
    let any4: IpAddr = Ipv4Addr::UNSPECIFIED.into();
    let any6: IpAddr = Ipv6Addr::UNSPECIFIED.into();
    let doc6: IpAddr = "2001:db8::1".parse().unwrap();
    let ok: &[Accepted] = &[
        ("80", None, None, r(80, 80), Proto::Tcp),
        ("8080:80", None, Some(r(8080, 8080)), r(80, 80), Proto::Tcp),
        (
            "8080:80/udp",
            None,
            Some(r(8080, 8080)),
            r(80, 80),
            Proto::Udp,
        ),
        (
            "8080:80/TCP",
            None,
            Some(r(8080, 8080)),
            r(80, 80),
            Proto::Tcp,
        ),
        (
            "127.0.0.1:8080:80",
            Some(lo),
            Some(r(8080, 8080)),
            r(80, 80),
            Proto::Tcp,
        ),
        ("127.0.0.1::80", Some(lo), None, r(80, 80), Proto::Tcp),
        (
            "0.0.0.0:8080:80",
            Some(any4),
            Some(r(8080, 8080)),
            r(80, 80),
            Proto::Tcp,
        ),
        (
            "[::1]:8080:80",
            Some(lo6),
            Some(r(8080, 8080)),
            r(80, 80),
            Proto::Tcp,
        ),
        (
            "[2001:db8::1]::80/udp",
            Some(doc6),
            None,
            r(80, 80),
            Proto::Udp,
        ),
        (
            "[::]:8000-8001:80-81",
            Some(any6),
            Some(r(8000, 8001)),
            r(80, 81),
            Proto::Tcp,
        ),
        (":80", None, None, r(80, 80), Proto::Tcp),
        (
            "8000-8002:80-82",
            None,
            Some(r(8000, 8002)),
            r(80, 82),
            Proto::Tcp,
        ),
        (
            "8000-8010:80",
            None,
            Some(r(8000, 8010)),
            r(80, 80),
            Proto::Tcp,
        ),
        ("80-82", None, None, r(80, 82), Proto::Tcp),
        (
            "65535:65535/udp",
            None,
            Some(r(65535, 65535)),
            r(65535, 65535),
            Proto::Udp,
        ),
        ("1:1", None, Some(r(1, 1)), r(1, 1), Proto::Tcp),
    ];
    for (s, ip, host, container, proto) in ok {
        let spec = p(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(spec.host_ip, *ip, "{s}");
        assert_eq!(spec.host_ports, *host, "{s}");
        assert_eq!(spec.container_ports, *container, "{s}");
        assert_eq!(spec.proto, *proto, "{s}");
    }
}

#[test]
fn rejects_what_docker_rejects() {
    let bad: &[Rejected] = &[
        ("", |e| matches!(e, SpecError::NoContainerPort(_))),
        ("8080:", |e| matches!(e, SpecError::NoContainerPort(_))),
        ("0", |e| matches!(e, SpecError::BadPort(_))),
        ("0:80", |e| matches!(e, SpecError::BadPort(_))),
        ("65536:80", |e| matches!(e, SpecError::BadPort(_))),
        ("80:70000", |e| matches!(e, SpecError::BadPort(_))),
        ("-1", |e| matches!(e, SpecError::BadPort(_))),
        ("abc", |e| matches!(e, SpecError::BadPort(_))),
        ("80/sctpx", |e| matches!(e, SpecError::BadProto(_))),
        ("80/", |e| matches!(e, SpecError::BadProto(_))),
        ("82-80", |e| matches!(e, SpecError::BackwardsRange(_))),
        ("8000-8001:80-82", |e| {
            matches!(e, SpecError::UnequalRanges(_))
        }),
        ("8000:80-82", |e| matches!(e, SpecError::UnequalRanges(_))),
        ("1.2.3:80:80", |e| matches!(e, SpecError::BadHostIp(_))),
        ("localhost:80:80", |e| matches!(e, SpecError::BadHostIp(_))),
        ("1:2:3:4", |e| matches!(e, SpecError::TooManyColons(_))),
        ("::1:80:80", |e| matches!(e, SpecError::TooManyColons(_))),
        ("[::1]8080:80", |e| matches!(e, SpecError::BadHostIp(_))),
        ("[::1:8080:80", |e| matches!(e, SpecError::BadHostIp(_))),
        ("[127.0.0.1]:8080:80", |e| {
            matches!(e, SpecError::BadHostIp(_))
        }),
        ("[::1]:1:2:3", |e| matches!(e, SpecError::TooManyColons(_))),
        (" 80", |e| matches!(e, SpecError::BadPort(_))),
        ("+80", |e| matches!(e, SpecError::BadPort(_))),
    ];
    for (s, want) in bad {
        match p(s) {
            Ok(spec) => panic!("{s:?} accepted as {spec:?}"),
            Err(e) => assert!(want(&e), "{s:?}: unexpected {e:?}"),
        }
    }
}

#[test]
fn display_round_trips() {
    for s in [
        "80/tcp",
        "8080:80/udp",
        "127.0.0.1:8080:80/tcp",
        "127.0.0.1::80/tcp",
        "8000-8002:80-82/tcp",
        "[::1]:8080:80/tcp",
        "[2001:db8::1]::80/udp",
        "0.0.0.0:8080:80/tcp",
    ] {
        assert_eq!(p(s).unwrap().to_string(), s);
    }
}

fn m(ip: [u8; 4], hp: u16, cp: u16, proto: Proto) -> PortMapping {
    PortMapping {
        host_ip: ip.into(),
        host_port: hp,
        container_port: cp,
        proto,
    }
}

#[test]
fn resolves_ranges_one_to_one() {
    let got = free("8000-8002:80-82", &PortIndex::default()).unwrap();
    assert_eq!(
        got,
        vec![
            m([0; 4], 8000, 80, Proto::Tcp),
            m([0; 4], 8001, 81, Proto::Tcp),
            m([0; 4], 8002, 82, Proto::Tcp)
        ]
    );
}

#[test]
fn host_range_takes_first_free_port() {
    let taken = [
        m([0; 4], 8000, 80, Proto::Tcp),
        m([0; 4], 8001, 81, Proto::Tcp),
    ];
    let got = free("8000-8010:90", &PortIndex::new(taken)).unwrap();
    assert_eq!(got, vec![m([0; 4], 8002, 90, Proto::Tcp)]);
    // A full range is an error.
    let err = free("8000-8001:90", &PortIndex::new(taken)).unwrap_err();
    assert!(matches!(err, AllocError::RangeExhausted(..)));
}

#[test]
fn ephemeral_ports_are_distinct_and_in_range() {
    let taken = [m([0; 4], EPHEMERAL_START, 80, Proto::Tcp)];
    let got = free("80-81", &PortIndex::new(taken)).unwrap();
    assert_eq!(got.len(), 2);
    assert_ne!(got[0].host_port, got[1].host_port);
    for g in &got {
        assert!((EPHEMERAL_START + 1..=EPHEMERAL_END).contains(&g.host_port));
    }
}

#[test]
fn conflicts_follow_bind_rules() {
    let any = m([0; 4], 8080, 80, Proto::Tcp);
    let lo = m([127, 0, 0, 1], 8080, 80, Proto::Tcp);
    let other = m([10, 0, 0, 5], 8080, 80, Proto::Tcp);
    let udp = m([0; 4], 8080, 80, Proto::Udp);
    assert!(any.conflicts_with(&lo));
    assert!(lo.conflicts_with(&any));
    assert!(!lo.conflicts_with(&other));
    assert!(!any.conflicts_with(&udp));
    let err = free("8080:81", &PortIndex::new([lo])).unwrap_err();
    assert_eq!(err, AllocError::Allocated(sock("0.0.0.0:8080")));
    assert_eq!(
        err.to_string(),
        "Bind for 0.0.0.0:8080 failed: port is already allocated"
    );
    assert!(free("10.0.0.5:8080:80", &PortIndex::new([lo])).is_ok());
}

#[test]
fn a_port_without_a_host_address_is_published_on_both_families_of_a_dual_stack_endpoint() {
    let any6 = PortMapping {
        host_ip: Ipv6Addr::UNSPECIFIED.into(),
        ..m([0; 4], 8080, 80, Proto::Tcp)
    };
    assert_eq!(
        free_dual("8080:80", &PortIndex::default()).unwrap(),
        vec![m([0; 4], 8080, 80, Proto::Tcp), any6],
        "0.0.0.0 and [::], one port"
    );
    // The families keep their own ports, as the kernel's maps do.
    let lo = m([127, 0, 0, 1], 8080, 80, Proto::Tcp);
    assert!(!lo.conflicts_with(&any6) && !any6.conflicts_with(&lo));
    assert!(free("[::]:8080:80", &PortIndex::new([lo])).is_ok());
    assert_eq!(
        free_dual("8080:80", &PortIndex::new([any6])).unwrap_err(),
        AllocError::Allocated(sock("[::]:8080"))
    );
    assert_eq!(
        free_dual("8080:80", &PortIndex::new([any6]))
            .unwrap_err()
            .to_string(),
        "Bind for [::]:8080 failed: port is already allocated"
    );
    // An ephemeral port is one free in both families.
    let taken = PortIndex::new([PortMapping {
        host_port: EPHEMERAL_START,
        ..any6
    }]);
    let got = free_dual("80", &taken).unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|g| g.host_port == EPHEMERAL_START + 1));
    // An IPv4-only endpoint: IPv4 alone.
    assert_eq!(free("8080:80", &PortIndex::new([any6])).unwrap().len(), 1);
    assert_eq!(any6.to_string(), "80/tcp -> [::]:8080");
}

#[test]
fn unpublish_matching() {
    let a = m([0; 4], 8001, 81, Proto::Tcp);
    assert!(spec_matches(&p("8000-8002:80-82").unwrap(), &a));
    assert!(spec_matches(&p("81").unwrap(), &a));
    assert!(!spec_matches(&p("81/udp").unwrap(), &a));
    assert!(!spec_matches(&p("8000:81").unwrap(), &a));
    assert!(!spec_matches(&p("127.0.0.1:8001:81").unwrap(), &a));
}

#[test]
fn a_full_range_resolves() {
    // Every port below the outbound NAT range, one to one, then conflicts against all.
    let got = free("1-39999:1-39999/udp", &PortIndex::default()).unwrap();
    assert_eq!(got.len(), 39999);
    let taken = PortIndex::new(got);
    let err = free("39999:80/udp", &taken).unwrap_err();
    assert_eq!(err, AllocError::Allocated(sock("0.0.0.0:39999")));
    assert!(free("39999:80/tcp", &taken).is_ok());
}

#[test]
fn the_outbound_range_is_never_published() {
    let none = PortIndex::default();
    assert_eq!(
        free("40000:80", &none).unwrap_err(),
        AllocError::Outbound(40000)
    );
    assert_eq!(
        free("39990-40010:39990-40010", &none).unwrap_err(),
        AllocError::Outbound(40000)
    );
    assert!(free("59999:80/udp", &none).is_err());
    assert!(free("60000:80", &none).is_ok());
    // A host range straddling it takes a port outside.
    let got = free("59990-60010:80", &none).unwrap();
    assert_eq!(got[0].host_port, 60000);
    // Ephemeral ports skip it: 7,232 below, 1,000 above.
    let got = free("1-8232", &none).unwrap();
    assert!(got.iter().all(|m| !OUTBOUND.contains(m.host_port)));
    assert_eq!(got.last().unwrap().host_port, 60999);
    assert!(free("1-8233", &none).is_err());
}

#[test]
fn ports_a_host_process_holds_are_refused_or_skipped() {
    let none = PortIndex::default();
    let busy = |m: &PortMapping| m.host_port == 8080 || m.host_port == EPHEMERAL_START;
    let v4_only = [IpAddr::V4(Ipv4Addr::UNSPECIFIED)];
    assert_eq!(
        resolve(&p("8080:80").unwrap(), &v4_only, &none, &busy).unwrap_err(),
        AllocError::InUse(sock("0.0.0.0:8080"))
    );
    assert_eq!(
        resolve(&p("8080-8081:80").unwrap(), &v4_only, &none, &busy).unwrap()[0].host_port,
        8081
    );
    assert_eq!(
        resolve(&p("80").unwrap(), &v4_only, &none, &busy).unwrap()[0].host_port,
        EPHEMERAL_START + 1
    );
}
