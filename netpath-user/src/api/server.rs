//! The API server: HTTP/1 on the agent's unix socket. Each request is read (at most
//! [`MAX_BODY`] bytes), routed ([`super::routes`]) and handed to the [`Service`] on a blocking
//! thread. A request that panics answers 500 and leaves the agent serving: the lock does not
//! poison and the panic is logged.
use std::{
    convert::Infallible,
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::{body::Incoming, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;
use tracing::{debug, error, info, warn};

use super::{
    dispatch::dispatch,
    routes::{Route, RouteKind},
    ApiError, ErrorBody, MonitorEvent, MonitorFilter, Service,
};

/// The largest request body the agent reads.
pub const MAX_BODY: usize = 1 << 20;
/// Connections served at once; more wait to be accepted. Each is closed once answered (no
/// keep-alive) or when it misses a deadline, so idle or slow clients hold a place for seconds
/// at most and the next well-behaved client waits no longer than that.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a connection may take to send a request's headers (a local client sends them at
/// once).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a request may take to send its body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// What a server accepts connections from: the API's unix socket, the metrics' TCP port.
pub trait Listener: Send + 'static {
    type Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    fn next_connection(&self) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

impl Listener for UnixListener {
    type Io = tokio::net::UnixStream;
    async fn next_connection(&self) -> std::io::Result<Self::Io> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn next_connection(&self) -> std::io::Result<Self::Io> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// A response body: whole, or streamed (the monitor).
pub type Body = BoxBody<Bytes, Infallible>;

/// Serves `service` on `listener` until `shutdown` completes.
pub async fn serve<S: Service>(
    listener: UnixListener,
    service: Arc<S>,
    shutdown: impl Future<Output = ()>,
) {
    serve_connections(listener, move |req| handle(service.clone(), req), shutdown).await
}

/// Answers HTTP/1 requests on `listener` with `handler` until `shutdown` completes: at most
/// [`MAX_CONNECTIONS`] at once, each given [`HEADER_TIMEOUT`] to send its headers.
pub async fn serve_connections<L, H, F>(listener: L, handler: H, shutdown: impl Future<Output = ()>)
where
    L: Listener,
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    tokio::pin!(shutdown);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            () = &mut shutdown => return,
        };
        let conn = tokio::select! {
            conn = listener.next_connection() => conn,
            () = &mut shutdown => return,
        };
        let stream = match conn {
            Ok(stream) => {
                backoff = Duration::from_millis(10);
                stream
            }
            Err(e) => {
                // Out of file descriptors, say: wait before trying again instead of spinning.
                warn!("accepting a connection: {e} (retrying in {backoff:?})");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handler))
                .await
            {
                debug!("connection: {e}");
            }
        });
    }
}

/// Answers one API request, and tells the service how it went (its metrics).
async fn handle<S: Service>(
    service: Arc<S>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = std::time::Instant::now();
    let (route, resp) = respond(&service, req).await;
    service.observe(route, resp.status(), started.elapsed());
    Ok(resp)
}

/// The answer to one API request, and its route's label (`unknown` when none matched).
async fn respond<S: Service>(
    service: &Arc<S>,
    req: Request<Incoming>,
) -> (&'static str, Response<Body>) {
    let method = req.method().clone();
    let route = match Route::parse(&method, req.uri().path()) {
        Ok(r) => r.forced(
            req.uri()
                .query()
                .unwrap_or("")
                .split('&')
                .any(|kv| kv == "force=true" || kv == "force=1"),
        ),
        Err(e) => return ("unknown", error_response(&e)),
    };
    let kind = route.kind;
    if kind == RouteKind::Monitor {
        let filter = match MonitorFilter::from_query(req.uri().query().unwrap_or("")) {
            Ok(f) => f,
            Err(e) => return (kind.label(), error_response(&e)),
        };
        return (
            kind.label(),
            match service.monitor(filter) {
                Ok(rx) => stream_response(rx),
                Err(e) => error_response(&e),
            },
        );
    }
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(e) => return (kind.label(), error_response(&e)),
    };
    let service = service.clone();
    let res = run_blocking(kind.label(), move || dispatch(&*service, &route, &body)).await;
    let resp = match res {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => {
            if e.status.is_server_error() {
                error!(route = kind.label(), "{}", e.msg);
            } else {
                info!(
                    route = kind.label(),
                    status = e.status.as_u16(),
                    "refused: {}",
                    e.msg
                );
            }
            error_response(&e)
        }
    };
    (kind.label(), resp)
}

/// A request's body, at most [`MAX_BODY`] bytes.
pub async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    let Ok(read) = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await
    else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body not sent within {}s", BODY_TIMEOUT.as_secs()),
        ));
    };
    match read {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {MAX_BODY} bytes"),
        )),
        Err(e) => Err(ApiError::bad_request(format!("reading request: {e}"))),
    }
}

