//! The `PORTS_ANY`/`PORTS_ANY6` slots as this process knows them ([`SlotCache`]): a publish
//! reads its port's slot from here, not by a syscall, and whoever asks what is published
//! reads the slots in use from here, not the 131,072 of each array (only this agent writes
//! the slots).
use std::collections::HashMap;

use aya::maps::{Array, MapData};
use netpath_common::{Addr, PortSlot};

use super::DatapathError;

/// The `PORTS_ANY` slots this process read or wrote, by index. Once read whole
/// ([`SlotCache::fill`]) it knows every slot, holding only those in use: a slot it does not
/// hold is empty. A write that fails makes it forget that (the array is read again when it
/// is next wanted whole).
pub struct SlotCache<A: Addr> {
    known: HashMap<u32, PortSlot<A>>,
    whole: bool,
}

impl<A: Addr> Default for SlotCache<A> {
    fn default() -> Self {
        SlotCache {
            known: HashMap::new(),
            whole: false,
        }
    }
}

impl<A: Addr + Copy + PartialEq + Default> SlotCache<A> {
    fn get(&self, idx: u32) -> Option<PortSlot<A>> {
        match self.known.get(&idx) {
            Some(slot) => Some(*slot),
            None if self.whole => Some(PortSlot::default()),
            None => None,
        }
    }

    fn insert(&mut self, idx: u32, slot: PortSlot<A>) {
        if self.whole && slot == PortSlot::default() {
            self.known.remove(&idx);
        } else {
            self.known.insert(idx, slot);
        }
    }

    /// Knows every slot: `all` holds each slot of the array (or at least each in use).
    pub(super) fn fill(&mut self, all: impl IntoIterator<Item = (u32, PortSlot<A>)>) {
        let empty = PortSlot::default();
        self.known = all.into_iter().filter(|(_, s)| *s != empty).collect();
        self.known.shrink_to_fit();
        self.whole = true;
    }

    /// Every slot in use, by index, when every slot is known.
    pub(super) fn in_use(&self) -> Option<Vec<(u32, PortSlot<A>)>> {
        self.whole
            .then(|| self.known.iter().map(|(i, s)| (*i, *s)).collect())
    }
}

impl<A: Addr + Copy + PartialEq + Default + aya::Pod> SlotCache<A> {
    /// Slot `idx` of `any` (the array named `name`), from here when it is known.
    pub(super) fn read(
        &mut self,
        any: &Array<MapData, PortSlot<A>>,
        idx: u32,
        name: &'static str,
    ) -> Result<PortSlot<A>, DatapathError> {
        if let Some(slot) = self.get(idx) {
            return Ok(slot);
        }
        let slot = any.get(&idx, 0).map_err(|e| DatapathError::Map(name, e))?;
        self.insert(idx, slot);
        Ok(slot)
    }

    /// Writes slot `idx` of `any` (the array named `name`), and knows it.
    pub(super) fn write(
        &mut self,
        any: &mut Array<MapData, PortSlot<A>>,
        idx: u32,
        slot: PortSlot<A>,
        name: &'static str,
    ) -> Result<(), DatapathError> {
        if let Err(e) = any.set(idx, slot, 0) {
            // What the slot holds now is not known: it is read again.
            self.known.remove(&idx);
            self.whole = false;
            return Err(DatapathError::Map(name, e));
        }
        self.insert(idx, slot);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use netpath_common::PortTarget;

    use super::*;

    fn slot(ifindex: u32) -> PortSlot<u32> {
        PortSlot {
            target: PortTarget {
                ifindex,
                ..PortTarget::default()
            },
            ..PortSlot::default()
        }
    }

    #[test]
    fn once_filled_a_slot_not_held_is_empty_and_emptied_slots_are_let_go() {
        let mut c = SlotCache::<u32>::default();
        assert_eq!(c.get(7), None, "nothing known before it is read");
        assert_eq!(c.in_use(), None);
        c.fill([(7, slot(3)), (8, PortSlot::default())]);
        assert_eq!(c.get(7), Some(slot(3)));
        assert_eq!(c.get(9), Some(PortSlot::default()));
        assert_eq!(c.known.len(), 1, "an empty slot is not held");
        c.insert(10, slot(4));
        c.insert(7, PortSlot::default());
        let mut used = c.in_use().unwrap();
        used.sort_by_key(|(i, _)| *i);
        assert_eq!(used, vec![(10, slot(4))]);
    }
}
