//! Address families as a type: the maps' keys and values are generic over the address they
//! carry, so the IPv6 datapath reuses every shared shape and decision that IPv4 has. `u32` is
//! an IPv4 address and [`In6`] an IPv6 one, both in network byte order as the packet holds
//! them; every generic type defaults to IPv4.

/// An address the maps store: IPv4 (`u32`) or IPv6 ([`In6`]), network order, with no
/// padding of its own (so keys hash the same in the kernel and in userspace).
pub trait Addr: Copy + Eq + Default + core::hash::Hash + core::fmt::Debug + 'static {
    /// The unspecified address (`0.0.0.0`, `::`): "every host address" in a published port.
    const ANY: Self;
    /// Bits in the address (an LPM trie's longest prefix).
    const BITS: u32;
    /// Explicit padding that takes the address up to a multiple of 8 bytes, for values
    /// with a `u64` after one address (no hidden padding in either family).
    type Pad: Copy + Eq + Default + core::hash::Hash + core::fmt::Debug + 'static;
    /// The family's entry in maps of one entry per family: 0 IPv4, 1 IPv6.
    const FAMILY: u32;
    /// `h` with the address's 32-bit words mixed in ([`mix`] each): the hash of
    /// [`crate::FlowKey::recent_slot`].
    fn mix(&self, h: u64) -> u64;
    /// The block of [`crate::no_subnet`] the address is in (below `no_subnet::BLOCKS`).
    fn block(&self) -> u32;
    /// The blocks the subnet of this address and `prefix` overlaps; `None`: too many to
    /// name (every block, then).
    fn blocks(&self, prefix: u32) -> Option<core::ops::Range<u32>>;
}

/// 2^64 over the golden ratio, odd: the multiplier of [`mix`].
pub const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// `h` with the 32-bit word `w` mixed in: a multiply, whose top bits depend on every bit
/// below, then those top bits folded down again for the next word. A hash so made takes its
/// top bits after one more fold and multiply ([`crate::FlowKey::recent_slot`]): without it,
/// clients of consecutive addresses fill a third of the slots they would at random.
#[inline(always)]
pub const fn mix(h: u64, w: u32) -> u64 {
    let h = (h ^ w as u64).wrapping_mul(GOLDEN);
    h ^ (h >> 29)
}

impl Addr for u32 {
    const ANY: Self = 0;
    const BITS: u32 = 32;
    const FAMILY: u32 = 0;
    type Pad = u32;
    #[inline(always)]
    fn mix(&self, h: u64) -> u64 {
        mix(h, *self)
    }
    /// Its /16: the top 16 bits.
    #[inline(always)]
    fn block(&self) -> u32 {
        u32::from_be(*self) >> 16
    }
    fn blocks(&self, prefix: u32) -> Option<core::ops::Range<u32>> {
        let wide = 16u32.saturating_sub(prefix);
        let first = (self.block() >> wide) << wide;
        Some(first..first + (1 << wide))
    }
}

/// An IPv6 address in network order, as four 32-bit words (word compares, 4-byte alignment:
/// the same layout rules as IPv4's `u32`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct In6 {
    pub words: [u32; 4],
}

impl In6 {
    /// The address of 16 bytes in network order.
    #[inline(always)]
    pub const fn from_octets(o: [u8; 16]) -> Self {
        let mut words = [0u32; 4];
        let mut i = 0;
        while i < 4 {
            words[i] = u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]);
            i += 1;
        }
        In6 { words }
    }

    /// The 16 bytes in network order.
    #[inline(always)]
    pub const fn octets(&self) -> [u8; 16] {
        let mut o = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            let b = self.words[i].to_ne_bytes();
            o[4 * i] = b[0];
            o[4 * i + 1] = b[1];
            o[4 * i + 2] = b[2];
            o[4 * i + 3] = b[3];
            i += 1;
        }
        o
    }

    /// IPv4 address `v4` (network order) mapped into IPv6 (`::ffff:a.b.c.d`).
    #[inline(always)]
    pub const fn mapped(v4: u32) -> Self {
        In6 {
            words: [0, 0, 0xffffu32.to_be(), v4],
        }
    }

    /// The IPv4 address an IPv4-mapped one (`::ffff:a.b.c.d`) holds, network order: what a
    /// dual-stack socket uses for IPv4, and an IPv6 port's target that is reached by NAT46.
    #[inline(always)]
    pub const fn mapped_v4(&self) -> Option<u32> {
        let w = self.words;
        if w[0] == 0 && w[1] == 0 && w[2] == 0xffffu32.to_be() {
            Some(w[3])
        } else {
            None
        }
    }
}

