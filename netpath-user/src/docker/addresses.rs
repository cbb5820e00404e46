//! The IPAM driver's calls that take what netpath's networks hold into account: a pool beside
//! their subnets, an address none of their endpoints has (the pools themselves: [`super::ipam`]).
use std::{collections::BTreeMap, net::Ipv4Addr};

use serde_json::Value;

use super::{protocol::*, to_value, Plugin, Refusal};
use crate::{
    api::Service,
    ipam::{cidr_address, Subnet},
};

impl<S: Service> Plugin<S> {
    /// `RequestPool`: a pool of the family asked for, beside netpath's networks' subnets.
    pub(super) fn request_pool(&self, req: &RequestPool) -> Result<Value, Refusal> {
        let all = self.svc.networks();
        let configs = || all.iter().flat_map(|n| n.ipam.config.iter());
        let networks: Vec<Subnet> = configs().filter_map(|c| c.subnet.parse().ok()).collect();
        let networks6: Vec<_> = configs().filter_map(|c| c.subnet.parse().ok()).collect();
        let (id, pool) = self
            .pools()
            .request_pool(req, &networks, &networks6)
            .map_err(|e| e.to_string())?;
        to_value(&PoolResponse {
            pool_id: id,
            pool,
            data: BTreeMap::new(),
        })
    }

    /// `RequestAddress`: an address of the pool, none that netpath's own endpoints on its
    /// network hold.
    pub(super) fn request_address(&self, req: &AddressRequest) -> Result<Value, Refusal> {
        let subnet = self.pools().subnet_of(&req.pool_id).map(|s| s.to_string());
        // Addresses netpath's own endpoints hold on the pool's network.
        let all = self.svc.networks();
        let members = || {
            all.iter()
                .filter(|n| {
                    n.ipam
                        .config
                        .iter()
                        .any(|c| Some(&c.subnet) == subnet.as_ref())
                })
                .flat_map(|n| n.containers.values())
        };
        let used: Vec<Ipv4Addr> = members()
            .filter_map(|m| cidr_address(&m.ipv4_address).ok().flatten())
            .collect();
        let used6: Vec<std::net::Ipv6Addr> = members()
            .filter_map(|m| cidr_address(&m.ipv6_address).ok().flatten())
            .collect();
        let address = self
            .pools()
            .request_address(req, &used, &used6)
            .map_err(|e| e.to_string())?;
        to_value(&AddressResponse {
            address,
            data: BTreeMap::new(),
        })
    }
}
