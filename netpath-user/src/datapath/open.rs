//! Loading the embedded object: maps pinned (or reused from their pins), programs loaded or
//! kept ([`super::load`]), the handles the intent methods use taken.
use std::{os::fd::AsFd, path::Path};

use aya::{
    maps::MapData,
    programs::{SchedClassifier, Xdp},
    Ebpf,
};
use netpath_common::map_names;
use tracing::info;

use super::{
    kept, kernel_log,
    load::{fill_tail_calls, load_programs, prog_fd, prog_in, Kept},
    migrate, programs, sized_loader, sys, Datapath, DatapathError, MapSizes, Migration, Whole,
    EBPF_OBJECT,
};

/// A second descriptor of map `name` (array or hash).
fn map_fd(ebpf: &Ebpf, name: &'static str) -> Result<std::os::fd::OwnedFd, DatapathError> {
    use aya::maps::Map;
    let data = match ebpf.map(name).ok_or(DatapathError::MissingMap(name))? {
        Map::Array(d) | Map::PerCpuArray(d) | Map::HashMap(d) | Map::LruHashMap(d) => d,
        _ => {
            return Err(DatapathError::Pins(format!(
                "map {name}: not an array or hash"
            )))
        }
    };
    data.fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| DatapathError::Pins(format!("map {name}: {e}")))
}

