//! Settings of a [`PooledAllocator`](crate::PooledAllocator): defaults,
//! `ARENABUF_*` environment variables, the builder, and validation.
//!
//! Precedence: a builder setter beats an environment variable, which beats
//! the default. Every setting is checked in [`Builder::build`], which names
//! the setting, the value and the allowed range when one is out of range.

use std::fmt;

use crate::error::ConfigError;
use crate::leak::LeakLevel;
use crate::size_class::SizeClasses;

/// Netty's default page size.
pub(crate) const DEFAULT_PAGE_SIZE: usize = 8192;
/// Netty's default max order: 4 MiB chunks with 8 KiB pages.
pub(crate) const DEFAULT_MAX_ORDER: u32 = 9;
const DEFAULT_SMALL_CACHE_SIZE: usize = 256;
const DEFAULT_NORMAL_CACHE_SIZE: usize = 64;
const DEFAULT_MAX_CACHED_BUFFER_CAPACITY: usize = 32 * 1024;
/// Bytes a thread may keep cached per class above the max cached buffer
/// capacity: 16 regions of 64 KiB, one of 1 MiB, none of 2 MiB and up.
const DEFAULT_LARGE_CACHE_BYTES: usize = 1 << 20;
/// The most bytes of a small class a thread cache takes from its arena at
/// a miss: 16 regions of 4 KiB, 64 of 1 KiB, up to half the class's stack.
const DEFAULT_CACHE_FILL_BYTES: usize = 64 << 10;
const DEFAULT_CACHE_TRIM_INTERVAL: u32 = 8192;
/// The largest per-class cache: enough for any realistic burst, small enough
/// that a cache can never hold more than a few chunks' worth of one class.
const MAX_CACHE_SIZE: usize = 1 << 15;
/// More arenas than this would only add lock-free contention-free memory.
const MAX_ARENAS: usize = 4096;

/// The settings of an allocator; see [`Builder`] for what each one means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    pub(crate) heap_arenas: usize,
    pub(crate) direct_arenas: usize,
    pub(crate) page_size: usize,
    pub(crate) max_order: u32,
    pub(crate) small_cache_size: usize,
    pub(crate) normal_cache_size: usize,
    pub(crate) max_cached_buffer_capacity: usize,
    pub(crate) large_cache_bytes: usize,
    pub(crate) cache_fill_bytes: usize,
    pub(crate) cache_trim_interval: u32,
    pub(crate) cache_trim_interval_millis: u64,
    pub(crate) use_cache_for_all_threads: bool,
    pub(crate) huge_pages: HugePages,
    pub(crate) max_direct_memory: usize,
    pub(crate) leak_detection: LeakLevel,
    pub(crate) idle_trim_millis: u64,
}

