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
            matches!(bad.parse::<Subnet>(), Err(IpamError::BadSubnet(_))),
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
    assert_eq!(s.allocate(gw, &all), Err(IpamError::Exhausted(s)));
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
    assert_eq!(pick_subnet(&taken).unwrap().to_string(), "10.212.0.0/16");
    // Docker's pools are never picked, whatever is taken.
    let tens: Subnet = "10.210.0.0/15".parse().unwrap();
    let all_16s: Vec<Subnet> = (210..=239)
        .map(|x| format!("10.{x}.0.0/16").parse().unwrap())
        .collect();
    assert_eq!(pick_subnet(&all_16s).unwrap().to_string(), "10.200.0.0/24");
    assert!(default_pool().all(|s| {
        !s.overlaps(&"172.16.0.0/12".parse().unwrap())
            && !s.overlaps(&"192.168.0.0/16".parse().unwrap())
            && !s.overlaps(&"10.88.0.0/15".parse().unwrap())
            && !s.overlaps(&"10.96.0.0/12".parse().unwrap())
            && !s.overlaps(&"10.244.0.0/16".parse().unwrap())
    }));
    assert!(pick_subnet(&[tens]).is_ok());
    let everything: Subnet = "0.0.0.0/1".parse().unwrap();
    assert_eq!(pick_subnet(&[everything]), Err(IpamError::NoFreeSubnet));
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
    assert_eq!(cidr_address(""), Ok(None));
    for bad in ["10.1.0", "10.1.0.5/33", "10.1.0.5/", "fd00::1/64", "x"] {
        assert!(cidr_address(bad).is_err(), "{bad}");
    }
}
