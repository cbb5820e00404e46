//! netpath's IPAM driver for Docker: address pools of both families and the addresses handed
//! out of them, kept in a file per family in the agent's state directory (written atomically
//! at every change), so an agent restart forgets nothing Docker was given.
//!
//! Docker asks for a pool and the gateway before it creates a network, and for each address
//! before it creates an endpoint; the addresses of netpath's own endpoints on a pool's network
//! are never handed out either.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::protocol::{keys, AddressRequest, RequestPool};
use crate::ipam::{cidr_address, pick_subnet, AnySubnet, Family, IpamError, Subnet};

/// The pools' files in the agent's state directory: IPv4's, and IPv6's beside it.
pub const POOLS_FILE: &str = "docker-ipam.json";
pub const POOLS6_FILE: &str = "docker-ipam6.json";

/// The address space netpath answers for (Docker names it in its requests).
pub const ADDRESS_SPACE: &str = "netpath";

/// Why an IPAM request was refused (one line, as `docker` prints it).
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{0}")]
    Ipam(#[from] IpamError),
    #[error("pool {0} overlaps pool {1} already in use")]
    Overlap(AnySubnet, AnySubnet),
    #[error("ip-range {0} is not inside subnet {1}")]
    RangeOutside(AnySubnet, AnySubnet),
    #[error("no such pool: {0}")]
    NoPool(String),
    #[error("saving the pools: {0}")]
    Save(#[from] std::io::Error),
}

/// One pool: a subnet, maybe a range of it to allocate from, the addresses handed out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, bound = "A: Family")]
pub struct Pool<A: Family = Ipv4Addr> {
    pub subnet: Option<Subnet<A>>,
    pub range: Option<Subnet<A>>,
    pub gateway: Option<A>,
    pub taken: BTreeSet<A>,
}

impl<A: Family> Default for Pool<A> {
    fn default() -> Self {
        Pool {
            subnet: None,
            range: None,
            gateway: None,
            taken: BTreeSet::new(),
        }
    }
}

/// One family's pools, by pool id (the subnet, and the range when there is one: an IPv6
/// pool's id has colons, an IPv4 one's none).
type Map<A> = BTreeMap<String, Pool<A>>;

/// Every pool, of both families.
#[derive(Debug, Default)]
pub struct Pools {
    dir: Option<PathBuf>,
    pools: Map<Ipv4Addr>,
    pools6: Map<Ipv6Addr>,
}

/// A pools' file in `dir` (empty if it is missing).
fn load_map<A: Family>(dir: &Path, file: &str) -> Result<Map<A>, PoolError> {
    match std::fs::read(dir.join(file)) {
        Ok(b) => Ok(serde_json::from_slice(&b).map_err(std::io::Error::other)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e.into()),
    }
}

/// A pool of `pools`: the subnet asked for (overlapping none of `taken`, the other pools'
/// and netpath's networks'), or the first free one of `default`; its range.
fn request_in<A: Family>(
    pools: &mut Map<A>,
    req: &RequestPool,
    networks: &[Subnet<A>],
    default: impl Iterator<Item = Subnet<A>>,
) -> Result<(String, Subnet<A>), PoolError> {
    let mine: Vec<Subnet<A>> = pools.values().filter_map(|p| p.subnet).collect();
    let mut taken = mine.clone();
    taken.extend(networks.iter().filter(|n| !mine.contains(n)));
    let subnet = if req.pool.is_empty() {
        pick_subnet(default, &taken)?
    } else {
        let s: Subnet<A> = req.pool.parse()?;
        if let Some(t) = taken.iter().find(|t| t.overlaps(&s)) {
            return Err(PoolError::Overlap(s.into(), (*t).into()));
        }
        s
    };
    let range = if req.sub_pool.is_empty() {
        None
    } else {
        let r: Subnet<A> = req.sub_pool.parse()?;
        if !subnet.contains(r.addr()) || r.prefix() < subnet.prefix() {
            return Err(PoolError::RangeOutside(r.into(), subnet.into()));
        }
        Some(r)
    };
    let id = match range {
        Some(r) => format!("{subnet}/{r}"),
        None => subnet.to_string(),
    };
    pools.insert(
        id.clone(),
        Pool {
            subnet: Some(subnet),
            range,
            ..Pool::default()
        },
    );
    Ok((id, subnet))
}

/// An address of `pool` (see [`Pools::request_address`]), `used` held by netpath's own
/// endpoints.
fn address_in<A: Family>(
    pool: &mut Pool<A>,
    req: &AddressRequest,
    used: &[A],
) -> Result<String, PoolError> {
    let subnet = pool
        .subnet
        .ok_or_else(|| PoolError::NoPool(req.pool_id.clone()))?;
    let gateway = req
        .options
        .as_ref()
        .and_then(|o| o.get(keys::REQUEST_ADDRESS_TYPE))
        .is_some_and(|t| t == keys::GATEWAY_ADDRESS);
    let busy = |ip: &A, pool: &Pool<A>| pool.taken.contains(ip) || used.contains(ip);
    let none = A::from_bits(0);
    let ip = match cidr_address::<A>(&req.address)? {
        Some(ip) => ip,
        None if gateway => subnet.first_host(),
        None => subnet.first_free(pool.range, pool.gateway.unwrap_or(none), |ip| {
            busy(ip, pool)
        })?,
    };
    // The subnet's own network and broadcast addresses never; a taken one never.
    subnet.check_assignable(ip, none)?;
    if busy(&ip, pool) {
        return Err(IpamError::InUse(ip.into()).into());
    }
    pool.taken.insert(ip);
    if gateway {
        pool.gateway = Some(ip);
    }
    Ok(format!("{ip}/{}", subnet.prefix()))
}

/// Forgets `pools` whose subnet none of `subnets` is, and addresses none of `held` is
/// (gateways aside); says each in `out`.
fn reconcile_in<A: Family>(
    pools: &mut Map<A>,
    subnets: &[Subnet<A>],
    held: &BTreeSet<A>,
    out: &mut Vec<String>,
) {
    pools.retain(|id, p| {
        let keep = p.subnet.is_none_or(|s| subnets.contains(&s));
        if !keep {
            out.push(format!("pool {id}"));
        }
        keep
    });
    for pool in pools.values_mut() {
        let gateway = pool.gateway;
        pool.taken.retain(|ip| {
            let keep = held.contains(ip) || Some(*ip) == gateway;
            if !keep {
                out.push(format!("address {ip}"));
            }
            keep
        });
    }
}

/// Gives back `req.address` of `pool` (its gateway too, when it was).
fn release_in<A: Family>(pool: &mut Pool<A>, req: &AddressRequest) -> Result<bool, PoolError> {
    let Some(ip) = cidr_address::<A>(&req.address)? else {
        return Err(IpamError::BadAddress(req.address.clone(), A::FORM).into());
    };
    if !pool.taken.remove(&ip) {
        return Ok(false);
    }
    if pool.gateway == Some(ip) {
        pool.gateway = None;
    }
    Ok(true)
}

impl Pools {
    /// The pools saved in `dir` (none if the files are missing).
    pub fn load(dir: &Path) -> Result<Pools, PoolError> {
        Ok(Pools {
            pools: load_map(dir, POOLS_FILE)?,
            pools6: load_map(dir, POOLS6_FILE)?,
            dir: Some(dir.to_path_buf()),
        })
    }

    /// Pools kept in memory only (tests).
    pub fn in_memory() -> Pools {
        Pools::default()
    }

    fn save(&self) -> Result<(), PoolError> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        crate::model::write_json(&dir.join(POOLS_FILE), &self.pools)?;
        Ok(crate::model::write_json(
            &dir.join(POOLS6_FILE),
            &self.pools6,
        )?)
    }

    /// The subnet of pool `id`, if there is such a pool (of either family).
    pub fn subnet_of(&self, id: &str) -> Option<AnySubnet> {
        let v4 = self.pools.get(id).and_then(|p| p.subnet).map(Into::into);
        v4.or_else(|| self.pools6.get(id).and_then(|p| p.subnet).map(Into::into))
    }

    /// The IPv4 pool a subnet was handed out as, if any.
    pub fn by_subnet(&self, subnet: Subnet) -> Option<&Pool> {
        self.pools.values().find(|p| p.subnet == Some(subnet))
    }

    /// The IPv6 pool a subnet was handed out as, if any.
    pub fn by_subnet6(&self, subnet: Subnet<Ipv6Addr>) -> Option<&Pool<Ipv6Addr>> {
        self.pools6.values().find(|p| p.subnet == Some(subnet))
    }

    /// A pool of the family asked for: the subnet asked for (it must not overlap another
    /// pool or netpath's networks' subnets that no pool made), or the first free default
    /// one. Its id, and its subnet as Docker writes it.
    pub fn request_pool(
        &mut self,
        req: &RequestPool,
        networks: &[Subnet],
        networks6: &[Subnet<Ipv6Addr>],
    ) -> Result<(String, String), PoolError> {
        let (id, subnet) = if req.v6 {
            let (id, s) = request_in(
                &mut self.pools6,
                req,
                networks6,
                crate::ipam::default_pool6(),
            )?;
            (id, s.to_string())
        } else {
            let (id, s) = request_in(&mut self.pools, req, networks, crate::ipam::default_pool())?;
            (id, s.to_string())
        };
        self.save()?;
        Ok((id, subnet))
    }

    pub fn release_pool(&mut self, id: &str) -> Result<(), PoolError> {
        if self.pools.remove(id).is_some() || self.pools6.remove(id).is_some() {
            self.save()?;
        }
        Ok(())
    }

    /// An address of pool `req.pool_id`: the one asked for if it is free, else the first free
    /// one (the subnet's first address for a gateway, as Docker does); `used` and `used6` are
    /// addresses netpath's endpoints hold in the subnet. Answers `address/prefix`.
    pub fn request_address(
        &mut self,
        req: &AddressRequest,
        used: &[Ipv4Addr],
        used6: &[Ipv6Addr],
    ) -> Result<String, PoolError> {
        let got = if let Some(pool) = self.pools.get_mut(&req.pool_id) {
            address_in(pool, req, used)?
        } else if let Some(pool) = self.pools6.get_mut(&req.pool_id) {
            address_in(pool, req, used6)?
        } else {
            return Err(PoolError::NoPool(req.pool_id.clone()));
        };
        self.save()?;
        Ok(got)
    }

    /// Gives back what Docker let go of while nobody answered it: pools of subnets none of
    /// Docker's networks' is, and addresses none of its running containers' is, gateways
    /// aside. What it released, one line each.
    pub fn reconcile(
        &mut self,
        subnets: &[Subnet],
        subnets6: &[Subnet<Ipv6Addr>],
        held: &BTreeSet<Ipv4Addr>,
        held6: &BTreeSet<Ipv6Addr>,
    ) -> Result<Vec<String>, PoolError> {
        let mut out = Vec::new();
        reconcile_in(&mut self.pools, subnets, held, &mut out);
        reconcile_in(&mut self.pools6, subnets6, held6, &mut out);
        if !out.is_empty() {
            self.save()?;
        }
        Ok(out)
    }

    pub fn release_address(&mut self, req: &AddressRequest) -> Result<(), PoolError> {
        let released = if let Some(pool) = self.pools.get_mut(&req.pool_id) {
            release_in(pool, req)?
        } else if let Some(pool) = self.pools6.get_mut(&req.pool_id) {
            release_in(pool, req)?
        } else {
            false
        };
        if released {
            self.save()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
