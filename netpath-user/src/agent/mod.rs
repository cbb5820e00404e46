//! The node agent: owns the datapath and the desired state, serves the API.
//!
//! | module | concern |
//! |---|---|
//! | `run` | [`run`]: start-up order, serving, shutdown |
//! | [`config`] | [`AgentConfig`]: flags, the configuration file, defaults |
//! | [`transactions`] | [`Agent`] and every request on endpoints and networks |
//! | `publish`, `attach` | published ports; an attachment's steps |
//! | [`labels`] | labels the agent keeps: engines' names for their objects |
//! | [`memory`] | the allocator told to keep few arenas and give freed memory back |
//! | [`journal`] | each step's undo, played back on failure; what runs after the commit |
//! | [`reconcile`] | making the kernel match the desired state at start |
//! | [`repair`] | drift while running: namespaces gone, veths deleted, programs lost |
//! | [`service`] | the API's queries and the glue to [`crate::api::Service`] |
//! | [`monitor`] | `netpath monitor`: the kernel's events to subscribers |
//! | [`health`] | `netpath status`: hooks, programs, maps, reconcile and repairs |
//! | [`metrics`] | Prometheus metrics and `/healthz` on `--metrics ADDR:PORT` |
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
pub use transactions::{Agent, HostHooks};

/// Name of the port-less bridge that carries the networks' gateway addresses.
pub const GATEWAY_LINK: &str = "netpath0";
/// The VXLAN device of overlay networks (a node in a cluster).
pub const VXLAN_LINK: &str = "netpath-vxlan";

/// The agent as `netpath agent` runs it: the real datapath, netlink and state file.
pub type LiveAgent = Agent<crate::datapath::Datapath, crate::netlink::Netlink, StateFile>;
