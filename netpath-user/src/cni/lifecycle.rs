//! `DEL`, `CHECK`, `GC` and `STATUS`: a container's attachment removed, checked against the
//! agent, the endpoints the runtime no longer has collected, and whether the agent answers.

use super::{codes, from_client, Cni, CniError};
use crate::{
    api::EndpointView,
    ipam::cidr_address,
    model::{Disconnect, EngineKind},
};

impl Cni<'_> {
    pub(super) async fn del(&self) -> Result<(), CniError> {
        self.need("CNI_CONTAINERID", &self.env.container_id)?;
        let Some(ep) = self.endpoint().await? else {
            return Ok(());
        };
        let network = self.conf.network();
        if !ep.networks.contains_key(network) {
            return Ok(());
        }
        self.detach(&ep, network).await
    }

    /// Takes `ep` off `network`: the endpoint goes with its last network.
    pub(super) async fn detach(&self, ep: &EndpointView, network: &str) -> Result<(), CniError> {
        let res = if ep.networks.len() == 1 {
            self.client.remove_endpoint(&ep.name).await
        } else {
            self.client
                .disconnect(
                    network,
                    &Disconnect {
                        endpoint: ep.name.clone(),
                    },
                )
                .await
                .map(drop)
        };
        res.map_err(from_client)
    }

    pub(super) async fn check(&self) -> Result<(), CniError> {
        self.need("CNI_CONTAINERID", &self.env.container_id)?;
        let network = self.conf.network();
        let ep = self.endpoint().await?.ok_or_else(|| {
            CniError::new(
                codes::UNKNOWN_CONTAINER,
                format!(
                    "container {} has no netpath endpoint",
                    self.env.container_id
                ),
            )
        })?;
        let att = ep.networks.get(network).ok_or_else(|| {
            CniError::new(
                codes::UNKNOWN_CONTAINER,
                format!("endpoint {} is not on network {network}", ep.name),
            )
        })?;
        if !self.env.ifname.is_empty() && att.interface != self.env.ifname {
            return Err(CniError::new(
                codes::INVALID_CONFIG,
                format!(
                    "endpoint {} has {} on {network}, not {}",
                    ep.name, att.interface, self.env.ifname
                ),
            ));
        }
        if !self.env.netns.is_empty() && ep.netns.as_path() != std::path::Path::new(&self.env.netns)
        {
            return Err(CniError::new(
                codes::INVALID_CONFIG,
                format!(
                    "endpoint {} is in {}, not {}",
                    ep.name,
                    ep.netns.display(),
                    self.env.netns
                ),
            ));
        }
        // What the runtime was told must still hold.
        let told = self
            .conf
            .prev_result
            .as_ref()
            .and_then(|r| r["ips"][0]["address"].as_str())
            .map(str::to_string);
        if let Some(told) = told {
            if let Some(ip) = att
                .ip_address
                .filter(|ip| cidr_address(&told).ok().flatten() != Some(*ip))
            {
                return Err(CniError::new(
                    codes::INVALID_CONFIG,
                    format!("address is {ip}, the runtime was told {told}"),
                ));
            }
        }
        Ok(())
    }

    /// Removes the network's CNI attachments the runtime no longer knows.
    pub(super) async fn gc(&self) -> Result<(), CniError> {
        let keep = self.conf.valid_attachments.clone().unwrap_or_default();
        let network = self.conf.network();
        for ep in self.client.endpoints().await.map_err(from_client)? {
            let Some(id) = ep
                .engine
                .as_ref()
                .filter(|g| g.kind == EngineKind::Cni)
                .map(|g| g.id.clone())
            else {
                continue;
            };
            let Some(att) = ep.networks.get(network) else {
                continue;
            };
            if keep
                .iter()
                .any(|k| k.container_id == id && k.ifname == att.interface)
            {
                continue;
            }
            self.detach(&ep, network).await?;
        }
        Ok(())
    }

    pub(super) async fn status(&self) -> Result<(), CniError> {
        self.client
            .network(self.conf.network())
            .await
            .map(drop)
            .map_err(|e| CniError::new(codes::NOT_AVAILABLE, e.to_string()))
    }
}
