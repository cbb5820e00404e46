//! BPF_PROG_TEST_RUN tests of the IPv6 datapath: crafted IPv6 frames into the real programs
//! (forwarding between endpoints, isolation, anti-spoofing, neighbour discovery, the uplink's
//! routed-access check, policy, published ports), exact verdicts and bytes out.
mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::{
    frame6::{checksum_ok6, nd, solicited_node, Frame6, ICMPV6},
    load, pin_to_this_cpu, run_tc, run_xdp_on, tcp, udp, Dp, RoutedNs, Seen, TCP, UDP,
};
use netpath_common::{direction, Counter, FlowKey, In6, PolicyKey, PortKey, PortTarget};
use netpath_user::{
    datapath::{be_addr, be_port, programs, AttachmentEntry, Datapath},
    ipam::{Pool, Subnet},
    model::Network,
    policy::{Compiled, PublishedFrom},
};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const XDP_PASS: u32 = 2;
const XDP_DROP: u32 = 1;

const EP: &str = "fd00:1::2";
const EP4: [u8; 4] = [172, 17, 0, 2];
const EP_MAC: [u8; 6] = [0x02, 0x42, 172, 17, 0, 2];
const GW: &str = "fd00:1::1";
const GW_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 0x99];
const PEER_IF: u32 = 777;
const PEER: &str = "fd00:1::3";
const PEER4: [u8; 4] = [172, 17, 0, 3];
const PEER_MAC: [u8; 6] = [0x02, 0x42, 172, 17, 0, 3];
const PEER_HOST_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 0x77];
/// An endpoint of network 2.
const OTHER: &str = "fd00:2::7";

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Network `net_id` on `subnet4` and (when given) `subnet6`, each gateway its first host.
fn network(
    dp: &mut Datapath,
    net_id: u32,
    subnet4: &str,
    subnet6: Option<&str>,
    internal: bool,
) -> Network {
    let s4: Subnet = subnet4.parse().unwrap();
    let net = Network {
        name: format!("n{net_id}"),
        id: format!("{net_id}"),
        net_id,
        driver: "bridge".into(),
        v4: Some(Pool {
            subnet: s4,
            gateway: s4.first_host(),
            ip_range: None,
        }),
        v6: subnet6.map(|s| {
            let s: Subnet<Ipv6Addr> = s.parse().unwrap();
            Pool {
                subnet: s,
                gateway: s.first_host(),
                ip_range: None,
            }
        }),
        internal,
        options: Default::default(),
        labels: Default::default(),
        vni: None,
    };
    dp.add_network(&net).unwrap();
    net
}

fn attach(
    dp: &mut Datapath,
    ifindex: u32,
    ip: [u8; 4],
    ip6: Option<&str>,
    mac: [u8; 6],
    host_mac: [u8; 6],
    net_id: u32,
) {
    dp.add_attachment(&AttachmentEntry {
        ifindex,
        ip: Ipv4Addr::from(ip),
        ip6: ip6.map(v6),
        mac,
        host_mac,
        net_id,
    })
    .unwrap();
}

/// The endpoint (`EP`, `EP4`, `EP_MAC`) on network 1, behind the routed namespace's endpoint
/// veth.
fn attach_endpoint(dp: &mut Datapath, r: &RoutedNs) {
    attach(dp, r.endpoint_ifindex, EP4, Some(EP), EP_MAC, GW_MAC, 1);
}

/// Network 1 (dual stack) with the endpoint at `ep_if` and a peer; network 2 with one
/// endpoint.
fn two_networks() -> (Dp, RoutedNs) {
    let Dp { mut dp, _fs } = load();
    let r = RoutedNs::new();
    network(&mut dp, 1, "172.17.0.0/16", Some("fd00:1::/64"), false);
    network(&mut dp, 2, "10.5.0.0/24", Some("fd00:2::/64"), false);
    attach_endpoint(&mut dp, &r);
    attach(
        &mut dp,
        PEER_IF,
        PEER4,
        Some(PEER),
        PEER_MAC,
        PEER_HOST_MAC,
        1,
    );
    attach(
        &mut dp,
        PEER_IF + 1,
        [10, 5, 0, 7],
        Some(OTHER),
        PEER_MAC,
        PEER_HOST_MAC,
        2,
    );
    (Dp { dp, _fs }, r)
}

/// A UDP packet from the endpoint (its address and MAC unless changed) to `dst`.
fn from_ep(src: &str, dst: &str) -> Vec<u8> {
    let mut f = Frame6::new(src, dst, UDP);
    f.src_mac = EP_MAC;
    f.dst_mac = GW_MAC;
    f.build(&udp(5000, 6000))
}

fn counter(dp: &Datapath, c: Counter) -> u64 {
    dp.counter(c)
}

#[test]
fn endpoints_reach_their_peers_over_ipv6_and_nothing_of_other_networks() {
    let (Dp { mut dp, _fs }, r) = two_networks();
    let cases: &[(&str, u32, Option<Counter>)] = &[
        (PEER, TC_ACT_REDIRECT, Some(Counter::Forward)),
        (OTHER, TC_ACT_SHOT, Some(Counter::DropIsolation)),
        ("fd00:2::99", TC_ACT_SHOT, Some(Counter::DropIsolation)),
        ("fd00:2::1", TC_ACT_OK, None), // network 2's gateway: the host
        (GW, TC_ACT_OK, None),
        ("fd00:1::99", TC_ACT_SHOT, Some(Counter::DropNoRoute)),
        ("2001:db8::10", TC_ACT_OK, None), // beyond: to the host stack
    ];
    for (dst, verdict, reason) in cases {
        let before = reason.map(|c| counter(&dp, c));
        let pkt = from_ep(EP, dst);
        let (v, out) =
            r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, r.endpoint_ifindex));
        assert_eq!(v, *verdict, "{dst}");
        if v == TC_ACT_REDIRECT {
            let seen = Seen(&out);
            assert_eq!(seen.dst_mac(), PEER_MAC);
            assert_eq!(seen.src_mac(), PEER_HOST_MAC);
            assert_eq!(&out[12..], &pkt[12..], "layer 3 and up untouched");
        } else if v == TC_ACT_OK {
            assert_eq!(out, pkt);
        }
        if let (Some(c), Some(b)) = (reason, before) {
            assert_eq!(counter(&dp, *c), b + 1, "{dst} counted as {c:?}");
        }
    }
}

#[test]
fn ipv6_from_a_foreign_address_or_mac_is_a_spoof_and_link_chatter_goes_to_the_host() {
    let Dp { mut dp, _fs } = load();
    let r = RoutedNs::new();
    network(&mut dp, 1, "172.17.0.0/16", Some("fd00:1::/64"), false);
    network(&mut dp, 3, "10.9.0.0/24", None, false);
    attach_endpoint(&mut dp, &r);
    // Another veth of an endpoint on a network without IPv6.
    attach(
        &mut dp,
        r.uplink_ifindex,
        [10, 9, 0, 2],
        None,
        EP_MAC,
        GW_MAC,
        3,
    );
    let run = |dp: &mut Datapath, pkt: &[u8], ifindex| {
        r.ns.run(|| run_tc(dp, programs::ENDPOINT_TC, pkt, ifindex))
    };
    let spoofs = [
        (from_ep("fd00:1::99", PEER), r.endpoint_ifindex),
        (from_ep(OTHER, PEER), r.endpoint_ifindex),
        (
            {
                let mut f = Frame6::new(EP, PEER, UDP);
                f.src_mac = [0x02, 0, 0, 0, 0, 0x66];
                f.build(&udp(1, 2))
            },
            r.endpoint_ifindex,
        ),
        // No IPv6 on its network: a global source is nobody's.
        (from_ep(EP, "2001:db8::1"), r.uplink_ifindex),
    ];
    for (i, (pkt, ifindex)) in spoofs.iter().enumerate() {
        assert_eq!(run(&mut dp, pkt, *ifindex).0, TC_ACT_SHOT, "spoof {i}");
    }
    assert_eq!(counter(&dp, Counter::DropSpoof), spoofs.len() as u64);
    // Router solicitations and MLD from the link-local address go to the host, on both.
    let mut rs = Frame6::new("fe80::42:acff:fe11:2", "ff02::2", ICMPV6);
    rs.src_mac = EP_MAC;
    let rs = rs.build(&[133, 0, 0, 0, 0, 0, 0, 0]);
    for ifindex in [r.endpoint_ifindex, r.uplink_ifindex] {
        let (v, out) = run(&mut dp, &rs, ifindex);
        assert_eq!(v, TC_ACT_OK);
        assert_eq!(out, rs);
    }
}

