//! Pinned maps across versions. Before the object is loaded, every pinned map is compared
//! with what this build declares (type, key and value size, capacity, flags). A map that
//! differs is set aside (its pin renamed `NAME@old`; programs still running keep using it)
//! and a new one is created. Maps the agent rebuilds from its state start empty and are
//! filled by the reconcile; flow tables and counters are copied entry by entry when only their
//! capacity changed, and refused otherwise, with a message naming the map and what to do,
//! unless the operator asked to reset them. A map an earlier build pinned that this one no
//! longer has is set aside the same way (retired). The `@old` pins go once every hook runs
//! this build's programs.
use std::{
    collections::HashMap,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray, PerCpuValues};
use netpath_common::{
    map_names, FlowKey, FlowNat, In6, Nat46, Nat46Reply, SnatNat, SnatRev, SockRevKey, SockRevKey6,
    SockRevNat,
};
use tracing::{info, warn};

use super::{sys, DatapathError, MapSizes, EBPF_OBJECT};

/// What a map is, as far as compatibility goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

impl Shape {
    /// A pinned map's shape, as the kernel describes it.
    fn of(info: &sys::MapInfo) -> Shape {
        Shape {
            map_type: info.map_type,
            key_size: info.key_size,
            value_size: info.value_size,
            max_entries: info.max_entries,
            flags: info.map_flags,
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "type {}, key {} B, value {} B, {} entries, flags {:#x}",
            self.map_type, self.key_size, self.value_size, self.max_entries, self.flags
        )
    }
}

/// How a map's content survives a change of shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Written by the agent from its state: rebuilt by the reconcile.
    Rebuilt,
    /// Written by the kernel (flows, counters): copied when the layout allows.
    Live,
}

fn class(name: &str) -> Class {
    match name {
        map_names::FLOWS
        | map_names::SNAT
        | map_names::SNAT_REV
        | map_names::SOCK_REVNAT
        | map_names::FLOWS6
        | map_names::SNAT6
        | map_names::SNAT_REV6
        | map_names::SOCK_REVNAT6
        | map_names::NAT46
        | map_names::NAT46_REPLY
        | map_names::STATS => Class::Live,
        _ => Class::Rebuilt,
    }
}

/// A map set aside for this start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    pub map: String,
    pub from: Shape,
    /// This build's shape; `None`: a map this build no longer has, retired.
    pub to: Option<Shape>,
    /// Entries carried over (copied), when they were.
    pub copied: Option<usize>,
}

/// The capacity this build gives `name` (the object's, or the agent's override).
pub fn max_entries(name: &str, declared: u32, sizes: &MapSizes) -> u32 {
    sizes
        .overrides()
        .into_iter()
        .find_map(|(n, size)| (n == name).then_some(size))
        .unwrap_or(declared)
}

/// The shapes of the maps this build pins, by name.
pub fn wanted(sizes: &MapSizes) -> Result<HashMap<String, Shape>, DatapathError> {
    let obj = aya_obj::Object::parse(EBPF_OBJECT)
        .map_err(|e| DatapathError::Pins(format!("parsing the embedded object: {e}")))?;
    Ok(obj
        .maps
        .iter()
        .filter(|(_, m)| m.pinning() == aya_obj::maps::PinningType::ByName)
        .map(|(name, m)| {
            (
                name.clone(),
                Shape {
                    map_type: m.map_type(),
                    key_size: m.key_size(),
                    value_size: m.value_size(),
                    max_entries: max_entries(name, m.max_entries(), sizes),
                    flags: m.map_flags(),
                },
            )
        })
        .collect())
}

/// Where a set-aside map is pinned (bpffs reserves dots in names).
/// The suffix of a map's pin while it is set aside.
pub const SET_ASIDE: &str = "@old";

fn old_pin(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{SET_ASIDE}"))
}

