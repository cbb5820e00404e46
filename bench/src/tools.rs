//! The benchmark's own eBPF tools, from the benchmark's object (`netpath-bench`, never in the
//! product): the live-frames packet generator (or, where the kernel refuses live frames, the
//! AF_PACKET sender of [`crate::afpacket`]), the counting sink, the redirect-only ceiling;
//! beside two of the agent's own programs, from the product's object.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use aya::{
    maps::{Array, MapData, PerCpuArray},
    programs::{
        tc::SchedClassifierLink, xdp::XdpLink, SchedClassifier, TcAttachType, TestRun,
        TestRunAttrs, TestRunOptions, Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
use netpath_common::{GenConfig, GEN_TEMPLATE_LEN};

use crate::afpacket;
use netpath_user::{
    datapath::{load_bench_object, MapSizes, EBPF_OBJECT},
    testing::{packet::PacketSocket, Netns, ScratchBpffs},
};

const GEN: &str = "netpath_bench_gen";
/// Counts the skbs it sees (the endpoint's sink).
pub const SINK: &str = "netpath_bench_sink";
/// The agent's uplink TC program (here with maps of its own, empty).
pub const UPLINK_TC: &str = "netpath_uplink_tc";
/// Redirects every frame to the endpoint (the ceiling of XDP paths).
pub const REDIRECT: &str = "netpath_bench_redirect";
/// Hands every skb to the endpoint (the ceiling of TC paths).
pub const TC_REDIRECT: &str = "netpath_bench_tc_redirect";
/// XDP_PASS and nothing else (the agent's own, for veth peers).
pub const PASS: &str = "netpath_xdp_pass";
/// Drops every frame unread (the floor of refusing).
pub const DROP: &str = "netpath_bench_drop";
/// Reads the headers and passes (a floor).
pub const READ: &str = "netpath_bench_parse";
/// TC_ACT_OK and nothing else (a floor).
pub const TC_PASS: &str = "netpath_bench_tc_pass";
/// Frames per live-frames batch.
const BATCH: u32 = 64;
/// Frame length on the wire (without FCS).
pub const FRAME_LEN: usize = 64;

/// Where generated frames go on the wire: sent from `ns` through `ifindex` (the outside's
/// veth), with these MACs.
pub struct Wire<'a> {
    pub ns: &'a Netns,
    pub ifname: &'a str,
    pub ifindex: u32,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// The CPU the generator runs on (none: wherever the scheduler puts it).
    pub cpu: Option<usize>,
}

/// Pins the calling thread to `cpu`.
pub fn pin_self(cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("pinning the generator to CPU {cpu}"))
}

/// Readies the generator's thread: pinned to `cpu` when given, and, when paced (`pps`), with
/// sleeps of some 100 µs kept short (the default slack, 50 µs, would be half of each).
fn generator_thread(cpu: Option<usize>, pps: Option<f64>) -> Result<()> {
    if let Some(cpu) = cpu {
        pin_self(cpu)?;
    }
    if pps.is_some() {
        // SAFETY: prctl with an integer argument, on this thread alone.
        unsafe { nix::libc::prctl(nix::libc::PR_SET_TIMERSLACK, 1u64) };
    }
    Ok(())
}

/// Pins task `pid` (a kernel thread, say) to `cpu`.
pub fn pin(pid: i32, cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(pid), &set)
        .with_context(|| format!("pinning task {pid} to CPU {cpu}"))
}

