//! Scenario `flood`: a million new flows per second from many sources for ten seconds,
//! beside established connections through the same published ports. What a flood of new
//! flows must not do: stop the established ones or slow them (they keep their rate within
//! 10%), or make the datapath's memory grow beyond its tables' fixed size.
use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use netpath_common::{Counter, NEW_FLOWS_PER_CPU};

use crate::{
    lab::{Kind, HOST, OUTSIDE_ADDR, UDP_PORT},
    perf::busy_while,
    report::{figures, Figure, Section, Target},
    rig::{Rig, PATH_CPU},
    scale::rss_mb,
    tools::{Tools, Traffic},
    turns::Turns,
    Progress,
};

mod limit;

/// One variant: the host's kind, (netpath) whether the flooded and the established ports
/// keep their flows (each published on a second host port too) or are one to one, and whether
/// the published ports' firewall refuses every frame of the flood (a floor: the least any
/// program on the uplink can do with them, see [`FLOOR_XDP`]).
pub struct Variant {
    name: &'static str,
    kind: Kind,
    kept: bool,
    refused: bool,
}

/// The floors: netpath with `--published-from` naming the established connections' client
/// alone, so its program drops every frame of the flood at its first decision (parsed, the
/// port's firewall asked), before any flow, guard or delivery. Whatever a datapath does with
/// the flood's frames, the uplink receives each one first (on XDP, a veth copies it too), so
/// what the established connections keep here bounds what they keep in any variant of the
/// same hook.
pub const FLOOR_XDP: &str = "floor xdp: every flood frame refused by the firewall";
pub const FLOOR_TC: &str = "floor tc: every flood frame refused by the firewall";

pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "netpath xdp, flows kept",
        kind: Kind::NetpathXdp,
        kept: true,
        refused: false,
    },
    Variant {
        name: "netpath tc, flows kept",
        kind: Kind::NetpathTc,
        kept: true,
        refused: false,
    },
    Variant {
        name: "netpath xdp, one to one",
        kind: Kind::NetpathXdp,
        kept: false,
        refused: false,
    },
    Variant {
        name: "iptables",
        kind: Kind::Iptables,
        kept: false,
        refused: false,
    },
    Variant {
        name: FLOOR_XDP,
        kind: Kind::NetpathXdp,
        kept: false,
        refused: true,
    },
    Variant {
        name: FLOOR_TC,
        kind: Kind::NetpathTc,
        kept: false,
        refused: true,
    },
];

/// New flows per second the generator offers.
const FLOOD_PPS: f64 = 1e6;
/// Established connections, and the transactions per second each asks for.
const CONNS: usize = 8;
const PER_CONN: f64 = 500.0;

/// Rounds in which every variant takes a turn on a lab made afresh: `secs` quiet, then `secs`
/// under the flood.
fn turns(quick: bool) -> Turns {
    Turns {
        rounds: if quick { 1 } else { 3 },
        per_turn: 1,
        secs: if quick { 1.0 } else { 10.0 },
    }
}

/// Publishes the flooded and the established ports on a second host port each, so their flows
/// are kept (no longer one to one).
fn keep_flows(lab: &Rig) -> Result<()> {
    lab.netpath(&["port", "publish", "bench", "5354:53/udp", "8081:80/tcp"])
        .map(drop)
}

/// Progress steps in all.
pub fn steps(quick: bool) -> usize {
    VARIANTS.len() * turns(quick).runs() * 2 + 1
}

/// What the established connections did in one run.
struct Established<T> {
    /// Transactions per second, all of them.
    rate: f64,
    /// Connections stopped: an error, or a reply overdue by 3 s.
    stopped: usize,
    /// How long their client and server threads waited for a CPU, ms per second of the run.
    waited: f64,
    /// `during`'s result.
    out: T,
}

