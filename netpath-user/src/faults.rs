//! Fault injection for the in-memory test doubles (`datapath::fake`, `netlink::fake`,
//! `agent::store`'s memory store): [`Faults`] makes the N-th change fail, so a test can walk a
//! transaction through every failure point and check that nothing changed. Compiled for unit
//! tests and with feature `testing`.
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

/// Counts changes across every fake that shares it and fails the one numbered `fail_at`
/// (once: undoing afterwards succeeds).
#[derive(Clone, Debug, Default)]
pub struct Faults(Arc<FaultsInner>);

#[derive(Debug, Default)]
struct FaultsInner {
    steps: AtomicUsize,
    /// 0: never; N: the N-th change fails.
    fail_at: AtomicUsize,
}

impl Faults {
    /// No failure.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Arms the injector: counting starts again and change number `n` (from 1) fails.
    pub fn fail_at(&self, n: usize) {
        self.0.steps.store(0, Ordering::SeqCst);
        self.0.fail_at.store(n, Ordering::SeqCst);
    }

    /// How many changes were made (or tried) since the last [`Faults::fail_at`].
    pub fn steps(&self) -> usize {
        self.0.steps.load(Ordering::SeqCst)
    }

    /// Whether the injected failure happened.
    pub fn fired(&self) -> bool {
        let at = self.0.fail_at.load(Ordering::SeqCst);
        at != 0 && self.steps() >= at
    }

    /// Counts a change named `what`; `Err` when it is the one that must fail.
    pub fn step(&self, what: &str) -> Result<(), String> {
        let n = self.0.steps.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.0.fail_at.load(Ordering::SeqCst) {
            return Err(what.to_string());
        }
        Ok(())
    }
}

/// [`Faults`] inside a fake, ignored by its comparisons.
#[derive(Clone, Debug, Default)]
pub struct FaultsHandle(pub Faults);

impl PartialEq for FaultsHandle {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for FaultsHandle {}
