//! The names the DNS fast path answers (kernel: `dns.rs`): `DNS_NAMES` (A) and `DNS_NAMES6`
//! (AAAA), by network and name. The agent writes what differs from what it wrote last (a copy
//! kept here, read from the maps once), so a change costs only the names it touches.
use std::collections::HashMap as StdHashMap;

use aya::maps::{HashMap, MapData};
use netpath_common::{map_names, Addr, DnsAddrs, DnsKey, In6, DNS_ADDRS};

use super::{be_addr, removed, Datapath, DatapathError};
use crate::ipam::Family;

/// What the DNS fast path answers, by network and name: A and AAAA records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelNames {
    pub a: StdHashMap<DnsKey, DnsAddrs>,
    pub aaaa: StdHashMap<DnsKey, DnsAddrs<In6>>,
}

/// What this process last wrote to the fast path's maps.
#[derive(Default)]
pub(super) struct Written {
    a: Option<StdHashMap<DnsKey, DnsAddrs>>,
    aaaa: Option<StdHashMap<DnsKey, DnsAddrs<In6>>>,
}

/// The `DNS_NAMES`/`DNS_NAMES6` value of `addrs` (None: none, or too many for the fast
/// path).
pub fn dns_addrs<I>(addrs: &[I]) -> Option<DnsAddrs<I::Kernel>>
where
    I: Family,
    I::Kernel: Addr,
{
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

/// Makes `map` hold exactly `want`, `written` what it held; (written, removed).
fn sync<A: Addr + aya::Pod>(
    map: &mut HashMap<MapData, DnsKey, DnsAddrs<A>>,
    written: &mut StdHashMap<DnsKey, DnsAddrs<A>>,
    want: &StdHashMap<DnsKey, DnsAddrs<A>>,
    name: &'static str,
) -> Result<(usize, usize), DatapathError> {
    let mut n = 0;
    for (k, v) in want {
        // The same addresses, wherever the rotation stands.
        if !written
            .get(k)
            .is_some_and(|h| h.count == v.count && h.addrs == v.addrs)
        {
            map.insert(k, v, 0)
                .map_err(|e| DatapathError::Map(name, e))?;
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
        removed(name, map.remove(k))?;
        written.remove(k);
    }
    Ok((n, gone.len()))
}

impl Datapath {
    /// Makes the fast path's maps hold exactly `want`; (written, removed).
    pub fn set_dns_names(&mut self, want: &KernelNames) -> Result<(usize, usize), DatapathError> {
        if self.dns_written.a.is_none() {
            let have: Vec<(DnsKey, DnsAddrs)> =
                self.scan(map_names::DNS_NAMES, &self.whole.dns_names);
            self.dns_written.a = Some(have.into_iter().collect());
        }
        if self.dns_written.aaaa.is_none() {
            let have = self.dns_names6.iter().filter_map(Result::ok).collect();
            self.dns_written.aaaa = Some(have);
        }
        let written = &mut self.dns_written;
        let (n4, gone4) = sync(
            &mut self.dns_names,
            written.a.get_or_insert_with(StdHashMap::new),
            &want.a,
            map_names::DNS_NAMES,
        )?;
        let (n6, gone6) = sync(
            &mut self.dns_names6,
            written.aaaa.get_or_insert_with(StdHashMap::new),
            &want.aaaa,
            map_names::DNS_NAMES6,
        )?;
        Ok((n4 + n6, gone4 + gone6))
    }

    /// What the fast path answers for `key` (tests).
    pub fn dns_name(&self, key: &DnsKey) -> Option<DnsAddrs> {
        self.dns_names.get(key, 0).ok()
    }

    /// What the fast path answers AAAA for `key` (tests).
    pub fn dns_name6(&self, key: &DnsKey) -> Option<DnsAddrs<In6>> {
        self.dns_names6.get(key, 0).ok()
    }
}