/// Runs `f` (a request's work) on a blocking thread; a panic is logged and answered as an
/// internal error, leaving the agent serving.
pub async fn run_blocking<T: Send + 'static>(
    label: &'static str,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || {
        catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            error!(route = label, "request panicked: {what}");
            Err(ApiError::internal(
                "internal error: the agent hit a bug handling this request (see its log)",
            ))
        })
    })
    .await
    .unwrap_or_else(|e| Err(ApiError::internal(e)))
}

/// Streams `rx` as JSON lines until the client goes.
fn stream_response(rx: tokio::sync::mpsc::Receiver<MonitorEvent>) -> Response<Body> {
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        let e = rx.recv().await?;
        let mut line = serde_json::to_vec(&e).unwrap_or_default();
        line.push(b'\n');
        Some((
            Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(line))),
            rx,
        ))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(lines)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(e: &ApiError) -> Response<Body> {
    let body = serde_json::to_vec(&ErrorBody {
        message: e.msg.clone(),
    })
    .unwrap_or_default();
    json_response(e.status, body)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::serve;
    use crate::{
        api::{
            client::{Client, ClientError},
            ApiError, EndpointView, NetworkView, Port, PortView, Service, StatsView, VersionView,
        },
        model::{Connect, Disconnect, EndpointCreate, NetworkCreate, PortsRequest},
    };

    /// Answers `version`, panics on everything else.
    struct Buggy;

    impl super::super::PolicyService for Buggy {}

    impl Service for Buggy {
        fn version(&self) -> VersionView {
            VersionView::current()
        }
        fn stats(&self) -> StatsView {
            panic!("a bug")
        }
        fn networks(&self) -> Vec<NetworkView> {
            panic!("a bug")
        }
        fn network(&self, _: &str) -> Result<NetworkView, ApiError> {
            panic!("a bug")
        }
        fn create_network(&self, _: &NetworkCreate) -> Result<NetworkView, ApiError> {
            panic!("a bug")
        }
        fn remove_network(&self, _: &str) -> Result<(), ApiError> {
            panic!("a bug")
        }
        fn connect(&self, _: &str, _: &Connect) -> Result<EndpointView, ApiError> {
            panic!("a bug")
        }
        fn disconnect(&self, _: &str, _: &Disconnect) -> Result<EndpointView, ApiError> {
            panic!("a bug")
        }
        fn endpoints(&self) -> Vec<EndpointView> {
            panic!("a bug")
        }
        fn endpoint(&self, _: &str) -> Result<EndpointView, ApiError> {
            panic!("a bug")
        }
        fn create_endpoint(&self, _: &EndpointCreate) -> Result<EndpointView, ApiError> {
            panic!("a bug")
        }
        fn remove_endpoint(&self, _: &str) -> Result<(), ApiError> {
            panic!("a bug")
        }
        fn prune(&self) -> Result<Vec<String>, ApiError> {
            panic!("a bug")
        }
        fn publish(&self, _: &str, _: &PortsRequest) -> Result<Vec<Port>, ApiError> {
            panic!("a bug")
        }
        fn unpublish(&self, _: &str, _: &PortsRequest) -> Result<Vec<Port>, ApiError> {
            panic!("a bug")
        }
        fn ports(&self) -> Vec<PortView> {
            panic!("a bug")
        }
        fn health(&self) -> crate::api::health::HealthView {
            panic!("a bug")
        }
        fn monitor(
            &self,
            _: crate::api::MonitorFilter,
        ) -> Result<tokio::sync::mpsc::Receiver<crate::api::MonitorEvent>, ApiError> {
            panic!("a bug")
        }
    }

    #[test]
    fn a_panicking_request_answers_500_and_the_agent_keeps_serving() {
        let dir = crate::scratch::ScratchDir::new("server");
        let socket = dir.join("api.sock");
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let listener = tokio::net::UnixListener::bind(&socket).unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(serve(listener, Arc::new(Buggy), async {
                let _ = stopped.await; // stop sent, or the test ended: either way stop
            }));
            let client = Client::new(&socket);
            for _ in 0..3 {
                match client.networks().await {
                    Err(ClientError::Refused(m)) => assert!(m.starts_with("internal error"), "{m}"),
                    other => panic!("{other:?}"),
                }
                assert_eq!(client.version().await.unwrap(), VersionView::current());
            }
            // A body over the cap is refused before anything reads it whole.
            let big = NetworkCreate {
                name: "x".repeat(super::MAX_BODY + 1),
                ..Default::default()
            };
            match client.create_network(&big).await {
                Err(ClientError::Refused(m)) => assert!(m.contains("over"), "{m}"),
                other => panic!("{other:?}"),
            }
            // Docker's endpoints skip the namespace checks: only the agent's own plugin may
            // make them, never a client of the API (the service is not even asked).
            let docker = EndpointCreate {
                name: "x".into(),
                engine: Some(crate::model::Engine {
                    kind: crate::model::EngineKind::Docker,
                    id: "x".into(),
                }),
                ..Default::default()
            };
            match client.create_endpoint(&docker).await {
                Err(ClientError::Refused(m)) => assert!(m.contains("reserved"), "{m}"),
                other => panic!("{other:?}"),
            }
            let _ = stop.send(()); // the server may have stopped already
            server.await.unwrap();
        });
    }
}
