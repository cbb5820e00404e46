//! Outbound access with eBPF source NAT: endpoints reach the outside with the uplink's address,
//! replies come back, ICMP echo works, and ten thousand concurrent flows from several
//! endpoints keep distinct ports and lose no reply.
mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use common::{ping, tcp_request, tcp_server, udp_server, Topo, HOST, OUTSIDE};

fn nat_port(reply: &str) -> (Ipv4Addr, u16) {
    let peer: SocketAddr = reply.split(' ').next().unwrap().parse().unwrap();
    match peer {
        SocketAddr::V4(v4) => (*v4.ip(), v4.port()),
        SocketAddr::V6(_) => panic!("{reply}"),
    }
}

#[test]
fn endpoints_reach_the_outside_through_source_nat() {
    let t = Topo::new();
    tcp_server(&t.outside, 9000);
    udp_server(&t.outside, 9001);
    let ep = t.endpoint("web", &[]);
    for reply in [
        tcp_request(&ep, OUTSIDE, 9000, "t").expect("tcp out"),
        common::udp_request(&ep, OUTSIDE, 9001, "u").expect("udp out"),
    ] {
        let (ip, port) = nat_port(&reply);
        assert_eq!(ip, HOST, "leaves with the uplink's address: {reply}");
        assert!(
            (40000..60000).contains(&port),
            "a port of netpath's range: {reply}"
        );
    }
    assert!(ping(&ep, OUTSIDE), "ICMP echo");
    let s = t.stats();
    assert!(s["Counters"]["snat"].as_u64().unwrap() >= 3);
    assert!(s["Counters"]["snat_reply"].as_u64().unwrap() >= 3);
    // Removing the endpoint takes its outbound flows with it.
    assert!(t.stats()["OutboundFlows"].as_u64().unwrap() >= 3);
    t.ok(&["endpoint", "rm", "web"]);
    assert_eq!(t.stats()["OutboundFlows"].as_u64().unwrap(), 0);
    // Internal networks never leave.
    t.ok(&common::words(
        "network create closed --internal --subnet 10.10.9.0/24",
    ));
    let closed = t.endpoint("closed1", &["--network", "closed"]);
    closed.ip(&["route", "add", "default", "via", "10.10.9.1"]);
    assert!(!ping(&closed, OUTSIDE));
}

#[test]
fn ten_thousand_concurrent_flows_keep_distinct_ports_and_every_reply() {
    const PER_ENDPOINT: usize = 2500;
    const ENDPOINTS: usize = 4;
    // Ten thousand sockets: raise the soft open-file limit as far as the hard one allows.
    // SAFETY: plain getrlimit/setrlimit of this process's open-file limit.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        assert!(
            lim.rlim_cur >= 12_000,
            "open-file limit {} too low for the test",
            lim.rlim_cur
        );
    }
    let t = Topo::new();
    udp_server(&t.outside, 9001);
    let eps: Vec<_> = (0..ENDPOINTS)
        .map(|i| t.endpoint(&format!("load{i}"), &[]))
        .collect();
    // Every socket stays open (a flow each) until all have their reply.
    let socks: Vec<UdpSocket> = eps
        .iter()
        .flat_map(|ns| {
            ns.run(|| {
                (0..PER_ENDPOINT)
                    .map(|_| {
                        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                        s.connect((OUTSIDE, 9001)).unwrap();
                        s.set_nonblocking(true).unwrap();
                        s
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut replies: BTreeMap<usize, (Ipv4Addr, u16)> = BTreeMap::new();
    for _round in 0..20 {
        for (i, s) in socks.iter().enumerate() {
            if !replies.contains_key(&i) {
                // A datagram lost here is sent again next round; the replies are counted below.
                let _ = s.send(b"x");
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        while std::time::Instant::now() < deadline && replies.len() < socks.len() {
            let mut buf = [0u8; 64];
            for (i, s) in socks.iter().enumerate() {
                if replies.contains_key(&i) {
                    continue;
                }
                if let Ok(n) = s.recv(&mut buf) {
                    replies.insert(i, nat_port(&String::from_utf8_lossy(&buf[..n])));
                }
            }
        }
        if replies.len() == socks.len() {
            break;
        }
    }
    assert_eq!(replies.len(), socks.len(), "every flow got its reply");
    let ports: BTreeSet<u16> = replies.values().map(|(_, p)| *p).collect();
    assert_eq!(ports.len(), socks.len(), "no two flows share a NAT port");
    assert!(replies.values().all(|(ip, _)| *ip == HOST));
    assert_eq!(
        t.stats()["Counters"]["drop_snat_ports"].as_u64().unwrap(),
        0
    );
}
