//! The leak detector: which buffers were never released, and where they
//! were allocated.
//!
//! A buffer that is tracked registers a record (allocation backtrace, size,
//! creation time, access hints) in its pool's registry; dropping the buffer
//! removes the record. Whatever is still registered is a buffer that lives
//! on: forgotten with `mem::forget`, caught in a reference cycle, or simply
//! still held at a checkpoint. [`PooledAllocator::leak_report`](crate::PooledAllocator::leak_report)
//! lists them, grouped by allocation site, and when the allocator's last
//! handle drops the report goes to stderr.
//!
//! Which buffers are tracked depends on the [`LeakLevel`]. Only tracked
//! buffers pay for a backtrace and the registry's lock; with
//! [`LeakLevel::Disabled`] the allocation path pays one predictable branch
//! and the release path an empty-`Option` check.

use std::backtrace::Backtrace;
use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::panic::Location;
use std::thread::Thread;
use std::time::Duration;

use crate::sync::{lock, Arc, CachePadded, Mutex};
use crate::thread_cache::Allocation;
use crate::thread_local;

/// Leak records' clock: the kernel's coarse monotonic clock (ticks of a
/// few milliseconds, plenty for a buffer's age), read in 4.6 ns on this
/// project's machine against 23.4 ns for `std::time::Instant` (sampled
/// allocations pay it). `now_without_cache_update`: the crate's `now`
/// also stores to a process-wide word, which every thread's tracked
/// allocations would then contend for.
type CoarseInstant = coarsetime::Instant;

fn now() -> CoarseInstant {
    coarsetime::Instant::now_without_cache_update()
}

/// How long ago `then` was, as of `now`.
fn age(now: CoarseInstant, then: CoarseInstant) -> Duration {
    now.duration_since(then).into()
}

/// Registries per detector (the top 4 bits of a hash pick one): threads
/// register in different ones, so that tracking on one thread does not
/// contend with another's.
const SHARDS: usize = 16;

/// One buffer in this many is tracked at [`LeakLevel::Simple`] (Netty's 128).
pub(crate) const SAMPLING_INTERVAL: u32 = 128;
/// Access records kept per tracked buffer at [`LeakLevel::Advanced`] and
/// above (Netty's target records).
pub(crate) const MAX_ACCESS_RECORDS: usize = 4;

/// How many buffers the leak detector tracks, and what it records.
///
/// Set with [`Builder::leak_detection`](crate::Builder::leak_detection) or
/// the environment variable `ARENABUF_LEAK_DETECTION_LEVEL` (the names
/// below, any case).
///
/// # Examples
///
/// ```
/// use arenabuf::{LeakLevel, PooledAllocator};
///
/// let alloc = PooledAllocator::builder().leak_detection(LeakLevel::Paranoid).build()?;
/// let buf = alloc.heap_buffer(100);
/// assert_eq!(alloc.leak_report().len(), 1, "a live buffer is in the report");
/// drop(buf);
/// assert!(alloc.leak_report().is_empty());
/// # Ok::<(), arenabuf::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum LeakLevel {
    /// No tracking at all.
    Disabled,
    /// One buffer in 128, chosen at random, is tracked with its allocation
    /// site (the default).
    #[default]
    Simple,
    /// As `Simple`, and tracked buffers also keep their last 4 access
    /// records from [`ByteBuf::touch`](crate::ByteBuf::touch).
    Advanced,
    /// Every buffer is tracked, with access records.
    Paranoid,
}

impl LeakLevel {
    /// The level named `text` (`disabled`, `simple`, `advanced` or
    /// `paranoid`, any case, surrounding spaces ignored).
    ///
    /// # Examples
    ///
    /// ```
    /// use arenabuf::LeakLevel;
    ///
    /// assert_eq!(LeakLevel::from_name(" PARANOID "), Some(LeakLevel::Paranoid));
    /// assert_eq!(LeakLevel::from_name("loud"), None);
    /// ```
    #[must_use]
    pub fn from_name(text: &str) -> Option<LeakLevel> {
        match text.trim().to_ascii_lowercase().as_str() {
            "disabled" => Some(LeakLevel::Disabled),
            "simple" => Some(LeakLevel::Simple),
            "advanced" => Some(LeakLevel::Advanced),
            "paranoid" => Some(LeakLevel::Paranoid),
            _ => None,
        }
    }

