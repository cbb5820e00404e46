//! `netpath firewall`: the published ports' firewall, a host-wide allow-list of the clients
//! published ports answer (`--published-from`, changed here on a running agent).
use std::process::ExitCode;

use anyhow::bail;

use crate::{
    api::{client::Client, FirewallView},
    policy::{parse_prefix, Prefix, PublishedFrom},
};

#[derive(clap::Subcommand)]
pub enum FirewallCmd {
    /// Show the clients published ports answer (one prefix a line with -q).
    #[command(
        alias = "ls",
        after_help = "Examples:\n  netpath firewall show\n  netpath firewall show -q"
    )]
    Show {
        /// Only the prefixes, one a line (nothing when everyone may).
        #[arg(short, long)]
        quiet: bool,
    },
    /// Published ports answer only these clients from now on; flows of others stop.
    #[command(
        after_help = "Examples:\n  netpath firewall set 10.0.0.0/8\n  netpath firewall set 192.168.1.0/24 203.0.113.7"
    )]
    Set {
        #[arg(required = true, value_name = "CIDR")]
        prefixes: Vec<String>,
    },
    /// Let these clients in too.
    #[command(after_help = "Examples:\n  netpath firewall add 172.16.0.0/12")]
    Add {
        #[arg(required = true, value_name = "CIDR")]
        prefixes: Vec<String>,
    },
    /// Take prefixes off the list (each must be on it); the last one gone, everyone may.
    #[command(
        alias = "remove",
        after_help = "Examples:\n  netpath firewall rm 172.16.0.0/12"
    )]
    Rm {
        #[arg(required = true, value_name = "CIDR")]
        prefixes: Vec<String>,
    },
    /// No list: published ports answer everyone, as Docker's do.
    #[command(after_help = "Examples:\n  netpath firewall clear")]
    Clear,
}

/// `prefixes` as the list reads them: a CIDR, or an address alone for itself.
fn parsed(prefixes: &[String]) -> anyhow::Result<Vec<Prefix>> {
    Ok(prefixes
        .iter()
        .map(|p| parse_prefix(p))
        .collect::<Result<_, _>>()?)
}

pub async fn run(client: &Client, cmd: FirewallCmd) -> anyhow::Result<ExitCode> {
    let now = client.firewall().await?.published_from;
    let next = match cmd {
        FirewallCmd::Show { quiet } => {
            if quiet {
                for p in now.prefixes() {
                    println!("{p}");
                }
            } else {
                println!("published ports answer: {now}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        FirewallCmd::Set { prefixes } => PublishedFrom::new(parsed(&prefixes)?),
        FirewallCmd::Add { prefixes } => {
            PublishedFrom::new(now.prefixes().iter().copied().chain(parsed(&prefixes)?))
        }
        FirewallCmd::Rm { prefixes } => {
            let prefixes = parsed(&prefixes)?;
            if let Some(p) = prefixes.iter().find(|p| !now.prefixes().contains(p)) {
                bail!("{p} is not on the list (published ports answer: {now})");
            }
            PublishedFrom::new(
                now.prefixes()
                    .iter()
                    .copied()
                    .filter(|p| !prefixes.contains(p)),
            )
        }
        FirewallCmd::Clear => PublishedFrom::default(),
    };
    let done = client.set_firewall(&FirewallView::from(next)).await?;
    println!("published ports answer: {}", done.published_from);
    if done.flows_removed > 0 {
        println!(
            "stopped {} flows of clients no longer let in",
            done.flows_removed
        );
    }
    Ok(ExitCode::SUCCESS)
}
