//! Several hosts: nodes share state through etcd (v3 API, `etcd-client`).
//!
//! Keys, under `--etcd-prefix` (default `/netpath`):
//!
//! | key | value | lifetime |
//! |---|---|---|
//! | `PREFIX/nodes/NAME` | [`NodeRecord`] as JSON | the node's lease: gone [`LEASE_TTL_SECS`] after its agent stops renewing it |
//! | `PREFIX/networks/NAME` | [`OverlayNetwork`] as JSON | until `network rm` (on any node) |
//! | `PREFIX/endpoints/NETWORK/IP` | [`OverlayEndpoint`] as JSON | the lease of the node whose endpoint has the address |
//! | `PREFIX/policies/NAMESPACE/NAME` | a NetworkPolicy's manifest as JSON | until `policy rm` (on any node) |
//! | `PREFIX/namespaces/NAME` | a namespace's labels as JSON | until applied again |
//!
//! The agent keeps a session with etcd in the background ([`Cluster::run`]): connect, grant a
//! lease, register the node, list everything under the prefix and watch it, renew the lease. When etcd
//! cannot be reached the session starts again (after a pause that grows to
//! [`MAX_BACKOFF`]); meanwhile the view keeps what it last knew, marked disconnected, and the
//! datapath goes on with it. A restarted agent registers under the same key with a new lease
//! (its old lease expires with nothing left on it), so a restart neither duplicates nor drops
//! the node. A name another node (another underlay address) holds is not taken over.
//!
//! Overlay networks ([`overlay`]) are changed by transactions (names, subnets, VNIs and
//! addresses are never given twice); each node keeps its endpoints' addresses under its own
//! lease, puts them back on a new session's lease, and learns the others' by the same watch.
//! Network policies and namespaces' labels ([`policies`]) are the cluster's too: applied on any
//! node, they hold on every one.
//! [`Cluster::subscribe`] tells the agent when the view changed.

mod config;
mod keys;
pub mod overlay;
mod policies;
mod records;
mod session;

use config::tls_options;
pub use config::{ClusterConfig, TlsFiles};
pub use keys::Keys;
pub use overlay::{OverlayEndpoint, OverlayError, OverlayNetwork};
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    time::Duration,
};

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

/// Seconds a node's registration outlives its agent.
pub const LEASE_TTL_SECS: i64 = 10;
/// Longest pause between two attempts at reaching etcd.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one request to etcd may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/netpath";

/// What went wrong with etcd.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("etcd: {}", innermost(.0))]
    Etcd(#[from] etcd_client::Error),
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("--etcd-cert and --etcd-key go together")]
    HalfIdentity,
    #[error("node name {name} is registered by the node at {holder}: give this node another --node-name")]
    NameTaken { name: String, holder: IpAddr },
    #[error("etcd ended the lease of this node's registration")]
    LeaseLost,
    #[error("etcd ended the watch of the nodes")]
    WatchEnded,
    #[error("this node's registration changed while it was being taken back")]
    Raced,
}

/// The root cause of `e` (a refused connection, not the gRPC layers around it).
fn innermost(e: &etcd_client::Error) -> String {
    // A gRPC status keeps its cause to itself (etcd-client's error has no source for it).
    let mut cause: &dyn std::error::Error = match e {
        etcd_client::Error::GRpcStatus(s) => s,
        e => e,
    };
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A node as the others see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    /// Where the node's overlay traffic goes (IPv4 or IPv6).
    pub underlay: IpAddr,
    /// The agent's version and build.
    pub version: String,
}

/// What this node knows of the cluster (`netpath node ls`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// This node's name.
    pub node: String,
    /// Whether the session with etcd is up (otherwise `nodes` is what was last known).
    pub connected: bool,
    /// Why it is not, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every registered node by name, this one included.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// The overlay networks by name.
    #[serde(default)]
    pub networks: BTreeMap<String, OverlayNetwork>,
    /// Addresses taken on overlay networks, by `NETWORK/IP`.
    #[serde(default)]
    pub endpoints: BTreeMap<String, OverlayEndpoint>,
    /// Whether the networks and endpoints come from a listing of this process (so what is
    /// absent from them is absent from etcd), not only from the state file.
    #[serde(default)]
    pub listed: bool,
    /// This node's endpoints whose address another node took while this one was away.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    /// The cluster's network policies (`NAMESPACE/NAME` → manifest) and namespaces' labels
    /// (not shown by `node ls`).
    #[serde(skip)]
    pub policies: BTreeMap<String, serde_json::Value>,
    #[serde(skip)]
    pub namespaces: BTreeMap<String, crate::model::Labels>,
}

