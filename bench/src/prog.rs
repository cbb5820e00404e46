//! Scenario `prog`: ns/packet of each datapath path under BPF_PROG_TEST_RUN, beside an empty
//! XDP program, same run.
//!
//! Test runs repeat on one buffer that the program rewrites in place, so each "hit" path is
//! set up to translate to itself (endpoint address and port published on the endpoint's own
//! address and port; the reply's flow translates to the same source): every repetition pays
//! the full lookup, flow bookkeeping, rewrite and checksum update of a real hit.
use anyhow::{bail, Context as _, Result};
use aya::{
    programs::{Program, SchedClassifier, TestRun, TestRunOptions, Xdp},
    Ebpf,
};
use netpath_common::{
    Counter, FlowKey, FlowNat, In6, PortKey, PortTarget, ReplyMacs, NEW_FLOWS_PER_CPU,
};
use netpath_user::{
    datapath::{
        be_addr, be_port, flow_key, load_bench_object, programs, AttachmentEntry, Datapath,
        MapSizes,
    },
    testing::{frame6::Frame6, udp, Frame, RoutedNs, ScratchBpffs, UDP},
};

use crate::report::{Figure, Section, Target};

pub const EP: [u8; 4] = [172, 17, 0, 2];
const CLIENT: [u8; 4] = [10, 0, 0, 1];
pub const HOST: [u8; 4] = [10, 0, 0, 2];
pub const EP_MAC: [u8; 6] = [0x02, 0x42, 172, 17, 0, 2];
pub const GW_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 0x99];
/// IPv6's twins of the addresses above.
const EP6: &str = "fd00:1::2";
const CLIENT6: &str = "2001:db8::1";
const HOST6: &str = "2001:db8::2";

/// Floor programs (see the kernel's `bench.rs`), in the benchmark's own object.
const FLOOR_PARSE: &str = "netpath_bench_parse";
const FLOOR_FLOW_LOOKUP: &str = "netpath_bench_flow_lookup";
const FLOOR_SLOT_REDIRECT: &str = "netpath_bench_slot_redirect";
const FLOOR_TC_PASS: &str = "netpath_bench_tc_pass";
const FLOOR_TC_FLOW_LOOKUP: &str = "netpath_bench_tc_flow_lookup";
const FLOOR_TC_REVERSE: &str = "netpath_bench_tc_reverse";

