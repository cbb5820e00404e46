//! One-to-one published ports (kernel: `replies.rs`). On a host of one uplink (of the family),
//! a publish that alone reaches its endpoint's port is written with `host`, the address its
//! replies leave from (its own host address; for a publish on every address the uplink's), and
//! `REPLIES` tells those replies how they leave: the kernel then keeps no state for a client's
//! flow until it replies. Every publish and unpublish goes through here
//! ([`Datapath::publish_any`]), which keeps the publishes indexed by the endpoint port they
//! reach, so that a second publish of the same endpoint port (or the uplink's address
//! changing) turns the first back into one whose flows are kept from their first packet.
//! Order keeps the kernel right at every moment: `REPLIES` is written before a target names
//! its host, and removed only after none does.
use std::collections::HashMap as StdHashMap;
use std::net::{IpAddr, Ipv4Addr};

use aya::maps::{lpm_trie::Key as LpmKey, Array, HashMap, MapData};
use netpath_common::{net_flags, port_any_index, In6, PortKey, PortReply};

use super::{
    any_addr,
    anyport::{addr_of, v4_of, NO_HOST},
    removed, AnyKey, AnyPort, Datapath, DatapathError,
};
use super::{AnyPortKey, AnyPortTarget};
use netpath_common::map_names;

/// The publishes reaching each endpoint port (its address, container port and protocol, as
/// an [`AnyPortKey`]), each with its target as written, and the endpoint port of each. An
/// endpoint port is nearly always reached by one publish: a short list each, not a map.
#[derive(Default)]
struct Index {
    by_port: StdHashMap<AnyPortKey, Vec<(AnyPortKey, AnyPortTarget)>>,
    by_key: StdHashMap<AnyPortKey, AnyPortKey>,
}

impl Index {
    fn insert(&mut self, id: AnyPortKey, key: AnyPortKey, t: AnyPortTarget) {
        let pubs = self.by_port.entry(id).or_default();
        match pubs.iter_mut().find(|(k, _)| *k == key) {
            Some(p) => p.1 = t,
            None => {
                // One is the rule: no room for four.
                pubs.reserve_exact(1);
                pubs.push((key, t));
            }
        }
        self.by_key.insert(key, id);
    }

    /// Forgets publish `key`; the endpoint port it reached.
    fn remove(&mut self, key: &AnyPortKey) -> Option<AnyPortKey> {
        let id = self.by_key.remove(key)?;
        if let Some(p) = self.by_port.get_mut(&id) {
            p.retain(|(k, _)| k != key);
            if p.is_empty() {
                self.by_port.remove(&id);
            }
        }
        Some(id)
    }
}

/// `REPLIES`, `REPLIES6` and `REPLY_PORTS`, and what this process knows of them.
pub struct Replies {
    pub(super) v4: HashMap<MapData, PortKey, PortReply>,
    pub(super) v6: HashMap<MapData, PortKey<In6>, PortReply<In6>>,
    pub(super) ports: Array<MapData, u32>,
    /// The publishes by endpoint port; read from the maps at first use, forgotten (to be read
    /// again) when a write fails halfway.
    index: Option<Index>,
    /// The `REPLIES` entries there are, by endpoint port (both families).
    written: StdHashMap<AnyPortKey, PortReply<In6>>,
    /// `REPLY_PORTS` as this process counts it.
    counts: StdHashMap<u32, u32>,
    /// The host's one uplink address of each family (IPv4-mapped for IPv4), where publishes
    /// on every address reply from: `Some(None)` with several or none, `None` until the
    /// agent has said (at its start, before it follows the uplinks, a publish alone stays as
    /// the maps hold it: a start does not turn every one-to-one port to kept flows and back).
    uplink: [Option<Option<In6>>; 2],
    /// Whether each endpoint address asked about is on a routed network, as the maps said
    /// (a range's ports ask it once); forgotten whenever networks are written.
    routed: StdHashMap<In6, bool>,
}

impl Replies {
    pub(super) fn new(
        v4: HashMap<MapData, PortKey, PortReply>,
        v6: HashMap<MapData, PortKey<In6>, PortReply<In6>>,
        ports: Array<MapData, u32>,
    ) -> Replies {
        Replies {
            v4,
            v6,
            ports,
            index: None,
            written: StdHashMap::new(),
            counts: StdHashMap::new(),
            uplink: [None, None],
            routed: StdHashMap::new(),
        }
    }

    /// Forgets which endpoint addresses are on routed networks (the networks are written).
    pub(super) fn forget_routed(&mut self) {
        self.routed.clear();
    }
}

/// The endpoint port a publish reaches, when its replies are of the publish's own family
/// (NAT46's are translated by flows of their own).
fn reached(key: &AnyPortKey, t: &AnyPortTarget) -> Option<AnyPortKey> {
    (v4_of(key.addr).is_some() == v4_of(t.addr).is_some()).then_some(AnyPortKey {
        addr: t.addr,
        port: t.port,
        proto: key.proto,
        _pad: 0,
    })
}

/// Whether `addr` (as an [`AnyPortKey`] holds it) is every address of its family.
fn is_any(addr: In6) -> bool {
    addr == NO_HOST || v4_of(addr) == Some(0)
}