/// Compares the maps pinned in `dir` with this build's, before loading. Differing maps are
/// set aside; a live map whose layout changed is refused unless `reset_flows`.
pub fn prepare(
    dir: &Path,
    sizes: &MapSizes,
    reset_flows: bool,
) -> Result<Vec<Migration>, DatapathError> {
    let mut out = Vec::new();
    let wanted = wanted(sizes)?;
    for (name, to) in wanted.clone() {
        let pin = dir.join(&name);
        // A set-aside map left by a start that did not finish: its programs, if any still
        // run, keep it alive; the pin is ours to drop.
        let _ = std::fs::remove_file(old_pin(dir, &name));
        let Ok(fd) = sys::obj_get(&pin) else {
            continue;
        };
        let info = sys::map_info(fd.as_fd())
            .map_err(|e| DatapathError::Pins(format!("{}: {e}", pin.display())))?;
        let from = Shape::of(&info);
        if from == to {
            continue;
        }
        if class(&name) == Class::Live && !carried(&name, &from, &to) && !reset_flows {
            return Err(DatapathError::Pins(format!(
                "map {name} pinned at {} has another layout ({from}) than this build's ({to}): its \
                 live entries cannot be carried over; start the agent with --reset-flows to begin \
                 with an empty {name} (connections translated through it are reset), or run \
                 `netpath uninstall` first",
                pin.display()
            )));
        }
        std::fs::rename(&pin, old_pin(dir, &name))
            .map_err(|e| DatapathError::Pins(format!("setting {} aside: {e}", pin.display())))?;
        warn!(map = %name, %from, %to, "pinned map differs from this build's: replacing it");
        out.push(Migration {
            map: name,
            from,
            to: Some(to),
            copied: None,
        });
    }
    out.extend(retire(dir, &wanted));
    Ok(out)
}

/// Maps pinned by an earlier build that this one no longer has (its programs use none of
/// them): set aside like a replaced map, their pins dropped once every hook runs this build's
/// programs (an older program still running keeps its map alive meanwhile).
fn retire(dir: &Path, wanted: &HashMap<String, Shape>) -> Vec<Migration> {
    let mut out = Vec::new();
    for name in super::links::pinned_names(dir) {
        if let Some(base) = name.strip_suffix(SET_ASIDE) {
            // Retired by a start that did not finish: the pin is ours to drop.
            if !wanted.contains_key(base) {
                let _ = std::fs::remove_file(dir.join(&name));
            }
            continue;
        }
        if wanted.contains_key(&name) {
            continue;
        }
        let pin = dir.join(&name);
        // Not a map (the links' directory, say): not ours to retire.
        let Ok(fd) = sys::obj_get(&pin) else {
            continue;
        };
        let Ok(info) = sys::map_info(fd.as_fd()) else {
            continue;
        };
        if let Err(e) = std::fs::rename(&pin, old_pin(dir, &name)) {
            warn!(map = %name, "retiring a map this build no longer has: {e}");
            continue;
        }
        warn!(map = %name, "pinned map is not one of this build's: retiring it");
        out.push(Migration {
            map: name,
            from: Shape::of(&info),
            to: None,
            copied: None,
        });
    }
    out
}

/// The map pinned at `path`.
fn pinned(path: &Path) -> Result<Map, String> {
    let data = MapData::from_pin(path).map_err(|e| e.to_string())?;
    Map::from_map_data(data).map_err(|e| e.to_string())
}

