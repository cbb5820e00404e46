//! A lab equipped with the benchmark's own eBPF tools: the counting sink in the endpoint
//! and, for the ceiling variant, the redirect-only program on the uplink. The glue between
//! [`crate::lab`] (topologies) and [`crate::tools`] (programs), which know nothing of each
//! other.
use std::ops::{Deref, DerefMut};

use anyhow::{Context as _, Result};
use aya::programs::{tc::SchedClassifierLink, xdp::XdpLink};

use crate::{
    lab::{Kind, Lab},
    tools::{Tools, Wire},
};

/// A lab and the tool programs attached to it (detached before the lab goes).
pub struct Rig {
    _sink: Option<SchedClassifierLink>,
    /// netpath's uplink TC program alone, or the empty one (those variants).
    _program: Option<SchedClassifierLink>,
    /// The ceiling's redirect-only program, a floor's, or the empty one, on the uplink.
    _xdp: Option<XdpLink>,
    /// The generator's CPU, when it has one of its own.
    generator_cpu: Option<usize>,
    /// Where the generator and the path run, for the report.
    pub layout: String,
    pub lab: Lab,
}

/// The CPU the generator runs on, and the one the path under test runs on.
pub const GENERATOR_CPU: usize = 0;
pub const PATH_CPU: usize = 1;

/// Gives the uplink's NAPI a kernel thread of its own (threaded NAPI) pinned to
/// [`PATH_CPU`]: everything the frames cause — the variant's programs or rules, the
/// redirect, the endpoint's TC ingress where the sink counts — runs there, apart from the
/// generator on [`GENERATOR_CPU`]. Returns the layout, said in the report.
fn separate_cpus(lab: &Lab) -> Result<String> {
    lab.host.exec(
        "sh",
        &[
            "-c",
            &format!("echo 1 > /sys/class/net/{}/threaded", lab.up_if),
        ],
    );
    pin_napi(lab)
}

/// Pins the uplink's NAPI threads to [`PATH_CPU`] (again: a program attached later may have
/// made them anew).
fn pin_napi(lab: &Lab) -> Result<String> {
    // Kernel threads are named napi/IFNAME-ID (cut at 15 characters).
    let prefix: String = format!("napi/{}-", lab.up_if).chars().take(15).collect();
    let mut pinned = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end().starts_with(&prefix) {
            crate::tools::pin(pid, PATH_CPU)?;
            pinned.push(comm.trim_end().to_string());
        }
    }
    if pinned.is_empty() {
        anyhow::bail!("no NAPI thread of {} to pin", lab.up_if);
    }
    Ok(format!(
        "generator on CPU {GENERATOR_CPU}; the uplink's NAPI threaded ({}) on CPU {PATH_CPU}, where the path and the sink run",
        pinned.join(", ")
    ))
}

/// A variant's name in a scenario of IPv6 beside IPv4's twins: netpath's paths say their
/// family, a baseline (`Kind::Iptables`'s place) is `baseline`, the rest are family-blind.
pub fn twin_name(kind: Kind, ipv6: bool, baseline: &str) -> String {
    match (kind, ipv6) {
        (Kind::Iptables, _) => baseline.into(),
        (Kind::Ceiling | Kind::CeilingTc, _) => kind.name().into(),
        (k, true) => format!("{} (IPv6)", k.name()),
        (k, false) => format!("{} (IPv4)", k.name()),
    }
}

/// The tool program a floor variant runs on the uplink's XDP hook, if it is one.
fn xdp_floor(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::EmptyXdp => Some(crate::tools::PASS),
        Kind::ReadXdp => Some(crate::tools::READ),
        Kind::DropXdp => Some(crate::tools::DROP),
        _ => None,
    }
}

impl Rig {
    /// A lab of `kind` (default ports published when `publish`); with `sinks` (traffic
    /// scenarios), the counting sink on the endpoint's TC ingress and the generator and the
    /// path on CPUs of their own.
    pub fn new(kind: Kind, tools: &mut Tools, publish: bool, sinks: bool) -> Result<Rig> {
        Rig::with_agent_args(kind, tools, publish, sinks, &[])
    }

