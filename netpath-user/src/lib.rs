//! netpath's userspace: the node agent, its API, the CLI, and the model behind them.
//!
//! | module | concern |
//! |---|---|
//! | [`model`] | desired state, requests, planning (validation without side effects) |
//! | [`ports`] | Docker `-p` specs and port mappings |
//! | [`ipam`] | subnets, addresses, MACs |
//! | [`datapath`] | the kernel programs and maps, one module per kernel concern |
//! | [`netlink`] | veths, addresses, routes in the agent's and endpoints' namespaces |
//! | [`dns`] | names: the DNS server on the gateways, forwarding, the kernel fast path's names |
//! | [`agent`] | the node agent: transactions, reconcile, background tasks, host set-up |
//! | [`api`] | the HTTP API: routes, views, server, typed client |
//! | [`cli`] | the `netpath` command line |
//! | `testing` | (feature `testing`) namespaces, frames, agents for tests and the benchmark |
pub mod agent;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod cni;
pub mod datapath;
pub mod dns;
pub mod docker;
pub mod ipam;
pub mod model;
pub mod netlink;
pub mod ports;
#[cfg(feature = "testing")]
pub mod testing;
