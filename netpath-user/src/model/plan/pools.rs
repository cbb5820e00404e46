//! A network's pool of either family, planned once for both: the subnet asked for (checked
//! against the blocks no network may use, the host's routes and addresses and the other
//! networks) or the next free one of the default pool, its gateway, its range, and endpoint
//! addresses from it. What differs between IPv4 and IPv6 is [`Side`].
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{HostView, ModelError};
use crate::{
    ipam::{self, Family, IpamError, Pool, Subnet},
    model::{Network, State},
};

/// An address family as a network's planning sees it.
pub trait Side: Family {
    /// `--ipv6`'s or IPv4's words in errors.
    const NAME: &'static str;
    /// Blocks of addresses no network may use, and why.
    const SPECIAL: &'static [(&'static str, &'static str)];
    /// The network's pool of this family, if it has one.
    fn pool(net: &Network) -> Option<&Pool<Self>>;
    /// The host's routes (main table) of this family.
    fn routes<'a>(host: &HostView<'a>) -> &'a [Subnet<Self>];
    /// The host's addresses of this family.
    fn addrs<'a>(host: &HostView<'a>) -> &'a [Self];
    /// Where subnets come from when none is asked for.
    fn default_pool() -> impl Iterator<Item = Subnet<Self>>;
    /// The address of an endpoint's attachment of this family.
    fn of(att: &crate::model::Attachment) -> Option<Self>;
}

impl Side for Ipv4Addr {
    const NAME: &'static str = "IPv4";
    const SPECIAL: &'static [(&'static str, &'static str)] = &[
        ("0.0.0.0/8", "\"this network\" addresses"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved (and broadcast)"),
    ];
    fn pool(net: &Network) -> Option<&Pool<Self>> {
        net.v4.as_ref()
    }
    fn routes<'a>(host: &HostView<'a>) -> &'a [Subnet<Self>] {
        host.routes
    }
    fn addrs<'a>(host: &HostView<'a>) -> &'a [Self] {
        host.addrs
    }
    fn default_pool() -> impl Iterator<Item = Subnet<Self>> {
        ipam::default_pool()
    }
    fn of(att: &crate::model::Attachment) -> Option<Self> {
        att.ip
    }
}

impl Side for Ipv6Addr {
    const NAME: &'static str = "IPv6";
    const SPECIAL: &'static [(&'static str, &'static str)] = &[
        ("::/128", "the unspecified address"),
        ("::1/128", "loopback"),
        ("::ffff:0:0/96", "IPv4-mapped addresses"),
        ("64:ff9b::/96", "the NAT64 prefix"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
    ];
    fn pool(net: &Network) -> Option<&Pool<Self>> {
        net.v6.as_ref()
    }
    fn routes<'a>(host: &HostView<'a>) -> &'a [Subnet<Self>] {
        host.routes6
    }
    fn addrs<'a>(host: &HostView<'a>) -> &'a [Self] {
        host.addrs6
    }
    fn default_pool() -> impl Iterator<Item = Subnet<Self>> {
        ipam::default_pool6()
    }
    fn of(att: &crate::model::Attachment) -> Option<Self> {
        att.ip6
    }
}

/// What a network request asks of one family's pool.
pub struct PoolRequest<'a, A> {
    pub subnet: Option<&'a str>,
    pub gateway: Option<A>,
    pub ip_range: Option<&'a str>,
}

