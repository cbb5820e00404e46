//! An address family as IPAM and the datapath see it: its addresses as integers (for masks,
//! ranges and allocation) and in the kernel's form (network order, [`netpath_common::Addr`]).
//! IPv4 and IPv6 differ only in what this trait says; everything built on it is written once.
use std::{
    fmt,
    hash::Hash,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use netpath_common::In6;

/// `Ipv4Addr` or `Ipv6Addr`.
pub trait Family:
    Copy
    + Eq
    + Ord
    + Hash
    + fmt::Display
    + fmt::Debug
    + FromStr
    + Into<IpAddr>
    + serde::Serialize
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Address length in bits: the longest prefix.
    const BITS: u8;
    /// Whether a subnet's last address is its broadcast, no host's (IPv4; IPv6 has none).
    const BROADCAST: bool;
    /// How an address is written, for errors (`A.B.C.D`).
    const FORM: &'static str;
    /// The address in the kernel's maps.
    type Kernel: netpath_common::Addr;

    fn to_bits(self) -> u128;
    fn from_bits(bits: u128) -> Self;
    /// The address as the maps hold it: network order.
    fn to_kernel(self) -> Self::Kernel;
    fn from_kernel(k: Self::Kernel) -> Self;
}

impl Family for Ipv4Addr {
    const BITS: u8 = 32;
    const BROADCAST: bool = true;
    const FORM: &'static str = "A.B.C.D";
    type Kernel = u32;

    fn to_bits(self) -> u128 {
        u128::from(u32::from(self))
    }
    fn from_bits(bits: u128) -> Self {
        Ipv4Addr::from(bits as u32)
    }
    fn to_kernel(self) -> u32 {
        u32::from_ne_bytes(self.octets())
    }
    fn from_kernel(k: u32) -> Self {
        Ipv4Addr::from(k.to_ne_bytes())
    }
}

impl Family for Ipv6Addr {
    const BITS: u8 = 128;
    const BROADCAST: bool = false;
    const FORM: &'static str = "X:X::X";
    type Kernel = In6;

    fn to_bits(self) -> u128 {
        u128::from(self)
    }
    fn from_bits(bits: u128) -> Self {
        Ipv6Addr::from(bits)
    }
    fn to_kernel(self) -> In6 {
        In6::from_octets(self.octets())
    }
    fn from_kernel(k: In6) -> Self {
        Ipv6Addr::from(k.octets())
    }
}

/// The mask of a prefix of `prefix` bits in a family of `bits`, as an integer.
pub(super) fn mask(bits: u8, prefix: u8) -> u128 {
    let all = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    all & !all.checked_shr(u32::from(prefix)).unwrap_or(0)
}
