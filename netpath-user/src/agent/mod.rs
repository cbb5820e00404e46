//! The node agent: owns the datapath and the desired state, serves the API.
//!
//! | module | concern |
//! |---|---|
//! | `run` | [`run`]: start-up order, serving, shutdown |
//! | [`config`] | [`AgentConfig`]: flags, the configuration file, defaults |
//! | here | [`Agent`]: the desired state, the kernel behind its traits, what it made there |
//! | [`transactions`] | every request on endpoints and networks |
//! | `ports`, `publish`, `attach` | a published port's key and what the host holds; publishing; an attachment's steps |
//! | [`labels`] | labels the agent keeps: engines' names for their objects |
//! | [`memory`] | the allocator told to keep few arenas and give freed memory back |
//! | [`journal`] | each step's undo, played back on failure; what runs after the commit |
//! | [`reconcile`] | making the kernel match the desired state at start |
//! | [`repair`] | drift while running: namespaces gone, veths deleted, programs lost |
//! | [`service`] | the API's queries and the glue to [`crate::api::Service`] |
//! | [`monitor`] | `netpath monitor`: the kernel's events to subscribers |
//! | [`health`] | `netpath status`: hooks, programs, maps, reconcile and repairs |
//! | [`metrics`] | Prometheus metrics and `/healthz` on `--metrics ADDR:PORT` |
//! | `api_metrics` | the API's requests and latencies, counted as it answers |
//! | [`tasks`] | background work (address watch, flow expiry) under a supervisor |
//! | [`host`] | host set-up: bpffs, cgroup, netns cookie, sysctls |
//! | [`reserved`] | the host's reserved ports: outbound NAT and published ports |
//! | [`netns_files`] | /etc/netns/NAME/hosts for endpoints |
//! | [`slots`] | which published port counts into which `PORT_STATS` slot |
//! | [`store`] | the state file |
//! | [`uninstall`] | `netpath uninstall`: everything the agent made, taken down |
//!
//! The agent reaches the kernel only through [`DatapathOps`](crate::datapath::DatapathOps)
//! and [`LinkOps`](crate::netlink::LinkOps), so everything here but [`run`] and [`host`] is
//! unit-tested with in-memory fakes.
mod api_metrics;
mod attach;
pub mod config;
mod follow;
pub mod health;
pub mod host;
pub mod journal;
pub mod labels;
pub mod memory;
pub mod metrics;
pub mod monitor;
pub mod netns_files;
pub mod overlay;
mod policy;
mod policy_api;
mod ports;
mod publish;
pub mod reconcile;
pub mod repair;
pub mod reserved;
mod run;
pub mod service;
pub mod slots;
pub mod store;
pub mod tasks;
pub mod transactions;
pub mod uninstall;

#[cfg(test)]
mod tests;

pub use config::AgentConfig;
pub use run::run;
pub use service::Shared;
pub use store::{StateFile, StateStore};

use std::collections::HashMap;

use crate::{
    datapath::{DatapathOps, XdpMode},
    model::State,
    netlink::{EndpointLink, LinkOps},
};
use netns_files::NetnsFiles;
use reserved::ReservedPorts;
use slots::Slots;

