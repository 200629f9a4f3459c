//! Settings shared by the property tests: fewer, smaller cases under Miri,
//! and no failure files there (Miri's isolation forbids file access).

use proptest::test_runner::Config;

/// Whether tests should pick their small configuration.
pub(crate) const SMALL: bool = cfg!(miri);

/// The max order tests use: 4 MiB chunks natively, 256 KiB under Miri
/// (same 8 KiB pages, so subpage shapes are those of the defaults).
pub(crate) const MAX_ORDER: u32 = if SMALL { 5 } else { 9 };

/// The size classes tests use.
pub(crate) fn classes() -> crate::SizeClasses {
    crate::SizeClasses::new(8192, MAX_ORDER).expect("valid test geometry")
}

/// An allocator with one arena of each kind, 8 KiB pages and the test
/// geometry's chunks, whose caches take one region per miss (no fill), so
/// that the arenas' counts are the buffers'. The fill has tests of its own.
#[cfg_attr(loom, allow(dead_code))] // the loom models build their own
pub(crate) fn pool() -> crate::PooledAllocator {
    crate::PooledAllocator::builder()
        .heap_arenas(1)
        .direct_arenas(1)
        .max_order(MAX_ORDER)
        .cache_fill_bytes(0)
        .build()
        .expect("valid test settings")
}

/// Regions handed out and not given back, over every arena of `alloc`.
pub(crate) fn active(alloc: &crate::PooledAllocator) -> u64 {
    let m = alloc.metric();
    m.heap_arenas().iter().chain(m.direct_arenas()).map(|a| a.num_active_allocations()).sum()
}

/// A proptest configuration running `cases` cases natively, 2 under Miri.
pub(crate) fn proptest(cases: u32) -> Config {
    if SMALL {
        Config { cases: 2, failure_persistence: None, ..Config::default() }
    } else {
        Config { cases, ..Config::default() }
    }
}
