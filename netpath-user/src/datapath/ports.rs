//! Published ports (kernel: `ports.rs`): `PORTS` for a publish on one host address,
//! `PORTS_ANY` (an array slot per protocol and port) for a publish on every host address and
//! how many addresses publish the port in `PORTS`, and `HOST_ADDRS`, the addresses where a
//! publish on every address answers.
use std::{collections::HashSet, net::Ipv4Addr};

use netpath_common::{map_names, port_any_index, port_any_key, PortKey, PortSlot, PortTarget};

use super::{be_addr, removed, Datapath, DatapathError};

impl Datapath {
    /// Publishes `key` (address 0: every host address) to `target`.
    ///
    /// A publish on one address also counts itself in its port's `PORTS_ANY` slot, before it
    /// is written (and is uncounted after it is removed): a count too high costs the kernel a
    /// hash lookup that misses, one too low would hide a publish, so an interrupted change
    /// errs on the safe side, and [`Datapath::recount_specific`] settles it.
    pub fn publish(&mut self, key: PortKey, target: PortTarget) -> Result<(), DatapathError> {
        let idx = port_any_index(key.proto, key.port);
        let mut slot = self.port_slot(idx)?;
        if key.addr == 0 {
            slot.target = target;
            return self.set_port_slot(idx, slot);
        }
        let new = self.ports.get(&key, 0).is_err();
        if new {
            slot.specific += 1;
            self.set_port_slot(idx, slot)?;
        }
        let res = self
            .ports
            .insert(key, target, 0)
            .map_err(|e| DatapathError::Map(map_names::PORTS, e));
        if res.is_err() && new {
            slot.specific -= 1;
            self.set_port_slot(idx, slot)?;
        }
        res
    }

    /// Stops publishing `key`.
    pub fn unpublish(&mut self, key: &PortKey) -> Result<(), DatapathError> {
        let idx = port_any_index(key.proto, key.port);
        let mut slot = self.port_slot(idx)?;
        if key.addr == 0 {
            slot.target = PortTarget::default();
            return self.set_port_slot(idx, slot);
        }
        if self.ports.get(key, 0).is_err() {
            return Ok(());
        }
        removed(map_names::PORTS, self.ports.remove(key))?;
        slot.specific = slot.specific.saturating_sub(1);
        self.set_port_slot(idx, slot)
    }

    /// Sets every `PORTS_ANY` slot's count of one-address publishes to what `PORTS` holds.
    pub fn recount_specific(&mut self) -> Result<usize, DatapathError> {
        let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        let specific: Vec<(PortKey, PortTarget)> = self.scan(map_names::PORTS, &self.whole.ports);
        for (k, _) in specific {
            *counts.entry(port_any_index(k.proto, k.port)).or_default() += 1;
        }
        let slots: Vec<(u32, PortSlot)> = self.scan(map_names::PORTS_ANY, &self.whole.ports_any);
        let mut fixed = 0;
        for (idx, mut slot) in slots {
            self.port_slots.insert(idx, slot);
            let want = counts.get(&idx).copied().unwrap_or(0);
            if slot.specific != want {
                slot.specific = want;
                self.set_port_slot(idx, slot)?;
                fixed += 1;
            }
        }
        Ok(fixed)
    }

    fn port_slot(&mut self, idx: u32) -> Result<PortSlot, DatapathError> {
        if let Some(slot) = self.port_slots.get(&idx) {
            return Ok(*slot);
        }
        let slot = self
            .ports_any
            .get(&idx, 0)
            .map_err(|e| DatapathError::Map(map_names::PORTS_ANY, e))?;
        self.port_slots.insert(idx, slot);
        Ok(slot)
    }

    fn set_port_slot(&mut self, idx: u32, slot: PortSlot) -> Result<(), DatapathError> {
        // Forgotten first: a failed write leaves the slot to be read again.
        self.port_slots.remove(&idx);
        self.ports_any
            .set(idx, slot, 0)
            .map_err(|e| DatapathError::Map(map_names::PORTS_ANY, e))?;
        self.port_slots.insert(idx, slot);
        Ok(())
    }

    /// Every published port in the maps, with its target.
    pub fn published(&self) -> Vec<(PortKey, PortTarget)> {
        let mut out: Vec<(PortKey, PortTarget)> = self.scan(map_names::PORTS, &self.whole.ports);
        let any: Vec<(u32, PortSlot)> = self.scan(map_names::PORTS_ANY, &self.whole.ports_any);
        out.extend(
            any.into_iter()
                .filter(|(_, s)| s.target.ifindex != 0)
                .map(|(idx, s)| {
                    let (proto, port) = port_any_key(idx);
                    let key = PortKey {
                        addr: 0,
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
        let err = |e| DatapathError::Map(map_names::HOST_ADDRS, e);
        let want: HashSet<u32> = addrs.iter().map(|a| be_addr(*a)).collect();
        let have: Vec<u32> = self.host_addrs.keys().filter_map(Result::ok).collect();
        for k in have.iter().filter(|k| !want.contains(k)) {
            removed(map_names::HOST_ADDRS, self.host_addrs.remove(k))?;
        }
        for k in want.iter().filter(|k| !have.contains(k)) {
            self.host_addrs.insert(k, 1, 0).map_err(err)?;
        }
        Ok(())
    }
}
