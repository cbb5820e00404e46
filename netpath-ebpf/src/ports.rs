//! Published ports: DNAT on the uplink, reverse NAT of replies leaving an endpoint; written
//! once for both address families (`family::Ip` names each one's maps).
use netpath_common::{port_any_index, proto, Counter, FlowNat, PortKey, PortTarget};

use crate::{
    family::Ip,
    flows::{self, Entry, Kept, Via},
    guard,
    packet::Packet,
    parse::Flow,
    policy::{self, ELSEWHERE},
    rewrite::{set_addr, set_port},
    stats::{self, count},
};

/// The endpoint serving `flow`'s destination, if it is a published port.
#[inline(always)]
pub fn lookup_published<A: Ip>(flow: &Flow<A>) -> Option<PortTarget<A>> {
    lookup(flow.dst_addr, flow.dst_port, flow.proto)
}

/// What a destination publishes: the target in its map (read in place: IPv6's is 52 bytes,
/// and a copy would not fit the uplink program's stack), and whether it is published on
/// every host address (valid only when the destination is one of them) or on this very
/// address.
#[derive(Clone, Copy)]
pub struct Published<A: Ip> {
    pub target: Option<&'static PortTarget<A>>,
    pub anywhere: bool,
}

impl<A: Ip> Published<A> {
    pub const NOTHING: Published<A> = Published {
        target: None,
        anywhere: false,
    };
}

/// What port `port` (network order) of `proto` publishes at host address `addr`, the address
/// not yet checked for a publish on every address. The port's array slot decides first:
/// published on every host address, published one to one on one address alone (held in the
/// slot: no hash lookup), not published anywhere (the host's own traffic: no hash lookup),
/// or published on some addresses, of which this may be one.
#[inline(always)]
pub fn lookup_port<A: Ip>(addr: A, port: u16, proto: u8) -> Published<A> {
    let Some(slot) = A::ports_any().get_ptr(port_any_index(proto, port)) else {
        return Published::NOTHING;
    };
    // SAFETY: map value pointer valid for this program run.
    let slot = unsafe { &*slot };
    if slot.anywhere() {
        return Published {
            target: Some(&slot.target),
            anywhere: true,
        };
    }
    if let Some(alone) = slot.alone() {
        if alone.host != addr {
            return Published::NOTHING;
        }
        return Published {
            target: Some(alone),
            anywhere: false,
        };
    }
    if slot.specific == 0 {
        return Published::NOTHING;
    }
    let key = PortKey {
        addr,
        port,
        proto,
        _pad: 0,
    };
    Published {
        // SAFETY: map value pointer valid for this program run.
        target: A::ports().get_ptr(&key).map(|t| unsafe { &*t }),
        anywhere: false,
    }
}

/// Whether a host socket bound to `addr`, `port` (both network order) and `proto` would
/// take a published port: one published on every address, or on this address, or any
/// publish of the port when `addr` is every address. What docker-proxy's bound socket would
/// conflict with.
#[inline(always)]
pub fn held<A: Ip>(addr: A, port: u16, proto: u8) -> bool {
    let Some(slot) = A::ports_any().get_ptr(port_any_index(proto, port)) else {
        return false;
    };
    // SAFETY: map value pointer valid for this program run; read at once.
    let (anywhere, specific) = unsafe { ((*slot).anywhere(), (*slot).specific) };
    if anywhere || (specific != 0 && addr == A::ANY) {
        return true;
    }
    specific != 0
        && A::ports()
            .get_ptr(&PortKey {
                addr,
                port,
                proto,
                _pad: 0,
            })
            .is_some()
}

/// The endpoint behind host address `addr`, port `port` (both network order) and `proto`:
/// [`lookup_port`] with the address checked. The one published-port lookup of sockets
/// (`sock.rs`) and hairpin; the uplink checks the address only for new flows ([`dnat`]).
#[inline(always)]
pub fn lookup<A: Ip>(addr: A, port: u16, proto: u8) -> Option<PortTarget<A>> {
    let p = lookup_port(addr, port, proto);
    let target = *p.target?;
    (!p.anywhere || A::host_addr(addr)).then_some(target)
}

