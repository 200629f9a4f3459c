//! The allocator front through its public API: thread caches, binding,
//! cross-thread release, trim, limits and metrics.

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;

use arenabuf::{AllocError, ByteBuf, LeakLevel, PooledAllocator};

/// One arena of each kind; a miss takes one region (no fill), so that the
/// arenas' counts are the buffers'.
fn one_arena_each() -> PooledAllocator {
    PooledAllocator::builder().heap_arenas(1).direct_arenas(1).cache_fill_bytes(0).build().unwrap()
}

fn direct_arena(alloc: &PooledAllocator) -> arenabuf::ArenaMetric {
    alloc.metric().direct_arenas()[0].clone()
}

#[test]
fn a_byte_buf_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ByteBuf>();
    check::<PooledAllocator>();
}

#[test]
fn a_byte_buf_is_at_most_one_cache_line() {
    assert_eq!(std::mem::size_of::<ByteBuf>(), 48);
    assert_eq!(std::mem::size_of::<Option<ByteBuf>>(), 56);
}

#[test]
fn release_then_allocate_on_one_thread_reuses_the_address() {
    let alloc = one_arena_each();
    for size in [16, 1000, 20_000, 32 * 1024] {
        let addr = alloc.direct_buffer(size).memory_address();
        let again = alloc.direct_buffer(size);
        assert_eq!(again.memory_address(), addr, "size {size}");
    }
    // Each size went to the arena once; the second request was a cache hit.
    let arena = direct_arena(&alloc);
    assert_eq!(arena.num_allocations(), 4);
    assert_eq!(arena.num_deallocations(), 0, "regions parked in a cache are not deallocations");
}

#[test]
fn a_buffer_released_on_another_thread_returns_to_its_allocating_thread() {
    let alloc = one_arena_each();
    let buf = alloc.direct_buffer(1000);
    let addr = buf.memory_address();
    thread::spawn(move || drop(buf)).join().unwrap();
    let again = alloc.direct_buffer(1000);
    assert_eq!(again.memory_address(), addr);
    let arena = direct_arena(&alloc);
    assert_eq!(arena.num_small_allocations(), 1);
    assert_eq!(arena.num_small_deallocations(), 0);
}

#[test]
fn threads_bind_to_the_least_used_arena() {
    let alloc = PooledAllocator::builder().heap_arenas(3).direct_arenas(3).build().unwrap();
    let done = Arc::new(Barrier::new(5));
    let mut handles = Vec::new();
    for _ in 0..4 {
        let (bound_tx, bound_rx) = mpsc::channel();
        let (alloc, done) = (alloc.clone(), done.clone());
        handles.push(thread::spawn(move || {
            let buf = alloc.heap_buffer(64);
            bound_tx.send(()).unwrap();
            done.wait();
            drop(buf);
        }));
        // One thread binds at a time, so the choice is deterministic.
        bound_rx.recv().unwrap();
    }
    let counts: Vec<usize> = alloc.metric().heap_arenas().iter().map(|a| a.num_thread_caches()).collect();
    assert_eq!(counts, [2, 1, 1]);
    let counts: Vec<usize> = alloc.metric().direct_arenas().iter().map(|a| a.num_thread_caches()).collect();
    assert_eq!(counts, [2, 1, 1]);
    assert_eq!(alloc.metric().num_thread_local_caches(), 4);
    done.wait();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(alloc.metric().num_thread_local_caches(), 0, "caches go with their threads");
    for arena in alloc.metric().heap_arenas() {
        assert_eq!(arena.num_thread_caches(), 0);
        assert_eq!(arena.num_active_allocations(), 0, "exiting threads give every region back");
    }
}

#[test]
fn a_full_cache_sends_regions_to_the_arena() {
    let alloc = PooledAllocator::builder().direct_arenas(1).small_cache_size(2).build().unwrap();
    let bufs: Vec<ByteBuf> = (0..5).map(|_| alloc.direct_buffer(100)).collect();
    drop(bufs);
    let arena = direct_arena(&alloc);
    assert_eq!(arena.num_small_allocations(), 5);
    assert_eq!(arena.num_small_deallocations(), 3, "two fit in the cache, three overflow");
    assert_eq!(arena.num_active_allocations(), 2);
}

