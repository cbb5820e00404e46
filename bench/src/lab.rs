//! Benchmark topologies, each in namespaces of its own: an "outside" client namespace, a
//! "host" namespace with the variant under test, and an endpoint namespace.
//!
//! ```text
//! outside (10.77.0.1/16) ── veth ── host (10.77.0.2/16) ── endpoint eth0 (172.17.0.2/16)
//! ```
//!
//! The baselines are built the way Docker builds them (a bridge, iptables or nftables DNAT
//! rules, docker-proxy), inside the host namespace only; netpath variants run the real agent.
use std::{
    io::Read,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{bail, Context as _, Result};
use netpath_user::testing::{
    stop_child, unique, veth, AgentOptions, AgentProcess, Netns, ScratchBpffs,
};

pub const HOST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The outside namespace's address (a server "on the internet").
pub const OUTSIDE_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const EP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
/// The host's IPv6 address on the wire, in a dual-stack lab ([`Lab::dual`]).
pub const HOST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2);
/// The endpoint's IPv6 address in a dual-stack lab.
pub const EP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 2);
/// Published UDP port (→ 53) and TCP port (→ 80).
pub const UDP_PORT: u16 = 5353;
pub const TCP_PORT: u16 = 8080;

/// What the host namespace runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// netpath agent with the XDP fast path.
    NetpathXdp,
    /// netpath agent, TC only.
    NetpathTc,
    /// Linux bridge + iptables rules as Docker writes them.
    Iptables,
    /// Linux bridge + the same rules in nftables.
    Nftables,
    /// Linux bridge + docker-proxy (userspace, TCP only).
    DockerProxy,
    /// Linux bridge, no NAT: the client talks to the endpoint's address.
    Routing,
    /// An XDP program that only redirects to the endpoint: no lookup at all.
    Ceiling,
    /// A TC program that only hands every skb to the endpoint (`bpf_redirect_peer`, as
    /// netpath's TC path does): the ceiling of TC paths.
    CeilingTc,
    /// Nothing attached anywhere: the host as it is without netpath.
    Detached,
    /// An XDP program that passes everything, on the uplink: what any XDP program costs.
    EmptyXdp,
    /// netpath's uplink TC program alone, with empty maps and no agent: what the program
    /// costs, apart from everything else the agent sets up on the host.
    TcProgramOnly,
    /// Floor: a TC program that passes everything, on the uplink: what TC costs whatever the
    /// program.
    EmptyTc,
    /// Floor: an XDP program that reads the frame's headers and passes it, on the uplink.
    ReadXdp,
    /// Floor of refusing: an XDP program on the uplink that drops every frame unread.
    DropXdp,
    /// Floor of endpoint-to-endpoint traffic: the two endpoints joined by one veth pair, no
    /// host between them (what any path keeps: their veths and TCP stacks).
    DirectVeth,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::NetpathXdp => "netpath xdp",
            Kind::NetpathTc => "netpath tc",
            Kind::Iptables => "iptables",
            Kind::Nftables => "nftables",
            Kind::DockerProxy => "docker-proxy",
            Kind::Routing => "routing (no NAT)",
            Kind::Ceiling => "ceiling xdp (redirect only)",
            Kind::CeilingTc => "ceiling tc (redirect_peer only)",
            Kind::Detached => "detached (no netpath)",
            Kind::EmptyXdp => "empty xdp program",
            Kind::TcProgramOnly => "netpath tc program alone",
            Kind::EmptyTc => "empty tc program",
            Kind::ReadXdp => "xdp reading headers",
            Kind::DropXdp => "floor xdp (drop only)",
            Kind::DirectVeth => "direct veth (no host)",
        }
    }

    fn netpath(self) -> bool {
        matches!(self, Kind::NetpathXdp | Kind::NetpathTc)
    }

    fn bridged(self) -> bool {
        matches!(
            self,
            Kind::Iptables | Kind::Nftables | Kind::DockerProxy | Kind::Routing
        )
    }
}

