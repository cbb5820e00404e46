//! Scenario `overlay`: endpoint to endpoint across two nodes — request/response and bulk TCP
//! from an endpoint on one node to an endpoint on the other. netpath's overlay (VXLAN through
//! one external-mode device, encapsulation and delivery in TC, etcd between the agents)
//! versus the shape of Docker's overlay driver (a Linux bridge per node with a VXLAN device
//! on it) versus plain routing over the underlay with no encapsulation (through each node's
//! IP forwarding, which netpath's redirects skip, so it is no bound for netpath), and the
//! endpoints on the underlay itself (the ceiling: every path between two nodes does this and
//! more).
use std::{net::Ipv4Addr, path::PathBuf};

use anyhow::{Context as _, Result};
use netpath_user::testing::{
    unique, veth, AgentOptions, AgentProcess, Etcd, Netns, ScratchBpffs, Underlay,
};

use crate::{
    report::{Figure, Section, Target},
    tcp::{bulk, rr, Server},
    tools::Tools,
    Progress,
};

/// The variants, in the order measured.
pub const KINDS: &[Kind] = &[
    Kind::Netpath,
    Kind::VxlanBridge,
    Kind::Routing,
    Kind::Underlay,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Netpath,
    VxlanBridge,
    Routing,
    /// Both endpoints on the underlay itself: nothing between them but its bridge (no node,
    /// no encapsulation, no forwarding). Every other variant does this and more: the ceiling.
    Underlay,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Netpath => "netpath overlay",
            Kind::VxlanBridge => "vxlan + bridge",
            Kind::Routing => "underlay routing (no encapsulation)",
            Kind::Underlay => "underlay alone (endpoints on it)",
        }
    }
}

const N1: Ipv4Addr = Ipv4Addr::new(10, 90, 0, 1);
const N2: Ipv4Addr = Ipv4Addr::new(10, 90, 0, 2);
const ETCD: Ipv4Addr = Ipv4Addr::new(10, 90, 0, 100);

