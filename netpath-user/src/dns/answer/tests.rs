use std::net::Ipv4Addr;

use hickory_proto::op::Query;

use super::*;
use crate::{
    dns::test_state::{ip, state},
    model::{plan::HostView, EndpointCreate},
};

/// A plain query: id 0x1234, RD, one question.
fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

fn asked<'a>(
    s: &'a names::Index,
    from: impl Into<std::net::IpAddr>,
    network: &'a str,
) -> Asked<'a> {
    Asked {
        names: s,
        from: from.into(),
        network,
        rotate: 0,
        udp: true,
    }
}

fn parsed(d: &Decision) -> Message {
    Message::from_vec(d.reply.as_ref().expect("a reply")).unwrap()
}

#[test]
fn a_local_name_is_answered_byte_for_byte_as_the_kernel_does() {
    let s = state();
    let ix = names::Index::new(&s);
    let web = ip(&s, "web", "front");
    let [a, b, c, d] = ip(&s, "api", "front").octets();
    let q = query("Api", 1);
    let got = decide(&q, asked(&ix, web, "front"));
    assert_eq!(got.outcome, Outcome::Local);
    let mut want = vec![0x12, 0x34, 0x85, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    want.extend_from_slice(&q[12..]);
    want.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x02, 0x58, 0, 4, a, b, c, d]);
    assert_eq!(got.reply.unwrap(), want);
}

#[test]
fn other_types_and_names() {
    let s = state();
    let ix = names::Index::new(&s);
    let web = ip(&s, "web", "front");
    // A known name has no IPv6 address: an empty answer, not NXDOMAIN.
    let r = parsed(&decide(&query("api", 28), asked(&ix, web, "front")));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty() && r.metadata.authoritative);
    // Another network's name.
    let d = decide(&query("db", 1), asked(&ix, web, "front"));
    assert_eq!(d.outcome, Outcome::NxDomain);
    assert_eq!(parsed(&d).metadata.response_code, ResponseCode::NXDomain);
    // Not ours.
    let d = decide(&query("example.com", 1), asked(&ix, web, "front"));
    assert_eq!((d.outcome, d.reply), (Outcome::Forward, None));
    // Not an endpoint.
    let d = decide(
        &query("web", 1),
        asked(&ix, Ipv4Addr::new(192, 0, 2, 1), "front"),
    );
    assert_eq!(d.outcome, Outcome::Refused);
    assert_eq!(parsed(&d).metadata.response_code, ResponseCode::Refused);
    // A reverse name.
    let [a, b, c, d4] = ip(&s, "api", "front").octets();
    let r = parsed(&decide(
        &query(&format!("{d4}.{c}.{b}.{a}.in-addr.arpa"), 12),
        asked(&ix, web, "front"),
    ));
    assert_eq!(r.answers.len(), 1);
    assert_eq!(
        r.answers[0].data,
        RData::PTR(PTR(Name::from_ascii("api.front.").unwrap()))
    );
}

#[test]
fn shared_names_rotate() {
    let s = state();
    let ix = names::Index::new(&s);
    let db = ip(&s, "db", "back");
    let (api, api2) = (ip(&s, "api", "back"), ip(&s, "api2", "back"));
    let order = |rotate| {
        let d = decide(
            &query("svc", 1),
            Asked {
                rotate,
                ..asked(&ix, db, "back")
            },
        );
        parsed(&d)
            .answers
            .iter()
            .map(|r| match r.data {
                RData::A(A(a)) => a,
                _ => panic!("not an A record"),
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(order(0), [api, api2]);
    assert_eq!(order(1), [api2, api]);
}

#[test]
fn bad_queries_get_formerr_or_nothing() {
    let s = state();
    let ix = names::Index::new(&s);
    let web = ip(&s, "web", "front");
    let a = asked(&ix, web, "front");
    // A readable header, then nonsense: FORMERR with the query's id.
    let mut junk = query("web", 1);
    junk.truncate(15);
    let d = decide(&junk, a);
    assert_eq!(d.outcome, Outcome::FormErr);
    let r = d.reply.unwrap();
    assert_eq!((r[0], r[1], r[3] & 0xf), (0x12, 0x34, 1));
    // Not even a header, or an answer sent to us: nothing.
    assert_eq!(decide(&[1, 2, 3], a).outcome, Outcome::Dropped);
    let mut answer = query("web", 1);
    answer[2] |= 0x80;
    assert_eq!(decide(&answer, a).outcome, Outcome::Dropped);
    // Two questions.
    let mut two = Message::query();
    two.add_query(Query::query(
        Name::from_ascii("web.").unwrap(),
        RecordType::A,
    ));
    two.add_query(Query::query(
        Name::from_ascii("api.").unwrap(),
        RecordType::A,
    ));
    let d = decide(&two.to_vec().unwrap(), a);
    assert_eq!(d.outcome, Outcome::FormErr);
    // Random bytes never panic.
    for n in 0..2000u32 {
        let len = (n % 300) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
        // Only that it does not panic is checked here.
        let _ = decide(&bytes, a);
    }
}

#[test]
fn too_big_for_udp_is_truncated() {
    let mut s = state();
    let host = HostView {
        busy: &|_| false,
        ..HostView::empty()
    };
    for i in 0..40 {
        let mut ep = s
            .plan_endpoint(
                &EndpointCreate {
                    name: format!("many{i}"),
                    netns: "/proc/self/ns/net".into(),
                    network: Some("front".into()),
                    aliases: vec!["pool".into()],
                    ..Default::default()
                },
                host,
            )
            .unwrap();
        ep.netns = format!("/x/many{i}").into();
        s.endpoints.insert(ep.name.clone(), ep);
    }
    let ix = names::Index::new(&s);
    let web = ip(&s, "web", "front");
    let r = parsed(&decide(&query("pool", 1), asked(&ix, web, "front")));
    assert!(r.metadata.truncation && r.answers.is_empty());
    let tcp = Asked {
        udp: false,
        ..asked(&ix, web, "front")
    };
    let r = parsed(&decide(&query("pool", 1), tcp));
    assert_eq!(r.answers.len(), 40);
}
