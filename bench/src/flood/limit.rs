//! What limits the `flood` scenario's established connections, measured in its runs: the
//! forwarding CPU, the uplink's receive ring, the connections' retransmitted segments, and
//! (where flows are kept) perf's profile of one more flood.
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

/// TCP segments retransmitted so far in namespace `ns` (Tcp's RetransSegs): each a segment
/// lost on the way and sent again, after a loss probe (10 ms at least) or a retransmission
/// timeout (200 ms at least), a transaction that waited for it.
pub fn retransmitted(ns: &netpath_user::testing::Netns) -> Result<u64> {
    crate::tcp::snmp(ns, "Tcp", "RetransSegs")
}

/// Nanoseconds the thread of `dir` (a /proc task directory) has waited on a run queue for a
/// CPU (its schedstat's second field).
fn run_delay(dir: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("schedstat"))
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// How long this thread has waited for a CPU so far, ns.
pub fn waited_self() -> u64 {
    run_delay(std::path::Path::new("/proc/thread-self")).unwrap_or(0)
}

/// How long each of this process's threads named `name` has waited for a CPU so far, ns, by
/// thread id.
pub fn threads_waited(name: &str) -> std::collections::HashMap<String, u64> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Default::default();
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .filter_map(|t| {
            Some((
                t.file_name().to_string_lossy().into_owned(),
                run_delay(&t.path())?,
            ))
        })
        .collect()
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

/// Why established connections through ports whose flows are kept lose their rate under the
/// flood, more on XDP than on TC, on this layout, where the floor (every flood frame refused
/// at the program's first decision) keeps it.
pub const KEPT_UNDER_FLOOD: &str = "refusing the flood costs little (the floor refuses every frame of it at the program's first decision); what the variant adds is the share the guard admits (its default rate, 50,000 new flows a second per CPU), each taking one of the LRU table's oldest slots and delivered into the endpoint on the forwarding CPU beside the connections' segments. On XDP what is redirected reaches the endpoint through a second ring and NAPI poll, its veth's, which the connections' segments share with the admitted flood, where TC's redirect delivers into the endpoint at once; the veth also copies every frame the generator sends (its skbs) before the program sees it, a copy a NIC's XDP does not make. Segments lost at the uplink's single receive ring (a veth has one, of 256 frames; a NIC would spread the flood over its queues) are sent again on both";

/// Why established connections through one-to-one ports lose their rate under the flood on
/// XDP, where no flow is written or looked up.
pub const ONE_TO_ONE_UNDER_FLOOD: &str = "a one-to-one port keeps no flow: the guard takes a UDP flow not marked seen lately for a new one and refuses the flood past its rate, at a hash and a byte read per frame, and what it admits is delivered into the endpoint on the forwarding CPU beside the connections' segments; on XDP the veth also copies every frame the generator sends (its skbs) before the program sees it, a copy a NIC's XDP does not make";

/// Why a flood to a one-to-one port gets past the guard's rate: what tells its new flows
/// from those going on is one byte per slot of a fixed array, and a flood fills it.
pub const ONE_TO_ONE_MARKS: &str = "a one-to-one port keeps no flow, and the guard takes a UDP datagram for a new flow when its slot of RECENT_FLOWS (2^20 one-byte marks of a generation, no more) holds no mark of this generation or the last; each flow the guard lets in marks its slot, and a flood frame that lands on a marked slot is let in unasked and renews the mark, so under a sustained flood the marked share grows by the guard's rate each second and never ages, and more of the flood gets in the longer it lasts (a mark that also held a few bits of the flow's hash would let in only the flows it names)";

/// The measurements behind [`KEPT_UNDER_FLOOD`] and [`ONE_TO_ONE_UNDER_FLOOD`] for variant
/// `v`: the flood delivered into the endpoint, the forwarding CPU, the ring and the
/// connections' retransmitted segments; where flows are kept, beside TC's, with the profile.
pub fn saturated(v: &Variant, m: &Measured, profile: &Profile) -> String {
    let at = |name: &str| VARIANTS.iter().position(|x| x.name == name).unwrap_or(0);
    let (i, tc) = (at(v.name), at("netpath tc, flows kept"));
    let said = |i: usize| {
        format!(
            "{:.2} Mpps of the flood delivered into the endpoint, the forwarding CPU {:.0}% busy, {:.1} kpps refused by the uplink's ring, {:.0} of the connections' segments sent again a flood, their threads waiting {:.0} ms a second for a CPU ({:.0} quiet)",
            m.delivered[i].median(),
            m.busy[i].median(),
            m.ring[i].median(),
            m.resent[i].median(),
            m.waited.1[i].median(),
            m.waited.0[i].median(),
        )
    };
    if !v.kept || i == tc {
        return said(i);
    }
    format!(
        "{} (netpath tc, flows kept: {}); perf of one more flood of netpath xdp, flows kept, on the forwarding CPU: {:.0}% of its time in the flow table's bucket walk (lookup_nulls_elem_raw), {:.0}% making room in the table (bpf_lru_pop_free), {:.0}% in the veth's copy for XDP (skb_pp_cow_data), {:.0}% in netpath's programs with all they call",
        said(i),
        said(tc),
        profile.walk,
        profile.lru,
        profile.copy,
        profile.programs,
    )
}

/// The figures of the flood's runs that [`saturated`] draws on, by variant.
pub struct Measured<'a> {
    pub delivered: &'a [Figure],
    pub busy: &'a [Figure],
    pub ring: &'a [Figure],
    pub resent: &'a [Figure],
    /// The connections' threads' wait for a CPU, quiet and under the flood.
    pub waited: (&'a [Figure], &'a [Figure]),
}
