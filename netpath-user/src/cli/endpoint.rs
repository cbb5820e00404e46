//! `netpath endpoint ...`: an endpoint is a container's network namespace with one interface
//! per network it is on (`docker run`, `docker ps`, `docker inspect` for the network side).
use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context as _;
use serde_json::{json, Value};

use super::{
    format::{label_matches, labels_string, ports_summary, print_list, Filters, ListArgs},
    inspect_each, parse_labels, remove_each, InspectArgs, RmArgs,
};
use crate::{
    api::{client::Client, EndpointView},
    model::{short_id, DnsSettings, EndpointCreate},
};

/// `endpoint create`'s arguments.
#[derive(clap::Args)]
pub struct CreateArgs {
    /// The endpoint's name (letters, digits, `_`, `.`, `-`).
    pub name: String,
    /// The network namespace: a path, or NAME for /run/netns/NAME (`ip netns add NAME`).
    #[arg(long, value_name = "NAME|PATH")]
    pub netns: String,
    /// The network of its first interface (default: bridge).
    #[arg(long, value_name = "NETWORK")]
    pub network: Option<String>,
    /// Its address on that network (default: the next free one).
    #[arg(long, value_name = "IP")]
    pub ip: Option<Ipv4Addr>,
    /// Its IPv6 address on that network, when it has IPv6 (default: the next free one).
    #[arg(long, value_name = "IPV6")]
    pub ip6: Option<Ipv6Addr>,
    /// Publish a port: [HOSTIP:][HOSTPORT:]CONTAINERPORT[/PROTO] (repeatable).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Set a label KEY=VALUE (repeatable).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Another name on its network, for other endpoints (repeatable; Docker's
    /// --network-alias).
    #[arg(long = "alias", value_name = "NAME")]
    pub aliases: Vec<String>,
    /// A DNS server for it instead of the agent's (repeatable).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<std::net::IpAddr>,
    /// A DNS search domain instead of the host's (repeatable).
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// A resolver option instead of the host's, e.g. ndots:2 (repeatable).
    #[arg(long = "dns-option", value_name = "OPTION")]
    pub dns_options: Vec<String>,
    /// Its interface's MAC, aa:bb:cc:dd:ee:ff (default: derived from the address, as Docker does).
    #[arg(long = "mac-address", value_name = "MAC")]
    pub mac: Option<String>,
    /// The namespace network policies see it in (default: default).
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Name a port for policies' named ports: NAME=PORT[/PROTO] (repeatable).
    #[arg(long = "named-port", value_name = "NAME=PORT[/PROTO]")]
    pub named_ports: Vec<String>,
}

#[derive(clap::Subcommand)]
pub enum EndpointCmd {
    /// Create an endpoint: a veth whose peer becomes eth0 in the namespace.
    #[command(
        after_help = "Examples:\n  ip netns add web && netpath endpoint create web --netns web -p 8080:80\n  netpath endpoint create db --netns /proc/4242/ns/net --network back --ip 10.20.2.10 --label team=data\n  netpath endpoint create api2 --netns api2 --network back --alias api --dns-search corp.example"
    )]
    Create(Box<CreateArgs>),
    /// Change a live endpoint's labels: its next flows are decided on the new ones.
    #[command(
        after_help = "Examples:\n  netpath endpoint update web --label tier=front\n  netpath endpoint update web --label-rm tier"
    )]
    Update {
        #[arg(value_name = "ENDPOINT")]
        name: String,
        /// Set a label KEY=VALUE (repeatable).
        #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Remove a label (repeatable).
        #[arg(long = "label-rm", value_name = "KEY")]
        remove: Vec<String>,
    },
    /// Remove endpoints (each is tried; failures are reported and make the exit status 1).
    #[command(
        alias = "remove",
        after_help = "Examples:\n  netpath endpoint rm web db"
    )]
    Rm(RmArgs),
    /// List endpoints.
    #[command(
        alias = "list",
        after_help = "Examples:\n  netpath endpoint ls\n  netpath endpoint ls -q --filter network=back\n  netpath endpoint ls --format '{{.Name}} {{.IPAddress}}'\n  netpath endpoint ls --format json\n\nFilters: id, name, network, label (KEY or KEY=VALUE), publish (PORT[/PROTO]).\nTemplate fields: ID, Name, Network, Networks, IPAddress, MacAddress, Ports, Labels, Netns."
    )]
    Ls(ListArgs),
    /// Remove every endpoint whose network namespace is gone (the agent also does this by
    /// itself when it notices).
    #[command(after_help = "Examples:\n  netpath endpoint prune")]
    Prune,
    /// Show endpoints as JSON (each is tried; failures are reported).
    #[command(
        after_help = "Examples:\n  netpath endpoint inspect web\n  netpath endpoint inspect web --format '{{.IPAddress}}'"
    )]
    Inspect(InspectArgs),
}

