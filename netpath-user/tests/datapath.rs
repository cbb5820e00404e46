//! BPF_PROG_TEST_RUN tests: crafted frames into the real programs, exact verdicts and bytes
//! out, checksums verified from scratch by `common::inet_checksum`.
mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::{
    load, pin_to_this_cpu, run_tc, run_xdp, run_xdp_on, tcp, udp, Dp, Frame, Netns, RoutedNs,
    ScratchBpffs, Seen, ICMP, TCP, UDP,
};
use netpath_common::{
    direction, identity, Counter, FlowNat, PolicyKey, PortKey, PortTarget, STAMP_JIFFIES,
};
use netpath_user::{
    datapath::{be_addr, be_port, flow_key, programs, AttachmentEntry, Datapath, MapSizes},
    ipam::Subnet,
    model::Network,
    policy::{Compiled, PublishedFrom},
};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const XDP_PASS: u32 = 2;
const XDP_DROP: u32 = 1;
const XDP_REDIRECT: u32 = 4;

const HOST: [u8; 4] = [10, 0, 0, 2];
const CLIENT: [u8; 4] = [10, 0, 0, 1];
const EP: [u8; 4] = [172, 17, 0, 2];
const EP_MAC: [u8; 6] = [0x02, 0x42, 172, 17, 0, 2];
const GW_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 0x99];
const EP_IFINDEX: u32 = 4242;

fn publish(
    dp: &mut Datapath,
    host: [u8; 4],
    host_port: u16,
    proto: u8,
    ep_port: u16,
    ifindex: u32,
) {
    dp.publish(
        PortKey {
            addr: be_addr(Ipv4Addr::from(host)),
            port: be_port(host_port),
            proto,
            _pad: 0,
        },
        PortTarget {
            addr: be_addr(Ipv4Addr::from(EP)),
            port: be_port(ep_port),
            stats: 0,
            ifindex,
            mac: EP_MAC,
            gw_mac: GW_MAC,
            host: Default::default(),
        },
    )
    .unwrap();
}

fn host_addrs(dp: &mut Datapath, addrs: &[[u8; 4]]) {
    let set = addrs.iter().map(|a| Ipv4Addr::from(*a)).collect();
    dp.set_host_addrs(&set).unwrap();
}

fn counter(dp: &Datapath, c: Counter) -> u64 {
    dp.counter(c)
}

/// Writes an attachment of an endpoint (`ip`, `mac`) behind host-side veth `ifindex`.
fn attach(
    dp: &mut Datapath,
    ifindex: u32,
    ip: Ipv4Addr,
    mac: [u8; 6],
    host_mac: [u8; 6],
    net_id: u32,
) -> Result<(), netpath_user::datapath::DatapathError> {
    dp.add_attachment(&AttachmentEntry {
        ifindex,
        ip,
        ip6: None,
        mac,
        host_mac,
        net_id,
    })
}

fn flow(dp: &Datapath, ep_port: u16, client_port: u16, proto: u8) -> Option<FlowNat> {
    dp.flow(&flow_key(
        (Ipv4Addr::from(EP), ep_port),
        (Ipv4Addr::from(CLIENT), client_port),
        proto,
    ))
}

fn assert_dnat(pkt: &[u8], out: &[u8], ep_port: u16) {
    let seen = Seen(out);
    assert_eq!(out.len(), pkt.len());
    assert_eq!(seen.dst(), Ipv4Addr::from(EP), "destination translated");
    assert_eq!(seen.dport(), ep_port);
    assert_eq!(seen.src(), Ipv4Addr::from(CLIENT), "client address kept");
    assert_eq!(seen.sport(), Seen(pkt).sport());
    assert_eq!(seen.dst_mac(), EP_MAC);
    assert_eq!(seen.src_mac(), GW_MAC);
    assert!(seen.checksums_ok(), "checksums");
    // Everything past the ports is untouched but the checksum.
    let csum_at = if pkt[23] == TCP { 50 } else { 40 };
    assert_eq!(pkt[38..csum_at], out[38..csum_at]);
    assert_eq!(pkt[csum_at + 2..], out[csum_at + 2..]);
}

/// A datapath with each `(host_port, proto, port)` published on every host address (HOST is
/// one) to `port` of the endpoint behind EP_IFINDEX.
fn published(ports: &[(u16, u8, u16)]) -> Dp {
    let Dp { mut dp, _fs } = load();
    for &(host_port, proto, port) in ports {
        publish(&mut dp, [0; 4], host_port, proto, port, EP_IFINDEX);
    }
    host_addrs(&mut dp, &[HOST]);
    Dp { dp, _fs }
}

/// `l4` from CLIENT to HOST through the uplink's TC program: redirected to the endpoint and
/// translated to `ep_port`. The packet sent and the one that came out.
fn tc_dnat(dp: &mut Datapath, proto: u8, l4: &[u8], ep_port: u16) -> (Vec<u8>, Vec<u8>) {
    let pkt = Frame::new(CLIENT, HOST, proto).build(l4);
    let (verdict, out) = run_tc(dp, programs::UPLINK_TC, &pkt, 0);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_dnat(&pkt, &out, ep_port);
    (pkt, out)
}

#[test]
fn tc_dnat_tcp_to_published_port() {
    let Dp { mut dp, _fs } = published(&[(8080, TCP, 80)]);
    tc_dnat(&mut dp, TCP, &tcp(40000, 8080), 80);
    let nat = flow(&dp, 80, 40000, TCP).expect("flow recorded");
    assert_eq!(nat.addr, be_addr(Ipv4Addr::from(HOST)));
    assert_eq!(nat.port, be_port(8080));
    assert_eq!(nat.ifindex, EP_IFINDEX);
    assert_eq!(counter(&dp, Counter::DnatTc), 1);
}

#[test]
fn tc_dnat_udp_and_zero_checksum() {
    let Dp { mut dp, _fs } = published(&[(5353, UDP, 53)]);
    let (mut pkt, _) = tc_dnat(&mut dp, UDP, &udp(40001, 5353), 53);

    // A UDP datagram without checksum stays without one.
    pkt[40..42].fill(0);
    let (verdict, out) = run_tc(&mut dp, programs::UPLINK_TC, &pkt, 0);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(Seen(&out).l4_csum(), 0);
    assert!(Seen(&out).checksums_ok());
}

#[test]
fn xdp_and_tc_rewrite_identically() {
    let Dp { mut dp, _fs } = published(&[(8080, TCP, 80), (5353, UDP, 53)]);
    for pkt in [
        Frame::new(CLIENT, HOST, TCP).build(&tcp(40000, 8080)),
        Frame::new(CLIENT, HOST, UDP).build(&udp(40001, 5353)),
    ] {
        let (xv, xout) = run_xdp(&mut dp, &pkt);
        let (tv, tout) = run_tc(&mut dp, programs::UPLINK_TC, &pkt, 0);
        assert_eq!(xv, XDP_REDIRECT);
        assert_eq!(tv, TC_ACT_REDIRECT);
        assert_eq!(xout, tout, "XDP and TC produce the same frame");
        assert!(Seen(&xout).checksums_ok());
    }
    assert_eq!(counter(&dp, Counter::DnatXdp), 2);
}

#[test]
fn the_published_ports_firewall_lets_in_only_its_list_on_xdp_and_tc() {
    const XDP_DROP: u32 = 1;
    let Dp { mut dp, _fs } = published(&[(8080, TCP, 80), (5353, UDP, 53)]);
    let outsider = [192, 0, 2, 9];
    // A connection of a client the list will leave out, made while there is no list.
    let old = Frame::new(outsider, HOST, TCP).build(&tcp(40009, 8080));
    assert_eq!(
        run_tc(&mut dp, programs::UPLINK_TC, &old, 0).0,
        TC_ACT_REDIRECT
    );
    let key = flow_key(
        (Ipv4Addr::from(EP), 80),
        (Ipv4Addr::from(outsider), 40009),
        TCP,
    );
    assert!(dp.flow(&key).is_some());

    let list: PublishedFrom = "10.0.0.0/24".parse().unwrap();
    assert_eq!(
        dp.set_published_from(&list).unwrap(),
        1,
        "the outsider's flow went"
    );
    assert!(dp.flow(&key).is_none());
    for (l4, proto) in [(tcp(40010, 8080), TCP), (udp(40011, 5353), UDP)] {
        let inside = Frame::new(CLIENT, HOST, proto).build(&l4);
        assert_eq!(run_xdp(&mut dp, &inside).0, XDP_REDIRECT);
        assert_eq!(
            run_tc(&mut dp, programs::UPLINK_TC, &inside, 0).0,
            TC_ACT_REDIRECT
        );
        let outside = Frame::new(outsider, HOST, proto).build(&l4);
        assert_eq!(run_xdp(&mut dp, &outside).0, XDP_DROP);
        assert_eq!(
            run_tc(&mut dp, programs::UPLINK_TC, &outside, 0).0,
            TC_ACT_SHOT
        );
    }
    // Its established connection stopped too: its next packet is a new flow, refused.
    assert_eq!(run_tc(&mut dp, programs::UPLINK_TC, &old, 0).0, TC_ACT_SHOT);
    assert_eq!(counter(&dp, Counter::DropFirewall), 5);
    // Unpublished ports and the host's own traffic are not the list's business.
    let other = Frame::new(outsider, HOST, TCP).build(&tcp(40012, 22));
    assert_eq!(run_xdp(&mut dp, &other).0, XDP_PASS);

    // The list widened, then gone: everyone again.
    dp.set_published_from(&"10.0.0.0/24,192.0.2.0/24".parse().unwrap())
        .unwrap();
    assert_eq!(run_xdp(&mut dp, &old).0, XDP_REDIRECT);
    dp.set_published_from(&PublishedFrom::default()).unwrap();
    let far = Frame::new([198, 51, 100, 1], HOST, TCP).build(&tcp(40013, 8080));
    assert_eq!(run_xdp(&mut dp, &far).0, XDP_REDIRECT);
    assert_eq!(counter(&dp, Counter::DropFirewall), 5);
}

/// The flood guard, at one new flow a second: past it a new published flow is dropped and
/// counted, on XDP and TC alike, while the flow made before goes on; at 0, no limit again.
#[test]
fn new_flows_past_the_cpus_rate_are_dropped_while_made_flows_go_on() {
    pin_to_this_cpu();
    // Container port 80 on two host ports: every flow is kept (its replies say which).
    let Dp { mut dp, _fs } = published(&[(8080, TCP, 80), (8081, TCP, 80)]);
    let made = Frame::new(CLIENT, HOST, TCP).build(&tcp(40000, 8080));
    assert_eq!(run_xdp(&mut dp, &made).0, XDP_REDIRECT);
    assert_eq!(dp.new_flow_rate(), 0, "no limit until one is set");
    dp.set_new_flow_rate(1).unwrap();
    assert_eq!(dp.new_flow_rate(), 1);
    let start = std::time::Instant::now();
    let mut admitted = 0u64;
    for sport in 41000..41100u16 {
        let pkt = Frame::new(CLIENT, HOST, TCP).build(&tcp(sport, 8081));
        let through = if sport % 2 == 0 {
            run_xdp(&mut dp, &pkt).0 == XDP_REDIRECT
        } else {
            run_tc(&mut dp, programs::UPLINK_TC, &pkt, 0).0 == TC_ACT_REDIRECT
        };
        assert_eq!(flow(&dp, 80, sport, TCP).is_some(), through, "port {sport}");
        admitted += u64::from(through);
        let (verdict, out) = run_xdp(&mut dp, &made);
        assert_eq!(verdict, XDP_REDIRECT, "the made flow goes on");
        assert_dnat(&made, &out, 80);
    }
    // The first at once, then one a second: what the time taken allows.
    let allowed = 1 + start.elapsed().as_secs_f64().ceil() as u64;
    assert!(
        (1..=allowed).contains(&admitted),
        "{admitted} new flows admitted, {allowed} allowed"
    );
    assert_eq!(counter(&dp, Counter::DropNewFlowRate), 100 - admitted);
    assert_eq!(dp.flow_count() as u64, 1 + admitted);

    dp.set_new_flow_rate(0).unwrap();
    for sport in 42000..42010u16 {
        let pkt = Frame::new(CLIENT, HOST, TCP).build(&tcp(sport, 8081));
        assert_eq!(run_xdp(&mut dp, &pkt).0, XDP_REDIRECT);
    }
    assert_eq!(counter(&dp, Counter::DropNewFlowRate), 100 - admitted);
}