/// One topology; everything is removed on drop.
pub struct Lab {
    pub kind: Kind,
    pub outside: Netns,
    pub host: Netns,
    pub ep: Netns,
    /// A second endpoint on the same network (endpoint-to-endpoint scenarios).
    pub peer: Option<Netns>,
    /// Dual stack ([`Lab::dual`]): IPv6 beside IPv4 everywhere.
    pub ipv6: bool,
    pub up_if: String,
    /// The outside's veth towards the uplink.
    pub out_if: String,
    pub out_ifindex: u32,
    pub out_mac: [u8; 6],
    pub up_mac: [u8; 6],
    /// The ceiling variant's host-side veth (where its redirect-only program sends frames).
    pub ceiling_target: Option<u32>,
    dir: PathBuf,
    netpath_bin: PathBuf,
    agent: Option<AgentProcess>,
    /// How the agent is started (netpath variants).
    opts: Option<AgentOptions>,
    /// Where the agent pins, outside its mount namespace so pins outlive it (restarts).
    bpffs: Option<ScratchBpffs>,
    proxy: Option<Child>,
}

fn read_sys(ns: &Netns, what: &str) -> String {
    ns.exec("cat", &[&format!("/sys/class/net/{what}")])
        .trim()
        .to_string()
}

fn parse_mac(s: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (i, h) in s.split(':').take(6).enumerate() {
        mac[i] = u8::from_str_radix(h, 16).unwrap_or(0);
    }
    mac
}

impl Lab {
    /// A lab; with `publish`, the default ports are published (UDP 5353 → 53, TCP 8080 →
    /// 80). netpath variants run `netpath_bin`.
    pub fn new(kind: Kind, netpath_bin: &Path, publish: bool) -> Result<Lab> {
        Lab::with_agent_args(kind, netpath_bin, publish, &[])
    }

    /// A lab whose agent (netpath variants) gets `agent_args` too.
    pub fn with_agent_args(
        kind: Kind,
        netpath_bin: &Path,
        publish: bool,
        agent_args: &[&str],
    ) -> Result<Lab> {
        Lab::build(kind, netpath_bin, publish, agent_args, false)
    }

    /// A dual-stack lab, the default ports published: IPv6 beside IPv4 on the wire
    /// (`OUTSIDE6`, `HOST6`) and in the endpoint (`EP6`); the iptables variant's rules are
    /// ip6tables' (Docker's with `--ipv6`).
    pub fn dual(kind: Kind, netpath_bin: &Path) -> Result<Lab> {
        Lab::build(kind, netpath_bin, true, &[], true)
    }

    fn build(
        kind: Kind,
        netpath_bin: &Path,
        publish: bool,
        agent_args: &[&str],
        ipv6: bool,
    ) -> Result<Lab> {
        let outside = Netns::new("npbo");
        let host = Netns::new("npbh");
        let ep = Netns::new("npbe");
        let id = unique();
        let (out_if, up_if) = (format!("bo{id}"), format!("bh{id}"));
        veth(&outside, &out_if, &host, &up_if);
        outside.ip(&["addr", "add", "10.77.0.1/16", "dev", &out_if]);
        host.ip(&["addr", "add", "10.77.0.2/16", "dev", &up_if]);
        if ipv6 {
            outside.ip(&[
                "-6",
                "addr",
                "add",
                "fd00:77::1/64",
                "dev",
                &out_if,
                "nodad",
            ]);
            host.ip(&["-6", "addr", "add", "fd00:77::2/64", "dev", &up_if, "nodad"]);
        }
        host.sysctl("net/ipv4/conf/all/rp_filter", "0");
        host.sysctl(&format!("net/ipv4/conf/{up_if}/rp_filter"), "0");
        // The generator's frames reach the uplink through veth XDP transmit: the uplink
        // needs NAPI, which GRO gives it (or an XDP program, in the netpath xdp variant).
        host.exec("ethtool", &["-K", &up_if, "gro", "on"]);
        if kind == Kind::NetpathXdp {
            // XDP sees what the wire carries: complete checksums, as from a NIC.
            outside.exec("ethtool", &["-K", &out_if, "tx", "off"]);
        }
        let dir = std::env::temp_dir().join(format!("netpath-bench-{id}"));
        std::fs::create_dir_all(&dir)?;
        let mut lab = Lab {
            kind,
            out_ifindex: read_sys(&outside, &format!("{out_if}/ifindex")).parse()?,
            out_mac: parse_mac(&read_sys(&outside, &format!("{out_if}/address"))),
            up_mac: parse_mac(&read_sys(&host, &format!("{up_if}/address"))),
            netpath_bin: netpath_bin.to_path_buf(),
            ceiling_target: None,
            dir,
            outside,
            host,
            ep,
            peer: None,
            ipv6,
            up_if,
            out_if,
            agent: None,
            opts: None,
            bpffs: None,
            proxy: None,
        };
        if kind.netpath() {
            let mut agent_args = agent_args.to_vec();
            if ipv6 {
                agent_args.extend(["--default-subnet6", "fd00:17::/64"]);
            }
            lab.start_agent(&agent_args)?;
            let ns_path = lab.ep.path();
            let mut args = vec![
                "endpoint",
                "create",
                "bench",
                "--netns",
                &ns_path,
                "--ip",
                "172.17.0.2",
            ];
            if ipv6 {
                args.extend(["--ip6", "fd00:17::2"]);
            }
            if publish {
                args.extend(["-p", "5353:53/udp", "-p", "8080:80/tcp"]);
            }
            lab.netpath(&args)?;
        } else if kind.bridged() {
            lab.bridge(&id, ipv6)?;
        } else if matches!(kind, Kind::Ceiling | Kind::CeilingTc) {
            lab.ceiling_target = Some(lab.endpoint_veth(&id)?);
        } else {
            lab.endpoint_veth(&id)?;
        }
        match kind {
            Kind::Iptables if ipv6 => {
                lab.iptables_rules(&[(UDP_PORT, 53, "udp"), (TCP_PORT, 80, "tcp")])?;
                lab.ip6tables_rules(&[(UDP_PORT, 53, "udp"), (TCP_PORT, 80, "tcp")])?
            }
            Kind::Iptables if publish => {
                lab.iptables_rules(&[(UDP_PORT, 53, "udp"), (TCP_PORT, 80, "tcp")])?
            }
            Kind::Iptables => lab.iptables_rules(&[])?,
            Kind::Nftables => lab.nft_rules()?,
            Kind::DockerProxy => lab.start_proxy()?,
            Kind::Routing => {
                lab.outside
                    .ip(&["route", "add", "172.17.0.0/16", "via", "10.77.0.2"]);
            }
            _ => {}
        }
        Ok(lab)
    }

