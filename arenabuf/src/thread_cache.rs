//! Per-thread caches of freed regions, and the release path of every region.
//!
//! Each thread that allocates from a pool gets a [`ThreadCache`], bound to
//! the pool's least-used heap arena and least-used direct arena. It keeps,
//! per size class, a stack of regions its buffers gave back, and serves the
//! next allocation of that class from the top of the stack (the region most
//! likely still in the CPU's caches) without touching the arena or any
//! lock; trims give back the oldest regions, from the bottom.
//!
//! # The fast path
//!
//! A thread-local `CURRENT` names the cache the thread used last (pool id,
//! owner part, shared part). Allocation checks the pool id, maps the size to
//! its class and pops the class's stack; release compares the buffer's shared
//! part with `CURRENT`'s and pushes the region back, onto the stack of the
//! last hit when the buffer's class and tag say it belongs there (the
//! likeliest case, and one whose address does not wait for the buffer's
//! bytes), else onto the stack they name. No lock, no atomic
//! read-modify-write, no reference count: a hit is a few dozen instructions.
//! Everything else (misses, huge and unpooled buffers, other pools, other
//! threads) takes the out-of-line slow paths.
//!
//! A stack keeps its length in an atomic word that the owner loads and
//! stores as plainly as any field; the pool's metrics read those words on
//! any thread ([`StackBlock`], owned by the cache's tally), so the hot path
//! writes nothing for the metrics. A pop leaves its region in the slot, so
//! releasing the region popped last only moves the word back.
//!
//! A miss of a small class takes a batch of the class's regions from the
//! arena under one lock: the buffer gets the first, the stack the rest.
//! The batch doubles with each miss of the class, from one region up to
//! `cache_fill_bytes` (64 KiB by default, at most half the stack), and a
//! trim halves it, so that a thread whose buffers of a class grow in number
//! goes to the arena once per batch, and one with a few buffers takes few.
//!
//! # Cross-thread release
//!
//! A buffer released on another thread goes back to the cache of the thread
//! that allocated it (Netty's rule). The releasing thread gathers such
//! regions in its [`Outbox`] and sends them in batches through a bounded
//! lock-free queue in the cache's shared part, [`CacheShared`], so that a
//! foreign release costs no atomic operation of its own. The owning thread
//! moves queued regions into its stacks at its slow path's turns, while
//! the class's stack has room for a whole batch, and when a stack runs
//! dry, until that stack is full again; it keeps the emptied batches'
//! storage for the next batches sent to it, so that batches cost no
//! allocation. A class the owner does not cache, a full queue, a closed
//! cache (its thread has exited) or a full stack sends the region to its
//! arena; the periodic trim puts what a busy class's full stack has no
//! room for back in the queue.
//!
//! # Lifetime without per-buffer reference counts
//!
//! A buffer holds a raw pointer to the `CacheShared` it came from, which
//! holds the pool. The shared part must live until its thread has exited
//! *and* the last buffer allocated through it is gone, but counting buffers
//! with an atomic on every allocation and release would put two atomic
//! read-modify-writes on the hot path. Instead, `outstanding` starts at a
//! large bias standing for the live owner thread; releases on other threads
//! subtract one each (a batch at a time, when their outbox sends); the owner
//! counts its own allocations and releases in a plain integer (on its slow
//! paths only: the count includes the regions in its stacks, which a hit or
//! a release on the owner thread just moves between a stack and a buffer)
//! and settles once, at exit, by adding that count minus the bias. Whoever
//! brings `outstanding` to zero destroys the shared part.
//! Before the owner exits the value cannot reach zero (the bias dwarfs any
//! number of releases); after, it is exactly the number of live buffers.

use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use crate::allocator::Pool;
use crate::arena::{Arena, PooledRegion};
use crate::buf::{ByteBuf, Marks};
use crate::cache_registry::CacheTally;
use crate::config::Config;
use crate::error::AllocError;
use crate::leak::{self, LeakDetector, LeakLevel, LeakTracker};
use crate::memory::{MemoryKind, RawMemory};
use crate::size_class::{ClassLookup, SizeClasses};
use crate::sync::{fence, Arc, ArrayQueue, AtomicBool, AtomicUsize, CachePadded, Ordering, StatAtomicU32};
use crate::thread_local;

/// `outstanding`'s starting value: stands for the live owner thread.
const OWNER_BIAS: usize = 1 << (usize::BITS - 2);
/// Batches other threads can queue for one cache before releasing to arenas.
const REMOTE_QUEUE_BATCHES: usize = 64;
/// Regions per batch a releasing thread sends to another thread's cache.
const OUTBOX_REGIONS: usize = 64;
/// Emptied batch storages a cache keeps for the threads that release to it.
const SPARE_BATCHES: usize = 8;
/// A batch goes out once its regions add up to this many bytes.
const OUTBOX_BYTES: u64 = 1 << 20;
/// Bytes of one kind other threads can queue for one cache: beyond what its
/// stacks could keep, queued regions would only be freed later, in bulk.
const REMOTE_QUEUE_BYTES: u64 = 4 << 20;
/// With a time-based trim, the clock is checked every this many lookups.
const CLOCK_CHECK_EVERY: u32 = 256;
/// The most regions a miss of a cached class of `class_size` bytes takes
/// from the arena for a stack of `capacity`, the one it serves included: at
/// most half the capacity, as jemalloc's caches fill, and for a `small`
/// class what fits in `fill_bytes` ([`Builder::cache_fill_bytes`]); one
/// when `fill_bytes` is 0; at least one.
///
/// A normal class is not bound by `fill_bytes`: 64 KiB holds at most two
/// of its runs, and a run that stays in a stack unused keeps no page
/// resident that it did not already. Filled by half its stack, `window` at
/// 64 KiB (a stack of 16) took 31.0 ns per buffer against 37.4 one run per
/// miss, and 220 instructions against 240 (BENCHMARKS.md, session 16).
///
/// [`Builder::cache_fill_bytes`]: crate::Builder::cache_fill_bytes
fn most_filled(capacity: u32, class_size: usize, fill_bytes: usize, small: bool) -> usize {
    let budget = match (fill_bytes, small) {
        (0, _) => 1,
        (_, true) => fill_bytes / class_size,
        (_, false) => usize::MAX,
    };
    (capacity as usize / 2).min(budget).max(1)
}

/// A region on its way back to a cache from another thread: the image a
/// cached, untracked buffer of it carries, which is also what its stack
/// keeps, so that the owner parks a batch with plain copies (rebuilding each
/// region's entry from its arena, chunk and class cost the owner about 10
/// instructions per region, on `xthread`'s producer side, which bounds it).
type RemoteRegion = CachedRegion;

/// Regions on their way back to one cache, sent together, with their bytes
/// of each kind (by [`MemoryKind::index`]) for the cache's tally.
#[derive(Debug, Default)]
struct RemoteBatch {
    regions: Vec<RemoteRegion>,
    bytes: [u64; 2],
}

impl RemoteBatch {
    /// A batch of one region of `size` bytes.
    fn of(region: RemoteRegion, size: u64) -> RemoteBatch {
        let mut batch = RemoteBatch::default();
        batch.push(region, size);
        batch
    }

    /// Adds a region of `size` bytes, counting its bytes under its kind.
    #[inline]
    fn push(&mut self, region: RemoteRegion, size: u64) {
        self.bytes[region.meta.kind().index()] += size;
        self.regions.push(region);
    }

    /// Whether the batch goes out now: at [`OUTBOX_REGIONS`] regions or
    /// [`OUTBOX_BYTES`] bytes, whoever gathers it.
    #[inline(always)]
    fn is_full(&self) -> bool {
        self.regions.len() >= OUTBOX_REGIONS || self.bytes.iter().sum::<u64>() >= OUTBOX_BYTES
    }

    /// Gives every region back to its arena, `shared`'s of its kind (the
    /// regions are `shared`'s cache's), and the storage to `shared`'s spares.
    fn free_to_arenas(self, shared: &CacheShared) {
        CachedRegion::free_all_to_arena(&self.regions, shared);
        shared.recycle(self.regions);
    }
}

/// The part of a thread cache that other threads reach.
pub(crate) struct CacheShared {
    pool: Arc<Pool>,
    /// The bound arena per kind (heap, direct), `None` without arenas.
    arenas: [Option<NonNull<Arena>>; 2],
    /// Per class: its size when the owner caches it, else 0. Other threads
    /// queue only regions the owner will keep; the rest go straight to
    /// their arenas.
    cached_sizes: Box<[u32]>,
    remote: ArrayQueue<RemoteBatch>,
    /// Emptied storages of batches this cache received, for the next
    /// batches sent to it: a batch's storage then travels between the
    /// threads instead of being allocated by the releasing thread and freed
    /// by the owner. That pair of calls (1.5 KiB, above glibc's per-thread
    /// cache) took the system allocator's lock on both threads, once per
    /// batch, and made them wait for each other.
    spare: ArrayQueue<Vec<RemoteRegion>>,
    /// Set when the owner thread has exited: releases then go to arenas.
    closed: AtomicBool,
    /// The owner thread's [`thread_local::thread_token`]: a release on a
    /// thread with another token is surely foreign and skips the lookup of
    /// the thread's own caches.
    owner_token: usize,
    /// See the module docs. On its own cache line: releasing threads write
    /// it while the owner works on the queue's other end.
    outstanding: CachePadded<AtomicUsize>,
    /// Bytes parked and queued here, for the pool's pinned-memory metric.
    tally: Arc<CacheTally>,
}

// SAFETY: the arena pointers point into `pool`, which the shared part owns a
// reference to; arenas are `Sync`. Everything else is `Send + Sync`.
unsafe impl Send for CacheShared {}
// SAFETY: as above.
unsafe impl Sync for CacheShared {}

impl std::fmt::Debug for CacheShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheShared")
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .field("outstanding", &self.outstanding.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl CacheShared {
    /// Frees the shared part and the regions still queued in it.
    ///
    /// # Safety
    ///
    /// `this` came from `Box::leak` in [`ThreadCache::new`], and the caller
    /// brought `outstanding` to zero: nobody else uses it any more.
    unsafe fn destroy(this: NonNull<CacheShared>) {
        {
            // SAFETY: by this function's contract we are the last user but the
            // pool's registry, whose reference is removed here, under its lock.
            let shared = unsafe { this.as_ref() };
            shared.pool.cache_registry().deregister(&shared.tally);
        }
        // SAFETY: by this function's contract we are the last user.
        let shared = unsafe { Box::from_raw(this.as_ptr()) };
        while let Some(batch) = shared.remote.pop() {
            batch.free_to_arenas(&shared);
        }
    }

    /// The arena this cache takes `kind` regions from.
    ///
    /// # Panics
    ///
    /// When the pool has no arenas of `kind` (then no region of it is cached).
    fn arena(&self, kind: MemoryKind) -> &Arena {
        let arena = self.arenas[kind.index()].expect("a cached region's kind has an arena");
        // SAFETY: the arenas belong to `self.pool`, alive as long as `self`.
        unsafe { arena.as_ref() }
    }

    /// The bytes a released region of class `idx` counts while on its way
    /// back, when the owner takes it: it keeps the class and has not
    /// closed (its thread has not exited).
    #[inline(always)]
    fn queued_size(&self, idx: usize) -> Option<u64> {
        let size = self.cached_sizes[idx];
        (size > 0 && !self.closed.load(Ordering::Acquire)).then_some(u64::from(size))
    }

    /// Queues a batch of regions released on other threads; gives it back
    /// when the queue is full, or would hold more than
    /// [`REMOTE_QUEUE_BYTES`] of either kind. The bytes are counted as queued
    /// before the push, so that the owner's pop never sees them uncounted.
    fn push_remote(&self, batch: RemoteBatch) -> Result<(), RemoteBatch> {
        let counted = MemoryKind::ALL.into_iter().zip(batch.bytes);
        for (i, (kind, size)) in counted.clone().enumerate() {
            if size > 0 && !self.tally.try_count_queued(kind, size, REMOTE_QUEUE_BYTES) {
                counted.take(i).for_each(|(kind, size)| self.tally.uncount_queued(kind, size));
                return Err(batch);
            }
        }
        self.remote.push(batch).inspect_err(|_| counted.for_each(|(kind, size)| self.tally.uncount_queued(kind, size)))
    }

    /// Queues `batch` ([`push_remote`](Self::push_remote)), or gives its
    /// regions back to their arenas when the cache is closed or its queue
    /// is full.
    fn queue_or_free(&self, batch: RemoteBatch) {
        let refused = if self.closed.load(Ordering::Acquire) { Err(batch) } else { self.push_remote(batch) };
        if let Err(batch) = refused {
            batch.free_to_arenas(self);
        }
    }

    /// Takes a batch from the remote queue, uncounting it.
    fn pop_remote(&self) -> Option<RemoteBatch> {
        let batch = self.remote.pop()?;
        for (kind, size) in MemoryKind::ALL.into_iter().zip(batch.bytes) {
            if size > 0 {
                self.tally.uncount_queued(kind, size);
            }
        }
        Some(batch)
    }

    /// Storage for a batch of regions to send to this cache: a spare when
    /// there is one.
    fn batch_storage(&self) -> Vec<RemoteRegion> {
        self.spare.pop().unwrap_or_else(|| Vec::with_capacity(OUTBOX_REGIONS))
    }

    /// Keeps the storage of a batch this cache is done with as a spare,
    /// unless there are enough.
    fn recycle(&self, mut regions: Vec<RemoteRegion>) {
        if regions.capacity() >= OUTBOX_REGIONS {
            regions.clear();
            // A full queue refuses it: dropped here.
            let _ = self.spare.push(regions);
        }
    }

    /// Gives every queued region back to its arena.
    fn free_queued(&self) {
        while let Some(batch) = self.pop_remote() {
            batch.free_to_arenas(self);
        }
    }
}

/// The pool's registry's reference to a cache's shared part, so that
/// [`PooledAllocator::trim`](crate::PooledAllocator::trim) can return the
/// regions queued for any cache.
///
/// Only [`ThreadCache::new`] makes one, and only for the pool's
/// [`CacheRegistry`](crate::cache_registry::CacheRegistry), which uses it
/// under its lock; [`CacheShared::destroy`] removes it from the registry,
/// under that lock, before the shared part is freed.
#[derive(Debug)]
pub(crate) struct SharedRef(NonNull<CacheShared>);

// SAFETY: a CacheShared is used from any thread by design (atomics, a
// lock-free queue, an `Arc<Pool>`); the pointer is only followed under the
// registry's lock while the shared part is alive (type docs).
unsafe impl Send for SharedRef {}
// SAFETY: as above.
unsafe impl Sync for SharedRef {}

impl SharedRef {
    /// Gives the regions queued for this cache back to their arenas.
    pub(crate) fn return_queued(&self) {
        // SAFETY: the registry calls this under its lock, and the shared part
        // leaves the registry under that lock before it is freed (type docs).
        let shared = unsafe { self.0.as_ref() };
        shared.free_queued();
    }

    /// Runs `f` on the size of each class this cache keeps (0 for the rest).
    pub(crate) fn with_cached_sizes<R>(&self, f: impl FnOnce(&[u32]) -> R) -> R {
        // SAFETY: as in `return_queued`: the registry calls this under its lock.
        let shared = unsafe { self.0.as_ref() };
        f(&shared.cached_sizes)
    }
}

/// What an allocation's `owner` pointer points to, by tag.
const SOURCE_MASK: u8 = 0b110;
/// A pooled region from a thread cache: `owner` is its `CacheShared`.
const SOURCE_CACHE: u8 = 0b000;
/// Anything else: `owner` is a `Box<Detached>`.
const SOURCE_DETACHED: u8 = 0b010;
/// Bit 0 of the tag: direct memory.
const DIRECT: u8 = 0b001;
/// Bit 3 of the tag: the leak detector tracks the allocation (`leak` holds
/// its tracker), so its release takes the slow path, which ends the tracking.
const TRACKED: u8 = 0b1000;
/// Bit 4 of the tag: no allocation has it. A buffer's shared head (see
/// `buf::Head`) sets it in the word where an allocation keeps its meta.
const NOT_AN_ALLOCATION: u8 = 0b1_0000;

/// The byte offset of an allocation's meta word, and the bit of that word
/// that no allocation sets: `buf::Head` lays a shared region's head over an
/// allocation's bytes and tells the two apart by it.
pub(crate) const META_OFFSET: usize = std::mem::offset_of!(Allocation, meta);
/// See [`META_OFFSET`].
pub(crate) const META_NOT_AN_ALLOCATION: u64 = (NOT_AN_ALLOCATION as u64) << 40;
/// The bits of the meta word that are all clear in a buffer that holds a
/// cached, untracked allocation: the common release, which a buffer's drop
/// tells from the others with one test.
pub(crate) const META_RELEASE_SLOW: u64 = ((NOT_AN_ALLOCATION | SOURCE_MASK | TRACKED) as u64) << 40;
const _: () = assert!(SOURCE_CACHE == 0, "META_RELEASE_SLOW takes a cached allocation's source bits to be 0");

/// The rare kinds of allocation, kept out of line so that `Allocation` stays
/// small: a pooled region without a cache (the thread was exiting), a huge
/// block, an unpooled block.
#[derive(Debug)]
enum Detached {
    Uncached { arena: NonNull<Arena>, pool: Arc<Pool> },
    Huge { arena: NonNull<Arena>, memory: RawMemory, owner: HugeOwner },
    Unpooled { memory: RawMemory, pool: Arc<Pool> },
}

/// Who keeps a huge block's arena alive.
#[derive(Debug)]
enum HugeOwner {
    /// Counted in a thread cache's outstanding buffers.
    Cache(NonNull<CacheShared>),
    Pool(Arc<Pool>),
}

/// A region of memory owned by one buffer; dropping it gives it back.
///
/// 24 bytes: the region's address, its chunk (for pooled regions; the
/// arena finds the region's run handle from the address when it is freed,
/// [`Arena::free_at`]), its size class, a tag (memory kind, source,
/// tracking) and one owner pointer: a `CacheShared` for regions from thread
/// caches, a boxed [`Detached`] for the rest, or, when the leak detector
/// tracks the allocation, a boxed [`Tracked`] that holds one of those and
/// the tracker.
// `repr(C)`, in the order of a `CachedRegion`, the address first: a hit
// copies the cached region into a buffer, and a release copies it back, as
// a 16-byte and an 8-byte move, which the next read of the whole can take
// from the store buffer at once (a 16-byte load of data stored in 8-byte
// halves waits for the stores to reach the cache: a store-forwarding stall
// that cost more than the whole hit). `buf::Head` relies on the address
// being first.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Allocation {
    ptr: NonNull<u8>,
    owner: NonNull<()>,
    meta: Meta,
}

