//! netpath kernel programs. Entry points only: each parses once and hands the packet to
//! the module of its concern. Each entry's body is `#[inline(always)]` (but NAT46's XDP
//! program's): aya's macros wrap it in a function of their own, and left out of line it is a
//! BPF-to-BPF call, which in a program that also makes tail calls cost about 10 ns a packet
//! (`bench prog`: xdp pass 43 → 34 ns, every path about as much).
#![no_std]
#![no_main]

mod arp;
mod csum;
mod dns;
mod endpoint;
mod family;
mod fib;
mod flows;
mod forward;
mod frag;
mod guard;
mod hostgw;
mod icmp;
mod icmp46;
mod maps;
mod nat46;
mod nat46_reply;
mod ndp;
mod object;
mod overlay;
mod packet;
mod parse;
mod policy;
mod ports;
mod replies;
mod rewrite;
mod snat;
mod sock;
mod stats;
mod uplink;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{cgroup_sock, cgroup_sock_addr, classifier, xdp},
    programs::{SockAddrContext, SockContext, TcContext, XdpContext},
};
use netpath_common::In6;

/// A tag fixed at build time (`NETPATH_EBPF_BUILD_TAG`, default 0). It changes nothing a
/// packet sees, but it is part of every packet program's instructions, so two builds that
/// differ only by it load different programs: what upgrade tests swap between.
const BUILD_TAG: u32 = match option_env!("NETPATH_EBPF_BUILD_TAG") {
    Some(s) => parse_u32(s),
    None => 0,
};

const fn parse_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n: u32 = 0;
    while i < b.len() {
        n = n
            .wrapping_mul(10)
            .wrapping_add((b[i].wrapping_sub(b'0')) as u32);
        i += 1;
    }
    n
}

/// Puts [`BUILD_TAG`] into the calling program's instructions.
#[inline(always)]
fn build_tag() {
    core::hint::black_box(BUILD_TAG);
}

/// Uplink, XDP: published-port fast path.
#[xdp]
#[inline(always)]
pub fn netpath_uplink_xdp(mut ctx: XdpContext) -> u32 {
    build_tag();
    uplink::ingress_xdp(&mut ctx)
}

/// Uplink, TC ingress: the complete published-port path.
#[classifier]
#[inline(always)]
pub fn netpath_uplink_tc(mut ctx: TcContext) -> i32 {
    build_tag();
    uplink::ingress_tc(&mut ctx)
}

/// Uplink, XDP, IPv6: what the uplink's XDP program hands IPv6 on to (a tail call).
#[xdp]
#[inline(always)]
pub fn netpath_uplink6_xdp(mut ctx: XdpContext) -> u32 {
    build_tag();
    uplink::ingress_xdp6(&mut ctx)
}

/// Uplink, TC ingress, IPv6: what the uplink's TC program hands IPv6 on to (a tail call).
#[classifier]
#[inline(always)]
pub fn netpath_uplink6_tc(mut ctx: TcContext) -> i32 {
    build_tag();
    uplink::ingress_tc6(&mut ctx)
}

/// Uplink, XDP, NAT46: an IPv6 client of a port whose endpoint has IPv4 alone (the IPv6
/// program's tail call). Its body stays out of line: inlined, LLVM lays its frame out past
/// BPF's 512 bytes.
#[xdp]
pub fn netpath_uplink_nat46_xdp(mut ctx: XdpContext) -> u32 {
    build_tag();
    uplink::ingress_xdp46(&mut ctx)
}

/// Uplink, TC ingress, NAT46 (the IPv6 program's tail call).
#[classifier]
#[inline(always)]
pub fn netpath_uplink_nat46_tc(mut ctx: TcContext) -> i32 {
    build_tag();
    uplink::ingress_tc46(&mut ctx)
}

/// Endpoint host-side veth, TC ingress, a NAT46 flow's reply, translated to IPv6 (the
/// endpoint program's tail call).
#[classifier]
#[inline(always)]
pub fn netpath_endpoint_nat46_tc(mut ctx: TcContext) -> i32 {
    build_tag();
    nat46_reply::to_client(&mut ctx)
}

/// Endpoint host-side veth, TC ingress: traffic *from* an endpoint.
#[classifier]
#[inline(always)]
pub fn netpath_endpoint_tc(mut ctx: TcContext) -> i32 {
    build_tag();
    endpoint::host_veth_ingress(&mut ctx)
}

/// Endpoint host-side veth, TC ingress, a fragment: a published flow's reply
/// translated as its first fragment was (the endpoint program's tail call).
#[classifier]
#[inline(always)]
pub fn netpath_endpoint_frag_tc(mut ctx: TcContext) -> i32 {
    build_tag();
    endpoint::host_veth_fragment(&mut ctx)
}

/// Endpoint host-side veth, TC ingress, IPv6: what the endpoint program hands IPv6 on to (a
/// tail call: a program, a stack and a verifier budget of its own).
#[classifier]
#[inline(always)]
pub fn netpath_endpoint6_tc(mut ctx: TcContext) -> i32 {
    build_tag();
    endpoint::host_veth_ingress6(&mut ctx)
}

