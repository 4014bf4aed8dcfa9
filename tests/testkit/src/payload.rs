//! Payloads for stream tests.

/// `len` deterministic bytes from `seed` (xorshift), with no short period: a stream that loses,
/// repeats or reorders a chunk of them no longer compares equal. The same `seed` gives the same
/// prefix whatever the length.
///
/// ```
/// let a = tether_testkit::pattern(1 << 20, 7);
/// assert_eq!(a.len(), 1 << 20);
/// assert_eq!(a[..1000], tether_testkit::pattern(1000, 7)[..]);
/// assert_ne!(a[..1000], tether_testkit::pattern(1000, 8)[..]);
/// ```
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::pattern;

    #[test]
    fn a_moved_chunk_changes_the_stream() {
        let p = pattern(64 * 1024, 42);
        let mut swapped = p.clone();
        let (a, b) = swapped.split_at_mut(32 * 1024);
        a[..4096].swap_with_slice(&mut b[..4096]);
        assert_ne!(p, swapped);
        assert_ne!(p[..4096], p[4096..8192]);
    }
}
