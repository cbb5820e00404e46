//! The flow table: NAT state of published flows, so replies are translated back to the host
//! address and port the client used (two host ports on one container port stay apart). Each
//! flow carries when it was last seen, refreshed at most once a second (a write per second
//! per flow, not per packet), and whether TCP saw it close; the agent expires idle ones.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
};
use netpath_common::{
    flow_flags, recent, FlowKey, FlowNat, PortTarget, ReplyMacs, FLOW_REFRESH_NS, STAMP_JIFFIES,
};

use crate::{
    family::Ip,
    guard,
    maps::RECENT_FLOWS,
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
    mark_closing(flags, closing_flag, closing);
}

/// [`touch`] for a reply, which reads the clock only when it must: when the entry's `stamp`,
/// the low 32 bits of jiffies when a reply last refreshed `last_seen`, is [`STAMP_JIFFIES`]
/// old (jiffies are a load, the clock a helper call; the other direction's packets refresh
/// `last_seen` by the clock as ever).
#[inline(always)]
pub fn touch_reply(
    last_seen: &mut u64,
    stamp: &mut u32,
    flags: &mut u32,
    closing_flag: u32,
    closing: bool,
) {
    // SAFETY: no preconditions.
    let jiffies = unsafe { bpf_jiffies64() } as u32;
    if jiffies.wrapping_sub(*stamp) >= STAMP_JIFFIES {
        *stamp = jiffies;
        *last_seen = now();
    }
    mark_closing(flags, closing_flag, closing);
}

/// Sets `closing_flag` in `flags` when TCP said FIN/RST (`closing`), writing only a change.
#[inline(always)]
fn mark_closing(flags: &mut u32, closing_flag: u32, closing: bool) {
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

/// What [`Entry::refresh`] found of a client's packet's flow.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Recorded with this very translation: refreshed.
    Same,
    /// Not recorded, or recorded differently.
    No,
    /// Not asked: this CPU is under a flood of new flows and the flow was not seen lately
    /// ([`recent`]). A new flow, or a quiet one the guard must let through once more.
    Unseen,
}

/// A client's packet of a published flow, as the flow's entry records it: `flow` (client →
/// host address:port), sent to `target`, its source replaced by `masq` when that is not ANY
/// (self-hairpin), its replies sent along `via`.
#[derive(Clone, Copy)]
pub struct Entry<'a, A: Ip> {
    flow: &'a Flow<A>,
    target: &'a PortTarget<A>,
    masq: A,
    via: &'a Via,
    /// TCP said FIN or RST.
    closing: bool,
    /// The clock, read once for whatever the packet asks of the table.
    now: u64,
}

impl<'a, A: Ip> Entry<'a, A> {
    /// The entry of `pkt`, of `flow`.
    #[inline(always)]
    pub fn new<P: Packet>(
        pkt: &P,
        flow: &'a Flow<A>,
        target: &'a PortTarget<A>,
        masq: A,
        via: &'a Via,
    ) -> Self {
        Entry {
            flow,
            target,
            masq,
            via,
            closing: flow.tcp_closing(pkt.data(), pkt.data_end()),
            now: now(),
        }
    }

    /// Whether the flow is recorded with this very translation already; if so it is refreshed
    /// (and marked closing when TCP said FIN/RST, and seen once a generation). The hot path of
    /// a published flow: one lookup, the entry compared in place (nothing but its key built
    /// on the stack: IPv6's entry program has room for that alone), a write only when the
    /// entry is stale or closing. Under a flood a flow not seen lately is not looked up at
    /// all.
    #[inline(always)]
    pub fn refresh(&self) -> Kept {
        let key = self.key();
        if unseen_in_flood(&key, self.now) {
            return Kept::Unseen;
        }
        if self.refresh_key(&key) {
            Kept::Same
        } else {
            Kept::No
        }
    }

    /// [`refresh`](Self::refresh) of a flow it left [`Kept::Unseen`], once the guard let it
    /// through: a quiet flow recorded with this translation is refreshed and seen again, not
    /// recorded anew.
    #[inline(always)]
    pub fn refresh_unseen(&self) -> bool {
        self.refresh_key(&self.key())
    }

    #[inline(always)]
    fn refresh_key(&self, key: &FlowKey<A>) -> bool {
        let Some(v) = A::flows().get_ptr_mut(key) else {
            return false;
        };
        // SAFETY: map value pointer valid for this program run.
        let v = unsafe { &mut *v };
        let same = v.addr == self.flow.dst_addr
            && v.port == self.flow.dst_port
            && v.ifindex == self.target.ifindex
            && v.client == self.client()
            && v.via == self.via.ifindex
            && v.via_macs == self.via.macs;
        if same {
            touch(
                &mut v.last_seen,
                &mut v.flags,
                flow_flags::CLOSING,
                self.now,
                self.closing,
            );
            seen_now(key, &mut v.recent);
        }
        same
    }

    /// Records the flow [`refresh`](Self::refresh) did not find (new, or translated
    /// differently than before), stamped now; marked seen unless `flood` (a flow begun during
    /// a flood is marked by its next packet the guard lets through: the flood's frames, one
    /// per flow, mark nothing).
    #[inline(always)]
    pub fn insert(&self, flood: bool) {
        // An LRU map makes room; a failed insert leaves the next packet to try again.
        let _ = self.record(flood, 0);
    }

