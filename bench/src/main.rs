//! `cargo xtask bench [--quick] [SCENARIO]...`: netpath measured beside its baselines in one
//! run, reported as ratios, with plots. Run as root; everything happens in namespaces the
//! benchmark makes and removes.
mod afpacket;
mod agent;
mod charts;
mod dns;
mod dns_floor;
mod docker;
mod flood;
mod flows;
mod lab;
mod overlay;
mod perf;
mod policy;
mod prog;
mod report;
mod rig;
mod scale;
mod tcp;
mod tools;
mod traffic;
mod turns;

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(name = "bench", about = "netpath benchmarks (run as root)")]
struct Args {
    /// Short runs (under two minutes in all): a smoke test of the harness, not a measurement.
    #[arg(long)]
    quick: bool,
    /// Where the report and plots go.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Serve the dns scenario's floor on ADDR:PORT until killed (the scenario starts it).
    #[arg(long, hide = true, value_name = "ADDR:PORT")]
    udp_floor: Option<std::net::SocketAddr>,
    /// Scenarios to run (default: all): prog, policy, pps, pps6, conn, flood, tax, tcp, tcp6, e2e, e2e6, host, scale,
    /// flows, agent, dns, docker, overlay.
    scenarios: Vec<String>,
}

const ALL: &[&str] = &[
    "prog", "policy", "pps", "pps6", "conn", "flood", "tax", "tcp", "tcp6", "e2e", "e2e6", "host",
    "scale", "flows", "agent", "dns", "docker", "overlay",
];

/// Progress over every measurement run, on stderr.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn new() -> Progress {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar }
    }

    /// Starts a step; it will count `runs` towards the total.
    pub fn step(&self, msg: &str) {
        self.bar.set_message(msg.to_string());
    }

    pub fn expect(&self, runs: u64) {
        self.bar.inc_length(runs);
    }

    pub fn inc(&self) {
        self.bar.inc(1);
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(addr) = args.udp_floor {
        return dns_floor::serve(addr);
    }
    let scenarios: Vec<String> = if args.scenarios.is_empty() {
        ALL.iter().map(|s| s.to_string()).collect()
    } else {
        args.scenarios.clone()
    };
    for s in &scenarios {
        if !ALL.contains(&s.as_str()) {
            bail!("unknown scenario {s:?} (known: {})", ALL.join(", "));
        }
    }
    let quick = args.quick;
    let p = Progress::new();
    let runs = if quick { 2 } else { 5 };
    let mut total = 0;
    for s in &scenarios {
        total += match s.as_str() {
            "prog" | "flows" => 1,
            "policy" => 1 + traffic::REFUSED_KINDS * turns::Turns::of(quick).runs(),
            "pps" => traffic::PPS_KINDS.len() * turns::Turns::of(quick).runs(),
            "pps6" => traffic::PPS6_VARIANTS.len() * turns::Turns::of(quick).runs(),
            "conn" => traffic::CONN_KINDS.len() * turns::Turns::of(quick).runs(),
            "flood" => flood::steps(quick),
            "tax" => tcp::TAX_KINDS.len() * runs,
            "tcp" => tcp::KINDS.len() * tcp::turns(quick).runs(),
            "tcp6" => tcp::KINDS6.len() * tcp::turns(quick).runs(),
            "e2e" => tcp::PEER_KINDS.len() * tcp::turns(quick).runs(),
            "e2e6" => tcp::PEER_KINDS6.len() * tcp::turns(quick).runs(),
            "host" => (tcp::HOST_KINDS.len() + tcp::OUT_KINDS.len()) * tcp::turns(quick).runs(),
            "agent" => agent::steps(quick),
            "dns" => dns::SERVERS.len() * dns::turns(quick).runs(),
            "docker" => docker::NETWORKS.len() * docker::turns(quick).rounds,
            "overlay" => overlay::KINDS.len() * runs,
            _ => 1 + 2 * scale::counts(quick).len() * scale::turns(quick).runs(),
        };
    }
    p.expect(total as u64);
    let mut tools = tools::Tools::new()?;
    let mut report = report::Report::new(quick);
    let mut latencies = Vec::new();
    let mut peer_latencies = Vec::new();
    for s in &scenarios {
        let sections = match s.as_str() {
            "prog" => {
                p.step("prog");
                let s = prog::run(quick)?;
                p.inc();
                vec![s]
            }
            "policy" => {
                p.step("policy");
                let mut s = policy::run(quick)?;
                p.inc();
                s.push(traffic::refused(quick, &mut tools, &p)?);
                s
            }
            "pps" => vec![traffic::pps(quick, &mut tools, &p)?],
            "pps6" => vec![traffic::pps6(quick, &mut tools, &p)?],
            "conn" => vec![traffic::conn(quick, &mut tools, &p)?],
            "flood" => flood::run(quick, &mut tools, &p)?,
            "tax" => tcp::tax(quick, &mut tools, &p)?,
            "tcp6" => tcp::run6(quick, &mut tools, &p)?,
            "e2e6" => tcp::peers6(quick, &mut tools, &p)?,
            "flows" => flows::run_all(quick, &p)?,
            "tcp" => {
                let (sections, dists) = tcp::run(quick, &mut tools, &p)?;
                latencies.extend(dists);
                sections
            }
            "e2e" => {
                let (sections, dists) = tcp::peers(quick, &mut tools, &p)?;
                peer_latencies = dists;
                sections
            }
            "host" => tcp::host(quick, &mut tools, &p)?,
            "agent" => agent::run(quick, &mut tools, &p)?,
            "dns" => dns::run(quick, &mut tools, &p)?,
            "docker" => docker::run(quick, &mut tools, &p)?,
            "overlay" => overlay::run(quick, &mut tools, &p)?,
            _ => {
                let sc = scale::run(quick, &mut tools, &p)?;
                vec![sc.cost, sc.rate, sc.install]
            }
        };
        for section in sections {
            p.bar.suspend(|| report.add(section));
        }
    }
    p.bar.finish_and_clear();
    std::fs::create_dir_all(&args.out)?;
    if charts::init() {
        plot(&mut report, &args.out, &latencies, &peer_latencies)?;
    } else {
        eprintln!(
            "bench: no font for plots (Debian package fonts-dejavu-core); report without plots"
        );
    }
    let written = report.write(&args.out)?;
    println!("report: {}", written.display());
    Ok(())
}