#[test]
fn neighbour_solicitations_for_the_gateway_and_peers_are_answered_and_lies_dropped() {
    let (Dp { mut dp, _fs }, r) = two_networks();
    let run = |dp: &mut Datapath, pkt: &[u8]| {
        r.ns.run(|| run_tc(dp, programs::ENDPOINT_TC, pkt, r.endpoint_ifindex))
    };
    for (target, flags) in [(GW, 0xe0), (PEER, 0x60)] {
        let ns = nd(135, EP_MAC, v6(EP), solicited_node(v6(target)), v6(target));
        let (v, out) = run(&mut dp, &ns);
        assert_eq!(
            v, TC_ACT_REDIRECT,
            "{target}: answered back into the endpoint"
        );
        assert_eq!(out.len(), ns.len());
        assert_eq!(&out[0..6], &EP_MAC, "to the asker");
        assert_eq!(&out[6..12], &GW_MAC, "from the host side");
        assert_eq!(&out[22..38], &v6(target).octets(), "from the target");
        assert_eq!(&out[38..54], &v6(EP).octets(), "to the asker's address");
        assert_eq!(out[21], 255, "hop limit");
        assert_eq!(out[54], 136, "an advertisement");
        assert_eq!(out[58], flags, "{target}: router, solicited, override");
        assert_eq!(&out[62..78], &v6(target).octets(), "its target");
        assert_eq!(&out[78..80], &[2, 1], "the target's link-layer address");
        assert_eq!(&out[80..86], &GW_MAC);
        assert!(checksum_ok6(&out), "{target}: checksum");
    }
    assert_eq!(counter(&dp, Counter::NdpReply), 2);
    // Of another network, of nobody, of itself (duplicate address detection): not ours.
    for (src, target) in [(EP, OTHER), (EP, "fd00:1::99"), ("::", EP)] {
        let ns = nd(135, EP_MAC, v6(src), solicited_node(v6(target)), v6(target));
        let (v, out) = run(&mut dp, &ns);
        assert_eq!(v, TC_ACT_OK, "{target} passed to the host");
        assert_eq!(out, ns);
    }
    // Advertising the gateway or a peer, or advertising itself a router: dropped.
    let lies = [
        nd(136, EP_MAC, v6(EP), v6("ff02::1"), v6(GW)),
        nd(136, EP_MAC, v6(EP), v6("ff02::1"), v6(PEER)),
        {
            let mut ra = Frame6::new("fe80::1", "ff02::1", ICMPV6);
            ra.src_mac = EP_MAC;
            ra.build(&[134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        },
    ];
    let before = counter(&dp, Counter::DropSpoof);
    for (i, pkt) in lies.iter().enumerate() {
        assert_eq!(run(&mut dp, pkt).0, TC_ACT_SHOT, "lie {i}");
    }
    assert_eq!(counter(&dp, Counter::DropSpoof), before + lies.len() as u64);
    // Its own address advertised: the host's business.
    let own = nd(136, EP_MAC, v6(EP), v6("fe80::1"), v6(EP));
    assert_eq!(run(&mut dp, &own).0, TC_ACT_OK);
}

#[test]
fn internal_and_multicast_over_ipv6() {
    let Dp { mut dp, _fs } = load();
    let r = RoutedNs::new();
    network(&mut dp, 1, "172.17.0.0/16", Some("fd00:1::/64"), true);
    attach_endpoint(&mut dp, &r);
    attach(
        &mut dp,
        r.uplink_ifindex,
        PEER4,
        Some(PEER),
        PEER_MAC,
        PEER_HOST_MAC,
        1,
    );
    dp.set_members(1, &[r.endpoint_ifindex, r.uplink_ifindex])
        .unwrap();
    let run = |dp: &mut Datapath, pkt: &[u8]| {
        r.ns.run(|| run_tc(dp, programs::ENDPOINT_TC, pkt, r.endpoint_ifindex))
    };
    assert_eq!(run(&mut dp, &from_ep(EP, "2001:db8::10")).0, TC_ACT_SHOT);
    assert_eq!(counter(&dp, Counter::DropInternal), 1);
    assert_eq!(
        run(&mut dp, &from_ep(EP, GW)).0,
        TC_ACT_OK,
        "the gateway answers"
    );
    assert_eq!(run(&mut dp, &from_ep(EP, PEER)).0, TC_ACT_REDIRECT);
    let (v, out) = run(&mut dp, &from_ep(EP, "ff02::fb"));
    assert_eq!(v, TC_ACT_OK, "the original goes on to the host");
    assert_eq!(out, from_ep(EP, "ff02::fb"));
    assert_eq!(
        counter(&dp, Counter::Flood),
        1,
        "one copy, to the other member"
    );
}

#[test]
fn the_uplink_drops_ipv6_routed_at_a_network_and_passes_the_rest() {
    let (Dp { mut dp, _fs }, r) = two_networks();
    for (dst, verdict) in [(EP, XDP_DROP), (GW, XDP_DROP), ("2001:db8::1", XDP_PASS)] {
        let pkt = Frame6::new("2001:db8::99", dst, UDP).build(&udp(1, 2));
        let (v, out) = r.ns.run(|| run_xdp_on(&mut dp, &pkt, r.uplink_ifindex));
        assert_eq!(v, verdict, "{dst}");
        assert_eq!(out, pkt);
    }
    assert_eq!(counter(&dp, Counter::DropRouted), 2);
}

#[test]
fn network_policy_holds_for_ipv6_between_endpoints() {
    let (Dp { mut dp, _fs }, r) = two_networks();
    // Identities by IPv4 address: the endpoint's IPv6 records carry them.
    const EP_ID: u32 = 300;
    const PEER_ID: u32 = 301;
    let mut c = Compiled::default();
    c.ipcache
        .insert(Subnet::new(EP4.into(), 32).unwrap(), EP_ID);
    c.ipcache
        .insert(Subnet::new(PEER4.into(), 32).unwrap(), PEER_ID);
    c.subjects.insert(PEER_ID, u32::from(direction::INGRESS));
    let key = PolicyKey::new(direction::INGRESS, PEER_ID, EP_ID, UDP, 6000);
    c.rules.insert((key, PolicyKey::PORT), 1);
    dp.set_policy(&c).unwrap();
    let run = |dp: &mut Datapath, pkt: &[u8]| {
        r.ns.run(|| run_tc(dp, programs::ENDPOINT_TC, pkt, r.endpoint_ifindex))
            .0
    };
    let allowed = from_ep(EP, PEER);
    assert_eq!(run(&mut dp, &allowed), TC_ACT_REDIRECT);
    let mut other = Frame6::new(EP, PEER, UDP);
    other.src_mac = EP_MAC;
    let other = other.build(&udp(5000, 6001));
    assert_eq!(run(&mut dp, &other), TC_ACT_SHOT);
    assert_eq!(counter(&dp, Counter::DropPolicy), 1);
    // A policy selecting the endpoint's egress with no rule ends the allowed connection.
    let mut deny = c.clone();
    deny.subjects.insert(EP_ID, u32::from(direction::EGRESS));
    assert_eq!(
        dp.set_policy(&deny).unwrap(),
        1,
        "the connection's record went"
    );
    assert_eq!(run(&mut dp, &allowed), TC_ACT_SHOT);
    dp.set_policy(&Compiled::default()).unwrap();
    assert_eq!(run(&mut dp, &other), TC_ACT_REDIRECT);
}

const HOST6: &str = "2001:db8::1";
const CLIENT6: &str = "2001:db8::99";
const XDP_REDIRECT: u32 = 4;

/// The IPv6 addresses of `frame` (source, destination) and its ports.
fn addrs_ports(frame: &[u8]) -> (Ipv6Addr, Ipv6Addr, u16, u16) {
    let a = |at: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&frame[at..at + 16]).unwrap());
    let p = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    (a(22), a(38), p(54), p(56))
}