/// Under a flood (a CPU that spent most of its burst of new flows), the table is not asked
/// about flows not seen lately: a flow seen lately goes on, a new one waits for the guard as
/// ever. A flow the guard lets through during the flood is recorded but not marked seen (the
/// flood's own frames would fill the marks): its next packet is refused as a new flow would
/// be, until the guard lets one more through, and from then on it goes on.
#[test]
fn under_a_flood_flows_seen_lately_go_on_and_flows_begun_in_it_earn_their_place() {
    pin_to_this_cpu();
    let Dp { mut dp, _fs } = published(&[(8080, TCP, 80), (8081, TCP, 80)]);
    dp.set_new_flow_rate(1).unwrap();
    // Made at once (the burst), and the flood is on: the next new flow is a second away.
    let made = Frame::new(CLIENT, HOST, TCP).build(&tcp(40000, 8080));
    assert_eq!(run_xdp(&mut dp, &made).0, XDP_REDIRECT);
    let through = |dp: &mut Datapath, sport: u16, xdp: bool| {
        let pkt = Frame::new(CLIENT, HOST, TCP).build(&tcp(sport, 8081));
        if xdp {
            run_xdp(dp, &pkt).0 == XDP_REDIRECT
        } else {
            run_tc(dp, programs::UPLINK_TC, &pkt, 0).0 == TC_ACT_REDIRECT
        }
    };
    // The flow seen lately goes on meanwhile (and is marked in each generation it is seen in).
    let flows = common::FloodFlows {
        through,
        made_goes_on: |dp: &mut Datapath| {
            let (verdict, out) = run_xdp(dp, &made);
            assert_eq!(verdict, XDP_REDIRECT, "the flow seen lately goes on");
            assert_dnat(&made, &out, 80);
        },
        recent: |dp: &Datapath, sport: u16| flow(dp, 80, sport, TCP).map(|f| f.recent),
    };
    let (late, tries) = flows.begun_in_the_flood(&mut dp, 40000, 41000);
    assert_eq!(counter(&dp, Counter::DropNewFlowRate), tries);
    // Its next packets are refused like new flows', until the guard lets one through again.
    let refused = flows.refused_until_let_through(&mut dp, late);
    assert_eq!(counter(&dp, Counter::DropNewFlowRate), tries + refused);
    assert_eq!(
        dp.flow_count(),
        2 + usize::from(late - 41000),
        "one entry each"
    );
    // Seen now: it goes on through the flood, on both hooks, as the first does.
    for xdp in [true, false, true, false] {
        assert!((flows.through)(&mut dp, late, xdp), "seen, it goes on");
    }
    assert_eq!(counter(&dp, Counter::DropNewFlowRate), tries + refused);
}

/// A port published one to one keeps no flow, and the guard holds it all the same: a UDP
/// flow not marked seen lately and a TCP SYN are new flows, dropped and counted past the
/// rate on XDP and TC alike, while a UDP flow let through before the flood (marked seen) and
/// a TCP connection's other segments go on, and nothing is kept. A UDP flow let through
/// during the flood is not marked: its next packet asks again (else the flood's own frames
/// would fill the marks). At 0, no limit again.
#[test]
fn one_to_one_ports_refuse_new_flows_past_the_rate_while_flows_going_on_go_on() {
    pin_to_this_cpu();
    let Dp { mut dp, _fs } = load();
    let (_ns, ep_if, _, _) = behind_one_uplink(&mut dp);
    publish(&mut dp, [0; 4], 5353, UDP, 53, ep_if);
    publish(&mut dp, [0; 4], 8080, TCP, 80, ep_if);
    // 100 a second: a burst of three (20 ms), the CPU under a flood once two are spent.
    dp.set_new_flow_rate(100).unwrap();
    let through = |dp: &mut Datapath, proto: u8, l4: &[u8], xdp: bool| {
        let pkt = Frame::new(CLIENT, HOST, proto).build(l4);
        if xdp {
            run_xdp(dp, &pkt).0 == XDP_REDIRECT
        } else {
            run_tc(dp, programs::UPLINK_TC, &pkt, 0).0 == TC_ACT_REDIRECT
        }
    };
    // Before the flood: let through, and marked.
    let made = udp(40000, 5353);
    assert!(through(&mut dp, UDP, &made, true), "the first new flow");
    let mut segment = tcp(40001, 8080);
    segment[13] = 0x10; // ACK: a connection's, begun before
    let start = std::time::Instant::now();
    let (mut tries, mut admitted, mut let_in_flood) = (0u64, 0u64, Vec::new());
    let mut sport = 41000u16;
    while let_in_flood.len() < 5 {
        assert!(start.elapsed().as_secs() < 10, "too few let through");
        let xdp = sport.is_multiple_of(2);
        if through(&mut dp, UDP, &udp(sport, 5353), xdp) {
            let_in_flood.push(sport);
            admitted += 1;
        }
        admitted += u64::from(through(&mut dp, TCP, &tcp(sport, 8080), !xdp));
        tries += 2;
        assert!(
            through(&mut dp, UDP, &made, !xdp),
            "the flow let through goes on"
        );
        assert!(
            through(&mut dp, TCP, &segment, xdp),
            "the connection goes on"
        );
        sport += 1;
    }
    // The burst's two left, then 100 a second: what the time taken allows.
    let allowed = 2 + (100.0 * start.elapsed().as_secs_f64()).ceil() as u64;
    assert!(
        admitted <= allowed,
        "{admitted} of {tries} admitted, {allowed} allowed"
    );
    assert!(
        tries > 10 * allowed,
        "a flood: {tries} tries, {allowed} allowed"
    );
    // The flows let in during the flood, asked again at once: no mark lets them through.
    let again = let_in_flood
        .iter()
        .filter(|&&sport| through(&mut dp, UDP, &udp(sport, 5353), true))
        .count();
    assert!(
        again <= 2,
        "{again} of 5 let in during the flood went on unasked"
    );
    assert_eq!(
        counter(&dp, Counter::DropNewFlowRate),
        tries - admitted + 5 - again as u64
    );
    assert_eq!(dp.flow_count(), 0, "nothing kept");

    dp.set_new_flow_rate(0).unwrap();
    let refused = counter(&dp, Counter::DropNewFlowRate);
    for sport in 50000..50010u16 {
        assert!(through(&mut dp, UDP, &udp(sport, 5353), true));
        assert!(through(&mut dp, TCP, &tcp(sport, 8080), false));
    }
    assert_eq!(counter(&dp, Counter::DropNewFlowRate), refused);
}

/// A one-to-one port's first reply past the rate is translated and sent all the same, but
/// not recorded: the next reply asks again.
#[test]
fn first_replies_past_the_rate_are_translated_but_not_recorded() {
    pin_to_this_cpu();
    let Dp { mut dp, _fs } = load();
    let (ns, ep_if, _, _) = behind_one_uplink(&mut dp);
    publish(&mut dp, [0; 4], 8080, TCP, 80, ep_if);
    dp.set_new_flow_rate(1).unwrap();
    let start = std::time::Instant::now();
    for (i, client_port) in (40000..40010u16).enumerate() {
        let pkt = reply_frame(TCP, 80, client_port);
        let (verdict, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
        assert_eq!(verdict, TC_ACT_REDIRECT, "reply to {client_port} sent");
        assert_eq!(
            (Seen(&out).src(), Seen(&out).sport()),
            (Ipv4Addr::from(HOST), 8080)
        );
        assert_eq!(counter(&dp, Counter::RevNat), i as u64 + 1);
    }
    // The first at once, then one a second: what the time taken allows.
    let allowed = 1 + start.elapsed().as_secs_f64().ceil() as u64;
    let recorded = counter(&dp, Counter::ReplyRecorded);
    assert!(
        (1..=allowed).contains(&recorded),
        "{recorded} of 10 first replies recorded, {allowed} allowed"
    );
    assert_eq!(dp.flow_count() as u64, recorded);
    assert_eq!(counter(&dp, Counter::DropNewFlowRate), 0, "none dropped");
    assert!(flow(&dp, 80, 40000, TCP).is_some());
}

#[test]
fn host_ip_binding_is_exact() {
    let Dp { mut dp, _fs } = load();
    publish(&mut dp, [127, 0, 0, 1], 8081, TCP, 80, EP_IFINDEX);
    publish(&mut dp, [10, 0, 0, 5], 8082, TCP, 80, EP_IFINDEX);
    publish(&mut dp, [0; 4], 8083, TCP, 80, EP_IFINDEX);
    host_addrs(&mut dp, &[HOST, [10, 0, 0, 5]]);
    let cases: &[([u8; 4], u16, u32)] = &[
        (HOST, 8081, TC_ACT_OK),                 // published on 127.0.0.1 only
        ([127, 0, 0, 1], 8081, TC_ACT_REDIRECT), // the bound address itself
        (HOST, 8082, TC_ACT_OK),                 // published on 10.0.0.5 only
        ([10, 0, 0, 5], 8082, TC_ACT_REDIRECT),
        (HOST, 8083, TC_ACT_REDIRECT), // every host address
        ([10, 0, 0, 5], 8083, TC_ACT_REDIRECT),
        ([10, 0, 0, 9], 8083, TC_ACT_OK), // not a host address
    ];
    for (dst, port, want) in cases {
        let pkt = Frame::new(CLIENT, *dst, TCP).build(&tcp(40000, *port));
        let (verdict, out) = run_tc(&mut dp, programs::UPLINK_TC, &pkt, 0);
        assert_eq!(verdict, *want, "{dst:?}:{port}");
        if *want == TC_ACT_OK {
            assert_eq!(out, pkt, "passed untouched");
        }
    }
}

#[test]
fn a_port_on_several_addresses_is_found_until_its_last_publish_goes() {
    let Dp { mut dp, _fs } = load();
    let (lo, other) = ([127, 0, 0, 1], [10, 0, 0, 5]);
    publish(&mut dp, lo, 8081, TCP, 80, EP_IFINDEX);
    publish(&mut dp, other, 8081, TCP, 80, EP_IFINDEX);
    // Written again (a changed target): still one publish on that address.
    publish(&mut dp, other, 8081, TCP, 80, EP_IFINDEX);
    host_addrs(&mut dp, &[HOST, other]);
    let verdict = |dp: &mut Datapath, dst: [u8; 4]| {
        let pkt = Frame::new(CLIENT, dst, TCP).build(&tcp(40000, 8081));
        run_tc(dp, programs::UPLINK_TC, &pkt, 0).0
    };
    assert_eq!(verdict(&mut dp, lo), TC_ACT_REDIRECT);
    assert_eq!(verdict(&mut dp, other), TC_ACT_REDIRECT);
    let key = |addr: [u8; 4]| PortKey {
        addr: be_addr(Ipv4Addr::from(addr)),
        port: be_port(8081),
        proto: TCP,
        _pad: 0,
    };
    dp.unpublish(&key(other)).unwrap();
    dp.unpublish(&key(other)).unwrap(); // twice: nothing more goes
    assert_eq!(verdict(&mut dp, other), TC_ACT_OK);
    assert_eq!(
        verdict(&mut dp, lo),
        TC_ACT_REDIRECT,
        "the other address keeps it"
    );
    dp.unpublish(&key(lo)).unwrap();
    assert_eq!(verdict(&mut dp, lo), TC_ACT_OK);
    assert_eq!(dp.recount_specific().unwrap(), 0, "the counts were right");
}

#[test]
fn a_port_published_one_to_one_on_one_address_alone_is_found_by_its_slot() {
    let Dp { mut dp, _fs } = load();
    let (_ns, ep_if, up_if, _) = routed_ns();
    endpoint(&mut dp, ep_if);
    let other = [10, 0, 0, 5];
    host_addrs(&mut dp, &[HOST, other]);
    dp.set_uplinks(&[(up_if, HOST.into())]).unwrap();
    let send = |dp: &mut Datapath, dst: [u8; 4], sport: u16| {
        let pkt = Frame::new(CLIENT, dst, UDP).build(&udp(sport, 9090));
        let (verdict, out) = run_xdp(dp, &pkt);
        (
            verdict,
            (verdict == XDP_REDIRECT).then(|| Seen(&out).dport()),
        )
    };
    let key = |addr: [u8; 4]| PortKey {
        addr: be_addr(Ipv4Addr::from(addr)),
        port: be_port(9090),
        proto: UDP,
        _pad: 0,
    };
    // Alone and one to one: translated with no flow; the host's other address is not it.
    publish(&mut dp, HOST, 9090, UDP, 99, ep_if);
    assert_eq!(send(&mut dp, HOST, 42000), (XDP_REDIRECT, Some(99)));
    assert_eq!(send(&mut dp, other, 42001), (XDP_PASS, None));
    // A second address publishes the port (to another endpoint port): each finds its own.
    publish(&mut dp, other, 9090, UDP, 98, ep_if);
    assert_eq!(send(&mut dp, other, 42002), (XDP_REDIRECT, Some(98)));
    assert_eq!(send(&mut dp, HOST, 42003), (XDP_REDIRECT, Some(99)));
    assert_eq!(counter(&dp, Counter::DnatStateless), 3, "all one to one");
    assert_eq!(dp.flow_count(), 0);
    // The first goes: its address no longer answers, the second's alone does.
    dp.unpublish(&key(HOST)).unwrap();
    assert_eq!(send(&mut dp, HOST, 42004), (XDP_PASS, None));
    assert_eq!(send(&mut dp, other, 42005), (XDP_REDIRECT, Some(98)));
    assert_eq!(counter(&dp, Counter::DnatStateless), 4);
    assert_eq!(
        dp.recount_specific().unwrap(),
        1,
        "the one left held by the sync"
    );
    assert_eq!(send(&mut dp, other, 42008), (XDP_REDIRECT, Some(98)));
    assert_eq!(send(&mut dp, HOST, 42009), (XDP_PASS, None));
    assert_eq!(dp.recount_specific().unwrap(), 0, "every slot was right");
    let listed: Vec<u32> = dp.published::<u32>().iter().map(|(k, _)| k.addr).collect();
    assert_eq!(
        listed,
        [be_addr(Ipv4Addr::from(other))],
        "on its address alone"
    );
    // Kept flows (a second host port on its endpoint port): the slot holds nothing.
    publish(&mut dp, other, 9091, UDP, 98, ep_if);
    assert_eq!(send(&mut dp, other, 42006), (XDP_REDIRECT, Some(98)));
    assert_eq!(
        counter(&dp, Counter::DnatStateless),
        5,
        "kept from the first packet"
    );
    assert!(flow(&dp, 98, 42006, UDP).is_some());
    assert_eq!(dp.recount_specific().unwrap(), 0, "every slot was right");
    dp.unpublish(&key(other)).unwrap();
    assert_eq!(send(&mut dp, other, 42007), (XDP_PASS, None));
    assert_eq!(dp.recount_specific().unwrap(), 0, "every slot was right");
}

#[test]
fn everything_else_passes_untouched() {
    let Dp { mut dp, _fs } = published(&[(8080, TCP, 80), (8080, UDP, 80)]);
    let syn = Frame::new(CLIENT, HOST, TCP).build(&tcp(40000, 8080));

    let icmp = Frame::new(CLIENT, HOST, ICMP).build(&[8, 0, 0xf7, 0xff, 0, 0, 0, 0]);
    let unpublished = Frame::new(CLIENT, HOST, TCP).build(&tcp(40000, 9999));
    let udp_other = Frame::new(CLIENT, HOST, UDP).build(&udp(40000, 8081));
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1]);
    arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    // IPv4's bytes under IPv6's type: a malformed IPv6 packet, passed as it is.
    let mut ipv6 = syn.clone();
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    let mut vlan = syn[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    vlan.extend_from_slice(&syn[12..]);
    let truncated = syn[..14 + 20 + 10].to_vec();
    let short_ip = syn[..14 + 12].to_vec();
    // A first fragment is a flow like a whole packet (this one of no published port); a later
    // one whose first never came has no ports (`tests/fragments.rs` has the datagrams that
    // cross).
    let mut first_frag = Frame::new(CLIENT, HOST, TCP);
    first_frag.frag = 0x2000; // MF
    let first_frag = first_frag.build(&tcp(40000, 9999));
    let mut later_frag = Frame::new([10, 0, 0, 9], HOST, TCP);
    later_frag.frag = 0x0010; // offset 128 bytes
    let later_frag = later_frag.build(&tcp(40000, 8080));

    for (name, pkt) in [
        ("icmp", &icmp),
        ("unpublished port", &unpublished),
        ("udp to another port", &udp_other),
        ("arp", &arp),
        ("ipv4 bytes as ipv6", &ipv6),
        ("vlan", &vlan),
        ("truncated tcp", &truncated),
        ("first fragment", &first_frag),
        ("later fragment", &later_frag),
    ] {
        let (verdict, out) = run_tc(&mut dp, programs::UPLINK_TC, pkt, 0);
        assert_eq!(verdict, TC_ACT_OK, "{name}");
        assert_eq!(&out, pkt, "{name} untouched");
        let (verdict, out) = run_xdp(&mut dp, pkt);
        assert_eq!(verdict, XDP_PASS, "{name} (xdp)");
        assert_eq!(&out, pkt, "{name} untouched (xdp)");
    }
    // The kernel refuses skb test runs shorter than an IPv4 header; XDP takes them.
    let (verdict, out) = run_xdp(&mut dp, &short_ip);
    assert_eq!(verdict, XDP_PASS, "truncated ipv4 (xdp)");
    assert_eq!(out, short_ip);
    // Each path counts what it passes, and why (an uplink runs one of them): TC and XDP a
    // fragment each, TC two malformed packets and XDP three.
    assert_eq!(counter(&dp, Counter::Fragment), 1 + 1);
    assert_eq!(counter(&dp, Counter::Malformed), 2 + 3);
    assert_eq!(counter(&dp, Counter::DnatTc), 0);
    assert_eq!(dp.flow_count(), 0);
}

