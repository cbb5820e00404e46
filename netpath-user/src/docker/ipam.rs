//! netpath's IPAM driver for Docker: address pools and the addresses handed out of them,
//! kept in one file of the agent's state directory (written atomically at every change), so
//! an agent restart forgets nothing Docker was given.
//!
//! Docker asks for a pool and the gateway before it creates a network, and for each address
//! before it creates an endpoint; the addresses of netpath's own endpoints on a pool's network
//! are never handed out either.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::protocol::{keys, AddressRequest, RequestPool};
use crate::ipam::{cidr_address, pick_subnet, IpamError, Subnet};

/// The pools' file in the agent's state directory.
pub const POOLS_FILE: &str = "docker-ipam.json";

/// The address space netpath answers for (Docker names it in its requests).
pub const ADDRESS_SPACE: &str = "netpath";

/// Why an IPAM request was refused (one line, as `docker` prints it).
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("netpath networks are IPv4 only")]
    V6,
    #[error("{0}")]
    Ipam(#[from] IpamError),
    #[error("pool {0} overlaps pool {1} already in use")]
    Overlap(Subnet, Subnet),
    #[error("ip-range {0} is not inside subnet {1}")]
    RangeOutside(Subnet, Subnet),
    #[error("no such pool: {0}")]
    NoPool(String),
    #[error("saving the pools: {0}")]
    Save(#[from] std::io::Error),
}

/// One pool: a subnet, maybe a range of it to allocate from, the addresses handed out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pool {
    pub subnet: Option<Subnet>,
    pub range: Option<Subnet>,
    pub gateway: Option<Ipv4Addr>,
    pub taken: BTreeSet<Ipv4Addr>,
}

/// Every pool, by pool id (the subnet, and the range when there is one).
#[derive(Debug, Default)]
pub struct Pools {
    path: Option<PathBuf>,
    pools: BTreeMap<String, Pool>,
}

impl Pools {
    /// The pools saved in `dir` (none if the file is missing).
    pub fn load(dir: &Path) -> Result<Pools, PoolError> {
        let path = dir.join(POOLS_FILE);
        let pools = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(Pools {
            path: Some(path),
            pools,
        })
    }

    /// Pools kept in memory only (tests).
    pub fn in_memory() -> Pools {
        Pools::default()
    }

