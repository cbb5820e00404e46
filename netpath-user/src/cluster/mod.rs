//! Several hosts: nodes share state through etcd (v3 API, `etcd-client`).
//!
//! Keys, under `--etcd-prefix` (default `/netpath`):
//!
//! | key | value | lifetime |
//! |---|---|---|
//! | `PREFIX/nodes/NAME` | [`NodeRecord`] as JSON | the node's lease: gone [`LEASE_TTL_SECS`] after its agent stops renewing it |
//! | `PREFIX/networks/NAME` | [`OverlayNetwork`] as JSON | until `network rm` (on any node) |
//! | `PREFIX/endpoints/NETWORK/IP` | [`OverlayEndpoint`] as JSON | the lease of the node whose endpoint has the address |
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
//! [`Cluster::subscribe`] tells the agent when the view changed.

mod config;
mod keys;
pub mod overlay;

use config::tls_options;
pub use config::{ClusterConfig, TlsFiles};
use keys::Entry;
pub use keys::Keys;
pub use overlay::{OverlayEndpoint, OverlayError, OverlayNetwork};
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

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
    NameTaken { name: String, holder: Ipv4Addr },
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
    /// Where the node's overlay traffic goes.
    pub underlay: Ipv4Addr,
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
                if let Some(vni) = n.vni {
                    v.networks
                        .insert(n.name.clone(), OverlayNetwork::of(n, vni, ""));
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
        self.view.read().map(|v| v.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut ClusterView)) {
        if let Ok(mut v) = self.view.write() {
            f(&mut v);
        }
    }

    fn record(&self) -> NodeRecord {
        NodeRecord {
            name: self.cfg.node_name.clone(),
            underlay: self.cfg.underlay,
            version: {
                let v = crate::api::VersionView::current();
                format!("{} ({})", v.version, v.git_commit)
            },
        }
    }

    /// Keeps the session with etcd up, for as long as the agent runs.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let Err(err) = self.session(&mut backoff).await;
            let msg = err.to_string();
            if self.view().error.as_deref() != Some(msg.as_str()) {
                warn!(error = %msg, "etcd session ended; retrying, the datapath keeps what it knows");
            }
            if let Ok(mut c) = self.current.lock() {
                *c = None;
            }
            self.update(|v| {
                v.connected = false;
                v.error = Some(msg);
            });
            self.changed();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn connect(&self) -> Result<Client, ClusterError> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        if let Some(tls) = tls_options(&self.cfg.tls)? {
            opts = opts.with_tls(tls);
        }
        Ok(Client::connect(&self.cfg.endpoints, Some(opts)).await?)
    }

    /// One session: registration, this node's addresses put back on the new lease,
    /// everything under the prefix listed then watched, the lease renewed. Ends only when
    /// some of it fails.
    async fn session(
        &self,
        backoff: &mut Duration,
    ) -> Result<std::convert::Infallible, ClusterError> {
        let mut client = self.connect().await?;
        let lease = client.lease_grant(LEASE_TTL_SECS, None).await?.id();
        let me = self.record();
        let key = self.keys.node(&me.name);
        let value = json(&me);
        // Ours when nobody has the name, or when it names this very node (a restart; an
        // unreadable record too).
        let held = put_if_ours(&mut client, key, value, lease, |h: Option<&NodeRecord>| {
            h.is_none_or(|h| h.underlay == me.underlay)
        })
        .await;
        match held {
            Ok(None) => {}
            Ok(Some(holder)) => {
                let _ = client.lease_revoke(lease).await;
                return Err(ClusterError::NameTaken {
                    name: me.name,
                    holder: holder.map_or(Ipv4Addr::UNSPECIFIED, |h| h.underlay),
                });
            }
            Err(e) => {
                let _ = client.lease_revoke(lease).await;
                return Err(e);
            }
        }
        let conflicts = self.reassert(&mut client, lease).await?;
        for c in &conflicts {
            warn!("{c}");
        }
        let listed = client
            .get(self.keys.root(), Some(GetOptions::new().with_prefix()))
            .await?;
        let revision = listed.header().map_or(0, |h| h.revision());
        let mut fresh = ClusterView {
            node: me.name.clone(),
            connected: true,
            listed: true,
            conflicts,
            ..ClusterView::default()
        };
        for kv in listed.kvs() {
            self.apply_put(&mut fresh, kv);
        }
        info!(
            node = %me.name,
            underlay = %me.underlay,
            nodes = fresh.nodes.len(),
            networks = fresh.networks.len(),
            "registered with etcd"
        );
        self.update(|v| *v = fresh);
        if let Ok(mut c) = self.current.lock() {
            *c = Some((client.clone(), lease));
        }
        self.changed();
        *backoff = Duration::from_millis(200);
        let mut watch = client
            .watch(
                self.keys.root(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1),
                ),
            )
            .await?;
        let (mut keeper, mut renewals) = client.lease_keep_alive(lease).await?;
        let mut tick =
            tokio::time::interval(Duration::from_secs((LEASE_TTL_SECS / 3).max(1) as u64));
        loop {
            tokio::select! {
                _ = tick.tick() => keeper.keep_alive().await?,
                renewed = renewals.message() => match renewed? {
                    Some(r) if r.ttl() > 0 => {}
                    _ => return Err(ClusterError::LeaseLost),
                },
                changed = watch.message() => {
                    let Some(resp) = changed? else {
                        return Err(ClusterError::WatchEnded);
                    };
                    if resp.canceled() {
                        return Err(ClusterError::WatchEnded);
                    }
                    let mut lost = false;
                    self.update(|v| {
                        for ev in resp.events() {
                            let Some(kv) = ev.kv() else { continue };
                            match ev.event_type() {
                                EventType::Put => self.apply_put(v, kv),
                                EventType::Delete => lost |= self.apply_delete(v, kv),
                            }
                        }
                    });
                    self.changed();
                    if lost {
                        // Our own key gone (lease expired while we were away): register
                        // again.
                        return Err(ClusterError::LeaseLost);
                    }
                }
            }
        }
    }

    /// A key written: into the view.
    fn apply_put(&self, v: &mut ClusterView, kv: &etcd_client::KeyValue) {
        let key = kv.key_str().unwrap_or("");
        match self.keys.entry(key) {
            Entry::Node(_) => {
                if let Ok(n) = serde_json::from_slice::<NodeRecord>(kv.value()) {
                    v.nodes.insert(n.name.clone(), n);
                }
            }
            Entry::Network(_) => {
                if let Ok(n) = serde_json::from_slice::<OverlayNetwork>(kv.value()) {
                    v.networks.insert(n.name.clone(), n);
                }
            }
            Entry::Endpoint(id) => {
                if let Ok(e) = serde_json::from_slice::<OverlayEndpoint>(kv.value()) {
                    v.endpoints.insert(id.to_string(), e);
                }
            }
            Entry::Other => {}
        }
    }

    /// A key deleted: out of the view. True when it was this node's registration.
    fn apply_delete(&self, v: &mut ClusterView, kv: &etcd_client::KeyValue) -> bool {
        let key = kv.key_str().unwrap_or("");
        match self.keys.entry(key) {
            Entry::Node(name) => {
                if name == self.cfg.node_name {
                    return true;
                }
                v.nodes.remove(name);
            }
            Entry::Network(name) => {
                v.networks.remove(name);
            }
            Entry::Endpoint(id) => {
                v.endpoints.remove(id);
            }
            Entry::Other => {}
        }
        false
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
