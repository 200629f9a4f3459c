//! What a pool knows about its thread caches: per cache, the bytes it holds
//! back from buffers, and a way to ask it to give everything back.
//!
//! # Pinned memory without a hot-path atomic
//!
//! Pinned memory (bytes reserved by live buffers) is derived rather than
//! counted per buffer: the arenas already count the bytes of every region
//! they handed out and did not get back, under their lock and only on their
//! slow paths. Those regions are either in a live buffer or held by a
//! thread cache, parked in a stack or queued by another thread on its way
//! back. Each cache's [`CacheTally`] gives those two amounts, so
//!
//! `pinned = arena active bytes + huge bytes + unpooled bytes - parked - queued`.
//!
//! Parked bytes are not counted at all: the tally owns the owner's stacks
//! ([`StackBlock`]), each of which keeps its length in an atomic word that
//! the owner loads and stores as plainly as any other field (the hot path
//! writes nothing else for the metrics), and a reader multiplies the
//! lengths by the class sizes. Queued bytes change with a `fetch_add` on the
//! cross-thread release path, which already does atomic work on the same
//! cache's shared part, and a `fetch_sub` when the queue is drained (a slow
//! path).

use crate::memory::MemoryKind;
use crate::sync::{lock, Arc, AtomicBool, AtomicU64, Mutex, Ordering};
use crate::thread_cache::{SharedRef, StackBlock};

/// What the pool reads of one thread cache (its stacks' lengths, its
/// queued bytes) and its trim request flag.
#[derive(Debug)]
pub(crate) struct CacheTally {
    /// The owner's stacks, heap then direct (`MemoryKind::index`), whose
    /// words (lengths) anyone may read; owned here so that they stay
    /// readable as long as the cache is registered.
    stacks: [StackBlock; 2],
    /// Bytes queued by other threads, per kind.
    queued: [AtomicU64; 2],
    /// Set by [`PooledAllocator::trim`](crate::PooledAllocator::trim): the
    /// owner gives back every cached region at its next check.
    trim_requested: AtomicBool,
}

impl CacheTally {
    /// A tally for a cache with these stacks, heap then direct.
    pub(crate) fn new(stacks: [StackBlock; 2]) -> CacheTally {
        CacheTally { stacks, queued: Default::default(), trim_requested: AtomicBool::new(false) }
    }

    /// Bytes parked in the owner's stacks of `kind`, whose classes have the
    /// sizes `cached_sizes` where they are cached (0 where not: those
    /// stacks stay empty).
    fn parked(&self, kind: MemoryKind, cached_sizes: &[u32]) -> u64 {
        self.stacks[kind.index()].parked(cached_sizes)
    }

    /// Counts bytes entering the remote queue, unless that would take the
    /// queued bytes of `kind` above `limit`: then nothing changes and the
    /// result is false.
    #[inline]
    pub(crate) fn try_count_queued(&self, kind: MemoryKind, bytes: u64, limit: u64) -> bool {
        let counter = &self.queued[kind.index()];
        let before = counter.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > limit {
            counter.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Counts bytes leaving the remote queue.
    #[inline]
    pub(crate) fn uncount_queued(&self, kind: MemoryKind, bytes: u64) {
        self.queued[kind.index()].fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes of `kind` the cache holds back from buffers.
    fn held(&self, kind: MemoryKind, cached_sizes: &[u32]) -> u64 {
        self.parked(kind, cached_sizes).wrapping_add(self.queued[kind.index()].load(Ordering::Relaxed))
    }

    /// Asks the owner to give back every cached region.
    pub(crate) fn request_trim(&self) {
        self.trim_requested.store(true, Ordering::Relaxed);
    }

    /// Whether a trim was requested since the last call; clears the request.
    #[inline]
    pub(crate) fn take_trim_request(&self) -> bool {
        self.trim_requested.load(Ordering::Relaxed) && self.trim_requested.swap(false, Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Entry {
    tally: Arc<CacheTally>,
    shared: SharedRef,
}

/// The thread caches of one pool that are still alive (owner running, or
/// buffers of theirs still live).
#[derive(Debug, Default)]
pub(crate) struct CacheRegistry {
    entries: Mutex<Vec<Entry>>,
}

impl CacheRegistry {
    /// Adds a cache. Its [`SharedRef`] must stay valid until
    /// [`deregister`](Self::deregister) returns.
    pub(crate) fn register(&self, tally: Arc<CacheTally>, shared: SharedRef) {
        lock(&self.entries).push(Entry { tally, shared });
    }

    /// Removes a cache; after this returns, the registry no longer reaches
    /// its shared part.
    pub(crate) fn deregister(&self, tally: &Arc<CacheTally>) {
        let mut entries = lock(&self.entries);
        if let Some(at) = entries.iter().position(|e| Arc::ptr_eq(&e.tally, tally)) {
            entries.swap_remove(at);
        }
    }

    /// Bytes of `kind` that all caches hold back from buffers.
    pub(crate) fn held_bytes(&self, kind: MemoryKind) -> u64 {
        let entries = lock(&self.entries);
        // Holding the registry lock keeps each shared part alive (see `trim_all`).
        entries
            .iter()
            .fold(0u64, |sum, e| e.shared.with_cached_sizes(|sizes| sum.wrapping_add(e.tally.held(kind, sizes))))
    }

    /// Asks every cache to give back all its regions at its owner's next
    /// check, and gives the regions queued for each back to their arenas now.
    pub(crate) fn trim_all(&self) {
        let entries = lock(&self.entries);
        for entry in entries.iter() {
            entry.tally.request_trim();
            // Holding the registry lock keeps the shared part alive: it is
            // deregistered under this lock before it is freed.
            entry.shared.return_queued();
        }
    }
}