    /// Adds a second endpoint, 172.17.0.3, on the first endpoint's network: through the agent
    /// for netpath, as another port of the bridge for the baselines, on a veth of its own to
    /// the first for the direct floor.
    pub fn add_peer(&mut self) -> Result<()> {
        let peer = Netns::new("npbp");
        if self.kind.netpath() {
            let path = peer.path();
            let mut args = vec![
                "endpoint",
                "create",
                "peer",
                "--netns",
                &path,
                "--ip",
                "172.17.0.3",
            ];
            if self.ipv6 {
                args.extend(["--ip6", "fd00:17::3"]);
            }
            self.netpath(&args)?;
        } else if self.kind.bridged() {
            let hv = format!("bp{}", unique());
            veth(&self.host, &hv, &peer, "eth0tmp");
            peer.ip(&["link", "set", "eth0tmp", "name", "eth0"]);
            peer.ip(&["link", "set", "eth0", "up"]);
            peer.ip(&["addr", "add", "172.17.0.3/16", "dev", "eth0"]);
            if self.ipv6 {
                peer.ip(&["-6", "addr", "add", "fd00:17::3/64", "dev", "eth0", "nodad"]);
            }
            self.host.ip(&["link", "set", &hv, "master", "br0"]);
        } else if self.kind == Kind::DirectVeth {
            veth(&self.ep, "eth1", &peer, "eth0tmp");
            self.ep.ip(&["link", "set", "eth1", "up"]);
            self.ep.ip(&["addr", "add", "172.17.0.2/16", "dev", "eth1"]);
            peer.ip(&["link", "set", "eth0tmp", "name", "eth0"]);
            peer.ip(&["link", "set", "eth0", "up"]);
            peer.ip(&["addr", "add", "172.17.0.3/16", "dev", "eth0"]);
            if self.ipv6 {
                self.ep
                    .ip(&["-6", "addr", "add", "fd00:17::2/64", "dev", "eth1", "nodad"]);
                peer.ip(&["-6", "addr", "add", "fd00:17::3/64", "dev", "eth0", "nodad"]);
            }
        } else {
            bail!("{} has no network to add a peer to", self.kind.name());
        }
        self.peer = Some(peer);
        Ok(())
    }

    /// Where clients connect for the published TCP port.
    pub fn tcp_target(&self) -> (Ipv4Addr, u16) {
        match self.kind {
            Kind::Routing => (EP, 80),
            _ => (HOST, TCP_PORT),
        }
    }

