//! `netpath agent`: its flags and its logs (plain text without colour codes unless stderr
//! is a terminal, or JSON lines).
use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use crate::{
    agent::{self, AgentConfig},
    datapath::{MapSizes, XdpMode},
};

/// How the agent logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  netpath agent\n  netpath agent --uplink eth0 --uplink eth1 --xdp native\n  netpath agent --uplink demo0 --state-dir /tmp/np --bpffs /sys/fs/bpf/np --socket /tmp/np.sock"
)]
pub struct AgentArgs {
    /// Uplink interface (repeatable). Default: the interface of the default route.
    #[arg(long = "uplink", value_name = "IFACE")]
    pub uplinks: Vec<String>,
    /// Directory of the desired state.
    #[arg(long, default_value = "/var/lib/netpath", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// bpffs directory where maps are pinned (bpffs is mounted there when absent).
    #[arg(long, default_value = "/sys/fs/bpf/netpath", value_name = "DIR")]
    pub bpffs: PathBuf,
    /// XDP fast path on the uplinks.
    #[arg(long, value_enum, default_value_t = XdpMode::Off)]
    pub xdp: XdpMode,
    /// Capacity of the flow table.
    #[arg(long, default_value_t = MapSizes::default().flows, value_name = "N")]
    pub max_flows: u32,
    /// Capacity of the published-ports map.
    #[arg(long, default_value_t = MapSizes::default().ports, value_name = "N")]
    pub max_ports: u32,
    /// cgroup v2 directory where the socket hooks attach (default: the hierarchy's root).
    #[arg(long, value_name = "DIR")]
    pub cgroup: Option<PathBuf>,
    /// Let this group use the API socket (mode 0660); default: root only (0600).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// When a pinned flow table's layout differs from this build's, start it empty instead
    /// of refusing (connections translated through it are reset).
    #[arg(long)]
    pub reset_flows: bool,
    /// Least severe log level shown (RUST_LOG, when set, takes precedence).
    #[arg(long, default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
    /// Log as text or as JSON lines.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  systemctl stop netpath && netpath uninstall\n  netpath uninstall --state-dir /tmp/np --bpffs /sys/fs/bpf/np"
)]
pub struct UninstallArgs {
    /// The agent's state directory.
    #[arg(long, default_value = "/var/lib/netpath", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// The agent's bpffs directory.
    #[arg(long, default_value = "/sys/fs/bpf/netpath", value_name = "DIR")]
    pub bpffs: PathBuf,
}

/// `netpath uninstall`.
pub fn uninstall(args: UninstallArgs, socket: PathBuf) -> anyhow::Result<ExitCode> {
    let removed = crate::agent::uninstall::Uninstall {
        state_dir: args.state_dir,
        bpffs: args.bpffs,
        socket,
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

fn init_logging(args: &AgentArgs) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

pub async fn run(args: AgentArgs, socket: PathBuf) -> anyhow::Result<ExitCode> {
    init_logging(&args);
    agent::run(AgentConfig {
        uplinks: args.uplinks,
        socket,
        state_dir: args.state_dir,
        bpffs: args.bpffs,
        xdp: args.xdp,
        sizes: MapSizes {
            flows: args.max_flows,
            ports: args.max_ports,
            ..MapSizes::default()
        },
        cgroup: args.cgroup,
        reset_flows: args.reset_flows,
        socket_group: args.socket_group,
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
