//! Who may reach what (kernel: `policy.rs`): the published ports' firewall, a host-wide
//! allow-list of client prefixes checked before DNAT.
mod firewall;

pub use firewall::{parse_prefix, PublishedFrom};
