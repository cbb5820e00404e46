//! Scenario `docker`: one real dockerd (Debian's docker.io) with its defaults — its bridge,
//! iptables rules and docker-proxy — beside a netpath network served by the agent's Docker
//! plugin, in one run: `docker run -p` until the first byte answers from outside; a
//! container publishing a range of ports (start time, and the memory of what serves them:
//! docker-proxy processes against the agent's growth); TCP request/response and bulk through
//! `-p` from outside; host-local `127.0.0.1:PORT`.
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use netpath_user::testing::{
    docker::{Dockerd, DockerdOptions, IMAGE},
    outside_and_host, unique, AgentOptions, AgentProcess, Netns, ScratchBpffs,
};

use crate::{
    lab::{HOST, OUTSIDE_ADDR},
    report::{Figure, Section, Target},
    scale::rss_mb,
    tcp::{bulk, rr},
    tools::Tools,
    turns::Turns,
    Progress,
};

/// A network of Docker's bridge driver, and a netpath network: both user-defined (so both
/// have Docker's embedded DNS, which the default bridge lacks).
pub const NETWORKS: [&str; 2] = ["dockerbr", "netpath"];
const BASELINE: &str = "docker bridge network (iptables, docker-proxy)";
const NETPATH: &str = "netpath network";

fn label(network: &str) -> &'static str {
    if network == NETWORKS[0] {
        BASELINE
    } else {
        NETPATH
    }
}

/// A dockerd and a netpath agent serving it the plugin, with an outside namespace.
struct Lab {
    d: Dockerd,
    agent: AgentProcess,
    outside: Netns,
    host: Netns,
    dir: PathBuf,
    _bpffs: ScratchBpffs,
}

impl Lab {
    fn new(tools: &Tools) -> Result<Lab> {
        let (outside, host, _, h) = outside_and_host("npdo", "npdh", 24);
        let id = unique();
        let etc = Path::new("/etc/netns").join(&host.name);
        std::fs::create_dir_all(&etc)?;
        std::fs::write(
            etc.join("resolv.conf"),
            format!("nameserver {OUTSIDE_ADDR}\n"),
        )?;
        let dir = std::env::temp_dir().join(format!("netpath-bench-docker-{id}"));
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins)?;
        let bpffs = ScratchBpffs::new().context("a bpffs for the agent's pins")?;
        let mut opts = AgentOptions::new(&tools.netpath_bin, &host.name, &h, &dir);
        opts.bpffs = bpffs.path().join("netpath");
        opts.extra = vec![
            "--docker-plugin".into(),
            "netpath".into(),
            "--docker-plugin-dir".into(),
            plugins.display().to_string(),
        ];
        let agent = AgentProcess::start(opts)?;
        let d = Dockerd::start_with(
            &host,
            &DockerdOptions {
                plugins: Some(plugins),
                ..DockerdOptions::default()
            },
        )?;
        d.image()?;
        d.words("network create -d netpath --ipam-driver netpath --subnet 10.50.0.0/16 netpath")?;
        d.docker(&["network", "create", "--subnet", "10.60.0.0/16", NETWORKS[0]])?;
        Ok(Lab {
            d,
            agent,
            outside,
            host,
            dir,
            _bpffs: bpffs,
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Containers and networks first, while the agent still answers dockerd.
        if let Ok(ids) = self.d.docker(&["ps", "-aq"]) {
            for id in ids.split_whitespace() {
                // Cleanup before the daemon stops: what fails here goes with it.
                let _ = self.d.docker(&["rm", "-f", id]);
            }
        }
        // Cleanup before the daemon stops: what fails here goes with it.
        let _ = self.d.docker(&["network", "rm", "netpath"]);
        self.agent.stop();
        // Cleanup: already gone is as good as removed.
        let _ = self.agent.opts.uninstall();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.host.name));
    }
}

