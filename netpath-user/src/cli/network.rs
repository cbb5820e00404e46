//! `netpath network ...`: Docker's `docker network` commands.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::ExitCode,
};

use serde_json::{json, Value};

use super::{
    format::{label_matches, labels_string, print_list, Filters, ListArgs},
    inspect_each, parse_labels, remove_each, InspectArgs, RmArgs,
};
use crate::{
    api::{client::Client, NetworkView},
    model::{short_id, Connect, Disconnect, NetworkCreate, DEFAULT_NETWORK},
};

#[derive(clap::Subcommand)]
pub enum NetworkCmd {
    /// Create a network.
    #[command(
        after_help = "Examples:\n  netpath network create web\n  netpath network create back --subnet 10.20.2.0/24 --gateway 10.20.2.254 --internal\n  netpath network create quiet -d bridge -o icc=false --label team=data\n  netpath network create app -o host-gateway=10.30.0.254 -o host-loopback-ports=5432,6379\n\nOptions (-o), netpath's names or Docker's:\n  icc=true|false                 com.docker.network.bridge.enable_icc\n  mtu=N                          com.docker.network.driver.mtu\n  host-binding-ipv4=IP           com.docker.network.bridge.host_binding_ipv4 (ports published without an address)\n  masquerade=true|false          com.docker.network.bridge.enable_ip_masquerade (false: routed, own addresses out)\n  com.docker.network.bridge.gateway_mode_ipv4=nat|routed, ...gateway_mode_ipv6=nat|routed\n  host-gateway=IP, host-loopback-ports=PORT,...\n  accepted and noted, changing nothing: com.docker.network.bridge.name,\n  com.docker.network.container_iface_prefix, com.docker.network.bridge.default_bridge"
    )]
    Create(CreateArgs),
    /// List networks.
    #[command(
        alias = "list",
        after_help = "Examples:\n  netpath network ls\n  netpath network ls -q --filter label=team\n  netpath network ls --format '{{.Name}}\\t{{.Subnet}}'\n\nFilters: id, name, driver, label (KEY or KEY=VALUE), type (builtin|custom), scope (local|global: overlay).\nTemplate fields: ID, Name, Driver, Scope, Subnet, Gateway, Internal, IPv6, Labels."
    )]
    Ls(ListArgs),
    /// Show networks as JSON, like `docker network inspect` (each is tried).
    #[command(
        after_help = "Examples:\n  netpath network inspect bridge\n  netpath network inspect web --format '{{json .IPAM}}'"
    )]
    Inspect(InspectArgs),
    /// Remove networks; they must have no endpoints (each is tried).
    #[command(
        alias = "remove",
        after_help = "Examples:\n  netpath network rm web back"
    )]
    Rm(RmArgs),
    /// Connect an endpoint to a network: a new interface (eth1, eth2, ...) in its namespace.
    #[command(
        after_help = "Examples:\n  netpath network connect back web\n  netpath network connect back web --ip 10.20.2.50 --alias api"
    )]
    Connect {
        #[arg(value_name = "NETWORK")]
        network: String,
        #[arg(value_name = "ENDPOINT")]
        endpoint: String,
        /// Its address on the network (default: the next free one).
        #[arg(long, value_name = "IP")]
        ip: Option<Ipv4Addr>,
        /// Its IPv6 address on a network with IPv6 (default: the next free one).
        #[arg(long, value_name = "IPV6")]
        ip6: Option<Ipv6Addr>,
        /// Another name for the endpoint on this network (repeatable).
        #[arg(long = "alias", value_name = "NAME")]
        aliases: Vec<String>,
    },
    /// Disconnect an endpoint from a network (its interface there is removed).
    #[command(after_help = "Examples:\n  netpath network disconnect back web")]
    Disconnect {
        #[arg(value_name = "NETWORK")]
        network: String,
        #[arg(value_name = "ENDPOINT")]
        endpoint: String,
    },
}

/// The name a user knows it by: Docker's for a network Docker made (netpath's own name
/// for it is Docker's short id, which Docker never shows), else its name.
fn shown_name(n: &NetworkView) -> &str {
    n.labels
        .get(crate::docker::engine::NETWORK_NAME_LABEL)
        .unwrap_or(&n.name)
}

fn row(n: &NetworkView, no_trunc: bool) -> Value {
    let id = if no_trunc { &n.id } else { short_id(&n.id, 12) };
    let cfg = n.ipam.config.first();
    json!({
        "ID": id,
        "Name": shown_name(n),
        "Driver": n.driver,
        "Scope": n.scope,
        "Subnet": cfg.map(|c| c.subnet.clone()).unwrap_or_default(),
        "Gateway": cfg.map(|c| c.gateway.to_string()).unwrap_or_default(),
        "Internal": n.internal,
        "IPv6": n.enable_ipv6,
        "Labels": labels_string(&n.labels),
    })
}

fn passes(n: &NetworkView, f: &Filters) -> bool {
    f.matches(|k, v| match k {
        "id" => n.id.starts_with(v),
        "name" => n.name.contains(v) || shown_name(n).contains(v),
        "driver" => n.driver == v,
        "label" => label_matches(&n.labels, v),
        "scope" => n.scope == v,
        "type" => match v {
            "builtin" => n.name == DEFAULT_NETWORK,
            "custom" => n.name != DEFAULT_NETWORK,
            _ => false,
        },
        _ => false,
    })
}

