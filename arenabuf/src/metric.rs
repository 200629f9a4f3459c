//! Read-only snapshots of an allocator's state.
//!
//! A snapshot is taken arena by arena, each under its arena's lock, so the
//! figures of one arena are consistent with each other.

use crate::arena::ArenaCounts;

/// A snapshot of a [`PooledAllocator`](crate::PooledAllocator)'s metrics.
///
/// # Examples
///
/// ```
/// let alloc = arenabuf::PooledAllocator::builder().direct_arenas(1).build()?;
/// let _buf = alloc.direct_buffer(1 << 20);
/// let metric = alloc.metric();
/// assert_eq!(metric.direct_arenas()[0].num_normal_allocations(), 1);
/// # Ok::<(), arenabuf::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatorMetric {
    pub(crate) heap_arenas: Vec<ArenaMetric>,
    pub(crate) direct_arenas: Vec<ArenaMetric>,
    pub(crate) num_thread_local_caches: usize,
    pub(crate) used_heap_memory: u64,
    pub(crate) used_direct_memory: u64,
    pub(crate) chunk_size: usize,
    pub(crate) small_cache_size: usize,
    pub(crate) normal_cache_size: usize,
}

impl AllocatorMetric {
    /// Heap arenas.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(3).build()?;
    /// assert_eq!(alloc.metric().num_heap_arenas(), 3);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn num_heap_arenas(&self) -> usize {
        self.heap_arenas.len()
    }

    /// Direct arenas.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().direct_arenas(2).build()?;
    /// assert_eq!(alloc.metric().num_direct_arenas(), 2);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn num_direct_arenas(&self) -> usize {
        self.direct_arenas.len()
    }

    /// Live thread caches (counted on the heap arenas, or on the direct
    /// arenas when there are no heap arenas, as Netty does).
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::new();
    /// drop(alloc.heap_buffer(8));
    /// assert_eq!(alloc.metric().num_thread_local_caches(), 1);
    /// ```
    #[must_use]
    pub fn num_thread_local_caches(&self) -> usize {
        self.num_thread_local_caches
    }

    /// Bytes of heap memory the pool holds: chunks, huge and unpooled buffers.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// assert_eq!(alloc.metric().used_heap_memory(), 0);
    /// let _buf = alloc.heap_buffer(10);
    /// assert_eq!(alloc.metric().used_heap_memory(), 4 << 20);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn used_heap_memory(&self) -> u64 {
        self.used_heap_memory
    }

    /// Bytes of direct memory the pool holds: chunks, huge and unpooled
    /// buffers.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().direct_arenas(1).build()?;
    /// let _buf = alloc.direct_buffer(10);
    /// assert_eq!(alloc.metric().used_direct_memory(), 4 << 20);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn used_direct_memory(&self) -> u64 {
        self.used_direct_memory
    }

    /// Bytes in one chunk.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(arenabuf::PooledAllocator::new().metric().chunk_size(), 4 << 20);
    /// ```
    #[must_use]
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Cached regions per small class per thread, as configured.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(arenabuf::PooledAllocator::new().metric().small_cache_size(), 256);
    /// ```
    #[must_use]
    pub fn small_cache_size(&self) -> usize {
        self.small_cache_size
    }

    /// Cached regions per normal class per thread, as configured.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(arenabuf::PooledAllocator::new().metric().normal_cache_size(), 64);
    /// ```
    #[must_use]
    pub fn normal_cache_size(&self) -> usize {
        self.normal_cache_size
    }

    /// The heap arenas' metrics.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(2).build()?;
    /// assert_eq!(alloc.metric().heap_arenas().len(), 2);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn heap_arenas(&self) -> &[ArenaMetric] {
        &self.heap_arenas
    }

    /// The direct arenas' metrics.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().direct_arenas(2).build()?;
    /// assert_eq!(alloc.metric().direct_arenas().len(), 2);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn direct_arenas(&self) -> &[ArenaMetric] {
        &self.direct_arenas
    }
}

