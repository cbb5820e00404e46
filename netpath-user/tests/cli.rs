//! The CLI speaks Docker's conventions: `-q`, `--format`, `--filter`, `netpath port`,
//! collapsed port ranges, several names per `rm`/`inspect`, names that travel safely,
//! `--netns NAME`, drivers and labels, `version`, errors, completions, man pages, and the
//! agent's logs. Run against a real agent in namespaces made here.
mod common;

use std::process::{Command, Stdio};

use common::{Netns, Topo, BIN};
use serde_json::Value;

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[test]
fn ls_quiet_format_and_filter() {
    let t = Topo::new();
    t.ok(&common::words(
        "network create front --subnet 10.40.1.0/24 --label team=web",
    ));
    t.ok(&common::words(
        "network create back -d bridge --subnet 10.40.2.0/24 --internal",
    ));
    t.ok(&common::words(
        "network create own --driver netpath --subnet 10.40.3.0/24",
    ));
    let _a = t.endpoint(
        "alpha",
        &["--network", "front", "--label", "tier=1", "-p", "8080:80"],
    );
    let _b = t.endpoint("beta", &["--network", "back"]);

    let q = t.ok(&["network", "ls", "-q"]);
    assert_eq!(lines(&q).len(), 4, "{q}");
    assert!(lines(&q).iter().all(|l| l.len() == 12), "short ids: {q}");
    let names = t.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(lines(&names), ["back", "bridge", "front", "own"]);
    let custom = t.ok(&[
        "network",
        "ls",
        "--filter",
        "type=custom",
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(lines(&custom), ["back", "front", "own"]);
    let labelled = t.ok(&[
        "network",
        "ls",
        "-f",
        "label=team=web",
        "--format",
        "{{.Name}} {{.Labels}}",
    ]);
    assert_eq!(lines(&labelled), ["front team=web"]);
    let drivers = t.ok(&[
        "network",
        "ls",
        "--format",
        "{{.Name}}={{.Driver}}",
        "--filter",
        "name=o",
    ]);
    assert_eq!(lines(&drivers), ["front=bridge", "own=netpath"]);
    for l in lines(&t.ok(&["network", "ls", "--format", "json"])) {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
        assert!(v["Name"].is_string() && v["Subnet"].is_string(), "{v}");
    }
    let one: Value = serde_json::from_str(
        t.ok(&[
            "network",
            "ls",
            "--filter",
            "name=back",
            "--format",
            "{{json .}}",
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(one["Internal"], true);

    let eps = t.ok(&[
        "endpoint",
        "ls",
        "--format",
        "{{.Name}} {{.Network}} {{.IPAddress}}",
    ]);
    assert_eq!(
        lines(&eps),
        ["alpha front 10.40.1.2", "beta back 10.40.2.2"]
    );
    let by_net = t.ok(&common::words(
        "endpoint ls -q --filter network=back --no-trunc",
    ));
    assert_eq!(lines(&by_net)[0].len(), 64, "{by_net}");
    let published = t.ok(&[
        "endpoint",
        "ls",
        "--filter",
        "publish=8080",
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(lines(&published), ["alpha"]);
    let table = t.ok(&["endpoint", "ls"]);
    assert!(table.starts_with("ENDPOINT ID"), "{table}");
    assert!(table.contains("0.0.0.0:8080->80/tcp"), "{table}");

    let err = t.refused(&["network", "ls", "--filter", "color=red"]);
    assert!(err.contains("invalid filter 'color'"), "{err}");
    let err = t.refused(&["endpoint", "ls", "--format", "{{.Nope}}"]);
    assert!(err.contains("can't evaluate field Nope"), "{err}");
    let err = t.refused(&["network", "create", "x", "-d", "macvlan"]);
    assert!(
        err.starts_with("Error response from agent: unsupported driver"),
        "{err}"
    );
    // Overlay networks need the nodes of a cluster.
    let err = t.refused(&["network", "create", "x", "-d", "overlay"]);
    assert!(
        err.contains("overlay networks span the nodes of a cluster: start the agent with --etcd"),
        "{err}"
    );

    let v: Value = serde_json::from_str(&t.ok(&["endpoint", "inspect", "alpha"])).unwrap();
    assert_eq!(v[0]["Labels"]["tier"], "1");
    assert_eq!(v[0]["Ports"][0]["PublicPort"], 8080);
    assert_eq!(v[0]["Ports"][0]["PrivatePort"], 80);
    assert_eq!(v[0]["Ports"][0]["Type"], "tcp");
    assert_eq!(
        t.ok(&["endpoint", "inspect", "alpha", "--format", "{{.IPAddress}}"])
            .trim(),
        "10.40.1.2"
    );
    let v: Value = serde_json::from_str(&t.ok(&["network", "inspect", "front"])).unwrap();
    assert_eq!(v[0]["Labels"]["team"], "web");
}

#[test]
fn docker_port_and_collapsed_ranges() {
    let t = Topo::new();
    let _w = t.endpoint_with("web", "-p 8080:80 -p 127.0.0.1:8443:443 -p 5353:53/udp");
    // Docker's lines: a port without an address on both families (this host has IPv6).
    assert_eq!(
        lines(&t.ok(&["port", "web"])),
        [
            "53/udp -> 0.0.0.0:5353",
            "53/udp -> [::]:5353",
            "80/tcp -> 0.0.0.0:8080",
            "80/tcp -> [::]:8080",
            "443/tcp -> 127.0.0.1:8443"
        ]
    );
    assert_eq!(
        lines(&t.ok(&["port", "web", "80"])),
        ["0.0.0.0:8080", "[::]:8080"]
    );
    assert_eq!(
        lines(&t.ok(&["port", "web", "53/udp"])),
        ["0.0.0.0:5353", "[::]:5353"]
    );
    let err = t.refused(&["port", "web", "81/tcp"]);
    assert!(
        err.contains("no public port '81/tcp' published for web"),
        "{err}"
    );

    // 10,000 ports: one line in the listings.
    t.ok(&["port", "publish", "web", "20000-29999:20000-29999/udp"]);
    let ls = t.ok(&["port", "ls"]);
    assert_eq!(lines(&ls).len(), 2, "{ls}");
    assert!(ls.contains("0.0.0.0:20000-29999->20000-29999/udp"), "{ls}");
    let eps = t.ok(&["endpoint", "ls", "--format", "{{.Ports}}"]);
    assert!(eps.len() < 200, "{} bytes", eps.len());

    // A listing piped into `head` ends quietly.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{BIN} port web | head -1"))
        .env("NETPATH_SOCKET", t.socket())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "53/udp -> 0.0.0.0:5353"
    );
}

#[test]
fn several_names_each_handled_and_names_travel_safely() {
    let t = Topo::new();
    let _a = t.endpoint("a", &[]);
    let _b = t.endpoint("b", &[]);
    let out = t.cli(&["endpoint", "inspect", "a", "nope", "b"]);
    assert!(!out.status.success());
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "Error response from agent: no such endpoint: nope"
    );
    let out = t.cli(&["endpoint", "rm", "a", "nope", "b"]);
    assert!(!out.status.success());
    assert_eq!(lines(&String::from_utf8_lossy(&out.stdout)), ["a", "b"]);
    assert_eq!(lines(&String::from_utf8_lossy(&out.stderr)).len(), 1);
    assert_eq!(
        lines(&t.ok(&["endpoint", "ls", "-q"])).len(),
        0,
        "both removed"
    );

    t.ok(&["network", "create", "n4", "--subnet", "10.40.4.0/24"]);
    for bad in ["c?x=1", "../networks/n4", "n4/connect", "n4%2F..", ""] {
        let err = t.refused(&["network", "inspect", bad]);
        assert!(
            err.starts_with("Error response from agent: invalid name"),
            "{bad:?}: {err}"
        );
    }
    let err = t.refused(&["network", "rm", "../networks/n4"]);
    assert!(err.contains("invalid name"), "{err}");
    assert!(
        t.ok(&["network", "ls", "-q", "--filter", "name=n4"])
            .trim()
            .len()
            == 12
    );
    let long = "x".repeat(100_000);
    let err = t.refused(&["endpoint", "inspect", &long]);
    assert!(
        err.len() < 300,
        "the name is not echoed whole: {} bytes",
        err.len()
    );
}

#[test]
fn netns_by_name_version_and_errors() {
    let t = Topo::new();
    let ns = Netns::new("npcli");
    let out = t.ok(&["endpoint", "create", "named", "--netns", &ns.name]);
    assert_eq!(out.trim(), "named");
    let v: Value = serde_json::from_str(&t.ok(&["endpoint", "inspect", "named"])).unwrap();
    assert_eq!(v[0]["Netns"], format!("/run/netns/{}", ns.name));
    assert!(ns.ip(&["addr"]).contains("eth0"));

    let version = t.ok(&["version"]);
    for want in [
        "Client:",
        "Agent:",
        "Version:",
        "API version:",
        "Git commit:",
    ] {
        assert!(version.contains(want), "{want}: {version}");
    }
    let v: Value = serde_json::from_str(&t.ok(&["version", "--format", "json"])).unwrap();
    assert_eq!(v["Client"]["ApiVersion"], v["Agent"]["ApiVersion"]);
    assert_eq!(v["Client"]["GitCommit"], v["Agent"]["GitCommit"]);
    assert_ne!(v["Client"]["GitCommit"], "");

    let err = t.refused(&["endpoint", "rm", "ghost"]);
    assert_eq!(
        err.trim(),
        "Error response from agent: no such endpoint: ghost"
    );
    let out = Command::new(BIN)
        .args(["--socket", "/nonexistent/netpath.sock", "network", "ls"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("netpath: cannot reach the netpath agent"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["--socket", "/nonexistent/netpath.sock", "version"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Client:"));
}

#[test]
fn agent_logs_plain_text_or_json() {
    let t = Topo::new();
    let _ep = t.endpoint("web", &["-p", "8080:80"]);
    let log = t.agent_log();
    assert!(log.contains("endpoint created"), "{log}");
    assert!(!log.contains('\u{1b}'), "no colour codes in a log file");

    let mut j = Topo::with_agent_args(&["--log-format", "json", "--log-level", "debug"]);
    let _ep = j.endpoint("web", &["-p", "8080:80"]);
    j.stop_agent();
    let log = j.agent_log();
    let mut seen = 0;
    for l in lines(&log) {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{v}");
        seen += 1;
    }
    assert!(seen > 3, "{log}");
    assert!(log.contains("\"DEBUG\""), "debug level shown");
}

#[test]
fn completions_and_man_pages() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = run(&["completion", "bash"]);
    assert!(bash.contains("netpath") && bash.contains("endpoint") && bash.contains("--publish"));
    assert!(run(&["completion", "zsh"]).contains("#compdef netpath"));
    assert!(run(&["completion", "fish"]).contains("complete -c netpath"));
    let man = run(&["man"]);
    assert!(
        man.contains(".TH netpath"),
        "{}",
        &man[..200.min(man.len())]
    );
    let dir = std::env::temp_dir().join(format!("netpath-man-{}", std::process::id()));
    run(&["man", "--dir", dir.to_str().unwrap()]);
    let pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // Cleanup: already gone is as good as removed.
    let _ = std::fs::remove_dir_all(&dir);
    for p in [
        "netpath.1",
        "netpath-endpoint-create.1",
        "netpath-network-ls.1",
        "netpath-port.1",
    ] {
        assert!(pages.iter().any(|x| x == p), "{p} in {pages:?}");
    }
    let help = run(&["network", "create", "--help"]);
    assert!(
        help.contains("Examples:") && help.contains("--subnet <CIDR>"),
        "{help}"
    );
}