#[test]
fn cache_sizes_of_zero_cache_nothing() {
    let alloc = PooledAllocator::builder().direct_arenas(1).small_cache_size(0).normal_cache_size(0).build().unwrap();
    drop(alloc.direct_buffer(100));
    drop(alloc.direct_buffer(32 * 1024));
    let arena = direct_arena(&alloc);
    assert_eq!(arena.num_deallocations(), 2, "both went straight back to the arena");
    assert_eq!(arena.num_active_allocations(), 0);
}

#[test]
fn without_a_large_cache_classes_above_the_cached_limit_are_not_cached() {
    let alloc = PooledAllocator::builder().direct_arenas(1).large_cache_bytes(0).build().unwrap();
    drop(alloc.direct_buffer(64 * 1024)); // above the 32 KiB default
    drop(alloc.direct_buffer(32 * 1024));
    let arena = direct_arena(&alloc);
    assert_eq!(arena.num_normal_deallocations(), 1);
    assert_eq!(arena.num_active_allocations(), 1);
}

#[test]
fn classes_above_the_cached_limit_keep_what_the_large_cache_budget_allows() {
    // 1 MiB of budget: 16 regions of 64 KiB, one of 1 MiB, none of 2 MiB.
    let alloc = PooledAllocator::builder().direct_arenas(1).build().unwrap();
    for (size, kept) in [(64 << 10, 16), (1 << 20, 1), (2 << 20, 0)] {
        let before = direct_arena(&alloc).num_active_allocations();
        let bufs: Vec<ByteBuf> = (0..20).map(|_| alloc.direct_buffer(size)).collect();
        drop(bufs);
        // With every buffer gone, what the arena still counts as handed out
        // is what the cache keeps (its misses may have taken more than 20).
        let held = direct_arena(&alloc).num_active_allocations() - before;
        assert_eq!(held, kept, "{size}-byte buffers: {kept} kept");
    }
}

#[test]
fn releases_on_other_threads_queue_only_what_the_owner_would_keep() {
    let alloc = PooledAllocator::builder().direct_arenas(1).build().unwrap();
    // 2 MiB buffers are not cached: released elsewhere, they go straight
    // back to the arena.
    let big: Vec<ByteBuf> = (0..3).map(|_| alloc.direct_buffer(2 << 20)).collect();
    thread::spawn(move || drop(big)).join().unwrap();
    assert_eq!(direct_arena(&alloc).num_normal_deallocations(), 3);
    // 1 MiB buffers are cached, but the queue takes at most 4 MiB of them.
    let mib: Vec<ByteBuf> = (0..8).map(|_| alloc.direct_buffer(1 << 20)).collect();
    thread::spawn(move || drop(mib)).join().unwrap();
    assert_eq!(direct_arena(&alloc).num_normal_deallocations(), 3 + 4);
    alloc.trim(); // gives back the four queued for the owner
    assert_eq!(direct_arena(&alloc).num_normal_deallocations(), 3 + 8);
}

#[test]
fn trim_drains_idle_classes_and_keeps_busy_ones() {
    let alloc = PooledAllocator::builder().direct_arenas(1).small_cache_size(16).cache_fill_bytes(0).build().unwrap();
    let parked: Vec<ByteBuf> = (0..4).map(|_| alloc.direct_buffer(100)).collect();
    drop(parked);
    // 16 hits in the class: it is busy, the trim keeps its regions.
    for _ in 0..16 {
        drop(alloc.direct_buffer(100));
    }
    assert!(alloc.trim_current_thread_cache());
    assert_eq!(direct_arena(&alloc).num_small_deallocations(), 0);
    // No hits since: the next trim drains it.
    assert!(alloc.trim_current_thread_cache());
    assert_eq!(direct_arena(&alloc).num_small_deallocations(), 4);
    assert_eq!(direct_arena(&alloc).num_active_allocations(), 0);
}

#[test]
fn the_cache_trims_itself_after_the_trim_interval() {
    let alloc = PooledAllocator::builder()
        .direct_arenas(1)
        .small_cache_size(16)
        .cache_trim_interval(100)
        .cache_fill_bytes(0)
        .build()
        .unwrap();
    drop(alloc.direct_buffer(100)); // parks one 112-byte region
                                    // 100 lookups of another class, and a period more: its hits count for
                                    // the trim four at a time (the largest power of two dividing 100).
    for _ in 0..104 {
        drop(alloc.direct_buffer(1000));
    }
    let arena = direct_arena(&alloc);
    assert_eq!(arena.num_small_deallocations(), 1, "the idle 112-byte class was trimmed");
}

