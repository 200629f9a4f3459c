//! `arenabuf stats [--svg FILE]`: runs a mixed workload, prints the pool's
//! `dump_stats()` report and, with `--svg`, writes the picture of its chunks.

use arenabuf::{ByteBuf, PooledAllocator};

const USAGE: &str = "usage: arenabuf stats [--svg FILE]";

/// Runs the `stats` command with the arguments after `stats`.
pub fn run(args: &[String]) {
    let mut svg_path = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--svg" => match args.next() {
                Some(path) => svg_path = Some(path.clone()),
                None => fail("--svg needs a file name"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => fail(&format!("unknown argument {other:?}")),
        }
    }
    let alloc = PooledAllocator::builder().heap_arenas(2).direct_arenas(2).build().expect("valid settings");
    let held = mixed_workload(&alloc);
    println!("after a mixed workload on two threads, {} buffers still held:", held.len());
    print!("{}", alloc.dump_stats());
    if let Some(path) = svg_path {
        match std::fs::write(&path, alloc.stats_svg()) {
            Ok(()) => println!("wrote the picture of the chunks to {path}"),
            Err(err) => fail(&format!("cannot write {path}: {err}")),
        }
    }
    drop(held);
    alloc.trim();
    let metric = alloc.metric();
    println!(
        "after releasing everything and trim(): used direct {} B, pinned direct {} B",
        metric.used_direct_memory(),
        metric.pinned_direct_memory()
    );
}

fn fail(message: &str) -> ! {
    eprintln!("arenabuf stats: {message}\n{USAGE}");
    std::process::exit(2);
}

/// Allocates a mix of small, normal and huge buffers on two threads,
/// releases about two thirds in a scattered order, and returns the rest, so
/// that the chunks show partly used runs and subpages.
fn mixed_workload(alloc: &PooledAllocator) -> Vec<ByteBuf> {
    const SIZES: [usize; 10] = [64, 300, 1500, 4096, 9000, 24_000, 40_000, 100_000, 600_000, 5 << 20];
    let worker = {
        let alloc = alloc.clone();
        std::thread::spawn(move || workload_on_this_thread(&alloc, &SIZES, 7))
    };
    let mut held = workload_on_this_thread(alloc, &SIZES, 3);
    held.extend(worker.join().expect("worker thread"));
    held
}

fn workload_on_this_thread(alloc: &PooledAllocator, sizes: &[usize], seed: u64) -> Vec<ByteBuf> {
    let mut state = seed;
    let mut next = move || {
        // xorshift64: a fixed, repeatable mix.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut held = Vec::new();
    for _ in 0..3000 {
        let size = sizes[(next() % sizes.len() as u64) as usize];
        let size = if size > 1 << 20 && next() % 16 != 0 { size / 64 } else { size };
        let buf = if next() % 3 == 0 { alloc.heap_buffer(size) } else { alloc.direct_buffer(size) };
        held.push(buf);
        if held.len() > 300 || next() % 2 == 0 {
            let victim = (next() % held.len() as u64) as usize;
            held.swap_remove(victim);
        }
    }
    held
}
