//! A test's own directory: a fresh one under the temporary directory, named after the test's
//! concern, this process and a random number, so tests running at once never share one.
//! Compiled for unit tests and with feature `testing`.
use std::path::PathBuf;

/// Makes and returns `$TMPDIR/netpath-TAG-PID-RANDOM`.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "netpath-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("a scratch directory under the temporary directory");
    dir
}