/// A snapshot of one arena's counters, with Netty's meanings: a region served
/// from a thread cache is not an allocation, and a region parked in a thread
/// cache is not a deallocation until the cache gives it back.
///
/// # Examples
///
/// ```
/// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
/// drop(alloc.heap_buffer(100));
/// let _again = alloc.heap_buffer(100); // served by the thread cache
/// let arena = alloc.metric().heap_arenas()[0].clone();
/// assert_eq!(arena.num_small_allocations(), 1);
/// assert_eq!(arena.num_small_deallocations(), 0);
/// # Ok::<(), arenabuf::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaMetric {
    counts: ArenaCounts,
    thread_caches: usize,
    chunk_size: usize,
}

macro_rules! arena_counter {
    ($(#[$doc:meta])* $name:ident => |$c:ident| $value:expr) => {
        $(#[$doc])*
        ///
        /// # Examples
        ///
        /// ```
        /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
        /// let arena = alloc.metric().heap_arenas()[0].clone();
        #[doc = concat!("assert_eq!(arena.", stringify!($name), "(), 0);")]
        /// # Ok::<(), arenabuf::ConfigError>(())
        /// ```
        #[must_use]
        pub fn $name(&self) -> u64 {
            let $c = &self.counts;
            $value
        }
    };
}

impl ArenaMetric {
    pub(crate) fn new(counts: ArenaCounts, thread_caches: usize, chunk_size: usize) -> ArenaMetric {
        ArenaMetric { counts, thread_caches, chunk_size }
    }

    /// Thread caches bound to this arena.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// drop(alloc.heap_buffer(1));
    /// assert_eq!(alloc.metric().heap_arenas()[0].num_thread_caches(), 1);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn num_thread_caches(&self) -> usize {
        self.thread_caches
    }

    arena_counter!(
        /// Regions and huge buffers handed out by the arena.
        num_allocations => |c| c.pooled.small_allocations + c.pooled.normal_allocations + c.huge_allocations
    );
    arena_counter!(
        /// Small regions (below four pages) handed out by the arena.
        num_small_allocations => |c| c.pooled.small_allocations
    );
    arena_counter!(
        /// Normal regions (runs of pages up to a chunk) handed out by the arena.
        num_normal_allocations => |c| c.pooled.normal_allocations
    );
    arena_counter!(
        /// Huge buffers (above the chunk size) handed out by the arena.
        num_huge_allocations => |c| c.huge_allocations
    );
    arena_counter!(
        /// Regions and huge buffers given back to the arena.
        num_deallocations => |c| c.pooled.small_deallocations + c.pooled.normal_deallocations + c.huge_deallocations
    );
    arena_counter!(
        /// Small regions given back to the arena.
        num_small_deallocations => |c| c.pooled.small_deallocations
    );
    arena_counter!(
        /// Normal regions given back to the arena.
        num_normal_deallocations => |c| c.pooled.normal_deallocations
    );
    arena_counter!(
        /// Huge buffers given back to the arena.
        num_huge_deallocations => |c| c.huge_deallocations
    );
    arena_counter!(
        /// Allocations not given back yet (live buffers and regions parked in
        /// thread caches).
        num_active_allocations => |c| c.pooled.small_allocations + c.pooled.normal_allocations + c.huge_allocations
            - c.pooled.small_deallocations - c.pooled.normal_deallocations - c.huge_deallocations
    );
    /// Bytes the arena holds for its buffers: its chunks plus its live huge
    /// buffers (Netty's definition).
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let _buf = alloc.heap_buffer(10 << 20); // huge: above the 4 MiB chunk
    /// assert_eq!(alloc.metric().heap_arenas()[0].num_active_bytes(), 10 << 20);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn num_active_bytes(&self) -> u64 {
        self.counts.chunks * self.chunk_size as u64 + self.counts.huge_active_bytes
    }
}