/// Endpoint host-side veth, TC ingress, IPv6 beyond the networks: outbound NAT, handed on by
/// `netpath_endpoint6_tc` (a tail call).
#[classifier]
#[inline(always)]
pub fn netpath_endpoint_snat6_tc(mut ctx: TcContext) -> i32 {
    build_tag();
    snat::from_endpoint6(&mut ctx)
}

/// Endpoint host-side veth, TC ingress, an IPv4 fragment beyond the networks: outbound NAT,
/// handed on by `netpath_endpoint_tc` (a tail call).
#[classifier]
#[inline(always)]
pub fn netpath_endpoint_snat_frag_tc(mut ctx: TcContext) -> i32 {
    build_tag();
    snat::fragment_from_endpoint(&mut ctx)
}

/// Endpoint host-side veth, TC ingress, IPv6 to a published port through a host address:
/// hairpin, handed on by `netpath_endpoint6_tc` (a tail call).
#[classifier]
#[inline(always)]
pub fn netpath_endpoint_hairpin6_tc(mut ctx: TcContext) -> i32 {
    build_tag();
    endpoint::host_veth_hairpin6(&mut ctx)
}

/// Endpoint host-side veth, TC ingress, an IPv6 DNS query to the network's gateway: the
/// kernel's fast path, handed on by `netpath_endpoint6_tc` (a tail call).
#[classifier]
#[inline(always)]
pub fn netpath_endpoint_dns6_tc(mut ctx: TcContext) -> i32 {
    build_tag();
    endpoint::host_veth_dns6(&mut ctx)
}

/// Endpoint host-side veth, TC ingress, the first reply of a one-to-one published port's
/// flow translated with no state, of either family: records the flow (a tail call of the
/// endpoint programs).
#[classifier]
#[inline(always)]
pub fn netpath_endpoint_reply_tc(mut ctx: TcContext) -> i32 {
    build_tag();
    replies::first_reply(&mut ctx)
}

/// The VXLAN device, TC ingress: traffic from endpoints on other nodes.
#[classifier]
#[inline(always)]
pub fn netpath_overlay_tc(mut ctx: TcContext) -> i32 {
    build_tag();
    overlay::device_ingress(&mut ctx)
}

/// Host sockets connecting to a published port reach the endpoint.
#[cgroup_sock_addr(connect4)]
#[inline(always)]
pub fn netpath_sock_connect4(ctx: SockAddrContext) -> i32 {
    sock::to_endpoint::<u32>(&ctx)
}

/// Host UDP sockets sending to a published port reach the endpoint.
#[cgroup_sock_addr(sendmsg4)]
#[inline(always)]
pub fn netpath_sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    sock::to_endpoint::<u32>(&ctx)
}

/// Replies show the published address as their source.
#[cgroup_sock_addr(recvmsg4)]
#[inline(always)]
pub fn netpath_sock_recvmsg4(ctx: SockAddrContext) -> i32 {
    sock::from_endpoint::<u32>(&ctx)
}

/// getpeername shows the published address.
#[cgroup_sock_addr(getpeername4)]
#[inline(always)]
pub fn netpath_sock_getpeername4(ctx: SockAddrContext) -> i32 {
    sock::from_endpoint::<u32>(&ctx)
}

/// Host sockets may not bind a published port (EADDRINUSE).
#[cgroup_sock(post_bind4)]
#[inline(always)]
pub fn netpath_sock_post_bind4(ctx: SockContext) -> i32 {
    sock::refuse_published::<u32>(&ctx)
}

/// The same hooks for IPv6 sockets (`[::1]:PORT`, a host's IPv6 address).
#[cgroup_sock_addr(connect6)]
#[inline(always)]
pub fn netpath_sock_connect6(ctx: SockAddrContext) -> i32 {
    sock::to_endpoint::<In6>(&ctx)
}

#[cgroup_sock_addr(sendmsg6)]
#[inline(always)]
pub fn netpath_sock_sendmsg6(ctx: SockAddrContext) -> i32 {
    sock::to_endpoint::<In6>(&ctx)
}

#[cgroup_sock_addr(recvmsg6)]
#[inline(always)]
pub fn netpath_sock_recvmsg6(ctx: SockAddrContext) -> i32 {
    sock::from_endpoint::<In6>(&ctx)
}

#[cgroup_sock_addr(getpeername6)]
#[inline(always)]
pub fn netpath_sock_getpeername6(ctx: SockAddrContext) -> i32 {
    sock::from_endpoint::<In6>(&ctx)
}

#[cgroup_sock(post_bind6)]
#[inline(always)]
pub fn netpath_sock_post_bind6(ctx: SockContext) -> i32 {
    sock::refuse_published::<In6>(&ctx)
}

/// XDP_PASS, attached to an XDP_REDIRECT target's peer so the veth has NAPI; also the
/// "empty program" baseline of the benchmark (whose own programs are in `bench_main.rs`, an
/// object of their own: the product carries none of them).
#[xdp]
#[inline(always)]
pub fn netpath_xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