fn copy_hash<K: aya::Pod, V: aya::Pod>(old: &Path, new: &Path) -> Result<usize, String> {
    let from: BpfHashMap<MapData, K, V> =
        BpfHashMap::try_from(pinned(old)?).map_err(|e| e.to_string())?;
    let mut to: BpfHashMap<MapData, K, V> =
        BpfHashMap::try_from(pinned(new)?).map_err(|e| e.to_string())?;
    let mut n = 0;
    for (k, v) in from.iter().filter_map(Result::ok) {
        if to.insert(k, v, 0).is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

fn copy_counters(old: &Path, new: &Path) -> Result<usize, String> {
    let from: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(pinned(old)?).map_err(|e| e.to_string())?;
    let mut to: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(pinned(new)?).map_err(|e| e.to_string())?;
    let n = from.len().min(to.len());
    for i in 0..n {
        let v: PerCpuValues<u64> = from.get(&i, 0).map_err(|e| e.to_string())?;
        to.set(i, v, 0).map_err(|e| e.to_string())?;
    }
    Ok(n as usize)
}

/// `FlowNat` as builds before the replies' way back was kept wrote it: the same fields up to
/// `last_seen`, nothing after (the word at 20 was padding, written 0: "let the route
/// decide").
const FLOW_NAT_V1: usize = 32;

/// Whether the entries of live map `name` can be carried from shape `from` to `to`: the same
/// layout (a new capacity), or a layout this build knows how to convert.
fn carried(name: &str, from: &Shape, to: &Shape) -> bool {
    let same_kind =
        from.map_type == to.map_type && from.key_size == to.key_size && from.flags == to.flags;
    same_kind
        && (from.value_size == to.value_size
            || name == map_names::FLOWS
                && from.value_size as usize == FLOW_NAT_V1
                && to.value_size as usize == std::mem::size_of::<FlowNat>())
}

/// Carries the flows of an older build's `FLOWS` over: each value's bytes, the new fields 0.
fn copy_flows_v1(old: &Path, new: &Path) -> Result<usize, String> {
    let from: BpfHashMap<MapData, FlowKey, [u8; FLOW_NAT_V1]> =
        BpfHashMap::try_from(pinned(old)?).map_err(|e| e.to_string())?;
    let mut to: BpfHashMap<MapData, FlowKey, FlowNat> =
        BpfHashMap::try_from(pinned(new)?).map_err(|e| e.to_string())?;
    let mut n = 0;
    for (k, v) in from.iter().filter_map(Result::ok) {
        let mut bytes = [0u8; std::mem::size_of::<FlowNat>()];
        bytes[..FLOW_NAT_V1].copy_from_slice(&v);
        // SAFETY: FlowNat is plain old data of exactly these bytes (every pattern valid).
        let nat: FlowNat = unsafe { std::mem::transmute(bytes) };
        if to.insert(k, nat, 0).is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

/// After loading: carries the entries of live maps over to their new maps, where the layout
/// allows ([`carried`]).
pub fn copy_live(dir: &Path, migrations: &mut [Migration]) {
    for m in migrations.iter_mut() {
        let Some(to) = m.to else { continue };
        if class(&m.map) != Class::Live || !carried(&m.map, &m.from, &to) {
            continue;
        }
        let (old, new) = (old_pin(dir, &m.map), dir.join(&m.map));
        let grown = m.from.value_size != to.value_size;
        let res = match m.map.as_str() {
            map_names::FLOWS if grown => copy_flows_v1(&old, &new),
            map_names::FLOWS => copy_hash::<FlowKey, FlowNat>(&old, &new),
            map_names::SNAT => copy_hash::<FlowKey, SnatNat>(&old, &new),
            map_names::SNAT_REV => copy_hash::<FlowKey, SnatRev>(&old, &new),
            map_names::SOCK_REVNAT => copy_hash::<SockRevKey, SockRevNat>(&old, &new),
            map_names::FLOWS6 => copy_hash::<FlowKey<In6>, FlowNat<In6>>(&old, &new),
            map_names::SNAT6 => copy_hash::<FlowKey<In6>, SnatNat<In6>>(&old, &new),
            map_names::SNAT_REV6 => copy_hash::<FlowKey<In6>, SnatRev<In6>>(&old, &new),
            map_names::SOCK_REVNAT6 => copy_hash::<SockRevKey6, SockRevNat<In6>>(&old, &new),
            map_names::NAT46 => copy_hash::<FlowKey<In6>, Nat46>(&old, &new),
            map_names::NAT46_REPLY => copy_hash::<FlowKey, Nat46Reply>(&old, &new),
            map_names::STATS => copy_counters(&old, &new),
            _ => continue,
        };
        match res {
            Ok(n) => {
                info!(map = %m.map, entries = n, "carried over to the new map");
                m.copied = Some(n);
            }
            Err(e) => warn!(map = %m.map, "carrying entries over: {e}"),
        }
    }
}

/// Once every hook runs this build's programs: the set-aside maps' pins go.
pub fn finish(dir: &Path, migrations: &[Migration]) {
    for m in migrations {
        // Absent already (a start that finished it) is what was wanted.
        let _ = std::fs::remove_file(old_pin(dir, &m.map));
    }
}