/// Network 1 (dual stack) with the endpoint, its port 80 published on `[::]:8080`.
fn published_endpoint() -> (Dp, RoutedNs) {
    let Dp { mut dp, _fs } = load();
    let r = RoutedNs::new();
    network(&mut dp, 1, "172.17.0.0/16", Some("fd00:1::/64"), false);
    attach_endpoint(&mut dp, &r);
    published6(&mut dp, r.endpoint_ifindex);
    (Dp { dp, _fs }, r)
}

/// `[::]:8080/tcp` published to the endpoint's port 80, `HOST6` the host's address.
fn published6(dp: &mut Datapath, ifindex: u32) {
    publish_to(
        dp,
        (In6::default(), 8080, TCP),
        (be_addr(v6(EP)), 80),
        ifindex,
    );
    dp.set_host_addrs6(&[v6(HOST6)].into()).unwrap();
}

/// Host address, port and protocol `(host, port, proto)` published to the endpoint behind
/// `ifindex` at `(addr, port)` (IPv4-mapped for NAT46).
fn publish_to(
    dp: &mut Datapath,
    (host, port, proto): (In6, u16, u8),
    to: (In6, u16),
    ifindex: u32,
) {
    dp.publish(
        PortKey {
            addr: host,
            port: be_port(port),
            proto,
            _pad: 0,
        },
        PortTarget {
            addr: to.0,
            port: be_port(to.1),
            stats: 0,
            ifindex,
            mac: EP_MAC,
            gw_mac: GW_MAC,
            host: Default::default(),
        },
    )
    .unwrap();
}

/// A TCP packet from `CLIENT6` port `client_port` to `HOST6:8080` through the uplink's XDP
/// program (`xdp`) or its TC program: whether it was redirected, and the packet that came out.
fn client_to_8080(dp: &mut Datapath, r: &RoutedNs, client_port: u16, xdp: bool) -> (bool, Vec<u8>) {
    let pkt = Frame6::new(CLIENT6, HOST6, TCP).build(&tcp(client_port, 8080));
    if xdp {
        let (verdict, out) = r.ns.run(|| run_xdp_on(dp, &pkt, r.uplink_ifindex));
        (verdict == XDP_REDIRECT, out)
    } else {
        let (verdict, out) =
            r.ns.run(|| run_tc(dp, programs::UPLINK_TC, &pkt, r.uplink_ifindex));
        (verdict == TC_ACT_REDIRECT, out)
    }
}

/// The endpoint's TCP reply from port 80 to `CLIENT6` port `client_port`.
fn reply_to(client_port: u16) -> Vec<u8> {
    let mut reply = Frame6::new(EP, CLIENT6, TCP);
    reply.src_mac = EP_MAC;
    reply.dst_mac = GW_MAC;
    reply.build(&tcp(80, client_port))
}

#[test]
fn published_ports_answer_ipv6_clients_keeping_their_address_on_xdp_and_tc() {
    let (Dp { mut dp, _fs }, r) = published_endpoint();
    let reply_key = |client_port| {
        FlowKey::new(
            be_addr(v6(EP)),
            be_port(80),
            be_addr(v6(CLIENT6)),
            be_port(client_port),
            TCP,
        )
    };
    for (client_port, xdp) in [(40000u16, true), (40001, false)] {
        let (redirected, out) = client_to_8080(&mut dp, &r, client_port, xdp);
        assert!(redirected, "xdp {xdp}");
        assert_eq!(
            addrs_ports(&out),
            (v6(CLIENT6), v6(EP), client_port, 80),
            "the client's own address kept, the destination the endpoint's"
        );
        assert!(checksum_ok6(&out), "TCP checksum of the translated packet");
        let seen = Seen(&out);
        assert_eq!((seen.src_mac(), seen.dst_mac()), (GW_MAC, EP_MAC));
        let nat = dp.flow(&reply_key(client_port)).expect("the flow recorded");
        assert_eq!((nat.addr, nat.port), (be_addr(v6(HOST6)), be_port(8080)));
        assert_eq!(nat.ifindex, r.endpoint_ifindex);

        // The endpoint's reply goes back out of the uplink, from the published address.
        let reply = reply_to(client_port);
        let (verdict, out) =
            r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &reply, r.endpoint_ifindex));
        assert_eq!(verdict, TC_ACT_REDIRECT, "xdp {xdp}");
        assert_eq!(
            addrs_ports(&out),
            (v6(HOST6), v6(CLIENT6), 8080, client_port)
        );
        assert!(checksum_ok6(&out), "TCP checksum of the reply");
    }
    assert_eq!(dp.counter(Counter::DnatXdp), 1);
    assert_eq!(dp.counter(Counter::DnatTc), 1);
    assert_eq!(dp.counter(Counter::RevNat), 2);

    // The flow's next packets find it kept (decided in the entry programs): translated the
    // same way, its entry as it was. From another neighbour, its way back follows the client.
    let kept = dp.flow(&reply_key(40000)).unwrap();
    for xdp in [true, false] {
        let (redirected, out) = client_to_8080(&mut dp, &r, 40000, xdp);
        assert!(redirected, "kept flow, xdp {xdp}");
        assert_eq!(addrs_ports(&out), (v6(CLIENT6), v6(EP), 40000, 80));
        assert!(checksum_ok6(&out), "TCP checksum of a kept flow's packet");
        assert_eq!(dp.flow(&reply_key(40000)), Some(kept));
    }
    assert_eq!(
        (dp.counter(Counter::DnatXdp), dp.counter(Counter::DnatTc)),
        (2, 2)
    );
    let mut moved = Frame6::new(CLIENT6, HOST6, TCP);
    moved.src_mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x07];
    let pkt = moved.build(&tcp(40000, 8080));
    let (verdict, out) = r.ns.run(|| run_xdp_on(&mut dp, &pkt, r.uplink_ifindex));
    assert_eq!(verdict, XDP_REDIRECT);
    assert_eq!(addrs_ports(&out), (v6(CLIENT6), v6(EP), 40000, 80));
    let nat = dp.flow(&reply_key(40000)).unwrap();
    assert_eq!(
        nat.via_macs.dst, moved.src_mac,
        "replies go to the new neighbour"
    );
    assert_eq!(
        (nat.addr, nat.port, nat.via),
        (kept.addr, kept.port, kept.via)
    );

    // Not published, or not this host's: untouched.
    for (dst, port) in [(HOST6, 9999), ("2001:db8::5", 8080)] {
        let pkt = Frame6::new(CLIENT6, dst, TCP).build(&tcp(40002, port));
        let (verdict, out) = r.ns.run(|| run_xdp_on(&mut dp, &pkt, r.uplink_ifindex));
        assert_eq!((verdict, &out), (XDP_PASS, &pkt), "{dst} port {port}");
    }
    // Loopback never comes from a wire: a port published on [::1] does not answer the LAN.
    for (src, dst) in [
        (CLIENT6, "::1"),
        ("::1", HOST6),
        (CLIENT6, "::ffff:127.0.0.1"),
    ] {
        let before = dp.counter(Counter::DropMartian);
        let pkt = Frame6::new(src, dst, TCP).build(&tcp(40003, 8080));
        let (verdict, _) = r.ns.run(|| run_xdp_on(&mut dp, &pkt, r.uplink_ifindex));
        assert_eq!(verdict, XDP_DROP, "{src} to {dst}");
        assert_eq!(dp.counter(Counter::DropMartian), before + 1);
    }

    // One uplink of the family: the port is one to one, decided in the entry programs (no
    // flow, no tail call), and the first reply records the flow, routed out of the uplink.
    dp.set_uplinks6(&[(r.uplink_ifindex, v6(HOST6))]).unwrap();
    const NEIGHBOUR: &str = "02:aa:bb:cc:dd:06";
    r.ns.sysctl("net/ipv6/conf/all/forwarding", "1");
    r.ns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{HOST6}/64"),
        "dev",
        "up0",
        "nodad",
    ]);
    r.ns.ip(&[
        "-6",
        "neigh",
        "replace",
        CLIENT6,
        "lladdr",
        NEIGHBOUR,
        "dev",
        "up0",
        "nud",
        "permanent",
    ]);
    for (client_port, xdp) in [(41000u16, true), (41001, false)] {
        let (redirected, out) = client_to_8080(&mut dp, &r, client_port, xdp);
        assert!(redirected, "xdp {xdp}");
        assert_eq!(addrs_ports(&out), (v6(CLIENT6), v6(EP), client_port, 80));
        assert!(checksum_ok6(&out));
        assert!(dp.flow(&reply_key(client_port)).is_none(), "no flow kept");
        let reply = reply_to(client_port);
        let (verdict, out) =
            r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &reply, r.endpoint_ifindex));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(
            addrs_ports(&out),
            (v6(HOST6), v6(CLIENT6), 8080, client_port)
        );
        assert!(checksum_ok6(&out), "TCP checksum of the first reply");
        let seen = Seen(&out);
        assert_eq!(
            (seen.src_mac(), seen.dst_mac()),
            (r.uplink_mac, [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x06])
        );
        let nat = dp
            .flow(&reply_key(client_port))
            .expect("recorded by the reply");
        assert_eq!((nat.addr, nat.port), (be_addr(v6(HOST6)), be_port(8080)));
    }
    assert_eq!(dp.counter(Counter::DnatStateless), 2);
    assert_eq!(dp.counter(Counter::ReplyRecorded), 2);
    // A loopback source is still dropped.
    let pkt = Frame6::new("::1", HOST6, TCP).build(&tcp(41002, 8080));
    let (verdict, _) = r.ns.run(|| run_xdp_on(&mut dp, &pkt, r.uplink_ifindex));
    assert_eq!(verdict, XDP_DROP);

    // A port published on [::1] alone (to an endpoint port of its own) replies by no wire: it
    // is not one to one, and a frame from the wire addressed to [::1] is dropped (the entry
    // program checks both addresses before it looks a port up).
    let to = (be_addr(v6(EP)), 81);
    publish_to(
        &mut dp,
        (be_addr(v6("::1")), 8081, TCP),
        to,
        r.endpoint_ifindex,
    );
    let loopback = dp.published::<In6>();
    let (_, t) = loopback
        .iter()
        .find(|(k, _)| k.port == be_port(8081))
        .expect("[::1]:8081 published");
    assert_eq!(t.host, In6::default(), "no host address to reply from");
    let pkt = Frame6::new(CLIENT6, "::1", TCP).build(&tcp(41003, 8081));
    let before = dp.counter(Counter::DropMartian);
    let (verdict, _) = r.ns.run(|| run_xdp_on(&mut dp, &pkt, r.uplink_ifindex));
    assert_eq!(verdict, XDP_DROP, "XDP: [::1]:8081 from the wire");
    let (verdict, _) =
        r.ns.run(|| run_tc(&mut dp, programs::UPLINK_TC, &pkt, r.uplink_ifindex));
    assert_eq!(verdict, TC_ACT_SHOT, "TC: [::1]:8081 from the wire");
    assert_eq!(dp.counter(Counter::DropMartian), before + 2);
}