/// Which chunks ask the OS for transparent huge pages
/// ([`Builder::huge_pages`]).
///
/// With 4 KiB pages a buffer touched at random in a working set of tens of
/// MiB misses the TLB (the 2,048 entries of a recent x86 core's second
/// level reach 8 MiB); a 2 MiB page covers 512 of them at once, and one
/// fault maps all of them. But a huge page is resident as soon as any byte
/// of it is touched, so it suits only memory used densely. And with the
/// kernel's THP `defrag` setting at `madvise` (a common default) its first
/// fault may compact memory first: on this project's machine, filling 21
/// new chunks with every chunk on huge pages took 57 ms against 7 ms on
/// base pages, about 1.2 ms per huge page.
///
/// # Examples
///
/// ```
/// use arenabuf::HugePages;
///
/// assert_eq!(HugePages::default(), HugePages::Dense);
/// let alloc = arenabuf::PooledAllocator::builder().huge_pages(HugePages::All).build()?;
/// # Ok::<(), arenabuf::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HugePages {
    /// Every chunk takes base pages.
    Off,
    /// Chunks of small elements take huge pages, from an arena's second such
    /// chunk on, and nothing else does.
    ///
    /// Elements of 4 KiB and less are then cut from chunks of their own.
    /// A run of them is nearly all resident once its elements are in use
    /// (each element touches at most two pages), so a huge page under it
    /// keeps little more resident than base pages would; larger buffers
    /// keep base pages, since one of them may hold a short message. An
    /// arena's first such chunk takes base pages, so that a thread with a
    /// few small buffers does not make 2 MiB resident per arena.
    ///
    /// Measured (BENCHMARKS.md, session 13; seven interleaved rounds):
    /// `window` at 4 KiB (32 MiB live, touched at both ends) 33.9 -> 25.3
    /// ns per buffer against [`Off`](Self::Off), as with
    /// [`All`](Self::All) (25.0); `rss` peak / live 1.084 -> 1.088.
    #[default]
    Dense,
    /// Every chunk takes huge pages.
    ///
    /// Worth it only when buffers of every size are used densely: a buffer
    /// holding a short message makes whole 2 MiB pages resident. In
    /// `window`, which writes 8 bytes at each end of every buffer, a
    /// process's peak RSS at 1 MiB was 8.5 GB instead of 184 MB, and at
    /// 64 KiB 535 MB instead of 77 MB (BENCHMARKS.md, session 16).
    /// Where they are, it pays: `window` with mixed sizes up to 128 KiB
    /// (about 120 MiB asked) took 36 ns per buffer against 53 with
    /// [`Dense`](Self::Dense), at 166 MB against 64 MB, mostly from TLB
    /// misses. mimalloc runs this way by default when the kernel's THP
    /// setting is `madvise`.
    All,
}

/// Builds a [`PooledAllocator`](crate::PooledAllocator) with chosen settings.
///
/// Each setter is named after Netty's setting; each setting can also come
/// from an environment variable (named in the setter's docs), and a setter
/// beats the variable.
///
/// # Examples
///
/// ```
/// use arenabuf::PooledAllocator;
///
/// let alloc = PooledAllocator::builder()
///     .heap_arenas(2)
///     .direct_arenas(2)
///     .max_order(8) // 2 MiB chunks
///     .build()?;
/// assert_eq!(alloc.metric().chunk_size(), 2 << 20);
/// # Ok::<(), arenabuf::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct Builder {
    heap_arenas: Option<usize>,
    direct_arenas: Option<usize>,
    page_size: Option<usize>,
    max_order: Option<u32>,
    small_cache_size: Option<usize>,
    normal_cache_size: Option<usize>,
    max_cached_buffer_capacity: Option<usize>,
    large_cache_bytes: Option<usize>,
    cache_fill_bytes: Option<usize>,
    cache_trim_interval: Option<u32>,
    cache_trim_interval_millis: Option<u64>,
    use_cache_for_all_threads: Option<bool>,
    huge_pages: Option<HugePages>,
    max_direct_memory: Option<usize>,
    leak_detection: Option<LeakLevel>,
    idle_trim_millis: Option<u64>,
    /// Reads environment variables; replaced in tests.
    env: fn(&str) -> Option<String>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("heap_arenas", &self.heap_arenas)
            .field("direct_arenas", &self.direct_arenas)
            .field("page_size", &self.page_size)
            .field("max_order", &self.max_order)
            .field("small_cache_size", &self.small_cache_size)
            .field("normal_cache_size", &self.normal_cache_size)
            .field("max_cached_buffer_capacity", &self.max_cached_buffer_capacity)
            .field("large_cache_bytes", &self.large_cache_bytes)
            .field("cache_fill_bytes", &self.cache_fill_bytes)
            .field("cache_trim_interval", &self.cache_trim_interval)
            .field("cache_trim_interval_millis", &self.cache_trim_interval_millis)
            .field("use_cache_for_all_threads", &self.use_cache_for_all_threads)
            .field("huge_pages", &self.huge_pages)
            .field("max_direct_memory", &self.max_direct_memory)
            .field("leak_detection", &self.leak_detection)
            .field("idle_trim_millis", &self.idle_trim_millis)
            .finish()
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Builder {
            self.$name = Some(value);
            self
        }
    };
}