impl State {
    /// The networks' subnets of family `A`.
    fn subnets<A: Side>(&self) -> impl Iterator<Item = (&Network, Subnet<A>)> + '_ {
        self.networks
            .values()
            .filter_map(|n| A::pool(n).map(|p| (n, p.subnet)))
    }

    /// No network's subnet of family `A` overlaps `subnet`.
    pub(super) fn check_subnet_free<A: Side>(&self, subnet: Subnet<A>) -> Result<(), ModelError> {
        match self.subnets::<A>().find(|(_, s)| s.overlaps(&subnet)) {
            Some((n, s)) => Err(ModelError::Overlap(subnet.into(), s.into(), n.name.clone())),
            None => Ok(()),
        }
    }

    /// The host's routes of family `A` that are not netpath's own (a default route, and the
    /// host routes to endpoints, which lie inside netpath's networks, do not count).
    pub(super) fn foreign_routes<'a, A: Side>(
        &'a self,
        host: HostView<'a>,
    ) -> impl Iterator<Item = Subnet<A>> + 'a {
        A::routes(&host).iter().copied().filter(move |r| {
            r.prefix() > 0 && !self.subnets::<A>().any(|(_, s)| s.contains(r.addr()))
        })
    }

    /// Refuses a subnet the host needs or that no network may use.
    pub(super) fn check_host_overlap<A: Side>(
        &self,
        subnet: Subnet<A>,
        host: HostView<'_>,
    ) -> Result<(), ModelError> {
        for (block, what) in A::SPECIAL {
            let block: Subnet<A> = block.parse().unwrap_or(subnet);
            if block.overlaps(&subnet) {
                return Err(ModelError::SpecialSubnet(subnet.into(), what));
            }
        }
        if let Some(r) = self.foreign_routes::<A>(host).find(|r| r.overlaps(&subnet)) {
            return Err(ModelError::RouteOverlap(subnet.into(), r.into()));
        }
        if let Some(a) = A::addrs(&host).iter().find(|a| subnet.contains(**a)) {
            return Err(ModelError::HostAddress(subnet.into(), (*a).into()));
        }
        Ok(())
    }

    /// One family's pool of a new network: the subnet asked for, checked, or the first free
    /// one of the default pool; the gateway (the subnet's first host unless given); the range.
    pub(super) fn plan_pool<A: Side>(
        &self,
        req: PoolRequest<'_, A>,
        host: HostView<'_>,
    ) -> Result<Pool<A>, ModelError> {
        let subnet = match req.subnet {
            Some(s) => {
                let subnet: Subnet<A> = s.parse()?;
                self.check_subnet_free(subnet)?;
                self.check_host_overlap(subnet, host)?;
                subnet
            }
            None => {
                if req.gateway.is_some() || req.ip_range.is_some() {
                    return Err(ModelError::NeedsSubnet(A::NAME));
                }
                let mut taken: Vec<Subnet<A>> = self.foreign_routes(host).collect();
                taken.extend(self.subnets::<A>().map(|(_, s)| s));
                taken.extend(
                    A::addrs(&host)
                        .iter()
                        .filter_map(|a| Subnet::new(*a, A::BITS).ok()),
                );
                ipam::pick_subnet(A::default_pool(), &taken)?
            }
        };
        // A gateway and one endpoint at least.
        if subnet.hosts().nth(1).is_none() {
            return Err(ModelError::SubnetTooSmall(subnet.into()));
        }
        let gateway = match req.gateway {
            Some(gw) => {
                if !subnet.contains(gw) {
                    return Err(ModelError::GatewayOutside(gw.into()));
                }
                if subnet.is_reserved(gw) {
                    return Err(ModelError::GatewayReserved(gw.into(), subnet.into()));
                }
                gw
            }
            None => subnet.first_host(),
        };
        let ip_range = match req.ip_range {
            Some(r) => {
                let r: Subnet<A> = r.parse()?;
                if !subnet.contains(r.addr()) || r.prefix() < subnet.prefix() {
                    return Err(ModelError::RangeOutside(r.into(), subnet.into()));
                }
                Some(r)
            }
            None => None,
        };
        Ok(Pool {
            subnet,
            gateway,
            ip_range,
        })
    }

    /// An address of family `A` for an endpoint on `net`: `want`, checked, or a free one that
    /// is none of `elsewhere` (taken on other nodes) nor `reserved` (the host gateway).
    pub(super) fn pick_address<A: Side>(
        &self,
        net: &Network,
        want: Option<A>,
        elsewhere: &[A],
        reserved: Option<A>,
    ) -> Result<A, ModelError> {
        let Some(pool) = A::pool(net) else {
            return Err(ModelError::NoFamily(net.name.clone(), A::NAME));
        };
        let mut used: Vec<A> = self
            .members(&net.name)
            .filter_map(|(_, a)| A::of(a))
            .collect();
        if want.is_none() {
            used.extend(elsewhere);
        }
        match want {
            Some(ip) => {
                pool.check_assignable(ip)?;
                if Some(ip) == reserved {
                    return Err(ModelError::HostGatewayAddress(ip.into(), net.name.clone()));
                }
                if used.contains(&ip) {
                    return Err(IpamError::InUse(ip.into()).into());
                }
                Ok(ip)
            }
            // From the ip-range when there is one, never the host's gateway.
            None => Ok(pool.allocate(|ip| used.contains(ip) || Some(*ip) == reserved)?),
        }
    }
}
