//! UDP datagrams a batch per system call: `recvmmsg` takes up to [`BATCH`] queued queries at
//! once and `sendmmsg` sends their answers back, where one `recvfrom` and one `sendto` per
//! query made a loaded server spend most of its time entering the kernel. Non-blocking: the
//! server waits for readiness through tokio and calls these from `try_io`. [`serve`] is the
//! whole loop; the bench's floor runs it with no DNS work at all.
use std::{
    io,
    mem::{size_of, zeroed},
    net::SocketAddr,
    os::fd::{AsRawFd as _, RawFd},
};

use socket2::{SockAddr, SockAddrStorage};
use tokio::{io::Interest, net::UdpSocket};
use tracing::debug;

/// Datagrams read or sent per call.
pub const BATCH: usize = 32;
/// The longest query read whole; a longer one is cut short (and then fails to parse).
pub const QUERY_MAX: usize = 4096;

/// Buffers for one batch of received datagrams.
struct Received {
    bufs: Box<[[u8; QUERY_MAX]; BATCH]>,
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    /// Each datagram's length and its sender's address length.
    lens: [(usize, libc::socklen_t); BATCH],
    count: usize,
}

impl Default for Received {
    fn default() -> Self {
        Received {
            bufs: Box::new([[0; QUERY_MAX]; BATCH]),
            // SAFETY: sockaddr_storage is plain data, all zeroes a valid (unspecified) value.
            addrs: Box::new(unsafe { zeroed() }),
            lens: [(0, 0); BATCH],
            count: 0,
        }
    }
}

impl Received {
    /// Reads the datagrams queued on `fd`, up to [`BATCH`], without blocking: how many (an
    /// error of kind `WouldBlock` when none is).
    fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: iovec and mmsghdr are plain data; every pointer set below points into
        // `self`'s buffers, which outlive the call, with their true lengths.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (i, (iov, hdr)) in iovs.iter_mut().zip(hdrs.iter_mut()).enumerate() {
            iov.iov_base = self.bufs[i].as_mut_ptr().cast();
            iov.iov_len = QUERY_MAX;
            hdr.msg_hdr.msg_name = (&raw mut self.addrs[i]).cast();
            hdr.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `hdrs` holds BATCH initialised headers (above).
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.count = 0;
            return Err(io::Error::last_os_error());
        }
        self.count = n as usize;
        for (len, hdr) in self.lens.iter_mut().zip(&hdrs).take(self.count) {
            *len = (
                (hdr.msg_len as usize).min(QUERY_MAX),
                hdr.msg_hdr.msg_namelen,
            );
        }
        Ok(self.count)
    }

    /// The datagrams of the last [`recv`](Self::recv), each with its sender (an address of
    /// neither family, which no UDP socket gives, is left out).
    fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        (0..self.count).filter_map(|i| {
            let (len, namelen) = self.lens[i];
            let mut from = SockAddrStorage::zeroed();
            // SAFETY: socket2's storage is a sockaddr_storage (its documented use), and the
            // kernel wrote a sockaddr of `namelen` bytes into ours.
            let from = unsafe {
                *from.view_as::<libc::sockaddr_storage>() = self.addrs[i];
                SockAddr::new(from, namelen)
            };
            Some((&self.bufs[i][..len], from.as_socket()?))
        })
    }
}

/// Sends each `(datagram, to)` of `out` on `fd` without blocking, [`BATCH`] a call: how many
/// went (fewer when the socket's buffer fills; an error of kind `WouldBlock` when none did,
/// or the error of the first when it cannot be sent at all).
fn send(fd: RawFd, out: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    let out = &out[..out.len().min(BATCH)];
    let addrs: Vec<SockAddr> = out.iter().map(|(_, to)| SockAddr::from(*to)).collect();
    // SAFETY: as in `recv`: plain data, pointing into `out` and `addrs`, which outlive the
    // call; the kernel only reads them.
    let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    for (i, ((data, _), to)) in out.iter().zip(&addrs).enumerate() {
        iovs[i].iov_base = data.as_ptr().cast_mut().cast();
        iovs[i].iov_len = data.len();
        hdrs[i].msg_hdr.msg_name = to.as_ptr().cast_mut().cast();
        hdrs[i].msg_hdr.msg_namelen = to.len();
        hdrs[i].msg_hdr.msg_iov = &raw mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `out.len()` headers are initialised (above).
    let n = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            out.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Sends `replies` (and empties it), as many per call as the socket takes, waiting while its
/// buffer is full. One that cannot be sent at all is a lost datagram: the asker asks again.
async fn send_all(sock: &UdpSocket, replies: &mut Vec<(Vec<u8>, SocketAddr)>) {
    let fd = sock.as_raw_fd();
    let mut sent = 0;
    while sent < replies.len() {
        match sock.try_io(Interest::WRITABLE, || send(fd, &replies[sent..])) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if sock.writable().await.is_err() {
                    break;
                }
            }
            Err(e) => {
                debug!(to = %replies[sent].1, "DNS send: {e}");
                sent += 1;
            }
        }
    }
    replies.clear();
}

/// Answers the datagrams on `sock` a batch at a time, for ever: what is queued is read in one
/// call, `answer` decides each (`None`: no reply, or one it sends itself), and the replies go
/// in one call.
pub async fn serve(sock: &UdpSocket, mut answer: impl FnMut(&[u8], SocketAddr) -> Option<Vec<u8>>) {
    let fd = sock.as_raw_fd();
    let mut received = Received::default();
    let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
    loop {
        match sock.try_io(Interest::READABLE, || received.recv(fd)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = sock.readable().await {
                    debug!(at = ?sock.local_addr().ok(), "DNS receive: {e}");
                }
                continue;
            }
            Err(e) => {
                debug!(at = ?sock.local_addr().ok(), "DNS receive: {e}");
                continue;
            }
        }
        for (query, from) in received.iter() {
            if let Some(reply) = answer(query, from) {
                replies.push((reply, from));
            }
        }
        send_all(sock, &mut replies).await;
    }
}
