//! Internet checksum arithmetic (RFC 1071, RFC 1624's incremental updates), on values as
//! they sit in packet memory: what `packet.rs` applies to XDP frames and skbs alike, and the
//! checksums of headers built whole (NAT46, ICMP errors).
use aya_ebpf::helpers::bpf_csum_diff;
use netpath_common::{proto, In6};

#[inline(always)]
fn csum_fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The Internet checksum of `words` (each as it sits in memory): what an IPv4 header's
/// checksum field holds once it is written over a zero one.
#[inline(always)]
pub fn checksum(words: &[u32]) -> u16 {
    fold_words(sum_words(words))
}

/// The ICMPv6 checksum of `body` (words as they sit in memory, its checksum field zero) from
/// `src` to `dst`: the pseudo-header (addresses, length, next header) and the message.
#[inline(always)]
pub fn icmp6_checksum(src: &In6, dst: &In6, body: &[u32]) -> u16 {
    let pseudo = [
        ((body.len() * 4) as u32).to_be(),
        u32::from(proto::ICMPV6).to_be(),
    ];
    fold_words(sum_words(&src.words) + sum_words(&dst.words) + sum_words(&pseudo) + sum_words(body))
}

/// The 16-bit halves of `words`, summed.
#[inline(always)]
fn sum_words(words: &[u32]) -> u64 {
    let mut sum: u64 = 0;
    for w in words {
        sum += u64::from(*w & 0xffff) + u64::from(*w >> 16);
    }
    sum
}

/// A sum of 16-bit halves, folded and complemented: the checksum field's value.
#[inline(always)]
fn fold_words(sum: u64) -> u16 {
    let sum = (sum & 0xffff_ffff) as u32 + (sum >> 32) as u32;
    !csum_fold(sum)
}

/// A checksum `check` (complete) with `diff` (a `bpf_csum_diff` result) applied.
#[inline(always)]
pub fn csum_apply(check: u16, diff: u32) -> u16 {
    let sum = u64::from(!check) + u64::from(diff);
    let sum = (sum & 0xffff_ffff) as u32 + (sum >> 32) as u32;
    !csum_fold(sum)
}

/// RFC 1624 eqn. 3 for a 32-bit field: HC' = ~(~HC + ~m + m').
#[inline(always)]
pub fn csum_replace4(check: u16, from: u32, to: u32) -> u16 {
    let nfrom = !from;
    let sum = (!check) as u32 + (nfrom & 0xffff) + (nfrom >> 16) + (to & 0xffff) + (to >> 16);
    !csum_fold(sum)
}

/// What replacing IPv6 address `from` by `to` adds to a checksum, as `bpf_csum_diff` would
/// give it (a 32-bit ones' complement sum), computed here: eight words summed, where the
/// helper call copies both addresses to its own buffer and sums them there.
#[inline(always)]
pub fn csum_diff16(from: &In6, to: &In6) -> u32 {
    let mut sum: u64 = 0;
    for i in 0..4 {
        sum += u64::from(!from.words[i]) + u64::from(to.words[i]);
    }
    // At most eight 32-bit terms: two folds bring it to 32 bits.
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

/// RFC 1624 eqn. 3 for a 128-bit field (an IPv6 address).
#[inline(always)]
pub fn csum_replace16(check: u16, from: &In6, to: &In6) -> u16 {
    csum_apply(check, csum_diff16(from, to))
}

/// RFC 1624 eqn. 3 for a 16-bit field.
#[inline(always)]
pub fn csum_replace2(check: u16, from: u16, to: u16) -> u16 {
    let sum = (!check) as u32 + (!from) as u32 + to as u32;
    !csum_fold(sum)
}

/// What replacing the words `from` by `to` (a packet's addresses, as NAT46 changes their
/// family) adds to a checksum, by `bpf_csum_diff`.
#[inline(always)]
pub fn csum_diff(from: &mut [u32], to: &mut [u32]) -> Option<u32> {
    // SAFETY: two buffers on the stack, of the sizes given, as the helper reads them.
    let d = unsafe {
        bpf_csum_diff(
            from.as_mut_ptr(),
            (from.len() * 4) as u32,
            to.as_mut_ptr(),
            (to.len() * 4) as u32,
            0,
        )
    };
    (d >= 0).then_some(d as u32)
}