#[test]
fn the_trim_comes_at_the_interval_whatever_the_leak_sampling() {
    // Misses count at once, a class's hits a period at a time (here 4, the
    // largest power of two dividing the interval; 1 when every allocation is
    // tracked): the trim comes after the interval's lookups, later by less
    // than a period per class in use. The leak detector's sampling, counted
    // alongside, neither hastens nor delays it.
    for (level, period) in [(LeakLevel::Disabled, 4), (LeakLevel::Simple, 4), (LeakLevel::Paranoid, 1)] {
        let alloc = PooledAllocator::builder()
            .direct_arenas(1)
            .small_cache_size(16)
            .cache_trim_interval(100)
            .leak_detection(level)
            .build()
            .unwrap();
        drop(alloc.direct_buffer(100)); // lookup 1 parks one 112-byte region
        let mut lookups = 1;
        while direct_arena(&alloc).num_small_deallocations() == 0 {
            drop(alloc.direct_buffer(1000));
            lookups += 1;
            assert!(lookups < 100 + 2 * period, "{level:?}: no trim after {lookups} lookups");
        }
        assert!(lookups >= 100, "{level:?}: trimmed after {lookups} lookups, before the interval");
        if period == 1 {
            assert_eq!(lookups, 100, "{level:?}: every lookup counted at once");
        }
    }
}

#[test]
fn trim_without_a_cache_reports_false() {
    let alloc = one_arena_each();
    let alloc2 = alloc.clone();
    let had = thread::spawn(move || alloc2.trim_current_thread_cache()).join().unwrap();
    assert!(!had);
}

#[test]
fn zero_arenas_give_unpooled_buffers_that_work() {
    let alloc = PooledAllocator::builder().heap_arenas(0).direct_arenas(0).build().unwrap();
    let mut heap = alloc.heap_buffer(1000);
    let mut direct = alloc.direct_buffer(5000);
    heap.as_mut_slice().fill(1);
    direct.as_mut_slice().fill(2);
    assert!(heap.as_slice().iter().all(|&b| b == 1) && direct.as_slice().iter().all(|&b| b == 2));
    assert!(!heap.is_direct() && direct.is_direct());
    let metric = alloc.metric();
    assert_eq!((metric.num_heap_arenas(), metric.num_direct_arenas()), (0, 0));
    assert_eq!(metric.used_heap_memory(), 1000);
    assert_eq!(metric.used_direct_memory(), 5000);
    drop((heap, direct));
    assert_eq!(alloc.metric().used_heap_memory() + alloc.metric().used_direct_memory(), 0);
}

#[test]
fn huge_buffers_raise_used_memory_by_exactly_their_size() {
    let alloc = one_arena_each();
    let before = alloc.metric().used_heap_memory();
    let huge = alloc.heap_buffer(32 << 20);
    assert_eq!(alloc.metric().used_heap_memory() - before, 33_554_432);
    let arena = alloc.metric().heap_arenas()[0].clone();
    assert_eq!(arena.num_huge_allocations(), 1);
    drop(huge);
    assert_eq!(alloc.metric().used_heap_memory(), before);
    assert_eq!(alloc.metric().heap_arenas()[0].num_huge_deallocations(), 1);
}

#[test]
fn the_direct_memory_limit_fails_cleanly_and_the_pool_keeps_working() {
    let alloc = PooledAllocator::builder().direct_arenas(1).max_direct_memory(6 << 20).build().unwrap();
    let first = alloc.direct_buffer(1 << 20);
    let before = direct_arena(&alloc);
    let err = alloc.try_direct_buffer(8 << 20, 8 << 20).unwrap_err();
    assert_eq!(err, AllocError::DirectMemoryExhausted { requested: 8 << 20, used: 4 << 20, max: 6 << 20 });
    assert_eq!(err.to_string(), "failed to allocate 8388608 byte(s) of direct memory (used: 4194304, max: 6291456)");
    assert_eq!(direct_arena(&alloc), before, "a failed request changes nothing");
    // The chunk that exists still serves requests.
    let more: Vec<ByteBuf> = (0..3).map(|_| alloc.direct_buffer(1 << 20)).collect();
    assert_eq!(alloc.metric().used_direct_memory(), 4 << 20);
    drop((first, more));
}

