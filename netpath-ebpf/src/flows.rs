//! The flow table: NAT state of published flows, so replies are translated back to the host
//! address and port the client used (two host ports on one container port stay apart).
use netpath_common::{FlowKey, FlowNat, PortTarget};

use crate::{maps::FLOWS, parse::Ipv4Flow};

/// Remembers that `flow` (client → host address:port) was sent to `target`, its source
/// replaced by `masq` when that is not 0 (self-hairpin).
/// Writes only when the entry is missing or differs, so the hot path is one lookup.
#[inline(always)]
pub fn record(flow: &Ipv4Flow, target: &PortTarget, masq: u32) {
    let mut key = reply_key_of(flow, target);
    let mut client = 0;
    if masq != 0 {
        key.dst_addr = masq;
        client = flow.src_addr;
    }
    let nat = FlowNat {
        addr: flow.dst_addr,
        port: flow.dst_port,
        _pad: 0,
        ifindex: target.ifindex,
        client,
    };
    match FLOWS.get_ptr(&key) {
        // SAFETY: map value pointer valid for this program run.
        Some(v) if unsafe { *v } == nat => {}
        _ => {
            let _ = FLOWS.insert(&key, &nat, 0);
        }
    }
}

/// The key under which the replies of `flow`, DNAT'd to `target`, are found: the translated
/// flow (client → endpoint) reversed.
#[inline(always)]
fn reply_key_of(flow: &Ipv4Flow, target: &PortTarget) -> FlowKey {
    FlowKey::new(
        flow.src_addr,
        flow.src_port,
        target.addr,
        target.port,
        flow.proto,
    )
    .reversed()
}

/// The translation for a packet leaving an endpoint, if it is the reply of a published flow.
#[inline(always)]
pub fn reply_nat(flow: &Ipv4Flow) -> Option<FlowNat> {
    // SAFETY: map value pointer valid for this program run; copied out at once.
    FLOWS.get_ptr(&flow.key()).map(|v| unsafe { *v })
}
