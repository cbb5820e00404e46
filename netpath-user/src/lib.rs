//! netpath's userspace: the node agent, its API, and the model behind the CLI.
//!
//! | module | concern |
//! |---|---|
//! | [`ports`] | Docker `-p` specs and port mappings |
//! | [`ipam`] | subnets, addresses, MACs |
//! | [`model`] | desired state, request planning (validation without side effects) |
//! | [`datapath`] | loading, attaching, typed map access |
//! | [`netlink`] | veths, addresses, routes in the agent's and endpoints' namespaces |
//! | [`agent`] | the node agent and its HTTP API server |
//! | [`api`] | API paths and bodies |
//! | [`client`] | API client used by the CLI |
//! | [`testing`] | namespaces, frames and checksums for tests and the benchmark |
pub mod agent;
pub mod api;
pub mod client;
pub mod datapath;
pub mod ipam;
pub mod model;
pub mod netlink;
pub mod ports;
pub mod testing;
