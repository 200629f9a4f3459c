//! Read-only snapshots of an allocator's state.
//!
//! A snapshot is taken arena by arena, each under its arena's lock, so the
//! figures of one arena are consistent with each other.

use std::fmt;

use crate::arena::ArenaCounts;
use crate::chunk::Chunk;
use crate::memory::Backing;
use crate::size_class::SizeClasses;

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
    pub(crate) pinned_heap_memory: u64,
    pub(crate) pinned_direct_memory: u64,
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

    /// Bytes of heap memory reserved by live buffers: the class size of each
    /// live pooled buffer plus the size of each live huge or unpooled one.
    /// Regions parked in thread caches or queued for one are not pinned
    /// (Netty's definition); regions released on a thread other than their
    /// owner's count as pinned until that thread sends them on, in batches
    /// of at most 64 regions or 1 MiB (or when it trims or exits). While
    /// buffers live, `capacity <= pinned <= used`.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let buf = alloc.heap_buffer(1000); // the 1024-byte class
    /// assert_eq!(alloc.metric().pinned_heap_memory(), 1024);
    /// drop(buf); // parked in this thread's cache: no longer pinned
    /// assert_eq!(alloc.metric().pinned_heap_memory(), 0);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn pinned_heap_memory(&self) -> u64 {
        self.pinned_heap_memory
    }

    /// Bytes of direct memory reserved by live buffers; see
    /// [`pinned_heap_memory`](Self::pinned_heap_memory).
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().direct_arenas(1).build()?;
    /// let _buf = alloc.direct_buffer(100_000); // the 114688-byte class
    /// assert_eq!(alloc.metric().pinned_direct_memory(), 114_688);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn pinned_direct_memory(&self) -> u64 {
        self.pinned_direct_memory
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
/// cache is not a deallocation until the cache gives it back. Beyond Netty,
/// a cache's repeated misses of a small class take batches of regions
/// ([`Builder::cache_fill_bytes`](crate::Builder::cache_fill_bytes)), each
/// region an allocation.
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
    chunk_lists: Vec<ChunkListMetric>,
    small_subpages: Vec<SubpageMetric>,
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
    pub(crate) fn new(
        counts: ArenaCounts,
        thread_caches: usize,
        chunk_size: usize,
        chunk_lists: Vec<ChunkListMetric>,
        small_subpages: Vec<SubpageMetric>,
    ) -> ArenaMetric {
        ArenaMetric { counts, thread_caches, chunk_size, chunk_lists, small_subpages }
    }

    /// The six chunk lists in the order qInit, q000, q025, q050, q075, q100.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let _buf = alloc.heap_buffer(100);
    /// let metric = alloc.metric();
    /// let lists = metric.heap_arenas()[0].chunk_lists();
    /// let names: Vec<&str> = lists.iter().map(|l| l.name()).collect();
    /// assert_eq!(names, ["qInit", "q000", "q025", "q050", "q075", "q100"]);
    /// assert_eq!(lists[0].chunks().len(), 1, "a new chunk starts in qInit");
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn chunk_lists(&self) -> &[ChunkListMetric] {
        &self.chunk_lists
    }

    /// The subpages that have free elements, per small class in class
    /// order (full subpages leave their class's list, as in Netty).
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let _buf = alloc.heap_buffer(500); // the 512-byte class: 47 per 3-page run
    /// let metric = alloc.metric();
    /// let subpage = &metric.heap_arenas()[0].small_subpages()[0];
    /// assert_eq!(subpage.element_size(), 512);
    /// assert_eq!((subpage.max_num_elements(), subpage.num_available()), (47, 46));
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn small_subpages(&self) -> &[SubpageMetric] {
        &self.small_subpages
    }

    arena_counter!(
        /// Chunks the arena has created.
        num_chunks_created => |c| c.pooled.chunks_created
    );
    arena_counter!(
        /// Chunks the arena has destroyed (given back to the system).
        num_chunks_destroyed => |c| c.pooled.chunks_destroyed
    );
    arena_counter!(
        /// Chunks the arena holds now.
        num_active_chunks => |c| c.chunks
    );

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

    /// Class bytes of the small and normal regions handed out and not given
    /// back (live buffers and regions held by thread caches).
    pub(crate) fn pooled_active_bytes(&self) -> u64 {
        self.counts.pooled.active_bytes
    }

    /// Bytes of live huge buffers.
    pub(crate) fn huge_active_bytes(&self) -> u64 {
        self.counts.huge_active_bytes
    }
}

