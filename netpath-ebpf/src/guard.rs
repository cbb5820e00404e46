//! The flood guard: how many new flows each CPU may begin a second (`NEW_FLOW_RATE`, each
//! CPU's place in it in `NEW_FLOW_TAT`), as Katran's per-CPU new-connection rate. Past it a
//! new flow is refused before it costs a table slot (an eviction, when the table is full),
//! and the flows already made keep the CPU. Asked by every path that makes state for a new
//! flow — published ports (`ports::dnat_via`), NAT46, outbound NAT, a published flow's first
//! reply (`replies`), the connections network policy remembers on stateless paths
//! (`policy::admit_tracked`), and ports published one to one, which keep no flow
//! (`ports::admit_one_to_one`) — after the firewall and the policy (a refused flow is counted
//! for its reason and costs no share of the rate), last before they write. And whether this
//! CPU is under a flood (`flooded`), when the flow tables of published ports and of NAT46
//! are asked only about flows seen lately (`flows::unseen_in_flood`).
use aya_ebpf::helpers::bpf_ktime_get_ns;
use netpath_common::Counter;

use crate::maps::{NEW_FLOW_RATE, NEW_FLOW_TAT};

/// Whether this CPU is under a flood of new flows at `now` (the flow tables' coarse clock,
/// at most a tick behind the guard's: [`NewFlowRate::flooded`] allows for it): then
/// flows not seen lately are taken for new ones before the flow table is asked
/// (`flows::unseen_in_flood`).
#[inline(always)]
pub fn flooded(now: u64) -> bool {
    match NEW_FLOW_RATE.get(0) {
        Some(rate) if rate.interval_ns != 0 => NEW_FLOW_TAT
            .get(0)
            .is_some_and(|tat| rate.flooded(*tat, now)),
        _ => false,
    }
}

/// Whether this CPU may begin a new flow now. `Err`: the counter saying it may not.
#[inline(always)]
pub fn new_flow_rate() -> Result<(), Counter> {
    new_flow_in_flood().map(drop)
}

/// [`new_flow_rate`], and whether this CPU is under a flood once the flow is let through
/// (`Ok(true)`): a flow let through then is not marked seen where its marks are all that
/// tells it from a new one (`ports::admit_one_to_one`).
#[inline(always)]
pub fn new_flow_in_flood() -> Result<bool, Counter> {
    let Some(rate) = NEW_FLOW_RATE.get(0) else {
        return Ok(false);
    };
    if rate.interval_ns == 0 {
        return Ok(false);
    }
    let Some(tat) = NEW_FLOW_TAT.get_ptr_mut(0) else {
        return Ok(false);
    };
    // CLOCK_MONOTONIC, read only while a rate is set, and not the flow tables' coarse clock
    // (`flows::now`): with it, a flood's share of new flows was admitted all at once at each
    // of its ticks (800 at the default, every 4 ms), whose inserts back to back overflowed
    // the uplink's receive ring; with this one they come one every interval.
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: this CPU's slot, valid for this program run; nothing else runs on this CPU
    // meanwhile (programs do not nest on one CPU).
    let tat = unsafe { &mut *tat };
    if rate.admit(tat, now) {
        Ok(rate.flooded(*tat, now))
    } else {
        Err(Counter::DropNewFlowRate)
    }
}

/// Whether a rate is set (`--new-flows-per-cpu` not 0): what asks nothing else of the guard
/// until a flow is new reads this first.
#[inline(always)]
pub fn guarding() -> bool {
    NEW_FLOW_RATE
        .get(0)
        .is_some_and(|rate| rate.interval_ns != 0)
}
