//! The allocator front: [`PooledAllocator`], its arenas, thread binding and
//! the unpooled fallback.

use std::sync::OnceLock;

use crate::arena::Arena;
use crate::buf::{ByteBuf, MAX_CAPACITY};
use crate::cache_registry::CacheRegistry;
use crate::config::{Builder, Config};
use crate::error::AllocError;
use crate::leak::{LeakDetector, LeakReport};
use crate::memory::{Backing, MemoryKind, MemoryLimit, RawMemory};
use crate::metric::{AllocatorMetric, ArenaMetric};
use crate::size_class::SizeClasses;
use crate::sync::{lock, Arc, AtomicBool, AtomicU64, Mutex, Ordering};
use crate::thread_cache::{self, Allocation};
use crate::thread_local;

/// Netty's default maximum capacity of a buffer.
pub const DEFAULT_MAX_CAPACITY: usize = i32::MAX as usize;

/// Ids for pools: small integers, reused after a pool is dropped, so that
/// each thread's table of caches stays as short as the number of pools
/// alive at once.
static POOL_IDS: std::sync::Mutex<Vec<bool>> = std::sync::Mutex::new(Vec::new());

/// The plain methods' panic: the `try_` methods' error, as its message.
#[cold]
#[inline(never)]
#[track_caller]
fn alloc_failed(err: AllocError) -> ! {
    panic!("{err}")
}

fn take_pool_id() -> usize {
    let mut ids = POOL_IDS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match ids.iter().position(|used| !used) {
        Some(id) => {
            ids[id] = true;
            id
        }
        None => {
            ids.push(true);
            ids.len() - 1
        }
    }
}

fn release_pool_id(id: usize) {
    let mut ids = POOL_IDS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    ids[id] = false;
}

/// The shared core of an allocator: arenas, settings and counters. Thread
/// caches and buffers keep it alive after the last [`PooledAllocator`]
/// handle is gone.
#[derive(Debug)]
pub(crate) struct Pool {
    id: usize,
    config: Config,
    classes: Arc<SizeClasses>,
    heap_arenas: Box<[Arena]>,
    direct_arenas: Box<[Arena]>,
    direct_limit: Arc<MemoryLimit>,
    /// Set when the last user handle is dropped.
    closed: AtomicBool,
    unpooled_heap_bytes: AtomicU64,
    unpooled_direct_bytes: AtomicU64,
    /// The live thread caches, for pinned memory and [`PooledAllocator::trim`].
    cache_registry: CacheRegistry,
    /// Held while a new thread cache picks its arenas, so that threads
    /// starting together do not all pick the same least-used one (Netty
    /// synchronises the same step).
    binding: Mutex<()>,
    /// The leak detector; the thread caches sample allocations for it.
    leak: Arc<LeakDetector>,
}

impl Pool {
    fn new(config: Config) -> Pool {
        let classes = Arc::new(SizeClasses::new(config.page_size, config.max_order).expect("validated by the builder"));
        let direct_limit = Arc::new(MemoryLimit::new(config.max_direct_memory));
        let arenas = |kind, count, limit: Option<&Arc<MemoryLimit>>| -> Box<[Arena]> {
            (0..count).map(|_| Arena::new(kind, classes.clone(), limit.cloned(), config.huge_pages)).collect()
        };
        Pool {
            id: take_pool_id(),
            heap_arenas: arenas(MemoryKind::Heap, config.heap_arenas, None),
            direct_arenas: arenas(MemoryKind::Direct, config.direct_arenas, Some(&direct_limit)),
            classes,
            direct_limit,
            leak: Arc::new(LeakDetector::new(config.leak_detection)),
            config,
            closed: AtomicBool::new(false),
            unpooled_heap_bytes: AtomicU64::new(0),
            unpooled_direct_bytes: AtomicU64::new(0),
            cache_registry: CacheRegistry::default(),
            binding: Mutex::new(()),
        }
    }

    pub(crate) fn cache_registry(&self) -> &CacheRegistry {
        &self.cache_registry
    }

