//! Per-thread caches of freed regions, and the release path of every region.
//!
//! Each thread that allocates from a pool gets a [`ThreadCache`], bound to
//! the pool's least-used heap arena and least-used direct arena. It keeps,
//! per size class, a FIFO ring of regions its buffers gave back, and serves
//! the next allocation of that class from the ring without touching the
//! arena or any lock.
//!
//! # Cross-thread release
//!
//! A buffer released on another thread goes back to the cache of the thread
//! that allocated it (Netty's rule), through a bounded lock-free queue in the
//! cache's shared part, [`CacheShared`]. The owning thread moves those
//! regions into its rings when a ring runs dry. A full queue, a closed cache
//! (its thread has exited) or a full ring sends the region to its arena.
//!
//! # Lifetime without per-buffer reference counts
//!
//! A buffer holds a raw pointer to the `CacheShared` it came from, which
//! holds the pool. The shared part must live until its thread has exited
//! *and* the last buffer allocated through it is gone, but counting buffers
//! with an atomic on every allocation and release would put two atomic
//! read-modify-writes on the hot path. Instead, `outstanding` starts at a
//! large bias standing for the live owner thread; releases on other threads
//! subtract one each; the owner counts its own allocations and releases in
//! a plain integer and settles once, at exit, by adding that count minus
//! the bias. Whoever brings `outstanding` to zero destroys the shared part.
//! Before the owner exits the value cannot reach zero (the bias dwarfs any
//! number of releases); after, it is exactly the number of live buffers.

use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use crate::allocator::Pool;
use crate::arena::{Arena, PooledRegion};
use crate::cache_registry::CacheTally;
use crate::error::AllocError;
use crate::leak::LeakTracker;
use crate::memory::{MemoryKind, RawMemory};
use crate::size_class::SizeClasses;
use crate::sync::{fence, Arc, ArrayQueue, AtomicBool, AtomicUsize, Ordering};
use crate::thread_local;

/// `outstanding`'s starting value: stands for the live owner thread.
const OWNER_BIAS: usize = 1 << (usize::BITS - 2);
/// Regions other threads can queue for one cache before releasing to arenas.
const REMOTE_QUEUE_CAPACITY: usize = 1024;
/// How often (in lookups) a time-based trim checks the clock.
const CLOCK_CHECK_EVERY: u32 = 256;

/// A region on its way back to a cache from another thread.
#[derive(Debug, Clone, Copy)]
struct RemoteRegion {
    arena: NonNull<Arena>,
    region: PooledRegion,
}

impl RemoteRegion {
    /// Gives the region back to its arena.
    ///
    /// # Safety
    ///
    /// The arena must be alive: its pool is held by a live `CacheShared` or
    /// buffer that this region belongs to.
    unsafe fn free_to_arena(self) {
        // SAFETY: by this function's contract.
        let arena = unsafe { self.arena.as_ref() };
        arena.free(self.region.chunk, self.region.handle, self.region.size_idx as usize);
    }

    /// The region's memory kind and class size, for the cache's tally.
    ///
    /// # Safety
    ///
    /// As for [`free_to_arena`](Self::free_to_arena): the arena is alive.
    unsafe fn kind_and_size(&self) -> (MemoryKind, u64) {
        // SAFETY: by this function's contract.
        let arena = unsafe { self.arena.as_ref() };
        (arena.kind(), arena.size_classes().size_of(self.region.size_idx as usize) as u64)
    }
}

/// The part of a thread cache that other threads reach.
pub(crate) struct CacheShared {
    pool: Arc<Pool>,
    remote: ArrayQueue<RemoteRegion>,
    /// Set when the owner thread has exited: releases then go to arenas.
    closed: AtomicBool,
    /// See the module docs.
    outstanding: AtomicUsize,
    /// Bytes parked and queued here, for the pool's pinned-memory metric.
    tally: Arc<CacheTally>,
}

impl CacheShared {
    /// Frees the shared part and the regions still queued in it.
    ///
    /// # Safety
    ///
    /// `this` came from `Box::into_raw` in [`ThreadCache::new`], and the
    /// caller brought `outstanding` to zero: nobody else uses it any more.
    unsafe fn destroy(this: NonNull<CacheShared>) {
        {
            // SAFETY: by this function's contract we are the last user but the
            // pool's registry, whose reference is removed here, under its lock.
            let shared = unsafe { this.as_ref() };
            shared.pool.cache_registry().deregister(&shared.tally);
        }
        // SAFETY: by this function's contract we are the last user.
        let shared = unsafe { Box::from_raw(this.as_ptr()) };
        while let Some(region) = shared.remote.pop() {
            // SAFETY: `shared.pool` keeps every arena of the pool alive.
            unsafe { region.free_to_arena() };
        }
    }
}

