//! The flow table: NAT state of published flows, so replies are translated back to the host
//! address and port the client used (two host ports on one container port stay apart). Each
//! flow carries when it was last seen, refreshed at most once a second (a write per second
//! per flow, not per packet), and whether TCP saw it close; the agent expires idle ones.
use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use netpath_common::{flow_flags, FlowKey, FlowNat, PortTarget, ReplyMacs, FLOW_REFRESH_NS};

use crate::{family::Ip, parse::Flow};

/// Now, for `last_seen` (CLOCK_MONOTONIC, coarse: a tick is plenty for idle timeouts).
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// Refreshes an entry's `last_seen` when it is stale (a write per second per flow, not per
/// packet: the entry's cache line stays put while both directions use it), and sets its
/// `closing_flag` when TCP said FIN/RST. The one bookkeeping of every flow table (published
/// flows here, outbound ones in `snat.rs`).
#[inline(always)]
pub fn touch(last_seen: &mut u64, flags: &mut u32, closing_flag: u32, now: u64, closing: bool) {
    if now.wrapping_sub(*last_seen) > FLOW_REFRESH_NS {
        *last_seen = now;
    }
    if closing && *flags & closing_flag == 0 {
        *flags |= closing_flag;
    }
}

/// Where the replies of a flow go without a route lookup: back out of the interface the
/// client's packets arrive on, to the neighbour they come from.
#[derive(Clone, Copy, Default)]
pub struct Via {
    pub ifindex: u32,
    pub macs: ReplyMacs,
}

/// A flow's entry as it is to be recorded: the key its replies are found under, and the
/// translation.
pub struct Translation<A: Ip> {
    key: FlowKey<A>,
    nat: FlowNat<A>,
}

/// The entry of `flow` (client → host address:port) sent to `target`, its source replaced by
/// `masq` when that is not ANY (self-hairpin), its replies sent along `via` (when its ifindex
/// is not 0).
#[inline(always)]
pub fn translation<A: Ip>(
    flow: &Flow<A>,
    target: &PortTarget<A>,
    masq: A,
    via: &Via,
) -> Translation<A> {
    let mut key = reply_key_of(flow, target);
    let mut client = A::ANY;
    if masq != A::ANY {
        key.dst_addr = masq;
        client = flow.src_addr;
    }
    let nat = FlowNat {
        addr: flow.dst_addr,
        port: flow.dst_port,
        _pad: 0,
        ifindex: target.ifindex,
        client,
        flags: 0,
        via: via.ifindex,
        last_seen: 0,
        via_macs: via.macs,
        _pad3: 0,
    };
    Translation { key, nat }
}

/// Whether the flow is recorded with this translation already; if so it is refreshed (and
/// marked closing when TCP said FIN/RST). The hot path: one lookup, a write only when the
/// entry is stale or closing.
#[inline(always)]
pub fn refresh<A: Ip>(t: &Translation<A>, closing: bool) -> bool {
    let Some(v) = A::flows().get_ptr_mut(&t.key) else {
        return false;
    };
    // SAFETY: map value pointer valid for this program run.
    let v = unsafe { &mut *v };
    if !v.same_translation(&t.nat) {
        return false;
    }
    touch_flow(v, closing);
    true
}

/// Records the flow (new, or translated differently than before), stamped now (in place:
/// a copy of IPv6's entry would not fit the stack).
#[inline(always)]
pub fn insert<A: Ip>(t: &mut Translation<A>, closing: bool) {
    t.nat.last_seen = now();
    t.nat.flags = if closing { flow_flags::CLOSING } else { 0 };
    // An LRU map makes room; a failed insert leaves the next packet to try again.
    let _ = A::flows().insert(&t.key, &t.nat, 0);
}

/// [`touch`] for a published flow.
#[inline(always)]
fn touch_flow<A: Ip>(v: &mut FlowNat<A>, closing: bool) {
    touch(
        &mut v.last_seen,
        &mut v.flags,
        flow_flags::CLOSING,
        now(),
        closing,
    );
}

/// The key under which the replies of `flow`, DNAT'd to `target`, are found: the translated
/// flow (client → endpoint) reversed.
#[inline(always)]
fn reply_key_of<A: Ip>(flow: &Flow<A>, target: &PortTarget<A>) -> FlowKey<A> {
    FlowKey::new(
        flow.src_addr,
        flow.src_port,
        target.addr,
        target.port,
        flow.proto,
    )
    .reversed()
}

/// The translation for a packet leaving the endpoint behind host-side veth `ifindex`, if it is
/// the reply of a published flow sent to that endpoint (which is refreshed, and marked closing
/// when TCP says so). A flow sent to another endpoint is not this one's to answer.
#[inline(always)]
pub fn reply_nat<A: Ip>(
    flow: &Flow<A>,
    ifindex: u32,
    closing: bool,
) -> Option<&'static FlowNat<A>> {
    let v = A::flows().get_ptr_mut(&flow.key())?;
    // SAFETY: map value pointer valid for this program run, all it is read in (read in
    // place: IPv6's entry is 72 bytes).
    let v = unsafe { &mut *v };
    if v.ifindex != ifindex {
        return None;
    }
    touch_flow(v, closing);
    Some(v)
}
