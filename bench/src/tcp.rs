//! Scenario `tcp` (and `tcp6`, over IPv6 beside IPv4's twin): request/response transactions
//! per second with latency, and bulk throughput, through a published TCP port, with real
//! sockets.
use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use netpath_user::testing::Netns;

use crate::{
    lab::Kind,
    report::{Figure, Section, Target},
    rig::Rig,
    tools::Tools,
    turns::Turns,
    Progress,
};

/// A server in the endpoint's namespace on port 80: echoes 1-byte requests, or swallows a
/// stream; stops when dropped.
/// The name of the threads that serve one connection each.
pub(crate) const SERVING: &str = "tcp-serving";

pub(crate) struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) fn start(ns: &Netns) -> Result<Server> {
        Server::start_on(ns, 80)
    }

    /// On port 80 of every address of both families (`[::]`).
    fn start6(ns: &Netns) -> Result<Server> {
        Server::listen(ns, (std::net::Ipv6Addr::UNSPECIFIED, 80).into())
    }

    fn start_on(ns: &Netns, port: u16) -> Result<Server> {
        Server::listen(ns, (Ipv4Addr::UNSPECIFIED, port).into())
    }

    fn listen(ns: &Netns, at: SocketAddr) -> Result<Server> {
        let l = ns
            .run(|| TcpListener::bind(at))
            .with_context(|| format!("bind {at}"))?;
        l.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        // Named, so what a connection's server waits for a CPU can be found
                        // (`flood`). A connection that cannot get a thread is not served.
                        let _ = std::thread::Builder::new()
                            .name(SERVING.into())
                            .spawn(move || serve(c));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Server {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // A thread that panicked has printed why; its result adds nothing here.
            let _ = t.join();
        }
    }
}

/// Echoes each byte back when the client sends single bytes; otherwise just reads.
fn serve(mut c: TcpStream) {
    // A socket option that does not take leaves the default: only timing changes.
    let _ = c.set_nodelay(true);
    let _ = c.set_nonblocking(false);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(1) => {
                if c.write_all(&buf[..1]).is_err() {
                    return;
                }
            }
            Ok(_) => {}
        }
    }
}

pub(crate) fn connect(ns: &Netns, to: impl Into<SocketAddr>) -> Result<TcpStream> {
    let addr = to.into();
    let c = ns
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(3)))
        .with_context(|| format!("connecting to {addr}"))?;
    c.set_nodelay(true)?;
    c.set_read_timeout(Some(Duration::from_secs(3)))?;
    c.set_write_timeout(Some(Duration::from_secs(3)))?;
    Ok(c)
}

/// One request/response run: (transactions per second, latencies in µs).
pub fn rr(ns: &Netns, to: impl Into<SocketAddr>, secs: f64) -> Result<(f64, Vec<f64>)> {
    let mut c = connect(ns, to)?;
    let mut lat = Vec::new();
    let mut b = [7u8; 1];
    let start = Instant::now();
    let dur = Duration::from_secs_f64(secs);
    while start.elapsed() < dur {
        let t = Instant::now();
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
        lat.push(t.elapsed().as_nanos() as f64 / 1e3);
    }
    Ok((lat.len() as f64 / start.elapsed().as_secs_f64(), lat))
}

/// One bulk run: Gbit/s sent and acknowledged through the path.
pub fn bulk(ns: &Netns, to: impl Into<SocketAddr>, secs: f64) -> Result<f64> {
    let mut c = connect(ns, to)?;
    let buf = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    let dur = Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    while start.elapsed() < dur {
        c.write_all(&buf)?;
        sent += buf.len() as u64;
    }
    c.shutdown(std::net::Shutdown::Write)?;
    // Wait for the server to have read everything (it closes after EOF).
    let mut sink = [0u8; 16];
    // Only the server closing matters: EOF or an error both mean it read everything.
    let _ = c.read(&mut sink);
    Ok(sent as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9)
}

pub const KINDS: &[Kind] = &[
    Kind::NetpathTc,
    Kind::Iptables,
    Kind::DockerProxy,
    Kind::Routing,
];

/// Latencies of every variant, for the distribution plot.
pub type Latencies = Vec<(String, Vec<f64>)>;

/// How the TCP scenarios' runs are laid out.
pub fn turns(quick: bool) -> Turns {
    Turns::with(quick, 3.0, 0.3)
}