    #[inline]
    pub(crate) fn id(&self) -> usize {
        self.id
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn size_classes(&self) -> &Arc<SizeClasses> {
        &self.classes
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    #[inline]
    fn arenas(&self, kind: MemoryKind) -> &[Arena] {
        match kind {
            MemoryKind::Heap => &self.heap_arenas,
            MemoryKind::Direct => &self.direct_arenas,
        }
    }

    /// The arena of `kind` with the fewest bound thread caches (ties: the
    /// lowest index).
    pub(crate) fn least_used(&self, kind: MemoryKind) -> Option<&Arena> {
        self.arenas(kind).iter().min_by_key(|a| a.num_thread_caches())
    }

    /// Binds a new thread cache to the least-used arena of `kind`.
    pub(crate) fn bind_least_used(&self, kind: MemoryKind) -> Option<&Arena> {
        let _binding = lock(&self.binding);
        let arena = self.least_used(kind)?;
        arena.bind_thread_cache();
        Some(arena)
    }

    #[inline(always)]
    pub(crate) fn allocate(this: &Arc<Pool>, kind: MemoryKind, size: usize) -> Result<(Allocation, bool), AllocError> {
        thread_cache::allocate(this, kind, size)
    }

    fn unpooled_counter(&self, kind: MemoryKind) -> &AtomicU64 {
        match kind {
            MemoryKind::Heap => &self.unpooled_heap_bytes,
            MemoryKind::Direct => &self.unpooled_direct_bytes,
        }
    }

    #[cold]
    pub(crate) fn allocate_unpooled(this: &Arc<Pool>, kind: MemoryKind, size: usize) -> Result<Allocation, AllocError> {
        let memory = RawMemory::allocate(kind, size.max(1), Some(&this.direct_limit), Backing::BasePages)?;
        this.unpooled_counter(kind).fetch_add(memory.len() as u64, Ordering::Relaxed);
        Ok(Allocation::unpooled(memory, this.clone()))
    }

    /// Runs `attempt`; when the direct-memory limit refuses it, gives back
    /// the empty chunks the direct arenas keep for reuse (they count against
    /// the limit) and tries once more.
    pub(crate) fn within_limit<T>(&self, mut attempt: impl FnMut() -> Result<T, AllocError>) -> Result<T, AllocError> {
        match attempt() {
            Err(AllocError::DirectMemoryExhausted { .. }) => {
                for arena in self.direct_arenas.iter() {
                    arena.release_empty_chunks();
                }
                attempt()
            }
            other => other,
        }
    }

    /// The pool's leak detector.
    pub(crate) fn leak_detector(&self) -> &LeakDetector {
        &self.leak
    }

    pub(crate) fn free_unpooled(&self, memory: RawMemory) {
        self.unpooled_counter(memory.kind()).fetch_sub(memory.len() as u64, Ordering::Relaxed);
    }

    /// Asks every thread cache to give back its regions, returns the
    /// regions queued for caches, trims the calling thread's cache, and
    /// gives empty subpages and chunks back.
    pub(crate) fn trim(&self) {
        // Regions this thread released for other caches go out first, so
        // that the queues emptied below hold them.
        thread_local::send_outbox();
        self.cache_registry.trim_all();
        thread_local::with_existing_cache(self.id, |cache| cache.trim_all());
        for arena in self.heap_arenas.iter().chain(self.direct_arenas.iter()) {
            arena.trim();
        }
        // The chunks' bookkeeping came from the global allocator; have it
        // give back the pages that freed (glibc keeps them otherwise).
        crate::memory::release_free_heap_pages();
    }

    /// Starts the background thread of the idle-time trim: every `period`
    /// it trims the pool if no arena saw an allocation or release since the
    /// previous look. It holds the pool weakly and ends once the pool is
    /// closed or gone.
    #[cfg(not(loom))]
    fn start_idle_trim(this: &Arc<Pool>, period: std::time::Duration) {
        let pool = Arc::downgrade(this);
        let spawned = std::thread::Builder::new().name("arenabuf-idle-trim".into()).spawn(move || {
            let mut last_seen = None;
            loop {
                std::thread::sleep(period);
                let Some(pool) = pool.upgrade() else { return };
                if pool.is_closed() {
                    return;
                }
                let operations: u64 =
                    pool.heap_arenas.iter().chain(pool.direct_arenas.iter()).map(Arena::num_operations).sum();
                if last_seen == Some(operations) {
                    pool.trim();
                }
                last_seen = Some(operations);
            }
        });
        if let Err(err) = spawned {
            eprintln!("arenabuf: no idle-time trim: cannot start its thread: {err}");
        }
    }

    /// Loom models run no background thread.
    #[cfg(loom)]
    fn start_idle_trim(_this: &Arc<Pool>, _period: std::time::Duration) {}

    fn metric(&self) -> AllocatorMetric {
        let arena_metrics = |kind| -> Vec<ArenaMetric> { self.arenas(kind).iter().map(Arena::metric).collect() };
        let heap = arena_metrics(MemoryKind::Heap);
        let direct = arena_metrics(MemoryKind::Direct);
        let used = |arenas: &[ArenaMetric], kind| {
            arenas.iter().map(|a| a.num_active_bytes()).sum::<u64>()
                + self.unpooled_counter(kind).load(Ordering::Relaxed)
        };
        // See `cache_registry` for why pinned memory is derived this way.
        let pinned = |arenas: &[ArenaMetric], kind| {
            let handed_out = arenas.iter().map(|a| a.pooled_active_bytes() + a.huge_active_bytes()).sum::<u64>()
                + self.unpooled_counter(kind).load(Ordering::Relaxed);
            let held = self.cache_registry.held_bytes(kind);
            // The figures are read one after another while threads run: a
            // region moving from a stack to a buffer can be missed once.
            handed_out.saturating_sub(held)
        };
        AllocatorMetric {
            used_heap_memory: used(&heap, MemoryKind::Heap),
            used_direct_memory: used(&direct, MemoryKind::Direct),
            pinned_heap_memory: pinned(&heap, MemoryKind::Heap),
            pinned_direct_memory: pinned(&direct, MemoryKind::Direct),
            num_thread_local_caches: if heap.is_empty() { &direct } else { &heap }
                .iter()
                .map(|a| a.num_thread_caches())
                .sum(),
            chunk_size: self.classes.chunk_size(),
            small_cache_size: self.config.small_cache_size,
            normal_cache_size: self.config.normal_cache_size,
            heap_arenas: heap,
            direct_arenas: direct,
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        release_pool_id(self.id);
    }
}

/// What users hold: dropping the last one closes the pool, so that threads
/// drop their caches for it the next time they bind to any pool.
#[derive(Debug)]
struct UserHandle {
    pool: Arc<Pool>,
}

impl Drop for UserHandle {
    fn drop(&mut self) {
        self.pool.closed.store(true, Ordering::Relaxed);
        self.pool.leak.log_if_leaking();
    }
}

/// A pooled byte-buffer allocator: a cheap handle to shared arenas.
///
/// Each thread that allocates is bound to the least-used heap arena and the
/// least-used direct arena and gets a cache of recently freed regions; see
/// the crate docs for the request path.
///
/// Cloning is cheap and every clone uses the same pool. Dropping the last
/// handle while buffers live is safe: their memory stays valid until the
/// last of them is gone.
///
/// # Examples
///
/// ```
/// use arenabuf::PooledAllocator;
///
/// let alloc = PooledAllocator::new();
/// let mut buf = alloc.direct_buffer(1000);
/// buf.as_mut_slice()[..5].copy_from_slice(b"hello");
/// assert_eq!(&buf.as_slice()[..5], b"hello");
/// assert!(buf.capacity() >= 1000);
/// ```
#[derive(Debug, Clone)]
pub struct PooledAllocator {
    handle: Arc<UserHandle>,
    /// The pool's id, which the hit path compares with the thread's current
    /// cache's: kept here, it is one load from the handle instead of three
    /// dependent ones through it (`hot-loop` 7.44 -> 7.26 ns per pair).
    pool_id: usize,
}

impl Default for PooledAllocator {
    fn default() -> Self {
        PooledAllocator::new()
    }
}

impl PooledAllocator {
    /// An allocator with the default settings, overridden by any `ARENABUF_*`
    /// environment variable. An environment variable that is out of range is
    /// reported on stderr and ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::new();
    /// assert_eq!(alloc.metric().chunk_size(), 4 << 20);
    /// ```
    #[must_use]
    pub fn new() -> PooledAllocator {
        match Builder::new().build() {
            Ok(alloc) => alloc,
            Err(err) => {
                eprintln!("arenabuf: {err}; using the defaults instead");
                PooledAllocator::from_config(Builder::new_without_env().resolve().expect("the defaults are valid"))
            }
        }
    }

    /// A builder for an allocator with chosen settings.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// assert_eq!(alloc.metric().num_heap_arenas(), 1);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// The process-wide allocator, built with [`PooledAllocator::new`] on
    /// first use.
    ///
    /// # Examples
    ///
    /// ```
    /// let buf = arenabuf::PooledAllocator::global().buffer(64);
    /// assert_eq!(buf.capacity(), 64);
    /// ```
    pub fn global() -> &'static PooledAllocator {
        static GLOBAL: OnceLock<PooledAllocator> = OnceLock::new();
        GLOBAL.get_or_init(PooledAllocator::new)
    }

    pub(crate) fn from_config(config: Config) -> PooledAllocator {
        let idle_trim_millis = config.idle_trim_millis;
        let pool = Arc::new(Pool::new(config));
        if idle_trim_millis > 0 {
            Pool::start_idle_trim(&pool, std::time::Duration::from_millis(idle_trim_millis));
        }
        let pool_id = pool.id();
        PooledAllocator { handle: Arc::new(UserHandle { pool }), pool_id }
    }

    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.handle.pool
    }

    /// A heap buffer of `capacity` bytes (maximum capacity `i32::MAX`).
    ///
    /// # Panics
    ///
    /// When the memory cannot be had; see [`try_heap_buffer`](Self::try_heap_buffer).
    ///
    /// # Examples
    ///
    /// ```
    /// let buf = arenabuf::PooledAllocator::new().heap_buffer(256);
    /// assert!(!buf.is_direct());
    /// ```
    #[must_use]
    #[inline]
    #[track_caller]
    pub fn heap_buffer(&self, capacity: usize) -> ByteBuf {
        self.buffer_of(MemoryKind::Heap, capacity)
    }

    /// A direct (mmap-backed) buffer of `capacity` bytes (maximum capacity
    /// `i32::MAX`).
    ///
    /// # Panics
    ///
    /// When the memory cannot be had, for example past the direct-memory
    /// limit; see [`try_direct_buffer`](Self::try_direct_buffer).
    ///
    /// # Examples
    ///
    /// ```
    /// let buf = arenabuf::PooledAllocator::new().direct_buffer(256);
    /// assert!(buf.is_direct());
    /// ```
    #[must_use]
    #[inline]
    #[track_caller]
    pub fn direct_buffer(&self, capacity: usize) -> ByteBuf {
        self.buffer_of(MemoryKind::Direct, capacity)
    }

    /// The plain methods: a cache hit inline, everything else (misses, and
    /// the allocations the leak detector samples) out of line.
    #[inline(always)]
    #[track_caller]
    fn buffer_of(&self, kind: MemoryKind, capacity: usize) -> ByteBuf {
        match thread_cache::cache_hit(&self.pool_id, kind, capacity) {
            Some(hit) => hit.into_buffer(capacity, DEFAULT_MAX_CAPACITY.max(capacity)),
            None => self.buffer_slow(kind, capacity),
        }
    }

    #[cold]
    #[inline(never)]
    #[track_caller]
    fn buffer_slow(&self, kind: MemoryKind, capacity: usize) -> ByteBuf {
        self.try_buffer_slow(kind, capacity, DEFAULT_MAX_CAPACITY.max(capacity)).unwrap_or_else(|e| alloc_failed(e))
    }

    /// A buffer of `capacity` bytes of the preferred kind: direct.
    ///
    /// # Panics
    ///
    /// As [`direct_buffer`](Self::direct_buffer).
    ///
    /// # Examples
    ///
    /// ```
    /// let buf = arenabuf::PooledAllocator::new().buffer(10);
    /// assert!(buf.is_direct());
    /// ```
    #[must_use]
    #[track_caller]
    pub fn buffer(&self, capacity: usize) -> ByteBuf {
        self.direct_buffer(capacity)
    }

    /// A heap buffer of `capacity` bytes that may grow to `max_capacity`.
    ///
    /// # Errors
    ///
    /// [`AllocError::CapacityOverflow`] when `capacity > max_capacity`
    /// (`max_capacity` is capped at [`MAX_CAPACITY`], 4 GiB - 1);
    /// [`AllocError::OutOfMemory`] when the system refuses memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use arenabuf::{AllocError, PooledAllocator};
    ///
    /// let alloc = PooledAllocator::new();
    /// assert!(alloc.try_heap_buffer(100, 1000).is_ok());
    /// assert_eq!(
    ///     alloc.try_heap_buffer(2000, 1000).unwrap_err(),
    ///     AllocError::CapacityOverflow { requested: 2000, max_capacity: 1000 }
    /// );
    /// ```
    #[inline]
    #[track_caller]
    pub fn try_heap_buffer(&self, capacity: usize, max_capacity: usize) -> Result<ByteBuf, AllocError> {
        self.try_buffer(MemoryKind::Heap, capacity, max_capacity)
    }

    /// A direct buffer of `capacity` bytes that may grow to `max_capacity`.
    ///
    /// # Errors
    ///
    /// [`AllocError::CapacityOverflow`] when `capacity > max_capacity`
    /// (`max_capacity` is capped at [`MAX_CAPACITY`], 4 GiB - 1);
    /// [`AllocError::DirectMemoryExhausted`] past the direct-memory limit
    /// ("failed to allocate N byte(s) of direct memory (used: U, max: M)");
    /// [`AllocError::OutOfMemory`] when the system refuses memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use arenabuf::PooledAllocator;
    ///
    /// let alloc = PooledAllocator::builder().max_direct_memory(8 << 20).build()?;
    /// let err = alloc.try_direct_buffer(16 << 20, 16 << 20).unwrap_err();
    /// assert!(err.to_string().starts_with("failed to allocate 16777216 byte(s) of direct memory"));
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[inline]
    #[track_caller]
    pub fn try_direct_buffer(&self, capacity: usize, max_capacity: usize) -> Result<ByteBuf, AllocError> {
        self.try_buffer(MemoryKind::Direct, capacity, max_capacity)
    }

    #[inline(always)]
    #[track_caller]
    fn try_buffer(&self, kind: MemoryKind, capacity: usize, max_capacity: usize) -> Result<ByteBuf, AllocError> {
        let max_capacity = max_capacity.min(MAX_CAPACITY);
        if capacity > max_capacity {
            return Err(AllocError::CapacityOverflow { requested: capacity, max_capacity });
        }
        match thread_cache::cache_hit(&self.pool_id, kind, capacity) {
            Some(hit) => Ok(hit.into_buffer(capacity, max_capacity)),
            None => self.try_buffer_slow(kind, capacity, max_capacity),
        }
    }

    /// What the hit path leaves ([`thread_cache::cache_hit`] found nothing to
    /// serve): misses, and the allocations the leak detector samples.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn try_buffer_slow(&self, kind: MemoryKind, capacity: usize, max_capacity: usize) -> Result<ByteBuf, AllocError> {
        let (mut allocation, track) = thread_cache::allocate_missed(self.pool(), kind, capacity)?;
        if track {
            self.track(&mut allocation, capacity);
        }
        Ok(ByteBuf::new(allocation, capacity, max_capacity))
    }