impl CacheShared {
    /// Queues a region released on another thread; false when the queue is
    /// full. The bytes are counted as queued before the push, so that the
    /// owner's pop never sees them uncounted.
    fn push_remote(&self, region: RemoteRegion) -> bool {
        // SAFETY: the region's buffer is being released: its arena is alive.
        let (kind, bytes) = unsafe { region.kind_and_size() };
        self.tally.count_queued(kind, bytes, true);
        let pushed = self.remote.push(region).is_ok();
        if !pushed {
            self.tally.count_queued(kind, bytes, false);
        }
        pushed
    }

    /// Takes a region from the remote queue, uncounting it.
    fn pop_remote(&self) -> Option<RemoteRegion> {
        let region = self.remote.pop()?;
        // SAFETY: queued regions belong to this cache's pool, alive through it.
        let (kind, bytes) = unsafe { region.kind_and_size() };
        self.tally.count_queued(kind, bytes, false);
        Some(region)
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
        while let Some(region) = shared.pop_remote() {
            // SAFETY: the pool is alive through the shared part.
            unsafe { region.free_to_arena() };
        }
    }
}

/// Who keeps a buffer's arena alive, and where its region goes back.
#[derive(Debug)]
pub(crate) enum Owner {
    /// Allocated through a thread cache.
    Cache(NonNull<CacheShared>),
    /// Allocated without one (the thread's caches were already torn down).
    Pool(Arc<Pool>),
}

/// Where a buffer's memory comes from and how it is given back.
#[derive(Debug)]
enum Source {
    Pooled { arena: NonNull<Arena>, region: PooledRegion, owner: Owner },
    Huge { arena: NonNull<Arena>, memory: RawMemory, owner: Owner },
    Unpooled { memory: RawMemory, pool: Arc<Pool> },
}

/// A region of memory owned by one buffer; dropping it gives it back.
#[derive(Debug)]
pub(crate) struct Allocation {
    ptr: NonNull<u8>,
    len: usize,
    direct: bool,
    source: ManuallyDrop<Source>,
    /// Set when the leak detector tracks this allocation; dropping it (after
    /// the region is given back) ends the tracking.
    leak: Option<Box<LeakTracker>>,
}

// SAFETY: the region is exclusively the allocation's; the arena and the
// cache's shared part it points to are `Sync` (a mutex, atomics and a
// lock-free queue) and stay alive while the allocation does (module docs),
// so it may move to and be used from any thread.
unsafe impl Send for Allocation {}
// SAFETY: `&Allocation` exposes only the pointer and length.
unsafe impl Sync for Allocation {}

