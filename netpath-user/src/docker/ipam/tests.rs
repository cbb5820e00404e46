//! The pools as dockerd's calls use them: allocation, overlaps, IPv6, restarts, reconciling.
use super::*;

fn pool(p: &str, sub: &str) -> RequestPool {
    RequestPool {
        address_space: ADDRESS_SPACE.into(),
        pool: p.into(),
        sub_pool: sub.into(),
        ..RequestPool::default()
    }
}

fn addr(id: &str, a: &str, gw: bool) -> AddressRequest {
    AddressRequest {
        pool_id: id.into(),
        address: a.into(),
        options: gw.then(|| {
            [(
                keys::REQUEST_ADDRESS_TYPE.to_string(),
                keys::GATEWAY_ADDRESS.to_string(),
            )]
            .into()
        }),
    }
}

#[test]
fn hands_out_a_gateway_then_free_addresses_from_the_range() {
    let mut p = Pools::in_memory();
    let (id, s) = p
        .request_pool(&pool("10.9.0.0/24", "10.9.0.128/25"), &[], &[])
        .unwrap();
    assert_eq!(s, "10.9.0.0/24");
    assert_eq!(
        p.request_address(&addr(&id, "", true), &[], &[]).unwrap(),
        "10.9.0.1/24"
    );
    assert_eq!(
        p.request_address(&addr(&id, "", false), &[], &[]).unwrap(),
        "10.9.0.128/24"
    );
    // netpath's own endpoint holds .129.
    let used = ["10.9.0.129".parse().unwrap()];
    assert_eq!(
        p.request_address(&addr(&id, "", false), &used, &[])
            .unwrap(),
        "10.9.0.130/24"
    );
    assert!(p
        .request_address(&addr(&id, "10.9.0.128", false), &[], &[])
        .is_err());
    assert_eq!(
        p.request_address(&addr(&id, "10.9.0.7", false), &[], &[])
            .unwrap(),
        "10.9.0.7/24"
    );
    p.release_address(&addr(&id, "10.9.0.128/24", false))
        .unwrap();
    assert_eq!(
        p.request_address(&addr(&id, "", false), &[], &[]).unwrap(),
        "10.9.0.128/24"
    );
    assert!(p
        .request_address(&addr(&id, "10.9.0.255", false), &[], &[])
        .is_err());
}

#[test]
fn refuses_overlaps_v6_and_unknown_pools_and_picks_a_default() {
    let mut p = Pools::in_memory();
    p.request_pool(&pool("10.9.0.0/16", ""), &[], &[]).unwrap();
    assert!(matches!(
        p.request_pool(&pool("10.9.3.0/24", ""), &[], &[]),
        Err(PoolError::Overlap(..))
    ));
    let net: Subnet = "10.210.0.0/16".parse().unwrap();
    let (_, s) = p.request_pool(&pool("", ""), &[net], &[]).unwrap();
    assert_eq!(s, "10.211.0.0/16");
    let v6 = RequestPool {
        v6: true,
        ..RequestPool::default()
    };
    let (id6, s6) = p.request_pool(&v6, &[], &[]).unwrap();
    assert_eq!(s6, "fd6e:7470:6174::/64", "IPv6 from its own pool");
    assert_eq!(
        p.request_address(&addr(&id6, "", true), &[], &[]).unwrap(),
        "fd6e:7470:6174::1/64"
    );
    assert_eq!(
        p.request_address(&addr(&id6, "", false), &[], &[]).unwrap(),
        "fd6e:7470:6174::2/64"
    );
    let v6_asked = RequestPool {
        v6: true,
        pool: "fd6e:7470:6174::/48".into(),
        ..RequestPool::default()
    };
    assert!(matches!(
        p.request_pool(&v6_asked, &[], &[]),
        Err(PoolError::Overlap(..))
    ));
    assert!(matches!(
        p.request_address(&addr("nope", "", false), &[], &[]),
        Err(PoolError::NoPool(_))
    ));
    assert!(matches!(
        p.request_pool(&pool("10.10.0.0/24", "10.11.0.0/25"), &[], &[]),
        Err(PoolError::RangeOutside(..))
    ));
}

#[test]
fn survive_a_restart() {
    let dir = crate::scratch::ScratchDir::new("pools");
    let mut p = Pools::load(&dir).unwrap();
    let (id, _) = p.request_pool(&pool("10.9.0.0/24", ""), &[], &[]).unwrap();
    p.request_address(&addr(&id, "", true), &[], &[]).unwrap();
    let mut again = Pools::load(&dir).unwrap();
    let got = again.request_address(&addr(&id, "", false), &[], &[]);
    assert_eq!(got.unwrap(), "10.9.0.2/24");
}

#[test]
fn reconcile_gives_back_what_docker_let_go() {
    let mut p = Pools::in_memory();
    let (kept, _) = p.request_pool(&pool("10.50.0.0/24", ""), &[], &[]).unwrap();
    let (gone, _) = p.request_pool(&pool("10.51.0.0/24", ""), &[], &[]).unwrap();
    p.request_address(&addr(&kept, "", true), &[], &[]).unwrap();
    p.request_address(&addr(&kept, "10.50.0.7", false), &[], &[])
        .unwrap();
    p.request_address(&addr(&kept, "10.50.0.8", false), &[], &[])
        .unwrap();
    let held: BTreeSet<Ipv4Addr> = ["10.50.0.7".parse().unwrap()].into();
    let mut said = p
        .reconcile(
            &["10.50.0.0/24".parse().unwrap()],
            &[],
            &held,
            &BTreeSet::new(),
        )
        .unwrap();
    said.sort();
    assert_eq!(said, ["address 10.50.0.8", format!("pool {gone}").as_str()]);
    // The gateway and the held address stay taken; the others are free again.
    assert!(p
        .request_address(&addr(&kept, "10.50.0.7", false), &[], &[])
        .is_err());
    assert!(p
        .request_address(&addr(&kept, "10.50.0.8", false), &[], &[])
        .is_ok());
    assert!(p.request_pool(&pool("10.51.0.0/24", ""), &[], &[]).is_ok());
}
