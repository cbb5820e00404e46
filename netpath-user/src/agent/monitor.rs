//! `netpath monitor`: the datapath's events, live. One task reads the kernel's ring buffer
//! and hands each event to every subscriber, which filters it (endpoint, reason), describes
//! it (interface and endpoint names from the state) and streams it to its client. The kernel
//! reports only what some subscriber asked for: nothing at all when none listens.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::SystemTime,
};

use netpath_common::{event, monitor, Counter, Event, In6};
use parking_lot::RwLock;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::warn;

use crate::{
    api::{MonitorEvent, MonitorFilter},
    ipam::Family,
    model::State,
};

/// An event as read, and when.
#[derive(Clone, Copy, Debug)]
pub struct Raw {
    pub event: AnyEvent,
    pub at: SystemTime,
}

/// An event of either address family, as the kernel wrote it (told apart by its length).
#[derive(Clone, Copy, Debug)]
pub enum AnyEvent {
    V4(Event),
    V6(Event<In6>),
}

/// What describing an event reads of it: its fields, the addresses of either family.
struct Fields {
    kind: u8,
    what: u8,
    proto: u8,
    ifindex: u32,
    src: SocketAddr,
    dst: SocketAddr,
    nat: SocketAddr,
    /// As written: a trace of a policy puts its number here, not a port.
    nat_port: u16,
}

impl AnyEvent {
    fn fields(&self) -> Fields {
        fn of<A: Family>(e: &Event<A::Kernel>) -> Fields {
            let at = |a, port: u16| SocketAddr::new(A::from_kernel(a).into(), u16::from_be(port));
            Fields {
                kind: e.kind,
                what: e.what,
                proto: e.proto,
                ifindex: e.ifindex,
                src: at(e.src_addr, e.src_port),
                dst: at(e.dst_addr, e.dst_port),
                nat: at(e.nat_addr, e.nat_port),
                nat_port: e.nat_port,
            }
        }
        match self {
            AnyEvent::V4(e) => of::<Ipv4Addr>(e),
            AnyEvent::V6(e) => of::<Ipv6Addr>(e),
        }
    }
}

/// Subscribers, what they ask of the kernel, and the events for them.
pub struct Hub {
    events: broadcast::Sender<Raw>,
    drops: AtomicUsize,
    traces: AtomicUsize,
    /// The flags the kernel should have; a task applies them.
    flags: watch::Sender<u32>,
    state: Arc<RwLock<Arc<State>>>,
}

/// Holds a subscription; dropping it gives it up.
struct Subscription {
    hub: Arc<Hub>,
    trace: bool,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.drops.fetch_sub(1, Ordering::SeqCst);
        if self.trace {
            self.hub.traces.fetch_sub(1, Ordering::SeqCst);
        }
        self.hub.update_flags();
    }
}

impl Hub {
    /// A hub describing events with the state in `state`; the receiver sees the flags the
    /// kernel should have.
    pub fn new(state: Arc<RwLock<Arc<State>>>) -> (Arc<Hub>, watch::Receiver<u32>) {
        let (events, _) = broadcast::channel(4096);
        let (flags, flags_rx) = watch::channel(0);
        (
            Arc::new(Hub {
                events,
                drops: AtomicUsize::new(0),
                traces: AtomicUsize::new(0),
                flags,
                state,
            }),
            flags_rx,
        )
    }

    fn update_flags(&self) {
        let mut f = 0;
        if self.drops.load(Ordering::SeqCst) > 0 {
            f |= monitor::DROPS;
        }
        if self.traces.load(Ordering::SeqCst) > 0 {
            f |= monitor::TRACE;
        }
        self.flags.send_replace(f);
    }

    /// Monitors listening now.
    pub fn subscribers(&self) -> usize {
        self.drops.load(Ordering::SeqCst)
    }

    /// Hands an event read from the kernel to the subscribers.
    pub fn publish(&self, raw: Raw) {
        // Fails only when nobody listens, and then the event has nobody to go to.
        let _ = self.events.send(raw);
    }

    /// A new subscriber: its events, filtered and described, until the receiver is dropped.
    pub fn subscribe(self: &Arc<Self>, filter: MonitorFilter) -> mpsc::Receiver<MonitorEvent> {
        let (tx, rx) = mpsc::channel(1024);
        let mut events = self.events.subscribe();
        self.drops.fetch_add(1, Ordering::SeqCst);
        if filter.trace {
            self.traces.fetch_add(1, Ordering::SeqCst);
        }
        let sub = Subscription {
            hub: self.clone(),
            trace: filter.trace,
        };
        self.update_flags();
        tokio::spawn(async move {
            let _sub = sub;
            loop {
                let raw = tokio::select! {
                    r = events.recv() => r,
                    () = tx.closed() => return,
                };
                let raw = match raw {
                    Ok(r) => r,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(lost = n, "a monitor could not keep up");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let state = _sub.hub.state.read().clone();
                let Some(e) = describe(&raw, &state, &filter) else {
                    continue;
                };
                if tx.send(e).await.is_err() {
                    return;
                }
            }
        });
        rx
    }
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        n => n.to_string(),
    }
}