fn routed_ns() -> (Netns, u32, u32, [u8; 6]) {
    let r = RoutedNs::new();
    (r.ns, r.endpoint_ifindex, r.uplink_ifindex, r.uplink_mac)
}

/// A router the client's packets come through, which the FIB does not name for it.
const ROUTER: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 1];
/// The neighbour the routed namespace's FIB names for the client.
const FIB_NEIGHBOUR: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01];

/// The endpoint (network 1) behind the routed namespace's veth, on a host of one uplink
/// address (HOST), where a port published alone is one to one: the namespace, the
/// endpoint's and the uplink's ifindex, the uplink's MAC.
fn behind_one_uplink(dp: &mut Datapath) -> (Netns, u32, u32, [u8; 6]) {
    let (ns, ep_if, up_if, up_mac) = routed_ns();
    endpoint(dp, ep_if);
    host_addrs(dp, &[HOST]);
    dp.set_uplinks(&[(up_if, HOST.into())]).unwrap();
    (ns, ep_if, up_if, up_mac)
}

/// A datapath with the endpoint (network 1) behind the routed namespace's veth: the
/// namespace and the veth's ifindex.
fn with_endpoint() -> (Dp, Netns, u32) {
    let Dp { mut dp, _fs } = load();
    let (ns, ep_if, _, _) = routed_ns();
    endpoint(&mut dp, ep_if);
    (Dp { dp, _fs }, ns, ep_if)
}

/// Network 1: 172.17.0.0/16, gateway 172.17.0.1 (the endpoint's). Network 2: 10.5.0.0/24.
fn network(dp: &mut Datapath, net_id: u32, subnet: &str, internal: bool, icc: bool) -> Network {
    let subnet: Subnet = subnet.parse().unwrap();
    let mut options = std::collections::BTreeMap::new();
    if !icc {
        options.insert("icc".to_string(), "false".to_string());
    }
    let net = Network {
        name: format!("n{net_id}"),
        id: format!("{net_id}"),
        net_id,
        driver: "bridge".into(),
        v4: Some(netpath_user::ipam::Pool {
            subnet,
            gateway: subnet.first_host(),
            ip_range: None,
        }),
        v6: None,
        internal,
        options,
        labels: Default::default(),
        vni: None,
    };
    dp.add_network(&net).unwrap();
    net
}

/// What is routed at a network's addresses from outside is dropped, on XDP and TC alike,
/// however the network came (added, or written by a sync as at a start; a /10 in each of its
/// /16s), and passes once the network is gone; what is addressed to no network passes. The
/// subnets' trie is asked wherever a network may be (`NO_SUBNET`), and only there.
#[test]
fn the_uplink_drops_what_is_routed_at_a_network_and_passes_the_rest() {
    let Dp { mut dp, _fs } = load();
    let r = RoutedNs::new();
    let dropped = |dp: &mut Datapath, dst: [u8; 4]| {
        let pkt = Frame::new(CLIENT, dst, UDP).build(&udp(1, 2));
        let xdp = r.ns.run(|| run_xdp_on(dp, &pkt, r.uplink_ifindex)).0;
        let tc =
            r.ns.run(|| run_tc(dp, programs::UPLINK_TC, &pkt, r.uplink_ifindex))
                .0;
        assert_eq!(
            xdp == XDP_DROP,
            tc == TC_ACT_SHOT,
            "XDP and TC alike, {dst:?}"
        );
        assert!(xdp == XDP_DROP || xdp == XDP_PASS, "{dst:?}: {xdp}");
        xdp == XDP_DROP
    };
    let _a = network(&mut dp, 1, "172.17.0.0/16", false, true);
    let wide = network(&mut dp, 2, "100.64.0.0/10", false, true);
    assert!(dropped(&mut dp, [172, 17, 0, 2]));
    assert!(dropped(&mut dp, [100, 127, 3, 4]), "in the /10's last /16");
    for other in [[172, 18, 0, 2], [192, 168, 1, 10], [100, 128, 0, 1]] {
        assert!(!dropped(&mut dp, other), "{other:?}");
    }
    dp.remove_network(&wide).unwrap();
    assert!(!dropped(&mut dp, [100, 127, 3, 4]), "gone");
    assert!(dropped(&mut dp, [172, 17, 0, 2]));
    assert_eq!(counter(&dp, Counter::DropRouted), 6);
    // A sync (as at a start) writes what the agent knows: the /16 gone, a /28 come.
    let small = Network {
        net_id: 3,
        v4: Some(netpath_user::ipam::Pool {
            subnet: "192.168.7.16/28".parse().unwrap(),
            gateway: "192.168.7.17".parse().unwrap(),
            ip_range: None,
        }),
        ..network(&mut dp, 3, "192.168.7.16/28", false, true)
    };
    dp.remove_network(&small).unwrap();
    dp.sync(&netpath_user::datapath::Content {
        networks: vec![small],
        ..Default::default()
    })
    .unwrap();
    assert!(dropped(&mut dp, [192, 168, 7, 20]));
    assert!(!dropped(&mut dp, [192, 168, 7, 40]), "its /16, not the /28");
    assert!(!dropped(&mut dp, [172, 17, 0, 2]), "not synced: gone");
}

/// The endpoint EP on network 1, attached at `ifindex`.
fn endpoint(dp: &mut Datapath, ifindex: u32) {
    network(dp, 1, "172.17.0.0/16", false, true);
    attach(dp, ifindex, EP.into(), EP_MAC, GW_MAC, 1).unwrap();
}

fn reply_frame(proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    let mut f = Frame::new(EP, CLIENT, proto);
    f.src_mac = EP_MAC;
    f.dst_mac = GW_MAC;
    f.build(&if proto == TCP {
        tcp(sport, dport)
    } else {
        udp(sport, dport)
    })
}

