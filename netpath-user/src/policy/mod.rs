//! Who may reach what (kernel: `policy.rs`): the published ports' firewall, a host-wide
//! allow-list of client prefixes checked before DNAT; network policy, compiled into the
//! kernel's identities and rules.
mod compile;
mod compiled;
mod firewall;
mod manifest;
pub mod select;
pub mod spec;

pub use compile::{blocks, compile, Member, NamedPort};
pub use compiled::{port_blocks, Compiled};
pub use firewall::{parse_prefix, Prefix, PublishedFrom};
#[cfg(test)]
mod tests;
pub use manifest::{parse as parse_manifests, Manifest, ManifestError, DEFAULT_NAMESPACE};
