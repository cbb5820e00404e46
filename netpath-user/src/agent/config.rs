//! The agent's configuration: a TOML file (`--config FILE`, or `/etc/netpath/netpath.toml`
//! when present) holding any of the agent's flags under the flag's name, flags given on the
//! command line taking precedence, and defaults for the rest. Unknown keys and bad values are
//! refused with the file, line and key. `netpath agent --print-config` prints the outcome.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    datapath::{MapSizes, XdpMode},
    policy::PublishedFrom,
};

/// Where the agent looks for its configuration when not told.
pub const DEFAULT_CONFIG: &str = "/etc/netpath/netpath.toml";
pub use crate::api::client::DEFAULT_SOCKET;
pub const DEFAULT_STATE_DIR: &str = "/var/lib/netpath";
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf/netpath";
/// Where dockerd serves its API (Docker's own default `DOCKER_HOST`).
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
/// Where dockerd finds plugins' sockets.
pub const DEFAULT_PLUGIN_DIR: &str = "/run/docker/plugins";

/// How much the agent logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The level as aya-log numbers it (error 1 … trace 5; 0 logs nothing).
    pub fn aya_log(self) -> u8 {
        self as u8 + 1
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// How the agent's log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings as a file or the command line gives them: each may be missing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Partial {
    pub uplinks: Option<Vec<String>>,
    pub socket: Option<PathBuf>,
    pub socket_group: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub bpffs: Option<PathBuf>,
    pub xdp: Option<XdpMode>,
    pub max_flows: Option<u32>,
    pub max_ports: Option<u32>,
    pub new_flows_per_cpu: Option<u32>,
    pub cgroup: Option<PathBuf>,
    pub reset_flows: Option<bool>,
    pub log_level: Option<LogLevel>,
    pub log_format: Option<LogFormat>,
    pub metrics: Option<SocketAddr>,
    pub ebpf_log: Option<LogLevel>,
    pub dns: Option<Vec<std::net::IpAddr>>,
    pub dns_fast_path: Option<bool>,
    pub dns_rate_limit: Option<u32>,
    pub default_subnet: Option<crate::ipam::Subnet>,
    pub default_ipv6: Option<bool>,
    pub default_subnet6: Option<crate::ipam::Subnet<std::net::Ipv6Addr>>,
    pub docker_plugin: Option<String>,
    pub docker_plugin_dir: Option<PathBuf>,
    pub docker_host: Option<String>,
    pub etcd: Option<Vec<String>>,
    pub node_name: Option<String>,
    pub etcd_prefix: Option<String>,
    pub etcd_ca: Option<PathBuf>,
    pub etcd_cert: Option<PathBuf>,
    pub etcd_key: Option<PathBuf>,
    #[serde(alias = "published_from")]
    pub published_from: Option<PublishedFrom>,
}

impl Partial {
    /// Each setting of `self`, else of `under`.
    pub fn over(self, under: Partial) -> Partial {
        Partial {
            uplinks: self.uplinks.or(under.uplinks),
            socket: self.socket.or(under.socket),
            socket_group: self.socket_group.or(under.socket_group),
            state_dir: self.state_dir.or(under.state_dir),
            bpffs: self.bpffs.or(under.bpffs),
            xdp: self.xdp.or(under.xdp),
            max_flows: self.max_flows.or(under.max_flows),
            max_ports: self.max_ports.or(under.max_ports),
            new_flows_per_cpu: self.new_flows_per_cpu.or(under.new_flows_per_cpu),
            cgroup: self.cgroup.or(under.cgroup),
            reset_flows: self.reset_flows.or(under.reset_flows),
            log_level: self.log_level.or(under.log_level),
            log_format: self.log_format.or(under.log_format),
            metrics: self.metrics.or(under.metrics),
            ebpf_log: self.ebpf_log.or(under.ebpf_log),
            dns: self.dns.or(under.dns),
            dns_fast_path: self.dns_fast_path.or(under.dns_fast_path),
            dns_rate_limit: self.dns_rate_limit.or(under.dns_rate_limit),
            default_subnet: self.default_subnet.or(under.default_subnet),
            default_ipv6: self.default_ipv6.or(under.default_ipv6),
            default_subnet6: self.default_subnet6.or(under.default_subnet6),
            docker_plugin: self.docker_plugin.or(under.docker_plugin),
            docker_plugin_dir: self.docker_plugin_dir.or(under.docker_plugin_dir),
            docker_host: self.docker_host.or(under.docker_host),
            etcd: self.etcd.or(under.etcd),
            node_name: self.node_name.or(under.node_name),
            etcd_prefix: self.etcd_prefix.or(under.etcd_prefix),
            etcd_ca: self.etcd_ca.or(under.etcd_ca),
            etcd_cert: self.etcd_cert.or(under.etcd_cert),
            etcd_key: self.etcd_key.or(under.etcd_key),
            published_from: self.published_from.or(under.published_from),
        }
    }

