//! What `netpath status` and `GET /v1/health` show: whether the datapath runs what the agent
//! wants, how full its maps are, and what the agent last did to it.
use serde::{Deserialize, Serialize};

/// A map this full (percent) is a problem: new flows or ports will soon be refused.
pub const MAP_FULL_PERCENT: usize = 90;

/// The agent's health (`GET /v1/health`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthView {
    /// No problems.
    pub healthy: bool,
    /// Each problem, one line.
    pub problems: Vec<String>,
    /// What to watch but is not a failure (a map nearly full), one line each.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The agent's version and commit, and the SHA-256 of its eBPF object.
    pub version: String,
    pub git_commit: String,
    #[serde(default, rename = "EbpfSHA256")]
    pub ebpf_sha256: String,
    /// When the agent started (RFC 3339).
    pub started: String,
    pub networks: usize,
    pub endpoints: usize,
    /// Every hook the state needs, and any pinned one it does not.
    pub hooks: Vec<HookView>,
    /// This agent's build of each program.
    pub programs: Vec<ProgramView>,
    /// How full the maps that fill up are.
    pub maps: Vec<MapView>,
    /// Every map pinned in the agent's bpffs directory.
    pub pinned_maps: Vec<PinnedMapView>,
    /// The reconcile at start.
    pub last_reconcile: Option<ReconcileView>,
    /// Drift repaired since start (endpoints pruned or made again, hooks re-attached).
    pub repairs: u64,
    /// When drift was last repaired (RFC 3339).
    pub last_repair: Option<String>,
    /// `netpath monitor`s listening now.
    pub monitors: usize,
    /// The DNS server of each network.
    #[serde(default)]
    pub dns: Vec<DnsView>,
    /// This node among the others sharing its etcd (none: on its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterHealth>,
}

/// This node's membership, as `netpath status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClusterHealth {
    pub node: String,
    /// Whether the session with etcd is up.
    pub connected: bool,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Nodes known (this one included; as last known when not connected).
    pub nodes: usize,
    /// Overlay networks of the cluster.
    #[serde(default)]
    pub overlay_networks: usize,
    /// Endpoints of other nodes on overlay networks (addresses taken there).
    #[serde(default)]
    pub remote_endpoints: usize,
}

/// A network's DNS server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DnsView {
    pub network: String,
    /// Where it answers (the gateway, port 53).
    pub address: String,
    pub listening: bool,
}

/// One hook (a pinned link).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HookView {
    /// Where: `uplink-tc@eth0`, `endpoint@np1a2b3c4d5e6`, `sock@netpath_sock_connect4`.
    pub hook: String,
    pub program: String,
    /// The state wants it.
    pub wanted: bool,
    /// Its link is attached where it belongs.
    pub attached: bool,
    /// It runs this agent's build of its program.
    pub current: bool,
    /// Kernel ids (0: no link).
    pub link_id: u32,
    pub program_id: u32,
}

/// One program as this agent loaded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProgramView {
    pub name: String,
    pub id: u32,
    pub tag: String,
}

/// A pinned map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PinnedMapView {
    /// Its pin (`FLOWS`; `FLOWS@old` while set aside for a layout change).
    pub name: String,
    pub id: u32,
    pub capacity: u32,
    /// Set aside: programs of an older build may still use it.
    pub set_aside: bool,
}

/// How full a map is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MapView {
    /// The map (`FLOWS`, `SNAT`, `PORTS`, `ENDPOINTS`, `NETWORKS`).
    pub name: String,
    /// What it holds.
    pub what: String,
    pub entries: usize,
    pub capacity: usize,
}

impl MapView {
    /// Entries as a percentage of capacity.
    pub fn percent(&self) -> usize {
        (self.entries * 100).checked_div(self.capacity).unwrap_or(0)
    }
}

/// What a reconcile found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReconcileReport {
    /// Endpoint interfaces found in place.
    pub adopted: usize,
    /// Endpoint interfaces made again.
    pub recreated: usize,
    /// Endpoints dropped (namespace gone), with why: `NAME: why`.
    pub dropped: Vec<String>,
    /// Endpoint veths no state names (left by a start or request that died half way),
    /// removed.
    pub orphans: Vec<String>,
    /// Map entries written and removed.
    pub written: usize,
    pub removed: usize,
    /// Hooks kept, swapped to this build's program, attached, detached.
    pub hooks_kept: usize,
    pub hooks_updated: usize,
    pub hooks_attached: usize,
    pub hooks_removed: usize,
    /// Flows of interfaces that are gone.
    pub stale_flows: usize,
}

/// A reconcile, when, and how long it took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReconcileView {
    pub at: String,
    pub seconds: f64,
    #[serde(flatten)]
    pub report: ReconcileReport,
}
