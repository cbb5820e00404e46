//! The `netpath` command line: the agent's entry point and a thin client of its API, in
//! Docker's words and conventions.
//!
//! | module | commands |
//! |---|---|
//! | here | the command tree (clap), dispatch, how errors and exit codes look |
//! | [`agent`] | `netpath agent` flags and logging |
//! | [`endpoint`] | `endpoint create/ls/inspect/rm` |
//! | [`network`] | `network create/ls/inspect/rm/connect/disconnect` |
//! | [`port`] | `port ENDPOINT [PORT]`, `port publish/unpublish/ls` |
//! | [`policy`] | `policy apply/ls/inspect/rm/check`: Kubernetes NetworkPolicy |
//! | [`firewall`] | `firewall show/set/add/rm/clear`: who published ports answer |
//! | [`monitor`] | `monitor`: the datapath's events, live |
//! | [`status`] | `status`: the agent's health |
//! | [`system`] | `stats`, `version`, `completion`, `man` |
//! | [`format`] | tables, `-q`, `--format`, `--filter`, port ranges |
use std::{path::PathBuf, process::ExitCode};

use clap::{CommandFactory, Parser, Subcommand};

use crate::api::client::{Client, ClientError};

pub mod agent;
pub mod endpoint;
pub mod firewall;
pub mod format;
pub mod monitor;
pub mod network;
pub mod node;
pub mod policy;
pub mod port;
pub mod status;
pub mod system;
pub mod template;

#[derive(Parser)]
#[command(
    name = "netpath",
    version = crate::api::VERSION_LINE.as_str(),
    about = "eBPF datapath for Docker-style container networking",
    after_help = "Examples:\n  netpath agent --uplink eth0\n  netpath network create web --subnet 10.20.0.0/24\n  netpath endpoint create api --netns api --network web -p 8080:80\n  netpath port api"
)]
pub struct Cli {
    /// The agent's API socket [default: the configuration file's, or
    /// /run/netpath/netpath.sock].
    #[arg(long, global = true, env = "NETPATH_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Seconds a request may take before the CLI gives up with a one-line error.
    #[arg(
        long,
        global = true,
        env = "NETPATH_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    pub timeout: u64,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the node agent: load and attach the datapath, serve the API.
    Agent(Box<agent::AgentArgs>),
    /// Take down everything an agent made (stop the agent first) and give back what it
    /// changed on the host.
    Uninstall(agent::UninstallArgs),
    /// Manage endpoints (a container's network interfaces).
    #[command(subcommand)]
    Endpoint(endpoint::EndpointCmd),
    /// List an endpoint's published ports (`docker port`), or publish and unpublish them.
    Port(port::PortArgs),
    /// Network policies: Kubernetes NetworkPolicy manifests, enforced in the kernel.
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// Which clients published ports answer: a host-wide allow-list checked in the kernel.
    #[command(subcommand)]
    Firewall(firewall::FirewallCmd),
    /// Manage networks (`docker network`).
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// The nodes that share this node's etcd (`docker node`).
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// Stream the datapath's events: drops with their reason, and translations with --trace.
    Monitor(monitor::MonitorArgs),
    /// The agent's health: hooks attached and current, maps, the last reconcile, repairs.
    Status(status::StatusArgs),
    /// Packet counters, drop reasons and map occupancy.
    #[command(after_help = "Examples:\n  netpath stats\n  netpath stats --format json")]
    Stats(system::StatsArgs),
    /// Client and agent versions.
    #[command(
        after_help = "Examples:\n  netpath version\n  netpath version --format '{{.Agent.Version}}'"
    )]
    Version(system::VersionArgs),
    /// Shell completions for bash, zsh, fish, elvish or powershell, on stdout.
    #[command(
        after_help = "Examples:\n  netpath completion bash > /etc/bash_completion.d/netpath"
    )]
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Man pages: netpath(1) on stdout, or every page into a directory.
    #[command(
        after_help = "Examples:\n  netpath man | man -l -\n  netpath man --dir /usr/local/share/man/man1"
    )]
    Man {
        /// Write netpath.1 and one page per subcommand here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// The clap definition, for completions and man pages.
pub fn command() -> clap::Command {
    Cli::command()
}

/// What a command that failed prints: the agent's refusals in Docker's words
/// (`Error response from agent: ...`), anything else prefixed with `netpath: `.
pub fn error_line(e: &anyhow::Error) -> String {
    match e.downcast_ref::<ClientError>() {
        Some(c @ ClientError::Refused(_)) => c.to_string(),
        _ => format!("netpath: {e:#}"),
    }
}

/// `netpath`'s main.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.cmd, Cmd::Agent(_)) {
        crate::agent::memory::tune_allocator();
    }
    if !matches!(cli.cmd, Cmd::Agent(_)) {
        // A command piped into `head` ends quietly when the pipe closes, like any Unix tool
        // (the agent keeps Rust's default: a closed socket is an error, not a signal).
        // SAFETY: setting a signal disposition before any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
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
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The socket a client uses: the flag or NETPATH_SOCKET, else the configuration file's, else
/// the default.
fn client_socket(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| crate::agent::config::load(None).ok().and_then(|p| p.socket))
        .unwrap_or_else(|| crate::api::client::DEFAULT_SOCKET.into())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = Client::new(client_socket(cli.socket.clone()))
        .with_timeout(std::time::Duration::from_secs(cli.timeout.max(1)));
    match cli.cmd {
        Cmd::Agent(args) => agent::run(*args, cli.socket).await,
        Cmd::Uninstall(args) => agent::uninstall(args, cli.socket),
        Cmd::Endpoint(cmd) => endpoint::run(&client, cmd).await,
        Cmd::Port(args) => port::run(&client, args).await,
        Cmd::Firewall(cmd) => firewall::run(&client, cmd).await,
        Cmd::Policy(cmd) => policy::run(&client, cmd).await,
        Cmd::Network(cmd) => network::run(&client, cmd).await,
        Cmd::Node(cmd) => node::run(&client, cmd).await,
        Cmd::Monitor(args) => monitor::run(&client, args).await,
        Cmd::Status(args) => status::run(&client, args).await,
        Cmd::Stats(args) => system::stats(&client, args).await,
        Cmd::Version(args) => system::version(&client, args).await,
        Cmd::Completion { shell } => system::completion(shell),
        Cmd::Man { dir } => system::man(dir.as_deref()),
    }
}