impl Builder {
    pub(crate) fn new() -> Builder {
        Builder {
            heap_arenas: None,
            direct_arenas: None,
            page_size: None,
            max_order: None,
            small_cache_size: None,
            normal_cache_size: None,
            max_cached_buffer_capacity: None,
            large_cache_bytes: None,
            cache_fill_bytes: None,
            cache_trim_interval: None,
            cache_trim_interval_millis: None,
            use_cache_for_all_threads: None,
            huge_pages: None,
            max_direct_memory: None,
            leak_detection: None,
            idle_trim_millis: None,
            env: process_env,
        }
    }

    /// A builder that ignores the environment: the plain defaults.
    pub(crate) fn new_without_env() -> Builder {
        Builder { env: |_| None, ..Builder::new() }
    }

    #[cfg(test)]
    pub(crate) fn with_env(mut self, env: fn(&str) -> Option<String>) -> Builder {
        self.env = env;
        self
    }

    setter!(
        /// Heap arenas (`ARENABUF_NUM_HEAP_ARENAS`); 0 makes every heap
        /// buffer unpooled. Default: min(2 x cores, memory / chunk / 6).
        /// Allowed: 0..=4096.
        ///
        /// # Examples
        ///
        /// ```
        /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(3).build()?;
        /// assert_eq!(alloc.metric().num_heap_arenas(), 3);
        /// # Ok::<(), arenabuf::ConfigError>(())
        /// ```
        heap_arenas: usize
    );
    setter!(
        /// Direct arenas (`ARENABUF_NUM_DIRECT_ARENAS`); 0 makes every direct
        /// buffer unpooled. Default: min(2 x cores, max direct memory / chunk
        /// / 6). Allowed: 0..=4096.
        ///
        /// # Examples
        ///
        /// ```
        /// let alloc = arenabuf::PooledAllocator::builder().direct_arenas(0).build()?;
        /// assert_eq!(alloc.metric().num_direct_arenas(), 0);
        /// # Ok::<(), arenabuf::ConfigError>(())
        /// ```
        direct_arenas: usize
    );
    setter!(
        /// Page size in bytes (`ARENABUF_PAGE_SIZE`), default 8192. Allowed:
        /// a power of two of at least 4096.
        ///
        /// # Examples
        ///
        /// ```
        /// let alloc = arenabuf::PooledAllocator::builder().page_size(4096).build()?;
        /// assert_eq!(alloc.metric().chunk_size(), 2 << 20);
        /// # Ok::<(), arenabuf::ConfigError>(())
        /// ```
        page_size: usize
    );
    setter!(
        /// Chunk size as `page_size << max_order` (`ARENABUF_MAX_ORDER`),
        /// default 9 (4 MiB chunks). Allowed: 0..=14, chunk at most 1 GiB.
        ///
        /// # Examples
        ///
        /// ```
        /// let err = arenabuf::PooledAllocator::builder().max_order(15).build().unwrap_err();
        /// assert_eq!(err.setting(), "max_order");
        /// ```
        max_order: u32
    );
    setter!(
        /// Cached regions per small class per thread
        /// (`ARENABUF_SMALL_CACHE_SIZE`), default 256, rounded up to a power
        /// of two. Allowed: 0..=32768.
        ///
        /// # Examples
        ///
        /// ```
        /// let alloc = arenabuf::PooledAllocator::builder().small_cache_size(0).build()?;
        /// # Ok::<(), arenabuf::ConfigError>(())
        /// ```
        small_cache_size: usize
    );
    setter!(
        /// Cached regions per normal class per thread
        /// (`ARENABUF_NORMAL_CACHE_SIZE`), default 64, rounded up to a power
        /// of two. Allowed: 0..=32768.
        ///
        /// # Examples
        ///
        /// ```
        /// let alloc = arenabuf::PooledAllocator::builder().normal_cache_size(16).build()?;
        /// # Ok::<(), arenabuf::ConfigError>(())
        /// ```
        normal_cache_size: usize
    );
    setter!(
        /// Largest normal class that thread caches keep
        /// (`ARENABUF_MAX_CACHED_BUFFER_CAPACITY`), default 32 KiB. Allowed:
        /// any; values above the chunk size act as the chunk size.
        ///
        /// # Examples
        ///
        /// ```
        /// let alloc = arenabuf::PooledAllocator::builder()
        ///     .max_cached_buffer_capacity(64 * 1024)
        ///     .build()?;
        /// # Ok::<(), arenabuf::ConfigError>(())
        /// ```
        max_cached_buffer_capacity: usize
    );
    setter!(
        /// Bytes a thread may keep cached in each normal class above
        /// [`max_cached_buffer_capacity`](Self::max_cached_buffer_capacity)
        /// (`ARENABUF_LARGE_CACHE_BYTES`), default 1 MiB: a class of size
        /// `s` keeps up to `large_cache_bytes / s` regions (at most
        /// `normal_cache_size`), so 64 KiB buffers keep 16 and 1 MiB buffers
        /// one, and classes larger than this are not cached. 0 caches nothing
        /// above `max_cached_buffer_capacity`, as Netty does. Allowed: any.
        ///
        /// # Examples
        ///
        /// ```
        /// let alloc = arenabuf::PooledAllocator::builder().large_cache_bytes(0).build()?;
        /// # Ok::<(), arenabuf::ConfigError>(())
        /// ```
        large_cache_bytes: usize
    );
    setter!(
        /// The most bytes of a small class that a thread cache takes from
        /// its arena at one miss of the class (`ARENABUF_CACHE_FILL_BYTES`),
        /// default 64 KiB, and at most half the class's
        /// [`small_cache_size`](Self::small_cache_size), under the arena's
        /// lock once. A class's first miss takes one region, the one asked
        /// for; each further miss twice as many as the last, up to this
        /// (4 KiB buffers: 16, 1 KiB: 64, 256 B: 128); each trim of the
        /// cache halves it. So a thread whose buffers of a class keep
        /// growing in number (a window filling, a burst of connections)
        /// pays the arena's way once per batch, and a thread with a few
        /// buffers of a class takes a few. Regions a thread leaves unused
        /// go back at its cache's next trim. A normal class's misses take
        /// growing batches of its runs too, bounded by half its stack alone
        /// (64 KiB holds at most two runs, and a run left unused in a stack
        /// keeps no page resident that it did not already). 0 takes one
        /// region per miss for every class, as Netty does, and any value up
        /// to a small class's size one region of that class. Allowed: any.
        ///
        /// # Examples
        ///
        /// ```
        /// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).build()?;
        /// let allocations = || alloc.metric().heap_arenas()[0].num_allocations();
        /// let bufs: Vec<_> = (0..7).map(|_| alloc.heap_buffer(4096)).collect();
        /// assert_eq!(allocations(), 7); // three misses took 1, 2 and 4 regions
        /// let next = alloc.heap_buffer(4096); // and the next one 8
        /// assert_eq!(allocations(), 15);
        ///
        /// let runs: Vec<_> = (0..3).map(|_| alloc.heap_buffer(64 << 10)).collect();
        /// assert_eq!(allocations(), 15 + 3); // two misses took 1 and 2 runs
        ///
        /// let one = arenabuf::PooledAllocator::builder().heap_arenas(1).cache_fill_bytes(0).build()?;
        /// let bufs: Vec<_> = (0..8).map(|_| one.heap_buffer(4096)).collect();
        /// assert_eq!(one.metric().heap_arenas()[0].num_allocations(), 8); // one per miss
        /// # Ok::<(), arenabuf::ConfigError>(())
        /// ```
        cache_fill_bytes: usize
    );
    setter!(
        /// Cache lookups between two trims of a thread's cache
        /// (`ARENABUF_CACHE_TRIM_INTERVAL`), default 8192. Allowed:
        /// 1..=4294967295. Hits are counted 128 at a time per class (fewer
        /// when the interval is not a multiple of 128), so a trim may come
        /// up to 127 lookups per class in use after the interval.
        ///
        /// # Examples
        ///
        /// ```
        /// let err = arenabuf::PooledAllocator::builder().cache_trim_interval(0).build().unwrap_err();
        /// assert_eq!(err.setting(), "cache_trim_interval");
        /// ```
        cache_trim_interval: u32
    );
    setter!(
        /// Milliseconds between time-based trims of a thread's cache, checked
        /// when the thread uses the cache (`ARENABUF_CACHE_TRIM_INTERVAL_MILLIS`);
        /// default 0, off.
        ///
        /// # Examples
        ///
        /// ```
        /// let alloc = arenabuf::PooledAllocator::builder()
        ///     .cache_trim_interval_millis(1000)
        ///     .build()?;
        /// # Ok::<(), arenabuf::ConfigError>(())
        /// ```
        cache_trim_interval_millis: u64
    );
    setter!(
        /// Whether every thread gets a cache (`ARENABUF_USE_CACHE_FOR_ALL_THREADS`),
        /// default true. When false, only threads started with
        /// [`spawn`](crate::spawn) or marked with
        /// [`cache_current_thread`](crate::cache_current_thread) cache
        /// regions; the others are still bound to arenas.
        ///
        /// # Examples
        ///
        /// ```
        /// let alloc = arenabuf::PooledAllocator::builder()
        ///     .use_cache_for_all_threads(false)
        ///     .build()?;
        /// # Ok::<(), arenabuf::ConfigError>(())
        /// ```
        use_cache_for_all_threads: bool
    );
    setter!(
        /// Which chunks ask the OS for transparent huge pages
        /// (`ARENABUF_HUGE_PAGES`: `off`, `dense` or `all`), default
        /// [`HugePages::Dense`]. Such a chunk is mapped on a 2 MiB boundary
        /// and advised with `MADV_HUGEPAGE`, and the kernel backs each 2 MiB
        /// of it that is touched with one page, where transparent huge pages
        /// are `always` or `madvise` (Linux; elsewhere, or with `never`,
        /// nothing changes). Huge buffers (above the chunk size) always take
        /// base pages. Allowed: the three [`HugePages`] values.
        ///
        /// # Examples
        ///
        /// ```
        /// use arenabuf::HugePages;
        ///
        /// let alloc = arenabuf::PooledAllocator::builder().huge_pages(HugePages::Off).build()?;
        /// # Ok::<(), arenabuf::ConfigError>(())
        /// ```
        huge_pages: HugePages
    );
    setter!(
        /// The cap on direct memory, chunks and huge buffers together
        /// (`ARENABUF_MAX_DIRECT_MEMORY`), default the machine's (or the
        /// cgroup's) memory. A request past it fails with
        /// [`AllocError::DirectMemoryExhausted`](crate::AllocError).
        ///
        /// # Examples
        ///
        /// ```
        /// let alloc = arenabuf::PooledAllocator::builder()
        ///     .max_direct_memory(64 << 20)
        ///     .build()?;
        /// # Ok::<(), arenabuf::ConfigError>(())
        /// ```
        max_direct_memory: usize
    );
    setter!(
        /// The leak detector's level (`ARENABUF_LEAK_DETECTION_LEVEL`:
        /// `disabled`, `simple`, `advanced` or `paranoid`, any case); default
        /// [`LeakLevel::Simple`], one buffer in 128 tracked.
        ///
        /// # Examples
        ///
        /// ```
        /// use arenabuf::LeakLevel;
        ///
        /// let alloc = arenabuf::PooledAllocator::builder()
        ///     .leak_detection(LeakLevel::Disabled)
        ///     .build()?;
        /// std::mem::forget(alloc.heap_buffer(10));
        /// assert!(alloc.leak_report().is_empty());
        /// # Ok::<(), arenabuf::ConfigError>(())
        /// ```
        leak_detection: LeakLevel
    );
    setter!(
        /// Milliseconds between checks of a background thread that trims the
        /// pool ([`PooledAllocator::trim`](crate::PooledAllocator::trim))
        /// when no arena saw an allocation or release since its last check
        /// (`ARENABUF_IDLE_TRIM_MILLIS`); default 0, off. The thread ends
        /// when the allocator's last handle drops.
        ///
        /// # Examples
        ///
        /// ```
        /// let alloc = arenabuf::PooledAllocator::builder().idle_trim_millis(1000).build()?;
        /// # Ok::<(), arenabuf::ConfigError>(())
        /// ```
        idle_trim_millis: u64
    );

