//! A namespaced test installation: an "outside" namespace, a "host" namespace running its own
//! agent with the uplink veth between them, endpoint namespaces made through the CLI, and
//! servers and clients with real sockets.
use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::Duration,
};

pub use netpath_user::testing::traffic::{
    tcp_echo_server, tcp_echo_server6, udp_server, udp_server6,
};
use netpath_user::testing::{
    outside_and_host, unique, veth, wait_until, words, AgentOptions, AgentProcess, Netns,
    ScratchBpffs,
};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_netpath");
pub const OUTSIDE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const HOST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// outside ns ⇄ host ns (agent) ⇄ endpoint namespaces.
pub struct Topo {
    pub outside: Netns,
    pub host: Netns,
    pub uplink: String,
    dir: PathBuf,
    socket: PathBuf,
    opts: AgentOptions,
    agent: Option<AgentProcess>,
    /// Where the agent pins: mounted here, outside the agent's own mount namespace, so pins
    /// outlive an agent (as /sys/fs/bpf does on a host). Unmounted last.
    bpffs: ScratchBpffs,
}

impl Topo {
    pub fn new() -> Topo {
        Topo::with_xdp("off")
    }

    pub fn with_xdp(xdp: &'static str) -> Topo {
        Topo::build(xdp, &[])
    }

    /// An agent started with more flags.
    pub fn with_agent_args(extra: &[&str]) -> Topo {
        Topo::build("off", extra)
    }

