//! `cargo xtask setup | run | test | bench | install | package | fresh`: the project's own
//! bootstrap and entry points.
mod architecture;
mod debroot;
mod fresh;
mod layout;
mod package;
mod setup;

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use setup::setup;

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing (each piece with what it is for): LLVM 22, rust-src for
    /// nightly, bpf-linker, the tools tests and the bench drive.
    Setup,
    /// Build and run the agent (arguments after `--` go to `netpath agent`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build and run every test: unit, BPF_PROG_TEST_RUN datapath, end to end.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install the agent: binary, systemd unit, example configuration, man pages, completions.
    Install {
        /// Install under this directory instead of / (packaging, tests).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Where the binary and its pages go, below the root.
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
    },
    /// Build the Debian package: target/debian/netpath_VERSION_ARCH.deb.
    Package {
        /// The package's version (and what the binaries report) [default: the workspace's].
        #[arg(long)]
        version: Option<String>,
    },
    /// Build and test a clean clone of HEAD in a Debian 12 root made on the spot, with only
    /// what a new machine has: proves `cargo xtask setup` misses nothing.
    Fresh {
        /// Setup, the build, the unit tests and `cargo xtask run` only (what CI runs).
        #[arg(long)]
        quick: bool,
        /// Keep the root in target/fresh/root afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// Run benchmark scenarios (default: all).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Setup => setup::setup(),
        Cmd::Run { args } => run(&args),
        Cmd::Test { args } => test(&args),
        Cmd::Bench { args } => bench(&args),
        Cmd::Install { root, prefix } => install(&root, &prefix),
        Cmd::Package { version } => package::package(version).map(drop),
        Cmd::Fresh { quick, keep } => fresh::fresh(quick, keep),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn status(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Builds the release binaries (`netpath`, `netpath-cni`), the kernel object inside.
fn build_release() -> Result<()> {
    status(Command::new(cargo()).current_dir(root()).args([
        "build",
        "--release",
        "-p",
        "netpath-user",
        "--bins",
    ]))
}

fn run(args: &[String]) -> Result<()> {
    setup()?;
    build_release()?;
    let bin = root().join("target/release/netpath");
    eprintln!("xtask: starting {} agent {}", bin.display(), args.join(" "));
    status(Command::new(bin).arg("agent").args(args))
}

fn test(args: &[String]) -> Result<()> {
    setup()?;
    if !nix_is_root() {
        bail!("the datapath and end-to-end tests need root (BPF, namespaces)");
    }
    let upgrade = build_upgrade(false)?;
    let packages = build_test_packages(&upgrade)?;
    status(
        Command::new(cargo())
            .current_dir(root())
            .args([
                "test",
                "--workspace",
                "--exclude",
                "netpath-ebpf",
                "--all-targets",
                // Every test binary runs, so one failure does not hide the others'.
                "--no-fail-fast",
            ])
            .args(args)
            .env("NETPATH_UPGRADE_BIN", &upgrade)
            .env("NETPATH_DEB", &packages.deb)
            .env("NETPATH_DEB_UPGRADE", &packages.upgrade)
            .env("NETPATH_DEBIAN_ROOT", &packages.debian_root),
    )?;
    if args.is_empty() {
        unit_tests_unprivileged()?;
    }
    Ok(())
}

/// What the package tests install, and where.
struct TestPackages {
    /// The release package, as `cargo xtask package` makes it.
    deb: PathBuf,
    /// A newer package whose kernel programs differ (the upgrade build, debug profile).
    upgrade: PathBuf,
    /// A minimal Debian 12 root (tar): a host with no Rust, no LLVM and no source tree.
    debian_root: PathBuf,
}

fn build_test_packages(upgrade_bin: &Path) -> Result<TestPackages> {
    let deb = package::package(None)?;
    let version = format!("{}{UPGRADE_SUFFIX}", package::workspace_version());
    let upgrade = package::Deb {
        bin_dir: upgrade_bin.parent().context("upgrade build directory")?,
        version: &version,
        out_dir: &root().join("target/debian"),
    }
    .build()?;
    let debian_root = root().join("target/xtask/debian-minbase.tar");
    if !debian_root.exists() {
        eprintln!("xtask: making a minimal Debian 12 root for the package tests");
        debroot::make(&debian_root, &[])?;
    }
    Ok(TestPackages {
        deb,
        upgrade,
        debian_root,
    })
}

/// What the upgrade build's version adds to the workspace's (a newer Debian version).
const UPGRADE_SUFFIX: &str = "+upgrade1";

/// A second build of the agent whose kernel programs differ (another build tag) and whose
/// version is newer, in its own target directory: what the upgrade tests, the upgrade package
/// and the benchmark swap to.
fn build_upgrade(release: bool) -> Result<PathBuf> {
    let dir = root().join("target/upgrade");
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root())
        .args(["build", "--quiet", "-p", "netpath-user", "--bins"])
        .arg("--target-dir")
        .arg(&dir)
        .env("NETPATH_EBPF_BUILD_TAG", "1")
        .env(
            "NETPATH_VERSION",
            format!("{}{UPGRADE_SUFFIX}", package::workspace_version()),
        );
    if release {
        cmd.arg("--release");
    }
    status(&mut cmd)?;
    Ok(dir
        .join(if release { "release" } else { "debug" })
        .join("netpath"))
}

/// The unit tests (parser, IPAM, model, planning, rollback with fakes, API, CLI formatting)
/// need no privilege: run them again as `nobody` to keep it so.
fn unit_tests_unprivileged() -> Result<()> {
    let out = Command::new(cargo())
        .current_dir(root())
        .args([
            "test",
            "-p",
            "netpath-common",
            "-p",
            "netpath-user",
            "--lib",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("building the unit tests")?;
    if !out.status.success() {
        bail!("building the unit tests failed");
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact" && msg["profile"]["test"] == true {
            if let Some(exe) = msg["executable"].as_str() {
                binaries.push(exe.to_string());
            }
        }
    }
    if binaries.len() < 2 {
        bail!("expected the unit-test binaries of netpath-common and netpath-user, found {binaries:?}");
    }
    for exe in binaries {
        eprintln!("xtask: {exe} as nobody");
        status(
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(&exe)
                .env("TMPDIR", "/tmp"),
        )?;
    }
    Ok(())
}

fn bench(args: &[String]) -> Result<()> {
    setup()?;
    // The benchmark starts the real agent: the product binary, then the harness (whose test
    // support must not reach the product, so it is built on its own).
    for pkg in ["netpath-user", "bench"] {
        status(Command::new(cargo()).current_dir(root()).args([
            "build",
            "--release",
            "-p",
            pkg,
            "--bins",
        ]))?;
    }
    let upgrade = build_upgrade(true)?;
    status(
        Command::new(root().join("target/release/bench"))
            .current_dir(root())
            .args(args)
            .env("NETPATH_UPGRADE_BIN", upgrade),
    )
}

/// Builds the release binary and installs it with everything an operator needs.
fn install(root_dir: &Path, prefix: &Path) -> Result<()> {
    setup()?;
    build_release()?;
    let installed = layout::lay_out(
        root_dir,
        &layout::Layout::admin(prefix),
        &root().join("target/release/netpath"),
    )?;
    for line in installed {
        eprintln!("installed {line}");
    }
    eprintln!(
        "next: systemctl daemon-reload && systemctl enable --now netpath \
         (edit /etc/netpath/netpath.toml first: uplinks, xdp, metrics, docker-plugin)"
    );
    Ok(())
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
