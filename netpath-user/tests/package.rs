//! The Debian package as an operator meets it: installed with dpkg on a host that has no Rust,
//! no LLVM and no source tree (a minimal Debian 12 root, made by `cargo xtask test` with
//! mmdebstrap), started as its unit starts it with the packaged configuration, serving a
//! published port to an outside client, upgraded under traffic, removed and purged.
//!
//! The host is a network namespace plus a mount namespace chrooted into the root, held by one
//! process; every command runs there through nsenter. Paths: `NETPATH_DEB`,
//! `NETPATH_DEB_UPGRADE`, `NETPATH_DEBIAN_ROOT` (set by `cargo xtask test`).
use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use netpath_user::testing::{
    sh, succeeded,
    traffic::{tcp_echo_server, udp_server},
    unique, veth, wait_until, Netns, SteadyTraffic,
};

mod common;

const HOST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

fn env_path(name: &str) -> PathBuf {
    let p = PathBuf::from(std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the package tests through `cargo xtask test`")
    }));
    assert!(p.exists(), "{name}={} does not exist", p.display());
    p
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netpath-pkg-{name}-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The package unpacked (not installed) into `dir`.
fn extract(deb: &Path, dir: &Path) {
    sh(
        "dpkg-deb",
        &["-x", deb.to_str().unwrap(), dir.to_str().unwrap()],
    );
}

#[test]
fn the_package_holds_the_product_and_what_an_operator_needs() {
    let deb = env_path("NETPATH_DEB");
    let dir = scratch("contents");
    extract(&deb, &dir);
    for f in [
        "usr/bin/netpath",
        "usr/lib/cni/netpath-cni",
        "lib/systemd/system/netpath.service",
        "etc/netpath/netpath.toml",
        "usr/share/man/man1/netpath.1.gz",
        "usr/share/man/man1/netpath-agent.1.gz",
        "usr/share/bash-completion/completions/netpath",
        "usr/share/zsh/vendor-completions/_netpath",
        "usr/share/fish/vendor_completions.d/netpath.fish",
        "usr/share/doc/netpath/copyright",
        "usr/share/doc/netpath/changelog.Debian.gz",
    ] {
        assert!(dir.join(f).exists(), "{f} is not in the package");
    }
    let field = |f: &str| {
        sh("dpkg-deb", &["-f", deb.to_str().unwrap(), f])
            .trim()
            .to_string()
    };
    // Depends: only the C runtime the binaries link; the agent runs no other program.
    let depends = field("Depends");
    for dep in depends.split(',') {
        let name = dep.split_whitespace().next().unwrap();
        assert!(["libc6", "libgcc-s1"].contains(&name), "Depends: {depends}");
    }
    let version = field("Version");
    let control = scratch("control");
    sh(
        "dpkg-deb",
        &["-e", deb.to_str().unwrap(), control.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read_to_string(control.join("conffiles")).unwrap(),
        "/etc/netpath/netpath.toml\n"
    );

    // One version everywhere: the binary reports the package's, with its commit and the hash
    // of the kernel programs it embeds, and no test support.
    let bin = dir.join("usr/bin/netpath");
    let line = succeeded(
        Command::new(&bin).arg("--version").output().unwrap(),
        "--version",
    );
    assert!(
        line.starts_with(&format!("netpath {version} (commit ")),
        "{line}"
    );
    assert!(line.contains("ebpf sha256:"), "{line}");
    assert!(!line.contains("testing"), "{line}");
    // The benchmark's programs and maps live in an object the product does not carry.
    let bytes = std::fs::read(&bin).unwrap();
    for marker in ["netpath_bench_", "BENCH_GEN", "BENCH_SINK"] {
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{marker} is in the packaged binary"
        );
    }
    let copyright = std::fs::read_to_string(dir.join("usr/share/doc/netpath/copyright")).unwrap();
    assert!(copyright.contains("License: MIT or Apache-2.0"));
    assert!(copyright.contains(" aya "), "the linked crates are listed");
    assert!(
        !dir.join("opt").exists(),
        "Debian packages stay out of /opt"
    );

    // The unit as packaged passes systemd-analyze (the binary's path pointed at the extracted
    // one, the man pages of its Documentation= found in the package).
    let unit = std::fs::read_to_string(dir.join("lib/systemd/system/netpath.service"))
        .unwrap()
        .replace("/usr/bin/netpath", bin.to_str().unwrap());
    assert!(unit.contains("Type=notify"));
    std::fs::write(control.join("netpath.service"), unit).unwrap();
    common::systemd_accepts(&control.join("netpath.service"), &dir.join("usr/share/man"));
    let _ = std::fs::remove_dir_all(&dir); // scratch
    let _ = std::fs::remove_dir_all(&control); // scratch
}

