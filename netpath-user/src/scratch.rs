//! A test's own directory: a fresh one under the temporary directory, named after the test's
//! concern, this process and a random number, so tests running at once never share one, and
//! removed with everything in it when the test is done with it. Compiled for unit tests and
//! with feature `testing`.
use std::{
    ops::Deref,
    path::{Path, PathBuf},
};

/// `$TMPDIR/netpath-TAG-PID-RANDOM`, made now and removed on drop.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!(
            "netpath-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("a scratch directory under the temporary directory");
        ScratchDir(dir)
    }
}

impl Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Cleanup: already gone is as good as removed.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