impl std::fmt::Debug for CacheShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheShared")
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .field("outstanding", &self.outstanding.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Allocation {
    /// Address of the first byte.
    #[inline]
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Bytes usable: the class size for pooled regions, the exact size else.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the memory is direct (mmap-backed) rather than heap.
    #[inline]
    pub(crate) fn is_direct(&self) -> bool {
        self.direct
    }

    /// Marks the allocation as tracked by the leak detector.
    pub(crate) fn set_leak_tracker(&mut self, tracker: Box<LeakTracker>) {
        self.leak = Some(tracker);
    }

    /// The leak detector's tracking of this allocation, if any.
    pub(crate) fn leak_tracker(&self) -> Option<&LeakTracker> {
        self.leak.as_deref()
    }

    /// A buffer of a pool with no arena of its kind.
    pub(crate) fn unpooled(memory: RawMemory, pool: Arc<Pool>) -> Allocation {
        Allocation {
            ptr: memory.ptr(),
            len: memory.len(),
            direct: memory.kind() == MemoryKind::Direct,
            source: ManuallyDrop::new(Source::Unpooled { memory, pool }),
            leak: None,
        }
    }

    /// A region allocated straight from `arena`, with no cache.
    pub(crate) fn uncached(arena: &Arena, size: usize, pool: Arc<Pool>) -> Result<Allocation, AllocError> {
        let arena_ptr = NonNull::from(arena);
        match arena.size_classes().index_of(size) {
            Some(idx) => {
                let region = arena.allocate(idx)?;
                Ok(Allocation::pooled(arena, arena_ptr, region, Owner::Pool(pool)))
            }
            None => {
                let memory = arena.allocate_huge(size)?;
                Ok(Allocation::huge(arena_ptr, memory, Owner::Pool(pool)))
            }
        }
    }

    fn pooled(arena: &Arena, arena_ptr: NonNull<Arena>, region: PooledRegion, owner: Owner) -> Allocation {
        Allocation {
            ptr: region.ptr,
            len: arena.size_classes().size_of(region.size_idx as usize),
            direct: arena.kind() == MemoryKind::Direct,
            source: ManuallyDrop::new(Source::Pooled { arena: arena_ptr, region, owner }),
            leak: None,
        }
    }

    fn huge(arena: NonNull<Arena>, memory: RawMemory, owner: Owner) -> Allocation {
        Allocation {
            ptr: memory.ptr(),
            len: memory.len(),
            direct: memory.kind() == MemoryKind::Direct,
            source: ManuallyDrop::new(Source::Huge { arena, memory, owner }),
            leak: None,
        }
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        // SAFETY: `source` is taken exactly once, here, and never used again.
        let source = unsafe { ManuallyDrop::take(&mut self.source) };
        match source {
            Source::Pooled { arena, region, owner: Owner::Cache(shared) } => {
                // SAFETY: this allocation is counted in `shared`'s outstanding
                // buffers, so `shared` (and through it the arena) is alive.
                unsafe { release_to_owner(shared, Some(RemoteRegion { arena, region })) }
            }
            Source::Pooled { arena, region, owner: Owner::Pool(pool) } => {
                // SAFETY: `pool` owns the arena and is alive until the end of
                // this arm.
                let arena = unsafe { arena.as_ref() };
                arena.free(region.chunk, region.handle, region.size_idx as usize);
                drop(pool);
            }
            Source::Huge { arena, memory, owner } => {
                // SAFETY: `owner` keeps the pool, and so the arena, alive
                // until it is released below.
                unsafe { arena.as_ref() }.free_huge(memory);
                match owner {
                    // SAFETY: as for pooled regions: counted, so alive.
                    Owner::Cache(shared) => unsafe { release_to_owner(shared, None) },
                    Owner::Pool(pool) => drop(pool),
                }
            }
            Source::Unpooled { memory, pool } => pool.free_unpooled(memory),
        }
    }
}

/// Gives a region (or, for huge buffers, just the count) back to the cache
/// that allocated it: straight into its rings on the owner thread, through
/// the queue from any other thread.
///
/// # Safety
///
/// The caller's buffer is counted in `shared`'s outstanding buffers and this
/// call ends it.
unsafe fn release_to_owner(shared_ptr: NonNull<CacheShared>, region: Option<RemoteRegion>) {
    // SAFETY: counted, so alive (this function's contract).
    let shared = unsafe { shared_ptr.as_ref() };
    let on_owner = thread_local::with_cache_if(shared.pool.id(), shared_ptr, |cache| {
        cache.local_out -= 1;
        if let Some(region) = region {
            cache.park(region);
        }
    });
    if on_owner.is_some() {
        return;
    }
    if let Some(region) = region {
        let queued = !shared.closed.load(Ordering::Acquire) && shared.push_remote(region);
        if !queued {
            // SAFETY: the pool is alive through `shared`.
            unsafe { region.free_to_arena() };
        }
    }
    if shared.outstanding.fetch_sub(1, Ordering::Release) == 1 {
        fence(Ordering::Acquire);
        // SAFETY: the owner has exited (else the bias would remain) and this
        // was the last buffer: nobody else can reach `shared`.
        unsafe { CacheShared::destroy(shared_ptr) };
    }
}

/// Cached regions of one size class.
#[derive(Debug)]
struct Ring {
    regions: VecDeque<PooledRegion>,
    capacity: usize,
    /// Allocations served since the last trim.
    hits: usize,
}

impl Ring {
    fn new(capacity: usize) -> Ring {
        Ring { regions: VecDeque::new(), capacity, hits: 0 }
    }
}

/// The rings of one memory kind and the arena they serve.
#[derive(Debug)]
struct KindCache {
    arena: Option<NonNull<Arena>>,
    rings: Box<[Ring]>,
}

impl KindCache {
    fn arena(&self) -> &Arena {
        let arena = self.arena.expect("the pool has arenas of this kind");
        // SAFETY: the arena belongs to the pool held by this cache's shared
        // part, which outlives the ThreadCache.
        unsafe { arena.as_ref() }
    }

    /// Frees up to `count` of the oldest regions of `idx` to the arena.
    fn free_oldest(&mut self, idx: usize, count: usize) {
        let Some(arena) = self.arena else { return };
        // SAFETY: as in `arena()`.
        let arena = unsafe { arena.as_ref() };
        let ring = &mut self.rings[idx];
        for _ in 0..count.min(ring.regions.len()) {
            let region = ring.regions.pop_front().expect("counted");
            arena.free(region.chunk, region.handle, region.size_idx as usize);
        }
    }
}

/// The owner thread's part of a thread cache.
#[derive(Debug)]
pub(crate) struct ThreadCache {
    shared: NonNull<CacheShared>,
    classes: Arc<SizeClasses>,
    /// Indexed by `MemoryKind as usize`: heap, direct.
    kinds: [KindCache; 2],
    /// Buffers allocated through this cache and not released on this thread.
    local_out: usize,
    lookups: u32,
    trim_interval: u32,
    trim_period: Option<Duration>,
    last_trim: Instant,
    /// The shared part's tally, reached without going through `shared`.
    tally: Arc<CacheTally>,
}

fn kind_index(kind: MemoryKind) -> usize {
    match kind {
        MemoryKind::Heap => 0,
        MemoryKind::Direct => 1,
    }
}

impl ThreadCache {
    /// A cache bound to the pool's least-used arenas; with `caching` false it
    /// is bound but keeps no regions.
    pub(crate) fn new(pool: &Arc<Pool>, caching: bool) -> ThreadCache {
        let config = pool.config();
        let classes = pool.size_classes().clone();
        let cached_limit = config.max_cached_buffer_capacity.min(classes.chunk_size());
        let ring_capacity = |idx: usize| {
            let size = if classes.is_small(idx) { config.small_cache_size } else { config.normal_cache_size };
            size.checked_next_power_of_two().unwrap_or(0)
        };
        let cached_classes = if caching {
            (0..classes.num_classes())
                .take_while(|&idx| classes.is_small(idx) || classes.size_of(idx) <= cached_limit)
                .count()
        } else {
            0
        };
        let kind_cache = |kind| {
            let arena = pool.bind_least_used(kind);
            let rings = match arena {
                Some(_) => (0..cached_classes).map(|idx| Ring::new(ring_capacity(idx))).collect(),
                None => Box::default(),
            };
            KindCache { arena: arena.map(NonNull::from), rings }
        };
        let kinds = [kind_cache(MemoryKind::Heap), kind_cache(MemoryKind::Direct)];
        let tally = Arc::new(CacheTally::default());
        let shared = Box::new(CacheShared {
            pool: pool.clone(),
            remote: ArrayQueue::new(REMOTE_QUEUE_CAPACITY),
            closed: AtomicBool::new(false),
            outstanding: AtomicUsize::new(OWNER_BIAS),
            tally: tally.clone(),
        });
        let shared = NonNull::from(Box::leak(shared));
        pool.cache_registry().register(tally.clone(), SharedRef(shared));
        ThreadCache {
            tally,
            shared,
            classes,
            kinds,
            local_out: 0,
            lookups: 0,
            trim_interval: config.cache_trim_interval,
            trim_period: (config.cache_trim_interval_millis > 0)
                .then(|| Duration::from_millis(config.cache_trim_interval_millis)),
            last_trim: Instant::now(),
        }
    }

    /// The shared part, for identity checks.
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

    /// Allocates `size` bytes of `kind` memory: from the class's ring when it
    /// has a region, else from the bound arena.
    #[inline]
    pub(crate) fn allocate(&mut self, kind: MemoryKind, size: usize) -> Result<Allocation, AllocError> {
        let k = kind_index(kind);
        let Some(idx) = self.classes.index_of(size) else {
            let arena = self.kinds[k].arena();
            let memory = arena.allocate_huge(size)?;
            let arena = NonNull::from(arena);
            self.local_out += 1;
            return Ok(Allocation::huge(arena, memory, Owner::Cache(self.shared)));
        };
        if idx < self.kinds[k].rings.len() {
            self.count_lookup();
            if let Some(region) = self.take_cached(k, idx) {
                self.tally.add_parked(kind, (self.classes.size_of(idx) as u64).wrapping_neg());
                self.local_out += 1;
                let cache = &self.kinds[k];
                return Ok(Allocation::pooled(
                    cache.arena(),
                    cache.arena.expect("bound"),
                    region,
                    Owner::Cache(self.shared),
                ));
            }
        }
        let cache = &self.kinds[k];
        let arena = cache.arena();
        let region = arena.allocate(idx)?;
        self.local_out += 1;
        Ok(Allocation::pooled(arena, cache.arena.expect("bound"), region, Owner::Cache(self.shared)))
    }

    #[inline]
    fn take_cached(&mut self, k: usize, idx: usize) -> Option<PooledRegion> {
        let ring = &mut self.kinds[k].rings[idx];
        if let Some(region) = ring.regions.pop_front() {
            ring.hits += 1;
            return Some(region);
        }
        if self.drain_remote() == 0 {
            return None;
        }
        let ring = &mut self.kinds[k].rings[idx];
        let region = ring.regions.pop_front()?;
        ring.hits += 1;
        Some(region)
    }

    /// Moves regions released on other threads into the rings; returns how
    /// many arrived.
    fn drain_remote(&mut self) -> usize {
        // SAFETY: as in `shared()`; a separate borrow so that `park` can
        // take `&mut self`.
        let shared = unsafe { self.shared.as_ref() };
        let mut count = 0;
        while let Some(region) = shared.pop_remote() {
            self.park(region);
            count += 1;
        }
        count
    }

    /// Keeps a released region in its ring, or frees it when the ring is
    /// full or the class is not cached.
    fn park(&mut self, remote: RemoteRegion) {
        let k = self.kinds.iter().position(|c| c.arena == Some(remote.arena));
        if let Some(k) = k {
            if let Some(ring) = self.kinds[k].rings.get_mut(remote.region.size_idx as usize) {
                if ring.regions.len() < ring.capacity {
                    ring.regions.push_back(remote.region);
                    let kind = if k == 0 { MemoryKind::Heap } else { MemoryKind::Direct };
                    self.tally.add_parked(kind, self.classes.size_of(remote.region.size_idx as usize) as u64);
                    return;
                }
            }
        }
        // SAFETY: the region belongs to this cache's pool, alive through it.
        unsafe { remote.free_to_arena() };
    }

    #[inline]
    fn count_lookup(&mut self) {
        self.lookups += 1;
        if self.lookups >= self.trim_interval {
            self.trim();
        } else if self.lookups % CLOCK_CHECK_EVERY == 0 {
            self.periodic_check();
        }
    }

    /// Every few lookups: a trim the pool asked for, or a time-based one.
    #[cold]
    fn periodic_check(&mut self) {
        let due = self.trim_period.is_some_and(|period| self.last_trim.elapsed() >= period);
        if due || self.tally.take_trim_request() {
            self.trim();
        }
    }

    /// Netty's trim: each class frees (capacity - hits since the last trim)
    /// of its oldest regions, so idle classes drain and busy ones keep what
    /// they use. Regions queued by other threads go back to arenas too. When
    /// the pool asked for a trim ([`PooledAllocator::trim`](crate::PooledAllocator::trim)),
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
        self.last_trim = Instant::now();
        for cache in &mut self.kinds {
            for idx in 0..cache.rings.len() {
                let ring = &mut cache.rings[idx];
                let excess = if everything { usize::MAX } else { ring.capacity.saturating_sub(ring.hits) };
                ring.hits = 0;
                cache.free_oldest(idx, excess);
            }
        }
        self.publish_parked();
        let shared = self.shared();
        while let Some(region) = shared.pop_remote() {
            // SAFETY: the pool is alive through the shared part.
            unsafe { region.free_to_arena() };
        }
    }

    /// Recounts the bytes parked in the rings and publishes them (a ring
    /// holds regions of one class only).
    fn publish_parked(&self) {
        for (k, kind) in [MemoryKind::Heap, MemoryKind::Direct].into_iter().enumerate() {
            let rings = self.kinds[k].rings.iter().enumerate();
            let bytes: usize = rings.map(|(idx, ring)| ring.regions.len() * self.classes.size_of(idx)).sum();
            self.tally.set_parked(kind, bytes as u64);
        }
    }
}

