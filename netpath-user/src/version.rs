//! What this build is: its version, git commit and the hash of the kernel programs it embeds
//! (set by `build.rs`), and the features compiled in beyond the product. Every side that
//! reports it (`--version`, the API, `/metrics`, the cluster's node records, the agent's first
//! log line) reads it here.

/// The package version (`NETPATH_VERSION` at build time; default the crate's).
pub const VERSION: &str = env!("NETPATH_VERSION");
/// The git commit of the build (`-dirty` when the tree had changes).
pub const GIT_COMMIT: &str = env!("NETPATH_GIT_COMMIT");
/// SHA-256 of the embedded eBPF object: which kernel programs this build loads.
pub const EBPF_SHA256: &str = env!("NETPATH_EBPF_SHA256");

/// Cargo features this build has beyond the product's.
pub const FEATURES: &[&str] = &[
    #[cfg(feature = "testing")]
    "testing",
];

/// `netpath --version`: the version, the commit and the kernel programs' hash, on one line.
pub static VERSION_LINE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut line = format!(
        "{VERSION} (commit {GIT_COMMIT}, ebpf sha256:{})",
        &EBPF_SHA256[..EBPF_SHA256.len().min(16)]
    );
    if !FEATURES.is_empty() {
        line += &format!(" [{}]", FEATURES.join(","));
    }
    line
});
