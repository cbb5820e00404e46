//! Translated flows of published ports: the keys and values of `FLOWS` (kernel: `flows.rs`).
use crate::{recent, Addr};

/// Key of the flow table: a connection's 5-tuple as its *replies* leave the endpoint
/// (source = endpoint address and container port, destination = the client).
/// All fields network order. The outbound NAT tables key flows the same way.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey<A: Addr = u32> {
    pub src_addr: A,
    pub dst_addr: A,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    /// Padding as integers, not a byte array: zeroing an array costs the kernel programs a
    /// call to a byte-by-byte `memset` on every key they build.
    pub _pad: u8,
    pub _pad2: u16,
}

impl<A: Addr> FlowKey<A> {
    /// The 5-tuple of `proto` from `src_addr:src_port` to `dst_addr:dst_port` (network order),
    /// padding zeroed.
    #[inline(always)]
    pub const fn new(src_addr: A, src_port: u16, dst_addr: A, dst_port: u16, proto: u8) -> Self {
        FlowKey {
            src_addr,
            dst_addr,
            src_port,
            dst_port,
            proto,
            _pad: 0,
            _pad2: 0,
        }
    }

    /// The same flow seen from the other end: its replies' 5-tuple.
    #[inline(always)]
    pub const fn reversed(&self) -> Self {
        FlowKey::new(
            self.dst_addr,
            self.dst_port,
            self.src_addr,
            self.src_port,
            self.proto,
        )
    }

    /// Its slot in `RECENT_FLOWS` ([`recent`]): the top bits of a multiplicative hash of the
    /// client's side (address, both ports, protocol), which tells flows of one endpoint
    /// apart.
    #[inline(always)]
    pub fn recent_slot(&self) -> u32 {
        let ports = ((self.src_port as u32) << 16) | self.dst_port as u32;
        let h = self
            .dst_addr
            .mix(crate::addr::mix(self.proto as u64, ports));
        let h = (h ^ (h >> 32)).wrapping_mul(crate::addr::GOLDEN);
        (h >> (64 - recent::SLOTS_SHIFT)) as u32
    }

    /// The 5-tuple of the replies to this flow once its source is translated to
    /// `addr:port` (outbound NAT): from the destination, to `addr:port`.
    #[inline(always)]
    pub const fn reply_to(&self, addr: A, port: u16) -> Self {
        FlowKey::new(self.dst_addr, self.dst_port, addr, port, self.proto)
    }
}

/// Value of the flow table: what a reply's source is translated back to, and when the
/// flow was last seen (the agent expires idle flows).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowNat<A: Addr = u32> {
    /// Host address the client connected to, network order.
    pub addr: A,
    /// Host port the client connected to, network order.
    pub port: u16,
    /// The [`recent`] generation the flow was last marked seen in (its slot of
    /// `RECENT_FLOWS` written): once a generation at most, on its packets' way in.
    pub recent: u8,
    pub _pad: u8,
    /// Ifindex of the endpoint's host-side veth.
    pub ifindex: u32,
    /// For an endpoint reaching its own published port (self-hairpin, whose source was
    /// replaced by its gateway so the reply leaves it): the endpoint's address, which the
    /// reply's destination is translated back to. ANY otherwise.
    pub client: A,
    /// [`flow_flags`].
    pub flags: u32,
    /// The uplink the client's packets arrive on: replies go back out of it, to the
    /// neighbour they came from (`via_macs`), without a route lookup. 0 (hairpin, flows of
    /// an older build): the route decides.
    pub via: u32,
    /// `bpf_ktime_get_coarse_ns` of the last packet either way, refreshed at most every
    /// [`FLOW_REFRESH_NS`].
    pub last_seen: u64,
    /// The replies' Ethernet source (the uplink's MAC) and destination (the neighbour the
    /// client's packets came from), as they are written into the frame.
    pub via_macs: ReplyMacs,
    /// The low 32 bits of the kernel's jiffies when a reply last refreshed `last_seen`: a reply
    /// reads the clock only when this is [`STAMP_JIFFIES`] old.
    pub stamp: u32,
}