#[test]
fn the_published_ports_firewall_lets_in_the_ipv6_clients_of_its_list_alone() {
    let (Dp { mut dp, _fs }, r) = published_endpoint();
    let syn = |port| Frame6::new(CLIENT6, HOST6, TCP).build(&tcp(port, 8080));
    let (verdict, _) =
        r.ns.run(|| run_xdp_on(&mut dp, &syn(40000), r.uplink_ifindex));
    assert_eq!(verdict, XDP_REDIRECT, "no list: everyone");

    let list: PublishedFrom = "10.0.0.0/8".parse().unwrap();
    assert_eq!(
        dp.set_published_from(&list).unwrap(),
        1,
        "the IPv6 client's flow ended"
    );
    for port in [40000, 40001] {
        let (verdict, _) =
            r.ns.run(|| run_xdp_on(&mut dp, &syn(port), r.uplink_ifindex));
        assert_eq!(
            verdict, XDP_DROP,
            "port {port}: IPv6 clients are not on the list"
        );
        let (verdict, _) =
            r.ns.run(|| run_tc(&mut dp, programs::UPLINK_TC, &syn(port), r.uplink_ifindex));
        assert_eq!(verdict, TC_ACT_SHOT);
    }
    assert_eq!(dp.counter(Counter::DropFirewall), 4);

    // An IPv6 prefix on the list lets its clients in, and no other.
    let list: PublishedFrom = "10.0.0.0/8, 2001:db8::/64".parse().unwrap();
    dp.set_published_from(&list).unwrap();
    let (verdict, _) =
        r.ns.run(|| run_xdp_on(&mut dp, &syn(40002), r.uplink_ifindex));
    assert_eq!(verdict, XDP_REDIRECT, "{CLIENT6} is in 2001:db8::/64");
    let list: PublishedFrom = "2001:db8:1::/64".parse().unwrap();
    assert_eq!(dp.set_published_from(&list).unwrap(), 1, "its flow ended");
    let (verdict, _) =
        r.ns.run(|| run_xdp_on(&mut dp, &syn(40002), r.uplink_ifindex));
    assert_eq!(verdict, XDP_DROP, "{CLIENT6} is not in 2001:db8:1::/64");

    dp.set_published_from(&PublishedFrom::default()).unwrap();
    let (verdict, _) =
        r.ns.run(|| run_xdp_on(&mut dp, &syn(40003), r.uplink_ifindex));
    assert_eq!(verdict, XDP_REDIRECT, "the list cleared: everyone again");
}

/// The endpoint (`EP4`'s identity) selected for ingress, the world let in on TCP port 80 only.
fn world_to_port_80() -> Compiled {
    const EP_ID: u32 = 300;
    let mut c = Compiled::default();
    c.ipcache
        .insert(Subnet::new(EP4.into(), 32).unwrap(), EP_ID);
    c.subjects.insert(EP_ID, u32::from(direction::INGRESS));
    let key = PolicyKey::new(
        direction::INGRESS,
        EP_ID,
        netpath_common::identity::WORLD,
        TCP,
        80,
    );
    c.rules.insert((key, PolicyKey::PORT), 1);
    c
}

#[test]
fn network_policy_holds_for_ipv6_clients_of_a_published_port() {
    let (Dp { mut dp, _fs }, r) = published_endpoint();
    let mut c = world_to_port_80();
    dp.set_policy(&c).unwrap();
    let syn = Frame6::new(CLIENT6, HOST6, TCP).build(&tcp(40000, 8080));
    let (verdict, _) = r.ns.run(|| run_xdp_on(&mut dp, &syn, r.uplink_ifindex));
    assert_eq!(verdict, XDP_REDIRECT, "port 80 is let in");
    // The rule gone: the endpoint's IPv6 address carries its identity, so the policy holds.
    c.rules.clear();
    assert_eq!(dp.set_policy(&c).unwrap(), 1, "the allowed flow ended");
    let (verdict, _) = r.ns.run(|| run_xdp_on(&mut dp, &syn, r.uplink_ifindex));
    assert_eq!(verdict, XDP_DROP, "no rule lets the world in");
    let (verdict, _) =
        r.ns.run(|| run_tc(&mut dp, programs::UPLINK_TC, &syn, r.uplink_ifindex));
    assert_eq!(verdict, TC_ACT_SHOT);
    assert_eq!(counter(&dp, Counter::DropPolicy), 2);
    dp.set_policy(&Compiled::default()).unwrap();
    let (verdict, _) = r.ns.run(|| run_xdp_on(&mut dp, &syn, r.uplink_ifindex));
    assert_eq!(verdict, XDP_REDIRECT, "no policy: open again");
}

