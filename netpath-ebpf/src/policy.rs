//! Where who-may-reach-what is decided: one verdict on a flow, asked by every path before it
//! lets a new flow through (`admit`) — the uplink's DNAT of a published port (XDP and TC, in
//! `ports::dnat_via`, before the flow is recorded), hairpin (the same), endpoint to endpoint
//! (`forward::route`), to and from another node (`forward::route` before encapsulation,
//! `overlay::deliver` after decapsulation) and outbound source NAT (`snat::outbound`, before
//! a port is allocated).
//!
//! `admit` allows every flow today: it is the seam network policy plugs into, so that it lands
//! once, for every path and both address families. The NAT paths ask on a flow's first packet
//! only (later packets and the replies find the flow recorded); forwarding keeps no flow state
//! and asks on every packet.
//!
//! The published ports' firewall (`published_from`) is asked first by the uplink's DNAT, on a
//! new flow only: a host-wide allow-list of client prefixes (`--published-from`).
use aya_ebpf::maps::lpm_trie::Key;
use netpath_common::{published_from, Addr, Counter};

use crate::{maps::PUBLISHED_FROM, parse::Flow};

/// Not an endpoint of this node: the outside, the host, or an endpoint on another node —
/// known to the policy by the flow's address only.
pub const ELSEWHERE: u32 = 0;

/// The published ports' firewall: may a new flow from `src` (network order), arriving on an
/// uplink, reach a published port? Asked before the flow is translated, on XDP and TC alike;
/// the longest prefix of `PUBLISHED_FROM` decides, an empty trie letting everyone through.
#[inline(always)]
pub fn published_from(src: u32) -> Result<(), Counter> {
    match PUBLISHED_FROM.get(&Key::new(32, src)) {
        Some(&published_from::DENY) => Err(Counter::DropFirewall),
        _ => Ok(()),
    }
}

/// May `flow` go from `from` to `to`? Each side is an endpoint of this node, by the ifindex of
/// its host-side veth (the key its policy will be found by), or [`ELSEWHERE`]. `Err(reason)`:
/// the flow is dropped, counted and reported with `reason`.
#[inline(always)]
pub fn admit<A: Addr>(flow: &Flow<A>, from: u32, to: u32) -> Result<(), Counter> {
    let _ = (flow, from, to); // no policy yet: every flow is allowed
    Ok(())
}
