//! Where the desired state is kept: [`StateFile`], a JSON file in the agent's state
//! directory written atomically (temporary file, fsync, rename, fsync of the directory), and
//! loaded at start with the default network made when it has none.
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tracing::info;

use super::AgentConfig;
use crate::{
    model::{NetworkCreate, State, DEFAULT_NETWORK},
    netlink::LinkOps,
};

/// Saves the desired state; a transaction commits by saving.
pub trait StateStore: Send {
    fn save(&mut self, state: &State) -> std::io::Result<()>;
}

/// The state file (`STATE_DIR/state.json`).
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file of `state_dir`.
    pub fn in_dir(state_dir: &Path) -> StateFile {
        StateFile {
            path: state_dir.join("state.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads it; a missing file is the empty state.
    pub fn load(&self) -> std::io::Result<State> {
        State::load(&self.path)
    }

    /// Reads it and checks it ([`State::validated`]). A file that is not a state at all
    /// (empty, truncated, corrupt) is an error that changes nothing: the agent refuses to start
    /// and the running datapath, which holds everything the file described, stays as it is
    /// until a person decides. A state with problems is repaired: the file is kept aside
    /// (`state.json.bad-UNIXTIME`) and what is wrong is returned, one line each; the state
    /// returned is what could be kept (and is saved, so the agent starts from it).
    pub fn load_checked(&mut self) -> std::io::Result<(State, Vec<String>)> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((State::default(), Vec::new()))
            }
            Err(e) => return Err(e),
        };
        let file = self.path.display().to_string();
        let (state, mut problems) = match serde_json::from_slice::<State>(&bytes) {
            Ok(s) => {
                let (s, p) = s.validated();
                (
                    s,
                    p.into_iter()
                        .map(|p| format!("{file}: {}", p.0))
                        .collect::<Vec<String>>(),
                )
            }
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "not a netpath state ({}): nothing was changed and the \
                         running datapath is left as it is; restore the file, or move it \
                         aside to start with no endpoints",
                        if bytes.is_empty() {
                            "it is empty".to_string()
                        } else {
                            format!("line {}, column {}: {e}", e.line(), e.column())
                        }
                    ),
                ))
            }
        };
        if !problems.is_empty() {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let aside = self.path.with_extension(format!("json.bad-{secs}"));
            std::fs::copy(&self.path, &aside)?;
            problems.push(format!(
                "{file}: the file as it was is kept as {}",
                aside.display()
            ));
            self.save(&state)?;
        }
        Ok((state, problems))
    }
}

impl StateStore for StateFile {
    fn save(&mut self, state: &State) -> std::io::Result<()> {
        state.save(&self.path)
    }
}

/// The state kept in memory, with fault injection (unit tests).
#[cfg(any(test, feature = "testing"))]
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    pub saved: Option<State>,
    pub faults: crate::datapath::fake::Faults,
}

#[cfg(any(test, feature = "testing"))]
impl StateStore for MemoryStore {
    fn save(&mut self, state: &State) -> std::io::Result<()> {
        self.faults
            .step("save")
            .map_err(|what| std::io::Error::other(format!("{what}: injected failure")))?;
        self.saved = Some(state.clone());
        Ok(())
    }
}

/// Loads the state, creating the default network as `cfg` says (on its subnets, or subnets of
/// the pools no route of this host uses; with IPv6 when it asks for it).
pub(super) fn load_state(
    store: &mut StateFile,
    net: &impl LinkOps,
    cfg: &AgentConfig,
) -> anyhow::Result<State> {
    let (mut state, problems) = store
        .load_checked()
        .with_context(|| format!("reading {}", store.path().display()))?;
    for p in problems {
        tracing::error!("{p}");
    }
    let ipv6 = cfg.default_ipv6 || cfg.default_subnet6.is_some();
    match state.networks.get(DEFAULT_NETWORK) {
        Some(n) if n.v6.is_some() != ipv6 => tracing::warn!(
            "the default network {} IPv6 and the configuration asks otherwise: it changes only \
             when made again (no endpoint on it, the network removed from the state)",
            if n.v6.is_some() { "has" } else { "has no" }
        ),
        Some(_) => {}
        None => {
            let routes = net.route_subnets()?;
            let addrs: Vec<std::net::Ipv4Addr> = net.host_addrs()?.into_iter().collect();
            let (addrs6, routes6) = net.host_view6()?;
            let default = state.plan_network(
                &NetworkCreate {
                    name: DEFAULT_NETWORK.into(),
                    subnet: cfg.default_subnet.map(|s| s.to_string()),
                    ipv6,
                    subnet6: cfg.default_subnet6.map(|s| s.to_string()),
                    ..Default::default()
                },
                crate::model::plan::HostView {
                    routes: &routes,
                    addrs: &addrs,
                    routes6: &routes6,
                    addrs6: &addrs6,
                    busy: &|_| false,
                },
            )?;
            info!(subnet = ?default.v4.map(|p| p.subnet), ipv6 = ?default.v6.map(|p| p.subnet), "created the default network");
            state.networks.insert(default.name.clone(), default);
            store.save(&state)?;
        }
    }
    Ok(state)
}
