//! Routing one request to the [`Service`]: decode the body, call, encode the answer; and what
//! the API refuses on behalf of the engines that own an endpoint or a network.
use hyper::StatusCode;
use serde::{de::DeserializeOwned, Serialize};

use super::{
    routes::{Route, RouteKind},
    ApiError, Service,
};

/// Routes one request to `svc`: decode the body, call, encode the answer.
pub(super) fn dispatch<S: Service + ?Sized>(
    svc: &S,
    route: &Route,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let name = route.name.as_str();
    match route.kind {
        RouteKind::Version => to_json(&svc.version()),
        RouteKind::Stats => to_json(&svc.stats()),
        RouteKind::Health => to_json(&svc.health()),
        RouteKind::NetworkList => to_json(&svc.networks()),
        RouteKind::NetworkCreate => to_json(&svc.create_network(&parse_body(body)?)?),
        RouteKind::NetworkInspect => to_json(&svc.network(name)?),
        RouteKind::NetworkRemove => {
            if !route.force {
                if let Some(id) = svc
                    .network(name)
                    .ok()
                    .and_then(|n| n.labels.get(crate::model::DOCKER_NETWORK_LABEL).cloned())
                {
                    return Err(docker_owns(format!(
                        "network {name} is Docker's (network id {}): remove it with `docker network rm`",
                        short(&id)
                    )));
                }
            }
            svc.remove_network(name).map(|()| b"{}".to_vec())
        }
        RouteKind::NetworkConnect => to_json(&svc.connect(name, &parse_body(body)?)?),
        RouteKind::NetworkDisconnect => to_json(&svc.disconnect(name, &parse_body(body)?)?),
        RouteKind::EndpointList => to_json(&svc.endpoints()),
        RouteKind::EndpointCreate => {
            let req: crate::model::EndpointCreate = parse_body(body)?;
            // Docker's endpoints skip the namespace checks (dockerd moves the interface
            // itself): only the agent's own Docker plugin, in process, may say so.
            if req
                .engine
                .as_ref()
                .is_some_and(|e| e.kind == crate::model::EngineKind::Docker)
            {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "engine docker is reserved to the agent's Docker plugin; the API does not take it",
                ));
            }
            to_json(&svc.create_endpoint(&req)?)
        }
        RouteKind::EndpointInspect => to_json(&svc.endpoint(name)?),
        RouteKind::EndpointRemove => {
            if !route.force {
                let docker = svc
                    .endpoint(name)
                    .ok()
                    .and_then(|e| e.engine)
                    .filter(|e| e.kind == crate::model::EngineKind::Docker);
                if let Some(e) = docker {
                    return Err(docker_owns(format!(
                        "endpoint {name} is Docker's (endpoint id {}): disconnect or remove its container with docker",
                        short(&e.id)
                    )));
                }
            }
            svc.remove_endpoint(name).map(|()| b"{}".to_vec())
        }
        RouteKind::EndpointPrune => to_json(&svc.prune()?),
        RouteKind::Publish => to_json(&svc.publish(name, &parse_body(body)?)?),
        RouteKind::Unpublish => to_json(&svc.unpublish(name, &parse_body(body)?)?),
        RouteKind::PortList => to_json(&svc.ports()),
        RouteKind::NodeList => to_json(&svc.nodes()?),
        RouteKind::Firewall => to_json(&svc.firewall()),
        RouteKind::FirewallSet => to_json(&svc.set_firewall(&parse_body(body)?)?),
        RouteKind::PolicyList => to_json(&svc.policies()),
        RouteKind::PolicyApply => to_json(&svc.apply_policies(&parse_body(body)?)?),
        RouteKind::PolicyRemove => to_json(&svc.remove_policies(&parse_body(body)?)?),
        RouteKind::PolicyCheck => to_json(&svc.check_policy(&parse_body(body)?)?),
        RouteKind::EndpointLabels => to_json(&svc.update_labels(name, &parse_body(body)?)?),
        RouteKind::Monitor => Err(ApiError::bad_request("the monitor streams: ask over HTTP")),
    }
}

/// A refusal to take something from under the engine that owns it.
fn docker_owns(what: String) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!("{what}; --force removes it anyway, and Docker will still think it exists"),
    )
}

/// The first 12 characters of an id, as Docker shows them.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(v).map_err(ApiError::internal)
}
