//! Published ports (kernel: `ports.rs`), of both families: `PORTS`/`PORTS6` for a publish on
//! one host address, `PORTS_ANY`/`PORTS_ANY6` (an array slot per protocol and port) for a
//! publish on every host address, how many addresses publish the port on one (and that one
//! publish, while it is alone and one to one), and `HOST_ADDRS`/`HOST_ADDRS6`, the addresses
//! where a publish on every address answers. Written once over [`PortFamily`], which names
//! each family's maps.
use std::{
    collections::{HashMap as StdHashMap, HashSet},
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsFd, OwnedFd},
};

use aya::maps::{Array, HashMap, MapData};
use netpath_common::{
    map_names, port_any_index, port_any_key, Addr, FlowKey, FlowNat, In6, PortKey, PortSlot,
    PortTarget,
};

use super::anyport::{widen, AnyPortKey, AnyPortTarget};
use super::slots::SlotCache;
use super::{be_addr, removed, Datapath, DatapathError};

/// A publish of family `A` as its maps hold it.
type Publish<A> = (PortKey<A>, PortTarget<A>);

/// A family's published-port and flow maps, as the agent writes and reads them.
pub struct PortMaps<'a, A: PortFamily> {
    pub(super) ports: &'a mut HashMap<MapData, PortKey<A>, PortTarget<A>>,
    pub(super) any: &'a mut Array<MapData, PortSlot<A>>,
    /// The `PORTS_ANY` slots this process read or wrote: a publish reads its slot from here,
    /// not by a syscall (only this agent writes the slots).
    pub(super) slots: &'a mut SlotCache<A>,
    pub(super) flows: &'a mut HashMap<MapData, FlowKey<A>, FlowNat<A>>,
}

/// An address family whose ports can be published: its maps in a [`Datapath`].
pub trait PortFamily: Addr + aya::Pod {
    /// `PORTS`, `PORTS_ANY`, `FLOWS` and `HOST_ADDRS` of this family.
    const NAMES: [&'static str; 4];
    fn maps(dp: &mut Datapath) -> PortMaps<'_, Self>;
    /// `FLOWS` of this family, to read.
    fn flows(dp: &Datapath) -> &HashMap<MapData, FlowKey<Self>, FlowNat<Self>>;
    /// Descriptors of `PORTS`, `PORTS_ANY` and `FLOWS`, for reading them whole.
    fn whole(dp: &Datapath) -> [&OwnedFd; 3];
    /// The `PORTS_ANY` slots as this process knows them.
    fn slots(dp: &Datapath) -> &SlotCache<Self>;
    /// A publish of this family as the agent holds it.
    fn any(k: PortKey<Self>, t: PortTarget<Self>) -> (AnyPortKey, AnyPortTarget);
}

impl PortFamily for u32 {
    const NAMES: [&'static str; 4] = [
        map_names::PORTS,
        map_names::PORTS_ANY,
        map_names::FLOWS,
        map_names::HOST_ADDRS,
    ];
    fn maps(dp: &mut Datapath) -> PortMaps<'_, u32> {
        PortMaps {
            ports: &mut dp.ports,
            any: &mut dp.ports_any,
            slots: &mut dp.port_slots,
            flows: &mut dp.flows,
        }
    }
    fn flows(dp: &Datapath) -> &HashMap<MapData, FlowKey<u32>, FlowNat<u32>> {
        &dp.flows
    }
    fn whole(dp: &Datapath) -> [&OwnedFd; 3] {
        [&dp.whole.ports, &dp.whole.ports_any, &dp.whole.flows]
    }
    fn slots(dp: &Datapath) -> &SlotCache<u32> {
        &dp.port_slots
    }
    fn any(k: PortKey, t: PortTarget) -> (AnyPortKey, AnyPortTarget) {
        widen(k, t)
    }
}

impl PortFamily for In6 {
    const NAMES: [&'static str; 4] = [
        map_names::PORTS6,
        map_names::PORTS_ANY6,
        map_names::FLOWS6,
        map_names::HOST_ADDRS6,
    ];
    fn maps(dp: &mut Datapath) -> PortMaps<'_, In6> {
        let v6 = &mut dp.v6;
        PortMaps {
            ports: &mut v6.ports,
            any: &mut v6.ports_any,
            slots: &mut v6.port_slots,
            flows: &mut v6.flows,
        }
    }
    fn flows(dp: &Datapath) -> &HashMap<MapData, FlowKey<In6>, FlowNat<In6>> {
        &dp.v6.flows
    }
    fn whole(dp: &Datapath) -> [&OwnedFd; 3] {
        [&dp.whole.ports6, &dp.whole.ports_any6, &dp.whole.flows6]
    }
    fn slots(dp: &Datapath) -> &SlotCache<In6> {
        &dp.v6.port_slots
    }
    fn any(k: PortKey<In6>, t: PortTarget<In6>) -> (AnyPortKey, AnyPortTarget) {
        (k, t)
    }
}