/// The layout of a TCP scenario, said in its report: nothing pinned, and the congestion
/// control the connections use (the host's: a namespace takes it when it is made). It sets
/// what a bulk run reaches: a BBR sender paces itself by the delivery rate it measures,
/// a CUBIC sender sends what its window allows, and the same path can differ by several
/// times between the two.
fn layout() -> String {
    format!("{}; {}", crate::turns::unpinned(), congestion_control())
}

/// The congestion control the connections use, said in a report.
fn congestion_control() -> String {
    let cc = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_string());
    format!("TCP congestion control {cc} (the host's)")
}

/// The CPU the one-connection scenarios (`tcp`, `tcp6`, `e2e`, `e2e6`) run on, all of it.
const ONE_CPU: usize = crate::rig::PATH_CPU;

/// Pins the calling thread, and with it everything a one-connection scenario starts (the
/// client, the server, a proxy, the agent), to [`ONE_CPU`]; returns the guard and the
/// layout, said in the report. Left to the scheduler, a client and its server share a CPU in
/// some runs and not in others, and one connection's rate differs by a quarter between the
/// two: the medians of three turns then compare where the scheduler put them. On one CPU a
/// transaction costs its two TCP stacks' and its path's work, in turn, and nothing else.
fn on_one_cpu() -> Result<(PinnedTo, String)> {
    let pinned = PinnedTo::cpu(ONE_CPU)?;
    let layout = format!("everything on CPU {ONE_CPU}: the client, the server (and docker-proxy where it runs) and the path, which runs in their send calls' softirqs; {}", congestion_control());
    Ok((pinned, layout))
}

/// One figure per variant named `names`, in `unit`.
fn figures(names: &[String], unit: &str, lower_is_better: bool) -> Vec<Figure> {
    crate::report::figures(names.iter().cloned(), unit, lower_is_better)
}

/// The median of the figure of `variant` among `figs`.
fn median_of(figs: &[Figure], variant: &str) -> f64 {
    figs.iter()
        .find(|f| f.variant == variant)
        .map_or(f64::NAN, Figure::median)
}

/// Each variant's latencies, sorted, for the distribution plot.
fn distributions(names: &[String], all: Vec<Vec<f64>>) -> Latencies {
    names
        .iter()
        .zip(all)
        .map(|(n, mut lat)| {
            lat.sort_by(|a, b| a.total_cmp(b));
            (n.clone(), lat)
        })
        .collect()
}

pub fn run(quick: bool, tools: &mut Tools, p: &Progress) -> Result<(Vec<Section>, Latencies)> {
    let (_pinned, layout) = on_one_cpu()?;
    let turns = turns(quick);
    let names: Vec<String> = KINDS.iter().map(|k| k.name().to_string()).collect();
    let mut tps = figures(&names, "transactions/s", false);
    let mut p50 = figures(&names, "µs", true);
    let mut p99 = figures(&names, "µs", true);
    let mut gbit = figures(&names, "Gbit/s", false);
    let mut all = vec![Vec::new(); KINDS.len()];
    turns.each(KINDS, |i, kind, round| {
        p.step(&format!("tcp: {} (round {})", kind.name(), round + 1));
        let lab = Rig::new(*kind, tools, true, false)?;
        let _server = Server::start(&lab.ep)?;
        let to = lab.tcp_target();
        // Warm up: one short exchange resolves neighbours and starts the proxy's path.
        rr(&lab.outside, to, 0.05)?;
        for _ in 0..turns.per_turn {
            let (rate, mut lat) = rr(&lab.outside, to, turns.secs)?;
            tps[i].runs.push(rate);
            lat.sort_by(|a, b| a.total_cmp(b));
            p50[i].runs.push(percentile(&lat, 0.50));
            p99[i].runs.push(percentile(&lat, 0.99));
            all[i].extend(lat);
            gbit[i].runs.push(bulk(&lab.outside, to, turns.secs)?);
            p.inc();
        }
        Ok(())
    })?;
    let dists = distributions(&names, all);
    let np = Kind::NetpathTc.name();
    let (ipt, proxy, routing) = (
        Kind::Iptables.name(),
        Kind::DockerProxy.name(),
        Kind::Routing.name(),
    );
    let about = format!("One TCP connection through the published port; the routing variant talks to the endpoint's address with no NAT (the floor of this path). {}, each turn on a lab made afresh. Layout: {}.", turns.said(), layout);
    let section = |scenario: &str, figures, targets| Section {
        scenario: scenario.into(),
        about: about.clone(),
        figures,
        baseline: ipt.into(),
        targets,
        plots: Vec::new(),
    };
    Ok((
        vec![
            section(
                "tcp rr",
                tps,
                vec![
                    Target::ratio("transactions/s", np, ipt, 1.1),
                    Target::ratio("transactions/s", np, proxy, 1.4),
                    Target::ratio("transactions/s", np, routing, 1.0),
                ],
            ),
            section(
                "tcp latency p50",
                p50,
                vec![Target::ratio("p50 latency", np, ipt, 1.0)],
            ),
            section(
                "tcp latency p99",
                p99,
                vec![Target::ratio("p99 latency", np, ipt, 1.0)],
            ),
            section(
                "tcp bulk",
                gbit,
                vec![
                    Target::ratio("bulk throughput", np, ipt, 1.0),
                    Target::ratio("bulk throughput", np, proxy, 1.3),
                ],
            ),
        ],
        dists,
    ))
}

