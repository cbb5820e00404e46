//! Host-local access to published ports: cgroup v2 socket hooks rewrite the addresses a
//! socket of the agent's namespace uses, so a host process that connects to a published port
//! (on 127.0.0.1, a host address or a gateway) talks to the endpoint directly — socket-level
//! translation, no per-packet NAT, no userspace proxy. Sockets of other namespaces are left
//! alone (their netns cookie differs).
use aya_ebpf::{
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    programs::SockAddrContext,
};
use netpath_common::{SockRevKey, SockRevNat};

use crate::{
    maps::{SOCK_NETNS, SOCK_REVNAT},
    ports,
};

/// Allow the operation (the hooks never refuse one).
const ALLOW: i32 = 1;

#[inline(always)]
fn ours(ctx: &SockAddrContext) -> bool {
    // SAFETY: helper on the program's own context.
    let cookie = unsafe { bpf_get_netns_cookie(ctx.sock_addr.cast()) };
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