/// This node's membership: the session with etcd and what it learnt.
pub struct Cluster {
    cfg: ClusterConfig,
    keys: Keys,
    view: RwLock<ClusterView>,
    /// The session's client and lease, while there is a session.
    current: Mutex<Option<(Client, i64)>>,
    /// This node's endpoints' addresses on overlay networks (see [`Cluster::set_local`]).
    local: Mutex<BTreeMap<(String, Ipv4Addr), OverlayEndpoint>>,
    /// Bumped whenever the view changes.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Cluster {
    pub fn new(cfg: ClusterConfig) -> Cluster {
        let view = ClusterView {
            node: cfg.node_name.clone(),
            error: Some("not connected yet".into()),
            ..ClusterView::default()
        };
        Cluster {
            keys: Keys::new(&cfg.prefix),
            cfg,
            view: RwLock::new(view),
            current: Mutex::new(None),
            local: Mutex::new(BTreeMap::new()),
            changes: tokio::sync::watch::channel(0).0,
        }
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.cfg.node_name
    }

    /// The address other nodes reach this one at.
    pub fn underlay(&self) -> IpAddr {
        self.cfg.underlay
    }

    /// Tells when the view changed (the value means nothing).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Starts from what the state file knows (before etcd answers): the overlay networks
    /// this node has, and its endpoints' addresses.
    pub fn seed(&self, state: &crate::model::State) {
        let claims = overlay::local_claims(state, &self.cfg.node_name);
        self.update(|v| {
            for n in state.networks.values() {
                if let Some(rec) = n.vni.and_then(|vni| OverlayNetwork::of(n, vni, "")) {
                    v.networks.insert(n.name.clone(), rec);
                }
            }
            for c in claims.values() {
                v.endpoints
                    .insert(overlay::endpoint_id(&c.network, c.ip), c.clone());
            }
        });
        self.set_local(claims);
    }

    /// What this node knows now.
    pub fn view(&self) -> ClusterView {
        self.view.read().clone()
    }

    fn update(&self, f: impl FnOnce(&mut ClusterView)) {
        f(&mut self.view.write());
    }
}

/// A record as etcd holds it (JSON).
pub(crate) fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Writes `value` at `key` on `lease` when nobody has the key, or over a record `ours` says
/// is this node's (given the record, none when unreadable) unless it changed meanwhile
/// (`Raced`). `None` when written, else the holder's record (none when unreadable).
pub(crate) async fn put_if_ours<T: serde::de::DeserializeOwned>(
    client: &mut Client,
    key: String,
    value: Vec<u8>,
    lease: i64,
    ours: impl Fn(Option<&T>) -> bool,
) -> Result<Option<Option<T>>, ClusterError> {
    let put = TxnOp::put(
        key.clone(),
        value,
        Some(PutOptions::new().with_lease(lease)),
    );
    let free = Compare::version(key.clone(), CompareOp::Equal, 0);
    let got = client
        .txn(
            Txn::new()
                .when([free])
                .and_then([put.clone()])
                .or_else([TxnOp::get(key.clone(), None)]),
        )
        .await?;
    if got.succeeded() {
        return Ok(None);
    }
    // The key as it is: its holder, and its revision (what a take-over compares). A failed
    // compare means the key exists, so its get answers; if it did not, look again later.
    let (holder, revision) = got
        .op_responses()
        .into_iter()
        .find_map(|r| match r {
            etcd_client::TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
                (
                    serde_json::from_slice::<T>(kv.value()).ok(),
                    kv.mod_revision(),
                )
            }),
            _ => None,
        })
        .ok_or(ClusterError::Raced)?;
    if !ours(holder.as_ref()) {
        return Ok(Some(holder));
    }
    let unchanged = Compare::mod_revision(key, CompareOp::Equal, revision);
    let again = client
        .txn(Txn::new().when([unchanged]).and_then([put]))
        .await?;
    if again.succeeded() {
        Ok(None)
    } else {
        Err(ClusterError::Raced)
    }
}