    /// Checks every setting and builds the allocator.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting out of its range, or the
    /// environment variable that does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = arenabuf::PooledAllocator::builder().page_size(1000).build().unwrap_err();
    /// assert_eq!(err.setting(), "page_size");
    /// assert!(err.to_string().contains("1000"));
    /// ```
    pub fn build(self) -> Result<crate::PooledAllocator, ConfigError> {
        let config = self.resolve()?;
        Ok(crate::PooledAllocator::from_config(config))
    }

    pub(crate) fn resolve(&self) -> Result<Config, ConfigError> {
        let env = self.env;
        let page_size = pick(self.page_size, env, "ARENABUF_PAGE_SIZE", DEFAULT_PAGE_SIZE)?;
        let max_order = pick(self.max_order, env, "ARENABUF_MAX_ORDER", DEFAULT_MAX_ORDER)?;
        let classes = SizeClasses::new(page_size, max_order)?;
        let chunk = classes.chunk_size();
        let memory = crate::memory::system_memory();
        let max_direct_memory = pick(self.max_direct_memory, env, "ARENABUF_MAX_DIRECT_MEMORY", memory)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let arenas_for = |memory: usize| (2 * cores).min(memory / chunk / 6);
        let config = Config {
            heap_arenas: pick(self.heap_arenas, env, "ARENABUF_NUM_HEAP_ARENAS", arenas_for(memory))?,
            direct_arenas: pick(self.direct_arenas, env, "ARENABUF_NUM_DIRECT_ARENAS", arenas_for(max_direct_memory))?,
            page_size,
            max_order,
            small_cache_size: pick(self.small_cache_size, env, "ARENABUF_SMALL_CACHE_SIZE", DEFAULT_SMALL_CACHE_SIZE)?,
            normal_cache_size: pick(
                self.normal_cache_size,
                env,
                "ARENABUF_NORMAL_CACHE_SIZE",
                DEFAULT_NORMAL_CACHE_SIZE,
            )?,
            max_cached_buffer_capacity: pick(
                self.max_cached_buffer_capacity,
                env,
                "ARENABUF_MAX_CACHED_BUFFER_CAPACITY",
                DEFAULT_MAX_CACHED_BUFFER_CAPACITY,
            )?,
            large_cache_bytes: pick(
                self.large_cache_bytes,
                env,
                "ARENABUF_LARGE_CACHE_BYTES",
                DEFAULT_LARGE_CACHE_BYTES,
            )?,
            cache_fill_bytes: pick(self.cache_fill_bytes, env, "ARENABUF_CACHE_FILL_BYTES", DEFAULT_CACHE_FILL_BYTES)?,
            cache_trim_interval: pick(
                self.cache_trim_interval,
                env,
                "ARENABUF_CACHE_TRIM_INTERVAL",
                DEFAULT_CACHE_TRIM_INTERVAL,
            )?,
            cache_trim_interval_millis: pick(
                self.cache_trim_interval_millis,
                env,
                "ARENABUF_CACHE_TRIM_INTERVAL_MILLIS",
                0,
            )?,
            use_cache_for_all_threads: pick(
                self.use_cache_for_all_threads,
                env,
                "ARENABUF_USE_CACHE_FOR_ALL_THREADS",
                true,
            )?,
            huge_pages: pick(self.huge_pages, env, "ARENABUF_HUGE_PAGES", HugePages::Dense)?,
            max_direct_memory,
            leak_detection: pick(
                self.leak_detection,
                env,
                "ARENABUF_LEAK_DETECTION_LEVEL",
                // Loom models explore the cache protocol, not the detector.
                if cfg!(loom) { LeakLevel::Disabled } else { LeakLevel::default() },
            )?,
            idle_trim_millis: pick(self.idle_trim_millis, env, "ARENABUF_IDLE_TRIM_MILLIS", 0)?,
        };
        config.validate()?;
        Ok(config)
    }
}

