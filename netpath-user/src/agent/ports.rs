//! What a published port is in the kernel and on the host: its `PORTS` key and target, and
//! what the host holds of a state's ports (reserved for the outbound NAT and published host
//! ports, or bound by the runtime that publishes them).
use std::net::IpAddr;

use super::{
    reserved::{snat_ports, PortSet, ReservedPorts},
    store::StateStore,
    Agent,
};
use crate::{
    datapath::{any_addr, be_port, AnyPortKey, AnyPortTarget, DatapathOps},
    error::AgentError,
    model::{Attachment, State},
    netlink::{EndpointLink, LinkOps},
    ports::PortMapping,
};

/// What the host must hold of a state's published ports.
pub(super) struct HeldPorts {
    /// Ports the host never picks for its own sockets: the outbound NAT ports and every
    /// published host port.
    reserved: PortSet,
    /// Published ports whose runtime holds them itself (CNI's: podman binds the ports it
    /// publishes), which host sockets may bind.
    runtime_held: std::collections::HashSet<(u8, u16)>,
}

impl HeldPorts {
    pub(super) fn of(state: &State) -> HeldPorts {
        let mut reserved = snat_ports();
        let mut runtime_held = std::collections::HashSet::new();
        for e in state.endpoints.values() {
            let cni = e
                .engine
                .as_ref()
                .is_some_and(|g| g.kind == crate::model::EngineKind::Cni);
            for m in &e.ports {
                reserved.insert(m.host_port);
                if cni {
                    runtime_held.insert((m.proto.number(), m.host_port));
                }
            }
        }
        HeldPorts {
            reserved,
            runtime_held,
        }
    }
}

/// The datapath key of mapping `m`.
pub(super) fn port_key(m: &PortMapping) -> AnyPortKey {
    AnyPortKey {
        addr: any_addr(m.host_ip),
        port: be_port(m.host_port),
        proto: m.proto.number(),
        _pad: 0,
    }
}

/// The datapath entry of mapping `m` delivered to attachment `att` behind `link`, counted
/// into stats slot `slot`: to the attachment's address of the host address's family, its
/// IPv4 address for an IPv6 mapping when it has no IPv6 (NAT46); none for an IPv4 mapping
/// of an attachment of IPv6 alone.
pub(super) fn port_key_target(
    att: &Attachment,
    link: &EndpointLink,
    m: &PortMapping,
    slot: u16,
) -> Option<(AnyPortKey, AnyPortTarget)> {
    let to = match m.host_ip {
        IpAddr::V4(_) => IpAddr::V4(att.ip?),
        IpAddr::V6(_) => att.ip6.map(IpAddr::V6).or(att.ip.map(IpAddr::V4))?,
    };
    Some((
        port_key(m),
        AnyPortTarget {
            addr: any_addr(to),
            port: be_port(m.container_port),
            stats: slot,
            ifindex: link.ifindex,
            mac: att.mac,
            gw_mac: link.host_mac,
            host: <netpath_common::In6 as netpath_common::Addr>::ANY,
        },
    ))
}

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    /// Keeps the host's reserved ports from now on, starting with the state as it is.
    pub fn reserve_ports(&mut self, reserved: ReservedPorts) -> Result<(), AgentError> {
        self.reserved = Some(reserved);
        let held = HeldPorts::of(&self.state);
        self.hold_ports(&held)
    }

    /// Holds published ports on the host: the kernel never picks one for a host socket
    /// (reserved ports), and host sockets may not bind one unless its runtime holds it.
    pub(super) fn hold_ports(&mut self, held: &HeldPorts) -> Result<(), AgentError> {
        if let Some(r) = &mut self.reserved {
            r.sync(&held.reserved)
                .map_err(|e| AgentError::internal(format!("reserving ports: {e:#}")))?;
        }
        Ok(self.dp.set_bind_allowed(&held.runtime_held)?)
    }
}
