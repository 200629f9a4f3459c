//! Metric values after known sequences, pinned memory, dump_stats and
//! giving memory back.

use arenabuf::{ByteBuf, PooledAllocator, RunState};

/// One heap arena whose thread caches keep no normal class above 32 KiB
/// (Netty's rule), so that dropping such a buffer reaches the arena.
/// One heap arena whose caches take one region per miss (no fill), so that
/// a buffer's region is all its class uses.
fn one_heap_arena() -> PooledAllocator {
    PooledAllocator::builder().heap_arenas(1).direct_arenas(0).large_cache_bytes(0).cache_fill_bytes(0).build().unwrap()
}

fn heap_arena(alloc: &PooledAllocator) -> arenabuf::ArenaMetric {
    alloc.metric().heap_arenas()[0].clone()
}

/// The list index of every chunk, in list order.
fn chunk_lists_of(alloc: &PooledAllocator) -> Vec<(usize, u32)> {
    heap_arena(alloc)
        .chunk_lists()
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.chunks().iter().map(move |c| (i, c.usage())))
        .collect()
}

#[test]
fn chunk_lists_have_netty_bands_in_order() {
    let arena = heap_arena(&one_heap_arena());
    let bands: Vec<(&str, u32, u32)> =
        arena.chunk_lists().iter().map(|l| (l.name(), l.min_usage(), l.max_usage())).collect();
    assert_eq!(
        bands,
        [("qInit", 1, 25), ("q000", 1, 50), ("q025", 25, 75), ("q050", 50, 100), ("q075", 75, 100), ("q100", 100, 100)]
    );
}

#[test]
fn a_chunk_moves_through_the_lists_as_its_usage_changes() {
    let alloc = one_heap_arena();
    let mib = 1 << 20;
    // Normal classes are not cached above 32 KiB, so every drop reaches the arena.
    let a = alloc.heap_buffer(mib / 2); // 12.5 % -> 13 % in qInit
    assert_eq!(chunk_lists_of(&alloc), [(0, 13)]);
    let b = alloc.heap_buffer(mib); // 37.5 % -> 38: q000
    assert_eq!(chunk_lists_of(&alloc), [(1, 38)]);
    let c = alloc.heap_buffer(mib); // 62.5 % -> 63: q025
    assert_eq!(chunk_lists_of(&alloc), [(2, 63)]);
    let d = alloc.heap_buffer(3 * mib / 2); // full: q100
    assert_eq!(chunk_lists_of(&alloc), [(5, 100)]);
    let arena = heap_arena(&alloc);
    let chunk = &arena.chunk_lists()[5].chunks()[0];
    assert_eq!((chunk.free_bytes(), chunk.chunk_size()), (0, 4 * mib));
    drop(d); // 62.5 %: below q075's band, inside q050's
    assert_eq!(chunk_lists_of(&alloc), [(3, 63)]);
    drop((a, b, c)); // empty: falls out of q000; kept in qInit as the reserve
    assert_eq!(chunk_lists_of(&alloc), [(0, 0)]);
    let arena = heap_arena(&alloc);
    assert_eq!((arena.num_chunks_created(), arena.num_chunks_destroyed(), arena.num_active_chunks()), (1, 0, 1));
    alloc.trim(); // trim gives the reserve back
    assert_eq!(chunk_lists_of(&alloc), []);
    let arena = heap_arena(&alloc);
    assert_eq!((arena.num_chunks_created(), arena.num_chunks_destroyed(), arena.num_active_chunks()), (1, 1, 0));
}

#[test]
fn a_live_500_byte_buffer_uses_one_of_a_coloured_runs_elements() {
    // 512 B elements: 47 in a run of 3 pages, which leaves 512 B for the
    // runs' colours (Netty's run is 1 page of 16).
    let alloc = one_heap_arena();
    let buf = alloc.heap_buffer(500);
    let arena = heap_arena(&alloc);
    let subpages = arena.small_subpages();
    assert_eq!(subpages.len(), 1);
    assert_eq!(
        (subpages[0].element_size(), subpages[0].max_num_elements(), subpages[0].num_available()),
        (512, 47, 46)
    );
    let runs = arena.chunk_lists()[0].chunks()[0].runs().to_vec();
    assert_eq!(runs[0].state(), RunState::Subpage { element_size: 512, max_num_elements: 47, num_available: 46 });
    assert_eq!(runs[1].state(), RunState::Free);
    assert_eq!(runs.iter().map(|r| r.pages()).sum::<u32>(), 512);
    drop(buf);
}

