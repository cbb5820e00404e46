use super::*;

#[test]
fn parses_and_rejects_subnets() {
    let s: Subnet = "172.17.0.0/16".parse().unwrap();
    assert_eq!(s.to_string(), "172.17.0.0/16");
    assert!(matches!(
        "172.17.0.1/16".parse::<Subnet>(),
        Err(IpamError::HostBits(..))
    ));
    for bad in [
        "172.17.0.0",
        "172.17.0.0/33",
        "x/16",
        "172.17.0.0/",
        "172.17.0.0/+1",
    ] {
        assert!(
            matches!(bad.parse::<Subnet>(), Err(IpamError::BadSubnet(..))),
            "{bad}"
        );
    }
}

#[test]
fn allocates_in_order_skipping_gateway_and_used() {
    let s: Subnet = "10.1.0.0/29".parse().unwrap();
    let gw = s.first_host();
    assert_eq!(gw, Ipv4Addr::new(10, 1, 0, 1));
    assert_eq!(s.allocate(gw, &[]).unwrap(), Ipv4Addr::new(10, 1, 0, 2));
    let used = [Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 1, 0, 3)];
    assert_eq!(s.allocate(gw, &used).unwrap(), Ipv4Addr::new(10, 1, 0, 4));
    let all: Vec<_> = (2..=6).map(|i| Ipv4Addr::new(10, 1, 0, i)).collect();
    assert_eq!(s.allocate(gw, &all), Err(IpamError::Exhausted(s.into())));
}

#[test]
fn assignable_checks() {
    let s: Subnet = "10.1.0.0/24".parse().unwrap();
    let gw = Ipv4Addr::new(10, 1, 0, 1);
    assert!(s.check_assignable(Ipv4Addr::new(10, 1, 0, 9), gw).is_ok());
    for ip in [[10, 1, 0, 0], [10, 1, 0, 255], [10, 1, 0, 1]] {
        assert!(matches!(
            s.check_assignable(ip.into(), gw),
            Err(IpamError::Reserved(..))
        ));
    }
    assert!(matches!(
        s.check_assignable(Ipv4Addr::new(10, 2, 0, 9), gw),
        Err(IpamError::OutsideSubnet(..))
    ));
}

