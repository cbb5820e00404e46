//! What an operator deploys: the systemd unit (verified by systemd itself, readiness told
//! when the API serves), the configuration file with flags over it, and what a bad file says.
mod common;

use std::{
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::{Topo, BIN};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netpath-op-{tag}-{}", std::process::id()));
    // Cleanup: already gone is as good as removed.
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn dist(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist")
        .join(file)
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let dir = scratch("unit");
    let unit = std::fs::read_to_string(dist("netpath.service"))
        .unwrap()
        .replace("/usr/local/bin/netpath", BIN);
    for want in [
        "Type=notify",
        "Restart=always",
        "CapabilityBoundingSet=",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(want), "{want}");
    }
    std::fs::write(dir.join("netpath.service"), unit).unwrap();
    // Its Documentation= names man:netpath(1): the pages the binary makes.
    let man = dir.join("man/man1");
    assert!(Command::new(BIN)
        .arg("man")
        .arg("--dir")
        .arg(&man)
        .status()
        .unwrap()
        .success());
    common::systemd_accepts(&dir.join("netpath.service"), &dir.join("man"));
    // The example configuration is one the agent reads.
    let config = dist("netpath.toml");
    common::sh(
        BIN,
        &[
            "agent",
            "--config",
            config.to_str().unwrap(),
            "--print-config",
        ],
    );
    // Cleanup: already gone is as good as removed.
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn readiness_is_told_to_systemd_once_the_api_serves() {
    let dir = scratch("notify");
    let notify = dir.join("notify.sock");
    let listen = UnixDatagram::bind(&notify).unwrap();
    listen
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut t = Topo::new();
    t.stop_agent();
    t.agent_opts_mut()
        .env
        .push(("NOTIFY_SOCKET".into(), notify.display().to_string()));
    t.start_agent();
    let mut buf = [0u8; 512];
    let n = listen.recv(&mut buf).expect("a notification");
    let said = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(said.starts_with("READY=1"), "{said}");
    assert!(
        t.cli(&["network", "ls"]).status.success(),
        "serving when ready"
    );
    t.stop_agent();
    let n = listen.recv(&mut buf).expect("a notification");
    assert_eq!(&buf[..n], b"STOPPING=1");
    // Cleanup: already gone is as good as removed.
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_configuration_file_holds_every_flag_and_flags_win() {
    let dir = scratch("conf");
    let conf = dir.join("netpath.toml");
    std::fs::write(
        &conf,
        "max-flows = 4096\nlog-format = \"json\"\nxdp = \"off\"\n",
    )
    .unwrap();
    let mut t = Topo::new();
    t.stop_agent();
    t.set_agent_args(&["--config", conf.to_str().unwrap(), "--max-ports", "8192"]);
    t.start_agent();
    let log = t.agent_log();
    let last = log.lines().last().unwrap_or("");
    assert!(
        serde_json::from_str::<serde_json::Value>(last).is_ok(),
        "JSON logs: {last}"
    );
    let shown = |name: &str| {
        let out = Command::new("bpftool")
            .args(["-j", "map", "show", "pinned"])
            .arg(t.pins().join(name))
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["max_entries"].clone()
    };
    assert_eq!(shown("FLOWS"), 4096, "from the file");
    assert_eq!(shown("PORTS"), 8192, "from the flag");

    let printed = Command::new(BIN)
        .args([
            "agent",
            "--config",
            conf.to_str().unwrap(),
            "--xdp",
            "generic",
            "--print-config",
        ])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("max-flows = 4096"), "{printed}");
    assert!(
        printed.contains("xdp = \"generic\""),
        "flags win: {printed}"
    );

    // A bad file: refused with file, line and key, before anything on the host changes.
    t.stop_agent();
    assert!(t.uninstall().status.success());
    std::fs::write(&conf, "xdp = \"off\"\nmax-flow = 10\n").unwrap();
    let err = t.start_agent_failing();
    assert!(
        err.contains(&format!("{}:2: max-flow: unknown field", conf.display())),
        "{err}"
    );
    std::fs::write(&conf, "xdp = \"fastest\"\n").unwrap();
    let err = t.start_agent_failing();
    assert!(
        err.contains(&format!("{}:1: xdp: ", conf.display())),
        "{err}"
    );
    // A Docker host the agent cannot read: one line, nothing changed.
    std::fs::write(&conf, "docker-host = \"tcp://10.0.0.1:2375\"\n").unwrap();
    let err = t.start_agent_failing();
    assert!(
        err.contains("docker host \"tcp://10.0.0.1:2375\": expected unix:///PATH"),
        "{err}"
    );
    assert_eq!(
        t.host
            .exec("cat", &["/proc/sys/net/ipv4/ip_forward"])
            .trim(),
        "0"
    );
    // Cleanup: already gone is as good as removed.
    let _ = std::fs::remove_dir_all(&dir);
}
