//! Append-only storage for the mutable segment: one writer appends while any number of readers
//! read the published prefix, without locks.
//!
//! # Safety
//!
//! Slots live in buckets of doubling size that are allocated once and never move, so a slot's
//! address is stable. The contract that makes the `unsafe` blocks sound:
//!
//! 1. Writes go through `&mut ArenaWriter`-style exclusive access: [`Arena::write`] is only
//!    called by [`super::mutable::MutableSegment`] while holding its writer mutex, so there is
//!    one writer at a time.
//! 2. A slot is readable only once *published*: the writer stores the new published length with
//!    `Release` after writing the slot, and readers load it with `Acquire` and check the slot
//!    index against it ([`Arena::get`] asserts this), so every read happens-after the write.
//! 3. A published slot is never written again. Rolling back unpublished slots (after a failed
//!    fsync) may rewrite slots at or above the published length only; no reader can be looking
//!    at those, by (2).
//! 4. `initialized` counts slots ever written, so `Drop` drops exactly the initialized values.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

const FIRST_BITS: u32 = 10;
/// 2^10 · (2^23 − 1) slots: more than `u32::MAX`.
const BUCKETS: usize = 23;

/// Bucket index and index within the bucket of `slot`.
#[inline]
fn locate(slot: usize) -> (usize, usize) {
    let j = slot + (1 << FIRST_BITS);
    let b = (usize::BITS - 1 - j.leading_zeros()) as usize - FIRST_BITS as usize;
    (b, j - (1 << (b as u32 + FIRST_BITS)))
}

#[inline]
fn bucket_len(b: usize) -> usize {
    1 << (b as u32 + FIRST_BITS)
}

/// One bucket: slots that may not be initialized yet.
type Bucket<T> = OnceLock<Box<[UnsafeCell<MaybeUninit<T>>]>>;

/// Fixed-stride slots of `T`, written once each.
pub(crate) struct Arena<T> {
    buckets: [Bucket<T>; BUCKETS],
    stride: usize,
    initialized: AtomicUsize,
    published: AtomicUsize,
}

// SAFETY: readers and the writer never touch the same slot concurrently (module contract), so
// sharing the arena is as safe as sharing `T` values between threads.
unsafe impl<T: Send + Sync> Sync for Arena<T> {}
// SAFETY: the arena owns its `T` values; moving it moves them.
unsafe impl<T: Send> Send for Arena<T> {}

impl<T> Arena<T> {
    pub(crate) fn new(stride: usize) -> Self {
        assert!(stride > 0);
        Arena {
            buckets: std::array::from_fn(|_| OnceLock::new()),
            stride,
            initialized: AtomicUsize::new(0),
            published: AtomicUsize::new(0),
        }
    }

    fn bucket(&self, b: usize) -> &[UnsafeCell<MaybeUninit<T>>] {
        self.buckets[b].get_or_init(|| {
            (0..bucket_len(b) * self.stride)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect()
        })
    }

    /// Writes slot `slot` (must be `<=` every slot written so far + 1, and `>=` the published
    /// length). Only the single writer may call this (module contract, rule 1).
    pub(crate) fn write(&self, slot: usize, values: impl ExactSizeIterator<Item = T>) {
        assert_eq!(values.len(), self.stride);
        assert!(
            slot >= self.published.load(Ordering::Acquire),
            "published slots are immutable"
        );
        let init = self.initialized.load(Ordering::Relaxed);
        assert!(slot <= init, "slots are written in order");
        let (b, i) = locate(slot);
        let cells = &self.bucket(b)[i * self.stride..(i + 1) * self.stride];
        for (cell, v) in cells.iter().zip(values) {
            // SAFETY: no reader can access an unpublished slot (rule 2) and we are the only
            // writer (rule 1), so this exclusive access is sound. A slot below `initialized` holds
            // a value from a rolled-back write that must be dropped first.
            unsafe {
                let p = &mut *cell.get();
                if slot < init {
                    p.assume_init_drop();
                }
                p.write(v);
            }
        }
        if slot == init {
            self.initialized.store(init + 1, Ordering::Relaxed);
        }
    }

    /// Makes slots `< len` readable.
    pub(crate) fn publish(&self, len: usize) {
        assert!(len <= self.initialized.load(Ordering::Relaxed));
        self.published.fetch_max(len, Ordering::Release);
    }

    pub(crate) fn published(&self) -> usize {
        self.published.load(Ordering::Acquire)
    }

    /// Reads a published slot. Panics if the slot is not published.
    #[inline]
    pub(crate) fn get(&self, slot: usize) -> &[T] {
        assert!(
            slot < self.published.load(Ordering::Acquire),
            "slot {slot} is not published"
        );
        let (b, i) = locate(slot);
        let bucket = self.buckets[b]
            .get()
            .expect("published slots have a bucket");
        let cells = &bucket[i * self.stride..(i + 1) * self.stride];
        // SAFETY: the slot is published, hence initialized and never written again (rules 2, 3);
        // `UnsafeCell<MaybeUninit<T>>` has the same layout as `T`.
        unsafe { std::slice::from_raw_parts(cells.as_ptr().cast::<T>(), self.stride) }
    }