/// The name of interface `ifindex` of this namespace.
fn ifname(ifindex: u32) -> Option<String> {
    if ifindex == 0 {
        return None;
    }
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: a buffer of IF_NAMESIZE bytes, as the call requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// The event as a monitor shows it, if `filter` lets it through.
fn describe(raw: &Raw, state: &State, filter: &MonitorFilter) -> Option<MonitorEvent> {
    let e = raw.event.fields();
    let (kind, reason, translated) = match e.kind {
        event::DROP => {
            let counter = Counter::ALL.get(usize::from(e.what))?;
            let name = counter.name();
            ("drop", name.strip_prefix("drop_").unwrap_or(name), None)
        }
        event::TRACE if filter.trace && e.what == event::trace::POLICY => {
            ("trace", crate::api::trace_name(e.what), None)
        }
        event::TRACE if filter.trace => (
            "trace",
            crate::api::trace_name(e.what),
            Some(e.nat.to_string()),
        ),
        _ => return None,
    };
    if let Some(r) = &filter.reason {
        if r != reason && r.strip_prefix("drop_") != Some(reason) {
            return None;
        }
    }
    let interface = ifname(e.ifindex);
    // The endpoint: the one behind the interface, else the one an address belongs to.
    let by_ifname = interface.as_deref().and_then(|i| {
        state
            .endpoints
            .values()
            .find(|ep| ep.attachments.iter().any(|a| a.host_ifname == i))
    });
    let addrs = [e.nat, e.dst, e.src].map(|a| a.ip());
    let by_addr = |ip: &IpAddr| {
        state
            .endpoints
            .values()
            .find(|ep| ep.attachments.iter().any(|a| a.ips().any(|x| x == *ip)))
    };
    let endpoint = by_ifname
        .or_else(|| addrs.iter().find_map(by_addr))
        .map(|ep| ep.name.clone());
    // A filter on an endpoint keeps what it sent and what was meant for it.
    if let Some(want) = &filter.endpoint {
        let related = endpoint.as_ref() == Some(want)
            || addrs.iter().filter_map(by_addr).any(|ep| &ep.name == want);
        if !related {
            return None;
        }
    }
    Some(MonitorEvent {
        time: rfc3339(raw.at),
        kind: kind.into(),
        reason: reason.into(),
        protocol: proto_name(e.proto),
        source: e.src.to_string(),
        destination: e.dst.to_string(),
        translated,
        interface,
        endpoint,
        // The policies are numbered as the kernel's rules are: in the state's order, from 1.
        policy: (e.kind == event::TRACE && e.what == event::trace::POLICY)
            .then(|| super::policy::policies(state))
            .and_then(|all| {
                all.get(usize::from(e.nat_port).checked_sub(1)?)
                    .map(|p| p.key())
            }),
    })
}

/// An RFC 3339 UTC time with milliseconds, as the monitor prints it.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Reads the kernel's ring buffer for as long as the agent runs.
pub async fn read_events(
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    hub: Arc<Hub>,
) -> anyhow::Result<()> {
    // SAFETY: the ring buffer owns its descriptor, which stays open and the same for as long
    // as the AsyncFd holds it.
    let mut fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE)
    }
    .map_err(|e| anyhow::anyhow!("watching the event ring buffer: {e}"))?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            // SAFETY (both): the kernel wrote an Event of the family its length says (repr(C),
            // every bit pattern valid).
            let event = if item.len() >= std::mem::size_of::<Event<In6>>() {
                AnyEvent::V6(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) })
            } else if item.len() >= std::mem::size_of::<Event>() {
                AnyEvent::V4(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) })
            } else {
                continue;
            };
            hub.publish(Raw {
                event,
                at: SystemTime::now(),
            });
        }
        guard.clear_ready();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_795_000_000_123);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.123Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn events_are_described_and_filtered() {
        let drop = Raw {
            event: AnyEvent::V4(Event {
                kind: event::DROP,
                what: Counter::DropIsolation as u8,
                proto: 6,
                src_addr: u32::from_ne_bytes([10, 0, 0, 2]),
                dst_addr: u32::from_ne_bytes([10, 1, 0, 2]),
                src_port: 1234u16.to_be(),
                dst_port: 80u16.to_be(),
                ..Event::default()
            }),
            at: SystemTime::UNIX_EPOCH,
        };
        let state = State::default();
        let all = MonitorFilter::default();
        let e = describe(&drop, &state, &all).unwrap();
        assert_eq!(
            (e.kind.as_str(), e.reason.as_str(), e.protocol.as_str()),
            ("drop", "isolation", "tcp")
        );
        assert_eq!(
            (e.source.as_str(), e.destination.as_str()),
            ("10.0.0.2:1234", "10.1.0.2:80")
        );
        let spoof_only = MonitorFilter {
            reason: Some("drop_spoof".into()),
            ..MonitorFilter::default()
        };
        assert!(describe(&drop, &state, &spoof_only).is_none());
        let iso = MonitorFilter {
            reason: Some("drop_isolation".into()),
            ..MonitorFilter::default()
        };
        assert!(describe(&drop, &state, &iso).is_some());
        let mut trace = drop;
        if let AnyEvent::V4(e) = &mut trace.event {
            e.kind = event::TRACE;
            e.what = event::trace::DNAT;
        }
        assert!(
            describe(&trace, &state, &all).is_none(),
            "traces only when asked"
        );
        let traces = MonitorFilter {
            trace: true,
            ..MonitorFilter::default()
        };
        assert_eq!(describe(&trace, &state, &traces).unwrap().reason, "dnat");
        let v6 = |s: &str| In6::from_octets(s.parse::<Ipv6Addr>().unwrap().octets());
        let drop6 = Raw {
            event: AnyEvent::V6(Event {
                kind: event::DROP,
                what: Counter::DropSpoof as u8,
                proto: 58,
                src_addr: v6("fd00:1::99"),
                dst_addr: v6("fd00:1::3"),
                ..Event::default()
            }),
            at: SystemTime::UNIX_EPOCH,
        };
        let e = describe(&drop6, &state, &all).unwrap();
        assert_eq!(
            (
                e.reason.as_str(),
                e.protocol.as_str(),
                e.source.as_str(),
                e.destination.as_str()
            ),
            ("spoof", "icmpv6", "[fd00:1::99]:0", "[fd00:1::3]:0")
        );
    }
}