#[test]
fn a_32_mib_buffer_adds_exactly_its_size_to_used_memory() {
    let alloc = one_heap_arena();
    let before = alloc.metric().used_heap_memory();
    let buf = alloc.heap_buffer(32 << 20);
    let metric = alloc.metric();
    assert_eq!(metric.used_heap_memory() - before, 33_554_432);
    assert_eq!(metric.pinned_heap_memory(), 33_554_432);
    drop(buf);
}

#[test]
fn capacity_le_pinned_le_used_while_buffers_live_and_pinned_is_zero_after() {
    let alloc = PooledAllocator::builder().heap_arenas(2).direct_arenas(2).build().unwrap();
    let sizes = [1, 16, 100, 500, 1500, 8192, 20_000, 32 << 10, 100_000, 1 << 20, 5 << 20];
    let mut live: Vec<ByteBuf> = Vec::new();
    for round in 0..3 {
        for &size in &sizes {
            live.push(alloc.heap_buffer(size + round));
            live.push(alloc.direct_buffer(size * 2 + round));
        }
        // Some released on this thread (parked), some on another (queued).
        let others: Vec<ByteBuf> = live.drain(..live.len() / 3).collect();
        std::thread::spawn(move || drop(others)).join().unwrap();
        drop(live.drain(..live.len() / 4).collect::<Vec<_>>());
        let metric = alloc.metric();
        let heap: u64 = live.iter().filter(|b| !b.is_direct()).map(|b| b.capacity() as u64).sum();
        let direct: u64 = live.iter().filter(|b| b.is_direct()).map(|b| b.capacity() as u64).sum();
        assert!(heap <= metric.pinned_heap_memory(), "round {round}");
        assert!(metric.pinned_heap_memory() <= metric.used_heap_memory(), "round {round}");
        assert!(direct <= metric.pinned_direct_memory(), "round {round}");
        assert!(metric.pinned_direct_memory() <= metric.used_direct_memory(), "round {round}");
        // Pinned counts class sizes: exactly the normalized capacities.
        let classes = arenabuf::SizeClasses::new(8192, 9).unwrap();
        let norm = |b: &ByteBuf| classes.normalize(b.capacity()) as u64;
        let heap_norm: u64 = live.iter().filter(|b| !b.is_direct()).map(norm).sum();
        assert_eq!(metric.pinned_heap_memory(), heap_norm, "round {round}");
    }
    drop(live);
    alloc.trim();
    let metric = alloc.metric();
    assert_eq!((metric.pinned_heap_memory(), metric.pinned_direct_memory()), (0, 0));
}

#[test]
fn used_memory_falls_back_after_a_burst_and_trim() {
    let alloc = PooledAllocator::builder().heap_arenas(1).direct_arenas(1).build().unwrap();
    let keep = alloc.direct_buffer(1000);
    let burst: Vec<ByteBuf> =
        (0..400).map(|i| alloc.direct_buffer([64, 700, 3000, 16 << 10, 32 << 10, 200 << 10][i % 6])).collect();
    let peak = alloc.metric().used_direct_memory();
    assert!(peak >= 4 * (4 << 20), "the burst spans many chunks: {peak}");
    drop(burst);
    alloc.trim();
    let metric = alloc.metric();
    assert_eq!(metric.used_direct_memory(), 4 << 20, "only the chunk of the live buffer remains");
    assert_eq!(metric.pinned_direct_memory(), 1024);
    let arena = &metric.direct_arenas()[0];
    assert_eq!(arena.num_chunks_created() - arena.num_chunks_destroyed(), arena.num_active_chunks());
    drop(keep);
    alloc.trim();
    assert_eq!(alloc.metric().used_direct_memory(), 0);
}

#[test]
fn empty_chunks_are_kept_for_a_second_and_then_given_back() {
    let alloc = one_heap_arena();
    // Three whole-chunk buffers, two of them dropped: their chunks are kept.
    let mut bufs: Vec<ByteBuf> = (0..3).map(|_| alloc.heap_buffer(4 << 20)).collect();
    bufs.truncate(1);
    let arena = heap_arena(&alloc);
    assert_eq!((arena.num_active_chunks(), arena.num_chunks_destroyed()), (3, 0), "both emptied chunks kept");
    // Once they have been empty for longer than the decay time, the next
    // chunk to empty unmaps them, but the newest, kept as the reserve.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    drop(bufs);
    let arena = heap_arena(&alloc);
    assert_eq!((arena.num_active_chunks(), arena.num_chunks_destroyed()), (2, 1));
    alloc.trim();
    assert_eq!(heap_arena(&alloc).num_active_chunks(), 0, "trim takes every empty chunk");
}

