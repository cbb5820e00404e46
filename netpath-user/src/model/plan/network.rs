//! Planning networks: the subnet asked for or the next free one of the pools, its gateway and
//! host gateway checked against the host and the other networks, addresses, removal.
use std::{collections::BTreeMap, net::Ipv4Addr};

use super::{checks::check_labels, HostView, ModelError, SPECIAL};
use crate::{
    ipam::{self, IpamError, Subnet},
    model::{
        new_id, options, valid_name, Network, NetworkCreate, State, DEFAULT_DRIVER,
        DEFAULT_NETWORK, DRIVERS, HOST_GATEWAY,
    },
};

impl State {
    /// A free address of `net` (or checks the one asked for).
    pub(super) fn address(
        &self,
        net: &Network,
        want: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, ModelError> {
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

    pub(super) fn address_besides(
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
                net.v4.check_assignable(ip)?;
                if ip == net.host_gateway() {
                    return Err(ModelError::HostGatewayAddress(ip, net.name.clone()));
                }
                if used.contains(&ip) {
                    return Err(IpamError::InUse(ip.into()).into());
                }
                Ok(ip)
            }
            // From the ip-range when there is one, never the host's gateway.
            None => Ok(net
                .v4
                .allocate(|ip| used.contains(ip) || *ip == net.host_gateway())?),
        }
    }

    /// Validates a network request against the networks and the host (its routes and
    /// addresses) and returns the network it would create.
    /// Whether `net`, planned against an earlier state, still fits this one: its name free and
    /// its subnet overlapping no network's. The check of a plan carried out after a wait
    /// (etcd's answer) without the agent's lock.
    pub fn still_fits(&self, net: &Network) -> Result<(), ModelError> {
        self.check_name_free(&net.name)?;
        self.check_subnet_free(net.v4.subnet)
    }

    /// No network has the name `name`.
    fn check_name_free(&self, name: &str) -> Result<(), ModelError> {
        if self.networks.contains_key(name) {
            return Err(ModelError::NetworkExists(name.to_string()));
        }
        Ok(())
    }

    /// No network's subnet overlaps `subnet`.
    fn check_subnet_free(&self, subnet: Subnet) -> Result<(), ModelError> {
        match self
            .networks
            .values()
            .find(|n| n.v4.subnet.overlaps(&subnet))
        {
            Some(n) => Err(ModelError::Overlap(subnet, n.v4.subnet, n.name.clone())),
            None => Ok(()),
        }
    }

    pub fn plan_network(
        &self,
        req: &NetworkCreate,
        host: HostView<'_>,
    ) -> Result<Network, ModelError> {
        if !valid_name(&req.name) {
            return Err(ModelError::BadName(req.name.clone()));
        }
        self.check_name_free(&req.name)?;
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
            options::check(k, v)?;
            options.insert(k.to_string(), v.to_string());
        }
        let subnet = match &req.subnet {
            Some(s) => {
                let subnet: Subnet = s.parse()?;
                self.check_subnet_free(subnet)?;
                self.check_host_overlap(subnet, host)?;
                subnet
            }
            None => {
                if req.gateway.is_some() || req.ip_range.is_some() {
                    return Err(ModelError::NeedsSubnet);
                }
                let mut taken: Vec<Subnet> = self.foreign_routes(host).collect();
                taken.extend(self.networks.values().map(|n| n.v4.subnet));
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
            v4: crate::ipam::Pool {
                subnet,
                gateway,
                ip_range,
            },
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
    pub(super) fn check_host_gateway(
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
        if let Some(n) = self.networks.values().find(|n| n.v4.subnet.contains(ip)) {
            return unusable(format!("in network {}'s subnet {}", n.name, n.v4.subnet));
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
    pub(super) fn foreign_routes<'a>(
        &'a self,
        host: HostView<'a>,
    ) -> impl Iterator<Item = Subnet> + 'a {
        host.routes.iter().copied().filter(move |r| {
            r.prefix() > 0
                && !self
                    .networks
                    .values()
                    .any(|n| n.v4.subnet.contains(r.addr()))
        })
    }

    /// Refuses a subnet the host needs or that no network may use.
    pub(super) fn check_host_overlap(
        &self,
        subnet: Subnet,
        host: HostView<'_>,
    ) -> Result<(), ModelError> {
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
}