    fn start_agent(&mut self, args: &[&str]) -> Result<()> {
        let bpffs = ScratchBpffs::new().context("a bpffs for the agent's pins")?;
        let mut opts =
            AgentOptions::new(&self.netpath_bin, &self.host.name, &self.up_if, &self.dir);
        opts.bpffs = bpffs.path().join("netpath");
        if self.kind == Kind::NetpathXdp {
            opts.xdp = "native".into();
        }
        // The default network on docker0's subnet: the labs of every variant share addresses.
        opts.extra = vec![
            "--max-ports".into(),
            "140000".into(),
            "--default-subnet".into(),
            "172.17.0.0/16".into(),
        ];
        opts.extra.extend(args.iter().map(|a| a.to_string()));
        // What `ip netns exec` shows the agent as /etc/resolv.conf: the outside namespace,
        // so nothing it forwards leaves the lab.
        let etc = Path::new("/etc/netns").join(&self.host.name);
        std::fs::create_dir_all(&etc)?;
        std::fs::write(
            etc.join("resolv.conf"),
            format!("nameserver {OUTSIDE_ADDR}\n"),
        )?;
        self.bpffs = Some(bpffs);
        self.opts = Some(opts.clone());
        self.agent = Some(AgentProcess::start(opts)?);
        Ok(())
    }