#[test]
fn replies_are_translated_back_and_sent_the_way_the_client_came() {
    let Dp { mut dp, _fs } = load();
    let (ns, ep_if, up_if, up_mac) = routed_ns();
    endpoint(&mut dp, ep_if);
    host_addrs(&mut dp, &[HOST]);
    // Two host ports on one container port, from two client ports.
    publish(&mut dp, [0; 4], 8080, TCP, 80, ep_if);
    publish(&mut dp, [0; 4], 8081, TCP, 80, ep_if);
    publish(&mut dp, [0; 4], 5353, UDP, 53, ep_if);
    for (sport, dport, proto) in [(40000, 8080, TCP), (40001, 8081, TCP), (40002, 5353, UDP)] {
        let mut f = Frame::new(CLIENT, HOST, proto);
        f.src_mac = ROUTER;
        f.dst_mac = up_mac;
        let pkt = f.build(&if proto == TCP {
            tcp(sport, dport)
        } else {
            udp(sport, dport)
        });
        let (verdict, _) = ns.run(|| run_tc(&mut dp, programs::UPLINK_TC, &pkt, up_if));
        assert_eq!(verdict, TC_ACT_REDIRECT);
    }
    // A flow recorded by an older build knows no way back: the route decides.
    dp.insert_flow(
        flow_key(
            (Ipv4Addr::from(EP), 80),
            (Ipv4Addr::from(CLIENT), 40003),
            TCP,
        ),
        FlowNat {
            addr: be_addr(Ipv4Addr::from(HOST)),
            port: be_port(8082),
            ifindex: ep_if,
            ..FlowNat::default()
        },
    )
    .unwrap();
    for (ep_port, client_port, proto, host_port, neighbour, why) in [
        (
            80,
            40000,
            TCP,
            8080,
            ROUTER,
            "back to the router the client came through",
        ),
        (
            80,
            40001,
            TCP,
            8081,
            ROUTER,
            "back to the router the client came through",
        ),
        (
            53,
            40002,
            UDP,
            5353,
            ROUTER,
            "back to the router the client came through",
        ),
        (80, 40003, TCP, 8082, FIB_NEIGHBOUR, "the FIB's neighbour"),
    ] {
        let pkt = reply_frame(proto, ep_port, client_port);
        let (verdict, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
        assert_eq!(
            verdict, TC_ACT_REDIRECT,
            "reply {ep_port}->{client_port} redirected out"
        );
        let seen = Seen(&out);
        assert_eq!(seen.src(), Ipv4Addr::from(HOST));
        assert_eq!(seen.sport(), host_port, "the host port this client used");
        assert_eq!(seen.dst(), Ipv4Addr::from(CLIENT));
        assert_eq!(seen.dport(), client_port);
        assert_eq!(seen.src_mac(), up_mac, "the uplink's MAC");
        assert_eq!(seen.dst_mac(), neighbour, "{why}");
        assert!(seen.checksums_ok());
    }
    assert_eq!(counter(&dp, Counter::RevNat), 4);
}

/// CLOCK_MONOTONIC_COARSE, the clock the kernel stamps flows with, in ns.
fn coarse_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE).unwrap();
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// A reply refreshes its flow's `last_seen` by the clock only when the entry's stamp (the
/// kernel's jiffies at the reply that last refreshed it) is `STAMP_JIFFIES` old: a reply
/// right after one that refreshed reads no clock and writes nothing, however stale
/// `last_seen` looks; one after the stamp aged refreshes it, to the kernel's clock.
#[test]
fn a_reply_reads_the_clock_only_when_its_flows_stamp_is_old() {
    let Dp { mut dp, _fs } = load();
    let (ns, ep_if, _, _) = behind_one_uplink(&mut dp);
    let key = flow_key(
        (Ipv4Addr::from(EP), 80),
        (Ipv4Addr::from(CLIENT), 40000),
        TCP,
    );
    let stale = FlowNat {
        addr: be_addr(Ipv4Addr::from(HOST)),
        port: be_port(8080),
        ifindex: ep_if,
        last_seen: 1,
        ..FlowNat::default()
    };
    let reply = |dp: &mut Datapath, stamp: u32| {
        dp.insert_flow(key, FlowNat { stamp, ..stale }).unwrap();
        let pkt = reply_frame(TCP, 80, 40000);
        let (verdict, _) = ns.run(|| run_tc(dp, programs::ENDPOINT_TC, &pkt, ep_if));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        dp.flow(&key).unwrap()
    };
    // Never stamped: the reply reads the clock.
    let before = coarse_ns();
    let f = reply(&mut dp, 0);
    assert!(
        (before..=coarse_ns()).contains(&f.last_seen),
        "refreshed to the clock: {}",
        f.last_seen
    );
    let stamp = f.stamp;
    // Stamped just now: left as it is (unless 100 jiffies passed meanwhile: stamped anew).
    let f = reply(&mut dp, stamp);
    assert!(
        f.last_seen == 1 || f.stamp.wrapping_sub(stamp) >= STAMP_JIFFIES,
        "no clock read within the stamp's jiffies: {f:?}"
    );
    // The stamp 100 jiffies old: refreshed, and stamped anew.
    let before = coarse_ns();
    let f = reply(&mut dp, stamp.wrapping_sub(STAMP_JIFFIES));
    assert!((before..=coarse_ns()).contains(&f.last_seen), "{f:?}");
    assert!(f.stamp.wrapping_sub(stamp) < 10 * STAMP_JIFFIES, "{f:?}");
}

#[test]
fn a_start_keeps_one_to_one_ports_as_the_last_left_them_until_it_knows_the_uplinks() {
    let fs = ScratchBpffs::new().expect("scratch bpffs");
    let sizes = MapSizes {
        ports: 1024,
        flows: 1024,
        endpoints: 64,
    };
    let mut dp = Datapath::load(Some(fs.path()), sizes).expect("load datapath");
    let (_ns, ep_if, up_if, _) = behind_one_uplink(&mut dp);
    publish(&mut dp, [0; 4], 8080, TCP, 80, ep_if);
    publish(&mut dp, HOST, 9090, UDP, 99, ep_if);
    drop(dp);

    // The next start, on the maps the last left: what is published is read from the
    // slots it read once, whole.
    let mut dp = Datapath::load(Some(fs.path()), sizes).expect("load datapath again");
    let mut ports: Vec<(u16, u8)> = (dp.published::<u32>().iter())
        .map(|(k, _)| (u16::from_be(k.port), k.proto))
        .collect();
    ports.sort();
    assert_eq!(ports, [(8080, TCP), (9090, UDP)]);
    // Every port settled (the other family's uplinks followed), IPv4's not known yet.
    dp.set_uplinks6(&[]).unwrap();
    let stateless = |dp: &mut Datapath, sport: u16, proto: u8, dport: u16, ep_port: u16| {
        let before = counter(dp, Counter::DnatStateless);
        let l4 = if proto == TCP {
            tcp(sport, dport)
        } else {
            udp(sport, dport)
        };
        assert_eq!(
            run_xdp(dp, &Frame::new(CLIENT, HOST, proto).build(&l4)).0,
            XDP_REDIRECT
        );
        let kept = flow(dp, ep_port, sport, proto).is_some();
        assert_eq!(
            counter(dp, Counter::DnatStateless) - before,
            u64::from(!kept)
        );
        !kept
    };
    assert!(stateless(&mut dp, 40000, TCP, 8080, 80), "still one to one");
    assert!(stateless(&mut dp, 40001, UDP, 9090, 99), "still one to one");
    dp.set_uplinks(&[(up_if, HOST.into())]).unwrap();
    assert!(stateless(&mut dp, 40002, TCP, 8080, 80));
    // Told there is no uplink, it keeps flows.
    dp.set_uplinks(&[]).unwrap();
    assert!(!stateless(&mut dp, 40003, TCP, 8080, 80), "flows kept");
    assert!(!stateless(&mut dp, 40004, UDP, 9090, 99), "flows kept");
}

#[test]
fn one_to_one_ports_keep_no_flow_until_it_replies() {
    let Dp { mut dp, _fs } = load();
    let (ns, ep_if, up_if, up_mac) = behind_one_uplink(&mut dp);
    publish(&mut dp, [0; 4], 8080, TCP, 80, ep_if);
    publish(&mut dp, [0; 4], 5353, UDP, 53, ep_if);
    // A flood of new flows, on XDP and TC: translated, nothing written.
    for (i, (proto, dport, ep_port)) in [(TCP, 8080, 80), (UDP, 5353, 53)].into_iter().enumerate() {
        for sport in 40000..40004 {
            let l4 = if proto == TCP {
                tcp(sport, dport)
            } else {
                udp(sport, dport)
            };
            let pkt = Frame::new(CLIENT, HOST, proto).build(&l4);
            let (verdict, out) = if sport % 2 == 0 {
                run_xdp(&mut dp, &pkt)
            } else {
                let (v, out) = run_tc(&mut dp, programs::UPLINK_TC, &pkt, 0);
                (
                    if v == TC_ACT_REDIRECT {
                        XDP_REDIRECT
                    } else {
                        v
                    },
                    out,
                )
            };
            assert_eq!(verdict, XDP_REDIRECT);
            assert_dnat(&pkt, &out, ep_port);
        }
        assert_eq!(counter(&dp, Counter::DnatStateless), 4 * (i as u64 + 1));
    }
    assert_eq!(dp.flow_count(), 0, "no flow kept for the forward direction");

    // The first reply records its flow, translated and routed out of the uplink.
    for round in 1..=2u64 {
        let pkt = reply_frame(TCP, 80, 40000);
        let (verdict, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
        assert_eq!(verdict, TC_ACT_REDIRECT, "reply {round} redirected out");
        let seen = Seen(&out);
        assert_eq!((seen.src(), seen.sport()), (Ipv4Addr::from(HOST), 8080));
        assert_eq!((seen.dst(), seen.dport()), (Ipv4Addr::from(CLIENT), 40000));
        assert_eq!((seen.src_mac(), seen.dst_mac()), (up_mac, FIB_NEIGHBOUR));
        assert!(seen.checksums_ok());
        assert_eq!(counter(&dp, Counter::ReplyRecorded), 1, "recorded once");
        assert_eq!(counter(&dp, Counter::RevNat), round);
    }
    let f = flow(&dp, 80, 40000, TCP).expect("the flow, recorded by its reply");
    assert_eq!(
        (f.addr, f.port, f.ifindex, f.via),
        (be_addr(Ipv4Addr::from(HOST)), be_port(8080), ep_if, up_if)
    );
    // What the endpoint says from that port to its own networks is its own traffic.
    let mut own = Frame::new(EP, [172, 17, 0, 3], TCP);
    own.src_mac = EP_MAC;
    own.dst_mac = GW_MAC;
    let own = own.build(&tcp(80, 40005));
    let (_, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &own, ep_if));
    assert_eq!(Seen(&out).src(), Ipv4Addr::from(EP));
    assert_eq!(counter(&dp, Counter::ReplyRecorded), 1);

    // Another host port on the same container port: both keep their flows from the start.
    publish(&mut dp, [0; 4], 8081, TCP, 80, ep_if);
    for (sport, dport) in [(41000, 8080), (41001, 8081)] {
        let pkt = Frame::new(CLIENT, HOST, TCP).build(&tcp(sport, dport));
        assert_eq!(run_xdp(&mut dp, &pkt).0, XDP_REDIRECT);
        let f = flow(&dp, 80, sport, TCP).expect("kept from the first packet");
        assert_eq!(f.port, be_port(dport));
    }
    // Once it goes, the first is one to one again.
    dp.unpublish(&PortKey {
        addr: 0,
        port: be_port(8081),
        proto: TCP,
        _pad: 0,
    })
    .unwrap();
    let pkt = Frame::new(CLIENT, HOST, TCP).build(&tcp(41002, 8080));
    assert_eq!(run_xdp(&mut dp, &pkt).0, XDP_REDIRECT);
    assert!(flow(&dp, 80, 41002, TCP).is_none());

    // A client of another host address, or any client while the published ports' firewall
    // holds a list, is kept from its first packet.
    let other_addr = [10, 0, 0, 3];
    host_addrs(&mut dp, &[HOST, other_addr]);
    let pkt = Frame::new(CLIENT, other_addr, TCP).build(&tcp(41003, 8080));
    assert_eq!(run_xdp(&mut dp, &pkt).0, XDP_REDIRECT);
    assert!(flow(&dp, 80, 41003, TCP).is_some());
    dp.set_published_from(&"10.0.0.0/24".parse().unwrap())
        .unwrap();
    let pkt = Frame::new(CLIENT, HOST, TCP).build(&tcp(41004, 8080));
    assert_eq!(run_xdp(&mut dp, &pkt).0, XDP_REDIRECT);
    assert!(flow(&dp, 80, 41004, TCP).is_some());
    dp.set_published_from(&PublishedFrom::default()).unwrap();
    // Two uplinks of the family: a publish on every address no longer knows its address.
    dp.set_uplinks(&[(up_if, HOST.into()), (up_if + 1000, other_addr.into())])
        .unwrap();
    let pkt = Frame::new(CLIENT, HOST, TCP).build(&tcp(41005, 8080));
    assert_eq!(run_xdp(&mut dp, &pkt).0, XDP_REDIRECT);
    assert!(flow(&dp, 80, 41005, TCP).is_some());
    // Nor does one on one address: a host of several uplinks answers each client the way it
    // came, which the flow remembers.
    publish(&mut dp, HOST, 9090, UDP, 99, ep_if);
    let pkt = Frame::new(CLIENT, HOST, UDP).build(&udp(41006, 9090));
    assert_eq!(run_xdp(&mut dp, &pkt).0, XDP_REDIRECT);
    assert!(flow(&dp, 99, 41006, UDP).is_some());
    // One uplink again: both one to one.
    dp.set_uplinks(&[(up_if, HOST.into())]).unwrap();
    let stateless = counter(&dp, Counter::DnatStateless);
    let pkt = Frame::new(CLIENT, HOST, UDP).build(&udp(41007, 9090));
    assert_eq!(run_xdp(&mut dp, &pkt).0, XDP_REDIRECT);
    assert_eq!(counter(&dp, Counter::DnatStateless), stateless + 1);

    // An endpoint of a routed network is reached at its own address: its published port is
    // not one to one, and what it says from it is never taken for a first reply.
    let mut routed = network(&mut dp, 2, "10.5.0.0/24", false, true);
    routed.options.insert(
        netpath_user::model::options::GATEWAY_MODE.into(),
        "routed".into(),
    );
    dp.add_network(&routed).unwrap();
    const ROUTED_EP: [u8; 4] = [10, 5, 0, 2];
    ns.ip(&["link", "add", "rt0", "type", "veth", "peer", "name", "rt1"]);
    let routed_if: u32 = ns
        .exec("cat", &["/sys/class/net/rt0/ifindex"])
        .trim()
        .parse()
        .unwrap();
    attach(&mut dp, routed_if, ROUTED_EP.into(), EP_MAC, GW_MAC, 2).unwrap();
    let target = PortTarget {
        addr: be_addr(Ipv4Addr::from(ROUTED_EP)),
        port: be_port(80),
        stats: 0,
        ifindex: routed_if,
        mac: EP_MAC,
        gw_mac: GW_MAC,
        host: Default::default(),
    };
    let key = PortKey {
        addr: 0,
        port: be_port(8090),
        proto: TCP,
        _pad: 0,
    };
    dp.publish(key, target).unwrap();
    let mut direct = Frame::new(ROUTED_EP, CLIENT, TCP);
    direct.src_mac = EP_MAC;
    direct.dst_mac = GW_MAC;
    let direct = direct.build(&tcp(80, 42000));
    let recorded = counter(&dp, Counter::ReplyRecorded);
    let (_, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &direct, routed_if));
    assert_eq!(
        Seen(&out).src(),
        Ipv4Addr::from(ROUTED_EP),
        "its own address kept"
    );
    assert_eq!(counter(&dp, Counter::ReplyRecorded), recorded);
    // So its published port keeps its flows from the first packet.
    let pkt = Frame::new(CLIENT, HOST, TCP).build(&tcp(42001, 8090));
    assert_eq!(run_xdp(&mut dp, &pkt).0, XDP_REDIRECT);
    let kept = dp.flow(&flow_key(
        (Ipv4Addr::from(ROUTED_EP), 80),
        (Ipv4Addr::from(CLIENT), 42001),
        TCP,
    ));
    assert!(kept.is_some(), "a routed network's port keeps its flows");
    let pkt = Frame::new(CLIENT, HOST, TCP).build(&tcp(41009, 8080));
    assert_eq!(run_xdp(&mut dp, &pkt).0, XDP_REDIRECT);
    assert_eq!(counter(&dp, Counter::DnatStateless), stateless + 2);
}

