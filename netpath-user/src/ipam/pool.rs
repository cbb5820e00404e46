//! A pool as Docker's IPAM configures one: a subnet, its gateway, and the part of it
//! addresses are given from. A network has one per family.
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{Family, IpamError, Subnet};

/// One family's addressing of a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "A: Family")]
pub struct Pool<A: Family = Ipv4Addr> {
    pub subnet: Subnet<A>,
    pub gateway: A,
    /// Addresses are allocated from here when set (inside the subnet).
    #[serde(default)]
    pub ip_range: Option<Subnet<A>>,
}

impl<A: Family> Pool<A> {
    /// Checks that `ip` may be given to an endpoint: inside, not reserved, not the gateway.
    pub fn check_assignable(&self, ip: A) -> Result<(), IpamError> {
        self.subnet.check_assignable(ip, self.gateway)
    }

    /// The first address of the range (or the subnet) an endpoint may have that `taken`
    /// does not hold.
    pub fn allocate(&self, taken: impl Fn(&A) -> bool) -> Result<A, IpamError> {
        self.subnet.first_free(self.ip_range, self.gateway, taken)
    }
}
