//! Scenarios `pps`, `pps6` (the same over IPv6, beside IPv4's twins) and `conn`: a UDP flood
//! to a published port from the packet generator, counted by the sink in the endpoint's
//! namespace; and the flood of clients the
//! published ports' firewall refuses (scenario `policy`), counted by the uplink's own
//! statistics.
use std::time::Duration;

use anyhow::{bail, Result};

use crate::{
    lab::{Kind, HOST, HOST6, UDP_PORT},
    perf::busy_while,
    report::{Figure, Section, Target},
    rig::{Rig, PATH_CPU},
    tools::{Tools, Traffic},
    turns::Turns,
    Progress,
};

/// Sends a little traffic until the sink sees it (neighbours resolved, paths warm), for up
/// to five seconds (IPv6's neighbour discovery may take a retransmission's second).
pub fn warm_up(tools: &mut Tools, lab: &Rig, t: Traffic) -> Result<()> {
    let before = tools.sink_count();
    for _ in 0..250 {
        tools.generate(&lab.wire(), t, Duration::from_millis(20))?;
        if tools.settled_count() > before {
            return Ok(());
        }
    }
    bail!("{}: no packet reached the endpoint", lab.kind.name())
}

/// Runs `runs` measurements of `t` against `lab`: delivered and offered packets per second,
/// and how busy the path's CPU was.
pub fn measure(
    tools: &mut Tools,
    lab: &Rig,
    t: Traffic,
    secs: f64,
    runs: usize,
    fig: &mut Figure,
    p: &Progress,
) -> Result<()> {
    warm_up(tools, lab, t)?;
    for _ in 0..runs {
        lab.keep_cpus_apart()?;
        let before = tools.settled_count();
        let ((sent, took), busy) = busy_while(PATH_CPU, || {
            tools.generate(&lab.wire(), t, Duration::from_secs_f64(secs))
        })?;
        let delivered = tools.settled_count() - before;
        let s = took.as_secs_f64();
        fig.runs.push(delivered as f64 / s / 1e6);
        fig.offered.push(sent as f64 / s / 1e6);
        fig.busy.push(busy);
        p.inc();
    }
    Ok(())
}

/// One flood scenario: what is sent, to which variants, against which targets.
struct Flood {
    name: &'static str,
    about: &'static str,
    kinds: &'static [Kind],
    traffic: Traffic,
    targets: Vec<Target>,
    /// What the gap to the ceiling is, for a missed share of it (completed with perf's
    /// figures of this run).
    gap: &'static str,
    /// What netpath's agent is started with beside its defaults.
    agent_args: &'static [&'static str],
}

/// The agent's arguments where every packet is a new flow on purpose, to measure what the
/// path carries: the flood guard off, as iptables has none (at its default the guard would
/// let each CPU begin 50,000 a second and measure itself; `flood` measures it).
pub const NO_GUARD: &[&str] = &["--new-flows-per-cpu", "0"];

/// Variants whose share of the path's CPU perf measures (in a run of its own: sampling slows
/// the path it samples).
const PROFILED: &[Kind] = &[
    Kind::NetpathXdp,
    Kind::NetpathTc,
    Kind::Ceiling,
    Kind::CeilingTc,
];

/// The ceiling that bounds variant `kind`: an XDP path delivers through the endpoint veth's
/// queue, as XDP's redirect-only program does; an skb path (netpath's TC, the baselines'
/// rules) can do no better than an skb handed straight into the endpoint, as TC's
/// redirect-only program does (it skips that queue, so it may well beat XDP's).
fn ceiling_of(kind: Kind) -> Option<Kind> {
    match kind {
        Kind::Ceiling | Kind::CeilingTc => None,
        Kind::NetpathXdp => Some(Kind::Ceiling),
        _ => Some(Kind::CeilingTc),
    }
}

