//! The flow table: NAT state of published flows, so replies are translated back to the host
//! address and port the client used (two host ports on one container port stay apart). Each
//! flow carries when it was last seen, refreshed at most once a second (a write per second
//! per flow, not per packet), and whether TCP saw it close; the agent expires idle ones.
use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use netpath_common::{flow_flags, FlowKey, FlowNat, PortTarget, ReplyMacs, FLOW_REFRESH_NS};

use crate::{maps::FLOWS, parse::Ipv4Flow};

#[inline(always)]
fn now() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// Where the replies of a flow go without a route lookup: back out of the interface the
/// client's packets arrive on, to the neighbour they come from.
#[derive(Clone, Copy, Default)]
pub struct Via {
    pub ifindex: u32,
    pub macs: ReplyMacs,
}

/// Remembers that `flow` (client → host address:port) was sent to `target`, its source
/// replaced by `masq` when that is not 0 (self-hairpin), its replies sent along `via` (when
/// its ifindex is not 0); `closing` when TCP said FIN/RST. The hot path is one lookup: the
/// entry is written only when missing, different, stale or closing.
#[inline(always)]
pub fn record(flow: &Ipv4Flow, target: &PortTarget, masq: u32, via: &Via, closing: bool) {
    let mut key = reply_key_of(flow, target);
    let mut client = 0;
    if masq != 0 {
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
    if let Some(v) = FLOWS.get_ptr_mut(&key) {
        // SAFETY: map value pointer valid for this program run.
        let v = unsafe { &mut *v };
        if v.same_translation(&nat) {
            touch(v, closing);
            return;
        }
    }
    let nat = FlowNat {
        last_seen: now(),
        flags: if closing { flow_flags::CLOSING } else { 0 },
        ..nat
    };
    let _ = FLOWS.insert(&key, &nat, 0);
}

/// Refreshes a flow's `last_seen` when stale, and marks it closing.
#[inline(always)]
fn touch(v: &mut FlowNat, closing: bool) {
    if closing && v.flags & flow_flags::CLOSING == 0 {
        v.flags |= flow_flags::CLOSING;
    }
    let t = now();
    if t.wrapping_sub(v.last_seen) > FLOW_REFRESH_NS {
        v.last_seen = t;
    }
}

/// The key under which the replies of `flow`, DNAT'd to `target`, are found: the translated
/// flow (client → endpoint) reversed.
#[inline(always)]
fn reply_key_of(flow: &Ipv4Flow, target: &PortTarget) -> FlowKey {
    FlowKey::new(
        flow.src_addr,
        flow.src_port,
        target.addr,
        target.port,
        flow.proto,
    )
    .reversed()
}

/// The translation for a packet leaving an endpoint, if it is the reply of a published flow
/// (which is refreshed, and marked closing when TCP says so).
#[inline(always)]
pub fn reply_nat(flow: &Ipv4Flow, closing: bool) -> Option<FlowNat> {
    let v = FLOWS.get_ptr_mut(&flow.key())?;
    // SAFETY: map value pointer valid for this program run.
    let v = unsafe { &mut *v };
    touch(v, closing);
    Some(*v)
}
