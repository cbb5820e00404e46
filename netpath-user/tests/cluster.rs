//! Nodes sharing one etcd: registration under a lease, the others' view, a dead node's
//! registration gone within its lease, restarts, etcd stopped and started, a name another
//! node holds. Every node and etcd (Debian's etcd-server, started here with its own data
//! directory) in its own namespace on one underlay bridge.
mod common;

use std::{
    net::{Ipv4Addr, SocketAddrV4, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::*;

const ETCD_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);

/// The underlay: a bridge in its own namespace, each member on a veth to it.
struct Underlay {
    hub: Netns,
    members: usize,
}

impl Underlay {
    fn new() -> Underlay {
        let hub = Netns::new("np-ul");
        hub.ip(&["link", "add", "br0", "type", "bridge"]);
        hub.ip(&["link", "set", "br0", "up"]);
        Underlay { hub, members: 0 }
    }

    /// A namespace on the underlay with `addr`/24 on its `ul0`.
    fn member(&mut self, prefix: &str, addr: Ipv4Addr) -> Netns {
        let ns = Netns::new(prefix);
        self.members += 1;
        let port = format!("p{}", self.members);
        veth(&ns, "ul0", &self.hub, &port);
        self.hub.ip(&["link", "set", &port, "master", "br0"]);
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "ul0"]);
        ns
    }
}

/// etcd on `ETCD_ADDR` in `ns`, its data in `dir`; killed on drop.
struct Etcd {
    child: Option<Child>,
    ns: String,
    dir: PathBuf,
}

impl Etcd {
    fn start(ns: &Netns, dir: PathBuf) -> Etcd {
        let mut e = Etcd {
            child: None,
            ns: ns.name.clone(),
            dir,
        };
        e.run(ns);
        e
    }

    fn url() -> String {
        format!("http://{ETCD_ADDR}:2379")
    }

