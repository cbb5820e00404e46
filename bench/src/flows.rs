//! Scenario `flows`: connections at scale. A million published-port flows and a hundred
//! thousand outbound flows, each made by the kernel programs themselves (one
//! BPF_PROG_TEST_RUN per new flow, as its first packet would), held with none lost, the map
//! memory they take, and what happens past capacity: the flow tables are LRU maps, so a new
//! flow beyond capacity evicts the least recently used one — flows that carry traffic are
//! kept, idle ones go first — and the report counts both.
use std::net::Ipv4Addr;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use aya::programs::{TestRun, TestRunOptions};
use netpath_user::{
    datapath::{flow_key, programs, AttachmentEntry, Datapath, MapSizes},
    testing::{udp, Frame, RoutedNs, ScratchBpffs, UDP},
};

use crate::{
    prog::{self, EP, EP_MAC, GW_MAC, HOST},
    report::{Figure, Section, Target},
    Progress,
};

const XDP_REDIRECT: u32 = 4;
const TC_ACT_REDIRECT: u32 = 7;
/// Flows that keep sending while the table is overfilled.
const LIVE: u32 = 10_000;

/// The `i`th client: addresses from 10.64.0.0, 50,000 ports each.
fn client(i: u32) -> ([u8; 4], u16) {
    let a = u32::from(Ipv4Addr::new(10, 64, 0, 0)) + i / 50_000;
    (Ipv4Addr::from(a).octets(), 10_000 + (i % 50_000) as u16)
}

/// Bytes the kernel charges for the map pinned at `pin` (bpftool's `bytes_memlock`).
fn map_bytes(pin: &std::path::Path) -> Result<f64> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "map", "show", "pinned"])
        .arg(pin)
        .output()
        .context("bpftool (Debian package bpftool)")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("bpftool map show {}", pin.display()))?;
    v["bytes_memlock"]
        .as_f64()
        .with_context(|| format!("no bytes_memlock for {}", pin.display()))
}

/// Bytes of one conntrack entry (the `nf_conntrack` slab's object size), what iptables NAT
/// keeps per connection instead.
pub(crate) fn conntrack_entry_bytes() -> Result<f64> {
    // The slab exists once the module is in (the iptables baselines load it).
    let _ = std::process::Command::new("modprobe")
        .arg("nf_conntrack")
        .status();
    let slabinfo = std::fs::read_to_string("/proc/slabinfo")?;
    slabinfo
        .lines()
        .find(|l| l.starts_with("nf_conntrack "))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .context("nf_conntrack in /proc/slabinfo")
}

/// One packet through `prog`; its verdict.
fn run(dp: &mut Datapath, prog: &'static str, frame: &[u8], ctx: Option<&[u8]>) -> Result<u32> {
    let opts = TestRunOptions {
        data_in: Some(frame),
        ctx_in: ctx,
        repeat: 1,
        ..Default::default()
    };
    let res = if prog == programs::UPLINK_XDP {
        dp.xdp(prog)?.test_run(opts)
    } else {
        dp.classifier(prog)?.test_run(opts)
    };
    Ok(res
        .with_context(|| format!("test run of {prog}"))?
        .return_value)
}

/// Sends the first packet of published flows `range` to the uplink's XDP program.
fn published(dp: &mut Datapath, range: std::ops::Range<u32>) -> Result<()> {
    for i in range {
        let (addr, port) = client(i);
        let frame = Frame::new(addr, HOST, UDP).build(&udp(port, 53));
        let verdict = run(dp, programs::UPLINK_XDP, &frame, None)?;
        if verdict != XDP_REDIRECT {
            bail!("flow {i}: verdict {verdict}");
        }
    }
    Ok(())
}

/// Whether published flow `i` is in the table.
fn held(dp: &Datapath, i: u32) -> bool {
    let (addr, port) = client(i);
    let key = flow_key((Ipv4Addr::from(EP), 53), (Ipv4Addr::from(addr), port), UDP);
    dp.flow(&key).is_some()
}