/// Source and destination MACs of a reply sent without a route lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReplyMacs {
    pub src: [u8; 6],
    pub dst: [u8; 6],
}

/// Flags of published-port flows.
pub mod flow_flags {
    /// A TCP FIN or RST was seen: the flow is closing.
    pub const CLOSING: u32 = 1;
}

/// How stale a flow's `last_seen` may get before a packet refreshes it: a write to the flow
/// at most this often, not one per packet.
pub const FLOW_REFRESH_NS: u64 = 1_000_000_000;

/// How many jiffies a reply's stamp ([`FlowNat::stamp`], `Nat46Reply::stamp`) may age before a
/// reply reads the clock and refreshes the flow's `last_seen`: jiffies are read inline (the
/// verifier makes `bpf_jiffies64` a load), the clock is a helper call, 12 ns of a reply's
/// path. At most a second at the slowest tick the kernel has (100 Hz).
pub const STAMP_JIFFIES: u32 = 100;

/// The flood guard: the rate at which each CPU may begin new flows, as GCRA (the generic
/// cell rate algorithm) states it: one every `interval_ns`, with bursts of up to `burst_ns`
/// ahead of that schedule. Past it a new flow is refused before it costs anything more (no
/// table slot, no eviction), so a flood of new flows cannot take the CPU from the flows
/// already made. `interval_ns` 0: no limit (a datapath nobody configured).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewFlowRate {
    pub interval_ns: u64,
    pub burst_ns: u64,
}

/// New flows a CPU may begin per second unless the agent is told otherwise
/// (`--new-flows-per-cpu`): about what one CPU's applications accept at best (a TCP accept
/// alone costs microseconds), and low enough that delivering them into the endpoints leaves
/// the CPU to the flows it carries already. `bench flood`: at 200,000 a flood's admitted
/// share cost established connections half their rate on XDP (0.44 of quiet), at 100,000
/// a quarter, at 50,000 2% (the floor that refuses the whole flood: 2%).
pub const NEW_FLOWS_PER_CPU: u32 = 50_000;

/// How far ahead of the schedule a burst of new flows may run: 20 ms of the rate (1,000
/// flows at the default), a few ticks of the coarse clock the flow tables read.
pub const NEW_FLOW_BURST_NS: u64 = 20_000_000;

impl NewFlowRate {
    /// `per_second` new flows per CPU (0: no limit).
    pub const fn per_cpu(per_second: u32) -> Self {
        if per_second == 0 {
            return NewFlowRate {
                interval_ns: 0,
                burst_ns: 0,
            };
        }
        let interval_ns = 1_000_000_000 / per_second as u64;
        NewFlowRate {
            // At most 1e9 per second: one a nanosecond.
            interval_ns: if interval_ns == 0 { 1 } else { interval_ns },
            burst_ns: NEW_FLOW_BURST_NS,
        }
    }

    /// Whether a new flow may begin at `now` on a CPU whose schedule stands at `tat` (the
    /// theoretical arrival time of its next new flow); if so, the schedule moves on by one.
    #[inline(always)]
    pub fn admit(&self, tat: &mut u64, now: u64) -> bool {
        if self.interval_ns == 0 {
            return true;
        }
        let at = if *tat > now { *tat } else { now };
        if at - now > self.burst_ns {
            return false;
        }
        *tat = at + self.interval_ns;
        true
    }

    /// Whether a CPU whose schedule stands at `tat` is under a flood at `now`: it has begun
    /// new flows faster than its rate for long enough to spend three quarters of its burst.
    /// `now` may be a coarse clock's, up to a tick (4 ms at 250 Hz, 10 at 100) behind the
    /// guard's own: a CPU within its rate is then at most a tick ahead, short of the three
    /// quarters, while through a flood the schedule stays the whole burst ahead of the guard's
    /// clock, past them ([`recent`]: flows not seen lately are then taken for new ones before
    /// the flow table is asked).
    #[inline(always)]
    pub fn flooded(&self, tat: u64, now: u64) -> bool {
        self.interval_ns != 0 && tat.saturating_sub(now) > self.burst_ns / 4 * 3
    }

