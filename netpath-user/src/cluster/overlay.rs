//! Overlay networks in etcd: the requests that change the records every node shares
//! ([`super::records`]), each one etcd transaction so that nodes asking at once never both get what only one
//! may have (a network's name or VNI, an address).
use std::{collections::BTreeMap, net::Ipv4Addr};

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::Deserialize;

pub use super::records::{
    endpoint_id, local_claims, OverlayEndpoint, OverlayError, OverlayNetwork, FIRST_VNI, LAST_VNI,
};
use super::{json, Cluster, ClusterError};
use crate::model::Network;

/// Attempts at a transaction that lost a race before the request gives up.
const ATTEMPTS: usize = 8;

/// The value of the first key a transaction's gets found.
fn first_value<T: for<'de> Deserialize<'de>>(r: &etcd_client::TxnResponse) -> Option<T> {
    r.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(g) => g
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice(kv.value()).ok()),
        _ => None,
    })
}

impl Cluster {
    /// The session's client and lease, or why there is none.
    pub(super) fn session_client(&self) -> Result<(etcd_client::Client, i64), OverlayError> {
        let s = self.current.lock().clone();
        s.ok_or_else(|| {
            OverlayError::Unreachable(
                self.view()
                    .error
                    .unwrap_or_else(|| "not connected".to_string()),
            )
        })
    }

    /// Creates overlay network `net` (planned on this node) for every node: its name and
    /// subnet must be free among the overlay networks, and it gets the lowest free VNI. One
    /// transaction, retried when another node changed the networks meanwhile.
    pub async fn create_network(&self, net: &Network) -> Result<OverlayNetwork, OverlayError> {
        let v4 = net.v4.ok_or(crate::model::ModelError::OverlayIpv6Only)?;
        let (mut client, _) = self.session_client()?;
        let prefix = self.keys.networks();
        for _ in 0..ATTEMPTS {
            let listed = client
                .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
                .await?;
            let revision = listed.header().map_or(0, |h| h.revision());
            let others: Vec<OverlayNetwork> = listed
                .kvs()
                .iter()
                .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
                .collect();
            if others.iter().any(|o| o.name == net.name) {
                return Err(OverlayError::Exists(net.name.clone()));
            }
            if let Some(o) = others.iter().find(|o| o.v4.subnet.overlaps(&v4.subnet)) {
                return Err(OverlayError::Overlap(
                    v4.subnet,
                    o.v4.subnet,
                    o.name.clone(),
                ));
            }
            let vni = (FIRST_VNI..=LAST_VNI)
                .find(|v| !others.iter().any(|o| o.vni == *v))
                .ok_or(OverlayError::NoVni)?;
            let rec = OverlayNetwork::of(net, vni, &self.cfg.node_name)
                .ok_or(crate::model::ModelError::OverlayIpv6Only)?;
            let key = self.keys.network(&net.name);
            // Nothing under the prefix changed since the listing (so no name, subnet or VNI
            // was taken meanwhile), and the name is free.
            let unchanged =
                Compare::mod_revision(prefix.clone(), CompareOp::Less, revision + 1).with_prefix();
            let free = Compare::version(key.clone(), CompareOp::Equal, 0);
            let done = client
                .txn(Txn::new().when([unchanged, free]).and_then([TxnOp::put(
                    key,
                    json(&rec),
                    None,
                )]))
                .await?;
            if done.succeeded() {
                self.update(|v| {
                    v.networks.insert(rec.name.clone(), rec.clone());
                });
                self.changed();
                return Ok(rec);
            }
        }
        Err(OverlayError::Contended)
    }

    /// Removes overlay network `name` for every node, unless some node has an endpoint on it.
    pub async fn remove_network(&self, name: &str) -> Result<(), OverlayError> {
        let (mut client, _) = self.session_client()?;
        let members = self.keys.endpoints_of(name);
        let none = Compare::version(members.clone(), CompareOp::Equal, 0).with_prefix();
        let done = client
            .txn(
                Txn::new()
                    .when([none])
                    .and_then([TxnOp::delete(self.keys.network(name), None)])
                    .or_else([TxnOp::get(members, Some(GetOptions::new().with_prefix()))]),
            )
            .await?;
        if !done.succeeded() {
            let mut nodes: Vec<String> = done
                .op_responses()
                .into_iter()
                .flat_map(|op| match op {
                    TxnOpResponse::Get(g) => g
                        .kvs()
                        .iter()
                        .filter_map(|kv| serde_json::from_slice::<OverlayEndpoint>(kv.value()).ok())
                        .map(|e| e.node)
                        .collect(),
                    _ => Vec::new(),
                })
                .collect();
            nodes.sort();
            nodes.dedup();
            return Err(OverlayError::InUse(name.to_string(), nodes.join(", ")));
        }
        self.update(|v| {
            v.networks.remove(name);
        });
        self.changed();
        Ok(())
    }

