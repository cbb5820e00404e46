//! Links, addresses and routes over rtnetlink, in the agent's namespace or an endpoint's.
//!
//! Each call opens its own netlink socket on a dedicated thread, which first enters the
//! requested network namespace (namespaces are per thread), so nothing else the agent does
//! ever runs in an endpoint's namespace. The agent reaches this module through [`LinkOps`]
//! ([`Netlink`] here, [`fake::FakeLinks`] in unit tests).
use std::{
    collections::{BTreeMap, HashSet},
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkUnspec};

use crate::{
    ipam::Subnet,
    model::NetnsId,
    ports::{PortMapping, Proto},
};

mod addrs;
mod endpoint;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod netns;

pub use addrs::{
    add_gateway, default_route_interface, host_addrs, is_link_local6, link_ipv4, link_ipv6,
    remove_gateway, route_subnets,
};
pub(crate) use addrs::{default_route6_oif, default_route_oif};
pub use endpoint::{create_endpoint, handover_name, set_gro, EndpointLink, EndpointLinkSpec};

/// What the agent changes and reads of links, addresses and routes.
pub trait LinkOps: Send {
    /// Creates an endpoint's veth pair and configures both ends ([`create_endpoint`]); on
    /// failure nothing is left.
    fn create_endpoint(&mut self, spec: &EndpointLinkSpec<'_>) -> Result<EndpointLink, NetError>;
    /// Deletes the link `name` in the agent's namespace (absent is fine).
    fn delete_link(&mut self, name: &str) -> Result<(), NetError>;
    /// Puts `addr` on the gateway bridge; true when it was not there before.
    fn add_gateway(&mut self, addr: IpAddr) -> Result<bool, NetError>;
    /// Removes `addr` from the gateway bridge (absent is fine).
    fn remove_gateway(&mut self, addr: IpAddr) -> Result<(), NetError>;
    /// Destinations of the main routing table.
    fn route_subnets(&self) -> Result<Vec<Subnet>, NetError>;
    /// Every IPv4 address of the agent's namespace.
    fn host_addrs(&self) -> Result<HashSet<Ipv4Addr>, NetError>;
    /// Every IPv6 address of the agent's namespace and the main IPv6 table's destinations.
    fn host_view6(&self) -> Result<(Vec<Ipv6Addr>, Vec<Subnet<Ipv6Addr>>), NetError> {
        Ok(Default::default())
    }
    /// Every IPv6 address of the agent's namespace (no link-local one).
    fn host_addrs6(&self) -> Result<Vec<Ipv6Addr>, NetError> {
        Ok(self.host_view6()?.0)
    }
    /// Index and first IPv4 address of the link `name`.
    fn link_ipv4(&self, name: &str) -> Result<Option<(u32, Ipv4Addr)>, NetError>;
    /// Index and first global IPv6 address of the link `name`.
    fn link_ipv6(&self, _name: &str) -> Result<Option<(u32, Ipv6Addr)>, NetError> {
        Ok(None)
    }
    /// Every veth here named as netpath names endpoints' host sides (`np` and hex digits),
    /// by name, in one dump.
    fn endpoint_links(&self) -> Result<BTreeMap<String, EndpointLink>, NetError>;
    /// The identity of the network namespace at `path` (checked without blocking).
    fn netns_id(&self, path: &Path) -> Result<NetnsId, netns::NetnsError>;
    /// The identity of the agent's own network namespace.
    fn own_netns(&self) -> Result<NetnsId, netns::NetnsError>;
    /// Whether a process of the host holds the address and port `m` would publish.
    fn port_busy(&self, m: &PortMapping) -> bool;
    /// The ports some socket of the host holds, by protocol, read at once: only these can be
    /// busy, so a range of thousands is probed where a socket is, not port by port. None
    /// when the socket tables cannot be read (every port is probed).
    fn bound_ports(&self) -> Option<HashSet<(Proto, u16)>> {
        None
    }
}

/// Whether `name` is one netpath gives an endpoint's host-side veth: `np`, then 10 hex
/// digits of the endpoint's id, then an optional slot digit.
pub fn is_endpoint_veth_name(name: &str) -> bool {
    name.strip_prefix("np").is_some_and(|rest| {
        (10..=11).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// [`LinkOps`] over rtnetlink; gateways live on the port-less bridge `bridge`.
#[derive(Clone, Debug)]
pub struct Netlink {
    pub bridge: String,
}

impl LinkOps for Netlink {
    fn create_endpoint(&mut self, spec: &EndpointLinkSpec<'_>) -> Result<EndpointLink, NetError> {
        create_endpoint(spec)
    }
    fn delete_link(&mut self, name: &str) -> Result<(), NetError> {
        delete_link(None, name)
    }
    fn add_gateway(&mut self, addr: IpAddr) -> Result<bool, NetError> {
        add_gateway(&self.bridge, addr)
    }
    fn remove_gateway(&mut self, addr: IpAddr) -> Result<(), NetError> {
        remove_gateway(&self.bridge, addr)
    }
    fn host_view6(&self) -> Result<(Vec<Ipv6Addr>, Vec<Subnet<Ipv6Addr>>), NetError> {
        addrs::host_view6()
    }
    fn host_addrs6(&self) -> Result<Vec<Ipv6Addr>, NetError> {
        addrs::host_addrs6()
    }
    fn route_subnets(&self) -> Result<Vec<Subnet>, NetError> {
        route_subnets()
    }
    fn host_addrs(&self) -> Result<HashSet<Ipv4Addr>, NetError> {
        host_addrs()
    }
    fn link_ipv4(&self, name: &str) -> Result<Option<(u32, Ipv4Addr)>, NetError> {
        link_ipv4(name)
    }
    fn link_ipv6(&self, name: &str) -> Result<Option<(u32, Ipv6Addr)>, NetError> {
        addrs::link_ipv6(name)
    }
    fn endpoint_links(&self) -> Result<BTreeMap<String, EndpointLink>, NetError> {
        endpoint_links()
    }
    fn netns_id(&self, path: &Path) -> Result<NetnsId, netns::NetnsError> {
        netns::identify(path)
    }
    fn own_netns(&self) -> Result<NetnsId, netns::NetnsError> {
        netns::own()
    }
    fn port_busy(&self, m: &PortMapping) -> bool {
        crate::ports::busy::port_busy(m)
    }
    fn bound_ports(&self) -> Option<HashSet<(Proto, u16)>> {
        crate::ports::busy::bound_ports()
    }
}

/// Every veth of this namespace with an endpoint veth's name.
pub fn endpoint_links() -> Result<BTreeMap<String, EndpointLink>, NetError> {
    use netlink_packet_route::link::{InfoKind, LinkInfo};
    run(None, |h| async move {
        // Each message is kept only as what an endpoint veth needs, as it arrives: a host of
        // a thousand endpoints answers with megabytes of link attributes (stats, queues,
        // features) that would otherwise all be parsed and held at once, every drift check.
        h.link()
            .get()
            .execute()
            .try_filter_map(|l| async move {
                let veth = l.attributes.iter().any(|a| {
                    matches!(a, LinkAttribute::LinkInfo(infos)
                        if infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth))))
                });
                let name = link_name(&l).filter(|n| veth && is_endpoint_veth_name(n));
                Ok(name.map(|name| {
                    let link = EndpointLink {
                        ifindex: l.header.index,
                        host_mac: link_mac(&l),
                    };
                    (name, link)
                }))
            })
            .try_collect()
            .await
            .map_err(err("listing links"))
    })
}

/// A netlink or namespace failure, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct NetError {
    pub what: String,
    pub detail: String,
}

