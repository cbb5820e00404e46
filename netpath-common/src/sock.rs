//! Host-local access to published ports by the socket hooks: the keys and values of
//! `SOCK_REVNAT` (kernel: `sock.rs`). The hooks are per family (`connect4`, `connect6`), and
//! so is the socket's record: the IPv6 hooks get their own key of the same shape.

/// Key of `SOCK_REVNAT`: a socket and the endpoint address its hook sent it to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SockRevKey {
    /// Socket cookie.
    pub cookie: u64,
    /// Endpoint address, network order.
    pub addr: u32,
    /// Container port, network order.
    pub port: u16,
    pub _pad: u16,
}

/// Key of `SOCK_REVNAT6`: [`SockRevKey`] of an IPv6 socket (explicit padding to its 8-byte
/// alignment).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SockRevKey6 {
    pub cookie: u64,
    pub addr: crate::In6,
    pub port: u16,
    pub _pad: u16,
    pub _pad2: u32,
}

/// Value of `SOCK_REVNAT`: the published address and port the socket asked for.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SockRevNat<A: crate::Addr = u32> {
    /// Network order.
    pub addr: A,
    /// Network order.
    pub port: u16,
    pub _pad: u16,
}

crate::layout!(SockRevKey, 16, cookie @ 0, addr @ 8, port @ 12, _pad @ 14);
crate::layout!(SockRevKey6, 32, cookie @ 0, addr @ 8, port @ 24, _pad @ 26, _pad2 @ 28);
crate::layout!(SockRevNat, 8, addr @ 0, port @ 4, _pad @ 6);
crate::layout!(SockRevNat<crate::In6>, 20, addr @ 0, port @ 16, _pad @ 18);
crate::pod!(SockRevKey, SockRevKey6, SockRevNat<A>);
