//! Published ports: the keys and values of `PORTS` and `PORTS_ANY` (kernel: `ports.rs`).
use crate::{proto, Addr};

/// Entries of the `PORTS_ANY` array: TCP ports, then UDP ports.
pub const PORTS_ANY_LEN: u32 = 2 * 65536;

/// Index into `PORTS_ANY` of (protocol, port in network order). [`port_any_key`] is its inverse.
#[inline(always)]
pub fn port_any_index(proto: u8, port_be: u16) -> u32 {
    (u32::from(proto == proto::UDP) << 16) | u32::from(u16::from_be(port_be))
}

/// The (protocol, port in network order) of a `PORTS_ANY` index: the inverse of
/// [`port_any_index`].
#[inline(always)]
pub fn port_any_key(index: u32) -> (u8, u16) {
    let proto = if index >> 16 == 1 {
        proto::UDP
    } else {
        proto::TCP
    };
    (proto, (index as u16).to_be())
}

/// Key of the published-ports map: where a client sends a packet.
///
/// `addr` is the host address the port is published on, network order; [`Addr::ANY`] stands
/// for every host address (Docker's `0.0.0.0`). `port` is the host port, network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PortKey<A: Addr = u32> {
    /// Host address, network order (ANY = every host address).
    pub addr: A,
    /// Host port, network order.
    pub port: u16,
    /// IP protocol ([`proto::TCP`] or [`proto::UDP`]).
    pub proto: u8,
    pub _pad: u8,
}

/// Value of the published-ports map: the endpoint that serves a published port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortTarget<A: Addr = u32> {
    /// Endpoint address, network order.
    pub addr: A,
    /// Container port, network order.
    pub port: u16,
    /// This port's slot in `PORT_STATS` (0: not counted on its own).
    pub stats: u16,
    /// Ifindex of the endpoint's host-side veth (redirect target).
    pub ifindex: u32,
    /// MAC of the endpoint's interface (destination of the DNAT'd frame).
    pub mac: [u8; 6],
    /// MAC of the host-side veth (source of the DNAT'd frame: the endpoint's gateway).
    pub gw_mac: [u8; 6],
    /// Where the mapping is one to one (the endpoint's port published by this publish alone),
    /// the host address its replies leave from: this publish's own address, or for a publish
    /// on every address the host's one uplink address of the family. A client's packet to it
    /// is translated with no flow state (the replies find theirs in `REPLIES` and record the
    /// flow themselves, `replies.rs`). ANY: the flow is kept from its first packet. Written by
    /// the datapath layer, never by the agent's callers.
    pub host: A,
}

/// A slot of `PORTS_ANY`: one (protocol, port) of the host. One array read decides what most
/// packets need: published on every host address ([`PortSlot::anywhere`]), published on one
/// host address alone and one to one (the publish held here too, [`PortSlot::alone`]: no
/// hash lookup), published on some addresses (`specific` of them, in `PORTS`), or not
/// published at all (no hash lookup). A port is never published both ways at once.
///
/// `held` says which publish `target` is in so many words (not by `specific` alone), and
/// makes the slot a size of its own: a build that reads slots otherwise (one before `held`)
/// finds its pinned map a different shape and rebuilds it, rather than take a publish held
/// for one address for a publish on every address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortSlot<A: Addr = u32> {
    /// The publish on every host address (`held` 0); or the port's one publish on one
    /// address, one to one (`held` 1; its `host` is the address).
    pub target: PortTarget<A>,
    /// How many host addresses publish this port in `PORTS`.
    pub specific: u32,
    /// 1: `target` is the one publish of `PORTS` held here too; 0: it is not.
    pub held: u32,
}

impl<A: Addr> PortSlot<A> {
    /// Whether the port is published in any way (outbound NAT must not hand it out).
    #[inline(always)]
    pub fn published(&self) -> bool {
        self.target.ifindex != 0 || self.specific != 0
    }

    /// Whether the port is published on every host address (`target`).
    #[inline(always)]
    pub fn anywhere(&self) -> bool {
        self.target.ifindex != 0 && self.held == 0 && self.specific == 0
    }

    /// The port's one publish, on one host address (its `host`), when the slot holds it.
    #[inline(always)]
    pub fn alone(&self) -> Option<&PortTarget<A>> {
        (self.held != 0 && self.target.ifindex != 0).then_some(&self.target)
    }

