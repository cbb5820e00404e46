//! Addresses and routes: the host's addresses, the main table's destinations and default
//! route, the gateways on the bridge, a link's IPv4 address.
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use futures::TryStreamExt;
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags, AddressMessage},
    route::{RouteAddress, RouteAttribute, RouteMessage},
};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, RouteMessageBuilder};

use super::{dump, err, link_by_name, link_name, run, NetError};
use crate::ipam::Subnet;

/// The address messages of one family of this namespace (the kernel leaves the others out).
async fn addresses_of_family(
    h: &Handle,
    family: netlink_packet_route::AddressFamily,
) -> Result<Vec<AddressMessage>, NetError> {
    let mut req = h.address().get();
    req.message_mut().header.family = family;
    dump(req.execute(), "listing addresses").await
}

/// Every IPv4 address of this namespace.
pub fn host_addrs() -> Result<HashSet<Ipv4Addr>, NetError> {
    run(None, |h| async move {
        let msgs = addresses_of_family(&h, netlink_packet_route::AddressFamily::Inet).await?;
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

/// Whether `m` is an IPv6 address of link scope. Every endpoint's host-side veth gets one,
/// and nothing of the host's view keeps them: published ports are not reached at a link's
/// own address, and outbound NAT leaves with a global one.
pub fn is_link_local6(m: &AddressMessage) -> bool {
    const RT_SCOPE_LINK: u8 = 253;
    m.header.family == netlink_packet_route::AddressFamily::Inet6
        && u8::from(m.header.scope) == RT_SCOPE_LINK
}

/// The host's IPv6 addresses. Link-local addresses are left out ([`is_link_local6`]): a
/// host of a thousand endpoints filled `HOST_ADDRS6` with its veths' ones.
pub fn host_addrs6() -> Result<Vec<Ipv6Addr>, NetError> {
    run(None, |h| async move { host_addrs6_of(&h).await })
}

async fn host_addrs6_of(h: &Handle) -> Result<Vec<Ipv6Addr>, NetError> {
    let msgs = addresses_of_family(h, netlink_packet_route::AddressFamily::Inet6).await?;
    Ok(msgs
        .iter()
        .filter(|m| !is_link_local6(m))
        .flat_map(|m| m.attributes.iter())
        .filter_map(|a| match a {
            AddressAttribute::Address(IpAddr::V6(v6)) => Some(*v6),
            _ => None,
        })
        .collect())
}

/// The host's IPv6 addresses ([`host_addrs6`]) and the destinations of its main IPv6 table,
/// read at once. The table holds a route for each endpoint's veth: only plans that choose a
/// network's subnet read it.
pub fn host_view6() -> Result<(Vec<Ipv6Addr>, Vec<Subnet<Ipv6Addr>>), NetError> {
    run(None, |h| async move {
        let addrs = host_addrs6_of(&h).await?;
        let all = h
            .route()
            .get(RouteMessageBuilder::<Ipv6Addr>::new().build());
        let routes = dump(all.execute(), "listing IPv6 routes").await?;
        let routes = routes
            .iter()
            .filter(|r| r.header.table == RT_TABLE_MAIN)
            .filter_map(|r| {
                let dst = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet6(d)) => Some(*d),
                    _ => None,
                })?;
                Subnet::containing(dst, r.header.destination_prefix_length).ok()
            })
            .collect();
        Ok((addrs, routes))
    })
}

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
                Subnet::containing(dst, r.header.destination_prefix_length).ok()
            })
            .collect())
    })
}

/// The IPv4 routes of the main table.
pub(super) async fn main_routes(h: &Handle) -> Result<Vec<RouteMessage>, NetError> {
    let all = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build());
    let routes = dump(all.execute(), "listing routes").await?;
    Ok(routes
        .into_iter()
        .filter(|r| r.header.table == RT_TABLE_MAIN)
        .collect())
}

