//! Network policies and namespaces' labels for the whole cluster: kept in etcd with no lease
//! (they outlive every node), so a policy applied on any node holds on all of them, and a
//! node that comes back takes the cluster's set.
use std::collections::BTreeMap;

use etcd_client::{Txn, TxnOp};

use super::{json, overlay::OverlayError, Cluster};
use crate::model::Labels;

/// Operations per transaction: etcd refuses more than 128 by default.
const OPS_PER_TXN: usize = 100;

impl Cluster {
    /// Writes `policies` (`NAMESPACE/NAME` → manifest) and `namespaces` (name → labels) and
    /// removes the policies `gone`, for every node. One transaction up to a hundred changes
    /// (etcd's bound on one); a larger file is written in several, in order.
    pub async fn put_policies(
        &self,
        policies: &BTreeMap<String, serde_json::Value>,
        namespaces: &BTreeMap<String, Labels>,
        gone: &[String],
    ) -> Result<(), OverlayError> {
        let (mut client, _) = self.session_client()?;
        let ops: Vec<TxnOp> = policies
            .iter()
            .map(|(k, p)| TxnOp::put(self.keys.policy(k), json(p), None))
            .chain(
                namespaces
                    .iter()
                    .map(|(n, l)| TxnOp::put(self.keys.namespace(n), json(l), None)),
            )
            .chain(
                gone.iter()
                    .map(|k| TxnOp::delete(self.keys.policy(k), None)),
            )
            .collect();
        for chunk in ops.chunks(OPS_PER_TXN) {
            client.txn(Txn::new().and_then(chunk.to_vec())).await?;
        }
        self.update(|v| {
            v.policies
                .extend(policies.iter().map(|(k, p)| (k.clone(), p.clone())));
            v.namespaces
                .extend(namespaces.iter().map(|(n, l)| (n.clone(), l.clone())));
            for k in gone {
                v.policies.remove(k);
            }
        });
        self.changed();
        Ok(())
    }
}