/// The arguments of `rm NAME…`, the same for endpoints and networks.
#[derive(clap::Args)]
pub struct RmArgs {
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// Remove it even when Docker owns it (Docker will still think it exists).
    #[arg(short, long)]
    pub force: bool,
}

/// The arguments of `inspect NAME…`, the same for endpoints and networks.
#[derive(clap::Args)]
pub struct InspectArgs {
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// Print each through a template instead.
    #[arg(short = 'f', long, value_name = "TEMPLATE")]
    pub format: Option<String>,
}

/// `rm`: removes each name with `op`, printing the removed ones as Docker does.
pub async fn remove_each<F, Fut>(names: &[String], mut op: F) -> ExitCode
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), ClientError>>,
{
    let (done, failed) = each(names, |n| {
        let removed = op(n.clone());
        async move { removed.await.map(|()| n) }
    })
    .await;
    for n in done {
        println!("{n}");
    }
    exit(failed)
}

/// `inspect`: looks each name up with `op` and prints what was found as JSON or through the
/// template.
pub async fn inspect_each<T, F, Fut>(args: &InspectArgs, op: F) -> anyhow::Result<ExitCode>
where
    T: serde::Serialize,
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let (found, failed) = each(&args.names, op).await;
    match &args.format {
        None => println!("{}", serde_json::to_string_pretty(&found)?),
        Some(f) => {
            let t = template::Template::parse(f)?;
            for v in &found {
                println!("{}", t.render(&serde_json::to_value(v)?)?);
            }
        }
    }
    Ok(exit(failed))
}

/// Runs `op` for each name, printing each failure as the agent said it; fails at the end if
/// any did (Docker's behaviour for `rm` and `inspect` of several names).
pub async fn each<T, F, Fut>(names: &[String], mut op: F) -> (Vec<T>, bool)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut done = Vec::new();
    let mut failed = false;
    for name in names {
        match op(name.clone()).await {
            Ok(v) => done.push(v),
            Err(e) => {
                eprintln!("{}", error_line(&e.into()));
                failed = true;
            }
        }
    }
    (done, failed)
}

/// Success unless something failed.
pub fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `KEY=VALUE` (or `KEY`, an empty value) labels.
pub fn parse_labels(raw: &[String]) -> std::collections::BTreeMap<String, String> {
    raw.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// Every command says what each of its flags does and shows an example.
    #[test]
    fn every_flag_has_help_and_every_command_an_example() {
        fn walk(cmd: &clap::Command, path: &str) {
            let path = format!("{path} {}", cmd.get_name());
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(
                    a.get_help().is_some() || a.is_positional(),
                    "{path}: --{id} has no help"
                );
            }
            let leaf = !cmd.has_subcommands();
            if leaf && cmd.get_name() != "help" {
                let after = cmd
                    .get_after_help()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                assert!(after.contains("Examples:"), "{path}: no example");
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path);
            }
        }
        walk(&super::command(), "");
    }
}