impl Config {
    fn validate(&self) -> Result<(), ConfigError> {
        let arenas = |name, value: usize| {
            if value > MAX_ARENAS {
                Err(ConfigError::new(name, value, format!("0..={MAX_ARENAS}")))
            } else {
                Ok(())
            }
        };
        arenas("heap_arenas", self.heap_arenas)?;
        arenas("direct_arenas", self.direct_arenas)?;
        for (name, value) in
            [("small_cache_size", self.small_cache_size), ("normal_cache_size", self.normal_cache_size)]
        {
            if value > MAX_CACHE_SIZE {
                return Err(ConfigError::new(name, value, format!("0..={MAX_CACHE_SIZE}")));
            }
        }
        if self.cache_trim_interval == 0 {
            return Err(ConfigError::new("cache_trim_interval", 0, "1..=4294967295"));
        }
        Ok(())
    }
}

/// Parses a setting's environment variable.
trait FromEnv: Sized {
    fn parse_env(text: &str) -> Option<Self>;
    const ALLOWED: &'static str;
}

macro_rules! from_env_int {
    ($($t:ty),*) => {$(
        impl FromEnv for $t {
            fn parse_env(text: &str) -> Option<Self> {
                text.trim().replace('_', "").parse().ok()
            }
            const ALLOWED: &'static str = concat!("a whole number that fits ", stringify!($t));
        }
    )*};
}
from_env_int!(usize, u32, u64);

