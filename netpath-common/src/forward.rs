//! Networks: the values of `NETWORKS` and the keys of `MEMBERS`, what forwarding between
//! endpoints decides on (kernel: `forward.rs`).
use crate::Addr;

/// Network flags.
pub mod net_flags {
    /// `--internal`: nothing leaves the network.
    pub const INTERNAL: u32 = 1;
    /// `--opt icc=false`: endpoints of the network cannot reach each other.
    pub const NO_ICC: u32 = 2;
    /// `--driver overlay`: the network spans nodes (`OVERLAY_NETS` has its VNI).
    pub const OVERLAY: u32 = 4;
    /// `-o masquerade=false` (Docker's `enable_ip_masquerade=false`, `gateway_mode_ipv4=routed`):
    /// endpoints' traffic leaves with their own addresses, and uplinks let traffic routed at
    /// the network's addresses through.
    pub const ROUTED: u32 = 8;
}

/// The blocks of the address space no network's subnet overlaps (`NO_SUBNET`, an entry per
/// family, [`Addr::FAMILY`]): a bit per block ([`Addr::block`]: an IPv4 /16; an IPv6 /48,
/// hashed to 16 bits), set when the agent knows no subnet overlaps it. A packet to an address
/// of such a block is in no network, and the subnets' trie is not asked (an LPM walk, a
/// helper call: a sixth of what the host's own packets cost on an uplink). A bit clear only
/// means "ask the trie": blocks that share a hash, a subnet wider than a block (an IPv6
/// subnet shorter than /48 clears every bit) and an entry never written (all zero) cost a
/// look, never a wrong answer. So the agent clears a subnet's bits before the trie holds it,
/// and sets them again only once it is gone.
pub mod no_subnet {
    use crate::Addr;

    /// Blocks per family, a bit each.
    pub const BLOCKS: u32 = 1 << 16;
    /// An entry: the blocks' bits, 64 to a word.
    pub type Blocks = [u64; (BLOCKS / 64) as usize];

    /// Whether `blocks` says no subnet overlaps the block of `addr`.
    #[inline(always)]
    pub fn holds<A: Addr>(blocks: &Blocks, addr: A) -> bool {
        let b = addr.block();
        blocks
            .get((b / 64) as usize)
            .is_some_and(|w| (w >> (b % 64)) & 1 != 0)
    }

    /// The entry for a family whose networks have `subnets` (address, prefix length): every
    /// block's bit set but theirs.
    pub fn entry<A: Addr>(subnets: impl IntoIterator<Item = (A, u32)>) -> Blocks {
        let mut blocks = [u64::MAX; (BLOCKS / 64) as usize];
        for (addr, prefix) in subnets {
            for b in addr.blocks(prefix).unwrap_or(0..BLOCKS) {
                blocks[(b / 64) as usize] &= !(1 << (b % 64));
            }
        }
        blocks
    }
}

/// Value of `NETWORKS`: a network's subnet of one address family, and what it allows.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NetworkInfo<A: Addr = u32> {
    /// Subnet address, network order.
    pub subnet: A,
    /// Subnet mask, network order.
    pub mask: A,
    /// Gateway (a host address), network order.
    pub gateway: A,
    /// [`net_flags`].
    pub flags: u32,
    /// Number of `MEMBERS` slots in use (0..members).
    pub members: u32,
    /// The host-gateway address (host.docker.internal), network order: the host.
    pub host_gateway: A,
}

impl NetworkInfo<u32> {
    /// The subnet's broadcast address, network order (IPv4 only: IPv6 has none).
    #[inline(always)]
    pub fn broadcast(&self) -> u32 {
        self.subnet | !self.mask
    }
}

/// Key of `MEMBERS`: slot `slot` of network `network`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MemberKey {
    pub network: u32,
    pub slot: u32,
}

#[cfg(test)]
mod tests {
    use super::no_subnet::{entry, holds};
    use crate::In6;

    #[test]
    fn no_subnet_holds_outside_every_subnet_alone() {
        let v4 = |a: [u8; 4]| u32::from_ne_bytes(a);
        let blocks = entry([(v4([172, 17, 0, 0]), 16), (v4([10, 0, 0, 0]), 8)]);
        assert!(!holds(&blocks, v4([172, 17, 3, 4])));
        assert!(!holds(&blocks, v4([10, 200, 3, 4])));
        assert!(holds(&blocks, v4([172, 18, 0, 1])));
        assert!(holds(&blocks, v4([192, 168, 1, 10])));
        assert!(holds(&blocks, v4([11, 0, 0, 1])));
        // A /28 asks the trie for its whole /16.
        let blocks = entry([(v4([192, 168, 7, 16]), 28)]);
        assert!(!holds(&blocks, v4([192, 168, 1, 10])));
        // None: every block holds.
        assert!(holds(&entry::<u32>([]), v4([172, 17, 0, 2])));
        let v6 = |s: &str| In6::from_octets(s.parse::<std::net::Ipv6Addr>().unwrap().octets());
        let blocks = entry([(v6("fd00:30::"), 64)]);
        assert!(!holds(&blocks, v6("fd00:30::2")));
        assert!(holds(&blocks, v6("2001:db8:77::1")));
        // Wider than a block: no block holds.
        let blocks = entry([(v6("fd00::"), 32)]);
        assert!(!holds(&blocks, v6("2001:db8:77::1")));
    }
}

crate::layout!(NetworkInfo, 24, subnet @ 0, mask @ 4, gateway @ 8, flags @ 12, members @ 16, host_gateway @ 20);
crate::layout!(NetworkInfo<crate::In6>, 72, subnet @ 0, mask @ 16, gateway @ 32, flags @ 48, members @ 52, host_gateway @ 56);
crate::layout!(MemberKey, 8, network @ 0, slot @ 4);
crate::pod!(NetworkInfo<A>, MemberKey);