#[test]
fn trim_reaches_the_caches_of_other_threads() {
    let alloc = PooledAllocator::builder().heap_arenas(1).direct_arenas(0).build().unwrap();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let (parked_tx, parked_rx) = std::sync::mpsc::channel::<()>();
    let worker = {
        let alloc = alloc.clone();
        std::thread::spawn(move || {
            drop((0..100).map(|_| alloc.heap_buffer(4096)).collect::<Vec<_>>());
            parked_tx.send(()).unwrap();
            wait.recv().unwrap();
            // A few lookups of another class: the trim request is seen.
            for _ in 0..256 {
                drop(alloc.heap_buffer(64));
            }
            parked_tx.send(()).unwrap();
            wait.recv().unwrap();
        })
    };
    parked_rx.recv().unwrap();
    assert!(heap_arena(&alloc).num_active_allocations() >= 100, "parked in the worker's cache");
    alloc.trim();
    go.send(()).unwrap();
    parked_rx.recv().unwrap();
    assert!(heap_arena(&alloc).num_active_allocations() <= 1, "the worker gave its regions back");
    go.send(()).unwrap();
    worker.join().unwrap();
}

#[test]
fn dump_stats_lists_arenas_chunks_and_subpages() {
    let alloc = PooledAllocator::builder().heap_arenas(2).direct_arenas(1).cache_fill_bytes(0).build().unwrap();
    let _a = alloc.heap_buffer(500);
    let _b = alloc.direct_buffer(3 << 20);
    let stats = alloc.dump_stats();
    for needle in [
        "2 heap arena(s), 1 direct arena(s)",
        "heap arena 0:",
        "heap arena 1:",
        "direct arena 0:",
        "qInit (1%..25%):",
        "q050 (50%..100%):\n    chunk: usage 75%, free 1048576 of 4194304 B",
        "512 B x 47: 1 used, 46 free",
        "pinned 3145728 B",
    ] {
        assert!(stats.contains(needle), "{needle:?} missing in:\n{stats}");
    }
}

#[test]
fn the_idle_time_trim_gives_memory_back_in_the_background() {
    let alloc = PooledAllocator::builder()
        .heap_arenas(1)
        .direct_arenas(0)
        .large_cache_bytes(0)
        .idle_trim_millis(10)
        .build()
        .unwrap();
    let off = one_heap_arena();
    for pool in [&alloc, &off] {
        // 256 KiB is above the cached limit: it goes straight back, and the
        // chunk, empty in qInit, is kept as the arena's reserve.
        drop(pool.heap_buffer(256 << 10));
        assert_eq!(pool.metric().used_heap_memory(), 4 << 20, "one empty chunk kept in reserve");
    }
    // Wait (generously) for the background thread to see the pool idle.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while alloc.metric().used_heap_memory() != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(alloc.metric().used_heap_memory(), 0, "the reserve chunk was given back");
    assert_eq!(off.metric().used_heap_memory(), 4 << 20, "without the setting nothing happens");
}

#[test]
fn trim_returns_regions_queued_for_an_idle_thread_at_once() {
    let alloc = PooledAllocator::builder().heap_arenas(1).direct_arenas(0).cache_fill_bytes(0).build().unwrap();
    let (bufs_tx, bufs_rx) = std::sync::mpsc::channel::<Vec<ByteBuf>>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let worker = {
        let alloc = alloc.clone();
        std::thread::spawn(move || {
            bufs_tx.send((0..70).map(|_| alloc.heap_buffer(2000)).collect()).unwrap();
            done_rx.recv().unwrap(); // idle: never drains its queue itself
        })
    };
    // Released here: gathered in this thread's outbox and sent to the
    // worker's queue in batches of 64; the 6 not sent yet count as pinned.
    drop(bufs_rx.recv().unwrap());
    assert_eq!(alloc.metric().pinned_heap_memory(), 6 * 2048);
    assert!(!alloc.trim_current_thread_cache(), "this thread has no cache; its outbox is sent all the same");
    let metric = alloc.metric();
    assert_eq!(metric.heap_arenas()[0].num_active_allocations(), 70);
    assert_eq!(metric.pinned_heap_memory(), 0, "queued regions are not pinned");
    alloc.trim();
    let arena = heap_arena(&alloc);
    assert_eq!(arena.num_active_allocations(), 0, "the queued regions went back to the arena");
    assert_eq!(alloc.metric().used_heap_memory(), 0);
    done_tx.send(()).unwrap();
    worker.join().unwrap();
}