    /// This slot of a port whose publish on host address `addr` is `target`: holding it when
    /// it is the port's only publish (`specific` 1) and one to one from that address (its
    /// replies leave from `addr`), else holding none.
    pub fn holding(self, addr: A, target: &PortTarget<A>) -> PortSlot<A> {
        let alone = self.specific == 1 && addr != A::ANY && target.host == addr;
        PortSlot {
            target: if alone {
                *target
            } else {
                PortTarget::default()
            },
            held: u32::from(alone),
            ..self
        }
    }
}

crate::layout!(PortKey, 8, addr @ 0, port @ 4, proto @ 6, _pad @ 7);
crate::layout!(PortKey<crate::In6>, 20, addr @ 0, port @ 16, proto @ 18, _pad @ 19);
/// Value of `REPLIES` (key: a [`PortKey`] of the endpoint's address and container port): how
/// the replies of a one-to-one published port leave, for the packets whose flow was not kept
/// (see [`PortTarget::host`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortReply<A: Addr = u32> {
    /// The host address replies leave from, network order.
    pub addr: A,
    /// The host port, network order.
    pub port: u16,
    pub _pad: u16,
    /// The endpoint's host-side veth: only replies it sends are this port's.
    pub ifindex: u32,
}

crate::layout!(PortTarget, 28, addr @ 0, port @ 4, stats @ 6, ifindex @ 8, mac @ 12, gw_mac @ 18, host @ 24);
crate::layout!(PortTarget<crate::In6>, 52, addr @ 0, port @ 16, stats @ 18, ifindex @ 20, mac @ 24, gw_mac @ 30, host @ 36);
crate::layout!(PortSlot, 36, target @ 0, specific @ 28, held @ 32);
crate::layout!(PortSlot<crate::In6>, 60, target @ 0, specific @ 52, held @ 56);
crate::layout!(PortReply, 12, addr @ 0, port @ 4, _pad @ 6, ifindex @ 8);
crate::layout!(PortReply<crate::In6>, 24, addr @ 0, port @ 16, _pad @ 18, ifindex @ 20);
crate::pod!(PortKey<A>, PortTarget<A>, PortSlot<A>, PortReply<A>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_holds_a_ports_one_publish_only_while_it_is_one_to_one_and_alone() {
        let addr = 0x0500_000a_u32;
        let one_to_one = PortTarget {
            addr: 0x0200_11ac,
            port: 80u16.to_be(),
            ifindex: 7,
            host: addr,
            ..PortTarget::default()
        };
        let alone = PortSlot {
            specific: 1,
            ..PortSlot::default()
        }
        .holding(addr, &one_to_one);
        assert_eq!(alone.alone(), Some(&one_to_one));
        assert!(!alone.anywhere() && alone.published());
        let kept = PortTarget {
            host: 0,
            ..one_to_one
        };
        let cases = [
            (1, addr, kept),              // flows kept: its replies say nothing of the address
            (2, addr, one_to_one),        // another address publishes the port too
            (1, 0x0600_000a, one_to_one), // replies from another address than its own
        ];
        for (specific, at, target) in cases {
            let slot = PortSlot { specific, ..alone }.holding(at, &target);
            assert_eq!(slot.alone(), None, "{specific} {at:x} {target:?}");
            assert_eq!((slot.target, slot.held), (PortTarget::default(), 0));
            assert!(slot.published() && !slot.anywhere());
        }
        let everywhere = PortSlot {
            target: one_to_one,
            ..PortSlot::default()
        };
        assert!(everywhere.anywhere() && everywhere.alone().is_none());
        // A slot that counts one publish but holds none: found by the hash alone.
        let counted = PortSlot { held: 0, ..alone };
        assert!(!counted.anywhere() && counted.alone().is_none());
    }

    #[test]
    fn port_any_key_inverts_port_any_index() {
        for proto in [proto::TCP, proto::UDP] {
            for port in [1u16, 80, 8080, 65535] {
                let be = port.to_be();
                assert_eq!(port_any_key(port_any_index(proto, be)), (proto, be));
            }
        }
        assert!(port_any_index(proto::UDP, 65535u16.to_be()) < PORTS_ANY_LEN);
    }
}