/// An ICMPv6 Packet Too Big from `router` to `to`, about the TCP packet `about` (a frame)
/// carried from its IPv6 header on.
fn packet_too_big(router: &str, to: &str, about: &[u8], mtu: u32) -> Vec<u8> {
    let mut body = vec![2, 0, 0, 0];
    body.extend_from_slice(&mtu.to_be_bytes());
    body.extend_from_slice(&about[14..]);
    Frame6::new(router, to, ICMPV6).build(&body)
}

#[test]
fn packet_too_big_about_a_published_reply_reaches_its_endpoint_translated_back() {
    let (Dp { mut dp, _fs }, r) = published_endpoint();
    let syn = Frame6::new(CLIENT6, HOST6, TCP).build(&tcp(40000, 8080));
    let (verdict, _) = r.ns.run(|| run_xdp_on(&mut dp, &syn, r.uplink_ifindex));
    assert_eq!(verdict, XDP_REDIRECT);
    // The reply as it left the host (from the published address), too big for a link on the
    // way: the router there says so to the host's address.
    let reply = Frame6::new(HOST6, CLIENT6, TCP).build(&tcp(8080, 40000));
    let ptb = packet_too_big("2001:db8::fe", HOST6, &reply, 1280);
    for xdp in [true, false] {
        let (verdict, out) = if xdp {
            r.ns.run(|| run_xdp_on(&mut dp, &ptb, r.uplink_ifindex))
        } else {
            r.ns.run(|| run_tc(&mut dp, programs::UPLINK_TC, &ptb, r.uplink_ifindex))
        };
        let want = if xdp { XDP_REDIRECT } else { TC_ACT_REDIRECT };
        assert_eq!(verdict, want, "xdp {xdp}");
        let (src, dst, _, _) = addrs_ports(&out);
        assert_eq!((src, dst), (v6("2001:db8::fe"), v6(EP)), "to the endpoint");
        assert_eq!(&out[58..62], &1280u32.to_be_bytes(), "the MTU kept");
        // What it carries is the reply as the endpoint sent it.
        let inner = &out[62..];
        let a = |at: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&inner[at..at + 16]).unwrap());
        assert_eq!((a(8), a(24)), (v6(EP), v6(CLIENT6)));
        assert_eq!(u16::from_be_bytes([inner[40], inner[41]]), 80);
        assert!(
            checksum_ok6(&out),
            "the ICMPv6 checksum of the translated error"
        );
        let seen = Seen(&out);
        assert_eq!((seen.src_mac(), seen.dst_mac()), (GW_MAC, EP_MAC));
    }
    assert_eq!(dp.counter(Counter::IcmpErrorBack), 2);
    // About a flow netpath never saw: the host's own business.
    let stranger = Frame6::new(HOST6, CLIENT6, TCP).build(&tcp(8080, 40009));
    let ptb = packet_too_big("2001:db8::fe", HOST6, &stranger, 1280);
    let (verdict, out) = r.ns.run(|| run_xdp_on(&mut dp, &ptb, r.uplink_ifindex));
    assert_eq!((verdict, &out), (XDP_PASS, &ptb));
}

#[test]
fn an_endpoints_icmpv6_error_reaches_the_client_from_the_port_it_used() {
    let (Dp { mut dp, _fs }, r) = published_endpoint();
    let (redirected, delivered) = client_to_8080(&mut dp, &r, 40000, true);
    assert!(redirected);
    // The endpoint refuses it (port unreachable), about the packet as it got it.
    let mut body = vec![1, 4, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&delivered[14..]);
    let mut e = Frame6::new(EP, CLIENT6, ICMPV6);
    e.src_mac = EP_MAC;
    e.dst_mac = GW_MAC;
    let err = e.build(&body);
    let (verdict, out) =
        r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &err, r.endpoint_ifindex));
    assert_eq!(
        verdict, TC_ACT_REDIRECT,
        "sent back the way the client came"
    );
    let (src, dst, _, _) = addrs_ports(&out);
    assert_eq!((src, dst), (v6(HOST6), v6(CLIENT6)));
    assert!(
        checksum_ok6(&out),
        "the ICMPv6 checksum of the translated error"
    );
    // What it carries is the client's packet as the client sent it.
    let inner = &out[62..];
    let a = |at: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&inner[at..at + 16]).unwrap());
    assert_eq!((a(8), a(24)), (v6(CLIENT6), v6(HOST6)));
    assert_eq!(u16::from_be_bytes([inner[40], inner[41]]), 40000);
    assert_eq!(u16::from_be_bytes([inner[42], inner[43]]), 8080);
    assert_eq!(dp.counter(Counter::IcmpErrorOut), 1);
}

#[test]
fn an_ipv6_ip_block_lets_its_clients_reach_a_published_port_and_no_one_else() {
    let (Dp { mut dp, _fs }, r) = published_endpoint();
    const EP_ID: u32 = 300;
    let block = netpath_common::identity::FIRST_OF_CIDRS;
    let mut c = Compiled::default();
    c.ipcache
        .insert(Subnet::new(EP4.into(), 32).unwrap(), EP_ID);
    c.ipcache6.insert("2001:db8::/64".parse().unwrap(), block);
    c.subjects.insert(EP_ID, u32::from(direction::INGRESS));
    let key = PolicyKey::new(direction::INGRESS, EP_ID, block, TCP, 80);
    c.rules.insert((key, PolicyKey::PORT), 1);
    dp.set_policy(&c).unwrap();
    for (client, want) in [
        (CLIENT6, XDP_REDIRECT),
        ("2001:db8:0:1::5", XDP_DROP),
        ("2001:db9::5", XDP_DROP),
    ] {
        let syn = Frame6::new(client, HOST6, TCP).build(&tcp(40000, 8080));
        let (verdict, _) = r.ns.run(|| run_xdp_on(&mut dp, &syn, r.uplink_ifindex));
        assert_eq!(verdict, want, "{client}");
    }
    // The block gone from the policy: its clients' flows end, and they are refused.
    c.rules.clear();
    c.ipcache6.clear();
    assert_eq!(dp.set_policy(&c).unwrap(), 1, "the block's flow ended");
    let syn = Frame6::new(CLIENT6, HOST6, TCP).build(&tcp(40000, 8080));
    let (verdict, _) = r.ns.run(|| run_xdp_on(&mut dp, &syn, r.uplink_ifindex));
    assert_eq!(verdict, XDP_DROP);
}

/// The endpoint (its IPv4 address `EP4` alone) on network 1 (IPv4 alone), its port 80
/// published on `[::]:8080` for each of `protos`: reached by NAT46; `HOST6` the host's address.
fn nat46_endpoint(protos: &[u8]) -> (Dp, RoutedNs) {
    let Dp { mut dp, _fs } = load();
    let r = RoutedNs::new();
    network(&mut dp, 1, "172.17.0.0/16", None, false);
    attach(&mut dp, r.endpoint_ifindex, EP4, None, EP_MAC, GW_MAC, 1);
    let to = (In6::mapped(be_addr(Ipv4Addr::from(EP4))), 80);
    for &proto in protos {
        publish_to(
            &mut dp,
            (In6::default(), 8080, proto),
            to,
            r.endpoint_ifindex,
        );
    }
    dp.set_host_addrs6(&[v6(HOST6)].into()).unwrap();
    (Dp { dp, _fs }, r)
}