    /// Has the leak detector track a sampled allocation, made at the
    /// caller's location; out of line, as sampled allocations are rare.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn track(&self, allocation: &mut Allocation, capacity: usize) {
        LeakDetector::track(&self.pool().leak, allocation, capacity, std::panic::Location::caller());
    }

    /// Trims the calling thread's cache for this allocator: each class gives
    /// back the regions it did not use since the last trim. Returns false
    /// when the thread has no cache for this allocator.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::new();
    /// assert!(!alloc.trim_current_thread_cache());
    /// drop(alloc.heap_buffer(10));
    /// assert!(alloc.trim_current_thread_cache());
    /// ```
    pub fn trim_current_thread_cache(&self) -> bool {
        thread_local::send_outbox();
        thread_local::with_existing_cache(self.pool().id(), |cache| cache.trim()).is_some()
    }

    /// Gives back the memory the pool holds without use: the calling
    /// thread's cache gives back every region now; every other thread's
    /// cache is asked to do the same at its next cache lookups (a thread
    /// cannot be reached while it runs), and the regions queued for it by
    /// other threads go back at once; then every subpage with no element in
    /// use and every empty chunk is given back, chunk memory to the system.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let burst: Vec<_> = (0..64).map(|_| alloc.heap_buffer(256 << 10)).collect();
    /// assert_eq!(alloc.metric().used_heap_memory(), 4 * (4 << 20));
    /// drop(burst);
    /// alloc.trim();
    /// assert_eq!(alloc.metric().used_heap_memory(), 0);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    pub fn trim(&self) {
        self.pool().trim();
    }

    /// The buffers the leak detector tracks that are still alive, grouped
    /// by allocation site: forgotten buffers, buffers in reference cycles,
    /// or buffers simply still held. Which buffers are tracked depends on
    /// the [`LeakLevel`](crate::LeakLevel) (by default one in 128). When the last handle of
    /// the allocator drops, a non-empty report is printed to stderr.
    ///
    /// # Examples
    ///
    /// ```
    /// use arenabuf::{LeakLevel, PooledAllocator};
    ///
    /// let alloc = PooledAllocator::builder().leak_detection(LeakLevel::Paranoid).build()?;
    /// let kept = alloc.heap_buffer(100);
    /// std::mem::forget(alloc.heap_buffer(200));
    /// let report = alloc.leak_report();
    /// assert_eq!(report.len(), 2);
    /// assert!(report.to_string().contains("200 B"));
    /// drop(kept);
    /// assert_eq!(alloc.leak_report().len(), 1);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn leak_report(&self) -> LeakReport {
        self.pool().leak.report()
    }

    /// A readable report of the pool: totals, then per arena its counters,
    /// its chunk lists with each chunk's usage and free bytes, and its
    /// pooled subpages per class (the [`Display`](std::fmt::Display) of
    /// [`AllocatorMetric`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).direct_arenas(0).build()?;
    /// let _buf = alloc.heap_buffer(500);
    /// let stats = alloc.dump_stats();
    /// assert!(stats.contains("heap arena 0:"));
    /// assert!(stats.contains("chunk: usage 1%"));
    /// assert!(stats.contains("512 B x 47: 1 used, 46 free"));
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn dump_stats(&self) -> String {
        self.metric().to_string()
    }

    /// A picture of the pool as an SVG document: every chunk of every arena
    /// as a strip of pages coloured by state; see [`chunks_svg`](crate::chunks_svg).
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(2).direct_arenas(0).build()?;
    /// let _buf = alloc.heap_buffer(100_000);
    /// let svg = alloc.stats_svg();
    /// assert_eq!(svg.matches("<g data-chunk=").count(), 1);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn stats_svg(&self) -> String {
        crate::picture::chunks_svg(&self.metric())
    }

    /// A snapshot of the allocator's metrics.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(2).build()?;
    /// let buf = alloc.heap_buffer(100);
    /// let metric = alloc.metric();
    /// assert_eq!(metric.num_heap_arenas(), 2);
    /// assert_eq!(metric.used_heap_memory(), metric.chunk_size() as u64);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn metric(&self) -> AllocatorMetric {
        self.pool().metric()
    }
}
