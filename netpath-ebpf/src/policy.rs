//! Who may reach what: one verdict on a new flow (`admit`), asked by every path before it lets
//! a new flow through — the uplink's DNAT of a published port (XDP and TC, in
//! `ports::dnat_via`, before the flow is recorded), hairpin (the same), outbound source NAT
//! (`snat::outbound`, before a port is allocated) — and, on the paths that keep no flow state
//! of their own, by `admit_tracked`, which remembers what it allowed so that the replies pass:
//! endpoint to endpoint (`forward::route`), to and from another node (`forward::route` before
//! encapsulation, `overlay::deliver` after decapsulation).
//!
//! Network policy as Kubernetes defines it, on numbers: every address has an identity
//! (`IPCACHE`, exact: an endpoint's address its label set's number, with the directions
//! policies select it in; else `IPCACHE_PREFIXES`, longest prefix: an ipBlock's prefix its
//! own; anything else WORLD); for a selected side only a rule lets the flow through (egress at
//! the source, ingress at the destination): one for its port in `POLICY` (exact), else one
//! for a block of ports, a protocol or every port in `POLICY_RANGES` (longest prefix). The
//! exact maps come first, so the common case (endpoints, rules naming ports) pays hash
//! lookups only; the tries are read only while they hold something (`POLICY_ON`'s flags).
//! Where the path has read an endpoint's record anyway (`EndpointInfo`, `PeerInfo`: endpoint
//! to endpoint, and the local end of an overlay flow), the identity comes with it (`Known`)
//! and is not looked up again, so a verdict between two endpoints of this node is one lookup,
//! the rule's. The host's own traffic with its endpoints is always allowed. With no policy
//! (`POLICY_ON` 0), one array read.
//!
//! The published ports' firewall (`published_from`) is asked first by the uplink's DNAT, on a
//! new flow only: a host-wide allow-list of client prefixes (`--published-from`), a trie per
//! family.
use aya_ebpf::maps::{
    lpm_trie::{Key, LpmTrie},
    LruHashMap,
};
use netpath_common::{
    direction, identity, policy_on, published_from, tracked, Addr, AddrIdentity, Counter, FlowKey,
    In6, PolicyKey,
};

use crate::{
    maps::{
        IPCACHE, IPCACHE6, IPCACHE_PREFIXES, IPCACHE_PREFIXES6, POLICY, POLICY_CT, POLICY_CT6,
        POLICY_ON, POLICY_RANGES, PUBLISHED_FROM, PUBLISHED_FROM6,
    },
    parse::Flow,
};

/// Not an endpoint of this node: the outside, the host, or an endpoint on another node.
pub const ELSEWHERE: u32 = 0;

/// The published ports' firewall: may a new flow from `src` (network order), arriving on an
/// uplink, reach a published port? Asked before the flow is translated, on XDP and TC alike;
/// the longest prefix of `PUBLISHED_FROM` decides, an empty trie letting everyone through.
/// The trie is asked only while `POLICY_ON` says it holds prefixes (the agent sets the flag
/// before it fills the trie, and clears it once the trie is empty): a flood's new flows do
/// not each pay a lookup in an empty trie.
#[inline(always)]
pub fn published_from<A: Identified>(src: A) -> Result<(), Counter> {
    if POLICY_ON
        .get(0)
        .is_none_or(|on| on & policy_on::FIREWALL == 0)
    {
        return Ok(());
    }
    match A::firewall().get(&Key::new(A::BITS, src)) {
        Some(&published_from::DENY) => Err(Counter::DropFirewall),
        _ => Ok(()),
    }
}

/// An address family whose addresses have identities, each in maps of its own.
pub trait Identified: Addr {
    /// The identity of the address (network order), `on` the flags of `POLICY_ON`.
    fn identity(self, on: u32) -> AddrIdentity;
    /// The family's connections allowed on stateless paths.
    fn tracked() -> &'static LruHashMap<FlowKey<Self>, u32>;
    /// The family's published-ports firewall (`PUBLISHED_FROM`, `PUBLISHED_FROM6`).
    fn firewall() -> &'static LpmTrie<Self, u8>;
}

