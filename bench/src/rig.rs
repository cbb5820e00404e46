//! A lab equipped with the benchmark's own eBPF tools: the counting sinks in the endpoint
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
    _sinks: Option<(XdpLink, SchedClassifierLink)>,
    _ceiling: Option<XdpLink>,
    pub lab: Lab,
}

impl Rig {
    /// A lab of `kind` (default ports published when `publish`), with counting sinks on the
    /// endpoint's interface when `sinks` (traffic scenarios only: native XDP on a veth costs
    /// bulk TCP dearly).
    pub fn new(kind: Kind, tools: &mut Tools, publish: bool, sinks: bool) -> Result<Rig> {
        let lab = Lab::new(kind, &tools.netpath_bin, publish)?;
        let ceiling = match lab.ceiling_target {
            Some(ifindex) => {
                tools.set_redirect(ifindex)?;
                Some(tools.attach_redirect(&lab.host, &lab.up_if)?)
            }
            None => None,
        };
        let sinks = if sinks {
            Some(
                tools
                    .attach_sinks(&lab.ep, "eth0")
                    .context("attaching the sinks")?,
            )
        } else {
            None
        };
        Ok(Rig {
            _sinks: sinks,
            _ceiling: ceiling,
            lab,
        })
    }

    /// Where the generator's frames enter: the outside's veth towards the host's uplink.
    pub fn wire(&self) -> Wire<'_> {
        Wire {
            ns: &self.lab.outside,
            ifindex: self.lab.out_ifindex,
            src_mac: self.lab.out_mac,
            dst_mac: self.lab.up_mac,
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
