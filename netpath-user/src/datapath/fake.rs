//! In-memory test double of the datapath, with fault injection ([`Faults`]). Compiled for unit tests and with feature `testing`.
use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use super::{
    addr_of, any_addr, AnyPortKey, AnyPortTarget, AttachmentEntry, Content, DatapathError,
    DatapathOps, DatapathStats, Expired, Hook, HookReport, Hooks, LinkState, SyncReport,
};
pub use crate::faults::{Faults, FaultsHandle};
use crate::model::Network;

/// The datapath's state as plain collections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeDatapath {
    /// Published ports by (host address, host port in network order, protocol).
    pub ports: BTreeMap<(IpAddr, u16, u8), AnyPortTarget>,
    pub host_addrs: BTreeSet<Ipv4Addr>,
    pub host_addrs6: BTreeSet<Ipv6Addr>,
    pub uplinks: BTreeMap<u32, Ipv4Addr>,
    pub published_from: crate::policy::PublishedFrom,
    pub policy: crate::policy::Compiled,
    pub networks: BTreeMap<u32, Network>,
    pub members: BTreeMap<u32, Vec<u32>>,
    pub attachments: BTreeMap<u32, AttachmentEntry>,
    /// Interfaces with the endpoint program attached.
    pub attached: BTreeSet<String>,
    /// Every other hook in use (uplinks, socket hooks).
    pub hooks: BTreeSet<Hook>,
    /// What monitors asked for.
    pub monitor: u32,
    /// What the DNS fast path answers.
    pub dns_names: super::dns::KernelNames,
    /// What the overlay maps hold.
    pub overlay: super::OverlayContent,
    #[doc(hidden)]
    pub faults: FaultsHandle,
}

impl FakeDatapath {
    pub fn new(faults: Faults) -> FakeDatapath {
        FakeDatapath {
            faults: FaultsHandle(faults),
            ..Default::default()
        }
    }

    fn step(&self, what: &str) -> Result<(), DatapathError> {
        self.faults.0.step(what).map_err(DatapathError::Injected)
    }
}

fn port_key(k: &AnyPortKey) -> (IpAddr, u16, u8) {
    (addr_of(k.addr), k.port, k.proto)
}

