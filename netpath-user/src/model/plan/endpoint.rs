//! Planning endpoints: creation (addresses, MACs, interface names), connect and disconnect,
//! published ports.
use std::net::{IpAddr, Ipv4Addr};

use super::{
    checks::{
        check_aliases, check_dns, check_ifname, check_labels, check_mac, check_named_ports,
        check_namespace,
    },
    HostView, ModelError,
};
use crate::{
    model::{
        host_ifname, new_id, valid_name, Attachment, Connect, Endpoint, EndpointCreate, EngineKind,
        State, DEFAULT_NETWORK, MAX_NETWORKS_PER_ENDPOINT,
    },
    ports::{self, PortIndex, PortMapping, PortSpec},
};

impl State {
    /// Validates an endpoint request and returns the endpoint it would create.
    pub fn plan_endpoint(
        &self,
        req: &EndpointCreate,
        host: HostView<'_>,
    ) -> Result<Endpoint, ModelError> {
        if !valid_name(&req.name) {
            return Err(ModelError::BadName(req.name.clone()));
        }
        if self.endpoints.contains_key(&req.name) {
            return Err(ModelError::EndpointExists(req.name.clone()));
        }
        // Docker keeps its sandboxes where the agent may not see them (its own mount
        // namespace) and gives each network of a container an endpoint of its own.
        let handed_over = req
            .engine
            .as_ref()
            .is_some_and(|e| e.kind == EngineKind::Docker);
        if !handed_over {
            if let Some(e) = self.endpoints.values().find(|e| e.netns == req.netns) {
                return Err(ModelError::NetnsInUse(req.netns.clone(), e.name.clone()));
            }
            if !req.netns.exists() {
                return Err(ModelError::NoNetns(req.netns.clone()));
            }
        }
        let net = self.network(req.network.as_deref().unwrap_or(DEFAULT_NETWORK))?;
        let ifname = check_ifname(req.ifname.as_deref().unwrap_or("eth0"))?;
        let ip = self.address(net, req.ip)?;
        let ip6 = self.address6(net, req.ip6, ip)?;
        let mac = check_mac(req.mac.as_deref(), ip, ip6)?;
        let id = new_id();
        let mut ep = Endpoint {
            name: req.name.clone(),
            attachments: vec![Attachment {
                network: net.name.clone(),
                ip,
                ip6,
                mac,
                ifname,
                host_ifname: host_ifname(&id, 0),
                aliases: Vec::new(),
            }],
            id,
            netns: req.netns.clone(),
            ports: Vec::new(),
            labels: check_labels(&req.labels)?,
            netns_id: None,
            dns: check_dns(&req.dns)?,
            engine: req.engine.clone(),
            namespace: check_namespace(req.namespace.as_deref())?,
            named_ports: check_named_ports(&req.named_ports)?,
        };
        ep.attachments[0].aliases = check_aliases(&req.aliases)?;
        if !req.ports.is_empty() && net.internal {
            return Err(ModelError::InternalPorts(net.name.clone()));
        }
        ep.ports = self.resolve_specs(
            &req.ports,
            net.host_binding(),
            ip.is_some(),
            ip6.is_some(),
            host,
        )?;
        Ok(ep)
    }

    /// Validates `network connect` and returns the new attachment.
    pub fn plan_connect(&self, network: &str, req: &Connect) -> Result<Attachment, ModelError> {
        let ep = self.endpoint(&req.endpoint)?;
        let net = self.network(network)?;
        if ep.handed_over() {
            return Err(ModelError::DockerOwned(ep.name.clone()));
        }
        if ep.attachment(network).is_some() {
            return Err(ModelError::AlreadyConnected(
                ep.name.clone(),
                network.to_string(),
            ));
        }
        let aliases = check_aliases(&req.aliases)?;
        let ifname = match &req.ifname {
            Some(name) => {
                let name = check_ifname(name)?;
                if ep.attachments.iter().any(|a| a.ifname == name) {
                    return Err(ModelError::IfnameInUse(ep.name.clone(), name));
                }
                name
            }
            None => {
                let n = (0..)
                    .find(|i| !ep.attachments.iter().any(|a| a.ifname == format!("eth{i}")))
                    .unwrap_or(0);
                format!("eth{n}")
            }
        };
        let ip = self.address(net, req.ip)?;
        let ip6 = self.address6(net, req.ip6, ip)?;
        let mac = check_mac(req.mac.as_deref(), ip, ip6)?;
        let slot = (0..MAX_NETWORKS_PER_ENDPOINT)
            .find(|i| {
                !ep.attachments
                    .iter()
                    .any(|a| a.host_ifname == host_ifname(&ep.id, *i))
            })
            .ok_or_else(|| ModelError::TooManyNetworks(ep.name.clone()))?;
        Ok(Attachment {
            network: network.to_string(),
            ip,
            ip6,
            mac,
            ifname,
            host_ifname: host_ifname(&ep.id, slot),
            aliases,
        })
    }