/// A snapshot of one chunk list: its usage band and its chunks.
///
/// # Examples
///
/// ```
/// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
/// let metric = alloc.metric();
/// let q025 = &metric.heap_arenas()[0].chunk_lists()[2];
/// assert_eq!((q025.name(), q025.min_usage(), q025.max_usage()), ("q025", 25, 75));
/// assert!(q025.chunks().is_empty());
/// # Ok::<(), arenabuf::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkListMetric {
    pub(crate) name: &'static str,
    pub(crate) min_usage: u32,
    pub(crate) max_usage: u32,
    pub(crate) chunks: Vec<ChunkMetric>,
}

impl ChunkListMetric {
    /// The list's name: `qInit`, `q000`, `q025`, `q050`, `q075` or `q100`.
    ///
    /// # Examples
    ///
    /// ```
    /// let metric = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?.metric();
    /// assert_eq!(metric.heap_arenas()[0].chunk_lists()[5].name(), "q100");
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The lowest usage (percent) of the list's band, as Netty reports it.
    ///
    /// # Examples
    ///
    /// ```
    /// let metric = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?.metric();
    /// assert_eq!(metric.heap_arenas()[0].chunk_lists()[0].min_usage(), 1);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn min_usage(&self) -> u32 {
        self.min_usage
    }

    /// The highest usage (percent) of the list's band.
    ///
    /// # Examples
    ///
    /// ```
    /// let metric = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?.metric();
    /// assert_eq!(metric.heap_arenas()[0].chunk_lists()[1].max_usage(), 50);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn max_usage(&self) -> u32 {
        self.max_usage
    }

    /// The chunks in the list, front first.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let _buf = alloc.heap_buffer(3 << 20); // 75 %: q050
    /// let metric = alloc.metric();
    /// assert_eq!(metric.heap_arenas()[0].chunk_lists()[3].chunks()[0].usage(), 75);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn chunks(&self) -> &[ChunkMetric] {
        &self.chunks
    }
}

/// A snapshot of one chunk: usage, free bytes and its runs of pages.
///
/// # Examples
///
/// ```
/// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
/// let _buf = alloc.heap_buffer(1 << 20); // 25 %: above qInit's band, in q000
/// let metric = alloc.metric();
/// let chunk = &metric.heap_arenas()[0].chunk_lists()[1].chunks()[0];
/// assert_eq!((chunk.usage(), chunk.chunk_size(), chunk.free_bytes()), (25, 4 << 20, 3 << 20));
/// # Ok::<(), arenabuf::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkMetric {
    usage: u32,
    chunk_size: usize,
    free_bytes: usize,
    page_size: usize,
    dense: bool,
    huge_pages: bool,
    runs: Vec<RunMetric>,
}

impl ChunkMetric {
    pub(crate) fn of(chunk: &Chunk, classes: &SizeClasses) -> ChunkMetric {
        let subpages = chunk.subpages();
        let runs = chunk
            .runs()
            .map(|(first_page, pages, used)| {
                let sub = subpages.get(first_page);
                let state = match (used, sub.in_use()) {
                    (false, _) => RunState::Free,
                    (true, false) => RunState::Used,
                    (true, true) => RunState::Subpage {
                        element_size: classes.size_of(sub.size_idx()),
                        max_num_elements: sub.max_elems(),
                        num_available: sub.num_avail(),
                    },
                };
                RunMetric { first_page, pages, state }
            })
            .collect();
        ChunkMetric {
            usage: chunk.usage(),
            chunk_size: chunk.size(),
            free_bytes: chunk.free_bytes(),
            page_size: classes.page_size(),
            dense: chunk.is_dense(),
            huge_pages: chunk.backing() == Backing::HugePages,
            runs,
        }
    }

