//! Links, addresses and routes over rtnetlink, in the agent's namespace or an endpoint's.
//!
//! Each call opens its own netlink socket on a dedicated thread, which first enters the
//! requested network namespace (namespaces are per thread), so nothing else the agent does
//! ever runs in an endpoint's namespace. The agent reaches this module through [`LinkOps`]
//! ([`Netlink`] here, [`fake::FakeLinks`] in unit tests).
use std::{
    collections::{BTreeMap, HashSet},
    future::Future,
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

use futures::TryStreamExt;
use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage},
    link::{LinkAttribute, LinkMessage},
    route::{RouteAddress, RouteAttribute, RouteMessage},
};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, RouteMessageBuilder};

use crate::{
    ipam::Subnet,
    model::NetnsId,
    ports::{PortMapping, Proto},
};

mod endpoint;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod netns;

pub use endpoint::{create_endpoint, handover_name, set_gro, EndpointLink, EndpointLinkSpec};

/// What the agent changes and reads of links, addresses and routes.
pub trait LinkOps: Send {
    /// Creates an endpoint's veth pair and configures both ends ([`create_endpoint`]); on
    /// failure nothing is left.
    fn create_endpoint(&mut self, spec: &EndpointLinkSpec<'_>) -> Result<EndpointLink, NetError>;
    /// Deletes the link `name` in the agent's namespace (absent is fine).
    fn delete_link(&mut self, name: &str) -> Result<(), NetError>;
    /// Puts `addr` on the gateway bridge; true when it was not there before.
    fn add_gateway(&mut self, addr: Ipv4Addr) -> Result<bool, NetError>;
    /// Removes `addr` from the gateway bridge (absent is fine).
    fn remove_gateway(&mut self, addr: Ipv4Addr) -> Result<(), NetError>;
    /// Destinations of the main routing table.
    fn route_subnets(&self) -> Result<Vec<Subnet>, NetError>;
    /// Every IPv4 address of the agent's namespace.
    fn host_addrs(&self) -> Result<HashSet<Ipv4Addr>, NetError>;
    /// Index and first IPv4 address of the link `name`.
    fn link_ipv4(&self, name: &str) -> Result<Option<(u32, Ipv4Addr)>, NetError>;
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
    fn add_gateway(&mut self, addr: Ipv4Addr) -> Result<bool, NetError> {
        add_gateway(&self.bridge, addr)
    }
    fn remove_gateway(&mut self, addr: Ipv4Addr) -> Result<(), NetError> {
        remove_gateway(&self.bridge, addr)
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
        port_busy(m)
    }
    fn bound_ports(&self) -> Option<HashSet<(Proto, u16)>> {
        bound_ports()
    }
}

/// The ports of every socket in this namespace's tables (`/proc/net/{tcp,udp}{,6}`: IPv6
/// sockets count, a dual-stack listener holds the IPv4 port too). Any state counts: the
/// probe ([`port_busy`]) decides what a candidate means.
pub fn bound_ports() -> Option<HashSet<(Proto, u16)>> {
    let mut ports = HashSet::new();
    for (file, proto) in [
        ("/proc/net/tcp", Proto::Tcp),
        ("/proc/net/tcp6", Proto::Tcp),
        ("/proc/net/udp", Proto::Udp),
        ("/proc/net/udp6", Proto::Udp),
    ] {
        match std::fs::read_to_string(file) {
            Ok(text) => ports.extend(socket_table_ports(&text).map(|p| (proto, p))),
            // A kernel without IPv6 has no tcp6/udp6: nothing of it holds a port.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.ends_with('6') => {}
            Err(_) => return None,
        }
    }
    Some(ports)
}

/// The local ports of a `/proc/net/tcp`-style table (`sl local_address rem_address ...`,
/// addresses as `HEXADDR:HEXPORT`).
fn socket_table_ports(text: &str) -> impl Iterator<Item = u16> + '_ {
    text.lines().skip(1).filter_map(|line| {
        let local = line.split_whitespace().nth(1)?;
        let (_, port) = local.rsplit_once(':')?;
        u16::from_str_radix(port, 16).ok()
    })
}