/// The generator's IPv4 template: UDP from 10.77.1.1:1024 to `dst:dport`, no UDP checksum
/// (allowed over IPv4).
fn frame4(wire: &Wire, dst: Ipv4Addr, dport: u16) -> [u8; FRAME_LEN] {
    let mut frame = [0u8; FRAME_LEN];
    frame[0..6].copy_from_slice(&wire.dst_mac);
    frame[6..12].copy_from_slice(&wire.src_mac);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (FRAME_LEN - 14) as u16;
    frame[14..18].copy_from_slice(&[0x45, 0, (ip_len >> 8) as u8, ip_len as u8]);
    frame[22] = 64;
    frame[23] = 17;
    frame[26..30].copy_from_slice(&[10, 77, 1, 1]);
    frame[30..34].copy_from_slice(&dst.octets());
    frame[34..36].copy_from_slice(&1024u16.to_be_bytes());
    frame[36..38].copy_from_slice(&dport.to_be_bytes());
    frame[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    frame
}

/// The generator's IPv6 template: UDP from fd00:77::1:1024 to `dst:dport`, its checksum
/// filled in (IPv6 requires one; the generator keeps it right as it varies the source).
fn frame6(wire: &Wire, dst: Ipv6Addr, dport: u16) -> [u8; FRAME_LEN] {
    let mut frame = [0u8; FRAME_LEN];
    frame[0..6].copy_from_slice(&wire.dst_mac);
    frame[6..12].copy_from_slice(&wire.src_mac);
    frame[12..14].copy_from_slice(&[0x86, 0xdd]);
    let udp_len = (FRAME_LEN - 54) as u16;
    frame[14] = 0x60;
    frame[18..20].copy_from_slice(&udp_len.to_be_bytes());
    frame[20] = 17;
    frame[21] = 64;
    let src = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1);
    frame[22..38].copy_from_slice(&src.octets());
    frame[38..54].copy_from_slice(&dst.octets());
    frame[54..56].copy_from_slice(&1024u16.to_be_bytes());
    frame[56..58].copy_from_slice(&dport.to_be_bytes());
    frame[58..60].copy_from_slice(&udp_len.to_be_bytes());
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&frame[22..54]);
    pseudo.extend_from_slice(&u32::from(udp_len).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 17]);
    let c = netpath_user::testing::inet_checksum(&[&pseudo, &frame[54..]]);
    frame[60..62].copy_from_slice(&c.to_be_bytes());
    frame
}

/// Traffic to generate: UDP to `dst:dport` from `src_addrs` × `src_ports` distinct sources.
#[derive(Clone, Copy, Debug)]
pub struct Traffic {
    /// IPv4 or IPv6: the frames' family.
    pub dst: IpAddr,
    pub dport: u16,
    pub src_addrs: u32,
    pub src_ports: u32,
}

pub struct Tools {
    /// The agent's object (UPLINK_TC, PASS).
    product: Ebpf,
    /// The benchmark's object (everything named `netpath_bench_*`).
    bench: Ebpf,
    gen: Array<MapData, GenConfig>,
    sink: PerCpuArray<MapData, u64>,
    redirect: Array<MapData, u32>,
    pub netpath_bin: PathBuf,
    /// Whether the kernel runs XDP live frames (else frames go by AF_PACKET).
    live_frames: bool,
    /// The AF_PACKET sender's next frame number (the kernel's generator keeps its own).
    seq: u32,
    /// The generator attached where no packet comes (see [`Tools::park_generator`]),
    /// detached before its namespace goes.
    _parked: (XdpLink, Netns),
    _fs: ScratchBpffs,
}

impl Tools {
    pub fn new() -> Result<Tools> {
        let fs = ScratchBpffs::new().context("scratch bpffs")?;
        let mut product = EbpfLoader::new()
            .default_map_pin_directory(fs.path())
            .load(EBPF_OBJECT)?;
        let mut bench = load_bench_object(fs.path(), &MapSizes::default())?;
        let xdp: &mut Xdp = product.program_mut(PASS).context(PASS)?.try_into()?;
        xdp.load()?;
        for name in [GEN, REDIRECT, READ, DROP] {
            let xdp: &mut Xdp = bench.program_mut(name).context(name)?.try_into()?;
            xdp.load()?;
        }
        let tc: &mut SchedClassifier = product
            .program_mut(UPLINK_TC)
            .context(UPLINK_TC)?
            .try_into()?;
        tc.load()?;
        for name in [SINK, TC_PASS, TC_REDIRECT] {
            let tc: &mut SchedClassifier = bench.program_mut(name).context(name)?.try_into()?;
            tc.load()?;
        }
        let gen = Array::try_from(bench.take_map("BENCH_GEN").context("BENCH_GEN")?)?;
        let sink = PerCpuArray::try_from(bench.take_map("BENCH_SINK").context("BENCH_SINK")?)?;
        let redirect =
            Array::try_from(bench.take_map("BENCH_REDIRECT").context("BENCH_REDIRECT")?)?;
        let netpath_bin = std::env::current_exe()?.with_file_name("netpath");
        if !netpath_bin.exists() {
            bail!(
                "{} not found: build netpath-user in the same profile",
                netpath_bin.display()
            );
        }
        let parked = Tools::park_generator(&mut bench)?;
        let live_frames = Tools::live_frames_allowed(&mut bench)?;
        Ok(Tools {
            product,
            bench,
            gen,
            sink,
            redirect,
            netpath_bin,
            live_frames,
            seq: 0,
            _parked: parked,
            _fs: fs,
        })
    }

