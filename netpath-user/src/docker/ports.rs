//! Published ports through Docker: `ProgramExternalConnectivity` and `RevokeExternalConnectivity`
//! as the agent's publish and unpublish, and `EndpointOperInfo` telling Docker what was chosen.
use std::collections::BTreeMap;

use serde_json::{json, Value};
use tracing::info;

use super::{option, protocol::*, to_value, Plugin, Refusal, EXPOSED_LABEL};
use crate::{
    api::{EndpointView, Service},
    model::PortsRequest,
    ports::Proto,
};

impl<S: Service> Plugin<S> {
    pub(super) fn endpoint_info(&self, req: &EndpointRef) -> Result<Value, Refusal> {
        let mut value = BTreeMap::new();
        if let Some(ep) = self.endpoint(&req.endpoint_id) {
            let map: Vec<PortBinding> = ep
                .ports
                .iter()
                .map(|p| PortBinding {
                    proto: p.proto.number(),
                    ip: ep.ip_address.map(|a| a.to_string()).unwrap_or_default(),
                    port: p.private_port,
                    host_ip: p.ip.to_string(),
                    host_port: p.public_port,
                    host_port_end: p.public_port,
                })
                .collect();
            let exposed: Vec<TransportPort> = ep
                .labels
                .get(EXPOSED_LABEL)
                .map(|l| l.split(',').filter_map(parse_exposed).collect())
                .unwrap_or_default();
            value.insert(keys::PORT_MAP.to_string(), to_value(&map)?);
            value.insert(keys::EXPOSED_PORTS.to_string(), to_value(&exposed)?);
        }
        to_value(&EndpointInfo { value })
    }

    pub(super) fn program_ports(&self, req: &EndpointRef) -> Result<Value, Refusal> {
        let ep = self.endpoint_or_refuse(&req.endpoint_id)?;
        let bindings: Vec<PortBinding> = option(req.options.as_ref(), keys::PORT_MAP)?;
        let specs = bindings
            .iter()
            .map(spec_of)
            .collect::<Result<Vec<String>, Refusal>>()?;
        self.unpublish_all(&ep)?;
        if !specs.is_empty() {
            let ports = self.svc.publish(&ep.name, &PortsRequest { specs })?;
            info!(endpoint = %ep.name, ports = ports.len(), "Docker ports published");
        }
        Ok(json!({}))
    }

    pub(super) fn revoke_ports(&self, req: &EndpointRef) -> Result<Value, Refusal> {
        if let Some(ep) = self.endpoint(&req.endpoint_id) {
            self.unpublish_all(&ep)?;
        }
        Ok(json!({}))
    }

    pub(super) fn unpublish_all(&self, ep: &EndpointView) -> Result<(), Refusal> {
        if ep.ports.is_empty() {
            return Ok(());
        }
        let specs = ep
            .ports
            .iter()
            .map(|p| {
                let host = std::net::SocketAddr::new(p.ip, p.public_port);
                format!("{host}:{}/{}", p.private_port, p.proto)
            })
            .collect();
        self.svc.unpublish(&ep.name, &PortsRequest { specs })?;
        Ok(())
    }
}

/// A binding as a `-p` spec of netpath's, its host address of one family (Docker sends one
/// binding per family, `::` on hosts with IPv6 for every container: an endpoint without
/// IPv6 is reached from it by NAT46, as Docker's docker-proxy would).
fn spec_of(b: &PortBinding) -> Result<String, Refusal> {
    let v6 = b.host_ip.contains(':');
    let proto = proto(b.proto)?;
    let host = match (b.host_port, b.host_port_end) {
        (0, _) => String::new(),
        (p, end) if end > p => format!("{p}-{end}"),
        (p, _) => p.to_string(),
    };
    let ip = match b.host_ip.as_str() {
        "" => String::new(),
        ip if v6 => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    Ok(format!("{ip}:{host}:{}/{proto}", b.port))
}

pub(super) fn proto(n: u8) -> Result<Proto, Refusal> {
    match n {
        6 => Ok(Proto::Tcp),
        17 => Ok(Proto::Udp),
        132 => Err("netpath publishes TCP and UDP ports, not SCTP".into()),
        n => Err(format!("unknown protocol number {n}")),
    }
}

fn parse_exposed(s: &str) -> Option<TransportPort> {
    let (port, proto) = s.split_once('/')?;
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return None,
    };
    Some(TransportPort {
        proto: proto.number(),
        port: port.parse().ok()?,
    })
}
