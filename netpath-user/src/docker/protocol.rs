//! Docker's remote network-driver and IPAM protocols (moby's libnetwork `docs/remote.md` and
//! `docs/ipam.md`): the JSON bodies of every call, as dockerd sends and reads them.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Option keys Docker hands a network driver.
pub mod keys {
    /// `-o KEY=VALUE` of `docker network create`, as an object.
    pub const GENERIC: &str = "com.docker.network.generic";
    /// `--internal`.
    pub const INTERNAL: &str = "com.docker.network.internal";
    /// `--ipv6`.
    pub const ENABLE_IPV6: &str = "com.docker.network.enable_ipv6";
    /// An endpoint's published ports (`[PortBinding]`).
    pub const PORT_MAP: &str = "com.docker.network.portmap";
    /// An endpoint's exposed ports (`[TransportPort]`).
    pub const EXPOSED_PORTS: &str = "com.docker.network.endpoint.exposedports";
    /// What an address request is for (IPAM `Options`).
    pub const REQUEST_ADDRESS_TYPE: &str = "RequestAddressType";
    /// ... when it is the network's gateway.
    pub const GATEWAY_ADDRESS: &str = "com.docker.network.gateway";
}

/// `/Plugin.Activate`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Activate {
    pub implements: Vec<&'static str>,
}

/// `/NetworkDriver.GetCapabilities`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Capabilities {
    pub scope: &'static str,
    pub connectivity_scope: &'static str,
}

/// One pool of a network, as the driver is told it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[serde(default)]
pub struct IpamData {
    pub address_space: String,
    pub pool: String,
    /// CIDR: the gateway address with the pool's prefix.
    pub gateway: String,
    pub aux_addresses: BTreeMap<String, String>,
}

/// `/NetworkDriver.CreateNetwork`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(default)]
    pub options: BTreeMap<String, Value>,
    #[serde(default, rename = "IPv4Data")]
    pub ipv4_data: Option<Vec<IpamData>>,
    #[serde(default, rename = "IPv6Data")]
    pub ipv6_data: Option<Vec<IpamData>>,
}

/// Calls naming a network only (`DeleteNetwork`, `FreeNetwork`).
#[derive(Debug, Deserialize)]
pub struct NetworkRef {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// Calls naming an endpoint (`DeleteEndpoint`, `EndpointOperInfo`, `Leave`,
/// `RevokeExternalConnectivity`; `Join` and `ProgramExternalConnectivity` add to it).
#[derive(Debug, Deserialize)]
pub struct EndpointRef {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// Join: the container's network namespace, as dockerd sees it.
    #[serde(default, rename = "SandboxKey")]
    pub sandbox_key: String,
    /// Join, ProgramExternalConnectivity.
    #[serde(default, rename = "Options")]
    pub options: Option<BTreeMap<String, Value>>,
}

/// An endpoint's interface (CIDR addresses, `aa:bb:..` MAC); empty fields are unset.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Interface {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    #[serde(
        default,
        rename = "AddressIPv6",
        skip_serializing_if = "String::is_empty"
    )]
    pub address_ipv6: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

/// `/NetworkDriver.CreateEndpoint`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEndpoint {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(default)]
    pub interface: Option<Interface>,
    #[serde(default)]
    pub options: Option<BTreeMap<String, Value>>,
}

/// Its answer: only what the driver chose (Docker refuses changes to what it set).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEndpointResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<Interface>,
}

/// `/NetworkDriver.EndpointOperInfo`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointInfo {
    pub value: BTreeMap<String, Value>,
}

/// The interface Docker moves into the container: `SrcName` here, renamed `DstPrefix`N there.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InterfaceName {
    pub src_name: String,
    pub dst_prefix: String,
}

/// `/NetworkDriver.Join`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinResponse {
    pub interface_name: InterfaceName,
    /// Empty on an internal network (no default route).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// The IPv6 gateway, on a network with IPv6 that is not internal.
    #[serde(rename = "GatewayIPv6", skip_serializing_if = "String::is_empty")]
    pub gateway6: String,
    pub disable_gateway_service: bool,
}

/// A published port, as libnetwork's `types.PortBinding` marshals (`Proto`: 6 TCP, 17 UDP;
/// `HostPort` 0: any; `HostPortEnd` above `HostPort`: one port of that range).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    pub proto: u8,
    #[serde(default, rename = "IP")]
    pub ip: String,
    pub port: u16,
    #[serde(default, rename = "HostIP")]
    pub host_ip: String,
    #[serde(default)]
    pub host_port: u16,
    #[serde(default)]
    pub host_port_end: u16,
}

/// An exposed port (`types.TransportPort`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TransportPort {
    pub proto: u8,
    pub port: u16,
}

/// `/IpamDriver.GetCapabilities`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamCapabilities {
    #[serde(rename = "RequiresMACAddress")]
    pub requires_mac_address: bool,
    pub requires_request_replay: bool,
}

/// `/IpamDriver.GetDefaultAddressSpaces`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddressSpaces {
    pub local_default_address_space: &'static str,
    pub global_default_address_space: &'static str,
}

/// `/IpamDriver.RequestPool`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestPool {
    #[serde(default)]
    pub address_space: String,
    #[serde(default)]
    pub pool: String,
    #[serde(default)]
    pub sub_pool: String,
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "V6")]
    pub v6: bool,
}

/// Its answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PoolResponse {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    pub pool: String,
    pub data: BTreeMap<String, String>,
}

/// `/IpamDriver.ReleasePool`.
#[derive(Debug, Deserialize)]
pub struct ReleasePool {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

/// `/IpamDriver.RequestAddress` and `/IpamDriver.ReleaseAddress`.
#[derive(Debug, Default, Deserialize)]
pub struct AddressRequest {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    #[serde(default, rename = "Address")]
    pub address: String,
    #[serde(default, rename = "Options")]
    pub options: Option<BTreeMap<String, String>>,
}

/// `/IpamDriver.RequestAddress`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddressResponse {
    /// CIDR: the address with its pool's prefix.
    pub address: String,
    pub data: BTreeMap<String, String>,
}
