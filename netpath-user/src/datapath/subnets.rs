//! The networks' subnets, both families (kernel: `forward::subnet_of`): `SUBNETS` and
//! `SUBNETS6` (LPM tries, subnet → network id), and `NO_SUBNET`, the blocks of the address
//! space no subnet overlaps, where the kernel does not ask the tries. That entry only ever
//! claims less than the tries hold: a subnet's blocks are cleared before its trie holds it and
//! set again once it is gone (an entry cleared where it need not be costs a look, one set
//! where a subnet is would let what is routed at that network past the uplink's check).
use std::collections::HashMap as StdHashMap;
use std::hash::Hash;

use aya::maps::{lpm_trie::Key as LpmKey, Array, LpmTrie, MapData};
use netpath_common::{map_names, no_subnet, Addr};

use super::{lpm_key, removed, Datapath, DatapathError};
use crate::model::Network;

/// Writes family `K`'s entry of `NO_SUBNET`: every block set but those of the subnets `trie`
/// holds and of `also` (subnets about to be written). A trie that cannot be read clears every
/// block (the trie asked for every address).
pub(super) fn write_no_subnet<K: Addr + aya::Pod>(
    blocks: &mut Array<MapData, no_subnet::Blocks>,
    trie: &LpmTrie<MapData, K, u32>,
    also: impl IntoIterator<Item = (K, u32)>,
) -> Result<(), DatapathError> {
    let entry = match trie.keys().collect::<Result<Vec<_>, _>>() {
        Ok(keys) => no_subnet::entry(keys.iter().map(|k| (k.data(), k.prefix_len())).chain(also)),
        Err(_) => [0; (no_subnet::BLOCKS / 64) as usize],
    };
    blocks
        .set(K::FAMILY, entry, 0)
        .map_err(|e| DatapathError::Map(map_names::NO_SUBNET, e))
}

/// Makes a family's subnets' trie hold exactly `want` ([`sync_trie`]), its `NO_SUBNET` entry
/// cleared for the new subnets first and set for the gone ones last.
pub(super) fn sync_subnets<K: Addr + aya::Pod>(
    name: &'static str,
    trie: &mut LpmTrie<MapData, K, u32>,
    blocks: &mut Array<MapData, no_subnet::Blocks>,
    want: &StdHashMap<(u32, K), u32>,
) -> Result<(usize, usize), DatapathError> {
    write_no_subnet(
        blocks,
        trie,
        want.keys().map(|(prefix, addr)| (*addr, *prefix)),
    )?;
    let done = sync_trie(name, trie, want)?;
    write_no_subnet(blocks, trie, [])?;
    Ok(done)
}

/// Makes the LPM trie `trie` (network subnets → network id) hold exactly `want`, keyed by
/// (prefix length, address). Returns (written, removed).
pub(super) fn sync_trie<K>(
    name: &'static str,
    trie: &mut LpmTrie<MapData, K, u32>,
    want: &StdHashMap<(u32, K), u32>,
) -> Result<(usize, usize), DatapathError>
where
    K: aya::Pod + Eq + Hash,
{
    let have: Vec<LpmKey<K>> = trie.keys().filter_map(Result::ok).collect();
    let mut written = 0;
    for ((prefix, addr), id) in want {
        let key = LpmKey::new(*prefix, *addr);
        if trie.get(&key, 0).ok() != Some(*id) {
            trie.insert(&key, id, 0)
                .map_err(|e| DatapathError::Map(name, e))?;
            written += 1;
        }
    }
    let mut gone = 0;
    for key in have {
        if !want.contains_key(&(key.prefix_len(), key.data())) {
            removed(name, trie.remove(&key))?;
            gone += 1;
        }
    }
    Ok((written, gone))
}

/// Writes subnet `key` of network `id` into `trie`, its blocks cleared first.
fn add_subnet<K: Addr + aya::Pod>(
    name: &'static str,
    trie: &mut LpmTrie<MapData, K, u32>,
    blocks: &mut Array<MapData, no_subnet::Blocks>,
    key: LpmKey<K>,
    id: u32,
) -> Result<(), DatapathError> {
    write_no_subnet(blocks, trie, [(key.data(), key.prefix_len())])?;
    trie.insert(&key, id, 0)
        .map_err(|e| DatapathError::Map(name, e))
}

/// Removes subnet `key` from `trie`, then sets its blocks again.
fn remove_subnet<K: Addr + aya::Pod>(
    name: &'static str,
    trie: &mut LpmTrie<MapData, K, u32>,
    blocks: &mut Array<MapData, no_subnet::Blocks>,
    key: LpmKey<K>,
) -> Result<(), DatapathError> {
    removed(name, trie.remove(&key))?;
    write_no_subnet(blocks, trie, [])
}

impl Datapath {
    /// Writes `net`'s subnets, of either family.
    pub(super) fn add_subnets(&mut self, net: &Network) -> Result<(), DatapathError> {
        if let Some(v4) = &net.v4 {
            let key = lpm_key(&v4.subnet);
            add_subnet(
                map_names::SUBNETS,
                &mut self.subnets,
                &mut self.no_subnet,
                key,
                net.net_id,
            )?;
        }
        if let Some(v6) = &net.v6 {
            let key = lpm_key(&v6.subnet);
            let trie = self.v6.subnets_mut();
            add_subnet(
                map_names::SUBNETS6,
                trie,
                &mut self.no_subnet,
                key,
                net.net_id,
            )?;
        }
        Ok(())
    }

    /// Removes `net`'s subnets.
    pub(super) fn remove_subnets(&mut self, net: &Network) -> Result<(), DatapathError> {
        if let Some(v4) = &net.v4 {
            let key = lpm_key(&v4.subnet);
            remove_subnet(
                map_names::SUBNETS,
                &mut self.subnets,
                &mut self.no_subnet,
                key,
            )?;
        }
        if let Some(v6) = &net.v6 {
            let key = lpm_key(&v6.subnet);
            remove_subnet(
                map_names::SUBNETS6,
                self.v6.subnets_mut(),
                &mut self.no_subnet,
                key,
            )?;
        }
        Ok(())
    }
}
