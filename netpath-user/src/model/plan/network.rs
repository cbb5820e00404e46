//! Planning networks: their pools of each family (`pools`), options, the host gateway checked
//! against the host and the other networks, endpoint addresses, removal.
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use super::{checks::check_labels, pools::PoolRequest, HostView, ModelError};
use crate::{
    ipam::Subnet,
    model::{
        new_id, options, valid_name, Network, NetworkCreate, State, DEFAULT_DRIVER,
        DEFAULT_NETWORK, DRIVERS, HOST_GATEWAY,
    },
};

impl State {
    /// The IPv4 address of an endpoint on `net`: `want`, checked, or a free one; none on a
    /// network of IPv6 alone (where asking for one is refused).
    pub(super) fn address(
        &self,
        net: &Network,
        want: Option<Ipv4Addr>,
    ) -> Result<Option<Ipv4Addr>, ModelError> {
        if net.v4.is_none() && want.is_none() {
            return Ok(None);
        }
        self.address_besides(net, want, &[]).map(Some)
    }

    /// The IPv6 address of an endpoint on `net`: `want`, checked, or a free one; none on a
    /// network without IPv6 (where asking for one is refused).
    pub(super) fn address6(
        &self,
        net: &Network,
        want: Option<Ipv6Addr>,
        ip: Option<Ipv4Addr>,
    ) -> Result<Option<Ipv6Addr>, ModelError> {
        if net.v6.is_none() && want.is_none() {
            return Ok(None);
        }
        if net.vni.is_some() {
            return match want {
                Some(_) => Err(ModelError::OverlayIp6),
                None => Ok(ip.and_then(|ip| net.overlay_ip6(ip))),
            };
        }
        self.pick_address(net, want, &[], None).map(Some)
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
        self.pick_address(net, want, elsewhere, net.host_gateway())
    }

    /// Whether `net`, planned against an earlier state, still fits this one: its name free and
    /// its subnets overlapping no network's. The check of a plan carried out after a wait
    /// (etcd's answer) without the agent's lock.
    pub fn still_fits(&self, net: &Network) -> Result<(), ModelError> {
        self.check_name_free(&net.name)?;
        if let Some(p) = &net.v4 {
            self.check_subnet_free(p.subnet)?;
        }
        match &net.v6 {
            Some(p) => self.check_subnet_free(p.subnet),
            None => Ok(()),
        }
    }

    /// No network has the name `name`.
    fn check_name_free(&self, name: &str) -> Result<(), ModelError> {
        if self.networks.contains_key(name) {
            return Err(ModelError::NetworkExists(name.to_string()));
        }
        Ok(())
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
        let v4_asked = req.subnet.is_some() || req.gateway.is_some() || req.ip_range.is_some();
        let v4 = match req.wants_ipv4() {
            true => Some(self.plan_pool(
                PoolRequest {
                    subnet: req.subnet.as_deref(),
                    gateway: req.gateway,
                    ip_range: req.ip_range.as_deref(),
                },
                host,
            )?),
            // A network of IPv6 alone (Docker's --ipv4=false).
            false if v4_asked => return Err(ModelError::Ipv4Off("")),
            false if options.contains_key(HOST_GATEWAY) => {
                return Err(ModelError::Ipv4Off(HOST_GATEWAY))
            }
            false if !req.ipv6 => return Err(ModelError::NoAddressFamily),
            false if req.is_overlay() => return Err(ModelError::OverlayIpv6Only),
            false => None,
        };
        let v6_asked = req.subnet6.is_some() || req.gateway6.is_some() || req.ip_range6.is_some();
        let v6 = match req.ipv6 {
            false if v6_asked => return Err(ModelError::NeedsIpv6),
            false => None,
            // An overlay network's IPv6 addresses follow its IPv4 ones (the gateway's too).
            true if req.is_overlay() => {
                if req.gateway6.is_some() || req.ip_range6.is_some() {
                    return Err(ModelError::OverlayIpv6);
                }
                let mut p = self.plan_pool(
                    PoolRequest {
                        subnet: req.subnet6.as_deref(),
                        gateway: None,
                        ip_range: None,
                    },
                    host,
                )?;
                p.gateway = v4
                    .as_ref()
                    .and_then(|v4| crate::model::overlay_ip6(v4, &p, v4.gateway))
                    .filter(|_| p.subnet.prefix() <= 96)
                    .ok_or(ModelError::OverlayIpv6)?;
                Some(p)
            }
            true => Some(self.plan_pool(
                PoolRequest {
                    subnet: req.subnet6.as_deref(),
                    gateway: req.gateway6,
                    ip_range: req.ip_range6.as_deref(),
                },
                host,
            )?),
        };
        if let (Some(hg), Some(v4)) = (options.get(HOST_GATEWAY).and_then(|v| v.parse().ok()), &v4)
        {
            self.check_host_gateway(hg, v4.subnet, host)?;
        }
        let net_id = (1..)
            .find(|i| !self.networks.values().any(|n| n.net_id == *i))
            .unwrap_or(u32::MAX);
        Ok(Network {
            name: req.name.clone(),
            id: new_id(),
            net_id,
            driver,
            v4,
            v6,
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
            if subnet.is_reserved(ip) {
                return unusable(format!("the network or broadcast address of {subnet}"));
            }
            return Ok(());
        }
        let subnet_of = |n: &Network| n.v4.map(|p| p.subnet).filter(|s| s.contains(ip));
        if let Some((n, s)) = self
            .networks
            .values()
            .find_map(|n| Some((n, subnet_of(n)?)))
        {
            return unusable(format!("in network {}'s subnet {s}", n.name));
        }
        if let Some(r) = self
            .foreign_routes::<Ipv4Addr>(host)
            .find(|r| r.prefix() > 0 && r.contains(ip))
        {
            return unusable(format!(
                "on the host's network {r}: another machine's address (a router's or a neighbour's)"
            ));
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
