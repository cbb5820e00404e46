//! The agent's memory. glibc's allocator keeps what a process frees for its next allocation
//! rather than giving it back, and gives each thread that allocates an arena of its own (up to
//! eight per core). The agent frees a great deal that it does not need again soon: the
//! kernel's BTF and its own object parsed while loading, the state cloned by each transaction,
//! the socket tables read for a range of ports. Left alone its resident memory grows with
//! every burst of work and never shrinks. So the agent caps the arenas at two (its threads
//! seldom allocate at once) and gives what is free back to the kernel after start and then
//! every [`TRIM_INTERVAL`].
use std::time::Duration;

/// How often free memory is given back.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Caps glibc's arenas; call before any thread starts.
pub fn limit_arenas() {
    // SAFETY: plain allocator tuning call, before other threads exist.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
}

/// Gives free memory at the ends and in the middle of the heaps back to the kernel.
pub fn give_back() {
    // SAFETY: plain allocator call; safe at any time.
    unsafe { libc::malloc_trim(0) };
}

/// Gives free memory back every [`TRIM_INTERVAL`].
pub async fn keep_giving_back() -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(TRIM_INTERVAL);
    loop {
        tick.tick().await;
        tokio::task::spawn_blocking(give_back).await?;
    }
}
