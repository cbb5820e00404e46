//! A raw packet socket on one interface: frames sent as a NIC's driver would hand them to the
//! stack's transmit path, past the qdisc (the tests' crafted frames, the benchmark's flood).
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use anyhow::{Context as _, Result};

/// A raw packet socket bound to one interface of the calling thread's namespace.
pub struct PacketSocket {
    fd: OwnedFd,
    addr: libc::sockaddr_ll,
}

impl PacketSocket {
    /// A socket sending on `ifindex`, its frames past the qdisc (as a NIC's driver sees them).
    pub fn open(ifindex: u32) -> Result<PacketSocket> {
        // SAFETY: plain socket call; the descriptor is owned below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
        }
        // SAFETY: `raw` is a descriptor just opened and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        // SAFETY: an int option, its size given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("PACKET_QDISC_BYPASS");
        }
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        Ok(PacketSocket { fd, addr })
    }

    /// The destination address for a `msghdr` (`msg_name`, `msg_namelen`): this interface.
    pub fn dest(&self) -> (*mut libc::c_void, libc::socklen_t) {
        (
            (&self.addr as *const libc::sockaddr_ll).cast_mut().cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    }

    /// Sends one frame.
    pub fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        let (to, len) = self.dest();
        // SAFETY: `frame` and the address outlive the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                to.cast(),
                len,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends `msgs` (each naming this interface, see [`PacketSocket::dest`]) in one
    /// `sendmmsg`; how many went (a full device queue takes fewer).
    pub fn send_batch(&self, msgs: &mut [libc::mmsghdr]) -> usize {
        // SAFETY: the caller's headers point at its frames and at `self.addr`, which outlive
        // the call.
        let sent =
            unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), msgs.len() as u32, 0) };
        usize::try_from(sent).unwrap_or(0)
    }
}
