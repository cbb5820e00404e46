//! The API as the agent serves it ([`Service`]): queries answered from the desired state and
//! the datapath, changes handed to the transactions.
use netpath_common::Counter;

use super::{store::StateStore, transactions::Agent};
use crate::{
    api::{ApiError, EndpointView, NetworkView, Port, PortView, Service, StatsView, VersionView},
    datapath::DatapathOps,
    model::{Connect, Disconnect, EndpointCreate, Network, NetworkCreate, PortsRequest},
    netlink::LinkOps,
};

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    fn network_view(&self, net: &Network) -> NetworkView {
        NetworkView::new(net, self.state.members(&net.name))
    }
}

impl<D, L, S> Service for Agent<D, L, S>
where
    D: DatapathOps + 'static,
    L: LinkOps + 'static,
    S: StateStore + 'static,
{
    fn version(&self) -> VersionView {
        VersionView::current()
    }

    fn stats(&self) -> StatsView {
        let s = self.dp.stats();
        StatsView {
            counters: s
                .counters
                .iter()
                .map(|(c, v): &(Counter, u64)| (c.name().to_string(), *v))
                .collect(),
            flows: s.flows,
            outbound_flows: s.outbound_flows,
            published_ports: s.published_ports,
            endpoints: s.endpoints,
            networks: s.networks,
        }
    }

    fn networks(&self) -> Vec<NetworkView> {
        self.state
            .networks
            .values()
            .map(|n| self.network_view(n))
            .collect()
    }

    fn network(&self, name: &str) -> Result<NetworkView, ApiError> {
        Ok(self.network_view(self.state.network(name)?))
    }

    fn create_network(&mut self, req: &NetworkCreate) -> Result<NetworkView, ApiError> {
        let net = Agent::create_network(self, req)?;
        Ok(self.network_view(&net))
    }

    fn remove_network(&mut self, name: &str) -> Result<(), ApiError> {
        Agent::remove_network(self, name)
    }

    fn connect(&mut self, network: &str, req: &Connect) -> Result<EndpointView, ApiError> {
        Ok(EndpointView::new(&Agent::connect(self, network, req)?))
    }

    fn disconnect(&mut self, network: &str, req: &Disconnect) -> Result<EndpointView, ApiError> {
        Ok(EndpointView::new(&Agent::disconnect(
            self,
            network,
            &req.endpoint,
        )?))
    }

    fn endpoints(&self) -> Vec<EndpointView> {
        self.state
            .endpoints
            .values()
            .map(EndpointView::new)
            .collect()
    }

    fn endpoint(&self, name: &str) -> Result<EndpointView, ApiError> {
        Ok(EndpointView::new(self.state.endpoint(name)?))
    }

    fn create_endpoint(&mut self, req: &EndpointCreate) -> Result<EndpointView, ApiError> {
        Ok(EndpointView::new(&Agent::create_endpoint(self, req)?))
    }

    fn remove_endpoint(&mut self, name: &str) -> Result<(), ApiError> {
        Agent::remove_endpoint(self, name)
    }

    fn publish(&mut self, endpoint: &str, req: &PortsRequest) -> Result<Vec<Port>, ApiError> {
        let maps = Agent::publish(self, endpoint, &req.specs)?;
        Ok(maps.into_iter().map(Port::from).collect())
    }

    fn unpublish(&mut self, endpoint: &str, req: &PortsRequest) -> Result<Vec<Port>, ApiError> {
        let maps = Agent::unpublish(self, endpoint, &req.specs)?;
        Ok(maps.into_iter().map(Port::from).collect())
    }

    fn ports(&self) -> Vec<PortView> {
        self.state
            .endpoints
            .values()
            .flat_map(|e| {
                e.ports.iter().map(|m| PortView {
                    endpoint: e.name.clone(),
                    port: Port::from(*m),
                })
            })
            .collect()
    }
}