/// A Debian host: its own network namespace, and a process chrooted into the root in a mount
/// namespace of its own with /proc, /sys, cgroup2, a bpffs, /dev and an empty /run.
struct DebHost {
    root: PathBuf,
    ns: Netns,
    holder: Child,
    agent: Option<Child>,
}

impl DebHost {
    fn new(tar: &Path) -> DebHost {
        let root = scratch("root");
        sh(
            "tar",
            &[
                "-x",
                "--numeric-owner",
                "-f",
                tar.to_str().unwrap(),
                "-C",
                root.to_str().unwrap(),
            ],
        );
        let ns = Netns::new("pkgh");
        let script = "set -e; R=$0
            mount -t proc proc $R/proc
            mount -t sysfs sysfs $R/sys
            mount -t cgroup2 cgroup2 $R/sys/fs/cgroup
            mount -t bpf bpf $R/sys/fs/bpf
            mount --rbind /dev $R/dev
            mount -t tmpfs tmpfs $R/run
            mkdir -p $R/run/netns
            mount --rbind /run/netns $R/run/netns # the namespaces made before it
            exec chroot $R sleep infinity";
        let holder = Command::new("nsenter")
            .arg(format!("--net={}", ns.path()))
            .args([
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ])
            .arg(&root)
            .stdin(Stdio::null())
            .spawn()
            .expect("the host's holder process");
        let host = DebHost {
            root,
            ns,
            holder,
            agent: None,
        };
        let pid = host.holder.id();
        wait_until("the Debian host's mounts", Duration::from_secs(10), || {
            std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == host.root)
        });
        host
    }

    /// A command run on the host: its namespaces, its root.
    fn cmd(&self, prog: &str, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.args([
            "-t",
            &self.holder.id().to_string(),
            "-m",
            "-n",
            "-r",
            "-w",
            "--",
            prog,
        ])
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null());
        c
    }

    fn run(&self, prog: &str, args: &[&str]) -> Output {
        self.cmd(prog, args).output().unwrap()
    }

    fn netpath(&self, args: &[&str]) -> Output {
        self.run("/usr/bin/netpath", args)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// Starts the agent as the installed unit says (its ExecStartPre, then its ExecStart),
    /// and waits until it answers.
    fn start_agent(&mut self) {
        let unit = std::fs::read_to_string(self.path("/lib/systemd/system/netpath.service"))
            .expect("the installed unit");
        for pre in unit.lines().filter_map(|l| l.strip_prefix("ExecStartPre=")) {
            // `+`: runs with full privileges (outside the sandbox), as everything here does.
            let words: Vec<&str> = pre.trim_start_matches('+').split_whitespace().collect();
            succeeded(self.run(words[0], &words[1..]), pre);
        }
        let exec = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .expect("ExecStart");
        let words: Vec<&str> = exec.split_whitespace().collect();
        let log = std::fs::File::create(self.root.with_extension("agent.log")).unwrap();
        let child = self
            .cmd(words[0], &words[1..])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agent = Some(child);
        wait_until(
            "the packaged agent to answer",
            Duration::from_secs(30),
            || self.netpath(&["status"]).status.success(),
        );
    }

    /// Stops the agent as systemd would (SIGTERM, then waits for it).
    fn stop_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            // nsenter forwards nothing: signal the agent itself, nsenter's child.
            let agent = agent_pid(child.id());
            sh("kill", &["-TERM", &agent.to_string()]);
            let _ = child.wait(); // nsenter exits with the agent
        }
    }

    fn agent_log(&self) -> String {
        std::fs::read_to_string(self.root.with_extension("agent.log")).unwrap_or_default()
    }

    /// Every path in the root but the kernel's file systems and dpkg's own books.
    fn files(&self) -> BTreeSet<String> {
        let out = sh(
            "find",
            &[
                self.root.to_str().unwrap(),
                "-xdev",
                "(",
                "-path",
                &format!("{}/var/lib/dpkg", self.root.display()),
                "-o",
                "-path",
                &format!("{}/var/log", self.root.display()),
                ")",
                "-prune",
                "-o",
                "-print",
            ],
        );
        out.lines()
            .map(|l| {
                l.trim_start_matches(self.root.to_str().unwrap())
                    .to_string()
            })
            .collect()
    }

    /// The host namespace's network sysctls.
    fn sysctls(&self) -> BTreeSet<String> {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.ns.path()))
            .args(["sysctl", "-a"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                l.starts_with("net.ipv4.")
                    || l.starts_with("net.ipv6.")
                    || l.starts_with("net.core.")
            })
            // Counters and hashes the kernel changes by itself.
            .filter(|l| {
                !l.contains("stable_secret")
                    && !l.starts_with("net.ipv4.route.")
                    && !l.starts_with("net.ipv6.route.")
            })
            .map(str::to_string)
            .collect()
    }
}

