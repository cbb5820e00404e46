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
/// only a listener (not a closed connection's TIME_WAIT) counts; IPv6 probes IPv6 alone (a
/// port of `[::]` is not taken by an IPv4 listener, as the kernel's maps keep them apart).
pub fn port_busy(m: &PortMapping) -> bool {
    use socket2::{Domain, Socket, Type};
    let ty = match m.proto {
        Proto::Tcp => Type::STREAM,
        Proto::Udp => Type::DGRAM,
    };
    let addr = m.host();
    let Ok(socket) = Socket::new(Domain::for_address(addr), ty, None) else {
        return false;
    };
    if m.proto == Proto::Tcp && socket.set_reuse_address(true).is_err() {
        return false;
    }
    if addr.is_ipv6() && socket.set_only_v6(true).is_err() {
        return false;
    }
    socket
        .bind(&addr.into())
        .is_err_and(|e| e.raw_os_error() == Some(libc::EADDRINUSE))
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
            host_ip: Ipv4Addr::LOCALHOST.into(),
            host_port,
            container_port: 80,
            proto,
        };
        assert!(port_busy(&m(Proto::Udp, u)));
        assert!(port_busy(&m(Proto::Tcp, t)));
        // IPv6 holds its own ports: an IPv4 listener takes nothing of `[::]`.
        let v6 = |proto, host_port| PortMapping {
            host_ip: std::net::Ipv6Addr::UNSPECIFIED.into(),
            ..m(proto, host_port)
        };
        assert!(!port_busy(&v6(Proto::Tcp, t)));
        let tcp6 = std::net::TcpListener::bind("[::1]:0").unwrap();
        let t6 = tcp6.local_addr().unwrap().port();
        assert!(port_busy(&v6(Proto::Tcp, t6)));
    }
}
