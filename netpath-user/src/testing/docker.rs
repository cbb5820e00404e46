//! A real dockerd (Debian's docker.io) for tests and the benchmark, in a network namespace
//! the caller made, with its own data and exec roots, socket and configuration, and a private
//! mount namespace: nothing it does is seen outside, and all of it goes on drop. Images come
//! from Debian's static busybox (`docker import`), so nothing is pulled.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{stop_child, unique, Netns};

/// The image [`Dockerd::image`] makes: busybox, running `sleep 3600`.
pub const IMAGE: &str = "netpath-test/busybox:1";
const BUSYBOX: &str = "/bin/busybox";
/// Where dockerd looks for plugins; private to its mount namespace here.
const PLUGINS_PARENT: &str = "/run/docker";

/// dockerds running in this process, and whether the first made [`PLUGINS_PARENT`] (an
/// empty mount point, removed after the last).
static RUNNING: std::sync::Mutex<(usize, bool)> = std::sync::Mutex::new((0, false));

/// A running dockerd; stopped, with its containers and files, on drop.
pub struct Dockerd {
    dir: PathBuf,
    child: Option<Child>,
}

impl Dockerd {
    /// Starts dockerd in `ns` and waits (up to 30 s) until it answers.
    pub fn start(ns: &Netns) -> Result<Dockerd> {
        let dockerd = ["/usr/sbin/dockerd", "/usr/bin/dockerd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .context("dockerd not found (Debian package docker.io)")?;
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
            child: None,
        };
        std::fs::create_dir_all(PLUGINS_PARENT)?;
        std::fs::create_dir_all(&dir)?;
        // Its trust key would go to /etc/docker unless told otherwise.
        let config = dir.join("daemon.json");
        std::fs::write(
            &config,
            serde_json::json!({ "deprecated-key-path": dir.join("key.json") }).to_string(),
        )?;
        let log = std::fs::File::create(dir.join("dockerd.log"))?;
        // In the namespace's network (not `ip netns exec`: that remounts /sys, hiding the
        // cgroup hierarchy dockerd needs), with a private mount namespace and a private
        // /run/docker.
        let script = format!(
            "mount -t tmpfs tmpfs {PLUGINS_PARENT} && exec {dockerd} \
             --config-file {config} --data-root {data} --exec-root {exec} \
             --pidfile {pid} -H unix://{sock}",
            config = config.display(),
            data = dir.join("data").display(),
            exec = dir.join("exec").display(),
            pid = dir.join("dockerd.pid").display(),
            sock = dir.join("docker.sock").display(),
        );
        d.child = Some(
            Command::new("nsenter")
                .arg(format!("--net={}", ns.path()))
                .args(["--", "unshare", "--mount", "--propagation", "private"])
                .args(["--", "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting dockerd")?,
        );
        let start = Instant::now();
        while d.docker(&["version"]).is_err() {
            if let Some(Ok(Some(st))) = d.child.as_mut().map(Child::try_wait) {
                d.child = None;
                bail!("dockerd exited {st}: {}", d.log());
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("dockerd did not answer within 30 s: {}", d.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    /// Its socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// Runs the docker CLI against it; its stdout, or an error with its stderr.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running docker")?;
        if !out.status.success() {
            bail!(
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Makes [`IMAGE`] from Debian's static busybox.
    pub fn image(&self) -> Result<()> {
        let root = self.dir.join("image");
        std::fs::create_dir_all(root.join("bin"))?;
        std::fs::copy(BUSYBOX, root.join("bin/busybox"))
            .with_context(|| format!("{BUSYBOX} (Debian package busybox-static)"))?;
        for applet in ["sh", "sleep", "ip", "wget", "nc", "nslookup", "cat"] {
            let link = root.join("bin").join(applet);
            if !link.exists() {
                std::os::unix::fs::symlink("busybox", link)?;
            }
        }
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
            r#"CMD ["/bin/sleep", "3600"]"#,
            &tar.to_string_lossy(),
            IMAGE,
        ])?;
        Ok(())
    }
}

impl Dockerd {
    fn remove_containers(&self) {
        if let Ok(ids) = self.docker(&["ps", "-aq"]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
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
        if let Some(mut child) = self.child.take() {
            // Its mounts live in its own mount namespace and go with it.
            stop_child(&mut child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        running.0 -= 1;
        if running.0 == 0 && running.1 {
            let _ = std::fs::remove_dir(PLUGINS_PARENT);
        }
    }
}