/// Every message of a netlink dump, or an error saying what was being listed.
pub(crate) async fn dump<T>(
    messages: impl futures::TryStream<Ok = T, Error = rtnetlink::Error>,
    what: impl Into<String>,
) -> Result<Vec<T>, NetError> {
    use futures::TryStreamExt as _;
    messages.try_collect().await.map_err(err(what))
}

pub(crate) fn err(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let what = what.into();
    move |e| NetError {
        what,
        detail: match &e {
            rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
            _ => e.to_string(),
        },
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let what = what.into();
    move |e| NetError {
        what,
        detail: e.to_string(),
    }
}

/// Runs `f` with a netlink handle inside `netns` (`None`: the caller's namespace), on a
/// thread of its own.
pub fn run<T, F, Fut>(netns: Option<&Path>, f: F) -> Result<T, NetError>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, NetError>>,
{
    std::thread::scope(|s| {
        s.spawn(move || {
            if let Some(path) = netns {
                let file = std::fs::File::open(path)
                    .map_err(io_err(format!("opening namespace {}", path.display())))?;
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    NetError {
                        what: format!("entering namespace {}", path.display()),
                        detail: e.to_string(),
                    }
                })?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(io_err("starting a netlink runtime"))?;
            rt.block_on(async move {
                let (conn, handle, _) =
                    rtnetlink::new_connection().map_err(io_err("opening a netlink socket"))?;
                tokio::spawn(conn);
                f(handle).await
            })
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetError {
                what: "netlink thread".into(),
                detail: "panicked".into(),
            })
        })
    })
}

