//! The desired state the DNS unit tests ask about.
use std::net::Ipv4Addr;

use crate::model::{plan::HostView, Connect, EndpointCreate, NetworkCreate, State};

fn host() -> HostView<'static> {
    HostView {
        busy: &|_| false,
        ..HostView::empty()
    }
}

/// Networks front (10.1.0.0/24), back (10.2.0.0/24) and internal-only vault (10.3.0.0/24);
/// web on front, api on front and back (alias "svc" on back), db on back, api2 on back
/// (alias "svc" too), safe on vault.
pub fn state() -> State {
    let mut s = State::default();
    for (name, subnet, internal) in [
        ("front", "10.1.0.0/24", false),
        ("back", "10.2.0.0/24", false),
        ("vault", "10.3.0.0/24", true),
    ] {
        let n = s
            .plan_network(
                &NetworkCreate {
                    name: name.into(),
                    subnet: Some(subnet.into()),
                    internal,
                    ..Default::default()
                },
                host(),
            )
            .unwrap();
        s.networks.insert(n.name.clone(), n);
    }
    for (name, net, aliases) in [
        ("web", "front", vec![]),
        ("api", "front", vec![]),
        ("db", "back", vec![]),
        ("api2", "back", vec!["svc".to_string()]),
        ("safe", "vault", vec![]),
    ] {
        let mut ep = s
            .plan_endpoint(
                &EndpointCreate {
                    name: name.into(),
                    netns: "/proc/self/ns/net".into(),
                    network: Some(net.into()),
                    aliases,
                    ..Default::default()
                },
                host(),
            )
            .unwrap();
        ep.netns = format!("/x/{name}").into();
        s.endpoints.insert(ep.name.clone(), ep);
    }
    let att = s
        .plan_connect(
            "back",
            &Connect {
                endpoint: "api".into(),
                aliases: vec!["svc".into()],
                ..Default::default()
            },
        )
        .unwrap();
    s.endpoints.get_mut("api").unwrap().attachments.push(att);
    s
}

pub fn ip(s: &State, ep: &str, net: &str) -> Ipv4Addr {
    s.endpoints[ep].attachment(net).unwrap().ip.unwrap()
}
