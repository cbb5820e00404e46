//! The plugin's calls in the order dockerd makes them, against an agent with fake kernel
//! parts: what each answers, what the agent's state becomes, what is refused.
use std::{net::Ipv4Addr, sync::Arc};

use serde_json::{json, Value};

use super::{ipam::Pools, Plugin};
use crate::{
    agent::{store::MemoryStore, Agent, HostHooks, Shared},
    api::Service,
    datapath::fake::{FakeDatapath, Faults},
    model::State,
    netlink::fake::FakeLinks,
};

type FakeShared = Shared<FakeDatapath, FakeLinks, MemoryStore>;

fn plugin() -> (Plugin<FakeShared>, Arc<FakeShared>) {
    let faults = Faults::none();
    let mut links = FakeLinks::new(faults.clone());
    links.addrs.insert(Ipv4Addr::LOCALHOST);
    links.addrs.insert(Ipv4Addr::new(192, 168, 77, 2));
    links.busy_ports.insert(2222);
    let agent = Agent::new(
        State::default(),
        FakeDatapath::new(faults.clone()),
        links,
        MemoryStore {
            saved: None,
            faults,
        },
        HostHooks::default(),
    );
    let svc = Arc::new(Shared::new(agent));
    (Plugin::new(svc.clone(), Pools::in_memory()), svc)
}

const NET: &str = "4e7a3b1c9d2f00112233445566778899aabbccddeeff00112233445566778899";
const EP: &str = "ab12cd34ef5600000000000000000000000000000000000000000000000000ff";

fn call(p: &Plugin<FakeShared>, method: &str, body: Value) -> Result<Value, String> {
    p.call(method, body.to_string().as_bytes())
        .unwrap_or_else(|| panic!("{method} not implemented"))
}