impl FromEnv for bool {
    fn parse_env(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" => Some(false),
            _ => None,
        }
    }
    const ALLOWED: &'static str = "true or false";
}

impl FromEnv for HugePages {
    fn parse_env(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" | "never" | "false" | "0" | "no" => Some(HugePages::Off),
            "dense" => Some(HugePages::Dense),
            "all" | "always" | "true" | "1" | "yes" | "on" => Some(HugePages::All),
            _ => None,
        }
    }
    const ALLOWED: &'static str = "off, dense or all (false and true: off and all)";
}

impl FromEnv for LeakLevel {
    fn parse_env(text: &str) -> Option<Self> {
        LeakLevel::from_name(text)
    }
    const ALLOWED: &'static str = "disabled, simple, advanced or paranoid";
}

fn pick<T: FromEnv>(
    set: Option<T>,
    env: fn(&str) -> Option<String>,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    if let Some(value) = set {
        return Ok(value);
    }
    match env(var) {
        None => Ok(default),
        Some(text) => T::parse_env(&text).ok_or_else(|| ConfigError::new(var, format!("{text:?}"), T::ALLOWED)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn builder() -> Builder {
        Builder::new().with_env(no_env)
    }

    #[test]
    fn defaults_follow_netty() {
        let c = builder().resolve().unwrap();
        assert_eq!((c.page_size, c.max_order), (8192, 9));
        assert_eq!((c.small_cache_size, c.normal_cache_size), (256, 64));
        assert_eq!(c.max_cached_buffer_capacity, 32 * 1024);
        assert_eq!(c.large_cache_bytes, 1 << 20);
        assert_eq!(c.cache_fill_bytes, 64 << 10);
        assert_eq!((c.cache_trim_interval, c.cache_trim_interval_millis), (8192, 0));
        assert_eq!(c.idle_trim_millis, 0, "idle trim is off by default");
        assert!(c.use_cache_for_all_threads);
        assert_eq!(c.huge_pages, HugePages::Dense, "dense chunks take huge pages by default");
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(c.heap_arenas, (2 * cores).min(crate::memory::system_memory() / (4 << 20) / 6));
        assert_eq!(c.direct_arenas, (2 * cores).min(c.max_direct_memory / (4 << 20) / 6));
    }

    #[test]
    fn direct_arenas_follow_the_direct_memory_cap() {
        // 48 MiB / 4 MiB / 6 = 2 arenas at most.
        let c = builder().max_direct_memory(48 << 20).resolve().unwrap();
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(c.direct_arenas, (2 * cores).min(2));
        let c = builder().max_direct_memory(1 << 20).resolve().unwrap();
        assert_eq!(c.direct_arenas, 0);
    }

    #[test]
    fn environment_variables_override_defaults_and_setters_override_both() {
        fn env(name: &str) -> Option<String> {
            match name {
                "ARENABUF_NUM_DIRECT_ARENAS" => Some("3".into()),
                "ARENABUF_SMALL_CACHE_SIZE" => Some("128".into()),
                "ARENABUF_USE_CACHE_FOR_ALL_THREADS" => Some("false".into()),
                "ARENABUF_HUGE_PAGES" => Some("true".into()),
                _ => None,
            }
        }
        let c = Builder::new().with_env(env).resolve().unwrap();
        assert_eq!((c.direct_arenas, c.small_cache_size, c.use_cache_for_all_threads), (3, 128, false));
        assert_eq!(c.huge_pages, HugePages::All);
        let c = Builder::new().with_env(env).direct_arenas(1).huge_pages(HugePages::Off).resolve().unwrap();
        assert_eq!(c.direct_arenas, 1);
        assert_eq!(c.huge_pages, HugePages::Off);
    }

    #[test]
    fn huge_pages_take_their_three_names_and_the_old_booleans() {
        for (text, want) in [
            ("off", HugePages::Off),
            ("false", HugePages::Off),
            (" Dense ", HugePages::Dense),
            ("all", HugePages::All),
            ("TRUE", HugePages::All),
        ] {
            assert_eq!(HugePages::parse_env(text), Some(want), "{text:?}");
        }
        assert_eq!(HugePages::parse_env("dens"), None);
    }

    #[test]
    fn the_leak_detection_level_comes_from_its_variable_in_any_case() {
        fn env(name: &str) -> Option<String> {
            (name == "ARENABUF_LEAK_DETECTION_LEVEL").then(|| "Paranoid".into())
        }
        fn bad(name: &str) -> Option<String> {
            (name == "ARENABUF_LEAK_DETECTION_LEVEL").then(|| "loud".into())
        }
        assert_eq!(builder().resolve().unwrap().leak_detection, LeakLevel::Simple);
        assert_eq!(Builder::new().with_env(env).resolve().unwrap().leak_detection, LeakLevel::Paranoid);
        let c = Builder::new().with_env(env).leak_detection(LeakLevel::Disabled).resolve().unwrap();
        assert_eq!(c.leak_detection, LeakLevel::Disabled);
        let err = Builder::new().with_env(bad).resolve().unwrap_err();
        assert_eq!(err.setting(), "ARENABUF_LEAK_DETECTION_LEVEL");
        assert!(err.to_string().contains("loud") && err.allowed().contains("paranoid"));
    }

    #[test]
    fn a_bad_environment_variable_is_named() {
        fn env(name: &str) -> Option<String> {
            (name == "ARENABUF_MAX_ORDER").then(|| "nine".into())
        }
        let err = Builder::new().with_env(env).resolve().unwrap_err();
        assert_eq!(err.setting(), "ARENABUF_MAX_ORDER");
        assert!(err.to_string().contains("nine"));
    }

    #[test]
    fn every_invalid_setting_is_rejected_with_its_name_value_and_range() {
        let cases: Vec<(Builder, &str, &str)> = vec![
            (builder().page_size(4095), "page_size", "4095"),
            (builder().page_size(12288), "page_size", "12288"),
            (builder().max_order(15), "max_order", "15"),
            (builder().page_size(1 << 20).max_order(11), "max_order", "11"),
            (builder().heap_arenas(5000), "heap_arenas", "5000"),
            (
                builder().direct_arenas(usize::MAX),
                "direct_arenas",
                &*Box::leak(usize::MAX.to_string().into_boxed_str()),
            ),
            (builder().small_cache_size(1 << 16), "small_cache_size", "65536"),
            (builder().normal_cache_size(1 << 20), "normal_cache_size", "1048576"),
            (builder().cache_trim_interval(0), "cache_trim_interval", "0"),
        ];
        for (b, setting, value) in cases {
            let err = b.resolve().unwrap_err();
            assert_eq!(err.setting(), setting);
            assert_eq!(err.value(), value);
            assert!(!err.allowed().is_empty());
            assert!(err.to_string().contains(setting) && err.to_string().contains(value));
        }
    }
}
