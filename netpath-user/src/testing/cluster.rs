//! Several nodes for the tests and the benchmark: an underlay (a bridge in a namespace of its
//! own, each node on a veth to it) and etcd (Debian's etcd-server, started with its own data
//! directory, restartable, killed on drop).
use std::{
    net::{Ipv4Addr, SocketAddrV4, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{stop_slot, veth, wait_until, Netns};

/// The underlay: a bridge in its own namespace, each member on a veth to it.
pub struct Underlay {
    pub hub: Netns,
    members: usize,
}

impl Underlay {
    pub fn new() -> Underlay {
        let hub = Netns::new("np-ul");
        hub.ip(&["link", "add", "br0", "type", "bridge"]);
        hub.ip(&["link", "set", "br0", "up"]);
        Underlay { hub, members: 0 }
    }

    /// A namespace on the underlay with `addr`/24 on its `ul0`.
    pub fn member(&mut self, prefix: &str, addr: Ipv4Addr) -> Netns {
        let ns = Netns::new(prefix);
        self.members += 1;
        let port = format!("p{}", self.members);
        veth(&ns, "ul0", &self.hub, &port);
        self.hub.ip(&["link", "set", &port, "master", "br0"]);
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "ul0"]);
        ns
    }
}

impl Default for Underlay {
    fn default() -> Self {
        Underlay::new()
    }
}

/// etcd on `addr` in a namespace, its data in `dir` (removed on drop); killed on drop.
pub struct Etcd {
    child: Option<Child>,
    ns: String,
    addr: Ipv4Addr,
    dir: PathBuf,
}

impl Etcd {
    /// Starts etcd in `ns` on `addr` (an address of `ns`) and waits until it answers.
    pub fn start(ns: &Netns, addr: Ipv4Addr, dir: PathBuf) -> Etcd {
        let mut e = Etcd {
            child: None,
            ns: ns.name.clone(),
            addr,
            dir,
        };
        e.run(ns);
        e
    }

    /// Its client URL.
    pub fn url(&self) -> String {
        format!("http://{}:2379", self.addr)
    }

    /// Starts it again (after [`Etcd::stop`]) with the same data.
    pub fn run(&mut self, ns: &Netns) {
        std::fs::create_dir_all(&self.dir).expect("etcd's directory");
        let peer = format!("http://{}:2380", self.addr);
        let log = std::fs::File::create(self.dir.join("etcd.log")).expect("etcd's log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "etcd", "--name", "t"])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &self.url()])
            .args(["--advertise-client-urls", &self.url()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd's log"))
            .stderr(log)
            .spawn()
            .expect("etcd (Debian's etcd-server; cargo xtask setup installs it)");
        self.child = Some(child);
        let addr = self.addr;
        wait_until("etcd to answer", Duration::from_secs(20), || {
            ns.run(|| {
                TcpStream::connect_timeout(
                    &SocketAddrV4::new(addr, 2379).into(),
                    Duration::from_millis(200),
                )
                .is_ok()
            })
        });
    }

    pub fn stop(&mut self) {
        stop_slot(&mut self.child);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        // Cleanup: already gone is as good as removed.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
