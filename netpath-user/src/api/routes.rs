//! Every route of the API, defined once: the server parses requests with it and the client
//! builds them with it, so the two cannot disagree.
//!
//! A route's path may hold one name (`{name}`: a network or an endpoint). The client
//! percent-encodes it; the server decodes it and accepts only a valid name, so a name like
//! `c?x=1` or `../networks/n4` is refused as a name, never reinterpreted as a path or query.
use hyper::Method;
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};

use super::ApiError;
use crate::model::{valid_name, ModelError};

macro_rules! routes {
    ($($(#[doc = $doc:literal])* $kind:ident: $method:ident $path:literal;)*) => {
        /// What a request does.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum RouteKind {
            $($(#[doc = $doc])* $kind,)*
        }

        impl RouteKind {
            /// Every route.
            pub const ALL: &'static [RouteKind] = &[$(RouteKind::$kind,)*];

            pub fn method(self) -> Method {
                match self {
                    $(RouteKind::$kind => Method::$method,)*
                }
            }

            /// The path, `{name}` standing for the name it carries.
            pub fn template(self) -> &'static str {
                match self {
                    $(RouteKind::$kind => $path,)*
                }
            }

            /// A short label (metrics, logs).
            pub fn label(self) -> &'static str {
                match self {
                    $(RouteKind::$kind => stringify!($kind),)*
                }
            }
        }
    };
}

routes! {
    /// `VersionView`.
    Version: GET "/v1/version";
    /// `StatsView`.
    Stats: GET "/v1/stats";
    /// `HealthView`.
    Health: GET "/v1/health";
    /// `[NetworkView]`.
    NetworkList: GET "/v1/networks";
    /// `NetworkCreate` → `NetworkView`.
    NetworkCreate: POST "/v1/networks";
    /// `NetworkView`.
    NetworkInspect: GET "/v1/networks/{name}";
    /// `{}`.
    NetworkRemove: DELETE "/v1/networks/{name}";
    /// `Connect` → `EndpointView`.
    NetworkConnect: POST "/v1/networks/{name}/connect";
    /// `Disconnect` → `EndpointView`.
    NetworkDisconnect: POST "/v1/networks/{name}/disconnect";
    /// `[EndpointView]`.
    EndpointList: GET "/v1/endpoints";
    /// `EndpointCreate` → `EndpointView`.
    EndpointCreate: POST "/v1/endpoints";
    /// `EndpointView`.
    EndpointInspect: GET "/v1/endpoints/{name}";
    /// `{}`.
    EndpointRemove: DELETE "/v1/endpoints/{name}";
    /// → `[String]`: endpoints removed because their namespace is gone.
    EndpointPrune: POST "/v1/endpoints/prune";
    /// `PortsRequest` → `[Port]` added.
    Publish: POST "/v1/endpoints/{name}/publish";
    /// `PortsRequest` → `[Port]` removed.
    Unpublish: POST "/v1/endpoints/{name}/unpublish";
    /// `[PortView]`.
    PortList: GET "/v1/ports";
    /// `ClusterView`: the nodes this node knows through etcd.
    NodeList: GET "/v1/nodes";
    /// `FirewallView`.
    Firewall: GET "/v1/firewall";
    /// `FirewallView` → `FirewallView`: the list replaced.
    FirewallSet: PUT "/v1/firewall";
    /// `[PolicyView]`.
    PolicyList: GET "/v1/policies";
    /// `PolicyApply` → `[String]`: what each manifest did.
    PolicyApply: POST "/v1/policies";
    /// `PolicyRemove` → `{}`.
    PolicyRemove: POST "/v1/policies/remove";
    /// `PolicyCheck` → `CheckView`.
    PolicyCheck: POST "/v1/policies/check";
    /// `LabelsUpdate` → `EndpointView`.
    EndpointLabels: POST "/v1/endpoints/{name}/labels";
    /// A stream of `MonitorEvent`s, one JSON object per line; query: `MonitorFilter`.
    Monitor: GET "/v1/monitor";
}

/// One request's route: what it does, and the name it carries (if its path has one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub kind: RouteKind,
    pub name: String,
    /// `?force=true`: remove what an engine (dockerd) owns anyway.
    pub force: bool,
}

