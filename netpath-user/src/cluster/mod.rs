//! Several hosts: nodes share state through etcd (v3 API, `etcd-client`).
//!
//! Keys, under `--etcd-prefix` (default `/netpath`):
//!
//! | key | value | lifetime |
//! |---|---|---|
//! | `PREFIX/nodes/NAME` | [`NodeRecord`] as JSON | the node's lease: gone [`LEASE_TTL_SECS`] after its agent stops renewing it |
//!
//! The agent keeps a session with etcd in the background ([`Cluster::run`]): connect, grant a
//! lease, register the node, list the other nodes and watch them, renew the lease. When etcd
//! cannot be reached the session starts again (after a pause that grows to
//! [`MAX_BACKOFF`]); meanwhile the view keeps what it last knew, marked disconnected, and the
//! datapath goes on with it. A restarted agent registers under the same key with a new lease
//! (its old lease expires with nothing left on it), so a restart neither duplicates nor drops
//! the node. A name another node (another underlay address) holds is not taken over.
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, WatchOptions,
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

/// How this node joins the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// etcd client URLs (`http://` or `https://`).
    pub endpoints: Vec<String>,
    /// This node's name (unique among the nodes).
    pub node_name: String,
    /// Every key lives under this prefix.
    pub prefix: String,
    /// The address other nodes reach this one at.
    pub underlay: Ipv4Addr,
    pub tls: TlsFiles,
}

/// TLS for etcd: the CA that signed its certificate, and this node's own certificate and
/// key when etcd asks clients for one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

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
    let mut cause: &dyn std::error::Error = e;
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
}

/// The keys of one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// Where the nodes are registered (a prefix: ends with `/`).
    pub fn nodes(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    pub fn node(&self, name: &str) -> String {
        format!("{}{name}", self.nodes())
    }
}

/// This node's membership: the session with etcd and what it learnt.
pub struct Cluster {
    cfg: ClusterConfig,
    keys: Keys,
    view: RwLock<ClusterView>,
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
        }
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
            self.update(|v| {
                v.connected = false;
                v.error = Some(msg);
            });
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

    /// One session: registration, the nodes listed then watched, the lease renewed. Ends only
    /// when some of it fails.
    async fn session(
        &self,
        backoff: &mut Duration,
    ) -> Result<std::convert::Infallible, ClusterError> {
        let mut client = self.connect().await?;
        let lease = client.lease_grant(LEASE_TTL_SECS, None).await?.id();
        let me = self.record();
        let key = self.keys.node(&me.name);
        let value = serde_json::to_vec(&me).unwrap_or_default();
        // Ours when nobody has the name, or when it names this very node (a restart).
        let free = Compare::version(key.clone(), CompareOp::Equal, 0);
        let put = TxnOp::put(
            key.clone(),
            value,
            Some(PutOptions::new().with_lease(lease)),
        );
        let got = client
            .txn(
                Txn::new()
                    .when([free])
                    .and_then([put.clone()])
                    .or_else([TxnOp::get(key.clone(), None)]),
            )
            .await?;
        if !got.succeeded() {
            // The key as it is: its holder, and its revision (what a take-over compares).
            let held = got.op_responses().into_iter().find_map(|r| match r {
                etcd_client::TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
                    (
                        serde_json::from_slice::<NodeRecord>(kv.value()).ok(),
                        kv.mod_revision(),
                    )
                }),
                _ => None,
            });
            let Some((holder, revision)) = held else {
                // A failed compare means the key exists, so its get answers; if it did not,
                // the next session looks again.
                let _ = client.lease_revoke(lease).await;
                return Err(ClusterError::Raced);
            };
            if let Some(h) = holder.filter(|h| h.underlay != me.underlay) {
                let _ = client.lease_revoke(lease).await;
                return Err(ClusterError::NameTaken {
                    name: me.name,
                    holder: h.underlay,
                });
            }
            // Ours from before a restart (or unreadable): registered again on the new lease,
            // unless it changed meanwhile.
            let unchanged = Compare::mod_revision(key.clone(), CompareOp::Equal, revision);
            let again = client
                .txn(Txn::new().when([unchanged]).and_then([put]))
                .await?;
            if !again.succeeded() {
                let _ = client.lease_revoke(lease).await;
                return Err(ClusterError::Raced);
            }
        }
        let listed = client
            .get(self.keys.nodes(), Some(GetOptions::new().with_prefix()))
            .await?;
        let revision = listed.header().map_or(0, |h| h.revision());
        let nodes: BTreeMap<String, NodeRecord> = listed
            .kvs()
            .iter()
            .filter_map(|kv| serde_json::from_slice::<NodeRecord>(kv.value()).ok())
            .map(|n| (n.name.clone(), n))
            .collect();
        info!(node = %me.name, underlay = %me.underlay, nodes = nodes.len(), "registered with etcd");
        self.update(|v| {
            v.connected = true;
            v.error = None;
            v.nodes = nodes;
        });
        *backoff = Duration::from_millis(200);
        let mut watch = client
            .watch(
                self.keys.nodes(),
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
        let prefix = self.keys.nodes();
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
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        let name = kv.key_str().unwrap_or("").trim_start_matches(prefix.as_str()).to_string();
                        match ev.event_type() {
                            EventType::Put => {
                                if let Ok(n) = serde_json::from_slice::<NodeRecord>(kv.value()) {
                                    self.update(|v| {
                                        v.nodes.insert(n.name.clone(), n);
                                    });
                                }
                            }
                            EventType::Delete => {
                                if name == me.name {
                                    // Our own key gone (lease expired while we were away):
                                    // register again.
                                    return Err(ClusterError::LeaseLost);
                                }
                                self.update(|v| {
                                    v.nodes.remove(&name);
                                });
                            }
                        }
                    }
                }
            }
        }
    }
}

impl ClusterConfig {
    /// Refuses what cannot work before any connection: no endpoint, a name that is no name,
    /// TLS files unreadable or half given.
    pub fn check(&self) -> Result<(), String> {
        if self.endpoints.iter().all(|e| e.trim().is_empty()) {
            return Err("--etcd needs at least one URL".into());
        }
        if !crate::model::valid_name(&self.node_name) {
            return Err(format!(
                "invalid node name {:?}: letters, digits, '.', '_' and '-', up to 64",
                self.node_name
            ));
        }
        tls_options(&self.tls)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// TLS options from the files given (none when no file is).
fn tls_options(files: &TlsFiles) -> Result<Option<TlsOptions>, ClusterError> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| ClusterError::Read(p.clone(), e));
    if files.ca.is_none() && files.cert.is_none() && files.key.is_none() {
        return Ok(None);
    }
    let mut tls = TlsOptions::new();
    if let Some(ca) = &files.ca {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        (None, None) => {}
        _ => return Err(ClusterError::HalfIdentity),
    }
    Ok(Some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_prefix() {
        let k = Keys::new("/netpath/");
        assert_eq!(k.nodes(), "/netpath/nodes/");
        assert_eq!(k.node("n1"), "/netpath/nodes/n1");
    }

    #[test]
    fn tls_files_are_checked_before_any_connection() {
        let half = TlsFiles {
            cert: Some("/nonexistent/cert.pem".into()),
            ..TlsFiles::default()
        };
        assert!(matches!(
            tls_options(&half),
            Err(ClusterError::HalfIdentity)
        ));
        let missing = TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        let err = tls_options(&missing).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        assert!(tls_options(&TlsFiles::default()).unwrap().is_none());
    }
}