    /// Whether buffers at this level keep access records.
    fn records_access(self) -> bool {
        self >= LeakLevel::Advanced
    }
}

impl fmt::Display for LeakLevel {
    /// The level's name, as the environment variable spells it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeakLevel::Disabled => "DISABLED",
            LeakLevel::Simple => "SIMPLE",
            LeakLevel::Advanced => "ADVANCED",
            LeakLevel::Paranoid => "PARANOID",
        })
    }
}

/// One [`ByteBuf::touch`](crate::ByteBuf::touch) of a tracked buffer.
#[derive(Debug)]
struct AccessRecord {
    hint: String,
    thread: Option<String>,
    at: CoarseInstant,
    site: Backtrace,
}

/// Where a tracked buffer was allocated: the caller's source location at
/// [`LeakLevel::Simple`] (free to record, so sampling stays cheap), a full
/// backtrace at [`LeakLevel::Advanced`] and [`LeakLevel::Paranoid`].
#[derive(Debug)]
enum Site {
    Caller(&'static Location<'static>),
    Backtrace(Backtrace),
}

impl Site {
    /// The site as report text: the first frames outside arenabuf and std.
    fn text(&self, frames: usize) -> String {
        match self {
            Site::Caller(at) => format!("      at {}:{}:{}", at.file(), at.line(), at.column()),
            Site::Backtrace(trace) => user_frames(&trace.to_string(), frames),
        }
    }
}

/// What is known about one tracked buffer.
#[derive(Debug)]
struct Record {
    site: Site,
    size: usize,
    created: CoarseInstant,
    /// The allocating thread, named (or not) when the report is made: a
    /// handle costs an atomic increment where copying its name cost an
    /// allocation and a free per sampled buffer.
    thread: Thread,
    /// Oldest first; the newest is always kept.
    accesses: VecDeque<AccessRecord>,
    dropped_accesses: usize,
}

/// The tracked buffers of one pool, in a slab.
#[derive(Debug, Default)]
struct Slab {
    records: Vec<Option<Record>>,
    free: Vec<usize>,
    live: usize,
}

/// A pool's leak detector: its level and its registry of tracked buffers,
/// in [`SHARDS`] parts.
#[derive(Debug)]
pub(crate) struct LeakDetector {
    level: LeakLevel,
    shards: Box<[CachePadded<Mutex<Slab>>]>,
}

impl LeakDetector {
    pub(crate) fn new(level: LeakLevel) -> LeakDetector {
        LeakDetector { level, shards: (0..SHARDS).map(|_| CachePadded::new(Mutex::new(Slab::default()))).collect() }
    }