/// A region's chunk index, size class and tag in one word, so that a
/// buffer built from a cached region copies it with one load and one store
/// (stores, not instructions, bound the hot path), and a stack keeps it as
/// the buffer had it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
struct Meta(u64);

impl Meta {
    #[inline(always)]
    fn new(chunk: u32, size_idx: u8, tag: u8) -> Meta {
        Meta(u64::from(chunk) | u64::from(size_idx) << 32 | u64::from(tag) << 40)
    }

    #[inline(always)]
    fn chunk(self) -> u32 {
        self.0 as u32
    }

    #[inline(always)]
    fn size_idx(self) -> u8 {
        (self.0 >> 32) as u8
    }

    #[inline(always)]
    fn tag(self) -> u8 {
        (self.0 >> 40) as u8
    }

    /// The size class and the tag together: what a stack's regions carry
    /// beside their chunk ([`Stack::class_key`]).
    #[inline(always)]
    fn class_key(self) -> u16 {
        (self.0 >> 32) as u16
    }

    #[inline(always)]
    fn kind(self) -> MemoryKind {
        if self.tag() & DIRECT != 0 {
            MemoryKind::Direct
        } else {
            MemoryKind::Heap
        }
    }

    #[inline(always)]
    fn with_tag(self, tag: u8) -> Meta {
        debug_assert!(tag & NOT_AN_ALLOCATION == 0);
        Meta::new(self.chunk(), self.size_idx(), tag)
    }
}

const _: () = assert!(std::mem::offset_of!(Allocation, ptr) == 0 && std::mem::size_of::<Meta>() == 8);

/// What a tracked allocation's `owner` points to: the owner pointer it
/// would have untracked, and the leak detector's registration. Boxed, so
/// that the common, untracked allocation carries no tracker field.
#[derive(Debug)]
struct Tracked {
    owner: NonNull<()>,
    tracker: LeakTracker,
}

// SAFETY: the region is exclusively the allocation's; what `owner` points to
// (a CacheShared: atomics, a lock-free queue, arenas behind mutexes; or a
// Detached the allocation owns) is `Send + Sync` and stays alive while the
// allocation does (module docs), so it may move to and be used from any thread.
unsafe impl Send for Allocation {}
// SAFETY: `&Allocation` exposes only addresses and sizes.
unsafe impl Sync for Allocation {}

impl Allocation {
    /// Address of the first byte.
    #[inline(always)]
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Bytes usable: the class size for pooled regions, the exact size else.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        match self.detached() {
            None => self.shared().pool.size_classes().size_of(self.meta.size_idx() as usize),
            Some(Detached::Uncached { arena, .. }) => {
                // SAFETY: the Detached holds the pool, which owns the arena.
                unsafe { arena.as_ref() }.size_classes().size_of(self.meta.size_idx() as usize)
            }
            Some(Detached::Huge { memory, .. } | Detached::Unpooled { memory, .. }) => memory.len(),
        }
    }

    /// Marks the allocation as tracked by the leak detector.
    pub(crate) fn set_leak_tracker(&mut self, tracker: LeakTracker) {
        if let Some(old) = self.take_leak_tracker() {
            self.leak_detector().untrack(old);
        }
        let tracked = Box::new(Tracked { owner: self.owner, tracker });
        self.owner = NonNull::from(Box::leak(tracked)).cast();
        self.meta = self.meta.with_tag(self.tag() | TRACKED);
    }

    /// The leak detector of the allocation's pool.
    pub(crate) fn leak_detector(&self) -> &LeakDetector {
        self.pool().leak_detector()
    }

    /// Takes the leak detector's tracking away, to move it to another
    /// allocation (or to end it once the region is back).
    pub(crate) fn take_leak_tracker(&mut self) -> Option<LeakTracker> {
        if self.tag() & TRACKED == 0 {
            return None;
        }
        // SAFETY: with TRACKED set, `owner` is the box `set_leak_tracker` leaked; clearing the bit hands it back once.
        let tracked = unsafe { Box::from_raw(self.owner.cast::<Tracked>().as_ptr()) };
        self.meta = self.meta.with_tag(self.tag() & !TRACKED);
        self.owner = tracked.owner;
        Some(tracked.tracker)
    }

    /// The leak detector's tracking of this allocation, if any.
    pub(crate) fn leak_tracker(&self) -> Option<&LeakTracker> {
        self.tracked().map(|tracked| &tracked.tracker)
    }

    fn tracked(&self) -> Option<&Tracked> {
        // SAFETY: with TRACKED set, `owner` is this allocation's `Tracked` box, alive until `take_leak_tracker`.
        (self.tag() & TRACKED != 0).then(|| unsafe { self.owner.cast::<Tracked>().as_ref() })
    }

    /// The owner pointer, seen through a `Tracked` box if there is one.
    fn owner(&self) -> NonNull<()> {
        self.tracked().map_or(self.owner, |tracked| tracked.owner)
    }

    /// Whether the memory is direct (mmap-backed) rather than heap.
    #[inline(always)]
    pub(crate) fn is_direct(&self) -> bool {
        self.tag() & DIRECT != 0
    }

    /// Heap or direct.
    #[inline(always)]
    pub(crate) fn kind(&self) -> MemoryKind {
        self.meta.kind()
    }

    fn shared(&self) -> &CacheShared {
        debug_assert_eq!(self.tag() & SOURCE_MASK, SOURCE_CACHE);
        // SAFETY: a cache-sourced allocation is counted in its shared part's outstanding buffers: alive.
        unsafe { self.owner().cast::<CacheShared>().as_ref() }
    }

    fn detached(&self) -> Option<&Detached> {
        if self.tag() & SOURCE_MASK == SOURCE_CACHE {
            return None;
        }
        // SAFETY: for other sources `owner` is the allocation's own box.
        Some(unsafe { self.owner().cast::<Detached>().as_ref() })
    }

    fn tag_for(kind: MemoryKind, source: u8) -> u8 {
        source | if kind == MemoryKind::Direct { DIRECT } else { 0 }
    }

    fn from_detached(
        ptr: NonNull<u8>,
        kind: MemoryKind,
        detached: Detached,
        region: Option<PooledRegion>,
    ) -> Allocation {
        let (chunk, size_idx) = region.map_or((0, 0), |r| (r.chunk, r.size_idx as u8));
        Allocation {
            ptr,
            meta: Meta::new(chunk, size_idx, Allocation::tag_for(kind, SOURCE_DETACHED)),
            owner: NonNull::from(Box::leak(Box::new(detached))).cast(),
        }
    }

    /// A new region of at least `size` bytes from the same pool and memory
    /// kind as this one: what a buffer that grows or shrinks by moving needs.
    pub(crate) fn allocate_like(&self, size: usize) -> Result<Allocation, AllocError> {
        // A moved buffer keeps its own tracker; the new region is not sampled.
        Pool::allocate(self.pool(), self.kind(), size).map(|(allocation, _)| allocation)
    }

    /// The pool the memory belongs to.
    fn pool(&self) -> &Arc<Pool> {
        match self.detached() {
            None => &self.shared().pool,
            Some(Detached::Uncached { pool, .. } | Detached::Unpooled { pool, .. }) => pool,
            Some(Detached::Huge { owner: HugeOwner::Pool(pool), .. }) => pool,
            Some(Detached::Huge { owner: HugeOwner::Cache(shared), .. }) => {
                // SAFETY: the huge block is counted in the shared part's
                // outstanding buffers, so the shared part is alive.
                &unsafe { shared.as_ref() }.pool
            }
        }
    }

    /// A buffer of a pool with no arena of its kind.
    pub(crate) fn unpooled(memory: RawMemory, pool: Arc<Pool>) -> Allocation {
        let (ptr, kind) = (memory.ptr(), memory.kind());
        Allocation::from_detached(ptr, kind, Detached::Unpooled { memory, pool }, None)
    }

    /// A region allocated straight from `arena`, with no cache.
    pub(crate) fn uncached(arena: &Arena, size: usize, pool: Arc<Pool>) -> Result<Allocation, AllocError> {
        let arena_ptr = NonNull::from(arena);
        match arena.size_classes().index_of(size) {
            Some(idx) => {
                let region = pool.within_limit(|| arena.allocate(idx))?;
                let detached = Detached::Uncached { arena: arena_ptr, pool };
                Ok(Allocation::from_detached(region.ptr, arena.kind(), detached, Some(region)))
            }
            None => {
                let memory = pool.within_limit(|| arena.allocate_huge(size))?;
                let detached = Detached::Huge { arena: arena_ptr, memory, owner: HugeOwner::Pool(pool) };
                Ok(Allocation::from_huge(arena.kind(), detached))
            }
        }
    }

    fn from_huge(kind: MemoryKind, detached: Detached) -> Allocation {
        let Detached::Huge { memory, .. } = &detached else { unreachable!("a huge block") };
        let ptr = memory.ptr();
        Allocation::from_detached(ptr, kind, detached, None)
    }

    /// The allocation of a region just popped from a stack, read straight
    /// from its slot as one 24-byte copy.
    ///
    /// # Safety
    ///
    /// `slot` was just popped (for this allocation alone) and nothing has
    /// been pushed onto its stack since.
    #[inline(always)]
    unsafe fn from_slot(slot: NonNull<CachedRegion>) -> Allocation {
        // A `CachedRegion` is an `Allocation`'s fields in its `repr(C)` order (checked at compile time
        // below), holding what a cached allocation holds (`CachedRegion::of`, `release_to_last_hit`).
        // SAFETY: the slot keeps the popped region until the next push (this function's contract).
        unsafe { slot.cast::<Allocation>().read() }
    }

    /// A region its cache's arena just handed out.
    fn from_region(region: CachedRegion) -> Allocation {
        Allocation { ptr: region.ptr, owner: region.owner, meta: region.meta }
    }

    /// The tag: memory kind, source, tracking.
    #[inline(always)]
    fn tag(&self) -> u8 {
        self.meta.tag()
    }

    #[cold]
    fn drop_detached(&mut self) {
        // SAFETY: the box was leaked in `from_detached` and is reclaimed once,
        // here, in drop.
        let detached = unsafe { Box::from_raw(self.owner.cast::<Detached>().as_ptr()) };
        match *detached {
            Detached::Uncached { arena, pool } => {
                // SAFETY: `pool` owns the arena and lives to the end of this arm.
                unsafe { arena.as_ref() }.free_at(self.meta.chunk(), self.ptr, self.meta.size_idx() as usize);
                drop(pool);
            }
            Detached::Huge { arena, memory, owner } => {
                // SAFETY: `owner` keeps the pool, and so the arena, alive until
                // it is released below.
                unsafe { arena.as_ref() }.free_huge(memory);
                match owner {
                    // SAFETY: counted in the shared part, so alive.
                    HugeOwner::Cache(shared) => unsafe { release_to_owner(shared, None) },
                    HugeOwner::Pool(pool) => drop(pool),
                }
            }
            Detached::Unpooled { memory, pool } => pool.free_unpooled(memory),
        }
    }
}

impl Drop for Allocation {
    #[inline(always)]
    fn drop(&mut self) {
        if self.tag() & (SOURCE_MASK | TRACKED) == SOURCE_CACHE {
            // SAFETY: cached and untracked (checked above); dropped once, here.
            unsafe { self.release_cached_untracked() }
        } else {
            self.drop_slow();
        }
    }
}

impl Allocation {
    /// A cached, untracked allocation's release, for a buffer's drop to
    /// inline: the hot case (on the owner thread, into the stack of the last
    /// hit) in line, the rest in one call in tail position: on the owner
    /// thread, another stack or the slow path; elsewhere, the foreign
    /// release.
    ///
    /// # Safety
    ///
    /// The allocation is cached and untracked (the caller checked its tag);
    /// this releases it, so it must be neither used nor dropped after.
    #[inline(always)]
    pub(crate) unsafe fn release_cached_untracked(&mut self) {
        match thread_local::current_cache_with(self.owner.cast()) {
            Some(cache) => {
                // The pointer is set with the shared part, so not null; no other reference to the cache is
                // active (the pool never calls back into user code while it holds one).
                // SAFETY: `CURRENT` names this thread's live cache, whose shared part is this allocation's.
                if !unsafe { &mut *cache }.release_to_last_hit(self) {
                    // SAFETY: the same cache, with no reference to it left active.
                    unsafe { self.release_on_owner(cache) };
                }
            }
            None => self.release_foreign_or_slow(),
        }
    }

    /// [`release_cached_untracked`](Self::release_cached_untracked) on the
    /// owner thread when the last hit's stack did not take the region.
    ///
    /// # Safety
    ///
    /// `cache` is `CURRENT`'s, this allocation's owner, with no reference to
    /// it active. A raw pointer, not a reference: the slow path reaches the
    /// cache again through `CURRENT`.
    #[inline(never)]
    unsafe fn release_on_owner(&mut self, cache: *mut ThreadCache) {
        // SAFETY: by this function's contract; the reference ends before the slow path.
        if !unsafe { &mut *cache }.release_to_class(self) {
            self.drop_slow();
        }
    }