/// What [`dnat`] did.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dnat {
    /// Translated and addressed to the endpoint.
    Done,
    /// Not published here after all: the port is published on every host address, and the
    /// destination is none of them. Untouched.
    NotHere,
    /// A read or write failed.
    Failed,
    /// The policy refused the new flow, for this reason.
    Denied(Counter),
}

/// Translates `flow`'s destination to `published`'s endpoint and addresses the frame to it;
/// records the flow so its replies are translated back, and sent back the way this packet
/// came (out of the uplink it arrived on, to the neighbour that sent it). A flow already
/// recorded with this translation was checked when it began, so only a new flow of a port
/// published on every address pays the host-address lookup.
#[inline(always)]
pub fn dnat<P: Packet, A: Ip>(
    pkt: &mut P,
    flow: &Flow<A>,
    target: &PortTarget<A>,
    anywhere: bool,
) -> Dnat {
    if let Some(done) = stateless(pkt, flow, target) {
        return done;
    }
    let Some(via) = Via::back_to_sender(pkt) else {
        return Dnat::Failed;
    };
    dnat_via(pkt, flow, ELSEWHERE, target, A::ANY, &via, !anywhere)
}

/// A client's packet of a flow recorded already with `target`'s translation, arriving the
/// way the flow's first did (this uplink, this neighbour): refreshed and translated, with
/// nothing asked (the flow was asked when it began). `None`, nothing written, for a new flow
/// or one recorded differently, which [`dnat`] decides. What IPv6's entry program decides
/// with no tail call: it builds no entry, only the flow's key.
#[inline(always)]
pub fn kept<P: Packet, A: Ip>(pkt: &mut P, flow: &Flow<A>, target: &PortTarget<A>) -> Option<Dnat> {
    let via = Via::back_to_sender(pkt)?;
    let entry = Entry::new(pkt, flow, target, A::ANY, &via);
    (entry.refresh() == Kept::Same).then(|| rewrite(pkt, flow, target, A::ANY))
}

/// [`dnat`] for a packet of an endpoint (hairpin) to a port [`lookup`] found: the replies'
/// route is looked up, and when `masq` is not ANY the source becomes `masq` too: an endpoint
/// reaching its own published port must see the connection come from elsewhere (its
/// gateway), or its replies would never leave it to be translated.
#[inline(always)]
pub fn dnat_masq<P: Packet, A: Ip>(
    pkt: &mut P,
    flow: &Flow<A>,
    from: u32,
    target: &PortTarget<A>,
    masq: A,
) -> Dnat {
    dnat_via(pkt, flow, from, target, masq, &Via::default(), true)
}

/// A client's packet to a port published one to one, addressed where its replies will leave
/// from, while nothing is to be asked (no policy, no firewall list): translated with no flow
/// state, once the flood guard lets a new flow begin ([`admit_one_to_one`]). `None` (nothing
/// written) when it is no such packet. The host address is the publish's own or the
/// uplink's, so the destination is known to be the host's.
#[inline(always)]
pub fn stateless<P: Packet, A: Ip>(
    pkt: &mut P,
    flow: &Flow<A>,
    target: &PortTarget<A>,
) -> Option<Dnat> {
    if target.host == A::ANY || flow.dst_addr != target.host || !policy::nothing_to_ask() {
        return None;
    }
    if let Err(reason) = admit_one_to_one(flow, pkt.data(), pkt.data_end()) {
        return Some(Dnat::Denied(reason));
    }
    count(Counter::DnatStateless);
    Some(rewrite(pkt, flow, target, A::ANY))
}