impl Datapath {
    /// Publishes a port as the agent holds it (its `host` is this layer's to decide).
    pub fn publish_any(
        &mut self,
        key: &AnyPortKey,
        target: &AnyPortTarget,
    ) -> Result<(), DatapathError> {
        let t = AnyPortTarget {
            host: NO_HOST,
            ..*target
        };
        let old = self.index()?.remove(key);
        let id = reached(key, &t);
        let res = match id {
            Some(id) => {
                self.index()?.insert(id, *key, t);
                self.settle(&id, Some(key))
            }
            None => self.write_any(key, &t),
        };
        self.settled(res)?;
        if let Some(old) = old.filter(|o| Some(*o) != id) {
            let res = self.settle(&old, None);
            self.settled(res)?;
        }
        Ok(())
    }

    /// Stops publishing a port as the agent holds it.
    pub fn unpublish_any(&mut self, key: &AnyPortKey) -> Result<(), DatapathError> {
        let res = match AnyKey::of(key) {
            AnyKey::V4(k) => self.erase_port(&k),
            AnyKey::V6(k) => self.erase_port(&k),
        };
        self.settled(res)?;
        if let Some(id) = self.index()?.remove(key) {
            let res = self.settle(&id, None);
            self.settled(res)?;
        }
        Ok(())
    }

    /// Follows the host's uplink addresses of one family (`v6`): publishes on every address
    /// reply from the one there is, when there is one.
    pub(super) fn set_reply_uplink(
        &mut self,
        v6: bool,
        addrs: impl Iterator<Item = IpAddr>,
    ) -> Result<(), DatapathError> {
        let mut addrs: Vec<IpAddr> = addrs
            .filter(|a| !a.is_loopback() && !a.is_unspecified())
            .collect();
        addrs.sort();
        addrs.dedup();
        let one = (addrs.len() == 1).then(|| any_addr(addrs[0]));
        if self.replies.uplink[usize::from(v6)] == Some(one) {
            return Ok(());
        }
        self.replies.uplink[usize::from(v6)] = Some(one);
        self.settle_all()
    }

    /// Settles every endpoint port (after the networks changed, or the uplinks).
    pub(super) fn settle_all(&mut self) -> Result<(), DatapathError> {
        let ids: Vec<AnyPortKey> = self.index()?.by_port.keys().copied().collect();
        for id in ids {
            let res = self.settle(&id, None);
            self.settled(res)?;
        }
        Ok(())
    }

    /// Whether endpoint address `addr` (as an [`AnyPortKey`] holds it) is on a network routed
    /// for its family, as the maps say: the outside reaches it at its own address, so its
    /// replies cannot be told from its own traffic, and its flows are kept.
    fn routed_at(&mut self, addr: In6) -> bool {
        if let Some(r) = self.replies.routed.get(&addr) {
            return *r;
        }
        let routed = |flags: u32| flags & net_flags::ROUTED != 0;
        let r = match v4_of(addr) {
            Some(a) => (self.subnets.get(&LpmKey::new(32, a), 0).ok())
                .and_then(|id| self.networks.get(&id, 0).ok())
                .is_some_and(|n| routed(n.flags)),
            None => (self.v6.subnets().get(&LpmKey::new(128, addr), 0).ok())
                .and_then(|id| self.v6.networks().get(&id, 0).ok())
                .is_some_and(|n| routed(n.flags)),
        };
        self.replies.routed.insert(addr, r);
        r
    }

    /// The index, read from the maps at first use (and the `REPLIES` entries no publish
    /// accounts for removed).
    fn index(&mut self) -> Result<&mut Index, DatapathError> {
        if self.replies.index.is_none() {
            let mut index = Index::default();
            let v4 = self
                .published_known::<u32>()
                .into_iter()
                .map(|(k, t)| super::anyport::widen(k, t));
            for (k, t) in v4.chain(self.published_known::<In6>()) {
                if let Some(id) = reached(&k, &t) {
                    index.insert(id, k, t);
                }
            }
            let v4: Vec<(PortKey, PortReply)> = self.scan(map_names::REPLIES, &self.whole.replies);
            let mut entries: Vec<(AnyPortKey, PortReply<In6>)> =
                v4.into_iter().map(|(k, v)| widen_reply(k, v)).collect();
            entries.extend(self.scan(map_names::REPLIES6, &self.whole.replies6));
            let r = &mut self.replies;
            r.written.clear();
            r.counts.clear();
            for (k, v) in entries {
                *r.counts.entry(port_any_index(k.proto, k.port)).or_default() += 1;
                r.written.insert(k, v);
            }
            let mut ids: Vec<AnyPortKey> = index.by_port.keys().copied().collect();
            ids.extend(r.written.keys().copied());
            r.index = Some(index);
            for id in ids {
                let res = self.settle(&id, None);
                self.settled(res)?;
            }
        }
        Ok(self.replies.index.get_or_insert_with(Index::default))
    }

    /// Forgets the index when a write failed (it is read again at next use).
    fn settled(&mut self, res: Result<(), DatapathError>) -> Result<(), DatapathError> {
        if res.is_err() {
            self.replies.index = None;
        }
        res
    }