#[test]
fn container_connections_from_a_published_port_are_not_translated() {
    let (Dp { mut dp, _fs }, ns, ep_if) = with_endpoint();
    publish(&mut dp, [0; 4], 8080, TCP, 80, ep_if);
    // The container opens its own connection from port 80: no flow, no translation.
    let pkt = reply_frame(TCP, 80, 40000);
    let (verdict, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(out, pkt);
}

#[test]
fn spoofed_packets_are_dropped_and_counted() {
    let (Dp { mut dp, _fs }, ns, ep_if) = with_endpoint();
    let mut wrong_ip = Frame::new([172, 17, 0, 99], CLIENT, UDP);
    wrong_ip.src_mac = EP_MAC;
    let wrong_ip = wrong_ip.build(&udp(1, 2));
    let wrong_mac = Frame::new(EP, CLIENT, UDP).build(&udp(1, 2));
    for pkt in [&wrong_ip, &wrong_mac] {
        let (verdict, _) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, pkt, ep_if));
        assert_eq!(verdict, TC_ACT_SHOT);
    }
    assert_eq!(counter(&dp, Counter::DropSpoof), 2);
}

fn arp_request(target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&EP_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&EP_MAC);
    f.extend_from_slice(&EP);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f
}

#[test]
fn arp_for_the_gateway_is_answered_with_the_host_veth_mac() {
    let (Dp { mut dp, _fs }, ns, ep_if) = with_endpoint();
    let req = arp_request([172, 17, 0, 1]);
    let (verdict, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &req, ep_if));
    assert_eq!(verdict, TC_ACT_REDIRECT, "answered back into the endpoint");
    assert_eq!(&out[0..6], &EP_MAC);
    assert_eq!(&out[6..12], &GW_MAC);
    assert_eq!(&out[20..22], &[0, 2], "ARP reply");
    assert_eq!(&out[22..28], &GW_MAC, "sender MAC");
    assert_eq!(&out[28..32], &[172, 17, 0, 1], "sender IP");
    assert_eq!(&out[32..38], &EP_MAC, "target MAC");
    assert_eq!(&out[38..42], &EP, "target IP");
    assert_eq!(counter(&dp, Counter::ArpReply), 1);

    // A probe for its own address (duplicate address detection) is not answered.
    let own = arp_request(EP);
    let (verdict, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &own, ep_if));
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(out, own);
}

const PEER_IF: u32 = 777;
const PEER: [u8; 4] = [172, 17, 0, 3];
const PEER_MAC: [u8; 6] = [0x02, 0x42, 172, 17, 0, 3];
const PEER_HOST_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 0x77];

fn from_ep(dst: [u8; 4]) -> Vec<u8> {
    from_ep_ports(dst, 5000, 6000)
}

/// [`from_ep`] from and to the given UDP ports.
fn from_ep_ports(dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut f = Frame::new(EP, dst, UDP);
    f.src_mac = EP_MAC;
    f.dst_mac = GW_MAC;
    f.build(&udp(sport, dport))
}

#[test]
fn forwards_between_endpoints_of_a_network() {
    let (Dp { mut dp, _fs }, ns, ep_if) = with_endpoint();
    attach(&mut dp, PEER_IF, PEER.into(), PEER_MAC, PEER_HOST_MAC, 1).unwrap();
    let pkt = from_ep(PEER);
    let (verdict, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
    assert_eq!(verdict, TC_ACT_REDIRECT, "redirected into the peer");
    let seen = Seen(&out);
    assert_eq!(seen.dst_mac(), PEER_MAC);
    assert_eq!(seen.src_mac(), PEER_HOST_MAC);
    assert_eq!(&out[12..], &pkt[12..], "layer 3 and up untouched");
    assert_eq!(counter(&dp, Counter::Forward), 1);
}

#[test]
fn policy_between_networks() {
    let (Dp { mut dp, _fs }, ns, ep_if) = with_endpoint();
    network(&mut dp, 2, "10.5.0.0/24", false, true);
    attach(
        &mut dp,
        PEER_IF,
        [10, 5, 0, 7].into(),
        PEER_MAC,
        PEER_HOST_MAC,
        2,
    )
    .unwrap();
    let cases: &[([u8; 4], u32, Option<Counter>)] = &[
        ([10, 5, 0, 7], TC_ACT_SHOT, Some(Counter::DropIsolation)), // endpoint of network 2
        ([10, 5, 0, 9], TC_ACT_SHOT, Some(Counter::DropIsolation)), // network 2's subnet
        ([10, 5, 0, 1], TC_ACT_OK, None),                           // network 2's gateway: the host
        ([172, 17, 0, 1], TC_ACT_OK, None),                         // own gateway
        ([172, 17, 0, 99], TC_ACT_SHOT, Some(Counter::DropNoRoute)), // nobody on network 1
        ([192, 0, 2, 10], TC_ACT_OK, None),                         // beyond: the host routes it
    ];
    for (dst, verdict, reason) in cases {
        let before = reason.map(|r| counter(&dp, r));
        let pkt = from_ep(*dst);
        let (v, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
        assert_eq!(v, *verdict, "{dst:?}");
        if v == TC_ACT_OK {
            assert_eq!(out, pkt);
        }
        if let (Some(r), Some(b)) = (reason, before) {
            assert_eq!(counter(&dp, *r), b + 1, "{dst:?} counted as {r:?}");
        }
    }
}

#[test]
fn icc_false_and_internal_networks() {
    let Dp { mut dp, _fs } = load();
    let (ns, ep_if, _, _) = routed_ns();
    // icc=false: peers of the network are dropped.
    network(&mut dp, 1, "172.17.0.0/16", false, false);
    attach(&mut dp, ep_if, EP.into(), EP_MAC, GW_MAC, 1).unwrap();
    attach(&mut dp, PEER_IF, PEER.into(), PEER_MAC, PEER_HOST_MAC, 1).unwrap();
    let pkt = from_ep(PEER);
    let (v, _) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(counter(&dp, Counter::DropIcc), 1);
    // internal: nothing beyond the network, the gateway still answers.
    network(&mut dp, 1, "172.17.0.0/16", true, true);
    let pkt = from_ep([192, 0, 2, 10]);
    let (v, _) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(counter(&dp, Counter::DropInternal), 1);
    let pkt = from_ep([172, 17, 0, 1]);
    let (v, _) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
    assert_eq!(v, TC_ACT_OK);
    let pkt = from_ep(PEER);
    let (v, _) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
    assert_eq!(
        v, TC_ACT_REDIRECT,
        "peers of an internal network reach each other"
    );
}

#[test]
fn broadcasts_go_to_the_other_members() {
    let Dp { mut dp, _fs } = load();
    let r = RoutedNs::new();
    endpoint(&mut dp, r.endpoint_ifindex);
    // Members: the sender and one more (the uplink veth stands in for a peer here).
    dp.set_members(1, &[r.endpoint_ifindex, r.uplink_ifindex])
        .unwrap();
    for dst in [[172, 17, 255, 255], [255, 255, 255, 255], [239, 1, 2, 3]] {
        let pkt = from_ep(dst);
        let (v, out) =
            r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, r.endpoint_ifindex));
        assert_eq!(v, TC_ACT_OK, "the original goes on to the host");
        assert_eq!(out, pkt);
    }
    assert_eq!(
        counter(&dp, Counter::Flood),
        3,
        "one copy each, none to the sender"
    );
    // Removing members stops the copies.
    dp.set_members(1, &[r.endpoint_ifindex]).unwrap();
    let pkt = from_ep([172, 17, 255, 255]);
    r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, r.endpoint_ifindex));
    assert_eq!(counter(&dp, Counter::Flood), 3);
}

#[test]
fn arp_is_answered_for_the_gateway_and_peers_only() {
    let (Dp { mut dp, _fs }, ns, ep_if) = with_endpoint();
    network(&mut dp, 2, "10.5.0.0/24", false, true);
    attach(&mut dp, PEER_IF, PEER.into(), PEER_MAC, PEER_HOST_MAC, 1).unwrap();
    attach(
        &mut dp,
        PEER_IF + 1,
        [10, 5, 0, 7].into(),
        PEER_MAC,
        PEER_HOST_MAC,
        2,
    )
    .unwrap();
    for (target, answered) in [
        ([172, 17, 0, 1], true),
        (PEER, true),
        ([10, 5, 0, 7], false),
        ([172, 17, 0, 99], false),
    ] {
        let req = arp_request(target);
        let (v, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &req, ep_if));
        if answered {
            assert_eq!(v, TC_ACT_REDIRECT, "{target:?}");
            assert_eq!(&out[28..32], &target, "sender IP is the target asked for");
        } else {
            assert_eq!(v, TC_ACT_OK, "{target:?} not answered");
            assert_eq!(out, req);
        }
    }
}

#[test]
fn idle_outbound_nat_flows_expire_by_protocol_and_state() {
    use netpath_common::{snat_flags, SnatNat, SnatRev};
    let Dp { mut dp, _fs } = load();
    const S: u64 = 1_000_000_000;
    let now = 10_000 * S;
    let uplink = be_addr(Ipv4Addr::from(HOST));
    // (proto, client port, idle seconds, closing, expired?)
    let cases = [
        (UDP, 1000, 31, false, true),
        (UDP, 1001, 5, false, false),
        (ICMP, 1002, 31, false, true),
        (TCP, 1003, 3600, false, false),
        (TCP, 1004, 7201, false, true),
        (TCP, 1005, 11, true, true),
        (TCP, 1006, 5, true, false),
    ];
    for (i, (proto, port, idle, closing, _)) in cases.iter().enumerate() {
        let key = flow_key(
            (Ipv4Addr::from(EP), *port),
            (Ipv4Addr::from(CLIENT), 80),
            *proto,
        );
        let nat_port = be_port(40000 + i as u16);
        let flags = if *closing { snat_flags::CLOSING } else { 0 };
        let last_seen = now - idle * S;
        let nat = SnatNat {
            addr: uplink,
            port: nat_port,
            _pad: 0,
            flags,
            _pad2: 0,
            last_seen,
        };
        let rev = SnatRev {
            addr: key.src_addr,
            port: key.src_port,
            last_seen,
            ..Default::default()
        };
        dp.insert_outbound(key, nat, rev).unwrap();
    }
    let expired = cases.iter().filter(|c| c.4).count();
    assert_eq!(dp.expire_outbound(now), (expired, cases.len() - expired));
    let left: Vec<u16> = dp
        .outbound_flows()
        .iter()
        .map(|(k, _)| u16::from_be(k.src_port))
        .collect();
    for (_, port, _, _, gone) in cases {
        assert_eq!(!left.contains(&port), gone, "flow from port {port}");
    }
    assert_eq!(
        dp.outbound_reply_count(),
        cases.len() - expired,
        "both directions go together"
    );
}

