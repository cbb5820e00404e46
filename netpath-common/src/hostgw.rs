//! host.docker.internal served by the host's loopback: the keys of `HOST_LOOPBACK` (kernel:
//! `hostgw.rs`).

/// Key of `HOST_LOOPBACK`: a network and a port of its host-gateway (network order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LoopbackKey {
    pub network: u32,
    pub port: u16,
    pub _pad: u16,
}

crate::layout!(LoopbackKey, 8, network @ 0, port @ 4, _pad @ 6);
crate::pod!(LoopbackKey);
