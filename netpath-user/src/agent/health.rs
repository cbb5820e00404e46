//! The agent's health, as `netpath status` shows it: every hook the state needs attached and
//! running this build's program, no map nearly full; what the reconcile at start did and how
//! much drift has been repaired since.
use std::time::{Duration, SystemTime};

use super::{monitor::rfc3339, ports::port_key_target, store::StateStore, Agent};
use crate::{
    api::{
        health::{
            HealthView, HookView, MapView, PinnedMapView, ProgramView, ReconcileReport,
            ReconcileView, MAP_FULL_PERCENT,
        },
        VersionView,
    },
    datapath::{DatapathOps, DatapathStats, LinkState},
    netlink::LinkOps,
};

/// The reconcile at start, when, and how long it took.
#[derive(Clone, Debug)]
pub struct Reconciled {
    pub at: SystemTime,
    pub took: Duration,
    pub report: ReconcileReport,
}

/// How full each map is, from the datapath's counts.
pub fn maps(s: &DatapathStats) -> Vec<MapView> {
    let map = |name: &str, what: &str, entries, capacity| MapView {
        name: name.into(),
        what: what.into(),
        entries,
        capacity,
    };
    vec![
        map("FLOWS", "published-port flows", s.flows, s.flows_capacity),
        map(
            "SNAT",
            "outbound flows",
            s.outbound_flows,
            s.outbound_capacity,
        ),
        map(
            "PORTS",
            "published ports",
            s.published_ports,
            s.ports_capacity,
        ),
        map(
            "ENDPOINTS",
            "endpoint interfaces",
            s.endpoints,
            s.endpoints_capacity,
        ),
        map("NETWORKS", "networks", s.networks, s.networks_capacity),
    ]
}

/// Each hook as it is: every one the state wants (attached or not), then every pinned one
/// it does not.
fn hooks(wanted: &[crate::datapath::Hook], links: &[LinkState]) -> Vec<HookView> {
    let view = |hook: &crate::datapath::Hook, link: Option<&LinkState>, wanted| HookView {
        hook: hook.pin_name(),
        program: hook.program().into(),
        wanted,
        attached: link.is_some_and(|l| l.alive),
        current: link.is_some_and(|l| l.current),
        link_id: link.map_or(0, |l| l.link_id),
        program_id: link.map_or(0, |l| l.prog_id),
    };
    let mut out: Vec<HookView> = wanted
        .iter()
        .map(|h| view(h, links.iter().find(|l| &l.hook == h), true))
        .collect();
    out.extend(
        links
            .iter()
            .filter(|l| !wanted.contains(&l.hook))
            .map(|l| view(&l.hook, Some(l), false)),
    );
    out
}

/// What is wrong, one line each: the datapath is not what the agent made it.
fn problems(hooks: &[HookView], pinned: &[PinnedMapView]) -> Vec<String> {
    let mut out = Vec::new();
    for h in hooks {
        if !h.wanted {
            out.push(format!("hook {} is attached but nothing needs it", h.hook));
        } else if !h.attached {
            out.push(format!("hook {} is not attached", h.hook));
        } else if !h.current {
            out.push(format!(
                "hook {} runs program id {}, not this agent's {}",
                h.hook, h.program_id, h.program
            ));
        }
    }
    for m in pinned.iter().filter(|m| m.set_aside) {
        out.push(format!(
            "map {} is set aside for a layout change, but an older build may still use it",
            m.name
        ));
    }
    out
}

/// What to watch, one line each: pressure, not failure. Traffic from outside can fill the flow
/// tables (they are LRU: the oldest flows give way), so a full map must not make a liveness
/// probe restart a healthy agent; it is a warning here and a metric.
fn warnings(maps: &[MapView]) -> Vec<String> {
    maps.iter()
        .filter(|m| m.percent() >= MAP_FULL_PERCENT)
        .map(|m| {
            format!(
                "map {} ({}) is {}% full: {} of {}",
                m.name,
                m.what,
                m.percent(),
                m.entries,
                m.capacity
            )
        })
        .collect()
}

