//! The agent's memory. glibc's allocator keeps what a process frees for its next allocation
//! rather than giving it back, and gives each thread that allocates an arena of its own (up to
//! eight per core). The agent frees a great deal that it does not need again soon: the
//! kernel's BTF and its own object parsed while loading, the state cloned by each transaction,
//! the socket tables read for a range of ports. Left alone its resident memory grows with
//! every burst of work and never shrinks. So the agent caps the arenas at two (its threads
//! seldom allocate at once), keeps large buffers (a request's answer, the state file's text, a
//! range's journal) out of the heaps so that each goes back the moment it is freed, and gives
//! what is free back to the kernel after start, within a [`TRIM_INTERVAL`] of every change of
//! its state, and every [`TRIM_ANYWAY`]; the pages of the eBPF object embedded in its binary
//! go back once it is loaded ([`release_object`]).
use std::{sync::Arc, time::Duration};

use super::{store::StateStore, Shared};
use crate::{datapath::DatapathOps, netlink::LinkOps};

/// How soon after a change free memory is given back.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(1);
/// How often it is given back when nothing changed (reads free memory too).
pub const TRIM_ANYWAY: Duration = Duration::from_secs(30);

/// Allocations from this size up are mapped on their own and unmapped when freed. glibc's
/// default is the same size, but it rises to whatever large buffer was freed last (up to
/// 32 MB), after which such buffers stay in the heap; set, it stays.
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Caps glibc's arenas and fixes the size from which allocations are mapped on their own;
/// call before any thread starts.
pub fn tune_allocator() {
    // SAFETY: plain allocator tuning calls, before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Gives free memory at the ends and in the middle of the heaps back to the kernel.
pub fn give_back() {
    // SAFETY: plain allocator call; safe at any time.
    unsafe { libc::malloc_trim(0) };
}

/// Gives back the pages of the embedded eBPF object (some 5 MB): read once at start, while
/// its programs and maps are loaded, and parsed into what the agent keeps, they would stay
/// resident for the agent's life. They are the binary's own pages, never written: one read
/// again later faults in from the file.
pub fn release_object(bytes: &'static [u8]) {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let start = (bytes.as_ptr() as usize).div_ceil(page) * page;
    let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
    if end > start {
        // SAFETY: whole pages inside a read-only static: dropping them only makes the next
        // read fault them in again, unchanged.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

/// Gives free memory back after each change of the agent's state, and now and then.
pub async fn keep_giving_back<D, L, S>(shared: Arc<Shared<D, L, S>>) -> anyhow::Result<()>
where
    D: DatapathOps + 'static,
    L: LinkOps + 'static,
    S: StateStore + 'static,
{
    let mut tick = tokio::time::interval(TRIM_INTERVAL);
    let mut last: Option<Arc<crate::model::State>> = None;
    let mut idle = Duration::ZERO;
    loop {
        tick.tick().await;
        let now = shared.state();
        let changed = last.as_ref().is_none_or(|l| !Arc::ptr_eq(l, &now));
        last = Some(now);
        idle += TRIM_INTERVAL;
        if changed || idle >= TRIM_ANYWAY {
            idle = Duration::ZERO;
            tokio::task::spawn_blocking(give_back).await?;
        }
    }
}