/// Two nodes on an underlay with an endpoint on each: the client's namespace, and the
/// server's address.
struct Lab {
    client: Netns,
    server: Netns,
    to: Ipv4Addr,
    _nodes: Vec<Netns>,
    _agents: Vec<AgentProcess>,
    _etcd: Option<Etcd>,
    _bpffs: Option<ScratchBpffs>,
    dir: PathBuf,
    _ul: Underlay,
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Cleanup: already gone is as good as removed.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    fn new(kind: Kind, tools: &Tools) -> Result<Lab> {
        let mut ul = Underlay::new();
        let n1 = ul.member("npov-n1", N1);
        let n2 = ul.member("npov-n2", N2);
        let dir = std::env::temp_dir().join(format!("netpath-bench-overlay-{}", unique()));
        std::fs::create_dir_all(&dir)?;
        // Underlay alone: the endpoints are members of the underlay, not of a node.
        let (client, server) = if kind == Kind::Underlay {
            (
                ul.member("npov-c", Ipv4Addr::new(10, 90, 0, 11)),
                ul.member("npov-s", Ipv4Addr::new(10, 90, 0, 12)),
            )
        } else {
            (Netns::new("npov-c"), Netns::new("npov-s"))
        };
        let mut lab = Lab {
            client,
            server,
            to: Ipv4Addr::UNSPECIFIED,
            _nodes: Vec::new(),
            _agents: Vec::new(),
            _etcd: None,
            _bpffs: None,
            dir,
            _ul: ul,
        };
        match kind {
            Kind::Netpath => {
                let etcd_ns = lab._ul.member("npov-etcd", ETCD);
                let etcd = Etcd::start(&etcd_ns, ETCD, lab.dir.join("etcd"));
                let bpffs = ScratchBpffs::new().context("a bpffs for the agents' pins")?;
                let mut agents = Vec::new();
                for (ns, name) in [(&n1, "n1"), (&n2, "n2")] {
                    let mut opts =
                        AgentOptions::new(&tools.netpath_bin, &ns.name, "ul0", &lab.dir.join(name));
                    opts.bpffs = bpffs.path().join(name);
                    opts.extra = vec![
                        "--etcd".into(),
                        etcd.url(),
                        "--node-name".into(),
                        name.into(),
                    ];
                    agents.push(AgentProcess::start(opts)?);
                }
                cli(
                    &agents[0],
                    &[
                        "network",
                        "create",
                        "ov",
                        "--driver",
                        "overlay",
                        "--subnet",
                        "10.91.0.0/24",
                    ],
                )?;
                // The second node hears of the network from etcd.
                let start = std::time::Instant::now();
                while !cli(&agents[1], &["network", "ls", "-q", "--filter", "name=ov"])?
                    .contains(|c: char| c.is_ascii_hexdigit())
                {
                    anyhow::ensure!(
                        start.elapsed().as_secs() < 20,
                        "n2 never heard of the network"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                let (c, s) = (lab.client.path(), lab.server.path());
                cli(
                    &agents[0],
                    &[
                        "endpoint",
                        "create",
                        "c",
                        "--netns",
                        &c,
                        "--network",
                        "ov",
                        "--ip",
                        "10.91.0.10",
                    ],
                )?;
                cli(
                    &agents[1],
                    &[
                        "endpoint",
                        "create",
                        "s",
                        "--netns",
                        &s,
                        "--network",
                        "ov",
                        "--ip",
                        "10.91.0.20",
                    ],
                )?;
                lab.to = Ipv4Addr::new(10, 91, 0, 20);
                lab._etcd = Some(etcd);
                lab._bpffs = Some(bpffs);
                lab._agents = agents;
                lab._nodes.push(etcd_ns);
            }
            Kind::VxlanBridge => {
                for (node, me, peer, ep, addr) in [
                    (&n1, N1, N2, &lab.client, "10.92.0.10/24"),
                    (&n2, N2, N1, &lab.server, "10.92.0.20/24"),
                ] {
                    node.ip(&["link", "add", "br0", "type", "bridge"]);
                    node.ip(&[
                        "link",
                        "add",
                        "vx0",
                        "type",
                        "vxlan",
                        "id",
                        "42",
                        "dstport",
                        "4789",
                        "local",
                        &me.to_string(),
                        "remote",
                        &peer.to_string(),
                        "dev",
                        "ul0",
                    ]);
                    node.ip(&["link", "set", "vx0", "master", "br0", "mtu", "1450", "up"]);
                    node.ip(&["link", "set", "br0", "up"]);
                    let host_if = format!("v{}", unique());
                    veth(ep, "eth0", node, &host_if);
                    node.ip(&["link", "set", &host_if, "master", "br0", "mtu", "1450"]);
                    ep.ip(&["link", "set", "eth0", "mtu", "1450"]);
                    ep.ip(&["addr", "add", addr, "dev", "eth0"]);
                }
                lab.to = Ipv4Addr::new(10, 92, 0, 20);
            }
            Kind::Underlay => lab.to = Ipv4Addr::new(10, 90, 0, 12),
            Kind::Routing => {
                for (node, ep, net, peer_net, peer) in
                    [(&n1, &lab.client, 1, 2, N2), (&n2, &lab.server, 2, 1, N1)]
                {
                    let host_if = format!("v{}", unique());
                    veth(ep, "eth0", node, &host_if);
                    node.ip(&["addr", "add", &format!("10.93.{net}.1/24"), "dev", &host_if]);
                    ep.ip(&["addr", "add", &format!("10.93.{net}.2/24"), "dev", "eth0"]);
                    ep.ip(&["route", "add", "default", "via", &format!("10.93.{net}.1")]);
                    node.ip(&[
                        "route",
                        "add",
                        &format!("10.93.{peer_net}.0/24"),
                        "via",
                        &peer.to_string(),
                    ]);
                    node.sysctl("net/ipv4/ip_forward", "1");
                }
                lab.to = Ipv4Addr::new(10, 93, 2, 2);
            }
        }
        lab._nodes.push(n1);
        lab._nodes.push(n2);
        Ok(lab)
    }
}

fn cli(a: &AgentProcess, args: &[&str]) -> Result<String> {
    let out = a.cli(args)?;
    anyhow::ensure!(
        out.status.success(),
        "netpath {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every variant's lab stands at once and their runs take turns (netpath, the bridge, the
/// floor; again), so a drift of the machine's speed during the scenario hits each alike.
pub fn run(quick: bool, tools: &mut Tools, p: &Progress) -> Result<Vec<Section>> {
    let (secs, runs) = if quick { (0.3, 2) } else { (3.0, 5) };
    let mut labs = Vec::new();
    for kind in KINDS {
        p.step(&format!("overlay: {}", kind.name()));
        let lab = Lab::new(*kind, tools)?;
        let server = Server::start(&lab.server)?;
        rr(&lab.client, (lab.to, 80), 0.05)
            .with_context(|| format!("{}: first exchange", kind.name()))?;
        labs.push((*kind, lab, server));
    }
    let mut tps: Vec<Figure> = KINDS
        .iter()
        .map(|k| Figure::new(k.name(), "transactions/s", false))
        .collect();
    let mut gbit: Vec<Figure> = KINDS
        .iter()
        .map(|k| Figure::new(k.name(), "Gbit/s", false))
        .collect();
    for _ in 0..runs {
        for (i, (kind, lab, _)) in labs.iter().enumerate() {
            p.step(&format!("overlay: {}", kind.name()));
            let to = (lab.to, 80);
            tps[i].runs.push(rr(&lab.client, to, secs)?.0);
            gbit[i].runs.push(bulk(&lab.client, to, secs)?);
            p.inc();
        }
    }
    // perf's view of one more netpath run: how much of the CPUs' busy time its programs take.
    let (_, share) = {
        let (_, lab, _) = &labs[0];
        crate::perf::netpath_share_of_busy(|| rr(&lab.client, (lab.to, 80), secs))?
    };
    drop(labs);
    let about = format!(
        "Endpoint to endpoint across two nodes (namespaces on one underlay bridge), {runs} runs of {secs} s per variant, the variants taking turns."
    );
    let (np, base, floor) = (
        Kind::Netpath.name(),
        Kind::VxlanBridge.name(),
        Kind::Underlay.name(),
    );
    let why = "the same two TCP stacks on the underlay with nothing between them; what the overlays add to it is a node on each side and the kernel's VXLAN device (encapsulation, the outer UDP and IP, decapsulation)";
    let measured = format!(
        "netpath's programs take {share:.1}% of the CPUs' busy time in a request/response run (perf, every CPU)"
    );
    let section = |scenario: &str, figures, target: Target| Section {
        scenario: scenario.into(),
        about: about.clone(),
        figures,
        baseline: base.into(),
        targets: vec![target.limited_by(floor, why).measured(measured.clone())],
        plots: Vec::new(),
    };
    Ok(vec![
        section(
            "overlay rr",
            tps,
            Target::ratio("transactions/s", np, base, 1.1),
        ),
        section(
            "overlay bulk",
            gbit,
            Target::ratio("bulk throughput", np, base, 1.0),
        ),
    ])
}