    /// Tracks `allocation`: records its allocation site (`caller`, or a
    /// backtrace above `Simple`) and registers it.
    #[cold]
    #[inline(never)]
    pub(crate) fn track(
        this: &Arc<LeakDetector>,
        allocation: &mut Allocation,
        size: usize,
        caller: &'static Location<'static>,
    ) {
        let site = if this.level >= LeakLevel::Advanced {
            Site::Backtrace(Backtrace::force_capture())
        } else {
            Site::Caller(caller)
        };
        let record = Record {
            site,
            size,
            created: now(),
            thread: std::thread::current(),
            accesses: VecDeque::new(),
            dropped_accesses: 0,
        };
        // Threads' tokens are addresses of their thread-locals, alike in their
        // low bits: a multiplicative hash spreads them over the shards.
        let shard = ((thread_local::thread_token() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize;
        let key = {
            let mut slab = lock(&this.shards[shard]);
            slab.live += 1;
            match slab.free.pop() {
                Some(key) => {
                    slab.records[key] = Some(record);
                    key
                }
                None => {
                    slab.records.push(Some(record));
                    slab.records.len() - 1
                }
            }
        };
        allocation.set_leak_tracker(LeakTracker { shard, key });
    }

    /// The tracked buffers still alive, grouped by allocation site.
    pub(crate) fn report(&self) -> LeakReport {
        let now = now();
        let mut sites: BTreeMap<String, LeakSite> = BTreeMap::new();
        let mut buffers = 0;
        for shard in self.shards.iter() {
            let slab = lock(shard);
            buffers += slab.live;
            for record in slab.records.iter().flatten() {
                LeakDetector::add_to_report(record, now, &mut sites);
            }
        }
        let mut sites: Vec<LeakSite> = sites.into_values().collect();
        sites.sort_by(|a, b| b.count.cmp(&a.count).then(b.oldest.cmp(&a.oldest)));
        LeakReport { level: self.level, buffers, sites }
    }

    /// Counts one tracked buffer in its site's entry.
    fn add_to_report(record: &Record, now: CoarseInstant, sites: &mut BTreeMap<String, LeakSite>) {
        let site_text = record.site.text(8);
        let record_age = age(now, record.created);
        let site = sites.entry(site_text.clone()).or_insert_with(|| LeakSite {
            site: site_text,
            count: 0,
            bytes: 0,
            sizes: Vec::new(),
            oldest: Duration::ZERO,
            threads: Vec::new(),
            accesses: Vec::new(),
            dropped_accesses: 0,
        });
        site.count += 1;
        site.bytes += record.size as u64;
        if !site.sizes.contains(&record.size) && site.sizes.len() < 8 {
            site.sizes.push(record.size);
        }
        if let Some(thread) = record.thread.name() {
            if !site.threads.iter().any(|t| t == thread) && site.threads.len() < 4 {
                site.threads.push(thread.to_owned());
            }
        }
        if record_age >= site.oldest {
            // The oldest buffer of the site speaks for its access records.
            site.oldest = record_age;
            site.dropped_accesses = record.dropped_accesses;
            site.accesses = record
                .accesses
                .iter()
                .map(|a| LeakAccess {
                    hint: a.hint.clone(),
                    thread: a.thread.clone(),
                    ago: age(now, a.at),
                    site: user_frames(&a.site.to_string(), 1),
                })
                .collect();
        }
    }

    /// Ends the tracking of a buffer: its record leaves the registry.
    pub(crate) fn untrack(&self, tracker: LeakTracker) {
        let mut slab = lock(&self.shards[tracker.shard]);
        if let Some(slot) = slab.records.get_mut(tracker.key) {
            if slot.take().is_some() {
                slab.free.push(tracker.key);
                slab.live -= 1;
            }
        }
    }

    /// Records an access to a tracked buffer, at the levels that keep them.
    pub(crate) fn touch(&self, tracker: &LeakTracker, hint: String) {
        if !self.level.records_access() {
            return;
        }
        let access = AccessRecord {
            hint,
            thread: std::thread::current().name().map(str::to_owned),
            at: now(),
            site: Backtrace::force_capture(),
        };
        let mut slab = lock(&self.shards[tracker.shard]);
        let Some(Some(record)) = slab.records.get_mut(tracker.key) else { return };
        if record.accesses.len() == MAX_ACCESS_RECORDS {
            // Netty's rule: the newest record is always kept; an older one,
            // chosen at random, makes room.
            record.accesses.remove(random_below(MAX_ACCESS_RECORDS));
            record.dropped_accesses += 1;
        }
        record.accesses.push_back(access);
    }

    /// Prints the report to stderr as log lines, when anything is tracked.
    pub(crate) fn log_if_leaking(&self) {
        if self.level == LeakLevel::Disabled {
            return;
        }
        let report = self.report();
        if report.is_empty() {
            return;
        }
        for line in report.to_string().lines() {
            eprintln!("arenabuf: LEAK: {line}");
        }
    }
}

// Per-thread sampling state: a countdown to the next sampled buffer, and a
// xorshift state that draws each countdown. No shared counter, no atomics,
// and on most calls just a decrement.
#[cfg(not(loom))]
std::thread_local! {
    static SAMPLER: Cell<u32> = const { Cell::new(0) };
}

#[cfg(loom)]
loom::thread_local! {
    static SAMPLER: Cell<u32> = Cell::new(0);
}

/// Draws the next gap between sampled buffers, uniformly from 1 to twice
/// [`SAMPLING_INTERVAL`]; each thread cache counts down to it.
#[cold]
pub(crate) fn next_gap() -> u32 {
    SAMPLER
        .try_with(|state| {
            let mut x = state.get();
            if x == 0 {
                x = seed();
            }
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            state.set(x);
            1 + x % (2 * SAMPLING_INTERVAL)
        })
        .unwrap_or(SAMPLING_INTERVAL)
}

/// A thread's first sampling seed, from the process's random hash keys.
#[cold]
fn seed() -> u32 {
    (RandomState::new().hash_one(std::thread::current().id()) as u32) | 1
}

/// The registration of one tracked buffer: where its record is. The
/// allocation that carries it ends the tracking with
/// [`LeakDetector::untrack`] when its region is released (the pool, and so
/// the detector, is alive until then), so the tracker needs no reference to
/// the detector of its own, whose count every tracked buffer would bump.
#[derive(Debug)]
pub(crate) struct LeakTracker {
    shard: usize,
    key: usize,
}

/// A random number below `n`, from the thread's sampling state.
fn random_below(n: usize) -> usize {
    SAMPLER
        .try_with(|state| {
            let mut x = state.get() | 1;
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            state.set(x);
            x as usize % n
        })
        .unwrap_or(0)
}

impl crate::ByteBuf {
    /// Records an access to this buffer with a hint, for the leak report:
    /// at [`LeakLevel::Advanced`] and [`LeakLevel::Paranoid`] a tracked
    /// buffer keeps its last 4 access records (the newest always), each
    /// with the hint, the thread and the caller's location. Does nothing
    /// for buffers that are not tracked.
    ///
    /// # Examples
    ///
    /// ```
    /// use arenabuf::{LeakLevel, PooledAllocator};
    ///
    /// let alloc = PooledAllocator::builder().leak_detection(LeakLevel::Paranoid).build()?;
    /// let buf = alloc.heap_buffer(64);
    /// buf.touch("decoded frame header");
    /// assert!(alloc.leak_report().to_string().contains("decoded frame header"));
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    pub fn touch(&self, hint: impl fmt::Display) {
        let allocation = self.allocation();
        if let Some(tracker) = allocation.leak_tracker() {
            allocation.leak_detector().touch(tracker, hint.to_string());
        }
    }
}

/// One access record in a [`LeakReport`].
#[derive(Debug, Clone)]
struct LeakAccess {
    hint: String,
    thread: Option<String>,
    ago: Duration,
    site: String,
}

/// The leaked buffers of one allocation site.
#[derive(Debug, Clone)]
struct LeakSite {
    site: String,
    count: usize,
    bytes: u64,
    sizes: Vec<usize>,
    oldest: Duration,
    threads: Vec<String>,
    accesses: Vec<LeakAccess>,
    dropped_accesses: usize,
}

/// Tracked buffers that are still alive, de-duplicated by allocation site.
///
/// Its [`Display`](fmt::Display) prints, per site, the number of buffers,
/// their sizes and the age of the oldest, the allocation backtrace (from
/// the first frame outside arenabuf) and, at [`LeakLevel::Advanced`] and
/// above, the access records of the oldest buffer.
///
/// # Examples
///
/// ```
/// use arenabuf::{LeakLevel, PooledAllocator};
///
/// let alloc = PooledAllocator::builder().leak_detection(LeakLevel::Paranoid).build()?;
/// for _ in 0..3 {
///     std::mem::forget(alloc.heap_buffer(10));
/// }
/// let report = alloc.leak_report();
/// assert_eq!((report.len(), report.num_sites()), (3, 1));
/// println!("{report}");
/// # Ok::<(), arenabuf::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LeakReport {
    level: LeakLevel,
    buffers: usize,
    sites: Vec<LeakSite>,
}

impl LeakReport {
    /// Tracked buffers still alive.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder()
    ///     .leak_detection(arenabuf::LeakLevel::Paranoid)
    ///     .build()?;
    /// let _held = alloc.heap_buffer(10);
    /// assert_eq!(alloc.leak_report().len(), 1);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.buffers
    }

