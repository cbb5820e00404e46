//! perf's view of the path: the share of a CPU's time spent in netpath's programs, or in
//! named kernel functions; how busy a CPU was (/proc/stat).
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

/// Runs `f` while `perf` samples `cpu` with call chains: the share (%) of its samples spent in
/// each of `symbols` and what they call (a kernel function's name as perf shows it), and in
/// netpath's programs with all they call.
pub fn shares<T>(
    cpu: usize,
    symbols: &[&str],
    f: impl FnOnce() -> Result<T>,
) -> Result<(T, Vec<f64>, f64)> {
    let (out, text) = record(&["-C", &cpu.to_string()], f)?;
    let share = |sym: &&str| {
        text.lines()
            .filter(|l| l.split_whitespace().last() == Some(*sym))
            .filter_map(|l| column(l, 0))
            .sum()
    };
    let programs = programs_share(&text);
    Ok((out, symbols.iter().map(share).collect(), programs))
}

/// Ticks `cpu` has spent (busy, in all) since boot, from /proc/stat.
pub fn cpu_ticks(cpu: usize) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&format!("cpu{cpu}")))
        .with_context(|| format!("cpu{cpu} in /proc/stat"))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // idle and iowait are the 4th and 5th.
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    let all: u64 = ticks.iter().sum();
    Ok((all - idle, all))
}

/// The share (%) of `cpu`'s time it was busy while `f` ran.
pub fn busy_while<T>(cpu: usize, f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let (b0, a0) = cpu_ticks(cpu)?;
    let out = f()?;
    let (b1, a1) = cpu_ticks(cpu)?;
    Ok((out, 100.0 * (b1 - b0) as f64 / (a1 - a0).max(1) as f64))
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
/// counts the program and everything it calls. Programs do not call each other, but a
/// program's body may be a subprogram of its own name under another tag (the entry point
/// calling it): one share per name, the outermost's (the largest).
fn programs_share(text: &str) -> f64 {
    let mut by_name: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    for l in text.lines() {
        let Some(sym) = l.split_whitespace().last() else {
            continue;
        };
        let Some(name) = sym
            .strip_prefix("bpf_prog_")
            .and_then(|rest| rest.split_once('_'))
            .map(|(_, name)| name)
            .filter(|name| name.starts_with("netpath_"))
        else {
            continue;
        };
        if let Some(share) = column(l, 0) {
            let e = by_name.entry(name).or_insert(0.0);
            *e = e.max(share);
        }
    }
    by_name.values().sum()
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

#[cfg(test)]
mod tests {
    use super::programs_share;

    #[test]
    fn a_program_and_its_own_body_count_once_and_programs_add_up() {
        let report = "\
    99.10%     1.70%  [k] bpf_prog_3765c04ba09fff28_netpath_uplink_xdp
    97.40%    20.00%  [k] bpf_prog_ddaa19146f9916e0_netpath_uplink_xdp
    36.29%    36.29%  [k] lookup_nulls_elem_raw
     0.40%     0.40%  [k] bpf_prog_0fae46e82c297f99_netpath_bench_sink
     0.30%     0.30%  [k] bpf_prog_0fae46e82c297f00_other
";
        let share = programs_share(report);
        assert!((share - 99.5).abs() < 1e-9, "{share}");
    }
}
