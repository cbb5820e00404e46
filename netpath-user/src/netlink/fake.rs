//! [`LinkOps`] in memory, with the same fault injection as the fake datapath.
use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
};

use super::{netns::NetnsError, EndpointLink, EndpointLinkSpec, LinkOps, NetError};
use crate::{
    faults::{Faults, FaultsHandle},
    ipam::Subnet,
    model::NetnsId,
};

/// A field comparisons ignore (a counter, not state).
#[derive(Clone, Debug, Default)]
pub struct Ignored<T>(pub T);

impl<T> PartialEq for Ignored<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<T> Eq for Ignored<T> {}

/// One veth pair the fake made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeVeth {
    pub link: EndpointLink,
    pub netns: PathBuf,
    pub ifname: String,
    pub ip: Option<Ipv4Addr>,
    pub mtu: Option<u32>,
}

/// Links, gateways and routes as plain collections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeLinks {
    /// Host-side veths by name.
    pub veths: BTreeMap<String, FakeVeth>,
    /// Addresses on the gateway bridge.
    pub gateways: BTreeSet<IpAddr>,
    /// The host's routes (read only).
    pub routes: Vec<Subnet>,
    /// The host's other addresses (read only).
    pub addrs: BTreeSet<Ipv4Addr>,
    /// Uplinks by name (read only).
    pub uplinks: BTreeMap<String, (u32, Ipv4Addr)>,
    /// Host ports processes hold (read only).
    pub busy_ports: BTreeSet<u16>,
    next_ifindex: Ignored<u32>,
    faults: FaultsHandle,
}

impl FakeLinks {
    pub fn new(faults: Faults) -> FakeLinks {
        FakeLinks {
            next_ifindex: Ignored(100),
            faults: FaultsHandle(faults),
            ..Default::default()
        }
    }

    fn step(&self, what: &str) -> Result<(), NetError> {
        self.faults.0.step(what).map_err(|what| NetError {
            what,
            detail: "injected failure".into(),
        })
    }
}

impl LinkOps for FakeLinks {
    fn create_endpoint(&mut self, spec: &EndpointLinkSpec<'_>) -> Result<EndpointLink, NetError> {
        self.step("create_endpoint")?;
        if self.veths.contains_key(spec.host_ifname) {
            return Err(NetError {
                what: format!("creating veth {}", spec.host_ifname),
                detail: "File exists (os error 17)".into(),
            });
        }
        // Like the kernel's, indexes are not reused.
        self.next_ifindex.0 += 1;
        let link = EndpointLink {
            ifindex: self.next_ifindex.0,
            host_mac: [0x0a, 0, 0, 0, 0, self.next_ifindex.0 as u8],
        };
        self.veths.insert(
            spec.host_ifname.to_string(),
            FakeVeth {
                link,
                netns: spec.netns.to_path_buf(),
                ifname: spec.ifname.to_string(),
                ip: spec.v4.map(|(ip, _, _)| ip),
                mtu: spec.mtu,
            },
        );
        Ok(link)
    }
    fn delete_link(&mut self, name: &str) -> Result<(), NetError> {
        self.step("delete_link")?;
        self.veths.remove(name);
        Ok(())
    }
    fn add_gateway(&mut self, addr: IpAddr) -> Result<bool, NetError> {
        self.step("add_gateway")?;
        Ok(self.gateways.insert(addr))
    }
    fn remove_gateway(&mut self, addr: IpAddr) -> Result<(), NetError> {
        self.step("remove_gateway")?;
        self.gateways.remove(&addr);
        Ok(())
    }
    fn route_subnets(&self) -> Result<Vec<Subnet>, NetError> {
        Ok(self.routes.clone())
    }
    fn host_addrs(&self) -> Result<HashSet<Ipv4Addr>, NetError> {
        let gateways = self.gateways.iter().filter_map(|g| match g {
            IpAddr::V4(g) => Some(*g),
            IpAddr::V6(_) => None,
        });
        Ok(self.addrs.iter().copied().chain(gateways).collect())
    }
    fn link_ipv4(&self, name: &str) -> Result<Option<(u32, Ipv4Addr)>, NetError> {
        Ok(self.uplinks.get(name).copied())
    }
    fn endpoint_links(&self) -> Result<std::collections::BTreeMap<String, EndpointLink>, NetError> {
        Ok(self
            .veths
            .iter()
            .map(|(name, v)| (name.clone(), v.link))
            .collect())
    }
    /// A namespace here is any existing file; its identity is its inode.
    fn netns_id(&self, path: &std::path::Path) -> Result<NetnsId, NetnsError> {
        use std::os::unix::fs::MetadataExt as _;
        let md =
            std::fs::metadata(path).map_err(|_| NetnsError::Missing(path.display().to_string()))?;
        Ok(NetnsId {
            dev: md.dev(),
            ino: md.ino(),
        })
    }
    fn own_netns(&self) -> Result<NetnsId, NetnsError> {
        Ok(NetnsId { dev: 0, ino: 1 })
    }
    fn port_busy(&self, m: &crate::ports::PortMapping) -> bool {
        self.busy_ports.contains(&m.host_port)
    }
    fn bound_ports(&self) -> Option<std::collections::HashSet<(crate::ports::Proto, u16)>> {
        use crate::ports::Proto;
        Some(
            self.busy_ports
                .iter()
                .flat_map(|p| [(Proto::Tcp, *p), (Proto::Udp, *p)])
                .collect(),
        )
    }
}