    /// Takes address `ip` of overlay network `network` for `endpoint` of this node, under
    /// this node's lease: refused when any node has it.
    pub async fn claim(
        &self,
        network: &str,
        ip: Ipv4Addr,
        endpoint: &str,
    ) -> Result<(), OverlayError> {
        let (mut client, lease) = self.session_client()?;
        let rec = OverlayEndpoint {
            network: network.to_string(),
            ip,
            node: self.cfg.node_name.clone(),
            endpoint: endpoint.to_string(),
            id: String::new(),
            aliases: Vec::new(),
            namespace: String::new(),
            labels: BTreeMap::new(),
            named_ports: Vec::new(),
        };
        let key = self.keys.endpoint(network, ip);
        let net_key = self.keys.network(network);
        let done = client
            .txn(
                Txn::new()
                    .when([
                        Compare::version(net_key.clone(), CompareOp::Greater, 0),
                        Compare::version(key.clone(), CompareOp::Equal, 0),
                    ])
                    .and_then([TxnOp::put(
                        key.clone(),
                        json(&rec),
                        Some(PutOptions::new().with_lease(lease)),
                    )])
                    .or_else([TxnOp::get(key, None)]),
            )
            .await?;
        if !done.succeeded() {
            return Err(match first_value::<OverlayEndpoint>(&done) {
                Some(holder) => OverlayError::Taken {
                    network: network.to_string(),
                    ip,
                    endpoint: holder.endpoint,
                    node: holder.node,
                },
                None => OverlayError::Gone(network.to_string()),
            });
        }
        self.local
            .lock()
            .insert((network.to_string(), ip), rec.clone());
        self.update(|v| {
            v.endpoints.insert(endpoint_id(network, ip), rec);
        });
        Ok(())
    }

    /// Gives back an address this node took. Best effort: while etcd is away the next
    /// session removes what this node no longer has.
    pub async fn release(&self, network: &str, ip: Ipv4Addr) {
        let mine = self.local.lock().remove(&(network.to_string(), ip));
        let Some(rec) = mine else { return };
        self.update(|v| {
            v.endpoints.remove(&endpoint_id(network, ip));
        });
        let Ok((mut client, _)) = self.session_client() else {
            return;
        };
        let key = self.keys.endpoint(network, ip);
        let ours = Compare::value(key.clone(), CompareOp::Equal, json(&rec));
        if let Err(e) = client
            .txn(Txn::new().when([ours]).and_then([TxnOp::delete(key, None)]))
            .await
        {
            tracing::warn!(%network, %ip, "giving the address back to etcd: {e}; the next session does");
        }
        self.changed();
    }

    /// Makes this node's endpoints' addresses in etcd what `local` says (a new session: on
    /// its new lease; those it no longer has are deleted). An address another node took
    /// meanwhile stays that node's: this node's endpoint with it is reported.
    pub(super) async fn reassert(
        &self,
        client: &mut etcd_client::Client,
        lease: i64,
    ) -> Result<Vec<String>, ClusterError> {
        let local = self.local.lock().clone();
        let listed = client
            .get(self.keys.endpoints(), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut conflicts = Vec::new();
        for kv in listed.kvs() {
            let Ok(e) = serde_json::from_slice::<OverlayEndpoint>(kv.value()) else {
                continue;
            };
            if e.node == self.cfg.node_name && !local.contains_key(&(e.network.clone(), e.ip)) {
                let unchanged =
                    Compare::mod_revision(kv.key().to_vec(), CompareOp::Equal, kv.mod_revision());
                client
                    .txn(
                        Txn::new()
                            .when([unchanged])
                            .and_then([TxnOp::delete(kv.key().to_vec(), None)]),
                    )
                    .await?;
            }
        }
        for rec in local.values() {
            if let Some(holder) = self.put_own(client, lease, rec).await? {
                conflicts.push(format!(
                    "endpoint {} has address {} on network {}, which node {holder} holds",
                    rec.endpoint, rec.ip, rec.network
                ));
            }
        }
        Ok(conflicts)
    }

    /// Writes `rec`, this node's address, on `lease`: when nobody has it, or over this node's
    /// own record (unless it changed meanwhile). The node holding it otherwise.
    async fn put_own(
        &self,
        client: &mut etcd_client::Client,
        lease: i64,
        rec: &OverlayEndpoint,
    ) -> Result<Option<String>, ClusterError> {
        let key = self.keys.endpoint(&rec.network, rec.ip);
        let me = self.cfg.node_name.as_str();
        let held = super::put_if_ours(
            client,
            key,
            json(rec),
            lease,
            |h: Option<&OverlayEndpoint>| h.is_some_and(|h| h.node == me),
        )
        .await?;
        Ok(held.map(|h| h.map_or("?".to_string(), |h| h.node)))
    }

    /// Makes `claims` what this node has (at start, from the state file).
    pub fn set_local(&self, claims: BTreeMap<(String, Ipv4Addr), OverlayEndpoint>) {
        *self.local.lock() = claims;
    }

    /// After a change of the state: `claims` is what this node has, and a claim whose record
    /// is new or changed (an endpoint's id and aliases, known once it is made) is written
    /// (over this node's own). Best effort: a new session writes them all anyway.
    pub async fn update_local(&self, claims: BTreeMap<(String, Ipv4Addr), OverlayEndpoint>) {
        let before = std::mem::replace(&mut *self.local.lock(), claims.clone());
        let Ok((mut client, lease)) = self.session_client() else {
            return;
        };
        for (k, rec) in &claims {
            if before.get(k) == Some(rec) {
                continue;
            }
            match self.put_own(&mut client, lease, rec).await {
                Ok(None) => {}
                Ok(Some(holder)) => tracing::warn!(
                    network = %rec.network, ip = %rec.ip, %holder,
                    "this node's endpoint has an address another node holds"
                ),
                Err(e) => tracing::warn!(
                    network = %rec.network, ip = %rec.ip,
                    "writing the address's record: {e}; the next session does"
                ),
            }
        }
    }
}
