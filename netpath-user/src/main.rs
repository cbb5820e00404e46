//! `netpath`: the node agent (`netpath agent`) and its CLI, in Docker's words.
use std::{net::Ipv4Addr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hyper::Method;
use netpath_user::{
    agent::{self, AgentConfig},
    api::{EndpointView, NetworkView, PortView, PortsRequest, StatsView},
    client::Client,
    datapath::{MapSizes, XdpMode},
    model::EndpointCreate,
    ports::PortMapping,
};

const DEFAULT_SOCKET: &str = "/run/netpath/netpath.sock";

#[derive(Parser)]
#[command(
    name = "netpath",
    version,
    about = "eBPF datapath for Docker-style container networking"
)]
struct Cli {
    /// The agent's API socket.
    #[arg(long, global = true, env = "NETPATH_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the node agent: load and attach the datapath, serve the API.
    Agent(AgentArgs),
    /// Manage endpoints (a container's network interface).
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Publish ports (`docker run -p`), list them (`docker port`).
    #[command(subcommand)]
    Port(PortCmd),
    /// List and inspect networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Packet counters and drop reasons.
    Stats {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct AgentArgs {
    /// Uplink interface (repeatable). Default: the interface of the default route.
    #[arg(long = "uplink")]
    uplinks: Vec<String>,
    /// Directory of the desired state.
    #[arg(long, default_value = "/var/lib/netpath")]
    state_dir: PathBuf,
    /// bpffs directory where maps are pinned (bpffs is mounted there when absent).
    #[arg(long, default_value = "/sys/fs/bpf/netpath")]
    bpffs: PathBuf,
    /// XDP fast path on the uplinks.
    #[arg(long, value_enum, default_value_t = XdpMode::Off)]
    xdp: XdpMode,
    /// Capacity of the flow table.
    #[arg(long, default_value_t = MapSizes::default().flows)]
    max_flows: u32,
    /// Capacity of the published-ports map.
    #[arg(long, default_value_t = MapSizes::default().ports)]
    max_ports: u32,
}

#[derive(Subcommand)]
enum EndpointCmd {
    /// Create an endpoint: a veth whose peer becomes eth0 in the namespace.
    Create {
        name: String,
        /// Path of the network namespace (e.g. /run/netns/NAME).
        #[arg(long)]
        netns: PathBuf,
        #[arg(long)]
        network: Option<String>,
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        /// Publish a port: [HOSTIP:][HOSTPORT:]CONTAINERPORT[/PROTO] (repeatable).
        #[arg(short = 'p', long = "publish")]
        publish: Vec<String>,
    },
    /// Remove endpoints.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List endpoints.
    #[command(alias = "list")]
    Ls,
    /// Show endpoints as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum PortCmd {
    /// Publish ports of an endpoint.
    Publish {
        endpoint: String,
        #[arg(required = true)]
        specs: Vec<String>,
    },
    /// Stop publishing ports of an endpoint.
    Unpublish {
        endpoint: String,
        #[arg(required = true)]
        specs: Vec<String>,
    },
    /// List published ports (of one endpoint, or all).
    Ls { endpoint: Option<String> },
}

#[derive(Subcommand)]
enum NetworkCmd {
    /// List networks.
    Ls,
    /// Show networks as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netpath: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netpath: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::new(&cli.socket);
    match cli.cmd {
        Cmd::Agent(a) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            agent::run(AgentConfig {
                uplinks: a.uplinks,
                socket: cli.socket,
                state_dir: a.state_dir,
                bpffs: a.bpffs,
                xdp: a.xdp,
                sizes: MapSizes {
                    flows: a.max_flows,
                    ports: a.max_ports,
                    ..MapSizes::default()
                },
            })
            .await
        }
        Cmd::Endpoint(EndpointCmd::Create {
            name,
            netns,
            network,
            ip,
            publish,
        }) => {
            let netns = std::path::absolute(&netns).context("namespace path")?;
            let req = EndpointCreate {
                name,
                netns,
                network,
                ip,
                ports: publish,
            };
            let ep: EndpointView = client
                .call(Method::POST, "/v1/endpoints", Some(&req))
                .await?;
            println!("{}", ep.name);
            print_mappings(&ep.ports);
            Ok(())
        }
        Cmd::Endpoint(EndpointCmd::Rm { names }) => {
            for name in names {
                client
                    .call::<(), serde_json::Value>(
                        Method::DELETE,
                        &format!("/v1/endpoints/{name}"),
                        None,
                    )
                    .await?;
                println!("{name}");
            }
            Ok(())
        }
        Cmd::Endpoint(EndpointCmd::Ls) => {
            let eps: Vec<EndpointView> = client.get("/v1/endpoints").await?;
            println!(
                "{:<20} {:<12} {:<16} {:<18} PORTS",
                "NAME", "NETWORK", "IP", "MAC"
            );
            for e in eps {
                let ports: Vec<String> = e.ports.iter().map(short_mapping).collect();
                println!(
                    "{:<20} {:<12} {:<16} {:<18} {}",
                    e.name,
                    e.network,
                    e.ip_address,
                    e.mac_address,
                    ports.join(", ")
                );
            }
            Ok(())
        }
        Cmd::Endpoint(EndpointCmd::Inspect { names }) => {
            let mut out = Vec::new();
            for name in names {
                out.push(
                    client
                        .get::<EndpointView>(&format!("/v1/endpoints/{name}"))
                        .await?,
                );
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        Cmd::Port(PortCmd::Publish { endpoint, specs }) => {
            let added: Vec<PortMapping> = client
                .call(
                    Method::POST,
                    &format!("/v1/endpoints/{endpoint}/publish"),
                    Some(&PortsRequest { specs }),
                )
                .await?;
            print_mappings(&added);
            Ok(())
        }
        Cmd::Port(PortCmd::Unpublish { endpoint, specs }) => {
            let removed: Vec<PortMapping> = client
                .call(
                    Method::POST,
                    &format!("/v1/endpoints/{endpoint}/unpublish"),
                    Some(&PortsRequest { specs }),
                )
                .await?;
            print_mappings(&removed);
            Ok(())
        }
        Cmd::Port(PortCmd::Ls { endpoint }) => {
            let ports: Vec<PortView> = match &endpoint {
                Some(name) => {
                    let ep: EndpointView = client.get(&format!("/v1/endpoints/{name}")).await?;
                    ep.ports
                        .into_iter()
                        .map(|mapping| PortView {
                            endpoint: name.clone(),
                            mapping,
                        })
                        .collect()
                }
                None => client.get("/v1/ports").await?,
            };
            for p in ports {
                if endpoint.is_some() {
                    println!("{}", p.mapping);
                } else {
                    println!("{} {}", p.endpoint, p.mapping);
                }
            }
            Ok(())
        }
        Cmd::Network(NetworkCmd::Ls) => {
            let nets: Vec<NetworkView> = client.get("/v1/networks").await?;
            println!(
                "{:<14} {:<20} {:<10} {:<18} GATEWAY",
                "NETWORK ID", "NAME", "DRIVER", "SUBNET"
            );
            for n in nets {
                println!(
                    "{:<14} {:<20} {:<10} {:<18} {}",
                    &n.id[..12.min(n.id.len())],
                    n.name,
                    n.driver,
                    n.subnet,
                    n.gateway
                );
            }
            Ok(())
        }
        Cmd::Network(NetworkCmd::Inspect { names }) => {
            let nets: Vec<NetworkView> = client.get("/v1/networks").await?;
            let mut out = Vec::new();
            for name in &names {
                let n = nets
                    .iter()
                    .find(|n| &n.name == name)
                    .with_context(|| format!("no such network: {name}"))?;
                out.push(n);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        Cmd::Stats { json } => {
            let s: StatsView = client.get("/v1/stats").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("{:<16} {:>12}", "COUNTER", "PACKETS");
                for (k, v) in &s.counters {
                    println!("{k:<16} {v:>12}");
                }
                println!(
                    "\nendpoints {}  published ports {}  flows {}",
                    s.endpoints, s.published_ports, s.flows
                );
            }
            Ok(())
        }
    }
}

fn short_mapping(m: &PortMapping) -> String {
    format!(
        "{}:{}->{}/{}",
        m.host_ip, m.host_port, m.container_port, m.proto
    )
}

fn print_mappings(maps: &[PortMapping]) {
    for m in maps {
        println!("{m}");
    }
}
