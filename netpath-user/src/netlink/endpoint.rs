//! An endpoint's interface: the veth pair, its host side here (up, a /32 route to the
//! endpoint, a /128 to its IPv6 address) and its peer in the endpoint's namespace (name, MAC,
//! addresses, default routes, GRO so it is a valid XDP_REDIRECT target).
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    path::Path,
};

use rtnetlink::{
    packet_route::{
        address::{AddressAttribute, AddressFlags},
        link::LinkMessage,
    },
    LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use super::{
    default_route6_oif, default_route_oif, delete_link, err, io_err, link_by_name, link_mac, run,
    NetError,
};

/// What `create_endpoint` made, for the datapath.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointLink {
    /// Ifindex of the host-side veth.
    pub ifindex: u32,
    /// MAC of the host-side veth.
    pub host_mac: [u8; 6],
}

/// Everything an endpoint's interface needs.
pub struct EndpointLinkSpec<'a> {
    pub host_ifname: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    /// Its IPv4 address, the subnet's prefix length and the gateway, on a network with IPv4.
    pub v4: Option<(Ipv4Addr, u8, Ipv4Addr)>,
    pub mac: [u8; 6],
    /// Its IPv6 address, the subnet's prefix length and the gateway, on a network with IPv6.
    pub v6: Option<(Ipv6Addr, u8, Ipv6Addr)>,
    /// The MTU of both sides (an overlay network's, which leaves room for VXLAN); the
    /// kernel's default when unset.
    pub mtu: Option<u32>,
    /// Add a default route via the gateway (the primary interface of a non-internal network).
    pub default_route: bool,
    /// Leave the peer here, named [`handover_name`], with its MAC and GRO, for a container
    /// engine to move into the container and configure (Docker's network plugin); `netns`,
    /// `ifname`, the address and the routes inside are then the engine's.
    pub handover: bool,
}

/// The name of the peer an engine takes over: `nx` and the rest of the host side's name
/// (never an endpoint veth's name, so no sweep mistakes it for one).
pub fn handover_name(host_ifname: &str) -> String {
    format!("nx{}", host_ifname.get(2..).unwrap_or(host_ifname))
}

/// The link named `name` in `h`'s namespace, which must exist (`what` names it in errors).
async fn existing(
    h: &rtnetlink::Handle,
    name: &str,
    what: &str,
    detail: &str,
) -> Result<netlink_packet_route::link::LinkMessage, NetError> {
    link_by_name(h, name).await?.ok_or_else(|| NetError {
        what: format!("{what} {name}"),
        detail: detail.into(),
    })
}

/// The host side of an endpoint's veth (index `idx`): up, with a /32 route to the endpoint
/// (and a /128 to its IPv6 address).
async fn host_side_up(
    h: &rtnetlink::Handle,
    spec: &EndpointLinkSpec<'_>,
    idx: u32,
) -> Result<(), NetError> {
    if spec.v6.is_some() {
        // Its link-local address usable at once (no duplicate address detection on a link
        // of two): the host's neighbour solicitations for the endpoint come from it. And
        // forwarding on this interface alone: the kernel's IPv6 route lookup for eBPF
        // (outbound NAT) answers only for an interface that forwards; the host's own
        // forwarding setting (and with it its router advertisements) stays as it is.
        for (knob, value) in [("accept_dad", "0"), ("forwarding", "1")] {
            let path = format!("/proc/sys/net/ipv6/conf/{}/{knob}", spec.host_ifname);
            std::fs::write(&path, value).map_err(io_err(format!("writing {path}")))?;
        }
    }
    h.link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(err(format!("bringing {} up", spec.host_ifname)))?;
    if let Some((ip, _, _)) = spec.v4 {
        h.route()
            .add(
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(ip, 32)
                    .output_interface(idx)
                    .build(),
            )
            .replace()
            .execute()
            .await
            .map_err(err(format!("adding route to {ip}")))?;
    }
    if let Some((ip6, _, _)) = spec.v6 {
        h.route()
            .add(
                RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(ip6, 128)
                    .output_interface(idx)
                    .build(),
            )
            .replace()
            .execute()
            .await
            .map_err(err(format!("adding route to {ip6}")))?;
    }
    Ok(())
}

