//! Types shared by the kernel programs (`netpath-ebpf`) and the agent (`netpath-user`), one
//! module per concern of the kernel crate (`ports`, `flows`, `endpoint`, `forward`, `overlay`,
//! `snat`, `nat46`, `hostgw`, `sock`, `stats`, `dns`, `maps`), each re-exported here.
//!
//! Every map key and value is `#[repr(C)]` with explicit padding fields, so that a key built
//! in userspace hashes to the same bytes as one built in the kernel; each module asserts the
//! layout of its types at compile time, so a field added without its padding fails the build.
//! Addresses and ports are stored in **network byte order** everywhere (keys and values
//! alike); the field docs repeat it. Types that carry an address are generic over its family
//! ([`Addr`]: `u32` for IPv4, the default, and [`In6`]). With feature `user`, each type
//! implements `aya::Pod` so it can go through aya's typed maps.
#![no_std]
#[cfg(test)]
extern crate std;

/// Asserts a map type's size and field offsets at compile time: both sides (and the bytes
/// the kernel hashes) depend on them.
macro_rules! layout {
    ($t:ty, $size:expr, $($field:ident @ $off:expr),*) => {
        const _: () = assert!(core::mem::size_of::<$t>() == $size);
        $(const _: () = assert!(core::mem::offset_of!($t, $field) == $off);)*
    };
}

/// Lets aya's typed maps carry these types (feature `user`).
macro_rules! pod {
    ($($t:ident $(<$a:ident>)?),* $(,)?) => {
        $(
            #[cfg(feature = "user")]
            // SAFETY: #[repr(C)] plain-old-data with explicit padding fields, its layout
            // asserted by `layout!` for every address family.
            unsafe impl$(<$a: $crate::Addr>)? aya::Pod for $t$(<$a>)? {}
        )*
    };
}

pub(crate) use layout;
pub(crate) use pod;

mod addr;
mod bench;
mod dns;
mod endpoint;
mod flows;
mod forward;
mod frag;
mod hostgw;
mod maps;
mod nat46;
mod overlay;
mod policy;
mod ports;
pub mod recent;
mod snat;
mod sock;
mod stats;

pub use addr::{Addr, In6};
pub use bench::{gen_vary, GenConfig, GEN_TEMPLATE_LEN};
pub use dns::{DnsAddrs, DnsKey, DNS_ADDRS, DNS_NAME_LEN, DNS_PORT, DNS_TTL};
pub use endpoint::{EndpointInfo, PeerInfo};
pub use flows::{
    flow_flags, FlowKey, FlowNat, NewFlowRate, ReplyMacs, FLOW_REFRESH_NS, NEW_FLOWS_PER_CPU,
    NEW_FLOW_BURST_NS, STAMP_JIFFIES,
};
pub use forward::{net_flags, no_subnet, MemberKey, NetworkInfo};
pub use frag::FragKey;
pub use hostgw::LoopbackKey;
pub use maps::{map_names, map_sizes, tail};
pub use nat46::{Nat46, Nat46Reply};
pub use overlay::{
    OverlayNet, RemoteEndpoint, Underlay, VXLAN6_OVERHEAD, VXLAN_OVERHEAD, VXLAN_PORT,
};
pub use policy::{
    direction, identity, policy_on, published_from, tracked, AddrIdentity, PolicyKey,
};
pub use ports::{
    port_any_index, port_any_key, PortKey, PortReply, PortSlot, PortTarget, PORTS_ANY_LEN,
};
pub use snat::{snat_flags, SnatNat, SnatRev, SNAT_PORTS, SNAT_PORT_MIN};
pub use sock::{SockRevKey, SockRevKey6, SockRevNat};
pub use stats::{event, monitor, Counter, Event, PortStats};

/// IP protocol numbers netpath translates.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}
