//! Why a request was refused: one line each, shown as is by the CLI.
use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
};

use crate::{
    ipam::{AnySubnet, IpamError},
    model::MAX_NETWORKS_PER_ENDPOINT,
    ports::{AllocError, SpecError},
};

/// Why a request was refused. Each message is one line, shown as is by the CLI.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid name {0:?}: use letters, digits, '_', '.', '-', starting with a letter or digit, at most 64")]
    BadName(String),
    #[error("endpoint {0:?} already exists")]
    EndpointExists(String),
    #[error("no such endpoint: {0}")]
    NoEndpoint(String),
    #[error("no such network: {0}")]
    NoNetwork(String),
    #[error("network namespace {0:?} is already used by endpoint {1:?}")]
    NetnsInUse(PathBuf, String),
    #[error("network namespace {0:?} does not exist")]
    NoNetns(PathBuf),
    #[error("{0}")]
    Ipam(#[from] IpamError),
    #[error("{0}")]
    Spec(#[from] SpecError),
    #[error("{0}")]
    Alloc(#[from] AllocError),
    #[error("no published port of {0} matches {1}")]
    NoMatch(String, String),
    #[error("no port spec given")]
    NoSpecs,
    #[error("network with name {0} already exists")]
    NetworkExists(String),
    #[error("invalid pool request: Pool overlaps with other one on this address space ({0} overlaps {1} of network {2})")]
    Overlap(AnySubnet, AnySubnet, String),
    #[error("no matching subnet for gateway {0}")]
    GatewayOutside(IpAddr),
    #[error("gateway {0} is the network or broadcast address of {1}")]
    GatewayReserved(IpAddr, AnySubnet),
    #[error("ip-range {0} is not inside subnet {1}")]
    RangeOutside(AnySubnet, AnySubnet),
    #[error("an {0} --gateway or --ip-range needs an {0} --subnet")]
    NeedsSubnet(&'static str),
    #[error("subnet {0} is too small: it must hold a gateway and at least one endpoint")]
    SubnetTooSmall(AnySubnet),
    #[error("an IPv6 --subnet, --gateway or --ip-range needs --ipv6")]
    NeedsIpv6,
    #[error("network {0} has no {1} subnet")]
    NoFamily(String, &'static str),
    #[error("{} goes against --ipv4=false (a network of IPv6 alone)", if .0.is_empty() { "an IPv4 --subnet, --gateway or --ip-range" } else { .0 })]
    Ipv4Off(&'static str),
    #[error("{0}: the endpoint has no IPv4 address (a network of IPv6 alone): publish on an IPv6 host address, or on every one")]
    NoIpv4Port(String),
    #[error("IPv4 or IPv6 must be enabled: --ipv4=false needs --ipv6")]
    NoAddressFamily,
    #[error("an overlay network needs IPv4 (its IPv6 addresses follow its IPv4 ones): --ipv4=false is refused")]
    OverlayIpv6Only,
    #[error(
        "an overlay network's IPv6 addresses follow its IPv4 ones: give it an IPv6 --subnet of /96 or shorter, and no IPv6 --gateway or --ip-range"
    )]
    OverlayIpv6,
    #[error("--ip6 on an overlay network: its IPv6 address follows the IPv4 one (--ip)")]
    OverlayIp6,
    #[error("invalid option {0:?}: expected KEY=VALUE")]
    BadOption(String),
    #[error("unknown option {0:?} (known: {1})")]
    UnknownOption(String, String),
    #[error("invalid value {1:?} for option {0}: expected true or false")]
    BadOptionValue(String, String),
    #[error("invalid value {1:?} for option {0}: expected {2}")]
    BadOptionWith(String, String, String),
    #[error("error while removing network: network {0} has active endpoints ({1})")]
    NetworkInUse(String, String),
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("endpoint {0} is already connected to network {1}")]
    AlreadyConnected(String, String),
    #[error("endpoint {0} is not connected to network {1}")]
    NotConnected(String, String),
    #[error("endpoint {0} has no other network; remove the endpoint instead")]
    LastNetwork(String),
    #[error("network {0} is internal: its ports cannot be published")]
    InternalPorts(String),
    #[error("invalid alias {0:?}")]
    BadAlias(String),
    #[error("invalid DNS server {0}: expected a unicast IPv4 address")]
    BadDnsServer(std::net::IpAddr),
    #[error("invalid DNS search domain {0:?}")]
    BadDnsSearch(String),
    #[error("invalid DNS option {0:?}: expected a resolv.conf option such as ndots:2")]
    BadDnsOption(String),
    #[error(
        "invalid host-loopback-ports {0:?}: expected ports from 1 to 65535, separated by commas"
    )]
    BadPortList(String),
    #[error("invalid host-gateway {0:?}: expected an IPv4 address")]
    BadHostGateway(String),
    #[error("host-gateway {0} cannot be used: {1}")]
    HostGatewayUnusable(Ipv4Addr, String),
    #[error("alias {0:?} is reserved: it names the host")]
    ReservedAlias(String),
    #[error("endpoint {0} is on {MAX_NETWORKS_PER_ENDPOINT} networks already")]
    TooManyNetworks(String),
    #[error(
        "unsupported driver {0:?}: netpath networks use the bridge driver (bridge or netpath), or overlay across the nodes of a cluster"
    )]
    UnknownDriver(String),
    #[error("invalid label {0:?}: the key must not be empty")]
    BadLabel(String),
    #[error("invalid namespace {0:?}: a namespace is a DNS label (a-z, 0-9, '-', at most 63)")]
    BadNamespace(String),
    #[error("invalid named port {0:?}: expected NAME=PORT[/tcp|/udp], NAME a port name (a-z, 0-9, '-', at most 15) used once")]
    BadNamedPort(String),
    #[error("no such network policy: {0}")]
    NoPolicy(String),
    #[error("network policy {0}: named port {1:?} is declared by no endpoint (endpoint create --named-port {1}=PORT)")]
    UnknownPortName(String, String),
    #[error("endpoint {0} has no label {1:?}")]
    NoLabel(String, String),
    #[error("subnet {0} is {1}: a network cannot use it")]
    SpecialSubnet(AnySubnet, &'static str),
    #[error("subnet {0} overlaps the host's route to {1}: the host could no longer reach it")]
    RouteOverlap(AnySubnet, AnySubnet),
    #[error("subnet {0} holds the host's address {1}: the host could no longer reach it")]
    HostAddress(AnySubnet, IpAddr),
    #[error("cannot publish on {0}: not an address of this host")]
    NotHostAddress(IpAddr),
    #[error("address {0} is the host-gateway of network {1} (host.docker.internal)")]
    HostGatewayAddress(IpAddr, String),
    #[error("invalid interface name {0:?}: 1 to 15 characters, no '/', ':' or whitespace")]
    BadIfname(String),
    #[error("endpoint {0} already has an interface named {1}")]
    IfnameInUse(String, String),
    #[error("invalid MAC address {0:?}: expected a unicast aa:bb:cc:dd:ee:ff")]
    BadMac(String),
    #[error("endpoint {0} is Docker's: connect its container with docker network connect")]
    DockerOwned(String),
}
