//! Several nodes for the tests and the benchmark: an underlay (a bridge in a namespace of its
//! own, each node on a veth to it) and etcd (Debian's etcd-server, started with its own data
//! directory, restartable, killed on drop).
use std::{
    net::{IpAddr, SocketAddr, TcpStream},
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

    /// A namespace on the underlay with `addr` on its `ul0`: an IPv4 address in a /24, an
    /// IPv6 one in a /64 (usable at once: no duplicate address detection on a test wire).
    pub fn member(&mut self, prefix: &str, addr: impl Into<IpAddr>) -> Netns {
        let ns = Netns::new(prefix);
        self.members += 1;
        let port = format!("p{}", self.members);
        veth(&ns, "ul0", &self.hub, &port);
        self.hub.ip(&["link", "set", &port, "master", "br0"]);
        match addr.into() {
            IpAddr::V4(a) => ns.ip(&["addr", "add", &format!("{a}/24"), "dev", "ul0"]),
            IpAddr::V6(a) => ns.ip(&["addr", "add", &format!("{a}/64"), "dev", "ul0", "nodad"]),
        };
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
    addr: IpAddr,
    dir: PathBuf,
}

impl Etcd {
    /// Starts etcd in `ns` on `addr` (an address of `ns`) and waits until it answers.
    pub fn start(ns: &Netns, addr: impl Into<IpAddr>, dir: PathBuf) -> Etcd {
        let mut e = Etcd {
            child: None,
            ns: ns.name.clone(),
            addr: addr.into(),
            dir,
        };
        e.run(ns);
        e
    }

    /// Its client URL.
    pub fn url(&self) -> String {
        format!("http://{}", SocketAddr::new(self.addr, 2379))
    }

    /// Starts it again (after [`Etcd::stop`]) with the same data.
    pub fn run(&mut self, ns: &Netns) {
        std::fs::create_dir_all(&self.dir).expect("etcd's directory");
        let peer = format!("http://{}", SocketAddr::new(self.addr, 2380));
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
                TcpStream::connect_timeout(&SocketAddr::new(addr, 2379), Duration::from_millis(200))
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
