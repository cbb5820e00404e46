//! The node's session with etcd, in the background: connect, grant a lease, register, list
//! everything under the prefix and watch it, renew the lease; started again with a growing
//! pause while etcd is away. What the watch says becomes the view.
use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, WatchOptions};
use tracing::{info, warn};

use super::{
    json, keys::Entry, put_if_ours, tls_options, Cluster, ClusterError, ClusterView, NodeRecord,
    OverlayEndpoint, OverlayNetwork, LEASE_TTL_SECS, MAX_BACKOFF, REQUEST_TIMEOUT,
};
use crate::version;

impl Cluster {
    pub(super) fn record(&self) -> NodeRecord {
        NodeRecord {
            name: self.cfg.node_name.clone(),
            underlay: self.cfg.underlay,
            version: format!("{} ({})", version::VERSION, version::GIT_COMMIT),
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
            *self.current.lock() = None;
            self.update(|v| {
                v.connected = false;
                v.error = Some(msg);
            });
            self.changed();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    pub(super) async fn connect(&self) -> Result<Client, ClusterError> {
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
    pub(super) async fn session(
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
                // Unrevoked, the lease expires by itself within LEASE_TTL_SECS.
                let _ = client.lease_revoke(lease).await;
                return Err(ClusterError::NameTaken {
                    name: me.name,
                    holder: holder.map_or(Ipv4Addr::UNSPECIFIED.into(), |h| h.underlay),
                });
            }
            Err(e) => {
                // Unrevoked, the lease expires by itself within LEASE_TTL_SECS.
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
        *self.current.lock() = Some((client.clone(), lease));
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
    pub(super) fn apply_put(&self, v: &mut ClusterView, kv: &etcd_client::KeyValue) {
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
            Entry::Policy(key) => {
                if let Ok(p) = serde_json::from_slice(kv.value()) {
                    v.policies.insert(key.to_string(), p);
                }
            }
            Entry::Namespace(name) => {
                if let Ok(labels) = serde_json::from_slice(kv.value()) {
                    v.namespaces.insert(name.to_string(), labels);
                }
            }
            Entry::Other => {}
        }
    }

    /// A key deleted: out of the view. True when it was this node's registration.
    pub(super) fn apply_delete(&self, v: &mut ClusterView, kv: &etcd_client::KeyValue) -> bool {
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
            Entry::Policy(key) => {
                v.policies.remove(key);
            }
            Entry::Namespace(name) => {
                v.namespaces.remove(name);
            }
            Entry::Other => {}
        }
        false
    }
}