/// Draws each section's plot and records it in the section.
fn plot(
    report: &mut report::Report,
    dir: &std::path::Path,
    latencies: &tcp::Latencies,
    peer_latencies: &tcp::Latencies,
) -> Result<()> {
    for s in &mut report.sections {
        let file = s
            .scenario
            .replace([' ', ':', ',', '/'], "_")
            .replace("__", "_");
        match s.scenario.as_str() {
            "scale: per-packet cost" => {
                let pts: Vec<(f64, f64)> = s
                    .figures
                    .iter()
                    .map(|f| (leading_number(&f.variant), f.median()))
                    .collect();
                let p = charts::lines(
                    dir,
                    &format!("{file}.svg"),
                    "XDP DNAT hit cost vs published ports",
                    "published ports",
                    "ns/packet",
                    &[("netpath xdp".into(), pts)],
                )?;
                s.plots.push(p);
            }
            "scale: new-flow rate" | "scale: install" => {
                // One unit per axis: the lines are the figures in the first figure's unit.
                let unit = s
                    .figures
                    .first()
                    .map(|f| f.unit.clone())
                    .unwrap_or_default();
                let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
                for f in s.figures.iter().filter(|f| f.unit == unit) {
                    let Some((who, n)) = f.variant.split_once(", ") else {
                        continue;
                    };
                    if !n.ends_with("port") && !n.ends_with("ports") {
                        continue;
                    }
                    let pt = (leading_number(n), f.median());
                    match series.iter_mut().find(|(w, _)| w == who) {
                        Some((_, v)) => v.push(pt),
                        None => series.push((who.to_string(), vec![pt])),
                    }
                }
                let title = format!(
                    "{} vs published ports",
                    s.scenario.trim_start_matches("scale: ")
                );
                let p = charts::lines(
                    dir,
                    &format!("{file}.svg"),
                    &title,
                    "published ports",
                    &unit,
                    &series,
                )?;
                s.plots.push(p);
            }
            "tcp latency p50" => {
                let p = charts::cdf(
                    dir,
                    "tcp_latency.svg",
                    "TCP request/response latency",
                    latencies,
                )?;
                s.plots.push(p);
            }
            "tcp latency p99" => {}
            "e2e latency p99" => {
                let p = charts::cdf(
                    dir,
                    "e2e_latency.svg",
                    "Endpoint-to-endpoint request/response latency",
                    peer_latencies,
                )?;
                s.plots.push(p);
            }
            _ => s.plots.push(charts::bars(dir, &format!("{file}.svg"), s)?),
        }
    }
    Ok(())
}

fn leading_number(s: &str) -> f64 {
    s.split(|c: char| !c.is_ascii_digit())
        .find(|t| !t.is_empty())
        .and_then(|t| t.parse().ok())
        .unwrap_or(1.0)
}
