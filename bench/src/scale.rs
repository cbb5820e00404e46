//! Scenario `scale`: 1 port to every port a publish may use (45,535: all but the outbound
//! NAT range, which netpath keeps for outbound flows) — per-packet cost, new-flow rate, time
//! and memory to install the mappings (netpath API versus iptables rules), and one
//! 10,000-port range publish.
use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::{
    lab::{Kind, HOST},
    prog::{self, ports_label},
    report::{figures, Figure, Section, Target},
    rig::Rig,
    tools::{Tools, Traffic},
    traffic,
    turns::Turns,
    Progress,
};

/// How many host ports a publish may use: 1-65535 but the outbound NAT range.
pub const PUBLISHABLE: u32 = 65_535 - netpath_common::SNAT_PORTS;

pub fn counts(quick: bool) -> Vec<u32> {
    if quick {
        vec![1, 10_000, PUBLISHABLE]
    } else {
        vec![1, 100, 1000, 10_000, PUBLISHABLE]
    }
}

/// The first `n` ports a publish may use, as inclusive ranges.
pub fn port_ranges(n: u32) -> Vec<(u16, u16)> {
    let below = u32::from(netpath_common::SNAT_PORT_MIN) - 1;
    let above = u32::from(netpath_common::SNAT_PORT_MIN) + netpath_common::SNAT_PORTS;
    let mut out = vec![(1, n.min(below) as u16)];
    if n > below {
        out.push((above as u16, (above + n - below - 1) as u16));
    }
    out
}

/// Resident memory of a process, in MB.
pub fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("VmRSS")?
        .parse()?;
    Ok(kb / 1024.0)
}

pub struct Scale {
    pub cost: Section,
    pub rate: Section,
    pub install: Section,
}

/// How the new-flow rate's runs are laid out: a run of 2 s per turn.
pub fn turns(quick: bool) -> Turns {
    if quick {
        Turns::with(true, 0.4, 0.4)
    } else {
        Turns {
            rounds: 3,
            per_turn: 1,
            secs: 2.0,
        }
    }
}

pub fn run(quick: bool, tools: &mut Tools, p: &Progress) -> Result<Scale> {
    let counts = counts(quick);
    p.step("scale: per-packet cost");
    let cost = prog::cost_vs_ports(quick, &counts)?;
    p.inc();
    let turns = turns(quick);
    let variants: Vec<(Kind, u32)> = [Kind::NetpathTc, Kind::Iptables]
        .into_iter()
        .flat_map(|kind| counts.iter().map(move |&n| (kind, n)))
        .collect();
    let label = |(kind, n): (Kind, u32)| format!("{}, {}", kind.name(), ports_label(n));
    let mut rate = figures(variants.iter().map(|&v| label(v)), "Mpps", false);
    let mut install = figures(variants.iter().map(|&v| label(v)), "ms", true);
    let mut range_ms = Figure::new("10000-port range publish", "ms", true);
    let mut range_mem = Figure::new("agent memory growth, 10000 ports", "MB", true);
    let mut rate_layout = String::new();
    turns.each(&variants, |i, &(kind, n), round| {
        p.step(&format!(
            "scale: {} with {} (round {})",
            kind.name(),
            ports_label(n),
            round + 1
        ));
        let lab = Rig::with_agent_args(kind, tools, false, true, crate::traffic::NO_GUARD)?;
        rate_layout.clone_from(&lab.layout);
        let start = Instant::now();
        let mut mem = None;
        if kind == Kind::NetpathTc {
            let pid = lab.agent_pid().context("agent pid")?;
            let before = rss_mb(pid)?;
            for (a, b) in port_ranges(n) {
                lab.netpath(&["port", "publish", "bench", &format!("{a}-{b}:{a}-{b}/udp")])?;
            }
            mem = Some(rss_mb(pid)? - before);
        } else {
            let ports: Vec<(u16, u16, &str)> = port_ranges(n)
                .into_iter()
                .flat_map(|(a, b)| a..=b)
                .map(|p| (p, p, "udp"))
                .collect();
            lab.iptables_rules(&ports)?;
        }
        let took = start.elapsed().as_secs_f64() * 1e3;
        install[i].runs.push(took);
        if let Some(m) = mem.filter(|_| n == 10_000) {
            range_ms.runs.push(took);
            range_mem.runs.push(m);
        }
        // Every packet a new flow, to the port published last.
        let t = Traffic {
            dst: HOST.into(),
            dport: port_ranges(n).last().map_or(1, |r| r.1),
            src_addrs: 16_384,
            src_ports: 60_000,
        };
        traffic::measure(tools, &lab, t, turns.secs, turns.per_turn, &mut rate[i], p)
    })?;
    let np = Kind::NetpathTc.name();
    let last = counts.last().copied().unwrap_or(1);
    let rate = Section {
        scenario: "scale: new-flow rate".into(),
        about: format!("Every packet a new flow, to the port published last; netpath publishes a range through its API (its agent with the flood guard off, `--new-flows-per-cpu 0`, as in `conn`), iptables gets Docker's two rules per port. {}, each turn on a lab made afresh (its ports published again). Layout: {}.", turns.said(), rate_layout),
        figures: rate,
        baseline: format!("{np}, {}", ports_label(1)),
        targets: vec![Target::ratio(
            "new-flow rate",
            &format!("{np}, {}", ports_label(last)),
            &format!("{np}, {}", ports_label(1)),
            0.9,
        )],
        plots: Vec::new(),
    };
    install.push(range_ms);
    install.push(range_mem);
    let install = Section {
        scenario: "scale: install".into(),
        about: "Time to install the mappings: one `netpath port publish` of a range (API, maps, state file) versus one iptables-restore of Docker's rules; and the agent's resident memory growth.".into(),
        figures: install,
        baseline: format!("{np}, {}", ports_label(1)),
        targets: vec![
            Target::absolute("10,000-port range publish (ms)", "10000-port range publish", 100.0),
            Target::absolute("agent memory growth (MB)", "agent memory growth, 10000 ports", 10.0),
        ],
        plots: Vec::new(),
    };
    Ok(Scale {
        cost,
        rate,
        install,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_skip_the_outbound_nat_range() {
        assert_eq!(port_ranges(1), [(1, 1)]);
        assert_eq!(port_ranges(10_000), [(1, 10_000)]);
        assert_eq!(port_ranges(39_999), [(1, 39_999)]);
        assert_eq!(port_ranges(PUBLISHABLE), [(1, 39_999), (60_000, 65_535)]);
    }
}