/// Adds the veth pair `spec.host_ifname`–`peer` with the endpoint's MTU; returns the peer.
async fn add_veth(
    h: &rtnetlink::Handle,
    spec: &EndpointLinkSpec<'_>,
    peer: &str,
) -> Result<LinkMessage, NetError> {
    let mut veth = LinkVeth::new(spec.host_ifname, peer);
    if let Some(mtu) = spec.mtu {
        veth = veth.mtu(mtu);
    }
    h.link()
        .add(veth.build())
        .execute()
        .await
        .map_err(err(format!("creating veth {}", spec.host_ifname)))?;
    existing(h, peer, "veth peer", "vanished").await
}

/// The endpoint's side of the pair (index `idx`): its MAC and MTU.
fn peer_settings(spec: &EndpointLinkSpec<'_>, idx: u32) -> LinkMessageBuilder<LinkUnspec> {
    let set = LinkUnspec::new_with_index(idx).address(spec.mac.to_vec());
    match spec.mtu {
        Some(mtu) => set.mtu(mtu),
        None => set,
    }
}

/// Creates an endpoint's veth pair with the peer left in this namespace for an engine.
fn create_handover(spec: &EndpointLinkSpec<'_>) -> Result<EndpointLink, NetError> {
    let peer = handover_name(spec.host_ifname);
    let peer = peer.as_str();
    let made = run(None, |h| async move {
        let p = add_veth(&h, spec, peer).await?;
        h.link()
            .set(peer_settings(spec, p.header.index).build())
            .execute()
            .await
            .map_err(err(format!("setting the MAC of {peer}")))?;
        set_gro(peer, true)?;
        let host = existing(&h, spec.host_ifname, "veth", "vanished").await?;
        host_side_up(&h, spec, host.header.index).await?;
        Ok(EndpointLink {
            ifindex: host.header.index,
            host_mac: link_mac(&host),
        })
    });
    if made.is_err() {
        undo_host_link(spec.host_ifname);
    }
    made
}

