//! Rebuild the eBPF object when bpf-linker changes (it is the linker of this crate), and tell
//! bpf-linker to leave LLVM's lowering of memory intrinsics as it is.
use which::which;

fn main() {
    // bpf-linker passes `--bpf-expand-memcpy-in-order` to LLVM by default, for JITs that
    // pattern-match copies (offloaded NICs). With it, LLVM's BPF backend expands `memcpy`
    // alone and turns every `memset` and `memmove` into a call to a byte-at-a-time loop: a
    // 16-byte IPv6 address written into a packet, a zeroed FIB lookup's 64 bytes, a struct's
    // padding cleared. Without it they are plain word stores, as clang emits them.
    println!("cargo:rustc-link-arg-bins=--disable-expand-memcpy-in-order");
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