/// The body of `GET /cgi-bin/ip` from `ns` to `to:port`, if something answers.
fn first_byte(ns: &Netns, to: (Ipv4Addr, u16)) -> bool {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(to);
    let Ok(mut c) =
        ns.run(|| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)))
    else {
        return false;
    };
    // A socket option that does not take leaves the default: only timing changes.
    let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
    if c.write_all(b"GET /cgi-bin/ip HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    matches!(c.read(&mut b), Ok(1))
}

/// `docker run -d --network NETWORK -p PUBLISH IMAGE`: the container's id.
fn run_publishing(lab: &Lab, network: &str, publish: &str) -> Result<String> {
    lab.d
        .docker(&["run", "-d", "--network", network, "-p", publish, IMAGE])
}

/// `docker run -d -p PORT:80` on `network`, until the first byte of an answer from outside.
fn time_to_first_byte(lab: &Lab, network: &str, port: u16) -> Result<f64> {
    let start = Instant::now();
    let id = run_publishing(lab, network, &format!("{port}:80"))?;
    while !first_byte(&lab.outside, (HOST, port)) {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("{network}: nothing answered on {port} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let ms = start.elapsed().as_secs_f64() * 1e3;
    lab.d.docker(&["rm", "-f", id.trim()])?;
    Ok(ms)
}

/// RSS of every docker-proxy process, in MB, and how many there are.
fn docker_proxies() -> Result<(f64, usize)> {
    let mut mb = 0.0;
    let mut n = 0;
    for entry in std::fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmd
            .split(|b| *b == 0)
            .next()
            .is_some_and(|a| a.ends_with(b"docker-proxy"))
        {
            mb += rss_mb(pid).unwrap_or(0.0);
            n += 1;
        }
    }
    Ok((mb, n))
}

/// `docker run -d -p A-B:A-B` (`ports` ports) on `network`: (ms until docker returns, MB of
/// what serves the ports: docker-proxy processes, or the agent's growth).
fn range(lab: &Lab, network: &str, first: u16, ports: u16) -> Result<(f64, f64)> {
    let last = first + ports - 1;
    let agent_before = rss_mb(lab.agent.pid().context("agent pid")?)?;
    let start = Instant::now();
    let id = run_publishing(lab, network, &format!("{first}-{last}:{first}-{last}"))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let mb = if network == NETWORKS[0] {
        let (mb, n) = docker_proxies()?;
        if n < ports as usize {
            bail!("expected {ports} docker-proxy processes, found {n}");
        }
        mb
    } else {
        (rss_mb(lab.agent.pid().context("agent pid")?)? - agent_before).max(0.0)
    };
    lab.d.docker(&["rm", "-f", id.trim()])?;
    Ok((ms, mb))
}

/// A container on `network` with an echo server (9000) and a sink (9001) published on
/// `port` and `port + 1`, on every host address and on 127.0.0.1 (`port + 2`, `port + 3`).
fn servers(lab: &Lab, network: &str, port: u16) -> Result<String> {
    let p = |n: u16| (port + n).to_string();
    let id = lab.d.docker(&[
        "run",
        "-d",
        "--network",
        network,
        "-p",
        &format!("{}:9000", p(0)),
        "-p",
        &format!("{}:9001", p(1)),
        "-p",
        &format!("127.0.0.1:{}:9000", p(2)),
        IMAGE,
        "sh",
        "-c",
        "nc -ll -p 9001 -e sink & exec nc -ll -p 9000 -e cat",
    ])?;
    let start = Instant::now();
    while rr(&lab.outside, (HOST, port), 0.01).is_err() {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("{network}: the echo server did not answer within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(id.trim().to_string())
}

/// How the scenario's runs are laid out.
pub fn turns(quick: bool) -> Turns {
    Turns::with(quick, 3.0, 0.3)
}

pub fn run(quick: bool, tools: &mut Tools, p: &Progress) -> Result<Vec<Section>> {
    let turns = turns(quick);
    let (runs, secs, ports) = (turns.runs(), turns.secs, if quick { 20 } else { 1000 });
    p.step("docker: dockerd and the agent");
    let lab = Lab::new(tools)?;
    let figures = |unit: &str, lower: bool| {
        crate::report::figures(NETWORKS.iter().map(|n| label(n)), unit, lower)
    };
    let mut ttfb = figures("ms", true);
    let mut start_ms = figures("ms", true);
    let mut memory = figures("MB", true);
    let mut tps = figures("transactions/s", false);
    let mut gbps = figures("Gbit/s", false);
    let mut local = figures("transactions/s", false);
    turns.each(&NETWORKS, |i, network, round| {
        p.step(&format!("docker: {network} (round {})", round + 1));
        // Each network's ports, apart from the other's; each turn's first-byte ports new.
        let base = 20_000 + 2_000 * i as u16;
        for run in 0..turns.per_turn {
            let first = base + (round * turns.per_turn + run) as u16;
            ttfb[i].runs.push(
                time_to_first_byte(&lab, network, first)
                    .with_context(|| format!("{network}: first byte"))?,
            );
            let (ms, mb) = range(&lab, network, base + 100, ports)
                .with_context(|| format!("{network}: {ports} ports"))?;
            start_ms[i].runs.push(ms);
            memory[i].runs.push(mb);
        }
        let port = base + 1_500;
        let id = servers(&lab, network, port)?;
        for _ in 0..turns.per_turn {
            tps[i].runs.push(
                rr(&lab.outside, (HOST, port), secs)
                    .with_context(|| format!("{network}: request/response"))?
                    .0,
            );
            gbps[i]
                .runs
                .push(bulk(&lab.outside, (HOST, port + 1), secs).with_context(|| {
                    format!(
                        "{network}: bulk; the container said: {}",
                        lab.d.docker(&["logs", &id]).unwrap_or_default()
                    )
                })?);
            local[i].runs.push(
                rr(&lab.host, (Ipv4Addr::LOCALHOST, port + 2), secs)
                    .with_context(|| format!("{network}: host-local"))?
                    .0,
            );
        }
        lab.d.docker(&["rm", "-f", &id])?;
        p.inc();
        Ok(())
    })?;
    let version = std::process::Command::new("dockerd")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let section = |scenario: &str, about: String, figures: Vec<Figure>, bound: f64| Section {
        scenario: format!("docker: {scenario}"),
        about,
        baseline: BASELINE.into(),
        targets: vec![Target::ratio(scenario, NETPATH, BASELINE, bound)],
        figures,
        plots: Vec::new(),
    };
    let setup = format!(
        "One dockerd ({version}) with its defaults (iptables, docker-proxy): a network of its bridge driver (`docker network create`) beside a netpath network (`-d netpath --ipam-driver netpath`) served by the agent's plugin, same run, {runs} runs each. {}; one dockerd and one agent for all of them. Layout: {}.",
        turns.said(),
        crate::turns::unpinned()
    );
    Ok(vec![
        section(
            "docker run -p until the first byte",
            format!("{setup} `docker run -d -p PORT:80` of a busybox httpd, then HTTP requests from an outside namespace until one answers."),
            ttfb,
            1.1,
        ),
        section(
            &format!("docker run -p with {ports} ports"),
            format!("{setup} `docker run -d -p A-B:A-B` publishing {ports} ports: until docker returns."),
            start_ms,
            0.5,
        ),
        section(
            &format!("memory serving {ports} ports"),
            format!("{setup} What serves the {ports} ports of that container: the RSS of Docker's docker-proxy processes (one per port), against the agent's RSS growth (netpath's maps are sized at start)."),
            memory,
            0.1,
        ),
        section(
            "TCP request/response through -p",
            format!("{setup} One-byte echo transactions from the outside namespace through a published port, {secs} s per run."),
            tps,
            1.0,
        ),
        section(
            "TCP bulk through -p",
            format!("{setup} Bulk TCP from the outside namespace through a published port to a sink, {secs} s per run."),
            gbps,
            1.0,
        ),
        section(
            "host-local 127.0.0.1:PORT",
            format!("{setup} One-byte echo transactions from the host itself to `-p 127.0.0.1:PORT:9000` (docker-proxy for Docker; netpath's socket hooks), {secs} s per run."),
            local,
            1.0,
        ),
    ])
}