fn flood(f: Flood, quick: bool, tools: &mut Tools, p: &Progress) -> Result<Section> {
    let turns = Turns::of(quick);
    let mut figures = crate::report::figures(f.kinds.iter().map(|k| k.name()), "Mpps", false);
    let mut shares: Vec<(&str, f64)> = Vec::new();
    let mut layout = String::new();
    for round in 0..turns.rounds {
        for (kind, fig) in f.kinds.iter().zip(figures.iter_mut()) {
            p.step(&format!(
                "{}: {} (round {})",
                f.name,
                kind.name(),
                round + 1
            ));
            let lab = Rig::with_agent_args(*kind, tools, true, true, f.agent_args)?;
            layout.clone_from(&lab.layout);
            measure(tools, &lab, f.traffic, turns.secs, turns.per_turn, fig, p)?;
            if round == 0 && PROFILED.contains(kind) {
                let run = Duration::from_secs_f64(turns.secs);
                let (_, share) = crate::perf::netpath_share(crate::rig::PATH_CPU, || {
                    tools.generate(&lab.wire(), f.traffic, run)
                })?;
                shares.push((kind.name(), share));
            }
        }
    }
    let warning = below_the_ceiling(f.kinds, &figures, lenience(quick, tools))?;
    Ok(Section {
        scenario: f.name.into(),
        about: format!(
            "{} {}, each turn on a lab made afresh; 64-byte frames from the generator the layout names, counted at the endpoint's TC ingress. Layout: {layout}. {PER_PATH_CPU}{warning}",
            f.about,
            turns.said()
        ),
        figures,
        baseline: Kind::Iptables.name().into(),
        targets: explained(f.targets, &shares, f.gap)
            .into_iter()
            .map(Target::per_path_cpu)
            .collect(),
        plots: Vec::new(),
    })
}

/// A ceiling bounds the variants of its kind of path ([`ceiling_of`]): one above it means the
/// harness measures something else, and the run is worthless. Where that cannot be told from
/// noise, `lenient` says why (a quick run: two runs of 0.4 s; the AF_PACKET generator, which
/// the path throttles and which may send no faster than the fastest paths forward), and the
/// report says so (the warning returned) instead of failing. `kinds` are the figures'
/// variants, in order.
fn below_the_ceiling(kinds: &[Kind], figures: &[Figure], lenient: Option<&str>) -> Result<String> {
    let figure_of = |kind: Kind| kinds.iter().position(|k| *k == kind).map(|i| &figures[i]);
    // Above the ceiling's best run: a ceiling that read low in a run or two (a noisy
    // neighbour) is noise; one that every run of a variant's middle beats is no ceiling.
    // Per second of the path's CPU likewise (what the targets compare), against the
    // ceiling's best run of it.
    let over = kinds.iter().zip(figures).find_map(|(kind, fig)| {
        let ceiling = figure_of(ceiling_of(*kind)?)?;
        let per_cpu = fig.per_path_cpu();
        let best_per_cpu = ceiling
            .per_path_cpu_runs()
            .into_iter()
            .fold(f64::NEG_INFINITY, f64::max);
        if fig.median() > ceiling.max() {
            Some((fig, ceiling, "delivered", fig.median(), ceiling.max()))
        } else if !fig.busy.is_empty() && per_cpu > best_per_cpu {
            Some((fig, ceiling, "per path CPU-second", per_cpu, best_per_cpu))
        } else {
            None
        }
    });
    let Some((over, ceiling, how, v, c)) = over else {
        return Ok(String::new());
    };
    let what = format!(
        "{} {how} {v:.3} Mpps (median), above every run of {} (best {c:.3} Mpps)",
        over.variant, ceiling.variant,
    );
    match lenient {
        None => bail!("harness bug: {what}"),
        Some(why) => Ok(format!(" **Above the ceiling {why}: {what}.**")),
    }
}

/// Why a variant above its ceiling is not fatal here (see [`below_the_ceiling`]), if it is not.
fn lenience(quick: bool, tools: &Tools) -> Option<&'static str> {
    if quick {
        Some("in this quick run")
    } else if !tools.live_frames() {
        Some("with the AF_PACKET generator, which may send no faster than the fastest paths forward: a tie with the generator, not a bound broken")
    } else {
        None
    }
}

/// The variants of `pps6`: netpath's paths on IPv6 and, in the same run, on IPv4 (the twin
/// each IPv6 row is held to), ip6tables (Docker's rules with `--ipv6`), the ceiling.
pub const PPS6_VARIANTS: &[(Kind, bool)] = &[
    (Kind::NetpathXdp, true),
    (Kind::NetpathXdp, false),
    (Kind::NetpathTc, true),
    (Kind::NetpathTc, false),
    (Kind::Iptables, true),
    (Kind::Ceiling, true),
];