impl Datapath {
    /// Publishes `key` (address ANY: every host address) to `target` ([`Datapath::publish_any`]).
    pub fn publish<A: PortFamily>(
        &mut self,
        key: PortKey<A>,
        target: PortTarget<A>,
    ) -> Result<(), DatapathError> {
        let (k, t) = A::any(key, target);
        self.publish_any(&k, &t)
    }

    /// Stops publishing `key` ([`Datapath::unpublish_any`]).
    pub fn unpublish<A: PortFamily>(&mut self, key: &PortKey<A>) -> Result<(), DatapathError> {
        let (k, _) = A::any(*key, PortTarget::default());
        self.unpublish_any(&k)
    }

    /// Writes `key`'s publish as it is.
    ///
    /// A publish on one address also counts itself in its port's `PORTS_ANY` slot, before it
    /// is written (and is uncounted after it is removed): a count too high costs the kernel a
    /// hash lookup that misses, one too low would hide a publish, so an interrupted change
    /// errs on the safe side, and [`Datapath::recount_specific`] settles it. The slot holds
    /// the port's publish too while it is the only one and one to one
    /// ([`PortSlot::holding`]): only once it is in `PORTS`, and no longer from before another
    /// address's is, so the kernel finds every publish either way at every moment.
    pub(super) fn write_port<A: PortFamily>(
        &mut self,
        key: PortKey<A>,
        target: PortTarget<A>,
    ) -> Result<(), DatapathError> {
        let mut m = A::maps(self);
        let idx = port_any_index(key.proto, key.port);
        let mut slot = m.slot(idx)?;
        if key.addr == A::ANY {
            (slot.target, slot.held) = (target, 0);
            return m.set_slot(idx, slot);
        }
        let new = m.ports.get(&key, 0).is_err();
        if new {
            slot.specific += 1;
            (slot.target, slot.held) = (PortTarget::default(), 0);
            m.set_slot(idx, slot)?;
        }
        let res = m
            .ports
            .insert(key, target, 0)
            .map_err(|e| DatapathError::Map(A::NAMES[0], e));
        if res.is_err() {
            if new {
                slot.specific -= 1;
                m.set_slot(idx, slot)?;
            }
            return res;
        }
        let held = slot.holding(key.addr, &target);
        if held != slot {
            m.set_slot(idx, held)?;
        }
        Ok(())
    }

    /// Removes `key`'s publish (no longer held in its slot from before it goes). A publish
    /// left alone on another address is found by the hash until the next sync holds it
    /// ([`Datapath::recount_specific`]): finding it here would read all of `PORTS` for each
    /// port of a range.
    pub(super) fn erase_port<A: PortFamily>(
        &mut self,
        key: &PortKey<A>,
    ) -> Result<(), DatapathError> {
        let mut m = A::maps(self);
        let idx = port_any_index(key.proto, key.port);
        let mut slot = m.slot(idx)?;
        if key.addr == A::ANY {
            slot.target = PortTarget::default();
            return m.set_slot(idx, slot);
        }
        if m.ports.get(key, 0).is_err() {
            return Ok(());
        }
        if slot.alone().is_some() {
            (slot.target, slot.held) = (PortTarget::default(), 0);
            m.set_slot(idx, slot)?;
        }
        removed(A::NAMES[0], m.ports.remove(key))?;
        slot.specific = slot.specific.saturating_sub(1);
        m.set_slot(idx, slot)
    }

    /// Sets every `PORTS_ANY` slot's count of one-address publishes, and the publish it holds,
    /// to what `PORTS` holds, of both families; how many slots were off.
    pub fn recount_specific(&mut self) -> Result<usize, DatapathError> {
        Ok(self.recount::<u32>()? + self.recount::<In6>()?)
    }

    fn recount<A: PortFamily>(&mut self) -> Result<usize, DatapathError> {
        // Per slot: how many publishes on one address, and one of them.
        let mut counts: StdHashMap<u32, (u32, Publish<A>)> = StdHashMap::new();
        let [ports, ..] = A::whole(self);
        let specific: Vec<Publish<A>> = self.scan(A::NAMES[0], ports);
        for p in specific {
            counts
                .entry(port_any_index(p.0.proto, p.0.port))
                .and_modify(|c| c.0 += 1)
                .or_insert((1, p));
        }
        let mut slots = self.slots_in_use::<A>();
        // A slot counting none, where `PORTS` has some: empty in the array.
        let used: HashSet<u32> = slots.iter().map(|(i, _)| *i).collect();
        slots.extend(
            (counts.keys())
                .filter(|i| !used.contains(i))
                .map(|i| (*i, PortSlot::default())),
        );
        let mut m = A::maps(self);
        let mut fixed = 0;
        for (idx, slot) in slots {
            let want = match counts.get(&idx) {
                Some((n, (k, t))) => PortSlot {
                    specific: *n,
                    ..slot
                }
                .holding(k.addr, t),
                // What a slot counting publishes held was one of them, never a publish on
                // every address.
                _ if slot.specific != 0 => PortSlot::default(),
                _ => slot,
            };
            if want != slot {
                m.set_slot(idx, want)?;
                fixed += 1;
            }
        }
        Ok(fixed)
    }

