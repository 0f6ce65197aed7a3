//! Per-thread reuse of the large byte buffers of the write path.
//!
//! A 5,000-line request needs about a dozen buffers of a few hundred KB
//! (body, one record per target backend). Fresh ones come from the kernel
//! untouched, and faulting their pages in cost more than the copies into
//! them (~3 µs a page on the VMs we measured, ~0.3 ms per 400 KB buffer).
//! Kept per thread they stay mapped from one request to the next; the cap
//! below bounds what an idle thread holds.

use std::cell::RefCell;

/// Buffers larger than this are dropped rather than kept.
const MAX_KEPT_CAPACITY: usize = 4 << 20;
/// Most buffers a thread keeps.
const MAX_KEPT: usize = 16;
/// Most bytes (capacity) a thread keeps.
const MAX_KEPT_BYTES: usize = 16 << 20;

thread_local! {
    static KEPT: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least `capacity` bytes, reused from
/// this thread's earlier requests where one is large enough.
pub fn take(capacity: usize) -> Vec<u8> {
    let reused = KEPT.with(|kept| {
        let mut kept = kept.borrow_mut();
        // The smallest that fits wastes least; few enough to scan.
        let best = kept
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= capacity)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => Some(kept.swap_remove(i)),
            None => kept.pop(),
        }
    });
    let mut buf = reused.unwrap_or_default();
    buf.clear();
    buf.reserve(capacity);
    buf
}

/// Hands a buffer back for reuse by this thread.
pub fn give(buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > MAX_KEPT_CAPACITY {
        return;
    }
    KEPT.with(|kept| {
        let mut kept = kept.borrow_mut();
        let held: usize = kept.iter().map(Vec::capacity).sum();
        if kept.len() < MAX_KEPT && held + buf.capacity() <= MAX_KEPT_BYTES {
            kept.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_is_taken_again_empty() {
        let mut b = Vec::with_capacity(1000);
        b.extend_from_slice(b"old");
        let ptr = b.as_ptr();
        give(b);
        let again = take(500);
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.is_empty());
        assert!(again.capacity() >= 1000);
    }

    #[test]
    fn take_prefers_the_smallest_buffer_that_fits() {
        give(Vec::with_capacity(10_000));
        give(Vec::with_capacity(2_000));
        give(Vec::with_capacity(100));
        assert_eq!(take(1_500).capacity(), 2_000);
        assert!(take(5_000).capacity() >= 10_000);
        // Only the 100-byte one is left: it is grown, not wasted.
        assert!(take(3_000).capacity() >= 3_000);
        assert_eq!(KEPT.with(|k| k.borrow().len()), 0);
    }

    #[test]
    fn what_a_thread_keeps_is_bounded() {
        give(Vec::with_capacity(MAX_KEPT_CAPACITY + 1));
        for _ in 0..MAX_KEPT + 5 {
            give(Vec::with_capacity(1 << 20));
        }
        KEPT.with(|k| {
            let k = k.borrow();
            assert_eq!(k.len(), MAX_KEPT);
            assert!(k.iter().all(|b| b.capacity() <= MAX_KEPT_CAPACITY));
        });
    }
}
