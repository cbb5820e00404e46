//! An endpoint's attachments as transaction steps: the veth pair made (or adopted) and
//! entered in the datapath, removed again, a network's members, and the host's view that
//! planning reads (routes, addresses, busy ports).
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    journal::{Then, Tx, Undo},
    store::StateStore,
    Agent,
};
use crate::{
    datapath::{AttachmentEntry, DatapathOps},
    error::AgentError,
    ipam::Subnet,
    model::{plan::HostView, Attachment, Endpoint, ModelError, Network, State},
    netlink::{EndpointLink, EndpointLinkSpec, LinkOps},
    ports::PortMapping,
};

/// Busy-port probes a request makes one by one before it reads the host's socket tables.
const PROBES_BEFORE_TABLES: usize = 64;

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    /// What an attachment's veth pair is made of.
    pub(super) fn link_spec<'a>(
        &self,
        ep: &'a Endpoint,
        att: &'a Attachment,
        net: &Network,
        primary: bool,
    ) -> EndpointLinkSpec<'a> {
        EndpointLinkSpec {
            host_ifname: &att.host_ifname,
            netns: &ep.netns,
            ifname: &att.ifname,
            v4: att
                .ip
                .zip(net.v4.as_ref())
                .map(|(ip, p)| (ip, p.subnet.prefix(), p.gateway)),
            mac: att.mac,
            v6: att
                .ip6
                .zip(net.v6.as_ref())
                .map(|(ip6, p)| (ip6, p.subnet.prefix(), p.gateway)),
            // The network's own MTU (`-o mtu=`), within what an overlay's tunnel carries.
            mtu: match (net.mtu(), net.vni.and(self.host.overlay.as_ref())) {
                (Some(m), Some(o)) => Some(m.min(o.mtu)),
                (m, o) => m.or(o.map(|o| o.mtu)),
            },
            default_route: primary && !net.internal,
            handover: ep.handed_over(),
        }
    }

    /// Creates the kernel side of one attachment: veth, maps, program.
    pub(super) fn realize_attachment(
        &mut self,
        tx: &mut Tx,
        ep: &Endpoint,
        att: &Attachment,
        net: &Network,
        primary: bool,
    ) -> Result<(), AgentError> {
        let link = self
            .net
            .create_endpoint(&self.link_spec(ep, att, net, primary))?;
        tx.undo(Undo::DeleteLink(att.host_ifname.clone()));
        self.adopt_attachment(tx, att, net, link)
    }

    /// Maps and program of an attachment whose veth exists.
    pub(super) fn adopt_attachment(
        &mut self,
        tx: &mut Tx,
        att: &Attachment,
        net: &Network,
        link: EndpointLink,
    ) -> Result<(), AgentError> {
        self.links.insert(att.host_ifname.clone(), link);
        let entry = AttachmentEntry::of(att, link.ifindex, link.host_mac, net.net_id);
        self.dp
            .add_attachment(&entry)
            .map_err(|e| AgentError::internal(format!("endpoint maps: {e}")))?;
        tx.undo(Undo::RemoveAttachment(entry));
        self.dp
            .attach_endpoint(&att.host_ifname)
            .map_err(|e| AgentError::internal(format!("attaching to {}: {e}", att.host_ifname)))?;
        tx.undo(Undo::Detach(att.host_ifname.clone()));
        Ok(())
    }

    /// Takes one attachment out of the datapath; its flows and veth go after the commit.
    pub(super) fn unrealize_attachment(
        &mut self,
        tx: &mut Tx,
        att: &Attachment,
    ) -> Result<(), AgentError> {
        if let Some(link) = self.links.get(&att.host_ifname).copied() {
            self.dp.detach_endpoint(&att.host_ifname)?;
            tx.undo(Undo::Attach(att.host_ifname.clone()));
            let net_id = self
                .state
                .networks
                .get(&att.network)
                .map_or(0, |n| n.net_id);
            let entry = AttachmentEntry::of(att, link.ifindex, link.host_mac, net_id);
            self.dp.remove_attachment(&entry)?;
            tx.undo(Undo::AddAttachment(entry));
            self.links.remove(&att.host_ifname);
            tx.undo(Undo::RestoreLink(att.host_ifname.clone(), link));
            if let Some(ip) = att.ip {
                tx.then(Then::FlushInterfaceFlows(link.ifindex, ip));
            }
        }
        tx.then(Then::DeleteLink(att.host_ifname.clone()));
        Ok(())
    }

    /// Makes the member list of `network` (for broadcasts) what `next` says.
    pub(super) fn sync_members(
        &mut self,
        tx: &mut Tx,
        next: &State,
        network: &str,
    ) -> Result<(), AgentError> {
        let Some(net) = next.networks.get(network) else {
            return Ok(());
        };
        let want: Vec<u32> = next
            .members(network)
            .filter_map(|(_, a)| self.links.get(&a.host_ifname).map(|l| l.ifindex))
            .collect();
        let have = self.dp.members(net.net_id);
        let slots = keep_slots(&have, &want);
        if slots != have {
            self.dp.set_members(net.net_id, &slots)?;
            tx.undo(Undo::SetMembers(net.net_id, have));
        }
        Ok(())
    }

    // ---- transactions -----------------------------------------------------------------------

    /// The identity of the namespace a request names: it must be a network namespace, not
    /// the agent's own, and not one another endpoint already has (under any path).
    pub(super) fn check_netns(
        &self,
        path: &std::path::Path,
    ) -> Result<crate::model::NetnsId, AgentError> {
        let id = self.net.netns_id(path)?;
        if self.net.own_netns().ok() == Some(id) {
            return Err(AgentError::invalid(format!(
                "network namespace {} is the agent's own: an endpoint needs a namespace of its own",
                crate::model::echo(&path.display().to_string())
            )));
        }
        if let Some(e) = self
            .state
            .endpoints
            .values()
            .find(|e| e.netns_id == Some(id))
        {
            return Err(ModelError::NetnsInUse(path.to_path_buf(), e.name.clone()).into());
        }
        Ok(id)
    }

    /// Runs `f`, a plan of endpoints or ports, with what it needs to know of the host, read
    /// now: its addresses, and ports busy on the host (probed one by one, then through the
    /// socket tables past [`PROBES_BEFORE_TABLES`]). The routing tables are not read (the
    /// view's routes are empty): they hold a route for each endpoint's veth.
    pub(super) fn with_host<T>(
        &self,
        f: impl FnOnce(&State, HostView<'_>) -> Result<T, ModelError>,
    ) -> Result<T, AgentError> {
        let addrs6 = self.net.host_addrs6()?;
        self.host_view(Vec::new(), Vec::new(), addrs6, f)
    }

    /// [`with_host`](Self::with_host) for a plan of networks: with the routing tables.
    pub(super) fn with_host_routes<T>(
        &self,
        f: impl FnOnce(&State, HostView<'_>) -> Result<T, ModelError>,
    ) -> Result<T, AgentError> {
        let (addrs6, routes6) = self.net.host_view6()?;
        self.host_view(self.net.route_subnets()?, routes6, addrs6, f)
    }

    fn host_view<T>(
        &self,
        routes: Vec<Subnet>,
        routes6: Vec<Subnet<Ipv6Addr>>,
        addrs6: Vec<Ipv6Addr>,
        f: impl FnOnce(&State, HostView<'_>) -> Result<T, ModelError>,
    ) -> Result<T, AgentError> {
        let addrs: Vec<Ipv4Addr> = self.net.host_addrs()?.into_iter().collect();
        let net = &self.net;
        let gateways: Vec<Ipv4Addr> = self
            .state
            .networks
            .values()
            .filter_map(Network::gateway)
            .collect();
        // A few ports are probed each; past that the socket tables, read once, say which can
        // be busy (a port no socket holds is free without a probe). Reading them walks every
        // TCP connection of the host, so a request of a few ports does not.
        let probes = std::cell::Cell::new(0usize);
        let bound = std::cell::OnceCell::new();
        let busy = |m: &PortMapping| {
            probes.set(probes.get() + 1);
            if probes.get() > PROBES_BEFORE_TABLES
                && bound
                    .get_or_init(|| net.bound_ports())
                    .as_ref()
                    .is_some_and(|b| !b.contains(&(m.proto, m.host_port)))
            {
                return false;
            }
            if !net.port_busy(m) {
                return false;
            }
            // The agent's own DNS servers hold port 53 of the gateways (and keep it: the
            // datapath hands endpoints' queries to them before any publish). A publish on
            // every address is busy only when another address's port is taken.
            if m.host_port == crate::dns::server::PORT
                && m.host_ip == std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            {
                return addrs.iter().filter(|a| !gateways.contains(a)).any(|a| {
                    net.port_busy(&PortMapping {
                        host_ip: (*a).into(),
                        ..*m
                    })
                });
            }
            true
        };
        Ok(f(
            &self.state,
            HostView {
                routes: &routes,
                addrs: &addrs,
                routes6: &routes6,
                addrs6: &addrs6,
                busy: &busy,
            },
        )?)
    }
}

/// The member slots that make `have` into `want` moving the fewest: members keep their slots,
/// a slot left empty takes the last member, new members go at the end. Broadcasts go to
/// every slot, in any order.
fn keep_slots(have: &[u32], want: &[u32]) -> Vec<u32> {
    let wanted: std::collections::HashSet<u32> = want.iter().copied().collect();
    let mut slots = have.to_vec();
    // From the end, so the member a removal moves in has been kept already.
    for i in (0..slots.len()).rev() {
        if !wanted.contains(&slots[i]) {
            slots.swap_remove(i);
        }
    }
    let kept: std::collections::HashSet<u32> = slots.iter().copied().collect();
    slots.extend(want.iter().filter(|m| !kept.contains(m)));
    slots
}

#[cfg(test)]
mod tests {
    use super::keep_slots;

    #[test]
    fn members_keep_their_slots_as_others_come_and_go() {
        assert_eq!(keep_slots(&[], &[3, 1, 2]), [3, 1, 2]);
        assert_eq!(keep_slots(&[3, 1, 2], &[1, 2, 3, 4]), [3, 1, 2, 4]);
        // The last member moves into the slot of the one that left.
        assert_eq!(keep_slots(&[3, 1, 2, 4], &[1, 2, 3]), [3, 1, 2]);
        assert_eq!(keep_slots(&[3, 1, 2, 4], &[2, 3, 4]), [3, 4, 2]);
        assert_eq!(keep_slots(&[3, 1, 2, 4], &[5]), [5]);
        assert_eq!(keep_slots(&[3, 1, 2, 4], &[]), [] as [u32; 0]);
    }
}
