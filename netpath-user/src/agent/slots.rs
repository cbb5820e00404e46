//! Which published port counts into which `PORT_STATS` slot. A port keeps its slot while it
//! is published (across restarts: the kernel's `PortTarget`s say which), a slot freed is
//! zeroed before it is used again, and ports beyond the slots there are count only in the
//! totals (slot 0).
use std::collections::{BTreeSet, HashMap};

use netpath_common::{map_sizes, In6};

use crate::datapath::AnyPortKey;

/// A published port, as the slots know it: (host address, host port, protocol), network
/// order.
pub type PortId = (In6, u16, u8);

pub fn port_id(k: &AnyPortKey) -> PortId {
    (k.addr, k.port, k.proto)
}

/// The slots in use and those free.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slots {
    by_port: HashMap<PortId, u16>,
    free: BTreeSet<u16>,
}

impl Default for Slots {
    fn default() -> Self {
        Slots {
            by_port: HashMap::new(),
            free: (1..map_sizes::PORT_STATS as u16).collect(),
        }
    }
}

impl Slots {
    /// The slot of `port`, if it has one.
    pub fn get(&self, port: &PortId) -> Option<u16> {
        self.by_port.get(port).copied()
    }

    /// Gives `port` the slot it already has, or a free one (0 when none is left); the bool
    /// says whether it is new (its counters must be zeroed).
    pub fn take(&mut self, port: PortId) -> (u16, bool) {
        if let Some(s) = self.by_port.get(&port) {
            return (*s, false);
        }
        match self.free.pop_first() {
            Some(s) => {
                self.by_port.insert(port, s);
                (s, true)
            }
            None => (0, false),
        }
    }

    /// Keeps `slot` for `port` (found in the kernel's maps at start).
    pub fn adopt(&mut self, port: PortId, slot: u16) -> bool {
        if slot == 0 || !self.free.remove(&slot) {
            return false;
        }
        self.by_port.insert(port, slot);
        true
    }

    /// Frees the slot of `port`; which it was.
    pub fn release(&mut self, port: &PortId) -> Option<u16> {
        let s = self.by_port.remove(port)?;
        self.free.insert(s);
        Some(s)
    }

    /// Every port with a slot.
    pub fn iter(&self) -> impl Iterator<Item = (&PortId, &u16)> {
        self.by_port.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: In6 = In6 { words: [0; 4] };

    #[test]
    fn slots_are_kept_reused_and_run_out_gracefully() {
        let mut s = Slots::default();
        assert_eq!(s.take((ANY, 80, 6)), (1, true));
        assert_eq!(s.take((ANY, 80, 6)), (1, false));
        assert_eq!(s.take((ANY, 81, 6)), (2, true));
        assert_eq!(s.release(&(ANY, 80, 6)), Some(1));
        assert_eq!(
            s.take((ANY, 82, 6)),
            (1, true),
            "a freed slot is used again"
        );
        let mut t = Slots::default();
        assert!(t.adopt((ANY, 90, 17), 7));
        assert!(!t.adopt((ANY, 91, 17), 7), "a slot has one port");
        assert_eq!(t.get(&(ANY, 90, 17)), Some(7));
        let mut full = Slots::default();
        for p in 1..map_sizes::PORT_STATS as u16 {
            full.take((ANY, p, 6));
        }
        assert_eq!(
            full.take((ANY, 60000, 6)),
            (0, false),
            "beyond the slots: totals only"
        );
    }
}
