//! A real dockerd (Debian's docker.io) for tests and the benchmark, in a network namespace
//! the caller made, with its own data and exec roots, socket and configuration, and a private
//! mount namespace: nothing it does is seen outside, and all of it goes on drop. It can be
//! restarted (live-restore), and shown a plugin directory (netpath's Docker plugin). Images come
//! from Debian's static busybox (`docker import`), so nothing is pulled.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{stop_slot, unique, Netns};

/// The image [`Dockerd::image`] makes: busybox's httpd on port 80 (`EXPOSE 80`), answering
/// `/cgi-bin/ip` with the client's address as the container sees it.
pub const IMAGE: &str = "netpath-test/busybox:1";
const BUSYBOX: &str = "/bin/busybox";
/// `udp-echo PORT`: sends every datagram back to where it came from.
const UDP_ECHO_C: &str = r#"
#include <arpa/inet.h>
#include <stdlib.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    if (bind(s, (struct sockaddr *)&a, sizeof a)) return 1;
    char buf[2048];
    for (;;) {
        struct sockaddr_in p;
        socklen_t l = sizeof p;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&p, &l);
        if (n >= 0) sendto(s, buf, n, 0, (struct sockaddr *)&p, l);
    }
}
"#;
/// Where dockerd looks for plugins; private to its mount namespace here.
const PLUGINS_PARENT: &str = "/run/docker";

/// dockerds running in this process, and whether the first made [`PLUGINS_PARENT`] (an
/// empty mount point, removed after the last).
static RUNNING: std::sync::Mutex<(usize, bool)> = std::sync::Mutex::new((0, false));

/// How to start a dockerd.
#[derive(Clone, Debug)]
pub struct DockerdOptions {
    /// A directory shown to dockerd as /run/docker/plugins (where it finds plugin sockets).
    pub plugins: Option<PathBuf>,
    /// Docker's own bridge, iptables rules and docker-proxy (its defaults); off:
    /// `--bridge=none --iptables=false`, nothing of Docker's between netpath and the
    /// containers.
    pub own_rules: bool,
    /// `live-restore`: containers keep running while dockerd restarts.
    pub live_restore: bool,
    /// `host-gateway-ip`: what `--add-host NAME:host-gateway` means (Docker's default is its
    /// own bridge's address, so without that bridge it must be told).
    pub host_gateway_ip: Option<std::net::Ipv4Addr>,
}

impl Default for DockerdOptions {
    fn default() -> Self {
        DockerdOptions {
            plugins: None,
            own_rules: true,
            live_restore: false,
            host_gateway_ip: None,
        }
    }
}

/// A running dockerd; stopped, with its containers and files, on drop.
///
/// It runs in a mount namespace of its own, held by a process of the test's, so a restarted
/// dockerd finds what the first one mounted there (containers' namespaces, a private
/// /run/docker).
pub struct Dockerd {
    dir: PathBuf,
    ns: String,
    holder: Option<Child>,
    child: Option<Child>,
}

impl Dockerd {
    /// Starts dockerd in `ns` with Docker's defaults and waits (up to 30 s) until it answers.
    pub fn start(ns: &Netns) -> Result<Dockerd> {
        Dockerd::start_with(ns, &DockerdOptions::default())
    }

