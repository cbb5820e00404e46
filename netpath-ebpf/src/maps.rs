//! Every map the kernel programs use. All are pinned by name under the agent's bpffs directory;
//! sizes here are defaults the agent overrides at load time.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use netpath_common::{
    map_sizes, Counter, EndpointInfo, FlowKey, FlowNat, PortKey, PortTarget, PORTS_ANY_LEN,
};

/// Published ports: (host address, host port, protocol) → endpoint.
#[map]
pub static PORTS: HashMap<PortKey, PortTarget> = HashMap::pinned(map_sizes::PORTS, 0);

/// Ports published on every host address, indexed by `port_any_index`.
#[map]
pub static PORTS_ANY: Array<PortTarget> = Array::pinned(PORTS_ANY_LEN, 0);

/// The agent's own IPv4 addresses (network order); a wildcard publish answers on each.
#[map]
pub static HOST_ADDRS: HashMap<u32, u32> = HashMap::pinned(map_sizes::HOST_ADDRS, 0);

/// NAT state of published flows, keyed by the reply's 5-tuple.
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowNat> = LruHashMap::pinned(map_sizes::FLOWS, 0);

/// Endpoints by the ifindex of their host-side veth.
#[map]
pub static ENDPOINTS: HashMap<u32, EndpointInfo> = HashMap::pinned(map_sizes::ENDPOINTS, 0);

/// Per-CPU packet counters, indexed by [`Counter`].
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::pinned(Counter::COUNT, 0);
