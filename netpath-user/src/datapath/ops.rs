//! [`DatapathOps`]: what the agent asks of the datapath, by intent, and the kernel's answer
//! to it ([`Datapath`], whose intent methods live in the module of each kernel concern).
//! [`super::fake::FakeDatapath`] is the other implementation, in memory, for unit tests.
use std::{
    collections::HashSet,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsFd,
};

use netpath_common::{map_names, PortStats};

use super::{
    anyport::{AnyPortKey, AnyPortTarget},
    be_port, links, migrate, sync, sys, AttachmentEntry, Content, Datapath, DatapathError,
    DatapathStats, Hook, HookReport, Hooks, LinkState, OverlayContent, SyncReport,
};
use crate::{
    model::Network,
    policy::{Compiled, PublishedFrom},
};

/// What flow expiry removed, and what is left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    pub published: usize,
    pub outbound: usize,
    pub published_left: usize,
    pub outbound_left: usize,
}

/// A map pinned in the pin directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedMap {
    /// Its pin's name (`FLOWS`, or `FLOWS@old` while set aside).
    pub name: String,
    pub id: u32,
    pub capacity: u32,
    /// Set aside at load (see [`migrate`]), until every hook runs this build's programs.
    pub set_aside: bool,
}

/// What the agent asks of the datapath, by intent. Every change either happens whole or
/// returns an error having changed nothing; removing what is absent is not an error.
pub trait DatapathOps: Send {
    /// Publishes `key` (address `0.0.0.0` or `::`: every host address of that family) to
    /// `target`, both as the agent holds them ([`AnyPortKey`]: IPv4 mapped).
    fn publish(&mut self, key: AnyPortKey, target: AnyPortTarget) -> Result<(), DatapathError>;
    /// Stops publishing `key`.
    fn unpublish(&mut self, key: &AnyPortKey) -> Result<(), DatapathError>;
    /// Replaces the set of host addresses of both families (where a publish on every
    /// address answers).
    fn set_host_addrs(
        &mut self,
        addrs: &HashSet<Ipv4Addr>,
        addrs6: &HashSet<Ipv6Addr>,
    ) -> Result<(), DatapathError>;
    /// Removes the published flows of host-side veth `ifindex` through `ports`; how many.
    fn flush_flows_of(&mut self, ifindex: u32, ports: &[AnyPortKey]) -> usize;
    /// Removes every flow of an interface going away (published and outbound); how many.
    fn flush_interface_flows(&mut self, ifindex: u32, addr: Ipv4Addr) -> usize;
    /// Removes every flow of interfaces not in `live` (after a restart); how many.
    fn flush_flows_except(&mut self, live: &HashSet<u32>) -> usize;
    /// Makes `uplinks` (ifindex → address) the sources of outbound NAT.
    fn set_uplinks(&mut self, uplinks: &[(u32, Ipv4Addr)]) -> Result<(), DatapathError>;
    /// Makes `uplinks` (ifindex → global IPv6 address) the sources of IPv6's outbound NAT.
    fn set_uplinks6(
        &mut self,
        _uplinks: &[(u32, std::net::Ipv6Addr)],
    ) -> Result<(), DatapathError> {
        Ok(())
    }
    /// Makes the published ports' firewall `list` and removes the flows of clients it no
    /// longer lets in; how many.
    fn set_published_from(&mut self, list: &PublishedFrom) -> Result<usize, DatapathError>;
    /// Makes the policy maps hold `c` and ends the connections it denies; how many.
    fn set_policy(&mut self, c: &Compiled) -> Result<usize, DatapathError>;
    /// The identities the policy maps hold now, by prefix of either family (an earlier
    /// agent's, at start).
    fn policy_identities(&self) -> Vec<(crate::policy::Prefix, u32)>;
    /// Removes flows idle past their timeout at `now` (CLOCK_MONOTONIC ns).
    fn expire(&mut self, now: u64) -> Expired;
    /// Writes a network (flags, subnet, gateways, host-loopback ports); members are kept.
    fn add_network(&mut self, net: &Network) -> Result<(), DatapathError>;
    /// Removes a network, its subnet, member slots and host-loopback ports.
    fn remove_network(&mut self, net: &Network) -> Result<(), DatapathError>;
    /// The member interfaces of network `net_id`, in slot order.
    fn members(&self, net_id: u32) -> Vec<u32>;
    /// Makes `ifindexes` the members of network `net_id` (for broadcasts).
    fn set_members(&mut self, net_id: u32, ifindexes: &[u32]) -> Result<(), DatapathError>;
    /// Writes one attachment of an endpoint to a network: by veth and by address.
    fn add_attachment(&mut self, entry: &AttachmentEntry) -> Result<(), DatapathError>;
    /// Removes an attachment's entries.
    fn remove_attachment(&mut self, entry: &AttachmentEntry) -> Result<(), DatapathError>;
    /// Runs the endpoint program at the host-side veth `ifname` (a pinned link).
    fn attach_endpoint(&mut self, ifname: &str) -> Result<(), DatapathError>;
    /// Takes it away.
    fn detach_endpoint(&mut self, ifname: &str) -> Result<(), DatapathError>;
    /// Makes every map the agent writes hold exactly `content`, changing only what differs
    /// (traffic keeps flowing through entries that stay).
    fn sync(&mut self, content: &Content) -> Result<SyncReport, DatapathError>;
    /// Makes the overlay maps (other nodes' endpoints) hold exactly `content`; how many
    /// entries changed.
    fn sync_overlay(&mut self, content: &OverlayContent) -> Result<usize, DatapathError>;
    /// Makes exactly `want` the hooks netpath runs at (socket hooks for the namespace with
    /// `netns_cookie`): pinned links adopted and swapped to this build's programs, missing
    /// ones attached, others detached.
    fn ensure_hooks(
        &mut self,
        want: &Hooks,
        netns_cookie: u64,
    ) -> Result<HookReport, DatapathError>;
    /// The pinned links and their state.
    fn links(&self) -> Vec<LinkState>;
    /// This build's programs as loaded: name, id and tag.
    fn programs(&self) -> Vec<(&'static str, sys::ProgInfo)>;
    /// Makes the DNS fast path answer exactly `names` (by network and name).
    fn set_dns_names(&mut self, names: &super::dns::KernelNames) -> Result<(), DatapathError>;
    /// The maps pinned in the pin directory (those set aside too).
    fn pinned_maps(&self) -> Vec<PinnedMap>;
    /// Every published port in the maps, with its target, as this process wrote them.
    fn published(&self) -> Vec<(AnyPortKey, AnyPortTarget)>;
    /// [`published`](Self::published) read from the maps themselves, whatever else wrote
    /// them (what the health check compares with the state).
    fn published_in_maps(&self) -> Vec<(AnyPortKey, AnyPortTarget)> {
        self.published()
    }
    /// What the published port counting into `slot` received (all CPUs).
    fn port_stats(&self, slot: u16) -> PortStats;
    /// Zeroes the counters of `slots` (before ports are given them).
    fn reset_port_stats(&mut self, slots: &[u16]);
    /// What the datapath reports to monitors (`netpath_common::monitor` flags; 0: nothing).
    fn set_monitor(&mut self, flags: u32) -> Result<(), DatapathError>;
    /// Makes exactly `ports` (protocol, host port) the published ports host sockets may
    /// bind: their runtime holds them itself.
    fn set_bind_allowed(&mut self, _ports: &HashSet<(u8, u16)>) -> Result<(), DatapathError> {
        Ok(())
    }
    /// Drops what was set aside at load once every hook runs this build's programs.
    fn finish_migrations(&mut self) {}
    /// Counters and map occupancy.
    fn stats(&self) -> DatapathStats;
}

impl DatapathOps for Datapath {
    fn publish(&mut self, key: AnyPortKey, target: AnyPortTarget) -> Result<(), DatapathError> {
        Datapath::publish_any(self, &key, &target)
    }
    fn unpublish(&mut self, key: &AnyPortKey) -> Result<(), DatapathError> {
        Datapath::unpublish_any(self, key)
    }
    fn set_host_addrs(
        &mut self,
        addrs: &HashSet<Ipv4Addr>,
        addrs6: &HashSet<Ipv6Addr>,
    ) -> Result<(), DatapathError> {
        Datapath::set_host_addrs(self, addrs)?;
        Datapath::set_host_addrs6(self, addrs6)
    }
    fn flush_flows_of(&mut self, ifindex: u32, ports: &[AnyPortKey]) -> usize {
        Datapath::flush_flows_of_any(self, ifindex, ports)
    }
    fn flush_interface_flows(&mut self, ifindex: u32, addr: Ipv4Addr) -> usize {
        Datapath::flush_interface_flows(self, ifindex, addr)
            + Datapath::flush_outbound_of(self, ifindex)
    }
    fn flush_flows_except(&mut self, live: &HashSet<u32>) -> usize {
        Datapath::flush_flows_except(self, live) + Datapath::flush_outbound_except(self, live)
    }
    fn set_uplinks(&mut self, uplinks: &[(u32, Ipv4Addr)]) -> Result<(), DatapathError> {
        Datapath::set_uplinks(self, uplinks)
    }
    fn set_uplinks6(&mut self, uplinks: &[(u32, std::net::Ipv6Addr)]) -> Result<(), DatapathError> {
        Datapath::set_uplinks6(self, uplinks)
    }
    fn set_published_from(&mut self, list: &PublishedFrom) -> Result<usize, DatapathError> {
        Datapath::set_published_from(self, list)
    }
    fn set_policy(&mut self, c: &Compiled) -> Result<usize, DatapathError> {
        Datapath::set_policy(self, c)
    }
    fn policy_identities(&self) -> Vec<(crate::policy::Prefix, u32)> {
        Datapath::policy_identities(self)
    }
    fn expire(&mut self, now: u64) -> Expired {
        let (published, published_left) = Datapath::expire_flows(self, now);
        let (outbound, outbound_left) = Datapath::expire_outbound(self, now);
        Expired {
            published,
            outbound,
            published_left,
            outbound_left,
        }
    }
    fn add_network(&mut self, net: &Network) -> Result<(), DatapathError> {
        Datapath::add_network(self, net)
    }
    fn remove_network(&mut self, net: &Network) -> Result<(), DatapathError> {
        Datapath::remove_network(self, net)
    }
    fn members(&self, net_id: u32) -> Vec<u32> {
        Datapath::members(self, net_id)
    }
    fn set_members(&mut self, net_id: u32, ifindexes: &[u32]) -> Result<(), DatapathError> {
        Datapath::set_members(self, net_id, ifindexes)
    }
    fn add_attachment(&mut self, entry: &AttachmentEntry) -> Result<(), DatapathError> {
        Datapath::add_attachment(self, entry)
    }
    fn remove_attachment(&mut self, entry: &AttachmentEntry) -> Result<(), DatapathError> {
        Datapath::remove_attachment(self, entry)
    }
    fn attach_endpoint(&mut self, ifname: &str) -> Result<(), DatapathError> {
        self.ensure_link(&Hook::Endpoint(ifname.to_string()))
            .map(drop)
    }
    fn detach_endpoint(&mut self, ifname: &str) -> Result<(), DatapathError> {
        self.remove_link(&Hook::Endpoint(ifname.to_string()))
    }
    fn sync(&mut self, content: &Content) -> Result<SyncReport, DatapathError> {
        Datapath::sync(self, content)
    }
    fn sync_overlay(&mut self, content: &OverlayContent) -> Result<usize, DatapathError> {
        Datapath::sync_overlay(self, content)
    }
    fn ensure_hooks(
        &mut self,
        want: &Hooks,
        netns_cookie: u64,
    ) -> Result<HookReport, DatapathError> {
        Datapath::ensure_hooks(self, want, netns_cookie)
    }
    fn links(&self) -> Vec<LinkState> {
        Datapath::links(self)
    }
    fn programs(&self) -> Vec<(&'static str, sys::ProgInfo)> {
        self.loaded.iter().map(|(n, p)| (*n, p.clone())).collect()
    }
    fn set_dns_names(&mut self, names: &super::dns::KernelNames) -> Result<(), DatapathError> {
        Datapath::set_dns_names(self, names).map(drop)
    }
    fn pinned_maps(&self) -> Vec<PinnedMap> {
        let Some(dir) = &self.pin_dir else {
            return Vec::new();
        };
        links::pinned_names(dir)
            .into_iter()
            .filter_map(|name| {
                let fd = sys::obj_get(&dir.join(&name)).ok()?;
                let info = sys::map_info(fd.as_fd()).ok()?;
                Some(PinnedMap {
                    set_aside: name.ends_with(migrate::SET_ASIDE),
                    name,
                    id: info.id,
                    capacity: info.max_entries,
                })
            })
            .collect()
    }
    fn finish_migrations(&mut self) {
        Datapath::finish_migrations(self)
    }
    fn published(&self) -> Vec<(AnyPortKey, AnyPortTarget)> {
        Datapath::published_any_known(self)
    }
    fn published_in_maps(&self) -> Vec<(AnyPortKey, AnyPortTarget)> {
        Datapath::published_any(self)
    }
    fn port_stats(&self, slot: u16) -> PortStats {
        Datapath::port_stats(self, slot)
    }
    fn reset_port_stats(&mut self, slots: &[u16]) {
        Datapath::reset_port_stats(self, slots)
    }
    fn set_bind_allowed(&mut self, ports: &HashSet<(u8, u16)>) -> Result<(), DatapathError> {
        let want: std::collections::HashMap<u32, u8> = ports
            .iter()
            .map(|(proto, port)| (netpath_common::port_any_index(*proto, be_port(*port)), 1))
            .collect();
        sync::sync_hash(map_names::BIND_ALLOWED, &mut self.bind_allowed, &want).map(drop)
    }
    fn set_monitor(&mut self, flags: u32) -> Result<(), DatapathError> {
        self.monitor
            .set(0, flags, 0)
            .map_err(|e| DatapathError::Map(map_names::MONITOR, e))
    }
    fn stats(&self) -> DatapathStats {
        Datapath::stats(self)
    }
}