/// The agent: desired state, the kernel behind its traits, and what it made there.
pub struct Agent<D, L, S> {
    pub(crate) state: State,
    pub(crate) dp: D,
    pub(crate) net: L,
    pub(crate) store: S,
    /// Host-side veths made for attachments, by name.
    pub(crate) links: HashMap<String, EndpointLink>,
    /// Where the datapath hooks in beside the endpoints.
    pub(crate) host: HostHooks,
    pub(crate) files: NetnsFiles,
    /// Repairs of drift made since start ([`repair`]).
    pub(crate) repairs: u64,
    /// Each published port's `PORT_STATS` slot.
    pub(crate) slots: Slots,
    /// The host's resolvers: endpoints' resolv.conf files take its search and options.
    pub(crate) resolv: std::sync::Arc<crate::dns::upstream::HostResolv>,
    /// Whether the kernel answers DNS queries it can (`--dns-fast-path`).
    pub(crate) dns_fast_path: bool,
    /// When this agent started, its reconcile and its last repair ([`health`]).
    pub(crate) started: std::time::SystemTime,
    pub(crate) last_reconcile: Option<health::Reconciled>,
    pub(crate) last_repair: Option<std::time::SystemTime>,
    /// What the overlay maps were last made to hold ([`overlay`]).
    pub(crate) overlay_written: Option<crate::datapath::OverlayContent>,
    /// What keeps this node from matching the cluster, as last found.
    pub(crate) cluster_problems: Vec<String>,
    /// The host's reserved ports, kept to the outbound NAT and published ports at each
    /// commit (none in unit tests).
    pub(crate) reserved: Option<ReservedPorts>,
    /// The identities of the endpoints' label sets, kept while they are in use ([`policy`]).
    pub(crate) identities: crate::model::identity::Identities,
    /// The identities of the prefixes ipBlocks name, numbered apart.
    pub(crate) block_identities: crate::model::identity::Identities,
    /// What the policy maps were last made to hold.
    pub(crate) policy_written: Option<crate::policy::Compiled>,
}

/// The hooks of the host itself: uplinks (their addresses are also the outbound NAT
/// sources) and the socket hooks' cgroup and namespace.
#[derive(Clone, Debug, Default)]
pub struct HostHooks {
    pub uplinks: Vec<(String, XdpMode)>,
    pub cgroup: Option<std::path::PathBuf>,
    pub netns_cookie: u64,
    /// The VXLAN device of overlay networks, and the MTU that fits inside it (a node in a
    /// cluster).
    pub overlay: Option<OverlayDevice>,
}

/// This node's VXLAN device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayDevice {
    pub name: String,
    pub ifindex: u32,
    /// The MTU of overlay endpoints' interfaces: the underlay's less the encapsulation.
    pub mtu: u32,
    /// This node's underlay address (IPv4 or IPv6): the outer source, and the family of
    /// every tunnel.
    pub underlay: std::net::IpAddr,
}

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    pub fn new(state: State, dp: D, net: L, store: S, host: HostHooks) -> Self {
        Agent {
            state,
            dp,
            net,
            store,
            links: HashMap::new(),
            host,
            files: NetnsFiles::default(),
            repairs: 0,
            slots: Slots::default(),
            resolv: std::sync::Arc::new(crate::dns::upstream::HostResolv::new(
                "/etc/resolv.conf",
                Vec::new(),
            )),
            dns_fast_path: true,
            started: std::time::SystemTime::now(),
            overlay_written: None,
            cluster_problems: Vec::new(),
            last_reconcile: None,
            last_repair: None,
            reserved: None,
            identities: Default::default(),
            block_identities: crate::model::identity::Identities::starting_at(
                netpath_common::identity::FIRST_OF_CIDRS,
            ),
            policy_written: None,
        }
    }

    /// Where hosts files go (tests).
    pub fn with_netns_files(mut self, files: NetnsFiles) -> Self {
        self.files = files;
        self
    }

    /// Uses `resolv` for endpoints' resolv.conf files, and answers DNS in the kernel when
    /// `fast_path`.
    pub fn with_dns(
        mut self,
        resolv: std::sync::Arc<crate::dns::upstream::HostResolv>,
        fast_path: bool,
    ) -> Self {
        self.resolv = resolv;
        self.dns_fast_path = fast_path;
        self
    }

    pub fn state(&self) -> &State {
        &self.state
    }
}

/// Name of the port-less bridge that carries the networks' gateway addresses.
pub const GATEWAY_LINK: &str = "netpath0";
/// The VXLAN device of overlay networks (a node in a cluster).
pub const VXLAN_LINK: &str = "netpath-vxlan";

/// The agent as `netpath agent` runs it: the real datapath, netlink and state file.
pub type LiveAgent = Agent<crate::datapath::Datapath, crate::netlink::Netlink, StateFile>;
