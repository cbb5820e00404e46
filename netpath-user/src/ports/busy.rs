//! Which host ports the host's own processes hold: the socket tables read whole (a candidate
//! list), then a bind probe of each candidate. Planning asks before it publishes a port, as
//! Docker would find the port taken when docker-proxy binds it.
use std::collections::HashSet;

use super::{PortMapping, Proto};

/// The ports of every socket in this namespace's tables (`/proc/net/{tcp,udp}{,6}`: IPv6
/// sockets count, a dual-stack listener holds the IPv4 port too). Any state counts: the
/// probe ([`port_busy`]) decides what a candidate means.
pub fn bound_ports() -> Option<HashSet<(Proto, u16)>> {
    let mut ports = HashSet::new();
    for (file, proto) in [
        ("/proc/net/tcp", Proto::Tcp),
        ("/proc/net/tcp6", Proto::Tcp),
        ("/proc/net/udp", Proto::Udp),
        ("/proc/net/udp6", Proto::Udp),
    ] {
        match std::fs::read_to_string(file) {
            Ok(text) => ports.extend(socket_table_ports(&text).map(|p| (proto, p))),
            // A kernel without IPv6 has no tcp6/udp6: nothing of it holds a port.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.ends_with('6') => {}
            Err(_) => return None,
        }
    }
    Some(ports)
}

/// The local ports of a `/proc/net/tcp`-style table (`sl local_address rem_address ...`,
/// addresses as `HEXADDR:HEXPORT`).
fn socket_table_ports(text: &str) -> impl Iterator<Item = u16> + '_ {
    text.lines().skip(1).filter_map(|line| {
        let local = line.split_whitespace().nth(1)?;
        let (_, port) = local.rsplit_once(':')?;
        u16::from_str_radix(port, 16).ok()
    })
}

/// Whether binding `m`'s host address and port fails here (Docker binds the port it
/// publishes; netpath only probes, so nothing is held). TCP probes with `SO_REUSEADDR`, so
/// only a listener (not a closed connection's TIME_WAIT) counts.
pub fn port_busy(m: &PortMapping) -> bool {
    use crate::ports::Proto;
    let ty = match m.proto {
        Proto::Tcp => libc::SOCK_STREAM,
        Proto::Udp => libc::SOCK_DGRAM,
    };
    // SAFETY: a plain socket; closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return false;
    }
    if m.proto == Proto::Tcp {
        let one: libc::c_int = 1;
        // SAFETY: valid fd and option.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: m.host_port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: crate::ipam::Family::to_kernel(m.host_ip),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a sockaddr_in of the size passed.
    let rc = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    let busy = rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EADDRINUSE);
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    busy
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn socket_tables_name_their_local_ports() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1\n   1: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 0A 0 0 0 0 0\n";
        let ports: Vec<u16> = socket_table_ports(tcp).collect();
        assert_eq!(ports, [8080, 53]);
    }

    #[test]
    fn a_socket_of_this_host_is_a_candidate_and_its_probe_says_busy() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (u, t) = (
            udp.local_addr().unwrap().port(),
            tcp.local_addr().unwrap().port(),
        );
        let bound = bound_ports().expect("socket tables readable");
        assert!(bound.contains(&(Proto::Udp, u)), "udp {u}");
        assert!(bound.contains(&(Proto::Tcp, t)), "tcp {t}");
        let m = |proto, host_port| PortMapping {
            host_ip: Ipv4Addr::LOCALHOST,
            host_port,
            container_port: 80,
            proto,
        };
        assert!(port_busy(&m(Proto::Udp, u)));
        assert!(port_busy(&m(Proto::Tcp, t)));
    }
}
