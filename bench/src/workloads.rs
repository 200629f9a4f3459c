//! The BENCH_SPEC v1.1 workloads, generic over the implementation.

use std::hint::black_box;
use std::sync::{mpsc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::impls::BufAlloc;

/// Each run's seed (each thread adds its index).
pub const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
/// Slots of the `window` workloads.
const WINDOW_SLOTS: usize = 8192;
/// Buffers per message of `xthread`.
const BATCH: usize = 64;
/// Messages the `xthread` channel holds.
const CHANNEL_BATCHES: usize = 16;

/// BENCH_SPEC's xorshift64.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed)
    }

    #[inline]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// A workload's buffer size: fixed, or BENCH_SPEC's log-uniform `mixed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Fixed(usize),
    Mixed,
}

impl Size {
    #[inline]
    pub fn draw(self, rng: &mut XorShift) -> usize {
        match self {
            Size::Fixed(size) => size,
            Size::Mixed => {
                let p = 4 + rng.next() % 13;
                (1usize << p) + (rng.next() % (1 << p)) as usize
            }
        }
    }

    pub fn label(self) -> String {
        match self {
            Size::Fixed(size) => size.to_string(),
            Size::Mixed => "mixed".to_string(),
        }
    }

    /// The largest size drawn, for byte budgets.
    pub fn max(self) -> usize {
        match self {
            Size::Fixed(size) => size,
            Size::Mixed => 131_071,
        }
    }
}

/// Writes one u64 at offset 0 and one at offset `size - 8` (one byte for
/// sizes under 8).
#[inline]
fn touch(ptr: *mut u8, size: usize, value: u64) {
    // SAFETY: `ptr` starts at least `size` writable bytes (BufAlloc::ptr).
    unsafe {
        if size >= 8 {
            ptr.cast::<u64>().write_unaligned(value);
            ptr.add(size - 8).cast::<u64>().write_unaligned(value);
        } else if size > 0 {
            ptr.write(value as u8);
        }
    }
}

/// Reads back the u64 at offset 0, for the checksum.
#[inline]
fn read_head(ptr: *mut u8, size: usize) -> u64 {
    // SAFETY: as in `touch`; the bytes were written by `touch`.
    unsafe {
        if size >= 8 {
            ptr.cast::<u64>().read_unaligned()
        } else if size > 0 {
            u64::from(ptr.read())
        } else {
            0
        }
    }
}

/// The time a workload took and a checksum of the bytes it touched.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    pub elapsed: Duration,
    pub ops: u64,
    pub checksum: u64,
}

impl Outcome {
    pub fn ns_per_op(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.ops.max(1) as f64
    }
}

/// `pairs` hot pairs of 256 bytes with nothing else in the loop but the
/// buffer's address summed (and, with `touch_ends`, 16 bytes written): the loop
/// whose instructions `scripts/callgrind.sh` counts, for any implementation.
/// The first pair, which fills a cache, runs before the count.
pub fn hot_pairs<A: BufAlloc>(imp: &A, pairs: u64, touch_ends: bool) -> u64 {
    imp.release(imp.alloc(256));
    let mut checksum = 0u64;
    for i in 0..pairs {
        let mut buf = imp.alloc(256);
        let ptr = A::ptr(&mut buf);
        if touch_ends {
            touch(ptr, 256, i);
        }
        checksum = checksum.wrapping_add(black_box(ptr as u64));
        imp.release(buf);
    }
    checksum
}

/// `hot`: allocate, touch, release at once. `fill` writes every byte.
pub fn hot<A: BufAlloc>(imp: &A, size: Size, ops: u64, fill: bool) -> Outcome {
    let mut rng = XorShift::new(SEED);
    let mut checksum = 0u64;
    let start = Instant::now();
    for i in 0..ops {
        let s = size.draw(&mut rng);
        let mut buf = imp.alloc(s);
        let ptr = A::ptr(&mut buf);
        if fill {
            // SAFETY: `ptr` starts at least `s` writable bytes.
            unsafe { ptr.write_bytes(i as u8, s) };
        } else {
            touch(ptr, s, i);
        }
        black_box(&mut buf);
        checksum = checksum.wrapping_add(read_head(ptr, s));
        imp.release(buf);
    }
    Outcome { elapsed: start.elapsed(), ops, checksum }
}

