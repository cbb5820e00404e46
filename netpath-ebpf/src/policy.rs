//! Where who-may-reach-what is decided: one verdict on a flow, asked by every path before it
//! lets a new flow through (`admit`) — the uplink's DNAT of a published port (XDP and TC, in
//! `ports::dnat_via`, before the flow is recorded), hairpin (the same), endpoint to endpoint
//! (`forward::route`), to and from another node (`forward::route` before encapsulation,
//! `overlay::deliver` after decapsulation) and outbound source NAT (`snat::outbound`, before
//! a port is allocated).
//!
//! Today every flow is allowed: the function is the seam network policy and the published-port
//! firewall plug into, so that they land once, for every path and both address families. The
//! NAT paths ask on a flow's first packet only (later packets and the replies find the flow
//! recorded); forwarding keeps no flow state and asks on every packet.
use netpath_common::{Addr, Counter};

use crate::parse::Flow;

/// Not an endpoint of this node: the outside, the host, or an endpoint on another node —
/// known to the policy by the flow's address only.
pub const ELSEWHERE: u32 = 0;

/// May `flow` go from `from` to `to`? Each side is an endpoint of this node, by the ifindex of
/// its host-side veth (the key its policy will be found by), or [`ELSEWHERE`]. `Err(reason)`:
/// the flow is dropped, counted and reported with `reason`.
#[inline(always)]
pub fn admit<A: Addr>(flow: &Flow<A>, from: u32, to: u32) -> Result<(), Counter> {
    let _ = (flow, from, to); // no policy yet: every flow is allowed
    Ok(())
}
