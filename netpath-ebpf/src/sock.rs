//! Host-local access to published ports: cgroup v2 socket hooks rewrite the addresses a
//! socket of the agent's namespace uses, so a host process that connects to a published port
//! (on 127.0.0.1 or `[::1]`, a host address or a gateway) talks to the endpoint directly —
//! socket-level translation, no per-packet NAT, no userspace proxy. Sockets of other
//! namespaces are left alone (their netns cookie differs). A host socket may not bind a
//! published port: it gets `EADDRINUSE`, as when docker-proxy holds the port, instead of
//! binding and then receiving nothing (the port's packets go to the endpoint before any socket
//! sees them). The hooks are per family; each is written once over [`SockFamily`]. An IPv6
//! socket's IPv4-mapped addresses are IPv4's (a dual-stack socket reaching `127.0.0.1:PORT`,
//! or binding `[::]`, which takes IPv4's port too).
use aya_ebpf::{
    bindings::{bpf_sock, bpf_sock_addr},
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_set_retval},
    maps::LruHashMap,
    programs::{SockAddrContext, SockContext},
    EbpfContext,
};
use netpath_common::{port_any_index, In6, PortTarget, SockRevKey, SockRevKey6, SockRevNat};

use crate::{
    family::Ip,
    maps::{BIND_ALLOWED, SOCK_NETNS, SOCK_REVNAT, SOCK_REVNAT6},
    ports,
};

/// Allow the operation.
const ALLOW: i32 = 1;
/// Refuse it, with the error [`bpf_set_retval`] set.
const REFUSE: i32 = 0;
/// `EADDRINUSE`.
const EADDRINUSE: i32 = 98;

/// Where a family's address sits in the hooks' contexts, and its sockets' record.
pub trait SockFamily: Ip {
    type RevKey: 'static;
    /// The address of a `sock_addr` context (`user_ip4`, `user_ip6`).
    ///
    /// # Safety
    /// `sa` is the hook's own context.
    unsafe fn user_addr(sa: *const bpf_sock_addr) -> Self;
    /// # Safety
    /// `sa` is the hook's own context, in a hook that may write it.
    unsafe fn set_user_addr(sa: *mut bpf_sock_addr, addr: Self);
    /// The address a socket bound (`src_ip4`, `src_ip6`).
    ///
    /// # Safety
    /// `sk` is a post_bind hook's own context.
    unsafe fn bound_addr(sk: *const bpf_sock) -> Self;
    fn rev_key(cookie: u64, addr: Self, port: u16) -> Self::RevKey;
    fn revnat() -> &'static LruHashMap<Self::RevKey, SockRevNat<Self>>;
    /// The endpoint a socket of this family reaches at `addr`, `port` (a published port).
    fn published(addr: Self, port: u16, proto: u8) -> Option<PortTarget<Self>>;
    /// Whether binding `addr`, `port` takes a published port.
    fn held(addr: Self, port: u16, proto: u8) -> bool;
}

impl SockFamily for u32 {
    type RevKey = SockRevKey;
    unsafe fn user_addr(sa: *const bpf_sock_addr) -> u32 {
        (*sa).user_ip4
    }
    unsafe fn set_user_addr(sa: *mut bpf_sock_addr, addr: u32) {
        (*sa).user_ip4 = addr;
    }
    unsafe fn bound_addr(sk: *const bpf_sock) -> u32 {
        (*sk).src_ip4
    }
    #[inline(always)]
    fn rev_key(cookie: u64, addr: u32, port: u16) -> SockRevKey {
        SockRevKey {
            cookie,
            addr,
            port,
            _pad: 0,
        }
    }
    #[inline(always)]
    fn revnat() -> &'static LruHashMap<SockRevKey, SockRevNat<u32>> {
        &SOCK_REVNAT
    }
    #[inline(always)]
    fn published(addr: u32, port: u16, proto: u8) -> Option<PortTarget<u32>> {
        ports::lookup(addr, port, proto)
    }
    #[inline(always)]
    fn held(addr: u32, port: u16, proto: u8) -> bool {
        ports::held(addr, port, proto)
    }
}

