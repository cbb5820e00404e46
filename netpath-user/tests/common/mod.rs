//! Shared by the integration tests: `netpath_user::testing`, and the namespaced installation.
#![allow(unused_imports, dead_code)]
pub use netpath_user::testing::*;

pub mod matrix;
mod runs;
mod topo;
pub use runs::*;
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

/// `systemd-analyze verify` accepts the unit at `unit`, with the man pages of its
/// Documentation= found under `manpath`: no error and nothing said.
pub fn systemd_accepts(unit: &std::path::Path, manpath: &std::path::Path) {
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .env("MANPATH", manpath)
        .output()
        .expect("systemd-analyze");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether a damaged state file was set aside (`state.json.bad-*`) in `state_dir`.
pub fn state_set_aside(state_dir: &std::path::Path) -> bool {
    std::fs::read_dir(state_dir)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.bad-")
        })
}
