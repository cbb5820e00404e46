//! `netpath status`: is the datapath running what the agent wants (like `cilium status`).
use std::process::ExitCode;

use super::format::{aligned, print_formatted};
use crate::api::{
    client::Client,
    health::{HealthView, ReconcileView},
};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  netpath status\n  netpath status --verbose\n  \
    netpath status --format '{{.Healthy}}'\n\nExits 1 when the agent reports a problem."
)]
pub struct StatusArgs {
    /// Every hook, pinned map and program, not only a summary.
    #[arg(short, long)]
    pub verbose: bool,
    /// Go template or `json`.
    #[arg(long, value_name = "TEMPLATE")]
    pub format: Option<String>,
}

fn reconcile_line(r: &ReconcileView) -> String {
    let p = &r.report;
    format!(
        "{} in {:.0} ms: {} interfaces adopted, {} made again, {} endpoints dropped, \
         {} orphans removed; {} map entries written, {} removed; hooks {} kept, {} updated, \
         {} attached, {} removed",
        r.at,
        r.seconds * 1000.0,
        p.adopted,
        p.recreated,
        p.dropped.len(),
        p.orphans.len(),
        p.written,
        p.removed,
        p.hooks_kept,
        p.hooks_updated,
        p.hooks_attached,
        p.hooks_removed
    )
}

fn print(h: &HealthView, verbose: bool) {
    let attached = h.hooks.iter().filter(|x| x.wanted && x.attached).count();
    let wanted = h.hooks.iter().filter(|x| x.wanted).count();
    let current = h.hooks.iter().filter(|x| x.wanted && x.current).count();
    let mut lines = vec![
        format!(
            "Health:\t{}",
            if h.healthy {
                "OK".to_string()
            } else {
                format!("{} problem(s)", h.problems.len())
            }
        ),
        format!(
            "Agent:\t{} ({}), started {}",
            h.version, h.git_commit, h.started
        ),
        format!("Networks:\t{}", h.networks),
        format!("Endpoints:\t{}", h.endpoints),
        format!(
            "Hooks:\t{attached}/{wanted} attached, {current}/{wanted} running this agent's programs"
        ),
        format!(
            "Last reconcile:\t{}",
            h.last_reconcile
                .as_ref()
                .map_or("none".into(), reconcile_line)
        ),
        format!(
            "Repairs:\t{}{}",
            h.repairs,
            h.last_repair
                .as_ref()
                .map_or(String::new(), |t| format!(" (last {t})"))
        ),
        format!("Monitors:\t{}", h.monitors),
        format!(
            "DNS:\t{}/{} networks answering",
            h.dns.iter().filter(|d| d.listening).count(),
            h.dns.len()
        ),
        match &h.cluster {
            None => "Cluster:\tnone (this node is on its own)".to_string(),
            Some(c) if c.connected => format!(
                "Cluster:\tnode {}, {} nodes, etcd connected; {} overlay networks, {} endpoints on other nodes",
                c.node, c.nodes, c.overlay_networks, c.remote_endpoints
            ),
            Some(c) => format!(
                "Cluster:\tnode {}, etcd not connected ({}); {} nodes, {} overlay networks, {} endpoints on other nodes as last known",
                c.node,
                c.error.as_deref().unwrap_or("no session"),
                c.nodes,
                c.overlay_networks,
                c.remote_endpoints
            ),
        },
    ];
    print!("{}", aligned(&lines));
    lines = vec!["\nMAP\tHOLDS\tENTRIES\tCAPACITY\tUSE".into()];
    lines.extend(h.maps.iter().map(|m| {
        let used = format!("{}%", m.percent());
        row(&[&m.name, &m.what, &m.entries, &m.capacity, &used])
    }));
    print!("{}", aligned(&lines));
    if verbose {
        lines = vec!["\nHOOK\tPROGRAM\tATTACHED\tCURRENT\tLINK ID\tPROGRAM ID".into()];
        let yes = |b: bool| if b { "yes" } else { "no" };
        lines.extend(h.hooks.iter().map(|x| {
            let (attached, current) = (yes(x.attached), yes(x.current));
            row(&[
                &x.hook,
                &x.program,
                &attached,
                &current,
                &x.link_id,
                &x.program_id,
            ])
        }));
        print!("{}", aligned(&lines));
        lines = vec!["\nNETWORK\tDNS\tLISTENING".into()];
        lines.extend(
            h.dns
                .iter()
                .map(|d| row(&[&d.network, &d.address, &yes(d.listening)])),
        );
        print!("{}", aligned(&lines));
        lines = vec!["\nPINNED MAP\tID\tCAPACITY".into()];
        lines.extend(h.pinned_maps.iter().map(|m| {
            let aside = if m.set_aside { " (set aside)" } else { "" };
            format!("{}{aside}\t{}\t{}", m.name, m.id, m.capacity)
        }));
        print!("{}", aligned(&lines));
        lines = vec!["\nPROGRAM\tID\tTAG".into()];
        lines.extend(
            h.programs
                .iter()
                .map(|p| format!("{}\t{}\t{}", p.name, p.id, p.tag)),
        );
        print!("{}", aligned(&lines));
    }
    if !h.problems.is_empty() {
        println!("\nProblems:");
        for p in &h.problems {
            println!("  {p}");
        }
    }
    if !h.warnings.is_empty() {
        println!("\nWarnings:");
        for w in &h.warnings {
            println!("  {w}");
        }
    }
}

/// One row of a table: its cells, tab-separated.
fn row(cells: &[&dyn std::fmt::Display]) -> String {
    cells
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("\t")
}

pub async fn run(client: &Client, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let h = client.health().await?;
    if !print_formatted(&h, args.format.as_deref())? {
        print(&h, args.verbose);
    }
    Ok(if h.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