/// Whether binding `m`'s host address and port fails here (Docker binds the port it
/// publishes; netpath only probes, so nothing is held). TCP probes with `SO_REUSEADDR`, so
/// only a listener (not a closed connection's TIME_WAIT) counts.
pub fn port_busy(m: &PortMapping) -> bool {
    use crate::ports::Proto;
    let ty = match m.proto {
        Proto::Tcp => libc::SOCK_STREAM,
        Proto::Udp => libc::SOCK_DGRAM,
    };
    // SAFETY: a plain socket; closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return false;
    }
    if m.proto == Proto::Tcp {
        let one: libc::c_int = 1;
        // SAFETY: valid fd and option.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: m.host_port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(m.host_ip.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a sockaddr_in of the size passed.
    let rc = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    let busy = rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EADDRINUSE);
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    busy
}

/// Every veth of this namespace with an endpoint veth's name.
pub fn endpoint_links() -> Result<BTreeMap<String, EndpointLink>, NetError> {
    use netlink_packet_route::link::{InfoKind, LinkInfo};
    run(None, |h| async move {
        let links: Vec<LinkMessage> = h
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(err("listing links"))?;
        Ok(links
            .iter()
            .filter(|l| {
                l.attributes.iter().any(|a| {
                    matches!(a, LinkAttribute::LinkInfo(infos)
                        if infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth))))
                })
            })
            .filter_map(|l| {
                let name = link_name(l)?;
                is_endpoint_veth_name(&name).then(|| {
                    let link = EndpointLink {
                        ifindex: l.header.index,
                        host_mac: link_mac(l),
                    };
                    (name, link)
                })
            })
            .collect())
    })
}

/// A netlink or namespace failure, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct NetError {
    pub what: String,
    pub detail: String,
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

/// Every IPv4 address of this namespace.
pub fn host_addrs() -> Result<HashSet<Ipv4Addr>, NetError> {
    run(None, |h| async move {
        let msgs: Vec<_> = h
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(err("listing addresses"))?;
        Ok(msgs
            .iter()
            .flat_map(|m| m.attributes.iter())
            .filter_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(v4))
                | AddressAttribute::Local(IpAddr::V4(v4)) => Some(*v4),
                _ => None,
            })
            .collect())
    })
}

const RT_TABLE_MAIN: u8 = 254;

/// Destinations of the main routing table (for choosing subnets that collide with nothing).
pub fn route_subnets() -> Result<Vec<Subnet>, NetError> {
    run(None, |h| async move {
        Ok(main_routes(&h)
            .await?
            .iter()
            .filter_map(|r| {
                let dst = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                    _ => None,
                })?;
                let p = r.header.destination_prefix_length;
                let masked = u32::from(dst)
                    & if p == 0 {
                        0
                    } else {
                        u32::MAX << (32 - u32::from(p))
                    };
                Subnet::new(masked.into(), p).ok()
            })
            .collect())
    })
}

/// The IPv4 routes of the main table.
async fn main_routes(h: &Handle) -> Result<Vec<RouteMessage>, NetError> {
    let routes: Vec<RouteMessage> = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(err("listing routes"))?;
    Ok(routes
        .into_iter()
        .filter(|r| r.header.table == RT_TABLE_MAIN)
        .collect())
}

pub(crate) async fn default_route_oif(h: &Handle) -> Result<Option<u32>, NetError> {
    Ok(main_routes(h)
        .await?
        .iter()
        .filter(|r| r.header.destination_prefix_length == 0)
        .find_map(|r| {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            })
        }))
}