/// A turn's transactions/s and bulk Gbit/s from `client` to `to`, added to `t` and `g`,
/// after a warm-up that waits (up to two seconds) for the path to answer: neighbour
/// discovery while the addresses come up.
fn rr_and_bulk(
    client: &Netns,
    to: SocketAddr,
    (t, g): (&mut Figure, &mut Figure),
    turns: &Turns,
    p: &Progress,
) -> Result<()> {
    let mut warm = rr(client, to, 0.05);
    for _ in 0..20 {
        if warm.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        warm = rr(client, to, 0.05);
    }
    warm?;
    for _ in 0..turns.per_turn {
        t.runs.push(rr(client, to, turns.secs)?.0);
        g.runs.push(bulk(client, to, turns.secs)?);
        p.inc();
    }
    Ok(())
}

/// The variants of `tcp6`: netpath's TC path on IPv6 and on IPv4 in the same run (its twin),
/// and ip6tables (Docker's rules with `--ipv6`).
pub const KINDS6: &[(Kind, bool)] = &[
    (Kind::NetpathTc, true),
    (Kind::NetpathTc, false),
    (Kind::Iptables, true),
];

/// Scenario `tcp6`: `tcp`'s transactions and bulk over IPv6, to a port published on `[::]`.
pub fn run6(quick: bool, tools: &mut Tools, p: &Progress) -> Result<Vec<Section>> {
    let (_pinned, layout) = on_one_cpu()?;
    let turns = turns(quick);
    let names: Vec<String> = KINDS6
        .iter()
        .map(|&(kind, ipv6)| crate::rig::twin_name(kind, ipv6, "ip6tables"))
        .collect();
    let (mut tps, mut gbit) = (
        figures(&names, "transactions/s", false),
        figures(&names, "Gbit/s", false),
    );
    turns.each(KINDS6, |i, &(kind, ipv6), round| {
        p.step(&format!("tcp6: {} (round {})", names[i], round + 1));
        let lab = Rig::of_family(kind, tools, ipv6, false)?;
        let _server = Server::start6(&lab.ep)?;
        let to: SocketAddr = if ipv6 {
            (crate::lab::HOST6, crate::lab::TCP_PORT).into()
        } else {
            lab.tcp_target().into()
        };
        rr_and_bulk(&lab.outside, to, (&mut tps[i], &mut gbit[i]), &turns, p)
    })?;
    let (np6, np4, ipt6) = ("netpath tc (IPv6)", "netpath tc (IPv4)", "ip6tables");
    let about = format!("One TCP connection over IPv6 through a port published on `[::]`, and the same over IPv4 through netpath in the same run. {}, each turn on a lab made afresh. Layout: {}.", turns.said(), layout);
    let section = |scenario: &str, figures, targets| Section {
        scenario: scenario.into(),
        about: about.clone(),
        figures,
        baseline: ipt6.into(),
        targets,
        plots: Vec::new(),
    };
    Ok(vec![
        section(
            "tcp6 rr",
            tps,
            vec![
                Target::ratio("transactions/s, as IPv4's against iptables", np6, ipt6, 1.1),
                Target::ratio("within 10% of the IPv4 twin", np6, np4, 0.9),
            ],
        ),
        section(
            "tcp6 bulk",
            gbit,
            vec![
                Target::ratio(
                    "bulk throughput, as IPv4's against iptables",
                    np6,
                    ipt6,
                    1.0,
                ),
                Target::ratio("within 10% of the IPv4 twin", np6, np4, 0.9),
            ],
        ),
    ])
}

