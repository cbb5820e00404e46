//! Who may reach what: the values of the policy maps (kernel: `policy.rs`).

/// Values of `PUBLISHED_FROM`, the published ports' firewall. While an allow-list is in force
/// the trie holds each of its prefixes as [`published_from::ALLOW`] and the whole address
/// space (`/0`) as [`published_from::DENY`], so the longest match decides in one lookup; with
/// no list the trie is empty and every source is let through, as Docker does.
pub mod published_from {
    /// A source inside the allow-list.
    pub const ALLOW: u8 = 1;
    /// Every other source, while a list is in force.
    pub const DENY: u8 = 0;
}