    /// Makes endpoint port `id`'s publishes and `REPLIES` entry what they should be: one
    /// publish alone with a host to reply from is one to one, anything else keeps flows.
    /// `fresh`: a publish not written yet, written whatever its target.
    fn settle(&mut self, id: &AnyPortKey, fresh: Option<&AnyPortKey>) -> Result<(), DatapathError> {
        let uplink = self.replies.uplink;
        let pubs: Vec<(AnyPortKey, AnyPortTarget)> =
            self.index()?.by_port.get(id).cloned().unwrap_or_default();
        // A host of several uplinks answers each client the way it came: flows kept. A
        // publish on a loopback address replies by no wire (its clients are the host's own,
        // through the socket hooks): it has no host to reply from either.
        let host = match pubs.as_slice() {
            [(k, t)] if !self.routed_at(id.addr) && !addr_of(k.addr).is_loopback() => {
                match uplink[usize::from(v4_of(k.addr).is_none())] {
                    Some(one) => one.map(|u| if is_any(k.addr) { u } else { k.addr }),
                    // The uplinks not known yet: as the maps hold it.
                    None => (fresh != Some(k) && t.host != NO_HOST).then_some(t.host),
                }
            }
            _ => None,
        };
        if let (Some(host), [(k, t)]) = (host, pubs.as_slice()) {
            self.write_reply(
                id,
                PortReply {
                    addr: host,
                    port: k.port,
                    _pad: 0,
                    ifindex: t.ifindex,
                },
            )?;
        }
        for (k, t) in &pubs {
            let want = AnyPortTarget {
                host: host.unwrap_or(NO_HOST),
                ..*t
            };
            if want != *t || fresh == Some(k) {
                self.write_any(k, &want)?;
                self.index()?.insert(*id, *k, want);
            }
        }
        if host.is_none() {
            self.remove_reply(id)?;
        }
        Ok(())
    }

    /// Writes a publish to its family's maps, as it is.
    fn write_any(&mut self, key: &AnyPortKey, t: &AnyPortTarget) -> Result<(), DatapathError> {
        match AnyPort::split(key, t)? {
            AnyPort::V4(k, t) => self.write_port(k, t),
            AnyPort::V6(k, t) => self.write_port(k, t),
        }
    }

    fn write_reply(&mut self, id: &AnyPortKey, r: PortReply<In6>) -> Result<(), DatapathError> {
        let r0 = &mut self.replies;
        if r0.written.get(id) == Some(&r) {
            return Ok(());
        }
        let idx = port_any_index(id.proto, id.port);
        if !r0.written.contains_key(id) {
            // Counted before the entry is there: a count too high costs a lookup that misses.
            let n = r0.counts.get(&idx).copied().unwrap_or(0) + 1;
            r0.ports
                .set(idx, n, 0)
                .map_err(|e| DatapathError::Map(map_names::REPLY_PORTS, e))?;
            r0.counts.insert(idx, n);
        }
        match (AnyKey::of(id), v4_of(r.addr)) {
            (AnyKey::V4(k), Some(addr)) => r0.v4.insert(
                k,
                PortReply {
                    addr,
                    port: r.port,
                    _pad: 0,
                    ifindex: r.ifindex,
                },
                0,
            ),
            (AnyKey::V6(k), None) => r0.v6.insert(k, r, 0),
            _ => return Err(DatapathError::MixedFamilies(format!("{id:?}"))),
        }
        .map_err(|e| DatapathError::Map(map_names::REPLIES, e))?;
        r0.written.insert(*id, r);
        Ok(())
    }

    fn remove_reply(&mut self, id: &AnyPortKey) -> Result<(), DatapathError> {
        let r0 = &mut self.replies;
        if !r0.written.contains_key(id) {
            return Ok(());
        }
        match AnyKey::of(id) {
            AnyKey::V4(k) => removed(map_names::REPLIES, r0.v4.remove(&k))?,
            AnyKey::V6(k) => removed(map_names::REPLIES6, r0.v6.remove(&k))?,
        }
        r0.written.remove(id);
        let idx = port_any_index(id.proto, id.port);
        let n = r0.counts.get(&idx).copied().unwrap_or(1).saturating_sub(1);
        r0.ports
            .set(idx, n, 0)
            .map_err(|e| DatapathError::Map(map_names::REPLY_PORTS, e))?;
        r0.counts.insert(idx, n);
        Ok(())
    }
}

/// IPv4's `REPLIES` entry as this layer holds it (addresses IPv4-mapped).
fn widen_reply(k: PortKey, v: PortReply) -> (AnyPortKey, PortReply<In6>) {
    let mapped = |a: u32| any_addr(IpAddr::V4(Ipv4Addr::from(u32::from_be(a))));
    (
        AnyPortKey {
            addr: mapped(k.addr),
            port: k.port,
            proto: k.proto,
            _pad: 0,
        },
        PortReply {
            addr: mapped(v.addr),
            port: v.port,
            _pad: 0,
            ifindex: v.ifindex,
        },
    )
}