#[test]
fn published_flows_are_stamped_marked_closing_and_expire() {
    use netpath_common::flow_flags;
    let Dp { mut dp, _fs } = published(&[(8080, TCP, 80)]);
    let syn = Frame::new(CLIENT, HOST, TCP).build(&tcp(40000, 8080));
    let (verdict, _) = run_tc(&mut dp, programs::UPLINK_TC, &syn, 0);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let f = flow(&dp, 80, 40000, TCP).expect("flow recorded");
    assert!(f.last_seen > 0, "stamped");
    assert_eq!(f.flags & flow_flags::CLOSING, 0);
    // A FIN marks it closing.
    let mut fin = tcp(40000, 8080);
    fin[13] = 0x11;
    let fin = Frame::new(CLIENT, HOST, TCP).build(&fin);
    run_tc(&mut dp, programs::UPLINK_TC, &fin, 0);
    let f = flow(&dp, 80, 40000, TCP).unwrap();
    assert_ne!(f.flags & flow_flags::CLOSING, 0, "closing");

    // Idle flows go by protocol and state; the others stay.
    const S: u64 = 1_000_000_000;
    let now = f.last_seen + 100_000 * S;
    let cases = [
        (UDP, 1000, 31, false, true),
        (UDP, 1001, 5, false, false),
        (TCP, 1002, 3600, false, false),
        (TCP, 1003, 7201, false, true),
        (TCP, 1004, 11, true, true),
    ];
    for (proto, port, idle, closing, _) in cases {
        let key = flow_key(
            (Ipv4Addr::from(EP), 80),
            (Ipv4Addr::from(CLIENT), port),
            proto,
        );
        let nat = FlowNat {
            addr: be_addr(Ipv4Addr::from(HOST)),
            port: be_port(8080),
            ifindex: EP_IFINDEX,
            flags: if closing { flow_flags::CLOSING } else { 0 },
            last_seen: now - idle * S,
            ..FlowNat::default()
        };
        dp.insert_flow(key, nat).unwrap();
    }
    // The SYN/FIN flow above is idle for 100,000 s and closing: it goes too.
    assert_eq!(dp.expire_flows(now), (4, 2));
    for (proto, port, _, _, gone) in cases {
        assert_eq!(flow(&dp, 80, port, proto).is_none(), gone, "{proto} {port}");
    }
}

#[test]
fn whole_maps_are_read_past_one_batch() {
    // More flows than one BPF_MAP_LOOKUP_BATCH call returns, and every slot of PORTS_ANY
    // (an array read whole too): counts and listings see every entry, once.
    let fs = ScratchBpffs::new().expect("scratch bpffs");
    let mut dp = Datapath::load(
        Some(fs.path()),
        MapSizes {
            ports: 1024,
            flows: 16384,
            endpoints: 64,
        },
    )
    .expect("load datapath");
    const N: u16 = 10_000;
    for i in 0..N {
        let key = flow_key(
            (Ipv4Addr::from(EP), 80),
            (Ipv4Addr::from(CLIENT), 10_000 + i),
            TCP,
        );
        let nat = FlowNat {
            addr: be_addr(Ipv4Addr::from(HOST)),
            port: be_port(8080),
            ifindex: EP_IFINDEX,
            ..FlowNat::default()
        };
        dp.insert_flow(key, nat).unwrap();
    }
    assert_eq!(dp.flow_count(), usize::from(N));
    for port in [1, 4242, 65535] {
        publish(&mut dp, [0, 0, 0, 0], port, UDP, 53, EP_IFINDEX);
    }
    publish(&mut dp, HOST, 8080, TCP, 80, EP_IFINDEX);
    let mut ports: Vec<(u16, u8)> = dp
        .published::<u32>()
        .iter()
        .map(|(k, _)| (u16::from_be(k.port), k.proto))
        .collect();
    ports.sort();
    assert_eq!(ports, [(1, UDP), (4242, UDP), (8080, TCP), (65535, UDP)]);
}

/// A DNS query: id, RD, one question (`qtype`, class IN), and `extra` after it.
fn dns_query(id: u16, name: &str, qtype: u16, arcount: u16, extra: &[u8]) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x20, 0, 1, 0, 0, 0, 0]);
    q.extend_from_slice(&arcount.to_be_bytes());
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q.extend_from_slice(extra);
    q
}

fn dns_frame(dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut f = Frame::new(EP, dst, UDP);
    f.src_mac = EP_MAC;
    f.dst_mac = GW_MAC;
    f.build(&common::udp_with(40000, 53, payload))
}

/// Network n1 with EP ("client") and PEER ("peer", alias "svc"), and "other" (alias "svc");
/// the fast path's names written from it as the agent writes them.
fn dns_setup(dp: &mut Datapath, ep_if: u32) -> netpath_user::model::State {
    use netpath_user::{model::State, testing::dns::endpoint_record};
    let net = network(dp, 1, "172.17.0.0/16", false, true);
    attach(dp, ep_if, EP.into(), EP_MAC, GW_MAC, 1).unwrap();
    let mut state = State::default();
    state.networks.insert(net.name.clone(), net.clone());
    for (name, ip, aliases) in [
        ("client", EP, vec![]),
        ("peer", PEER, vec!["svc".to_string()]),
        ("other", [172, 17, 0, 4], vec!["svc".to_string()]),
    ] {
        let ep = endpoint_record(name, &net.name, (ip.into(), None), EP_MAC, aliases);
        state.endpoints.insert(name.into(), ep);
    }
    let index = netpath_user::dns::names::Index::new(&state);
    dp.set_dns_names(&netpath_user::dns::names::kernel_names(&state, &index))
        .unwrap();
    state
}

#[test]
fn the_kernel_answers_a_queries_as_the_server_does() {
    use netpath_user::dns::{answer, names::Index};
    let Dp { mut dp, _fs } = load();
    let (ns, ep_if, _, _) = routed_ns();
    let state = dns_setup(&mut dp, ep_if);
    let gw = [172, 17, 0, 1];
    let query = dns_query(0xbeef, "Peer", 1, 0, &[]);
    let pkt = dns_frame(gw, &query);
    let (verdict, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
    assert_eq!(verdict, TC_ACT_REDIRECT, "answered back into the endpoint");
    let seen = Seen(&out);
    assert_eq!((seen.src_mac(), seen.dst_mac()), (GW_MAC, EP_MAC));
    assert_eq!((seen.src(), seen.dst()), (Ipv4Addr::from(gw), EP.into()));
    assert_eq!((seen.sport(), seen.dport()), (53, 40000));
    assert!(
        seen.checksums_ok(),
        "IP checksum right, UDP checksum right or absent"
    );
    let index = Index::new(&state);
    let server = answer::decide(
        &query,
        answer::Asked {
            names: &index,
            from: EP.into(),
            network: "n1",
            rotate: 0,
            udp: true,
        },
    );
    assert_eq!(server.outcome, answer::Outcome::Local);
    assert_eq!(
        &out[42..],
        &server.reply.unwrap()[..],
        "the same bytes as the server's"
    );
    assert_eq!(counter(&dp, Counter::DnsKernel), 1);

    // A shared name: every address, starting one further each time.
    let firsts: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            let pkt = dns_frame(gw, &dns_query(i, "svc", 1, 0, &[]));
            let (v, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
            assert_eq!(v, TC_ACT_REDIRECT);
            let dns = &out[42..];
            assert_eq!(u16::from_be_bytes([dns[6], dns[7]]), 2, "two answers");
            dns[dns.len() - 4..].to_vec()
        })
        .collect();
    assert_ne!(firsts[0], firsts[1], "the order turns");
}

#[test]
fn the_kernel_leaves_everything_else_to_the_server() {
    let Dp { mut dp, _fs } = load();
    let (ns, ep_if, _, _) = routed_ns();
    dns_setup(&mut dp, ep_if);
    let gw = [172, 17, 0, 1];
    let opt = [0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0];
    for (what, pkt) in [
        ("AAAA", dns_frame(gw, &dns_query(1, "peer", 28, 0, &[]))),
        (
            "unknown name",
            dns_frame(gw, &dns_query(2, "nobody", 1, 0, &[])),
        ),
        ("EDNS", dns_frame(gw, &dns_query(3, "peer", 1, 1, &opt))),
        (
            "trailing bytes",
            dns_frame(gw, &dns_query(4, "peer", 1, 0, &[0])),
        ),
        (
            "another server",
            dns_frame([8, 8, 8, 8], &dns_query(5, "peer", 1, 0, &[])),
        ),
        (
            "long name",
            dns_frame(gw, &dns_query(6, &"x".repeat(70), 1, 0, &[])),
        ),
    ] {
        let (verdict, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
        assert_ne!(
            verdict, TC_ACT_REDIRECT,
            "{what}: not answered in the kernel"
        );
        assert_eq!(out, pkt, "{what}: untouched");
    }
    assert_eq!(counter(&dp, Counter::DnsKernel), 0);

    // Fuzz: queries with random headers and names, and random bytes, never answered wrongly.
    for i in 0..3000u32 {
        let mut payload = dns_query(i as u16, "peer", 1, 0, &[]);
        match i % 3 {
            0 => payload[2..12].iter_mut().for_each(|b| *b = rand::random()),
            1 => payload[12..].iter_mut().for_each(|b| *b = rand::random()),
            _ => payload = (0..(i % 80)).map(|_| rand::random()).collect(),
        }
        let pkt = dns_frame(gw, &payload);
        let (verdict, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
        if verdict == TC_ACT_REDIRECT {
            let msg = hickory_proto::op::Message::from_vec(&out[42..]).expect("a DNS answer");
            assert_eq!(msg.answers.len(), 1, "{payload:?}");
        }
    }
}

#[test]
fn outbound_replies_are_looked_up_only_in_the_nat_range() {
    use netpath_common::{SnatNat, SnatRev, SNAT_PORT_MIN};
    let Dp { mut dp, _fs } = load();
    host_addrs(&mut dp, &[HOST]);
    let uplink = be_addr(Ipv4Addr::from(HOST));
    // One outbound flow NATed to the range's first port, and (as no kernel would make it)
    // one to the port just below: the host's own traffic there is never looked up.
    for (client_port, nat_port) in [(1000, SNAT_PORT_MIN), (1001, SNAT_PORT_MIN - 1)] {
        let key = flow_key(
            (Ipv4Addr::from(EP), client_port),
            (Ipv4Addr::from(CLIENT), 80),
            UDP,
        );
        let nat = SnatNat {
            addr: uplink,
            port: be_port(nat_port),
            ..Default::default()
        };
        let rev = SnatRev {
            addr: key.src_addr,
            port: key.src_port,
            ifindex: EP_IFINDEX,
            ..Default::default()
        };
        dp.insert_outbound(key, nat, rev).unwrap();
    }
    let reply = Frame::new(CLIENT, HOST, UDP).build(&udp(80, SNAT_PORT_MIN));
    let (verdict, out) = run_tc(&mut dp, programs::UPLINK_TC, &reply, 0);
    assert_eq!(
        verdict, TC_ACT_REDIRECT,
        "a reply in the range goes to its endpoint"
    );
    assert_eq!(Seen(&out).dst(), Ipv4Addr::from(EP));
    assert!(Seen(&out).checksums_ok());
    let host = Frame::new(CLIENT, HOST, UDP).build(&udp(80, SNAT_PORT_MIN - 1));
    let (verdict, out) = run_tc(&mut dp, programs::UPLINK_TC, &host, 0);
    assert_eq!(verdict, TC_ACT_OK, "outside the range: the host's");
    assert_eq!(out, host, "untouched");
}

/// An overlay network on this node: `network` with a VNI.
fn overlay_network(dp: &mut Datapath, net_id: u32, subnet: &str, icc: bool, vni: u32) {
    let net = Network {
        vni: Some(vni),
        ..network(dp, net_id, subnet, false, icc)
    };
    dp.add_network(&net).unwrap();
}

const NODE2: [u8; 4] = [10, 77, 0, 2];

#[test]
fn traffic_to_endpoints_on_other_nodes_is_encapsulated_within_its_network() {
    use netpath_user::datapath::{OverlayContent, OverlayNetEntry};
    let Dp { mut dp, _fs } = load();
    let r = RoutedNs::new();
    let ep_if = r.endpoint_ifindex;
    // Network 1 (VNI 4097) with EP here; network 2 (VNI 4098); the uplink veth stands in for
    // the VXLAN device.
    overlay_network(&mut dp, 1, "172.17.0.0/16", true, 4097);
    attach(&mut dp, ep_if, EP.into(), EP_MAC, GW_MAC, 1).unwrap();
    overlay_network(&mut dp, 2, "10.5.0.0/24", true, 4098);
    let content = OverlayContent {
        device: r.uplink_ifindex,
        local: Ipv4Addr::new(10, 77, 0, 1).into(),
        networks: [
            (
                1,
                OverlayNetEntry {
                    vni: 4097,
                    peers: vec![Ipv4Addr::from(NODE2).into()],
                },
            ),
            (
                2,
                OverlayNetEntry {
                    vni: 4098,
                    peers: vec![Ipv4Addr::from(NODE2).into()],
                },
            ),
        ]
        .into(),
        remotes: [
            (
                Ipv4Addr::new(172, 17, 0, 50),
                (Ipv4Addr::from(NODE2).into(), 1),
            ),
            (
                Ipv4Addr::new(10, 5, 0, 50),
                (Ipv4Addr::from(NODE2).into(), 2),
            ),
        ]
        .into(),
        remotes6: Default::default(),
    };
    assert!(dp.sync_overlay(&content).unwrap() > 0);
    assert_eq!(
        dp.sync_overlay(&content).unwrap(),
        0,
        "nothing to write twice"
    );

    // To an endpoint of its network on the other node: tunnel key set, to the device.
    let pkt = from_ep([172, 17, 0, 50]);
    let (v, out) =
        r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
    assert_eq!(v, TC_ACT_REDIRECT);
    assert_eq!(
        out, pkt,
        "the inner frame as sent; the device adds the outer headers"
    );
    assert_eq!(counter(&dp, Counter::Encap), 1);
    // ARP for it is answered here.
    let req = arp_request([172, 17, 0, 50]);
    let (v, out) =
        r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &req, ep_if));
    assert_eq!(v, TC_ACT_REDIRECT);
    assert_eq!(&out[28..32], &[172, 17, 0, 50]);
    // An endpoint of another overlay network, on another node: isolated.
    let pkt = from_ep([10, 5, 0, 50]);
    let (v, _) =
        r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(counter(&dp, Counter::DropIsolation), 1);
    let req = arp_request([10, 5, 0, 50]);
    let (v, _) =
        r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &req, ep_if));
    assert_eq!(v, TC_ACT_OK, "not answered: not on its network");
    // icc=false holds across nodes.
    overlay_network(&mut dp, 1, "172.17.0.0/16", false, 4097);
    let pkt = from_ep([172, 17, 0, 50]);
    let (v, _) =
        r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(counter(&dp, Counter::DropIcc), 1);
    assert_eq!(counter(&dp, Counter::Encap), 1);
    // Gone from the cluster: no longer sent anywhere.
    overlay_network(&mut dp, 1, "172.17.0.0/16", true, 4097);
    dp.sync_overlay(&OverlayContent {
        remotes: Default::default(),
        ..content
    })
    .unwrap();
    let pkt = from_ep([172, 17, 0, 50]);
    let (v, _) =
        r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(counter(&dp, Counter::DropNoRoute), 1);
}

