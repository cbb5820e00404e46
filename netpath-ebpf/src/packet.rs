//! Header rewrites behind one trait, so NAT is written once for XDP and TC.
//!
//! XDP frames carry complete checksums, fixed here incrementally (RFC 1624). TC skbs may be
//! `CHECKSUM_PARTIAL` (anything a local or namespaced socket sent through a veth), whose L4
//! checksum only the kernel's `bpf_l4_csum_replace` updates correctly, so the TC side uses it
//! for L4; the IPv4 header checksum is always complete, fixed like XDP's.
use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_NET, BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR,
        BPF_F_RECOMPUTE_CSUM,
    },
    helpers::{bpf_csum_update, bpf_skb_change_tail, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::{TcContext, XdpContext},
};

use netpath_common::In6;

use crate::{
    csum::{csum_apply, csum_diff16, csum_replace16, csum_replace2, csum_replace4},
    parse::{ptr_at, FRAG_HDR_LEN, IP_CSUM_OFF},
};

/// A packet whose headers netpath can rewrite.
pub trait Packet {
    /// Start of the packet window.
    fn data(&self) -> usize;
    /// End of the packet window.
    fn data_end(&self) -> usize;
    /// The packet's length in bytes.
    fn len(&self) -> u64;
    /// The interface the packet arrived on.
    fn ingress_ifindex(&self) -> u32;
    /// Writes the 4-byte address at `off` (`from` → `to`, network order) and updates the IPv4
    /// header checksum and the L4 checksum at `l4_csum_off` (pseudo-header).
    fn set_addr(&mut self, off: usize, from: u32, to: u32, l4_csum_off: usize, udp: bool) -> bool;
    /// Writes the 4-byte address at `off` and updates only the IPv4 header checksum (ICMP's
    /// checksum covers no pseudo-header).
    fn set_addr_l3(&mut self, off: usize, from: u32, to: u32) -> bool;
    /// Writes the IPv6 address at `off` (`from` → `to`) and updates the L4 checksum at
    /// `l4_csum_off`, whose pseudo-header has it (TCP, UDP and ICMPv6 alike); IPv6 has no
    /// header checksum.
    fn set_addr6(
        &mut self,
        off: usize,
        from: &In6,
        to: &In6,
        l4_csum_off: usize,
        udp: bool,
    ) -> bool;
    /// Writes the IPv6 address at `off` (`from` → `to`) that no checksum in the packet covers
    /// (a later fragment's: its transport checksum is in the first), keeping a
    /// checksum-complete skb's sum right.
    fn set_addr6_l3(&mut self, off: usize, from: &In6, to: &In6) -> bool;
    /// Writes the 2-byte port at `off` (network order) and updates the L4 checksum.
    fn set_port(&mut self, off: usize, from: u16, to: u16, l4_csum_off: usize, udp: bool) -> bool;
    /// Writes 4 bytes at `off` that the checksum at `csum_off` covers as plain data, not
    /// through a pseudo-header (what an ICMP error carries of the packet it is about).
    fn set_word(&mut self, off: usize, from: u32, to: u32, csum_off: usize) -> bool;
    /// Writes the Ethernet source and destination MACs.
    fn set_macs(&mut self, src: &[u8; 6], dst: &[u8; 6]) -> bool;
    /// Writes the whole Ethernet header: the MACs and the type (network order).
    fn set_eth(&mut self, src: &[u8; 6], dst: &[u8; 6], ether_type: u16) -> bool {
        self.set_macs(src, dst) && write_at(self.data(), self.data_end(), 12, ether_type)
    }
    /// Changes the IP header's room for another family's (NAT46): 20 bytes fewer after the
    /// Ethernet header for IPv4 (`to_ipv4`), 20 more for IPv6; and with `fragment`, the
    /// IPv6 side's fragment header's 8 bytes too (IPv4 keeps its fragment's fields in its
    /// header). TC: `bpf_skb_change_proto`, which turns the skb's protocol and GSO type too,
    /// and the fragment header's room taken out or made right after the IPv6 header
    /// (`bpf_skb_adjust_room`, at the network layer); XDP: the frame's head moved. The
    /// headers are the caller's to write, the Ethernet header whole.
    fn change_family(&mut self, to_ipv4: bool, fragment: bool) -> bool;
    /// Writes a whole IP header `h` at `off` (a checksum-complete skb's sum kept right).
    fn set_l3<T>(&mut self, off: usize, h: &T) -> bool;
    /// Applies `diff`, a `bpf_csum_diff` of pseudo-header fields (addresses changed, of
    /// either family), to the L4 checksum at `off`.
    fn pseudo_csum_diff(&mut self, off: usize, diff: u32, udp: bool) -> bool;
    /// Cuts the packet to its first `len` bytes (an ICMP error made shorter than the one
    /// that came: `bpf_xdp_adjust_tail`, `bpf_skb_change_tail`).
    fn truncate(&mut self, len: u32) -> bool;
}

