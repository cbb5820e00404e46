//! The kernel side as the agent sees it: load the embedded object, pin its maps, attach
//! programs, and typed access to every map (same names as `netpath-ebpf/src/maps.rs`).
use std::{
    collections::{HashMap as StdHashMap, HashSet},
    net::Ipv4Addr,
    path::Path,
};

use aya::{
    maps::{
        lpm_trie::{Key as LpmKey, LpmTrie},
        Array, HashMap, MapData, PerCpuArray,
    },
    programs::{
        cgroup_sock_addr::CgroupSockAddrLink, tc::SchedClassifierLink, xdp::XdpLink,
        CgroupAttachMode, CgroupSockAddr, SchedClassifier, TcAttachType, Xdp,
    },
    Ebpf, EbpfLoader,
};
use netpath_common::{
    map_names, map_sizes, net_flags, port_any_index, Counter, EndpointInfo, FlowKey, FlowNat,
    LoopbackKey, MemberKey, NetworkInfo, PeerInfo, PortKey, PortTarget, SnatNat, SnatRev,
    PORTS_ANY_LEN,
};

use crate::model::Network;

/// The eBPF object built from `netpath-ebpf`, embedded in the binary.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netpath"));

/// Program names in the object (the `#[xdp]` / `#[classifier]` functions of `main.rs`).
pub mod programs {
    pub const UPLINK_XDP: &str = "netpath_uplink_xdp";
    pub const UPLINK_TC: &str = "netpath_uplink_tc";
    pub const ENDPOINT_TC: &str = "netpath_endpoint_tc";
    pub const XDP_PASS: &str = "netpath_xdp_pass";
    /// Socket hooks (cgroup v2): connect4, sendmsg4, recvmsg4, getpeername4.
    pub const SOCK: [&str; 4] = [
        "netpath_sock_connect4",
        "netpath_sock_sendmsg4",
        "netpath_sock_recvmsg4",
        "netpath_sock_getpeername4",
    ];
}