    /// The common release on a thread other than the owner's: into this
    /// thread's outbox, which already gathers regions for the same owner.
    /// False (nothing done) for the rest, which the slow path sorts out:
    /// the first region for an owner, a class the owner does not keep, a
    /// closed owner, a release on the owner thread.
    ///
    /// The outbox gathers only for caches of other threads (the slow path,
    /// which starts every batch, gives the owner's own regions to its
    /// stacks), so a batch for this owner says this is not the owner
    /// thread. That matters: the owner counts its releases apart, and one
    /// counted again at the outbox's send would free the shared part early.
    ///
    /// One call with the checks in line: the slow path's chain of calls,
    /// closures and checks costs about 40 more instructions per release.
    #[inline(never)]
    fn release_foreign_or_slow(&mut self) {
        if !self.release_foreign() {
            self.drop_slow();
        }
    }

    /// [`release_foreign_or_slow`](Self::release_foreign_or_slow)'s fast
    /// path: false when it did nothing.
    #[inline(always)]
    fn release_foreign(&self) -> bool {
        // The buffer is read inside the closure. Read before it, its fields
        // stayed in callee-saved registers across the outbox's first-use
        // check (which has a call on its cold side), and every foreign release
        // saved and restored six registers (`xthread` 256 B, callgrind: 105 ->
        // 99 instructions per buffer on the releasing thread).
        let added = thread_local::with_outbox(|outbox| {
            // A cached, untracked allocation (the caller checked) is counted
            // in its shared part's outstanding buffers.
            // SAFETY: counted, so the shared part is alive.
            let shared = unsafe { self.owner.cast::<CacheShared>().as_ref() };
            let Some(size) = shared.queued_size(self.meta.size_idx().into()) else { return false };
            // SAFETY: counted (above); the outbox ends the count when it sends.
            unsafe { outbox.add_for_current_owner(self.image(), size) }
        });
        added == Some(true)
    }

    /// Every release but a same-thread, untracked one into a stack with room.
    #[cold]
    #[inline(never)]
    fn drop_slow(&mut self) {
        // The tracking ends first, while the allocation still holds its pool
        // (and so the detector) alive.
        if let Some(tracker) = self.take_leak_tracker() {
            self.leak_detector().untrack(tracker);
            if self.tag() & SOURCE_MASK == SOURCE_CACHE {
                // Untracked now, the region takes the common way back (on
                // the owner thread, into its stack in line) instead of the
                // slow path's lookup of the owner's cache: a sampled
                // buffer's release cost about 170 instructions more.
                // SAFETY: cached and untracked (checked above); released once, here.
                return unsafe { self.release_cached_untracked() };
            }
        }
        self.release_slow();
    }

    fn release_slow(&mut self) {
        if self.tag() & SOURCE_MASK != SOURCE_CACHE {
            return self.drop_detached();
        }
        // This allocation is counted in the shared part's outstanding buffers, so it is alive.
        // SAFETY: counted (above); this call ends the count.
        unsafe { release_to_owner(self.owner.cast(), Some(self.image())) }
    }

    /// The region of a cached, untracked allocation as its cache keeps it
    /// (the same fields, in the same order).
    #[inline(always)]
    fn image(&self) -> CachedRegion {
        debug_assert_eq!(self.tag() & (SOURCE_MASK | TRACKED), SOURCE_CACHE);
        CachedRegion { ptr: self.ptr, owner: self.owner, meta: self.meta }
    }
}

/// Allocates `size` bytes of `kind` memory for the calling thread: from its
/// cache when the thread's `CURRENT` cache belongs to `pool`, else through
/// the thread's table of caches. The flag says whether the leak detector
/// should track the allocation (the cache's sampling).
#[inline(always)]
pub(crate) fn allocate(pool: &Arc<Pool>, kind: MemoryKind, size: usize) -> Result<(Allocation, bool), AllocError> {
    allocate_with(pool, kind, size, ThreadCache::allocate)
}

/// As [`allocate`], after [`cache_hit`] found nothing to serve: the lookup
/// goes straight to the slow path's count, not through the hit path again.
pub(crate) fn allocate_missed(
    pool: &Arc<Pool>,
    kind: MemoryKind,
    size: usize,
) -> Result<(Allocation, bool), AllocError> {
    allocate_with(pool, kind, size, ThreadCache::allocate_counted)
}

/// An allocation and whether the leak detector tracks it, or the error.
type Allocated = Result<(Allocation, bool), AllocError>;

/// `allocate` or `allocate_missed`, by `through`, on the `CURRENT` cache.
#[inline(always)]
fn allocate_with(
    pool: &Arc<Pool>,
    kind: MemoryKind,
    size: usize,
    through: fn(&mut ThreadCache, MemoryKind, usize) -> Allocated,
) -> Allocated {
    if let Some(cache) = thread_local::current_cache(pool.id()) {
        // The pointer is set with the pool id, so not null; nothing re-enters the pool meanwhile.
        // SAFETY: `CURRENT` names this thread's live cache for `pool`, and no other reference to it is active.
        let cache = unsafe { &mut *cache };
        return through(cache, kind, size);
    }
    allocate_unbound(pool, kind, size)
}

/// The hit path of the plain methods: a region of `capacity`'s class popped
/// from the calling thread's cache for the pool `pool_id` names, or `None`
/// for anything that needs more. The hit borrows the id, as the allocator's
/// handle holds it, for as long as it lives.
#[inline(always)]
pub(crate) fn cache_hit(pool_id: &usize, kind: MemoryKind, capacity: usize) -> Option<CacheHit<'_>> {
    let cache = thread_local::current_cache(*pool_id)?;
    // The reference lasts as long as the hit, which `PooledAllocator::buffer_of` turns into a buffer at once.
    // SAFETY: as in `allocate`.
    let cache = unsafe { &mut *cache };
    let (slot, marks) = cache.take_slot(kind, capacity)?;
    Some(CacheHit { slot: slot.cast(), marks, _cache: PhantomData })
}

/// A region just popped from a thread cache's stack, to become a buffer.
///
/// It borrows the cache, so nothing can push onto the stack (which would
/// overwrite the slot) before [`into_buffer`](Self::into_buffer).
#[must_use = "the popped region is lost unless it becomes a buffer"]
pub(crate) struct CacheHit<'c> {
    slot: NonNull<Allocation>,
    /// The fresh marks of the region's class.
    marks: Marks,
    _cache: PhantomData<&'c mut ThreadCache>,
}

impl CacheHit<'_> {
    /// The buffer, built from the cached region in place: its head is a
    /// 24-byte copy of the region's slot (a 16-byte and an 8-byte load and
    /// store, the meta word stored with the limits; see
    /// `buf::Head`). Building it here rather than returning an
    /// `Option<ByteBuf>` keeps the copy whole: the option's test of the
    /// buffer's first word made the compiler take it apart.
    #[inline(always)]
    pub(crate) fn into_buffer(self, capacity: usize, max_capacity: usize) -> ByteBuf {
        // The slot holds a region as the allocation's fields in their order
        // (checked below), and nothing has pushed since (the hit borrows the cache).
        // SAFETY: the slot was popped for this buffer alone.
        unsafe { ByteBuf::from_allocation_image(self.slot, self.marks, capacity, max_capacity) }
    }
}

const _: () = assert!(
    std::mem::size_of::<CachedRegion>() == std::mem::size_of::<Allocation>()
        && std::mem::offset_of!(CachedRegion, ptr) == std::mem::offset_of!(Allocation, ptr)
        && std::mem::offset_of!(CachedRegion, owner) == std::mem::offset_of!(Allocation, owner)
        && std::mem::offset_of!(CachedRegion, meta) == std::mem::offset_of!(Allocation, meta)
);

/// The thread's `CURRENT` cache is another pool's, or none yet.
#[cold]
#[inline(never)]
fn allocate_unbound(pool: &Arc<Pool>, kind: MemoryKind, size: usize) -> Result<(Allocation, bool), AllocError> {
    if let Some(result) = thread_local::with_cache(pool, |cache| cache.allocate(kind, size)) {
        return result;
    }
    // The thread's caches are gone (it is exiting): straight to an arena,
    // tracked only when every buffer is.
    let allocation = match pool.least_used(kind) {
        Some(arena) => Allocation::uncached(arena, size, pool.clone()),
        None => Pool::allocate_unpooled(pool, kind, size),
    }?;
    Ok((allocation, pool.config().leak_detection == LeakLevel::Paranoid))
}

/// Gives a region (or, for huge buffers, just the count) back to the cache
/// that allocated it: into its stacks on the owner thread; from any other
/// thread, through this thread's [`Outbox`] and the owner's queue.
///
/// # Safety
///
/// The caller's buffer is counted in `shared`'s outstanding buffers and this
/// call ends that count (at once, or when the outbox sends the region).
unsafe fn release_to_owner(shared_ptr: NonNull<CacheShared>, region: Option<RemoteRegion>) {
    // SAFETY: counted, so alive (this function's contract).
    let shared = unsafe { shared_ptr.as_ref() };
    // Tokens of exited threads can be reused, so an equal token only says
    // that this may be the owner; the lookup decides.
    if shared.owner_token == thread_local::thread_token() {
        let on_owner = thread_local::with_cache_if(shared.pool.id(), shared_ptr, |cache| {
            cache.out_or_parked -= 1;
            cache.count_release();
            if let Some(region) = region {
                cache.park(region);
            }
        });
        if on_owner.is_some() {
            return;
        }
    }
    let batch = match region.map(|region| (region, shared.queued_size(region.meta.size_idx().into()))) {
        Some((region, Some(size))) => {
            // SAFETY: counted, and the outbox ends the count when it sends.
            let posted = thread_local::with_outbox(|outbox| unsafe { outbox.add(region, size) });
            if posted.is_some() {
                return;
            }
            // The thread's outbox is gone (it is exiting): a batch of one.
            RemoteBatch::of(region, size)
        }
        Some((region, None)) => {
            // The owner does not keep the class, or has exited: straight to
            // the arena.
            region.free_to_arena(shared);
            RemoteBatch::default()
        }
        None => RemoteBatch::default(),
    };
    // SAFETY: counted (this function's contract); ended here for the batch and the caller's buffer.
    unsafe { send_batch(shared_ptr, batch, 1) };
}

/// Queues `batch` for the cache whose shared part is `shared_ptr` (or frees
/// it to its arenas when the cache is closed or its queue is full), then
/// ends the count of `released` buffers, freeing the shared part when they
/// were its last.
///
/// # Safety
///
/// `released` buffers of the batch's sender are counted in the shared
/// part's outstanding buffers (so it is alive), and the batch's regions are
/// theirs.
unsafe fn send_batch(shared_ptr: NonNull<CacheShared>, batch: RemoteBatch, released: usize) {
    // SAFETY: counted, so alive (this function's contract).
    let shared = unsafe { shared_ptr.as_ref() };
    if !batch.regions.is_empty() {
        shared.queue_or_free(batch);
    }
    if released > 0 && shared.outstanding.fetch_sub(released, Ordering::Release) == released {
        fence(Ordering::Acquire);
        // SAFETY: the owner has exited (else the bias would remain) and these
        // were the last buffers: nobody else can reach `shared`.
        unsafe { CacheShared::destroy(shared_ptr) };
    }
}

/// Regions this thread released for another thread's cache, on their way to
/// it. A release from a foreign thread then costs no atomic operation: the
/// regions go out as one batch (one queue push, one update of the owner's
/// counts) when [`OUTBOX_REGIONS`] of them or [`OUTBOX_BYTES`] have
/// gathered, when the thread releases a region of another cache, when it
/// trims, and when it exits. Until then the regions count as in use, so a
/// thread that stops releasing holds at most one batch back.
#[derive(Debug)]
pub(crate) struct Outbox {
    owner: Option<NonNull<CacheShared>>,
    batch: RemoteBatch,
}

impl Outbox {
    pub(crate) const fn new() -> Outbox {
        Outbox { owner: None, batch: RemoteBatch { regions: Vec::new(), bytes: [0; 2] } }
    }

    /// Adds a region of `size` bytes released for its owner, the cache whose
    /// shared part the region names.
    ///
    /// # Safety
    ///
    /// The region's buffer is counted in its owner's outstanding buffers;
    /// the outbox ends that count when it sends the region.
    unsafe fn add(&mut self, region: RemoteRegion, size: u64) {
        let owner = region.owner.cast();
        if self.owner != Some(owner) {
            self.send();
            self.owner = Some(owner);
            // A batch's storage, taken when it starts rather than checked
            // for on every push.
            // SAFETY: the region's buffer is counted (this function's contract), so its owner is alive.
            self.batch.regions = unsafe { owner.as_ref() }.batch_storage();
        }
        self.push(region, size);
    }

    /// Adds a region to the batch, and sends the batch when it is full.
    #[inline(always)]
    fn push(&mut self, region: RemoteRegion, size: u64) {
        self.batch.push(region, size);
        if self.batch.is_full() {
            self.send();
        }
    }

    /// [`add`](Self::add), when the outbox already gathers regions for the
    /// region's owner; false (nothing done) when it does not.
    ///
    /// # Safety
    ///
    /// As for [`add`](Self::add).
    #[inline(always)]
    unsafe fn add_for_current_owner(&mut self, region: RemoteRegion, size: u64) -> bool {
        // A batch of this owner has its storage, and room (it is sent when
        // it fills up): the check costs a compare and spares the hot
        // release the code for growing the batch.
        let regions = &self.batch.regions;
        if self.owner != Some(region.owner.cast()) || regions.len() == regions.capacity() {
            return false;
        }
        self.push(region, size);
        true
    }

    /// Sends the regions gathered so far to their owner.
    #[inline(never)]
    pub(crate) fn send(&mut self) {
        let Some(owner) = self.owner.take() else { return };
        let batch = std::mem::take(&mut self.batch);
        let released = batch.regions.len();
        // SAFETY: each region's buffer is counted in `owner`'s outstanding buffers (`add`); this ends the counts.
        unsafe { send_batch(owner, batch, released) };
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.send();
    }
}

/// A cached region: what a stack keeps of it. `meta` is what a buffer of
/// the stack's class and kind, from a cache and untracked, carries.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct CachedRegion {
    ptr: NonNull<u8>,
    /// The cache's shared part: what the buffer's `owner` will be.
    owner: NonNull<()>,
    meta: Meta,
}

// SAFETY: a cached region is addresses only: of pool memory, which its
// owner cache's shared part keeps alive (through the pool), and of that
// shared part, alive while any of its regions is out; another thread only
// sends it back to that cache or frees it to that cache's arena.
unsafe impl Send for CachedRegion {}

impl CachedRegion {
    /// Gives the region back to its arena: `shared`'s arena of its kind,
    /// which is where the cache whose shared part `shared` is took it from.
    fn free_to_arena(self, shared: &CacheShared) {
        debug_assert_eq!(self.owner, NonNull::from(shared).cast());
        shared.arena(self.meta.kind()).free_at(self.meta.chunk(), self.ptr, self.meta.size_idx().into());
    }

    /// [`free_to_arena`](Self::free_to_arena) for each of `regions`.
    fn free_all_to_arena(regions: &[CachedRegion], shared: &CacheShared) {
        regions.iter().for_each(|region| region.free_to_arena(shared));
    }

    fn meta_for(kind: MemoryKind, chunk: u32, size_idx: usize) -> Meta {
        Meta::new(chunk, size_idx as u8, Allocation::tag_for(kind, SOURCE_CACHE))
    }

    /// A region the arena handed out (or another thread gave back) for the
    /// stacks of `kind`.
    fn of(kind: MemoryKind, ptr: NonNull<u8>, chunk: u32, size_idx: u32, shared: NonNull<CacheShared>) -> CachedRegion {
        let meta = CachedRegion::meta_for(kind, chunk, size_idx as usize);
        CachedRegion { ptr, owner: shared.cast(), meta }
    }
}

/// Where a stack's word keeps its length: above the hits left until the
/// slow path's turn (bits 0..7) and their guard bit (7).
const LEN_SHIFT: u32 = 8;
/// The most hits a stack serves between two turns of the slow path (the
/// event period less one): what fits below the guard bit.
const MAX_LEFT: u32 = (1 << 7) - 1;
/// A pop's change to a stack's word: one region and one hit fewer left.
const POP: u32 = (1 << LEN_SHIFT) + 1;
/// The bits a pop sets when it may not happen on the hit path: the hits
/// left went below zero (bit 7, the slow path's turn), or the length did
/// (bit 31, nothing cached).
const POP_GUARD: u32 = 1 << 31 | 1 << 7;

