//! Names on every network: a DNS server in the agent on each network's gateway (UDP and TCP,
//! port 53), answering for the endpoints and aliases of the asker's networks and forwarding
//! everything else to the host's resolvers; and the map of names the kernel fast path
//! answers A queries from.
//!
//! | module | concern |
//! |---|---|
//! | [`names`] | which names a network has, what a name means to whom (pure) |
//! | [`answer`] | one query, one decision: answered, forwarded or dropped (pure) |
//! | [`upstream`] | the host's resolvers, endpoints' resolv.conf, forwarding over UDP and TCP |
//! | [`server`] | the listeners on the gateways, rate limits, counters |
//! | [`batch`] | UDP datagrams a batch per system call (`recvmmsg`, `sendmmsg`) |
pub mod answer;
pub mod batch;
pub mod names;
pub mod server;
#[cfg(test)]
mod test_state;
pub mod upstream;
