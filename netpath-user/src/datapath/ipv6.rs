//! IPv6's twins of the endpoint and network maps (kernel: `family.rs`, `ndp.rs`):
//! `ENDPOINTS6`, `ENDPOINTS_BY_ADDR6`, `NETWORKS6`, `SUBNETS6`, written beside IPv4's by the
//! same calls; an endpoint's IPv6 records carry the identity of its IPv4 address (one
//! endpoint, one label set), kept in step when policies change, and the IPv6 connections a new
//! policy denies (`POLICY_CT6`) are ended as IPv4's are.
use std::{
    collections::HashMap as StdHashMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use aya::{
    maps::{Array, HashMap, LpmTrie, MapData},
    Ebpf,
};
use netpath_common::{
    map_names, AddrIdentity, EndpointInfo, FlowKey, FlowNat, In6, NetworkInfo, PeerInfo, PortKey,
    PortSlot, PortTarget, SnatNat, SnatRev,
};

use super::{
    be_addr, forward::network_flags, lpm_key, removed, subnets::sync_subnets, sync::sync_hash,
    AttachmentEntry, Datapath, DatapathError,
};
use crate::{
    ipam::{Family, Pool},
    model::Network,
    policy::Compiled,
};

/// The IPv6 maps' handles.
pub(super) struct Maps6 {
    endpoints: HashMap<MapData, u32, EndpointInfo<In6>>,
    endpoints_by_addr: HashMap<MapData, In6, PeerInfo>,
    networks: HashMap<MapData, u32, NetworkInfo<In6>>,
    subnets: LpmTrie<MapData, In6, u32>,
    policy_ct: HashMap<MapData, FlowKey<In6>, u32>,
    snat: HashMap<MapData, FlowKey<In6>, SnatNat<In6>>,
    snat_rev: HashMap<MapData, FlowKey<In6>, SnatRev<In6>>,
    uplinks: HashMap<MapData, u32, In6>,
    pub(super) ports: HashMap<MapData, PortKey<In6>, PortTarget<In6>>,
    pub(super) ports_any: Array<MapData, PortSlot<In6>>,
    pub(super) port_slots: super::slots::SlotCache<In6>,
    pub(super) host_addrs: HashMap<MapData, In6, u32>,
    pub(super) flows: HashMap<MapData, FlowKey<In6>, FlowNat<In6>>,
    published_from: LpmTrie<MapData, In6, u8>,
    ipcache: HashMap<MapData, In6, AddrIdentity>,
    ipcache_prefixes: LpmTrie<MapData, In6, u32>,
}

impl Maps6 {
    pub(super) fn published_from_mut(&mut self) -> &mut LpmTrie<MapData, In6, u8> {
        &mut self.published_from
    }

    pub(super) fn subnets(&self) -> &LpmTrie<MapData, In6, u32> {
        &self.subnets
    }

    pub(super) fn subnets_mut(&mut self) -> &mut LpmTrie<MapData, In6, u32> {
        &mut self.subnets
    }

    pub(super) fn networks(&self) -> &HashMap<MapData, u32, NetworkInfo<In6>> {
        &self.networks
    }

    pub(super) fn ipcache_prefixes(&self) -> &LpmTrie<MapData, In6, u32> {
        &self.ipcache_prefixes
    }

    pub(super) fn ipcache_prefixes_mut(&mut self) -> &mut LpmTrie<MapData, In6, u32> {
        &mut self.ipcache_prefixes
    }

    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Maps6, DatapathError> {
        Ok(Maps6 {
            endpoints: super::take_map(ebpf, map_names::ENDPOINTS6)?,
            endpoints_by_addr: super::take_map(ebpf, map_names::ENDPOINTS_BY_ADDR6)?,
            networks: super::take_map(ebpf, map_names::NETWORKS6)?,
            subnets: super::take_map(ebpf, map_names::SUBNETS6)?,
            policy_ct: super::take_map(ebpf, map_names::POLICY_CT6)?,
            snat: super::take_map(ebpf, map_names::SNAT6)?,
            snat_rev: super::take_map(ebpf, map_names::SNAT_REV6)?,
            uplinks: super::take_map(ebpf, map_names::UPLINKS6)?,
            ports: super::take_map(ebpf, map_names::PORTS6)?,
            ports_any: super::take_map(ebpf, map_names::PORTS_ANY6)?,
            port_slots: super::slots::SlotCache::default(),
            host_addrs: super::take_map(ebpf, map_names::HOST_ADDRS6)?,
            flows: super::take_map(ebpf, map_names::FLOWS6)?,
            published_from: super::take_map(ebpf, map_names::PUBLISHED_FROM6)?,
            ipcache: super::take_map(ebpf, map_names::IPCACHE6)?,
            ipcache_prefixes: super::take_map(ebpf, map_names::IPCACHE_PREFIXES6)?,
        })
    }
}

/// The `NETWORKS6` value of `net`'s IPv6 pool, with `members` member slots.
fn network_info6(net: &Network, pool: &Pool<Ipv6Addr>, members: u32) -> NetworkInfo<In6> {
    let bits = u128::MAX
        .checked_shl(u32::from(128 - pool.subnet.prefix()))
        .unwrap_or(0);
    NetworkInfo {
        subnet: be_addr(pool.subnet.addr()),
        mask: Ipv6Addr::from_bits(bits).to_kernel(),
        gateway: be_addr(pool.gateway),
        flags: network_flags(net, net.routed6()),
        members,
        host_gateway: be_addr(pool.gateway),
    }
}

impl Datapath {
    /// Makes `uplinks` (ifindex → global IPv6 address) the sources of IPv6's outbound NAT.
    pub fn set_uplinks6(&mut self, uplinks: &[(u32, Ipv6Addr)]) -> Result<(), DatapathError> {
        let want = uplinks.iter().map(|(i, a)| (*i, be_addr(*a))).collect();
        sync_hash(map_names::UPLINKS6, &mut self.v6.uplinks, &want)?;
        self.set_reply_uplink(true, uplinks.iter().map(|(_, a)| (*a).into()))
    }

    /// IPv6's outbound NAT tables.
    pub(super) fn snat_tables6(&mut self) -> super::snat::Tables<'_, In6> {
        super::snat::Tables {
            snat: &mut self.v6.snat,
            snat_rev: &mut self.v6.snat_rev,
        }
    }

    /// IPv6's outbound flows by their original 5-tuple.
    pub fn outbound_flows6(&self) -> Vec<(FlowKey<In6>, SnatNat<In6>)> {
        self.v6.snat.iter().filter_map(Result::ok).collect()
    }

    /// IPv6's outbound flows by their reply's 5-tuple.
    pub(super) fn outbound_replies6(&self) -> Vec<(FlowKey<In6>, SnatRev<In6>)> {
        self.v6.snat_rev.iter().filter_map(Result::ok).collect()
    }

    /// Writes `net`'s IPv6 side (nothing for a network of IPv4 alone); its member count is
    /// IPv4's.
    pub(super) fn add_network6(
        &mut self,
        net: &Network,
        members: u32,
    ) -> Result<(), DatapathError> {
        let Some(pool) = &net.v6 else {
            return Ok(());
        };
        self.v6
            .networks
            .insert(net.net_id, network_info6(net, pool, members), 0)
            .map_err(|e| DatapathError::Map(map_names::NETWORKS6, e))
    }

    /// Removes `net`'s IPv6 side.
    pub(super) fn remove_network6(&mut self, net: &Network) -> Result<(), DatapathError> {
        removed(map_names::NETWORKS6, self.v6.networks.remove(&net.net_id))
    }

    /// Keeps `NETWORKS6`'s member count (what its broadcasts loop over) IPv4's.
    pub(super) fn set_members6(&mut self, net_id: u32, members: u32) -> Result<(), DatapathError> {
        let Ok(mut info) = self.v6.networks.get(&net_id, 0) else {
            return Ok(());
        };
        info.members = members;
        self.v6
            .networks
            .insert(net_id, info, 0)
            .map_err(|e| DatapathError::Map(map_names::NETWORKS6, e))
    }

    /// Writes an attachment's IPv6 records, with `identity` (its IPv4 address's).
    pub(super) fn add_attachment6(
        &mut self,
        e: &AttachmentEntry,
        identity: AddrIdentity,
    ) -> Result<(), DatapathError> {
        let Some(ip6) = e.ip6 else {
            return Ok(());
        };
        let (info, peer) = records6(e, ip6, identity);
        self.v6
            .endpoints
            .insert(e.ifindex, info, 0)
            .map_err(|err| DatapathError::Map(map_names::ENDPOINTS6, err))?;
        self.v6
            .endpoints_by_addr
            .insert(info.addr, peer, 0)
            .map_err(|err| DatapathError::Map(map_names::ENDPOINTS_BY_ADDR6, err))
    }

    /// Removes an attachment's IPv6 records.
    pub(super) fn remove_attachment6(&mut self, e: &AttachmentEntry) -> Result<(), DatapathError> {
        removed(map_names::ENDPOINTS6, self.v6.endpoints.remove(&e.ifindex))?;
        match e.ip6 {
            Some(ip6) => removed(
                map_names::ENDPOINTS_BY_ADDR6,
                self.v6.endpoints_by_addr.remove(&be_addr(ip6)),
            ),
            None => Ok(()),
        }
    }

    /// Makes the IPv6 maps hold exactly what `attachments` and `networks` say (members by
    /// network id as IPv4's). Returns (written, removed).
    pub(super) fn sync6(
        &mut self,
        attachments: &[AttachmentEntry],
        networks: &[Network],
        members: &std::collections::BTreeMap<u32, Vec<u32>>,
    ) -> Result<(usize, usize), DatapathError> {
        let mut eps = StdHashMap::new();
        let mut peers = StdHashMap::new();
        for a in attachments {
            if let Some(ip6) = a.ip6 {
                let identity = self.attachment_identity(be_addr(a.ip), Some(be_addr(ip6)));
                let (info, peer) = records6(a, ip6, identity);
                eps.insert(a.ifindex, info);
                peers.insert(info.addr, peer);
            }
        }
        let nets: StdHashMap<u32, NetworkInfo<In6>> = networks
            .iter()
            .filter_map(|n| {
                let count = members.get(&n.net_id).map_or(0, Vec::len) as u32;
                Some((n.net_id, network_info6(n, n.v6.as_ref()?, count)))
            })
            .collect();
        let (mut w, mut r) = sync_hash(map_names::ENDPOINTS6, &mut self.v6.endpoints, &eps)?;
        let add = |(a, b): (usize, usize), w: &mut usize, r: &mut usize| {
            *w += a;
            *r += b;
        };
        add(
            sync_hash(
                map_names::ENDPOINTS_BY_ADDR6,
                &mut self.v6.endpoints_by_addr,
                &peers,
            )?,
            &mut w,
            &mut r,
        );
        add(
            sync_hash(map_names::NETWORKS6, &mut self.v6.networks, &nets)?,
            &mut w,
            &mut r,
        );
        let want: StdHashMap<(u32, In6), u32> = networks
            .iter()
            .filter_map(|n| {
                let key = lpm_key(&n.v6.as_ref()?.subnet);
                Some(((key.prefix_len(), key.data()), n.net_id))
            })
            .collect();
        add(
            sync_subnets(
                map_names::SUBNETS6,
                &mut self.v6.subnets,
                &mut self.no_subnet,
                &want,
            )?,
            &mut w,
            &mut r,
        );
        Ok((w, r))
    }

    /// The IPv6 address of the endpoint behind `ifindex`, if its record has one.
    pub(super) fn endpoint6_addr(&self, ifindex: u32) -> Option<In6> {
        self.v6.endpoints.get(&ifindex, 0).ok().map(|i| i.addr)
    }

    /// Gives every IPv6 record the identity its endpoint's IPv4 record (`ENDPOINTS`, by the
    /// same interface) now carries, and every endpoint's IPv6 address in `IPCACHE6` its IPv4
    /// address's entry of `hosts` (the policy maps' new `IPCACHE`), so that the paths that
    /// look an identity up by address (a published port's DNAT, hairpin) find it.
    pub(super) fn restamp6(
        &mut self,
        hosts: &std::collections::BTreeMap<u32, AddrIdentity>,
    ) -> Result<(), DatapathError> {
        let of =
            |dp: &Datapath, ifindex: u32| dp.endpoints.get(&ifindex, 0).ok().map(|i| i.identity);
        let stale: Vec<(u32, EndpointInfo<In6>)> = self
            .v6
            .endpoints
            .iter()
            .filter_map(Result::ok)
            .filter(|(i, info)| of(self, *i).is_some_and(|id| id != info.identity))
            .collect();
        for (ifindex, mut info) in stale {
            info.identity = of(self, ifindex).unwrap_or(info.identity);
            self.v6
                .endpoints
                .insert(ifindex, info, 0)
                .map_err(|e| DatapathError::Map(map_names::ENDPOINTS6, e))?;
        }
        let stale: Vec<(In6, PeerInfo)> = self
            .v6
            .endpoints_by_addr
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, p)| of(self, p.ifindex).is_some_and(|id| id != p.identity))
            .collect();
        for (addr, mut peer) in stale {
            peer.identity = of(self, peer.ifindex).unwrap_or(peer.identity);
            self.v6
                .endpoints_by_addr
                .insert(addr, peer, 0)
                .map_err(|e| DatapathError::Map(map_names::ENDPOINTS_BY_ADDR6, e))?;
        }
        // Other nodes' endpoints too, by the IPv4 address their IPv6 one follows.
        let want: StdHashMap<In6, AddrIdentity> = self
            .v6
            .endpoints_by_addr
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(addr6, p)| Some((addr6, self.endpoints.get(&p.ifindex, 0).ok()?.addr)))
            .chain(self.remote_addrs6.iter().map(|(a6, a)| (*a6, *a)))
            .filter_map(|(addr6, addr)| {
                // An endpoint of IPv6 alone: its own address's identity.
                let id = match addr {
                    0 => self.identities6.get(&addr6),
                    _ => hosts.get(&addr),
                };
                Some((addr6, *id?))
            })
            .collect();
        sync_hash(map_names::IPCACHE6, &mut self.v6.ipcache, &want).map(drop)
    }

    /// Ends the IPv6 connections `c` denies, and the published flows, judged on the identities
    /// the endpoints' records carry (any other address is its ipBlock's or the world). Returns
    /// how many.
    pub(super) fn end_denied6(&mut self, c: &Compiled) -> usize {
        let ids: StdHashMap<In6, u32> = self
            .v6
            .endpoints_by_addr
            .iter()
            .filter_map(Result::ok)
            .map(|(a, p)| (a, p.identity.identity))
            .collect();
        // An endpoint's address its record's identity, any other its ipBlock's, else WORLD.
        let id = |a: &In6| {
            ids.get(a)
                .copied()
                .unwrap_or_else(|| c.identity6(Ipv6Addr::from_kernel(*a)))
        };
        let denied = |k: &FlowKey<In6>| {
            !c.admits_identities(
                id(&k.src_addr),
                id(&k.dst_addr),
                u16::from_be(k.dst_port),
                k.proto,
            )
        };
        let tracked = self.v6.policy_ct.iter().filter_map(Result::ok).collect();
        let connections = super::policy::end_tracked(&mut self.v6.policy_ct, tracked, denied);
        // A published flow is keyed by its replies: the client connected to the endpoint.
        let published = self.flush_flows::<In6>(|k, _| denied(&k.reversed())).0;
        // A NAT46 flow: an IPv6 client, by its address's identity, of an IPv4 endpoint.
        let nat46 = self.flush_nat46(|k, r, _| {
            let to = c.identity(Ipv4Addr::from_kernel(k.src_addr));
            !c.admits_identities(id(&r.client), to, u16::from_be(k.src_port), k.proto)
        });
        connections + published + nat46.0
    }
}

/// An attachment's IPv6 records: by its interface and by its address.
fn records6(
    e: &AttachmentEntry,
    ip6: Ipv6Addr,
    identity: AddrIdentity,
) -> (EndpointInfo<In6>, PeerInfo) {
    (
        EndpointInfo {
            addr: be_addr(ip6),
            network: e.net_id,
            mac: e.mac,
            host_mac: e.host_mac,
            identity,
        },
        PeerInfo {
            ifindex: e.ifindex,
            network: e.net_id,
            mac: e.mac,
            host_mac: e.host_mac,
            identity,
        },
    )
}
