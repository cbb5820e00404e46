//! Planning: every request is checked here against the current state, with no side effects,
//! and turned into what it would create or remove. Only a plan that passed reaches the
//! kernel, so a refused request changes nothing.
//!
//! | module | plans |
//! |---|---|
//! | `network` | networks: options, host gateways, addresses, removal |
//! | `pools` | a network's pool of either family: subnet asked for or the next free one, gateway, range; addresses from it |
//! | `endpoint` | endpoints, connect and disconnect, published ports |
//! | `checks` | the pieces of a request checked alone: names, MACs, labels, aliases, resolver settings |
//! | `error` | [`ModelError`]: why a request was refused, in one line |
mod checks;
mod endpoint;
mod error;
mod network;
mod pools;

pub use checks::valid_domain;
pub use error::ModelError;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{ipam::Subnet, ports};

#[derive(Clone, Copy)]
pub struct HostView<'a> {
    /// Destinations of the main routing table: read only for plans that choose a network's
    /// subnet (the agent's `with_host_routes`), empty for the others.
    pub routes: &'a [Subnet],
    /// Every IPv4 address of the agent's namespace.
    pub addrs: &'a [Ipv4Addr],
    /// Destinations of the main IPv6 routing table (as `routes`).
    pub routes6: &'a [Subnet<Ipv6Addr>],
    /// Every IPv6 address of the agent's namespace.
    pub addrs6: &'a [Ipv6Addr],
    /// Whether a host process holds a mapping's address and port.
    pub busy: ports::Busy<'a>,
}

impl HostView<'_> {
    /// Whether `ip` is one of the host's addresses.
    pub fn has_addr(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.addrs.contains(&a),
            IpAddr::V6(a) => self.addrs6.contains(&a),
        }
    }
}

impl HostView<'static> {
    /// A host with no routes, no addresses, nothing bound (planning in tests).
    pub fn empty() -> HostView<'static> {
        HostView {
            routes: &[],
            addrs: &[],
            routes6: &[],
            addrs6: &[],
            busy: &|_| false,
        }
    }
}
