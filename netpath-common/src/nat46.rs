//! NAT46 of published ports: the values of `NAT46` (by the IPv6 client's 5-tuple) and
//! `NAT46_REPLY` (by the IPv4 reply's), keyed by [`crate::FlowKey`] (kernel: `nat46.rs`).
//!
//! An IPv6 client of a port published on IPv6 whose endpoint has IPv4 alone reaches it
//! translated to IPv4, its source the endpoint network's gateway and a port of outbound NAT's
//! range (what docker-proxy's connection looks like to the container), so each client flow has
//! a 5-tuple of its own on the IPv4 side.
use crate::{In6, ReplyMacs};

/// Value of `NAT46`: the IPv4 source an IPv6 client's flow is given.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Nat46 {
    /// The endpoint network's gateway, network order.
    pub addr: u32,
    /// The port of outbound NAT's range given to the flow, network order.
    pub port: u16,
    /// The [`crate::recent`] generation the flow was last marked seen in, as a published
    /// flow's (`FlowNat::recent`).
    pub recent: u8,
    pub _pad: u8,
    /// The endpoint's host-side veth: a flow recorded for another endpoint (the port was
    /// published anew) is not this one.
    pub ifindex: u32,
    /// [`crate::flow_flags`].
    pub flags: u32,
    /// `bpf_ktime_get_coarse_ns` of the last packet from the client.
    pub last_seen: u64,
}

/// Value of `NAT46_REPLY`: what a reply from the endpoint (to the gateway and the flow's port)
/// is translated back to, and where it is sent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Nat46Reply {
    /// The IPv6 client and its port, network order.
    pub client: In6,
    /// The host address and port it connected to (the replies' source), network order.
    pub addr: In6,
    pub client_port: u16,
    pub port: u16,
    /// The endpoint's host-side veth (replies from elsewhere are not this flow's).
    pub ifindex: u32,
    /// [`crate::flow_flags`].
    pub flags: u32,
    /// The uplink the client's packets arrive on, and the replies' MACs there.
    pub via: u32,
    pub via_macs: ReplyMacs,
    /// The kernel's jiffies when a reply last refreshed `last_seen`, as
    /// [`crate::FlowNat::stamp`].
    pub stamp: u32,
    /// `bpf_ktime_get_coarse_ns` of the last reply.
    pub last_seen: u64,
}

crate::layout!(Nat46, 24, addr @ 0, port @ 4, recent @ 6, _pad @ 7, ifindex @ 8, flags @ 12, last_seen @ 16);
crate::layout!(Nat46Reply, 72, client @ 0, addr @ 16, client_port @ 32, port @ 34, ifindex @ 36, flags @ 40, via @ 44, via_macs @ 48, stamp @ 60, last_seen @ 64);
crate::pod!(Nat46, Nat46Reply);