/// The `q` quantile of sorted `v`.
pub fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

pub const PEER_KINDS: &[Kind] = &[Kind::NetpathTc, Kind::Iptables, Kind::DirectVeth];

/// Scenario `e2e`: endpoint to endpoint on one network — request/response and bulk TCP from
/// a second endpoint to the first, netpath (veth to veth in eBPF) versus a Linux bridge with
/// Docker's iptables rules.
pub fn peers(quick: bool, tools: &mut Tools, p: &Progress) -> Result<(Vec<Section>, Latencies)> {
    let (_pinned, layout) = on_one_cpu()?;
    let turns = turns(quick);
    let names: Vec<String> = PEER_KINDS
        .iter()
        .map(|k| match k {
            Kind::Iptables => "bridge + iptables".to_string(),
            k => k.name().to_string(),
        })
        .collect();
    let mut tps = figures(&names, "transactions/s", false);
    let mut p99 = figures(&names, "µs", true);
    let mut gbit = figures(&names, "Gbit/s", false);
    let mut all = vec![Vec::new(); PEER_KINDS.len()];
    turns.each(PEER_KINDS, |i, kind, round| {
        p.step(&format!("e2e: {} (round {})", names[i], round + 1));
        let mut lab = Rig::new(*kind, tools, true, false)?;
        lab.add_peer()?;
        let _server = Server::start(&lab.ep)?;
        let client = lab.peer.as_ref().context("peer")?;
        let to = (crate::lab::EP, 80);
        rr(client, to, 0.05)?;
        for _ in 0..turns.per_turn {
            let (rate, mut lat) = rr(client, to, turns.secs)?;
            tps[i].runs.push(rate);
            lat.sort_by(|a, b| a.total_cmp(b));
            p99[i].runs.push(percentile(&lat, 0.99));
            all[i].extend(lat);
            gbit[i].runs.push(bulk(client, to, turns.secs)?);
            p.inc();
        }
        Ok(())
    })?;
    let dists = distributions(&names, all);
    let about = format!("Endpoint to endpoint on one network (172.17.0.3 → 172.17.0.2:80). {}, each turn on a lab made afresh. Layout: {}.", turns.said(), layout);
    let base = "bridge + iptables";
    let np = Kind::NetpathTc.name();
    let direct = |t: Target| {
        t.limited_by(
            Kind::DirectVeth.name(),
            "the endpoints' own veths and TCP stacks, which any path between them keeps",
        )
    };
    let section = |scenario: &str, figures, target: Target| Section {
        scenario: scenario.into(),
        about: about.clone(),
        figures,
        baseline: base.into(),
        targets: vec![target],
        plots: Vec::new(),
    };
    Ok((
        vec![
            section(
                "e2e rr",
                tps,
                direct(Target::ratio("transactions/s", np, base, 1.3)),
            ),
            section(
                "e2e latency p99",
                p99,
                Target::ratio("p99 latency", np, base, 1.0),
            ),
            section(
                "e2e bulk",
                gbit,
                direct(Target::ratio("bulk throughput", np, base, 1.2)),
            ),
        ],
        dists,
    ))
}

/// The variants of `e2e6`: netpath on IPv6 and on IPv4 in the same run (its twin), a
/// Linux bridge with IPv6, and the direct veth's floor over IPv6.
pub const PEER_KINDS6: &[(Kind, bool)] = &[
    (Kind::NetpathTc, true),
    (Kind::NetpathTc, false),
    (Kind::Iptables, true),
    (Kind::DirectVeth, true),
];