    /// [`Rig::new`], the agent (netpath variants) started with `agent_args` too.
    pub fn with_agent_args(
        kind: Kind,
        tools: &mut Tools,
        publish: bool,
        sinks: bool,
        agent_args: &[&str],
    ) -> Result<Rig> {
        let lab = Lab::with_agent_args(kind, &tools.netpath_bin, publish, agent_args)?;
        Rig::equip(lab, tools, sinks)
    }

    /// A lab of `kind` for a scenario of IPv6 beside IPv4's twins: dual-stack with `ipv6`,
    /// else as [`Rig::new`] with the default ports.
    pub fn of_family(kind: Kind, tools: &mut Tools, ipv6: bool, sinks: bool) -> Result<Rig> {
        if ipv6 {
            let lab = Lab::dual(kind, &tools.netpath_bin)?;
            Rig::equip(lab, tools, sinks)
        } else {
            Rig::new(kind, tools, true, sinks)
        }
    }

    /// The tool programs on `lab`, and (with `sinks`) the CPUs apart.
    fn equip(lab: Lab, tools: &mut Tools, sinks: bool) -> Result<Rig> {
        let kind = lab.kind;
        let (host, up) = (&lab.host, lab.up_if.as_str());
        let ceiling = match lab.ceiling_target {
            Some(ifindex) if kind == Kind::CeilingTc => {
                tools.set_redirect(ifindex)?;
                None
            }
            Some(ifindex) => {
                tools.set_redirect(ifindex)?;
                Some(tools.attach_xdp(crate::tools::REDIRECT, host, up)?)
            }
            None => match xdp_floor(kind) {
                Some(name) => Some(tools.attach_xdp(name, host, up)?),
                None => None,
            },
        };
        let program = match kind {
            Kind::TcProgramOnly => Some(tools.attach_tc(crate::tools::UPLINK_TC, host, up)?),
            Kind::EmptyTc => Some(tools.attach_tc(crate::tools::TC_PASS, host, up)?),
            Kind::CeilingTc => Some(tools.attach_tc(crate::tools::TC_REDIRECT, host, up)?),
            _ => None,
        };
        let sink = if sinks {
            Some(
                tools
                    .attach_tc(crate::tools::SINK, &lab.ep, "eth0")
                    .context("attaching the sink")?,
            )
        } else {
            None
        };
        // The machine's CPUs, not the caller's share of them (it may be pinned to one).
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { nix::libc::sysconf(nix::libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
        let (generator_cpu, layout) = if sinks && cpus > PATH_CPU {
            (Some(GENERATOR_CPU), separate_cpus(&lab)?)
        } else {
            (
                None,
                format!("{cpus} CPU(s): generator and path share them"),
            )
        };
        let layout = format!("{}; {layout}", tools.generator());
        Ok(Rig {
            _sink: sink,
            _program: program,
            _xdp: ceiling,
            generator_cpu,
            layout,
            lab,
        })
    }

    /// Makes sure the path still runs apart from the generator (before each measurement).
    pub fn keep_cpus_apart(&self) -> Result<()> {
        if self.generator_cpu.is_some() {
            pin_napi(&self.lab)?;
        }
        Ok(())
    }

    /// Where the generator's frames enter: the outside's veth towards the host's uplink.
    pub fn wire(&self) -> Wire<'_> {
        Wire {
            ns: &self.lab.outside,
            ifname: &self.lab.out_if,
            ifindex: self.lab.out_ifindex,
            src_mac: self.lab.out_mac,
            dst_mac: self.lab.up_mac,
            cpu: self.generator_cpu,
        }
    }
}

impl Deref for Rig {
    type Target = Lab;

    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl DerefMut for Rig {
    fn deref_mut(&mut self) -> &mut Lab {
        &mut self.lab
    }
}
