//! Where programs run, and the links that keep them there. Every link is pinned under
//! `BPFFS/links/` so the datapath outlives the agent: a starting agent adopts a pinned link
//! and swaps its program atomically (`BPF_LINK_UPDATE`: the hook never runs without one),
//! attaches what is missing, and detaches what nothing asks for.
use std::{
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use aya::programs::{
    links::{FdLink, LinkError},
    CgroupAttachMode, CgroupSock, CgroupSockAddr, SchedClassifier, TcAttachType, Xdp,
};
use tracing::{info, warn};

pub use super::hook::{Hook, Hooks};
use super::{program_error, programs, sys, Datapath, DatapathError, XdpMode};

/// What happened to a hook when it was ensured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkAction {
    /// Already running this program.
    Kept,
    /// Adopted and swapped to this build's program, atomically.
    Updated,
    /// Attached (there was no link, or its interface or cgroup was gone).
    Attached,
}

/// One pinned link as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub hook: Hook,
    pub link_id: u32,
    pub prog_id: u32,
    /// Still attached where it belongs.
    pub alive: bool,
    /// Running this agent's build of its program.
    pub current: bool,
}

/// What [`Datapath::ensure_hooks`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookReport {
    pub kept: usize,
    pub updated: usize,
    pub attached: Vec<Hook>,
    pub removed: Vec<Hook>,
}

/// The id of a cgroup v2 directory (its inode number).
fn cgroup_id(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    Ok(std::fs::metadata(dir)?.ino())
}

fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

impl Datapath {
    fn links_dir(&self) -> Option<PathBuf> {
        self.pin_dir.as_ref().map(|d| d.join("links"))
    }

    fn pin_path(&self, hook: &Hook) -> Option<PathBuf> {
        self.links_dir().map(|d| d.join(hook.pin_name()))
    }

    /// The program fd and id of this build's program for `hook`.
    fn our_program(
        &mut self,
        hook: &Hook,
    ) -> Result<(aya::programs::ProgramFd, u32), DatapathError> {
        let name = hook.program();
        let fd = self.program_fd(name)?;
        let id = sys::prog_info(&fd)
            .map_err(|e| DatapathError::Program(name, e.to_string()))?
            .id;
        Ok((fd, id))
    }

    /// Whether a link (by its info) is attached where `hook` says.
    fn belongs(&self, hook: &Hook, info: &sys::LinkInfo) -> bool {
        match hook {
            Hook::UplinkTc(i) | Hook::Endpoint(i) | Hook::Overlay(i) => {
                info.link_type == sys::link_type::TCX
                    && ifindex(i).is_some_and(|x| u64::from(x) == info.target)
            }
            Hook::UplinkXdp(i, _) => {
                info.link_type == sys::link_type::XDP
                    && ifindex(i).is_some_and(|x| u64::from(x) == info.target)
            }
            Hook::Sock(_) => {
                info.link_type == sys::link_type::CGROUP
                    && self
                        .cgroup
                        .as_deref()
                        .and_then(|c| cgroup_id(c).ok())
                        .is_some_and(|id| id == info.target)
            }
        }
    }