/// NAT46: an IPv6 client of a port published on `[::]` whose endpoint has IPv4 alone reaches
/// it as IPv4 from its gateway and a port of outbound NAT's range, one per flow, every
/// checksum right; the endpoint's reply leaves as IPv6 from the published address and port,
/// to the client's. On XDP and TC; TCP and UDP.
#[test]
fn nat46_takes_ipv6_clients_to_an_ipv4_endpoint_and_back_on_xdp_and_tc() {
    let (Dp { mut dp, _fs }, r) = nat46_endpoint(&[TCP, UDP]);
    let gateway = Ipv4Addr::new(172, 17, 0, 1);
    let mut given = Vec::new();
    for (i, (proto, xdp)) in [(TCP, true), (TCP, false), (UDP, true), (UDP, false)]
        .into_iter()
        .enumerate()
    {
        let client_port = 41000 + i as u16;
        let l4 = |s, d| if proto == TCP { tcp(s, d) } else { udp(s, d) };
        let pkt = Frame6::new(CLIENT6, HOST6, proto).build(&l4(client_port, 8080));
        let (verdict, out) = if xdp {
            r.ns.run(|| run_xdp_on(&mut dp, &pkt, r.uplink_ifindex))
        } else {
            r.ns.run(|| run_tc(&mut dp, programs::UPLINK_TC, &pkt, r.uplink_ifindex))
        };
        let want = if xdp { XDP_REDIRECT } else { TC_ACT_REDIRECT };
        assert_eq!(verdict, want, "proto {proto} xdp {xdp}");
        assert_eq!(out.len(), pkt.len() - 20, "IPv4's header, 20 bytes shorter");
        let seen = Seen(&out);
        assert!(
            seen.checksums_ok(),
            "IPv4 and L4 checksums, proto {proto} xdp {xdp}"
        );
        assert_eq!((seen.src(), seen.dst()), (gateway, Ipv4Addr::from(EP4)));
        assert_eq!(seen.dport(), 80);
        let port = seen.sport();
        assert!((40000..60000).contains(&port), "{port}");
        assert_eq!((seen.src_mac(), seen.dst_mac()), (GW_MAC, EP_MAC));
        assert_eq!(seen.ttl(), 64, "the client's hop limit");
        given.push(port);

        // The endpoint's reply, to its gateway and that port, leaves as IPv6.
        let mut reply = common::Frame::new(EP4, gateway.octets(), proto);
        reply.src_mac = EP_MAC;
        reply.dst_mac = GW_MAC;
        let reply = reply.build(&l4(80, port));
        let (verdict, out) =
            r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &reply, r.endpoint_ifindex));
        assert_eq!(verdict, TC_ACT_REDIRECT, "proto {proto} xdp {xdp}");
        assert_eq!(out.len(), reply.len() + 20);
        assert_eq!(&out[12..14], &[0x86, 0xdd]);
        assert_eq!(
            addrs_ports(&out),
            (v6(HOST6), v6(CLIENT6), 8080, client_port)
        );
        assert!(checksum_ok6(&out), "the reply's checksum, proto {proto}");
    }
    given.sort_unstable();
    given.dedup();
    assert_eq!(given.len(), 4, "a port per flow: {given:?}");
    assert_eq!(dp.counter(Counter::Nat46), 4);
    assert_eq!(dp.counter(Counter::Nat46Reply), 4);
    assert_eq!(dp.nat46_flows().len(), 4);
    assert_eq!(dp.nat46_replies().len(), 4);

    // Another port to the gateway is no NAT46 flow's reply: the host's, untouched.
    let mut other = common::Frame::new(EP4, gateway.octets(), TCP);
    other.src_mac = EP_MAC;
    other.dst_mac = GW_MAC;
    let other = other.build(&tcp(80, 45000));
    let (verdict, out) =
        r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &other, r.endpoint_ifindex));
    assert_eq!((verdict, &out), (TC_ACT_OK, &other));
    // Unpublished (flows flushed with it), the port answers no IPv6 client.
    let flushed = dp.flush_flows_of_any(
        r.endpoint_ifindex,
        &[PortKey {
            addr: In6::default(),
            port: be_port(8080),
            proto: TCP,
            _pad: 0,
        }],
    );
    assert_eq!(flushed, 2, "both TCP flows");
    assert_eq!(dp.nat46_replies().len(), 2);
}

/// A NAT46 flow of `proto` from `CLIENT6` port 41000 to `HOST6:8080`, begun through the
/// uplink's XDP program: the gateway's port it was given.
fn nat46_flow(dp: &mut Datapath, r: &RoutedNs, proto: u8) -> u16 {
    let l4 = if proto == TCP {
        tcp(41000, 8080)
    } else {
        udp(41000, 8080)
    };
    let pkt = Frame6::new(CLIENT6, HOST6, proto).build(&l4);
    let (verdict, out) = r.ns.run(|| run_xdp_on(dp, &pkt, r.uplink_ifindex));
    assert_eq!(verdict, XDP_REDIRECT);
    Seen(&out).sport()
}

/// A router's ICMPv6 error about a NAT46 flow's reply reaches the IPv4 endpoint as its ICMPv4
/// twin (RFC 7915): Packet Too Big as fragmentation needed, the MTU 20 bytes smaller, from the
/// gateway, carrying the endpoint's own packet as it sent it (its sequence number kept), every
/// checksum right; time exceeded as time exceeded. On XDP and TC. An error about a flow
/// NAT46 never made, or of a kind not translated, is the host's.
#[test]
fn icmpv6_errors_about_a_nat46_reply_reach_the_ipv4_endpoint_as_icmpv4() {
    let (Dp { mut dp, _fs }, r) = nat46_endpoint(&[TCP]);
    let gateway = Ipv4Addr::new(172, 17, 0, 1);
    let port = nat46_flow(&mut dp, &r, TCP);
    // The endpoint's reply as it left the host, too big for a link on the way.
    let reply = Frame6::new(HOST6, CLIENT6, TCP).build(&tcp(8080, 41000));
    let seq = &reply[54 + 4..54 + 8];
    let error6 = |kind: u8, code: u8, mtu: u32| {
        let mut body = vec![kind, code, 0, 0];
        body.extend_from_slice(&mtu.to_be_bytes());
        body.extend_from_slice(&reply[14..]);
        Frame6::new("2001:db8::fe", HOST6, ICMPV6).build(&body)
    };
    let run = |dp: &mut Datapath, pkt: &[u8], xdp: bool| {
        let (verdict, out) = if xdp {
            r.ns.run(|| run_xdp_on(dp, pkt, r.uplink_ifindex))
        } else {
            r.ns.run(|| run_tc(dp, programs::UPLINK_TC, pkt, r.uplink_ifindex))
        };
        let redirected = verdict == if xdp { XDP_REDIRECT } else { TC_ACT_REDIRECT };
        (redirected, out)
    };
    for (kind, code, mtu, want) in [(2u8, 0u8, 1280u32, [3u8, 4]), (3, 0, 0, [11, 0])] {
        for xdp in [true, false] {
            let what = format!("ICMPv6 {kind}/{code}, xdp {xdp}");
            let (redirected, out) = run(&mut dp, &error6(kind, code, mtu), xdp);
            assert!(redirected, "{what}");
            assert_eq!(out.len(), 14 + 20 + 8 + 20 + 8, "{what}: all ICMPv4 asks");
            assert_eq!(&out[12..14], &[0x08, 0x00], "{what}");
            let seen = Seen(&out);
            assert!(seen.checksums_ok(), "{what}: IPv4 and ICMP checksums");
            assert_eq!((seen.src(), seen.dst()), (gateway, Ipv4Addr::from(EP4)));
            assert_eq!((seen.src_mac(), seen.dst_mac()), (GW_MAC, EP_MAC));
            let icmp = &out[34..];
            assert_eq!(&icmp[..2], &want, "{what}");
            if kind == 2 {
                assert_eq!(&icmp[6..8], &1260u16.to_be_bytes(), "the MTU less 20");
            }
            // What it carries: the endpoint's packet, as the endpoint sent it.
            let inner = &icmp[8..];
            assert_eq!(common::inet_checksum(&[&inner[..20]]), 0, "{what}");
            assert_eq!(inner[9], TCP);
            assert_eq!(&inner[12..16], &EP4, "{what}: from the endpoint");
            assert_eq!(&inner[16..20], &gateway.octets(), "{what}: to its gateway");
            assert_eq!(&inner[20..22], &80u16.to_be_bytes());
            assert_eq!(
                &inner[22..24],
                &port.to_be_bytes(),
                "{what}: the flow's port"
            );
            assert_eq!(&inner[24..28], seq, "{what}: the sequence number kept");
        }
    }
    assert_eq!(dp.counter(Counter::IcmpErrorBack), 4);
    // A parameter problem pointing into the header is not translated; an error about a
    // client flow never made is not NAT46's: both the host's, untouched.
    let stranger = {
        let reply = Frame6::new(HOST6, CLIENT6, TCP).build(&tcp(8080, 41009));
        let mut body = vec![2, 0, 0, 0, 0, 0, 5, 0];
        body.extend_from_slice(&reply[14..]);
        Frame6::new("2001:db8::fe", HOST6, ICMPV6).build(&body)
    };
    for pkt in [error6(4, 0, 8), stranger] {
        let (verdict, out) = r.ns.run(|| run_xdp_on(&mut dp, &pkt, r.uplink_ifindex));
        assert_eq!((verdict, &out), (XDP_PASS, &pkt));
    }
    assert_eq!(dp.counter(Counter::IcmpErrorBack), 4);
}