/// A namespace as given: NAME (no slash) is /run/netns/NAME, anything else a path.
pub fn netns_path(s: &str) -> anyhow::Result<PathBuf> {
    if !s.contains('/') {
        return Ok(PathBuf::from("/run/netns").join(s));
    }
    std::path::absolute(s).context("namespace path")
}

fn row(e: &EndpointView, no_trunc: bool) -> Value {
    let id = if no_trunc { &e.id } else { short_id(&e.id, 12) };
    json!({
        "ID": id,
        "Name": e.name,
        "Network": e.network,
        "Networks": e.networks.keys().cloned().collect::<Vec<_>>().join(","),
        "IPAddress": e.ip_address.map(|a| a.to_string()).unwrap_or_default(),
        "MacAddress": e.mac_address,
        "Ports": ports_summary(&e.ports),
        "Labels": labels_string(&e.labels),
        "Netns": e.netns.display().to_string(),
    })
}

fn passes(e: &EndpointView, f: &Filters) -> bool {
    f.matches(|k, v| match k {
        "id" => e.id.starts_with(v),
        "name" => e.name.contains(v),
        "network" => e.networks.contains_key(v),
        "label" => label_matches(&e.labels, v),
        "publish" => {
            let (port, proto) = v.split_once('/').unwrap_or((v, ""));
            e.ports.iter().any(|p| {
                p.public_port.to_string() == port
                    && (proto.is_empty() || p.proto.to_string() == proto)
            })
        }
        _ => false,
    })
}

pub async fn run(client: &Client, cmd: EndpointCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        EndpointCmd::Create(args) => {
            let CreateArgs {
                name,
                netns,
                network,
                ip,
                ip6,
                publish,
                labels,
                aliases,
                dns,
                dns_search,
                dns_options,
                mac,
                namespace,
                named_ports,
            } = *args;
            let req = EndpointCreate {
                name,
                netns: netns_path(&netns)?,
                network,
                ip,
                ip6,
                ports: publish,
                labels: parse_labels(&labels),
                aliases,
                dns: DnsSettings {
                    servers: dns,
                    search: dns_search,
                    options: dns_options,
                },
                mac,
                namespace,
                named_ports,
                ..EndpointCreate::default()
            };
            let ep = client.create_endpoint(&req).await?;
            println!("{}", ep.name);
            for p in &ep.ports {
                println!("{p}");
            }
            Ok(ExitCode::SUCCESS)
        }
        EndpointCmd::Update {
            name,
            labels,
            remove,
        } => {
            let req = crate::api::LabelsUpdate {
                set: parse_labels(&labels),
                remove,
            };
            let ep = client.update_labels(&name, &req).await?;
            println!("{}", ep.name);
            Ok(ExitCode::SUCCESS)
        }
        EndpointCmd::Rm(RmArgs { names, force }) => Ok(remove_each(&names, |n| async move {
            client.remove_endpoint_forced(&n, force).await
        })
        .await),
        EndpointCmd::Ls(args) => {
            let filters = Filters::parse(
                &args.filters,
                &["id", "name", "network", "label", "publish"],
            )?;
            let rows: Vec<Value> = client
                .endpoints()
                .await?
                .iter()
                .filter(|e| passes(e, &filters))
                .map(|e| row(e, args.no_trunc))
                .collect();
            print_list(
                &rows,
                &args,
                "table {{.ID}}\t{{.Name}}\t{{.Networks}}\t{{.IPAddress}}\t{{.Ports}}",
                &[("ID", "ENDPOINT ID"), ("IPAddress", "IP")],
            )?;
            Ok(ExitCode::SUCCESS)
        }
        EndpointCmd::Prune => {
            let pruned = client.prune().await?;
            if !pruned.is_empty() {
                println!("Deleted endpoints:");
            }
            for n in pruned {
                println!("{n}");
            }
            Ok(ExitCode::SUCCESS)
        }
        EndpointCmd::Inspect(args) => {
            inspect_each(&args, |n| async move { client.endpoint(&n).await }).await
        }
    }
}
