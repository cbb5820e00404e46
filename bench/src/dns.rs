//! Scenario `dns`: an endpoint resolving another endpoint's name, driven by `dnsperf`
//! (Debian) from the asking endpoint's namespace. netpath's kernel fast path and its
//! userspace server, beside aardvark-dns (Podman's, the real peer, from Debian) and dnsmasq,
//! each serving the same name on the same kind of network. Three measurements: queries per
//! second with dnsperf keeping queries outstanding (throughput — on a small machine dnsperf
//! itself, sharing the CPUs, bounds the fastest); the server's own CPU per query in that run,
//! as queries per CPU-second (for a daemon its process's CPU time, for the fast path the
//! endpoint program's run time from the kernel's BPF statistics); and the latency of each
//! query at a fixed rate all of them sustain (p99).
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use netpath_user::testing::stop_child;

use crate::{
    lab::{Kind, Lab},
    report::{Figure, Section, Target},
    tools::Tools,
    turns::Turns,
    Progress,
};

/// The gateway every variant's server listens on, and the two endpoints.
const GATEWAY: &str = "172.17.0.1";
const PEER: &str = "172.17.0.3";

/// The variants.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Kernel,
    Userspace,
    Aardvark,
    Dnsmasq,
    Floor,
}

pub const SERVERS: [Server; 5] = [
    Server::Kernel,
    Server::Userspace,
    Server::Aardvark,
    Server::Dnsmasq,
    Server::Floor,
];

impl Server {
    pub fn name(self) -> &'static str {
        match self {
            Server::Kernel => "netpath kernel fast path",
            Server::Userspace => "netpath userspace",
            Server::Aardvark => "aardvark-dns",
            Server::Dnsmasq => "dnsmasq",
            Server::Floor => "udp floor (no DNS work)",
        }
    }
}

impl Server {
    /// Where dnsperf asks. The floor listens on the host's own address, since netpath's
    /// server holds the gateway's port 53 in the same lab (an endpoint reaches either through
    /// the same path, the endpoint's program and the host's local delivery).
    fn address(self) -> String {
        if self == Server::Floor {
            crate::lab::HOST.to_string()
        } else {
            GATEWAY.into()
        }
    }
}

/// A lab answering `peer` on port 53 of the server's address, and what serves it.
struct Served {
    lab: Lab,
    /// Where dnsperf asks.
    at: String,
    child: Option<Child>,
    /// aardvark-dns daemonizes: its pid file.
    pid_file: Option<PathBuf>,
    dir: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            stop_child(c);
        }
        if let Some(pid) = self
            .pid_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            // It may have exited already; either way it is gone.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        // Cleanup: already gone is as good as removed.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn binary(candidates: &[&str], package: &str) -> Result<&'static str> {
    for c in candidates {
        if Path::new(c).exists() {
            return Ok(Box::leak(c.to_string().into_boxed_str()));
        }
    }
    bail!("{} not found (Debian package {package})", candidates[0])
}

