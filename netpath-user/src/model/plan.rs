//! Planning: every request is checked here against the current state, with no side effects,
//! and turned into what it would create or remove. Only a plan that passed reaches the
//! kernel, so a refused request changes nothing.
use std::{collections::BTreeMap, net::Ipv4Addr, path::PathBuf};

/// What planning needs to know of the host, read by the agent: its routes and addresses,
/// and which host ports its processes hold.
#[derive(Clone, Copy)]
pub struct HostView<'a> {
    /// Destinations of the main routing table.
    pub routes: &'a [Subnet],
    /// Every IPv4 address of the agent's namespace.
    pub addrs: &'a [Ipv4Addr],
    /// Whether a host process holds a mapping's address and port.
    pub busy: ports::Busy<'a>,
}

impl HostView<'static> {
    /// A host with no routes, no addresses, nothing bound (planning in tests).
    pub fn empty() -> HostView<'static> {
        HostView {
            routes: &[],
            addrs: &[],
            busy: &|_| false,
        }
    }
}

/// Blocks of addresses no network may use, and why.
const SPECIAL: [(&str, &str); 5] = [
    ("0.0.0.0/8", "\"this network\" addresses"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved (and broadcast)"),
];

use super::{
    host_ifname, new_id, valid_name, Attachment, Connect, DnsSettings, Endpoint, EndpointCreate,
    Network, NetworkCreate, State, DEFAULT_DRIVER, DEFAULT_NETWORK, DRIVERS, HOST_GATEWAY,
    MAX_NETWORKS_PER_ENDPOINT,
};
use crate::{
    ipam::{self, IpamError, Subnet},
    ports::{self, AllocError, PortIndex, PortMapping, PortSpec, SpecError},
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
    Overlap(Subnet, Subnet, String),
    #[error("no matching subnet for gateway {0}")]
    GatewayOutside(Ipv4Addr),
    #[error("gateway {0} is the network or broadcast address of {1}")]
    GatewayReserved(Ipv4Addr, Subnet),
    #[error("ip-range {0} is not inside subnet {1}")]
    RangeOutside(Subnet, Subnet),
    #[error("--gateway and --ip-range need --subnet")]
    NeedsSubnet,
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
    BadDnsServer(std::net::Ipv4Addr),
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
    #[error("subnet {0} is {1}: a network cannot use it")]
    SpecialSubnet(Subnet, &'static str),
    #[error("subnet {0} overlaps the host's route to {1}: the host could no longer reach it")]
    RouteOverlap(Subnet, Subnet),
    #[error("subnet {0} holds the host's address {1}: the host could no longer reach it")]
    HostAddress(Subnet, Ipv4Addr),
    #[error("cannot publish on {0}: not an address of this host")]
    NotHostAddress(Ipv4Addr),
    #[error("address {0} is the host-gateway of network {1} (host.docker.internal)")]
    HostGatewayAddress(Ipv4Addr, String),
    #[error("invalid interface name {0:?}: 1 to 15 characters, no '/', ':' or whitespace")]
    BadIfname(String),
    #[error("endpoint {0} already has an interface named {1}")]
    IfnameInUse(String, String),
    #[error("invalid MAC address {0:?}: expected a unicast aa:bb:cc:dd:ee:ff")]
    BadMac(String),
    #[error("endpoint {0} is Docker's: connect its container with docker network connect")]
    DockerOwned(String),
}

/// An interface name the kernel takes (IFNAMSIZ, no separators).
fn check_ifname(name: &str) -> Result<String, ModelError> {
    let ok = (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(name.to_string())
    } else {
        Err(ModelError::BadIfname(name.to_string()))
    }
}

/// The MAC asked for (unicast, not zero), else Docker's MAC for the address.
fn check_mac(mac: Option<&str>, ip: Ipv4Addr) -> Result<[u8; 6], ModelError> {
    let Some(text) = mac else {
        return Ok(ipam::mac_for(ip));
    };
    let bad = || ModelError::BadMac(text.to_string());
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(&parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(bad());
    }
    Ok(mac)
}

impl State {
    /// A free address of `net` (or checks the one asked for).
    fn address(&self, net: &Network, want: Option<Ipv4Addr>) -> Result<Ipv4Addr, ModelError> {
        self.address_besides(net, want, &[])
    }

    /// An address of network `network` for an endpoint: the one asked for, checked, or a
    /// free one that is none of `elsewhere` (taken on other nodes, for an overlay network).
    pub fn free_address(
        &self,
        network: &str,
        want: Option<Ipv4Addr>,
        elsewhere: &[Ipv4Addr],
    ) -> Result<Ipv4Addr, ModelError> {
        self.address_besides(self.network(network)?, want, elsewhere)
    }

    fn address_besides(
        &self,
        net: &Network,
        want: Option<Ipv4Addr>,
        elsewhere: &[Ipv4Addr],
    ) -> Result<Ipv4Addr, ModelError> {
        let mut used: Vec<Ipv4Addr> = self.members(&net.name).map(|(_, a)| a.ip).collect();
        if want.is_none() {
            used.extend(elsewhere);
        }
        match want {
            Some(ip) => {
                net.subnet.check_assignable(ip, net.gateway)?;
                if ip == net.host_gateway() {
                    return Err(ModelError::HostGatewayAddress(ip, net.name.clone()));
                }
                if used.contains(&ip) {
                    return Err(IpamError::InUse(ip).into());
                }
                Ok(ip)
            }
            None => {
                // From the ip-range when there is one: all of it is allocatable but what the
                // subnet reserves (its network and broadcast addresses, the gateway).
                let pool = net.ip_range.unwrap_or(net.subnet);
                let ip = pool
                    .addresses()
                    .find(|ip| {
                        !used.contains(ip)
                            && *ip != net.host_gateway()
                            && net.subnet.check_assignable(*ip, net.gateway).is_ok()
                    })
                    .ok_or(IpamError::Exhausted(pool))?;
                Ok(ip)
            }
        }
    }

    /// Validates a network request against the networks and the host (its routes and
    /// addresses) and returns the network it would create.
    pub fn plan_network(
        &self,
        req: &NetworkCreate,
        host: HostView<'_>,
    ) -> Result<Network, ModelError> {
        if !valid_name(&req.name) {
            return Err(ModelError::BadName(req.name.clone()));
        }
        if self.networks.contains_key(&req.name) {
            return Err(ModelError::NetworkExists(req.name.clone()));
        }
        let driver = match req.driver.as_deref() {
            None | Some("") => DEFAULT_DRIVER.to_string(),
            Some(d) if DRIVERS.contains(&d) => d.to_string(),
            Some(d) => return Err(ModelError::UnknownDriver(d.to_string())),
        };
        let mut options = BTreeMap::new();
        for o in &req.options {
            let (k, v) = o
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| ModelError::BadOption(o.clone()))?;
            super::options::check(k, v)?;
            options.insert(k.to_string(), v.to_string());
        }
        let subnet = match &req.subnet {
            Some(s) => {
                let subnet: Subnet = s.parse()?;
                if let Some(n) = self.networks.values().find(|n| n.subnet.overlaps(&subnet)) {
                    return Err(ModelError::Overlap(subnet, n.subnet, n.name.clone()));
                }
                self.check_host_overlap(subnet, host)?;
                subnet
            }
            None => {
                if req.gateway.is_some() || req.ip_range.is_some() {
                    return Err(ModelError::NeedsSubnet);
                }
                let mut taken: Vec<Subnet> = self.foreign_routes(host).collect();
                taken.extend(self.networks.values().map(|n| n.subnet));
                taken.extend(host.addrs.iter().filter_map(|a| Subnet::new(*a, 32).ok()));
                ipam::pick_subnet(&taken)?
            }
        };
        let gateway = match req.gateway {
            Some(gw) => {
                if !subnet.contains(gw) {
                    return Err(ModelError::GatewayOutside(gw));
                }
                if subnet.prefix() < 31 && (gw == subnet.addr() || gw == subnet.broadcast()) {
                    return Err(ModelError::GatewayReserved(gw, subnet));
                }
                gw
            }
            None => subnet.first_host(),
        };
        let ip_range = match &req.ip_range {
            Some(r) => {
                let r: Subnet = r.parse()?;
                if !subnet.contains(r.addr()) || r.prefix() < subnet.prefix() {
                    return Err(ModelError::RangeOutside(r, subnet));
                }
                Some(r)
            }
            None => None,
        };
        if let Some(hg) = options.get(HOST_GATEWAY).and_then(|v| v.parse().ok()) {
            self.check_host_gateway(hg, subnet, host)?;
        }
        let net_id = (1..)
            .find(|i| !self.networks.values().any(|n| n.net_id == *i))
            .unwrap_or(u32::MAX);
        Ok(Network {
            name: req.name.clone(),
            id: new_id(),
            net_id,
            driver,
            subnet,
            gateway,
            ip_range,
            internal: req.internal,
            options,
            labels: check_labels(&req.labels)?,
            vni: None,
        })
    }

    /// A network's host-gateway becomes an address of the host (on the gateway bridge), so it
    /// must be one the host may take: a unicast address that is the host's already, in this
    /// network's subnet (not its network or broadcast address), or beyond every network the
    /// host is on. Not an address of another netpath network, nor one on the host's own links
    /// (a router's, a neighbour's: the host would lose it).
    fn check_host_gateway(
        &self,
        ip: Ipv4Addr,
        subnet: Subnet,
        host: HostView<'_>,
    ) -> Result<(), ModelError> {
        let unusable = |why: String| Err(ModelError::HostGatewayUnusable(ip, why));
        let o = ip.octets();
        if ip.is_unspecified() || o[0] == 0 || ip.is_loopback() || ip.is_multicast() || o[0] >= 240
        {
            return unusable("not a unicast address a host can hold".into());
        }
        if host.addrs.contains(&ip) {
            return Ok(());
        }
        if subnet.contains(ip) {
            if subnet.prefix() < 31 && (ip == subnet.addr() || ip == subnet.broadcast()) {
                return unusable(format!("the network or broadcast address of {subnet}"));
            }
            return Ok(());
        }
        if let Some(n) = self.networks.values().find(|n| n.subnet.contains(ip)) {
            return unusable(format!("in network {}'s subnet {}", n.name, n.subnet));
        }
        if let Some(r) = self
            .foreign_routes(host)
            .find(|r| r.prefix() > 0 && r.contains(ip))
        {
            return unusable(format!(
                "on the host's network {r}: another machine's address (a router's or a neighbour's)"
            ));
        }
        Ok(())
    }

    /// The host's routes that are not netpath's own (a default route, and the /32 routes to
    /// endpoints, which lie inside netpath's networks, do not count).
    fn foreign_routes<'a>(&'a self, host: HostView<'a>) -> impl Iterator<Item = Subnet> + 'a {
        host.routes.iter().copied().filter(move |r| {
            r.prefix() > 0 && !self.networks.values().any(|n| n.subnet.contains(r.addr()))
        })
    }

    /// Refuses a subnet the host needs or that no network may use.
    fn check_host_overlap(&self, subnet: Subnet, host: HostView<'_>) -> Result<(), ModelError> {
        for (block, what) in SPECIAL {
            let block: Subnet = block.parse().unwrap_or(subnet);
            if block.overlaps(&subnet) {
                return Err(ModelError::SpecialSubnet(subnet, what));
            }
        }
        if let Some(r) = self.foreign_routes(host).find(|r| r.overlaps(&subnet)) {
            return Err(ModelError::RouteOverlap(subnet, r));
        }
        if let Some(a) = host.addrs.iter().find(|a| subnet.contains(**a)) {
            return Err(ModelError::HostAddress(subnet, *a));
        }
        Ok(())
    }

    /// Validates removing a network.
    pub fn plan_network_rm(&self, name: &str) -> Result<&Network, ModelError> {
        let net = self.network(name)?;
        if name == DEFAULT_NETWORK {
            return Err(ModelError::Predefined(name.to_string()));
        }
        let users: Vec<&str> = self.members(name).map(|(e, _)| e.name.as_str()).collect();
        if !users.is_empty() {
            return Err(ModelError::NetworkInUse(name.to_string(), users.join(", ")));
        }
        Ok(net)
    }

    /// Validates an endpoint request and returns the endpoint it would create.
    pub fn plan_endpoint(
        &self,
        req: &EndpointCreate,
        host: HostView<'_>,
    ) -> Result<Endpoint, ModelError> {
        if !valid_name(&req.name) {
            return Err(ModelError::BadName(req.name.clone()));
        }
        if self.endpoints.contains_key(&req.name) {
            return Err(ModelError::EndpointExists(req.name.clone()));
        }
        // Docker keeps its sandboxes where the agent may not see them (its own mount
        // namespace) and gives each network of a container an endpoint of its own.
        let handed_over = req
            .engine
            .as_ref()
            .is_some_and(|e| e.kind == super::EngineKind::Docker);
        if !handed_over {
            if let Some(e) = self.endpoints.values().find(|e| e.netns == req.netns) {
                return Err(ModelError::NetnsInUse(req.netns.clone(), e.name.clone()));
            }
            if !req.netns.exists() {
                return Err(ModelError::NoNetns(req.netns.clone()));
            }
        }
        let net = self.network(req.network.as_deref().unwrap_or(DEFAULT_NETWORK))?;
        let ifname = check_ifname(req.ifname.as_deref().unwrap_or("eth0"))?;
        let ip = self.address(net, req.ip)?;
        let mac = check_mac(req.mac.as_deref(), ip)?;
        let id = new_id();
        let mut ep = Endpoint {
            name: req.name.clone(),
            attachments: vec![Attachment {
                network: net.name.clone(),
                ip,
                mac,
                ifname,
                host_ifname: host_ifname(&id, 0),
                aliases: Vec::new(),
            }],
            id,
            netns: req.netns.clone(),
            ports: Vec::new(),
            labels: check_labels(&req.labels)?,
            netns_id: None,
            dns: check_dns(&req.dns)?,
            engine: req.engine.clone(),
        };
        ep.attachments[0].aliases = check_aliases(&req.aliases)?;
        if !req.ports.is_empty() && net.internal {
            return Err(ModelError::InternalPorts(net.name.clone()));
        }
        ep.ports = self.resolve_specs(&req.ports, net.host_binding(), host)?;
        Ok(ep)
    }

    /// Validates `network connect` and returns the new attachment.
    pub fn plan_connect(&self, network: &str, req: &Connect) -> Result<Attachment, ModelError> {
        let ep = self.endpoint(&req.endpoint)?;
        let net = self.network(network)?;
        if ep.handed_over() {
            return Err(ModelError::DockerOwned(ep.name.clone()));
        }
        if ep.attachment(network).is_some() {
            return Err(ModelError::AlreadyConnected(
                ep.name.clone(),
                network.to_string(),
            ));
        }
        let aliases = check_aliases(&req.aliases)?;
        let ifname = match &req.ifname {
            Some(name) => {
                let name = check_ifname(name)?;
                if ep.attachments.iter().any(|a| a.ifname == name) {
                    return Err(ModelError::IfnameInUse(ep.name.clone(), name));
                }
                name
            }
            None => {
                let n = (0..)
                    .find(|i| !ep.attachments.iter().any(|a| a.ifname == format!("eth{i}")))
                    .unwrap_or(0);
                format!("eth{n}")
            }
        };
        let ip = self.address(net, req.ip)?;
        let mac = check_mac(req.mac.as_deref(), ip)?;
        let slot = (0..MAX_NETWORKS_PER_ENDPOINT)
            .find(|i| {
                !ep.attachments
                    .iter()
                    .any(|a| a.host_ifname == host_ifname(&ep.id, *i))
            })
            .ok_or_else(|| ModelError::TooManyNetworks(ep.name.clone()))?;
        Ok(Attachment {
            network: network.to_string(),
            ip,
            mac,
            ifname,
            host_ifname: host_ifname(&ep.id, slot),
            aliases,
        })
    }

    /// Validates `network disconnect`; returns the attachment it removes.
    pub fn plan_disconnect(
        &self,
        network: &str,
        endpoint: &str,
    ) -> Result<&Attachment, ModelError> {
        let ep = self.endpoint(endpoint)?;
        self.network(network)?;
        if ep.handed_over() {
            return Err(ModelError::DockerOwned(ep.name.clone()));
        }
        let a = ep
            .attachment(network)
            .ok_or_else(|| ModelError::NotConnected(endpoint.to_string(), network.to_string()))?;
        if ep.attachments.len() == 1 {
            return Err(ModelError::LastNetwork(endpoint.to_string()));
        }
        if ep.primary().is_some_and(|p| p.network == network) && !ep.ports.is_empty() {
            // The ports would move to the next network; refuse if it is internal.
            if let Some(next) = ep.attachments.get(1) {
                if self.network(&next.network)?.internal {
                    return Err(ModelError::InternalPorts(next.network.clone()));
                }
            }
        }
        Ok(a)
    }

    /// Resolves `-p` specs against everything already published; a spec naming no host
    /// address binds `binding` when the network sets one (Docker's `host_binding_ipv4`).
    fn resolve_specs(
        &self,
        specs: &[String],
        binding: Option<Ipv4Addr>,
        host: HostView<'_>,
    ) -> Result<Vec<PortMapping>, ModelError> {
        let parsed = specs
            .iter()
            .map(|s| {
                s.parse::<PortSpec>().map(|mut p| {
                    p.host_ip = p.host_ip.or(binding);
                    p
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(ip) = parsed
            .iter()
            .filter_map(|p| p.host_ip)
            .find(|ip| !host.addrs.contains(ip))
        {
            return Err(ModelError::NotHostAddress(ip));
        }
        let mut taken = PortIndex::new(self.all_ports());
        let mut out = Vec::new();
        for spec in &parsed {
            let got = ports::resolve(spec, &taken, host.busy)?;
            for m in &got {
                taken.insert(m);
            }
            out.extend(got);
        }
        Ok(out)
    }

    /// Validates a publish request: the new mappings for `endpoint`.
    pub fn plan_publish(
        &self,
        endpoint: &str,
        specs: &[String],
        host: HostView<'_>,
    ) -> Result<Vec<PortMapping>, ModelError> {
        let ep = self.endpoint(endpoint)?;
        if specs.is_empty() {
            return Err(ModelError::NoSpecs);
        }
        let mut binding = None;
        if let Some(p) = ep.primary() {
            let net = self.network(&p.network)?;
            if net.internal {
                return Err(ModelError::InternalPorts(p.network.clone()));
            }
            binding = net.host_binding();
        }
        self.resolve_specs(specs, binding, host)
    }

    /// Validates an unpublish request: the mappings of `endpoint` it removes. Every spec must
    /// match at least one published mapping.
    pub fn plan_unpublish(
        &self,
        endpoint: &str,
        specs: &[String],
    ) -> Result<Vec<PortMapping>, ModelError> {
        let ep = self.endpoint(endpoint)?;
        if specs.is_empty() {
            return Err(ModelError::NoSpecs);
        }
        let mut out: Vec<PortMapping> = Vec::new();
        for s in specs {
            let spec: PortSpec = s.parse()?;
            let hits: Vec<_> = ep
                .ports
                .iter()
                .filter(|m| ports::spec_matches(&spec, m))
                .copied()
                .collect();
            if hits.is_empty() {
                return Err(ModelError::NoMatch(endpoint.to_string(), s.clone()));
            }
            for h in hits {
                if !out.contains(&h) {
                    out.push(h);
                }
            }
        }
        Ok(out)
    }
}

/// Labels as given; a key must not be empty.
fn check_labels(labels: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ModelError> {
    if let Some(k) = labels.keys().find(|k| k.trim().is_empty()) {
        return Err(ModelError::BadLabel(k.clone()));
    }
    Ok(labels.clone())
}

/// Names an alias may not take: they name the host, to every endpoint.
const RESERVED_ALIASES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "host.docker.internal",
    "gateway.docker.internal",
];

/// Aliases as asked, each a valid name that does not name the host, without repeats.
fn check_aliases(aliases: &[String]) -> Result<Vec<String>, ModelError> {
    let mut out: Vec<String> = Vec::new();
    for a in aliases {
        if !valid_name(a) {
            return Err(ModelError::BadAlias(a.clone()));
        }
        let bare = a.trim_end_matches('.').to_ascii_lowercase();
        if RESERVED_ALIASES.contains(&bare.as_str()) {
            return Err(ModelError::ReservedAlias(a.clone()));
        }
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// A domain name as resolv.conf can carry it: labels of letters, digits, `-` and `_`, at most
/// 63 characters each and 253 in all.
pub fn valid_domain(d: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Resolver settings that can go into a resolv.conf as they are.
fn check_dns(dns: &DnsSettings) -> Result<DnsSettings, ModelError> {
    if let Some(s) = dns
        .servers
        .iter()
        .find(|s| s.is_unspecified() || s.is_multicast() || s.is_broadcast())
    {
        return Err(ModelError::BadDnsServer(*s));
    }
    if let Some(d) = dns.search.iter().find(|d| !valid_domain(d)) {
        return Err(ModelError::BadDnsSearch(d.clone()));
    }
    let option = |o: &str| {
        !o.is_empty()
            && o.len() <= 64
            && o.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
    };
    if let Some(o) = dns.options.iter().find(|o| !option(o)) {
        return Err(ModelError::BadDnsOption(o.clone()));
    }
    Ok(dns.clone())
}