impl Drop for ThreadCache {
    /// The thread is exiting (or the pool is closed): every cached region goes
    /// back to its arena, the arenas' cache counts drop, and the shared part
    /// is settled.
    fn drop(&mut self) {
        let shared_ptr = self.shared;
        // SAFETY: still alive: the bias is removed only at the end of this fn.
        let shared = unsafe { shared_ptr.as_ref() };
        shared.closed.store(true, Ordering::SeqCst);
        for cache in &mut self.kinds {
            for idx in 0..cache.rings.len() {
                cache.free_oldest(idx, usize::MAX);
            }
            if cache.arena.is_some() {
                cache.arena().unbind_thread_cache();
            }
        }
        self.publish_parked();
        while let Some(region) = shared.pop_remote() {
            // SAFETY: the pool is alive through the shared part.
            unsafe { region.free_to_arena() };
        }
        let settle = self.local_out.wrapping_sub(OWNER_BIAS);
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

    use crate::PooledAllocator;

    fn tiny_pool() -> PooledAllocator {
        // 4 KiB chunks: every model run maps little memory.
        PooledAllocator::builder().heap_arenas(1).direct_arenas(0).page_size(4096).max_order(0).build().unwrap()
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(f);
    }

    fn active(alloc: &PooledAllocator) -> u64 {
        alloc.metric().heap_arenas()[0].num_active_allocations()
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
                    let releaser = thread::spawn(move || drop(buf));
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

    /// The allocating thread exits while another thread releases its buffer:
    /// whichever finishes last frees the cache's shared part, and the region
    /// ends up in the arena.
    #[test]
    fn loom_thread_exit_races_a_release() {
        model(|| {
            let alloc = tiny_pool();
            let (tx, rx) = loom::sync::mpsc::channel();
            let owner = {
                let alloc = alloc.clone();
                thread::spawn(move || {
                    let buf = alloc.heap_buffer(100);
                    tx.send(buf).unwrap();
                    // Exits now: its cache closes and settles.
                })
            };
            let releaser = thread::spawn(move || drop(rx.recv().unwrap()));
            owner.join().unwrap();
            releaser.join().unwrap();
            settle(&alloc);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::thread;

    use crate::{ByteBuf, PooledAllocator};

    /// One arena of each kind, 8 KiB pages and the test geometry's chunks.
    fn pool() -> PooledAllocator {
        PooledAllocator::builder()
            .heap_arenas(1)
            .direct_arenas(1)
            .max_order(crate::test_config::MAX_ORDER)
            .build()
            .unwrap()
    }

    fn active(alloc: &PooledAllocator) -> u64 {
        let m = alloc.metric();
        m.heap_arenas().iter().chain(m.direct_arenas()).map(|a| a.num_active_allocations()).sum()
    }

    #[test]
    fn a_region_released_on_its_thread_is_served_again_from_the_ring() {
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
    fn regions_released_elsewhere_come_back_through_the_queue() {
        let alloc = pool();
        let bufs: Vec<ByteBuf> = (0..8).map(|_| alloc.heap_buffer(1000)).collect();
        let addrs: Vec<usize> = bufs.iter().map(ByteBuf::memory_address).collect();
        thread::spawn(move || drop(bufs)).join().unwrap();
        let again: Vec<usize> = (0..8).map(|_| alloc.heap_buffer(1000).memory_address()).collect();
        // The first request drains the queue into the ring; FIFO order and
        // each request releasing its buffer at once means one region cycles.
        assert!(again.iter().all(|a| addrs.contains(a)));
        assert_eq!(alloc.metric().heap_arenas()[0].num_allocations(), 8);
    }

    #[test]
    fn buffers_outliving_their_thread_are_released_safely() {
        let alloc = pool();
        let worker_alloc = alloc.clone();
        let (small, huge) = thread::spawn(move || {
            let small = worker_alloc.heap_buffer(48);
            let huge = worker_alloc.heap_buffer(worker_alloc.metric().chunk_size() + 1);
            drop(worker_alloc.heap_buffer(48)); // something in the ring at exit
            (small, huge)
        })
        .join()
        .unwrap();
        assert_eq!(alloc.metric().num_thread_local_caches(), 0);
        assert_eq!(active(&alloc), 2, "the two live buffers; the ring was flushed");
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
