//! One query, one decision: answered here (names of the asker's networks, with hickory-proto
//! for every byte read and written), forwarded upstream, or dropped. Pure: the server does
//! the sockets, this the DNS.
//!
//! A local answer is authoritative (AA), says recursion is available (RA), copies RD and the
//! question as asked (case included), and gives each address with [`names::TTL`]; names
//! sharing an alias rotate their addresses query by query. The kernel fast path writes the
//! very same bytes for plain A queries (`netpath-ebpf/src/dns.rs`).
use std::net::IpAddr;

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, ResponseCode},
    rr::{
        rdata::{A, AAAA, PTR},
        DNSClass, Name, RData, Record, RecordType,
    },
};

use super::names::{self, Resolved};

/// The EDNS payload size netpath announces (the DNS flag day's recommendation).
pub const EDNS_PAYLOAD: u16 = 1232;
/// The largest UDP answer to a client that did not say (RFC 1035).
pub const PLAIN_UDP: usize = 512;

/// What became of a query (for the counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered from the asker's networks (addresses, or none of that type).
    Local,
    /// The name does not exist for the asker.
    NxDomain,
    /// The asker is not an endpoint, or the class is not ours.
    Refused,
    /// Not a query netpath can read: FORMERR.
    FormErr,
    /// An operation other than a query: NOTIMP.
    NotImp,
    /// To the upstream resolvers.
    Forward,
    /// Not answered at all (not a DNS query).
    Dropped,
}

/// What to do with one query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// The answer to send, unless forwarded or dropped.
    pub reply: Option<Vec<u8>>,
}

/// Who asked, where, and the answer's rotation.
#[derive(Clone, Copy, Debug)]
pub struct Asked<'a> {
    /// The names of the state in force.
    pub names: &'a names::Index,
    /// The asker's address.
    pub from: IpAddr,
    /// The network whose gateway was asked.
    pub network: &'a str,
    /// Where a name's addresses start (a counter the server advances per query).
    pub rotate: usize,
    /// Over UDP: the largest answer the client takes without EDNS.
    pub udp: bool,
}

fn decided(outcome: Outcome, reply: Option<Vec<u8>>) -> Decision {
    Decision { outcome, reply }
}

/// A header-only error answer to a query that could not be read (when its header could).
fn header_error(query: &[u8], rcode: ResponseCode) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    let mut m = Message::error_msg(id, OpCode::from_u8((query[2] >> 3) & 0xf), rcode);
    m.metadata.recursion_desired = query[2] & 1 != 0;
    m.metadata.recursion_available = true;
    m.to_vec().ok()
}

/// SERVFAIL to `query` (no upstream answered), with its question when it can be read.
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let Ok(msg) = Message::from_vec(query) else {
        return header_error(query, ResponseCode::ServFail);
    };
    let mut resp = Message::error_msg(
        msg.metadata.id,
        msg.metadata.op_code,
        ResponseCode::ServFail,
    );
    resp.metadata.recursion_desired = msg.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.add_queries(msg.queries.iter().cloned());
    resp.to_vec().ok()
}

/// Decides what to do with `query` from `asked.from`.
pub fn decide(query: &[u8], asked: Asked<'_>) -> Decision {
    let msg = match Message::from_vec(query) {
        Ok(m) => m,
        Err(_) => {
            return match header_error(query, ResponseCode::FormErr) {
                Some(r) => decided(Outcome::FormErr, Some(r)),
                None => decided(Outcome::Dropped, None),
            }
        }
    };
    if msg.metadata.message_type != MessageType::Query {
        return decided(Outcome::Dropped, None);
    }
    let mut resp = Message::response(msg.metadata.id, msg.metadata.op_code);
    resp.metadata.recursion_desired = msg.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    if let Some(e) = &msg.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        edns.set_version(0);
        edns.set_dnssec_ok(e.flags().dnssec_ok);
        resp.set_edns(edns);
    }
    let fail = |mut resp: Message, outcome, rcode| {
        resp.metadata.response_code = rcode;
        decided(outcome, resp.to_vec().ok())
    };
    if msg.metadata.op_code != OpCode::Query {
        return fail(resp, Outcome::NotImp, ResponseCode::NotImp);
    }
    let [q] = &msg.queries[..] else {
        return fail(resp, Outcome::FormErr, ResponseCode::FormErr);
    };
    resp.add_query(q.clone());
    if q.query_class() != DNSClass::IN {
        return fail(resp, Outcome::Refused, ResponseCode::Refused);
    }
    let ptr = q.query_type() == RecordType::PTR;
    let name = q.name().to_ascii();
    match asked.names.resolve(asked.from, asked.network, &name, ptr) {
        Resolved::Forward => decided(Outcome::Forward, None),
        Resolved::Refused => fail(resp, Outcome::Refused, ResponseCode::Refused),
        Resolved::NxDomain => {
            resp.metadata.authoritative = true;
            fail(resp, Outcome::NxDomain, ResponseCode::NXDomain)
        }
        Resolved::Pointer(target) => {
            resp.metadata.authoritative = true;
            match Name::from_ascii(format!("{target}.")) {
                Ok(t) => {
                    resp.add_answer(Record::from_rdata(
                        q.name().clone(),
                        names::TTL,
                        RData::PTR(PTR(t)),
                    ));
                    finish(resp, &msg, asked.udp, Outcome::Local)
                }
                Err(_) => fail(resp, Outcome::Refused, ResponseCode::ServFail),
            }
        }
        Resolved::Local(addrs) => {
            resp.metadata.authoritative = true;
            let (qtype, rotate) = (q.query_type(), asked.rotate);
            if matches!(qtype, RecordType::A | RecordType::ANY) {
                for a in rotated(&addrs.v4, rotate) {
                    resp.add_answer(Record::from_rdata(
                        q.name().clone(),
                        names::TTL,
                        RData::A(A(a)),
                    ));
                }
            }
            if matches!(qtype, RecordType::AAAA | RecordType::ANY) {
                for a in rotated(&addrs.v6, rotate) {
                    resp.add_answer(Record::from_rdata(
                        q.name().clone(),
                        names::TTL,
                        RData::AAAA(AAAA(a)),
                    ));
                }
            }
            finish(resp, &msg, asked.udp, Outcome::Local)
        }
    }
}

/// `addrs` from the `rotate`-th on, round.
fn rotated<T: Copy>(addrs: &[T], rotate: usize) -> impl Iterator<Item = T> + '_ {
    let n = addrs.len();
    (0..n).map(move |i| addrs[(rotate + i) % n])
}

/// Serializes `resp`; over UDP, one too big for the client becomes a truncated answer (the
/// client asks again over TCP).
fn finish(resp: Message, query: &Message, udp: bool, outcome: Outcome) -> Decision {
    let Ok(bytes) = resp.to_vec() else {
        return decided(Outcome::Dropped, None);
    };
    if udp && bytes.len() > client_limit(query) {
        return decided(outcome, resp.truncate().to_vec().ok());
    }
    decided(outcome, Some(bytes))
}

/// The largest UDP answer the client of `query` takes.
pub fn client_limit(query: &Message) -> usize {
    query.edns.as_ref().map_or(PLAIN_UDP, |e| {
        usize::from(e.max_payload().clamp(PLAIN_UDP as u16, EDNS_PAYLOAD))
    })
}

#[cfg(test)]
mod tests;
