//! perf's view of the path: the share of a CPU's time spent in netpath's programs.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

/// Runs `f` while `perf` samples `cpu` with call chains; the share (%) of the samples spent
/// in netpath's programs and what they call.
pub fn netpath_share<T>(cpu: usize, f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let (out, text) = record(&["-C", &cpu.to_string()], f)?;
    Ok((out, programs_share(&text)))
}

/// Runs `f` while `perf` samples every CPU; the share (%) of the CPUs' busy time (not idle)
/// spent in netpath's programs and what they call.
pub fn netpath_share_of_busy<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let (out, text) = record(&["-a"], f)?;
    // Idle is where the CPUs halt: their own samples (not their callers').
    let idle: f64 = text
        .lines()
        .filter(|l| {
            [
                "_safe_halt",
                "default_idle",
                "poll_idle",
                "intel_idle",
                "acpi_idle",
            ]
            .iter()
            .any(|s| l.contains(s))
        })
        .filter_map(|l| column(l, 1))
        .sum();
    let busy = (100.0 - idle).max(f64::MIN_POSITIVE);
    Ok((out, programs_share(&text) * 100.0 / busy))
}

/// The `n`th percentage column of a report line.
fn column(line: &str, n: usize) -> Option<f64> {
    line.split_whitespace()
        .nth(n)?
        .trim_end_matches('%')
        .parse::<f64>()
        .ok()
}

/// "  3.76%  3.74%  [k] bpf_prog_<tag>_netpath_uplink_tc": the first column (children)
/// counts the program and everything it calls; programs do not call each other.
fn programs_share(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.contains("bpf_prog_") && l.contains("_netpath_"))
        .filter_map(|l| column(l, 0))
        .sum()
}

/// Runs `f` while `perf record` samples (`which`: `-C CPU` or `-a`); perf's report.
fn record<T>(which: &[&str], f: impl FnOnce() -> Result<T>) -> Result<(T, String)> {
    let data = std::env::temp_dir().join(format!("netpath-bench-perf-{}", std::process::id()));
    let mut rec = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-g"])
        .args(which)
        .arg("-o")
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
    // It may have exited already; either way it is gone.
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
    // Cleanup: already gone is as good as removed.
    let _ = std::fs::remove_file(&data);
    let text = String::from_utf8_lossy(&report.stdout).into_owned();
    Ok((out?, text))
}
