//! A real containerd (Debian's) for tests, driven by its own `ctr run --cni`: its own root,
//! state and socket, in the test's network namespace and a private mount namespace where
//! `/etc/cni/net.d` and `/opt/cni/bin` (the paths `ctr` reads, with no flag to change them)
//! are the test's. Containers run from a root filesystem ([`super::docker::rootfs`]) and in
//! cgroups of their own; everything goes on drop.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{stop_child, unique, Netns};

pub struct Containerd {
    dir: PathBuf,
    ns: String,
    holder: Option<Child>,
    daemon: Option<Child>,
    /// The cgroup every container's cgroup goes under (removed on drop).
    cgroup: String,
}

impl Containerd {
    /// A containerd in `ns` whose CNI plugins are in `plugins` and whose networks are the
    /// `NAME.conflist` files `networks` gives.
    pub fn start(
        ns: &Netns,
        plugins: &[(&str, &Path)],
        networks: &[(&str, String)],
    ) -> Result<Containerd> {
        let id = unique();
        let dir = std::env::temp_dir().join(format!("netpath-containerd-{id}"));
        let (net_d, bin) = (dir.join("net.d"), dir.join("bin"));
        std::fs::create_dir_all(&net_d)?;
        std::fs::create_dir_all(&bin)?;
        for (name, conf) in networks {
            std::fs::write(net_d.join(format!("{name}.conflist")), conf)?;
        }
        for (name, path) in plugins {
            std::os::unix::fs::symlink(path, bin.join(name))?;
        }
        super::docker::rootfs(&dir.join("rootfs"))?;
        // Only what `ctr` needs: no CRI (it would listen on the namespace's loopback).
        std::fs::write(
            dir.join("config.toml"),
            "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
        )?;
        let mut c = Containerd {
            dir: dir.clone(),
            ns: ns.path(),
            holder: None,
            daemon: None,
            cgroup: format!("netpath-test-{id}"),
        };
        let ready = dir.join("mounted");
        let script = format!(
            "mount --bind {net_d} /etc/cni/net.d && mount -t tmpfs tmpfs /opt && mkdir /opt/cni \
             && ln -s {bin} /opt/cni/bin && touch {ready} && exec sleep infinity",
            net_d = net_d.display(),
            bin = bin.display(),
            ready = ready.display(),
        );
        c.holder = Some(
            Command::new("unshare")
                .args([
                    "--mount",
                    "--propagation",
                    "private",
                    "--",
                    "sh",
                    "-c",
                    &script,
                ])
                .stdin(Stdio::null())
                .spawn()
                .context("starting containerd's mount namespace")?,
        );
        super::wait_until("containerd's mounts", Duration::from_secs(10), || {
            ready.exists()
        });
        let log = std::fs::File::create(dir.join("containerd.log"))?;
        c.daemon = Some(
            c.nsenter("containerd")
                .arg("--config")
                .arg(dir.join("config.toml"))
                .arg("--root")
                .arg(dir.join("root"))
                .arg("--state")
                .arg(dir.join("state"))
                .arg("--address")
                .arg(c.socket())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("containerd (Debian package containerd)")?,
        );
        let start = Instant::now();
        while c.ctr(&["version"]).is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                bail!("containerd did not answer within 20 s: {}", c.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(c)
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// `program` in the namespace's network and the private mounts.
    fn nsenter(&self, program: &str) -> Command {
        let holder = self.holder.as_ref().map_or(0, Child::id);
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ns))
            .arg(format!("--mount=/proc/{holder}/ns/mnt"))
            .args(["--", program]);
        cmd
    }

    /// Runs `ctr` against it; its stdout, or an error with its stderr.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        let socket = self.socket();
        super::engine_cli(
            self.nsenter("ctr").arg("--address").arg(&socket).args(args),
            &format!("ctr {args:?} (Debian package containerd)"),
        )
    }

    /// `ctr run --cni -d` of container `id` running `cmd` from the test's root filesystem.
    pub fn run(&self, id: &str, cmd: &[&str]) -> Result<String> {
        let rootfs = self.dir.join("rootfs");
        let cgroup = format!("/{}/{id}", self.cgroup);
        let mut args = vec![
            "run",
            "--cni",
            "-d",
            "--cgroup",
            &cgroup,
            "--rootfs",
            rootfs.to_str().unwrap_or_default(),
            id,
        ];
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }

    /// Stops and removes container `id` (its CNI DEL runs).
    pub fn remove(&self, id: &str) -> Result<()> {
        // A task already gone is as good as killed.
        let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
        let start = Instant::now();
        while self.ctr(&["task", "rm", id]).is_err() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.ctr(&["container", "rm", id]).map(drop)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Ok(ids) = self.ctr(&["container", "ls", "-q"]) {
            for id in ids.lines() {
                // Cleanup: a container that will not go is reported by what remains.
                let _ = self.remove(id);
            }
        }
        if let Some(mut d) = self.daemon.take() {
            stop_child(&mut d);
        }
        if let Some(mut h) = self.holder.take() {
            stop_child(&mut h);
        }
        // The containers' cgroups (one directory per controller on a v1 hierarchy).
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                let parent = c.path().join(&self.cgroup);
                if let Ok(children) = std::fs::read_dir(&parent) {
                    for child in children.flatten().filter(|e| e.path().is_dir()) {
                        // Cleanup: a cgroup still in use stays, as the kernel says.
                        let _ = std::fs::remove_dir(child.path());
                    }
                }
                // Cleanup: see above.
                let _ = std::fs::remove_dir(parent);
            }
        }
        // Cleanup: already gone is as good as removed.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
