//! The benchmark's packet generator (`netpath_bench_gen`, kernel: `bench.rs`). Not used by
//! the agent.

/// Configuration of the benchmark's packet generator (`netpath_bench_gen`), the single
/// entry of its `BENCH_GEN` array. Not used by the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenConfig {
    /// Where generated frames are sent (`bpf_redirect` target).
    pub ifindex: u32,
    /// Number of distinct source addresses, counted up from the template's (1 = fixed).
    pub src_addrs: u32,
    /// Number of distinct source ports, counted up from the template's (1 = fixed).
    pub src_ports: u32,
    pub _pad: u32,
    /// The frame's first 64 bytes (Ethernet, IPv4, UDP, payload), written on every run:
    /// live-frame pages come back as the receiver left them.
    pub template: [u8; 64],
}

/// Size of [`GenConfig::template`].
pub const GEN_TEMPLATE_LEN: usize = 64;

crate::layout!(GenConfig, 80, ifindex @ 0, src_addrs @ 4, src_ports @ 8, _pad @ 12, template @ 16);
crate::pod!(GenConfig);