/// Scenario `pps6`: `pps` over IPv6, with IPv4's twins in the same run.
pub fn pps6(quick: bool, tools: &mut Tools, p: &Progress) -> Result<Section> {
    let turns = Turns::of(quick);
    let names = PPS6_VARIANTS
        .iter()
        .map(|&(kind, ipv6)| crate::rig::twin_name(kind, ipv6, "ip6tables"));
    let mut figures = crate::report::figures(names, "Mpps", false);
    let mut layout = String::new();
    for round in 0..turns.rounds {
        for (&(kind, ipv6), fig) in PPS6_VARIANTS.iter().zip(figures.iter_mut()) {
            p.step(&format!("pps6: {} (round {})", fig.variant, round + 1));
            let lab = Rig::of_family(kind, tools, ipv6, true)?;
            layout.clone_from(&lab.layout);
            let t = Traffic {
                dst: if ipv6 { HOST6.into() } else { HOST.into() },
                dport: UDP_PORT,
                src_addrs: 4,
                src_ports: 256,
            };
            measure(tools, &lab, t, turns.secs, turns.per_turn, fig, p)?;
        }
    }
    let kinds: Vec<Kind> = PPS6_VARIANTS.iter().map(|(k, _)| *k).collect();
    let warning = below_the_ceiling(&kinds, &figures, lenience(quick, tools))?;
    let (xdp6, tc6) = ("netpath xdp (IPv6)", "netpath tc (IPv6)");
    Ok(Section {
        scenario: "pps6".into(),
        about: format!(
            "UDP flood over IPv6 to a port published on `[::]`, from 1,024 established flows, and the same over IPv4 to netpath's paths in the same run: packets delivered into the endpoint per second. {}, each turn on a lab made afresh; 64-byte frames (IPv6's UDP checksum kept right by the generator). Layout: {layout}. {PER_PATH_CPU}{warning}",
            turns.said()
        ),
        figures,
        baseline: "ip6tables".into(),
        targets: vec![
            Target::ratio("IPv6 published-port pps, as far ahead as IPv4's", xdp6, "ip6tables", 3.0)
                .limited_by(Kind::Ceiling.name(), ABOVE_THE_CEILING),
            Target::ratio("within 10% of the IPv4 twin", xdp6, "netpath xdp (IPv4)", 0.9),
            Target::ratio("within 10% of the IPv4 twin", tc6, "netpath tc (IPv4)", 0.9),
            Target::ratio("share of the ceiling", xdp6, Kind::Ceiling.name(), 0.95),
        ]
        .into_iter()
        .map(Target::per_path_cpu)
        .collect(),
        plots: Vec::new(),
    })
}

/// How the traffic sections' targets compare rates, and why.
const PER_PATH_CPU: &str = "Targets compare each variant's rate per second of the path's CPU (delivered, divided by the share of that CPU busy in the run, /proc/stat): a path that keeps up with the generator (nothing lost, its CPU partly idle) delivers what the generator offered in its turn, not what it could carry, so rates as delivered would compare the generator's turns; a saturated path's rate per CPU-second is its rate.";

/// Why a pps target against the kernel's NAT is bounded by the redirect-only ceiling: what it
/// asks is a share of the ceiling's rate no program on this path can exceed.
const ABOVE_THE_CEILING: &str = "the uplink's veth receive on one CPU (a NAPI pass and an skb per frame) and the endpoint's delivery, which every path here pays and the redirect-only ceiling pays alone: no program on the path goes beyond it";

/// Each share-of-the-ceiling target, with what perf saw of the variant and of the ceiling.
fn explained(targets: Vec<Target>, shares: &[(&str, f64)], gap: &str) -> Vec<Target> {
    let share = |v: &str| shares.iter().find(|(k, _)| *k == v).map(|(_, s)| *s);
    targets
        .into_iter()
        .map(|t| {
            // The ceiling the target is against, with its share.
            let ceiling = t
                .baseline
                .clone()
                .filter(|b| [Kind::Ceiling.name(), Kind::CeilingTc.name()].contains(&b.as_str()))
                .and_then(|c| share(&c).map(|s| (c, s)));
            match (ceiling, share(&t.variant)) {
                (Some((c, cs)), Some(v)) => {
                    let measured = format!(
                        "perf puts {v:.0}% of the path's CPU in {}'s program and what it calls, {cs:.0}% in {c}'s",
                        t.variant
                    );
                    t.limited_as_measured(gap, measured)
                }
                _ => t,
            }
        })
        .collect()
}

pub const PPS_KINDS: &[Kind] = &[
    Kind::NetpathXdp,
    Kind::NetpathTc,
    Kind::Iptables,
    Kind::Nftables,
    Kind::Ceiling,
    Kind::CeilingTc,
];
pub const CONN_KINDS: &[Kind] = PPS_KINDS;

