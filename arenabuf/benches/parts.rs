//! Micro-benchmarks of the allocator's parts, with divan:
//! `cargo bench -p arenabuf --bench parts`.
//!
//! * `size_class_lookup`: size to class index, table and arithmetic ranges;
//! * `thread_cache_hit`: allocate and release 256 B, served by the cache;
//! * `cache_miss_to_subpage` / `cache_miss_to_run`: the same with caches
//!   off, so every request takes the arena lock (256 B: a subpage element;
//!   64 KiB: a run of pages);
//! * `cross_thread_release`: releasing a buffer allocated on another thread.

use std::hint::black_box;
use std::sync::mpsc;
use std::sync::OnceLock;

use arenabuf::{ByteBuf, PooledAllocator, SizeClasses};

fn main() {
    divan::main();
}

#[divan::bench(args = [100, 3000, 20_000, 1_000_000])]
fn size_class_lookup(bencher: divan::Bencher, size: usize) {
    let classes = SizeClasses::new(8192, 9).unwrap();
    bencher.bench_local(|| classes.index_of(black_box(size)));
}

#[divan::bench]
fn thread_cache_hit(bencher: divan::Bencher) {
    let alloc = PooledAllocator::new();
    drop(alloc.direct_buffer(256));
    bencher.bench_local(|| drop(black_box(alloc.direct_buffer(256))));
}

fn uncached() -> PooledAllocator {
    PooledAllocator::builder().small_cache_size(0).normal_cache_size(0).build().unwrap()
}

#[divan::bench]
fn cache_miss_to_subpage(bencher: divan::Bencher) {
    let alloc = uncached();
    let _keep = alloc.direct_buffer(256); // keeps the subpage in use
    bencher.bench_local(|| drop(black_box(alloc.direct_buffer(256))));
}

#[divan::bench]
fn cache_miss_to_run(bencher: divan::Bencher) {
    let alloc = uncached();
    let _keep = alloc.direct_buffer(64 << 10); // keeps the chunk alive
    bencher.bench_local(|| drop(black_box(alloc.direct_buffer(64 << 10))));
}

/// A thread that allocates batches of 256-byte buffers for the benchmark
/// thread to release.
fn producer() -> &'static std::sync::Mutex<mpsc::Receiver<Vec<ByteBuf>>> {
    static RX: OnceLock<std::sync::Mutex<mpsc::Receiver<Vec<ByteBuf>>>> = OnceLock::new();
    RX.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel(4);
        std::thread::spawn(move || {
            let alloc = PooledAllocator::new();
            while tx.send((0..64).map(|_| alloc.direct_buffer(256)).collect()).is_ok() {}
        });
        std::sync::Mutex::new(rx)
    })
}

#[divan::bench]
fn cross_thread_release(bencher: divan::Bencher) {
    let rx = producer();
    bencher
        .counter(divan::counter::ItemsCount::new(64usize))
        .with_inputs(|| rx.lock().unwrap().recv().unwrap())
        .bench_local_values(drop);
}
