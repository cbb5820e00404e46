//! Programs kept across an agent's restarts. The verifier's work on the object's programs is
//! most of an agent's start (see `open::load_programs`), and an agent restarted without an
//! upgrade would only verify again what the kernel already runs. So once a build's programs
//! are loaded they are pinned under `PIN_DIR/programs/KEY/` (KEY: the object's SHA-256 and
//! the map sizes asked for), and an agent of the same build takes them from there instead of
//! loading them again — but only when every map they use is still the one pinned under the
//! same name (no map was set aside for a new layout, see [`super::migrate`]). Its hooks then
//! keep their links as they are. The two maps that are not pinned, `EVENTS` and `MONITOR`,
//! belong to the programs: they are taken from them. Programs that log (`--ebpf-log`) are
//! neither kept nor taken: aya-log's ring belongs to the process that loaded them.
use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use aya::{
    maps::{MapData, MapInfo},
    programs::{
        CgroupSock, CgroupSockAddr, CgroupSockAddrAttachType, CgroupSockAttachType, Program,
        SchedClassifier, Xdp,
    },
    Ebpf,
};
use netpath_common::map_names;
use tracing::{debug, info};

use super::{links::pinned_names, programs, DatapathError, MapSizes};

/// The directory under the pin directory that holds each build's programs.
pub const DIR: &str = "programs";

/// Programs taken from their pins, with the unpinned maps they write.
pub struct Kept {
    pub programs: HashMap<&'static str, Program>,
    pub events: MapData,
    pub monitor: MapData,
}

/// This build's directory name: the object's SHA-256 and the map sizes (another size is
/// another set of maps, and so other programs).
pub fn key(sizes: &MapSizes) -> String {
    let mut k = crate::version::EBPF_SHA256[..32].to_string();
    for (_, n) in sizes.overrides() {
        k.push_str(&format!("-{n:x}"));
    }
    k
}

fn build_dir(pin_dir: &Path, key: &str) -> PathBuf {
    pin_dir.join(DIR).join(key)
}

/// Program `name`'s pin in `dir`, of the kind `like` is.
fn from_pin(dir: &Path, name: &'static str, like: &Program) -> Option<Program> {
    let path = dir.join(name);
    let p = match like {
        Program::SchedClassifier(_) => {
            Program::SchedClassifier(SchedClassifier::from_pin(path).ok()?)
        }
        Program::Xdp(_) => {
            Program::Xdp(Xdp::from_pin(path, aya_obj::programs::XdpAttachType::Interface).ok()?)
        }
        Program::CgroupSock(_) => {
            let t = if name.ends_with('6') {
                CgroupSockAttachType::PostBind6
            } else {
                CgroupSockAttachType::PostBind4
            };
            Program::CgroupSock(CgroupSock::from_pin(path, t).ok()?)
        }
        Program::CgroupSockAddr(_) => {
            Program::CgroupSockAddr(CgroupSockAddr::from_pin(path, sock_addr_type(name)?).ok()?)
        }
        _ => return None,
    };
    Some(p)
}

/// The hook of socket program `name` (`netpath_sock_connect4`, ...).
fn sock_addr_type(name: &str) -> Option<CgroupSockAddrAttachType> {
    use CgroupSockAddrAttachType as T;
    let six = name.ends_with('6');
    let verb = name
        .strip_prefix("netpath_sock_")?
        .trim_end_matches(['4', '6']);
    Some(match (verb, six) {
        ("connect", false) => T::Connect4,
        ("connect", true) => T::Connect6,
        ("sendmsg", false) => T::UDPSendMsg4,
        ("sendmsg", true) => T::UDPSendMsg6,
        ("recvmsg", false) => T::UDPRecvMsg4,
        ("recvmsg", true) => T::UDPRecvMsg6,
        ("getpeername", false) => T::GetPeerName4,
        ("getpeername", true) => T::GetPeerName6,
        _ => return None,
    })
}

/// This build's programs from their pins under `pin_dir`, when every one is there and every
/// map they use is the one pinned there now (or `EVENTS`, `MONITOR`, or the object's constant
/// data); `ebpf` (parsed, not loaded) says each program's kind.
pub fn take(pin_dir: &Path, key: &str, ebpf: &Ebpf) -> Option<Kept> {
    let dir = build_dir(pin_dir, key);
    if !dir.is_dir() {
        return None;
    }
    let pinned: HashSet<u32> = pinned_names(pin_dir)
        .iter()
        .map(|n| pin_dir.join(n))
        .filter(|p| p.is_file())
        .filter_map(|p| MapInfo::from_pin(p).ok().map(|i| i.id()))
        .collect();
    let mut kept = HashMap::new();
    let (mut events, mut monitor) = (None, None);
    for name in programs::ALL {
        let Some(prog) = ebpf
            .program(name)
            .and_then(|like| from_pin(&dir, name, like))
        else {
            debug!(program = name, "not kept: loading every program");
            return None;
        };
        let ids = prog.info().ok()?.map_ids().ok()??;
        for id in ids.into_iter().filter(|id| !pinned.contains(id)) {
            let map = MapInfo::from_id(id).ok()?;
            match map.name_as_str()? {
                map_names::EVENTS => events = Some(id),
                map_names::MONITOR => monitor = Some(id),
                // The object's constant and global data (`.rodata`, `.rodata.cst4`, ...), and
                // aya-log's ring, which programs that do not log never write.
                n if n == "AYA_LOGS"
                    || [".rodata", ".bss", ".data"].iter().any(|d| n.contains(d)) => {}
                n => {
                    info!(
                        program = name,
                        map = n,
                        "kept programs use a map no longer pinned: loading them again"
                    );
                    return None;
                }
            }
        }
        kept.insert(name, prog);
    }
    Some(Kept {
        programs: kept,
        events: MapData::from_id(events?).ok()?,
        monitor: MapData::from_id(monitor?).ok()?,
    })
}

/// Pins the programs just loaded into `ebpf` as this build's (all or none), then removes
/// every other build's (their links hold what still runs).
pub fn keep(pin_dir: &Path, key: &str, ebpf: &mut Ebpf) -> Result<(), DatapathError> {
    let dir = build_dir(pin_dir, key);
    remove_dir(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| DatapathError::Pins(format!("{}: {e}", dir.display())))?;
    for name in programs::ALL {
        let pinned = match ebpf.program_mut(name) {
            Some(prog) => prog
                .pin(dir.join(name))
                .map_err(|e| DatapathError::Program(name, format!("pinning: {e}"))),
            None => Err(DatapathError::MissingProgram(name)),
        };
        if let Err(e) = pinned {
            // Half a set is no set: the next start loads afresh.
            remove_dir(&dir);
            return Err(e);
        }
    }
    for other in pinned_names(&pin_dir.join(DIR)) {
        if other != key {
            remove_dir(&pin_dir.join(DIR).join(other));
        }
    }
    Ok(())
}

/// Removes a build's program pins and their directory (absent is fine).
pub fn remove_dir(dir: &Path) {
    for name in pinned_names(dir) {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_socket_program_has_its_hook() {
        for name in programs::SOCK {
            if programs::SOCK_BIND.contains(&name) {
                continue;
            }
            assert!(sock_addr_type(name).is_some(), "{name}");
        }
        assert!(matches!(
            sock_addr_type("netpath_sock_sendmsg6"),
            Some(CgroupSockAddrAttachType::UDPSendMsg6)
        ));
        assert!(sock_addr_type("netpath_sock_bind4").is_none());
    }
}