/// Scenario `e2e6`: `e2e` over IPv6 (fd00:17::3 → fd00:17::2:80).
pub fn peers6(quick: bool, tools: &mut Tools, p: &Progress) -> Result<Vec<Section>> {
    let (_pinned, layout) = on_one_cpu()?;
    let turns = turns(quick);
    let names: Vec<String> = PEER_KINDS6
        .iter()
        .map(|&(kind, ipv6)| crate::rig::twin_name(kind, ipv6, "bridge (IPv6)"))
        .collect();
    let (mut tps, mut gbit) = (
        figures(&names, "transactions/s", false),
        figures(&names, "Gbit/s", false),
    );
    turns.each(PEER_KINDS6, |i, &(kind, ipv6), round| {
        p.step(&format!("e2e6: {} (round {})", names[i], round + 1));
        let mut lab = Rig::of_family(kind, tools, ipv6, false)?;
        lab.add_peer()?;
        let _server = Server::start6(&lab.ep)?;
        let client = lab.peer.as_ref().context("peer")?;
        let to: SocketAddr = if ipv6 {
            (crate::lab::EP6, 80).into()
        } else {
            (crate::lab::EP, 80).into()
        };
        rr_and_bulk(client, to, (&mut tps[i], &mut gbit[i]), &turns, p)
    })?;
    let about = format!("Endpoint to endpoint on one network over IPv6 (fd00:17::3 → fd00:17::2:80), and netpath's IPv4 twin in the same run. {}, each turn on a lab made afresh. Layout: {}.", turns.said(), layout);
    let (np6, np4, base) = ("netpath tc (IPv6)", "netpath tc (IPv4)", "bridge (IPv6)");
    let direct = |t: Target| {
        t.limited_by(
            "direct veth (no host) (IPv6)",
            "the endpoints' own veths and TCP stacks, which any path between them keeps",
        )
    };
    let section = |scenario: &str, figures, targets| Section {
        scenario: scenario.into(),
        about: about.clone(),
        figures,
        baseline: base.into(),
        targets,
        plots: Vec::new(),
    };
    Ok(vec![
        section(
            "e2e6 rr",
            tps,
            vec![
                direct(Target::ratio(
                    "transactions/s, as IPv4's against the bridge",
                    np6,
                    base,
                    1.3,
                )),
                Target::ratio("within 10% of the IPv4 twin", np6, np4, 0.9),
            ],
        ),
        section(
            "e2e6 bulk",
            gbit,
            vec![
                direct(Target::ratio(
                    "bulk throughput, as IPv4's against the bridge",
                    np6,
                    base,
                    1.2,
                )),
                Target::ratio("within 10% of the IPv4 twin", np6, np4, 0.9),
            ],
        ),
    ])
}

/// Scenario `host`: the host's own processes reaching a published port on 127.0.0.1 —
/// netpath's socket hooks, docker-proxy, and iptables DNAT with route_localnet — and the rate
/// of new outbound connections from an endpoint, netpath's source NAT versus iptables
/// MASQUERADE.
pub fn host(quick: bool, tools: &mut Tools, p: &Progress) -> Result<Vec<Section>> {
    let turns = Turns::with(quick, 2.0, 0.3);
    let local_name = |kind: &Kind| match kind {
        Kind::Iptables => "iptables + route_localnet".to_string(),
        Kind::NetpathTc => "netpath socket hooks".to_string(),
        k => k.name().to_string(),
    };
    let names: Vec<String> = HOST_KINDS.iter().map(local_name).collect();
    let mut local = figures(&names, "transactions/s", false);
    turns.each(HOST_KINDS, |i, kind, round| {
        p.step(&format!("host: {} (round {})", kind.name(), round + 1));
        let lab = Rig::new(*kind, tools, true, false)?;
        if *kind == Kind::Iptables {
            lab.iptables_localhost()?;
        }
        let _server = Server::start(&lab.ep)?;
        let to = (Ipv4Addr::LOCALHOST, crate::lab::TCP_PORT);
        rr(&lab.host, to, 0.05)?;
        for _ in 0..turns.per_turn {
            local[i].runs.push(rr(&lab.host, to, turns.secs)?.0);
            p.inc();
        }
        Ok(())
    })?;
    let out_name = |kind: &Kind| match kind {
        Kind::Iptables => "iptables MASQUERADE".to_string(),
        Kind::NetpathTc => "netpath source NAT".to_string(),
        k => k.name().to_string(),
    };
    let names: Vec<String> = OUT_KINDS.iter().map(out_name).collect();
    let mut out = figures(&names, "connections/s", false);
    turns.each(OUT_KINDS, |i, kind, round| {
        p.step(&format!("outbound: {} (round {})", kind.name(), round + 1));
        let lab = Rig::new(*kind, tools, true, false)?;
        let _servers: Vec<Acceptor> = (0..8)
            .map(|i| Acceptor::start(&lab.outside, 9000 + i))
            .collect::<Result<_>>()?;
        for _ in 0..turns.per_turn {
            out[i]
                .runs
                .push(connect_rate(&lab.ep, crate::lab::OUTSIDE_ADDR, turns.secs)?);
            p.inc();
        }
        Ok(())
    })?;
    let (said, layout) = (turns.said(), layout());
    let masquerade = format!(
        "iptables MASQUERADE measures {:.2} of routing in the same runs",
        median_of(&out, "iptables MASQUERADE") / median_of(&out, Kind::Routing.name())
    );
    Ok(vec![
        Section {
            scenario: "host-local".into(),
            about: format!("One TCP connection from a process in the host's namespace to 127.0.0.1:8080, published by an endpoint; 1-byte transactions. {said}, each turn on a lab made afresh. Layout: {layout}."),
            figures: local,
            baseline: "docker-proxy".into(),
            targets: vec![Target::ratio(
                "host-local transactions",
                "netpath socket hooks",
                "docker-proxy",
                1.5,
            )],
            plots: Vec::new(),
        },
        Section {
            scenario: "outbound".into(),
            about: format!("New TCP connections per second from an endpoint to servers beyond the uplink (connect, then close with RST), {CLIENTS} client threads at once, the servers accepting as fast as they can. Routing without NAT (the endpoint's own address on the wire) is the floor of any source NAT here. {said}, each turn on a lab made afresh. Layout: {layout}."),
            figures: out,
            baseline: "iptables MASQUERADE".into(),
            targets: vec![Target::ratio(
                "new outbound connections per second, of routing without NAT",
                "netpath source NAT",
                Kind::Routing.name(),
                0.95,
            )
            .limited_as_measured(
                "per new connection a port allocation (random tries) and two flow-table inserts (the connection and its replies), then a lookup of each per packet and a rewrite with two checksum helpers",
                masquerade,
            )],
            plots: Vec::new(),
        },
    ])
}