    /// Whether the chunk serves only runs of elements of 4 KiB and less
    /// (under [`HugePages::Dense`](crate::HugePages::Dense), the default).
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let _small = alloc.heap_buffer(256);
    /// let _large = alloc.heap_buffer(64 << 10);
    /// let metric = alloc.metric();
    /// let chunks = &metric.heap_arenas()[0].chunk_lists()[0].chunks();
    /// assert_eq!(chunks.iter().filter(|c| c.is_dense()).count(), 1);
    /// assert_eq!(chunks.len(), 2);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn is_dense(&self) -> bool {
        self.dense
    }

    /// Whether the chunk was mapped for transparent huge pages (whether
    /// the kernel gave them is its choice: see `AnonHugePages` in
    /// `/proc/self/smaps`). See [`HugePages`](crate::HugePages) for which
    /// chunks are.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let _buf = alloc.heap_buffer(256);
    /// let metric = alloc.metric();
    /// // An arena's first dense chunk takes base pages.
    /// assert!(!metric.heap_arenas()[0].chunk_lists()[0].chunks()[0].huge_pages());
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn huge_pages(&self) -> bool {
        self.huge_pages
    }

    /// Usage in percent: 100 only when full, else at most 99, 0 only when
    /// empty (Netty's rounding).
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let _buf = alloc.heap_buffer(16);
    /// let metric = alloc.metric();
    /// assert_eq!(metric.heap_arenas()[0].chunk_lists()[0].chunks()[0].usage(), 1);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn usage(&self) -> u32 {
        self.usage
    }

    /// Bytes in the chunk.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let _buf = alloc.heap_buffer(16);
    /// let metric = alloc.metric();
    /// assert_eq!(metric.heap_arenas()[0].chunk_lists()[0].chunks()[0].chunk_size(), 4 << 20);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Bytes not in any used run (free elements of subpages count as used:
    /// their run is taken).
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let _buf = alloc.heap_buffer(16); // a one-page subpage
    /// let metric = alloc.metric();
    /// assert_eq!(metric.heap_arenas()[0].chunk_lists()[0].chunks()[0].free_bytes(), (4 << 20) - 8192);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn free_bytes(&self) -> usize {
        self.free_bytes
    }

    /// Bytes in one page.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let _buf = alloc.heap_buffer(16);
    /// let metric = alloc.metric();
    /// assert_eq!(metric.heap_arenas()[0].chunk_lists()[0].chunks()[0].page_size(), 8192);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Pages in the chunk.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let _buf = alloc.heap_buffer(16);
    /// let metric = alloc.metric();
    /// assert_eq!(metric.heap_arenas()[0].chunk_lists()[0].chunks()[0].num_pages(), 512);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn num_pages(&self) -> usize {
        self.chunk_size / self.page_size
    }

    /// The runs of pages that tile the chunk, in page order. Free runs can
    /// lie next to each other: a freed run stays whole until a request
    /// that no free run fits needs it merged with its free neighbours.
    ///
    /// # Examples
    ///
    /// ```
    /// use arenabuf::RunState;
    ///
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let _buf = alloc.heap_buffer(64 << 10); // 8 pages
    /// let metric = alloc.metric();
    /// let runs = metric.heap_arenas()[0].chunk_lists()[0].chunks()[0].runs();
    /// assert_eq!((runs[0].first_page(), runs[0].pages(), runs[0].state()), (0, 8, RunState::Used));
    /// assert_eq!((runs[1].first_page(), runs[1].pages(), runs[1].state()), (8, 504, RunState::Free));
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn runs(&self) -> &[RunMetric] {
        &self.runs
    }
}