/// Nodes on an IPv6 underlay: the tunnel key takes the other node's IPv6 address (the helper
/// refuses a key of the wrong form, and the packet would be dropped).
#[test]
fn traffic_to_a_node_on_an_ipv6_underlay_is_encapsulated() {
    use netpath_user::datapath::{OverlayContent, OverlayNetEntry};
    let Dp { mut dp, _fs } = load();
    let r = RoutedNs::new();
    let ep_if = r.endpoint_ifindex;
    overlay_network(&mut dp, 1, "172.17.0.0/16", true, 4097);
    attach(&mut dp, ep_if, EP.into(), EP_MAC, GW_MAC, 1).unwrap();
    let node = |last| std::net::IpAddr::from(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, last));
    let content = OverlayContent {
        device: r.uplink_ifindex,
        local: node(1),
        networks: [(
            1,
            OverlayNetEntry {
                vni: 4097,
                peers: vec![node(2)],
            },
        )]
        .into(),
        remotes: [(Ipv4Addr::new(172, 17, 0, 50), (node(2), 1))].into(),
        remotes6: Default::default(),
    };
    dp.sync_overlay(&content).unwrap();
    let pkt = from_ep([172, 17, 0, 50]);
    let (v, out) =
        r.ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &pkt, ep_if));
    assert_eq!((v, out), (TC_ACT_REDIRECT, pkt));
    assert_eq!(counter(&dp, Counter::Encap), 1);
}

#[test]
fn the_vxlan_device_drops_what_did_not_come_through_a_tunnel() {
    let Dp { mut dp, _fs } = load();
    let r = RoutedNs::new();
    overlay_network(&mut dp, 1, "172.17.0.0/16", true, 4097);
    attach(&mut dp, r.endpoint_ifindex, EP.into(), EP_MAC, GW_MAC, 1).unwrap();
    let mut f = Frame::new([172, 17, 0, 50], EP, UDP);
    f.dst_mac = EP_MAC;
    let pkt = f.build(&udp(5000, 6000));
    let (v, _) =
        r.ns.run(|| run_tc(&mut dp, programs::OVERLAY_TC, &pkt, r.uplink_ifindex));
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(counter(&dp, Counter::DropOverlay), 1);
    assert_eq!(counter(&dp, Counter::Decap), 0);
}

/// Identities of the endpoint and its peer in the policy tests.
const EP_ID: u32 = 300;
const PEER_ID: u32 = 301;

/// Policy maps where the endpoint and its peer have their identities and `subject` is
/// selected in `dir` with `rules`: ((peer identity, protocol, port) → policy number).
fn compiled(subject: u32, dir: u8, rules: &[(u32, u8, u16)]) -> Compiled {
    let mut c = Compiled::default();
    c.ipcache.insert(Subnet::new(EP.into(), 32).unwrap(), EP_ID);
    c.ipcache
        .insert(Subnet::new(PEER.into(), 32).unwrap(), PEER_ID);
    c.subjects.insert(subject, u32::from(dir));
    for (i, &(peer, proto, port)) in rules.iter().enumerate() {
        let key = PolicyKey::new(dir, subject, peer, proto, port);
        c.rules.insert((key, PolicyKey::PORT), i as u32 + 1);
    }
    c
}

/// The endpoint and its peer on one network, the peer admitting the endpoint on UDP 6000
/// only (where the policy tests start).
fn peer_admits_udp_6000() -> (Dp, Netns, u32) {
    let (Dp { mut dp, _fs }, ns, ep_if) = with_endpoint();
    attach(&mut dp, PEER_IF, PEER.into(), PEER_MAC, PEER_HOST_MAC, 1).unwrap();
    let c = compiled(PEER_ID, direction::INGRESS, &[(EP_ID, UDP, 6000)]);
    dp.set_policy(&c).unwrap();
    (Dp { dp, _fs }, ns, ep_if)
}

#[test]
fn network_policy_takes_the_first_packet_and_ends_what_a_new_policy_denies() {
    let (Dp { mut dp, _fs }, ns, ep_if) = peer_admits_udp_6000();
    let allowed = from_ep(PEER);
    let run =
        |dp: &mut Datapath, pkt: &[u8]| ns.run(|| run_tc(dp, programs::ENDPOINT_TC, pkt, ep_if)).0;
    assert_eq!(run(&mut dp, &allowed), TC_ACT_REDIRECT);
    let other = from_ep_ports(PEER, 5000, 6001);
    assert_eq!(run(&mut dp, &other), TC_ACT_SHOT);
    assert_eq!(counter(&dp, Counter::DropPolicy), 1);
    // The allowed connection is remembered: the next policy selects the endpoint's egress
    // with no rule, and the connection ends (its record removed, its next packet refused).
    let deny = compiled(EP_ID, direction::EGRESS, &[]);
    assert_eq!(
        dp.set_policy(&deny).unwrap(),
        1,
        "the connection's record went"
    );
    assert_eq!(run(&mut dp, &allowed), TC_ACT_SHOT);
    // No policy: everything passes again.
    dp.set_policy(&Compiled::default()).unwrap();
    assert_eq!(run(&mut dp, &other), TC_ACT_REDIRECT);
    assert_eq!(counter(&dp, Counter::DropPolicy), 2);
}

/// The flood guard holds the connections network policy remembers too: past the CPU's rate a
/// new connection between endpoints is dropped and counted before it takes a place among the
/// remembered ones (where a flood would evict the connections whose replies need theirs),
/// while a connection remembered before goes on.
#[test]
fn new_connections_past_the_rate_are_not_remembered_by_policy_while_remembered_ones_go_on() {
    pin_to_this_cpu();
    let (Dp { mut dp, _fs }, ns, ep_if) = peer_admits_udp_6000();
    let run =
        |dp: &mut Datapath, pkt: &[u8]| ns.run(|| run_tc(dp, programs::ENDPOINT_TC, pkt, ep_if)).0;
    let from = |sport: u16| from_ep_ports(PEER, sport, 6000);
    let remembered = from(5000);
    assert_eq!(run(&mut dp, &remembered), TC_ACT_REDIRECT);
    dp.set_new_flow_rate(1).unwrap();
    let start = std::time::Instant::now();
    let mut admitted = 0u64;
    for sport in 41000..41100u16 {
        admitted += u64::from(run(&mut dp, &from(sport)) == TC_ACT_REDIRECT);
        assert_eq!(
            run(&mut dp, &remembered),
            TC_ACT_REDIRECT,
            "the remembered connection goes on"
        );
    }
    // The first at once, then one a second: what the time taken allows.
    let allowed = 1 + start.elapsed().as_secs_f64().ceil() as u64;
    assert!(
        (1..=allowed).contains(&admitted),
        "{admitted} new connections admitted, {allowed} allowed"
    );
    assert_eq!(counter(&dp, Counter::DropNewFlowRate), 100 - admitted);
    assert_eq!(
        counter(&dp, Counter::DropPolicy),
        0,
        "none refused by policy"
    );
    // What was remembered: a policy denying the endpoint everything ends each of them.
    let deny = compiled(EP_ID, direction::EGRESS, &[]);
    assert_eq!(dp.set_policy(&deny).unwrap() as u64, 1 + admitted);
    // No policy: nothing is remembered, so the guard has nothing to hold.
    dp.set_policy(&Compiled::default()).unwrap();
    for sport in 42000..42010u16 {
        assert_eq!(run(&mut dp, &from(sport)), TC_ACT_REDIRECT);
    }
    assert_eq!(counter(&dp, Counter::DropNewFlowRate), 100 - admitted);
}

#[test]
fn icmp_errors_about_an_allowed_connection_pass_a_policy_that_names_no_icmp() {
    let (Dp { mut dp, _fs }, ns, ep_if) = peer_admits_udp_6000();
    let run =
        |dp: &mut Datapath, pkt: &[u8]| ns.run(|| run_tc(dp, programs::ENDPOINT_TC, pkt, ep_if)).0;
    assert_eq!(run(&mut dp, &from_ep(PEER)), TC_ACT_REDIRECT);
    // The peer's reply finds the endpoint's socket gone: the endpoint answers with an ICMP
    // error (port unreachable) carrying the reply's headers.
    let error_about = |dport: u16| {
        let about = Frame::new(PEER, EP, UDP).build(&udp(6000, dport));
        let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&about[14..14 + 28]);
        let mut f = Frame::new(EP, PEER, ICMP);
        f.src_mac = EP_MAC;
        f.dst_mac = GW_MAC;
        f.build(&icmp)
    };
    assert_eq!(
        run(&mut dp, &error_about(5000)),
        TC_ACT_REDIRECT,
        "an error about the allowed connection"
    );
    assert_eq!(
        run(&mut dp, &error_about(5999)),
        TC_ACT_SHOT,
        "an error about nothing allowed"
    );
    assert_eq!(counter(&dp, Counter::DropPolicy), 1);
}

