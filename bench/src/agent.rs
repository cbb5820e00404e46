//! Scenario `agent`: the agent as operators run it. Traffic across a SIGKILL and restart and
//! across an upgrade to a build whose programs differ (target: nothing lost); start-to-ready
//! with many endpoints and ports (target: 0.5 s for 1,000 and 10,000) and the agent's memory
//! with them (target: 50 MB); how long making an endpoint with published ports takes, beside
//! `docker run -p` on Docker's bridge driver.
use std::{path::PathBuf, time::Instant};

use anyhow::{Context as _, Result};
use netpath_user::testing::{
    docker::{Dockerd, IMAGE},
    traffic::{tcp_echo_server, udp_server},
    Netns, SteadyTraffic,
};

use crate::{
    lab::{Kind, HOST, TCP_PORT, UDP_PORT},
    report::{Figure, Section, Target},
    rig::Rig,
    scale::rss_mb,
    tools::Tools,
    Progress,
};

/// Ports each endpoint publishes (one range).
const PORTS_EACH: u32 = 10;

/// Endpoints removed and made again in each cycle of the memory part, and how many cycles.
const CYCLE: u32 = 100;
const CYCLES: u32 = 10;

/// How many endpoints the memory part ends with.
fn many(quick: bool) -> u32 {
    if quick {
        100
    } else {
        10_000
    }
}

/// `netpath endpoint create eI --netns PATH -p A-B:80-89` (its own range of [`PORTS_EACH`]).
fn endpoint_args(i: u32, netns: &str) -> Vec<String> {
    let first = 10_000 + i * PORTS_EACH;
    [
        "endpoint".to_string(),
        "create".into(),
        format!("e{i}"),
        "--netns".into(),
        netns.into(),
        "-p".into(),
        format!(
            "{first}-{}:80-{}",
            first + PORTS_EACH - 1,
            80 + PORTS_EACH - 1
        ),
    ]
    .into()
}

fn create_endpoint(rig: &mut Rig, i: u32, netns: &str) -> Result<()> {
    let args = endpoint_args(i, netns);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    rig.netpath(&args).map(drop)
}

/// How many endpoints the scale part makes.
pub fn endpoints(quick: bool) -> u32 {
    if quick {
        50
    } else {
        1000
    }
}

