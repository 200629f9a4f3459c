//! The one place that chooses between `std` and `loom` synchronisation, so
//! that the concurrency paths can be model-checked with `--cfg loom`.

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::{
    atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};

/// An atomic that loom does not model, under `--cfg loom` too: for words
/// one thread writes and others only read as statistics (the stacks'
/// lengths, which metrics sum), where no protocol depends on the ordering.
/// The hot path touches them on every allocation and release; modelled, they
/// would multiply the interleavings loom explores without checking anything.
pub(crate) use std::sync::atomic::AtomicU32 as StatAtomicU32;

/// Locks `mutex`, ignoring poisoning: the pool's invariants are restored
/// before any code that can panic runs while a lock is held, so a panic in
/// another thread leaves the state consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(loom)]
    {
        mutex.lock().unwrap()
    }
    #[cfg(not(loom))]
    {
        mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Pads a value to its own cache line (no atomics of its own: loom-neutral).
pub(crate) use crossbeam_utils::CachePadded;

/// The bounded lock-free multi-producer queue that carries regions released
/// on other threads back to their cache: crossbeam's `ArrayQueue`.
#[cfg(not(loom))]
pub(crate) use crossbeam_queue::ArrayQueue;

/// Under loom, a locked deque with `ArrayQueue`'s interface: loom checks the
/// protocol around the queue (close, drain, last release), and the queue
/// itself is crossbeam's, tested there.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct ArrayQueue<T> {
    items: Mutex<std::collections::VecDeque<T>>,
    capacity: usize,
}

#[cfg(loom)]
impl<T> ArrayQueue<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        ArrayQueue { items: Mutex::new(std::collections::VecDeque::new()), capacity }
    }

    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        let mut items = lock(&self.items);
        if items.len() == self.capacity {
            return Err(value);
        }
        items.push_back(value);
        Ok(())
    }

    pub(crate) fn pop(&self) -> Option<T> {
        lock(&self.items).pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.items).len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.items).is_empty()
    }
}
