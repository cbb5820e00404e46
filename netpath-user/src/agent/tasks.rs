//! The agent's background work: following the host's addresses (netlink) and expiring
//! idle outbound flows. Each runs under a supervisor: a task that ends or panics is logged
//! as an error and started again after a growing pause, never lost silently.
use std::{future::Future, sync::Arc, time::Duration};

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::{store::StateStore, transactions::Agent};
use crate::{
    datapath::{DatapathOps, Expired},
    netlink::LinkOps,
};

/// How often idle outbound flows are looked for.
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(5);

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

/// Runs `f` on the agent on a blocking thread (agent work does syscalls).
async fn with_agent<A, T>(
    agent: &Arc<Mutex<A>>,
    f: impl FnOnce(&mut A) -> T + Send + 'static,
) -> anyhow::Result<T>
where
    A: Send + 'static,
    T: Send + 'static,
{
    let agent = agent.clone();
    Ok(tokio::task::spawn_blocking(move || f(&mut agent.lock())).await?)
}

/// Expires idle flows every [`EXPIRY_INTERVAL`] (the first run catches up at once).
pub async fn expire_flows<D, L, S>(agent: Arc<Mutex<Agent<D, L, S>>>) -> anyhow::Result<()>
where
    D: DatapathOps + 'static,
    L: LinkOps + 'static,
    S: StateStore + 'static,
{
    let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
    loop {
        tick.tick().await;
        let n = with_agent(&agent, |a| a.expire_flows()).await?;
        if n.published + n.outbound > 0 {
            info!(
                published = n.published,
                outbound = n.outbound,
                "expired idle flows"
            );
        }
    }
}

/// Follows address changes over netlink and keeps the host addresses in the datapath in
/// step. Fails (and is restarted) when the netlink subscription cannot be made or ends.
pub async fn watch_addrs<D, L, S>(agent: Arc<Mutex<Agent<D, L, S>>>) -> anyhow::Result<()>
where
    D: DatapathOps + 'static,
    L: LinkOps + 'static,
    S: StateStore + 'static,
{
    use futures::StreamExt;
    let (conn, _h, mut msgs) =
        rtnetlink::new_multicast_connection(&[rtnetlink::MulticastGroup::Ipv4Ifaddr])?;
    let conn = tokio::spawn(conn);
    // Changes made while no one was watching.
    with_agent(&agent, |a| a.sync_host_addrs()).await??;
    while msgs.next().await.is_some() {
        if let Err(e) = with_agent(&agent, |a| a.sync_host_addrs()).await? {
            warn!("syncing host addresses: {e:#}");
        }
    }
    conn.abort();
    anyhow::bail!("the netlink address subscription ended")
}

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    /// Follows the host's addresses: where publishes on every address answer, and each
    /// uplink's address for outbound NAT.
    pub fn sync_host_addrs(&mut self) -> anyhow::Result<()> {
        let addrs = self.net.host_addrs()?;
        self.dp.set_host_addrs(&addrs)?;
        let mut uplinks = Vec::new();
        for (name, _) in &self.host.uplinks {
            if let Some(u) = self.net.link_ipv4(name)? {
                uplinks.push(u);
            }
        }
        self.dp.set_uplinks(&uplinks)?;
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
