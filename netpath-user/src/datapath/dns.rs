//! The names the DNS fast path answers (kernel: `dns.rs`): `DNS_NAMES`, by network and name.
//! The agent writes what differs from what it wrote last (a copy kept here, read from the
//! map once), so a change costs only the names it touches.
use std::{collections::HashMap as StdHashMap, net::Ipv4Addr};

use netpath_common::{map_names, DnsAddrs, DnsKey, DNS_ADDRS};

use super::{be_addr, removed, Datapath, DatapathError};

/// The `DNS_NAMES` value of `addrs` (None: too many for the fast path).
pub fn dns_addrs(addrs: &[Ipv4Addr]) -> Option<DnsAddrs> {
    if addrs.is_empty() || addrs.len() > DNS_ADDRS {
        return None;
    }
    let mut v = DnsAddrs {
        count: addrs.len() as u32,
        ..DnsAddrs::default()
    };
    for (slot, a) in v.addrs.iter_mut().zip(addrs) {
        *slot = be_addr(*a);
    }
    Some(v)
}

/// The same addresses, wherever the rotation stands.
fn same(a: &DnsAddrs, b: &DnsAddrs) -> bool {
    a.count == b.count && a.addrs == b.addrs
}

impl Datapath {
    /// Makes `DNS_NAMES` hold exactly `want`; (written, removed).
    pub fn set_dns_names(
        &mut self,
        want: &StdHashMap<DnsKey, DnsAddrs>,
    ) -> Result<(usize, usize), DatapathError> {
        let err = |e| DatapathError::Map(map_names::DNS_NAMES, e);
        if self.dns_written.is_none() {
            let have: Vec<(DnsKey, DnsAddrs)> =
                self.scan(map_names::DNS_NAMES, &self.whole.dns_names);
            self.dns_written = Some(have.into_iter().collect());
        }
        let written = self.dns_written.get_or_insert_with(StdHashMap::new);
        let mut n = 0;
        for (k, v) in want {
            if !written.get(k).is_some_and(|h| same(h, v)) {
                self.dns_names.insert(k, v, 0).map_err(err)?;
                written.insert(*k, *v);
                n += 1;
            }
        }
        let gone: Vec<DnsKey> = written
            .keys()
            .filter(|k| !want.contains_key(k))
            .copied()
            .collect();
        for k in &gone {
            removed(map_names::DNS_NAMES, self.dns_names.remove(k))?;
            written.remove(k);
        }
        Ok((n, gone.len()))
    }

    /// What the fast path answers for `key` (tests).
    pub fn dns_name(&self, key: &DnsKey) -> Option<DnsAddrs> {
        self.dns_names.get(key, 0).ok()
    }
}
