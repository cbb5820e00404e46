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

impl<A: Addr> FlowNat<A> {
    /// Whether `other` translates the same way (times and flags aside).
    #[inline(always)]
    pub fn same_translation(&self, other: &FlowNat<A>) -> bool {
        self.addr == other.addr
            && self.port == other.port
            && self.ifindex == other.ifindex
            && self.client == other.client
            && self.via == other.via
            && self.via_macs == other.via_macs
    }
}

/// Flags of published-port flows.
pub mod flow_flags {
    /// A TCP FIN or RST was seen: the flow is closing.
    pub const CLOSING: u32 = 1;
}

/// How stale a flow's `last_seen` may get before a packet refreshes it: a write to the flow
/// at most this often, not one per packet.
pub const FLOW_REFRESH_NS: u64 = 1_000_000_000;

crate::layout!(FlowKey, 16, src_addr @ 0, dst_addr @ 4, src_port @ 8, dst_port @ 10, proto @ 12, _pad @ 13, _pad2 @ 14);
crate::layout!(FlowKey<crate::In6>, 40, src_addr @ 0, dst_addr @ 16, src_port @ 32, dst_port @ 34, proto @ 36, _pad @ 37, _pad2 @ 38);
crate::layout!(FlowNat, 48, addr @ 0, port @ 4, _pad @ 6, ifindex @ 8, client @ 12, flags @ 16, via @ 20, last_seen @ 24, via_macs @ 32, _pad3 @ 44);
crate::layout!(FlowNat<crate::In6>, 72, addr @ 0, port @ 16, _pad @ 18, ifindex @ 20, client @ 24, flags @ 40, via @ 44, last_seen @ 48, via_macs @ 56, _pad3 @ 68);
crate::layout!(ReplyMacs, 12, src @ 0, dst @ 6);
crate::pod!(FlowKey<A>, FlowNat<A>, ReplyMacs);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{proto, In6};

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
