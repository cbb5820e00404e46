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
    model::{Connect, EndpointCreate, NetworkCreate},
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
    /// Manage networks (`docker network`).
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
    /// cgroup v2 directory where the socket hooks attach (default: the hierarchy's root).
    #[arg(long)]
    cgroup: Option<PathBuf>,
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
    /// Create a network.
    Create {
        name: String,
        /// Subnet in CIDR form (default: a free one from the address pools).
        #[arg(long)]
        subnet: Option<String>,
        /// Gateway address (default: the subnet's first address).
        #[arg(long)]
        gateway: Option<Ipv4Addr>,
        /// Allocate endpoint addresses from this part of the subnet.
        #[arg(long)]
        ip_range: Option<String>,
        /// Nothing leaves the network; its ports cannot be published.
        #[arg(long)]
        internal: bool,
        /// Network option KEY=VALUE (known: icc=true|false).
        #[arg(short = 'o', long = "opt")]
        opts: Vec<String>,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls,
    /// Show networks as JSON (like `docker network inspect`).
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks (they must have no endpoints).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect an endpoint to a network: a new interface (eth1, eth2, ...) in its namespace.
    Connect {
        network: String,
        endpoint: String,
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        #[arg(long = "alias")]
        aliases: Vec<String>,
    },
    /// Disconnect an endpoint from a network (its interface there is removed).
    Disconnect { network: String, endpoint: String },
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
                cgroup: a.cgroup,
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
        Cmd::Network(NetworkCmd::Create {
            name,
            subnet,
            gateway,
            ip_range,
            internal,
            opts,
        }) => {
            let req = NetworkCreate {
                name,
                subnet,
                gateway,
                ip_range,
                internal,
                options: opts,
            };
            let n: NetworkView = client
                .call(Method::POST, "/v1/networks", Some(&req))
                .await?;
            println!("{}", n.id);
            Ok(())
        }
        Cmd::Network(NetworkCmd::Ls) => {
            let nets: Vec<NetworkView> = client.get("/v1/networks").await?;
            println!(
                "{:<14} {:<20} {:<10} {:<18} INTERNAL",
                "NETWORK ID", "NAME", "DRIVER", "SUBNET"
            );
            for n in nets {
                let subnet = n
                    .ipam
                    .config
                    .first()
                    .map(|c| c.subnet.clone())
                    .unwrap_or_default();
                println!(
                    "{:<14} {:<20} {:<10} {:<18} {}",
                    &n.id[..12.min(n.id.len())],
                    n.name,
                    n.driver,
                    subnet,
                    n.internal
                );
            }
            Ok(())
        }
        Cmd::Network(NetworkCmd::Inspect { names }) => {
            let mut out = Vec::new();
            for name in &names {
                out.push(
                    client
                        .get::<NetworkView>(&format!("/v1/networks/{name}"))
                        .await?,
                );
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        Cmd::Network(NetworkCmd::Rm { names }) => {
            for name in names {
                client
                    .call::<(), serde_json::Value>(
                        Method::DELETE,
                        &format!("/v1/networks/{name}"),
                        None,
                    )
                    .await?;
                println!("{name}");
            }
            Ok(())
        }
        Cmd::Network(NetworkCmd::Connect {
            network,
            endpoint,
            ip,
            aliases,
        }) => {
            let req = Connect {
                endpoint,
                ip,
                aliases,
            };
            let ep: EndpointView = client
                .call(
                    Method::POST,
                    &format!("/v1/networks/{network}/connect"),
                    Some(&req),
                )
                .await?;
            if let Some(n) = ep.networks.get(&network) {
                println!("{} {} {}", ep.name, n.interface, n.ip_address);
            }
            Ok(())
        }
        Cmd::Network(NetworkCmd::Disconnect { network, endpoint }) => {
            let req = Connect {
                endpoint,
                ..Default::default()
            };
            let ep: EndpointView = client
                .call(
                    Method::POST,
                    &format!("/v1/networks/{network}/disconnect"),
                    Some(&req),
                )
                .await?;
            println!("{}", ep.name);
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
                    "\nnetworks {}  endpoint interfaces {}  published ports {}  flows {}  outbound flows {}",
                    s.networks, s.endpoints, s.published_ports, s.flows, s.outbound_flows
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