/// The established connections' work for `secs`, each paced at [`PER_CONN`] one-byte
/// transactions per second, while `during` runs in this thread. A stopped connection stays
/// stopped.
fn established<T>(
    conns: &mut [Option<TcpStream>],
    secs: f64,
    during: impl FnOnce() -> Result<T>,
) -> Result<Established<T>> {
    let dur = Duration::from_secs_f64(secs);
    let interval = Duration::from_secs_f64(1.0 / PER_CONN);
    let serving = limit::threads_waited(crate::tcp::SERVING);
    let start = Instant::now();
    let (counts, out) = std::thread::scope(|s| {
        let workers: Vec<_> = conns
            .iter_mut()
            .map(|slot| {
                s.spawn(move || {
                    let waited = limit::waited_self();
                    let mut n = 0u32;
                    let mut b = [7u8; 1];
                    while let Some(c) = slot.as_mut().filter(|_| start.elapsed() < dur) {
                        if c.write_all(&b).and_then(|_| c.read_exact(&mut b)).is_err() {
                            *slot = None;
                            break;
                        }
                        n += 1;
                        std::thread::sleep((interval * n).saturating_sub(start.elapsed()));
                    }
                    (u64::from(n), limit::waited_self().saturating_sub(waited))
                })
            })
            .collect();
        let out = during();
        let counts: Vec<(u64, u64)> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or((0, 0)))
            .collect();
        (counts, out)
    });
    let took = start.elapsed().as_secs_f64();
    // The servers' threads that lived through the run (each connection's, made before it).
    let served: u64 = limit::threads_waited(crate::tcp::SERVING)
        .iter()
        .filter_map(|(t, after)| Some(after.saturating_sub(*serving.get(t)?)))
        .sum();
    let clients: u64 = counts.iter().map(|(_, w)| w).sum();
    Ok(Established {
        rate: counts.iter().map(|(n, _)| n).sum::<u64>() as f64 / took,
        stopped: conns.iter().filter(|c| c.is_none()).count(),
        waited: (clients + served) as f64 / 1e6 / took,
        out: out?,
    })
}

/// Bytes the kernel charges for the BPF maps process `pid` holds (each map fd's `memlock`).
fn map_bytes(pid: u32) -> Result<f64> {
    let mut total = 0.0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let info = std::fs::read_to_string(fd?.path()).unwrap_or_default();
        if !info.contains("map_type:") {
            continue;
        }
        total += info
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .context("a map's memlock")?;
    }
    Ok(total)
}

/// What the datapath holds in memory, in MB: the agent's maps and its resident memory
/// (netpath), or conntrack's entries at their slab size (iptables).
fn memory(lab: &Rig) -> Result<f64> {
    match lab.agent_pid() {
        Some(pid) => Ok(map_bytes(pid)? / 1e6 + rss_mb(pid)?),
        None => Ok(conntrack_count(lab)? * crate::flows::conntrack_entry_bytes()? / 1e6),
    }
}

fn conntrack_count(lab: &Rig) -> Result<f64> {
    let v = lab
        .host
        .exec("cat", &["/proc/sys/net/netfilter/nf_conntrack_count"]);
    v.trim()
        .parse()
        .with_context(|| format!("nf_conntrack_count: {v:?}"))
}

/// What the table of flows holds after the flood, and (netpath) how many new flows the flood
/// guard dropped, for the report.
fn table_after(lab: &Rig) -> Result<String> {
    if lab.agent_pid().is_some() {
        let stats: serde_json::Value = serde_json::from_str(&lab.netpath(&["stats", "--json"])?)?;
        Ok(format!(
            "{} flows ({} new flows dropped by the guard)",
            stats["Flows"],
            stats["Counters"][Counter::DropNewFlowRate.name()]
        ))
    } else {
        Ok(format!("{} conntrack entries", conntrack_count(lab)?))
    }
}