/// The length of a stack whose word is `word`.
fn stack_len(word: u32) -> u32 {
    word >> LEN_SHIFT
}

/// Cached regions of one size class: a stack whose storage is made on first
/// use. Allocation takes the newest region, the one most likely still in the
/// CPU's caches; trims free the oldest, at the bottom.
///
/// Only the owner thread uses a stack, through shared references (never
/// `&mut`): the pool's metrics read each stack's [`word`](Self::word) from
/// other threads ([`StackBlock::parked`]), so the owner's fields that change
/// are cells, and the word an atomic it loads and stores plainly.
///
/// One cache line each: the hit path finds a stack with a shift, and reads
/// and writes one line.
#[derive(Debug)]
#[repr(align(64))]
struct Stack {
    /// The regions cached (`slots[..len]`, from bit [`LEN_SHIFT`]) and the
    /// hits left before the slow path counts the class's hits (bits 0..7),
    /// in one word so that a hit updates both with one subtraction and
    /// tests both with one mask ([`POP_GUARD`]). Written by the owner only,
    /// with plain stores (relaxed); read by metrics on any thread. A copy
    /// elsewhere for the metrics cost a load and a store per hit and per
    /// release: `hot` 8.4 -> 7.9 ns per pair without it (BENCHMARKS.md,
    /// session 10).
    word: StatAtomicU32,
    /// `room << LEN_SHIFT`: a word below it has room for a push.
    room_word: Cell<u32>,
    /// Empty until the first push, then `capacity` long. Entries at `len`
    /// and above are stale copies, never read. Owner-only, and no reference
    /// to it outlives the method that takes it ([`slots`](Self::slots),
    /// [`slots_mut`](Self::slots_mut)).
    slots: UnsafeCell<Box<[CachedRegion]>>,
    /// The configured capacity (0: not cached).
    capacity: u32,
    /// Hits since the last trim, but for those since the last turn of the
    /// slow path: `hits = served + mark - left`.
    served: Cell<u32>,
    /// The hits left at the last turn of the slow path (or trim).
    mark: Cell<u8>,
    /// What a fresh buffer of the class starts with (its room is the class
    /// size).
    fresh: Marks,
    /// The class and tag of the stack's regions as a cached, untracked
    /// buffer carries them ([`Meta::class_key`]): a buffer whose meta shows
    /// this key belongs here.
    class_key: u16,
    /// Regions the class's next miss takes from the arena, the one it
    /// serves included: 1 at first, doubled by each miss up to
    /// [`most_filled`], halved by each trim. A thread with a few buffers of
    /// a class takes a few (a thread per connection does not hold 64 KiB of
    /// each class it touched once), and one whose buffers of the class keep
    /// growing in number takes whole batches after a few misses.
    fill: Cell<u16>,
}

const _: () = assert!(std::mem::size_of::<Stack>() == 64, "a stack is one cache line");

impl Stack {
    /// The stack of class `idx` of `kind`, with `reload` hits between the
    /// slow path's turns (at most [`MAX_LEFT`]).
    fn new(kind: MemoryKind, idx: usize, capacity: usize, class_size: usize, reload: u32) -> Stack {
        assert!(reload <= MAX_LEFT, "a stack's period is at most {}", MAX_LEFT + 1);
        Stack {
            slots: UnsafeCell::default(),
            word: StatAtomicU32::new(reload),
            room_word: Cell::new(0),
            capacity: capacity as u32,
            served: Cell::new(0),
            mark: Cell::new(reload as u8),
            fresh: Marks::fresh(class_size),
            class_key: CachedRegion::meta_for(kind, 0, idx).class_key(),
            fill: Cell::new(1),
        }
    }

    /// The length and the hits left: a plain, non-atomic load. An atomic
    /// one, even relaxed, kept the compiler from reading a released
    /// buffer's bytes from where the buffer was built rather than from the
    /// copy its move made: one more store-to-load wait per pair, `hot` 8.8
    /// ns per pair instead of 8.0.
    #[inline(always)]
    fn word(&self) -> u32 {
        // Only the owner writes the word, on this thread; other threads only read it (atomically), and reads do not
        // race with reads.
        // SAFETY: the pointer is the atomic's own, valid as long as `self`; no write to it can happen meanwhile.
        unsafe { self.word.as_ptr().read() }
    }

    /// Sets the length and the hits left: a plain store, as only the owner
    /// writes the word.
    #[inline(always)]
    fn set_word(&self, word: u32) {
        self.word.store(word, Ordering::Relaxed);
    }

    /// The slots, to read.
    #[inline(always)]
    fn slots(&self) -> &[CachedRegion] {
        // Only the owner thread reaches the slots (a stack is `!Sync`, and `StackBlock` shares the words alone).
        // A `slots_mut` reference lives only within the method that took it, which calls nothing that reaches this.
        // SAFETY: so no `slots_mut` reference is alive now.
        unsafe { &*self.slots.get() }
    }

    /// The slots, to change.
    ///
    /// # Safety
    ///
    /// No other reference to the slots is alive while the result is: the
    /// stack's methods take it for their own use and drop it before they
    /// return.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn slots_mut(&self) -> &mut Box<[CachedRegion]> {
        // Only the owner thread reaches the slots (a stack is `!Sync`, and `StackBlock` shares the words alone).
        // SAFETY: no other reference to the slots is alive (this function's contract).
        unsafe { &mut *self.slots.get() }
    }

    #[inline(always)]
    fn len(&self) -> u32 {
        stack_len(self.word())
    }

    #[inline(always)]
    fn set_len(&self, len: u32) {
        self.set_word(len << LEN_SHIFT | self.left());
    }

    /// Hits left before the slow path's turn.
    #[inline(always)]
    fn left(&self) -> u32 {
        self.word() & ((1 << LEN_SHIFT) - 1)
    }

    /// Allocations served since the last trim.
    fn hits(&self) -> u32 {
        self.served.get().wrapping_add(u32::from(self.mark.get())).wrapping_sub(self.left())
    }

    fn clear_hits(&self) {
        self.served.set(0);
        self.mark.set(self.left() as u8);
    }

    /// The hit path's pop: the newest region, unless the stack is empty or
    /// it is the slow path's turn ([`pop_slot_counting`](Self::pop_slot_counting));
    /// leaves the region in its slot until the next push.
    #[inline(always)]
    fn pop_slot(&self) -> Option<NonNull<CachedRegion>> {
        let word = self.word().wrapping_sub(POP);
        if word & POP_GUARD != 0 {
            return None;
        }
        self.set_word(word);
        Some(self.slot_at(word >> LEN_SHIFT))
    }

    /// The slow path's pop: the newest region unless the stack is empty,
    /// and whether this was the slow path's turn, which counts the hits
    /// since the last turn and leaves `reload` hits to the hit path.
    fn pop_slot_counting(&self, reload: u32) -> Option<(NonNull<CachedRegion>, bool)> {
        let len = self.len();
        if len == 0 {
            return None;
        }
        let left = self.left();
        let turn = left == 0;
        let left = if turn {
            self.served.set(self.served.get().wrapping_add(u32::from(self.mark.get()) + 1));
            self.mark.set(reload as u8);
            reload
        } else {
            left - 1
        };
        self.set_word((len - 1) << LEN_SHIFT | left);
        Some((self.slot_at(len - 1), turn))
    }

    /// The slot at `at`, below the length just popped.
    #[inline(always)]
    fn slot_at(&self, at: u32) -> NonNull<CachedRegion> {
        let slots = self.slots();
        debug_assert!(
            at < self.room_word.get() >> LEN_SHIFT && slots.len() << LEN_SHIFT == self.room_word.get() as usize
        );
        // SAFETY: `at` is below the length before the pop, which is at most `room == slots.len()`.
        NonNull::from(unsafe { slots.get_unchecked(at as usize) })
    }

    /// Removes the `count` oldest regions (at most `len`) and gives them to
    /// `free`; returns how many went.
    fn drain_oldest(&self, count: usize, mut free: impl FnMut(CachedRegion)) -> usize {
        let (count, len) = (count.min(self.len() as usize), self.len() as usize);
        self.slots()[..count].iter().copied().for_each(&mut free);
        // SAFETY: the reference ends with the statement, and `slots()`'s above.
        unsafe { self.slots_mut() }.copy_within(count..len, 0);
        self.set_len((len - count) as u32);
        count
    }

    /// Adds a region on top; false (nothing changed) when the stack is full or
    /// the class is not cached.
    #[inline(always)]
    fn push(&self, region: CachedRegion) -> bool {
        let Some(word) = self.room_for_one() else {
            return self.room_word.get() == 0 && self.make_room(region);
        };
        self.push_unchecked(word, region);
        true
    }

    /// The word, when a push needs no more than a store: the slots exist
    /// and are not all taken (the hits left, below the length, never reach
    /// a length's unit).
    #[inline(always)]
    fn room_for_one(&self) -> Option<u32> {
        let word = self.word();
        (word < self.room_word.get()).then_some(word)
    }

    /// The slot a push onto a stack whose word is `word` fills, with room
    /// ([`room_for_one`](Self::room_for_one)).
    #[inline(always)]
    fn slot_for_push(&self, word: u32) -> *mut CachedRegion {
        let len = word >> LEN_SHIFT;
        assert!(word < self.room_word.get(), "push on a full stack");
        // SAFETY: the reference ends with the statement.
        let slots = unsafe { self.slots_mut() }.as_mut_ptr();
        // SAFETY: `len < room == slots.len()` (checked above; the check folds into the caller's).
        unsafe { slots.add(len as usize) }
    }

    /// Adds a region on top of a stack whose word is `word`, with room
    /// ([`room_for_one`](Self::room_for_one)).
    #[inline(always)]
    fn push_unchecked(&self, word: u32, region: CachedRegion) {
        let slot = self.slot_for_push(word);
        // SAFETY: a slot of this stack's storage (`slot_for_push`).
        unsafe { slot.write(region) };
        self.set_word(word + (1 << LEN_SHIFT));
    }

    /// Adds as many of `regions` on top as there is room for; returns how
    /// many. One store of the length for them all: a store per region, each
    /// read back by the next, made parking a batch from another thread a
    /// chain of store-to-load waits.
    #[inline]
    fn extend(&self, regions: &[CachedRegion]) -> usize {
        let len = self.len() as usize;
        let added = regions.len().min(self.slots().len() - len);
        // SAFETY: the reference ends with the next statement, and `slots()`'s above.
        let slots = unsafe { self.slots_mut() };
        slots[len..len + added].copy_from_slice(&regions[..added]);
        self.set_word(self.word() + ((added as u32) << LEN_SHIFT));
        added
    }

    /// Reverses the order of the top `count` regions.
    fn reverse_top(&self, count: usize) {
        let len = self.len() as usize;
        // SAFETY: the reference ends with the next statement, and `len()` takes none.
        let slots = unsafe { self.slots_mut() };
        slots[len - count..len].reverse();
    }

    /// A released, cached, untracked allocation's region on top, when the
    /// stack has room (false, nothing changed, when it has not): a copy of
    /// the allocation's bytes, a 16-byte and an 8-byte move, which the pop
    /// that takes the region back reads without a stall (see
    /// [`Allocation`]'s layout). Room is checked before the allocation is
    /// read, so that a full stack keeps nothing aside.
    ///
    /// A pop leaves its region in the slot, so the region popped last and
    /// released now (the common case: a buffer freed soon after it was
    /// taken) is in its slot already, and only the word changes. The
    /// copy's stores were read back by the next pop, which waited for
    /// them: `hot` 7.95 -> 7.7 ns per pair. The address decides: the
    /// caller checked the class, tag and owner, and an address belongs to
    /// one chunk.
    #[inline(always)]
    fn push_released(&self, allocation: &Allocation) -> bool {
        let Some(word) = self.room_for_one() else { return false };
        let slot = self.slot_for_push(word);
        // SAFETY: a slot of this stack's storage (`slot_for_push`), which holds a region (slots are made filled).
        let kept = unsafe { &*slot };
        debug_assert!(kept.ptr != allocation.ptr || kept.meta == allocation.meta && kept.owner == allocation.owner);
        if kept.ptr != allocation.ptr {
            // The slot's type has the allocation's fields in the same order
            // (checked at compile time at `CacheHit`), so the copy is the
            // region as `push_unchecked` would keep it.
            // The two do not overlap: the allocation lives in a buffer, the slot in the stack.
            // SAFETY: a slot of this stack's storage (`slot_for_push`).
            unsafe { std::ptr::copy_nonoverlapping(std::ptr::from_ref(allocation), slot.cast::<Allocation>(), 1) };
        }
        self.set_word(word + (1 << LEN_SHIFT));
        true
    }

    /// The stack's storage is not made yet (or the class is not cached).
    #[cold]
    #[inline(never)]
    fn make_room(&self, region: CachedRegion) -> bool {
        if self.capacity == 0 {
            return false;
        }
        // SAFETY: the reference ends with the statement.
        *unsafe { self.slots_mut() } = vec![region; self.capacity as usize].into_boxed_slice();
        self.room_word.set(self.capacity << LEN_SHIFT);
        self.push(region)
    }

    /// Frees the slots of an empty stack (its cache is going), which then
    /// reads as a class not cached.
    fn free_storage(&self) {
        debug_assert_eq!(self.len(), 0);
        self.room_word.set(0);
        // SAFETY: the reference ends with the statement.
        *unsafe { self.slots_mut() } = Box::default();
    }
}

/// The stacks of one memory kind, one per class, in one block that the
/// cache's [`CacheTally`] owns, so that the pool's metrics can read the
/// stacks' words (their lengths) on any thread for as long as the tally
/// lives, which is at least as long as the cache.
///
/// Everything else in a stack is the owner thread's, reached through the
/// [`Stacks`] view the cache takes once, when it is made.
pub(crate) struct StackBlock {
    /// `len` stacks, from a leaked `Box<[Stack]>`.
    base: NonNull<Stack>,
    len: usize,
}

// SAFETY: what a `StackBlock` shares is its stacks' words, atomics, read by
// `parked` through raw pointers, never as a `&Stack`. The rest of each stack
// is reached only through the view the owner thread takes when it makes the
// block (`view`, private to this module), or by the block's drop, which runs
// once the owner's cache, holding the tally, is gone.
unsafe impl Send for StackBlock {}
// SAFETY: as for `Send`: `&StackBlock` reads the atomic words only.
unsafe impl Sync for StackBlock {}

impl StackBlock {
    fn new(stacks: Box<[Stack]>) -> StackBlock {
        let len = stacks.len();
        StackBlock { base: NonNull::from(Box::leak(stacks)).cast(), len }
    }

    /// The owner's view of the stacks: called once, by the thread making the
    /// cache, before the block is shared.
    fn view(&self) -> Stacks {
        Stacks { base: self.base, len: self.len }
    }

    /// Bytes parked in the stacks, whose classes have the sizes
    /// `cached_sizes` where they are cached (0 where not: those stacks stay
    /// empty). On any thread: it reads the words alone.
    pub(crate) fn parked(&self, cached_sizes: &[u32]) -> u64 {
        (0..self.len).zip(cached_sizes).fold(0u64, |sum, (idx, &size)| {
            // The word is an atomic; the owner's shared references to the
            // stack allow that (nothing else of the stack is read here).
            // SAFETY: `idx < len`, within the block, which `&self` keeps alive.
            let word = unsafe { &*std::ptr::addr_of!((*self.base.as_ptr().add(idx)).word) };
            sum + u64::from(stack_len(word.load(Ordering::Relaxed))) * u64::from(size)
        })
    }
}

impl Drop for StackBlock {
    fn drop(&mut self) {
        // The owner's view is gone: its cache held the tally that held this block.
        // SAFETY: `base` and `len` came from a leaked `Box<[Stack]>`, dropped once, here, and nothing else uses it.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.base.as_ptr(), self.len)) });
    }
}

