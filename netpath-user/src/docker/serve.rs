//! Serving the plugin on its unix socket: one HTTP request, one call.
use std::{path::PathBuf, sync::Arc};

use hyper::{body::Incoming, Request, Response, StatusCode};
use serde_json::json;
use tokio::net::UnixListener;
use tracing::warn;

use super::Plugin;
use crate::api::{
    server::{self, Body},
    Service,
};

/// The socket of plugin `name` in `dir` (dockerd looks in /run/docker/plugins).
pub fn socket_path(dir: &std::path::Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

/// Serves the plugin on `listener` until `shutdown` completes.
pub async fn serve<S: Service>(
    listener: UnixListener,
    plugin: Arc<Plugin<S>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    server::serve_connections(listener, move |req| handle(plugin.clone(), req), shutdown).await
}

async fn handle<S: Service>(
    plugin: Arc<Plugin<S>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let method = req.uri().path().trim_start_matches('/').to_string();
    // IPAM answers name their error `Error`; the network driver's, `Err`.
    let field = if method.starts_with("IpamDriver.") {
        "Error"
    } else {
        "Err"
    };
    let body = match server::read_body(req.into_body()).await {
        Ok(b) => b,
        Err(e) => {
            return Ok(server::json_response(
                StatusCode::OK,
                json!({ field: e.msg }).to_string().into_bytes(),
            ))
        }
    };
    let label = "docker plugin";
    let m = method.clone();
    let started = std::time::Instant::now();
    let res = server::run_blocking(label, move || Ok(plugin.call(&m, &body))).await;
    tracing::debug!(method = %method, took = ?started.elapsed(), "Docker's call");
    let (status, answer) = match res {
        Ok(Some(Ok(v))) => (StatusCode::OK, v),
        Ok(Some(Err(msg))) => {
            warn!(method = %method, "Docker's call refused: {msg}");
            (StatusCode::OK, json!({ field: msg }))
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            json!({ field: format!("netpath does not implement {method}") }),
        ),
        Err(e) => (StatusCode::OK, json!({ field: e.msg })),
    };
    Ok(server::json_response(
        status,
        answer.to_string().into_bytes(),
    ))
}
