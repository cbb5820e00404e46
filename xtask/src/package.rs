//! `cargo xtask package`: the Debian package operators install, built with dpkg-deb from the
//! release binaries and the Debian layout: `target/debian/netpath_VERSION_ARCH.deb`.
//!
//! What it holds: /usr/bin/netpath (the kernel programs embedded), the CNI plugin in
//! /usr/lib/cni (and /opt/cni/bin as a link), the systemd unit, /etc/netpath/netpath.toml as a
//! conffile, man pages, completions, the copyright file with every statically linked crate's
//! license. Depends is what dpkg-shlibdeps reads off the binaries, nothing else: the agent
//! speaks netlink and bpf(2) itself and runs no other program.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    cargo,
    layout::{gzip_file, lay_out, Layout},
    root, status,
};

/// What a package is made of.
pub struct Deb<'a> {
    /// Where `netpath` and `netpath-cni` were built.
    pub bin_dir: &'a Path,
    /// The package's version, which the binaries were built to report (`NETPATH_VERSION`).
    pub version: &'a str,
    /// Where the .deb goes.
    pub out_dir: &'a Path,
}

/// The workspace's version: the package's unless told otherwise.
pub fn workspace_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Builds the release binaries reporting `version` and packages them.
pub fn package(version: Option<String>) -> Result<PathBuf> {
    crate::setup::setup()?;
    let mut build = Command::new(cargo());
    build
        .current_dir(root())
        .args(["build", "--release", "-p", "netpath-user", "--bins"]);
    // Only a version of its own is passed down: the same environment as a plain release build
    // reuses that build.
    if let Some(v) = &version {
        check_version(v)?;
        build.env("NETPATH_VERSION", v);
    }
    status(&mut build)?;
    let version = version.unwrap_or_else(workspace_version);
    let deb = Deb {
        bin_dir: &root().join("target/release"),
        version: &version,
        out_dir: &root().join("target/debian"),
    }
    .build()?;
    eprintln!("xtask: wrote {}", deb.display());
    Ok(deb)
}

/// A Debian version: digits first, then what dpkg allows.
fn check_version(v: &str) -> Result<()> {
    let ok = v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~-".contains(c));
    if !ok {
        bail!("{v:?} is not a Debian version (digits first, then letters, digits and . + ~ -)");
    }
    Ok(())
}

impl Deb<'_> {
    /// Lays the files out, writes the control files, builds the .deb: its path.
    pub fn build(&self) -> Result<PathBuf> {
        let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
        let stage = self.out_dir.join(format!("stage-{}", self.version));
        if stage.exists() {
            std::fs::remove_dir_all(&stage)?;
        }
        lay_out(&stage, &Layout::debian(), &self.bin_dir.join("netpath"))?;
        for bin in ["usr/bin/netpath", "usr/lib/cni/netpath-cni"] {
            status(
                Command::new("strip")
                    .arg("--strip-unneeded")
                    .arg(stage.join(bin)),
            )?;
        }
        let doc = stage.join("usr/share/doc/netpath");
        std::fs::create_dir_all(&doc)?;
        std::fs::write(doc.join("copyright"), copyright()?)?;
        std::fs::write(doc.join("changelog.Debian"), self.changelog())?;
        gzip_file(&doc.join("changelog.Debian"))?;

        let control = stage.join("DEBIAN");
        std::fs::create_dir_all(&control)?;
        for script in ["postinst", "prerm", "postrm"] {
            let dst = control.join(script);
            std::fs::copy(root().join("netpath-user/dist/debian").join(script), &dst)?;
            set_mode(&dst, 0o755)?;
        }
        std::fs::write(control.join("conffiles"), "/etc/netpath/netpath.toml\n")?;
        std::fs::write(control.join("md5sums"), md5sums(&stage)?)?;
        let depends = self.depends(&stage)?;
        std::fs::write(
            control.join("control"),
            format!(
                "Package: netpath\n\
                 Version: {version}\n\
                 Architecture: {arch}\n\
                 Maintainer: netpath developers <maintainers@netpath.invalid>\n\
                 Installed-Size: {size}\n\
                 Depends: {depends}\n\
                 Section: net\n\
                 Priority: optional\n\
                 Description: eBPF datapath for Docker-style container networking\n \
                 netpath does what Docker's bridge driver does with iptables, docker-proxy and\n \
                 a Linux bridge, with kernel programs on TC and XDP hooks: published ports by\n \
                 DNAT keeping the client's address, user-defined networks with isolation,\n \
                 host.docker.internal, outbound NAT, names, overlay networks across hosts.\n \
                 It installs no iptables or nftables rule. This package holds the node agent\n \
                 and CLI (netpath), its systemd unit, and the CNI plugin (netpath-cni).\n",
                version = self.version,
                size = installed_size_kib(&stage)?,
            ),
        )?;
        let deb = self
            .out_dir
            .join(format!("netpath_{}_{arch}.deb", self.version));
        status(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "-Zxz", "--build"])
                .arg(&stage)
                .arg(&deb)
                .stdout(std::process::Stdio::null()),
        )?;
        std::fs::remove_dir_all(&stage)?;
        Ok(deb)
    }

    fn changelog(&self) -> String {
        format!(
            "netpath ({}) stable; urgency=medium\n\n  * Built from commit {}.\n\n \
             -- netpath developers <maintainers@netpath.invalid>  {}\n",
            self.version,
            output(Command::new("git").current_dir(root()).args([
                "rev-parse",
                "--short=12",
                "HEAD"
            ]))
            .unwrap_or_else(|_| "unknown".into()),
            output(Command::new("date").arg("-R")).unwrap_or_default(),
        )
    }

    /// The shared libraries' packages, as dpkg-shlibdeps reads them off the binaries.
    fn depends(&self, stage: &Path) -> Result<String> {
        let work = self.out_dir.join("shlibdeps");
        std::fs::create_dir_all(work.join("debian"))?;
        std::fs::write(
            work.join("debian/control"),
            "Source: netpath\n\nPackage: netpath\nArchitecture: any\n",
        )?;
        let out = output(
            Command::new("dpkg-shlibdeps")
                .current_dir(&work)
                .arg("-O")
                .arg(format!("-e{}", stage.join("usr/bin/netpath").display()))
                .arg(format!(
                    "-e{}",
                    stage.join("usr/lib/cni/netpath-cni").display()
                )),
        )?;
        std::fs::remove_dir_all(&work)?;
        let deps = out
            .lines()
            .find_map(|l| l.strip_prefix("shlibs:Depends="))
            .context("dpkg-shlibdeps printed no shlibs:Depends")?;
        Ok(deps.trim().to_string())
    }
}