impl std::fmt::Debug for StackBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackBlock").field("len", &self.len).finish_non_exhaustive()
    }
}

/// The owner thread's view of a kind's [`StackBlock`], through a raw
/// pointer: the cache also keeps a pointer to the stack of its last hit
/// ([`ThreadCache::last_hit`]), which stays valid while the stacks are used
/// through this (a `Box` would invalidate it at each use). Valid while the
/// cache's tally, which owns the block, lives.
struct Stacks {
    base: NonNull<Stack>,
    len: usize,
}

impl Stacks {
    fn len(&self) -> usize {
        self.len
    }

    /// The stack of class `idx`, as a pointer valid as long as the block: a
    /// class index (from `index_of`, or a pooled region's size index), for
    /// which there is always a stack.
    #[inline(always)]
    fn at(&self, idx: usize) -> NonNull<Stack> {
        debug_assert!(idx < self.len);
        // There is a stack for every class (`ThreadCache::new`).
        // SAFETY: callers pass class indexes, so `idx < len`: within the stacks' allocation.
        unsafe { self.base.add(idx) }
    }

    /// The stack of class `idx` (see [`at`](Self::at)).
    #[inline(always)]
    fn get(&self, idx: usize) -> &Stack {
        // SAFETY: `at` points to a live stack (the cache holds the block), used on the owner thread only.
        unsafe { self.at(idx).as_ref() }
    }

    fn as_slice(&self) -> &[Stack] {
        // SAFETY: `base` holds `len` live stacks (as in `get`).
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.len) }
    }
}

impl std::fmt::Debug for Stacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The stacks of one memory kind and the arena they serve.
#[derive(Debug)]
struct KindCache {
    arena: Option<NonNull<Arena>>,
    stacks: Stacks,
}

impl KindCache {
    /// The stack of class `idx`: a class index (from `index_of`, or a pooled
    /// region's size index), for which there is always a stack.
    #[inline(always)]
    fn stack(&self, idx: usize) -> &Stack {
        self.stacks.get(idx)
    }

    fn arena(&self) -> Option<&Arena> {
        // SAFETY: the arena belongs to the pool held by this cache's shared
        // part, which outlives the ThreadCache.
        self.arena.map(|arena| unsafe { arena.as_ref() })
    }

    /// Frees up to `count` of the oldest regions of class `idx` to the arena;
    /// returns how many went.
    fn free_oldest(&mut self, idx: usize, count: usize) -> usize {
        // Without an arena nothing is cached (every capacity is 0).
        let Some(arena) = self.arena else { return 0 };
        // SAFETY: as in `arena()`.
        let arena = unsafe { arena.as_ref() };
        self.stacks.get(idx).drain_oldest(count, |region| arena.free_at(region.meta.chunk(), region.ptr, idx))
    }

    /// Regions in the stacks.
    #[cfg(debug_assertions)]
    fn regions_parked(&self) -> usize {
        self.stacks.as_slice().iter().map(|stack| stack.len() as usize).sum()
    }
}

/// The owner thread's part of a thread cache.
#[derive(Debug)]
pub(crate) struct ThreadCache {
    shared: NonNull<CacheShared>,
    /// A copy of the pool's size-to-class lookup: the hit path reads it
    /// here, one load nearer than through the pool's table (`hot-loop` 7.2 -> 6.8
    /// ns per pair; its chain of dependent loads is what the pair waits on).
    lookup: ClassLookup,
    /// Indexed by `MemoryKind::index`: heap, direct.
    kinds: [KindCache; 2],
    /// Buffers allocated through this cache and not released on this thread
    /// (what the owner settles at exit, see the module docs), plus the
    /// regions in the stacks. A hit moves a region from a stack to a buffer
    /// and a release on this thread moves it back, so neither changes the
    /// sum: only the slow paths count, and the hot path writes no counter
    /// for it. The buffers are `out_or_parked - regions parked`.
    out_or_parked: usize,
    /// The buffers counted the plain way, to check `out_or_parked` against in
    /// debug builds.
    #[cfg(debug_assertions)]
    local_out_check: usize,
    /// `period - 1`, where every `period`-th lookup of a class goes to the
    /// slow path, which counts the `period` lookups at once for the trim and
    /// the leak detector's sampling ([`count_slow`](Self::count_slow)): the
    /// hits the hit path serves in between. It counts them down in the word
    /// it updates anyway, and the test of the word for an empty stack
    /// tests for the slow path's turn too ([`POP_GUARD`]).
    reload: u32,
    /// Lookups counted since the last trim: a class's lookups are counted a
    /// period at a time, so up to `period - 1` per class in use are not yet.
    lookups: u32,
    /// `lookups` at the last look at the clock (time-based trims only).
    clock_checked_at: u32,
    trim_interval: u32,
    trim_period: Option<Duration>,
    last_trim: Instant,
    /// [`Builder::cache_fill_bytes`](crate::Builder::cache_fill_bytes).
    fill_bytes: usize,
    /// The shared part's tally, reached without going through `shared`. It
    /// owns the stacks that `kinds` views, so the views stay valid while
    /// the cache holds it; the registry and the shared part hold it too,
    /// so that the metrics can read the stacks' lengths until the cache is
    /// deregistered.
    tally: Arc<CacheTally>,
    /// The stack the last region for a buffer came from: where a release on
    /// this thread most likely goes (see [`release_to_last_hit`](Self::release_to_last_hit)).
    last_hit: NonNull<Stack>,
    /// The pool's leak-detection level, and the allocations left until the
    /// next one the detector tracks (it may run below zero, by up to a
    /// period: the next gap is added to what is left, so that the rate
    /// holds on average).
    leak_level: LeakLevel,
    leak_left: i64,
}

/// What an allocation on the slow path counts as ([`ThreadCache::count_slow`]).
#[derive(Debug, Clone, Copy)]
enum Counted {
    /// Served from a stack on the slow path's turn: the class's hits of a
    /// whole period are counted now.
    Turn,
    /// Served from a stack otherwise: counted at the class's next turn.
    Hit,
    /// A lookup of a cached class the stack could not serve.
    Miss,
    /// Not a lookup: a class or a kind this cache does not keep.
    Other,
}

/// Every how many hits of a class the slow path counts them (a power of
/// two, at most `MAX_LEFT + 1`): the leak detector's mean sampling gap
/// ([`leak::SAMPLING_INTERVAL`], so that no period holds more than one
/// sample on average), or fewer when the trim interval is not a multiple
/// of it, so that a thread using one class trims at the interval; 1 when
/// the leak detector tracks every allocation.
fn event_period(config: &Config) -> u64 {
    if config.leak_detection == LeakLevel::Paranoid {
        return 1;
    }
    let interval = u64::from(config.cache_trim_interval.max(1));
    (interval & interval.wrapping_neg()).min(u64::from(leak::SAMPLING_INTERVAL))
}

/// How many regions of class `idx` a thread cache keeps: Netty's counts up
/// to the max cached buffer capacity (powers of two), then what the large
/// cache budget allows, up to the normal count.
fn stack_capacity(config: &Config, classes: &SizeClasses, idx: usize) -> u32 {
    let count = if classes.is_small(idx) { config.small_cache_size } else { config.normal_cache_size };
    // 0 means "not cached" (0.next_power_of_two() would be 1).
    let count = if count == 0 { 0 } else { count.checked_next_power_of_two().unwrap_or(0) };
    let size = classes.size_of(idx);
    let count = if classes.is_small(idx) || size <= config.max_cached_buffer_capacity {
        count
    } else {
        count.min(config.large_cache_bytes / size)
    };
    count as u32
}

impl ThreadCache {
    /// A cache bound to the pool's least-used arenas; with `caching` false it
    /// is bound but keeps no regions.
    pub(crate) fn new(pool: &Arc<Pool>, caching: bool) -> ThreadCache {
        let config = pool.config();
        let classes = pool.size_classes().clone();
        let capacities: Box<[u32]> = (0..classes.num_classes())
            .map(|idx| if caching { stack_capacity(config, &classes, idx) } else { 0 })
            .collect();
        let reload = (event_period(config) - 1) as u32;
        let kind_cache = |kind| {
            let arena = pool.bind_least_used(kind);
            // A stack for every class (capacity 0 where nothing is cached), so
            // that the hot path indexes without a bounds check.
            let stacks = (0..classes.num_classes())
                .map(|idx| {
                    let capacity = if arena.is_some() { capacities[idx] as usize } else { 0 };
                    Stack::new(kind, idx, capacity, classes.size_of(idx), reload)
                })
                .collect();
            let block = StackBlock::new(stacks);
            (KindCache { arena: arena.map(NonNull::from), stacks: block.view() }, block)
        };
        let [(heap, heap_block), (direct, direct_block)] = MemoryKind::ALL.map(kind_cache);
        let kinds = [heap, direct];
        let tally = Arc::new(CacheTally::new([heap_block, direct_block]));
        let shared = Box::new(CacheShared {
            pool: pool.clone(),
            arenas: [kinds[0].arena, kinds[1].arena],
            cached_sizes: (0..classes.num_classes())
                .map(|idx| if capacities[idx] > 0 { classes.size_of(idx) as u32 } else { 0 })
                .collect(),
            remote: ArrayQueue::new(REMOTE_QUEUE_BATCHES),
            spare: ArrayQueue::new(SPARE_BATCHES),
            closed: AtomicBool::new(false),
            owner_token: thread_local::thread_token(),
            outstanding: CachePadded::new(AtomicUsize::new(OWNER_BIAS)),
            tally: tally.clone(),
        });
        let shared = NonNull::from(Box::leak(shared));
        pool.cache_registry().register(tally.clone(), SharedRef(shared));
        let trim_period =
            (config.cache_trim_interval_millis > 0).then(|| Duration::from_millis(config.cache_trim_interval_millis));
        let mut cache = ThreadCache {
            leak_level: config.leak_detection,
            leak_left: 0,
            reload,
            last_hit: kinds[0].stacks.at(0),
            tally,
            shared,
            lookup: classes.lookup().clone(),
            kinds,
            out_or_parked: 0,
            #[cfg(debug_assertions)]
            local_out_check: 0,
            lookups: 0,
            clock_checked_at: 0,
            trim_interval: config.cache_trim_interval,
            trim_period,
            last_trim: Instant::now(),
            fill_bytes: config.cache_fill_bytes,
        };
        cache.next_leak_sample();
        cache
    }

    /// Counts a buffer whose region did not come from the stacks.
    fn count_new_buffer(&mut self) {
        self.out_or_parked += 1;
        #[cfg(debug_assertions)]
        {
            self.local_out_check += 1;
        }
    }

    /// Counts a buffer of this cache released on its thread, for the debug
    /// check only: `out_or_parked` counts the region wherever it goes.
    #[inline(always)]
    fn count_release(&mut self) {
        #[cfg(debug_assertions)]
        {
            self.local_out_check -= 1;
        }
    }

    /// Debug builds: `out_or_parked` against the plain count.
    #[cfg(debug_assertions)]
    fn check_buffers_out(&self) {
        let parked: usize = self.kinds.iter().map(KindCache::regions_parked).sum();
        assert_eq!(self.out_or_parked - parked, self.local_out_check, "buffers out: slow-path count vs plain");
    }

    /// Counts an allocation the slow path served, and returns whether the
    /// leak detector tracks it. A hit is counted down in its stack's word,
    /// and every `period`-th one (the class's turn) brings the `period` hits
    /// of that class to the trim's count and the leak detector's; a miss of
    /// a cached class counts for both at once, anything else for the leak
    /// detector alone. Runs a trim that comes due.
    fn count_slow(&mut self, counted: Counted) -> bool {
        let allocations = match counted {
            Counted::Turn => self.reload + 1,
            Counted::Hit => return false,
            Counted::Miss => 1,
            Counted::Other => 0,
        };
        if allocations > 0 {
            self.lookups = self.lookups.saturating_add(allocations);
            self.trim_if_due();
        }
        self.leak_left -= i64::from(allocations.max(1));
        self.leak_left <= 0 && self.next_leak_sample()
    }

    /// Adds the next gap to the allocations left until a tracked one; true
    /// when the detector is on (the allocation that used up the last gap is
    /// tracked).
    #[cold]
    fn next_leak_sample(&mut self) -> bool {
        let (gap, on) = match self.leak_level {
            LeakLevel::Disabled => (i64::MAX / 2, false),
            LeakLevel::Paranoid => (1, true),
            LeakLevel::Simple | LeakLevel::Advanced => (i64::from(leak::next_gap()), true),
        };
        self.leak_left += gap;
        on
    }

    /// The shared part, for identity checks.
    #[inline]
    pub(crate) fn shared_ptr(&self) -> NonNull<CacheShared> {
        self.shared
    }

    fn shared(&self) -> &CacheShared {
        // SAFETY: the shared part lives at least as long as its owner part
        // (the bias in `outstanding` is only removed in `drop`).
        unsafe { self.shared.as_ref() }
    }

    /// Whether the pool behind this cache has been dropped by its users.
    pub(crate) fn pool_is_closed(&self) -> bool {
        self.shared().pool.is_closed()
    }

    /// The hit path: a region of `size`'s class from the stack, or `None`,
    /// also on the class's turn of the slow path (which counts the class's
    /// hits and samples for the leak detector): the slow path
    /// ([`allocate_counted`](Self::allocate_counted)) then serves it, so that
    /// the hit path has one outcome and builds its buffer in one place.
    #[inline(always)]
    fn allocate_cached(&mut self, kind: MemoryKind, size: usize) -> Option<Allocation> {
        let (slot, _) = self.take_slot(kind, size)?;
        // SAFETY: just popped for this allocation; nothing pushes in between.
        Some(unsafe { Allocation::from_slot(slot) })
    }

    /// The hit path's pop: the slot of the newest cached region of `size`'s
    /// class (valid until the stack's next push), with the class's fresh
    /// marks.
    #[inline(always)]
    fn take_slot(&mut self, kind: MemoryKind, size: usize) -> Option<(NonNull<CachedRegion>, Marks)> {
        let idx = self.lookup.index_of(size)?;
        let stacks = &self.kinds[kind.index()].stacks;
        let at = stacks.at(idx);
        // None also on the slow path's turn, which counts the class's hits.
        let slot = stacks.get(idx).pop_slot()?;
        Some((slot, self.took(kind, idx, at, slot)))
    }

    /// Any allocation through this cache, with whether the leak detector
    /// tracks it.
    #[inline(always)]
    fn allocate(&mut self, kind: MemoryKind, size: usize) -> Result<(Allocation, bool), AllocError> {
        if let Some(allocation) = self.allocate_cached(kind, size) {
            return Ok((allocation, false));
        }
        self.allocate_counted(kind, size)
    }

    /// What the hot path leaves: a class's period-th hit, or a miss;
    /// counted, with the leak detector's sampling.
    #[cold]
    #[inline(never)]
    fn allocate_counted(&mut self, kind: MemoryKind, size: usize) -> Result<(Allocation, bool), AllocError> {
        let taken = self.lookup.index_of(size).and_then(|idx| {
            self.top_up(kind.index(), idx);
            self.take(kind, idx)
        });
        let (allocation, counted) = match taken {
            Some(taken) => taken,
            None => self.allocate_slow(kind, size)?,
        };
        Ok((allocation, self.count_slow(counted)))
    }