pub use crate::model::{echo, ECHO_MAX};

impl Route {
    /// A route without a name.
    pub fn new(kind: RouteKind) -> Route {
        Route {
            kind,
            name: String::new(),
            force: false,
        }
    }

    /// A route carrying `name`.
    pub fn named(kind: RouteKind, name: &str) -> Route {
        Route {
            kind,
            name: name.to_string(),
            force: false,
        }
    }

    /// The same route with `force` set.
    pub fn forced(mut self, force: bool) -> Route {
        self.force = force;
        self
    }

    /// The request path, the name percent-encoded.
    pub fn path(&self) -> String {
        let name = utf8_percent_encode(&self.name, NON_ALPHANUMERIC).to_string();
        let path = self.kind.template().replace("{name}", &name);
        if self.force {
            path + "?force=true"
        } else {
            path
        }
    }

    /// The route of a request. Unknown paths are 404, a known path with another method 405,
    /// a name that is not a valid name 400.
    pub fn parse(method: &Method, path: &str) -> Result<Route, ApiError> {
        let segments: Vec<&str> = path.split('/').collect();
        let mut known_path = false;
        for kind in RouteKind::ALL {
            let template: Vec<&str> = kind.template().split('/').collect();
            if template.len() != segments.len() {
                continue;
            }
            let mut name = None;
            let fits = template.iter().zip(&segments).all(|(t, s)| {
                if *t == "{name}" {
                    name = Some(*s);
                    true
                } else {
                    t == s
                }
            });
            if !fits {
                continue;
            }
            known_path = true;
            if kind.method() != method {
                continue;
            }
            let name = match name {
                Some(raw) => {
                    let decoded = percent_decode_str(raw).decode_utf8().map_err(|_| {
                        ApiError::bad_request(format!("invalid name {:?}", echo(raw)))
                    })?;
                    if !valid_name(&decoded) {
                        return Err(ApiError::bad_request(
                            ModelError::BadName(echo(&decoded)).to_string(),
                        ));
                    }
                    decoded.into_owned()
                }
                None => String::new(),
            };
            return Ok(Route {
                kind: *kind,
                name,
                force: false,
            });
        }
        let path = echo(path);
        if known_path {
            Err(ApiError::new(
                hyper::StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} not allowed on {path}"),
            ))
        } else {
            Err(ApiError::new(
                hyper::StatusCode::NOT_FOUND,
                format!("no such API path: {method} {path}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use hyper::StatusCode;

    use super::*;

    #[test]
    fn every_route_parses_what_it_builds() {
        for kind in RouteKind::ALL {
            let route = if kind.template().contains("{name}") {
                Route::named(*kind, "web-1.a_b")
            } else {
                Route::new(*kind)
            };
            assert_eq!(Route::parse(&kind.method(), &route.path()), Ok(route));
        }
    }

    #[test]
    fn names_travel_encoded_and_bad_names_are_refused() {
        for bad in ["c?x=1", "../networks/n4", "a/b", ".hidden", "x#y", "é"] {
            let route = Route::named(RouteKind::NetworkInspect, bad);
            let path = route.path();
            assert!(
                !path.contains('?') && path.matches('/').count() == 3,
                "{path}"
            );
            let err = Route::parse(&Method::GET, &path).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}: {err}");
            assert!(err.msg.starts_with("invalid name"), "{err}");
        }
        // Raw, unencoded: a path that is no route, never another route.
        let err = Route::parse(&Method::GET, "/v1/networks/../networks/n4").unwrap_err();
        assert_eq!(err.status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn unknown_paths_and_methods() {
        assert_eq!(
            Route::parse(&Method::GET, "/v1/nope").unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            Route::parse(&Method::PUT, "/v1/networks")
                .unwrap_err()
                .status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        let long = "x".repeat(10_000);
        let err = Route::parse(&Method::GET, &format!("/v1/{long}")).unwrap_err();
        assert!(err.msg.len() < 200, "{}", err.msg.len());
    }
}