/// `DEBIAN/md5sums`: every regular file outside DEBIAN and /etc (conffiles have their own).
fn md5sums(stage: &Path) -> Result<String> {
    let list = output(
        Command::new("find")
            .current_dir(stage)
            .args(["usr", "lib", "-type", "f", "-print0"]),
    )?;
    let files: Vec<&str> = list.split('\0').filter(|f| !f.is_empty()).collect();
    Ok(output(Command::new("md5sum").current_dir(stage).args(&files))? + "\n")
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn installed_size_kib(stage: &Path) -> Result<u64> {
    let out = output(
        Command::new("du")
            .args(["-sk", "--exclude=DEBIAN"])
            .arg(stage),
    )?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("du printed no size")
}

/// The machine-readable copyright file: netpath's licenses, then every crate linked into the
/// binaries with its license (cargo metadata's normal dependencies of netpath-user).
fn copyright() -> Result<String> {
    let mut text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: netpath\n\n\
         Files: *\n\
         Copyright: 2026 the netpath developers\n\
         License: MIT or Apache-2.0\n"
        .to_string();
    let crates = linked_crates()?;
    text.push_str(
        "Comment: The binaries link these Rust crates statically (name version: license):\n",
    );
    for (name, license) in &crates {
        text.push_str(&format!(" {name}: {license}\n"));
    }
    text.push_str("\nLicense: MIT\n");
    let mit = std::fs::read_to_string(root().join("LICENSE-MIT"))?;
    for line in mit.lines() {
        text.push_str(if line.is_empty() { " .\n" } else { " " });
        if !line.is_empty() {
            text.push_str(line);
            text.push('\n');
        }
    }
    text.push_str(
        "\nLicense: Apache-2.0\n On Debian systems the full text of the Apache License 2.0 is in\n \
         /usr/share/common-licenses/Apache-2.0.\n",
    );
    Ok(text)
}

/// The crates netpath-user's binaries link, `name version` to license: `cargo tree` of its
/// normal dependencies, features resolved for the product alone (no dev or build ones).
fn linked_crates() -> Result<BTreeMap<String, String>> {
    let tree = output(Command::new(cargo()).current_dir(root()).args([
        "tree",
        "--quiet",
        "-p",
        "netpath-user",
        "-e",
        "normal",
        "--prefix",
        "none",
        "-f",
        "{p}\t{l}",
    ]))?;
    let mut out = BTreeMap::new();
    for line in tree.lines() {
        let (pkg, license) = line.split_once('\t').unwrap_or((line, ""));
        let mut words = pkg.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        if name.starts_with("netpath") {
            continue;
        }
        let license = license.trim_end_matches(" (*)").trim();
        out.insert(
            format!("{name} {}", version.trim_start_matches('v')),
            if license.is_empty() {
                "see the crate"
            } else {
                license
            }
            .to_string(),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_dpkg_would_refuse_are_refused() {
        for good in ["0.1.0", "0.1.0+upgrade1", "1.2~rc1", "2-1"] {
            assert!(check_version(good).is_ok(), "{good}");
        }
        for bad in ["v0.1", "", "0.1 0", "0.1/1"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_linked_crates_are_the_products_not_the_tests() {
        let crates = linked_crates().unwrap();
        assert!(crates.keys().any(|k| k.starts_with("aya ")), "{crates:?}");
        // etherparse is behind the `testing` feature, aya-build is a build dependency.
        assert!(!crates.keys().any(|k| k.starts_with("etherparse ")));
        assert!(!crates.keys().any(|k| k.starts_with("aya-build ")));
    }
}