/// `docker network create -d netpath --ipam-driver netpath --subnet 10.20.0.0/24
/// --ip-range 10.20.0.128/25 -o com.docker.network.bridge.enable_icc=false`, as dockerd calls.
fn create_network(p: &Plugin<FakeShared>) {
    let pool = call(
        p,
        "IpamDriver.RequestPool",
        json!({"AddressSpace": "netpath", "Pool": "10.20.0.0/24", "SubPool": "10.20.0.128/25", "V6": false}),
    )
    .unwrap();
    let gw = call(
        p,
        "IpamDriver.RequestAddress",
        json!({"PoolID": pool["PoolID"], "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}}),
    )
    .unwrap();
    assert_eq!(gw["Address"], "10.20.0.1/24");
    call(
        p,
        "NetworkDriver.CreateNetwork",
        json!({
            "NetworkID": NET,
            "Options": {
                "com.docker.network.enable_ipv6": false,
                "com.docker.network.generic": {"com.docker.network.bridge.enable_icc": "false"}
            },
            "IPv4Data": [{"AddressSpace": "netpath", "Pool": "10.20.0.0/24", "Gateway": gw["Address"]}],
            "IPv6Data": []
        }),
    )
    .unwrap();
}

#[test]
fn activation_and_capabilities() {
    let (p, _) = plugin();
    let a = call(&p, "Plugin.Activate", json!({})).unwrap();
    assert_eq!(a, json!({"Implements": ["NetworkDriver", "IpamDriver"]}));
    let c = call(&p, "NetworkDriver.GetCapabilities", json!({})).unwrap();
    assert_eq!(c["Scope"], "local");
    let s = call(&p, "IpamDriver.GetDefaultAddressSpaces", json!({})).unwrap();
    assert_eq!(s["LocalDefaultAddressSpace"], "netpath");
    assert!(p.call("NetworkDriver.Nonsense", b"{}").is_none());
    // Empty bodies are empty objects (dockerd sends none for some calls).
    assert!(p.call("NetworkDriver.DiscoverNew", b"").unwrap().is_ok());
}

#[test]
fn a_container_lifecycle_goes_through_the_agent() {
    let (p, svc) = plugin();
    create_network(&p);
    let net = &svc.networks()[0];
    assert_eq!(net.name, &NET[..12]);
    assert_eq!(net.ipam.config[0].gateway, Ipv4Addr::new(10, 20, 0, 1));
    assert_eq!(
        net.ipam.config[0].ip_range.as_deref(),
        Some("10.20.0.128/25")
    );
    assert_eq!(
        net.options
            .get("com.docker.network.bridge.enable_icc")
            .map(String::as_str),
        Some("false")
    );

    // docker run --network X -p 8080:80 -p 127.0.0.1::53/udp --expose 443
    let addr = call(
        &p,
        "IpamDriver.RequestAddress",
        json!({"PoolID": "10.20.0.0/24/10.20.0.128/25", "Address": ""}),
    )
    .unwrap();
    assert_eq!(addr["Address"], "10.20.0.128/24");
    let created = call(
        &p,
        "NetworkDriver.CreateEndpoint",
        json!({
            "NetworkID": NET, "EndpointID": EP,
            "Interface": {"Address": addr["Address"], "AddressIPv6": "", "MacAddress": ""},
            "Options": {"com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}, {"Proto": 17, "Port": 53}, {"Proto": 6, "Port": 443}]}
        }),
    )
    .unwrap();
    assert_eq!(created["Interface"]["MacAddress"], "02:42:0a:14:00:80");
    let ep = &svc.endpoints()[0];
    assert_eq!(ep.ip_address, Some(Ipv4Addr::new(10, 20, 0, 128)));
    let joined = call(
        &p,
        "NetworkDriver.Join",
        json!({"NetworkID": NET, "EndpointID": EP, "SandboxKey": "/var/run/docker/netns/abc", "Options": {}}),
    )
    .unwrap();
    assert_eq!(joined["Gateway"], "10.20.0.1");
    assert_eq!(joined["InterfaceName"]["DstPrefix"], "eth");
    assert_eq!(
        joined["InterfaceName"]["SrcName"],
        crate::netlink::handover_name(&ep.host_interface)
    );
    call(
        &p,
        "NetworkDriver.ProgramExternalConnectivity",
        json!({"NetworkID": NET, "EndpointID": EP, "Options": {
            "com.docker.network.portmap": [
                {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080},
                {"Proto": 17, "IP": "", "Port": 53, "HostIP": "127.0.0.1", "HostPort": 0, "HostPortEnd": 0},
                {"Proto": 6, "IP": "", "Port": 80, "HostIP": "::", "HostPort": 8080, "HostPortEnd": 8080}
            ]}}),
    )
    .unwrap();
    let info = call(
        &p,
        "NetworkDriver.EndpointOperInfo",
        json!({"NetworkID": NET, "EndpointID": EP}),
    )
    .unwrap();
    let map = info["Value"]["com.docker.network.portmap"]
        .as_array()
        .unwrap()
        .clone();
    // The `::` binding too, though the endpoint has IPv4 alone: reached by NAT46.
    assert_eq!(map.len(), 3, "{map:?}");
    let tcp: Vec<_> = map.iter().filter(|b| b["Proto"] == 6).collect();
    assert_eq!(tcp.len(), 2, "{map:?}");
    for b in &tcp {
        assert_eq!(
            (b["HostPort"].as_u64(), b["Port"].as_u64()),
            (Some(8080), Some(80))
        );
    }
    assert!(tcp.iter().any(|b| b["HostIP"] == "::"), "{map:?}");
    let udp = map.iter().find(|b| b["Proto"] == 17).unwrap();
    assert_eq!(udp["HostIP"], "127.0.0.1");
    assert!(
        udp["HostPort"].as_u64().unwrap() >= 32768,
        "an ephemeral port: {udp}"
    );
    assert_eq!(
        info["Value"]["com.docker.network.endpoint.exposedports"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // The same call again (a gateway change back) leaves one set of ports.
    call(
        &p,
        "NetworkDriver.ProgramExternalConnectivity",
        json!({"NetworkID": NET, "EndpointID": EP, "Options": {
            "com.docker.network.portmap": [
                {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080}]}}),
    )
    .unwrap();
    assert_eq!(svc.ports().len(), 1);
    // A container can't be connected behind Docker's back.
    assert!(svc
        .connect(
            &NET[..12],
            &crate::model::Connect {
                endpoint: ep.name.clone(),
                ..Default::default()
            }
        )
        .is_err());

    // docker rm -f: revoke, leave, delete, release.
    for m in [
        "NetworkDriver.RevokeExternalConnectivity",
        "NetworkDriver.Leave",
        "NetworkDriver.DeleteEndpoint",
    ] {
        call(&p, m, json!({"NetworkID": NET, "EndpointID": EP})).unwrap();
    }
    assert!(svc.endpoints().is_empty() && svc.ports().is_empty());
    call(
        &p,
        "IpamDriver.ReleaseAddress",
        json!({"PoolID": "10.20.0.0/24/10.20.0.128/25", "Address": "10.20.0.128/24"}),
    )
    .unwrap();
    // Deleting twice is fine (dockerd retries after restarts).
    call(
        &p,
        "NetworkDriver.DeleteEndpoint",
        json!({"NetworkID": NET, "EndpointID": EP}),
    )
    .unwrap();
    call(&p, "NetworkDriver.DeleteNetwork", json!({"NetworkID": NET})).unwrap();
    assert!(svc.networks().is_empty());
    call(
        &p,
        "IpamDriver.ReleasePool",
        json!({"PoolID": "10.20.0.0/24/10.20.0.128/25"}),
    )
    .unwrap();
}

#[test]
fn refusals_are_one_line_and_change_nothing() {
    let (p, svc) = plugin();
    create_network(&p);
    let before = (svc.networks().len(), svc.endpoints().len());
    let no_v6 = call(
        &p,
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": "ff".repeat(32), "Options": {"com.docker.network.enable_ipv6": true},
               "IPv4Data": [{"AddressSpace": "x", "Pool": "10.30.0.0/24", "Gateway": "10.30.0.1/24"}]}),
    )
    .unwrap_err();
    assert!(no_v6.contains("IPv6 subnet"), "{no_v6}");
    let two_v6 = call(
        &p,
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": "fe".repeat(32), "Options": {"com.docker.network.enable_ipv6": true},
               "IPv4Data": [{"AddressSpace": "x", "Pool": "10.30.0.0/24", "Gateway": "10.30.0.1/24"}],
               "IPv6Data": [{"AddressSpace": "x", "Pool": "fd00:30::/64", "Gateway": "fd00:30::1/64"},
                            {"AddressSpace": "x", "Pool": "fd00:31::/64", "Gateway": "fd00:31::1/64"}]}),
    )
    .unwrap_err();
    assert!(two_v6.contains("at most one IPv6"), "{two_v6}");
    let overlap = call(
        &p,
        "IpamDriver.RequestPool",
        json!({"AddressSpace": "netpath", "Pool": "10.20.0.0/16"}),
    )
    .unwrap_err();
    assert!(overlap.contains("overlaps"), "{overlap}");
    let unknown = call(
        &p,
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": "00".repeat(32), "EndpointID": EP, "Interface": {"Address": "10.20.0.9/24"}}),
    )
    .unwrap_err();
    assert!(unknown.contains("no network"), "{unknown}");
    call(
        &p,
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": NET, "EndpointID": EP, "Interface": {"Address": "10.20.0.9/24"}}),
    )
    .unwrap();
    // Docker publishing port 80 of the endpoint as `host_port` over protocol number `proto`.
    let publish = |proto: u8, host_port: u16| {
        call(
            &p,
            "NetworkDriver.ProgramExternalConnectivity",
            json!({"NetworkID": NET, "EndpointID": EP, "Options": {"com.docker.network.portmap": [
                {"Proto": proto, "IP": "", "Port": 80, "HostIP": "",
                 "HostPort": host_port, "HostPortEnd": host_port}]}}),
        )
    };
    let busy = publish(6, 2222).unwrap_err();
    assert!(busy.contains("2222") && !busy.contains('\n'), "{busy}");
    assert!(svc.ports().is_empty());
    let sctp = publish(132, 80).unwrap_err();
    assert!(sctp.contains("SCTP"), "{sctp}");
    assert_eq!(
        (svc.networks().len(), svc.endpoints().len()),
        (before.0, before.1 + 1)
    );
    let garbage = p
        .call("NetworkDriver.Join", b"{not json")
        .unwrap()
        .unwrap_err();
    assert!(garbage.starts_with("invalid request body"), "{garbage}");
}

/// `docker network create --ipv6 -d netpath --ipam-driver netpath --subnet 10.21.0.0/24`
/// (the IPv6 pool from netpath's), a container on it: dockerd's calls in its order.
#[test]
fn a_dual_stack_network_and_its_container() {
    let (p, svc) = plugin();
    let pool = |v6: bool, subnet: &str| {
        let pool = call(
            &p,
            "IpamDriver.RequestPool",
            json!({"AddressSpace": "netpath", "Pool": subnet, "V6": v6}),
        )
        .unwrap();
        let gw = call(
            &p,
            "IpamDriver.RequestAddress",
            json!({"PoolID": pool["PoolID"], "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}}),
        )
        .unwrap();
        (pool, gw["Address"].as_str().unwrap().to_string())
    };
    let (v4, gw4) = pool(false, "10.21.0.0/24");
    let (v6, gw6) = pool(true, "");
    assert_eq!(v6["Pool"], "fd6e:7470:6174::/64");
    assert_eq!(gw6, "fd6e:7470:6174::1/64");
    call(
        &p,
        "NetworkDriver.CreateNetwork",
        json!({
            "NetworkID": NET,
            "Options": {"com.docker.network.enable_ipv6": true},
            "IPv4Data": [{"AddressSpace": "netpath", "Pool": v4["Pool"], "Gateway": gw4}],
            "IPv6Data": [{"AddressSpace": "netpath", "Pool": v6["Pool"], "Gateway": gw6}]
        }),
    )
    .unwrap();
    let net = &svc.networks()[0];
    assert!(net.enable_ipv6);
    assert_eq!(net.ipam.config[1].subnet, "fd6e:7470:6174::/64");
    let addr = |pool: &Value| {
        call(
            &p,
            "IpamDriver.RequestAddress",
            json!({"PoolID": pool["PoolID"], "Address": ""}),
        )
        .unwrap()["Address"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (a4, a6) = (addr(&v4), addr(&v6));
    assert_eq!(a6, "fd6e:7470:6174::2/64");
    call(
        &p,
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": NET, "EndpointID": EP,
               "Interface": {"Address": a4, "AddressIPv6": a6, "MacAddress": ""}}),
    )
    .unwrap();
    let ep = &svc.endpoints()[0];
    assert_eq!(ep.ipv6_address, Some("fd6e:7470:6174::2".parse().unwrap()));
    let joined = call(
        &p,
        "NetworkDriver.Join",
        json!({"NetworkID": NET, "EndpointID": EP, "SandboxKey": "/var/run/docker/netns/abc", "Options": {}}),
    )
    .unwrap();
    assert_eq!(joined["Gateway"], "10.21.0.1");
    assert_eq!(joined["GatewayIPv6"], "fd6e:7470:6174::1");
}
