//! The generator where the kernel refuses XDP live frames (`BPF_PROG_TEST_RUN` with
//! `BPF_F_TEST_XDP_LIVE_FRAMES` answers EPERM on some hosts: a sandbox, a lockdown): the same
//! frames, varied the same way ([`gen_vary`], shared with the kernel's generator), sent from an
//! AF_PACKET socket on the outside's veth, past the qdisc, a batch per `sendmmsg`. The frames
//! reach the uplink as skbs, not as XDP frames: an XDP program there first copies each into a
//! page of its own (veth's headroom rule), so every variant's rate is lower than with live
//! frames, the ceiling's alike; the report says which generator ran.
use std::time::{Duration, Instant};

use anyhow::Result;
use netpath_common::{gen_vary, GEN_TEMPLATE_LEN};
use netpath_user::testing::{packet::PacketSocket, Netns};
use nix::libc;

/// Frames per `sendmmsg`.
const BATCH: usize = 64;

/// What to send: the template (the whole frame) and how to vary it, continuing from frame
/// number `seq`.
pub struct Plan {
    pub template: [u8; GEN_TEMPLATE_LEN],
    pub src_addrs: u32,
    pub src_ports: u32,
    pub seq: u32,
}

/// Sends frames on `sock` for `duration`: at `pps` frames a second when given, in bursts of
/// `burst` (each as fast as it goes, the next waiting for its time), else flat out. Returns
/// the frames the socket took, the time taken, and the next frame number.
pub fn send_for(
    sock: &PacketSocket,
    plan: &Plan,
    duration: Duration,
    pps: Option<f64>,
    burst: u32,
) -> (u64, Duration, u32) {
    let len = GEN_TEMPLATE_LEN;
    let mut frames = vec![0u8; BATCH * len];
    let mut iovs: Vec<libc::iovec> = frames
        .chunks_exact_mut(len)
        .map(|f| libc::iovec {
            iov_base: f.as_mut_ptr().cast(),
            iov_len: len,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: all-zero is a valid msghdr; its pointers are set here.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            (h.msg_name, h.msg_namelen) = sock.dest();
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            }
        })
        .collect();
    let mut seq = plan.seq;
    let start = Instant::now();
    let mut sent = 0u64;
    // Flat out, the clock is read after every batch: a path slower than the generator
    // (iptables with thousands of rules, say) must not stretch a run.
    let burst = if pps.is_some() {
        burst.max(1) as usize
    } else {
        BATCH
    };
    while start.elapsed() < duration {
        let mut left = burst;
        while left > 0 {
            let n = left.min(BATCH);
            for iov in &iovs[..n] {
                seq = seq.wrapping_add(1);
                let mut t = plan.template;
                gen_vary(&mut t, seq, plan.src_addrs, plan.src_ports);
                // SAFETY: each iovec points at a frame of GEN_TEMPLATE_LEN bytes in
                // `frames`, which nothing else touches while the headers live.
                unsafe {
                    std::ptr::copy_nonoverlapping(t.as_ptr(), iov.iov_base.cast(), GEN_TEMPLATE_LEN)
                };
            }
            // What the socket took is offered; a frame the peer's queue has no room for is
            // lost there, as a live frame would be.
            sent += sock.send_batch(&mut msgs[..n]) as u64;
            left -= n;
        }
        if let Some(due) = pps.map(|r| Duration::from_secs_f64(sent as f64 / r)) {
            std::thread::sleep(due.saturating_sub(start.elapsed()));
        }
    }
    drop(frames);
    (sent, start.elapsed(), seq)
}

/// Runs `f` with TCP segmentation offload off on `ifname` in `ns`, on again after when it
/// was on. A veth hands a sent skb to its peer's NAPI (threaded, on the path's CPU) only when
/// the peer has an XDP program or the frame is one GRO could merge, which with TSO on it
/// takes only UDP's from sockets on a peer with UDP GRO forwarding; otherwise the peer's
/// whole receive path runs on the sender's CPU, the generator's.
pub fn with_tso_off<T>(ns: &Netns, ifname: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let on = ns
        .exec("ethtool", &["-k", ifname])
        .lines()
        .any(|l| l.trim() == "tcp-segmentation-offload: on");
    if on {
        ns.exec("ethtool", &["-K", ifname, "tso", "off"]);
    }
    let out = f();
    if on {
        ns.exec("ethtool", &["-K", ifname, "tso", "on"]);
    }
    out
}
