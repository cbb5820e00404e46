//! Host-local access to published ports: cgroup v2 socket hooks rewrite the addresses a
//! socket of the agent's namespace uses, so a host process that connects to a published port
//! (on 127.0.0.1, a host address or a gateway) talks to the endpoint directly — socket-level
//! translation, no per-packet NAT, no userspace proxy. Sockets of other namespaces are left
//! alone (their netns cookie differs). A host socket may not bind a published port: it
//! gets `EADDRINUSE`, as when docker-proxy holds the port, instead of binding and then
//! receiving nothing (the port's packets go to the endpoint before any socket sees them).
use aya_ebpf::{
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_set_retval},
    programs::{SockAddrContext, SockContext},
    EbpfContext,
};
use netpath_common::{port_any_index, SockRevKey, SockRevNat};

use crate::{
    maps::{BIND_ALLOWED, SOCK_NETNS, SOCK_REVNAT},
    ports,
};

/// Allow the operation.
const ALLOW: i32 = 1;
/// Refuse it, with the error [`bpf_set_retval`] set.
const REFUSE: i32 = 0;
/// `EADDRINUSE`.
const EADDRINUSE: i32 = 98;

/// Whether the socket of `ctx` is in the agent's namespace.
#[inline(always)]
fn ours<C: EbpfContext>(ctx: &C) -> bool {
    // SAFETY: helper on the program's own context (a sock_addr or a sock).
    let cookie = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    SOCK_NETNS
        .get(0)
        .is_some_and(|c| *c == cookie && cookie != 0)
}

/// connect4 and sendmsg4: a published address becomes the endpoint's.
#[inline(always)]
pub fn to_endpoint(ctx: &SockAddrContext) -> i32 {
    if !ours(ctx) {
        return ALLOW;
    }
    let sa = ctx.sock_addr;
    // SAFETY: the context's fields are readable (and these writable) in these hooks.
    unsafe {
        let addr = (*sa).user_ip4;
        let port = ((*sa).user_port & 0xffff) as u16;
        let proto = (*sa).protocol as u8;
        let Some(t) = ports::lookup(addr, port, proto) else {
            return ALLOW;
        };
        let key = SockRevKey {
            cookie: bpf_get_socket_cookie(sa.cast()),
            addr: t.addr,
            port: t.port,
            _pad: 0,
        };
        // A full table: the socket then sees the endpoint's address as its peer, no worse.
        let _ = SOCK_REVNAT.insert(
            &key,
            &SockRevNat {
                addr,
                port,
                _pad: 0,
            },
            0,
        );
        (*sa).user_ip4 = t.addr;
        (*sa).user_port = u32::from(t.port);
    }
    ALLOW
}

/// recvmsg4 and getpeername4: the endpoint's address shows as the one the socket asked for.
#[inline(always)]
pub fn from_endpoint(ctx: &SockAddrContext) -> i32 {
    if !ours(ctx) {
        return ALLOW;
    }
    let sa = ctx.sock_addr;
    // SAFETY: the context's fields are readable and writable in these hooks.
    unsafe {
        let key = SockRevKey {
            cookie: bpf_get_socket_cookie(sa.cast()),
            addr: (*sa).user_ip4,
            port: ((*sa).user_port & 0xffff) as u16,
            _pad: 0,
        };
        if let Some(orig) = SOCK_REVNAT.get_ptr(&key) {
            (*sa).user_ip4 = (*orig).addr;
            (*sa).user_port = u32::from((*orig).port);
        }
    }
    ALLOW
}

/// post_bind4: a host socket bound to a published port is refused with `EADDRINUSE` (the
/// bind is undone by the kernel), unless the port's runtime holds it itself (`BIND_ALLOWED`). Ports the kernel picks itself never come here: the agent
/// reserves published ports from automatic choice (`ip_local_reserved_ports`).
#[inline(always)]
pub fn refuse_published(ctx: &SockContext) -> i32 {
    if !ours(ctx) {
        return ALLOW;
    }
    let sk = ctx.sock;
    // SAFETY: these fields of the context are readable in post_bind4.
    let (addr, port, proto) = unsafe { ((*sk).src_ip4, (*sk).src_port, (*sk).protocol) };
    // `src_port` is in host order here, unlike the sock_addr hooks' `user_port`.
    let (port, proto) = ((port as u16).to_be(), proto as u8);
    if !ports::held(addr, port, proto)
        || BIND_ALLOWED.get_ptr(&port_any_index(proto, port)).is_some()
    {
        return ALLOW;
    }
    // SAFETY: helper of cgroup programs; the kernel returns this error to bind().
    unsafe { bpf_set_retval(-EADDRINUSE) };
    REFUSE
}