    /// Every other allocation: misses, huge blocks, kinds without arenas;
    /// with what it counts as.
    fn allocate_slow(&mut self, kind: MemoryKind, size: usize) -> Result<(Allocation, Counted), AllocError> {
        let k = kind.index();
        let Some(arena) = self.kinds[k].arena() else {
            return Ok((Pool::allocate_unpooled(&self.shared().pool, kind, size)?, Counted::Other));
        };
        let Some(idx) = self.lookup.index_of(size) else {
            let memory = self.shared().pool.within_limit(|| arena.allocate_huge(size))?;
            let detached = Detached::Huge { arena: NonNull::from(arena), memory, owner: HugeOwner::Cache(self.shared) };
            self.count_new_buffer();
            return Ok((Allocation::from_huge(kind, detached), Counted::Other));
        };
        let lookup = self.kinds[k].stack(idx).capacity > 0;
        if lookup && self.drain_remote(k, idx) > 0 {
            if let Some(taken) = self.take(kind, idx) {
                return Ok(taken);
            }
        }
        let arena = self.kinds[k].arena().expect("checked above");
        let classes = arena.size_classes();
        let stack = self.kinds[k].stack(idx);
        let extra = if lookup {
            let most = most_filled(stack.capacity, classes.size_of(idx), self.fill_bytes, classes.is_small(idx));
            let take = usize::from(stack.fill.get()).min(most);
            // `most` is at most half of a capacity that fits a u16 (MAX_CACHE_SIZE).
            stack.fill.set((2 * take).min(most) as u16);
            take - 1
        } else {
            0
        };
        // A miss finds the stack empty, but a batch must never find it full:
        // the arena hands each region over for good.
        let extra = extra.min((stack.capacity - stack.len()) as usize);
        let region = if extra > 0 {
            let (shared, mut kept) = (self.shared, 0);
            let region = self.shared().pool.within_limit(|| {
                arena.allocate_batch(idx, extra, |extra| {
                    let pushed = stack.push(CachedRegion::of(kind, extra.ptr, extra.chunk, extra.size_idx, shared));
                    debug_assert!(pushed, "a stack with room takes a push");
                    kept += 1;
                })
            })?;
            // Pops take the newest: reversed, the regions go out in the
            // arena's order, at rising addresses within each subpage.
            stack.reverse_top(kept);
            self.out_or_parked += kept;
            region
        } else {
            self.shared().pool.within_limit(|| arena.allocate(idx))?
        };
        self.count_new_buffer();
        let cached = CachedRegion::of(kind, region.ptr, region.chunk, region.size_idx, self.shared);
        Ok((Allocation::from_region(cached), if lookup { Counted::Miss } else { Counted::Other }))
    }

    /// The slow path's take: the newest cached region of class `idx` of
    /// `kind` for a buffer, counted as a hit or the class's turn.
    fn take(&mut self, kind: MemoryKind, idx: usize) -> Option<(Allocation, Counted)> {
        let stacks = &self.kinds[kind.index()].stacks;
        let at = stacks.at(idx);
        let (slot, turn) = stacks.get(idx).pop_slot_counting(self.reload)?;
        self.took(kind, idx, at, slot);
        // SAFETY: just popped for this allocation; nothing pushes in between.
        Some((unsafe { Allocation::from_slot(slot) }, if turn { Counted::Turn } else { Counted::Hit }))
    }

    /// Notes a region just popped from the stack of class `idx` of `kind`
    /// (at `at`) for a buffer, and gives the class's fresh marks.
    #[inline(always)]
    fn took(&mut self, kind: MemoryKind, idx: usize, at: NonNull<Stack>, slot: NonNull<CachedRegion>) -> Marks {
        // SAFETY: `at` points to a live stack, and `&mut self` borrows them all.
        let marks = unsafe { at.as_ref() }.fresh;
        self.last_hit = at;
        #[cfg(debug_assertions)]
        {
            // SAFETY: just popped; the slot keeps the region until the next push.
            let region = unsafe { slot.as_ref() };
            assert_eq!(region.meta, CachedRegion::meta_for(kind, region.meta.chunk(), idx));
            assert_eq!(region.owner, self.shared.cast());
            self.local_out_check += 1;
        }
        #[cfg(not(debug_assertions))]
        let _ = (kind, idx, slot);
        marks
    }

    /// The owner thread's release into the stack of the last hit, when it is
    /// the buffer's class's; false (nothing changed) when it is not or is
    /// full: [`release_to_class`](Self::release_to_class) comes next (a
    /// full guessed stack is looked up again there: rare, and then the same
    /// stack, full again).
    ///
    /// The stack is guessed, not looked up: the one the last hit came
    /// from, checked against the buffer's class and tag. The guess is made
    /// from what this cache holds, so the push's address does not wait for
    /// the buffer's bytes, which have usually just been copied (a buffer
    /// moved by value is copied 16 bytes at a time, and each such copy takes
    /// several cycles to be read back). The check on the buffer's bytes is
    /// a branch the CPU predicts, and a stack chosen from them would have
    /// made every hot pair wait for those copies: `hot` 256 B 15.8 -> 10.7 ns
    /// (BENCHMARKS.md, session 5).
    #[inline(always)]
    fn release_to_last_hit(&mut self, allocation: &Allocation) -> bool {
        // The stacks live and stay in place as long as the cache, and this
        // thread, the owner, is the only one to use them but for their words.
        // SAFETY: `last_hit` points to one of this cache's stacks (from `Stacks::at`).
        let stack = unsafe { self.last_hit.as_ref() };
        if stack.class_key != allocation.meta.class_key() {
            return false;
        }
        // The key says untracked and from a cache: the meta is as kept.
        if !stack.push_released(allocation) {
            return false;
        }
        self.count_release();
        true
    }

    /// The owner thread's release into the stack the buffer's meta names,
    /// when the last hit's did not take it; false when the stack is full or
    /// the class is not cached (nothing is changed then).
    #[inline(always)]
    fn release_to_class(&mut self, allocation: &Allocation) -> bool {
        let kind = allocation.kind();
        let stack = self.kinds[kind.index()].stack(allocation.meta.size_idx() as usize);
        // Untracked and from a cache (the caller checked): the meta is as
        // kept. A stack without slots yet reads as full: the slow path makes them.
        if !stack.push_released(allocation) {
            return false;
        }
        self.count_release();
        true
    }

    /// Moves regions released on other threads into the stacks, until the
    /// stack of class `idx` of kind index `k` (the one a request missed) is
    /// full or the queue is empty; returns how many arrived. What stays
    /// queued serves the next miss: popping it all would free to the arena
    /// whatever the stacks have no room for, only for the next misses to
    /// allocate it there again.
    fn drain_remote(&mut self, k: usize, idx: usize) -> usize {
        self.drain_remote_until(|cache| {
            let stack = cache.kinds[k].stack(idx);
            stack.len() >= stack.capacity
        })
    }

    /// Moves queued batches into the stack of class `idx` of kind `k` while
    /// it has room for a whole one (so that none of the class's regions
    /// goes to the arena): at the slow path's turns and misses. Taken only
    /// when the stack ran dry, a busy class's batches came in bursts of
    /// four, after the longest wait in the queue. `xthread`, six
    /// interleaved rounds, those in the host's usual mode: 256 B 59 -> 55 ns
    /// per buffer, 1 KiB 55 -> 53, 16 KiB 50 -> 46; 64 B, 4 KiB and `mixed`
    /// unchanged.
    fn top_up(&mut self, k: usize, idx: usize) {
        let room = |cache: &mut ThreadCache| {
            let stack = cache.kinds[k].stack(idx);
            stack.len() + OUTBOX_REGIONS as u32 <= stack.capacity
        };
        if room(self) && !self.shared().remote.is_empty() {
            self.drain_remote_until(|cache| !room(cache));
        }
    }

    /// Moves queued regions into the stacks a batch at a time until `done`
    /// says so or the queue is empty; returns how many arrived.
    fn drain_remote_until(&mut self, mut done: impl FnMut(&mut ThreadCache) -> bool) -> usize {
        // SAFETY: as in `shared()`; a separate borrow so that `park` can
        // take `&mut self`.
        let shared = unsafe { self.shared.as_ref() };
        let mut count = 0;
        while let Some(batch) = shared.pop_remote() {
            count += batch.regions.len();
            self.park_all(&batch.regions);
            shared.recycle(batch.regions);
            if done(self) {
                break;
            }
        }
        count
    }

    /// Parks a batch of released regions: each run of regions of one class
    /// and kind goes into its stack in one go, and what the stack has no
    /// room for goes back to the arena.
    fn park_all(&mut self, regions: &[RemoteRegion]) {
        // SAFETY: as in `shared()`; a separate borrow so that `park_runs` can take `&mut self`.
        let shared = unsafe { self.shared.as_ref() };
        self.park_runs(regions, |_, left| CachedRegion::free_all_to_arena(left, shared));
    }

    /// [`park_all`](Self::park_all) with the regions a stack has no room
    /// for given to `left_over`, with their stack.
    fn park_runs(&mut self, regions: &[RemoteRegion], mut left_over: impl FnMut(&Stack, &[RemoteRegion])) {
        let mut rest = regions;
        while let Some(first) = rest.first() {
            let key = first.meta.class_key();
            let (run, next) = rest.split_at(rest.iter().take_while(|r| r.meta.class_key() == key).count());
            let kept = self.keep_run(run);
            if kept < run.len() {
                left_over(self.kinds[first.meta.kind().index()].stack(first.meta.size_idx().into()), &run[kept..]);
            }
            rest = next;
        }
    }

    /// The periodic trim's drain: parks the regions queued when it starts.
    /// What a stack has no room for goes back into the queue when its
    /// class is busy (it served at least a stackful since the last trim),
    /// and to the arena otherwise. Freed, a busy class's regions came back
    /// from the arena at its next misses, under the arena's lock: in
    /// `xthread` 256 B, 1.4 % of all allocations.
    fn drain_remote_for_trim(&mut self) {
        // SAFETY: as in `shared()`; a separate borrow so that `park_runs` can take `&mut self`.
        let shared = unsafe { self.shared.as_ref() };
        let mut held = RemoteBatch::default();
        for _ in 0..shared.remote.len() {
            let Some(batch) = shared.pop_remote() else { break };
            self.park_runs(&batch.regions, |stack, left| {
                if stack.hits() < stack.capacity {
                    return CachedRegion::free_all_to_arena(left, shared);
                }
                for &region in left {
                    if held.regions.is_empty() {
                        held.regions = shared.batch_storage();
                    }
                    held.push(region, u64::from(shared.cached_sizes[usize::from(region.meta.size_idx())]));
                    if held.is_full() {
                        shared.queue_or_free(std::mem::take(&mut held));
                    }
                }
            });
            shared.recycle(batch.regions);
        }
        if !held.regions.is_empty() {
            shared.queue_or_free(held);
        }
    }

    /// Keeps the first regions of `run` (regions of this cache, of one
    /// class and kind, not empty) that their stack has room for; returns how
    /// many.
    fn keep_run(&mut self, run: &[RemoteRegion]) -> usize {
        let first = run[0];
        debug_assert!(run
            .iter()
            .all(|r| r.owner == self.shared.cast() && r.meta.class_key() == first.meta.class_key()));
        let stack = self.kinds[first.meta.kind().index()].stack(first.meta.size_idx().into());
        // The first push makes the stack's slots if they are not made yet.
        if !stack.push(first) {
            return 0;
        }
        let kept = 1 + stack.extend(&run[1..]);
        self.out_or_parked += kept;
        kept
    }

    /// Keeps a released region in its stack, or frees it when the stack is
    /// full or the class is not cached.
    fn park(&mut self, remote: RemoteRegion) {
        self.park_all(std::slice::from_ref(&remote));
    }

    /// A trim when the interval or the period is over (the clock is read
    /// every [`CLOCK_CHECK_EVERY`] lookups) or the pool asked for one.
    fn trim_if_due(&mut self) {
        let period_over = self.trim_period.is_some_and(|period| {
            self.lookups - self.clock_checked_at >= CLOCK_CHECK_EVERY && {
                self.clock_checked_at = self.lookups;
                self.last_trim.elapsed() >= period
            }
        });
        // The pool's request asks for everything, also when a trim is due
        // anyway.
        let requested = self.tally.take_trim_request();
        if requested || period_over || self.lookups >= self.trim_interval {
            self.trim_with(requested);
        }
    }

    /// The trim: each class keeps as many of its newest regions as it served
    /// since the last trim and frees the older ones, so idle classes drain
    /// and busy ones keep what they use. Netty frees (capacity - hits)
    /// instead, which empties a busy stack that is not full: in `window`
    /// `mixed` (52 classes, about 160 hits each per trim interval) that
    /// made 6.4 % of all allocations miss, against 1.0 % with this rule
    /// (the misses left are the large classes), and the workload ran at
    /// 139 ns per buffer against 198; peak RSS stayed at 1.08 x the live
    /// bytes (BENCHMARKS.md, session 6). Regions queued by other threads
    /// are parked first and trimmed by the same rule. When the pool asked
    /// for a trim ([`PooledAllocator::trim`](crate::PooledAllocator::trim)),
    /// every cached region goes back.
    pub(crate) fn trim(&mut self) {
        let everything = self.tally.take_trim_request();
        self.trim_with(everything);
    }

    /// Gives back every cached region of this thread.
    pub(crate) fn trim_all(&mut self) {
        self.tally.take_trim_request();
        self.trim_with(true);
    }

    fn trim_with(&mut self, everything: bool) {
        self.lookups = 0;
        self.clock_checked_at = 0;
        self.last_trim = Instant::now();
        if !everything {
            // Queued regions are parked first, and the rule below trims
            // them with the rest: a class still in use keeps them. Freed
            // outright, as they were, they went to the arena only for a
            // producer's next misses to take them back from it, under its
            // lock.
            self.drain_remote_for_trim();
        }
        for cache in &mut self.kinds {
            for idx in 0..cache.stacks.len() {
                let stack = cache.stacks.get(idx);
                let excess = if everything { usize::MAX } else { stack.len().saturating_sub(stack.hits()) as usize };
                stack.clear_hits();
                stack.fill.set((stack.fill.get() / 2).max(1));
                self.out_or_parked -= cache.free_oldest(idx, excess);
            }
        }
        #[cfg(debug_assertions)]
        self.check_buffers_out();
        if everything {
            self.shared().free_queued();
        }
    }
}

/// A thread's caches by pool id. It owns them, boxed and addressed only
/// through the raw pointer each box became, so that `CURRENT`'s copy of
/// that pointer stays valid however the table is used.
#[derive(Debug, Default)]
pub(crate) struct CacheTable {
    slots: Vec<Option<NonNull<ThreadCache>>>,
}

impl CacheTable {
    pub(crate) const fn new() -> CacheTable {
        CacheTable { slots: Vec::new() }
    }

    /// The cache for pool `id`.
    pub(crate) fn get(&self, id: usize) -> Option<NonNull<ThreadCache>> {
        self.slots.get(id).copied().flatten()
    }

    /// Runs `f` on the cache for pool `id`, if there is one.
    pub(crate) fn with<R>(&mut self, id: usize, f: impl FnOnce(&mut ThreadCache) -> R) -> Option<R> {
        let cache = self.get(id)?;
        // SAFETY: the table owns the cache (from `Box::into_raw` in `insert`,
        // freed only in `remove_where` and `drop`), and `&mut self` on this
        // thread's table means no other reference to it is active.
        Some(f(unsafe { &mut *cache.as_ptr() }))
    }

    /// Stores the cache for pool `id` and returns where it lives.
    pub(crate) fn insert(&mut self, id: usize, cache: ThreadCache) -> NonNull<ThreadCache> {
        if self.slots.len() <= id {
            self.slots.resize(id + 1, None);
        }
        debug_assert!(self.slots[id].is_none());
        let cache = NonNull::from(Box::leak(Box::new(cache)));
        self.slots[id] = Some(cache);
        cache
    }

    /// Drops the caches for which `dead` says so.
    pub(crate) fn remove_where(&mut self, dead: impl Fn(&ThreadCache) -> bool) {
        for slot in &mut self.slots {
            // SAFETY: as in `with`: owned by the table, no other reference active.
            if slot.is_some_and(|cache| dead(unsafe { cache.as_ref() })) {
                let cache = slot.take().expect("checked");
                // SAFETY: from `Box::leak` in `insert`, freed once, here.
                drop(unsafe { Box::from_raw(cache.as_ptr()) });
            }
        }
    }
}

impl Drop for CacheTable {
    fn drop(&mut self) {
        self.remove_where(|_| true);
    }
}