/// Writes the address at `off` (`from` → `to`) and fixes the IPv4 header checksum, by direct
/// access. Right for XDP frames and skbs alike: an skb's IPv4 header checksum is always
/// complete (never offloaded), and a header with its checksum fixed sums as before, so a
/// `CHECKSUM_COMPLETE` sum stays valid — what `bpf_l3_csum_replace` does, without the helper.
#[inline(always)]
fn write_addr_l3(data: usize, end: usize, off: usize, from: u32, to: u32) -> bool {
    let (Some(a), Some(c)) = (
        ptr_at::<u32>(data, end, off),
        ptr_at::<u16>(data, end, IP_CSUM_OFF),
    ) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        a.write(to);
        c.write(csum_replace4(c.read(), from, to));
    }
    true
}

/// Updates the L4 checksum at `off` in an XDP frame. A UDP checksum of zero means "none".
#[inline(always)]
fn xdp_l4_csum(ctx: &XdpContext, off: usize, udp: bool, update: impl Fn(u16) -> u16) -> bool {
    let Some(c) = ptr_at::<u16>(ctx.data(), ctx.data_end(), off) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        let old = c.read();
        if udp && old == 0 {
            return true;
        }
        let mut new = update(old);
        if udp && new == 0 {
            new = 0xffff;
        }
        c.write(new);
    }
    true
}

