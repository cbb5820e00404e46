//! Identities: one number for each distinct set of labels that endpoints carry, as Cilium's
//! security identities. Network policy selects endpoints by their labels; the kernel cannot
//! match label sets per packet, so the agent gives every set a number and the datapath's
//! policy (`admit` in netpath-ebpf's `policy.rs`) will key on numbers. Endpoints with the same
//! labels share an identity; a number is held while some endpoint has its labels and only
//! then given to another set. Numbers are this agent's (rebuilt from the state at each start:
//! the datapath's policy entries are rewritten with them), never stored or sent to other nodes.
use std::collections::BTreeMap;

use super::{Labels, State};

/// A label set's number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(pub u32);

impl Identity {
    /// The host itself (its own sockets, the gateway side of every network).
    pub const HOST: Identity = Identity(1);
    /// Anything that is neither the host nor an endpoint: known by its address only.
    pub const WORLD: Identity = Identity(2);
    /// Numbers below this are reserved for identities like [`Identity::HOST`].
    pub const FIRST_OF_ENDPOINTS: u32 = 256;
}

/// The identities of the label sets in use, with how many endpoints hold each.
#[derive(Clone, Debug, Default)]
pub struct Identities {
    held: BTreeMap<Labels, (Identity, usize)>,
    /// Numbers given back, reused before new ones.
    free: Vec<u32>,
    next: u32,
    /// The first number given (0: [`Identity::FIRST_OF_ENDPOINTS`]).
    first: u32,
}

impl Identities {
    /// Identities numbered from `first` on (a range of their own, e.g. ipBlock prefixes').
    pub fn starting_at(first: u32) -> Identities {
        Identities {
            first,
            ..Identities::default()
        }
    }

    /// The identities of every endpoint of `state`.
    pub fn of_state(state: &State) -> Identities {
        let mut ids = Identities::default();
        for ep in state.endpoints.values() {
            ids.acquire(&ep.labels);
        }
        ids
    }

    /// The identity of `labels` for one more endpoint: the set's own if some endpoint has
    /// it already, else a number no other set holds.
    pub fn acquire(&mut self, labels: &Labels) -> Identity {
        if let Some((id, count)) = self.held.get_mut(labels) {
            *count += 1;
            return *id;
        }
        let number = self.free.pop().unwrap_or_else(|| {
            let first = if self.first == 0 {
                Identity::FIRST_OF_ENDPOINTS
            } else {
                self.first
            };
            let n = first + self.next;
            self.next += 1;
            n
        });
        let id = Identity(number);
        self.held.insert(labels.clone(), (id, 1));
        id
    }

    /// One endpoint with `labels` is gone (or changed its labels); the set's number is free
    /// once no endpoint has it. None when no endpoint held the set.
    pub fn release(&mut self, labels: &Labels) -> Option<Identity> {
        let (id, count) = self.held.get_mut(labels)?;
        let id = *id;
        *count -= 1;
        if *count == 0 {
            self.held.remove(labels);
            self.free.push(id.0);
        }
        Some(id)
    }

    /// Takes over number `id` for `labels` (what a datapath still holds from an earlier
    /// agent), so that the same set keeps its number and no other set gets it. A number or a
    /// set taken already is left as it is.
    pub fn adopt(&mut self, labels: &Labels, id: Identity) {
        if self.held.contains_key(labels) || self.held.values().any(|(i, _)| *i == id) {
            return;
        }
        self.held.insert(labels.clone(), (id, 0));
        let first = if self.first == 0 {
            Identity::FIRST_OF_ENDPOINTS
        } else {
            self.first
        };
        // New numbers start past every adopted one; those below it not taken are free.
        if let Some(n) = id.0.checked_sub(first).map(|n| n + 1) {
            while self.next < n {
                if first + self.next != id.0 {
                    self.free.push(first + self.next);
                }
                self.next += 1;
            }
            self.free.retain(|f| *f != id.0);
        }
    }