/// Creates the veth pair of an endpoint's interface: the host side stays here, up, with a /32
/// route to the endpoint; the peer moves into the namespace as `ifname` with its MAC, address,
/// and (when asked) a default route via the gateway. On any failure the pair is deleted again.
pub fn create_endpoint(spec: &EndpointLinkSpec<'_>) -> Result<EndpointLink, NetError> {
    if spec.handover {
        return create_handover(spec);
    }
    let peer_tmp = format!("{}c", spec.host_ifname);
    let ns_file = std::fs::File::open(spec.netns).map_err(io_err(format!(
        "opening namespace {}",
        spec.netns.display()
    )))?;
    let peer_tmp = peer_tmp.as_str();
    let host = run(None, |h| async move {
        let peer = add_veth(&h, spec, peer_tmp).await?;
        h.link()
            .set(
                LinkUnspec::new_with_index(peer.header.index)
                    .setns_by_fd(ns_file.as_raw_fd())
                    .build(),
            )
            .execute()
            .await
            .map_err(err(format!(
                "moving {peer_tmp} into {}",
                spec.netns.display()
            )))?;
        existing(&h, spec.host_ifname, "veth", "vanished").await
    });
    let host = match host {
        Ok(h) => h,
        Err(e) => {
            undo_host_link(spec.host_ifname);
            return Err(e);
        }
    };
    let inside = run(Some(spec.netns), |h| async move {
        if link_by_name(&h, spec.ifname).await?.is_some() {
            return Err(NetError {
                what: format!("namespace {}", spec.netns.display()),
                detail: format!("already has an interface named {}", spec.ifname),
            });
        }
        let peer = existing(&h, peer_tmp, "veth peer", "not found in the namespace").await?;
        let idx = peer.header.index;
        h.link()
            .set(
                peer_settings(spec, idx)
                    .name(spec.ifname.to_string())
                    .build(),
            )
            .execute()
            .await
            .map_err(err(format!("configuring {}", spec.ifname)))?;
        if let Some((ip, prefix, _)) = spec.v4 {
            h.address()
                .add(idx, IpAddr::V4(ip), prefix)
                .execute()
                .await
                .map_err(err(format!("adding {ip}/{prefix}")))?;
        }
        if let Some((ip6, prefix, _)) = spec.v6 {
            // Static, as Docker's: no duplicate address detection to wait for.
            let mut add = h.address().add(idx, IpAddr::V6(ip6), prefix);
            add.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
            add.execute()
                .await
                .map_err(err(format!("adding {ip6}/{prefix}")))?;
        }
        h.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
            .map_err(err(format!("bringing {} up", spec.ifname)))?;
        set_gro(spec.ifname, true)?;
        if let Some(lo) = link_by_name(&h, "lo").await? {
            h.link()
                .set(LinkUnspec::new_with_index(lo.header.index).up().build())
                .execute()
                .await
                .map_err(err("bringing lo up"))?;
        }
        let has_default = default_route_oif(&h).await?.is_some();
        if let (true, false, Some((_, _, gw))) = (spec.default_route, has_default, spec.v4) {
            h.route()
                .add(
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .gateway(gw)
                        .output_interface(idx)
                        .build(),
                )
                .execute()
                .await
                .map_err(err(format!("adding default route via {gw}")))?;
        }
        if let (true, Some((_, _, gw6))) = (spec.default_route, spec.v6) {
            if default_route6_oif(&h).await?.is_none() {
                h.route()
                    .add(
                        RouteMessageBuilder::<Ipv6Addr>::new()
                            .gateway(gw6)
                            .output_interface(idx)
                            .build(),
                    )
                    .execute()
                    .await
                    .map_err(err(format!("adding default route via {gw6}")))?;
            }
        }
        Ok(())
    });
    let idx = host.header.index;
    let host_side =
        inside.and_then(|()| run(None, |h| async move { host_side_up(&h, spec, idx).await }));
    match host_side {
        Ok(()) => Ok(EndpointLink {
            ifindex: host.header.index,
            host_mac: link_mac(&host),
        }),
        Err(e) => {
            undo_host_link(spec.host_ifname);
            Err(e)
        }
    }
}

/// Turns GRO on or off for `ifname` in the calling thread's namespace (ethtool ioctl).
///
/// GRO gives a veth NAPI, which is what makes it a valid XDP_REDIRECT target: frames the
/// uplink's XDP program redirects to an endpoint's host-side veth are received by its peer
/// only when that peer has NAPI (without it they are dropped silently).
pub fn set_gro(ifname: &str, on: bool) -> Result<(), NetError> {
    const ETHTOOL_SGRO: u32 = 0x0000_002c;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut EthtoolValue,
        _pad: [u8; 16],
    }
    let fail = |detail: String| NetError {
        what: format!("turning GRO on for {ifname}"),
        detail,
    };
    if ifname.len() >= libc::IFNAMSIZ {
        return Err(fail("interface name too long".into()));
    }
    let mut value = EthtoolValue {
        cmd: ETHTOOL_SGRO,
        data: u32::from(on),
    };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut value,
        _pad: [0; 16],
    };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // SAFETY: plain socket; closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(fail(std::io::Error::last_os_error().to_string()));
    }
    // SAFETY: req is a valid ifreq whose data points at a live ethtool_value.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &mut req) };
    let e = std::io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if rc < 0 {
        return Err(fail(e.to_string()));
    }
    Ok(())
}

/// Deletes the host side of a pair whose making failed; a veth that cannot be deleted is said,
/// and the next start sweeps it as an orphan.
fn undo_host_link(name: &str) {
    if let Err(e) = delete_link(None, name) {
        tracing::warn!(
            interface = name,
            "removing a half-made veth: {e}; the next start sweeps it"
        );
    }
}
