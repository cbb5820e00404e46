//! The flow table: NAT state of published flows, so replies are translated back to the host
//! address and port the client used (two host ports on one container port stay apart). Each
//! flow carries when it was last seen, refreshed at most once a second (a write per second
//! per flow, not per packet), and whether TCP saw it close; the agent expires idle ones.
use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use netpath_common::{flow_flags, FlowKey, FlowNat, PortTarget, ReplyMacs, FLOW_REFRESH_NS};

use crate::{
    family::Ip,
    packet::Packet,
    parse::{ptr_at, Flow},
};

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

impl Via {
    /// Back the way `pkt` came: out of the interface it arrived on, from the address it was
    /// sent to, to the neighbour that sent it. `None` if its Ethernet header is short.
    #[inline(always)]
    pub fn back_to_sender<P: Packet>(pkt: &P) -> Option<Via> {
        let eth = ptr_at::<[u8; 12]>(pkt.data(), pkt.data_end(), 0)?;
        // SAFETY: bounds checked by ptr_at; copied out before any rewrite.
        let eth = unsafe { *eth };
        let mut via = Via {
            ifindex: pkt.ingress_ifindex(),
            ..Via::default()
        };
        via.macs.src.copy_from_slice(&eth[..6]);
        via.macs.dst.copy_from_slice(&eth[6..]);
        Some(via)
    }
}

/// Whether `flow` (client → host address:port), sent to `target` with its source replaced by
/// `masq` when that is not ANY (self-hairpin) and its replies sent along `via`, is recorded
/// with this very translation already; if so it is refreshed (and marked closing when TCP
/// said FIN/RST). The hot path of a published flow: one lookup, the entry compared in place
/// (nothing but its key built on the stack: IPv6's entry program has room for that alone),
/// a write only when the entry is stale or closing.
#[inline(always)]
pub fn refresh<A: Ip>(
    flow: &Flow<A>,
    target: &PortTarget<A>,
    masq: A,
    via: &Via,
    closing: bool,
) -> bool {
    let Some(v) = A::flows().get_ptr_mut(&key_of(flow, target, masq)) else {
        return false;
    };
    // SAFETY: map value pointer valid for this program run.
    let v = unsafe { &mut *v };
    let client = if masq == A::ANY {
        A::ANY
    } else {
        flow.src_addr
    };
    let same = v.addr == flow.dst_addr
        && v.port == flow.dst_port
        && v.ifindex == target.ifindex
        && v.client == client
        && v.via == via.ifindex
        && v.via_macs == via.macs;
    if same {
        touch_flow(v, closing);
    }
    same
}

/// Records the flow [`refresh`] did not find (new, or translated differently than before),
/// stamped now.
#[inline(always)]
pub fn insert<A: Ip>(flow: &Flow<A>, target: &PortTarget<A>, masq: A, via: &Via, closing: bool) {
    let nat = FlowNat {
        addr: flow.dst_addr,
        port: flow.dst_port,
        _pad: 0,
        ifindex: target.ifindex,
        client: if masq == A::ANY {
            A::ANY
        } else {
            flow.src_addr
        },
        flags: if closing { flow_flags::CLOSING } else { 0 },
        via: via.ifindex,
        last_seen: now(),
        via_macs: via.macs,
        _pad3: 0,
    };
    // An LRU map makes room; a failed insert leaves the next packet to try again.
    let _ = A::flows().insert(&key_of(flow, target, masq), &nat, 0);
}

/// The key under which the replies of `flow`, DNAT'd to `target` (its source replaced by
/// `masq` when that is not ANY), are found: the translated flow reversed.
#[inline(always)]
fn key_of<A: Ip>(flow: &Flow<A>, target: &PortTarget<A>, masq: A) -> FlowKey<A> {
    let src = if masq == A::ANY { flow.src_addr } else { masq };
    FlowKey::new(target.addr, target.port, src, flow.src_port, flow.proto)
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