impl Drop for ThreadCache {
    /// The thread is exiting (or the pool is closed): every cached region goes
    /// back to its arena, the arenas' cache counts drop, and the shared part
    /// is settled.
    fn drop(&mut self) {
        thread_local::forget_current(self.shared);
        let shared_ptr = self.shared;
        // SAFETY: still alive: the bias is removed only at the end of this fn.
        let shared = unsafe { shared_ptr.as_ref() };
        shared.closed.store(true, Ordering::SeqCst);
        self.trim_with(true);
        for arena in self.kinds.iter().filter_map(KindCache::arena) {
            arena.unbind_thread_cache();
        }
        // The stacks are empty now (checked in debug builds by the trim):
        // their slots go now, the stacks themselves with the tally; what is
        // left is the buffers out.
        for kind in &self.kinds {
            kind.stacks.as_slice().iter().for_each(Stack::free_storage);
        }
        let settle = self.out_or_parked.wrapping_sub(OWNER_BIAS);
        let before = shared.outstanding.fetch_add(settle, Ordering::AcqRel);
        if before.wrapping_add(settle) == 0 {
            // SAFETY: no buffer of this cache is alive and the owner is gone.
            unsafe { CacheShared::destroy(shared_ptr) };
        }
    }
}

/// Loom models of the concurrency paths: run by `scripts/loom.sh`.
#[cfg(all(test, loom))]
mod loom_models {
    use loom::thread;

    use crate::test_config::active;
    use crate::PooledAllocator;

    fn tiny_pool() -> PooledAllocator {
        // 4 KiB chunks: every model run maps little memory. One region per
        // miss (no fill), so that a released region is the next one served
        // once it is back; the fill is the owner's alone, with no race.
        PooledAllocator::builder()
            .heap_arenas(1)
            .direct_arenas(0)
            .page_size(4096)
            .max_order(0)
            .cache_fill_bytes(0)
            .build()
            .unwrap()
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(f);
    }

    /// Waits until every thread cache is gone and every region is back in
    /// the arena. Loom's `join` returns before the joined thread's
    /// thread-local destructors run (std's waits for them), so the exit
    /// path may still be running; a region that is really lost makes this
    /// spin until loom gives up on the branch count, failing the model.
    fn settle(alloc: &PooledAllocator) {
        while alloc.metric().num_thread_local_caches() != 0 || active(alloc) != 0 {
            thread::yield_now();
        }
    }

    /// A buffer released on another thread while its allocating thread
    /// allocates again: the region reaches the owner's cache through the
    /// queue (reused when it arrives in time) and nothing is lost: after the
    /// owner exits every region is back in its arena, and every shared part
    /// is freed (loom reports a leaked `Arc` otherwise).
    #[test]
    fn loom_cross_thread_release() {
        model(|| {
            let alloc = tiny_pool();
            let owner = {
                let alloc = alloc.clone();
                thread::spawn(move || {
                    let buf = alloc.heap_buffer(100);
                    let addr = buf.memory_address();
                    let releaser = thread::spawn(move || {
                        drop(buf);
                        // Loom's `join` may return before the thread's
                        // outbox is dropped: send it here.
                        crate::thread_local::send_outbox();
                    });
                    let racing = alloc.heap_buffer(100);
                    releaser.join().unwrap();
                    // The release has happened: the next request of the class
                    // is served from the cache, with the released region
                    // unless the racing request already took it.
                    let after = alloc.heap_buffer(100);
                    assert!(after.memory_address() == addr || racing.memory_address() == addr);
                })
            };
            owner.join().unwrap();
            settle(&alloc);
        });
    }

    /// The owner trims while another thread's batch arrives, with a stack of
    /// one region that is full and busy: the trim parks, requeues or frees
    /// what it pops (whichever it finds), a later trim frees what was
    /// requeued (the class has served nothing since), and every region ends
    /// up back in its arena.
    #[test]
    fn loom_a_trim_races_a_remote_batch() {
        model(|| {
            let alloc = PooledAllocator::builder()
                .heap_arenas(1)
                .direct_arenas(0)
                .page_size(4096)
                .max_order(0)
                .small_cache_size(1)
                .build()
                .unwrap();
            let owner = {
                let alloc = alloc.clone();
                thread::spawn(move || {
                    let sent = [alloc.heap_buffer(100), alloc.heap_buffer(100)];
                    drop(alloc.heap_buffer(100)); // the stack's one region
                    drop(alloc.heap_buffer(100)); // a hit: the class is busy
                    let releaser = thread::spawn(move || {
                        drop(sent);
                        crate::thread_local::send_outbox();
                    });
                    alloc.trim_current_thread_cache();
                    releaser.join().unwrap();
                    alloc.trim_current_thread_cache();
                })
            };
            owner.join().unwrap();
            settle(&alloc);
        });
    }

    /// Two threads binding at the same time take different arenas: picking
    /// the least-used arena and counting the binding are one step.
    #[test]
    fn loom_threads_binding_together_take_different_arenas() {
        model(|| {
            let alloc = PooledAllocator::builder()
                .heap_arenas(2)
                .direct_arenas(0)
                .page_size(4096)
                .max_order(0)
                .build()
                .unwrap();
            let (bound_tx, bound_rx) = loom::sync::mpsc::channel();
            let releases: Vec<_> = (0..2)
                .map(|_| {
                    let (alloc, bound_tx) = (alloc.clone(), bound_tx.clone());
                    let (release_tx, release_rx) = loom::sync::mpsc::channel::<()>();
                    let worker = thread::spawn(move || {
                        let buf = alloc.heap_buffer(100);
                        bound_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                        drop(buf);
                    });
                    (release_tx, worker)
                })
                .collect();
            bound_rx.recv().unwrap();
            bound_rx.recv().unwrap();
            let counts: Vec<usize> = alloc.metric().heap_arenas().iter().map(|a| a.num_thread_caches()).collect();
            assert_eq!(counts, [1, 1]);
            for (release_tx, worker) in releases {
                release_tx.send(()).unwrap();
                worker.join().unwrap();
            }
            settle(&alloc);
        });
    }