/// An IPv4-only endpoint's reply to an IPv6 client that would not fit the uplink once made
/// IPv6 (20 bytes longer), with don't fragment set, is answered as a router on the way would
/// answer it: fragmentation needed, back to the endpoint from its gateway, with the uplink's
/// MTU less 20, quoting the reply's header and first 8 bytes. A reply that fits is translated.
#[test]
fn a_nat46_reply_too_big_for_the_uplink_gets_fragmentation_needed_back() {
    let (Dp { mut dp, _fs }, r) = nat46_endpoint(&[UDP]);
    let gateway = Ipv4Addr::new(172, 17, 0, 1);
    let port = nat46_flow(&mut dp, &r, UDP);
    // The endpoint's reply of `len` payload bytes, don't fragment set (the header's sum kept).
    let reply = |len: usize| {
        let mut f = common::Frame::new(EP4, gateway.octets(), UDP);
        f.src_mac = EP_MAC;
        f.dst_mac = GW_MAC;
        let mut f = f.build(&common::udp_with(80, port, &vec![7u8; len]));
        f[20] |= 0x40;
        f[24..26].fill(0);
        let c = common::inet_checksum(&[&f[14..34]]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    };
    // 1,500 bytes as IPv4, 1,520 as IPv6: past the uplink's 1,500.
    let big = reply(1472);
    let (verdict, out) =
        r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &big, r.endpoint_ifindex));
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(out.len(), 14 + 20 + 8 + 20 + 8, "all ICMPv4 asks");
    let seen = Seen(&out);
    assert!(seen.checksums_ok(), "IPv4 and ICMP checksums");
    assert_eq!((seen.src(), seen.dst()), (gateway, Ipv4Addr::from(EP4)));
    assert_eq!((seen.src_mac(), seen.dst_mac()), (GW_MAC, EP_MAC));
    assert_eq!(&out[34..36], &[3, 4], "fragmentation needed");
    assert_eq!(
        &out[40..42],
        &1480u16.to_be_bytes(),
        "the uplink's MTU less 20"
    );
    assert_eq!(
        &out[42..70],
        &big[14..42],
        "the reply's header and first 8 bytes"
    );
    assert_eq!(dp.counter(Counter::IcmpErrorBack), 1);
    assert_eq!(dp.counter(Counter::Nat46Reply), 0);
    // 1,480 bytes as IPv4 fits as IPv6: translated.
    let fits = reply(1452);
    let (verdict, out) =
        r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &fits, r.endpoint_ifindex));
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(out.len(), fits.len() + 20);
    assert_eq!(&out[12..14], &[0x86, 0xdd]);
    assert_eq!(dp.counter(Counter::Nat46Reply), 1);
}

/// Under a flood NAT46's flows are asked as published flows are: a flow seen lately goes on
/// with no look at the guard, a new one waits for the guard; a flow the guard lets through
/// during the flood is recorded but not marked seen, so its next packet waits for the guard
/// once more (and keeps its port then: the flow found, not made anew), and from then on it
/// goes on. On XDP and TC.
#[test]
fn under_a_flood_nat46_flows_seen_lately_go_on_and_flows_begun_in_it_earn_their_place() {
    pin_to_this_cpu();
    let (Dp { mut dp, _fs }, r) = nat46_endpoint(&[TCP]);
    dp.set_new_flow_rate(1).unwrap();
    let through = |dp: &mut Datapath, sport: u16, xdp: bool| {
        let pkt = Frame6::new(CLIENT6, HOST6, TCP).build(&tcp(sport, 8080));
        if xdp {
            r.ns.run(|| run_xdp_on(dp, &pkt, r.uplink_ifindex)).0 == XDP_REDIRECT
        } else {
            r.ns.run(|| run_tc(dp, programs::UPLINK_TC, &pkt, r.uplink_ifindex))
                .0
                == TC_ACT_REDIRECT
        }
    };
    let recorded = |dp: &Datapath, sport: u16| {
        dp.nat46_flows()
            .into_iter()
            .find(|(k, _)| k.src_port == be_port(sport))
            .map(|(_, n)| n)
    };
    // Made at once (the burst), and the flood is on: the next new flow is a second away.
    assert!(through(&mut dp, 41000, true));
    let flows = common::FloodFlows {
        through,
        made_goes_on: |dp: &mut Datapath| assert!(through(dp, 41000, true), "it goes on"),
        recent: |dp: &Datapath, sport: u16| recorded(dp, sport).map(|n| n.recent),
    };
    let (late, tries) = flows.begun_in_the_flood(&mut dp, 41000, 42000);
    assert_eq!(dp.counter(Counter::DropNewFlowRate), tries);
    let port = recorded(&dp, late).unwrap().port;
    let refused = flows.refused_until_let_through(&mut dp, late);
    assert_eq!(dp.counter(Counter::DropNewFlowRate), tries + refused);
    assert_eq!(
        recorded(&dp, late).unwrap().port,
        port,
        "the flow kept its port"
    );
    assert_eq!(
        dp.nat46_flows().len(),
        2 + usize::from(late - 42000),
        "one entry each"
    );
    assert_eq!(dp.nat46_replies().len(), dp.nat46_flows().len());
    // Seen now: it goes on through the flood, on both hooks, as the first does.
    for xdp in [true, false, true, false] {
        assert!((flows.through)(&mut dp, late, xdp), "seen, it goes on");
    }
    assert_eq!(dp.counter(Counter::DropNewFlowRate), tries + refused);
}