    /// Attaches the generator (generic XDP) to a veth that never receives a packet (down, its
    /// peer too, in a namespace of their own), for as long as the benchmark runs. A test run with repeats
    /// puts its program into the kernel's XDP dispatcher as it starts and takes it out as it
    /// ends, and each change of the dispatcher waits for an RCU grace period: some 40 ms
    /// here, in which the wire stands idle — between two calls of 50,000 frames the path
    /// idled two thirds of the time and every rate read a third of itself. A program the
    /// dispatcher already holds (attached) only counts one more user.
    fn park_generator(bench: &mut Ebpf) -> Result<(XdpLink, Netns)> {
        let ns = Netns::new("npbg");
        ns.ip(&[
            "link", "add", "gen0", "type", "veth", "peer", "name", "gen1",
        ]);
        let prog: &mut Xdp = bench.program_mut(GEN).context(GEN)?.try_into()?;
        let link = ns.run(|| -> Result<XdpLink> {
            let id = prog
                .attach("gen0", XdpMode::Skb)
                .context("parking the generator")?;
            Ok(prog.take_link(id)?)
        })?;
        Ok((link, ns))
    }

    /// Whether the kernel runs the generator in live-frames mode: one frame, sent nowhere
    /// (the generator's configuration is empty, its redirect fails and the frame is freed).
    /// EPERM (a sandbox, a lockdown) means no; any other failure is the benchmark's.
    fn live_frames_allowed(bench: &mut Ebpf) -> Result<bool> {
        let prog: &mut Xdp = bench.program_mut(GEN).context(GEN)?.try_into()?;
        let frame = [0u8; FRAME_LEN];
        let opts = TestRunOptions {
            data_in: Some(&frame),
            repeat: 1,
            attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
            ..Default::default()
        };
        match prog.test_run(opts) {
            Ok(_) => Ok(true),
            Err(aya::programs::ProgramError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(nix::libc::EPERM) =>
            {
                Ok(false)
            }
            Err(e) => Err(e).context("trying a live-frames test run"),
        }
    }

    /// Whether frames come from the live-frames generator (else from AF_PACKET).
    pub fn live_frames(&self) -> bool {
        self.live_frames
    }

    /// The generator in use, for the report's layout lines.
    pub fn generator(&self) -> &'static str {
        if self.live_frames {
            "XDP live-frames generator"
        } else {
            "AF_PACKET generator (this kernel refuses XDP live frames: EPERM)"
        }
    }

    /// Program `name` of whichever object holds it.
    fn program(&mut self, name: &str) -> Result<&mut aya::programs::Program> {
        self.object_of(name)
            .program_mut(name)
            .with_context(|| name.to_string())
    }

    /// The object that holds program `name`.
    fn object_of(&mut self, name: &str) -> &mut Ebpf {
        if name.starts_with("netpath_bench_") {
            &mut self.bench
        } else {
            &mut self.product
        }
    }

    /// Attaches program `name` (one of the consts above) to `ifname`'s TC ingress inside `ns`.
    pub fn attach_tc(
        &mut self,
        name: &str,
        ns: &Netns,
        ifname: &str,
    ) -> Result<SchedClassifierLink> {
        let tc: &mut SchedClassifier = self.program(name)?.try_into()?;
        let ifname = ifname.to_string();
        ns.run(move || -> Result<SchedClassifierLink> {
            let t = tc.attach(&ifname, TcAttachType::Ingress)?;
            Ok(tc.take_link(t)?)
        })
    }