    /// Records, under a flood, a flow [`refresh`](Self::refresh) left [`Kept::Unseen`] when
    /// the table has none under its key (one look into the table, the insert's own); whether
    /// it did.
    #[inline(always)]
    pub fn insert_new(&self) -> bool {
        self.record(true, BPF_NOEXIST.into()).is_ok()
    }

    #[inline(always)]
    fn record(&self, flood: bool, flags: u64) -> Result<(), i32> {
        let key = self.key();
        let nat = FlowNat {
            addr: self.flow.dst_addr,
            port: self.flow.dst_port,
            recent: recorded_recent(&key, flood),
            _pad: 0,
            ifindex: self.target.ifindex,
            client: self.client(),
            flags: if self.closing { flow_flags::CLOSING } else { 0 },
            via: self.via.ifindex,
            last_seen: self.now,
            via_macs: self.via.macs,
            stamp: 0,
        };
        A::flows().insert(&key, &nat, flags)
    }

    /// The key under which the flow's replies are found: the translated flow reversed.
    #[inline(always)]
    fn key(&self) -> FlowKey<A> {
        let f = self.flow;
        let src = if self.masq == A::ANY {
            f.src_addr
        } else {
            self.masq
        };
        FlowKey::new(self.target.addr, self.target.port, src, f.src_port, f.proto)
    }

    /// The client the entry records: ANY, or for a self-hairpin flow the endpoint itself.
    #[inline(always)]
    fn client(&self) -> A {
        if self.masq == A::ANY {
            A::ANY
        } else {
            self.flow.src_addr
        }
    }
}

/// Whether a flow's packet at `now` skips the look into its table: this CPU is under a flood
/// and the flow of `key` was not seen lately ([`Kept::Unseen`]).
#[inline(always)]
pub fn unseen_in_flood<A: Ip>(key: &FlowKey<A>, now: u64) -> bool {
    guard::flooded(now) && !seen_lately(key, generation())
}

/// The marks' generation now ([`recent`]), of jiffies: a load, where the coarse clock is a
/// call of some 20 ns on this kind of machine (measured: `prog`'s one-to-one path).
#[inline(always)]
pub fn generation() -> u8 {
    // SAFETY: no preconditions.
    recent::generation(unsafe { bpf_jiffies64() })
}

/// Marks the flow of `key`, whose entry's `recent` is `recent`, seen now: once a generation
/// (a packet of the flow found in its table).
#[inline(always)]
pub fn seen_now<A: Ip>(key: &FlowKey<A>, recent: &mut u8) {
    let generation = generation();
    if *recent != generation {
        *recent = generation;
        mark_seen(key, generation);
    }
}

/// The `recent` a flow's new entry is recorded with: marked seen, unless `flood` (a flow
/// begun during a flood is marked by its next packet the guard lets through).
#[inline(always)]
pub fn recorded_recent<A: Ip>(key: &FlowKey<A>, flood: bool) -> u8 {
    let generation = generation();
    if flood {
        recent::unmarked(generation)
    } else {
        mark_seen(key, generation);
        generation
    }
}

/// Whether the flow of `key` was marked seen in `generation` or the one before.
#[inline(always)]
fn seen_lately<A: Ip>(key: &FlowKey<A>, generation: u8) -> bool {
    let slot = key.recent_slot();
    RECENT_FLOWS
        .get(slot / recent::PER_ENTRY)
        // Two flows on one slot: each looks seen, and is looked up.
        .is_none_or(|e| recent::seen(e[(slot % recent::PER_ENTRY) as usize], generation))
}

/// Whether the flow of `key` was marked seen in `generation` or the one before; marked in
/// `generation` if so (a write once a generation). For flows kept nowhere else
/// (`ports::admit_one_to_one`).
#[inline(always)]
pub fn seen_lately_marked<A: Ip>(key: &FlowKey<A>, generation: u8) -> bool {
    let slot = key.recent_slot();
    let Some(e) = RECENT_FLOWS.get_ptr_mut(slot / recent::PER_ENTRY) else {
        return true;
    };
    // SAFETY: map value pointer valid for this program run; one byte read and written.
    let mark = unsafe { &mut (*e)[(slot % recent::PER_ENTRY) as usize] };
    if *mark == generation {
        return true;
    }
    let seen = recent::seen(*mark, generation);
    if seen {
        *mark = generation;
    }
    seen
}

/// Marks the flow of `key` seen in `generation`.
#[inline(always)]
pub fn mark_seen<A: Ip>(key: &FlowKey<A>, generation: u8) {
    let slot = key.recent_slot();
    if let Some(e) = RECENT_FLOWS.get_ptr_mut(slot / recent::PER_ENTRY) {
        // SAFETY: map value pointer valid for this program run. One byte written: a flow
        // marked on another CPU at once, in a neighbouring slot, is not undone.
        unsafe { (*e)[(slot % recent::PER_ENTRY) as usize] = generation };
    }
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
    touch_reply(
        &mut v.last_seen,
        &mut v.stamp,
        &mut v.flags,
        flow_flags::CLOSING,
        closing,
    );
    Some(v)
}