/// An IPv4-only endpoint's own ICMP error about a NAT46 client's packet (port unreachable:
/// nothing listens) reaches the IPv6 client as its ICMPv6 twin (RFC 7915): from the address
/// the client reached, out of the uplink it came in on, carrying the client's datagram as the
/// client sent it (its address and port to that address and port), every checksum right.
/// Fragmentation needed becomes Packet Too Big, 20 bytes larger. An error of a kind not
/// translated, or about no NAT46 flow, goes on to the host untouched.
#[test]
fn an_ipv4_endpoints_icmp_error_reaches_its_nat46_client_as_icmpv6() {
    let (Dp { mut dp, _fs }, r) = nat46_endpoint(&[UDP]);
    let gateway = Ipv4Addr::new(172, 17, 0, 1);
    let sent = Frame6::new(CLIENT6, HOST6, UDP).build(&common::udp_with(41000, 8080, b"hi"));
    let (verdict, delivered) = r.ns.run(|| run_xdp_on(&mut dp, &sent, r.uplink_ifindex));
    assert_eq!(verdict, XDP_REDIRECT);
    let port = Seen(&delivered).sport();
    // The endpoint's stack answers about the datagram as it got it (all of it, as Linux does).
    let error4 = |kind: u8, code: u8, rest: [u8; 4], about: &[u8]| {
        let mut body = vec![kind, code, 0, 0];
        body.extend_from_slice(&rest);
        body.extend_from_slice(&about[14..]);
        let c = common::inet_checksum(&[&body]);
        body[2..4].copy_from_slice(&c.to_be_bytes());
        let mut f = common::Frame::new(EP4, gateway.octets(), common::ICMP);
        f.src_mac = EP_MAC;
        f.dst_mac = GW_MAC;
        f.build(&body)
    };
    let client_mac = Frame6::new(CLIENT6, HOST6, UDP).src_mac;
    for (kind, code, rest, want) in [
        (3u8, 3u8, [0u8; 4], [1u8, 4, 0, 0, 0, 0]),
        (3, 4, [0, 0, 0x05, 0x00], [2, 0, 0, 0, 0x05, 0x14]),
    ] {
        let what = format!("ICMPv4 {kind}/{code}");
        let err = error4(kind, code, rest, &delivered);
        let (verdict, out) =
            r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &err, r.endpoint_ifindex));
        assert_eq!(verdict, TC_ACT_REDIRECT, "{what}: out to the client");
        assert_eq!(&out[12..14], &[0x86, 0xdd], "{what}");
        assert_eq!(
            &out[..6],
            &client_mac,
            "{what}: to the neighbour it came from"
        );
        assert_eq!(
            out.len(),
            14 + 40 + 8 + 40 + 8,
            "{what}: the header and 8 bytes"
        );
        assert_eq!(out[20], ICMPV6);
        let (src, dst, _, _) = addrs_ports(&out);
        assert_eq!(
            (src, dst),
            (v6(HOST6), v6(CLIENT6)),
            "{what}: from the address the client reached"
        );
        assert!(checksum_ok6(&out), "{what}: the ICMPv6 checksum");
        let icmp = &out[54..];
        assert_eq!((icmp[0], icmp[1]), (want[0], want[1]), "{what}");
        assert_eq!(&icmp[4..8], &want[2..], "{what}: the MTU, IPv6's");
        // What it carries is the client's datagram, as the client sent it (its own checksum
        // aside, which no stack reads in an error).
        let inner = &icmp[8..];
        assert_eq!(
            &inner[..8],
            &sent[14..22],
            "{what}: version, length, hop limit"
        );
        assert_eq!(
            &inner[8..46],
            &sent[22..60],
            "{what}: addresses, ports, length"
        );
    }
    assert_eq!(dp.counter(Counter::IcmpErrorOut), 2);
    // A parameter problem (its pointer would need translating), and an error about a port of
    // the gateway no NAT46 flow has: the host's, as they came.
    let mut stranger = delivered.clone();
    stranger[34..36].copy_from_slice(&(port ^ 1).to_be_bytes());
    for err in [
        error4(12, 0, [8, 0, 0, 0], &delivered),
        error4(3, 3, [0; 4], &stranger),
    ] {
        let (verdict, out) =
            r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &err, r.endpoint_ifindex));
        assert_eq!((verdict, &out), (TC_ACT_OK, &err));
    }
    assert_eq!(dp.counter(Counter::IcmpErrorOut), 2);
}

/// Network policy holds for NAT46's clients: an IPv6 client let in by a rule reaches the IPv4
/// endpoint; the rule gone, its flow is ended (both entries) and its next packet refused.
#[test]
fn network_policy_holds_for_nat46_clients_and_ends_their_flows() {
    let (Dp { mut dp, _fs }, r) = nat46_endpoint(&[TCP]);
    let mut c = world_to_port_80();
    dp.set_policy(&c).unwrap();
    let syn = Frame6::new(CLIENT6, HOST6, TCP).build(&tcp(40000, 8080));
    let (verdict, _) = r.ns.run(|| run_xdp_on(&mut dp, &syn, r.uplink_ifindex));
    assert_eq!(verdict, XDP_REDIRECT, "port 80 is let in");
    assert_eq!(dp.nat46_replies().len(), 1);
    c.rules.clear();
    assert_eq!(dp.set_policy(&c).unwrap(), 1, "the NAT46 flow ended");
    assert!(dp.nat46_flows().is_empty() && dp.nat46_replies().is_empty());
    let (verdict, _) = r.ns.run(|| run_xdp_on(&mut dp, &syn, r.uplink_ifindex));
    assert_eq!(verdict, XDP_DROP, "no rule lets the world in");
    assert_eq!(counter(&dp, Counter::DropPolicy), 1, "counted once");
}

/// Network 1's state with the endpoint ("client") and its peer ("peer", alias "svc"), dual
/// stack: what the agent's server answers from, and the fast path's names as the agent
/// writes them.
fn dns_state(dp: &mut Datapath, net: Network) -> netpath_user::model::State {
    use netpath_user::{model::State, testing::dns::endpoint_record};
    let mut state = State::default();
    for (name, ip, ip6, aliases) in [
        ("client", EP4, EP, vec![]),
        ("peer", PEER4, PEER, vec!["svc".to_string()]),
    ] {
        let ep = endpoint_record(name, &net.name, (ip.into(), Some(v6(ip6))), EP_MAC, aliases);
        state.endpoints.insert(name.into(), ep);
    }
    state.networks.insert(net.name.clone(), net);
    let index = netpath_user::dns::names::Index::new(&state);
    dp.set_dns_names(&netpath_user::dns::names::kernel_names(&state, &index))
        .unwrap();
    state
}

/// An IPv6 DNS query to the network's IPv6 gateway is answered in the kernel (its own tail
/// program) with the bytes the agent's server writes and UDP's checksum right (mandatory over
/// IPv6), A and AAAA, for names of even and odd length (the answers at an even or an odd
/// offset of the checksum); what the fast path does not know goes on untouched.
#[test]
fn the_kernel_answers_ipv6_queries_to_the_gateway_as_the_server_does() {
    use hickory_proto::rr::RecordType;
    use netpath_user::{
        dns::{answer, names::Index},
        testing::dns::query_bytes,
    };
    let Dp { mut dp, _fs } = load();
    let r = RoutedNs::new();
    let net = network(&mut dp, 1, "172.17.0.0/16", Some("fd00:1::/64"), false);
    attach_endpoint(&mut dp, &r);
    let state = dns_state(&mut dp, net);
    let index = Index::new(&state);
    let query = |id, name: &str, qtype, dst: &str| {
        let q = query_bytes(id, name, qtype);
        let mut f = Frame6::new(EP, dst, UDP);
        f.src_mac = EP_MAC;
        f.dst_mac = GW_MAC;
        (q.clone(), f.build(&common::udp_with(40000, 53, &q)))
    };
    let asks = [
        ("peer", RecordType::AAAA),
        ("Peer", RecordType::A),
        ("svc", RecordType::AAAA),
        ("svc", RecordType::A),
    ];
    for (id, (name, qtype)) in asks.into_iter().enumerate() {
        let (q, pkt) = query(id as u16, name, qtype, GW);
        let (verdict, out) =
            r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, r.endpoint_ifindex));
        assert_eq!(
            verdict, TC_ACT_REDIRECT,
            "{name} {qtype}: back into the endpoint"
        );
        assert_eq!(
            addrs_ports(&out),
            (v6(GW), v6(EP), 53, 40000),
            "{name} {qtype}"
        );
        assert_eq!((&out[6..12], &out[0..6]), (&GW_MAC[..], &EP_MAC[..]));
        assert!(checksum_ok6(&out), "{name} {qtype}: UDP checksum");
        let server = answer::decide(
            &q,
            answer::Asked {
                names: &index,
                from: v6(EP).into(),
                network: "n1",
                rotate: 0,
                udp: true,
            },
        );
        assert_eq!(server.outcome, answer::Outcome::Local, "{name} {qtype}");
        assert_eq!(
            &out[62..],
            &server.reply.unwrap()[..],
            "{name} {qtype}: the same bytes as the server's"
        );
    }
    assert_eq!(counter(&dp, Counter::DnsKernel), 4);
    for (what, (_, pkt)) in [
        ("unknown name", query(9, "nobody", RecordType::AAAA, GW)),
        ("another server", query(10, "peer", RecordType::AAAA, PEER)),
    ] {
        let (verdict, out) =
            r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, r.endpoint_ifindex));
        assert_ne!(
            verdict, TC_ACT_REDIRECT,
            "{what}: not answered in the kernel"
        );
        assert_eq!(out, pkt, "{what}: untouched");
    }
    assert_eq!(counter(&dp, Counter::DnsKernel), 4);
}
