//! netpath's userspace: the node agent, its API, the CLI, and the model behind them.
//!
//! | module | concern |
//! |---|---|
//! | [`model`] | desired state, requests, planning (validation without side effects) |
//! | [`ports`] | Docker `-p` specs and port mappings |
//! | [`ipam`] | subnets, addresses, MACs |
//! | [`datapath`] | the kernel programs and maps, one module per kernel concern |
//! | [`netlink`] | veths, addresses, routes in the agent's and endpoints' namespaces |
//! | [`policy`] | who may reach what: the published ports' firewall |
//! | [`dns`] | names: the DNS server on the gateways, forwarding, the kernel fast path's names |
//! | [`error`] | the core's errors ([`error::AgentError`]) by kind, for each transport to say its way |
//! | [`agent`] | the node agent: transactions, reconcile, background tasks, host set-up |
//! | [`api`] | the HTTP API: routes, views, server, typed client |
//! | [`cli`] | the `netpath` command line |
//! | [`version`] | what this build is: version, commit, the kernel programs' hash |
//! | `testing` | (feature `testing`) namespaces, frames, agents for tests and the benchmark |
pub mod agent;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod cni;
pub mod datapath;
pub mod dns;
pub mod docker;
pub mod error;
#[cfg(any(test, feature = "testing"))]
pub mod faults;
pub mod ipam;
pub mod model;
pub mod netlink;
pub mod policy;
pub mod ports;
#[cfg(any(test, feature = "testing"))]
pub mod scratch;
#[cfg(feature = "testing")]
pub mod testing;
pub mod version;
