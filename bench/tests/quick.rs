//! Smoke test of the benchmark harness: `bench --quick` runs every scenario and every variant
//! produces a figure (no speed is checked here: speeds belong to the report).
use std::process::Command;

use serde_json::Value;

#[test]
fn quick_mode_gives_every_variant_a_figure() {
    let bin = env!("CARGO_BIN_EXE_bench");
    // The harness starts the agent from beside its own binary.
    let netpath = std::path::Path::new(bin).with_file_name("netpath");
    assert!(
        netpath.exists(),
        "{} missing: build netpath-user too",
        netpath.display()
    );
    let dir =
        Scratch(std::env::temp_dir().join(format!("netpath-bench-smoke-{}", std::process::id())));
    let out = &dir.0;
    let st = Command::new(bin)
        .arg("--quick")
        .arg("--out")
        .arg(out)
        .status()
        .expect("run bench");
    assert!(st.success(), "bench --quick failed");
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    // What was measured, where and when, at the top.
    for key in ["date", "commit"] {
        assert!(report[key].as_str().is_some_and(|v| !v.is_empty()), "{key}");
        assert!(md.contains(&format!("| {key} | ")), "{key} in the report");
    }
    assert!(md.contains("| run | quick"), "quick or full at the top");
    let sections = report["sections"].as_array().unwrap();
    let names: Vec<&str> = sections
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    for want in [
        "prog",
        "policy: per-packet cost",
        "policy: applying",
        "policy: refused flood",
        "pps",
        "pps6",
        "conn",
        "host tax: tcp rr",
        "host tax: tcp bulk",
        "host tax: udp",
        "host tax: udp cpu",
        "tcp rr",
        "tcp bulk",
        "tcp6 rr",
        "tcp6 bulk",
        "e2e rr",
        "e2e bulk",
        "e2e6 rr",
        "e2e6 bulk",
        "host-local",
        "outbound",
        "scale: per-packet cost",
        "scale: new-flow rate",
        "scale: install",
        "flows: held",
        "flows: memory per flow",
        "agent: restart and upgrade",
        "agent: start to ready",
        "agent: memory",
        "agent: endpoint create",
        "dns qps",
        "dns latency p99",
        "docker: docker run -p until the first byte",
        "docker: TCP request/response through -p",
        "docker: TCP bulk through -p",
        "docker: host-local 127.0.0.1:PORT",
    ] {
        assert!(names.contains(&want), "no section {want:?} in {names:?}");
    }
    // Docker's bridge driver, measured beside netpath (setup installs docker.io).
    let agent = sections
        .iter()
        .find(|s| s["scenario"] == "agent: endpoint create")
        .unwrap();
    assert!(
        agent["figures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["variant"].as_str().unwrap().starts_with("docker run")),
        "{}",
        agent["about"]
    );
    for s in sections {
        let figures = s["figures"].as_array().unwrap();
        assert!(!figures.is_empty(), "{} has no figures", s["scenario"]);
        // Every section says what it must reach, so a loss is flagged, not just listed.
        assert!(
            !s["targets"].as_array().unwrap().is_empty(),
            "{} has no target",
            s["scenario"]
        );
        // A limit is measured: its floor is a variant of the same section.
        for t in s["targets"].as_array().unwrap() {
            if let Some(floor) = t["limit"]["floor"].as_str() {
                assert!(
                    figures.iter().any(|f| f["variant"] == floor),
                    "{}: limit floor {floor:?} is not one of its variants",
                    s["scenario"]
                );
            }
        }
        for f in figures {
            let runs = f["runs"].as_array().unwrap();
            assert!(
                !runs.is_empty(),
                "{} / {}: no runs",
                s["scenario"],
                f["variant"]
            );
            assert!(
                runs.iter().all(|r| r.as_f64().is_some_and(f64::is_finite)),
                "{} / {}: {runs:?}",
                s["scenario"],
                f["variant"]
            );
            assert!(md.contains(f["variant"].as_str().unwrap()));
        }
        for p in s["plots"].as_array().into_iter().flatten() {
            assert!(out.join(p.as_str().unwrap()).exists(), "plot {p} missing");
        }
    }
}

/// The report's directory, removed when the test ends, passed or failed.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