/// The link named `name`, if any.
pub async fn link_by_name(h: &Handle, name: &str) -> Result<Option<LinkMessage>, NetError> {
    match h.link().get().match_name(name).execute().try_next().await {
        Ok(l) => Ok(l),
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(err(format!("looking up link {name}"))(e)),
    }
}

/// The MAC address of a link.
pub fn link_mac(link: &LinkMessage) -> [u8; 6] {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(m) if m.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(m);
                Some(mac)
            }
            _ => None,
        })
        .unwrap_or_default()
}

pub(crate) fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

/// Deletes the link `name` (a veth takes its peer with it). Absent is fine.
pub fn delete_link(netns: Option<&Path>, name: &str) -> Result<(), NetError> {
    run(netns, |h| async move {
        if let Some(l) = link_by_name(&h, name).await? {
            h.link()
                .del(l.header.index)
                .execute()
                .await
                .map_err(err(format!("deleting {name}")))?;
        }
        Ok(())
    })
}

/// Index and MAC of the link `name` here, if it exists.
pub fn link_info(name: &str) -> Result<Option<(u32, [u8; 6])>, NetError> {
    run(None, |h| async move {
        Ok(link_by_name(&h, name)
            .await?
            .map(|l| (l.header.index, link_mac(&l))))
    })
}

/// The MTU of link `name`, if it exists.
pub fn link_mtu(name: &str) -> Result<Option<u32>, NetError> {
    run(None, |h| async move {
        Ok(link_by_name(&h, name).await?.and_then(|l| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            })
        }))
    })
}

/// Makes `name` an external-mode (collect-metadata) VXLAN device on UDP `port`, up: one
/// device for every overlay network, the programs give each packet its VNI and node.
/// Returns its ifindex; an existing device of that name is kept.
pub fn ensure_vxlan(name: &str, port: u16, mtu: u32) -> Result<u32, NetError> {
    run(None, |h| async move {
        if link_by_name(&h, name).await?.is_none() {
            h.link()
                .add(
                    rtnetlink::LinkVxlan::new(name, 0)
                        .collect_metadata(true)
                        .port(port)
                        .learning(false)
                        .mtu(mtu)
                        .build(),
                )
                .execute()
                .await
                .map_err(err(format!("creating VXLAN device {name}")))?;
        }
        let link = link_by_name(&h, name).await?.ok_or_else(|| NetError {
            what: format!("VXLAN device {name}"),
            detail: "vanished".into(),
        })?;
        h.link()
            .set(LinkUnspec::new_with_index(link.header.index).up().build())
            .execute()
            .await
            .map_err(err(format!("bringing {name} up")))?;
        Ok(link.header.index)
    })
}
