//! Where netpath's programs run ([`Hook`]: an uplink's XDP or TC, an endpoint's veth, the
//! overlay device, a socket hook on the cgroup) and each hook's pin name under `links/`.
use std::{fmt, path::PathBuf};

use super::{programs, XdpMode};

/// A place one of netpath's programs runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// TC ingress (TCX) of an uplink.
    UplinkTc(String),
    /// XDP on an uplink, in a mode.
    UplinkXdp(String, XdpMode),
    /// TC ingress (TCX) of an endpoint's host-side veth.
    Endpoint(String),
    /// TC ingress (TCX) of the VXLAN device of overlay networks.
    Overlay(String),
    /// A cgroup socket hook (one per program of [`programs::SOCK`]).
    Sock(&'static str),
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hook::UplinkTc(i) => write!(f, "TC ingress of uplink {i}"),
            Hook::UplinkXdp(i, m) => write!(f, "XDP ({m:?}) of uplink {i}"),
            Hook::Endpoint(i) => write!(f, "TC ingress of endpoint veth {i}"),
            Hook::Overlay(i) => write!(f, "TC ingress of VXLAN device {i}"),
            Hook::Sock(p) => write!(f, "cgroup hook {p}"),
        }
    }
}

/// bpffs reserves dots in names: an interface name (`eth0.100`) is written with `.` as
/// `%2e` and `%` as `%25`.
fn encode(name: &str) -> String {
    name.replace('%', "%25").replace('.', "%2e")
}

fn decode(name: &str) -> String {
    name.replace("%2e", ".").replace("%25", "%")
}

impl Hook {
    /// The file name of its pin under `BPFFS/links/` (`KIND@WHERE`).
    pub fn pin_name(&self) -> String {
        match self {
            Hook::UplinkTc(i) => format!("uplink-tc@{}", encode(i)),
            Hook::UplinkXdp(i, XdpMode::Generic) => format!("uplink-xdp-generic@{}", encode(i)),
            Hook::UplinkXdp(i, _) => format!("uplink-xdp-native@{}", encode(i)),
            Hook::Endpoint(i) => format!("endpoint@{}", encode(i)),
            Hook::Overlay(i) => format!("overlay@{}", encode(i)),
            Hook::Sock(p) => format!("sock@{p}"),
        }
    }

    /// The hook a pin file names.
    pub fn from_pin_name(name: &str) -> Option<Hook> {
        let (kind, rest) = name.split_once('@')?;
        let rest = decode(rest);
        Some(match kind {
            "uplink-tc" => Hook::UplinkTc(rest),
            "uplink-xdp-native" => Hook::UplinkXdp(rest, XdpMode::Native),
            "uplink-xdp-generic" => Hook::UplinkXdp(rest, XdpMode::Generic),
            "endpoint" => Hook::Endpoint(rest),
            "overlay" => Hook::Overlay(rest),
            "sock" => Hook::Sock(programs::SOCK.iter().find(|p| **p == rest)?),
            _ => return None,
        })
    }

    /// The program that runs there.
    pub fn program(&self) -> &'static str {
        match self {
            Hook::UplinkTc(_) => programs::UPLINK_TC,
            Hook::UplinkXdp(..) => programs::UPLINK_XDP,
            Hook::Endpoint(_) => programs::ENDPOINT_TC,
            Hook::Overlay(_) => programs::OVERLAY_TC,
            Hook::Sock(p) => p,
        }
    }

    /// The interface it is on, if any.
    pub fn interface(&self) -> Option<&str> {
        match self {
            Hook::UplinkTc(i) | Hook::UplinkXdp(i, _) | Hook::Endpoint(i) | Hook::Overlay(i) => {
                Some(i)
            }
            Hook::Sock(_) => None,
        }
    }
}

/// Where the hooks are and what they are attached to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    pub uplinks: Vec<(String, XdpMode)>,
    pub endpoints: Vec<String>,
    /// The VXLAN device of overlay networks (a node in a cluster).
    pub overlay: Option<String>,
    /// The cgroup v2 directory of the socket hooks (none: no socket hooks).
    pub cgroup: Option<PathBuf>,
}

impl Hooks {
    /// Every hook these mean.
    pub fn all(&self) -> Vec<Hook> {
        let mut v = Vec::new();
        // An uplink runs XDP or TC, not both: XDP decides everything TC would, and a TC
        // ingress program costs the host's own packets even when it only passes them.
        for (i, mode) in &self.uplinks {
            v.push(match mode {
                XdpMode::Off => Hook::UplinkTc(i.clone()),
                m => Hook::UplinkXdp(i.clone(), *m),
            });
        }
        v.extend(self.endpoints.iter().cloned().map(Hook::Endpoint));
        v.extend(self.overlay.iter().cloned().map(Hook::Overlay));
        if self.cgroup.is_some() {
            v.extend(programs::SOCK.iter().map(|p| Hook::Sock(p)));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_names_round_trip_and_avoid_dots() {
        for hook in [
            Hook::UplinkTc("eth0.100".into()),
            Hook::UplinkXdp("en%p1".into(), XdpMode::Native),
            Hook::UplinkXdp("eth1".into(), XdpMode::Generic),
            Hook::Endpoint("np0123456789a".into()),
            Hook::Sock(programs::SOCK[2]),
        ] {
            let name = hook.pin_name();
            assert!(!name.contains('.'), "{name}");
            assert_eq!(Hook::from_pin_name(&name), Some(hook));
        }
        assert_eq!(Hook::from_pin_name("FLOWS"), None);
        assert_eq!(Hook::from_pin_name("sock@nope"), None);
    }
}
