//! Planning: every request is checked here against the current state, with no side effects,
//! and turned into what it would create or remove. Only a plan that passed reaches the
//! kernel, so a refused request changes nothing.
//!
//! | module | plans |
//! |---|---|
//! | `network` | networks: subnets (asked for, or the next free one of the pools), gateways, host gateways, addresses, removal |
//! | `endpoint` | endpoints, connect and disconnect, published ports |
//! | `checks` | the pieces of a request checked alone: names, MACs, labels, aliases, resolver settings |
//! | `error` | [`ModelError`]: why a request was refused, in one line |
mod checks;
mod endpoint;
mod error;
mod network;

pub use checks::valid_domain;
pub use error::ModelError;

use std::net::Ipv4Addr;

use crate::{ipam::Subnet, ports};

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