pub fn pps(quick: bool, tools: &mut Tools, p: &Progress) -> Result<Section> {
    let t = Traffic {
        dst: HOST.into(),
        dport: UDP_PORT,
        src_addrs: 4,
        src_ports: 256,
    };
    flood(
        Flood {
            name: "pps",
            about: "UDP flood to a published port from 1,024 established flows: packets delivered into the endpoint per second.",
            kinds: PPS_KINDS,
            traffic: t,
            targets: vec![
            Target::ratio("published-port pps", Kind::NetpathXdp.name(), Kind::Iptables.name(), 3.0)
                .limited_by(Kind::Ceiling.name(), ABOVE_THE_CEILING),
            Target::ratio("share of the ceiling", Kind::NetpathXdp.name(), Kind::Ceiling.name(), 0.95),
            Target::ratio("share of the ceiling", Kind::NetpathTc.name(), Kind::CeilingTc.name(), 0.9),
            ],
            gap: "the program's own work on every packet (parsing, the published port's slot, the rewrite; the port is published one to one, so no flow is looked up), which the ceiling does not do",
            agent_args: &[],
        },
        quick,
        tools,
        p,
    )
}

pub fn conn(quick: bool, tools: &mut Tools, p: &Progress) -> Result<Section> {
    let t = Traffic {
        dst: HOST.into(),
        dport: UDP_PORT,
        src_addrs: 16_384,
        src_ports: 60_000,
    };
    flood(
        Flood {
            name: "conn",
            about: "New flows per second: every packet comes from a new source address and port. The baselines create NAT state for each (conntrack); netpath's port is published one to one, so it keeps none until a flow replies (these never do); its agent runs with `--new-flows-per-cpu 0`, the flood guard off, to measure what the path carries (the `flood` section measures the guard).",
            kinds: CONN_KINDS,
            traffic: t,
            targets: vec![
                Target::ratio("new flows per second", Kind::NetpathXdp.name(), Kind::Iptables.name(), 1.5),
                Target::ratio("share of the ceiling", Kind::NetpathXdp.name(), Kind::Ceiling.name(), 0.9),
                Target::ratio("share of the ceiling", Kind::NetpathTc.name(), Kind::CeilingTc.name(), 0.8),
            ],
            gap: "the program's own work on every packet (parsing, the published port's slot, the rewrite), which the ceiling does not do",
            agent_args: NO_GUARD,
        },
        quick,
        tools,
        p,
    )
}

/// XDP drops on `lab`'s uplink as its driver counts them (`ethtool -S`: every receive
/// queue's `xdp_drops`), not as netpath does.
fn xdp_drops(lab: &Rig) -> Result<u64> {
    let out = lab.host.exec("ethtool", &["-S", &lab.up_if]);
    let counts: Vec<u64> = out
        .lines()
        .filter_map(|l| l.trim().split_once(':'))
        .filter(|(k, _)| k.starts_with("rx_queue_") && k.ends_with("_xdp_drops"))
        .filter_map(|(_, v)| v.trim().parse().ok())
        .collect();
    if counts.is_empty() {
        bail!("ethtool -S {}: no xdp_drops counter", lab.up_if);
    }
    Ok(counts.iter().sum())
}

/// The variants of the refused flood: the ceiling, netpath refusing, and the drop floor.
pub const REFUSED_KINDS: usize = 3;

