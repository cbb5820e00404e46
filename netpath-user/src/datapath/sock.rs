//! Host-local access to published ports (kernel: `sock.rs`): `SOCK_NETNS`, the namespace
//! whose sockets the hooks act on, and `SOCK_REVNAT` (kept by the kernel alone). The hooks'
//! links are [`super::Hook::Sock`], on the cgroup the agent is given.
use aya::maps::{Array, MapData};
use netpath_common::map_names;

use super::{Datapath, DatapathError};

impl Datapath {
    /// Makes the socket hooks act on sockets of the namespace whose cookie is `cookie`.
    pub(super) fn set_sock_netns(&mut self, cookie: u64) -> Result<(), DatapathError> {
        let mut netns: Array<&mut MapData, u64> = self
            .ebpf
            .map_mut(map_names::SOCK_NETNS)
            .ok_or(DatapathError::MissingMap(map_names::SOCK_NETNS))?
            .try_into()
            .map_err(|e| DatapathError::Map(map_names::SOCK_NETNS, e))?;
        netns
            .set(0, cookie, 0)
            .map_err(|e| DatapathError::Map(map_names::SOCK_NETNS, e))
    }
}
