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
//! | [`uninstall`] | `netpath uninstall`: everything the agent made, taken down |
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
pub mod uninstall;

#[cfg(test)]
mod tests;

use host::{HostRecord, StateLock};
pub use store::{StateFile, StateStore};
pub use transactions::{Agent, HostHooks};

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
    /// Start with empty flow tables when their pinned layout differs from this build's.
    pub reset_flows: bool,
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

/// Runs the agent until SIGINT or SIGTERM. Nothing on the host changes before the state
/// directory is locked and the state read; the sysctls change only once the datapath is up.
pub async fn run(cfg: AgentConfig) -> anyhow::Result<()> {
    let _lock = StateLock::take(&cfg.state_dir)?;
    let mut record = HostRecord::load(&cfg.state_dir)?;
    let netlink = Netlink {
        bridge: GATEWAY_LINK.to_string(),
    };
    let mut store = StateFile::in_dir(&cfg.state_dir);
    let state = load_state(&mut store, &netlink)?;
    let listener = bind_socket(&cfg.socket)?;
    let uplinks = if cfg.uplinks.is_empty() {
        vec![netlink::default_route_interface()?
            .context("no default route: name the uplink with --uplink IFACE")?]
    } else {
        cfg.uplinks.clone()
    };
    host::ensure_bpffs(&cfg.bpffs, &mut record)?;
    record.save(&cfg.state_dir)?;
    let dp = Datapath::open(Some(&cfg.bpffs), cfg.sizes, cfg.reset_flows)
        .context("loading the datapath")?;
    let cgroup = match &cfg.cgroup {
        Some(c) => c.clone(),
        None => host::cgroup_root(&mut record)?,
    };
    record.save(&cfg.state_dir)?;
    let hooks = HostHooks {
        uplinks: uplinks.iter().map(|u| (u.clone(), cfg.xdp)).collect(),
        cgroup: Some(cgroup),
        netns_cookie: host::netns_cookie()?,
    };
    let mut agent = Agent::new(state, dp, netlink, store, hooks);
    agent.reconcile()?;
    agent.sync_host_addrs()?;
    record.set_sysctl(&cfg.state_dir, host::IP_FORWARD, "1")?;
    record.reserve_ports(&cfg.state_dir, &host::snat_range())?;
    let agent = Arc::new(Mutex::new(agent));
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
    info!("shutting down; the datapath keeps running (netpath uninstall removes it)");
    watcher.abort();
    expiry.abort();
    let _ = std::fs::remove_file(&cfg.socket);
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
