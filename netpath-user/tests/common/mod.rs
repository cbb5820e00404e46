//! Shared by the integration tests: `netpath_user::testing`, and the namespaced installation.
#![allow(unused_imports, dead_code)]
pub use netpath_user::testing::*;

mod topo;
pub use topo::*;

/// `promtool check metrics` passes `text`.
pub fn promtool_accepts(text: &str) {
    use std::io::Write as _;
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