    /// Reads `PORTS_ANY` of both families whole (when the datapath opens): from then on this
    /// process knows every slot ([`SlotCache`]), and lists what it published from there. A
    /// family whose array could not be read is read whole whenever it is listed.
    pub(super) fn read_slots(&mut self) {
        fn read<A: PortFamily>(dp: &Datapath) -> Option<Vec<(u32, PortSlot<A>)>> {
            let [_, any, _] = A::whole(dp);
            super::sys::lookup_batch(any.as_fd())
                .inspect_err(|e| tracing::warn!(map = A::NAMES[1], "reading the map: {e}"))
                .ok()
        }
        if let Some(slots) = read::<u32>(self) {
            self.port_slots.fill(slots);
        }
        if let Some(slots) = read::<In6>(self) {
            self.v6.port_slots.fill(slots);
        }
    }

    /// Every `PORTS_ANY` slot of family `A` in use, as this process knows them (all of them
    /// read, when it does not know every slot).
    fn slots_in_use<A: PortFamily>(&self) -> Vec<(u32, PortSlot<A>)> {
        A::slots(self)
            .in_use()
            .unwrap_or_else(|| self.slots_read::<A>())
    }

    /// Every `PORTS_ANY` slot of family `A`, read from the kernel.
    fn slots_read<A: PortFamily>(&self) -> Vec<(u32, PortSlot<A>)> {
        let [_, any, _] = A::whole(self);
        self.scan(A::NAMES[1], any)
    }

    /// Every published port of family `A` in the maps, with its target, read from the kernel
    /// (what anything else may have written there included: the health check's view).
    pub fn published<A: PortFamily>(&self) -> Vec<(PortKey<A>, PortTarget<A>)> {
        self.published_from_slots(self.slots_read::<A>())
    }

    /// [`published`](Self::published) as this process wrote it: the slots from what it
    /// knows, not the whole array.
    pub(super) fn published_known<A: PortFamily>(&self) -> Vec<(PortKey<A>, PortTarget<A>)> {
        self.published_from_slots(self.slots_in_use::<A>())
    }

    fn published_from_slots<A: PortFamily>(
        &self,
        slots: Vec<(u32, PortSlot<A>)>,
    ) -> Vec<(PortKey<A>, PortTarget<A>)> {
        let [ports, ..] = A::whole(self);
        let mut out: Vec<(PortKey<A>, PortTarget<A>)> = self.scan(A::NAMES[0], ports);
        out.extend(
            slots
                .into_iter()
                .filter(|(_, s)| s.anywhere())
                .map(|(idx, s)| {
                    let (proto, port) = port_any_key(idx);
                    let key = PortKey {
                        addr: A::ANY,
                        port,
                        proto,
                        _pad: 0,
                    };
                    (key, s.target)
                }),
        );
        out
    }

    /// Replaces the set of host addresses.
    pub fn set_host_addrs(&mut self, addrs: &HashSet<Ipv4Addr>) -> Result<(), DatapathError> {
        let want: HashSet<u32> = addrs.iter().map(|a| be_addr(*a)).collect();
        sync_set(map_names::HOST_ADDRS, &mut self.host_addrs, &want)
    }

    /// Replaces the set of the host's IPv6 addresses.
    pub fn set_host_addrs6(&mut self, addrs: &HashSet<Ipv6Addr>) -> Result<(), DatapathError> {
        let want: HashSet<In6> = addrs.iter().map(|a| be_addr(*a)).collect();
        sync_set(map_names::HOST_ADDRS6, &mut self.v6.host_addrs, &want)
    }
}

/// Makes a set-like map (key → 1) hold exactly `want`.
fn sync_set<A: Addr + aya::Pod>(
    name: &'static str,
    map: &mut HashMap<MapData, A, u32>,
    want: &HashSet<A>,
) -> Result<(), DatapathError> {
    let have: Vec<A> = map.keys().filter_map(Result::ok).collect();
    for k in have.iter().filter(|k| !want.contains(k)) {
        removed(name, map.remove(k))?;
    }
    for k in want.iter().filter(|k| !have.contains(k)) {
        map.insert(k, 1, 0)
            .map_err(|e| DatapathError::Map(name, e))?;
    }
    Ok(())
}

impl<A: PortFamily> PortMaps<'_, A> {
    fn slot(&mut self, idx: u32) -> Result<PortSlot<A>, DatapathError> {
        self.slots.read(self.any, idx, A::NAMES[1])
    }

    fn set_slot(&mut self, idx: u32, slot: PortSlot<A>) -> Result<(), DatapathError> {
        self.slots.write(self.any, idx, slot, A::NAMES[1])
    }
}