    /// New flows per second per CPU (0: no limit).
    pub fn per_second(&self) -> u64 {
        1_000_000_000u64.checked_div(self.interval_ns).unwrap_or(0)
    }
}

crate::layout!(NewFlowRate, 16, interval_ns @ 0, burst_ns @ 8);
crate::layout!(FlowKey, 16, src_addr @ 0, dst_addr @ 4, src_port @ 8, dst_port @ 10, proto @ 12, _pad @ 13, _pad2 @ 14);
crate::layout!(FlowKey<crate::In6>, 40, src_addr @ 0, dst_addr @ 16, src_port @ 32, dst_port @ 34, proto @ 36, _pad @ 37, _pad2 @ 38);
crate::layout!(FlowNat, 48, addr @ 0, port @ 4, recent @ 6, _pad @ 7, ifindex @ 8, client @ 12, flags @ 16, via @ 20, last_seen @ 24, via_macs @ 32, stamp @ 44);
crate::layout!(FlowNat<crate::In6>, 72, addr @ 0, port @ 16, recent @ 18, _pad @ 19, ifindex @ 20, client @ 24, flags @ 40, via @ 44, last_seen @ 48, via_macs @ 56, stamp @ 68);
crate::layout!(ReplyMacs, 12, src @ 0, dst @ 6);
crate::pod!(FlowKey<A>, FlowNat<A>, ReplyMacs, NewFlowRate);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{proto, In6};

    /// The flood guard lets a burst through, then one new flow per interval, whatever the
    /// offered rate; an idle CPU earns no more than the burst back.
    #[test]
    fn new_flows_keep_to_their_rate() {
        let r = NewFlowRate {
            interval_ns: 10,
            burst_ns: 30,
        };
        let mut tat = 0;
        // At 1000 ns, offered one a nanosecond: 4 at once (now, then 3 intervals ahead).
        let admitted = (0..100)
            .filter(|i| r.admit(&mut tat, 1000 + i / 100))
            .count();
        assert_eq!(admitted, 4);
        // Still offered one a nanosecond, up to 2000 ns: one per 10 ns from 1010.
        let admitted = (1000..2000).filter(|t| r.admit(&mut tat, *t)).count();
        assert_eq!(admitted, 99);
        // After a long pause: the burst again, no more.
        let admitted = (0..100).filter(|_| r.admit(&mut tat, 1_000_000)).count();
        assert_eq!(admitted, 4);
        let open = NewFlowRate::per_cpu(0);
        assert!((0..1000).all(|_| open.admit(&mut tat, 0)));
        assert_eq!(NewFlowRate::per_cpu(200_000).per_second(), 200_000);
        assert_eq!(NewFlowRate::per_cpu(u32::MAX).interval_ns, 1);
    }

    /// A CPU offered new flows faster than its rate is flooded once it has spent most of its
    /// burst, seen from a coarse clock (ticks of 10 ms) a tick behind the guard's; one offered
    /// them at its rate never is, nor one without a rate.
    #[test]
    fn flooded_while_offered_more_than_the_rate() {
        let r = NewFlowRate::per_cpu(200_000);
        let coarse = |t: u64| t - t % 10_000_000;
        // 1,000,000 offered a second, one a microsecond, for a second.
        let mut tat = 0;
        let mut flooded = 0u32;
        for i in 0..1_000_000u64 {
            let now = 1_000_000_000 + i * 1_000;
            let f = r.flooded(tat, coarse(now));
            r.admit(&mut tat, now);
            if i >= 30_000 {
                assert!(f, "offered for {i} µs");
            }
            flooded += u32::from(f);
        }
        assert!(flooded >= 970_000, "{flooded}");
        // 200,000 a second, one every 5 µs: every one admitted, none flooded.
        let mut tat = 0;
        for i in 0..200_000u64 {
            let now = 1_000_000_000 + i * 5_000;
            assert!(!r.flooded(tat, coarse(now)), "at {i}");
            assert!(r.admit(&mut tat, now), "at {i}");
        }
        assert!(!NewFlowRate::per_cpu(0).flooded(u64::MAX, 0));
    }

    /// Slots spread the flows of one endpoint: 100,000 clients' flows take nearly as many
    /// slots as a perfect hash would (1 - e^-load of the table), in either family; and a
    /// mark ages out after two generations, with no clearing.
    #[test]
    fn recent_slots_spread_and_age() {
        let slots = 1usize << recent::SLOTS_SHIFT;
        let n = 100_000u32;
        let load = n as f64 / slots as f64;
        let ideal = slots as f64 * (1.0 - (-load).exp());
        let taken = |keys: &mut dyn Iterator<Item = u32>| {
            let mut seen = std::vec![false; slots];
            keys.filter(|s| !std::mem::replace(&mut seen[*s as usize], true))
                .count() as f64
        };
        let v4 = taken(&mut (0..n).map(|i| {
            let client = (0x0a00_0000 + i / 7).to_be();
            FlowKey::new(
                0x0a1e_0002u32.to_be(),
                53u16.to_be(),
                client,
                (1024 + i % 7) as u16,
                proto::UDP,
            )
            .recent_slot()
        }));
        let ep = In6::from_octets([0xfd, 0, 0, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        let v6 = taken(&mut (0..n).map(|i| {
            let mut o = [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            o[12..].copy_from_slice(&i.to_be_bytes());
            FlowKey::new(
                ep,
                80u16.to_be(),
                In6::from_octets(o),
                40000u16.to_be(),
                proto::TCP,
            )
            .recent_slot()
        }));
        let sequential = taken(&mut (0..n).map(|i| {
            let client = (0x0a00_0000 + i).to_be();
            FlowKey::new(
                0x0a1e_0002u32.to_be(),
                80u16.to_be(),
                client,
                40000u16.to_be(),
                proto::TCP,
            )
            .recent_slot()
        }));
        for (family, got) in [("ipv4", v4), ("ipv6", v6), ("ipv4, one port", sequential)] {
            assert!(
                got > 0.99 * ideal,
                "{family}: {got} slots, {ideal:.0} ideal"
            );
        }
        let at = |n: u64| recent::generation(n << recent::GEN_SHIFT);
        let g = at(5);
        assert!(recent::seen(g, g) && recent::seen(g, at(6)));
        assert!(!recent::seen(g, at(7)) && !recent::seen(recent::unmarked(g), g));
        assert!(recent::seen(at(127), at(128)), "generations wrap");
        assert!(
            (0..256).all(|n| !recent::seen(0, at(n))),
            "a slot never marked is never seen"
        );
    }

    #[test]
    fn reply_keys() {
        let k = FlowKey::new(1u32, 10, 2, 20, proto::TCP);
        assert_eq!(k.reversed(), FlowKey::new(2, 20, 1, 10, proto::TCP));
        assert_eq!(k.reversed().reversed(), k);
        assert_eq!(k.reply_to(9, 90), FlowKey::new(2, 20, 9, 90, proto::TCP));
    }

    /// The same shared decision serves the second family: an IPv6 flow's replies.
    #[test]
    fn reply_keys_of_ipv6_flows() {
        let a = In6::from_octets([0xfd, 0, 0, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        let b = In6::from_octets([0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        let k = FlowKey::new(a, 80, b, 40000, proto::UDP);
        assert_eq!(k.reversed(), FlowKey::new(b, 40000, a, 80, proto::UDP));
        assert_eq!(
            k.reply_to(In6::ANY, 1),
            FlowKey::new(b, 40000, In6::ANY, 1, proto::UDP)
        );
    }
}
