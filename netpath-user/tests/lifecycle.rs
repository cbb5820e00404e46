//! The datapath outlives the agent: traffic through a published port keeps flowing, with
//! nothing lost, while the agent is SIGKILLed and started again, and while it is replaced by
//! a build whose programs differ (an upgrade). Everything runs in namespaces made here.
mod common;

use std::{path::PathBuf, process::Command};

use common::{tcp_echo_server, tcp_server, udp_server, Topo, HOST};
use netpath_user::testing::SteadyTraffic;
use serde_json::Value;

/// `bpftool -j ARGS`.
fn bpftool(args: &[&str]) -> Value {
    let out = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .expect("bpftool (Debian package bpftool)");
    assert!(
        out.status.success(),
        "bpftool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (link id, program id, program tag) of the link pinned at `pin`.
fn pinned_link(pin: &std::path::Path) -> (u64, u64, String) {
    let link = bpftool(&["link", "show", "pinned", pin.to_str().unwrap()]);
    let prog_id = link["prog_id"].as_u64().unwrap();
    let prog = bpftool(&["prog", "show", "id", &prog_id.to_string()]);
    (
        link["id"].as_u64().unwrap(),
        prog_id,
        prog["tag"].as_str().unwrap().to_string(),
    )
}

/// The pin of the uplink's TC link.
fn uplink_tc_pin(t: &Topo) -> std::path::PathBuf {
    t.pins()
        .join("links")
        .join(format!("uplink-tc@{}", t.uplink))
}

/// An endpoint serving published ports, steady traffic to it, and the uplink's TC link
/// pin with what it ran at the start: (link id, program id, program tag).
fn serving(t: &Topo) -> (SteadyTraffic, common::Netns, PathBuf, (u64, u64, String)) {
    let ep = t.endpoint(
        "web",
        &["-p", "8080:80", "-p", "8081:81", "-p", "5353:53/udp"],
    );
    tcp_echo_server(&ep, 80);
    tcp_server(&ep, 81);
    udp_server(&ep, 53);
    let traffic = SteadyTraffic::start(&t.outside, HOST, 8080, 5353);
    traffic.wait_for(20);
    let pin = uplink_tc_pin(t);
    let before = pinned_link(&pin);
    (traffic, ep, pin, before)
}

#[test]
fn nothing_is_lost_while_the_agent_is_killed_and_restarted() {
    let mut t = Topo::new();
    let (traffic, _ep, pin, (link_before, prog_before, _)) = serving(&t);

    t.kill_agent();
    // With the agent down: the steady connection goes on, and new connections are accepted.
    traffic.wait_for(50);
    for i in 0..5 {
        let r = common::tcp_request(&t.outside, HOST, 8081, &format!("new{i}"))
            .expect("a new connection while the agent is down");
        assert!(r.ends_with(&format!(" new{i}")), "{r}");
    }
    assert!(
        t.cli(&["endpoint", "ls"]).status.code() != Some(0),
        "the API waits for the agent"
    );

    t.start_agent();
    traffic.wait_for(50);
    let r = traffic.finish();
    r.assert_nothing_lost();
    assert!(r.tcp_ok > 100 && r.udp_sent > 100, "{r:?}");

    let (link_after, prog_after, _) = pinned_link(&pin);
    assert_eq!(link_after, link_before, "the same link, adopted");
    // The same build: its programs kept from the pins, not verified and swapped in again
    // (an upgrade swaps them, see below).
    assert_eq!(prog_after, prog_before, "the same build's program, kept");
    assert!(t.ok(&["endpoint", "ls"]).contains("web"));
    let log = t.agent_log();
    assert!(log.contains("adopted=1"), "{log}");
    assert!(log.contains("programs kept from its last start"), "{log}");
    assert!(log.contains("hooks_updated=0"), "{log}");
}

/// The same over IPv6: steady IPv6 traffic to a dual-stack endpoint's published port, and to
/// an IPv4-only endpoint's by NAT46, goes on while the agent is killed and started again (the
/// flows are the pinned maps', NAT46's included).
#[test]
fn nothing_is_lost_over_ipv6_while_the_agent_is_killed_and_restarted() {
    let mut t = Topo::new();
    t.ipv6_uplink();
    let host6: std::net::Ipv6Addr = "fd00:77::2".parse().unwrap();
    t.ok(&common::words(
        "network create dual --ipv6 --subnet 10.67.1.0/24 --subnet fd00:67:1::/64",
    ));
    let six = t.endpoint(
        "six",
        &["--network", "dual", "-p", "8080:80", "-p", "5353:53/udp"],
    );
    common::tcp_echo_server6(&six, 80);
    common::udp_server6(&six, 53);
    let four = t.endpoint("four", &["-p", "8090:80", "-p", "5354:53/udp"]);
    tcp_echo_server(&four, 80);
    udp_server(&four, 53);
    let direct = SteadyTraffic::start(&t.outside, host6, 8080, 5353);
    let nat46 = SteadyTraffic::start(&t.outside, host6, 8090, 5354);
    direct.wait_for(20);
    nat46.wait_for(20);

    t.kill_agent();
    direct.wait_for(50);
    nat46.wait_for(50);
    t.start_agent();
    direct.wait_for(50);
    nat46.wait_for(50);
    for (what, traffic) in [("IPv6", direct), ("NAT46", nat46)] {
        let r = traffic.finish();
        r.assert_nothing_lost();
        assert!(r.tcp_ok > 150 && r.udp_sent > 150, "{what}: {r:?}");
    }
    let status: serde_json::Value =
        serde_json::from_str(&t.ok(&["status", "--format", "json"])).unwrap();
    assert_eq!(status["Healthy"], true, "adopted without drift: {status}");
}

#[test]
fn nothing_is_lost_across_an_upgrade() {
    let upgrade = PathBuf::from(std::env::var("NETPATH_UPGRADE_BIN").expect(
        "NETPATH_UPGRADE_BIN: a second build of netpath whose programs differ \
         (cargo xtask test builds it)",
    ));
    let mut t = Topo::new();
    let (traffic, _ep, pin, (link_before, _, tag_before)) = serving(&t);

    t.stop_agent();
    traffic.wait_for(20);
    t.start_agent_from(&upgrade);
    traffic.wait_for(50);
    let r = traffic.finish();
    r.assert_nothing_lost();

    let (link_after, _, tag_after) = pinned_link(&pin);
    assert_eq!(
        link_after, link_before,
        "the program was swapped in the same link"
    );
    assert_ne!(tag_after, tag_before, "the upgrade's programs run");
    let r = common::tcp_request(&t.outside, HOST, 8081, "after").unwrap();
    assert!(r.ends_with(" after"), "{r}");
}

/// Ids of the links pinned under `pins` and of the programs they run.
fn our_links(pins: &std::path::Path) -> Vec<(u64, u64)> {
    std::fs::read_dir(pins.join("links"))
        .unwrap()
        .map(|e| {
            let (link, prog, _) = pinned_link(&e.unwrap().path());
            (link, prog)
        })
        .collect()
}

#[test]
fn uninstall_removes_everything_and_gives_back_what_it_changed() {
    let mut t = Topo::new();
    t.ok(&["network", "create", "back", "--subnet", "10.61.0.0/24"]);
    let ep = t.endpoint("web", &["-p", "8080:80", "--network", "back"]);
    let named = common::Netns::new("npun");
    // A hosts file the operator wrote for that namespace: its lines stay.
    let hosts = std::path::PathBuf::from(format!("/etc/netns/{}/hosts", named.name));
    std::fs::create_dir_all(hosts.parent().unwrap()).unwrap();
    std::fs::write(&hosts, "10.9.9.9\tmine\n").unwrap();
    t.ok(&["endpoint", "create", "api", "--netns", &named.name]);
    assert!(std::fs::read_to_string(&hosts)
        .unwrap()
        .contains("host.docker.internal"));
    let links = our_links(&t.pins());
    assert!(
        links.len() >= 7,
        "uplink, endpoints, socket hooks: {links:?}"
    );
    assert_eq!(
        t.host
            .exec("cat", &["/proc/sys/net/ipv4/ip_forward"])
            .trim(),
        "1"
    );
    t.stop_agent();
    // Plain exit removes nothing: the links are still there.
    assert_eq!(our_links(&t.pins()).len(), links.len());

    let out = t.uninstall();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        "detached uplink-tc@",
        "detached endpoint@",
        "detached sock@netpath_sock_connect4",
        "unpinned",
        "deleted veth np",
        "deleted bridge netpath0",
        "restored net.ipv4.ip_forward = 0",
        "released reserved ports 8080,40000-59999",
        "removed netpath's entries from",
    ] {
        assert!(said.contains(want), "{want:?} in:\n{said}");
    }
    let all_links = Command::new("bpftool")
        .args(["-j", "link", "show"])
        .output()
        .unwrap();
    let all_links: Value = serde_json::from_slice(&all_links.stdout).unwrap();
    let cgroups = String::from_utf8_lossy(
        &Command::new("bpftool")
            .args(["cgroup", "tree"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    for (link, prog) in &links {
        assert!(
            !all_links
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["id"].as_u64() == Some(*link)),
            "link {link} is gone"
        );
        assert!(
            !cgroups.split_whitespace().any(|w| w == prog.to_string()),
            "program {prog} is in no cgroup:\n{cgroups}"
        );
    }
    assert!(!t.pins().exists(), "nothing pinned");
    let links_here = t.host.ip(&["-o", "link"]);
    assert!(
        !links_here.contains(": np") && !links_here.contains("netpath0"),
        "{links_here}"
    );
    let routes = t.host.ip(&["route"]);
    assert!(
        !routes.contains("10.61.0.") && !routes.contains("10.210."),
        "{routes}"
    );
    assert!(!ep.ip(&["link"]).contains("eth0"));
    assert_eq!(
        t.host
            .exec("cat", &["/proc/sys/net/ipv4/ip_forward"])
            .trim(),
        "0"
    );
    assert_eq!(
        t.host
            .exec("cat", &["/proc/sys/net/ipv4/ip_local_reserved_ports"])
            .trim(),
        ""
    );
    assert_eq!(std::fs::read_to_string(&hosts).unwrap(), "10.9.9.9\tmine\n");
    assert!(!t.state_dir().exists(), "state directory removed");
    let again = t.uninstall();
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing of netpath was found"));
}

#[test]
fn pinned_maps_of_another_shape_are_migrated_or_refused() {
    let mut t = Topo::new();
    let (traffic, _ep, _, _) = serving(&t);
    // Capacities change: the flow table is carried over entry by entry, the published-port
    // map is rebuilt from the state, and traffic goes on.
    t.stop_agent();
    t.set_agent_args(&["--max-flows", "4096", "--max-ports", "4096"]);
    t.start_agent();
    traffic.wait_for(30);
    let r = traffic.finish();
    r.assert_nothing_lost();
    let log = t.agent_log();
    assert!(log.contains("map=FLOWS entries="), "{log}");
    assert!(log.contains("carried over to the new map"), "{log}");
    assert!(log.contains("map=PORTS"), "{log}");
    let flows = bpftool(&[
        "map",
        "show",
        "pinned",
        t.pins().join("FLOWS").to_str().unwrap(),
    ]);
    assert_eq!(flows["max_entries"], 4096);

    // The flow table of the build before the replies' way back was kept (32-byte values):
    // carried over, each flow's fields kept and the new ones 0 (its replies are routed).
    t.stop_agent();
    let pin = t.pins().join("FLOWS");
    std::fs::remove_file(&pin).unwrap();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:#04x}")).collect::<Vec<_>>();
    let key: Vec<u8> = (1..=16).collect();
    let value: Vec<u8> = (101..=132).collect();
    let mut v1 = vec!["map", "create", pin.to_str().unwrap(), "type", "lru_hash"];
    v1.extend([
        "key", "16", "value", "32", "entries", "4096", "name", "FLOWS",
    ]);
    assert!(Command::new("bpftool")
        .args(&v1)
        .status()
        .unwrap()
        .success());
    let mut update = vec![
        "map",
        "update",
        "pinned",
        pin.to_str().unwrap(),
        "key",
        "hex",
    ];
    let (kh, vh) = (hex(&key), hex(&value));
    update.extend(kh.iter().map(|s| s.trim_start_matches("0x")));
    update.extend(["value", "hex"]);
    update.extend(vh.iter().map(|s| s.trim_start_matches("0x")));
    assert!(Command::new("bpftool")
        .args(&update)
        .status()
        .unwrap()
        .success());
    t.start_agent();
    let log = t.agent_log();
    assert!(
        log.contains("carried over to the new map map=FLOWS entries=1"),
        "{log}"
    );

    // A flow table of another layout (an incompatible build): refused, saying what to do.
    t.stop_agent();
    std::fs::remove_file(&pin).unwrap();
    let created = Command::new("bpftool")
        .args(["map", "create", pin.to_str().unwrap(), "type", "lru_hash"])
        .args([
            "key", "16", "value", "8", "entries", "4096", "name", "FLOWS",
        ])
        .status()
        .unwrap();
    assert!(created.success());
    let err = t.start_agent_failing();
    assert!(err.contains("map FLOWS pinned at"), "{err}");
    assert!(err.contains("--reset-flows"), "{err}");
    t.set_agent_args(&common::words(
        "--max-flows 4096 --max-ports 4096 --reset-flows",
    ));
    t.start_agent();
    let r = common::tcp_request(&t.outside, HOST, 8081, "reset").unwrap();
    assert!(r.ends_with(" reset"), "{r}");

    // A map an earlier build pinned and this one no longer has (POLICY_SUBJECTS went into
    // IPCACHE): retired, its pin gone once the agent is ready.
    t.stop_agent();
    let gone = t.pins().join("POLICY_SUBJECTS");
    let created = Command::new("bpftool")
        .args(["map", "create", gone.to_str().unwrap(), "type", "hash"])
        .args([
            "key",
            "4",
            "value",
            "4",
            "entries",
            "16",
            "name",
            "POLICY_SUBJECTS",
        ])
        .status()
        .unwrap();
    assert!(created.success());
    t.start_agent();
    let log = t.agent_log();
    assert!(log.contains("retiring it map=POLICY_SUBJECTS"), "{log}");
    let left: Vec<_> = std::fs::read_dir(t.pins())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("POLICY_SUBJECTS"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