impl Packet for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }

    #[inline(always)]
    fn len(&self) -> u64 {
        (XdpContext::data_end(self) - XdpContext::data(self)) as u64
    }

    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        XdpContext::ingress_ifindex(self) as u32
    }

    #[inline(always)]
    fn set_addr(&mut self, off: usize, from: u32, to: u32, l4_csum_off: usize, udp: bool) -> bool {
        self.set_addr_l3(off, from, to)
            && xdp_l4_csum(self, l4_csum_off, udp, |c| csum_replace4(c, from, to))
    }

    #[inline(always)]
    fn set_addr_l3(&mut self, off: usize, from: u32, to: u32) -> bool {
        write_addr_l3(self.data(), self.data_end(), off, from, to)
    }

    #[inline(always)]
    fn set_addr6(
        &mut self,
        off: usize,
        from: &In6,
        to: &In6,
        l4_csum_off: usize,
        udp: bool,
    ) -> bool {
        write_at(self.data(), self.data_end(), off, *to)
            && xdp_l4_csum(self, l4_csum_off, udp, |c| csum_replace16(c, from, to))
    }

    #[inline(always)]
    fn set_addr6_l3(&mut self, off: usize, _from: &In6, to: &In6) -> bool {
        write_at(self.data(), self.data_end(), off, *to)
    }

    #[inline(always)]
    fn set_port(&mut self, off: usize, from: u16, to: u16, l4_csum_off: usize, udp: bool) -> bool {
        let Some(p) = ptr_at::<u16>(self.data(), self.data_end(), off) else {
            return false;
        };
        // SAFETY: bounds checked by ptr_at.
        unsafe { p.write(to) };
        xdp_l4_csum(self, l4_csum_off, udp, |c| csum_replace2(c, from, to))
    }

    #[inline(always)]
    fn set_word(&mut self, off: usize, from: u32, to: u32, csum_off: usize) -> bool {
        write_at(self.data(), self.data_end(), off, to)
            && xdp_l4_csum(self, csum_off, false, |c| csum_replace4(c, from, to))
    }

    #[inline(always)]
    fn set_macs(&mut self, src: &[u8; 6], dst: &[u8; 6]) -> bool {
        let Some(eth) = ptr_at::<[u8; 12]>(self.data(), self.data_end(), 0) else {
            return false;
        };
        // SAFETY: bounds checked by ptr_at.
        unsafe { eth.write(macs(src, dst)) };
        true
    }

    #[inline(always)]
    fn change_family(&mut self, to_ipv4: bool, fragment: bool) -> bool {
        let room = IP_HDR_DELTA + if fragment { FRAG_HDR_LEN as i32 } else { 0 };
        let delta = if to_ipv4 { room } else { -room };
        // SAFETY: the program's own context.
        unsafe { bpf_xdp_adjust_head(self.ctx, delta) == 0 }
    }

    #[inline(always)]
    fn set_l3<T>(&mut self, off: usize, h: &T) -> bool {
        // SAFETY: `h` is a plain header, read once.
        write_at(self.data(), self.data_end(), off, unsafe {
            core::ptr::read(h)
        })
    }

    #[inline(always)]
    fn pseudo_csum_diff(&mut self, off: usize, diff: u32, udp: bool) -> bool {
        xdp_l4_csum(self, off, udp, |c| csum_apply(c, diff))
    }

    #[inline(always)]
    fn truncate(&mut self, len: u32) -> bool {
        let delta = len as i32 - (self.data_end() - self.data()) as i32;
        // SAFETY: the program's own context.
        delta <= 0 && unsafe { bpf_xdp_adjust_tail(self.ctx, delta) == 0 }
    }
}

/// How much longer IPv6's fixed header is than IPv4's.
const IP_HDR_DELTA: i32 = 20;

/// The first 12 bytes of an Ethernet header: destination then source.
#[inline(always)]
fn macs(src: &[u8; 6], dst: &[u8; 6]) -> [u8; 12] {
    // Element by element: a zeroed array filled by slices costs a `memset` call.
    let (d, s) = (dst, src);
    [
        d[0], d[1], d[2], d[3], d[4], d[5], s[0], s[1], s[2], s[3], s[4], s[5],
    ]
}

#[inline(always)]
fn l4_flags(udp: bool) -> u64 {
    if udp {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    }
}

