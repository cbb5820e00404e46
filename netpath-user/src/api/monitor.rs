//! What `netpath monitor` asks for (its filter) and what it is sent (one event each), with
//! the names of drop reasons and traces.

use serde::{Deserialize, Serialize};

use super::{routes, ApiError};

/// What `netpath monitor` asks for (the query of `GET /v1/monitor`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitorFilter {
    /// Only events of this endpoint.
    pub endpoint: Option<String>,
    /// Only drops for this reason (`isolation` or `drop_isolation`).
    pub reason: Option<String>,
    /// Translations too, not only drops.
    pub trace: bool,
}

impl MonitorFilter {
    /// As a query string.
    pub fn to_query(&self) -> String {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        let mut q = Vec::new();
        if let Some(e) = &self.endpoint {
            q.push(format!(
                "endpoint={}",
                utf8_percent_encode(e, NON_ALPHANUMERIC)
            ));
        }
        if let Some(r) = &self.reason {
            q.push(format!(
                "reason={}",
                utf8_percent_encode(r, NON_ALPHANUMERIC)
            ));
        }
        if self.trace {
            q.push("trace=1".into());
        }
        q.join("&")
    }

    /// The filter as the agent applies it: a reason there is none of is refused; asking for
    /// a trace's reason asks for traces.
    pub fn checked(mut self) -> Result<MonitorFilter, ApiError> {
        if let Some(r) = &self.reason {
            let r = r.strip_prefix("drop_").unwrap_or(r);
            if !monitor_reasons().contains(&r) {
                return Err(ApiError::bad_request(format!(
                    "unknown reason {:?} (known: {})",
                    routes::echo(r),
                    monitor_reasons().join(", ")
                )));
            }
            self.trace |= TRACES.iter().any(|(_, name)| *name == r);
        }
        Ok(self)
    }

    /// From a query string; unknown keys are refused.
    pub fn from_query(query: &str) -> Result<MonitorFilter, ApiError> {
        let mut f = MonitorFilter::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned();
            match k {
                "endpoint" => f.endpoint = Some(v),
                "reason" => f.reason = Some(v),
                "trace" => f.trace = v == "1" || v == "true",
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown monitor filter {:?} (known: endpoint, reason, trace)",
                        routes::echo(other)
                    )))
                }
            }
        }
        Ok(f)
    }
}

/// What the kernel traces, by name.
const TRACES: [(u8, &str); 6] = [
    (netpath_common::event::trace::DNAT, "dnat"),
    (netpath_common::event::trace::REVERSE_NAT, "reverse_nat"),
    (netpath_common::event::trace::HAIRPIN, "hairpin"),
    (netpath_common::event::trace::SNAT, "snat"),
    (netpath_common::event::trace::SNAT_REPLY, "snat_reply"),
    (netpath_common::event::trace::POLICY, "allowed"),
];

/// The name of trace `what` (an `event::trace` constant).
pub fn trace_name(what: u8) -> &'static str {
    TRACES
        .iter()
        .find(|(w, _)| *w == what)
        .map_or("trace", |(_, name)| name)
}

/// The reasons a monitor can ask for: drop reasons, then traces.
pub fn monitor_reasons() -> Vec<&'static str> {
    let drops = netpath_common::Counter::ALL
        .iter()
        .filter_map(|c| c.name().strip_prefix("drop_"));
    drops.chain(TRACES.iter().map(|(_, name)| *name)).collect()
}

/// One datapath event, as `netpath monitor` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MonitorEvent {
    /// When the agent read it (RFC 3339, UTC).
    pub time: String,
    /// `drop` or `trace`.
    pub kind: String,
    /// Why it was dropped (`isolation`, `spoof`, ...) or what was done (`dnat`, `snat`, ...).
    pub reason: String,
    /// `tcp`, `udp`, `icmp` (or the protocol number).
    pub protocol: String,
    /// As the packet came: `ADDR:PORT`.
    pub source: String,
    pub destination: String,
    /// What a translation wrote (`ADDR:PORT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translated: Option<String>,
    /// The interface it came in on (none for an uplink's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The endpoint concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The network policy that allowed a new flow (`NAMESPACE/NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}