impl DatapathOps for FakeDatapath {
    fn publish(&mut self, key: AnyPortKey, target: AnyPortTarget) -> Result<(), DatapathError> {
        self.step("publish")?;
        self.ports.insert(port_key(&key), target);
        Ok(())
    }
    fn unpublish(&mut self, key: &AnyPortKey) -> Result<(), DatapathError> {
        self.step("unpublish")?;
        self.ports.remove(&port_key(key));
        Ok(())
    }
    fn set_host_addrs(
        &mut self,
        addrs: &HashSet<Ipv4Addr>,
        addrs6: &HashSet<Ipv6Addr>,
    ) -> Result<(), DatapathError> {
        self.step("set_host_addrs")?;
        self.host_addrs = addrs.iter().copied().collect();
        self.host_addrs6 = addrs6.iter().copied().collect();
        Ok(())
    }
    fn flush_flows_of(&mut self, _: u32, _: &[AnyPortKey]) -> usize {
        0
    }
    fn flush_interface_flows(&mut self, _: u32, _: Ipv4Addr) -> usize {
        0
    }
    fn flush_flows_except(&mut self, _: &HashSet<u32>) -> usize {
        0
    }
    fn set_uplinks(&mut self, uplinks: &[(u32, Ipv4Addr)]) -> Result<(), DatapathError> {
        self.step("set_uplinks")?;
        self.uplinks = uplinks.iter().copied().collect();
        Ok(())
    }
    fn set_published_from(
        &mut self,
        list: &crate::policy::PublishedFrom,
    ) -> Result<usize, DatapathError> {
        self.step("set_published_from")?;
        self.published_from = list.clone();
        Ok(0)
    }
    fn policy_identities(&self) -> Vec<(crate::policy::Prefix, u32)> {
        use crate::policy::Prefix;
        let v4 = self
            .policy
            .ipcache
            .iter()
            .map(|(s, id)| (Prefix::V4(*s), *id));
        let v6 = self
            .policy
            .ipcache6
            .iter()
            .map(|(s, id)| (Prefix::V6(*s), *id));
        v4.chain(v6).collect()
    }
    fn set_policy(&mut self, c: &crate::policy::Compiled) -> Result<usize, DatapathError> {
        self.step("set_policy")?;
        self.policy = c.clone();
        Ok(0)
    }
    fn expire(&mut self, _: u64) -> Expired {
        Expired::default()
    }
    fn add_network(&mut self, net: &Network) -> Result<(), DatapathError> {
        self.step("add_network")?;
        self.networks.insert(net.net_id, net.clone());
        Ok(())
    }
    fn remove_network(&mut self, net: &Network) -> Result<(), DatapathError> {
        self.step("remove_network")?;
        self.networks.remove(&net.net_id);
        self.members.remove(&net.net_id);
        Ok(())
    }
    fn members(&self, net_id: u32) -> Vec<u32> {
        self.members.get(&net_id).cloned().unwrap_or_default()
    }
    fn set_members(&mut self, net_id: u32, ifindexes: &[u32]) -> Result<(), DatapathError> {
        if !self.networks.contains_key(&net_id) {
            return Ok(());
        }
        self.step("set_members")?;
        if ifindexes.is_empty() {
            self.members.remove(&net_id);
        } else {
            self.members.insert(net_id, ifindexes.to_vec());
        }
        Ok(())
    }
    fn add_attachment(&mut self, entry: &AttachmentEntry) -> Result<(), DatapathError> {
        self.step("add_attachment")?;
        self.attachments.insert(entry.ifindex, *entry);
        Ok(())
    }
    fn remove_attachment(&mut self, entry: &AttachmentEntry) -> Result<(), DatapathError> {
        self.step("remove_attachment")?;
        self.attachments.remove(&entry.ifindex);
        Ok(())
    }
    fn attach_endpoint(&mut self, ifname: &str) -> Result<(), DatapathError> {
        self.step("attach_endpoint")?;
        self.attached.insert(ifname.to_string());
        Ok(())
    }
    fn detach_endpoint(&mut self, ifname: &str) -> Result<(), DatapathError> {
        self.step("detach_endpoint")?;
        self.attached.remove(ifname);
        Ok(())
    }
    fn sync(&mut self, c: &Content) -> Result<SyncReport, DatapathError> {
        self.step("sync")?;
        self.ports = c.ports.iter().map(|(k, t)| (port_key(k), *t)).collect();
        self.networks = c.networks.iter().map(|n| (n.net_id, n.clone())).collect();
        self.members = c
            .members
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        self.attachments = c.attachments.iter().map(|a| (a.ifindex, *a)).collect();
        self.published_from = c.published_from.clone();
        self.policy = c.policy.clone();
        Ok(SyncReport::default())
    }
    fn sync_overlay(&mut self, c: &super::OverlayContent) -> Result<usize, DatapathError> {
        self.step("sync_overlay")?;
        self.overlay = c.clone();
        Ok(0)
    }
    fn ensure_hooks(&mut self, want: &Hooks, _: u64) -> Result<HookReport, DatapathError> {
        self.step("ensure_hooks")?;
        let all = want.all();
        self.attached = all
            .iter()
            .filter_map(|h| match h {
                Hook::Endpoint(i) => Some(i.clone()),
                _ => None,
            })
            .collect();
        self.hooks = all
            .into_iter()
            .filter(|h| !matches!(h, Hook::Endpoint(_)))
            .collect();
        Ok(HookReport::default())
    }
    fn published(&self) -> Vec<(AnyPortKey, AnyPortTarget)> {
        self.ports
            .iter()
            .map(|((addr, port, proto), t)| {
                (
                    AnyPortKey {
                        addr: any_addr(*addr),
                        port: *port,
                        proto: *proto,
                        _pad: 0,
                    },
                    *t,
                )
            })
            .collect()
    }
    fn port_stats(&self, _: u16) -> netpath_common::PortStats {
        netpath_common::PortStats::default()
    }
    fn reset_port_stats(&mut self, _: &[u16]) {}
    fn set_monitor(&mut self, flags: u32) -> Result<(), DatapathError> {
        self.monitor = flags;
        Ok(())
    }
    fn links(&self) -> Vec<LinkState> {
        self.attached
            .iter()
            .map(|i| Hook::Endpoint(i.clone()))
            .chain(self.hooks.iter().cloned())
            .map(|hook| LinkState {
                hook,
                link_id: 0,
                prog_id: 0,
                alive: true,
                current: true,
            })
            .collect()
    }
    fn programs(&self) -> Vec<(&'static str, super::sys::ProgInfo)> {
        Vec::new()
    }
    fn pinned_maps(&self) -> Vec<super::PinnedMap> {
        Vec::new()
    }
    fn set_dns_names(&mut self, names: &super::dns::KernelNames) -> Result<(), DatapathError> {
        self.dns_names = names.clone();
        Ok(())
    }
    fn stats(&self) -> DatapathStats {
        DatapathStats {
            counters: netpath_common::Counter::ALL
                .iter()
                .map(|c| (*c, 0))
                .collect(),
            published_ports: self.ports.len(),
            endpoints: self.attachments.len(),
            networks: self.networks.len(),
            ..Default::default()
        }
    }
}