#[test]
fn network_policy_rules_for_port_ranges_and_whole_protocols_and_their_removal() {
    let (Dp { mut dp, _fs }, ns, ep_if) = with_endpoint();
    attach(&mut dp, PEER_IF, PEER.into(), PEER_MAC, PEER_HOST_MAC, 1).unwrap();
    let packet = |proto: u8, sport: u16, dport: u16| {
        let mut f = Frame::new(EP, PEER, proto);
        f.src_mac = EP_MAC;
        f.dst_mac = GW_MAC;
        match proto {
            TCP => f.build(&tcp(sport, dport)),
            _ => f.build(&udp(sport, dport)),
        }
    };
    let run =
        |dp: &mut Datapath, pkt: &[u8]| ns.run(|| run_tc(dp, programs::ENDPOINT_TC, pkt, ep_if)).0;
    // The peer admits the endpoint on UDP 6000-6015 (one block of 16) and anyone on TCP.
    let mut c = compiled(PEER_ID, direction::INGRESS, &[]);
    let block = PolicyKey::new(direction::INGRESS, PEER_ID, EP_ID, UDP, 6000);
    c.rules.insert((block, PolicyKey::PORT - 4), 1);
    let tcp_any = PolicyKey::new(direction::INGRESS, PEER_ID, identity::ANY, TCP, 0);
    c.rules.insert((tcp_any, PolicyKey::PROTOCOL), 2);
    dp.set_policy(&c).unwrap();
    assert_eq!(run(&mut dp, &packet(UDP, 5001, 6015)), TC_ACT_REDIRECT);
    assert_eq!(run(&mut dp, &packet(UDP, 5002, 6016)), TC_ACT_SHOT);
    assert_eq!(run(&mut dp, &packet(TCP, 5003, 22)), TC_ACT_REDIRECT);
    // Only a rule for one port is left: the ranges go, and what they allowed with them.
    let one = compiled(PEER_ID, direction::INGRESS, &[(EP_ID, UDP, 6016)]);
    assert_eq!(dp.set_policy(&one).unwrap(), 2, "both connections ended");
    assert_eq!(run(&mut dp, &packet(UDP, 5004, 6016)), TC_ACT_REDIRECT);
    assert_eq!(run(&mut dp, &packet(UDP, 5005, 6015)), TC_ACT_SHOT);
    assert_eq!(run(&mut dp, &packet(TCP, 5006, 22)), TC_ACT_SHOT);
    // A datapath opened anew over the same pins reads what is there and writes the difference.
    drop(dp);
    let mut dp = Datapath::load(
        Some(_fs.path()),
        MapSizes {
            ports: 1024,
            flows: 1024,
            endpoints: 64,
        },
    )
    .unwrap();
    assert_eq!(dp.policy_identities().len(), 2, "the endpoints' identities");
    dp.set_policy(&c).unwrap();
    assert_eq!(run(&mut dp, &packet(TCP, 5007, 22)), TC_ACT_REDIRECT);
    assert_eq!(counter(&dp, Counter::DropPolicy), 3);
}

#[test]
fn network_policy_sees_published_ports_as_the_endpoint_does() {
    const XDP_DROP: u32 = 1;
    let Dp { mut dp, _fs } = published(&[(8080, TCP, 80)]);
    // The endpoint admits clients of 10.0.0.0/24 on its port 80 (not the host's 8080).
    let mut c = compiled(EP_ID, direction::INGRESS, &[]);
    c.ipcache
        .insert("10.0.0.0/24".parse().unwrap(), identity::FIRST_OF_CIDRS);
    let key = PolicyKey::new(direction::INGRESS, EP_ID, identity::FIRST_OF_CIDRS, TCP, 80);
    c.rules.insert((key, PolicyKey::PORT), 1);
    dp.set_policy(&c).unwrap();
    let inside = Frame::new(CLIENT, HOST, TCP).build(&tcp(40000, 8080));
    assert_eq!(run_xdp(&mut dp, &inside).0, XDP_REDIRECT);
    let outside = Frame::new([192, 0, 2, 9], HOST, TCP).build(&tcp(40001, 8080));
    assert_eq!(run_xdp(&mut dp, &outside).0, XDP_DROP);
    assert_eq!(
        run_tc(&mut dp, programs::UPLINK_TC, &outside, 0).0,
        TC_ACT_SHOT
    );
    assert_eq!(counter(&dp, Counter::DropPolicy), 2);
    // A policy that no longer admits the client ends its published flow.
    let c = compiled(EP_ID, direction::INGRESS, &[]);
    assert_eq!(dp.set_policy(&c).unwrap(), 1);
    assert!(flow(&dp, 80, 40000, TCP).is_none());
}

/// An ICMP "fragmentation needed" (destination unreachable, code 4) from `router` to `to`,
/// about `about` (a frame) carried from its IP header on, its first 8 transport bytes only.
fn frag_needed(router: [u8; 4], to: [u8; 4], about: &[u8], mtu: u16) -> Vec<u8> {
    let mut rest = [0; 4];
    rest[2..].copy_from_slice(&mtu.to_be_bytes());
    Frame::new(router, to, ICMP).build(&unreachable(4, rest, about))
}

/// The body of an ICMP destination unreachable of `code` (its second word `rest`) about
/// `about` (a frame): its IP header and first 8 transport bytes.
fn unreachable(code: u8, rest: [u8; 4], about: &[u8]) -> Vec<u8> {
    let mut body = vec![3, code, 0, 0];
    body.extend_from_slice(&rest);
    body.extend_from_slice(&about[14..14 + 28]);
    let c = common::inet_checksum(&[&body]);
    body[2..4].copy_from_slice(&c.to_be_bytes());
    body
}

#[test]
fn an_endpoints_port_unreachable_reaches_the_client_from_the_port_it_used() {
    let Dp { mut dp, _fs } = load();
    let (ns, ep_if, up_if, up_mac) = behind_one_uplink(&mut dp);
    // One to one (no flow recorded: the error is the first answer), and a container port on
    // two host ports (flows kept, sent back the way the client came).
    publish(&mut dp, [0; 4], 5353, UDP, 53, ep_if);
    publish(&mut dp, [0; 4], 6000, UDP, 60, ep_if);
    publish(&mut dp, [0; 4], 6001, UDP, 60, ep_if);
    for (sport, host_port, neighbour) in [(40000, 5353, FIB_NEIGHBOUR), (40001, 6001, ROUTER)] {
        let mut f = Frame::new(CLIENT, HOST, UDP);
        f.src_mac = ROUTER;
        f.dst_mac = up_mac;
        let pkt = f.build(&udp(sport, host_port));
        let (verdict, delivered) = ns.run(|| run_tc(&mut dp, programs::UPLINK_TC, &pkt, up_if));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        // Nothing listens: the endpoint's stack answers port unreachable, about the
        // datagram as it got it.
        let mut e = Frame::new(EP, CLIENT, ICMP);
        e.src_mac = EP_MAC;
        e.dst_mac = GW_MAC;
        let err = e.build(&unreachable(3, [0; 4], &delivered));
        let (verdict, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &err, ep_if));
        assert_eq!(verdict, TC_ACT_REDIRECT, "sent out to the client");
        let seen = Seen(&out);
        assert_eq!(
            (seen.src(), seen.dst()),
            (Ipv4Addr::from(HOST), Ipv4Addr::from(CLIENT))
        );
        assert_eq!((seen.src_mac(), seen.dst_mac()), (up_mac, neighbour));
        assert_eq!(
            common::inet_checksum(&[&out[14..34]]),
            0,
            "the IP header's checksum"
        );
        let icmp = &out[34..];
        assert_eq!(common::inet_checksum(&[icmp]), 0, "the ICMP checksum");
        // What it carries is the client's datagram as the client sent it.
        let inner = &icmp[8..];
        assert_eq!((&inner[12..16], &inner[16..20]), (&CLIENT[..], &HOST[..]));
        assert_eq!(u16::from_be_bytes([inner[20], inner[21]]), sport);
        assert_eq!(u16::from_be_bytes([inner[22], inner[23]]), host_port);
        assert_eq!(
            common::inet_checksum(&[&inner[..20]]),
            0,
            "the carried header's"
        );
    }
    assert_eq!(dp.counter(Counter::IcmpErrorOut), 2);
    // To a peer of its network, about the peer's datagram to a published port: no client
    // beyond the host, not translated.
    let from_peer = Frame::new([172, 17, 0, 3], EP, UDP).build(&udp(40003, 53));
    let mut e = Frame::new(EP, [172, 17, 0, 3], ICMP);
    e.src_mac = EP_MAC;
    e.dst_mac = GW_MAC;
    let err = e.build(&unreachable(3, [0; 4], &from_peer));
    let (_, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &err, ep_if));
    assert_eq!(Seen(&out).src(), Ipv4Addr::from(EP));
    assert_eq!(dp.counter(Counter::IcmpErrorOut), 2);
    // About what was no client's packet of a published port: not translated.
    let own = Frame::new(CLIENT, EP, UDP).build(&udp(40002, 99));
    let mut e = Frame::new(EP, CLIENT, ICMP);
    e.src_mac = EP_MAC;
    e.dst_mac = GW_MAC;
    let err = e.build(&unreachable(3, [0; 4], &own));
    let (_, out) = ns.run(|| run_tc(&mut dp, programs::ENDPOINT_TC, &err, ep_if));
    assert_eq!(Seen(&out).src(), Ipv4Addr::from(EP));
    assert_eq!(dp.counter(Counter::IcmpErrorOut), 2);
}

#[test]
fn fragmentation_needed_about_a_published_reply_reaches_its_endpoint_translated_back() {
    let Dp { mut dp, _fs } = published(&[(8080, TCP, 80)]);
    let syn = Frame::new(CLIENT, HOST, TCP).build(&tcp(40000, 8080));
    assert_eq!(
        run_tc(&mut dp, programs::UPLINK_TC, &syn, 0).0,
        TC_ACT_REDIRECT
    );
    let reply = Frame::new(HOST, CLIENT, TCP).build(&tcp(8080, 40000));
    let err = frag_needed([10, 0, 0, 254], HOST, &reply, 1400);
    let (verdict, out) = run_xdp(&mut dp, &err);
    assert_eq!(verdict, XDP_REDIRECT);
    let seen = Seen(&out);
    assert_eq!(seen.dst(), Ipv4Addr::from(EP), "to the endpoint");
    assert_eq!((seen.src_mac(), seen.dst_mac()), (GW_MAC, EP_MAC));
    assert_eq!(
        common::inet_checksum(&[&out[14..34]]),
        0,
        "the IP header's checksum"
    );
    let icmp = &out[34..];
    assert_eq!(common::inet_checksum(&[icmp]), 0, "the ICMP checksum");
    assert_eq!(&icmp[6..8], &1400u16.to_be_bytes(), "the MTU kept");
    // What it carries is the reply as the endpoint sent it, its header's checksum right.
    let inner = &icmp[8..];
    assert_eq!(&inner[12..16], &EP, "its source the endpoint");
    assert_eq!(&inner[16..20], &CLIENT);
    assert_eq!(u16::from_be_bytes([inner[20], inner[21]]), 80);
    assert_eq!(
        common::inet_checksum(&[&inner[..20]]),
        0,
        "the carried header's checksum"
    );
    assert_eq!(dp.counter(Counter::IcmpErrorBack), 1);
}

/// The kernel refuses a program whose verification walks past a million instructions. Every
/// program of the datapath verifies within three quarters of that, so that a change nearing
/// the limit (a branch that forks a loop in the verifier, a larger copy on a long path) shows
/// here, program by program, before it shows as a datapath that does not load.
#[test]
fn every_program_verifies_with_a_quarter_of_the_budget_to_spare() {
    const LIMIT: u32 = 1_000_000;
    let Dp { mut dp, _fs } = load();
    let xdp = [
        programs::UPLINK_XDP,
        programs::UPLINK6_XDP,
        programs::UPLINK_NAT46_XDP,
        programs::XDP_PASS,
    ];
    let mut counts = Vec::new();
    for name in programs::ALL
        .into_iter()
        .filter(|n| !programs::SOCK.contains(n))
    {
        let info = if xdp.contains(&name) {
            dp.xdp(name).unwrap().info()
        } else {
            dp.classifier(name).unwrap().info()
        };
        let n = info
            .unwrap()
            .verified_instruction_count()
            .expect("the kernel counts verified instructions");
        counts.push((name, n));
    }
    assert_eq!(counts.len(), programs::ALL.len() - programs::SOCK.len());
    eprintln!("verified instructions: {counts:?}");
    let over: Vec<_> = counts.iter().filter(|(_, n)| *n > LIMIT / 4 * 3).collect();
    assert!(
        over.is_empty(),
        "over 3/4 of the verifier's budget: {over:?}; all: {counts:?}"
    );
}