/// One run of pages of a chunk: where it is and what it holds.
///
/// # Examples
///
/// ```
/// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
/// let _buf = alloc.heap_buffer(8192);
/// let metric = alloc.metric();
/// let run = metric.heap_arenas()[0].chunk_lists()[0].chunks()[0].runs()[0];
/// assert_eq!((run.first_page(), run.pages()), (0, 1));
/// # Ok::<(), arenabuf::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunMetric {
    first_page: u32,
    pages: u32,
    state: RunState,
}

impl RunMetric {
    /// The run's first page.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let (_a, _b) = (alloc.heap_buffer(32 << 10), alloc.heap_buffer(32 << 10));
    /// let metric = alloc.metric();
    /// assert_eq!(metric.heap_arenas()[0].chunk_lists()[0].chunks()[0].runs()[1].first_page(), 4);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn first_page(&self) -> u32 {
        self.first_page
    }

    /// Pages in the run.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let _a = alloc.heap_buffer(32 << 10);
    /// let metric = alloc.metric();
    /// assert_eq!(metric.heap_arenas()[0].chunk_lists()[0].chunks()[0].runs()[0].pages(), 4);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// What the run holds.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let metric = alloc.metric();
    /// assert!(metric.heap_arenas()[0].chunk_lists().iter().all(|l| l.chunks().is_empty()));
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn state(&self) -> RunState {
        self.state
    }
}

/// What a run of pages holds.
///
/// # Examples
///
/// ```
/// use arenabuf::RunState;
///
/// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
/// let _buf = alloc.heap_buffer(100); // a 112-byte element of a subpage
/// let metric = alloc.metric();
/// let run = metric.heap_arenas()[0].chunk_lists()[0].chunks()[0].runs()[0];
/// assert!(matches!(run.state(), RunState::Subpage { element_size: 112, num_available, .. } if num_available > 0));
/// # Ok::<(), arenabuf::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Free pages.
    Free,
    /// A run handed out whole (a normal-class buffer).
    Used,
    /// A run cut into elements of one small class.
    Subpage {
        /// Bytes per element.
        element_size: usize,
        /// Elements the subpage holds.
        max_num_elements: usize,
        /// Elements free now.
        num_available: usize,
    },
}

/// A snapshot of one subpage: a run cut into equal elements of a small class.
///
/// # Examples
///
/// ```
/// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
/// let _buf = alloc.heap_buffer(16); // 16-byte elements, 512 to a page
/// let metric = alloc.metric();
/// let subpage = metric.heap_arenas()[0].small_subpages()[0];
/// assert_eq!((subpage.element_size(), subpage.max_num_elements(), subpage.num_available()), (16, 512, 511));
/// # Ok::<(), arenabuf::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubpageMetric {
    pub(crate) element_size: usize,
    pub(crate) max_num_elements: usize,
    pub(crate) num_available: usize,
}

impl SubpageMetric {
    /// Bytes per element.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let _buf = alloc.heap_buffer(1500);
    /// assert_eq!(alloc.metric().heap_arenas()[0].small_subpages()[0].element_size(), 1536);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn element_size(&self) -> usize {
        self.element_size
    }

    /// Elements the subpage holds.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let _buf = alloc.heap_buffer(1500); // 7 pages of 1536-byte elements
    /// assert_eq!(alloc.metric().heap_arenas()[0].small_subpages()[0].max_num_elements(), 37);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn max_num_elements(&self) -> usize {
        self.max_num_elements
    }

    /// Elements free now.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
    /// let (_a, _b) = (alloc.heap_buffer(500), alloc.heap_buffer(500));
    /// // The second miss took two regions: the buffer's and one for the thread cache.
    /// assert_eq!(alloc.metric().heap_arenas()[0].small_subpages()[0].num_available(), 44);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn num_available(&self) -> usize {
        self.num_available
    }
}

impl fmt::Display for SubpageMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} B x {}: {} used, {} free",
            self.element_size,
            self.max_num_elements,
            self.max_num_elements - self.num_available,
            self.num_available
        )
    }
}