#[test]
fn pool_skips_overlaps() {
    let taken: Vec<Subnet> = ["10.210.0.0/16", "10.211.5.0/24", "0.0.0.0/0"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(
        pick_subnet(default_pool(), &taken).unwrap().to_string(),
        "10.212.0.0/16"
    );
    // Docker's pools are never picked, whatever is taken.
    let tens: Subnet = "10.210.0.0/15".parse().unwrap();
    let all_16s: Vec<Subnet> = (210..=239)
        .map(|x| format!("10.{x}.0.0/16").parse().unwrap())
        .collect();
    assert_eq!(
        pick_subnet(default_pool(), &all_16s).unwrap().to_string(),
        "10.200.0.0/24"
    );
    assert!(default_pool().all(|s| {
        !s.overlaps(&"172.16.0.0/12".parse().unwrap())
            && !s.overlaps(&"192.168.0.0/16".parse().unwrap())
            && !s.overlaps(&"10.88.0.0/15".parse().unwrap())
            && !s.overlaps(&"10.96.0.0/12".parse().unwrap())
            && !s.overlaps(&"10.244.0.0/16".parse().unwrap())
    }));
    assert!(pick_subnet(default_pool(), &[tens]).is_ok());
    let everything: Subnet = "0.0.0.0/1".parse().unwrap();
    assert_eq!(
        pick_subnet(default_pool(), &[everything]),
        Err(IpamError::NoFreeSubnet)
    );
}

#[test]
fn docker_mac() {
    assert_eq!(
        fmt_mac(&mac_for(Ipv4Addr::new(172, 17, 0, 2))),
        "02:42:ac:11:00:02"
    );
}

#[test]
fn addresses_as_engines_write_them() {
    let a = Ipv4Addr::new(10, 1, 0, 5);
    assert_eq!(cidr_address("10.1.0.5"), Ok(Some(a)));
    assert_eq!(cidr_address("10.1.0.5/24"), Ok(Some(a)));
    assert_eq!(cidr_address::<Ipv4Addr>(""), Ok(None));
    for bad in ["10.1.0", "10.1.0.5/33", "10.1.0.5/", "fd00::1/64", "x"] {
        assert!(cidr_address::<Ipv4Addr>(bad).is_err(), "{bad}");
    }
    let a6: std::net::Ipv6Addr = "fd00::1".parse().unwrap();
    assert_eq!(cidr_address("fd00::1/64"), Ok(Some(a6)));
    assert_eq!(cidr_address("fd00::1"), Ok(Some(a6)));
    for bad in ["fd00::1/129", "fd00::1/", "10.1.0.5"] {
        assert!(cidr_address::<std::net::Ipv6Addr>(bad).is_err(), "{bad}");
    }
}

/// The same subnet code serves IPv6: no broadcast, the last address is a host's, the
/// network address (the subnet-router anycast) is not.
#[test]
fn ipv6_subnets_share_the_same_logic() {
    use std::net::Ipv6Addr;
    let s: Subnet<Ipv6Addr> = "fd00:30::/64".parse().unwrap();
    assert_eq!(s.to_string(), "fd00:30::/64");
    assert!(matches!(
        "fd00:30::1/64".parse::<Subnet<Ipv6Addr>>(),
        Err(IpamError::HostBits(..))
    ));
    let e = "10.0.0.0/8".parse::<Subnet<Ipv6Addr>>().unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"invalid subnet "10.0.0.0/8": expected X:X::X/N"#
    );
    let gw = s.first_host();
    assert_eq!(gw, "fd00:30::1".parse::<Ipv6Addr>().unwrap());
    assert_eq!(
        s.allocate(gw, &[]).unwrap(),
        "fd00:30::2".parse::<Ipv6Addr>().unwrap()
    );
    let last: Ipv6Addr = "fd00:30::ffff:ffff:ffff:ffff".parse().unwrap();
    assert_eq!(s.broadcast(), last);
    assert!(s.check_assignable(last, gw).is_ok(), "no broadcast in IPv6");
    assert!(matches!(
        s.check_assignable(s.addr(), gw),
        Err(IpamError::Reserved(..))
    ));
    assert!(s.contains("fd00:30::abcd".parse().unwrap()));
    assert!(!s.contains("fd00:31::1".parse().unwrap()));
    let route = Subnet::containing("fd00:30::abcd".parse::<Ipv6Addr>().unwrap(), 64).unwrap();
    assert_eq!(route, s, "a route's destination with host bits set");
    let route = Subnet::containing(Ipv4Addr::new(10, 1, 2, 3), 16).unwrap();
    assert_eq!(route.to_string(), "10.1.0.0/16");
    assert!(Subnet::containing(Ipv4Addr::new(10, 1, 2, 3), 33).is_err());
    let wider: Subnet<Ipv6Addr> = "fd00::/16".parse().unwrap();
    assert!(s.overlaps(&wider) && wider.overlaps(&s));
    // A /127 (a point-to-point link) has two hosts, as IPv4's /31.
    let p2p: Subnet<Ipv6Addr> = "fd00::/127".parse().unwrap();
    assert_eq!(p2p.hosts().count(), 2);
    let small: Subnet = "10.0.0.0/31".parse().unwrap();
    assert_eq!(small.hosts().count(), 2);
    // The kernel's form: the 16 bytes in network order, both ways.
    let k = gw.to_kernel();
    assert_eq!(k.octets(), gw.octets());
    assert_eq!(Ipv6Addr::from_kernel(k), gw);
    assert_eq!(
        Ipv4Addr::new(10, 1, 2, 3).to_kernel().to_ne_bytes(),
        [10, 1, 2, 3]
    );
}