/// The name of the interface of the default route.
pub fn default_route_interface() -> Result<Option<String>, NetError> {
    run(None, |h| async move {
        let Some(oif) = default_route_oif(&h).await? else {
            return Ok(None);
        };
        let link = h
            .link()
            .get()
            .match_index(oif)
            .execute()
            .try_next()
            .await
            .map_err(err("looking up the default route's interface"))?;
        Ok(link.as_ref().and_then(link_name))
    })
}

/// Puts `gw` as a /32 on the bridge `name`, creating the bridge (no ports: it only holds
/// addresses, like an idle docker0) and bringing it up when needed, so the host answers on
/// its gateways. True when the address was not there before.
pub fn add_gateway(name: &str, gw: Ipv4Addr) -> Result<bool, NetError> {
    run(None, |h| async move {
        let link = match link_by_name(&h, name).await? {
            Some(l) => l,
            None => {
                h.link()
                    .add(LinkBridge::new(name).up().build())
                    .execute()
                    .await
                    .map_err(err(format!("creating {name}")))?;
                link_by_name(&h, name).await?.ok_or_else(|| NetError {
                    what: name.into(),
                    detail: "vanished".into(),
                })?
            }
        };
        let idx = link.header.index;
        h.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
            .map_err(err(format!("bringing {name} up")))?;
        match h.address().add(idx, IpAddr::V4(gw), 32).execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => Ok(false),
            Err(e) => Err(err(format!("adding gateway {gw}"))(e)),
        }
    })
}

/// Removes the gateway address `gw` from the bridge `name` (absent is fine).
pub fn remove_gateway(name: &str, gw: Ipv4Addr) -> Result<(), NetError> {
    run(None, |h| async move {
        let Some(link) = link_by_name(&h, name).await? else {
            return Ok(());
        };
        let addrs = addresses_of(&h, link.header.index, name).await?;
        for a in addrs {
            let is_gw = a
                .attributes
                .iter()
                .any(|x| matches!(x, AddressAttribute::Address(IpAddr::V4(v4)) if *v4 == gw));
            if is_gw {
                h.address()
                    .del(a)
                    .execute()
                    .await
                    .map_err(err(format!("removing gateway {gw}")))?;
            }
        }
        Ok(())
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

/// Index and first IPv4 address of the link `name`, if it has one.
pub fn link_ipv4(name: &str) -> Result<Option<(u32, Ipv4Addr)>, NetError> {
    run(None, |h| async move {
        let Some(link) = link_by_name(&h, name).await? else {
            return Ok(None);
        };
        let idx = link.header.index;
        let msgs = addresses_of(&h, idx, name).await?;
        Ok(msgs
            .iter()
            .flat_map(|m| m.attributes.iter())
            .find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(v4)) => Some((idx, *v4)),
                _ => None,
            }))
    })
}

/// The address messages of link `index` (`name` for errors).
async fn addresses_of(h: &Handle, index: u32, name: &str) -> Result<Vec<AddressMessage>, NetError> {
    h.address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(err(format!("listing addresses of {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_tables_name_their_local_ports() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1\n   1: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 0A 0 0 0 0 0\n";
        let ports: Vec<u16> = socket_table_ports(tcp).collect();
        assert_eq!(ports, [8080, 53]);
    }

    #[test]
    fn a_socket_of_this_host_is_a_candidate_and_its_probe_says_busy() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (u, t) = (
            udp.local_addr().unwrap().port(),
            tcp.local_addr().unwrap().port(),
        );
        let bound = bound_ports().expect("socket tables readable");
        assert!(bound.contains(&(Proto::Udp, u)), "udp {u}");
        assert!(bound.contains(&(Proto::Tcp, t)), "tcp {t}");
        let m = |proto, host_port| PortMapping {
            host_ip: Ipv4Addr::LOCALHOST,
            host_port,
            container_port: 80,
            proto,
        };
        assert!(port_busy(&m(Proto::Udp, u)));
        assert!(port_busy(&m(Proto::Tcp, t)));
    }
}
