//! How the API answers, counted as it answers: requests by route and status, and how long
//! they took ([`super::metrics`] registers them).
use std::time::Duration;

use hyper::StatusCode;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

type Seconds = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn api_buckets() -> Histogram {
    // 100 µs to about 3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

/// How the API answers: requests by route and status, and how long they took.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    seconds: Seconds,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests: Family::default(),
            seconds: Family::new_with_constructor(api_buckets),
        }
    }
}

impl ApiMetrics {
    pub fn observe(&self, route: &'static str, status: StatusCode, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                code: status.as_u16(),
            })
            .inc();
        self.seconds
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
    }

    /// Registers the API's figures in `r` (the same counters this keeps counting).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "netpath_api_requests",
            "API requests answered, by route and HTTP status",
            self.requests.clone(),
        );
        r.register(
            "netpath_api_request_duration_seconds",
            "How long the API took to answer, by route",
            self.seconds.clone(),
        );
    }
}
