//! Shared by the integration tests: `netpath_user::testing`, and the namespaced installation.
#![allow(unused_imports, dead_code)]
pub use netpath_user::testing::*;

pub mod matrix;
mod runs;
mod topo;
pub use runs::*;
pub use topo::*;

/// Pins the calling test's thread to the CPU it is on: the flood guard keeps a schedule per
/// CPU, and a test's runs must all count against one.
pub fn pin_to_this_cpu() {
    use nix::sched::{sched_getcpu, sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    set.set(sched_getcpu().unwrap()).unwrap();
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
}

/// How a flood test's flows are driven: `through(dp, port, xdp)`, whether the client's packet
/// from `port` was translated, on XDP or TC; `made_goes_on(dp)`, a packet of the flow made
/// before the flood, asserted to go on; `recent(dp, port)`, the `recent` of the flow from
/// `port`'s entry, if it has one.
pub struct FloodFlows<T, M, R> {
    pub through: T,
    pub made_goes_on: M,
    pub recent: R,
}

impl<T, M, R> FloodFlows<T, M, R>
where
    T: Fn(&mut netpath_user::datapath::Datapath, u16, bool) -> bool,
    M: Fn(&mut netpath_user::datapath::Datapath),
    R: Fn(&netpath_user::datapath::Datapath, u16) -> Option<u8>,
{
    /// Under a flood (the guard at one new flow a second, its burst spent by the flow made
    /// from port `made`), the flow begun in it: clients from port `first` on are tried until
    /// the guard lets one through, the flow made going on meanwhile, on XDP and TC in turn. A
    /// try let through only once the flood ebbed (this thread held off its CPU for the
    /// milliseconds between the guard's refusing and its three quarters) is a flow made
    /// outside the flood, marked seen as it should be: then another client tries. Returns
    /// the flow's port and the refusals before it was let through.
    pub fn begun_in_the_flood(
        &self,
        dp: &mut netpath_user::datapath::Datapath,
        made: u16,
        first: u16,
    ) -> (u16, u64) {
        let start = std::time::Instant::now();
        let (mut late, mut tries) = (first, 0u64);
        loop {
            while !(self.through)(dp, late, tries.is_multiple_of(2)) {
                tries += 1;
                assert!(start.elapsed().as_secs() < 10, "never let through");
                (self.made_goes_on)(dp);
                assert!((self.recent)(dp, late).is_none(), "refused, not recorded");
            }
            let now = (self.recent)(dp, made).expect("the flow made");
            let recorded = (self.recent)(dp, late).expect("recorded once let through");
            if !netpath_common::recent::seen(recorded, now) {
                break;
            }
            assert!(
                start.elapsed().as_secs() < 10,
                "never let through in the flood"
            );
            late += 1;
        }
        assert!(tries > 0, "the first try came in the flood");
        (late, tries)
    }

    /// The next packets of the flow from `port`, begun in the flood: refused like a new
    /// flow's (the entry kept) until the guard lets one through again. Returns the refusals.
    pub fn refused_until_let_through(
        &self,
        dp: &mut netpath_user::datapath::Datapath,
        port: u16,
    ) -> u64 {
        let start = std::time::Instant::now();
        let mut refused = 0u64;
        while !(self.through)(dp, port, !refused.is_multiple_of(2)) {
            refused += 1;
            assert!(start.elapsed().as_secs() < 10, "never let through again");
            assert!((self.recent)(dp, port).is_some(), "still recorded");
        }
        assert!(refused > 0, "its second packet was refused");
        refused
    }
}

/// `promtool check metrics` passes `text`.
pub fn promtool_accepts(text: &str) {
    use std::io::Write as _;
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `systemd-analyze verify` accepts the unit at `unit`, with the man pages of its
/// Documentation= found under `manpath`: no error and nothing said.
pub fn systemd_accepts(unit: &std::path::Path, manpath: &std::path::Path) {
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .env("MANPATH", manpath)
        .output()
        .expect("systemd-analyze");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether a damaged state file was set aside (`state.json.bad-*`) in `state_dir`.
pub fn state_set_aside(state_dir: &std::path::Path) -> bool {
    std::fs::read_dir(state_dir)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.bad-")
        })
}
