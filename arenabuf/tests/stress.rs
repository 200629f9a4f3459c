//! Two threads allocate and release a million buffers each, sizes 1 B to
//! 5 MiB, a third of them released on the other thread. Every buffer carries
//! a pattern that is checked before it is released: any overlap between
//! live buffers, or memory reused while still live, breaks a pattern.

use std::sync::mpsc;
use std::thread;

use arenabuf::{ByteBuf, PooledAllocator};

const OPS_PER_THREAD: usize = 1_000_000;
const SLOTS: usize = 512;
const MAX_SIZE: usize = 5 << 20;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// The positions that carry the pattern: the first and last 64 bytes and
/// every 4096th byte in between (writing all of a 5 MiB buffer a million
/// times would take minutes and find nothing more).
fn pattern_positions(len: usize) -> impl Iterator<Item = usize> {
    let head = 0..len.min(64);
    let tail = len.saturating_sub(64).max(64)..len;
    let stride = (64..len.saturating_sub(64)).step_by(4096);
    head.chain(stride).chain(tail)
}

fn stamp(buf: &mut ByteBuf, tag: u8) {
    let bytes = buf.as_mut_slice();
    for i in pattern_positions(bytes.len()) {
        bytes[i] = tag ^ (i as u8);
    }
}

fn check(buf: &ByteBuf, tag: u8) {
    let bytes = buf.as_slice();
    for i in pattern_positions(bytes.len()) {
        assert_eq!(bytes[i], tag ^ (i as u8), "corrupted byte {i} of a {}-byte buffer", bytes.len());
    }
}

fn random_size(rng: &mut XorShift) -> usize {
    let shift = rng.next() % 23; // 1 B .. 4 MiB bases: log-uniform
    let base = 1usize << shift;
    (base + rng.next() as usize % base).min(MAX_SIZE)
}

fn worker(
    alloc: PooledAllocator,
    seed: u64,
    to_peer: mpsc::SyncSender<(ByteBuf, u8)>,
    from_peer: mpsc::Receiver<(ByteBuf, u8)>,
) {
    let mut rng = XorShift(seed);
    let mut slots: Vec<Option<(ByteBuf, u8)>> = (0..SLOTS).map(|_| None).collect();
    for op in 0..OPS_PER_THREAD {
        // Release what the peer sent us (allocated on the other thread).
        while let Ok((buf, tag)) = from_peer.try_recv() {
            check(&buf, tag);
            drop(buf);
        }
        let slot = rng.next() as usize % SLOTS;
        if let Some((buf, tag)) = slots[slot].take() {
            check(&buf, tag);
            if rng.next() % 3 == 0 {
                // A third go to the other thread to be released there.
                if let Err(mpsc::TrySendError::Full((buf, _)) | mpsc::TrySendError::Disconnected((buf, _))) =
                    to_peer.try_send((buf, tag))
                {
                    drop(buf);
                }
            }
        }
        let size = random_size(&mut rng);
        let mut buf = if op % 2 == 0 { alloc.direct_buffer(size) } else { alloc.heap_buffer(size) };
        assert!(buf.capacity() >= size);
        let tag = rng.next() as u8;
        stamp(&mut buf, tag);
        slots[slot] = Some((buf, tag));
    }
    for (buf, tag) in slots.into_iter().flatten() {
        check(&buf, tag);
    }
    drop(to_peer);
    for (buf, tag) in from_peer {
        check(&buf, tag);
    }
}

#[test]
fn two_threads_a_million_operations_each_no_corruption_and_nothing_left_active() {
    let alloc = PooledAllocator::builder().heap_arenas(2).direct_arenas(2).build().unwrap();
    let (a_tx, a_rx) = mpsc::sync_channel(256);
    let (b_tx, b_rx) = mpsc::sync_channel(256);
    let threads = [(1, a_tx, b_rx), (2, b_tx, a_rx)].map(|(seed, tx, rx)| {
        let alloc = alloc.clone();
        thread::spawn(move || worker(alloc, 0x9E37_79B9_7F4A_7C15 + seed, tx, rx))
    });
    for t in threads {
        t.join().unwrap();
    }
    let metric = alloc.metric();
    assert_eq!(metric.num_thread_local_caches(), 0);
    for arena in metric.heap_arenas().iter().chain(metric.direct_arenas()) {
        assert!(arena.num_allocations() > 0);
        assert_eq!(arena.num_active_allocations(), 0, "{arena:?}");
    }
}
