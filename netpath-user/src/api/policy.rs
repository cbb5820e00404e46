//! The API's policy routes: the published ports' firewall, network policies and namespaces,
//! endpoints' labels, and `policy check`. A part of [`super::Service`] of its own, with
//! defaults for services that have no policy (tests).
use serde::{Deserialize, Serialize};

use super::{ApiError, EndpointView};
use crate::{model::Labels, policy::PublishedFrom};

/// The published ports' firewall (`firewall`): the clients published ports answer (empty:
/// everyone), and, answering a change, how many flows of clients it no longer lets in went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FirewallView {
    pub published_from: PublishedFrom,
    #[serde(default)]
    pub flows_removed: usize,
}

impl From<PublishedFrom> for FirewallView {
    fn from(published_from: PublishedFrom) -> Self {
        FirewallView {
            published_from,
            flows_removed: 0,
        }
    }
}

/// A network policy as `policy ls` and `policy inspect` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyView {
    pub namespace: String,
    pub name: String,
    /// The directions it governs: `Ingress`, `Egress`.
    pub policy_types: Vec<String>,
    /// The endpoints of this node it selects.
    pub selected: Vec<String>,
    /// The manifest as applied.
    pub manifest: serde_json::Value,
}

/// `policy apply`: the text of a file of manifests.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyApply {
    pub manifests: String,
}

/// `policy rm`: names of one namespace.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyRemove {
    pub namespace: String,
    pub names: Vec<String>,
}

/// `endpoint update`: labels set and labels removed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LabelsUpdate {
    #[serde(default)]
    pub set: Labels,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `policy check FROM TO PORT[/PROTO]`: endpoints by name, or addresses.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyCheck {
    pub from: String,
    pub to: String,
    pub port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
}

/// One side's part in a verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckSide {
    /// The endpoint on this side, if it is one.
    pub endpoint: Option<String>,
    /// The policies that select it in this direction (`NAMESPACE/NAME`).
    pub selected_by: Vec<String>,
    /// The policy whose rule allows the flow, when one does.
    pub allowed_by: Option<String>,
    /// `open` (no policy selects it), `allowed`, `denied`, or `host` (always allowed).
    pub verdict: String,
}

/// What `policy check` found: the source's egress and the destination's ingress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckView {
    pub egress: CheckSide,
    pub ingress: CheckSide,
    pub allowed: bool,
}

fn not_served<T>() -> Result<T, ApiError> {
    Err(ApiError::internal("this agent has no policy"))
}

/// The policy routes of a [`super::Service`].
pub trait PolicyService {
    fn firewall(&self) -> FirewallView {
        FirewallView::default()
    }
    fn set_firewall(&self, _req: &FirewallView) -> Result<FirewallView, ApiError> {
        not_served()
    }
    fn policies(&self) -> Vec<PolicyView> {
        Vec::new()
    }
    /// What each manifest did, as kubectl says it.
    fn apply_policies(&self, _req: &PolicyApply) -> Result<Vec<String>, ApiError> {
        not_served()
    }
    fn remove_policies(&self, _req: &PolicyRemove) -> Result<(), ApiError> {
        not_served()
    }
    fn check_policy(&self, _req: &PolicyCheck) -> Result<CheckView, ApiError> {
        not_served()
    }
    fn update_labels(
        &self,
        _endpoint: &str,
        _req: &LabelsUpdate,
    ) -> Result<EndpointView, ApiError> {
        not_served()
    }
}
