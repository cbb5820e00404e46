//! The node agent: owns the datapath and the desired state, serves the API.
//!
//! | module | concern |
//! |---|---|
//! | here | [`AgentConfig`] and [`run`]: start-up order, serving, shutdown |
//! | [`transactions`] | [`Agent`] and every request that changes something |
//! | [`journal`] | each step's undo, played back on failure; what runs after the commit |
//! | [`reconcile`] | making the kernel match the desired state at start |
//! | [`service`] | the API's queries and the glue to [`crate::api::Service`] |
//! | [`tasks`] | background work (address watch, flow expiry) under a supervisor |
//! | [`host`] | host set-up: bpffs, cgroup, netns cookie, sysctls |
//! | [`hosts_file`] | /etc/netns/NAME/hosts for endpoints |
//! | [`store`] | the state file |
//!
//! The agent reaches the kernel only through [`DatapathOps`](crate::datapath::DatapathOps)
//! and [`LinkOps`](crate::netlink::LinkOps), so everything here but [`run`] and [`host`] is
//! unit-tested with in-memory fakes.
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{bail, Context as _};
use parking_lot::Mutex;
use tokio::net::UnixListener;
use tracing::info;

use crate::{
    api::server,
    datapath::{Datapath, MapSizes, XdpMode},
    model::{NetworkCreate, State, DEFAULT_NETWORK},
    netlink::{self, LinkOps, Netlink},
};

pub mod host;
pub mod hosts_file;
pub mod journal;
pub mod reconcile;
pub mod service;
pub mod store;
pub mod tasks;
pub mod transactions;

#[cfg(test)]
mod tests;

pub use store::{StateFile, StateStore};
pub use transactions::Agent;

/// Name of the port-less bridge that carries the networks' gateway addresses.
pub const GATEWAY_LINK: &str = "netpath0";

/// The agent as `netpath agent` runs it: the real datapath, netlink and state file.
pub type LiveAgent = Agent<Datapath, Netlink, StateFile>;

/// How the agent was started.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub uplinks: Vec<String>,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    pub xdp: XdpMode,
    pub sizes: MapSizes,
    /// cgroup v2 directory for the socket hooks (default: the root, found from the mounts).
    pub cgroup: Option<PathBuf>,
}

/// Loads the state, creating the default network (a subnet no route of this host uses).
fn load_state(store: &mut StateFile, net: &impl LinkOps) -> anyhow::Result<State> {
    let mut state = store
        .load()
        .with_context(|| format!("reading {}", store.path().display()))?;
    if !state.networks.contains_key(DEFAULT_NETWORK) {
        let routes = net.route_subnets()?;
        let default = state.plan_network(
            &NetworkCreate {
                name: DEFAULT_NETWORK.into(),
                ..Default::default()
            },
            &routes,
        )?;
        info!(subnet = %default.subnet, "created the default network");
        state.networks.insert(default.name.clone(), default);
        store.save(&state)?;
    }
    Ok(state)
}

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(cfg: AgentConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating {}", cfg.state_dir.display()))?;
    let netlink = Netlink {
        bridge: GATEWAY_LINK.to_string(),
    };
    let mut store = StateFile::in_dir(&cfg.state_dir);
    let state = load_state(&mut store, &netlink)?;
    host::ensure_bpffs(&cfg.bpffs)?;
    host::enable_forwarding()?;
    host::reserve_snat_ports()?;

    let uplinks = if cfg.uplinks.is_empty() {
        vec![netlink::default_route_interface()?
            .context("no default route: name the uplink with --uplink IFACE")?]
    } else {
        cfg.uplinks.clone()
    };
    let mut dp = Datapath::load(Some(&cfg.bpffs), cfg.sizes).context("loading the datapath")?;
    for up in &uplinks {
        dp.attach_uplink(up, cfg.xdp)
            .with_context(|| format!("attaching to uplink {up}"))?;
        info!(uplink = %up, xdp = ?cfg.xdp, "attached");
    }
    let cgroup = match &cfg.cgroup {
        Some(c) => c.clone(),
        None => host::cgroup_root()?,
    };
    dp.attach_sock_hooks(&cgroup, host::netns_cookie()?)
        .with_context(|| format!("attaching socket hooks to {}", cgroup.display()))?;
    info!(cgroup = %cgroup.display(), "socket hooks attached");
    let mut agent = Agent::new(state, dp, netlink, store, uplinks);
    agent.reconcile()?;
    agent.sync_host_addrs()?;
    let agent = Arc::new(Mutex::new(agent));

    let listener = bind_socket(&cfg.socket)?;
    info!(socket = %cfg.socket.display(), "serving the API");

    let watcher = tasks::supervise("address watch", {
        let agent = agent.clone();
        move || tasks::watch_addrs(agent.clone())
    });
    let expiry = tasks::supervise("flow expiry", {
        let agent = agent.clone();
        move || tasks::expire_flows(agent.clone())
    });
    server::serve(listener, agent.clone(), shutdown_signal()?).await;
    info!("shutting down: detaching programs");
    watcher.abort();
    expiry.abort();
    let _ = std::fs::remove_file(&cfg.socket);
    // Dropping the agent drops the datapath, whose links detach every program.
    drop(agent);
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
    })
}

fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another agent is serving {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}
