//! perf's view of the path: the share of a CPU's time spent in netpath's programs.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

/// Runs `f` while `perf` samples `cpu` with call chains; the share (%) of the samples spent
/// in netpath's programs and what they call.
pub fn netpath_share<T>(cpu: usize, f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let data = std::env::temp_dir().join(format!("netpath-bench-perf-{}", std::process::id()));
    let mut rec = Command::new("perf")
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-g",
            "-C",
            &cpu.to_string(),
            "-o",
        ])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("perf (Debian package linux-perf)")?;
    // perf writes its header once it samples: wait for that, not for a guessed time.
    let start = Instant::now();
    while std::fs::metadata(&data).map_or(true, |m| m.len() == 0) {
        if start.elapsed() > Duration::from_secs(10) {
            anyhow::bail!("perf record did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = f();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(rec.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    rec.wait()?;
    let report = Command::new("perf")
        .args([
            "report",
            "--children",
            "--sort",
            "sym",
            "-g",
            "none",
            "--stdio",
            "-i",
        ])
        .arg(&data)
        .output()?;
    let _ = std::fs::remove_file(&data);
    let text = String::from_utf8_lossy(&report.stdout);
    // "  3.76%  3.74%  [k] bpf_prog_<tag>_netpath_uplink_tc": the first column (children)
    // counts the program and everything it calls; programs do not call each other.
    let share = text
        .lines()
        .filter(|l| l.contains("bpf_prog_") && l.contains("_netpath_"))
        .filter_map(|l| {
            l.split_whitespace()
                .next()?
                .trim_end_matches('%')
                .parse::<f64>()
                .ok()
        })
        .sum();
    Ok((out?, share))
}
