//! An agent process for tests and the benchmark: started inside a namespace with its own
//! socket, state and pin directories, ready once its socket answers, stopped on drop.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

/// How to start an agent.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// The `netpath` binary.
    pub bin: PathBuf,
    /// The namespace it runs in (`ip netns exec NAME`).
    pub netns: String,
    pub uplinks: Vec<String>,
    /// `off`, `native` or `generic`.
    pub xdp: String,
    /// Holds the log (and, unless told otherwise, the socket and the state directory).
    pub dir: PathBuf,
    /// The API socket (default `DIR/netpath.sock`).
    pub socket: PathBuf,
    /// The state directory (default `DIR/state`).
    pub state_dir: PathBuf,
    /// Where maps are pinned.
    pub bpffs: PathBuf,
    /// More `netpath agent` flags.
    pub extra: Vec<String>,
    /// Environment variables for the agent.
    pub env: Vec<(String, String)>,
}

impl AgentOptions {
    pub fn new(bin: impl Into<PathBuf>, netns: &str, uplink: &str, dir: &Path) -> AgentOptions {
        AgentOptions {
            bin: bin.into(),
            netns: netns.to_string(),
            uplinks: vec![uplink.to_string()],
            xdp: "off".into(),
            dir: dir.to_path_buf(),
            socket: dir.join("netpath.sock"),
            state_dir: dir.join("state"),
            bpffs: PathBuf::from("/sys/fs/bpf/netpath"),
            extra: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.socket.clone()
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    /// Runs `netpath uninstall` for this agent in its namespace, as an operator would there.
    pub fn uninstall(&self) -> std::io::Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(&self.bin)
            .arg("--socket")
            .arg(self.socket())
            .arg("uninstall")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--bpffs")
            .arg(&self.bpffs)
            .output()
    }
}

/// A running agent; SIGTERM (then SIGKILL) on drop.
pub struct AgentProcess {
    pub opts: AgentOptions,
    child: Option<Child>,
}

impl AgentProcess {
    /// Starts the agent and waits (up to 20 s) until its socket answers; fails with its log
    /// if it exits first.
    pub fn start(opts: AgentOptions) -> anyhow::Result<AgentProcess> {
        std::fs::create_dir_all(&opts.dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(opts.log())?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &opts.netns])
            .arg(&opts.bin)
            .arg("--socket")
            .arg(opts.socket())
            .arg("agent");
        for u in &opts.uplinks {
            cmd.args(["--uplink", u]);
        }
        cmd.args(["--xdp", &opts.xdp])
            .arg("--state-dir")
            .arg(&opts.state_dir)
            .arg("--bpffs")
            .arg(&opts.bpffs)
            .args(&opts.extra)
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().context("starting the netpath agent")?;
        let mut agent = AgentProcess {
            opts,
            child: Some(child),
        };
        let start = Instant::now();
        // Ready once the API answers a request (the socket is bound, and so takes
        // connections, a little before the agent serves them).
        while !answers(&agent.opts.socket()) {
            if let Some(Ok(Some(st))) = agent.child.as_mut().map(Child::try_wait) {
                agent.child = None;
                bail!("agent exited {st}: {}", agent.log());
            }
            if start.elapsed() > Duration::from_secs(20) {
                bail!(
                    "the agent's socket did not answer within 20 s: {}",
                    agent.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(agent)
    }

    pub fn socket(&self) -> PathBuf {
        self.opts.socket()
    }
}

/// Whether the API on `socket` answers `GET /v1/version` within a second.
fn answers(socket: &std::path::Path) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    if s.set_read_timeout(Some(Duration::from_secs(1))).is_err()
        || s.write_all(b"GET /v1/version HTTP/1.1\r\nHost: netpath\r\nConnection: close\r\n\r\n")
            .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

impl AgentProcess {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.opts.log()).unwrap_or_default()
    }

    /// Runs the CLI against it.
    pub fn cli(&self, args: &[&str]) -> std::io::Result<Output> {
        Command::new(&self.opts.bin)
            .env("NETPATH_SOCKET", self.socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
    }

    /// SIGKILL: the agent gets no chance to clean anything up (as in a crash or an OOM kill).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // It may have exited already; either way it is gone.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within 5 s.
    pub fn stop(&mut self) {
        stop_slot(&mut self.child);
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Ends the process in `slot`, if there is one, as [`stop_child`] does, leaving the slot empty.
pub fn stop_slot(slot: &mut Option<Child>) {
    if let Some(mut child) = slot.take() {
        stop_child(&mut child);
    }
}

/// Ends a process a test started: SIGTERM, then SIGKILL if it has not exited within 5 s.
pub fn stop_child(child: &mut Child) {
    // It may have exited already; either way it is gone.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let start = Instant::now();
    while !matches!(child.try_wait(), Ok(Some(_))) {
        if start.elapsed() > Duration::from_secs(5) {
            // It may have exited already; either way it is gone.
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
