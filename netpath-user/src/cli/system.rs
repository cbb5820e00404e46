//! `netpath stats`, `version`, `completion` and `man`.
use std::{path::Path, process::ExitCode};

use serde::Serialize;

use super::format::{aligned, print_formatted, Template};
use crate::api::{client::Client, VersionView};

#[derive(clap::Args)]
pub struct StatsArgs {
    /// Go template or `json`.
    #[arg(long, value_name = "TEMPLATE")]
    pub format: Option<String>,
    /// The same as `--format json`.
    #[arg(long, hide = true)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct VersionArgs {
    /// Go template (fields Client and Agent) or `json`.
    #[arg(short, long, value_name = "TEMPLATE")]
    pub format: Option<String>,
}

pub async fn stats(client: &Client, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let s = client.stats().await?;
    let format = if args.json {
        Some("json")
    } else {
        args.format.as_deref()
    };
    if print_formatted(&s, format)? {
        return Ok(ExitCode::SUCCESS);
    }
    let mut lines = vec!["COUNTER\tPACKETS".to_string()];
    lines.extend(s.counters.iter().map(|(k, v)| format!("{k}\t{v}")));
    print!("{}", aligned(&lines));
    println!(
        "\nnetworks {}  endpoint interfaces {}  published ports {}  flows {}  outbound flows {}",
        s.networks, s.endpoints, s.published_ports, s.flows, s.outbound_flows
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Versions {
    client: VersionView,
    agent: Option<VersionView>,
}

pub async fn version(client: &Client, args: VersionArgs) -> anyhow::Result<ExitCode> {
    let agent = client.version().await;
    let v = Versions {
        client: VersionView::current(),
        agent: agent.as_ref().ok().cloned(),
    };
    match args.format.as_deref() {
        Some(f) if f.trim() == "json" => println!("{}", serde_json::to_string(&v)?),
        Some(f) => println!(
            "{}",
            Template::parse(f)?.render(&serde_json::to_value(&v)?)?
        ),
        None => {
            print_side("Client", &v.client);
            if let Some(a) = &v.agent {
                println!();
                print_side("Agent", a);
            }
        }
    }
    match agent {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}

fn print_side(title: &str, v: &VersionView) {
    println!("{title}:");
    let lines = [
        format!(" Version:\t{}", v.version),
        format!(" API version:\t{}", v.api_version),
        format!(" Git commit:\t{}", v.git_commit),
        format!(" eBPF object:\tsha256:{}", v.ebpf_sha256),
        format!(
            " Features:\t{}",
            if v.features.is_empty() {
                "-".to_string()
            } else {
                v.features.join(",")
            }
        ),
        format!(" OS/Arch:\t{}/{}", v.os, v.arch),
    ];
    print!("{}", aligned(&lines));
}

pub fn completion(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut cmd = super::command();
    clap_complete::generate(shell, &mut cmd, "netpath", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

pub fn man(dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cmd = super::command();
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            clap_mangen::generate_to(cmd, d)?;
        }
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?,
    }
    Ok(ExitCode::SUCCESS)
}
