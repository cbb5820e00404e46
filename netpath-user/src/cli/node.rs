//! `netpath node`: the nodes this one knows through etcd (`docker node ls`).
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{json, Value};

use super::format::print_rows;
use crate::api::client::Client;

#[derive(Subcommand)]
pub enum NodeCmd {
    /// List the nodes that share this node's etcd (this one marked `*`).
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  netpath node ls\n  netpath node ls --format '{{.Name}} {{.Underlay}}'\n  netpath node ls --format json"
    )]
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
        /// Go template (`{{.Name}}`, `{{.Underlay}}`, `{{json .}}`, `table ...`) or `json`.
        #[arg(long, value_name = "TEMPLATE")]
        format: Option<String>,
    },
}

pub async fn run(client: &Client, cmd: NodeCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        NodeCmd::Ls { quiet, format } => {
            let view = client.nodes().await?;
            if !view.connected {
                eprintln!(
                    "netpath: not connected to etcd ({}): the nodes as last known",
                    view.error.as_deref().unwrap_or("no session")
                );
            }
            let rows: Vec<Value> = view
                .nodes
                .values()
                .map(|n| {
                    let me = n.name == view.node;
                    json!({
                        "ID": n.name,
                        "Name": n.name,
                        "Underlay": n.underlay.to_string(),
                        "Version": n.version,
                        "Self": me,
                        "Mark": if me { "*" } else { "" },
                    })
                })
                .collect();
            let headers = [
                ("Name", "NAME"),
                ("Mark", ""),
                ("Underlay", "UNDERLAY"),
                ("Version", "VERSION"),
            ]
            .into_iter()
            .collect();
            let out = print_rows(
                &rows,
                quiet,
                format.as_deref(),
                "table {{.Name}}\t{{.Mark}}\t{{.Underlay}}\t{{.Version}}",
                "ID",
                &headers,
            )?;
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
