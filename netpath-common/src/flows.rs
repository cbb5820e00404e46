//! Translated flows of published ports: the keys and values of `FLOWS` (kernel: `flows.rs`).
use crate::Addr;

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
    pub _pad: u16,
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
    pub _pad3: u32,
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
/// (`--new-flows-per-cpu`): above what one CPU's applications accept (a TCP accept alone
/// costs microseconds), below what its new-flow path takes with room for the flows it
/// carries already.
pub const NEW_FLOWS_PER_CPU: u32 = 200_000;

/// How far ahead of the schedule a burst of new flows may run: 20 ms of the rate (4,000
/// flows at the default), at least a few ticks of the coarse clock the programs read.
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

    /// New flows per second per CPU (0: no limit).
    pub fn per_second(&self) -> u64 {
        1_000_000_000u64.checked_div(self.interval_ns).unwrap_or(0)
    }
}

crate::layout!(NewFlowRate, 16, interval_ns @ 0, burst_ns @ 8);
crate::layout!(FlowKey, 16, src_addr @ 0, dst_addr @ 4, src_port @ 8, dst_port @ 10, proto @ 12, _pad @ 13, _pad2 @ 14);
crate::layout!(FlowKey<crate::In6>, 40, src_addr @ 0, dst_addr @ 16, src_port @ 32, dst_port @ 34, proto @ 36, _pad @ 37, _pad2 @ 38);
crate::layout!(FlowNat, 48, addr @ 0, port @ 4, _pad @ 6, ifindex @ 8, client @ 12, flags @ 16, via @ 20, last_seen @ 24, via_macs @ 32, _pad3 @ 44);
crate::layout!(FlowNat<crate::In6>, 72, addr @ 0, port @ 16, _pad @ 18, ifindex @ 20, client @ 24, flags @ 40, via @ 44, last_seen @ 48, via_macs @ 56, _pad3 @ 68);
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