impl SockFamily for In6 {
    type RevKey = SockRevKey6;
    // The context's IPv6 words are read and written one by one: the verifier allows only
    // 4-byte accesses to them.
    unsafe fn user_addr(sa: *const bpf_sock_addr) -> In6 {
        let w = &(*sa).user_ip6;
        In6 {
            words: [w[0], w[1], w[2], w[3]],
        }
    }
    unsafe fn set_user_addr(sa: *mut bpf_sock_addr, addr: In6) {
        let w = &mut (*sa).user_ip6;
        w[0] = addr.words[0];
        w[1] = addr.words[1];
        w[2] = addr.words[2];
        w[3] = addr.words[3];
    }
    unsafe fn bound_addr(sk: *const bpf_sock) -> In6 {
        let w = &(*sk).src_ip6;
        In6 {
            words: [w[0], w[1], w[2], w[3]],
        }
    }
    #[inline(always)]
    fn rev_key(cookie: u64, addr: In6, port: u16) -> SockRevKey6 {
        SockRevKey6 {
            cookie,
            addr,
            port,
            _pad: 0,
            _pad2: 0,
        }
    }
    #[inline(always)]
    fn revnat() -> &'static LruHashMap<SockRevKey6, SockRevNat<In6>> {
        &SOCK_REVNAT6
    }
    /// An IPv4-mapped address is IPv4's published port, its endpoint's address mapped back
    /// (a dual-stack socket reaching `127.0.0.1:PORT`).
    #[inline(always)]
    fn published(addr: In6, port: u16, proto: u8) -> Option<PortTarget<In6>> {
        let Some(v4) = addr.mapped_v4() else {
            return ports::lookup(addr, port, proto);
        };
        let t = ports::lookup(v4, port, proto)?;
        let mut mapped = addr;
        mapped.words[3] = t.addr;
        Some(PortTarget {
            addr: mapped,
            port: t.port,
            stats: t.stats,
            ifindex: t.ifindex,
            mac: t.mac,
            gw_mac: t.gw_mac,
            host: <In6 as netpath_common::Addr>::ANY,
        })
    }
    /// `[::]` takes IPv4's every-address port too (a dual-stack socket binds both, as
    /// docker-proxy's `[::]` socket holds both); a mapped address is IPv4's.
    #[inline(always)]
    fn held(addr: In6, port: u16, proto: u8) -> bool {
        match addr.mapped_v4() {
            Some(v4) => ports::held(v4, port, proto),
            None => {
                ports::held(addr, port, proto)
                    || (addr == In6::default() && ports::held(0u32, port, proto))
            }
        }
    }
}

/// Whether the socket of `ctx` is in the agent's namespace.
#[inline(always)]
fn ours<C: EbpfContext>(ctx: &C) -> bool {
    // SAFETY: helper on the program's own context (a sock_addr or a sock).
    let cookie = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    SOCK_NETNS
        .get(0)
        .is_some_and(|c| *c == cookie && cookie != 0)
}

/// connect and sendmsg: a published address becomes the endpoint's.
#[inline(always)]
pub fn to_endpoint<A: SockFamily>(ctx: &SockAddrContext) -> i32 {
    if !ours(ctx) {
        return ALLOW;
    }
    let sa = ctx.sock_addr;
    // SAFETY: the context's fields are readable (and these writable) in these hooks.
    unsafe {
        let addr = A::user_addr(sa);
        let port = ((*sa).user_port & 0xffff) as u16;
        let proto = (*sa).protocol as u8;
        let Some(t) = A::published(addr, port, proto) else {
            return ALLOW;
        };
        let key = A::rev_key(bpf_get_socket_cookie(sa.cast()), t.addr, t.port);
        // A full table: the socket then sees the endpoint's address as its peer, no worse.
        let _ = A::revnat().insert(
            &key,
            &SockRevNat {
                addr,
                port,
                _pad: 0,
            },
            0,
        );
        A::set_user_addr(sa, t.addr);
        (*sa).user_port = u32::from(t.port);
    }
    ALLOW
}

/// recvmsg and getpeername: the endpoint's address shows as the one the socket asked for.
#[inline(always)]
pub fn from_endpoint<A: SockFamily>(ctx: &SockAddrContext) -> i32 {
    if !ours(ctx) {
        return ALLOW;
    }
    let sa = ctx.sock_addr;
    // SAFETY: the context's fields are readable and writable in these hooks.
    unsafe {
        let key = A::rev_key(
            bpf_get_socket_cookie(sa.cast()),
            A::user_addr(sa),
            ((*sa).user_port & 0xffff) as u16,
        );
        if let Some(orig) = A::revnat().get_ptr(&key) {
            A::set_user_addr(sa, (*orig).addr);
            (*sa).user_port = u32::from((*orig).port);
        }
    }
    ALLOW
}

/// post_bind: a host socket bound to a published port is refused with `EADDRINUSE` (the
/// bind is undone by the kernel), unless the port's runtime holds it itself (`BIND_ALLOWED`).
/// Ports the kernel picks itself never come here: the agent reserves published ports from
/// automatic choice (`ip_local_reserved_ports`, which covers both families).
#[inline(always)]
pub fn refuse_published<A: SockFamily>(ctx: &SockContext) -> i32 {
    if !ours(ctx) {
        return ALLOW;
    }
    let sk = ctx.sock;
    // SAFETY: these fields of the context are readable in post_bind.
    let (addr, port, proto) = unsafe { (A::bound_addr(sk), (*sk).src_port, (*sk).protocol) };
    // `src_port` is in host order here, unlike the sock_addr hooks' `user_port`.
    let (port, proto) = ((port as u16).to_be(), proto as u8);
    if !A::held(addr, port, proto) || BIND_ALLOWED.get_ptr(&port_any_index(proto, port)).is_some() {
        return ALLOW;
    }
    // SAFETY: helper of cgroup programs; the kernel returns this error to bind().
    unsafe { bpf_set_retval(-EADDRINUSE) };
    REFUSE
}