    /// Reads a written slot, published or not. Only the writer may call this, with the same
    /// exclusive access as [`write`](Self::write) (module contract, rule 1): no other thread
    /// writes, and readers never touch unpublished slots.
    pub(crate) fn get_written(&self, slot: usize) -> &[T] {
        assert!(
            slot < self.initialized.load(Ordering::Relaxed),
            "slot {slot} was never written"
        );
        let (b, i) = locate(slot);
        let bucket = self.buckets[b].get().expect("written slots have a bucket");
        let cells = &bucket[i * self.stride..(i + 1) * self.stride];
        // SAFETY: the slot is initialized (rule 4) and, by rule 1, nothing writes it while the
        // writer reads it.
        unsafe { std::slice::from_raw_parts(cells.as_ptr().cast::<T>(), self.stride) }
    }

    /// The published slots below `len`, as contiguous runs: `(first slot, values)`.
    pub(crate) fn runs(&self, len: usize) -> impl Iterator<Item = (usize, &[T])> {
        assert!(len <= self.published(), "runs past the published length");
        let mut start = 0;
        (0..BUCKETS).map_while(move |b| {
            if start >= len {
                return None;
            }
            let n = bucket_len(b).min(len - start);
            let bucket = self.buckets[b]
                .get()
                .expect("published slots have a bucket");
            // SAFETY: slots start..start+n are published (checked above), see `get`.
            let run =
                unsafe { std::slice::from_raw_parts(bucket.as_ptr().cast::<T>(), n * self.stride) };
            let first = start;
            start += n;
            Some((first, run))
        })
    }
}

impl<T> Drop for Arena<T> {
    fn drop(&mut self) {
        if !std::mem::needs_drop::<T>() {
            return;
        }
        let init = *self.initialized.get_mut();
        for slot in 0..init {
            let (b, i) = locate(slot);
            if let Some(bucket) = self.buckets[b].get_mut() {
                for cell in &mut bucket[i * self.stride..(i + 1) * self.stride] {
                    // SAFETY: slots below `initialized` hold a value (rule 4); we have `&mut self`.
                    unsafe { cell.get_mut().assume_init_drop() };
                }
            }
        }
    }
}

/// Links between versions of the same point: `u32` per slot, all accesses atomic (readers may
/// follow a link into a slot that is not yet published, so these must never be plain memory).
pub(crate) struct Links {
    buckets: [OnceLock<Box<[AtomicU32]>>; BUCKETS],
}

impl Links {
    pub(crate) fn new() -> Self {
        Links {
            buckets: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    pub(crate) fn set(&self, slot: usize, v: u32) {
        let (b, i) = locate(slot);
        self.buckets[b].get_or_init(|| {
            (0..bucket_len(b))
                .map(|_| AtomicU32::new(u32::MAX))
                .collect()
        })[i]
            .store(v, Ordering::Release);
    }

    pub(crate) fn get(&self, slot: usize) -> u32 {
        let (b, i) = locate(slot);
        self.buckets[b]
            .get()
            .map_or(u32::MAX, |bucket| bucket[i].load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn locate_covers_slots_without_gaps() {
        let mut expected = (0, 0);
        for slot in 0..100_000 {
            assert_eq!(locate(slot), expected, "slot {slot}");
            expected.1 += 1;
            if expected.1 == bucket_len(expected.0) {
                expected = (expected.0 + 1, 0);
            }
        }
        assert!(locate(u32::MAX as usize).0 < BUCKETS);
    }

    #[test]
    fn write_publish_read_and_rewrite_unpublished() {
        let a: Arena<Arc<String>> = Arena::new(2);
        for s in 0..3000 {
            a.write(
                s,
                [Arc::new(format!("{s}a")), Arc::new(format!("{s}b"))].into_iter(),
            );
        }
        a.publish(2000);
        assert_eq!(*a.get(1999)[1], "1999b");
        // Roll back and rewrite unpublished slots; the old values are dropped, not leaked.
        let probe = Arc::new("probe".to_owned());
        a.write(2000, [probe.clone(), probe.clone()].into_iter());
        assert_eq!(Arc::strong_count(&probe), 3);
        a.write(
            2000,
            [Arc::new("x".into()), Arc::new("y".into())].into_iter(),
        );
        assert_eq!(Arc::strong_count(&probe), 1);
        let total: usize = a.runs(2000).map(|(_, run)| run.len()).sum();
        assert_eq!(total, 4000);
        let firsts: Vec<usize> = a.runs(2000).map(|(f, _)| f).collect();
        assert_eq!(firsts, vec![0, 1024]);
    }

    #[test]
    #[should_panic(expected = "not published")]
    fn reading_unpublished_panics() {
        let a: Arena<u32> = Arena::new(1);
        a.write(0, [1].into_iter());
        a.get(0);
    }

    #[test]
    #[should_panic(expected = "immutable")]
    fn rewriting_published_panics() {
        let a: Arena<u32> = Arena::new(1);
        a.write(0, [1].into_iter());
        a.publish(1);
        a.write(0, [2].into_iter());
    }

    #[test]
    fn concurrent_readers_see_published_prefix() {
        let a = Arc::new(Arena::<u64>::new(4));
        let writer = {
            let a = a.clone();
            std::thread::spawn(move || {
                for s in 0..20_000usize {
                    a.write(s, std::iter::repeat_n(s as u64, 4));
                    a.publish(s + 1);
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || {
                    while a.published() < 20_000 {
                        let n = a.published();
                        for (first, run) in a.runs(n) {
                            for (k, chunk) in run.chunks_exact(4).enumerate() {
                                assert!(chunk.iter().all(|&v| v == (first + k) as u64));
                            }
                        }
                    }
                })
            })
            .collect();
        writer.join().unwrap();
        for r in readers {
            r.join().unwrap();
        }
    }
}