/// The output interface of the main table's IPv6 default route, if there is one.
pub(crate) async fn default_route6_oif(h: &Handle) -> Result<Option<u32>, NetError> {
    let all = h
        .route()
        .get(RouteMessageBuilder::<Ipv6Addr>::new().build());
    let routes = dump(all.execute(), "listing IPv6 routes").await?;
    Ok(routes
        .iter()
        .filter(|r| r.header.table == RT_TABLE_MAIN && r.header.destination_prefix_length == 0)
        .find_map(|r| {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            })
        }))
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

/// Puts `gw` as a /32 (IPv6: a /128, no duplicate address detection) on the bridge `name`,
/// creating the bridge (no ports: it only holds addresses, like an idle docker0) and bringing
/// it up when needed, so the host answers on its gateways. True when the address was not
/// there before.
pub fn add_gateway(name: &str, gw: IpAddr) -> Result<bool, NetError> {
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
        let mut add = h
            .address()
            .add(idx, gw, if gw.is_ipv6() { 128 } else { 32 });
        if gw.is_ipv6() {
            add.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match add.execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => Ok(false),
            Err(e) => Err(err(format!("adding gateway {gw}"))(e)),
        }
    })
}

/// Removes the gateway address `gw` from the bridge `name` (absent is fine).
pub fn remove_gateway(name: &str, gw: IpAddr) -> Result<(), NetError> {
    run(None, |h| async move {
        let Some(link) = link_by_name(&h, name).await? else {
            return Ok(());
        };
        let addrs = addresses_of(&h, link.header.index, name).await?;
        for a in addrs {
            let is_gw = a
                .attributes
                .iter()
                .any(|x| matches!(x, AddressAttribute::Address(a) if *a == gw));
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

/// Index and first IPv4 address of the link `name`, if it has one.
pub fn link_ipv4(name: &str) -> Result<Option<(u32, Ipv4Addr)>, NetError> {
    link_address(name, |m| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V4(v4)) => Some(*v4),
            _ => None,
        })
    })
}

/// Index and first global IPv6 address of the link `name` (what outbound NAT of IPv6 leaves
/// with), if it has one: no link-local, and none still in duplicate address detection.
pub fn link_ipv6(name: &str) -> Result<Option<(u32, Ipv6Addr)>, NetError> {
    const RT_SCOPE_UNIVERSE: u8 = 0;
    link_address(name, |m| {
        let usable = u8::from(m.header.scope) == RT_SCOPE_UNIVERSE
            && !m.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Flags(f)
                    if f.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed))
            });
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V6(v6)) if usable => Some(*v6),
            _ => None,
        })
    })
}

/// Index of the link `name` and the first of its addresses `pick` takes, if any.
fn link_address<T: Send + 'static>(
    name: &str,
    pick: impl Fn(&AddressMessage) -> Option<T> + Send + 'static,
) -> Result<Option<(u32, T)>, NetError> {
    run(None, |h| async move {
        let Some(link) = link_by_name(&h, name).await? else {
            return Ok(None);
        };
        let idx = link.header.index;
        let msgs = addresses_of(&h, idx, name).await?;
        Ok(msgs.iter().find_map(&pick).map(|a| (idx, a)))
    })
}

/// The address messages of link `index` (`name` for errors).
pub(super) async fn addresses_of(
    h: &Handle,
    index: u32,
    name: &str,
) -> Result<Vec<AddressMessage>, NetError> {
    let of_link = h.address().get().set_link_index_filter(index);
    dump(of_link.execute(), format!("listing addresses of {name}")).await
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::{address::AddressScope, AddressFamily};

    use super::*;

    fn address(family: AddressFamily, scope: AddressScope) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = family;
        m.header.scope = scope;
        m
    }

    #[test]
    fn only_ipv6_link_scope_addresses_are_link_local6() {
        assert!(is_link_local6(&address(
            AddressFamily::Inet6,
            AddressScope::Link
        )));
        assert!(!is_link_local6(&address(
            AddressFamily::Inet6,
            AddressScope::Universe
        )));
        // An IPv4 link-scope address (169.254/16, say) can be where a port is published.
        assert!(!is_link_local6(&address(
            AddressFamily::Inet,
            AddressScope::Link
        )));
    }
}
