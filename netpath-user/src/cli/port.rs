//! `netpath port`: `netpath port ENDPOINT [PORT[/PROTO]]` lists an endpoint's published ports
//! like `docker port`; `publish`, `unpublish` and `ls` manage and list them.
use std::process::ExitCode;

use anyhow::bail;

use super::format::{aligned, ports_summary};
use crate::{
    api::{client::Client, Port},
    model::PortsRequest,
};

#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  netpath port web\n  netpath port web 80/tcp\n  netpath port publish web 8080:80 127.0.0.1:5353:53/udp 9000-9099:9000-9099\n  netpath port unpublish web 8080:80\n  netpath port ls"
)]
pub struct PortArgs {
    #[command(subcommand)]
    pub cmd: Option<PortCmd>,
    /// The endpoint whose ports to list (`docker port`).
    #[arg(value_name = "ENDPOINT", required = true)]
    pub endpoint: Option<String>,
    /// Only this container port: PORT or PORT/PROTO.
    #[arg(value_name = "PORT[/PROTO]")]
    pub port: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum PortCmd {
    /// Publish ports of an endpoint: Docker's -p, [HOSTIP:][HOSTPORT:]CONTAINERPORT[/PROTO].
    #[command(
        after_help = "Examples:\n  netpath port publish web 8080:80\n  netpath port publish web 127.0.0.1:5353:53/udp 9000-9099:9000-9099\n  netpath port publish web 80      # an ephemeral host port, printed"
    )]
    Publish {
        #[arg(value_name = "ENDPOINT")]
        endpoint: String,
        #[arg(required = true, value_name = "SPEC")]
        specs: Vec<String>,
    },
    /// Stop publishing ports of an endpoint (each SPEC must match a published port).
    #[command(
        after_help = "Examples:\n  netpath port unpublish web 8080:80\n  netpath port unpublish web 53/udp"
    )]
    Unpublish {
        #[arg(value_name = "ENDPOINT")]
        endpoint: String,
        #[arg(required = true, value_name = "SPEC")]
        specs: Vec<String>,
    },
    /// List published ports: of one endpoint (one line each), or of all (ranges collapsed).
    #[command(after_help = "Examples:\n  netpath port ls\n  netpath port ls web")]
    Ls {
        #[arg(value_name = "ENDPOINT")]
        endpoint: Option<String>,
    },
}

fn sorted(mut ports: Vec<Port>) -> Vec<Port> {
    ports.sort_by_key(|p| (p.private_port, p.proto, p.ip, p.public_port));
    ports
}

pub async fn run(client: &Client, args: PortArgs) -> anyhow::Result<ExitCode> {
    let cmd = match (args.cmd, args.endpoint) {
        (Some(cmd), _) => cmd,
        (None, Some(endpoint)) => return docker_port(client, &endpoint, args.port).await,
        (None, None) => bail!("port: an ENDPOINT or a subcommand is required"),
    };
    match cmd {
        PortCmd::Publish { endpoint, specs } => {
            print_each(client.publish(&endpoint, &PortsRequest { specs }).await?)?;
        }
        PortCmd::Unpublish { endpoint, specs } => {
            print_each(client.unpublish(&endpoint, &PortsRequest { specs }).await?)?;
        }
        PortCmd::Ls {
            endpoint: Some(name),
        } => print_each(sorted(client.endpoint(&name).await?.ports))?,
        PortCmd::Ls { endpoint: None } => {
            let mut lines = vec!["ENDPOINT\tPORTS".to_string()];
            for e in client.endpoints().await? {
                if !e.ports.is_empty() {
                    // A container's name where Docker gave one (its endpoint's is an id).
                    let name = e
                        .labels
                        .get(crate::docker::engine::CONTAINER_NAME_LABEL)
                        .unwrap_or(&e.name);
                    lines.push(format!("{name}\t{}", ports_summary(&e.ports)));
                }
            }
            print!("{}", aligned(&lines));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line each, written in blocks (a range's thousands of lines are not a write each).
fn print_each<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for p in items {
        writeln!(out, "{p}")?;
    }
    out.flush()
}

/// `docker port ENDPOINT [PORT[/PROTO]]`.
async fn docker_port(
    client: &Client,
    endpoint: &str,
    port: Option<String>,
) -> anyhow::Result<ExitCode> {
    let ports = sorted(client.endpoint(endpoint).await?.ports);
    let Some(want) = port else {
        for p in ports {
            println!("{p}");
        }
        return Ok(ExitCode::SUCCESS);
    };
    let (num, proto) = want.split_once('/').unwrap_or((&want, "tcp"));
    let Ok(num) = num.parse::<u16>() else {
        bail!("invalid port {want:?}: expected PORT or PORT/PROTO");
    };
    let hits: Vec<&Port> = ports
        .iter()
        .filter(|p| p.private_port == num && p.proto.to_string() == proto)
        .collect();
    if hits.is_empty() {
        bail!("no public port '{num}/{proto}' published for {endpoint}");
    }
    for p in hits {
        println!("{}", std::net::SocketAddr::new(p.ip, p.public_port));
    }
    Ok(ExitCode::SUCCESS)
}