pub const TAX_KINDS: &[Kind] = &[
    Kind::Detached,
    Kind::TcProgramOnly,
    Kind::NetpathTc,
    Kind::EmptyTc,
    Kind::EmptyXdp,
    Kind::ReadXdp,
    Kind::NetpathXdp,
];

/// The host's own UDP service on the uplink (not published: the host answers it).
const TAX_UDP_PORT: u16 = 9200;
/// The host's own TCP service on the uplink.
const TAX_TCP_PORT: u16 = 9100;

/// Packets the host's IP layer handed to its protocols so far (`Ip: InDelivers`).
fn ip_delivered(ns: &Netns) -> Result<u64> {
    snmp(ns, "Ip", "InDelivers")
}

/// Counter `name` of `group` in namespace `ns`'s /proc/net/snmp (a line of the group's
/// names, then one of its values).
pub(crate) fn snmp(ns: &Netns, group: &str, name: &str) -> Result<u64> {
    let text = ns.exec("cat", &["/proc/net/snmp"]);
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        anyhow::bail!("no {prefix} lines in /proc/net/snmp");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .with_context(|| format!("{prefix} {name} in /proc/net/snmp"))
}

/// Keeps the calling thread (and the threads it starts: clients, servers) on one CPU until
/// dropped.
struct PinnedTo(nix::sched::CpuSet);

impl PinnedTo {
    fn cpu(cpu: usize) -> Result<PinnedTo> {
        let before = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))?;
        crate::tools::pin_self(cpu)?;
        Ok(PinnedTo(before))
    }
}

impl Drop for PinnedTo {
    fn drop(&mut self) {
        // Pinning is best effort: unpinned only adds noise.
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &self.0);
    }
}