pub fn run(quick: bool, tools: &mut Tools, p: &Progress) -> Result<Vec<Section>> {
    let turns = turns(quick);
    let secs = turns.secs;
    let flood = Traffic {
        dst: HOST.into(),
        dport: UDP_PORT,
        src_addrs: 16_384,
        src_ports: 60_000,
    };
    let offered = CONNS as f64 * PER_CONN;
    // One figure per variant: its name, then `what`.
    let per_variant = |what: &str, unit: &str, lower: bool| {
        figures(
            VARIANTS.iter().map(|v| format!("{}{what}", v.name)),
            unit,
            lower,
        )
    };
    let mut quiet = per_variant(", quiet", "transactions/s", false);
    let mut flooded = per_variant(", under the flood", "transactions/s", false);
    let mut delivered = per_variant(": new flows delivered", "Mpps", false);
    let mut grown = per_variant(": memory growth", "MB", true);
    let mut busy = per_variant(": forwarding CPU busy under the flood", "%", true);
    let mut ring = per_variant(": frames dropped at the uplink's ring", "kpps", true);
    let mut resent = per_variant(": the connections' segments sent again", "per flood", true);
    let mut waited_quiet = per_variant(": the connections' wait for a CPU, quiet", "ms/s", true);
    let mut waited_flood = per_variant(
        ": the connections' wait for a CPU, under the flood",
        "ms/s",
        true,
    );
    let mut stopped = vec![0usize; VARIANTS.len()];
    let mut tables = vec![String::new(); VARIANTS.len()];
    let mut where_run = String::new();
    turns.each(VARIANTS, |i, v, round| {
        p.step(&format!("flood: {} (round {})", v.name, round + 1));
        let lab = if v.refused {
            // The generator's sources are 10.77.1.1 onwards: none is the connections' client.
            let client = format!("{OUTSIDE_ADDR}/32");
            Rig::with_agent_args(v.kind, tools, true, true, &["--published-from", &client])?
        } else {
            Rig::new(v.kind, tools, true, true)?
        };
        where_run.clone_from(&lab.layout);
        // As from a NIC, the connections' packets come through the uplink's receive queue
        // beside the flood's: a veth hands a local socket's segments (TSO on) straight to
        // the backlog instead, out of the flood's way.
        lab.outside
            .exec("ethtool", &["-K", &lab.out_if, "tx", "off"]);
        if v.kept {
            keep_flows(&lab)?;
        }
        let _server = crate::tcp::Server::start(&lab.ep)?;
        // A floor's firewall lets none of the flood reach the endpoint to warm it.
        if !v.refused {
            crate::traffic::warm_up(tools, &lab, flood)?;
        }
        let mut conns = (0..CONNS)
            .map(|_| crate::tcp::connect(&lab.outside, lab.tcp_target()).map(Some))
            .collect::<Result<Vec<_>>>()?;
        lab.keep_cpus_apart()?;
        let calm = established(&mut conns, secs, || Ok(()))?;
        quiet[i].runs.push(calm.rate);
        waited_quiet[i].runs.push(calm.waited);
        quiet[i].offered.push(offered);
        p.inc();
        let (before, sunk, dropped) = (memory(&lab)?, tools.sink_count(), limit::ring_drops(&lab)?);
        let resent_before = limit::retransmitted(&lab.outside)? + limit::retransmitted(&lab.ep)?;
        let (under, cpu) = busy_while(PATH_CPU, || {
            established(&mut conns, secs, || {
                tools.generate_at(
                    &lab.wire(),
                    flood,
                    Duration::from_secs_f64(secs),
                    Some(FLOOD_PPS),
                )
            })
        })?;
        let (sent, took) = under.out;
        let took = took.as_secs_f64();
        waited_flood[i].runs.push(under.waited);
        busy[i].runs.push(cpu);
        ring[i]
            .runs
            .push((limit::ring_drops(&lab)? - dropped) as f64 / took / 1e3);
        let resent_after = limit::retransmitted(&lab.outside)? + limit::retransmitted(&lab.ep)?;
        resent[i].runs.push((resent_after - resent_before) as f64);
        flooded[i].runs.push(under.rate);
        flooded[i].offered.push(offered);
        // The sink counts the established connections' packets too: a few thousand a
        // second beside a million.
        let new_flows = tools.settled_count() - sunk;
        delivered[i].runs.push(new_flows as f64 / took / 1e6);
        delivered[i].offered.push(sent as f64 / took / 1e6);
        grown[i].runs.push((memory(&lab)? - before).max(0.0));
        stopped[i] += under.stopped;
        tables[i] = table_after(&lab)?;
        p.inc();
        Ok(())
    })?;
    let profile = limit::profile_kept(quick, tools, flood, p)?;
    let said = |f: &dyn Fn(usize) -> String| {
        VARIANTS
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{} {}", v.name, f(i)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rounds = format!(
        "The variants take turns: {} rounds, each turn on a lab made afresh, {secs} s quiet, then {secs} s under the flood, on the same connections",
        turns.rounds
    );
    let mut figures = Vec::new();
    for (q, f) in quiet.into_iter().zip(flooded) {
        figures.extend([q, f]);
    }
    let keep = |v: &Variant| {
        Target::ratio(
            "established connections keep their rate under the flood",
            &format!("{}, under the flood", v.name),
            &format!("{}, quiet", v.name),
            0.9,
        )
    };
    let measured = limit::Measured {
        delivered: &delivered,
        busy: &busy,
        ring: &ring,
        resent: &resent,
        waited: (&waited_quiet, &waited_flood),
    };
    let established_section = Section {
        scenario: "flood: established connections".into(),
        about: format!(
            "{CONNS} TCP connections through the published port 8080, established before the flood, each asking a one-byte transaction every {} ms ({offered} per second in all): their transactions per second alone, then while the generator (see the layout) offers {} new UDP flows per second to the published port 5353 (every frame from a new source: 16,384 addresses × 60,000 ports). netpath's ports either keep their flows (each port published on a second host port too, so every new flow would take a slot of the LRU flow table of 262,144) or are one to one (no flow is written: a flow let through is marked seen in one byte of a fixed array). The agent's flood guard lets each CPU begin {NEW_FLOWS_PER_CPU} new flows a second (`--new-flows-per-cpu`, its default) and drops the rest: where flows are kept, before they cost a slot, and, once a CPU is under the flood, before they cost a look into the flow table (only flows seen lately are looked up); on a one-to-one port a UDP flow not marked seen lately, or a TCP SYN, is a new flow. The floors run netpath with `--published-from {OUTSIDE_ADDR}/32`, the connections' client alone: its program refuses every frame of the flood at its first decision, before any flow, guard or delivery; the uplink still receives each frame (on XDP a veth copies it first), so what the connections keep there bounds what they keep in any variant on the same hook. {rounds}. Connections stopped (an error or a reply 3 s overdue), all rounds: {}. Layout: {where_run}.",
            1000.0 / PER_CONN,
            FLOOD_PPS,
            said(&|i| stopped[i].to_string()),
        ),
        figures,
        baseline: String::new(),
        targets: VARIANTS
            .iter()
            .filter(|v| v.kind != Kind::Iptables && !v.refused)
            .map(|v| {
                let why = if v.kept {
                    limit::KEPT_UNDER_FLOOD
                } else {
                    limit::ONE_TO_ONE_UNDER_FLOOD
                };
                let floor = if v.kind == Kind::NetpathXdp {
                    FLOOR_XDP
                } else {
                    FLOOR_TC
                };
                keep(v)
                    .limited_by(&format!("{floor}, under the flood"), why)
                    .measured(limit::saturated(v, &measured, &profile))
            })
            .collect(),
        plots: Vec::new(),
    };
    // What the guard let through, of its rate (one CPU forwards): a flood held to the rate
    // reads 1, whatever it offers.
    let rate = f64::from(NEW_FLOWS_PER_CPU) / 1e6;
    let guarded = |v: &&Variant| v.kind != Kind::Iptables && !v.refused;
    let held: Vec<Figure> = VARIANTS
        .iter()
        .zip(&delivered)
        .filter(|(v, _)| guarded(v))
        .map(|(v, d)| {
            let mut f = Figure::new(
                format!("{}: new flows delivered, of the guard's rate", v.name),
                "×",
                true,
            );
            f.runs = d.runs.iter().map(|r| r / rate).collect();
            f
        })
        .collect();
    let let_in: Vec<f64> = delivered.iter().map(Figure::median).collect();
    let mut figures = delivered;
    figures.extend(held);
    figures.extend(grown);
    figures.extend(busy);
    figures.extend(ring);
    figures.extend(resent);
    figures.extend(waited_quiet);
    figures.extend(waited_flood);
    let flood_section = Section {
        scenario: "flood: new flows".into(),
        about: format!(
            "The same runs: new flows delivered into the endpoint per second, beside what the generator offered (pacing at {} per second); how busy the forwarding CPU was under the flood (/proc/stat) and how many frames a second the uplink's receive ring could not take (the outside veth's tx_dropped: the flood's and the connections' alike, before any program), and how many of the established connections' segments were sent again over the flood (RetransSegs, both ends' namespaces) and how long their threads (8 clients, 8 servers) waited on a run queue for a CPU (schedstat's run delay, summed, per second of the run), quiet and under the flood; and how much the datapath's memory grew over the flood: the agent's BPF maps (each map's memlock) and its resident memory for netpath, conntrack's entries at their slab size for iptables. The table after the last flood: {}.",
            FLOOD_PPS,
            said(&|i| tables[i].clone()),
        ),
        figures,
        baseline: String::new(),
        targets: VARIANTS
            .iter()
            .filter(|v| v.kind != Kind::Iptables)
            .map(|v| {
                Target::absolute(
                    "memory stays at the tables' fixed size",
                    &format!("{}: memory growth", v.name),
                    1.0,
                )
            })
            .chain(VARIANTS.iter().filter(guarded).map(|v| {
                // One CPU forwards (the layout): the guard's rate is what it may admit.
                Target::absolute(
                    "new flows hold the guard's rate under the flood (Mpps, one forwarding CPU)",
                    &format!("{}: new flows delivered", v.name),
                    0.9 * rate,
                )
            }))
            .chain(VARIANTS.iter().enumerate().filter(|(_, v)| guarded(v)).map(|(i, v)| {
                let t = Target::absolute(
                    "the guard holds the flood to its rate",
                    &format!("{}: new flows delivered, of the guard's rate", v.name),
                    1.1,
                );
                if v.kept {
                    t
                } else {
                    t.limited_as_measured(
                        limit::ONE_TO_ONE_MARKS,
                        format!("{:.2} Mpps of the flood let in", let_in[i]),
                    )
                }
            }))
            .collect(),
        plots: Vec::new(),
    };
    Ok(vec![established_section, flood_section])
}