pub fn run_all(quick: bool, p: &Progress) -> Result<Vec<Section>> {
    let (n_pub, n_out) = if quick {
        (50_000, 10_000)
    } else {
        (1_000_000, 100_000)
    };
    // Room for every flow and a quarter more: LRU maps start evicting before they are full
    // to the last slot (their free lists are per CPU).
    let capacity = n_pub + n_pub / 4;
    let fs = ScratchBpffs::new().context("scratch bpffs")?;
    let sizes = MapSizes {
        flows: capacity,
        ..MapSizes::default()
    };
    let mut dp = Datapath::load(Some(fs.path()), sizes)?;
    let routed = RoutedNs::new();
    let ep_if = routed.endpoint_ifindex;
    prog::publish_udp(&mut dp, 53, ep_if)?;
    dp.set_host_addrs(&[HOST.into()].into_iter().collect())?;

    // Published flows: all made, all held.
    p.step(&format!("flows: {n_pub} published"));
    let start = Instant::now();
    published(&mut dp, 0..n_pub)?;
    let made = start.elapsed();
    let count = dp.flow_count() as u32;
    let flows_bytes = map_bytes(&fs.path().join("FLOWS"))?;
    let lost_pub = (0..n_pub).filter(|i| !held(&dp, *i)).count();

    // Past capacity: LIVE flows keep sending while new ones arrive until the table has
    // taken as many again as it holds.
    p.step("flows: past capacity");
    let mut next = n_pub;
    let over = capacity;
    let step = 10_000;
    while next < n_pub + over {
        published(&mut dp, 0..LIVE)?;
        published(&mut dp, next..next + step)?;
        next += step;
    }
    let live_kept = (0..LIVE).filter(|i| held(&dp, *i)).count() as f64;
    let total_after = dp.flow_count();
    let evicted = (next as usize).saturating_sub(total_after);

    // Outbound flows from an endpoint, through the source NAT.
    p.step(&format!("flows: {n_out} outbound"));
    dp.set_uplinks(&[(routed.uplink_ifindex, HOST.into())])?;
    let net = netpath_user::model::Network {
        v6: None,
        name: "bench".into(),
        id: "1".into(),
        net_id: 1,
        driver: "bridge".into(),
        v4: Some(netpath_user::ipam::Pool {
            subnet: "172.17.0.0/16".parse()?,
            gateway: Ipv4Addr::new(172, 17, 0, 1),
            ip_range: None,
        }),
        internal: false,
        options: Default::default(),
        labels: Default::default(),
        vni: None,
    };
    dp.add_network(&net)?;
    dp.add_attachment(&AttachmentEntry {
        ifindex: ep_if,
        ip: EP.into(),
        ip6: None,
        mac: EP_MAC,
        host_mac: GW_MAC,
        net_id: 1,
    })?;
    let mut ctx = [0u8; 44];
    ctx[40..44].copy_from_slice(&ep_if.to_ne_bytes());
    let before = dp.outbound_count();
    let out_start = Instant::now();
    // To 10.0.0.1 (the routed namespace's neighbour), at most two flows per destination
    // port, so no destination runs out of NAT ports.
    for i in 0..n_out {
        let (sport, dport) = (1024 + (i / 60_000) as u16, 1 + (i % 60_000) as u16);
        let mut f = Frame::new(EP, [10, 0, 0, 1], UDP);
        f.src_mac = EP_MAC;
        f.dst_mac = GW_MAC;
        let frame = f.build(&udp(sport, dport));
        let verdict = routed
            .ns
            .run(|| run(&mut dp, programs::ENDPOINT_TC, &frame, Some(&ctx)))?;
        if verdict != TC_ACT_REDIRECT {
            bail!("outbound flow {i}: verdict {verdict}");
        }
    }
    let out_made = out_start.elapsed();
    let out_held = dp.outbound_count() - before;
    let snat_bytes = map_bytes(&fs.path().join("SNAT"))? + map_bytes(&fs.path().join("SNAT_REV"))?;
    p.inc();

    let fig = |name: &str, unit: &str, v: f64, lower: bool| {
        let mut f = Figure::new(name, unit, lower);
        f.runs.push(v);
        f
    };
    let pub_name = format!("{n_pub} published flows");
    let out_name = format!("{n_out} outbound flows");
    let about = format!(
        "Each flow made by the datapath itself: its first packet through the uplink's XDP program (published) or the endpoint's TC program (outbound, source NAT to the uplink's address), one BPF_PROG_TEST_RUN each. Flow tables of {capacity} entries (--max-flows): FLOWS {:.1} MB, SNAT and SNAT_REV {:.1} MB together, allocated whole when loaded (per-entry figures below are for a full table). {count} published flows in the table after {n_pub} were made ({lost_pub} lost), in {:.2} s; {out_held} outbound in {:.2} s. Past capacity: {LIVE} flows kept sending while {over} more arrived; {evicted} idle flows were evicted (LRU), {live_kept} of the {LIVE} live ones kept.",
        flows_bytes / 1e6,
        snat_bytes / 1e6,
        made.as_secs_f64(),
        out_made.as_secs_f64(),
    );
    let section = |scenario: &str, figures: Vec<Figure>, targets: Vec<Target>| Section {
        scenario: scenario.into(),
        about: about.clone(),
        baseline: figures
            .first()
            .map(|f| f.variant.clone())
            .unwrap_or_default(),
        figures,
        targets,
        plots: Vec::new(),
    };
    let held_pct = |held: f64, made: u32| 100.0 * held / f64::from(made.max(1));
    Ok(vec![
        section(
            "flows: held",
            vec![
                fig(
                    &pub_name,
                    "% held",
                    held_pct(f64::from(n_pub) - lost_pub as f64, n_pub),
                    false,
                ),
                fig(&out_name, "% held", held_pct(out_held as f64, n_out), false),
                fig(
                    &format!("{LIVE} live flows past capacity"),
                    "% held",
                    held_pct(live_kept, LIVE),
                    false,
                ),
            ],
            vec![
                Target::absolute("published flows held (%)", &pub_name, 100.0),
                Target::absolute("outbound flows held (%)", &out_name, 100.0),
                Target::absolute(
                    "live flows kept past capacity (%)",
                    &format!("{LIVE} live flows past capacity"),
                    100.0,
                ),
            ],
        ),
        section(
            "flows: memory per flow",
            vec![
                fig(
                    "conntrack entry (iptables NAT)",
                    "bytes/flow",
                    conntrack_entry_bytes()?,
                    true,
                ),
                fig(
                    "netpath published flow (FLOWS)",
                    "bytes/flow",
                    flows_bytes / f64::from(capacity),
                    true,
                ),
                fig(
                    "netpath outbound flow (SNAT + SNAT_REV)",
                    "bytes/flow",
                    snat_bytes / f64::from(capacity),
                    true,
                ),
            ],
            vec![
                Target::ratio(
                    "memory per published flow",
                    "netpath published flow (FLOWS)",
                    "conntrack entry (iptables NAT)",
                    1.0,
                ),
                Target::ratio(
                    "memory per outbound flow",
                    "netpath outbound flow (SNAT + SNAT_REV)",
                    "conntrack entry (iptables NAT)",
                    1.0,
                ),
            ],
        ),
    ])
}