/// `window`: a random slot's buffer is released and replaced.
pub fn window<A: BufAlloc>(imp: &A, size: Size, ops: u64, seed: u64) -> Outcome {
    let mut rng = XorShift::new(seed);
    let mut slots: Vec<Option<A::Buf>> = (0..WINDOW_SLOTS).map(|_| None).collect();
    let mut checksum = 0u64;
    let start = Instant::now();
    for i in 0..ops {
        let slot = (rng.next() % WINDOW_SLOTS as u64) as usize;
        if let Some(old) = slots[slot].take() {
            imp.release(old);
        }
        let s = size.draw(&mut rng);
        let mut buf = imp.alloc(s);
        let ptr = A::ptr(&mut buf);
        touch(ptr, s, i);
        checksum = checksum.wrapping_add(read_head(ptr, s));
        // No black box: the slots are released after the loop, so no
        // allocation can be optimised away, and a black box forces two more
        // copies of a wide handle through the stack that a user's code does
        // not make (19 of `floor-wide`'s 126 instructions per operation).
        slots[slot] = Some(buf);
    }
    let elapsed = start.elapsed();
    for buf in slots.into_iter().flatten() {
        imp.release(buf);
    }
    Outcome { elapsed, ops, checksum }
}

/// `window-mt`: `threads` threads each run `window` on their own slots; the
/// figure is wall time over all operations. The workers read the clock
/// themselves (first start to last end): with as many workers as cores, a
/// coordinating thread could be scheduled late and miss part of the run.
pub fn window_mt<A: BufAlloc>(imp: &A, size: Size, ops_per_thread: u64, threads: usize) -> Outcome {
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant, u64)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let outcome = window(imp, size, ops_per_thread, SEED + t as u64);
                    (start, start + outcome.elapsed, outcome.checksum)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("window thread")).collect()
    });
    let first_start = spans.iter().map(|s| s.0).min().expect("at least one thread");
    let last_end = spans.iter().map(|s| s.1).max().expect("at least one thread");
    let checksum = spans.iter().map(|s| s.2).fold(0u64, u64::wrapping_add);
    Outcome { elapsed: last_end - first_start, ops: ops_per_thread * threads as u64, checksum }
}

/// `xthread`: one thread allocates and touches, another reads and releases;
/// buffers travel in batches of 64 over a bounded channel of 16 batches.
pub fn xthread<A: BufAlloc>(imp: &A, size: Size, buffers: u64) -> Outcome {
    let (tx, rx) = mpsc::sync_channel::<Vec<A::Buf>>(CHANNEL_BATCHES);
    let start = Instant::now();
    let checksum = thread::scope(|scope| {
        let consumer = scope.spawn(move || {
            let mut checksum = 0u64;
            for batch in rx {
                for mut buf in batch {
                    let ptr = A::ptr(&mut buf);
                    // SAFETY: the producer touched at least 8 bytes (sizes >= 16).
                    checksum = checksum.wrapping_add(unsafe { ptr.cast::<u64>().read_unaligned() });
                    imp.release(buf);
                }
            }
            checksum
        });
        let mut rng = XorShift::new(SEED);
        let mut batch = Vec::with_capacity(BATCH);
        for i in 0..buffers {
            let s = size.draw(&mut rng);
            let mut buf = imp.alloc(s);
            touch(A::ptr(&mut buf), s, i);
            batch.push(buf);
            if batch.len() == BATCH {
                tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))).expect("consumer alive");
            }
        }
        if !batch.is_empty() {
            tx.send(batch).expect("consumer alive");
        }
        drop(tx);
        consumer.join().expect("consumer thread")
    });
    Outcome { elapsed: start.elapsed(), ops: buffers, checksum }
}
