//! Steady traffic through a published port, as an operator's users would send it: one TCP
//! connection doing a transaction every 10 ms, and a UDP stream with sequence numbers every
//! 10 ms, each answer checked. What the restart and upgrade tests and the benchmark count
//! losses with.
use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use super::{wait_until, Netns};

/// How long the steady TCP connection may take to open.
const CONNECT: Duration = Duration::from_secs(3);

/// A UDP server in `ns` answering every datagram with "PEER_IP:PEER_PORT MESSAGE".
pub fn udp_server(ns: &Netns, port: u16) {
    answer_udp(ns.run(|| UdpSocket::bind(("0.0.0.0", port)).expect("bind udp")));
}

/// [`udp_server`] on every address of both families (`[::]`, dual stack).
pub fn udp_server6(ns: &Netns, port: u16) {
    answer_udp(ns.run(|| UdpSocket::bind(("::", port)).expect("bind udp")));
}

/// Answers every datagram of `s` with "PEER MESSAGE", in the background.
fn answer_udp(s: UdpSocket) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, peer)) = s.recv_from(&mut buf) {
            let reply = format!("{peer} {}", String::from_utf8_lossy(&buf[..n]));
            // The peer may be gone: a server answers whoever is still there.
            let _ = s.send_to(reply.as_bytes(), peer);
        }
    });
}

/// A TCP server in `ns` echoing every connection's bytes back until it closes.
pub fn tcp_echo_server(ns: &Netns, port: u16) {
    echo(ns.run(|| TcpListener::bind(("0.0.0.0", port)).expect("bind tcp")));
}

/// [`tcp_echo_server`] on every address of both families (`[::]`, dual stack).
pub fn tcp_echo_server6(ns: &Netns, port: u16) {
    echo(ns.run(|| TcpListener::bind(("::", port)).expect("bind tcp")));
}

/// Echoes every connection of `l`, in the background.
fn echo(l: TcpListener) {
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let mut buf = [0u8; 256];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// Steady traffic (see the module docs).
pub struct SteadyTraffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub tcp_ok: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub tcp_failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    udp_sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    udp_seen: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<u64>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// What [`SteadyTraffic`] saw.
#[derive(Debug)]
pub struct TrafficResult {
    pub tcp_ok: u64,
    pub tcp_failed: u64,
    pub udp_sent: u64,
    pub udp_lost: Vec<u64>,
}

impl TrafficResult {
    /// Panics unless every TCP transaction went through and every UDP datagram was answered.
    pub fn assert_nothing_lost(&self) {
        assert_eq!(self.tcp_failed, 0, "{self:?}");
        assert!(self.udp_lost.is_empty(), "{self:?}");
    }
}

impl SteadyTraffic {
    /// Starts from `ns` to `to` (of either family): TCP to `tcp_port` (an echo server), UDP to
    /// `udp_port` (an answering server).
    pub fn start(ns: &Netns, to: impl Into<IpAddr>, tcp_port: u16, udp_port: u16) -> SteadyTraffic {
        let to: IpAddr = to.into();
        use std::sync::{
            atomic::{AtomicBool, AtomicU64, Ordering},
            Arc, Mutex,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let tcp_ok = Arc::new(AtomicU64::new(0));
        let tcp_failed = Arc::new(AtomicU64::new(0));
        let udp_sent = Arc::new(AtomicU64::new(0));
        let udp_seen = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
        let addr = SocketAddr::new(to, tcp_port);
        let mut tcp = ns
            .run(|| TcpStream::connect_timeout(&addr, CONNECT))
            .expect("the steady TCP connection");
        tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let any = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
        let udp = ns.run(|| UdpSocket::bind(any)).unwrap();
        udp.connect((to, udp_port)).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let udp_rx = udp.try_clone().unwrap();
        let mut threads = Vec::new();
        {
            let (stop, ok, failed) = (stop.clone(), tcp_ok.clone(), tcp_failed.clone());
            threads.push(std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let msg = format!("{n:016}");
                    let mut back = [0u8; 16];
                    let good = tcp.write_all(msg.as_bytes()).is_ok()
                        && tcp.read_exact(&mut back).is_ok()
                        && back == *msg.as_bytes();
                    if good {
                        ok.fetch_add(1, Ordering::SeqCst);
                    } else {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }));
        }
        {
            let (stop, sent) = (stop.clone(), udp_sent.clone());
            threads.push(std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    if udp.send(format!("{n}").as_bytes()).is_ok() {
                        sent.fetch_add(1, Ordering::SeqCst);
                    }
                    n += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }));
        }
        {
            let (stop, seen) = (stop.clone(), udp_seen.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 128];
                let mut quiet_since: Option<std::time::Instant> = None;
                loop {
                    match udp_rx.recv(&mut buf) {
                        Ok(n) => {
                            quiet_since = None;
                            // "PEER seq": the server prefixes the client's address.
                            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                            if let Some(seq) = text.rsplit(' ').next().and_then(|s| s.parse().ok())
                            {
                                seen.lock().unwrap().insert(seq);
                            }
                        }
                        Err(_) if stop.load(Ordering::SeqCst) => {
                            // Answers still in flight get a second after the last one.
                            let since = *quiet_since.get_or_insert_with(std::time::Instant::now);
                            if since.elapsed() > Duration::from_secs(1) {
                                break;
                            }
                        }
                        Err(_) => {}
                    }
                }
            }));
        }
        SteadyTraffic {
            stop,
            tcp_ok,
            tcp_failed,
            udp_sent,
            udp_seen,
            threads,
        }
    }

    /// Waits until `n` more TCP transactions have succeeded (at most 20 s).
    pub fn wait_for(&self, n: u64) {
        use std::sync::atomic::Ordering;
        let target = self.tcp_ok.load(Ordering::SeqCst) + n;
        wait_until("steady traffic", Duration::from_secs(20), || {
            self.tcp_ok.load(Ordering::SeqCst) >= target
        });
    }

    /// Stops and reports.
    pub fn finish(self) -> TrafficResult {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            // A thread that panicked has printed why; its result adds nothing here.
            let _ = t.join();
        }
        let sent = self.udp_sent.load(Ordering::SeqCst);
        let seen = self.udp_seen.lock().unwrap();
        TrafficResult {
            tcp_ok: self.tcp_ok.load(Ordering::SeqCst),
            tcp_failed: self.tcp_failed.load(Ordering::SeqCst),
            udp_sent: sent,
            udp_lost: (0..sent).filter(|s| !seen.contains(s)).collect(),
        }
    }
}