/// The agent under an nsenter process.
fn agent_pid(nsenter: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{nsenter}/task/{nsenter}/children"))
        .unwrap_or_default();
    children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(nsenter)
}

impl Drop for DebHost {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            // It may have exited already; either way it is gone.
            let _ = Command::new("kill")
                .arg(agent_pid(a.id()).to_string())
                .status();
            let _ = a.wait(); // best effort on a failed test
        }
        let _ = self.holder.kill(); // its mount namespace, and every mount in it, go with it
        let _ = self.holder.wait();
        let _ = std::fs::remove_dir_all(&self.root);
        let _ = std::fs::remove_file(self.root.with_extension("agent.log"));
    }
}

/// The agent's programs: (id, tag) each.
fn programs(host: &DebHost) -> Vec<(u32, String)> {
    let status = succeeded(host.netpath(&["status", "--format", "json"]), "status");
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let progs: Vec<(u32, String)> = v["Programs"]
        .as_array()
        .expect("Programs")
        .iter()
        .map(|p| (p["Id"].as_u64().unwrap() as u32, p["Tag"].to_string()))
        .collect();
    assert!(!progs.is_empty(), "{status}");
    progs
}

fn program_exists(id: u32) -> bool {
    Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn dpkg_installs_upgrades_removes_and_purges_a_working_agent() {
    let deb = env_path("NETPATH_DEB");
    let upgrade = env_path("NETPATH_DEB_UPGRADE");
    // Namespaces first: the host's /run/netns is a copy of the machine's taken when it starts.
    let outside = Netns::new("pkgo");
    let web = Netns::new("pkgw");
    let mut host = DebHost::new(&env_path("NETPATH_DEBIAN_ROOT"));
    // A bare Debian host: nothing to build with, no source tree.
    for absent in [
        "/usr/bin/cargo",
        "/usr/bin/rustc",
        "/root/.cargo",
        "/usr/lib/llvm-22",
        "/usr/bin/gcc",
    ] {
        assert!(!host.path(absent).exists(), "{absent} on the bare host");
    }
    // A CNI runtime that looks in /opt/cni/bin (containerd) is there.
    std::fs::create_dir_all(host.path("/opt/cni/bin")).unwrap();
    std::fs::copy(&deb, host.path("/srv/netpath.deb")).unwrap();
    std::fs::copy(&upgrade, host.path("/srv/netpath-upgrade.deb")).unwrap();
    let files_before = host.files();

    veth(&outside, "o0", &host.ns, "h0");
    outside.ip(&["addr", "add", "10.77.0.1/24", "dev", "o0"]);
    host.ns.ip(&["addr", "add", "10.77.0.2/24", "dev", "h0"]);
    let sysctls_before = host.sysctls();

    // Install; the operator names the uplink in the packaged configuration.
    let out = succeeded(host.run("dpkg", &["-i", "/srv/netpath.deb"]), "dpkg -i");
    assert!(out.contains("systemctl enable --now netpath"), "{out}");
    assert_eq!(
        std::fs::read_link(host.path("/opt/cni/bin/netpath-cni")).unwrap(),
        Path::new("/usr/lib/cni/netpath-cni"),
        "the plugin is where containerd looks"
    );
    let conf = host.path("/etc/netpath/netpath.toml");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("\nuplinks = [\"h0\"]\n");
    std::fs::write(&conf, &text).unwrap();
    host.start_agent();
    let v: serde_json::Value = serde_json::from_str(&succeeded(
        host.netpath(&["version", "--format", "json"]),
        "version",
    ))
    .unwrap();
    let version = sh("dpkg-deb", &["-f", deb.to_str().unwrap(), "Version"]);
    assert_eq!(v["Agent"]["Version"], version.trim(), "{v}");
    assert_eq!(
        v["Agent"]["Features"],
        serde_json::json!([]),
        "no test support: {v}"
    );
    assert_eq!(
        v["Agent"]["EbpfSHA256"].as_str().map(str::len),
        Some(64),
        "{v}"
    );

    // A published port, reached from outside with the client's own address.
    succeeded(
        host.netpath(&common::words(&format!(
            "endpoint create web --netns {} -p 8080:80 -p 8080:80/udp",
            web.name
        ))),
        "endpoint create",
    );
    tcp_echo_server(&web, 80);
    udp_server(&web, 80);
    let r = common::udp_request(&outside, HOST, 8080, "hello").expect("the published port");
    assert!(
        r.starts_with("10.77.0.1:"),
        "the client's address is kept: {r}"
    );

    // Removal refuses while the agent runs, and changes nothing.
    let refused = host.run("dpkg", &["-r", "netpath"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("stop the agent first"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(host.path("/usr/bin/netpath").exists());
    common::udp_request(&outside, HOST, 8080, "still").expect("still published");

    // Upgrade under traffic: the new package, then the agent restarted as the unit's
    // try-restart does; the new agent adopts the datapath and swaps its programs.
    let programs_v1 = programs(&host);
    let traffic = SteadyTraffic::start(&outside, HOST, 8080, 8080);
    traffic.wait_for(20);
    succeeded(
        host.run("dpkg", &["-i", "/srv/netpath-upgrade.deb"]),
        "dpkg -i (upgrade)",
    );
    traffic.wait_for(20);
    host.stop_agent();
    traffic.wait_for(20);
    host.start_agent();
    traffic.wait_for(50);
    let r = traffic.finish();
    assert_eq!(r.tcp_failed, 0, "{r:?}\n{}", host.agent_log());
    assert!(r.udp_lost.is_empty(), "{r:?}");
    let v = succeeded(
        host.netpath(&["version", "--format", "{{.Agent.Version}}"]),
        "version",
    );
    assert_eq!(
        v.trim(),
        sh("dpkg-deb", &["-f", upgrade.to_str().unwrap(), "Version"]).trim()
    );
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        text,
        "the operator's config is kept"
    );
    let programs_v2 = programs(&host);
    let tags = |p: &[(u32, String)]| p.iter().map(|(_, t)| t.clone()).collect::<BTreeSet<_>>();
    assert_ne!(
        tags(&programs_v2),
        tags(&programs_v1),
        "the upgrade's programs run"
    );

    // Removal: the datapath goes with the binary, the configuration stays.
    host.stop_agent();
    let out = succeeded(host.run("dpkg", &["-r", "netpath"]), "dpkg -r");
    assert!(out.contains("detached"), "{out}");
    assert!(!host.path("/usr/bin/netpath").exists());
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        text,
        "dpkg -r keeps the config"
    );
    // The endpoint program is in its own tail-call table (the fragment program hands packets
    // back to it): the kernel empties the table, and frees the program, a moment after the
    // table's last pin goes.
    wait_until(
        "every program of both versions unloaded",
        Duration::from_secs(10),
        || {
            !programs_v1
                .iter()
                .chain(&programs_v2)
                .any(|(id, _)| program_exists(*id))
        },
    );
    // (maps.debug and progs.debug are the kernel's own, in every bpffs)
    let left: Vec<String> = String::from_utf8_lossy(&host.run("ls", &["-A", "/sys/fs/bpf"]).stdout)
        .lines()
        .filter(|l| !l.ends_with(".debug"))
        .map(str::to_string)
        .collect();
    assert!(left.is_empty(), "pins left in the host's bpffs: {left:?}");
    let links = host.ns.ip(&["-o", "link", "show"]);
    assert!(
        !links.contains("netpath0") && !links.contains(": np"),
        "{links}"
    );
    let tc = sh(
        "nsenter",
        &[
            &format!("--net={}", host.ns.path()),
            "bpftool",
            "net",
            "show",
        ],
    );
    assert!(!tc.contains("netpath"), "{tc}");
    assert_eq!(host.sysctls(), sysctls_before, "sysctls given back");
    assert!(
        common::udp_request(&outside, HOST, 8080, "gone").is_err(),
        "the port is gone"
    );

    // Purge: nothing of netpath is left on the host.
    succeeded(host.run("dpkg", &["--purge", "netpath"]), "dpkg --purge");
    let files_after = host.files();
    let added: Vec<&String> = files_after.difference(&files_before).collect();
    let removed: Vec<&String> = files_before.difference(&files_after).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "left: {added:?}, lost: {removed:?}"
    );
}