/// Errors from loading, attaching and map access.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {0}: {1}")]
    Program(&'static str, String),
    #[error("map {0}: {1}")]
    Map(&'static str, aya::maps::MapError),
    #[error("map {0} missing from the object")]
    MissingMap(&'static str),
    #[error("program {0} missing from the object")]
    MissingProgram(&'static str),
    #[error("cgroup {0}: {1}")]
    Cgroup(String, String),
}

/// How the uplink XDP fast path is attached.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum XdpMode {
    /// No XDP program: the TC program handles everything.
    Off,
    /// Native (driver) XDP.
    Native,
    /// Generic (skb) XDP.
    Generic,
}

/// Map sizes the agent asks for at load time.
#[derive(Clone, Copy, Debug)]
pub struct MapSizes {
    pub ports: u32,
    pub flows: u32,
    pub endpoints: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        MapSizes {
            ports: map_sizes::PORTS,
            flows: map_sizes::FLOWS,
            endpoints: map_sizes::ENDPOINTS,
        }
    }
}

/// The loaded object, its maps, and the links that keep programs attached.
pub struct Datapath {
    ebpf: Ebpf,
    /// Ports published on one host address; use [`Datapath::publish`] to write.
    pub ports: HashMap<MapData, PortKey, PortTarget>,
    /// Ports published on every host address; use [`Datapath::publish`] to write.
    pub ports_any: Array<MapData, PortTarget>,
    pub host_addrs: HashMap<MapData, u32, u32>,
    pub flows: HashMap<MapData, FlowKey, FlowNat>,
    pub endpoints: HashMap<MapData, u32, EndpointInfo>,
    pub endpoints_by_addr: HashMap<MapData, u32, PeerInfo>,
    pub networks: HashMap<MapData, u32, NetworkInfo>,
    pub subnets: LpmTrie<MapData, u32, u32>,
    pub members: HashMap<MapData, MemberKey, u32>,
    pub snat: HashMap<MapData, FlowKey, SnatNat>,
    pub snat_rev: HashMap<MapData, FlowKey, SnatRev>,
    pub uplinks: HashMap<MapData, u32, u32>,
    pub host_loopback: HashMap<MapData, LoopbackKey, u8>,
    pub stats: PerCpuArray<MapData, u64>,
    uplink_links: Vec<(String, SchedClassifierLink)>,
    xdp_links: Vec<(String, XdpLink)>,
    endpoint_links: StdHashMap<String, SchedClassifierLink>,
    sock_links: Vec<CgroupSockAddrLink>,
}

macro_rules! take_map {
    ($ebpf:expr, $name:expr) => {{
        let map = $ebpf
            .take_map($name)
            .ok_or(DatapathError::MissingMap($name))?;
        map.try_into().map_err(|e| DatapathError::Map($name, e))?
    }};
}

impl Datapath {
    /// Loads the embedded object; maps are pinned under (and reused from) `pin_dir`.
    pub fn load(pin_dir: Option<&Path>, sizes: MapSizes) -> Result<Self, DatapathError> {
        let mut loader = EbpfLoader::new();
        if let Some(dir) = pin_dir {
            loader.default_map_pin_directory(dir);
        }
        loader
            .map_max_entries(map_names::PORTS, sizes.ports)
            .map_max_entries(map_names::FLOWS, sizes.flows)
            .map_max_entries(map_names::SNAT, sizes.flows)
            .map_max_entries(map_names::SNAT_REV, sizes.flows)
            .map_max_entries(map_names::ENDPOINTS, sizes.endpoints)
            .map_max_entries(map_names::ENDPOINTS_BY_ADDR, sizes.endpoints)
            .map_max_entries(map_names::MEMBERS, sizes.endpoints);
        let mut ebpf = loader.load(EBPF_OBJECT)?;
        for name in [programs::UPLINK_TC, programs::ENDPOINT_TC] {
            let prog: &mut SchedClassifier = program(&mut ebpf, name)?;
            prog.load().map_err(|e| program_error(name, e))?;
        }
        for name in [programs::UPLINK_XDP, programs::XDP_PASS] {
            let prog: &mut Xdp = program(&mut ebpf, name)?;
            prog.load().map_err(|e| program_error(name, e))?;
        }
        Ok(Datapath {
            ports: take_map!(ebpf, map_names::PORTS),
            ports_any: take_map!(ebpf, map_names::PORTS_ANY),
            host_addrs: take_map!(ebpf, map_names::HOST_ADDRS),
            flows: take_map!(ebpf, map_names::FLOWS),
            endpoints: take_map!(ebpf, map_names::ENDPOINTS),
            endpoints_by_addr: take_map!(ebpf, map_names::ENDPOINTS_BY_ADDR),
            networks: take_map!(ebpf, map_names::NETWORKS),
            subnets: take_map!(ebpf, map_names::SUBNETS),
            members: take_map!(ebpf, map_names::MEMBERS),
            snat: take_map!(ebpf, map_names::SNAT),
            snat_rev: take_map!(ebpf, map_names::SNAT_REV),
            uplinks: take_map!(ebpf, map_names::UPLINKS),
            host_loopback: take_map!(ebpf, map_names::HOST_LOOPBACK),
            stats: take_map!(ebpf, map_names::STATS),
            ebpf,
            uplink_links: Vec::new(),
            xdp_links: Vec::new(),
            endpoint_links: StdHashMap::new(),
            sock_links: Vec::new(),
        })
    }

    /// The loaded TC program `name` (for attaching, or BPF_PROG_TEST_RUN in tests and bench).
    pub fn classifier(
        &mut self,
        name: &'static str,
    ) -> Result<&mut SchedClassifier, DatapathError> {
        program(&mut self.ebpf, name)
    }

    /// The loaded XDP program `name`.
    pub fn xdp(&mut self, name: &'static str) -> Result<&mut Xdp, DatapathError> {
        program(&mut self.ebpf, name)
    }

    /// Attaches the uplink programs to `ifname`: TC ingress always, XDP per `mode`.
    pub fn attach_uplink(&mut self, ifname: &str, mode: XdpMode) -> Result<(), DatapathError> {
        let link = attach_tc(
            self.classifier(programs::UPLINK_TC)?,
            programs::UPLINK_TC,
            ifname,
        )?;
        self.uplink_links.push((ifname.to_string(), link));
        let flags = match mode {
            XdpMode::Off => return Ok(()),
            XdpMode::Native => aya::programs::XdpMode::Driver,
            XdpMode::Generic => aya::programs::XdpMode::Skb,
        };
        let prog = self.xdp(programs::UPLINK_XDP)?;
        let err = |e| program_error(programs::UPLINK_XDP, e);
        let id = prog.attach(ifname, flags).map_err(err)?;
        let link = prog.take_link(id).map_err(err)?;
        self.xdp_links.push((ifname.to_string(), link));
        Ok(())
    }

    /// Attaches the socket hooks to the cgroup v2 directory `cgroup` (all of them run there
    /// beside other programs), acting only on sockets of the namespace whose cookie is
    /// `netns_cookie`.
    pub fn attach_sock_hooks(
        &mut self,
        cgroup: &Path,
        netns_cookie: u64,
    ) -> Result<(), DatapathError> {
        let mut netns: Array<&mut MapData, u64> = self
            .ebpf
            .map_mut(map_names::SOCK_NETNS)
            .ok_or(DatapathError::MissingMap(map_names::SOCK_NETNS))?
            .try_into()
            .map_err(|e| DatapathError::Map(map_names::SOCK_NETNS, e))?;
        netns
            .set(0, netns_cookie, 0)
            .map_err(|e| DatapathError::Map(map_names::SOCK_NETNS, e))?;
        let dir = std::fs::File::open(cgroup)
            .map_err(|e| DatapathError::Cgroup(cgroup.display().to_string(), e.to_string()))?;
        for name in programs::SOCK {
            let prog: &mut CgroupSockAddr = program(&mut self.ebpf, name)?;
            let err = |e| program_error(name, e);
            prog.load().map_err(err)?;
            // Through a BPF link (flags 0): cgroup links always run beside other programs.
            let id = prog.attach(&dir, CgroupAttachMode::Single).map_err(err)?;
            self.sock_links.push(prog.take_link(id).map_err(err)?);
        }
        Ok(())
    }

    /// Attaches the endpoint program to the host-side veth `ifname`.
    pub fn attach_endpoint(&mut self, ifname: &str) -> Result<(), DatapathError> {
        let link = attach_tc(
            self.classifier(programs::ENDPOINT_TC)?,
            programs::ENDPOINT_TC,
            ifname,
        )?;
        self.endpoint_links.insert(ifname.to_string(), link);
        Ok(())
    }

    /// Detaches the endpoint program from `ifname` (dropping the link detaches it).
    pub fn detach_endpoint(&mut self, ifname: &str) {
        self.endpoint_links.remove(ifname);
    }

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
            self.ports
                .remove(key)
                .map_err(|e| DatapathError::Map(map_names::PORTS, e))
        }
    }

    /// Every published port in the maps, with its target.
    pub fn published(&self) -> Vec<(PortKey, PortTarget)> {
        let mut out: Vec<(PortKey, PortTarget)> =
            self.ports.iter().filter_map(Result::ok).collect();
        for idx in 0..PORTS_ANY_LEN {
            if let Ok(t) = self.ports_any.get(&idx, 0) {
                if t.ifindex != 0 {
                    let proto = if idx >> 16 == 1 {
                        netpath_common::proto::UDP
                    } else {
                        netpath_common::proto::TCP
                    };
                    let key = PortKey {
                        addr: 0,
                        port: (idx as u16).to_be(),
                        proto,
                        _pad: 0,
                    };
                    out.push((key, t));
                }
            }
        }
        out
    }

    /// Writes a network (its flags, subnet and gateway); its member count is kept.
    pub fn add_network(&mut self, net: &Network) -> Result<(), DatapathError> {
        let mut flags = 0;
        if net.internal {
            flags |= net_flags::INTERNAL;
        }
        if !net.icc() {
            flags |= net_flags::NO_ICC;
        }
        let prefix = net.subnet.prefix();
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        };
        let members = self.networks.get(&net.net_id, 0).map_or(0, |n| n.members);
        let info = NetworkInfo {
            subnet: be_addr(net.subnet.addr()),
            mask: mask.to_be(),
            gateway: be_addr(net.gateway),
            flags,
            members,
            host_gateway: be_addr(net.host_gateway()),
        };
        self.networks
            .insert(net.net_id, info, 0)
            .map_err(|e| DatapathError::Map(map_names::NETWORKS, e))?;
        self.subnets
            .insert(&subnet_key(net), net.net_id, 0)
            .map_err(|e| DatapathError::Map(map_names::SUBNETS, e))?;
        for port in net.host_loopback_ports() {
            self.host_loopback
                .insert(loopback_key(net, port), 1, 0)
                .map_err(|e| DatapathError::Map(map_names::HOST_LOOPBACK, e))?;
        }
        Ok(())
    }

    /// Removes a network and its member slots.
    pub fn remove_network(&mut self, net: &Network) {
        let _ = self.set_members(net.net_id, &[]);
        let _ = self.networks.remove(&net.net_id);
        let _ = self.subnets.remove(&subnet_key(net));
        for port in net.host_loopback_ports() {
            let _ = self.host_loopback.remove(&loopback_key(net, port));
        }
    }

    /// Makes `ifindexes` the members of network `net_id` (slots 0..n, for broadcasts).
    pub fn set_members(&mut self, net_id: u32, ifindexes: &[u32]) -> Result<(), DatapathError> {
        let err = |e| DatapathError::Map(map_names::MEMBERS, e);
        let Ok(mut info) = self.networks.get(&net_id, 0) else {
            return Ok(());
        };
        for (slot, ifindex) in ifindexes.iter().enumerate() {
            let key = MemberKey {
                network: net_id,
                slot: slot as u32,
            };
            self.members.insert(key, ifindex, 0).map_err(err)?;
        }
        for slot in ifindexes.len() as u32..info.members {
            let _ = self.members.remove(&MemberKey {
                network: net_id,
                slot,
            });
        }
        info.members = ifindexes.len() as u32;
        self.networks
            .insert(net_id, info, 0)
            .map_err(|e| DatapathError::Map(map_names::NETWORKS, e))
    }

    /// Writes an endpoint's attachment to a network: by its veth and by its address.
    pub fn add_attachment(
        &mut self,
        ifindex: u32,
        ip: Ipv4Addr,
        mac: [u8; 6],
        host_mac: [u8; 6],
        net_id: u32,
    ) -> Result<(), DatapathError> {
        let addr = be_addr(ip);
        self.endpoints
            .insert(
                ifindex,
                EndpointInfo {
                    addr,
                    network: net_id,
                    mac,
                    host_mac,
                },
                0,
            )
            .map_err(|e| DatapathError::Map(map_names::ENDPOINTS, e))?;
        self.endpoints_by_addr
            .insert(
                addr,
                PeerInfo {
                    ifindex,
                    network: net_id,
                    mac,
                    host_mac,
                },
                0,
            )
            .map_err(|e| DatapathError::Map(map_names::ENDPOINTS_BY_ADDR, e))
    }

    /// Removes an attachment's map entries.
    pub fn remove_attachment(&mut self, ifindex: u32, ip: Ipv4Addr) {
        let _ = self.endpoints.remove(&ifindex);
        let _ = self.endpoints_by_addr.remove(&be_addr(ip));
    }

    /// Empties every map the agent writes (flows excepted: reconciling flushes those).
    pub fn clear(&mut self) {
        for (key, _) in self.published() {
            let _ = self.unpublish(&key);
        }
        clear_hash(&mut self.endpoints);
        clear_hash(&mut self.endpoints_by_addr);
        clear_hash(&mut self.members);
        clear_hash(&mut self.networks);
        clear_hash(&mut self.host_loopback);
        for k in self
            .subnets
            .keys()
            .filter_map(Result::ok)
            .collect::<Vec<_>>()
        {
            let _ = self.subnets.remove(&k);
        }
    }

    /// Replaces the set of host addresses.
    pub fn set_host_addrs(&mut self, addrs: &HashSet<Ipv4Addr>) -> Result<(), DatapathError> {
        let err = |e| DatapathError::Map(map_names::HOST_ADDRS, e);
        let want: HashSet<u32> = addrs.iter().map(|a| be_addr(*a)).collect();
        let have: Vec<u32> = self.host_addrs.keys().filter_map(Result::ok).collect();
        for k in have.iter().filter(|k| !want.contains(k)) {
            self.host_addrs.remove(k).map_err(err)?;
        }
        for k in want.iter().filter(|k| !have.contains(k)) {
            self.host_addrs.insert(k, 1, 0).map_err(err)?;
        }
        Ok(())
    }

    /// Makes `uplinks` (ifindex → address) the sources of outbound NAT.
    pub fn set_uplinks(&mut self, uplinks: &[(u32, Ipv4Addr)]) -> Result<(), DatapathError> {
        let err = |e| DatapathError::Map(map_names::UPLINKS, e);
        let want: StdHashMap<u32, u32> = uplinks.iter().map(|(i, a)| (*i, be_addr(*a))).collect();
        for k in self
            .uplinks
            .keys()
            .filter_map(Result::ok)
            .collect::<Vec<_>>()
        {
            if !want.contains_key(&k) {
                self.uplinks.remove(&k).map_err(err)?;
            }
        }
        for (i, a) in want {
            self.uplinks.insert(i, a, 0).map_err(err)?;
        }
        Ok(())
    }

    /// Removes the outbound NAT flows (both directions) whose reply side `pred` selects;
    /// returns how many.
    pub fn flush_snat(&mut self, pred: impl Fn(&SnatRev) -> bool) -> usize {
        let doomed: Vec<(FlowKey, FlowKey)> = self
            .snat_rev
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, rev)| pred(rev))
            .map(|(rkey, rev)| {
                let fwd = FlowKey {
                    src_addr: rev.addr,
                    dst_addr: rkey.src_addr,
                    src_port: rev.port,
                    dst_port: rkey.src_port,
                    proto: rkey.proto,
                    _pad: [0; 3],
                };
                (fwd, rkey)
            })
            .collect();
        for (fwd, rkey) in &doomed {
            let _ = self.snat.remove(fwd);
            let _ = self.snat_rev.remove(rkey);
        }
        doomed.len()
    }

    /// Removes outbound NAT entries idle past their timeout at `now` (CLOCK_MONOTONIC ns, the
    /// clock of `bpf_ktime_get_ns`): TCP after 2 h, or 10 s once closing; UDP and ICMP after
    /// 30 s. Both directions go together. Returns how many flows were removed.
    pub fn expire_snat(&mut self, now: u64) -> usize {
        const S: u64 = 1_000_000_000;
        let mut doomed = Vec::new();
        for (k, nat) in self.snat.iter().filter_map(Result::ok) {
            let rkey = FlowKey {
                src_addr: k.dst_addr,
                dst_addr: nat.addr,
                src_port: k.dst_port,
                dst_port: nat.port,
                proto: k.proto,
                _pad: [0; 3],
            };
            let rev = self.snat_rev.get(&rkey, 0).ok();
            let last = rev.map_or(nat.last_seen, |r| r.last_seen.max(nat.last_seen));
            let closing =
                (nat.flags | rev.map_or(0, |r| r.flags)) & netpath_common::snat_flags::CLOSING != 0;
            let timeout = match k.proto {
                netpath_common::proto::TCP if closing => 10 * S,
                netpath_common::proto::TCP => 7200 * S,
                _ => 30 * S,
            };
            if now.saturating_sub(last) > timeout {
                doomed.push((k, rkey));
            }
        }
        for (k, r) in &doomed {
            let _ = self.snat.remove(k);
            let _ = self.snat_rev.remove(r);
        }
        doomed.len()
    }

    /// Removes every flow whose entry `pred` selects; returns how many.
    pub fn flush_flows(&mut self, pred: impl Fn(&FlowKey, &FlowNat) -> bool) -> usize {
        let doomed: Vec<FlowKey> = self
            .flows
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, v)| pred(k, v))
            .map(|(k, _)| k)
            .collect();
        doomed
            .iter()
            .filter(|k| self.flows.remove(k).is_ok())
            .count()
    }

    /// Sums of every counter over all CPUs.
    pub fn counters(&self) -> Vec<(Counter, u64)> {
        Counter::ALL
            .iter()
            .map(|c| {
                let v = self
                    .stats
                    .get(&(*c as u32), 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                (*c, v)
            })
            .collect()
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, DatapathError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(DatapathError::MissingProgram(name))?
        .try_into()
        .map_err(|e| program_error(name, e))
}

fn attach_tc(
    prog: &mut SchedClassifier,
    name: &'static str,
    ifname: &str,
) -> Result<SchedClassifierLink, DatapathError> {
    let err = |e| program_error(name, e);
    let id = prog.attach(ifname, TcAttachType::Ingress).map_err(err)?;
    prog.take_link(id).map_err(err)
}

/// Removes every entry of a hash map.
fn clear_hash<K: aya::Pod, V: aya::Pod>(map: &mut HashMap<MapData, K, V>) {
    for k in map.keys().filter_map(Result::ok).collect::<Vec<_>>() {
        let _ = map.remove(&k);
    }
}

fn loopback_key(net: &Network, port: u16) -> LoopbackKey {
    LoopbackKey {
        network: net.net_id,
        port: be_port(port),
        _pad: 0,
    }
}

fn subnet_key(net: &Network) -> LpmKey<u32> {
    LpmKey::new(u32::from(net.subnet.prefix()), be_addr(net.subnet.addr()))
}

/// A program error with its causes, on one line (aya's messages name the syscall; the cause
/// says why it failed).
fn program_error(name: &'static str, e: aya::programs::ProgramError) -> DatapathError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    DatapathError::Program(name, msg)
}

/// An address as the maps store it: network order.
pub fn be_addr(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

/// A port as the maps store it: network order.
pub fn be_port(p: u16) -> u16 {
    p.to_be()
}

/// A private bpffs instance on a temporary directory, unmounted and removed on drop:
/// somewhere to pin maps for tests and benchmarks without touching the host's bpffs.
pub struct ScratchBpffs {
    dir: std::path::PathBuf,
}

impl ScratchBpffs {
    pub fn new() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "netpath-bpffs-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        nix::mount::mount(
            Some("bpffs"),
            &dir,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(std::io::Error::from)?;
        Ok(ScratchBpffs { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ScratchBpffs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.dir);
    }
}
