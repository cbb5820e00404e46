//! Where an operator's files go: the binary, the CNI plugin, the systemd unit, the
//! configuration, man pages and completions. One layout for `cargo xtask install` (under
//! /usr/local, the admin's own) and for the Debian package (under /usr, the distribution's).
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::{root, status};

/// One layout of the installed files.
pub struct Layout {
    /// `/usr/local` (install) or `/usr` (package).
    pub prefix: PathBuf,
    /// Where the unit goes: the admin's `/etc/systemd/system` or the package's
    /// `/lib/systemd/system`.
    pub unit_dir: &'static str,
    /// zsh completions: `site-functions` (admin) or `vendor-completions` (Debian).
    pub zsh_dir: &'static str,
    /// Man pages gzipped (Debian policy) or plain.
    pub gzip_man: bool,
    /// A copy in `/opt/cni/bin` too (admin install). The package ships `/usr/lib/cni` only
    /// (Debian keeps packages out of /opt); its postinst links the plugin into `/opt/cni/bin`
    /// when a runtime that looks there is installed.
    pub opt_cni: bool,
}

impl Layout {
    pub fn admin(prefix: &Path) -> Layout {
        Layout {
            prefix: prefix.to_path_buf(),
            unit_dir: "/etc/systemd/system",
            zsh_dir: "share/zsh/site-functions",
            gzip_man: false,
            opt_cni: true,
        }
    }

    pub fn debian() -> Layout {
        Layout {
            prefix: PathBuf::from("/usr"),
            unit_dir: "/lib/systemd/system",
            zsh_dir: "share/zsh/vendor-completions",
            gzip_man: true,
            opt_cni: false,
        }
    }
}

/// The CNI plugin's directories: Debian's podman looks in /usr/lib/cni, containerd and
/// Kubernetes in /opt/cni/bin.
pub const CNI_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];

/// Lays out the installation of `bin` (and `netpath-cni` beside it) under `root_dir`: what it
/// installed, one path a line. A configuration already there is kept; the example goes beside.
pub fn lay_out(root_dir: &Path, layout: &Layout, bin: &Path) -> Result<Vec<String>> {
    let under = |p: &Path| root_dir.join(p.strip_prefix("/").unwrap_or(p));
    let dist = root().join("netpath-user/dist");
    let mut out = Vec::new();
    let bin_dir = under(&layout.prefix.join("bin"));
    std::fs::create_dir_all(&bin_dir)?;
    let exe = bin_dir.join("netpath");
    std::fs::copy(bin, &exe).with_context(|| format!("copying {}", bin.display()))?;
    out.push(exe.display().to_string());

    let cni = bin.with_file_name("netpath-cni");
    let cni_dirs = if layout.opt_cni {
        &CNI_DIRS[..]
    } else {
        &CNI_DIRS[..1]
    };
    for dir in cni_dirs {
        let dir = under(Path::new(dir));
        std::fs::create_dir_all(&dir)?;
        let dst = dir.join("netpath-cni");
        std::fs::copy(&cni, &dst).with_context(|| format!("copying {}", cni.display()))?;
        out.push(dst.display().to_string());
    }

    let unit_dir = under(Path::new(layout.unit_dir));
    std::fs::create_dir_all(&unit_dir)?;
    let unit = std::fs::read_to_string(dist.join("netpath.service"))?.replace(
        "/usr/local/bin/netpath",
        &layout.prefix.join("bin/netpath").display().to_string(),
    );
    std::fs::write(unit_dir.join("netpath.service"), unit)?;
    out.push(unit_dir.join("netpath.service").display().to_string());

    let conf_dir = under(Path::new("/etc/netpath"));
    std::fs::create_dir_all(&conf_dir)?;
    let conf = if conf_dir.join("netpath.toml").exists() {
        conf_dir.join("netpath.toml.example")
    } else {
        conf_dir.join("netpath.toml")
    };
    std::fs::copy(dist.join("netpath.toml"), &conf)?;
    out.push(conf.display().to_string());

    let man = under(&layout.prefix.join("share/man/man1"));
    status(Command::new(&exe).arg("man").arg("--dir").arg(&man))?;
    if layout.gzip_man {
        for page in std::fs::read_dir(&man)? {
            let page = page?.path();
            if page.extension().is_some_and(|e| e == "1") {
                gzip_file(&page)?;
            }
        }
    }
    out.push(format!("{}/netpath*.1", man.display()));
    for (shell, dir, file) in [
        ("bash", "share/bash-completion/completions", "netpath"),
        ("zsh", layout.zsh_dir, "_netpath"),
        ("fish", "share/fish/vendor_completions.d", "netpath.fish"),
    ] {
        let dir = under(&layout.prefix.join(dir));
        std::fs::create_dir_all(&dir)?;
        let text = Command::new(&exe)
            .args(["completion", shell])
            .output()
            .with_context(|| format!("{shell} completions"))?;
        if !text.status.success() {
            bail!("netpath completion {shell} failed");
        }
        std::fs::write(dir.join(file), text.stdout)?;
        out.push(dir.join(file).display().to_string());
    }
    Ok(out)
}

