//! The `PORTS_ANY`/`PORTS_ANY6` slots as this process knows them ([`SlotCache`]): a publish
//! reads its port's slot from here, not by a syscall (only this agent writes the slots).
use aya::maps::{Array, MapData};
use netpath_common::{Addr, PortSlot};

use super::DatapathError;

/// The `PORTS_ANY` slots this process read or wrote, by index: as dense as the array they
/// mirror (every index is a protocol's port), so a range's publish finds each by indexing.
pub struct SlotCache<A: Addr>(Vec<Option<PortSlot<A>>>);

impl<A: Addr> Default for SlotCache<A> {
    fn default() -> Self {
        SlotCache(Vec::new())
    }
}

impl<A: Addr + Copy> SlotCache<A> {
    fn get(&self, idx: u32) -> Option<PortSlot<A>> {
        self.0.get(idx as usize).copied().flatten()
    }

    pub(super) fn insert(&mut self, idx: u32, slot: PortSlot<A>) {
        let i = idx as usize;
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        self.0[i] = Some(slot);
    }

    fn remove(&mut self, idx: u32) {
        if let Some(s) = self.0.get_mut(idx as usize) {
            *s = None;
        }
    }
}

impl<A: Addr + Copy + aya::Pod> SlotCache<A> {
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
        // Forgotten first: a failed write leaves the slot to be read again.
        self.remove(idx);
        any.set(idx, slot, 0)
            .map_err(|e| DatapathError::Map(name, e))?;
        self.insert(idx, slot);
        Ok(())
    }
}