/// Scenario `tax`: the host's own traffic on the uplink — TCP request/response and bulk to a
/// service of the host, and a UDP flood to another — with netpath's programs attached (a port
/// published, so its maps are not empty) and with nothing attached. What netpath costs
/// traffic that is not its own. The variants' labs stand side by side and are measured in
/// turns, so drift of the machine falls on all alike; clients, servers and the generator run
/// on one CPU, the uplink's receive path on the other.
pub fn tax(quick: bool, tools: &mut Tools, p: &Progress) -> Result<Vec<Section>> {
    let (secs, runs) = if quick { (0.3, 2) } else { (3.0, 5) };
    let _pinned = PinnedTo::cpu(crate::rig::GENERATOR_CPU)?;
    let flood = crate::tools::Traffic {
        dst: crate::lab::HOST.into(),
        dport: TAX_UDP_PORT,
        src_addrs: 4,
        src_ports: 256,
    };
    let to = (crate::lab::HOST, TAX_TCP_PORT);
    struct Variant {
        lab: Rig,
        _tcp: Server,
        _udp: std::net::UdpSocket,
        figures: [Figure; 4],
    }
    let mut variants = Vec::new();
    for kind in TAX_KINDS {
        p.step(&format!("tax: {}", kind.name()));
        let lab = Rig::new(*kind, tools, true, true)?;
        let tcp = Server::start_on(&lab.host, TAX_TCP_PORT)?;
        let udp = lab
            .host
            .run(|| std::net::UdpSocket::bind(("0.0.0.0", TAX_UDP_PORT)))
            .context("the host's UDP service")?;
        rr(&lab.outside, to, 0.05)?;
        tools.generate(&lab.wire(), flood, Duration::from_millis(50))?;
        let name = match kind {
            Kind::Detached => kind.name().to_string(),
            k => format!("{} attached", k.name()),
        };
        variants.push(Variant {
            lab,
            _tcp: tcp,
            _udp: udp,
            figures: [
                Figure::new(&name, "transactions/s", false),
                Figure::new(&name, "Gbit/s", false),
                Figure::new(&name, "% of the path's CPU", true),
                Figure::new(&name, "Mpps", false),
            ],
        });
    }
    let layout = variants
        .first()
        .map(|v| v.lab.layout.clone())
        .unwrap_or_default();
    for _ in 0..runs {
        for v in &mut variants {
            p.step(&format!("tax: {}", v.figures[0].variant));
            v.lab.keep_cpus_apart()?;
            let [t, g, u, m] = &mut v.figures;
            t.runs.push(rr(&v.lab.outside, to, secs)?.0);
            g.runs.push(bulk(&v.lab.outside, to, secs)?);
            let before = ip_delivered(&v.lab.host)?;
            let ((sent, took), busy) = crate::perf::busy_while(crate::rig::PATH_CPU, || {
                tools.generate(&v.lab.wire(), flood, Duration::from_secs_f64(secs))
            })?;
            let delivered = ip_delivered(&v.lab.host)? - before;
            m.runs.push(delivered as f64 / took.as_secs_f64() / 1e6);
            m.offered.push(sent as f64 / took.as_secs_f64() / 1e6);
            m.busy.push(busy);
            // The share in a run of its own: sampling slows the path it samples.
            let (_, share) = crate::perf::netpath_share(crate::rig::PATH_CPU, || {
                tools.generate(&v.lab.wire(), flood, Duration::from_secs_f64(secs))
            })?;
            u.runs.push(share);
            p.inc();
        }
    }
    let (mut tps, mut gbit, mut share, mut pps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for v in variants {
        let [t, g, u, m] = v.figures;
        tps.push(t);
        gbit.push(g);
        share.push(u);
        pps.push(m);
    }
    let base = Kind::Detached.name();
    let about = format!(
        "The host's own traffic on the uplink, not netpath's: one TCP connection from the outside to a service of the host (1-byte transactions; bulk), and a UDP flood of 64-byte frames from 1,024 flows to a port of the host (counted as the host's IP layer delivers them). netpath variants run the agent with a port published; the baseline has nothing attached; floors show what any program costs there: an empty TC program, an empty XDP program (XDP on this veth uplink, whatever the program) and an XDP program that only reads each frame's headers. The variants stand side by side and take turns, {runs} runs of {secs} s each. CPUs: {layout}; the clients and servers on the generator's CPU."
    );
    let attached = |k: Kind| format!("{} attached", k.name());
    let (tc, xdp, empty) = (
        attached(Kind::NetpathTc),
        attached(Kind::NetpathXdp),
        attached(Kind::EmptyXdp),
    );
    let (empty_tc, read) = (attached(Kind::EmptyTc), attached(Kind::ReadXdp));
    const ANY_TC: &str = "a TC program on the uplink runs for each of the host's packets, on its skb, and netpath's reads the headers and the destination port's array slot before it passes one";
    const READING: &str = "netpath's program reads each frame's headers and the destination port's array slot before it passes one";
    let section = |scenario: &str, figures: Vec<Figure>, what: &str| {
        // At most 3% lost: a rate kept ≥ 0.97, a cost grown ≤ 1.03; against nothing
        // attached, and netpath's XDP program against an empty one (what XDP on this
        // uplink costs whatever the program).
        let bound = if figures.iter().any(|f| f.lower_is_better) {
            1.03
        } else {
            0.97
        };
        let targets = vec![
            Target::ratio(what, &tc, base, bound).limited_by(&empty_tc, ANY_TC),
            Target::ratio(what, &xdp, base, bound).limited_by(
                &empty,
                "XDP on this (veth) uplink costs whatever the program",
            ),
            Target::ratio(what, &xdp, &empty, bound).limited_by(&read, READING),
        ];
        Section {
            scenario: scenario.into(),
            about: about.clone(),
            figures,
            baseline: base.into(),
            targets,
            plots: Vec::new(),
        }
    };
    let mut cpu = section("host tax: udp cpu", share, "");
    cpu.about = format!(
        "The same UDP flood to a port of the host: the share of the receiving path's CPU (perf, cpu-clock samples of CPU {} with call chains) spent in netpath's programs and what they call — the part of the host's own packet processing that is netpath's. The path keeps up with the generator here, so its cost shows as CPU, not as packets lost. {runs} runs of {secs} s per variant.",
        crate::rig::PATH_CPU
    );
    let share_of =
        |v: &str| Target::absolute("share of the host path's CPU in netpath (%)", v, 3.0);
    cpu.targets = vec![
        share_of(&tc).limited_by(&empty_tc, ANY_TC),
        share_of(&xdp).limited_by(&read, READING),
    ];
    // The host's path keeps up with the generator: its packets per second of the path's CPU
    // are what netpath's programs tax (as delivered they are the generator's turn's rate).
    let mut udp = section("host tax: udp", pps, "the host's UDP packets/s kept");
    udp.targets = udp.targets.into_iter().map(Target::per_path_cpu).collect();
    Ok(vec![
        section("host tax: tcp rr", tps, "the host's transactions/s kept"),
        section(
            "host tax: tcp bulk",
            gbit,
            "the host's bulk throughput kept",
        ),
        udp,
        cpu,
    ])
}

pub const HOST_KINDS: &[Kind] = &[Kind::NetpathTc, Kind::DockerProxy, Kind::Iptables];
pub const OUT_KINDS: &[Kind] = &[Kind::NetpathTc, Kind::Iptables, Kind::Routing];

/// Client threads opening connections at once in [`connect_rate`].
const CLIENTS: usize = 4;

/// A server that accepts connections and drops them, as fast as it can (blocking accept; a
/// connection to itself wakes it to stop).
struct Acceptor {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    ns: String,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    fn start(ns: &Netns, port: u16) -> Result<Acceptor> {
        let l = ns
            .run(|| TcpListener::bind(("0.0.0.0", port)))
            .with_context(|| format!("bind :{port}"))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                // A failed accept is retried by the loop.
                let _ = l.accept();
            }
        });
        Ok(Acceptor {
            stop,
            addr,
            ns: ns.path(),
            thread: Some(thread),
        })
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let (addr, path) = (self.addr, self.ns.clone());
        // A connection from inside its namespace wakes the blocking accept.
        let woken = std::thread::spawn(move || -> std::io::Result<TcpStream> {
            nix::sched::setns(
                std::fs::File::open(&path)?,
                nix::sched::CloneFlags::CLONE_NEWNET,
            )?;
            TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        })
        .join()
        .is_ok_and(|r| r.is_ok());
        if woken {
            if let Some(t) = self.thread.take() {
                // A thread that panicked has printed why; its result adds nothing here.
                let _ = t.join();
            }
        }
    }
}

