//! The flows seen lately: what lets a flood of new flows be refused without a look into the
//! flow table. While a CPU is under a flood ([`crate::NewFlowRate::flooded`]), a client's
//! packet whose flow is not marked seen in this generation or the last (its one-byte slot
//! of `RECENT_FLOWS`, [`crate::FlowKey::recent_slot`], holds neither) is taken for a new
//! flow before the table is asked: each of the flood's frames then costs a read of this
//! table, which stays in the caches (1 MiB), instead of a miss in the flow table, which
//! does not (262,144 entries, tens of MB). A flow is marked when it is made outside a flood
//! and by its packets once a generation; so under a flood, a flow with a packet at least
//! every generation (8 s at HZ 250, 2 s at HZ 1000) goes on, while a flow quieter than
//! that, or begun during the flood, must be let through by the guard once more, as a new
//! flow would, to be marked again. Two flows on one slot make each look seen: a look into
//! the table, never a flow refused. A port published one to one keeps no flow, and its
//! flows are told new from going on by these marks alone (`ports::admit_one_to_one`): there
//! a slot shared with a marked flow lets a new flow through unasked. Nothing is ever
//! cleared: a slot's generation ages by itself (and comes round again after 128
//! generations, 17 minutes at HZ 250: again a look, or one flow let through). A generation
//! is odd, so a slot never marked (0) is never seen.

/// Slots in `RECENT_FLOWS`: 2^20, one byte each.
pub const SLOTS_SHIFT: u32 = 20;
/// Slots per entry of the map (a value of 8 bytes).
pub const PER_ENTRY: u32 = 8;
/// Entries of the map.
pub const ENTRIES: u32 = (1 << SLOTS_SHIFT) / PER_ENTRY;
/// A generation is 2^11 jiffies (8.2 s at HZ 250, 2 s at HZ 1000), longer than the flow
/// tables' [`crate::FLOW_REFRESH_NS`] at any HZ.
pub const GEN_SHIFT: u32 = 11;

/// The generation at `jiffies`: its count in the top seven bits, and the lowest set.
#[inline(always)]
pub const fn generation(jiffies: u64) -> u8 {
    (((jiffies >> GEN_SHIFT) as u8) << 1) | 1
}

/// The generation before `now`.
#[inline(always)]
const fn before(now: u8) -> u8 {
    now.wrapping_sub(2)
}

/// Whether a slot marked in generation `slot` says seen lately in generation `now`.
#[inline(always)]
pub const fn seen(slot: u8, now: u8) -> bool {
    slot == now || slot == before(now)
}

/// What a flow made during a flood records as its last mark: none lately, so its next
/// packet marks it (once the guard lets that one through too).
#[inline(always)]
pub const fn unmarked(now: u8) -> u8 {
    before(before(now))
}