    /// Makes the sets held exactly `sets` (one for each endpoint), keeping the number of every
    /// set still held: an endpoint that comes, goes or changes its labels moves no other.
    pub fn assign<'a>(&mut self, sets: impl IntoIterator<Item = &'a Labels>) {
        let mut want: BTreeMap<&Labels, usize> = BTreeMap::new();
        for s in sets {
            *want.entry(s).or_default() += 1;
        }
        let gone: Vec<Labels> = self
            .held
            .keys()
            .filter(|l| !want.contains_key(l))
            .cloned()
            .collect();
        // New sets first, then the numbers of the sets gone are freed: a number never changes
        // hands within one change, so the kernel's rules for it (old or new) never apply to
        // another set's endpoints while the maps are rewritten.
        for (l, n) in want {
            if self.of(l).is_none() {
                self.acquire(l);
            }
            if let Some((_, count)) = self.held.get_mut(l) {
                *count = n;
            }
        }
        for l in gone {
            if let Some((id, _)) = self.held.remove(&l) {
                self.free.push(id.0);
            }
        }
    }

    /// The identity of `labels`, if some endpoint has them.
    pub fn of(&self, labels: &Labels) -> Option<Identity> {
        self.held.get(labels).map(|(id, _)| *id)
    }

    /// How many label sets have an identity.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no endpoint holds an identity.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn same_labels_share_a_number_and_others_get_their_own() {
        let mut ids = Identities::default();
        let web = labels(&[("app", "web")]);
        let db = labels(&[("app", "db")]);
        let a = ids.acquire(&web);
        assert_eq!(ids.acquire(&web), a);
        let b = ids.acquire(&db);
        assert_ne!(a, b);
        assert!(a.0 >= Identity::FIRST_OF_ENDPOINTS && b.0 >= Identity::FIRST_OF_ENDPOINTS);
        // No labels is a set too: every unlabelled endpoint shares one.
        let none = ids.acquire(&Labels::new());
        assert!(none != a && none != b);
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn assigning_keeps_the_numbers_of_sets_still_held() {
        let mut ids = Identities::default();
        let (web, db, cache) = (
            labels(&[("app", "web")]),
            labels(&[("app", "db")]),
            labels(&[("app", "cache")]),
        );
        ids.assign([&web, &db, &web]);
        let (w, d) = (ids.of(&web).unwrap(), ids.of(&db).unwrap());
        ids.assign([&db, &cache]);
        assert_eq!(ids.of(&db), Some(d));
        assert_eq!(ids.of(&web), None);
        assert_ne!(
            ids.of(&cache),
            Some(w),
            "not reused within the change that freed it"
        );
        assert_eq!(ids.len(), 2);
        let fresh = labels(&[("app", "fresh")]);
        ids.assign([&db, &cache, &fresh]);
        assert_eq!(ids.of(&fresh), Some(w), "reused by a later change");
    }

    #[test]
    fn adopted_numbers_stay_with_their_sets_and_go_to_no_other() {
        let mut ids = Identities::default();
        let (web, db, new) = (
            labels(&[("app", "web")]),
            labels(&[("app", "db")]),
            labels(&[("app", "new")]),
        );
        // An earlier agent numbered db 258 and web 256.
        ids.adopt(&db, Identity(258));
        ids.adopt(&web, Identity(256));
        ids.assign([&web, &db, &new]);
        assert_eq!(ids.of(&web), Some(Identity(256)));
        assert_eq!(ids.of(&db), Some(Identity(258)));
        assert_eq!(ids.of(&new), Some(Identity(257)), "a number no set had");
        let other = ids.acquire(&labels(&[("app", "other")]));
        assert_eq!(other, Identity(259));
    }

    #[test]
    fn a_number_is_held_until_its_last_endpoint_goes() {
        let mut ids = Identities::default();
        let web = labels(&[("app", "web")]);
        let a = ids.acquire(&web);
        ids.acquire(&web);
        assert_eq!(ids.release(&web), Some(a));
        assert_eq!(ids.of(&web), Some(a), "one endpoint still holds it");
        let db = ids.acquire(&labels(&[("app", "db")]));
        assert_ne!(db, a);
        assert_eq!(ids.release(&web), Some(a));
        assert_eq!(ids.of(&web), None);
        assert_eq!(ids.release(&web), None);
        // The freed number goes to the next new set, never to one still held.
        let cache = ids.acquire(&labels(&[("app", "cache")]));
        assert_eq!(cache, a);
        assert_ne!(cache, db);
    }
}
