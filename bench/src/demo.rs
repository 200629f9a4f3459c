//! `arenabuf classes` and `arenabuf demo`: the size-class table and a short
//! walk through the pool, printed with the allocator's own metrics.

use arenabuf::{ByteBuf, PooledAllocator, SizeClasses};

/// Prints the size-class table of the default geometry.
pub fn print_size_classes() {
    let classes = SizeClasses::new(8192, 9).expect("default geometry");
    println!(
        "size classes: {} ({} small, {} page classes), page 8192, chunk {}",
        classes.num_classes(),
        classes.num_small_classes(),
        classes.num_page_classes(),
        classes.chunk_size()
    );
    println!("index\tsize\tkind");
    for i in 0..classes.num_classes() {
        let kind = if classes.is_small(i) { "small" } else { "normal" };
        println!("{i}\t{}\t{kind}", classes.size_of(i));
    }
}

/// Allocates a mix of buffers on two threads and prints what the pool did.
pub fn run() {
    let alloc = PooledAllocator::builder().heap_arenas(2).direct_arenas(2).build().expect("valid settings");
    let sizes = [100, 1500, 4096, 20_000, 100_000, 1 << 20, 6 << 20];
    let mut held: Vec<ByteBuf> = sizes.iter().map(|&s| alloc.direct_buffer(s)).collect();
    println!("allocated {} direct buffers on the main thread:", held.len());
    for buf in &held {
        println!("  capacity {:>8} at {:#x}", buf.capacity(), buf.memory_address());
    }
    let worker = {
        let alloc = alloc.clone();
        std::thread::spawn(move || (0..1000).map(|i| alloc.direct_buffer(64 + i % 512)).collect::<Vec<_>>())
    };
    let from_worker = worker.join().expect("worker thread");
    println!("a worker thread allocated {} more and exited", from_worker.len());
    let addr = held[1].memory_address();
    held.remove(1);
    let again = alloc.direct_buffer(1500);
    println!(
        "released the 1500-byte buffer; the next 1500-byte request got {:#x} (same: {})",
        again.memory_address(),
        again.memory_address() == addr
    );
    drop(from_worker); // released on this thread: they go back to the worker's (closed) cache's arena
    print_metric(&alloc);
    drop((held, again));
    println!("after releasing everything:");
    print_metric(&alloc);
}

fn print_metric(alloc: &PooledAllocator) {
    let m = alloc.metric();
    println!(
        "  used direct memory {} B, thread caches {}, chunk size {} B",
        m.used_direct_memory(),
        m.num_thread_local_caches(),
        m.chunk_size()
    );
    for (i, a) in m.direct_arenas().iter().enumerate() {
        println!(
            "  direct arena {i}: caches {} allocations {} (small {} normal {} huge {}) deallocations {} active {} active bytes {}",
            a.num_thread_caches(),
            a.num_allocations(),
            a.num_small_allocations(),
            a.num_normal_allocations(),
            a.num_huge_allocations(),
            a.num_deallocations(),
            a.num_active_allocations(),
            a.num_active_bytes()
        );
    }
}