enum Prog {
    Xdp(&'static str),
    Tc(&'static str),
}

struct Variant {
    name: &'static str,
    prog: Prog,
    frame: Vec<u8>,
    /// Run inside the routed namespace with this skb ifindex (for FIB lookups).
    ifindex: Option<u32>,
    /// Expected verdict: the path really is the one named.
    verdict: u32,
}

/// The product's programs and the floors beside them (the same maps, through the pins).
struct Objects {
    dp: Datapath,
    floors: Option<Ebpf>,
}

impl Objects {
    fn floor(&mut self, name: &'static str) -> Result<&mut Program> {
        self.floors
            .as_mut()
            .context("the floors are not loaded")?
            .program_mut(name)
            .with_context(|| format!("no program {name}"))
    }
}

fn is_floor(name: &str) -> bool {
    name.starts_with("netpath_bench_")
}

fn once(objs: &mut Objects, v: &Variant, repeat: u32) -> Result<(u32, f64)> {
    let mut ctx = [0u8; 44];
    if let Some(i) = v.ifindex {
        ctx[40..44].copy_from_slice(&i.to_ne_bytes());
    }
    let opts = TestRunOptions {
        data_in: Some(&v.frame),
        ctx_in: v.ifindex.map(|_| &ctx[..]),
        repeat,
        ..Default::default()
    };
    let res = match v.prog {
        Prog::Xdp(name) if is_floor(name) => {
            <&mut Xdp>::try_from(objs.floor(name)?)?.test_run(opts)
        }
        Prog::Tc(name) if is_floor(name) => {
            <&mut SchedClassifier>::try_from(objs.floor(name)?)?.test_run(opts)
        }
        Prog::Xdp(name) => objs.dp.xdp(name)?.test_run(opts),
        Prog::Tc(name) => objs.dp.classifier(name)?.test_run(opts),
    }
    .with_context(|| format!("test run of {}", v.name))?;
    // The kernel reports the mean duration of one repetition, in whole nanoseconds. (Timing
    // the syscall from here is no finer: for XDP it adds 100-200 ns a repetition that the
    // program does not spend.)
    Ok((res.return_value, res.duration.as_nanos() as f64))
}

fn v6(s: &str) -> std::net::Ipv6Addr {
    s.parse().expect("an IPv6 address")
}

/// The endpoint's network's datapath id.
const NET_ID: u32 = 1;

/// The endpoint's network: [`EP`]'s /16 and [`EP6`]'s /64, as a dual-stack default network.
fn network() -> Result<netpath_user::model::Network> {
    Ok(netpath_user::model::Network {
        name: "bench".into(),
        id: NET_ID.to_string(),
        net_id: NET_ID,
        driver: "bridge".into(),
        v4: Some(netpath_user::ipam::Pool {
            subnet: "172.17.0.0/16".parse()?,
            gateway: std::net::Ipv4Addr::new(172, 17, 0, 1),
            ip_range: None,
        }),
        v6: Some(netpath_user::ipam::Pool {
            subnet: "fd00:1::/64".parse()?,
            gateway: v6("fd00:1::1"),
            ip_range: None,
        }),
        internal: false,
        options: Default::default(),
        labels: Default::default(),
        vni: None,
    })
}

/// IPv6's side of the hit paths, set up as IPv4's (see [`run`]): UDP 53 and [`KEPT_TOO`]
/// published on `[::]` to the endpoint's own address and port 53, which counts as a host
/// address; a flow DNAT'd on the uplink, for the reverse-NAT variant.
fn ipv6_paths(dp: &mut Datapath, routed: &RoutedNs) -> Result<()> {
    let ep_if = routed.endpoint_ifindex;
    for port in [53, KEPT_TOO] {
        dp.publish(
            PortKey {
                addr: In6::default(),
                port: be_port(port),
                proto: UDP,
                _pad: 0,
            },
            PortTarget {
                addr: be_addr(v6(EP6)),
                port: be_port(53),
                stats: 0,
                ifindex: ep_if,
                mac: EP_MAC,
                gw_mac: GW_MAC,
                host: Default::default(),
            },
        )?;
    }
    dp.set_host_addrs6(&[v6(EP6), v6(HOST6)].into_iter().collect())?;
    let key = FlowKey::new(
        be_addr(v6(EP6)),
        be_port(53),
        be_addr(v6(CLIENT6)),
        be_port(40000),
        UDP,
    );
    dp.insert_flow(
        key,
        FlowNat {
            addr: be_addr(v6(EP6)),
            port: be_port(53),
            _pad: 0,
            ifindex: ep_if,
            via: routed.uplink_ifindex,
            via_macs: ReplyMacs {
                src: routed.uplink_mac,
                dst: GW_MAC,
            },
            ..FlowNat::default()
        },
    )?;
    Ok(())
}

/// The port published one to one on one host address, and the port published one to one on
/// every host address (see [`one_to_one`]).
const ONE_TO_ONE: u16 = 54;
const ONE_TO_ONE_ANY: u16 = 55;

/// UDP [`ONE_TO_ONE`] published on the endpoint's own addresses (IPv4's and IPv6's) to the
/// same port, and UDP [`ONE_TO_ONE_ANY`] on every host address with the endpoint's address as
/// the one the replies leave from (as `-p 8080:80` on a host of one uplink has the uplink's):
/// each the only publish of its endpoint port, so a client's packet to it is translated with
/// no flow state, to itself again. Each is found by the port's array slot alone (the first
/// held there as its port's only publish).
fn one_to_one(dp: &mut Datapath, ep_if: u32) -> Result<()> {
    let addr4 = be_addr(std::net::Ipv4Addr::from(EP));
    let addr6 = be_addr(v6(EP6));
    for (port, anywhere) in [(ONE_TO_ONE, false), (ONE_TO_ONE_ANY, true)] {
        let target = PortTarget {
            addr: addr4,
            port: be_port(port),
            stats: 0,
            ifindex: ep_if,
            mac: EP_MAC,
            gw_mac: GW_MAC,
            host: 0,
        };
        let key = PortKey {
            addr: if anywhere { 0 } else { addr4 },
            port: target.port,
            proto: UDP,
            _pad: 0,
        };
        dp.publish(key, target)?;
        let target6 = PortTarget {
            addr: addr6,
            port: target.port,
            stats: 0,
            ifindex: ep_if,
            mac: EP_MAC,
            gw_mac: GW_MAC,
            host: In6::default(),
        };
        let key6 = PortKey {
            addr: if anywhere { In6::default() } else { addr6 },
            port: target.port,
            proto: UDP,
            _pad: 0,
        };
        dp.publish(key6, target6)?;
    }
    Ok(())
}

/// Publishes UDP `port` on every host address to the same port of the endpoint [`EP`] behind
/// host-side veth `ifindex`.
pub fn publish_udp(dp: &mut Datapath, port: u16, ifindex: u32) -> Result<()> {
    publish_udp_to(dp, port, port, ifindex)
}

/// Publishes UDP `port` on every host address to port `to` of the endpoint [`EP`] behind
/// host-side veth `ifindex`.
fn publish_udp_to(dp: &mut Datapath, port: u16, to: u16, ifindex: u32) -> Result<()> {
    dp.publish(
        PortKey {
            addr: 0,
            port: be_port(port),
            proto: UDP,
            _pad: 0,
        },
        PortTarget {
            addr: be_addr(std::net::Ipv4Addr::from(EP)),
            port: be_port(to),
            stats: 0,
            ifindex,
            mac: EP_MAC,
            gw_mac: GW_MAC,
            host: Default::default(),
        },
    )?;
    Ok(())
}

/// A second host port publishing the endpoint's port 53: its flows are kept, whatever the
/// host's uplinks (a reply could be either publish's).
const KEPT_TOO: u16 = 5353;

pub fn run(quick: bool) -> Result<Section> {
    let (repeat, rounds) = if quick { (100_000, 3) } else { (1_000_000, 7) };
    let fs = ScratchBpffs::new().context("scratch bpffs")?;
    let mut dp = Datapath::load(Some(fs.path()), MapSizes::default())?;
    // The flood guard at its default rate, as the agent sets it: a kept flow's hit asks
    // whether this CPU is under a flood.
    dp.set_new_flow_rate(NEW_FLOWS_PER_CPU)?;
    // The floors: programs of the benchmark's object that do part of the work, on the same
    // maps (the loader reuses the datapath's pins).
    let mut floors = load_bench_object(fs.path(), &MapSizes::default())?;
    for name in [FLOOR_PARSE, FLOOR_FLOW_LOOKUP, FLOOR_SLOT_REDIRECT] {
        <&mut Xdp>::try_from(floors.program_mut(name).context(name)?)?.load()?;
    }
    for name in [FLOOR_TC_PASS, FLOOR_TC_FLOW_LOOKUP, FLOOR_TC_REVERSE] {
        <&mut SchedClassifier>::try_from(floors.program_mut(name).context(name)?)?.load()?;
    }
    let routed = RoutedNs::new();
    let ep_if = routed.endpoint_ifindex;

    // Published on every host address; the endpoint's own address counts as a host address
    // so the translated frame hits again (see the module docs). Port 53 is published on two
    // host ports, so its flows are kept.
    publish_udp(&mut dp, 53, ep_if)?;
    publish_udp_to(&mut dp, KEPT_TOO, 53, ep_if)?;
    dp.set_host_addrs(&[EP.into(), HOST.into()].into_iter().collect())?;
    // The endpoint's network, as the agent always has one (its default network): its
    // subnets in the tries, the rest of the address space marked as no network's.
    dp.add_network(&network()?)?;
    dp.add_attachment(&AttachmentEntry {
        ifindex: ep_if,
        ip: EP.into(),
        ip6: None,
        // The routed reply leaves with the uplink's MAC as source; registering that as the
        // endpoint's MAC lets the rewritten buffer pass anti-spoofing again.
        mac: routed.uplink_mac,
        host_mac: GW_MAC,
        net_id: NET_ID,
    })?;
    // Two flows: one DNAT'd on the uplink, which knows the way back (the uplink and the
    // neighbour's MAC), and one that leaves the route to the FIB (hairpin flows, flows of an
    // older build).
    let flow = |client_port: u16| {
        flow_key(
            (std::net::Ipv4Addr::from(EP), 53),
            (std::net::Ipv4Addr::from(CLIENT), client_port),
            UDP,
        )
    };
    let nat = FlowNat {
        addr: be_addr(std::net::Ipv4Addr::from(EP)),
        port: be_port(53),
        _pad: 0,
        ifindex: ep_if,
        ..FlowNat::default()
    };
    dp.insert_flow(
        flow(40000),
        FlowNat {
            via: routed.uplink_ifindex,
            via_macs: ReplyMacs {
                src: routed.uplink_mac,
                dst: GW_MAC,
            },
            ..nat
        },
    )?;
    dp.insert_flow(flow(40001), nat)?;
    ipv6_paths(&mut dp, &routed)?;
    // One uplink of each family, at the endpoint's own address: a port published alone on
    // its endpoint port is one to one, and on every address its replies leave from the
    // endpoint's address, so the translated frame is the port's again.
    dp.set_uplinks(&[(routed.uplink_ifindex, EP.into())])?;
    dp.set_uplinks6(&[(routed.uplink_ifindex, v6(EP6))])?;
    one_to_one(&mut dp, ep_if)?;

    // From a client port of its own: the hit records its flow, which must not overwrite the
    // reverse-NAT variants' flows.
    let to_ep = Frame::new(CLIENT, EP, UDP).build(&udp(40002, 53));
    let to_other = Frame::new(CLIENT, HOST, UDP).build(&udp(40000, 9999));
    let mut reply = Frame::new(EP, CLIENT, UDP);
    reply.src_mac = routed.uplink_mac;
    reply.dst_mac = GW_MAC;
    let routed_reply = reply.build(&udp(53, 40001));
    let reply = reply.build(&udp(53, 40000));
    let to_ep6 = Frame6::new(CLIENT6, EP6, UDP).build(&udp(40002, 53));
    let one_to_one4 = Frame::new(CLIENT, EP, UDP).build(&udp(40002, ONE_TO_ONE_ANY));
    let one_to_one6 = Frame6::new(CLIENT6, EP6, UDP).build(&udp(40002, ONE_TO_ONE_ANY));
    let one_address4 = Frame::new(CLIENT, EP, UDP).build(&udp(40002, ONE_TO_ONE));
    let one_address6 = Frame6::new(CLIENT6, EP6, UDP).build(&udp(40002, ONE_TO_ONE));
    let reply6 = Frame6::new(EP6, CLIENT6, UDP).build(&udp(53, 40000));

    const XDP_DROP: u32 = 1;
    const XDP_PASS: u32 = 2;
    const XDP_REDIRECT: u32 = 4;
    const TC_ACT_OK: u32 = 0;
    const TC_ACT_SHOT: u32 = 2;
    const TC_ACT_REDIRECT: u32 = 7;
    let variants = [
        Variant {
            name: "empty xdp",
            prog: Prog::Xdp(programs::XDP_PASS),
            frame: to_other.clone(),
            ifindex: None,
            verdict: XDP_PASS,
        },
        Variant {
            name: "xdp dnat hit",
            prog: Prog::Xdp(programs::UPLINK_XDP),
            frame: to_ep.clone(),
            ifindex: None,
            verdict: XDP_REDIRECT,
        },
        Variant {
            name: "xdp dnat, one to one",
            prog: Prog::Xdp(programs::UPLINK_XDP),
            frame: one_to_one4.clone(),
            ifindex: None,
            verdict: XDP_REDIRECT,
        },
        Variant {
            name: "xdp parse + port slot + rewrite + redirect",
            prog: Prog::Xdp(FLOOR_SLOT_REDIRECT),
            frame: to_ep.clone(),
            ifindex: None,
            verdict: XDP_REDIRECT,
        },
        Variant {
            name: "tc dnat, one to one",
            prog: Prog::Tc(programs::UPLINK_TC),
            frame: one_to_one4,
            ifindex: None,
            verdict: TC_ACT_REDIRECT,
        },
        Variant {
            name: "xdp dnat, one to one, ipv6",
            prog: Prog::Xdp(programs::UPLINK_XDP),
            frame: one_to_one6.clone(),
            ifindex: None,
            verdict: XDP_REDIRECT,
        },
        Variant {
            name: "tc dnat, one to one, ipv6",
            prog: Prog::Tc(programs::UPLINK_TC),
            frame: one_to_one6,
            ifindex: None,
            verdict: TC_ACT_REDIRECT,
        },
        Variant {
            name: "xdp dnat, one to one, one address",
            prog: Prog::Xdp(programs::UPLINK_XDP),
            frame: one_address4,
            ifindex: None,
            verdict: XDP_REDIRECT,
        },
        Variant {
            name: "xdp dnat, one to one, one address, ipv6",
            prog: Prog::Xdp(programs::UPLINK_XDP),
            frame: one_address6,
            ifindex: None,
            verdict: XDP_REDIRECT,
        },
        Variant {
            name: "xdp pass",
            prog: Prog::Xdp(programs::UPLINK_XDP),
            frame: to_other.clone(),
            ifindex: None,
            verdict: XDP_PASS,
        },
        Variant {
            name: "xdp parse only",
            prog: Prog::Xdp(FLOOR_PARSE),
            frame: to_other.clone(),
            ifindex: None,
            verdict: XDP_PASS,
        },
        Variant {
            name: "xdp parse + flow lookup",
            prog: Prog::Xdp(FLOOR_FLOW_LOOKUP),
            frame: reply.clone(),
            ifindex: None,
            verdict: XDP_DROP,
        },
        Variant {
            name: "empty tc",
            prog: Prog::Tc(FLOOR_TC_PASS),
            frame: reply.clone(),
            ifindex: None,
            verdict: TC_ACT_OK,
        },
        Variant {
            name: "tc parse + flow lookup",
            prog: Prog::Tc(FLOOR_TC_FLOW_LOOKUP),
            frame: reply.clone(),
            ifindex: None,
            verdict: TC_ACT_SHOT,
        },
        Variant {
            name: "tc dnat hit",
            prog: Prog::Tc(programs::UPLINK_TC),
            frame: to_ep,
            ifindex: None,
            verdict: TC_ACT_REDIRECT,
        },
        Variant {
            name: "tc pass",
            prog: Prog::Tc(programs::UPLINK_TC),
            frame: to_other,
            ifindex: None,
            verdict: TC_ACT_OK,
        },
        Variant {
            name: "tc reverse nat",
            prog: Prog::Tc(programs::ENDPOINT_TC),
            frame: reply.clone(),
            ifindex: Some(ep_if),
            verdict: TC_ACT_REDIRECT,
        },
        Variant {
            name: "tc parse + flow lookup + rewrite + redirect",
            prog: Prog::Tc(FLOOR_TC_REVERSE),
            frame: reply,
            ifindex: Some(ep_if),
            verdict: TC_ACT_REDIRECT,
        },
        Variant {
            name: "xdp dnat hit, ipv6",
            prog: Prog::Xdp(programs::UPLINK_XDP),
            frame: to_ep6.clone(),
            ifindex: None,
            verdict: XDP_REDIRECT,
        },
        Variant {
            name: "tc dnat hit, ipv6",
            prog: Prog::Tc(programs::UPLINK_TC),
            frame: to_ep6,
            ifindex: None,
            verdict: TC_ACT_REDIRECT,
        },
        Variant {
            name: "tc reverse nat, ipv6",
            prog: Prog::Tc(programs::ENDPOINT_TC),
            frame: reply6.clone(),
            ifindex: Some(ep_if),
            verdict: TC_ACT_REDIRECT,
        },
        Variant {
            name: "xdp parse + flow lookup, ipv6",
            prog: Prog::Xdp(FLOOR_FLOW_LOOKUP),
            frame: reply6.clone(),
            ifindex: None,
            verdict: XDP_DROP,
        },
        Variant {
            name: "tc parse + flow lookup, ipv6",
            prog: Prog::Tc(FLOOR_TC_FLOW_LOOKUP),
            frame: reply6.clone(),
            ifindex: None,
            verdict: TC_ACT_SHOT,
        },
        Variant {
            name: "tc reverse nat, routed",
            prog: Prog::Tc(programs::ENDPOINT_TC),
            frame: routed_reply,
            ifindex: Some(ep_if),
            verdict: TC_ACT_REDIRECT,
        },
    ];
    let mut figures: Vec<Figure> = variants
        .iter()
        .map(|v| Figure::new(v.name, "ns/packet", true))
        .collect();
    let mut objs = Objects {
        dp,
        floors: Some(floors),
    };
    // Interleave the variants round by round so drift affects all alike.
    for _ in 0..rounds {
        for (v, fig) in variants.iter().zip(figures.iter_mut()) {
            let before = objs.dp.counter(Counter::DnatStateless);
            let (verdict, ns) = if v.ifindex.is_some() {
                routed.ns.run(|| once(&mut objs, v, repeat))?
            } else {
                once(&mut objs, v, repeat)?
            };
            if verdict != v.verdict {
                bail!("{}: verdict {verdict}, expected {}", v.name, v.verdict);
            }
            // A row named one to one is translated with no flow every repetition; no other
            // row is.
            let stateless = objs.dp.counter(Counter::DnatStateless) - before;
            let want = if v.name.contains("one to one") {
                u64::from(repeat)
            } else {
                0
            };
            if stateless != want {
                bail!(
                    "{}: {stateless} stateless translations, expected {want}",
                    v.name
                );
            }
            fig.runs.push(ns);
        }
    }
    let rev_gap = family_gap(&figures, "tc", "tc reverse nat");
    let (xdp_hit_gap, tc_hit_gap) = (
        family_gap(&figures, "xdp", "xdp dnat hit"),
        family_gap(&figures, "tc", "tc dnat hit"),
    );
    Ok(Section {
        scenario: "prog".into(),
        about: format!(
            "BPF_PROG_TEST_RUN, {repeat} repetitions per run, {rounds} runs per variant (median, min, max of the runs). \
             Hit paths translate to themselves so every repetition is a full hit. \
             Floors (parse only, parse + flow lookup, parse + port slot + rewrite + redirect, empty tc, tc parse + flow lookup, tc parse + flow lookup + rewrite + redirect, and IPv6's parse + flow lookup) do part of a path's work: no real path can beat them. \
             A port published one to one is translated with no flow (`one to one`: published on every address, as `-p 8080:80`, found by its array slot alone; `one address`, as `-p 192.0.2.1:8080:80`, the port's only publish, held in its slot too: a port published on several addresses is found by a hash lookup); `dnat hit` is a port whose flows are kept (here published on two host ports; also while a policy is in force). \
             IPv6's hit paths are set up as IPv4's, beside them in the same rounds."
        ),
        figures,
        baseline: "empty xdp".into(),
        targets: vec![
            Target::ratio("XDP DNAT, one to one", "xdp dnat, one to one", "empty xdp", 2.5).limited_by(
                "xdp parse + port slot + rewrite + redirect",
                "the checks that the port is one to one here (its host address, no policy or firewall list, no NAT46), the martian addresses' check, the counters and the monitor's flag",
            ),
            Target::ratio("XDP pass (the host's own traffic)", "xdp pass", "empty xdp", 1.5)
                .limited_by(
                    "xdp parse only",
                    "the port's array slot (not published), the port's range (no outbound flow's reply), one bit of the blocks no network is in (not routed at a network: the subnets' trie not asked), the counter",
                ),
            Target::ratio("IPv6 XDP DNAT / IPv4's, one to one", "xdp dnat, one to one, ipv6", "xdp dnat, one to one", 1.1)
                .limited_by(
                    "xdp dnat, one to one",
                    "40-byte headers read, 16-byte addresses compared and rewritten (the checksum updated over four words where IPv4 has one); decided in the entry program, with no tail call",
                ),
            Target::ratio("IPv6 XDP DNAT / IPv4's, one to one on one address", "xdp dnat, one to one, one address, ipv6", "xdp dnat, one to one, one address", 1.1)
                .limited_by(
                    "xdp dnat, one to one, one address",
                    "as on every address, and the publish's address compared (16 bytes where IPv4's is 4)",
                ),
            Target::ratio("IPv6 TC DNAT / IPv4's, one to one", "tc dnat, one to one, ipv6", "tc dnat, one to one", 1.1)
                .limited_by(
                    "tc dnat, one to one",
                    "as XDP's (the address's checksum difference summed in the program, one helper call applying it, as IPv4's)",
                ),
            Target::ratio("IPv6 TC reverse NAT / IPv4's", "tc reverse nat, ipv6", "tc reverse nat", 1.1)
                .limited_by(
                    "tc reverse nat",
                    "the 40-byte flow key hashed where IPv4's is 16 bytes (translated in the entry program, as IPv4's, with no tail call)",
                )
                .measured(rev_gap),
            Target::ratio("IPv6 XDP DNAT / IPv4's, flows kept", "xdp dnat hit, ipv6", "xdp dnat hit", 1.1)
                .limited_by("xdp dnat hit", KEPT6)
                .measured(xdp_hit_gap),
            Target::ratio("IPv6 TC DNAT / IPv4's, flows kept", "tc dnat hit, ipv6", "tc dnat hit", 1.1)
                .limited_by("tc dnat hit", KEPT6)
                .measured(tc_hit_gap),
            Target::ratio("TC reverse NAT", "tc reverse nat", "empty xdp", 6.0).limited_by(
                "tc parse + flow lookup + rewrite + redirect",
                "the checks (the flow is this interface's, TCP's closing flags), the flow's freshness (jiffies read against its stamp; the clock only when that is 100 jiffies old), the counters and the monitor's flag; the floor's rewrite is TC's, each L4 checksum update a helper call (the only update right for the CHECKSUM_PARTIAL skbs containers send)",
            ),
        ],
        plots: Vec::new(),
    })
}

/// Why IPv6's DNAT of a port whose flows are kept costs more than IPv4's.
const KEPT6: &str = "the 40-byte flow key hashed and compared where IPv4's is 16 bytes (a kept flow's packets are decided in the entry program, as IPv4's: no tail call), and IPv6's 16-byte addresses compared with the flow's entry and rewritten";

/// What IPv6's longer headers and keys cost by themselves on `hook` (`xdp` or `tc`), said
/// against IPv4's `path`: the gap between the two families' parse + flow lookup floors, and
/// the share of IPv4's path it takes (of the 0.10 an IPv6 target allows).
fn family_gap(figures: &[Figure], hook: &str, path: &str) -> String {
    let med = |name: &str| {
        figures
            .iter()
            .find(|f| f.variant == name)
            .map_or(f64::NAN, Figure::median)
    };
    let (f4, f6) = (
        med(&format!("{hook} parse + flow lookup")),
        med(&format!("{hook} parse + flow lookup, ipv6")),
    );
    let gap = f6 - f4;
    format!(
        "the floors alone: {hook} parse + flow lookup takes {f6:.0} ns for IPv6's 40-byte flow key \
         against {f4:.0} ns for IPv4's 16-byte one, {gap:.0} ns or {:.2} of {path} ({:.0} ns)",
        gap / med(path),
        med(path)
    )
}

/// Scenario `scale`, per-packet part: the XDP DNAT hit path with `n` ports published, for each
/// `n` of `counts` (the hit among them), in ns/packet.
pub fn cost_vs_ports(quick: bool, counts: &[u32]) -> Result<Section> {
    let (repeat, rounds) = if quick { (100_000, 3) } else { (1_000_000, 5) };
    let fs = ScratchBpffs::new().context("scratch bpffs")?;
    let mut objs = Objects {
        dp: Datapath::load(Some(fs.path()), MapSizes::default())?,
        floors: None,
    };
    objs.dp.set_new_flow_rate(NEW_FLOWS_PER_CPU)?;
    objs.dp.set_host_addrs(&[EP.into()].into_iter().collect())?;
    let frame = Frame::new(CLIENT, EP, UDP).build(&udp(40000, 53));
    let hit = Variant {
        name: "xdp dnat hit",
        prog: Prog::Xdp(programs::UPLINK_XDP),
        frame,
        ifindex: None,
        verdict: 4,
    };
    let mut figures = Vec::new();
    let mut published = 0u32;
    let mut port = 0u16;
    for &n in counts {
        // Ports 53, then 1, 2, 3, ... skipping 53: the hit is always published.
        while published < n {
            let p = if published == 0 {
                53
            } else {
                port += 1;
                if port == 53 {
                    port += 1;
                }
                port
            };
            objs.dp.publish(
                PortKey {
                    addr: 0,
                    port: be_port(p),
                    proto: UDP,
                    _pad: 0,
                },
                PortTarget {
                    addr: be_addr(std::net::Ipv4Addr::from(EP)),
                    port: be_port(p),
                    stats: 0,
                    ifindex: 1,
                    mac: EP_MAC,
                    gw_mac: GW_MAC,
                    host: Default::default(),
                },
            )?;
            published += 1;
        }
        let mut fig = Figure::new(ports_label(n), "ns/packet", true);
        for _ in 0..rounds {
            let (verdict, ns) = once(&mut objs, &hit, repeat)?;
            if verdict != hit.verdict {
                bail!("{n} ports: verdict {verdict}");
            }
            fig.runs.push(ns);
        }
        figures.push(fig);
    }
    let last = counts.last().copied().unwrap_or(1);
    Ok(Section {
        scenario: "scale: per-packet cost".into(),
        about: format!("XDP DNAT hit path under BPF_PROG_TEST_RUN ({repeat} repetitions, {rounds} runs) with more and more ports published."),
        figures,
        baseline: ports_label(1),
        targets: vec![Target::ratio("per-packet cost", &ports_label(last), &ports_label(1), 1.1)],
        plots: Vec::new(),
    })
}

/// "1 port", "100 ports", ...
pub fn ports_label(n: u32) -> String {
    if n == 1 {
        "1 port".into()
    } else {
        format!("{n} ports")
    }
}