impl<D: DatapathOps, L: LinkOps, S: StateStore> Agent<D, L, S> {
    /// Where the maps do not hold what the state says, one line each: published ports missing,
    /// extra or going elsewhere, and endpoint interfaces or networks the maps count otherwise
    /// (what a second writer of the maps, or a tool, would leave).
    fn map_drift(&self, stats: &DatapathStats) -> Vec<String> {
        let mut want = std::collections::HashMap::new();
        let mut interfaces = 0;
        for ep in self.state.endpoints.values() {
            interfaces += ep
                .attachments
                .iter()
                .filter(|a| self.links.contains_key(&a.host_ifname))
                .count();
            let Some(att) = ep.primary() else { continue };
            let Some(link) = self.links.get(&att.host_ifname) else {
                continue;
            };
            for m in &ep.ports {
                // The entry the agent writes, its stats slot aside.
                let Some((key, t)) = port_key_target(att, link, m, 0) else {
                    continue;
                };
                want.insert(
                    (key.addr, key.port, key.proto),
                    (*m, (t.addr, t.port, t.ifindex)),
                );
            }
        }
        let have: std::collections::HashMap<_, _> = self
            .dp
            .published_in_maps()
            .into_iter()
            .map(|(k, t)| ((k.addr, k.port, k.proto), (t.addr, t.port, t.ifindex)))
            .collect();
        let mut out = Vec::new();
        let mut say = |what: &str, list: Vec<String>| {
            if !list.is_empty() {
                let n = list.len();
                let shown: Vec<String> = list.into_iter().take(3).collect();
                out.push(format!(
                    "{n} published port(s) {what} (the maps differ from the state): {}",
                    shown.join(", ")
                ));
            }
        };
        say(
            "missing from the datapath",
            want.iter()
                .filter(|(k, _)| !have.contains_key(*k))
                .map(|(_, (m, _))| m.to_string())
                .collect(),
        );
        say(
            "going elsewhere than the state says",
            want.iter()
                .filter(|(k, (_, to))| have.get(*k).is_some_and(|h| h != to))
                .map(|(_, (m, _))| m.to_string())
                .collect(),
        );
        say(
            "in the datapath that the state does not have",
            have.keys()
                .filter(|k| !want.contains_key(*k))
                .map(|(a, p, proto)| {
                    let host =
                        std::net::SocketAddr::new(crate::datapath::addr_of(*a), u16::from_be(*p));
                    format!("{host}/{proto}")
                })
                .collect(),
        );
        if stats.endpoints != interfaces {
            out.push(format!(
                "the datapath has {} endpoint interface(s), the state {interfaces}",
                stats.endpoints
            ));
        }
        if stats.networks != self.state.networks.len() {
            out.push(format!(
                "the datapath has {} network(s), the state {}",
                stats.networks,
                self.state.networks.len()
            ));
        }
        out
    }

    /// The agent's health; `monitors` listen now.
    pub fn health(&self, monitors: usize) -> HealthView {
        self.health_of(&self.dp.stats(), monitors)
    }

    /// The agent's health with the datapath's `stats` as read.
    pub fn health_of(&self, stats: &DatapathStats, monitors: usize) -> HealthView {
        let hooks = hooks(&self.hooks().all(), &self.dp.links());
        let maps = maps(stats);
        let pinned: Vec<PinnedMapView> = self
            .dp
            .pinned_maps()
            .into_iter()
            .map(|m| PinnedMapView {
                name: m.name,
                id: m.id,
                capacity: m.capacity,
                set_aside: m.set_aside,
            })
            .collect();
        let mut problems = problems(&hooks, &pinned);
        problems.extend(self.map_drift(stats));
        let warnings = warnings(&maps);
        let version = VersionView::current();
        HealthView {
            healthy: problems.is_empty(),
            problems,
            warnings,
            version: version.version,
            git_commit: version.git_commit,
            ebpf_sha256: version.ebpf_sha256,
            started: rfc3339(self.started),
            networks: self.state.networks.len(),
            endpoints: self.state.endpoints.len(),
            hooks,
            programs: self
                .dp
                .programs()
                .into_iter()
                .map(|(name, p)| ProgramView {
                    name: name.into(),
                    id: p.id,
                    tag: p.tag,
                })
                .collect(),
            maps,
            pinned_maps: pinned,
            last_reconcile: self.last_reconcile.as_ref().map(|r| ReconcileView {
                at: rfc3339(r.at),
                seconds: r.took.as_secs_f64(),
                report: r.report.clone(),
            }),
            repairs: self.repairs,
            last_repair: self.last_repair.map(rfc3339),
            monitors,
            dns: Vec::new(),
            cluster: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::Hook;

    fn link(hook: Hook, alive: bool, current: bool) -> LinkState {
        LinkState {
            hook,
            link_id: 7,
            prog_id: 9,
            alive,
            current,
        }
    }

    #[test]
    fn every_wanted_hook_is_shown_and_what_is_wrong_said() {
        let tc = Hook::UplinkTc("eth0".into());
        let ep = Hook::Endpoint("np1".into());
        let old = Hook::Endpoint("np2".into());
        let gone = Hook::Endpoint("np3".into());
        let wanted = [tc.clone(), ep.clone(), gone.clone()];
        let links = [
            link(tc, true, true),
            link(ep, true, false),
            link(old, true, true),
        ];
        let hooks = hooks(&wanted, &links);
        let shown: Vec<_> = hooks
            .iter()
            .map(|h| (h.hook.as_str(), h.wanted, h.attached, h.current))
            .collect();
        assert_eq!(
            shown,
            [
                ("uplink-tc@eth0", true, true, true),
                ("endpoint@np1", true, true, false),
                ("endpoint@np3", true, false, false),
                ("endpoint@np2", false, true, true),
            ]
        );
        let maps = vec![
            MapView {
                name: "FLOWS".into(),
                what: "published-port flows".into(),
                entries: 95,
                capacity: 100,
            },
            MapView {
                name: "PORTS".into(),
                what: "published ports".into(),
                entries: 89,
                capacity: 100,
            },
        ];
        let pinned = [PinnedMapView {
            name: "FLOWS@old".into(),
            id: 3,
            capacity: 100,
            set_aside: true,
        }];
        assert_eq!(
            problems(&hooks, &pinned),
            [
                "hook endpoint@np1 runs program id 9, not this agent's netpath_endpoint_tc",
                "hook endpoint@np3 is not attached",
                "hook endpoint@np2 is attached but nothing needs it",
                "map FLOWS@old is set aside for a layout change, but an older build may still use it",
            ]
        );
        // A full flow table is pressure (outside traffic can cause it), not a failure.
        assert_eq!(
            warnings(&maps),
            ["map FLOWS (published-port flows) is 95% full: 95 of 100"]
        );
    }
}