impl Packet for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }

    #[inline(always)]
    fn len(&self) -> u64 {
        u64::from(TcContext::len(self))
    }

    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        // SAFETY: reading the skb's ifindex field (at ingress: the device it arrived on).
        unsafe { (*self.skb.skb).ifindex }
    }

    #[inline(always)]
    fn set_addr(&mut self, off: usize, from: u32, to: u32, l4_csum_off: usize, udp: bool) -> bool {
        let flags = l4_flags(udp) | BPF_F_PSEUDO_HDR as u64 | 4;
        self.l4_csum_replace(l4_csum_off, from as u64, to as u64, flags)
            .is_ok()
            && self.set_addr_l3(off, from, to)
    }

    #[inline(always)]
    fn set_addr_l3(&mut self, off: usize, from: u32, to: u32) -> bool {
        write_addr_l3(self.data(), self.data_end(), off, from, to)
    }

    #[inline(always)]
    fn set_addr6(
        &mut self,
        off: usize,
        from: &In6,
        to: &In6,
        l4_csum_off: usize,
        udp: bool,
    ) -> bool {
        // The address's whole difference at once, then applied to the checksum as a
        // difference (size 0), through the pseudo-header: one helper call, as IPv4's.
        let diff = csum_diff16(from, to);
        let flags = l4_flags(udp) | BPF_F_PSEUDO_HDR as u64;
        self.l4_csum_replace(l4_csum_off, 0, u64::from(diff), flags)
            .is_ok()
            && write_at(self.data(), self.data_end(), off, *to)
    }

    #[inline(always)]
    fn set_addr6_l3(&mut self, off: usize, from: &In6, to: &In6) -> bool {
        // SAFETY: the program's own skb; a sum of a checksum-unnecessary skb is left alone.
        unsafe { bpf_csum_update(self.skb.skb, csum_diff16(from, to)) };
        write_at(self.data(), self.data_end(), off, *to)
    }

    #[inline(always)]
    fn set_port(&mut self, off: usize, from: u16, to: u16, l4_csum_off: usize, udp: bool) -> bool {
        let flags = l4_flags(udp) | 2;
        self.l4_csum_replace(l4_csum_off, from as u64, to as u64, flags)
            .is_ok()
            && write_at(self.data(), self.data_end(), off, to)
    }

    #[inline(always)]
    fn set_word(&mut self, off: usize, from: u32, to: u32, csum_off: usize) -> bool {
        self.l4_csum_replace(csum_off, u64::from(from), u64::from(to), 4)
            .is_ok()
            && write_at(self.data(), self.data_end(), off, to)
    }

    #[inline(always)]
    fn set_macs(&mut self, src: &[u8; 6], dst: &[u8; 6]) -> bool {
        write_at(self.data(), self.data_end(), 0, macs(src, dst))
    }

    #[inline(always)]
    fn change_family(&mut self, to_ipv4: bool, fragment: bool) -> bool {
        let room = FRAG_HDR_LEN as i32;
        let (proto, room) = if to_ipv4 {
            (0x0800u16, -room)
        } else {
            (0x86dd, room)
        };
        // The fragment header sits right after IPv6's: taken out while the skb is IPv6,
        // made once it is.
        let frag = |skb: &mut Self| !fragment || skb.adjust_room(room, BPF_ADJ_ROOM_NET, 0).is_ok();
        (!to_ipv4 || frag(self))
            && self.change_proto(proto.to_be(), 0).is_ok()
            && (to_ipv4 || frag(self))
    }

    #[inline(always)]
    fn set_l3<T>(&mut self, off: usize, h: &T) -> bool {
        self.store(off, h, BPF_F_RECOMPUTE_CSUM as u64).is_ok()
    }

    #[inline(always)]
    fn pseudo_csum_diff(&mut self, off: usize, diff: u32, udp: bool) -> bool {
        let flags = l4_flags(udp) | BPF_F_PSEUDO_HDR as u64;
        self.l4_csum_replace(off, 0, u64::from(diff), flags).is_ok()
    }

    #[inline(always)]
    fn truncate(&mut self, len: u32) -> bool {
        // SAFETY: the program's own skb.
        unsafe { bpf_skb_change_tail(self.skb.skb, len, 0) == 0 }
    }
}

/// Writes `v` at `off` by direct packet access (cheaper than `bpf_skb_store_bytes`; the
/// pointers are taken afresh, after any helper that moved the packet).
///
/// Every write of the packet in this file is one of its type's width (an IPv6 address four
/// 32-bit stores), as every read of it is (`parse.rs`): the kernel allows unaligned packet
/// access on every architecture it runs this on. An unaligned write would be a copy byte by
/// byte, which LLVM turns into a `memmove` call past a handful of bytes.
#[inline(always)]
fn write_at<T>(data: usize, data_end: usize, off: usize, v: T) -> bool {
    match ptr_at::<T>(data, data_end, off) {
        // SAFETY: bounds checked by ptr_at.
        Some(p) => {
            unsafe { p.write(v) };
            true
        }
        None => false,
    }
}