/// Connections per second from `ns` by [`CLIENTS`] threads at once, round-robin over ports
/// 9000-9007 of `to`.
fn connect_rate(ns: &Netns, to: Ipv4Addr, secs: f64) -> Result<f64> {
    let dur = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let counts: Vec<Result<u64>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|w| {
                scope.spawn(move || {
                    ns.run(|| -> Result<u64> {
                        let mut n = 0u64;
                        while start.elapsed() < dur {
                            let port = 9000 + ((n + w as u64) % 8) as u16;
                            let addr = SocketAddr::from((to, port));
                            let c = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                                .with_context(|| format!("connecting to {addr}"))?;
                            // Close with RST: no TIME_WAIT piling up on the client.
                            set_linger_zero(&c);
                            drop(c);
                            n += 1;
                        }
                        Ok(n)
                    })
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a client panicked")))
            })
            .collect()
    });
    let mut total = 0;
    for c in counts {
        total += c?;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// SO_LINGER with a zero timeout: close() sends RST.
fn set_linger_zero(c: &TcpStream) {
    let l = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid socket and option value of the right size.
    unsafe {
        nix::libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(c),
            nix::libc::SOL_SOCKET,
            nix::libc::SO_LINGER,
            (&l as *const nix::libc::linger).cast(),
            std::mem::size_of::<nix::libc::linger>() as nix::libc::socklen_t,
        );
    }
}