    fn save(&self) -> Result<(), PoolError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        Ok(crate::model::write_json(path, &self.pools)?)
    }

    /// The subnet of pool `id`, if there is such a pool.
    pub fn subnet_of(&self, id: &str) -> Option<Subnet> {
        self.pools.get(id).and_then(|p| p.subnet)
    }

    /// The pool a subnet was handed out as, if any.
    pub fn by_subnet(&self, subnet: Subnet) -> Option<&Pool> {
        self.pools.values().find(|p| p.subnet == Some(subnet))
    }

    /// A pool: the subnet asked for (it must not overlap another pool or `networks`, the
    /// subnets of netpath's networks that no pool made), or the first free default one.
    pub fn request_pool(
        &mut self,
        req: &RequestPool,
        networks: &[Subnet],
    ) -> Result<(String, Subnet), PoolError> {
        if req.v6 {
            return Err(PoolError::V6);
        }
        let mine: Vec<Subnet> = self.pools.values().filter_map(|p| p.subnet).collect();
        let mut taken = mine.clone();
        taken.extend(networks.iter().filter(|n| !mine.contains(n)));
        let subnet = if req.pool.is_empty() {
            pick_subnet(crate::ipam::default_pool(), &taken)?
        } else {
            let s: Subnet = req.pool.parse()?;
            if let Some(t) = taken.iter().find(|t| t.overlaps(&s)) {
                return Err(PoolError::Overlap(s, *t));
            }
            s
        };
        let range = if req.sub_pool.is_empty() {
            None
        } else {
            let r: Subnet = req.sub_pool.parse()?;
            if !subnet.contains(r.addr()) || r.prefix() < subnet.prefix() {
                return Err(PoolError::RangeOutside(r, subnet));
            }
            Some(r)
        };
        let id = match range {
            Some(r) => format!("{subnet}/{r}"),
            None => subnet.to_string(),
        };
        self.pools.insert(
            id.clone(),
            Pool {
                subnet: Some(subnet),
                range,
                ..Pool::default()
            },
        );
        self.save()?;
        Ok((id, subnet))
    }

    pub fn release_pool(&mut self, id: &str) -> Result<(), PoolError> {
        if self.pools.remove(id).is_some() {
            self.save()?;
        }
        Ok(())
    }

    /// An address of pool `req.pool_id`: the one asked for if it is free, else the first free
    /// one (the subnet's first address for a gateway, as Docker does); `used` are addresses
    /// netpath's endpoints hold in the subnet. Answers `address/prefix`.
    pub fn request_address(
        &mut self,
        req: &AddressRequest,
        used: &[Ipv4Addr],
    ) -> Result<String, PoolError> {
        let pool = self
            .pools
            .get_mut(&req.pool_id)
            .ok_or_else(|| PoolError::NoPool(req.pool_id.clone()))?;
        let subnet = pool
            .subnet
            .ok_or_else(|| PoolError::NoPool(req.pool_id.clone()))?;
        let gateway = req
            .options
            .as_ref()
            .and_then(|o| o.get(keys::REQUEST_ADDRESS_TYPE))
            .is_some_and(|t| t == keys::GATEWAY_ADDRESS);
        let busy = |ip: &Ipv4Addr, pool: &Pool| pool.taken.contains(ip) || used.contains(ip);
        let ip = match cidr_address(&req.address)? {
            Some(ip) => ip,
            None if gateway => subnet.first_host(),
            None => subnet.first_free(
                pool.range,
                pool.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED),
                |ip| busy(ip, pool),
            )?,
        };
        // The subnet's own network and broadcast addresses never; a taken one never.
        subnet.check_assignable(ip, Ipv4Addr::UNSPECIFIED)?;
        if busy(&ip, pool) {
            return Err(IpamError::InUse(ip.into()).into());
        }
        pool.taken.insert(ip);
        if gateway {
            pool.gateway = Some(ip);
        }
        self.save()?;
        Ok(format!("{ip}/{}", subnet.prefix()))
    }

    /// Gives back what Docker let go of while nobody answered it: pools of subnets none of
    /// `subnets` (Docker's networks') is, and addresses none of `held` (its running
    /// containers') is, gateways aside. What it released, one line each.
    pub fn reconcile(
        &mut self,
        subnets: &[Subnet],
        held: &BTreeSet<Ipv4Addr>,
    ) -> Result<Vec<String>, PoolError> {
        let mut out = Vec::new();
        self.pools.retain(|id, p| {
            let keep = p.subnet.is_none_or(|s| subnets.contains(&s));
            if !keep {
                out.push(format!("pool {id}"));
            }
            keep
        });
        for pool in self.pools.values_mut() {
            let gateway = pool.gateway;
            pool.taken.retain(|ip| {
                let keep = held.contains(ip) || Some(*ip) == gateway;
                if !keep {
                    out.push(format!("address {ip}"));
                }
                keep
            });
        }
        if !out.is_empty() {
            self.save()?;
        }
        Ok(out)
    }

    pub fn release_address(&mut self, req: &AddressRequest) -> Result<(), PoolError> {
        let Some(pool) = self.pools.get_mut(&req.pool_id) else {
            return Ok(());
        };
        let Some(ip) = cidr_address(&req.address)? else {
            return Err(IpamError::BadAddress(req.address.clone()).into());
        };
        if pool.taken.remove(&ip) {
            if pool.gateway == Some(ip) {
                pool.gateway = None;
            }
            self.save()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(p: &str, sub: &str) -> RequestPool {
        RequestPool {
            address_space: ADDRESS_SPACE.into(),
            pool: p.into(),
            sub_pool: sub.into(),
            ..RequestPool::default()
        }
    }

    fn addr(id: &str, a: &str, gw: bool) -> AddressRequest {
        AddressRequest {
            pool_id: id.into(),
            address: a.into(),
            options: gw.then(|| {
                [(
                    keys::REQUEST_ADDRESS_TYPE.to_string(),
                    keys::GATEWAY_ADDRESS.to_string(),
                )]
                .into()
            }),
        }
    }

    #[test]
    fn hands_out_a_gateway_then_free_addresses_from_the_range() {
        let mut p = Pools::in_memory();
        let (id, s) = p
            .request_pool(&pool("10.9.0.0/24", "10.9.0.128/25"), &[])
            .unwrap();
        assert_eq!(s.to_string(), "10.9.0.0/24");
        assert_eq!(
            p.request_address(&addr(&id, "", true), &[]).unwrap(),
            "10.9.0.1/24"
        );
        assert_eq!(
            p.request_address(&addr(&id, "", false), &[]).unwrap(),
            "10.9.0.128/24"
        );
        // netpath's own endpoint holds .129.
        let used = ["10.9.0.129".parse().unwrap()];
        assert_eq!(
            p.request_address(&addr(&id, "", false), &used).unwrap(),
            "10.9.0.130/24"
        );
        assert!(p
            .request_address(&addr(&id, "10.9.0.128", false), &[])
            .is_err());
        assert_eq!(
            p.request_address(&addr(&id, "10.9.0.7", false), &[])
                .unwrap(),
            "10.9.0.7/24"
        );
        p.release_address(&addr(&id, "10.9.0.128/24", false))
            .unwrap();
        assert_eq!(
            p.request_address(&addr(&id, "", false), &[]).unwrap(),
            "10.9.0.128/24"
        );
        assert!(p
            .request_address(&addr(&id, "10.9.0.255", false), &[])
            .is_err());
    }

    #[test]
    fn refuses_overlaps_v6_and_unknown_pools_and_picks_a_default() {
        let mut p = Pools::in_memory();
        p.request_pool(&pool("10.9.0.0/16", ""), &[]).unwrap();
        assert!(matches!(
            p.request_pool(&pool("10.9.3.0/24", ""), &[]),
            Err(PoolError::Overlap(..))
        ));
        let net: Subnet = "10.210.0.0/16".parse().unwrap();
        let (_, s) = p.request_pool(&pool("", ""), &[net]).unwrap();
        assert_eq!(s.to_string(), "10.211.0.0/16");
        let v6 = RequestPool {
            v6: true,
            ..RequestPool::default()
        };
        assert!(matches!(p.request_pool(&v6, &[]), Err(PoolError::V6)));
        assert!(matches!(
            p.request_address(&addr("nope", "", false), &[]),
            Err(PoolError::NoPool(_))
        ));
        assert!(matches!(
            p.request_pool(&pool("10.10.0.0/24", "10.11.0.0/25"), &[]),
            Err(PoolError::RangeOutside(..))
        ));
    }

    #[test]
    fn survive_a_restart() {
        let dir = crate::scratch::ScratchDir::new("pools");
        let mut p = Pools::load(&dir).unwrap();
        let (id, _) = p.request_pool(&pool("10.9.0.0/24", ""), &[]).unwrap();
        p.request_address(&addr(&id, "", true), &[]).unwrap();
        let mut again = Pools::load(&dir).unwrap();
        let got = again.request_address(&addr(&id, "", false), &[]);
        assert_eq!(got.unwrap(), "10.9.0.2/24");
    }

    #[test]
    fn reconcile_gives_back_what_docker_let_go() {
        let mut p = Pools::in_memory();
        let (kept, _) = p.request_pool(&pool("10.50.0.0/24", ""), &[]).unwrap();
        let (gone, _) = p.request_pool(&pool("10.51.0.0/24", ""), &[]).unwrap();
        p.request_address(&addr(&kept, "", true), &[]).unwrap();
        p.request_address(&addr(&kept, "10.50.0.7", false), &[])
            .unwrap();
        p.request_address(&addr(&kept, "10.50.0.8", false), &[])
            .unwrap();
        let held: BTreeSet<Ipv4Addr> = ["10.50.0.7".parse().unwrap()].into();
        let mut said = p
            .reconcile(&["10.50.0.0/24".parse().unwrap()], &held)
            .unwrap();
        said.sort();
        assert_eq!(said, ["address 10.50.0.8", format!("pool {gone}").as_str()]);
        // The gateway and the held address stay taken; the others are free again.
        assert!(p
            .request_address(&addr(&kept, "10.50.0.7", false), &[])
            .is_err());
        assert!(p
            .request_address(&addr(&kept, "10.50.0.8", false), &[])
            .is_ok());
        assert!(p.request_pool(&pool("10.51.0.0/24", ""), &[]).is_ok());
    }
}