impl Identified for u32 {
    #[inline(always)]
    fn identity(self, on: u32) -> AddrIdentity {
        if let Some(id) = IPCACHE.get_ptr(&self) {
            // SAFETY: map value pointer valid for this program run; copied out at once.
            return unsafe { *id };
        }
        if on & policy_on::PREFIXES != 0 {
            if let Some(id) = IPCACHE_PREFIXES.get(&Key::new(32, self)) {
                return AddrIdentity {
                    identity: *id,
                    selected: 0,
                };
            }
        }
        AddrIdentity::WORLD
    }

    #[inline(always)]
    fn tracked() -> &'static LruHashMap<FlowKey<u32>, u32> {
        &POLICY_CT
    }

    #[inline(always)]
    fn firewall() -> &'static LpmTrie<u32, u8> {
        &PUBLISHED_FROM
    }
}

impl Identified for In6 {
    #[inline(always)]
    fn identity(self, on: u32) -> AddrIdentity {
        if let Some(id) = IPCACHE6.get_ptr(&self) {
            // SAFETY: map value pointer valid for this program run; copied out at once.
            return unsafe { *id };
        }
        if on & policy_on::PREFIXES != 0 {
            if let Some(id) = IPCACHE_PREFIXES6.get(&Key::new(128, self)) {
                return AddrIdentity {
                    identity: *id,
                    selected: 0,
                };
            }
        }
        AddrIdentity::WORLD
    }

    #[inline(always)]
    fn tracked() -> &'static LruHashMap<FlowKey<In6>, u32> {
        &POLICY_CT6
    }

    #[inline(always)]
    fn firewall() -> &'static LpmTrie<In6, u8> {
        &PUBLISHED_FROM6
    }
}

/// `POLICY_ON`'s flags of the policy: 0 while no policy is in force.
#[inline(always)]
fn on() -> u32 {
    POLICY_ON.get(0).copied().unwrap_or(0) & !policy_on::FIREWALL
}

/// Whether a new flow from an uplink needs no verdict at all: no policy in force and an
/// empty published ports' firewall (`POLICY_ON` 0, one array read). Then a one-to-one
/// published port's flow needs no state either (`ports::dnat_via`).
#[inline(always)]
pub fn nothing_to_ask() -> bool {
    POLICY_ON.get(0).is_none_or(|on| *on == 0)
}

/// The rule that lets `subject` be reached by / reach `peer` on `proto` port `port` (host
/// order): one for the port naming the peer, one for the port and every peer, then (while
/// there are any) the same for blocks of ports and whole protocols. The number of its policy.
#[inline(always)]
fn allowed(on: u32, dir: u8, subject: u32, peer: u32, proto: u8, port: u16) -> Option<u32> {
    let named = PolicyKey::new(dir, subject, peer, proto, port);
    let any = PolicyKey::new(dir, subject, identity::ANY, proto, port);
    // SAFETY (both): map value pointers valid for this program run; read at once.
    if let Some(n) = POLICY.get_ptr(&named) {
        return Some(unsafe { *n });
    }
    if let Some(n) = POLICY.get_ptr(&any) {
        return Some(unsafe { *n });
    }
    if on & policy_on::RANGES == 0 {
        return None;
    }
    if let Some(n) = POLICY_RANGES.get(&Key::new(PolicyKey::PORT, named)) {
        return Some(*n);
    }
    POLICY_RANGES.get(&Key::new(PolicyKey::PORT, any)).copied()
}

/// The identities of a flow's ends that the path read with the endpoints' records (an
/// endpoint of this node: `EndpointInfo`, `PeerInfo`); `None`: looked up by address.
#[derive(Clone, Copy, Default)]
pub struct Known {
    pub src: Option<AddrIdentity>,
    pub dst: Option<AddrIdentity>,
}