    fn build(xdp: &str, extra: &[&str]) -> Topo {
        let (outside, host, o, h) = outside_and_host("npout", "nphost", 24);
        let id = unique();
        if xdp != "off" {
            // A NIC hands XDP complete checksums; a veth only does with tx checksumming off.
            outside.exec("ethtool", &["-K", &o, "tx", "off"]);
        }
        // The agent's resolv.conf (what `ip netns exec` shows it): the outside namespace, so
        // nothing a test forwards leaves the test's namespaces.
        let etc = std::path::Path::new("/etc/netns").join(&host.name);
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("resolv.conf"), format!("nameserver {OUTSIDE}\n")).unwrap();
        let dir = std::env::temp_dir().join(format!("netpath-e2e-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let bpffs = ScratchBpffs::new().expect("a bpffs for the agent's pins");
        let mut opts = AgentOptions::new(BIN, &host.name, &h, &dir);
        opts.bpffs = bpffs.path().join("netpath");
        opts.xdp = xdp.to_string();
        opts.extra = extra.iter().map(|s| s.to_string()).collect();
        let mut t = Topo {
            outside,
            host,
            uplink: h,
            socket: opts.socket(),
            dir,
            opts,
            agent: None,
            bpffs,
        };
        t.start_agent();
        t
    }

    /// Starts the agent from another binary (an upgrade).
    pub fn start_agent_from(&mut self, bin: &std::path::Path) {
        self.opts.bin = bin.to_path_buf();
        self.start_agent();
    }

    /// SIGKILLs the agent.
    pub fn kill_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.kill();
        }
    }

    /// The agent's bpffs directory.
    pub fn pins(&self) -> std::path::PathBuf {
        self.opts.bpffs.clone()
    }

    /// The agent's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Runs `netpath uninstall` in the host namespace, as an operator would there.
    pub fn uninstall(&self) -> Output {
        self.opts.uninstall().expect("run netpath uninstall")
    }

    /// Flags for the agent's next start.
    pub fn set_agent_args(&mut self, extra: &[&str]) {
        self.opts.extra = extra.iter().map(|s| s.to_string()).collect();
    }

    /// Starts the agent expecting it to fail; what it said.
    pub fn start_agent_failing(&mut self) -> String {
        match AgentProcess::start(self.opts.clone()) {
            Ok(a) => {
                self.agent = Some(a);
                panic!("the agent started")
            }
            Err(e) => format!("{e:#}"),
        }
    }

    /// How the agent is started.
    pub fn agent_opts(&self) -> AgentOptions {
        self.opts.clone()
    }

    /// Changes how the agent is started next.
    pub fn agent_opts_mut(&mut self) -> &mut AgentOptions {
        &mut self.opts
    }

    /// The agent's pid.
    pub fn agent_pid(&self) -> u32 {
        self.agent
            .as_ref()
            .and_then(AgentProcess::pid)
            .expect("a running agent")
    }

    /// A raw API request with curl: (HTTP status, body).
    pub fn http(&self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, String) {
        use std::io::Write as _;
        let mut child = Command::new("curl")
            .args([
                "-s",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "--max-time",
                "20",
                "-X",
                method,
            ])
            .arg("--unix-socket")
            .arg(&self.socket)
            .args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                "@-",
            ])
            .arg(format!("http://netpath{path}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl");
        let mut stdin = child.stdin.take().unwrap();
        let body = body.map(<[u8]>::to_vec).unwrap_or_default();
        let writer = std::thread::spawn(move || {
            // The CLI may exit before reading its input (a refusal): its output says so.
            let _ = stdin.write_all(&body);
        });
        let out = child.wait_with_output().unwrap();
        // A thread that panicked has printed why; its result adds nothing here.
        let _ = writer.join();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    pub fn start_agent(&mut self) {
        self.agent =
            Some(AgentProcess::start(self.opts.clone()).unwrap_or_else(|e| panic!("{e:#}")));
    }

    /// The agent's API socket.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// What the agent logged so far.
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.opts.log()).unwrap_or_default()
    }

    pub fn stop_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.stop();
        }
    }

    /// Runs the CLI against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .env("NETPATH_SOCKET", &self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run netpath")
    }

    /// `policy apply -f -` of `manifests` on standard input, as `kubectl apply -f -` is fed;
    /// what it printed.
    pub fn apply_policies(&self, manifests: &str) -> String {
        use std::io::Write as _;
        let mut child = Command::new(BIN)
            .env("NETPATH_SOCKET", &self.socket)
            .args(["policy", "apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run netpath");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(manifests.as_bytes())
            .expect("write the manifests");
        let out = child.wait_with_output().expect("netpath policy apply");
        assert!(
            out.status.success(),
            "policy apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `network create NAME --subnet SUBNET` for each pair.
    pub fn networks(&self, nets: &[(&str, &str)]) {
        for (name, subnet) in nets {
            self.ok(&["network", "create", name, "--subnet", subnet]);
        }
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "netpath {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the CLI expecting a refusal: non-zero exit and a one-line error, the agent's
    /// (`Error response from agent: ...`) or the CLI's own (`netpath: ...`).
    pub fn refused(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(!out.status.success(), "netpath {args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "one-line error, got {err:?}"
        );
        assert!(
            err.starts_with("Error response from agent: ") || err.starts_with("netpath: "),
            "{err}"
        );
        err
    }

    /// [`Topo::endpoint`] with its flags as one command line (`-p 8080:80 --network a`).
    #[must_use = "the namespace goes when dropped, and the agent then removes the endpoint"]
    pub fn endpoint_with(&self, name: &str, flags: &str) -> Netns {
        self.endpoint(name, &words(flags))
    }

    /// Creates an endpoint in a fresh namespace (kept while the returned handle lives).
    #[must_use = "the namespace goes when dropped, and the agent then removes the endpoint"]
    pub fn endpoint(&self, name: &str, extra: &[&str]) -> Netns {
        let ns = Netns::new("npep");
        let path = ns.path();
        let mut args = vec!["endpoint", "create", name, "--netns", &path];
        args.extend_from_slice(extra);
        self.ok(&args);
        ns
    }

    /// IPv6 between the outside (fd00:77::1) and the host (fd00:77::2, on its uplink, a
    /// default route via the outside).
    pub fn ipv6_uplink(&self) {
        let links = self.outside.ip(&["-o", "link", "show", "type", "veth"]);
        let name = links.split(':').nth(1).expect("the outside's veth").trim();
        let o = name.split('@').next().unwrap();
        self.outside
            .ip(&["-6", "addr", "add", "fd00:77::1/64", "dev", o, "nodad"]);
        self.host.ip(&[
            "-6",
            "addr",
            "add",
            "fd00:77::2/64",
            "dev",
            &self.uplink,
            "nodad",
        ]);
        self.host
            .ip(&["-6", "route", "add", "default", "via", "fd00:77::1"]);
    }

    pub fn stats(&self) -> Value {
        serde_json::from_str(&self.ok(&["stats", "--json"])).unwrap()
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        self.stop_agent();
        // What the test left, taken down as an operator would (the socket hooks sit on the
        // machine's cgroup root until then).
        let _ = self.uninstall();
        if std::thread::panicking() {
            eprintln!(
                "agent log:\n{}",
                std::fs::read_to_string(self.opts.log()).unwrap_or_default()
            );
        }
        // Cleanup: already gone is as good as removed.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP server in `ns` answering every connection with "PEER_IP:PEER_PORT MESSAGE".
pub fn tcp_server(ns: &Netns, port: u16) {
    serve(ns.run(|| TcpListener::bind(("0.0.0.0", port)).expect("bind tcp")));
}

/// A TCP server in `ns` as [`tcp_server`], on every IPv6 address (and IPv4's, as mapped
/// addresses).
pub fn tcp_server6(ns: &Netns, port: u16) {
    serve(ns.run(|| TcpListener::bind(("::", port)).expect("bind tcp")));
}

/// Answers every connection of `l` with "PEER_IP:PEER_PORT MESSAGE", in the background.
fn serve(l: TcpListener) {
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let peer = c.peer_addr().unwrap();
            let mut buf = [0u8; 64];
            let n = c.read(&mut buf).unwrap_or(0);
            // The peer may be gone: a server answers whoever is still there.
            let _ = write!(c, "{peer} {}", String::from_utf8_lossy(&buf[..n]));
        }
    });
}

pub fn tcp_request(
    ns: &Netns,
    to: impl Into<IpAddr>,
    port: u16,
    msg: &str,
) -> std::io::Result<String> {
    let addr = SocketAddr::from((to.into(), port));
    let mut c = ns.run(|| TcpStream::connect_timeout(&addr, TIMEOUT))?;
    c.set_read_timeout(Some(TIMEOUT))?;
    c.write_all(msg.as_bytes())?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    Ok(out)
}

/// A request on a *connected* UDP socket: a reply from any other address or port than the
/// one asked is not received, so this also checks the reply's translation.
pub fn udp_request(
    ns: &Netns,
    to: impl Into<IpAddr>,
    port: u16,
    msg: &str,
) -> std::io::Result<String> {
    let to = to.into();
    let any: SocketAddr = match to {
        IpAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
        IpAddr::V6(_) => "[::]:0".parse().unwrap(),
    };
    let s = ns.run(|| UdpSocket::bind(any))?;
    s.connect((to, port))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = [0u8; 128];
    // Datagrams may be lost while neighbours resolve: a few tries, each waiting for a reply.
    let mut last = None;
    for _ in 0..6 {
        s.send(msg.as_bytes())?;
        match s.recv(&mut buf) {
            Ok(n) => return Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap())
}

/// Whether a TCP connection from `ns` to `to:port` is accepted within `timeout`.
pub fn tcp_reachable(ns: &Netns, to: impl Into<IpAddr>, port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from((to.into(), port));
    ns.run(|| TcpStream::connect_timeout(&addr, timeout))
        .is_ok()
}

/// Whether one ICMP echo from `ns` to `to` is answered within a second.
pub fn ping(ns: &Netns, to: impl Into<IpAddr>) -> bool {
    ping_of(ns, to, 56)
}

/// Whether one ICMP echo of `size` bytes of data from `ns` to `to` is answered within a
/// second.
pub fn ping_of(ns: &Netns, to: impl Into<IpAddr>, size: usize) -> bool {
    let to: IpAddr = to.into();
    Command::new("ip")
        .args(["netns", "exec", &ns.name, "ping", "-c1", "-W1", "-q", "-s"])
        .arg(size.to_string())
        .arg(to.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