    /// SIGKILLs the agent (its datapath keeps running).
    pub fn kill_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.kill();
        }
    }

    /// SIGTERMs the agent and waits for it to exit.
    pub fn stop_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.stop();
        }
    }

    /// Starts the agent again, from `bin` (an upgrade) or the lab's binary; how long it took
    /// to answer on its socket.
    pub fn restart_agent(&mut self, bin: Option<&Path>) -> Result<std::time::Duration> {
        let mut opts = self.opts.clone().context("no netpath agent in this lab")?;
        opts.bin = bin.unwrap_or(&self.netpath_bin).to_path_buf();
        let start = std::time::Instant::now();
        let agent = AgentProcess::start(opts)?;
        let took = start.elapsed();
        self.agent = Some(agent);
        Ok(took)
    }

    /// The agent's process id (for its memory use).
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().and_then(AgentProcess::pid)
    }

    /// Runs the netpath CLI against this lab's agent.
    pub fn netpath(&self, args: &[&str]) -> Result<String> {
        let agent = self
            .agent
            .as_ref()
            .context("no netpath agent in this lab")?;
        let out = agent.cli(args)?;
        if !out.status.success() {
            bail!(
                "netpath {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Docker's default bridge: br0 with the gateway, the endpoint's veth as a port (and
    /// IPv6 on both, forwarded by the host, with `ipv6`).
    fn bridge(&self, id: &str, ipv6: bool) -> Result<()> {
        let hv = format!("bv{id}");
        veth(&self.host, &hv, &self.ep, "eth0tmp");
        self.ep.ip(&["link", "set", "eth0tmp", "name", "eth0"]);
        self.ep.ip(&["link", "set", "eth0", "up"]);
        self.ep.ip(&["addr", "add", "172.17.0.2/16", "dev", "eth0"]);
        self.ep
            .ip(&["route", "add", "default", "via", "172.17.0.1"]);
        self.host.ip(&["link", "add", "br0", "type", "bridge"]);
        self.host
            .ip(&["addr", "add", "172.17.0.1/16", "dev", "br0"]);
        self.host.ip(&["link", "set", "br0", "up"]);
        self.host.ip(&["link", "set", &hv, "master", "br0"]);
        self.host.sysctl("net/ipv4/ip_forward", "1");
        if ipv6 {
            self.host
                .ip(&["-6", "addr", "add", "fd00:17::1/64", "dev", "br0", "nodad"]);
            self.ep
                .ip(&["-6", "addr", "add", "fd00:17::2/64", "dev", "eth0", "nodad"]);
            self.ep
                .ip(&["-6", "route", "add", "default", "via", "fd00:17::1"]);
            self.host.sysctl("net/ipv6/conf/all/forwarding", "1");
        }
        Ok(())
    }

    /// A bare veth to the endpoint; its host side's ifindex. The ceiling variant's XDP program
    /// on the uplink redirects everything to it (attached by the caller, see
    /// [`Lab::ceiling_target`]); GRO on the endpoint's interface makes it a valid redirect
    /// target.
    fn endpoint_veth(&mut self, id: &str) -> Result<u32> {
        let hv = format!("bv{id}");
        veth(&self.host, &hv, &self.ep, "eth0tmp");
        self.ep.ip(&["link", "set", "eth0tmp", "name", "eth0"]);
        self.ep.ip(&["link", "set", "eth0", "up"]);
        self.ep.exec("ethtool", &["-K", "eth0", "gro", "on"]);
        Ok(read_sys(&self.host, &format!("{hv}/ifindex")).parse()?)
    }

    /// What Docker does for the host's own connections to 127.0.0.1 when its userland proxy
    /// is off: DNAT in OUTPUT, route_localnet, and masquerade of local sources to the bridge.
    pub fn iptables_localhost(&self) -> Result<()> {
        self.host.sysctl("net/ipv4/conf/all/route_localnet", "1");
        self.host.sysctl("net/ipv4/conf/br0/route_localnet", "1");
        self.host.exec(
            "iptables",
            &[
                "-t",
                "nat",
                "-I",
                "OUTPUT",
                "-d",
                "127.0.0.1/32",
                "-p",
                "tcp",
                "--dport",
                "8080",
                "-j",
                "DNAT",
                "--to-destination",
                "172.17.0.2:80",
            ],
        );
        self.host.exec(
            "iptables",
            &[
                "-t",
                "nat",
                "-I",
                "POSTROUTING",
                "-o",
                "br0",
                "-m",
                "addrtype",
                "--src-type",
                "LOCAL",
                "-j",
                "MASQUERADE",
            ],
        );
        Ok(())
    }

    /// Docker's iptables rules for the published `(host port, container port, proto)`s.
    pub fn iptables_rules(&self, ports: &[(u16, u16, &str)]) -> Result<()> {
        let mut nat = String::from(
            "*nat\n:PREROUTING ACCEPT\n:INPUT ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\n:DOCKER -\n\
             -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
             -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER\n\
             -A POSTROUTING -s 172.17.0.0/16 ! -o br0 -j MASQUERADE\n\
             -A DOCKER -i br0 -j RETURN\n",
        );
        let mut filter = String::from(
            "*filter\n:INPUT ACCEPT\n:FORWARD DROP\n:OUTPUT ACCEPT\n:DOCKER -\n\
             :DOCKER-ISOLATION-STAGE-1 -\n:DOCKER-ISOLATION-STAGE-2 -\n:DOCKER-USER -\n\
             -A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n\
             -A FORWARD -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
             -A FORWARD -o br0 -j DOCKER\n-A FORWARD -i br0 ! -o br0 -j ACCEPT\n\
             -A FORWARD -i br0 -o br0 -j ACCEPT\n\
             -A DOCKER-ISOLATION-STAGE-1 -i br0 ! -o br0 -j DOCKER-ISOLATION-STAGE-2\n\
             -A DOCKER-ISOLATION-STAGE-1 -j RETURN\n\
             -A DOCKER-ISOLATION-STAGE-2 -o br0 -j DROP\n-A DOCKER-ISOLATION-STAGE-2 -j RETURN\n\
             -A DOCKER-USER -j RETURN\n",
        );
        for (hp, cp, proto) in ports {
            nat += &format!(
                "-A DOCKER ! -i br0 -p {proto} -m {proto} --dport {hp} -j DNAT --to-destination 172.17.0.2:{cp}\n"
            );
            filter += &format!(
                "-A DOCKER -d 172.17.0.2/32 ! -i br0 -o br0 -p {proto} -m {proto} --dport {cp} -j ACCEPT\n"
            );
        }
        let rules = format!("{nat}COMMIT\n{filter}COMMIT\n");
        self.restore("iptables-restore", &rules)
    }

    /// Docker's rules with `--ipv6` in ip6tables: the same chains, the endpoint's IPv6
    /// address as the target.
    pub fn ip6tables_rules(&self, ports: &[(u16, u16, &str)]) -> Result<()> {
        let mut nat = String::from(
            "*nat\n:PREROUTING ACCEPT\n:INPUT ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\n:DOCKER -\n\
             -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
             -A OUTPUT ! -d ::1/128 -m addrtype --dst-type LOCAL -j DOCKER\n\
             -A POSTROUTING -s fd00:17::/64 ! -o br0 -j MASQUERADE\n\
             -A DOCKER -i br0 -j RETURN\n",
        );
        let mut filter = String::from(
            "*filter\n:INPUT ACCEPT\n:FORWARD DROP\n:OUTPUT ACCEPT\n:DOCKER -\n:DOCKER-USER -\n\
             -A FORWARD -j DOCKER-USER\n\
             -A FORWARD -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
             -A FORWARD -o br0 -j DOCKER\n-A FORWARD -i br0 ! -o br0 -j ACCEPT\n\
             -A FORWARD -i br0 -o br0 -j ACCEPT\n-A DOCKER-USER -j RETURN\n",
        );
        for (hp, cp, proto) in ports {
            nat += &format!(
                "-A DOCKER ! -i br0 -p {proto} -m {proto} --dport {hp} -j DNAT --to-destination [fd00:17::2]:{cp}\n"
            );
            filter += &format!(
                "-A DOCKER -d fd00:17::2/128 ! -i br0 -o br0 -p {proto} -m {proto} --dport {cp} -j ACCEPT\n"
            );
        }
        let rules = format!("{nat}COMMIT\n{filter}COMMIT\n");
        self.restore("ip6tables-restore", &rules)
    }

    fn nft_rules(&self) -> Result<()> {
        let rules = "table ip nat {\n\
             chain prerouting { type nat hook prerouting priority dstnat; fib daddr type local jump docker; }\n\
             chain output { type nat hook output priority -100; ip daddr != 127.0.0.0/8 fib daddr type local jump docker; }\n\
             chain postrouting { type nat hook postrouting priority srcnat; ip saddr 172.17.0.0/16 oifname != \"br0\" masquerade; }\n\
             chain docker { iifname \"br0\" return; tcp dport 8080 dnat to 172.17.0.2:80; udp dport 5353 dnat to 172.17.0.2:53; }\n\
             }\n\
             table ip filter {\n\
             chain forward { type filter hook forward priority filter; policy drop;\n\
             oifname \"br0\" ct state established,related accept;\n\
             oifname \"br0\" iifname != \"br0\" ip daddr 172.17.0.2 tcp dport 80 accept;\n\
             oifname \"br0\" iifname != \"br0\" ip daddr 172.17.0.2 udp dport 53 accept;\n\
             iifname \"br0\" accept; }\n\
             }\n";
        self.restore("nft", rules)
    }

    fn restore(&self, tool: &str, rules: &str) -> Result<()> {
        let args: &[&str] = if tool == "nft" { &["-f", "-"] } else { &[] };
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.host.name, tool])
            .args(args)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {tool}"))?;
        use std::io::Write as _;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(rules.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("{tool}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// Starts Debian's docker-proxy for the TCP port; it reports readiness on fd 3.
    fn start_proxy(&mut self) -> Result<()> {
        let proxy = ["/usr/sbin/docker-proxy", "/usr/bin/docker-proxy"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .context("docker-proxy not found (Debian package docker.io)")?;
        let (rd, wr) = nix::unistd::pipe()?;
        let wr_fd = wr.as_raw_fd();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host.name, proxy])
            .args(["-proto", "tcp", "-host-ip", "0.0.0.0", "-host-port", "8080"])
            .args(["-container-ip", "172.17.0.2", "-container-port", "80"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: dup2 in the child before exec, async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt as _;
            cmd.pre_exec(move || {
                if libc_dup2(wr_fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().context("starting docker-proxy")?;
        drop(wr);
        // It writes "0\n" when listening (or "1\n" and the error) and keeps fd 3 open.
        let mut buf = [0u8; 256];
        let n = std::fs::File::from(rd).read(&mut buf).unwrap_or(0);
        let status = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.proxy = Some(child);
        if !status.starts_with('0') {
            bail!("docker-proxy did not start: {status:?}");
        }
        Ok(())
    }
}

fn libc_dup2(from: i32, to: i32) -> i32 {
    // SAFETY: plain syscall on descriptors of this (child) process.
    unsafe { nix::libc::dup2(from, to) }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.stop();
        }
        // What the agent made outlives it: taken down as an operator would.
        if let Some(opts) = &self.opts {
            // Cleanup: the uninstall reports what it could not take down.
            let _ = opts.uninstall();
        }
        if let Some(mut proxy) = self.proxy.take() {
            stop_child(&mut proxy);
        }
        // The namespaces (and every interface in them) go with their Netns guards.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
