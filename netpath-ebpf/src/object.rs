//! What every BPF object of this crate carries: the license the kernel checks before it lets
//! a program call GPL-only helpers, and the panic handler `no_std` needs (never reached: the
//! verifier rejects a program that could panic).

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