/// May a new flow of `proto` go from `src` to `dst` port `dport` (network order; the
/// destination as its endpoint sees it, after DNAT)? `Ok(n)`: the number of the policy whose
/// rule allowed it (the destination's, else the source's), 0 when no policy selects either
/// side. `Err(reason)`: the flow is dropped, counted and reported with `reason`.
#[inline(always)]
pub fn admit<A: Identified>(src: A, dst: A, dport: u16, proto: u8) -> Result<u32, Counter> {
    admit_known(src, dst, Known::default(), dport, proto)
}

/// [`admit`] for a NAT46 flow: an IPv6 client `src` of IPv4 endpoint `dst`, each judged by
/// the identity its own family's maps give it.
#[inline(always)]
pub fn admit_nat46(src: In6, dst: u32, dport: u16, proto: u8) -> Result<u32, Counter> {
    match on() {
        0 => Ok(0),
        on => {
            let known = Known {
                src: Some(src.identity(on)),
                dst: None,
            };
            verdict(on, (dst, dst), known, dport, proto)
        }
    }
}

/// [`admit`], the identities in `known` taken as they are.
#[inline(always)]
pub fn admit_known<A: Identified>(
    src: A,
    dst: A,
    known: Known,
    dport: u16,
    proto: u8,
) -> Result<u32, Counter> {
    match on() {
        0 => Ok(0),
        on => verdict(on, (src, dst), known, dport, proto),
    }
}

/// The verdict itself on a flow between `ends` (source, destination), `on` the flags of
/// `POLICY_ON` (not 0).
#[inline(always)]
fn verdict<A: Identified>(
    on: u32,
    (src, dst): (A, A),
    known: Known,
    dport: u16,
    proto: u8,
) -> Result<u32, Counter> {
    let from = known.src.unwrap_or_else(|| src.identity(on));
    let to = known.dst.unwrap_or_else(|| dst.identity(on));
    if from.identity == identity::HOST || to.identity == identity::HOST {
        return Ok(0);
    }
    let port = u16::from_be(dport);
    // The rule letting `subject` reach / be reached by `peer` in `dir`, else a drop.
    let rule = |dir, subject: AddrIdentity, peer: AddrIdentity| {
        allowed(on, dir, subject.identity, peer.identity, proto, port).ok_or(Counter::DropPolicy)
    };
    let mut by = 0;
    if from.selected_in(direction::EGRESS) {
        by = rule(direction::EGRESS, from, to)?;
    }
    if to.selected_in(direction::INGRESS) {
        by = rule(direction::INGRESS, to, from)?;
    }
    Ok(by)
}

/// [`admit`] for a path that keeps no flow state: a packet of a connection allowed before
/// (either way: the connection is remembered both ways) passes on one lookup (`Ok(0)`), and
/// so does an ICMP error about one (`about`: the flow of the packet an ICMP error carries — a
/// port unreachable, a fragmentation needed); a new one is asked and, allowed and within the
/// flood guard's rate (`guard`), remembered in `POLICY_CT` (the agent removes what a new
/// policy denies).
#[inline(always)]
pub fn admit_tracked<A: Identified>(
    flow: &Flow<A>,
    known: Known,
    about: impl FnOnce() -> Option<FlowKey<A>>,
) -> Result<u32, Counter> {
    let on = on();
    if on == 0 {
        return Ok(0);
    }
    let ct = A::tracked();
    if let Some(k) = about() {
        if ct.get_ptr(&k).is_some() {
            return Ok(0);
        }
    }
    let key = flow.key();
    if ct.get_ptr(&key).is_some() {
        return Ok(0);
    }
    let ends = (flow.src_addr, flow.dst_addr);
    let by = verdict(on, ends, known, flow.dst_port, flow.proto)?;
    // The flood guard, as where published flows are made: a flood of new connections is
    // refused past this CPU's rate before it evicts the ones remembered (whose replies need
    // their entries).
    crate::guard::new_flow_rate()?;
    // A full table evicts its oldest entries (LRU); a failed insert only means this flow is
    // asked again at its next packet (that way).
    let _ = ct.insert(&key, &tracked::AS_SENT, 0);
    let _ = ct.insert(&key.reversed(), &tracked::REPLY, 0);
    Ok(by)
}