    /// Validates `network disconnect`; returns the attachment it removes.
    pub fn plan_disconnect(
        &self,
        network: &str,
        endpoint: &str,
    ) -> Result<&Attachment, ModelError> {
        let ep = self.endpoint(endpoint)?;
        self.network(network)?;
        if ep.handed_over() {
            return Err(ModelError::DockerOwned(ep.name.clone()));
        }
        let a = ep
            .attachment(network)
            .ok_or_else(|| ModelError::NotConnected(endpoint.to_string(), network.to_string()))?;
        if ep.attachments.len() == 1 {
            return Err(ModelError::LastNetwork(endpoint.to_string()));
        }
        if ep.primary().is_some_and(|p| p.network == network) && !ep.ports.is_empty() {
            // The ports would move to the next network; refuse if it is internal. (Its
            // IPv6 ports reach it by NAT46 if it has no IPv6 address there.)
            if let Some(next) = ep.attachments.get(1) {
                if self.network(&next.network)?.internal {
                    return Err(ModelError::InternalPorts(next.network.clone()));
                }
            }
        }
        Ok(a)
    }

    /// Resolves `-p` specs against everything already published; a spec naming no host
    /// address binds `binding` when the network sets one (Docker's `host_binding_ipv4`), and
    /// otherwise every address of IPv4 and, on a host that has IPv6 (or for an endpoint with
    /// an IPv6 address, `ipv6`), of IPv6 too: an endpoint of IPv4 alone is reached from IPv6
    /// by NAT46, where Docker would run docker-proxy.
    pub(super) fn resolve_specs(
        &self,
        specs: &[String],
        binding: Option<Ipv4Addr>,
        ipv4: bool,
        ipv6: bool,
        host: HostView<'_>,
    ) -> Result<Vec<PortMapping>, ModelError> {
        // An endpoint of IPv4 is reached from IPv6 clients too when the host has IPv6
        // (NAT46); one of IPv6 alone from IPv6 clients only.
        let ipv6 = ipv6 || (ipv4 && !host.addrs6.is_empty());
        let parsed = specs
            .iter()
            .map(|s| {
                s.parse::<PortSpec>().map(|mut p| {
                    p.host_ip = p.host_ip.or(binding.map(IpAddr::V4));
                    p
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for spec in &parsed {
            match spec.host_ip {
                Some(IpAddr::V4(_)) if !ipv4 => {
                    return Err(ModelError::NoIpv4Port(spec.to_string()))
                }
                Some(ip) if !ip.is_unspecified() && !host.has_addr(ip) => {
                    return Err(ModelError::NotHostAddress(ip))
                }
                _ => {}
            }
        }
        let mut taken = PortIndex::new(self.all_ports());
        let mut out = Vec::new();
        for spec in &parsed {
            let ips = ports::host_ips_of(spec, ipv4, ipv6);
            let got = ports::resolve(spec, &ips, &taken, host.busy)?;
            for m in &got {
                taken.insert(m);
            }
            out.extend(got);
        }
        Ok(out)
    }

    /// Validates a publish request: the new mappings for `endpoint`.
    pub fn plan_publish(
        &self,
        endpoint: &str,
        specs: &[String],
        host: HostView<'_>,
    ) -> Result<Vec<PortMapping>, ModelError> {
        let ep = self.endpoint(endpoint)?;
        if specs.is_empty() {
            return Err(ModelError::NoSpecs);
        }
        let (mut binding, mut ipv4, mut ipv6) = (None, true, false);
        if let Some(p) = ep.primary() {
            let net = self.network(&p.network)?;
            if net.internal {
                return Err(ModelError::InternalPorts(p.network.clone()));
            }
            binding = net.host_binding();
            ipv4 = p.ip.is_some();
            ipv6 = p.ip6.is_some();
        }
        self.resolve_specs(specs, binding, ipv4, ipv6, host)
    }

    /// Validates an unpublish request: the mappings of `endpoint` it removes. Every spec must
    /// match at least one published mapping.
    pub fn plan_unpublish(
        &self,
        endpoint: &str,
        specs: &[String],
    ) -> Result<Vec<PortMapping>, ModelError> {
        let ep = self.endpoint(endpoint)?;
        if specs.is_empty() {
            return Err(ModelError::NoSpecs);
        }
        let mut out: Vec<PortMapping> = Vec::new();
        for s in specs {
            let spec: PortSpec = s.parse()?;
            let hits: Vec<_> = ep
                .ports
                .iter()
                .filter(|m| ports::spec_matches(&spec, m))
                .copied()
                .collect();
            if hits.is_empty() {
                return Err(ModelError::NoMatch(endpoint.to_string(), s.clone()));
            }
            for h in hits {
                if !out.contains(&h) {
                    out.push(h);
                }
            }
        }
        Ok(out)
    }
}