#[test]
fn empty_chunks_kept_for_reuse_give_way_to_the_direct_memory_limit() {
    // Two arenas, room for two chunks. A thread bound to the second arena
    // fills and empties a chunk, which its arena keeps for reuse; the first
    // arena then needs two chunks of its own.
    let alloc = PooledAllocator::builder().direct_arenas(2).max_direct_memory(8 << 20).build().unwrap();
    drop(alloc.direct_buffer(8)); // this thread binds to the first arena
    let other = alloc.clone();
    thread::spawn(move || drop(other.direct_buffer(3 << 20))).join().unwrap();
    assert_eq!(
        alloc.metric().direct_arenas()[1].chunk_lists().iter().map(|l| l.chunks().len()).sum::<usize>(),
        1,
        "the emptied chunk is kept"
    );
    let bufs: Vec<ByteBuf> = (0..2).map(|_| alloc.direct_buffer(3 << 20)).collect();
    let arenas = alloc.metric().direct_arenas().to_vec();
    let chunks = |a: &arenabuf::ArenaMetric| a.chunk_lists().iter().map(|l| l.chunks().len()).sum::<usize>();
    assert_eq!((chunks(&arenas[0]), chunks(&arenas[1])), (2, 0), "the kept chunk made room");
    drop(bufs);
}

#[test]
#[should_panic(expected = "failed to allocate 8388608 byte(s) of direct memory")]
fn the_plain_method_panics_with_the_same_message() {
    let alloc = PooledAllocator::builder().direct_arenas(1).max_direct_memory(6 << 20).build().unwrap();
    let _buf = alloc.direct_buffer(8 << 20);
}

#[test]
fn capacity_above_max_capacity_is_a_typed_error() {
    let alloc = one_arena_each();
    let err = alloc.try_heap_buffer(10, 5).unwrap_err();
    assert_eq!(err, AllocError::CapacityOverflow { requested: 10, max_capacity: 5 });
    assert_eq!(alloc.metric().heap_arenas()[0].num_allocations(), 0);
}

#[test]
fn without_caches_for_all_threads_only_opted_in_threads_cache() {
    let alloc = PooledAllocator::builder()
        .direct_arenas(1)
        .use_cache_for_all_threads(false)
        .cache_fill_bytes(0)
        .build()
        .unwrap();
    let plain = alloc.clone();
    thread::spawn(move || {
        drop(plain.direct_buffer(100));
        drop(plain.direct_buffer(100));
    })
    .join()
    .unwrap();
    let arena = direct_arena(&alloc);
    assert_eq!(arena.num_small_allocations(), 2, "a plain thread caches nothing");
    assert_eq!(arena.num_small_deallocations(), 2);
    let opted = alloc.clone();
    arenabuf::spawn(move || {
        let first = opted.direct_buffer(100).memory_address();
        assert_eq!(opted.direct_buffer(100).memory_address(), first);
        let arena = opted.metric().direct_arenas()[0].clone();
        assert_eq!(arena.num_small_allocations(), 3, "the second request was a cache hit");
    })
    .join()
    .unwrap();
    assert_eq!(direct_arena(&alloc).num_active_allocations(), 0);
}

#[test]
fn buffers_outlive_the_allocator_and_other_threads() {
    let alloc = one_arena_each();
    let mut buf = alloc.direct_buffer(300);
    let worker = {
        let alloc = alloc.clone();
        thread::spawn(move || alloc.heap_buffer(50_000)).join().unwrap()
    };
    drop(alloc);
    buf.as_mut_slice().fill(9);
    assert!(buf.as_slice().iter().all(|&b| b == 9));
    // The worker thread is gone; its buffer is released here.
    drop(worker);
    let other = thread::spawn(move || drop(buf));
    other.join().unwrap();
}

#[test]
fn the_global_allocator_is_shared() {
    let a = PooledAllocator::global();
    let b = PooledAllocator::global();
    assert!(std::ptr::eq(a, b));
    assert_eq!(a.buffer(5).capacity(), 5);
}