    /// Makes `hook` run this build's program: adopts its pinned link (swapping the program
    /// atomically when it differs), or attaches and pins a new one.
    pub fn ensure_link(&mut self, hook: &Hook) -> Result<LinkAction, DatapathError> {
        let (prog_fd, prog_id) = self.our_program(hook)?;
        if let Some(path) = self.pin_path(hook) {
            if let Ok(link) = sys::obj_get(&path) {
                match sys::link_info(link.as_fd()) {
                    Ok(info) if self.belongs(hook, &info) => {
                        if info.prog_id == prog_id {
                            return Ok(LinkAction::Kept);
                        }
                        sys::link_update(link.as_fd(), prog_fd.as_fd()).map_err(|e| {
                            DatapathError::Program(hook.program(), format!("updating {hook}: {e}"))
                        })?;
                        return Ok(LinkAction::Updated);
                    }
                    _ => {
                        // Its interface or cgroup is gone (or it is not a link at all). Best
                        // effort: what stays is tried again at the next start.
                        let _ = sys::link_detach(link.as_fd());
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        } else if self.held.contains_key(hook) {
            return Ok(LinkAction::Kept);
        }
        let link = self.attach_new(hook)?;
        match self.pin_path(hook) {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        DatapathError::Program(hook.program(), format!("{}: {e}", dir.display()))
                    })?;
                }
                link.pin(&path).map_err(|e| {
                    let cause = std::error::Error::source(&e)
                        .map(|s| format!(": {s}"))
                        .unwrap_or_default();
                    DatapathError::Program(
                        hook.program(),
                        format!("pinning {hook} at {}: {e}{cause}", path.display()),
                    )
                })?;
            }
            None => {
                self.held.insert(hook.clone(), link);
            }
        }
        Ok(LinkAction::Attached)
    }

    fn attach_new(&mut self, hook: &Hook) -> Result<FdLink, DatapathError> {
        let name = hook.program();
        let err = |e| match program_error(name, e) {
            DatapathError::Program(n, msg) => {
                DatapathError::Program(n, format!("at {hook}: {msg}"))
            }
            other => other,
        };
        let link_err = |e: LinkError| DatapathError::Program(name, format!("at {hook}: {e}"));
        match hook {
            Hook::UplinkTc(i) | Hook::Endpoint(i) | Hook::Overlay(i) => {
                let p: &mut SchedClassifier = self.program(name)?;
                let id = p.attach(i, TcAttachType::Ingress).map_err(err)?;
                FdLink::try_from(p.take_link(id).map_err(err)?).map_err(link_err)
            }
            Hook::UplinkXdp(i, mode) => {
                let flags = match mode {
                    XdpMode::Generic => aya::programs::XdpMode::Skb,
                    _ => aya::programs::XdpMode::Driver,
                };
                let p: &mut Xdp = self.program(name)?;
                let id = p.attach(i, flags).map_err(err)?;
                FdLink::try_from(p.take_link(id).map_err(err)?).map_err(link_err)
            }
            Hook::Sock(_) => {
                let dir = self.cgroup.clone().ok_or(DatapathError::Cgroup(
                    "(none)".into(),
                    "no cgroup for the socket hooks".into(),
                ))?;
                let file = std::fs::File::open(&dir)
                    .map_err(|e| DatapathError::Cgroup(dir.display().to_string(), e.to_string()))?;
                // Through a BPF link: cgroup links run beside other programs.
                if programs::SOCK_BIND.contains(&name) {
                    let p: &mut CgroupSock = self.program(name)?;
                    let id = p.attach(&file, CgroupAttachMode::Single).map_err(err)?;
                    FdLink::try_from(p.take_link(id).map_err(err)?).map_err(link_err)
                } else {
                    let p: &mut CgroupSockAddr = self.program(name)?;
                    let id = p.attach(&file, CgroupAttachMode::Single).map_err(err)?;
                    FdLink::try_from(p.take_link(id).map_err(err)?).map_err(link_err)
                }
            }
        }
    }

    /// Detaches `hook` and removes its pin (absent is fine).
    pub fn remove_link(&mut self, hook: &Hook) -> Result<(), DatapathError> {
        self.held.remove(hook);
        let Some(path) = self.pin_path(hook) else {
            return Ok(());
        };
        if let Ok(link) = sys::obj_get(&path) {
            if let Err(e) = sys::link_detach(link.as_fd()) {
                warn!(%hook, "detaching: {e}");
            }
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DatapathError::Program(
                hook.program(),
                format!("unpinning {}: {e}", path.display()),
            )),
        }
    }

    /// Every pinned link and what it is now.
    pub fn links(&self) -> Vec<LinkState> {
        let mut out = Vec::new();
        if let Some(dir) = self.links_dir() {
            for name in pinned_names(&dir) {
                let Some(hook) = Hook::from_pin_name(&name) else {
                    continue;
                };
                let info = sys::obj_get(&dir.join(&name))
                    .and_then(|fd| sys::link_info(fd.as_fd()))
                    .ok();
                let prog_id = info.map_or(0, |i| i.prog_id);
                out.push(LinkState {
                    alive: info.is_some_and(|i| self.belongs(&hook, &i)),
                    link_id: info.map_or(0, |i| i.id),
                    current: self
                        .loaded
                        .get(hook.program())
                        .is_some_and(|p| p.id == prog_id),
                    prog_id,
                    hook,
                });
            }
        }
        out
    }

    /// Makes exactly `want` the hooks netpath runs at: each ensured, every other pinned link
    /// detached. The socket hooks act on sockets of the namespace with `netns_cookie`.
    pub fn ensure_hooks(
        &mut self,
        want: &Hooks,
        netns_cookie: u64,
    ) -> Result<HookReport, DatapathError> {
        self.cgroup = want.cgroup.clone();
        if want.cgroup.is_some() {
            self.set_sock_netns(netns_cookie)?;
        }
        let mut report = HookReport::default();
        let all = want.all();
        // What nothing asks for goes first: an uplink's XDP in another mode, say, must be
        // gone before its replacement can attach.
        let pinned: Vec<Hook> = self
            .links_dir()
            .map(|d| {
                pinned_names(&d)
                    .iter()
                    .filter_map(|n| Hook::from_pin_name(n))
                    .collect()
            })
            .unwrap_or_default();
        for hook in pinned.into_iter().filter(|h| !all.contains(h)) {
            self.remove_link(&hook)?;
            report.removed.push(hook);
        }
        for hook in &all {
            match self.ensure_link(hook)? {
                LinkAction::Kept => report.kept += 1,
                LinkAction::Updated => report.updated += 1,
                LinkAction::Attached => report.attached.push(hook.clone()),
            }
        }
        if !report.attached.is_empty() || !report.removed.is_empty() || report.updated > 0 {
            info!(
                kept = report.kept,
                updated = report.updated,
                attached = report.attached.len(),
                removed = report.removed.len(),
                "hooks"
            );
        }
        Ok(report)
    }
}

/// File names in `dir` (none when it does not exist).
pub fn pinned_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
