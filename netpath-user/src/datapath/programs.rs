//! Program names in the object (the entry points of `netpath-ebpf/src/main.rs`).
pub const UPLINK_XDP: &str = "netpath_uplink_xdp";
pub const UPLINK_TC: &str = "netpath_uplink_tc";
pub const ENDPOINT_TC: &str = "netpath_endpoint_tc";
/// The endpoint program's IPv6, reached by a tail call (`TAIL_CALLS`), attached nowhere.
pub const ENDPOINT6_TC: &str = "netpath_endpoint6_tc";
/// Its outbound NAT, reached by a tail call from `ENDPOINT6_TC`, attached nowhere.
pub const ENDPOINT_SNAT6_TC: &str = "netpath_endpoint_snat6_tc";
/// Its IPv6 hairpin, reached by a tail call from `ENDPOINT6_TC`, attached nowhere.
pub const ENDPOINT_HAIRPIN6_TC: &str = "netpath_endpoint_hairpin6_tc";
/// The uplink programs' IPv6, reached by tail calls, attached nowhere.
pub const UPLINK6_TC: &str = "netpath_uplink6_tc";
pub const UPLINK6_XDP: &str = "netpath_uplink6_xdp";
/// NAT46 of published ports, reached by tail calls from the uplink's IPv6 programs, and
/// its replies', from the endpoint program; attached nowhere.
pub const UPLINK_NAT46_TC: &str = "netpath_uplink_nat46_tc";
pub const UPLINK_NAT46_XDP: &str = "netpath_uplink_nat46_xdp";
pub const ENDPOINT_NAT46_TC: &str = "netpath_endpoint_nat46_tc";
/// The DNS fast path of IPv6 queries, reached by a tail call from `ENDPOINT6_TC`, attached
/// nowhere.
pub const ENDPOINT_DNS6_TC: &str = "netpath_endpoint_dns6_tc";
/// The first reply of a one-to-one published port's flow, reached by tail calls from the
/// endpoint programs, attached nowhere.
pub const ENDPOINT_REPLY_TC: &str = "netpath_endpoint_reply_tc";
/// A TCP or UDP fragment from an endpoint, reached by tail calls from the endpoint programs,
/// attached nowhere.
pub const ENDPOINT_FRAG_TC: &str = "netpath_endpoint_frag_tc";
/// Outbound NAT of an IPv4 fragment from an endpoint, reached by a tail call from the
/// endpoint program, attached nowhere.
pub const ENDPOINT_SNAT_FRAG_TC: &str = "netpath_endpoint_snat_frag_tc";
/// The TC programs reached by tail calls (`TAIL_CALLS`), by their `netpath_common::tail`
/// slot.
pub const TAILS: [(u32, &str); 11] = [
    (netpath_common::tail::ENDPOINT6, ENDPOINT6_TC),
    (netpath_common::tail::SNAT6, ENDPOINT_SNAT6_TC),
    (netpath_common::tail::UPLINK6, UPLINK6_TC),
    (netpath_common::tail::HAIRPIN6, ENDPOINT_HAIRPIN6_TC),
    (netpath_common::tail::NAT46, UPLINK_NAT46_TC),
    (netpath_common::tail::NAT46_REPLY, ENDPOINT_NAT46_TC),
    (netpath_common::tail::DNS6, ENDPOINT_DNS6_TC),
    (netpath_common::tail::REPLY, ENDPOINT_REPLY_TC),
    (netpath_common::tail::FRAG, ENDPOINT_FRAG_TC),
    // The endpoint program is attached to every endpoint, and reached from the fragment
    // program too.
    (netpath_common::tail::ENDPOINT, ENDPOINT_TC),
    (netpath_common::tail::SNAT_FRAG, ENDPOINT_SNAT_FRAG_TC),
];
/// The XDP programs reached by tail calls (`TAIL_CALLS_XDP`).
pub const TAILS_XDP: [(u32, &str); 2] = [
    (netpath_common::tail::UPLINK6, UPLINK6_XDP),
    (netpath_common::tail::NAT46, UPLINK_NAT46_XDP),
];
pub const OVERLAY_TC: &str = "netpath_overlay_tc";
pub const XDP_PASS: &str = "netpath_xdp_pass";
/// The socket hooks that refuse binding a published port (`cgroup_sock` programs; the
/// others are `cgroup_sock_addr`).
pub const SOCK_BIND: [&str; 2] = ["netpath_sock_post_bind4", "netpath_sock_post_bind6"];
/// Socket hooks (cgroup v2), of each family: connect, sendmsg, recvmsg, getpeername,
/// post_bind.
pub const SOCK: [&str; 10] = [
    "netpath_sock_connect4",
    "netpath_sock_sendmsg4",
    "netpath_sock_recvmsg4",
    "netpath_sock_getpeername4",
    SOCK_BIND[0],
    "netpath_sock_connect6",
    "netpath_sock_sendmsg6",
    "netpath_sock_recvmsg6",
    "netpath_sock_getpeername6",
    SOCK_BIND[1],
];
/// The programs the verifier takes longest over, longest first (instructions it
/// verifies; `datapath::every_program_verifies_with_a_quarter_of_the_budget_to_spare`
/// prints them): loaded first, see `open::load_programs`.
pub const BY_SIZE: [&str; 8] = [
    ENDPOINT_TC,
    ENDPOINT_SNAT6_TC,
    UPLINK6_XDP,
    UPLINK6_TC,
    ENDPOINT_SNAT_FRAG_TC,
    UPLINK_NAT46_TC,
    UPLINK_NAT46_XDP,
    ENDPOINT_DNS6_TC,
];
/// Every program of the object.
pub const ALL: [&str; 27] = [
    UPLINK_XDP,
    UPLINK_TC,
    UPLINK6_XDP,
    UPLINK6_TC,
    UPLINK_NAT46_XDP,
    UPLINK_NAT46_TC,
    ENDPOINT_NAT46_TC,
    ENDPOINT_TC,
    ENDPOINT6_TC,
    ENDPOINT_SNAT6_TC,
    ENDPOINT_HAIRPIN6_TC,
    ENDPOINT_DNS6_TC,
    ENDPOINT_REPLY_TC,
    ENDPOINT_FRAG_TC,
    ENDPOINT_SNAT_FRAG_TC,
    OVERLAY_TC,
    XDP_PASS,
    SOCK[0],
    SOCK[1],
    SOCK[2],
    SOCK[3],
    SOCK[4],
    SOCK[5],
    SOCK[6],
    SOCK[7],
    SOCK[8],
    SOCK[9],
];
