//! The agent's background work: following the host (addresses and links, over netlink),
//! repairing drift, and expiring idle flows. Each runs under a supervisor: a task that ends or panics is logged
//! as an error and started again after a growing pause, never lost silently.
use std::{future::Future, sync::Arc, time::Duration};

use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::{service::Shared, store::StateStore, Agent};
use crate::{
    datapath::{DatapathOps, Expired},
    netlink::LinkOps,
};

/// How often idle flows are looked for.
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(5);
/// How often drift is looked for (beside netlink's word).
pub const DRIFT_INTERVAL: Duration = Duration::from_secs(10);

/// Runs `task()` for ever: when it returns (an error, or a panic) it is logged and started
/// again, after 1 s, then 2 s, ... up to 30 s; a run that lasted a minute resets the pause.
pub fn supervise<F, Fut>(name: &'static str, task: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut pause = Duration::from_secs(1);
        loop {
            let started = tokio::time::Instant::now();
            let outcome = tokio::spawn(task()).await;
            match outcome {
                Ok(Ok(())) => warn!(task = name, "background task ended; restarting"),
                Ok(Err(e)) => error!(task = name, "background task failed: {e:#}; restarting"),
                Err(e) => error!(task = name, "background task panicked: {e}; restarting"),
            }
            if started.elapsed() > Duration::from_secs(60) {
                pause = Duration::from_secs(1);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    })
}

/// [`supervise`] of a task that takes the agent: each start gets its own handle.
pub fn supervise_with<T, F, Fut>(name: &'static str, agent: &Arc<T>, task: F) -> JoinHandle<()>
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let agent = agent.clone();
    supervise(name, move || task(agent.clone()))
}

/// The agent's background tasks, each run under [`supervise`].
impl<D, L, S> Shared<D, L, S>
where
    D: DatapathOps + 'static,
    L: LinkOps + 'static,
    S: StateStore + 'static,
{
    /// Runs `f` on the agent (under its lock) on a blocking thread: agent work does syscalls.
    async fn with_agent<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Agent<D, L, S>) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let shared = self.clone();
        Ok(tokio::task::spawn_blocking(move || shared.write(f)).await?)
    }

    /// Applies what the cluster says to this node whenever it changes (overlay networks made or
    /// removed here, the overlay maps written).
    pub async fn follow_cluster(
        self: Arc<Self>,
        cluster: Arc<crate::cluster::Cluster>,
    ) -> anyhow::Result<()> {
        let mut changes = cluster.subscribe();
        loop {
            let view = cluster.view();
            self.with_agent(move |a| a.apply_cluster(&view)).await?;
            changes.changed().await?;
        }
    }

    /// Expires idle flows every [`EXPIRY_INTERVAL`] (the first run catches up at once).
    pub async fn expire_flows(self: Arc<Self>) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
        loop {
            tick.tick().await;
            let n = self.with_agent(|a| a.expire_flows()).await?;
            if n.published + n.outbound > 0 {
                info!(
                    published = n.published,
                    outbound = n.outbound,
                    "expired idle flows"
                );
            }
        }
    }

    /// Follows the host over netlink: address changes keep the host addresses in the datapath
    /// in step; a link going away (an endpoint's namespace deleted, a veth removed) triggers a
    /// repair at once. Fails (and is restarted) when the subscription cannot be made or ends.
    pub async fn watch_host(self: Arc<Self>) -> anyhow::Result<()> {
        use futures::StreamExt;
        use netlink_packet_core::NetlinkPayload;
        use netlink_packet_route::RouteNetlinkMessage;
        let (conn, _h, mut msgs) = rtnetlink::new_multicast_connection(&[
            rtnetlink::MulticastGroup::Ipv4Ifaddr,
            rtnetlink::MulticastGroup::Ipv6Ifaddr,
            rtnetlink::MulticastGroup::Link,
        ])?;
        let conn = tokio::spawn(conn);
        // Changes made while no one was watching.
        self.with_agent(|a| a.sync_host_addrs()).await??;
        while let Some((msg, _)) = msgs.next().await {
            match msg.payload {
                // One of the endpoints' veths gone (its namespace deleted, say); links that move
                // into a namespace as endpoints are made are gone from here too, and ignored.
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                    let ifindex = link.header.index;
                    let repaired = self
                        .with_agent(move |a| a.owns_link(ifindex).then(|| a.repair()))
                        .await?;
                    if let Some(r) = repaired {
                        report_repairs(r);
                    }
                }
                // Every new endpoint's host veth brings an IPv6 link-local address, which
                // nothing of the host's view keeps: syncing on it made creating an endpoint
                // cost a dump of every address on the host.
                NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewAddress(addr) | RouteNetlinkMessage::DelAddress(addr),
                ) if !crate::netlink::is_link_local6(&addr) => {
                    if let Err(e) = self.with_agent(|a| a.sync_host_addrs()).await? {
                        warn!("syncing host addresses: {e:#}");
                    }
                }
                _ => {}
            }
        }
        conn.abort();
        anyhow::bail!("the netlink subscription ended")
    }

    /// Repairs drift every [`DRIFT_INTERVAL`], whatever netlink said.
    pub async fn check_drift(self: Arc<Self>) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(DRIFT_INTERVAL);
        tick.tick().await;
        loop {
            tick.tick().await;
            report_repairs(self.with_agent(|a| a.repair()).await?);
        }
    }
}

fn report_repairs(r: Result<super::repair::Repairs, crate::error::AgentError>) {
    match r {
        Ok(r) if r.count() > 0 => info!(
            pruned = r.pruned.len(),
            recreated = r.recreated.len(),
            reattached = r.reattached.len(),
            "repaired drift"
        ),
        Ok(_) => {}
        Err(e) => warn!("repairing drift: {e}"),
    }
}

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    /// Follows the host's addresses: where publishes on every address answer, and each
    /// uplink's addresses (IPv4's, and its global IPv6 one) for outbound NAT.
    pub fn sync_host_addrs(&mut self) -> anyhow::Result<()> {
        let addrs = self.net.host_addrs()?;
        let addrs6 = self.net.host_addrs6()?;
        self.dp
            .set_host_addrs(&addrs, &addrs6.into_iter().collect())?;
        let (mut uplinks, mut uplinks6) = (Vec::new(), Vec::new());
        for (name, _) in &self.host.uplinks {
            if let Some(u) = self.net.link_ipv4(name)? {
                uplinks.push(u);
            }
            if let Some(u) = self.net.link_ipv6(name)? {
                uplinks6.push(u);
            }
        }
        self.dp.set_uplinks(&uplinks)?;
        self.dp.set_uplinks6(&uplinks6)?;
        Ok(())
    }

    /// Drops idle flows, published and outbound.
    pub fn expire_flows(&mut self) -> Expired {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
            .unwrap_or(0);
        self.dp.expire(now)
    }
}