    /// Starts dockerd in `ns` as `opts` say and waits (up to 30 s) until it answers.
    pub fn start_with(ns: &Netns, opts: &DockerdOptions) -> Result<Dockerd> {
        let dir = std::env::temp_dir().join(format!("netpath-dockerd-{}", unique()));
        {
            let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
            if running.0 == 0 {
                running.1 = !Path::new(PLUGINS_PARENT).exists();
            }
            running.0 += 1;
        }
        // From here on, dropping it undoes everything.
        let mut d = Dockerd {
            dir: dir.clone(),
            ns: ns.path(),
            holder: None,
            child: None,
        };
        std::fs::create_dir_all(PLUGINS_PARENT)?;
        std::fs::create_dir_all(&dir)?;
        let mut config = serde_json::json!({
            // Its trust key would go to /etc/docker unless told otherwise.
            "deprecated-key-path": dir.join("key.json"),
            "live-restore": opts.live_restore,
        });
        if let Some(ip) = opts.host_gateway_ip {
            config["host-gateway-ip"] = ip.to_string().into();
        }
        if !opts.own_rules {
            config["bridge"] = "none".into();
            config["iptables"] = false.into();
            config["ip-forward"] = false.into();
        }
        std::fs::write(dir.join("daemon.json"), config.to_string())?;
        // A private mount namespace with a private /run/docker (and the plugins' directory
        // there), kept by a process that does nothing else.
        let ready = dir.join("mounted");
        let plugins = match &opts.plugins {
            Some(p) => format!(
                " && mkdir -p {PLUGINS_PARENT}/plugins && mount --bind {} {PLUGINS_PARENT}/plugins",
                p.display()
            ),
            None => String::new(),
        };
        let script = format!(
            "mount -t tmpfs tmpfs {PLUGINS_PARENT}{plugins} && touch {ready} && exec sleep infinity",
            ready = ready.display()
        );
        d.holder = Some(
            Command::new("unshare")
                .args(["--mount", "--propagation", "private"])
                .args(["--", "sh", "-c", &script])
                .stdin(Stdio::null())
                .spawn()
                .context("starting dockerd's mount namespace")?,
        );
        let start = Instant::now();
        while !ready.exists() {
            if let Some(Ok(Some(st))) = d.holder.as_mut().map(Child::try_wait) {
                d.holder = None;
                bail!("making dockerd's mounts failed: {st}");
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!("dockerd's mounts were not made within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        d.run()?;
        Ok(d)
    }

    /// Starts the dockerd process and waits until it answers.
    fn run(&mut self) -> Result<()> {
        let dockerd = ["/usr/sbin/dockerd", "/usr/bin/dockerd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .context("dockerd not found (Debian package docker.io)")?;
        let holder = self.holder.as_ref().context("no mount namespace")?.id();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))?;
        // In the namespace's network (not `ip netns exec`: that remounts /sys, hiding the
        // cgroup hierarchy dockerd needs).
        self.child = Some(
            Command::new("nsenter")
                .arg(format!("--net={}", self.ns))
                .arg(format!("--mount=/proc/{holder}/ns/mnt"))
                .arg("--")
                .arg(dockerd)
                .args(super::dir_flags(
                    &self.dir,
                    &[
                        ("--config-file", "daemon.json"),
                        ("--data-root", "data"),
                        ("--exec-root", "exec"),
                        ("--pidfile", "dockerd.pid"),
                    ],
                ))
                .arg("-H")
                .arg(format!("unix://{}", self.socket().display()))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting dockerd")?,
        );
        let start = Instant::now();
        while self.docker(&["version"]).is_err() {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                bail!("dockerd exited {st}: {}", self.log());
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("dockerd did not answer within 30 s: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops dockerd (SIGTERM) and starts it again; with live-restore its containers run on.
    pub fn restart(&mut self) -> Result<()> {
        stop_slot(&mut self.child);
        self.run()
    }

    /// Its socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// `docker WORDS…`, the line split on white space.
    pub fn words(&self, line: &str) -> Result<String> {
        self.docker(&line.split_whitespace().collect::<Vec<_>>())
    }

    /// Runs the docker CLI against it; its stdout, or an error with its stderr.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        super::engine_cli(
            Command::new("docker")
                .arg("-H")
                .arg(format!("unix://{}", self.socket().display()))
                .args(args),
            &format!("docker {args:?}"),
        )
    }

    /// Makes [`IMAGE`] from Debian's static busybox.
    pub fn image(&self) -> Result<()> {
        let root = self.dir.join("image");
        rootfs(&root)?;
        let tar = self.dir.join("image.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()?;
        if !st.success() {
            bail!("tar of the image failed");
        }
        self.docker(&[
            "import",
            "-c",
            r#"CMD ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]"#,
            "-c",
            "EXPOSE 80/tcp",
            &tar.to_string_lossy(),
            IMAGE,
        ])?;
        Ok(())
    }
}

/// Writes the test image's files under `root` (a root filesystem for `podman --rootfs`,
/// or for `docker import`): busybox, its httpd serving `/cgi-bin/ip`, a UDP echo server.
pub fn rootfs(root: &Path) -> Result<()> {
    std::fs::create_dir_all(root.join("bin"))?;
    std::fs::copy(BUSYBOX, root.join("bin/busybox"))
        .with_context(|| format!("{BUSYBOX} (Debian package busybox-static)"))?;
    for applet in [
        "sh", "sleep", "ip", "wget", "nc", "nslookup", "cat", "httpd", "ping", "echo", "ls", "ps",
    ] {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link)?;
        }
    }
    // A UDP echo server (busybox's nc has no UDP), built static with gcc.
    let src = root.with_extension("udp-echo.c");
    std::fs::write(&src, UDP_ECHO_C)?;
    let st = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(root.join("bin/udp-echo"))
        .arg(&src)
        .status()
        .context("gcc (Debian packages gcc, libc6-dev)")?;
    if !st.success() {
        bail!("building udp-echo failed");
    }
    // `nc -ll -p PORT -e sink`: a TCP sink that closes after the client's EOF.
    std::fs::write(root.join("bin/sink"), "#!/bin/sh\nexec cat > /dev/null\n")?;
    std::fs::set_permissions(
        root.join("bin/sink"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let cgi = root.join("www/cgi-bin");
    std::fs::create_dir_all(&cgi)?;
    std::fs::write(root.join("www/index.html"), "netpath\n")?;
    std::fs::write(
        cgi.join("ip"),
        "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n",
    )?;
    std::fs::set_permissions(
        cgi.join("ip"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    Ok(())
}

impl Dockerd {
    fn remove_containers(&self) {
        if let Ok(ids) = self.docker(&["ps", "-aq"]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                // Cleanup before the daemon stops: what fails here goes with it.
                let _ = self.docker(&args);
            }
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(Ok(None)) = self.child.as_mut().map(Child::try_wait) {
            self.remove_containers();
        }
        stop_slot(&mut self.child);
        // Its mounts live in the holder's mount namespace and go with it.
        if let Some(mut holder) = self.holder.take() {
            // It may have exited already; either way it is gone.
            let _ = holder.kill();
            let _ = holder.wait();
        }
        // Cleanup: already gone is as good as removed.
        let _ = std::fs::remove_dir_all(&self.dir);
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        running.0 -= 1;
        if running.0 == 0 && running.1 {
            // Cleanup: already gone is as good as removed.
            let _ = std::fs::remove_dir(PLUGINS_PARENT);
        }
    }
}