    /// The allocating thread exits while another thread releases its
    /// buffers (the first starts the outbox's batch, the second takes the
    /// foreign fast path): whichever finishes last frees the cache's shared
    /// part, and the regions end up in the arena.
    #[test]
    fn loom_thread_exit_races_a_release() {
        model(|| {
            let alloc = tiny_pool();
            let (tx, rx) = loom::sync::mpsc::channel();
            let owner = {
                let alloc = alloc.clone();
                thread::spawn(move || {
                    let bufs = [alloc.heap_buffer(100), alloc.heap_buffer(100)];
                    tx.send(bufs).unwrap();
                    // Exits now: its cache closes and settles.
                })
            };
            let releaser = thread::spawn(move || {
                let [first, second] = rx.recv().unwrap();
                drop(first);
                drop(second);
                crate::thread_local::send_outbox();
            });
            owner.join().unwrap();
            releaser.join().unwrap();
            settle(&alloc);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::thread;

    use crate::test_config::{active, pool};
    use crate::{ByteBuf, PooledAllocator};

    /// A builder for a pool of one small heap arena and no direct ones,
    /// whose caches take one region per miss (no fill), as `pool()`'s.
    fn one_heap_arena() -> crate::Builder {
        PooledAllocator::builder()
            .heap_arenas(1)
            .direct_arenas(0)
            .max_order(crate::test_config::MAX_ORDER)
            .cache_fill_bytes(0)
    }

    /// A pool of one heap arena whose small classes keep `capacity` regions
    /// per thread, and three 300-byte buffers from it, with their addresses.
    fn three_buffers_of_a_small_cache(capacity: usize) -> (PooledAllocator, Vec<ByteBuf>, Vec<usize>) {
        let alloc = one_heap_arena().small_cache_size(capacity).build().unwrap();
        let bufs: Vec<ByteBuf> = (0..3).map(|_| alloc.heap_buffer(300)).collect();
        let addrs = bufs.iter().map(ByteBuf::memory_address).collect();
        (alloc, bufs, addrs)
    }

    #[test]
    #[cfg_attr(miri, ignore = "paranoid tracking takes backtraces, which read the working directory")]
    fn a_tracked_buffer_released_on_its_thread_goes_back_to_its_stack_untracked() {
        let alloc = one_heap_arena().leak_detection(crate::LeakLevel::Paranoid).build().unwrap();
        let bufs: Vec<ByteBuf> = (0..3).map(|_| alloc.heap_buffer(300)).collect();
        let addrs: Vec<usize> = bufs.iter().map(ByteBuf::memory_address).collect();
        assert_eq!(alloc.leak_report().len(), 3);
        drop(bufs);
        assert!(alloc.leak_report().is_empty());
        // Parked, newest on top, and none went to the arena.
        let again: Vec<ByteBuf> = (0..3).map(|_| alloc.heap_buffer(300)).collect();
        let again_addrs: Vec<usize> = again.iter().map(ByteBuf::memory_address).collect();
        assert_eq!(again_addrs, [addrs[2], addrs[1], addrs[0]]);
        assert_eq!(alloc.metric().heap_arenas()[0].num_small_deallocations(), 0);
        drop(again);
        // The debug build checks the cache's count of buffers out at the trim.
        alloc.trim();
        assert_eq!(active(&alloc), 0);
    }

    /// The pool's metrics read a cache's stack lengths on another thread
    /// while the owner pushes and pops. Under Miri this checks that the two
    /// never race: the metrics read the stacks' atomic words alone, and the
    /// owner reaches its stacks through shared references only.
    #[test]
    fn metrics_read_the_stacks_while_their_owner_uses_them() {
        let alloc = one_heap_arena().build().unwrap();
        let rounds = if crate::test_config::SMALL { 10 } else { 2000 };
        let sizes = [100, 300, 1000];
        let parked_at_end = std::thread::scope(|scope| {
            let owner = scope.spawn(|| {
                for _ in 0..rounds {
                    drop(sizes.map(|size| alloc.heap_buffer(size)));
                }
                alloc.metric()
            });
            for _ in 0..rounds {
                let metric = alloc.metric();
                assert!(metric.pinned_heap_memory() <= metric.used_heap_memory());
            }
            owner.join().unwrap()
        });
        // One region of each class parked in the owner's stacks (read before
        // its thread ended): handed out by the arena, pinned by no buffer.
        assert_eq!(parked_at_end.heap_arenas()[0].pooled_active_bytes(), 112 + 320 + 1024);
        assert_eq!(parked_at_end.pinned_heap_memory(), 0);
    }

    #[test]
    fn the_newest_region_is_served_first_and_trims_free_the_oldest() {
        let (alloc, bufs, addrs) = three_buffers_of_a_small_cache(4);
        drop(bufs); // released in order: the last one is the newest
        for _ in 0..2 {
            assert_eq!(alloc.heap_buffer(300).memory_address(), addrs[2]);
        }
        // Two hits since the last trim, three regions parked: the stack keeps
        // its two newest and frees the oldest (Netty's rule, capacity 4 - 2
        // hits, would have freed two).
        assert!(alloc.trim_current_thread_cache());
        assert_eq!(alloc.metric().heap_arenas()[0].num_small_deallocations(), 1);
        let kept: Vec<ByteBuf> = (0..2).map(|_| alloc.heap_buffer(300)).collect();
        assert_eq!(kept[0].memory_address(), addrs[2], "the newest region stayed");
        assert_eq!(kept[1].memory_address(), addrs[1], "and the one before it");
        assert_eq!(alloc.metric().heap_arenas()[0].num_small_allocations(), 3, "both from the stack");
    }

    /// One heap arena with the default fill.
    fn filling_heap_arena() -> crate::Builder {
        PooledAllocator::builder().heap_arenas(1).direct_arenas(0).max_order(crate::test_config::MAX_ORDER)
    }

    /// Holds `count` buffers of `size` bytes from `alloc` and gives, for
    /// each request that went to the arena, how many regions it took.
    fn batches(alloc: &PooledAllocator, size: usize, count: usize) -> (Vec<u64>, Vec<ByteBuf>) {
        let allocations = || alloc.metric().heap_arenas()[0].num_allocations();
        let mut taken = Vec::new();
        let bufs = (0..count)
            .map(|_| {
                let before = allocations();
                let buf = alloc.heap_buffer(size);
                if allocations() > before {
                    taken.push(allocations() - before);
                }
                buf
            })
            .collect();
        (taken, bufs)
    }

    #[test]
    fn misses_take_growing_batches_which_serve_the_next_requests() {
        let alloc = filling_heap_arena().build().unwrap();
        // Each miss takes twice the last, up to 64 KiB of 1 KiB regions (all
        // in one chunk, also under Miri's 256 KiB chunks).
        let (taken, bufs) = batches(&alloc, 1024, 1 + 2 + 4 + 8 + 16 + 32 + 64 + 64);
        assert_eq!(taken, [1, 2, 4, 8, 16, 32, 64, 64]);
        let mut addrs: Vec<usize> = bufs.iter().map(ByteBuf::memory_address).collect();
        addrs.sort_unstable();
        addrs.dedup();
        assert_eq!(addrs.len(), bufs.len(), "every buffer apart");
        drop(bufs);
        // Each trim halves the next batch; the second gives every region
        // back (no hits since the first).
        assert!(alloc.trim_current_thread_cache());
        assert!(alloc.trim_current_thread_cache());
        assert_eq!(active(&alloc), 0);
        let (taken, _bufs) = batches(&alloc, 1024, 1);
        assert_eq!(taken, [16]);
    }

    #[test]
    fn a_fill_takes_at_most_half_the_stack_and_one_region_when_off() {
        let cases = [
            (filling_heap_arena().small_cache_size(8), 256, vec![1, 2, 4, 4]),
            (filling_heap_arena().cache_fill_bytes(0), 256, vec![1, 1, 1]),
            (filling_heap_arena().cache_fill_bytes(100), 256, vec![1, 1, 1]),
            // 64 KiB holds two 28 KiB regions.
            (filling_heap_arena(), 28 << 10, vec![1, 2, 2]),
            // A normal class is bound by half its stack alone (all in one
            // chunk, also under Miri's 256 KiB chunks).
            (filling_heap_arena().normal_cache_size(4), 32 << 10, vec![1, 2, 2]),
            (filling_heap_arena(), 64 << 10, vec![1, 2]),
            (filling_heap_arena().cache_fill_bytes(0), 64 << 10, vec![1, 1, 1]),
        ];
        for (builder, size, expected) in cases {
            let alloc = builder.build().unwrap();
            let count = expected.iter().sum::<u64>() as usize;
            assert_eq!(batches(&alloc, size, count).0, expected, "{size} B");
        }
    }

    #[test]
    fn a_fill_stops_where_the_arenas_chunks_are_full() {
        // 16 KiB chunks: 1 KiB elements, 16 to a chunk (one page of 8 each).
        let alloc = filling_heap_arena().max_order(1).build().unwrap();
        let chunks =
            || -> usize { alloc.metric().heap_arenas()[0].chunk_lists().iter().map(|list| list.chunks().len()).sum() };
        // 1 + 2 + 4 + 8 regions, then a miss that finds one left: it takes
        // that one and adds no chunk for the rest.
        let (taken, first) = batches(&alloc, 1024, 16);
        assert_eq!((taken, chunks()), (vec![1, 2, 4, 8, 1], 1));
        // The next miss needs a chunk for its first region, and fills the rest
        // of its batch (32) with all that chunk holds.
        let (taken, more) = batches(&alloc, 1024, 1);
        assert_eq!((taken, chunks()), (vec![16], 2));
        drop((first, more));
    }

    #[test]
    fn a_release_into_a_full_stack_goes_to_the_arena() {
        let (alloc, bufs, addrs) = three_buffers_of_a_small_cache(2);
        // The first release makes the stack's slots (the slow path), the
        // second goes in through the hot path, the third finds it full.
        drop(bufs);
        let deallocations = alloc.metric().heap_arenas()[0].num_small_deallocations();
        assert_eq!(deallocations, 1, "only the release into the full stack reached the arena");
        assert_eq!(alloc.heap_buffer(300).memory_address(), addrs[1], "the newest parked region is served first");
        assert_eq!(alloc.metric().heap_arenas()[0].num_small_allocations(), 3, "and from the stack");
    }

    #[test]
    fn a_region_released_on_its_thread_is_served_again_from_the_stack() {
        let alloc = pool();
        let mut buf = alloc.direct_buffer(200);
        buf.as_mut_slice().fill(0x5A);
        let addr = buf.memory_address();
        drop(buf);
        let again = alloc.direct_buffer(200);
        assert_eq!(again.memory_address(), addr);
        assert!(again.as_slice().iter().all(|&b| b == 0x5A), "reused memory keeps its bytes");
        assert_eq!(alloc.metric().direct_arenas()[0].num_allocations(), 1);
    }

    #[test]
    fn a_release_goes_to_its_own_stack_whatever_the_last_hit_was() {
        let alloc = pool();
        let allocations = |alloc: &crate::PooledAllocator| {
            let m = alloc.metric();
            m.heap_arenas()[0].num_allocations() + m.direct_arenas()[0].num_allocations()
        };
        // One region in each of three stacks: heap 300 B, direct 300 B (the
        // same class, the other kind), heap 1000 B.
        let makes = [(false, 300), (true, 300), (false, 1000)];
        let make =
            |(direct, size): (bool, usize)| if direct { alloc.direct_buffer(size) } else { alloc.heap_buffer(size) };
        let addrs: Vec<usize> = makes.map(make).iter().map(ByteBuf::memory_address).collect();
        // Three hits, the last from the heap 1000 B stack; the first two go
        // back while the last hit names another stack, the third to it.
        let bufs = makes.map(make);
        assert_eq!(bufs.each_ref().map(ByteBuf::memory_address).to_vec(), addrs);
        let arena_allocations = allocations(&alloc);
        drop(bufs);
        // A direct 300 B hit last, then a heap buffer of the same class back.
        let direct = alloc.direct_buffer(300);
        drop(alloc.heap_buffer(300));
        drop(direct);
        for _ in 0..2 {
            let again = makes.map(make);
            assert_eq!(again.each_ref().map(ByteBuf::memory_address).to_vec(), addrs, "each region in its own stack");
            assert_eq!(again.each_ref().map(ByteBuf::is_direct), [false, true, false]);
        }
        assert_eq!(allocations(&alloc), arena_allocations, "every request a hit");
    }

    #[test]
    fn an_owner_releasing_while_it_uses_another_pool_fills_its_own_stack() {
        let (a, b) = (pool(), pool());
        let bufs: Vec<ByteBuf> = (0..4).map(|_| a.heap_buffer(500)).collect();
        drop(b.heap_buffer(500)); // `CURRENT` now names `b`'s cache
        let allocations = a.metric().heap_arenas()[0].num_allocations();
        drop(bufs); // on `a`'s owner thread: into `a`'s stack, not an outbox
        let again: Vec<ByteBuf> = (0..4).map(|_| a.heap_buffer(500)).collect();
        assert_eq!(a.metric().heap_arenas()[0].num_allocations(), allocations, "all four from the stack");
        drop(again);
        drop(b.heap_buffer(500));
        let last = a.heap_buffer(500);
        assert_eq!(a.metric().heap_arenas()[0].num_allocations(), allocations);
        drop(last);
    }

    #[test]
    fn regions_released_elsewhere_come_back_through_the_queue() {
        let alloc = pool();
        let bufs: Vec<ByteBuf> = (0..8).map(|_| alloc.heap_buffer(1000)).collect();
        let addrs: Vec<usize> = bufs.iter().map(ByteBuf::memory_address).collect();
        thread::spawn(move || drop(bufs)).join().unwrap();
        let again: Vec<usize> = (0..8).map(|_| alloc.heap_buffer(1000).memory_address()).collect();
        // The first request drains the queue into the stack; each request
        // releasing its buffer at once means one region cycles.
        assert!(again.iter().all(|a| addrs.contains(a)));
        assert_eq!(alloc.metric().heap_arenas()[0].num_allocations(), 8);
    }

    #[test]
    fn a_drained_batch_keeps_what_each_stack_has_room_for_and_frees_the_rest() {
        let alloc = one_heap_arena().small_cache_size(4).build().unwrap();
        let arena = || alloc.metric().heap_arenas()[0].clone();
        // One batch (sent at thread exit) of three runs: six regions of
        // 1000 bytes, four of 300 bytes, two of 1000 bytes.
        let sizes = [[1000; 6].as_slice(), &[300; 4], &[1000; 2]].concat();
        let bufs: Vec<ByteBuf> = sizes.iter().map(|&size| alloc.heap_buffer(size)).collect();
        thread::spawn(move || drop(bufs)).join().unwrap();
        let freed_before = arena().num_small_deallocations();
        // The miss drains the batch: the 1000-byte stack keeps four of the
        // first run, the 300-byte stack all four; the last two of the first
        // run and the whole last run go back to the arena.
        let first = alloc.heap_buffer(1000);
        assert_eq!(arena().num_small_deallocations() - freed_before, 4);
        let allocations = arena().num_allocations();
        let rest: Vec<ByteBuf> =
            (0..3).map(|_| alloc.heap_buffer(1000)).chain((0..4).map(|_| alloc.heap_buffer(300))).collect();
        assert_eq!(arena().num_allocations(), allocations, "all from the stacks");
        drop((first, rest));
        assert_eq!(active(&alloc), 8, "back in the two stacks of four");
    }

    #[test]
    fn a_periodic_trim_parks_queued_regions_of_a_class_in_use() {
        const TRIM_INTERVAL: usize = 16;
        let alloc = one_heap_arena().small_cache_size(8).cache_trim_interval(TRIM_INTERVAL as u32).build().unwrap();
        let arena = || alloc.metric().heap_arenas()[0].clone();
        // Two regions parked here, then four queued by another thread.
        let local: Vec<ByteBuf> = (0..2).map(|_| alloc.heap_buffer(1000)).collect();
        let queued: Vec<ByteBuf> = (0..4).map(|_| alloc.heap_buffer(1000)).collect();
        drop(local);
        thread::spawn(move || drop(queued)).join().unwrap();
        // Hits on the class until the trim interval is over: the class is in
        // use, so the trim keeps its regions, the queued ones included.
        for _ in 0..TRIM_INTERVAL {
            drop(alloc.heap_buffer(1000));
        }
        assert_eq!(arena().num_small_deallocations(), 0, "nothing went back to the arena");
        let allocations = arena().num_allocations();
        let again: Vec<ByteBuf> = (0..6).map(|_| alloc.heap_buffer(1000)).collect();
        assert_eq!(arena().num_allocations(), allocations, "all six from the stack");
        drop(again);
    }

    #[test]
    fn a_parked_batch_leaves_its_storage_for_the_next_batch_to_the_same_cache() {
        let alloc = one_heap_arena().build().unwrap();
        let shared = || crate::thread_local::with_cache(alloc.pool(), |cache| cache.shared).expect("bound");
        // SAFETY: this thread's cache is alive, and so is its shared part.
        let spares = || unsafe { shared().as_ref() }.spare.len();
        // A full batch released on another thread (which peeks at its
        // storage's address in the queue), taken back by a miss here.
        let send_batch = || {
            let bufs: Vec<ByteBuf> = (0..super::OUTBOX_REGIONS).map(|_| alloc.heap_buffer(300)).collect();
            // The shared part is `Sync`; the releasing thread uses it while this one waits.
            // SAFETY: this thread's cache is alive, and so is its shared part.
            let owner: &super::CacheShared = unsafe { shared().as_ref() };
            thread::scope(|scope| {
                scope
                    .spawn(move || {
                        drop(bufs);
                        let batch = owner.remote.pop().expect("sent when full");
                        let storage = batch.regions.as_ptr().addr();
                        owner.remote.push(batch).expect("room");
                        storage
                    })
                    .join()
                    .unwrap()
            })
        };
        assert_eq!(spares(), 0);
        let first = send_batch();
        drop(alloc.heap_buffer(1000)); // a miss: drains the queue
        assert_eq!(spares(), 1, "the parked batch's storage is kept");
        let second = send_batch();
        assert_eq!(spares(), 0, "and taken by the next batch");
        assert_eq!(first, second);
        drop(alloc.heap_buffer(2000)); // a miss in another class
        assert_eq!(spares(), 1);
    }

    #[test]
    fn a_turn_tops_the_stack_up_from_the_queue_before_it_runs_dry() {
        // 256 regions per small class, and a turn every 128 hits.
        let alloc = one_heap_arena().build().unwrap();
        let arena = || alloc.metric().heap_arenas()[0].clone();
        let queued = || crate::thread_local::with_cache(alloc.pool(), |cache| cache.shared().remote.len()).unwrap();
        let mut local: Vec<ByteBuf> = (0..200).map(|_| alloc.heap_buffer(300)).collect();
        let sent = local.split_off(136);
        drop(local); // 136 parked here
        thread::spawn(move || drop(sent)).join().unwrap(); // one full batch queued
        assert_eq!(queued(), 1);
        let allocations = arena().num_allocations();
        // As many requests as the stack holds: a turn comes among them and
        // parks the batch, so the stack never runs dry.
        let held: Vec<ByteBuf> = (0..136).map(|_| alloc.heap_buffer(300)).collect();
        assert_eq!(queued(), 0, "the batch was taken before the stack ran dry");
        assert_eq!(arena().num_allocations(), allocations, "all from the stack");
        drop(held);
    }

    #[test]
    fn a_trim_requeues_what_a_busy_class_has_no_room_for_and_frees_an_idle_ones() {
        let alloc = one_heap_arena().small_cache_size(4).build().unwrap();
        let arena = || alloc.metric().heap_arenas()[0].clone();
        // Both stacks full, then one batch from another thread: six more
        // regions of the busy class (1000 bytes), three of the idle one.
        let local: Vec<ByteBuf> =
            (0..4).map(|_| alloc.heap_buffer(1000)).chain((0..4).map(|_| alloc.heap_buffer(300))).collect();
        let queued: Vec<ByteBuf> =
            (0..6).map(|_| alloc.heap_buffer(1000)).chain((0..3).map(|_| alloc.heap_buffer(300))).collect();
        drop(local);
        thread::spawn(move || drop(queued)).join().unwrap();
        assert_eq!(active(&alloc), 17);
        // A stackful of hits on the busy class, then the trim (the periodic
        // kind, which the pool has not asked for).
        for _ in 0..4 {
            drop(alloc.heap_buffer(1000));
        }
        assert!(alloc.trim_current_thread_cache());
        // The idle class's three queued regions went to the arena, and its
        // four parked ones too (it served none); the busy class's six wait
        // in the queue.
        assert_eq!(arena().num_small_deallocations(), 7);
        assert_eq!(active(&alloc), 10, "the busy class's regions are still held");
        let allocations = arena().num_allocations();
        // Four from the stack, four from the queue (a full stack's worth).
        let busy: Vec<ByteBuf> = (0..8).map(|_| alloc.heap_buffer(1000)).collect();
        assert_eq!(arena().num_allocations(), allocations, "none from the arena");
        drop(busy);
    }

    #[test]
    fn buffers_outliving_their_thread_are_released_safely() {
        let alloc = pool();
        let worker_alloc = alloc.clone();
        let (small, huge) = thread::spawn(move || {
            let small = worker_alloc.heap_buffer(48);
            let huge = worker_alloc.heap_buffer(worker_alloc.metric().chunk_size() + 1);
            drop(worker_alloc.heap_buffer(48)); // something in the stack at exit
            (small, huge)
        })
        .join()
        .unwrap();
        assert_eq!(alloc.metric().num_thread_local_caches(), 0);
        assert_eq!(active(&alloc), 2, "the two live buffers; the stack was flushed");
        drop(small);
        drop(huge);
        assert_eq!(active(&alloc), 0);
    }

    #[test]
    fn the_pool_outlives_its_last_handle_while_buffers_live() {
        let alloc = pool();
        let mut buf = alloc.direct_buffer(5000);
        drop(alloc);
        buf.as_mut_slice().fill(3);
        let buf = thread::spawn(move || buf).join().unwrap();
        assert!(buf.as_slice().iter().all(|&b| b == 3));
    }

    #[test]
    fn a_huge_buffer_goes_through_the_cache_accounting() {
        let alloc = pool();
        let chunk = alloc.metric().chunk_size();
        let huge = alloc.direct_buffer(chunk * 2);
        assert_eq!(huge.capacity(), chunk * 2);
        assert_eq!(alloc.metric().used_direct_memory(), (chunk * 2) as u64);
        thread::spawn(move || drop(huge)).join().unwrap();
        assert_eq!(alloc.metric().used_direct_memory(), 0);
    }
}

/// The stack's word (length, hits left until the slow path's turn, the hit
/// count built from them) against a plain model.
#[cfg(all(test, not(loom)))]
mod stack_word_tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push,
        /// The hit path's pop.
        Pop,
        /// The slow path's pop.
        PopCounting,
        ClearHits,
        /// Frees the `n` oldest regions, as a trim does.
        Drain(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Push),
            3 => Just(Op::Pop),
            1 => Just(Op::PopCounting),
            1 => Just(Op::ClearHits),
            1 => (0..4usize).prop_map(Op::Drain),
        ]
    }

    /// What the stack should say: plain counts.
    #[derive(Debug)]
    struct Model {
        regions: Vec<usize>,
        left: u32,
        hits: u32,
    }

    proptest! {
        #![proptest_config(crate::test_config::proptest(256))]

        #[test]
        fn the_word_matches_a_model(
            period_log in 0..=7u32,
            capacity in 1..8usize,
            ops in proptest::collection::vec(op(), 1..if crate::test_config::SMALL { 24 } else { 200 }),
        ) {
            let reload = (1u32 << period_log) - 1;
            // In a block, as a cache keeps it: the metrics read the word there.
            let block = StackBlock::new(Box::new([Stack::new(MemoryKind::Heap, 0, capacity, 64, reload)]));
            let stacks = block.view();
            let stack = stacks.get(0);
            let region = |n: usize| CachedRegion {
                ptr: NonNull::new(std::ptr::without_provenance_mut((n + 1) * 64)).expect("not null"),
                owner: NonNull::dangling(),
                meta: CachedRegion::meta_for(MemoryKind::Heap, 0, 0),
            };
            let mut model = Model { regions: Vec::new(), left: reload, hits: 0 };
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Push => {
                        let pushed = stack.push(region(n));
                        prop_assert_eq!(pushed, model.regions.len() < capacity);
                        if pushed {
                            model.regions.push(n);
                        }
                    }
                    Op::Pop => {
                        let popped = stack.pop_slot();
                        let expected = (model.left > 0).then(|| model.regions.pop()).flatten();
                        // SAFETY: a popped slot keeps its region until the next push.
                        prop_assert_eq!(popped.map(|slot| unsafe { slot.as_ref() }.ptr), expected.map(|n| region(n).ptr));
                        if expected.is_some() {
                            model.left -= 1;
                            model.hits += 1;
                        }
                    }
                    Op::PopCounting => {
                        let popped = stack.pop_slot_counting(reload);
                        let expected = model.regions.pop();
                        // SAFETY: as above.
                        let got = popped.map(|(slot, turn)| (unsafe { slot.as_ref() }.ptr, turn));
                        prop_assert_eq!(got, expected.map(|n| (region(n).ptr, model.left == 0)));
                        if expected.is_some() {
                            model.left = if model.left == 0 { reload } else { model.left - 1 };
                            model.hits += 1;
                        }
                    }
                    Op::ClearHits => {
                        stack.clear_hits();
                        model.hits = 0;
                    }
                    Op::Drain(count) => {
                        let mut freed = Vec::new();
                        let drained = stack.drain_oldest(count, |r| freed.push(r.ptr));
                        let count = count.min(model.regions.len());
                        let oldest: Vec<_> = model.regions.drain(..count).map(|n| region(n).ptr).collect();
                        prop_assert_eq!(drained, count);
                        prop_assert_eq!(freed, oldest);
                    }
                }
                prop_assert_eq!(stack.len() as usize, model.regions.len());
                prop_assert_eq!(stack.hits(), model.hits);
                prop_assert_eq!(block.parked(&[64]), 64 * model.regions.len() as u64);
            }
        }
    }
}