/// The agent's resident memory at rest, MB: the median of ten readings taken 1 to 2 s after
/// the last change ([`netpath_user::agent::memory::TRIM_INTERVAL`] after a change the agent
/// gives back what it freed; a reading at once would catch the change's own buffers).
fn rss_at_rest(pid: u32) -> Result<f64> {
    let mut readings = Vec::new();
    std::thread::sleep(netpath_user::agent::memory::TRIM_INTERVAL);
    for _ in 0..10 {
        readings.push(rss_mb(pid)?);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    readings.sort_by(f64::total_cmp);
    Ok((readings[4] + readings[5]) / 2.0)
}

/// The second build the upgrade runs (`cargo xtask bench` builds it).
fn upgrade_bin() -> Result<PathBuf> {
    let bin = std::env::var_os("NETPATH_UPGRADE_BIN")
        .context("NETPATH_UPGRADE_BIN is not set: run through `cargo xtask bench`")?;
    Ok(PathBuf::from(bin))
}

/// Steady traffic while `disrupt` runs; what was lost (failed transactions and datagrams).
fn lost_during(rig: &mut Rig, disrupt: impl FnOnce(&mut Rig) -> Result<()>) -> Result<f64> {
    let traffic = SteadyTraffic::start(&rig.outside, HOST, TCP_PORT, UDP_PORT);
    traffic.wait_for(20);
    disrupt(rig)?;
    traffic.wait_for(20);
    let r = traffic.finish();
    Ok((r.tcp_failed + r.udp_lost.len() as u64) as f64)
}

fn lifecycle(quick: bool, tools: &mut Tools, p: &Progress) -> Result<Section> {
    let upgrade = upgrade_bin()?;
    let runs = if quick { 1 } else { 3 };
    let mut rig = Rig::new(Kind::NetpathTc, tools, true, false)?;
    tcp_echo_server(&rig.ep, 80);
    udp_server(&rig.ep, 53);
    let mut restart = Figure::new("lost across SIGKILL and restart", "lost", true);
    let mut upgraded = Figure::new("lost across an upgrade", "lost", true);
    for i in 0..runs {
        p.step("agent: restart under traffic");
        restart.runs.push(lost_during(&mut rig, |rig| {
            rig.kill_agent();
            // Half a second with no agent at all.
            std::thread::sleep(std::time::Duration::from_millis(500));
            rig.restart_agent(None).map(drop)
        })?);
        p.inc();
        p.step("agent: upgrade under traffic");
        // Every other run goes back: each swap replaces every program.
        let to = (i % 2 == 0).then_some(upgrade.as_path());
        upgraded.runs.push(lost_during(&mut rig, |rig| {
            rig.stop_agent();
            rig.restart_agent(to).map(drop)
        })?);
        p.inc();
    }
    Ok(Section {
        scenario: "agent: restart and upgrade".into(),
        about: "One TCP connection doing a transaction every 10 ms and a UDP stream with sequence numbers every 10 ms through published ports; the agent SIGKILLed and started again after 0.5 s, or stopped and replaced by a build whose programs differ (swapped atomically); failed transactions plus lost datagrams.".into(),
        baseline: String::new(),
        targets: vec![
            Target::absolute("lost across restart", &restart.variant, 0.0),
            Target::absolute("lost across upgrade", &upgraded.variant, 0.0),
        ],
        figures: vec![restart, upgraded],
        plots: Vec::new(),
    })
}

fn scale(quick: bool, tools: &mut Tools, p: &Progress) -> Result<Vec<Section>> {
    let n = endpoints(quick);
    let ports = n * PORTS_EACH;
    let mut rig = Rig::new(Kind::NetpathTc, tools, false, false)?;
    let mut create = Figure::new(
        format!("netpath endpoint create, {PORTS_EACH} ports"),
        "ms",
        true,
    );
    let mut namespaces = Vec::new();
    p.step(&format!("agent: {n} endpoints, {ports} ports"));
    for i in 0..n {
        let ns = Netns::new("npba");
        let start = Instant::now();
        create_endpoint(&mut rig, i, &ns.path())?;
        create.runs.push(start.elapsed().as_secs_f64() * 1e3);
        namespaces.push(ns);
    }
    p.inc();
    let pid = rig.agent_pid().context("agent pid")?;
    let mut memory = Figure::new(format!("agent memory, {n} endpoints"), "MB", true);
    memory.runs.push(rss_at_rest(pid)?);
    let ready_name = format!("start to ready, {n} endpoints, {ports} ports");
    let mut ready = Figure::new(&ready_name, "s", true);
    for _ in 0..if quick { 2 } else { 3 } {
        p.step("agent: start to ready");
        rig.stop_agent();
        ready.runs.push(rig.restart_agent(None)?.as_secs_f64());
        memory
            .runs
            .push(rss_at_rest(rig.agent_pid().context("agent pid")?)?);
        p.inc();
    }
    // Memory over create/remove cycles, and with ten times the endpoints.
    p.step("agent: memory over cycles");
    let cycled = CYCLE.min(n);
    for _ in 0..CYCLES {
        for i in 0..cycled {
            rig.netpath(&["endpoint", "rm", &format!("e{i}")])?;
        }
        for (i, ns) in namespaces.iter().enumerate().take(cycled as usize) {
            create_endpoint(&mut rig, i as u32, &ns.path())?;
        }
    }
    let pid = rig.agent_pid().context("agent pid")?;
    let mut cycles = Figure::new(
        format!(
            "agent memory, {n} endpoints, after {CYCLES} cycles of {cycled} removed and made again"
        ),
        "MB",
        true,
    );
    cycles.runs.push(rss_at_rest(pid)?);
    p.inc();
    p.step(&format!("agent: {} endpoints", many(quick)));
    for i in n..many(quick) {
        let ns = Netns::new("npba");
        // One port each past the first thousand: ten would run past the port space.
        rig.netpath(&[
            "endpoint",
            "create",
            &format!("e{i}"),
            "--netns",
            &ns.path(),
            "-p",
            &format!("{}:80", 30_000 + i),
        ])?;
        namespaces.push(ns);
    }
    let mut more = Figure::new(
        format!(
            "agent memory, {} endpoints, {} ports",
            many(quick),
            ports + many(quick) - n
        ),
        "MB",
        true,
    );
    more.runs.push(rss_at_rest(pid)?);
    p.inc();
    let docker = docker_runs(if quick { 3 } else { 20 }, p);
    drop(namespaces);
    let what = format!(
        "{n} endpoints, each made with `netpath endpoint create -p A-B:80-89` ({PORTS_EACH} ports, {ports} in all)"
    );
    let full = endpoints(false);
    let ready = Section {
        scenario: "agent: start to ready".into(),
        about: format!("{what}; then the agent stopped and started again: time until its API answers, everything reconciled and every program attached."),
        baseline: String::new(),
        targets: vec![Target::absolute(
            &format!("start to ready (s), {full} endpoints and {} ports", full * PORTS_EACH),
            &ready_name_full(),
            0.5,
        )],
        figures: vec![ready],
        plots: Vec::new(),
    };
    let memory = Section {
        scenario: "agent: memory".into(),
        about: format!(
            "{what}: the agent's resident memory at rest (the median of ten readings of VmRSS 1 to 2 s after the last change: the agent gives what it freed back within a second of each change) after the creates, then after each start; then after {CYCLES} cycles of removing the first {CYCLE} endpoints and making them again; then with endpoints of one port each added up to {}.",
            many(quick)
        ),
        baseline: String::new(),
        targets: vec![
            Target::absolute(
                &format!("agent memory (MB), {full} endpoints"),
                &format!("agent memory, {full} endpoints"),
                50.0,
            ),
            Target::absolute(
                &format!("agent memory (MB), {full} endpoints, after cycles"),
                &format!("agent memory, {full} endpoints, after {CYCLES} cycles of {CYCLE} removed and made again"),
                50.0,
            ),
        ],
        figures: vec![memory, cycles, more],
        plots: Vec::new(),
    };
    let (docker_fig, note) = match docker {
        Ok(f) => (Some(f), String::new()),
        Err(e) => (None, format!(" Docker was not measured: {e:#}.")),
    };
    let baseline = docker_fig
        .as_ref()
        .map_or_else(String::new, |f| f.variant.clone());
    // As fast as Docker making the same container's network; without Docker, a tenth of a
    // second.
    let create_target = if baseline.is_empty() {
        Target::absolute("endpoint create (ms)", &create.variant, 100.0)
    } else {
        Target::ratio("endpoint create time", &create.variant, &baseline, 1.0)
    };
    let create = Section {
        scenario: "agent: endpoint create".into(),
        about: format!(
            "{what}: each create, through the API (veth, addresses, maps, state file). Beside it, `docker run -d -p A-B:80-89` of a busybox image on Docker's default bridge, by a dockerd in a namespace of its own ({}; this also starts the container).{note}",
            docker_version()
        ),
        baseline,
        targets: vec![create_target],
        figures: std::iter::once(create).chain(docker_fig).collect(),
        plots: Vec::new(),
    };
    Ok(vec![ready, memory, create])
}

/// The figure the start-to-ready target is set on (the full run's).
fn ready_name_full() -> String {
    let n = endpoints(false);
    format!("start to ready, {n} endpoints, {} ports", n * PORTS_EACH)
}

fn docker_version() -> String {
    std::process::Command::new("dockerd")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "not found".into())
}