/// `network create`'s arguments.
#[derive(clap::Args)]
pub struct CreateArgs {
    /// The network's name (letters, digits, `_`, `.`, `-`).
    pub name: String,
    /// Driver: bridge (the default) or netpath; both are netpath's datapath.
    #[arg(short, long, value_name = "DRIVER")]
    pub driver: Option<String>,
    /// Subnet in CIDR form, IPv4 or IPv6 (one of each at most; default: a free one from the
    /// address pools).
    #[arg(long, value_name = "CIDR")]
    pub subnet: Vec<String>,
    /// Gateway address of the subnet of its family (default: the subnet's first address).
    #[arg(long, value_name = "IP")]
    pub gateway: Vec<IpAddr>,
    /// Allocate endpoint addresses from this part of the subnet of its family.
    #[arg(long, value_name = "CIDR")]
    pub ip_range: Vec<String>,
    /// IPv6 as well: an IPv6 subnet (the one given, or a /64 of fd6e:7470:6174::/48).
    #[arg(long)]
    pub ipv6: bool,
    /// `--ipv4=false`: no IPv4 subnet, a network of IPv6 alone (with `--ipv6`), as Docker's.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub ipv4: Option<bool>,
    /// Nothing leaves the network; its ports cannot be published.
    #[arg(long)]
    pub internal: bool,
    /// Network option KEY=VALUE (repeatable; see below).
    #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
    pub opts: Vec<String>,
    /// Set a label KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
}

/// One value of each family at most from a repeated flag (`--subnet 10.1.0.0/24 --subnet
/// fd00::/64`), IPv6's told by its colon.
fn by_family<T: Clone>(
    flag: &str,
    values: &[T],
    v6: impl Fn(&T) -> bool,
) -> anyhow::Result<(Option<T>, Option<T>)> {
    let (six, four): (Vec<&T>, Vec<&T>) = values.iter().partition(|v| v6(v));
    if four.len() > 1 || six.len() > 1 {
        anyhow::bail!("--{flag}: at most one IPv4 and one IPv6 value");
    }
    Ok((
        four.first().cloned().cloned(),
        six.first().cloned().cloned(),
    ))
}

impl TryFrom<CreateArgs> for NetworkCreate {
    type Error = anyhow::Error;

    fn try_from(a: CreateArgs) -> anyhow::Result<Self> {
        let (subnet, subnet6) = by_family("subnet", &a.subnet, |s| s.contains(':'))?;
        let (ip_range, ip_range6) = by_family("ip-range", &a.ip_range, |s| s.contains(':'))?;
        let (gateway, gateway6) = by_family("gateway", &a.gateway, IpAddr::is_ipv6)?;
        Ok(NetworkCreate {
            labels: parse_labels(&a.labels),
            name: a.name,
            driver: a.driver,
            subnet,
            gateway: gateway.and_then(|g| match g {
                IpAddr::V4(g) => Some(g),
                IpAddr::V6(_) => None,
            }),
            ip_range,
            ipv6: a.ipv6,
            ipv4: a.ipv4,
            subnet6,
            gateway6: gateway6.and_then(|g| match g {
                IpAddr::V6(g) => Some(g),
                IpAddr::V4(_) => None,
            }),
            ip_range6,
            internal: a.internal,
            options: a.opts,
        })
    }
}

pub async fn run(client: &Client, cmd: NetworkCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        NetworkCmd::Create(args) => {
            let req = NetworkCreate::try_from(args)?;
            let n = client.create_network(&req).await?;
            println!("{}", n.id);
            Ok(ExitCode::SUCCESS)
        }
        NetworkCmd::Ls(args) => {
            let filters = Filters::parse(
                &args.filters,
                &["id", "name", "driver", "label", "scope", "type"],
            )?;
            let rows: Vec<Value> = client
                .networks()
                .await?
                .iter()
                .filter(|n| passes(n, &filters))
                .map(|n| row(n, args.no_trunc))
                .collect();
            print_list(
                &rows,
                &args,
                "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Subnet}}\t{{.Internal}}",
                &[("ID", "NETWORK ID")],
            )?;
            Ok(ExitCode::SUCCESS)
        }
        NetworkCmd::Inspect(args) => {
            inspect_each(&args, |n| async move { client.network(&n).await }).await
        }
        NetworkCmd::Rm(RmArgs { names, force }) => Ok(remove_each(&names, |n| async move {
            client.remove_network_forced(&n, force).await
        })
        .await),
        NetworkCmd::Connect {
            network,
            endpoint,
            ip,
            ip6,
            aliases,
        } => {
            let req = Connect {
                endpoint,
                ip6,
                ip,
                aliases,
                ..Connect::default()
            };
            let ep = client.connect(&network, &req).await?;
            if let Some(n) = ep.networks.get(&network) {
                let ip = n
                    .ip_address
                    .map(IpAddr::V4)
                    .or(n.ipv6_address.map(IpAddr::V6));
                let ip = ip.map(|a| a.to_string()).unwrap_or_default();
                println!("{} {} {ip}", ep.name, n.interface);
            }
            Ok(ExitCode::SUCCESS)
        }
        NetworkCmd::Disconnect { network, endpoint } => {
            let ep = client
                .disconnect(&network, &Disconnect { endpoint })
                .await?;
            println!("{}", ep.name);
            Ok(ExitCode::SUCCESS)
        }
    }
}