    fn run(&mut self, ns: &Netns) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let peer = format!("http://{ETCD_ADDR}:2380");
        let log = std::fs::File::create(self.dir.join("etcd.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "etcd", "--name", "t"])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &Etcd::url()])
            .args(["--advertise-client-urls", &Etcd::url()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian's etcd-server; cargo xtask setup installs it)");
        self.child = Some(child);
        wait_until("etcd to answer", Duration::from_secs(20), || {
            ns.run(|| {
                TcpStream::connect_timeout(
                    &SocketAddrV4::new(ETCD_ADDR, 2379).into(),
                    Duration::from_millis(200),
                )
                .is_ok()
            })
        });
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A directory of the test's, removed on drop (a failed test leaves nothing behind).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        Scratch(std::env::temp_dir().join(format!("np-cluster-{}", unique())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An agent in `ns` (uplink `ul0`; its files and pins named after the namespace) joined to
/// etcd as `name`.
fn agent(ns: &Netns, name: &str, dir: &Scratch, bpffs: &ScratchBpffs) -> AgentProcess {
    agent_with(ns, name, dir, bpffs, &[])
}

fn agent_with(
    ns: &Netns,
    name: &str,
    dir: &Scratch,
    bpffs: &ScratchBpffs,
    extra: &[&str],
) -> AgentProcess {
    let mut opts = AgentOptions::new(BIN, &ns.name, "ul0", &dir.0.join(&ns.name));
    opts.bpffs = bpffs.path().join(&ns.name);
    opts.extra = vec![
        "--etcd".into(),
        Etcd::url(),
        "--node-name".into(),
        name.into(),
    ];
    opts.extra.extend(extra.iter().map(|s| s.to_string()));
    AgentProcess::start(opts).expect("agent starts")
}

/// `netpath node ls`: (names with underlays, whether it said it is disconnected).
fn nodes(a: &AgentProcess) -> (Vec<String>, bool) {
    let out = a
        .cli(&["node", "ls", "--format", "{{.ID}}={{.Underlay}}"])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let disconnected = String::from_utf8_lossy(&out.stderr).contains("not connected to etcd");
    (names, disconnected)
}

#[test]
fn nodes_register_see_each_other_and_leave_with_their_lease() {
    let mut ul = Underlay::new();
    let etcd_ns = ul.member("np-etcd", ETCD_ADDR);
    let n1 = ul.member("np-n1", Ipv4Addr::new(10, 77, 0, 1));
    let n2 = ul.member("np-n2", Ipv4Addr::new(10, 77, 0, 2));
    let n3 = ul.member("np-n3", Ipv4Addr::new(10, 77, 0, 3));
    let dir = Scratch::new();
    let bpffs = ScratchBpffs::new().unwrap();
    let mut etcd = Etcd::start(&etcd_ns, dir.0.join("etcd"));

    let a1 = agent_with(&n1, "n1", &dir, &bpffs, &["--metrics", "10.77.0.1:9142"]);
    let mut a2 = agent(&n2, "n2", &dir, &bpffs);
    let both = vec!["n1=10.77.0.1".to_string(), "n2=10.77.0.2".to_string()];
    wait_until("both nodes to see both", Duration::from_secs(20), || {
        nodes(&a1) == (both.clone(), false) && nodes(&a2) == (both.clone(), false)
    });

    let status = a1.cli(&["status"]).unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("node n1, 2 nodes, etcd connected"),
        "{status}"
    );
    let metrics = n2.exec("curl", &["-sf", "http://10.77.0.1:9142/metrics"]);
    assert!(metrics.contains("netpath_cluster_connected 1"), "{metrics}");
    assert!(metrics.contains("netpath_cluster_nodes 2"), "{metrics}");
    promtool_accepts(&metrics);

    // A name another node holds is not taken over: the third node says why, n1 stays.
    let a3 = agent(&n3, "n1", &dir, &bpffs);
    wait_until("the clash to be reported", Duration::from_secs(20), || {
        let out = a3.cli(&["node", "ls"]).unwrap();
        String::from_utf8_lossy(&out.stderr).contains("registered by the node at 10.77.0.1")
    });
    assert_eq!(nodes(&a1).0, both);
    drop(a3);

    // A node that dies loses its registration within the lease's TTL.
    a2.kill();
    wait_until(
        "n2 to leave n1's view",
        Duration::from_secs(netpath_user::cluster::LEASE_TTL_SECS as u64 + 10),
        || nodes(&a1).0 == ["n1=10.77.0.1"],
    );
    // Back again: registered once, seen by both.
    let a2 = agent(&n2, "n2", &dir, &bpffs);
    wait_until("n2 back in both views", Duration::from_secs(20), || {
        nodes(&a1) == (both.clone(), false) && nodes(&a2) == (both.clone(), false)
    });

    // etcd stopped: each node keeps what it knew and says it is disconnected; etcd back:
    // they re-sync.
    etcd.stop();
    wait_until("n1 to notice etcd is gone", Duration::from_secs(20), || {
        nodes(&a1) == (both.clone(), true)
    });
    let status = a1.cli(&["status"]).unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("etcd not connected ("), "{status}");
    etcd.run(&etcd_ns);
    wait_until("both to re-sync", Duration::from_secs(30), || {
        nodes(&a1) == (both.clone(), false) && nodes(&a2) == (both.clone(), false)
    });

    // A restart within the lease takes the registration back (same name, same address):
    // connected again, both nodes listed once.
    drop(a1);
    let a1 = agent(&n1, "n1", &dir, &bpffs);
    wait_until("n1 back within its lease", Duration::from_secs(20), || {
        nodes(&a1) == (both.clone(), false) && nodes(&a2) == (both.clone(), false)
    });
    drop(a1);
    drop(a2);
    drop(etcd);
}

#[test]
fn a_node_on_its_own_and_bad_cluster_flags_are_refused_plainly() {
    let mut ul = Underlay::new();
    let n1 = ul.member("np-n1", Ipv4Addr::new(10, 77, 0, 1));
    let dir = Scratch::new();
    let bpffs = ScratchBpffs::new().unwrap();
    let mut opts = AgentOptions::new(BIN, &n1.name, "ul0", &dir.0.join("alone"));
    opts.bpffs = bpffs.path().join("alone");
    let alone = AgentProcess::start(opts.clone()).unwrap();
    let out = alone.cli(&["node", "ls"]).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("on its own: start the agent with --etcd"),
        "{err}"
    );
    let status = alone.cli(&["status"]).unwrap();
    assert!(String::from_utf8_lossy(&status.stdout).contains("none (this node is on its own)"));
    drop(alone);

    for (extra, says) in [
        (
            vec![
                "--etcd",
                "http://10.77.0.100:2379",
                "--etcd-cert",
                "/nonexistent.pem",
            ],
            "--etcd-cert and --etcd-key go together",
        ),
        (
            vec![
                "--etcd",
                "http://10.77.0.100:2379",
                "--node-name",
                "bad name",
            ],
            "invalid node name",
        ),
    ] {
        let mut o = opts.clone();
        o.extra = extra.iter().map(|s| s.to_string()).collect();
        let err = AgentProcess::start(o).err().expect("refused").to_string();
        assert!(err.contains(says), "{extra:?}: {err}");
    }
}