    /// With defaults for what is still missing.
    pub fn resolve(self) -> AgentConfig {
        let sizes = MapSizes::default();
        AgentConfig {
            uplinks: self.uplinks.unwrap_or_default(),
            socket: self.socket.unwrap_or_else(|| DEFAULT_SOCKET.into()),
            socket_group: self.socket_group,
            state_dir: self.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            bpffs: self.bpffs.unwrap_or_else(|| DEFAULT_BPFFS.into()),
            xdp: self.xdp.unwrap_or(XdpMode::Off),
            max_flows: self.max_flows.unwrap_or(sizes.flows),
            max_ports: self.max_ports.unwrap_or(sizes.ports),
            new_flows_per_cpu: self
                .new_flows_per_cpu
                .unwrap_or(netpath_common::NEW_FLOWS_PER_CPU),
            cgroup: self.cgroup,
            reset_flows: self.reset_flows.unwrap_or(false),
            log_level: self.log_level.unwrap_or(LogLevel::Info),
            log_format: self.log_format.unwrap_or(LogFormat::Text),
            metrics: self.metrics,
            ebpf_log: self.ebpf_log,
            dns: self.dns.unwrap_or_default(),
            dns_fast_path: self.dns_fast_path.unwrap_or(true),
            dns_rate_limit: self
                .dns_rate_limit
                .unwrap_or(crate::dns::server::DnsOptions::default().rate_limit),
            default_subnet: self.default_subnet,
            default_ipv6: self.default_ipv6.unwrap_or(false),
            default_subnet6: self.default_subnet6,
            docker_plugin: self.docker_plugin,
            docker_plugin_dir: self
                .docker_plugin_dir
                .unwrap_or_else(|| DEFAULT_PLUGIN_DIR.into()),
            docker_host: self
                .docker_host
                .unwrap_or_else(|| DEFAULT_DOCKER_HOST.into()),
            etcd: self.etcd.unwrap_or_default(),
            node_name: self.node_name,
            etcd_prefix: self
                .etcd_prefix
                .unwrap_or_else(|| crate::cluster::DEFAULT_PREFIX.into()),
            etcd_ca: self.etcd_ca,
            etcd_cert: self.etcd_cert,
            etcd_key: self.etcd_key,
            published_from: self.published_from,
        }
    }
}

/// How the agent runs: every setting decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AgentConfig {
    /// Uplink interfaces (empty: the interface of the default route).
    pub uplinks: Vec<String>,
    pub socket: PathBuf,
    /// The group that may use the API socket (mode 0660); none: root only (0600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_group: Option<String>,
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    pub xdp: XdpMode,
    pub max_flows: u32,
    pub max_ports: u32,
    /// New flows each CPU may begin per second (the flood guard; 0: no limit).
    pub new_flows_per_cpu: u32,
    /// cgroup v2 directory for the socket hooks (none: the hierarchy's root).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
    /// Start with empty flow tables when their pinned layout differs from this build's.
    pub reset_flows: bool,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    /// Where Prometheus metrics are served (none: not served).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    /// The kernel programs' log level (none: they do not log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ebpf_log: Option<LogLevel>,
    /// Where endpoints' queries for other names go (empty: the host's resolv.conf).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<std::net::IpAddr>,
    /// Answer A queries for network names in the kernel.
    pub dns_fast_path: bool,
    /// Queries per second each endpoint may send the DNS server (0: no limit).
    pub dns_rate_limit: u32,
    /// The default network's subnet when the agent first makes it (Docker's `bip`; none:
    /// the first free one of netpath's pools).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_subnet: Option<crate::ipam::Subnet>,
    /// The default network has IPv6 when the agent first makes it (Docker's `ipv6`).
    pub default_ipv6: bool,
    /// Its IPv6 subnet then (Docker's `fixed-cidr-v6`; none: a /64 of netpath's pool); implies
    /// `default_ipv6`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_subnet6: Option<crate::ipam::Subnet<std::net::Ipv6Addr>>,
    /// Serve Docker's network and IPAM plugin under this name (none: not served).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_plugin: Option<String>,
    /// Where the plugin's socket goes (dockerd looks in /run/docker/plugins).
    pub docker_plugin_dir: PathBuf,
    /// dockerd's API, read by the plugin for what Docker changed while the agent was down and
    /// for Docker's names.
    pub docker_host: String,
    /// etcd client URLs shared with the other nodes (empty: this node is on its own).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub etcd: Vec<String>,
    /// This node's name among the others (none: the host name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Every etcd key lives under this prefix.
    pub etcd_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_ca: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_key: Option<PathBuf>,
    /// The clients published ports answer, replacing the saved list at start (none: the
    /// saved list, everyone on a new host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_from: Option<PublishedFrom>,
}

impl AgentConfig {
    /// The map sizes these settings ask for.
    pub fn sizes(&self) -> MapSizes {
        MapSizes {
            flows: self.max_flows,
            ports: self.max_ports,
            ..MapSizes::default()
        }
    }

    /// As a configuration file would say it.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{file}: {error}")]
    Read { file: String, error: String },
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
}

/// Reads the settings in `text` (from `file`, for messages).
pub fn parse(file: &Path, text: &str) -> Result<Partial, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let start = e.span().map_or(0, |s| s.start);
        let line = text[..start.min(text.len())].matches('\n').count() + 1;
        let this = text.lines().nth(line - 1).unwrap_or("");
        let key = match this.split_once('=') {
            Some((k, _)) => k.trim().to_string(),
            None => this.trim().to_string(),
        };
        let message = e.message().lines().next().unwrap_or("").to_string();
        ConfigError::Invalid {
            file: file.display().to_string(),
            line,
            key,
            message,
        }
    })
}

/// The settings of `file`; with no file named, of [`DEFAULT_CONFIG`] when it exists.
pub fn load(file: Option<&Path>) -> Result<Partial, ConfigError> {
    let path = match file {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
        None => return Ok(Partial::default()),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
        file: path.display().to_string(),
        error: e.to_string(),
    })?;
    parse(&path, &text)
}

#[cfg(test)]
mod tests;
