//! `netpath agent` and `netpath uninstall`: their flags (over the configuration file, see
//! [`crate::agent::config`]) and the agent's logs (plain text without colour codes unless
//! stderr is a terminal, or JSON lines).
use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use crate::{
    agent::{
        self,
        config::{self, LogFormat, LogLevel, Partial},
        AgentConfig,
    },
    datapath::XdpMode,
};

#[derive(clap::Args)]
#[command(
    after_help = "Every flag can also be set in the configuration file, under its own name:\n  uplinks = [\"eth0\"]\n  state-dir = \"/var/lib/netpath\"\n  xdp = \"native\"\nFlags given here take precedence over the file.\n\nExamples:\n  netpath agent\n  netpath agent --uplink eth0 --uplink eth1 --xdp native\n  netpath agent --config /etc/netpath/netpath.toml --print-config\n  netpath agent --uplink demo0 --state-dir /tmp/np --bpffs /sys/fs/bpf/np --socket /tmp/np.sock"
)]
pub struct AgentArgs {
    /// Configuration file [default: /etc/netpath/netpath.toml, when present].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the configuration in effect (file, flags and defaults) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Uplink interface (repeatable) [default: the interface of the default route].
    #[arg(long = "uplink", value_name = "IFACE")]
    pub uplinks: Vec<String>,
    /// Directory of the desired state [default: /var/lib/netpath].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// bpffs directory where maps and links are pinned; mounted when absent
    /// [default: /sys/fs/bpf/netpath].
    #[arg(long, value_name = "DIR")]
    pub bpffs: Option<PathBuf>,
    /// XDP fast path on the uplinks [default: off].
    #[arg(long, value_enum)]
    pub xdp: Option<XdpMode>,
    /// Capacity of the flow tables [default: 262144].
    #[arg(long, value_name = "N")]
    pub max_flows: Option<u32>,
    /// Capacity of the published-ports map (one host address) [default: 131072].
    #[arg(long, value_name = "N")]
    pub max_ports: Option<u32>,
    /// New flows each CPU may begin per second, 0 for no limit: past it a new flow is
    /// dropped before it takes a slot of the flow tables, so a flood of new flows leaves the
    /// CPU to the flows already made [default: 50000].
    #[arg(long, value_name = "N")]
    pub new_flows_per_cpu: Option<u32>,
    /// cgroup v2 directory where the socket hooks attach [default: the hierarchy's root].
    #[arg(long, value_name = "DIR")]
    pub cgroup: Option<PathBuf>,
    /// Let this group use the API socket (mode 0660) [default: root only, 0600].
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// When a pinned flow table's layout differs from this build's, start it empty instead
    /// of refusing (connections translated through it are reset).
    #[arg(long)]
    pub reset_flows: bool,
    /// Least severe log level shown; RUST_LOG, when set, takes precedence [default: info].
    #[arg(long, value_enum)]
    pub log_level: Option<LogLevel>,
    /// Log as text (no colours off a terminal) or as JSON lines [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Serve Prometheus metrics on ADDR:PORT at /metrics, and a health probe at /healthz
    /// [default: not served].
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Log from the kernel programs at this level and above: warn (outbound NAT ports
    /// exhausted), debug (malformed packets, replies with no route) [default: off].
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub ebpf_log: Option<LogLevel>,
    /// Send queries for names that are not the networks' to this server (repeatable)
    /// [default: the nameservers of the host's /etc/resolv.conf].
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<std::net::IpAddr>,
    /// Answer A queries for network names in the kernel [default: true].
    #[arg(long, value_name = "BOOL")]
    pub dns_fast_path: Option<bool>,
    /// Queries per second each endpoint may send the DNS server, 0 for no limit
    /// [default: 5000].
    #[arg(long, value_name = "N")]
    pub dns_rate_limit: Option<u32>,
    /// The default network's subnet, when the agent first makes it (Docker's `--bip`)
    /// [default: the first free subnet of netpath's pools, 10.210.0.0/16 on most hosts].
    #[arg(long, value_name = "CIDR")]
    pub default_subnet: Option<crate::ipam::Subnet>,
    /// The default network has IPv6 too, when the agent first makes it (Docker's `ipv6`)
    /// [default: false].
    #[arg(long, value_name = "BOOL")]
    pub default_ipv6: Option<bool>,
    /// The default network's IPv6 subnet, when the agent first makes it (Docker's
    /// `fixed-cidr-v6`; implies --default-ipv6) [default: a /64 of fd6e:7470:6174::/48].
    #[arg(long, value_name = "CIDR")]
    pub default_subnet6: Option<crate::ipam::Subnet<std::net::Ipv6Addr>>,
    /// Serve Docker's network and IPAM plugin as NAME (`docker network create -d NAME
    /// --ipam-driver NAME`) [default: not served].
    #[arg(long, value_name = "NAME")]
    pub docker_plugin: Option<String>,
    /// Directory of the plugin's socket, NAME.sock [default: /run/docker/plugins].
    #[arg(long, value_name = "DIR")]
    pub docker_plugin_dir: Option<PathBuf>,
    /// dockerd's API, which the plugin reads at start (what Docker removed while the agent
    /// was down goes) and for Docker's names [default: unix:///var/run/docker.sock].
    #[arg(long, value_name = "unix:///PATH")]
    pub docker_host: Option<String>,
    /// Join the nodes that share this etcd (v3; comma-separated client URLs, e.g.
    /// http://10.0.0.1:2379) [default: this node is on its own].
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// This node's name among the others [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Prefix of every key netpath keeps in etcd [default: /netpath].
    #[arg(long, value_name = "PREFIX")]
    pub etcd_prefix: Option<String>,
    /// CA certificate that signed etcd's (PEM) [default: plain HTTP].
    #[arg(long, value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// This node's client certificate for etcd (PEM), with --etcd-key.
    #[arg(long, value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// The key of --etcd-cert (PEM).
    #[arg(long, value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// Published ports answer only clients in this prefix, IPv4 or IPv6 (repeatable, or
    /// comma-separated; an address alone is itself), checked in the kernel before DNAT; replaces the list
    /// saved by `netpath firewall` [default: the saved list; on a new host, everyone].
    #[arg(long = "published-from", value_name = "CIDR", value_delimiter = ',', value_parser = crate::policy::parse_prefix)]
    pub published_from: Vec<crate::policy::Prefix>,
}

impl AgentArgs {
    /// What the command line sets (`socket` from the global flag or NETPATH_SOCKET).
    fn partial(&self, socket: Option<PathBuf>) -> Partial {
        Partial {
            uplinks: (!self.uplinks.is_empty()).then(|| self.uplinks.clone()),
            socket,
            socket_group: self.socket_group.clone(),
            state_dir: self.state_dir.clone(),
            bpffs: self.bpffs.clone(),
            xdp: self.xdp,
            max_flows: self.max_flows,
            max_ports: self.max_ports,
            new_flows_per_cpu: self.new_flows_per_cpu,
            cgroup: self.cgroup.clone(),
            reset_flows: self.reset_flows.then_some(true),
            log_level: self.log_level,
            log_format: self.log_format,
            metrics: self.metrics,
            ebpf_log: self.ebpf_log,
            dns: (!self.dns.is_empty()).then(|| self.dns.clone()),
            dns_fast_path: self.dns_fast_path,
            dns_rate_limit: self.dns_rate_limit,
            default_subnet: self.default_subnet,
            default_ipv6: self.default_ipv6,
            default_subnet6: self.default_subnet6,
            docker_plugin: self.docker_plugin.clone(),
            docker_plugin_dir: self.docker_plugin_dir.clone(),
            docker_host: self.docker_host.clone(),
            published_from: (!self.published_from.is_empty())
                .then(|| crate::policy::PublishedFrom::new(self.published_from.clone())),
            etcd: (!self.etcd.is_empty()).then(|| self.etcd.clone()),
            node_name: self.node_name.clone(),
            etcd_prefix: self.etcd_prefix.clone(),
            etcd_ca: self.etcd_ca.clone(),
            etcd_cert: self.etcd_cert.clone(),
            etcd_key: self.etcd_key.clone(),
        }
    }
}

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  systemctl stop netpath && netpath uninstall\n  netpath uninstall --state-dir /tmp/np --bpffs /sys/fs/bpf/np"
)]
pub struct UninstallArgs {
    /// The agent's configuration file [default: /etc/netpath/netpath.toml, when present].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The agent's state directory [default: from the configuration, or /var/lib/netpath].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The agent's bpffs directory [default: from the configuration, or /sys/fs/bpf/netpath].
    #[arg(long, value_name = "DIR")]
    pub bpffs: Option<PathBuf>,
}

