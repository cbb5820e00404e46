//! Labels the agent keeps on objects besides what their creators set: the names an engine
//! gives its networks and containers (Docker tells a driver neither; the plugin reads them
//! from dockerd, [`crate::docker::engine`]). Only labels change: the datapath does not.
use std::collections::BTreeMap;

use super::{store::StateStore, Agent};
use crate::{datapath::DatapathOps, error::AgentError, netlink::LinkOps};

/// Label values to set: object name → value.
pub type Named = BTreeMap<String, String>;

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    /// Sets label `network_key` of the networks and `endpoint_key` of the endpoints named in
    /// `networks` and `endpoints` to the value given; one commit when anything changes.
    /// Objects that are gone are skipped. Whether anything changed.
    pub fn set_labels(
        &mut self,
        network_key: &str,
        networks: &Named,
        endpoint_key: &str,
        endpoints: &Named,
    ) -> Result<bool, AgentError> {
        let mut next = self.state.clone();
        let mut changed = false;
        for (name, value) in networks {
            if let Some(n) = next.networks.get_mut(name) {
                if n.labels.get(network_key) != Some(value) {
                    n.labels.insert(network_key.to_string(), value.clone());
                    changed = true;
                }
            }
        }
        for (name, value) in endpoints {
            if let Some(e) = next.endpoints.get_mut(name) {
                if e.labels.get(endpoint_key) != Some(value) {
                    e.labels.insert(endpoint_key.to_string(), value.clone());
                    changed = true;
                }
            }
        }
        if changed {
            self.transact(|a, _| a.commit(next))?;
        }
        Ok(changed)
    }
}
