//! Host-local access to published ports (kernel: `sock.rs`): the cgroup v2 socket hooks,
//! `SOCK_NETNS` (the namespace they act in) and `SOCK_REVNAT` (kept by the kernel alone).
use std::path::Path;

use aya::{
    maps::{Array, MapData},
    programs::{CgroupAttachMode, CgroupSockAddr},
};
use netpath_common::map_names;

use super::{program, program_error, programs, Datapath, DatapathError};

impl Datapath {
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
}
