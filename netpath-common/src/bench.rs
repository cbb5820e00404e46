//! The benchmark's packet generator: its configuration and how it varies each frame, shared
//! by the kernel's (`netpath_bench_gen`, live frames) and the benchmark's own AF_PACKET
//! sender where the kernel refuses live frames. Not used by the agent.

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

/// Where the template's IPv4 (or IPv6) header starts: after Ethernet's 14 bytes.
const L3: usize = 14;

/// The generator's frame number `seq` made from `t` (a UDP frame, IPv4 or IPv6): its source
/// port moved on by `seq % src_ports` and its source address by `seq / src_ports % src_addrs`,
/// the checksums kept right (IPv4's header recomputed, IPv6's UDP checksum updated, RFC 1624).
#[inline(always)]
pub fn gen_vary(t: &mut [u8; GEN_TEMPLATE_LEN], seq: u32, src_addrs: u32, src_ports: u32) {
    let ports = if src_ports == 0 { 1 } else { src_ports };
    let addrs = if src_addrs == 0 { 1 } else { src_addrs };
    let (port, addr) = (seq % ports, (seq / ports) % addrs);
    if t[12] == 0x86 && t[13] == 0xdd {
        vary6(t, port, addr);
    } else {
        vary4(t, port, addr);
    }
}

/// An IPv4 template's source port and address moved on by `port` and `addr`, its header
/// checksum computed again (a UDP checksum of zero stays: none, allowed over IPv4).
#[inline(always)]
fn vary4(t: &mut [u8; GEN_TEMPLATE_LEN], port: u32, addr: u32) {
    const CSUM: usize = L3 + 10;
    const SRC: usize = L3 + 12;
    const SPORT: usize = L3 + 20;
    let p = u16::from_be_bytes([t[SPORT], t[SPORT + 1]]).wrapping_add(port as u16);
    t[SPORT..SPORT + 2].copy_from_slice(&p.to_be_bytes());
    let a = u32::from_be_bytes([t[SRC], t[SRC + 1], t[SRC + 2], t[SRC + 3]]).wrapping_add(addr);
    t[SRC..SRC + 4].copy_from_slice(&a.to_be_bytes());
    t[CSUM] = 0;
    t[CSUM + 1] = 0;
    let mut sum: u32 = 0;
    let mut i = L3;
    while i < L3 + 20 {
        sum += u32::from(u16::from_be_bytes([t[i], t[i + 1]]));
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    t[CSUM..CSUM + 2].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// An IPv6 template's source port and the last word of its source address moved on by
/// `port` and `addr`, its UDP checksum kept right (RFC 1624, 16 bits at a time).
#[inline(always)]
fn vary6(t: &mut [u8; GEN_TEMPLATE_LEN], port: u32, addr: u32) {
    const SRC_LO: usize = L3 + 8 + 12;
    const SPORT: usize = L3 + 40;
    const CSUM: usize = SPORT + 6;
    let old_port = u16::from_be_bytes([t[SPORT], t[SPORT + 1]]);
    let new_port = old_port.wrapping_add(port as u16);
    let old_lo = u32::from_be_bytes([t[SRC_LO], t[SRC_LO + 1], t[SRC_LO + 2], t[SRC_LO + 3]]);
    let new_lo = old_lo.wrapping_add(addr);
    t[SPORT..SPORT + 2].copy_from_slice(&new_port.to_be_bytes());
    t[SRC_LO..SRC_LO + 4].copy_from_slice(&new_lo.to_be_bytes());
    let check = u16::from_be_bytes([t[CSUM], t[CSUM + 1]]);
    let mut sum = u32::from(!check)
        + u32::from(!old_port)
        + u32::from(new_port)
        + u32::from(!(old_lo >> 16) as u16)
        + (new_lo >> 16)
        + u32::from(!(old_lo as u16))
        + (new_lo & 0xffff);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let mut new = !(sum as u16);
    if new == 0 {
        new = 0xffff;
    }
    t[CSUM..CSUM + 2].copy_from_slice(&new.to_be_bytes());
}
