//! `netpath monitor`: the datapath's events as they happen, like `cilium monitor`.
use std::process::ExitCode;

use crate::api::{client::Client, MonitorEvent, MonitorFilter};

#[derive(clap::Args)]
#[command(after_help = format!(
    "Examples:\n  netpath monitor\n  netpath monitor --endpoint web --trace\n  \
     netpath monitor --reason isolation --format json\n\nReasons: {}.",
    crate::api::monitor_reasons().join(", ")
))]
pub struct MonitorArgs {
    /// Only events of this endpoint: what it sent and what was meant for it.
    #[arg(long, value_name = "NAME")]
    pub endpoint: Option<String>,
    /// Only events for this reason (a drop's or a trace's).
    #[arg(long, value_name = "REASON")]
    pub reason: Option<String>,
    /// Translations too (every DNAT and SNAT decision), not only drops.
    #[arg(long)]
    pub trace: bool,
    /// `json`: one JSON object per event.
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    pub format: Option<String>,
}

fn line(e: &MonitorEvent) -> String {
    let mut s = format!(
        "{} {:5} {:11} {:4} {} -> {}",
        e.time,
        e.kind.to_uppercase(),
        e.reason,
        e.protocol,
        e.source,
        e.destination
    );
    if let Some(t) = &e.translated {
        s += &format!(" => {t}");
    }
    if let Some(p) = &e.policy {
        s += &format!(" by policy {p}");
    }
    match (&e.endpoint, &e.interface) {
        (Some(ep), Some(i)) => s += &format!(" (endpoint {ep}, {i})"),
        (Some(ep), None) => s += &format!(" (endpoint {ep})"),
        (None, Some(i)) => s += &format!(" ({i})"),
        (None, None) => {}
    }
    s
}

pub async fn run(client: &Client, args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let filter = MonitorFilter {
        endpoint: args.endpoint,
        reason: args.reason,
        trace: args.trace,
    };
    let json = args.format.as_deref() == Some("json");
    client
        .monitor(&filter, |e| {
            if json {
                println!("{}", serde_json::to_string(&e).unwrap_or_default());
            } else {
                println!("{}", line(&e));
            }
            true
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}