    /// Attaches program `name` (one of the consts above) to `ifname` (native XDP) inside `ns`.
    pub fn attach_xdp(&mut self, name: &str, ns: &Netns, ifname: &str) -> Result<XdpLink> {
        let prog: &mut Xdp = self.program(name)?.try_into()?;
        let ifname = ifname.to_string();
        ns.run(move || -> Result<XdpLink> {
            let id = prog.attach(&ifname, XdpMode::Driver)?;
            Ok(prog.take_link(id)?)
        })
    }

    pub fn set_redirect(&mut self, ifindex: u32) -> Result<()> {
        self.redirect.set(0, ifindex, 0)?;
        Ok(())
    }

    /// Packets the sink has counted so far, all CPUs.
    pub fn sink_count(&self) -> u64 {
        self.sink.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }

    /// Waits until the sink's count stops moving (frames still in flight), at most 500 ms.
    pub fn settled_count(&self) -> u64 {
        let start = Instant::now();
        let mut last = self.sink_count();
        loop {
            std::thread::sleep(Duration::from_millis(10));
            let now = self.sink_count();
            if now == last || start.elapsed() > Duration::from_millis(500) {
                return now;
            }
            last = now;
        }
    }

    /// Sends `traffic` onto `wire` for `duration`, flat out.
    /// Returns (frames sent, time taken).
    pub fn generate(
        &mut self,
        wire: &Wire,
        t: Traffic,
        duration: Duration,
    ) -> Result<(u64, Duration)> {
        self.generate_at(wire, t, duration, None)
    }

    /// [`Tools::generate`] at `pps` frames per second at most (`None`: flat out), in bursts of
    /// 128 frames (half a veth's receive queue), each sent as fast as it goes and the next
    /// one waiting for its time.
    pub fn generate_at(
        &mut self,
        wire: &Wire,
        t: Traffic,
        duration: Duration,
        pps: Option<f64>,
    ) -> Result<(u64, Duration)> {
        let frame = match t.dst {
            IpAddr::V4(dst) => frame4(wire, dst, t.dport),
            IpAddr::V6(dst) => frame6(wire, dst, t.dport),
        };
        let mut template = [0u8; GEN_TEMPLATE_LEN];
        template.copy_from_slice(&frame[..GEN_TEMPLATE_LEN]);
        let cpu = wire.cpu;
        if !self.live_frames {
            let plan = afpacket::Plan {
                template,
                src_addrs: t.src_addrs.max(1),
                src_ports: t.src_ports.max(1),
                seq: self.seq,
            };
            let ifindex = wire.ifindex;
            let (sent, took, seq) = afpacket::with_tso_off(wire.ns, wire.ifname, || {
                wire.ns.run(move || -> Result<(u64, Duration, u32)> {
                    generator_thread(cpu, pps)?;
                    let sock = PacketSocket::open(ifindex)?;
                    Ok(afpacket::send_for(&sock, &plan, duration, pps, 128))
                })
            })?;
            self.seq = seq;
            return Ok((sent, took));
        }
        self.gen.set(
            0,
            GenConfig {
                ifindex: wire.ifindex,
                src_addrs: t.src_addrs.max(1),
                src_ports: t.src_ports.max(1),
                _pad: 0,
                template,
            },
            0,
        )?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(FRAME_LEN as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&wire.ifindex.to_ne_bytes());
        let prog: &mut Xdp = self.bench.program_mut(GEN).context(GEN)?.try_into()?;
        let chunk: u32 = if pps.is_some() { 128 } else { 50_000 };
        wire.ns.run(move || -> Result<(u64, Duration)> {
            generator_thread(cpu, pps)?;
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < duration {
                let opts = TestRunOptions {
                    data_in: Some(&frame),
                    ctx_in: Some(&ctx),
                    repeat: chunk,
                    attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                    ..Default::default()
                };
                prog.test_run(opts).context("live-frames test run")?;
                sent += u64::from(chunk);
                if let Some(due) = pps.map(|r| Duration::from_secs_f64(sent as f64 / r)) {
                    std::thread::sleep(due.saturating_sub(start.elapsed()));
                }
            }
            Ok((sent, start.elapsed()))
        })
    }
}
