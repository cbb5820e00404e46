//! What limits the `flood` scenario's established connections where flows are kept, measured
//! in its runs: the forwarding CPU, the uplink's receive ring, and perf's profile of one more
//! flood.
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::{keep_flows, turns, Variant, FLOOD_PPS, VARIANTS};
use crate::{
    perf::shares,
    report::Figure,
    rig::{Rig, PATH_CPU},
    tools::{Tools, Traffic},
    Progress,
};

/// Frames the uplink's receive ring could not take so far: the outside veth's tx_dropped
/// (a veth counts there what its peer's ring refused).
pub fn ring_drops(lab: &Rig) -> Result<u64> {
    let path = format!("/sys/class/net/{}/statistics/tx_dropped", lab.out_if);
    let v = lab.outside.exec("cat", &[&path]);
    v.trim().parse().with_context(|| format!("{path}: {v:?}"))
}

/// Where the forwarding CPU's time went in one more flood of `netpath xdp, flows kept`, by
/// perf: shares (%) of its samples in the flow table's bucket walk, in making room in the
/// LRU table, in the veth's copy of each frame for XDP, and in netpath's programs with all
/// they call.
pub struct Profile {
    walk: f64,
    lru: f64,
    copy: f64,
    programs: f64,
}

pub fn profile_kept(
    quick: bool,
    tools: &mut Tools,
    flood: Traffic,
    p: &Progress,
) -> Result<Profile> {
    p.step("flood: perf of netpath xdp, flows kept");
    let v = &VARIANTS[0];
    let lab = Rig::new(v.kind, tools, true, true)?;
    keep_flows(&lab)?;
    crate::traffic::warm_up(tools, &lab, flood)?;
    lab.keep_cpus_apart()?;
    let secs = turns(quick).secs;
    let (_, s, programs) = shares(
        PATH_CPU,
        &[
            "lookup_nulls_elem_raw",
            "bpf_lru_pop_free",
            "skb_pp_cow_data",
        ],
        || {
            tools.generate_at(
                &lab.wire(),
                flood,
                Duration::from_secs_f64(secs),
                Some(FLOOD_PPS),
            )
        },
    )?;
    p.inc();
    Ok(Profile {
        walk: s[0],
        lru: s[1],
        copy: s[2],
        programs,
    })
}

/// Why established connections through ports whose flows are kept lose more of their rate
/// under the flood than through one-to-one ports, on this layout.
pub const KEPT_UNDER_FLOOD: &str = "under the flood the flow table is asked only about flows seen lately (a mark per flow in a table of 1 MiB), so the flood's frames no longer miss in it (the bucket walk's share below); what is left on the one forwarding CPU: each of the flood's frames is still parsed and asked of the port, the policy and the guard before it is refused, and the share the guard admits (200,000 new flows a second) takes the LRU table's oldest slots; on XDP the veth also copies every frame the generator sends (its skbs) before the program sees it, a copy a NIC's XDP does not make. Where that leaves the CPU busier than one to one, the uplink's single receive ring overflows more often, and the established connections' packets, which share it, are dropped there with the flood's (a NIC would spread the flood over its queues' CPUs; a veth has one ring)";

/// The measurements behind [`KEPT_UNDER_FLOOD`] for variant `v`: its forwarding CPU and ring
/// beside the one-to-one variant's, and the profile.
pub fn saturated(v: &Variant, busy: &[Figure], ring: &[Figure], profile: &Profile) -> String {
    let at = |name: &str| VARIANTS.iter().position(|x| x.name == name).unwrap_or(0);
    let (i, one) = (at(v.name), at("netpath xdp, one to one"));
    format!(
        "the forwarding CPU {:.0}% busy under the flood, {:.2} Mpps refused by the uplink's ring ({:.0}% and {:.2} Mpps one to one); perf of one more flood of netpath xdp, flows kept, on the forwarding CPU: {:.0}% of its time in the flow table's bucket walk (lookup_nulls_elem_raw), {:.0}% making room in the table (bpf_lru_pop_free), {:.0}% in the veth's copy for XDP (skb_pp_cow_data), {:.0}% in netpath's programs with all they call",
        busy[i].median(),
        ring[i].median(),
        busy[one].median(),
        ring[one].median(),
        profile.walk,
        profile.lru,
        profile.copy,
        profile.programs,
    )
}
