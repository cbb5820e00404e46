//! Benchmark programs, never attached by the agent and never part of the product: built as
//! their own object (`netpath-bench`), which only the benchmark and the test support embed.
//! They share the product's maps by name (the loader reuses the pins), so a floor that looks
//! up a flow looks in the same flow table the product's programs use.
#![no_std]
#![no_main]

mod bench;
#[allow(dead_code)] // the packet trait's arithmetic, of which the floors use a part
mod csum;
mod frag;
#[allow(dead_code)] // the policy floor asks the guard for a rate; its flood question comes along
mod guard;
#[allow(dead_code)] // the bench uses the flow table; the product's other maps come along
mod maps;
mod object;
#[allow(dead_code)] // the DNAT floor rewrites as the product does, with a part of the trait
mod packet;
#[allow(dead_code)] // the bench reads headers, it translates nothing
mod parse;
#[allow(dead_code)] // the bench asks the verdict alone
mod policy;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

/// Benchmark: packet generator for BPF_PROG_TEST_RUN live frames.
#[xdp]
pub fn netpath_bench_gen(mut ctx: XdpContext) -> u32 {
    bench::generate(&mut ctx)
}

/// Benchmark: counting sink for skbs.
#[classifier]
pub fn netpath_bench_sink(mut ctx: TcContext) -> i32 {
    bench::sink_tc(&mut ctx)
}

/// Benchmark: the ceiling, redirect without lookup.
#[xdp]
pub fn netpath_bench_redirect(ctx: XdpContext) -> u32 {
    bench::redirect_only(&ctx)
}

/// Benchmark ceiling of TC paths: every skb handed to the endpoint's namespace, unread.
#[classifier]
pub fn netpath_bench_tc_redirect(_ctx: TcContext) -> i32 {
    bench::redirect_peer_only()
}

/// Benchmark floor: every frame dropped unread (the least any program that refuses a frame
/// costs).
#[xdp]
pub fn netpath_bench_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// Benchmark floor: the headers read, then passed.
#[xdp]
pub fn netpath_bench_parse(ctx: XdpContext) -> u32 {
    bench::parse_only(&ctx, xdp_action::XDP_PASS)
}

/// Benchmark floor: the headers read and the flow looked up; dropped when found (so a test run
/// shows the lookup hit), passed otherwise.
#[xdp]
pub fn netpath_bench_flow_lookup(ctx: XdpContext) -> u32 {
    if bench::parse_and_lookup(ctx.data(), ctx.data_end()) {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

/// Benchmark floor: the headers read, the port's slot read, the frame rewritten to its
/// endpoint and redirected.
#[xdp]
pub fn netpath_bench_slot_redirect(mut ctx: XdpContext) -> u32 {
    bench::slot_rewrite_redirect(&mut ctx)
}

/// Benchmark floor: [`netpath_bench_flow_lookup`] on an skb; shot when found.
#[classifier]
pub fn netpath_bench_tc_flow_lookup(ctx: TcContext) -> i32 {
    if bench::parse_and_lookup(ctx.data(), ctx.data_end()) {
        aya_ebpf::bindings::TC_ACT_SHOT as i32
    } else {
        aya_ebpf::bindings::TC_ACT_OK as i32
    }
}

/// Benchmark floor: reverse NAT's irreducible work (a reply's flow looked up, its source
/// rewritten, redirected its way back).
#[classifier]
pub fn netpath_bench_tc_reverse(mut ctx: TcContext) -> i32 {
    bench::reverse_floor(&mut ctx)
}

/// Benchmark floor: a TC program that passes everything (what TC costs whatever the program).
#[classifier]
pub fn netpath_bench_tc_pass(_ctx: TcContext) -> i32 {
    aya_ebpf::bindings::TC_ACT_OK as i32
}

/// Benchmark: the network policy's verdict on a new flow alone (headers read, then
/// `policy::admit`); passed when allowed, dropped when denied.
#[xdp]
pub fn netpath_bench_policy_admit(ctx: XdpContext) -> u32 {
    bench::policy_admit(ctx.data(), ctx.data_end())
}

/// Benchmark floor: the headers read and the two exact lookups any verdict on identities
/// makes (the peer's identity, a rule).
#[xdp]
pub fn netpath_bench_policy_floor(ctx: XdpContext) -> u32 {
    bench::policy_floor(ctx.data(), ctx.data_end())
}

/// Benchmark: the verdict of network policy with the identities the endpoints' records
/// carry (endpoint to endpoint), after reading both records.
#[xdp]
pub fn netpath_bench_policy_records(ctx: XdpContext) -> u32 {
    bench::policy_admit_records(ctx.data(), ctx.data_end())
}

/// Benchmark: what an established endpoint-to-endpoint connection's packets pay for policy
/// (the connection remembered after its first packet).
#[xdp]
pub fn netpath_bench_policy_tracked(ctx: XdpContext) -> u32 {
    bench::policy_tracked(ctx.data(), ctx.data_end())
}