    /// Whether no tracked buffer is alive.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder()
    ///     .leak_detection(arenabuf::LeakLevel::Paranoid)
    ///     .build()?;
    /// drop(alloc.heap_buffer(10));
    /// assert!(alloc.leak_report().is_empty());
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buffers == 0
    }

    /// Distinct allocation sites among the buffers.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder()
    ///     .leak_detection(arenabuf::LeakLevel::Paranoid)
    ///     .build()?;
    /// let held: Vec<_> = (0..5).map(|_| alloc.heap_buffer(10)).collect();
    /// assert_eq!(alloc.leak_report().num_sites(), 1, "one line allocated them all");
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn num_sites(&self) -> usize {
        self.sites.len()
    }

    /// The level the report was made at.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::builder()
    ///     .leak_detection(arenabuf::LeakLevel::Advanced)
    ///     .build()?;
    /// assert_eq!(alloc.leak_report().level(), arenabuf::LeakLevel::Advanced);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn level(&self) -> LeakLevel {
        self.level
    }
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} tracked buffer(s) never released, from {} allocation site(s) (leak detection level {}{})",
            self.buffers,
            self.sites.len(),
            self.level,
            if self.level == LeakLevel::Simple { ", 1 buffer in 128 tracked" } else { "" }
        )?;
        for site in &self.sites {
            let sizes: Vec<String> = site.sizes.iter().map(usize::to_string).collect();
            writeln!(
                f,
                "{} buffer(s) of {} B ({} B in all), oldest {:.3} s old, allocated{} at:",
                site.count,
                sizes.join(" / "),
                site.bytes,
                site.oldest.as_secs_f64(),
                if site.threads.is_empty() { String::new() } else { format!(" on {}", site.threads.join(", ")) },
            )?;
            for line in site.site.lines() {
                writeln!(f, "    {line}")?;
            }
            if !site.accesses.is_empty() {
                writeln!(
                    f,
                    "  recent access records, oldest first{}:",
                    if site.dropped_accesses > 0 {
                        format!(" ({} older dropped)", site.dropped_accesses)
                    } else {
                        String::new()
                    }
                )?;
                for (i, access) in site.accesses.iter().enumerate() {
                    writeln!(
                        f,
                        "    #{}: {:?} on {}, {:.3} s ago, at {}",
                        i + 1,
                        access.hint,
                        access.thread.as_deref().unwrap_or("an unnamed thread"),
                        access.ago.as_secs_f64(),
                        access.site.lines().next().unwrap_or("?").trim()
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// The frames of a formatted backtrace from the first one outside the
/// backtrace machinery and arenabuf's own allocation path, at most `max`
/// frames (each frame's symbol line and its `at` lines).
fn user_frames(backtrace: &str, max: usize) -> String {
    let mut frames: Vec<Vec<&str>> = Vec::new();
    for line in backtrace.lines() {
        let trimmed = line.trim_start();
        let is_frame = trimmed.split_once(": ").is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()));
        if is_frame {
            frames.push(vec![line]);
        } else if let Some(frame) = frames.last_mut() {
            frame.push(line);
        }
    }
    let symbol = |frame: &Vec<&str>| frame[0].trim_start().split_once(": ").map_or("", |(_, s)| s).to_owned();
    let internal = |frame: &Vec<&str>| {
        let symbol = symbol(frame);
        let ours = ["std::backtrace", "std::backtrace_rs", "arenabuf::", "<arenabuf::"];
        ours.iter().any(|p| symbol.starts_with(p)) && !symbol.contains("::tests::")
    };
    // Below these the frames are the runtime's, the same for every site.
    let runtime = |frame: &&Vec<&str>| {
        let symbol = symbol(frame);
        symbol.contains("__rust_begin_short_backtrace") || symbol.starts_with("std::rt::")
    };
    let start = frames.iter().position(|f| !internal(f)).unwrap_or(0);
    let mut out = String::new();
    for frame in frames.iter().skip(start).take_while(|f| !runtime(f)).take(max) {
        for line in frame {
            out.push_str(line.trim());
            out.push('\n');
        }
    }
    if out.is_empty() {
        out.push_str("(no backtrace: build with debug info to see allocation sites)\n");
    }
    out
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::PooledAllocator;

    fn pool(level: LeakLevel) -> PooledAllocator {
        PooledAllocator::builder()
            .heap_arenas(1)
            .direct_arenas(1)
            .max_order(crate::test_config::MAX_ORDER)
            .leak_detection(level)
            .build()
            .unwrap()
    }

    #[test]
    fn levels_parse_in_any_case() {
        assert_eq!(LeakLevel::from_name("Disabled"), Some(LeakLevel::Disabled));
        assert_eq!(LeakLevel::from_name("simple"), Some(LeakLevel::Simple));
        assert_eq!(LeakLevel::from_name("ADVANCED"), Some(LeakLevel::Advanced));
        assert_eq!(LeakLevel::from_name("paranoid"), Some(LeakLevel::Paranoid));
        assert_eq!(LeakLevel::from_name("paranoia"), None);
        assert_eq!(LeakLevel::default(), LeakLevel::Simple);
    }

    #[test]
    fn simple_level_samples_about_one_in_128() {
        let alloc = pool(LeakLevel::Simple);
        let bufs: Vec<_> = (0..128 * 64).map(|_| alloc.heap_buffer(16)).collect();
        let tracked = alloc.leak_report().len();
        // Expected 64; a binomial spread this wide is practically certain.
        assert!((16..=160).contains(&tracked), "{tracked} tracked of {}", bufs.len());
        drop(bufs);
        assert!(alloc.leak_report().is_empty());
    }

    #[test]
    fn buffers_tracked_on_many_threads_are_all_reported_and_all_untracked() {
        let alloc = pool(LeakLevel::Paranoid);
        let bufs: Vec<crate::ByteBuf> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| alloc.heap_buffer(64))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(alloc.leak_report().len(), 8, "every thread's registrations are in the report");
        // Released here, on another thread than the one that tracked them.
        drop(bufs);
        assert!(alloc.leak_report().is_empty());
    }

    #[test]
    fn disabled_tracks_nothing() {
        let alloc = pool(LeakLevel::Disabled);
        let bufs: Vec<_> = (0..1000).map(|_| alloc.heap_buffer(16)).collect();
        assert!(alloc.leak_report().is_empty());
        bufs[0].touch("ignored");
    }

    #[test]
    fn advanced_keeps_four_access_records_and_always_the_newest() {
        let alloc = pool(LeakLevel::Paranoid);
        let buf = alloc.heap_buffer(16);
        for i in 0..10 {
            buf.touch(format_args!("step {i}"));
        }
        let report = alloc.leak_report();
        let site = &report.sites[0];
        assert_eq!(site.accesses.len(), MAX_ACCESS_RECORDS);
        assert_eq!(site.accesses.last().unwrap().hint, "step 9");
        assert_eq!(site.dropped_accesses, 6);
        // Oldest first among the kept ones.
        let steps: Vec<u32> = site.accesses.iter().map(|a| a.hint[5..].parse().unwrap()).collect();
        assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
        assert!(report.to_string().contains("\"step 9\""));
    }

    #[test]
    fn simple_level_records_no_access() {
        let alloc = pool(LeakLevel::Simple);
        let tracked: Vec<_> = (0..2000).map(|_| alloc.heap_buffer(16)).collect();
        for buf in &tracked {
            buf.touch("hint");
        }
        assert!(!alloc.leak_report().to_string().contains("hint"));
    }

    #[test]
    fn user_frames_skip_the_capture_and_allocation_path() {
        let text = "   0: std::backtrace::Backtrace::force_capture\n             at /x/backtrace.rs:1:1\n   1: arenabuf::leak::LeakDetector::maybe_track\n             at src/leak.rs:2:2\n   2: my_app::handler\n             at src/main.rs:3:3\n   3: main\n";
        assert_eq!(user_frames(text, 1), "2: my_app::handler\nat src/main.rs:3:3\n");
        assert_eq!(user_frames(text, 5).lines().count(), 3);
    }

    #[test]
    fn a_forgotten_buffer_is_reported_at_its_site_inside_this_function() {
        let alloc = pool(LeakLevel::Paranoid);
        std::mem::forget(alloc.direct_buffer(300));
        let report = alloc.leak_report();
        assert_eq!(report.len(), 1);
        let text = report.to_string();
        assert!(text.contains("a_forgotten_buffer_is_reported_at_its_site_inside_this_function"), "{text}");
        assert!(text.contains("1 buffer(s) of 300 B"), "{text}");
    }
}
