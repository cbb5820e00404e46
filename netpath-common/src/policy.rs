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

/// Reserved identities: what the policy maps key peers by when they are not endpoints.
/// Endpoints' identities (a number per set of labels and namespace) start at
/// [`identity::FIRST_OF_ENDPOINTS`]; the prefixes of ipBlock rules at [`identity::FIRST_OF_CIDRS`].
pub mod identity {
    /// In a policy key's peer: any peer at all (a rule with no `from`/`to`).
    pub const ANY: u32 = 0;
    /// The host itself: its traffic with its endpoints is always allowed.
    pub const HOST: u32 = 1;
    /// An address no endpoint has and no ipBlock names.
    pub const WORLD: u32 = 2;
    pub const FIRST_OF_ENDPOINTS: u32 = 256;
    pub const FIRST_OF_CIDRS: u32 = 1 << 24;
}

/// Values of `POLICY_CT`: a connection is remembered both ways, so a packet of it, either
/// way, passes on one lookup; the value says which way its first packet went (the way the
/// agent judges it by when policies change).
pub mod tracked {
    /// The key is the connection as its first packet went.
    pub const AS_SENT: u32 = 1;
    /// The key is the way its replies go.
    pub const REPLY: u32 = 2;
}

/// Directions of a policy, and the flags of [`AddrIdentity::selected`] (which directions
/// select an identity: once selected, only what a rule allows passes that way).
pub mod direction {
    pub const INGRESS: u8 = 1;
    pub const EGRESS: u8 = 2;
}

/// Flags of `POLICY_ON[0]`: whether policy is enforced at all, and which of the maps that
/// only some policies need hold anything (an empty one is not looked up).
pub mod policy_on {
    /// Some policy is in force: new flows are asked.
    pub const ENFORCED: u32 = 1;
    /// `POLICY_RANGES` holds rules (ports by block, whole protocols, every port).
    pub const RANGES: u32 = 2;
    /// `IPCACHE_PREFIXES` holds prefixes (ipBlock rules).
    pub const PREFIXES: u32 = 4;
    /// The published ports' firewall holds prefixes: every flow from an uplink is checked on
    /// its first packet, so published flows are kept from it. Not a policy: the policy's
    /// verdicts read `POLICY_ON` without it.
    pub const FIREWALL: u32 = 8;
}

/// Value of `IPCACHE` (an address's identity, exact match): the identity, and the
/// [`direction`]s policies select it in (only endpoints' identities are ever selected, and
/// an endpoint's address is always exact), so one lookup answers both.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AddrIdentity {
    pub identity: u32,
    pub selected: u32,
}

impl AddrIdentity {
    /// An address no endpoint has and no ipBlock names.
    pub const WORLD: AddrIdentity = AddrIdentity {
        identity: identity::WORLD,
        selected: 0,
    };

    /// Whether policies select this identity in direction `dir`.
    #[inline(always)]
    pub const fn selected_in(&self, dir: u8) -> bool {
        self.selected & dir as u32 != 0
    }
}

crate::layout!(AddrIdentity, 8, identity @ 0, selected @ 4);
crate::pod!(AddrIdentity);

/// Key of `POLICY` (a hash: rules for one port) and of `POLICY_RANGES` (an LPM trie: rules
/// for a block of ports, a whole protocol or every port): a rule allowing `subject` to be reached by (ingress) or to
/// reach (egress) `peer`, on a protocol and a block of ports. Bytes in the order the trie
/// matches them, most significant first: direction, subject, peer (exact, [`identity::ANY`]
/// standing for every peer), protocol (its prefix absent: every protocol), port (network
/// order; a prefix of it: a power-of-two block of ports).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PolicyKey {
    pub bytes: [u8; 12],
}

impl PolicyKey {
    /// Prefix bits that match every protocol and port.
    pub const ALL_PORTS: u32 = 72;
    /// Prefix bits that match one protocol, every port.
    pub const PROTOCOL: u32 = 80;
    /// Prefix bits of one port.
    pub const PORT: u32 = 96;

    /// `port` host order.
    #[inline(always)]
    pub const fn new(dir: u8, subject: u32, peer: u32, proto: u8, port: u16) -> Self {
        let s = subject.to_be_bytes();
        let p = peer.to_be_bytes();
        let n = port.to_be_bytes();
        PolicyKey {
            bytes: [
                dir, s[0], s[1], s[2], s[3], p[0], p[1], p[2], p[3], proto, n[0], n[1],
            ],
        }
    }
}

crate::layout!(PolicyKey, 12, bytes @ 0);
crate::pod!(PolicyKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_key_is_its_fields_most_significant_first() {
        let k = PolicyKey::new(direction::EGRESS, 0x0102_0304, 0x0a0b_0c0d, 6, 8080);
        assert_eq!(k.bytes, [2, 1, 2, 3, 4, 10, 11, 12, 13, 6, 0x1f, 0x90]);
    }
}
