//! Per-thread reuse of the large byte buffers of the write path.
//!
//! A 5,000-line request needs about a dozen buffers of a few hundred KB
//! (body, one record per target backend). Fresh ones come from the kernel
//! untouched, and faulting their pages in cost more than the copies into
//! them (~3 µs a page on the VMs we measured, ~0.3 ms per 400 KB buffer).
//! Kept per thread they stay mapped from one request to the next. What all
//! threads keep together is bounded by the memory budget's share
//! ([`crate::memory::kept_limit`]): a per-thread bound alone let the
//! blocking pool's threads each keep 16 MiB.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Buffers larger than this are dropped rather than kept.
const MAX_KEPT_CAPACITY: usize = 4 << 20;
/// Most buffers a thread keeps.
const MAX_KEPT: usize = 16;

/// Bytes (capacity) kept over all threads.
static KEPT_BYTES: AtomicUsize = AtomicUsize::new(0);

/// One thread's kept buffers; what it holds leaves the global count when the thread ends.
struct Kept(Vec<Vec<u8>>);

impl Drop for Kept {
    fn drop(&mut self) {
        let held: usize = self.0.iter().map(Vec::capacity).sum();
        KEPT_BYTES.fetch_sub(held, Ordering::Relaxed);
    }
}

thread_local! {
    static KEPT: RefCell<Kept> = const { RefCell::new(Kept(Vec::new())) };
}

/// An empty buffer with room for at least `capacity` bytes, reused from
/// this thread's earlier requests where one is large enough.
pub(crate) fn take(capacity: usize) -> Vec<u8> {
    let reused = KEPT.with(|kept| {
        let kept = &mut kept.borrow_mut().0;
        // The smallest that fits wastes least; few enough to scan.
        let best = kept
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= capacity)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        let buf = match best {
            Some(i) => Some(kept.swap_remove(i)),
            None => kept.pop(),
        };
        if let Some(b) = &buf {
            KEPT_BYTES.fetch_sub(b.capacity(), Ordering::Relaxed);
        }
        buf
    });
    let mut buf = reused.unwrap_or_default();
    buf.clear();
    buf.reserve(capacity);
    buf
}

/// Hands a buffer back for reuse by this thread.
pub(crate) fn give(buf: Vec<u8>) {
    let cap = buf.capacity();
    if cap == 0 || cap > MAX_KEPT_CAPACITY {
        return;
    }
    KEPT.with(|kept| {
        let kept = &mut kept.borrow_mut().0;
        if kept.len() < MAX_KEPT && reserve(&KEPT_BYTES, cap, crate::memory::kept_limit()) {
            kept.push(buf);
        }
    });
}

/// Bytes (capacity) kept for reuse over all threads now.
pub(crate) fn kept_bytes() -> usize {
    KEPT_BYTES.load(Ordering::Relaxed)
}

/// Counts `cap` more bytes in `held` if that stays within `limit`.
fn reserve(held: &AtomicUsize, cap: usize, limit: usize) -> bool {
    held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
        (held + cap <= limit).then_some(held + cap)
    })
    .is_ok()
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
        assert_eq!(KEPT.with(|k| k.borrow().0.len()), 0);
    }

    #[test]
    fn what_a_thread_keeps_is_bounded() {
        give(Vec::with_capacity(MAX_KEPT_CAPACITY + 1));
        for _ in 0..MAX_KEPT + 5 {
            give(Vec::with_capacity(1 << 20));
        }
        KEPT.with(|k| {
            let k = &k.borrow().0;
            assert_eq!(k.len(), MAX_KEPT);
            assert!(k.iter().all(|b| b.capacity() <= MAX_KEPT_CAPACITY));
        });
    }

    #[test]
    fn what_all_threads_keep_is_bounded() {
        let held = AtomicUsize::new(1000);
        assert!(reserve(&held, 2000, 4000));
        assert!(!reserve(&held, 2000, 4000), "beyond the bound");
        assert!(reserve(&held, 1000, 4000));
        assert_eq!(held.load(Ordering::Relaxed), 4000);
    }
}
