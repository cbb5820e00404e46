//! Published ports (kernel: `ports.rs`): `PORTS` for a publish on one host address,
//! `PORTS_ANY` (an array slot per protocol and port) for a publish on every host address, and
//! `HOST_ADDRS`, the addresses where the latter answer.
use std::{collections::HashSet, net::Ipv4Addr};

use netpath_common::{map_names, port_any_index, port_any_key, PortKey, PortTarget};

use super::{be_addr, removed, Datapath, DatapathError};

impl Datapath {
    /// Publishes `key` (address 0: every host address) to `target`.
    pub fn publish(&mut self, key: PortKey, target: PortTarget) -> Result<(), DatapathError> {
        if key.addr == 0 {
            self.ports_any
                .set(port_any_index(key.proto, key.port), target, 0)
                .map_err(|e| DatapathError::Map(map_names::PORTS_ANY, e))
        } else {
            self.ports
                .insert(key, target, 0)
                .map_err(|e| DatapathError::Map(map_names::PORTS, e))
        }
    }

    /// Stops publishing `key`.
    pub fn unpublish(&mut self, key: &PortKey) -> Result<(), DatapathError> {
        if key.addr == 0 {
            self.ports_any
                .set(
                    port_any_index(key.proto, key.port),
                    PortTarget::default(),
                    0,
                )
                .map_err(|e| DatapathError::Map(map_names::PORTS_ANY, e))
        } else {
            removed(map_names::PORTS, self.ports.remove(key))
        }
    }

    /// Every published port in the maps, with its target.
    pub fn published(&self) -> Vec<(PortKey, PortTarget)> {
        let mut out: Vec<(PortKey, PortTarget)> = self.scan(map_names::PORTS, &self.whole.ports);
        let any: Vec<(u32, PortTarget)> = self.scan(map_names::PORTS_ANY, &self.whole.ports_any);
        out.extend(
            any.into_iter()
                .filter(|(_, t)| t.ifindex != 0)
                .map(|(idx, t)| {
                    let (proto, port) = port_any_key(idx);
                    let key = PortKey {
                        addr: 0,
                        port,
                        proto,
                        _pad: 0,
                    };
                    (key, t)
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
