//! Counters and drop reasons (read by `netpath stats` and the metrics), what each published
//! port received, and the events `netpath monitor` streams: drops with their reason and
//! 5-tuple, and (opt-in) every translation. With no monitor listening, a report costs one
//! array read.
use netpath_common::{event, monitor, Addr, Counter, Event, PortStats};

use crate::{
    maps::{EVENTS, MONITOR, PORT_STATS, STATS},
    parse::Flow,
};

/// Adds one to `counter` on this CPU.
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = STATS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}

/// Counts a later fragment translated as its first was (`frag.rs`).
#[inline(always)]
pub fn count_later<A: Addr>(flow: &Flow<A>) {
    if flow.later {
        count(Counter::FragmentNat);
    }
}

/// Counts a packet of `bytes` to the published port with stats slot `slot`.
#[inline(always)]
pub fn count_port(slot: u16, bytes: u64) {
    if slot == 0 {
        return;
    }
    if let Some(s) = PORT_STATS.get_ptr_mut(u32::from(slot)) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe {
            *s = PortStats {
                packets: (*s).packets + 1,
                bytes: (*s).bytes + bytes,
            }
        };
    }
}

/// Whether a monitor asked for `what`.
#[inline(always)]
fn wanted(what: u32) -> bool {
    MONITOR.get(0).is_some_and(|m| *m & what != 0)
}

/// Writes an event of `kind` and `what` about `flow`, `nat` the address and port a translation
/// wrote (none for a drop). Written in place in the ring buffer: IPv6's event would not fit
/// the stack of the paths that report it.
#[inline(always)]
fn emit<A: Addr>([kind, what]: [u8; 2], flow: &Flow<A>, ifindex: u32, nat: Option<&(A, u16)>) {
    let (nat_addr, nat_port) = nat.copied().unwrap_or((A::ANY, 0));
    let Some(mut entry) = EVENTS.reserve::<Event<A>>(0) else {
        count(Counter::EventsLost);
        return;
    };
    entry.write(Event::<A> {
        kind,
        what,
        proto: flow.proto,
        _pad: 0,
        ifindex,
        src_addr: flow.src_addr,
        dst_addr: flow.dst_addr,
        src_port: flow.src_port,
        dst_port: flow.dst_port,
        nat_addr,
        nat_port,
        _pad2: 0,
        _pad3: 0,
    });
    entry.submit(0);
}

/// Counts a drop for `reason` (reported to a monitor that asked for drops).
#[inline(always)]
pub fn dropped<A: Addr>(reason: Counter, flow: &Flow<A>, ifindex: u32) {
    count(reason);
    if wanted(monitor::DROPS) {
        emit([event::DROP, reason as u8], flow, ifindex, None);
    }
}

/// Reports to a monitor that asked for traces that policy number `policy` (when not 0)
/// allowed the new flow `flow`.
#[inline(always)]
pub fn admitted<A: Addr>(policy: u32, flow: &Flow<A>, ifindex: u32) {
    if policy != 0 {
        trace(event::trace::POLICY, flow, ifindex, A::ANY, policy as u16);
    }
}

/// Reports a translation to a monitor that asked for traces: `flow` as it came, and the
/// address and port written.
#[inline(always)]
pub fn trace<A: Addr>(what: u8, flow: &Flow<A>, ifindex: u32, nat_addr: A, nat_port: u16) {
    if wanted(monitor::TRACE) {
        emit(
            [event::TRACE, what],
            flow,
            ifindex,
            Some(&(nat_addr, nat_port)),
        );
    }
}
