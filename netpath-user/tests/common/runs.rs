//! The datapath loaded on a scratch bpffs, and its programs run on crafted frames
//! (BPF_PROG_TEST_RUN): what the datapath tests of both families share.
use aya::programs::{TestRun, TestRunOptions};
use netpath_user::datapath::{programs, Datapath, MapSizes};
use netpath_user::testing::ScratchBpffs;

/// A datapath and the bpffs its maps are pinned in.
pub struct Dp {
    pub dp: Datapath,
    pub _fs: ScratchBpffs,
}

pub fn load() -> Dp {
    let fs = ScratchBpffs::new().expect("scratch bpffs");
    let dp = Datapath::load(
        Some(fs.path()),
        MapSizes {
            ports: 1024,
            flows: 1024,
            endpoints: 64,
        },
    )
    .expect("load datapath");
    Dp { dp, _fs: fs }
}

/// Runs a TC program; `ifindex` sets the skb's device (0: loopback).
pub fn run_tc(dp: &mut Datapath, prog: &'static str, pkt: &[u8], ifindex: u32) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; pkt.len() + 256];
    let mut ctx = [0u8; 44];
    ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    let opts = TestRunOptions {
        data_in: Some(pkt),
        data_out: Some(&mut out),
        ctx_in: (ifindex != 0).then_some(&ctx[..]),
        ..Default::default()
    };
    let res = dp
        .classifier(prog)
        .unwrap()
        .test_run(opts)
        .unwrap_or_else(|e| panic!("test run of {} bytes: {e}", pkt.len()));
    out.truncate(res.data_size_out as usize);
    (res.return_value, out)
}

pub fn run_xdp(dp: &mut Datapath, pkt: &[u8]) -> (u32, Vec<u8>) {
    run_xdp_on(dp, pkt, 0)
}

/// [`run_xdp`] as if the frame came in on `ifindex` (of the calling thread's namespace; 0:
/// the loopback).
pub fn run_xdp_on(dp: &mut Datapath, pkt: &[u8], ifindex: u32) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; pkt.len() + 256];
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(pkt.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    let opts = TestRunOptions {
        data_in: Some(pkt),
        data_out: Some(&mut out),
        ctx_in: (ifindex != 0).then_some(&ctx[..]),
        ..Default::default()
    };
    let res = dp
        .xdp(programs::UPLINK_XDP)
        .unwrap()
        .test_run(opts)
        .unwrap_or_else(|e| panic!("xdp test run of {} bytes: {e}", pkt.len()));
    out.truncate(res.data_size_out as usize);
    (res.return_value, out)
}