/// `docker run -d -p` with the same ranges, by a dockerd in a namespace of its own.
fn docker_runs(n: u32, p: &Progress) -> Result<Figure> {
    p.step("agent: docker run -p");
    let ns = Netns::new("npbd");
    let d = Dockerd::start(&ns)?;
    d.image()?;
    let mut fig = Figure::new(format!("docker run -d, {PORTS_EACH} ports"), "ms", true);
    for i in 0..n {
        let first = 30_000 + i * PORTS_EACH;
        let range = format!(
            "{first}-{}:80-{}",
            first + PORTS_EACH - 1,
            80 + PORTS_EACH - 1
        );
        let start = Instant::now();
        d.docker(&["run", "-d", "-p", &range, IMAGE])?;
        fig.runs.push(start.elapsed().as_secs_f64() * 1e3);
    }
    p.inc();
    Ok(fig)
}

pub fn run(quick: bool, tools: &mut Tools, p: &Progress) -> Result<Vec<Section>> {
    let mut sections = vec![lifecycle(quick, tools, p)?];
    sections.extend(scale(quick, tools, p)?);
    Ok(sections)
}

/// Progress steps this scenario counts.
pub fn steps(quick: bool) -> usize {
    let runs = if quick { 1 } else { 3 };
    2 * runs + 1 + if quick { 2 } else { 3 } + 2 + 1
}
