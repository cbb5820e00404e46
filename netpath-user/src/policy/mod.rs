//! Who may reach what (kernel: `policy.rs`): the published ports' firewall, a host-wide
//! allow-list of client prefixes checked before DNAT; network policy, compiled into the
//! kernel's identities and rules.
mod compiled;
mod firewall;

pub use compiled::{port_blocks, Compiled};
pub use firewall::{parse_prefix, PublishedFrom};