/// Whether a client's packet to a port published one to one may go on. Such a port keeps no
/// flow, so what is new is told otherwise than by a flow table: a TCP segment is a new flow
/// when it opens a connection (SYN; the others belong to a connection whose SYN was asked, as
/// a SYN cookie reasons); any other packet when its flow was not marked seen lately in
/// `RECENT_FLOWS`. A new flow asks the guard, and once let through it is marked, unless this
/// CPU is under a flood: a flood frame that lands on a mark is let in unasked (and renews
/// it), so marks made by the flood's own frames would let more of it in the longer it
/// lasted. A flow begun during a flood is asked again at each packet until the flood is
/// over. So a flood of new flows to such a port is held to the rate, as to a port whose
/// flows are kept, and the flows going on keep the CPU. Nothing is read while no rate is
/// set, and a flow going on reads no clock but jiffies (`flows::generation`).
#[inline(always)]
fn admit_one_to_one<A: Ip>(flow: &Flow<A>, data: usize, data_end: usize) -> Result<(), Counter> {
    if !guard::guarding() {
        return Ok(());
    }
    if flow.proto == proto::TCP {
        return if flow.tcp_opening(data, data_end) {
            guard::new_flow_rate()
        } else {
            Ok(())
        };
    }
    // Keyed as replies are (the client the destination), as the flow tables' marks are.
    let key = flow.key().reversed();
    let generation = flows::generation();
    if flows::seen_lately_marked(&key, generation) {
        return Ok(());
    }
    if !guard::new_flow_in_flood()? {
        flows::mark_seen(&key, generation);
    }
    Ok(())
}

/// `from`: the endpoint that sent the packet, or [`ELSEWHERE`] (the uplink). `checked`: the
/// destination is known to be published (else a new flow checks it is a host address first).
/// A new flow from the uplink passes the published ports' firewall, then every new flow asks
/// the policy, then the flood guard, before it is recorded. So does, under a flood, a flow not
/// seen lately (not looked up: [`Kept::Unseen`]); once let through it is recorded if the table
/// has nothing under its key, and refreshed if it is recorded after all (a quiet connection).
#[inline(always)]
fn dnat_via<P: Packet, A: Ip>(
    pkt: &mut P,
    flow: &Flow<A>,
    from: u32,
    target: &PortTarget<A>,
    masq: A,
    via: &Via,
    checked: bool,
) -> Dnat {
    let entry = Entry::new(pkt, flow, target, masq, via);
    let kept = entry.refresh();
    if kept != Kept::Same {
        if !checked && !A::host_addr(flow.dst_addr) {
            return Dnat::NotHere;
        }
        if from == ELSEWHERE {
            if let Err(reason) = policy::published_from(flow.src_addr) {
                return Dnat::Denied(reason);
            }
        }
        match policy::admit(flow.src_addr, target.addr, target.port, flow.proto) {
            Ok(by) => {
                let came_in = if from == ELSEWHERE { via.ifindex } else { from };
                stats::admitted(by, flow, came_in);
            }
            Err(reason) => return Dnat::Denied(reason),
        }
        if let Err(reason) = guard::new_flow_rate() {
            return Dnat::Denied(reason);
        }
        let unseen = kept == Kept::Unseen;
        if !(unseen && (entry.insert_new() || entry.refresh_unseen())) {
            entry.insert(unseen);
        }
    }
    rewrite(pkt, flow, target, masq)
}

/// Writes `target`'s address and port as the destination (and `masq` as the source when it
/// is not ANY) and addresses the frame to the endpoint.
#[inline(always)]
fn rewrite<P: Packet, A: Ip>(pkt: &mut P, flow: &Flow<A>, target: &PortTarget<A>, masq: A) -> Dnat {
    let done = set_addr(pkt, flow, A::DST_OFF, flow.dst_addr, target.addr)
        && set_port(pkt, flow, flow.l4_off + 2, flow.dst_port, target.port)
        && (masq == A::ANY || set_addr(pkt, flow, A::SRC_OFF, flow.src_addr, masq))
        && pkt.set_macs(&target.gw_mac, &target.mac);
    if done {
        Dnat::Done
    } else {
        Dnat::Failed
    }
}

/// Translates a reply's source back to the published address and port in `nat` (and, for a
/// self-hairpin flow, its destination back to the endpoint).
#[inline(always)]
pub fn reverse_nat<P: Packet, A: Ip>(pkt: &mut P, flow: &Flow<A>, nat: &FlowNat<A>) -> bool {
    set_addr(pkt, flow, A::SRC_OFF, flow.src_addr, nat.addr)
        && set_port(pkt, flow, flow.l4_off, flow.src_port, nat.port)
        && (nat.client == A::ANY || set_addr(pkt, flow, A::DST_OFF, flow.dst_addr, nat.client))
}