/// Waits until something answers UDP on `at`:53 in `lab`'s host namespace.
fn wait_listening(lab: &Lab, at: &str, what: &str) -> Result<()> {
    let start = Instant::now();
    while !lab
        .host
        .exec("ss", &["-Hlnu", "sport = :53"])
        .contains(&format!("{at}:53"))
    {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("{what} did not listen on {at}:53");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The agent's options for its server alone: no fast path, no rate limit.
const USERSPACE_ARGS: &[&str] = &["--dns-fast-path", "false", "--dns-rate-limit", "0"];

fn serve(server: Server, tools: &Tools) -> Result<Served> {
    let dir = std::env::temp_dir().join(format!(
        "netpath-bench-dns-{}",
        netpath_user::testing::unique()
    ));
    std::fs::create_dir_all(&dir)?;
    let mut served = match server {
        Server::Kernel | Server::Userspace => {
            let args: &[&str] = if server == Server::Kernel {
                &[]
            } else {
                USERSPACE_ARGS
            };
            let mut lab = Lab::with_agent_args(Kind::NetpathTc, &tools.netpath_bin, false, args)?;
            lab.add_peer()?;
            Served {
                lab,
                at: server.address(),
                child: None,
                pid_file: None,
                dir,
            }
        }
        Server::Aardvark => {
            let mut lab = Lab::new(Kind::Routing, &tools.netpath_bin, false)?;
            lab.add_peer()?;
            let bin = binary(&["/usr/lib/podman/aardvark-dns"], "aardvark-dns")?;
            std::fs::write(
                dir.join("bench"),
                format!("{GATEWAY}\nc0ffee01 {PEER}  peer\nc0ffee02 172.17.0.2  bench\n"),
            )?;
            let st = Command::new("ip")
                .args(["netns", "exec", &lab.host.name, bin, "--config"])
                .arg(&dir)
                .args(["-p", "53", "run"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .context("starting aardvark-dns")?;
            if !st.success() {
                bail!("aardvark-dns did not start: {st}");
            }
            Served {
                pid_file: Some(dir.join("aardvark.pid")),
                at: server.address(),
                lab,
                child: None,
                dir,
            }
        }
        Server::Dnsmasq => {
            let mut lab = Lab::new(Kind::Routing, &tools.netpath_bin, false)?;
            lab.add_peer()?;
            let bin = binary(&["/usr/sbin/dnsmasq"], "dnsmasq-base")?;
            let child = Command::new("ip")
                .args(["netns", "exec", &lab.host.name, bin, "--keep-in-foreground"])
                .args([
                    "--no-resolv",
                    "--no-hosts",
                    "--bind-interfaces",
                    "--port=53",
                ])
                .arg(format!("--listen-address={GATEWAY}"))
                .arg(format!("--host-record=peer,{PEER}"))
                .arg("--pid-file=")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting dnsmasq")?;
            Served {
                lab,
                at: server.address(),
                child: Some(child),
                pid_file: None,
                dir,
            }
        }
        Server::Floor => {
            // netpath's server's lab: the same path, the same cgroup hooks on every socket.
            let mut lab =
                Lab::with_agent_args(Kind::NetpathTc, &tools.netpath_bin, false, USERSPACE_ARGS)?;
            lab.add_peer()?;
            let child = Command::new("ip")
                .args(["netns", "exec", &lab.host.name])
                .arg(std::env::current_exe().context("the bench's own path")?)
                .arg("--udp-floor")
                .arg(format!("{}:53", crate::lab::HOST))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .context("starting the udp floor")?;
            Served {
                lab,
                at: server.address(),
                child: Some(child),
                pid_file: None,
                dir,
            }
        }
    };
    wait_listening(&served.lab, &served.at, server.name())?;
    std::fs::write(served.dir.join("queries"), "peer A\n")?;
    // One query first: neighbours resolved, caches warm.
    served.run_dnsperf(&["-l", "1", "-Q", "100"])?;
    Ok(served)
}

/// What one dnsperf run measured.
struct Run {
    qps: f64,
    /// Queries answered.
    answered: f64,
    /// Per-query latencies, seconds (with -v).
    latencies: Vec<f64>,
    lost: f64,
}

/// CPU seconds process `pid` has used (all its threads).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): utime is the 12th, stime 13th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// Run time (ns) and runs of every loaded endpoint program (the fast path runs there).
fn endpoint_program_stats() -> (u64, u64) {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| {
            p.name_as_str()
                .is_some_and(|n| netpath_user::datapath::programs::ENDPOINT_TC.starts_with(n))
        })
        .fold((0, 0), |(t, n), p| {
            (t + p.run_time().as_nanos() as u64, n + p.run_count())
        })
}

impl Served {
    /// The process answering (none for the kernel's fast path).
    fn server_pid(&self, server: Server) -> Option<u32> {
        match server {
            Server::Kernel => None,
            Server::Userspace => self.lab.agent_pid(),
            Server::Aardvark => std::fs::read_to_string(self.pid_file.as_ref()?)
                .ok()?
                .trim()
                .parse()
                .ok(),
            Server::Dnsmasq | Server::Floor => self.child.as_ref().map(Child::id),
        }
    }

    fn run_dnsperf(&mut self, args: &[&str]) -> Result<Run> {
        let queries = self.dir.join("queries");
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.lab.ep.name,
                "dnsperf",
                "-s",
                &self.at,
                "-d",
            ])
            .arg(&queries)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running dnsperf (Debian package dnsperf)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("dnsperf failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let field = |key: &str| -> Option<f64> {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        };
        let qps = field("Queries per second:").context("no rate in dnsperf's output")?;
        let sent = field("Queries sent:").unwrap_or(0.0);
        let answered = field("Queries completed:").unwrap_or(0.0);
        let lost = field("Queries lost:").unwrap_or(0.0);
        let latencies = text
            .lines()
            .filter(|l| l.starts_with("> NOERROR"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        Ok(Run {
            qps,
            answered,
            latencies,
            lost: if sent > 0.0 { lost / sent } else { 0.0 },
        })
    }
}

fn p99(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// How the scenario's runs are laid out.
pub fn turns(quick: bool) -> Turns {
    Turns::with(quick, 5.0, 1.0)
}

pub fn run(quick: bool, tools: &mut Tools, p: &Progress) -> Result<Vec<Section>> {
    let turns = turns(quick);
    let secs = turns.secs.to_string();
    // A rate every variant sustains, for the latency.
    let paced = if quick { "2000" } else { "10000" };
    let figures = |unit: &str, lower: bool| {
        crate::report::figures(SERVERS.iter().map(|s| s.name()), unit, lower)
    };
    let mut rate = figures("queries/s", false);
    let mut capacity = figures("queries per CPU-second", false);
    let mut latency = figures("µs", true);
    // The kernel keeps programs' run time while this is open.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("enabling BPF run-time statistics")?;
    turns.each(&SERVERS, |i, &server, round| {
        p.step(&format!("dns: {} (round {})", server.name(), round + 1));
        let mut served = serve(server, tools)?;
        let pid = served.server_pid(server);
        if server != Server::Kernel && pid.is_none() {
            bail!("{}: no process to measure", server.name());
        }
        for _ in 0..turns.per_turn {
            let cpu_before = pid.and_then(cpu_seconds);
            let prog_before = endpoint_program_stats();
            let run = served.run_dnsperf(&["-l", &secs, "-c", "4", "-q", "200"])?;
            if run.lost > 0.01 {
                bail!(
                    "{}: dnsperf lost {:.1}% of its queries",
                    server.name(),
                    run.lost * 100.0
                );
            }
            let prog_after = endpoint_program_stats();
            let per_cpu_second = match (pid, cpu_before) {
                (Some(pid), Some(before)) => {
                    let used = cpu_seconds(pid).unwrap_or(before) - before;
                    run.answered / used.max(1e-3)
                }
                _ => {
                    let (t, n) = (prog_after.0 - prog_before.0, prog_after.1 - prog_before.1);
                    if t == 0 || n == 0 {
                        bail!("no BPF run time recorded for the endpoint program");
                    }
                    1e9 * n as f64 / t as f64
                }
            };
            capacity[i].runs.push(per_cpu_second);
            rate[i].runs.push(run.qps);
            let paced = served.run_dnsperf(&["-l", &secs, "-Q", paced, "-v"])?;
            latency[i].runs.push(p99(paced.latencies) * 1e6);
            p.inc();
        }
        Ok(())
    })?;
    let aardvark = Server::Aardvark.name();
    // What limits a missed target, from this run's own figures.
    let vs_aardvark = |figs: &[Figure], server: Server| {
        let m = |name: &str| figs.iter().find(|f| f.variant == name).map(Figure::median);
        match (m(server.name()), m(aardvark)) {
            (Some(v), Some(a)) if a > 0.0 => v / a,
            _ => f64::NAN,
        }
    };
    let userspace_cpu = vs_aardvark(&capacity, Server::Userspace);
    let kernel_cpu = vs_aardvark(&capacity, Server::Kernel);
    let dnsperf = "dnsperf, not the server, sets this rate: it needs a core of its own and shares this 2-core VM with the servers";
    let server_cpu = "the server's own CPU per query: beside its DNS work, the kernel's receive and send of each datagram, the reply's delivery through the veth to dnsperf's socket included (it runs in the sender's context)";
    let cpu_text = format!(
        "netpath's server answers {userspace_cpu:.2}× aardvark-dns's queries per CPU-second in the same runs (dns server capacity)"
    );
    Ok(vec![
        Section {
            scenario: "dns qps".into(),
            about: format!("dnsperf from one endpoint asking for another's name (A), 4 clients with 200 queries outstanding; netpath with its kernel fast path, netpath's server alone (fast path off, no rate limit), aardvark-dns and dnsmasq, each on the network's gateway; and a floor for netpath's server: its own batched UDP loop answering with the query's header alone, in the same lab (on the host's address: netpath's server holds the gateway's). {}, each turn on a server started afresh. Layout: {}.", turns.said(), crate::turns::unpinned()),
            figures: rate,
            baseline: aardvark.into(),
            targets: vec![
                Target::ratio("userspace vs aardvark-dns", Server::Userspace.name(), aardvark, 1.5)
                    .limited_by(Server::Floor.name(), server_cpu)
                    .measured(cpu_text.clone()),
                Target::ratio("kernel fast path vs aardvark-dns", Server::Kernel.name(), aardvark, 5.0)
                    .limited_as_measured(dnsperf, format!("the fast path answers {kernel_cpu:.1}× aardvark-dns's queries per CPU-second in the same runs (dns server capacity)")),
            ],
            plots: Vec::new(),
        },
        Section {
            scenario: "dns server capacity".into(),
            about: "In the same runs, queries answered per second of the server's own CPU: for aardvark-dns, dnsmasq and netpath's server the CPU time of their process; for the fast path the endpoint program's run time (BPF statistics). This is what the server could answer with a CPU to itself; the network stack's work on either side is not in it.".into(),
            figures: capacity,
            baseline: aardvark.into(),
            targets: vec![
                Target::ratio("userspace vs aardvark-dns", Server::Userspace.name(), aardvark, 1.0)
                    .limited_as_measured(server_cpu, cpu_text.clone()),
                Target::ratio("kernel fast path vs aardvark-dns", Server::Kernel.name(), aardvark, 5.0),
            ],
            plots: Vec::new(),
        },
        Section {
            scenario: "dns latency p99".into(),
            about: format!("The same query at a fixed {paced} queries/s: the 99th percentile of dnsperf's per-query latency."),
            figures: latency,
            baseline: aardvark.into(),
            targets: vec![
                Target::ratio("p99 latency, userspace vs aardvark-dns", Server::Userspace.name(), aardvark, 1.0)
                    .limited_as_measured(server_cpu, cpu_text),
                Target::ratio("p99 latency, kernel fast path vs aardvark-dns", Server::Kernel.name(), aardvark, 1.0),
            ],
            plots: Vec::new(),
        },
    ])
}