/// The published ports' firewall under a flood (`--published-from` leaving every sender out,
/// every packet a new client): what netpath's XDP program drops per second, beside what the
/// redirect-only ceiling forwards of the same frames.
pub fn refused(quick: bool, tools: &mut Tools, p: &Progress) -> Result<Section> {
    let turns = Turns::of(quick);
    let t = Traffic {
        dst: HOST.into(),
        dport: UDP_PORT,
        src_addrs: 16_384,
        src_ports: 60_000,
    };
    const REFUSED: &str = "netpath xdp, every client refused by the firewall";
    let mut ceiling = Figure::new(Kind::Ceiling.name(), "Mpps", false);
    let mut refused = Figure::new(REFUSED, "Mpps", false);
    let mut dropped_only = Figure::new(Kind::DropXdp.name(), "Mpps", false);
    let mut layout = String::new();
    let kinds: [Kind; REFUSED_KINDS] = [Kind::Ceiling, Kind::NetpathXdp, Kind::DropXdp];
    turns.each(&kinds, |_, &kind, round| {
        p.step(&format!(
            "policy: refused flood: {} (round {})",
            kind.name(),
            round + 1
        ));
        let (lab, figure) = match kind {
            Kind::Ceiling => {
                let lab = Rig::new(Kind::Ceiling, tools, true, true)?;
                layout.clone_from(&lab.layout);
                return measure(tools, &lab, t, turns.secs, turns.per_turn, &mut ceiling, p);
            }
            // The generator's clients are 10.77.0.0/16: none is in the list.
            Kind::NetpathXdp => (
                Rig::with_agent_args(
                    Kind::NetpathXdp,
                    tools,
                    true,
                    true,
                    &["--published-from", "192.0.2.0/24"],
                )?,
                &mut refused,
            ),
            _ => (Rig::new(kind, tools, true, true)?, &mut dropped_only),
        };
        for _ in 0..turns.per_turn {
            lab.keep_cpus_apart()?;
            let (before, delivered) = (xdp_drops(&lab)?, tools.settled_count());
            let (sent, took) =
                tools.generate(&lab.wire(), t, Duration::from_secs_f64(turns.secs))?;
            if tools.settled_count() != delivered {
                bail!(
                    "{}: a refused client's packet reached the endpoint",
                    figure.variant
                );
            }
            let dropped = xdp_drops(&lab)? - before;
            let s = took.as_secs_f64();
            figure.runs.push(dropped as f64 / s / 1e6);
            figure.offered.push(sent as f64 / s / 1e6);
            p.inc();
        }
        Ok(())
    })?;
    Ok(Section {
        scenario: "policy: refused flood".into(),
        about: format!(
            "{}, each turn on a lab made afresh; 64-byte frames from the generator the layout names, every one from a new client (16,384 addresses × 60,000 ports). netpath's agent runs with `--published-from 192.0.2.0/24`, which none of them is in: its XDP program drops them before any flow is made, counted by the uplink's veth driver (`ethtool -S`, xdp_drops), and the endpoint's sink checks that none arrives. The ceiling forwards the same frames into the endpoint (counted there); the floor drops them all unread, the least any refusing program costs (counted as netpath's). Layout: {layout}.",
            turns.said()
        ),
        figures: vec![refused, ceiling, dropped_only],
        baseline: Kind::Ceiling.name().into(),
        targets: vec![
            Target::ratio(
                "refused clients dropped in XDP at least as fast as the ceiling forwards",
                REFUSED,
                Kind::Ceiling.name(),
                1.0,
            )
            .limited_by(
                Kind::DropXdp.name(),
                "on this veth uplink a dropped frame costs more than a redirected one, whatever the program: the floor that drops every frame unread is below the ceiling too",
            ),
            Target::ratio(
                "refusing costs little beyond dropping",
                REFUSED,
                Kind::DropXdp.name(),
                0.9,
            ),
        ],
        plots: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(name: &str, runs: &[f64]) -> Figure {
        let mut f = Figure::new(name, "Mpps", false);
        f.runs.extend_from_slice(runs);
        f
    }

    #[test]
    fn a_variant_is_above_its_ceiling_only_past_every_run_of_it() {
        let kinds = [Kind::NetpathTc, Kind::CeilingTc];
        // The ceiling read low twice: the variant's median is above its median, not its best.
        let noisy = [
            figure("tc", &[2.1, 2.2, 2.2]),
            figure("ceiling", &[1.8, 1.8, 2.4]),
        ];
        assert_eq!(below_the_ceiling(&kinds, &noisy, None).unwrap(), "");
        // Above every run of the ceiling: the harness measures something else.
        let over = [
            figure("tc", &[2.5, 2.6, 2.6]),
            figure("ceiling", &[1.8, 1.8, 2.4]),
        ];
        assert!(below_the_ceiling(&kinds, &over, None).is_err());
        // A quick run says so instead.
        assert!(below_the_ceiling(&kinds, &over, Some("in this quick run"))
            .unwrap()
            .contains("Above the ceiling in this quick run"));
    }

    #[test]
    fn a_variant_is_above_its_ceiling_per_path_cpu_second_too() {
        let kinds = [Kind::NetpathTc, Kind::CeilingTc];
        let busy = |mut f: Figure, busy: &[f64]| {
            f.busy.extend_from_slice(busy);
            f
        };
        // Both kept up with the generator; the variant took more of the CPU per packet.
        let fair = [
            busy(figure("tc", &[1.0, 1.0, 1.0]), &[80.0, 80.0, 80.0]),
            busy(figure("ceiling", &[1.2, 1.2, 1.2]), &[60.0, 60.0, 60.0]),
        ];
        assert_eq!(below_the_ceiling(&kinds, &fair, None).unwrap(), "");
        // Less of the CPU per packet than the redirect-only path: a harness bug.
        let over = [
            busy(figure("tc", &[1.0, 1.0, 1.0]), &[40.0, 40.0, 40.0]),
            busy(figure("ceiling", &[1.2, 1.2, 1.2]), &[60.0, 60.0, 60.0]),
        ];
        assert!(below_the_ceiling(&kinds, &over, None)
            .unwrap_err()
            .to_string()
            .contains("per path CPU-second"));
    }
}