/// The map `name` taken from `ebpf` as a `T`.
pub(super) fn take_map<T>(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(DatapathError::MissingMap(name))?;
    map.try_into().map_err(|e| DatapathError::Map(name, e))
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
    /// Loads the embedded object without pins (tests, benchmarks): nothing outlives it.
    pub fn load(pin_dir: Option<&Path>, sizes: MapSizes) -> Result<Self, DatapathError> {
        Datapath::open(pin_dir, sizes, false, 0)
    }

    /// Loads the embedded object. With `pin_dir`, maps are pinned there (and reused from
    /// there when compatible, see [`migrate`]) and so are links; `reset_flows` lets live maps
    /// whose layout changed start empty instead of refusing. The programs log at
    /// `log_level` (aya-log's numbering, 0: not at all; see [`kernel_log`]).
    pub fn open(
        pin_dir: Option<&Path>,
        sizes: MapSizes,
        reset_flows: bool,
        log_level: u8,
    ) -> Result<Self, DatapathError> {
        let mut migrations = match pin_dir {
            Some(dir) => migrate::prepare(dir, &sizes, reset_flows)?,
            None => Vec::new(),
        };
        let mut loader = sized_loader(pin_dir, &sizes);
        loader.override_global(kernel_log::LEVEL_GLOBAL, &log_level, true);
        let mut ebpf = loader.load(EBPF_OBJECT)?;
        let kernel_log = if log_level > 0 {
            Some(
                aya_log::EbpfLogger::init_with_logger(&mut ebpf, kernel_log::ToTracing)
                    .map_err(|e| DatapathError::Pins(format!("the kernel log: {e}")))?,
            )
        } else {
            None
        };
        // Kept programs need every map they use where it was: none set aside, none logging.
        let key = kept::key(&sizes);
        let taken = match pin_dir {
            Some(dir) if log_level == 0 && migrations.is_empty() => kept::take(dir, &key, &ebpf),
            _ => None,
        };
        let (mut kept, unpinned) = match taken {
            Some(k) => {
                info!("this build's programs kept from its last start: nothing to verify");
                (k.programs, Some((k.events, k.monitor)))
            }
            None => {
                load_programs(&mut ebpf)?;
                if let (Some(dir), 0) = (pin_dir, log_level) {
                    // Keeping them only spares the next start the verifier: not a reason to
                    // refuse this one.
                    if let Err(e) = kept::keep(dir, &key, &mut ebpf) {
                        tracing::warn!("keeping the programs for the next start: {e}");
                    }
                }
                (Kept::new(), None)
            }
        };
        fill_tail_calls(&mut ebpf, &mut kept)?;
        let (events, monitor) = match unpinned {
            Some((e, m)) => (Some(e), Some(m)),
            None => (None, None),
        };
        let reused = monitor.is_some();
        if let Some(dir) = pin_dir {
            migrate::copy_live(dir, &mut migrations);
        }
        let whole = Whole {
            dns_names: map_fd(&ebpf, map_names::DNS_NAMES)?,
            ports: map_fd(&ebpf, map_names::PORTS)?,
            ports_any: map_fd(&ebpf, map_names::PORTS_ANY)?,
            flows: map_fd(&ebpf, map_names::FLOWS)?,
            ports6: map_fd(&ebpf, map_names::PORTS6)?,
            ports_any6: map_fd(&ebpf, map_names::PORTS_ANY6)?,
            flows6: map_fd(&ebpf, map_names::FLOWS6)?,
            snat: map_fd(&ebpf, map_names::SNAT)?,
            snat_rev: map_fd(&ebpf, map_names::SNAT_REV)?,
            policy_ct: map_fd(&ebpf, map_names::POLICY_CT)?,
            port_stats: map_fd(&ebpf, map_names::PORT_STATS)?,
            replies: map_fd(&ebpf, map_names::REPLIES)?,
            replies6: map_fd(&ebpf, map_names::REPLIES6)?,
        };
        let mut dp = Datapath {
            whole,
            ports: take_map!(ebpf, map_names::PORTS),
            ports_any: take_map!(ebpf, map_names::PORTS_ANY),
            port_slots: super::slots::SlotCache::default(),
            host_addrs: take_map!(ebpf, map_names::HOST_ADDRS),
            flows: take_map!(ebpf, map_names::FLOWS),
            new_flow_rate: take_map!(ebpf, map_names::NEW_FLOW_RATE),
            endpoints: take_map!(ebpf, map_names::ENDPOINTS),
            endpoints_by_addr: take_map!(ebpf, map_names::ENDPOINTS_BY_ADDR),
            networks: take_map!(ebpf, map_names::NETWORKS),
            subnets: take_map!(ebpf, map_names::SUBNETS),
            no_subnet: take_map!(ebpf, map_names::NO_SUBNET),
            published_from: take_map!(ebpf, map_names::PUBLISHED_FROM),
            ipcache: take_map!(ebpf, map_names::IPCACHE),
            ipcache_prefixes: take_map!(ebpf, map_names::IPCACHE_PREFIXES),
            policy: take_map!(ebpf, map_names::POLICY),
            policy_ranges: take_map!(ebpf, map_names::POLICY_RANGES),
            policy_ct: take_map!(ebpf, map_names::POLICY_CT),
            policy_on: take_map!(ebpf, map_names::POLICY_ON),
            members: take_map!(ebpf, map_names::MEMBERS),
            snat: take_map!(ebpf, map_names::SNAT),
            snat_rev: take_map!(ebpf, map_names::SNAT_REV),
            uplinks: take_map!(ebpf, map_names::UPLINKS),
            host_loopback: take_map!(ebpf, map_names::HOST_LOOPBACK),
            bind_allowed: take_map!(ebpf, map_names::BIND_ALLOWED),
            stats: take_map!(ebpf, map_names::STATS),
            port_stats: take_map!(ebpf, map_names::PORT_STATS),
            monitor: match monitor {
                Some(m) => map_of(aya::maps::Map::Array, m, map_names::MONITOR)?,
                None => take_map!(ebpf, map_names::MONITOR),
            },
            dns_names: take_map!(ebpf, map_names::DNS_NAMES),
            dns_names6: take_map!(ebpf, map_names::DNS_NAMES6),
            overlay_nets: take_map!(ebpf, map_names::OVERLAY_NETS),
            overlay_vnis: take_map!(ebpf, map_names::OVERLAY_VNIS),
            remotes: take_map!(ebpf, map_names::REMOTES),
            remotes6: take_map!(ebpf, map_names::REMOTES6),
            remote_addrs6: Default::default(),
            overlay_peers: take_map!(ebpf, map_names::OVERLAY_PEERS),
            v6: super::ipv6::Maps6::take(&mut ebpf)?,
            nat46: super::nat46::Maps46::take(&mut ebpf)?,
            replies: super::replies::Replies::new(
                take_map!(ebpf, map_names::REPLIES),
                take_map!(ebpf, map_names::REPLIES6),
                take_map!(ebpf, map_names::REPLY_PORTS),
            ),
            dns_written: Default::default(),
            members_written: Default::default(),
            policy_written: None,
            identities6: Default::default(),
            events: Some(match events {
                Some(e) => map_of(aya::maps::Map::RingBuf, e, map_names::EVENTS)?,
                None => take_map!(ebpf, map_names::EVENTS),
            }),
            ebpf,
            kept,
            pin_dir: pin_dir.map(Path::to_path_buf),
            cgroup: None,
            held: std::collections::HashMap::new(),
            migrations,
            sizes,
            loaded: std::collections::BTreeMap::new(),
            kernel_log,
        };
        dp.read_slots();
        if reused {
            // A monitor of the last agent may have left it set; who listens now sets it again.
            super::DatapathOps::set_monitor(&mut dp, 0)?;
        }
        for name in programs::ALL {
            if let Some(info) = dp.program_info(name) {
                dp.loaded.insert(name, info);
            }
        }
        Ok(dp)
    }

    /// The reader of the programs' log records, when they log (once).
    pub fn take_kernel_log(&mut self) -> Option<kernel_log::KernelLog> {
        self.kernel_log.take()
    }

    /// The ring buffer of monitor events (once: whoever takes it reads it).
    pub fn take_events(&mut self) -> Option<aya::maps::RingBuf<MapData>> {
        self.events.take()
    }

    /// The maps replaced at load.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// Drops the pins of the maps set aside at load: call once every hook runs this build's
    /// programs.
    pub fn finish_migrations(&mut self) {
        if let Some(dir) = &self.pin_dir {
            migrate::finish(dir, &self.migrations);
        }
    }

    /// The loaded TC program `name` (for BPF_PROG_TEST_RUN in tests and bench).
    pub fn classifier(
        &mut self,
        name: &'static str,
    ) -> Result<&mut SchedClassifier, DatapathError> {
        self.program(name)
    }

    /// The loaded XDP program `name`.
    pub fn xdp(&mut self, name: &'static str) -> Result<&mut Xdp, DatapathError> {
        self.program(name)
    }

    /// This build's program `name`: kept from its last start, or loaded by this one.
    pub(super) fn program<'a, T>(
        &'a mut self,
        name: &'static str,
    ) -> Result<&'a mut T, DatapathError>
    where
        &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
    {
        prog_in(&mut self.ebpf, &mut self.kept, name)
    }

    /// Every entry of a map read whole (in a few batch calls); `K` and `V` must be its types.
    pub(super) fn scan<K: aya::Pod, V: aya::Pod>(
        &self,
        name: &'static str,
        fd: &std::os::fd::OwnedFd,
    ) -> Vec<(K, V)> {
        sys::lookup_batch(fd.as_fd()).unwrap_or_else(|e| {
            tracing::warn!(map = name, "reading the map: {e}");
            Vec::new()
        })
    }

    /// Id and tag of this build's program `name` as loaded.
    pub(super) fn program_info(&mut self, name: &'static str) -> Option<sys::ProgInfo> {
        sys::prog_info(self.program_fd(name).ok()?).ok()
    }

    /// A descriptor of its own of this build's program `name`, whatever its kind.
    pub(super) fn program_fd(
        &mut self,
        name: &'static str,
    ) -> Result<aya::programs::ProgramFd, DatapathError> {
        prog_fd(&mut self.ebpf, &mut self.kept, name)
    }
}

/// A map taken by id (`data`) as a `T`, through the `Map` variant `kind`.
fn map_of<T>(
    kind: fn(MapData) -> aya::maps::Map,
    data: MapData,
    name: &'static str,
) -> Result<T, DatapathError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    T::try_from(kind(data)).map_err(|e| DatapathError::Map(name, e))
}
