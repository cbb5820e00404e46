//! Network options (`network create -o KEY=VALUE`, and Docker's generic options through the
//! plugin): which keys a network takes, what each value must be, and what they mean.
//!
//! netpath honours Docker's bridge options where they change what a user sees (ICC, MTU,
//! the default host address of published ports, masquerading and routed mode) and accepts
//! those that name parts of Docker's bridge netpath does not have (a bridge's name, the
//! containers' interface prefix), with a note in the agent's log, as Docker accepts options
//! its driver ignores. Anything else is refused, naming the keys it knows.
use std::net::Ipv4Addr;

use super::{ModelError, Network};

/// Keys that set inter-container communication.
pub(crate) const ICC_KEYS: [&str; 2] = ["icc", "com.docker.network.bridge.enable_icc"];
/// Keys of the endpoints' interface MTU.
pub const MTU_KEYS: [&str; 2] = ["mtu", "com.docker.network.driver.mtu"];
/// Keys of the host address ports are published on when a publish names none.
pub const HOST_BINDING_KEYS: [&str; 2] = [
    "host-binding-ipv4",
    "com.docker.network.bridge.host_binding_ipv4",
];
/// Keys of source NAT for traffic leaving the host (`false`: endpoints' own addresses go out,
/// and the network is routed).
pub const MASQUERADE_KEYS: [&str; 2] = [
    "masquerade",
    "com.docker.network.bridge.enable_ip_masquerade",
];
/// Docker 28's gateway mode of each family: `nat` (the default) or `routed` (no NAT, the
/// network's addresses of that family reachable from outside).
pub const GATEWAY_MODE: &str = "com.docker.network.bridge.gateway_mode_ipv4";
pub const GATEWAY_MODE6: &str = "com.docker.network.bridge.gateway_mode_ipv6";
/// Option key of the host-gateway address (host.docker.internal).
pub const HOST_GATEWAY: &str = "host-gateway";
/// Option key of the host-gateway TCP ports served by the host's loopback (beyond Docker).
pub const HOST_LOOPBACK_PORTS: &str = "host-loopback-ports";
/// Docker options about parts of its bridge netpath has no counterpart for: accepted and
/// noted, changing nothing.
pub const NOTED_KEYS: [&str; 3] = [
    "com.docker.network.bridge.name",
    "com.docker.network.container_iface_prefix",
    "com.docker.network.bridge.default_bridge",
];

/// Every option key a network accepts.
pub fn known() -> impl Iterator<Item = &'static str> {
    ICC_KEYS
        .into_iter()
        .chain(MTU_KEYS)
        .chain(HOST_BINDING_KEYS)
        .chain(MASQUERADE_KEYS)
        .chain([
            GATEWAY_MODE,
            GATEWAY_MODE6,
            HOST_GATEWAY,
            HOST_LOOPBACK_PORTS,
        ])
        .chain(NOTED_KEYS)
}

fn boolean(k: &str, v: &str) -> Result<(), ModelError> {
    if v == "true" || v == "false" {
        Ok(())
    } else {
        Err(ModelError::BadOptionValue(k.to_string(), v.to_string()))
    }
}

/// Checks one option; the error says what the value must be.
pub fn check(k: &str, v: &str) -> Result<(), ModelError> {
    let bad = |expected: &str| {
        Err(ModelError::BadOptionWith(
            k.to_string(),
            v.to_string(),
            expected.to_string(),
        ))
    };
    if !known().any(|x| x == k) {
        return Err(ModelError::UnknownOption(
            k.to_string(),
            known().collect::<Vec<_>>().join(", "),
        ));
    }
    if ICC_KEYS.contains(&k) || MASQUERADE_KEYS.contains(&k) {
        return boolean(k, v);
    }
    if MTU_KEYS.contains(&k) && !v.parse::<u32>().is_ok_and(|m| (68..=65535).contains(&m)) {
        return bad("an MTU from 68 to 65535");
    }
    if HOST_BINDING_KEYS.contains(&k) && v.parse::<Ipv4Addr>().is_err() {
        return bad("an IPv4 address");
    }
    if (k == GATEWAY_MODE || k == GATEWAY_MODE6) && v != "nat" && v != "routed" {
        return bad("nat or routed");
    }
    if k == HOST_GATEWAY && v.parse::<Ipv4Addr>().is_err() {
        return Err(ModelError::BadHostGateway(v.to_string()));
    }
    if k == HOST_LOOPBACK_PORTS
        && !v
            .split(',')
            .all(|p| p.trim().parse::<u16>().is_ok_and(|p| p != 0))
    {
        return Err(ModelError::BadPortList(v.to_string()));
    }
    Ok(())
}

impl Network {
    /// The IPv4 address endpoints reach the host at (host.docker.internal): `--opt
    /// host-gateway`, else the gateway; none on a network of IPv6 alone.
    pub fn host_gateway(&self) -> Option<Ipv4Addr> {
        let gw = self.gateway()?;
        Some(
            self.options
                .get(HOST_GATEWAY)
                .and_then(|v| v.parse().ok())
                .unwrap_or(gw),
        )
    }

    /// Host-gateway TCP ports the host serves on its loopback (`--opt host-loopback-ports`).
    pub fn host_loopback_ports(&self) -> Vec<u16> {
        self.options
            .get(HOST_LOOPBACK_PORTS)
            .map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Whether endpoints of this network may talk to each other (`--opt icc=false` says no).
    pub fn icc(&self) -> bool {
        ICC_KEYS
            .iter()
            .filter_map(|k| self.options.get(*k))
            .all(|v| v != "false")
    }

    /// The first of `keys` set on this network.
    fn option(&self, keys: &[&str]) -> Option<&str> {
        keys.iter()
            .find_map(|k| self.options.get(*k))
            .map(String::as_str)
    }

    /// The MTU of its endpoints' interfaces (`-o mtu=`), if set.
    pub fn mtu(&self) -> Option<u32> {
        self.option(&MTU_KEYS).and_then(|v| v.parse().ok())
    }

    /// Where a publish that names no host address binds (`-o host-binding-ipv4=`), if set.
    pub fn host_binding(&self) -> Option<Ipv4Addr> {
        self.option(&HOST_BINDING_KEYS)
            .and_then(|v| v.parse().ok())
            .filter(|a: &Ipv4Addr| !a.is_unspecified())
    }

    /// Whether IPv4 leaving the host keeps the endpoints' own addresses and the network's
    /// IPv4 addresses are reached from outside by routing (`-o masquerade=false`, or Docker's
    /// `gateway_mode_ipv4=routed`).
    pub fn routed(&self) -> bool {
        self.option(&MASQUERADE_KEYS) == Some("false")
            || self.option(&[GATEWAY_MODE]) == Some("routed")
    }

    /// The same for IPv6 (`-o masquerade=false`, or `gateway_mode_ipv6=routed`: Docker's
    /// way to a network of routable IPv6 addresses beside NAT'd IPv4).
    pub fn routed6(&self) -> bool {
        self.option(&MASQUERADE_KEYS) == Some("false")
            || self.option(&[GATEWAY_MODE6]) == Some("routed")
    }

    /// The options it takes that change nothing in netpath (for the agent's note).
    pub fn noted_options(&self) -> Vec<String> {
        NOTED_KEYS
            .iter()
            .filter_map(|k| self.options.get(*k).map(|v| format!("{k}={v}")))
            .collect()
    }
}