crate::pod!(In6);

impl Addr for In6 {
    const ANY: Self = In6 { words: [0; 4] };
    const BITS: u32 = 128;
    const FAMILY: u32 = 1;
    type Pad = [u32; 0];
    #[inline(always)]
    fn mix(&self, h: u64) -> u64 {
        let w = self.words;
        mix(mix(mix(mix(h, w[0]), w[1]), w[2]), w[3])
    }
    /// Its /48, hashed to 16 bits (a multiply's top bits).
    #[inline(always)]
    fn block(&self) -> u32 {
        let top = (u64::from(u32::from_be(self.words[0])) << 16)
            | u64::from(u32::from_be(self.words[1]) >> 16);
        (top.wrapping_mul(GOLDEN) >> 48) as u32
    }
    fn blocks(&self, prefix: u32) -> Option<core::ops::Range<u32>> {
        (prefix >= 48).then(|| self.block()..self.block() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in6_keeps_network_order() {
        let o = [0xfd, 0, 0, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let a = In6::from_octets(o);
        assert_eq!(a.octets(), o);
        assert_eq!(u32::from_be(a.words[0]), 0xfd00_0030);
        assert_eq!(u32::from_be(a.words[3]), 2);
        assert_eq!(In6::ANY.octets(), [0; 16]);
    }

    #[test]
    fn a_subnets_blocks_are_the_blocks_of_its_addresses() {
        let v4 = |a: [u8; 4]| u32::from_ne_bytes(a);
        assert_eq!(v4([172, 17, 9, 1]).block(), 0xac11);
        assert_eq!(v4([172, 17, 0, 0]).blocks(24), Some(0xac11..0xac12));
        assert_eq!(v4([10, 0, 0, 0]).blocks(8), Some(0x0a00..0x0b00));
        assert_eq!(v4([172, 16, 0, 0]).blocks(12), Some(0xac10..0xac20));
        assert_eq!(v4([0, 0, 0, 0]).blocks(0), Some(0..1 << 16));
        let v6 = |s: &str| In6::from_octets(s.parse::<std::net::Ipv6Addr>().unwrap().octets());
        let net = v6("fd00:30:1::");
        assert_eq!(v6("fd00:30:1:0:2::7").block(), net.block());
        assert_eq!(v6("fd00:30:1:ffff::1").block(), net.block());
        assert_eq!(net.blocks(64), Some(net.block()..net.block() + 1));
        assert_eq!(net.blocks(48), Some(net.block()..net.block() + 1));
        assert_eq!(net.blocks(40), None, "wider than a block");
        assert!(v6("fd00:30:2::1").block() < 1 << 16);
        // Neighbouring /48s land in different blocks.
        let blocks: std::collections::HashSet<u32> = (0..64u16)
            .map(|i| v6(&std::format!("fd00:30:{i:x}::1")).block())
            .collect();
        assert!(blocks.len() > 60, "{}", blocks.len());
    }

    #[test]
    fn mapped_v4_inverts_mapped() {
        let v4 = u32::from_ne_bytes([10, 0, 0, 2]);
        let m = In6::mapped(v4);
        assert_eq!(m.octets()[10..], [0xff, 0xff, 10, 0, 0, 2]);
        assert_eq!(m.mapped_v4(), Some(v4));
        assert_eq!(In6::ANY.mapped_v4(), None);
    }
}
