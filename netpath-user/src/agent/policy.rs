//! Who may reach what, as the agent changes it: the published ports' firewall.
use tracing::info;

use super::{journal::Undo, store::StateStore, Agent};
use crate::{datapath::DatapathOps, error::AgentError, netlink::LinkOps, policy::PublishedFrom};

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    /// Makes `list` the clients published ports answer: the kernel's trie first, then the
    /// saved state. The flows of clients the list no longer lets in are removed, so their
    /// connections stop at their next packet. Returns how many flows went.
    pub fn set_published_from(&mut self, list: PublishedFrom) -> Result<usize, AgentError> {
        if list == self.state.published_from {
            return Ok(0);
        }
        let mut next = self.state.clone();
        next.published_from = list.clone();
        let old = self.state.published_from.clone();
        let flows = self.transact(|a, tx| {
            let flows = a.dp.set_published_from(&list)?;
            tx.undo(Undo::SetPublishedFrom(old));
            a.commit(next)?;
            Ok(flows)
        })?;
        info!(published_from = %list, flows, "published ports' firewall changed");
        Ok(flows)
    }
}