/// `netpath uninstall`.
pub fn uninstall(args: UninstallArgs, socket: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let cli = Partial {
        socket,
        state_dir: args.state_dir,
        bpffs: args.bpffs,
        ..Partial::default()
    };
    let cfg = cli.over(config::load(args.config.as_deref())?).resolve();
    let removed = crate::agent::uninstall::Uninstall {
        state_dir: cfg.state_dir,
        bpffs: cfg.bpffs,
        socket: cfg.socket,
        hosts: Default::default(),
    }
    .run()?;
    if removed.0.is_empty() {
        println!("nothing of netpath was found");
    }
    for line in removed.0 {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn init_logging(cfg: &AgentConfig) {
    let mut directives = cfg.log_level.as_str().to_string();
    if cfg.ebpf_log.is_some() {
        // The kernel filters its records by the level asked for: show all that come.
        directives += &format!(",{}=trace", crate::datapath::KERNEL_LOG_TARGET);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directives));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// `netpath agent`: flags over the configuration file over defaults, then run (or print).
pub async fn run(args: AgentArgs, socket: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let file = config::load(args.config.as_deref())?;
    let cfg = args.partial(socket).over(file).resolve();
    if args.print_config {
        print!("{}", cfg.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(&cfg);
    agent::run(cfg).await?;
    Ok(ExitCode::SUCCESS)
}
