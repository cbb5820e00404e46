//! `cargo xtask bench [SCENARIO]...`: netpath measured beside its baselines, in one run,
//! reported as ratios.
mod prog;
mod report;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;

#[derive(Parser)]
#[command(name = "bench", about = "netpath benchmarks (run as root)")]
struct Args {
    /// Short runs for a smoke test of the harness.
    #[arg(long)]
    quick: bool,
    /// Where the report goes.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Scenarios to run (default: all). Known: prog.
    scenarios: Vec<String>,
}

const ALL: &[&str] = &["prog"];

fn main() -> Result<()> {
    let args = Args::parse();
    let scenarios: Vec<String> = if args.scenarios.is_empty() {
        ALL.iter().map(|s| s.to_string()).collect()
    } else {
        args.scenarios.clone()
    };
    let mut report = report::Report::new(args.quick);
    for s in &scenarios {
        match s.as_str() {
            "prog" => report.add(prog::run(args.quick)?),
            other => bail!("unknown scenario {other:?} (known: {})", ALL.join(", ")),
        }
    }
    let written = report.write(&args.out)?;
    println!("report: {}", written.display());
    Ok(())
}
