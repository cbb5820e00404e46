//! The kernel programs' own log lines (aya-log), opt-in with `--ebpf-log LEVEL`: they log
//! only on rare paths (a packet with malformed headers, a reply with no route, outbound NAT
//! out of ports), and with the level at 0 (the default) the verifier drops those paths'
//! logging altogether. Each record goes to the agent's log under target
//! [`KERNEL_LOG_TARGET`], with the program module it came from.
use tracing::Level;

/// The target of the kernel programs' records in the agent's log.
pub const KERNEL_LOG_TARGET: &str = "netpath_kernel";

/// The global the kernel programs read their log level from (aya-log's).
pub const LEVEL_GLOBAL: &str = "AYA_LOG_LEVEL";

/// Hands aya-log records to `tracing`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, r: &log::Record<'_>) {
        let module = r.target();
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(target: KERNEL_LOG_TARGET, $level, module, "{}", r.args())
            };
        }
        match r.level() {
            log::Level::Error => emit!(Level::ERROR),
            log::Level::Warn => emit!(Level::WARN),
            log::Level::Info => emit!(Level::INFO),
            log::Level::Debug => emit!(Level::DEBUG),
            log::Level::Trace => emit!(Level::TRACE),
        }
    }

    fn flush(&self) {}
}

/// The reader of the kernel's log records.
pub type KernelLog = aya_log::EbpfLogger<ToTracing>;

/// Reads the kernel's log records for as long as the agent runs.
pub async fn read(log: KernelLog) -> std::io::Result<()> {
    // SAFETY: the logger owns its ring buffer's descriptor, which stays open and the same
    // for as long as the AsyncFd holds it.
    let mut fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(log, tokio::io::Interest::READABLE)
    }?;
    loop {
        let mut guard = fd.readable_mut().await?;
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}
