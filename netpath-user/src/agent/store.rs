//! Where the desired state is kept: [`StateFile`], a JSON file in the agent's state
//! directory written atomically (temporary file, fsync, rename, fsync of the directory).
use std::path::{Path, PathBuf};

use crate::model::State;

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