/// Replaces `path` with `path.gz` (`gzip -9n`: no name or time inside, so builds repeat).
pub fn gzip_file(path: &Path) -> Result<()> {
    let gz = Command::new("gzip")
        .args(["-9n", "-c"])
        .arg(path)
        .output()
        .context("gzip")?;
    if !gz.status.success() {
        bail!("gzip {} failed", path.display());
    }
    let mut dst = path.as_os_str().to_owned();
    dst.push(".gz");
    std::fs::File::create(&dst)?.write_all(&gz.stdout)?;
    std::fs::remove_file(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the binary: answers `man --dir D` and `completion SHELL`.
    fn fake_bin(tmp: &Path) -> PathBuf {
        let fake = tmp.join("netpath-fake");
        std::fs::write(
            &fake,
            "#!/bin/sh\nif [ \"$1\" = man ]; then mkdir -p \"$3\" && echo .TH > \"$3/netpath.1\"; \
             else echo \"complete $2\"; fi\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(tmp.join("netpath-cni"), "#!/bin/sh\n").unwrap();
        fake
    }

    fn scratch(name: &str) -> PathBuf {
        let tmp = std::env::temp_dir().join(format!("netpath-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp); // left by an earlier run, or absent
        std::fs::create_dir_all(&tmp).unwrap();
        tmp
    }

    #[test]
    fn install_lays_out_an_operators_files() {
        let tmp = scratch("install");
        let fake = fake_bin(&tmp);
        let root_dir = tmp.join("root");
        lay_out(&root_dir, &Layout::admin(Path::new("/usr/local")), &fake).unwrap();
        let unit =
            std::fs::read_to_string(root_dir.join("etc/systemd/system/netpath.service")).unwrap();
        assert!(unit
            .contains("ExecStart=/usr/local/bin/netpath agent --config /etc/netpath/netpath.toml"));
        assert!(unit.contains("Type=notify"));
        for f in [
            "usr/local/bin/netpath",
            "usr/lib/cni/netpath-cni",
            "opt/cni/bin/netpath-cni",
            "etc/netpath/netpath.toml",
            "usr/local/share/man/man1/netpath.1",
            "usr/local/share/bash-completion/completions/netpath",
            "usr/local/share/zsh/site-functions/_netpath",
        ] {
            assert!(root_dir.join(f).exists(), "{f}");
        }
        // A configuration already there is kept; the example goes beside it.
        std::fs::write(
            root_dir.join("etc/netpath/netpath.toml"),
            "xdp = \"native\"\n",
        )
        .unwrap();
        lay_out(&root_dir, &Layout::admin(Path::new("/usr/local")), &fake).unwrap();
        assert_eq!(
            std::fs::read_to_string(root_dir.join("etc/netpath/netpath.toml")).unwrap(),
            "xdp = \"native\"\n"
        );
        assert!(root_dir.join("etc/netpath/netpath.toml.example").exists());
        let _ = std::fs::remove_dir_all(&tmp); // scratch space
    }

    #[test]
    fn the_debian_layout_follows_debian_policy() {
        let tmp = scratch("debian-layout");
        let fake = fake_bin(&tmp);
        let root_dir = tmp.join("root");
        lay_out(&root_dir, &Layout::debian(), &fake).unwrap();
        let unit =
            std::fs::read_to_string(root_dir.join("lib/systemd/system/netpath.service")).unwrap();
        assert!(unit.contains("ExecStart=/usr/bin/netpath agent"));
        for f in [
            "usr/bin/netpath",
            "usr/lib/cni/netpath-cni",
            "usr/share/man/man1/netpath.1.gz",
            "usr/share/zsh/vendor-completions/_netpath",
            "usr/share/fish/vendor_completions.d/netpath.fish",
        ] {
            assert!(root_dir.join(f).exists(), "{f}");
        }
        assert!(
            !root_dir.join("opt").exists(),
            "Debian packages stay out of /opt"
        );
        let _ = std::fs::remove_dir_all(&tmp); // scratch space
    }
}
