//! `ByteBuf` against what Netty's buffer tests cover: primitives in both
//! byte orders at the edges of the capacity, index errors and their checked
//! variants, growth steps, shrinking in place versus moving, the maximum
//! capacity, sharing and its lifetimes, the ecosystem traits, and a model
//! test of random operation sequences.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};

use arenabuf::{AllocError, ByteBuf, PooledAllocator};
use bytes::{Buf, BufMut, Bytes};
use proptest::prelude::*;

fn alloc() -> PooledAllocator {
    PooledAllocator::builder().heap_arenas(1).direct_arenas(1).build().unwrap()
}

// ---- primitives --------------------------------------------------------------

/// For one primitive: round trips at index 0 and at the last index that
/// fits, the byte order on the wire, and the first index that does not fit.
macro_rules! round_trip {
    ($name:ident, $ty:ty, $to:ident, $get:ident, $try_get:ident, $set:ident, $try_set:ident,
     $read:ident, $try_read:ident, $write:ident, $try_write:ident, [$($value:expr),+]) => {
        #[test]
        fn $name() {
            const SIZE: usize = std::mem::size_of::<$ty>();
            const CAPACITY: usize = 48; // a size class of its own, a multiple of every size
            let alloc = alloc();
            for value in [$($value),+] {
                let value: $ty = value;
                let mut buf = alloc.try_heap_buffer(CAPACITY, CAPACITY).unwrap();
                let last = CAPACITY - SIZE;
                buf.$set(0, value);
                buf.$set(last, value);
                assert_eq!(buf.$get(0).to_ne_bytes(), value.to_ne_bytes());
                assert_eq!(buf.$get(last).to_ne_bytes(), value.to_ne_bytes());
                assert_eq!(&buf.as_slice()[last..], &value.$to()[..], "byte order");
                assert_eq!(buf.$try_get(last + 1), None);
                assert_eq!(buf.$try_get(usize::MAX), None);
                assert!(buf.$try_set(last + 1, value).is_err());
                assert_eq!((buf.reader_index(), buf.writer_index()), (0, 0), "absolute access keeps the indexes");

                // Relative: fill the capacity exactly, then one more fails.
                for _ in 0..CAPACITY / SIZE {
                    buf.$write(value);
                }
                assert_eq!(buf.writer_index(), CAPACITY / SIZE * SIZE);
                assert_eq!(
                    buf.$try_write(value),
                    Err(AllocError::CapacityOverflow { requested: CAPACITY + SIZE, max_capacity: CAPACITY })
                );
                for _ in 0..CAPACITY / SIZE {
                    assert_eq!(buf.$read().to_ne_bytes(), value.to_ne_bytes());
                }
                assert_eq!(buf.$try_read(), None);
                assert_eq!(buf.reader_index(), buf.writer_index());
            }
        }
    };
}

round_trip!(
    u8_round_trips,
    u8,
    to_be_bytes,
    get_u8_at,
    try_get_u8_at,
    set_u8_at,
    try_set_u8_at,
    read_u8,
    try_read_u8,
    write_u8,
    try_write_u8,
    [0, 1, 0x7F, 0x80, u8::MAX]
);
round_trip!(
    i8_round_trips,
    i8,
    to_be_bytes,
    get_i8_at,
    try_get_i8_at,
    set_i8_at,
    try_set_i8_at,
    read_i8,
    try_read_i8,
    write_i8,
    try_write_i8,
    [0, -1, i8::MIN, i8::MAX]
);
round_trip!(
    u16_round_trips,
    u16,
    to_be_bytes,
    get_u16_at,
    try_get_u16_at,
    set_u16_at,
    try_set_u16_at,
    read_u16,
    try_read_u16,
    write_u16,
    try_write_u16,
    [0, 0x0102, u16::MAX]
);
round_trip!(
    u16_le_round_trips,
    u16,
    to_le_bytes,
    get_u16_le_at,
    try_get_u16_le_at,
    set_u16_le_at,
    try_set_u16_le_at,
    read_u16_le,
    try_read_u16_le,
    write_u16_le,
    try_write_u16_le,
    [0, 0x0102, u16::MAX]
);
round_trip!(
    i16_round_trips,
    i16,
    to_be_bytes,
    get_i16_at,
    try_get_i16_at,
    set_i16_at,
    try_set_i16_at,
    read_i16,
    try_read_i16,
    write_i16,
    try_write_i16,
    [0, -2, i16::MIN, i16::MAX]
);
round_trip!(
    i16_le_round_trips,
    i16,
    to_le_bytes,
    get_i16_le_at,
    try_get_i16_le_at,
    set_i16_le_at,
    try_set_i16_le_at,
    read_i16_le,
    try_read_i16_le,
    write_i16_le,
    try_write_i16_le,
    [0, -2, i16::MIN, i16::MAX]
);
round_trip!(
    u32_round_trips,
    u32,
    to_be_bytes,
    get_u32_at,
    try_get_u32_at,
    set_u32_at,
    try_set_u32_at,
    read_u32,
    try_read_u32,
    write_u32,
    try_write_u32,
    [0, 0x0102_0304, u32::MAX]
);
round_trip!(
    u32_le_round_trips,
    u32,
    to_le_bytes,
    get_u32_le_at,
    try_get_u32_le_at,
    set_u32_le_at,
    try_set_u32_le_at,
    read_u32_le,
    try_read_u32_le,
    write_u32_le,
    try_write_u32_le,
    [0, 0x0102_0304, u32::MAX]
);
round_trip!(
    i32_round_trips,
    i32,
    to_be_bytes,
    get_i32_at,
    try_get_i32_at,
    set_i32_at,
    try_set_i32_at,
    read_i32,
    try_read_i32,
    write_i32,
    try_write_i32,
    [0, -3, i32::MIN, i32::MAX]
);
round_trip!(
    i32_le_round_trips,
    i32,
    to_le_bytes,
    get_i32_le_at,
    try_get_i32_le_at,
    set_i32_le_at,
    try_set_i32_le_at,
    read_i32_le,
    try_read_i32_le,
    write_i32_le,
    try_write_i32_le,
    [0, -3, i32::MIN, i32::MAX]
);
round_trip!(
    u64_round_trips,
    u64,
    to_be_bytes,
    get_u64_at,
    try_get_u64_at,
    set_u64_at,
    try_set_u64_at,
    read_u64,
    try_read_u64,
    write_u64,
    try_write_u64,
    [0, 0x0102_0304_0506_0708, u64::MAX]
);
round_trip!(
    u64_le_round_trips,
    u64,
    to_le_bytes,
    get_u64_le_at,
    try_get_u64_le_at,
    set_u64_le_at,
    try_set_u64_le_at,
    read_u64_le,
    try_read_u64_le,
    write_u64_le,
    try_write_u64_le,
    [0, 0x0102_0304_0506_0708, u64::MAX]
);
round_trip!(
    i64_round_trips,
    i64,
    to_be_bytes,
    get_i64_at,
    try_get_i64_at,
    set_i64_at,
    try_set_i64_at,
    read_i64,
    try_read_i64,
    write_i64,
    try_write_i64,
    [0, -4, i64::MIN, i64::MAX]
);
round_trip!(
    i64_le_round_trips,
    i64,
    to_le_bytes,
    get_i64_le_at,
    try_get_i64_le_at,
    set_i64_le_at,
    try_set_i64_le_at,
    read_i64_le,
    try_read_i64_le,
    write_i64_le,
    try_write_i64_le,
    [0, -4, i64::MIN, i64::MAX]
);
round_trip!(
    f32_round_trips,
    f32,
    to_be_bytes,
    get_f32_at,
    try_get_f32_at,
    set_f32_at,
    try_set_f32_at,
    read_f32,
    try_read_f32,
    write_f32,
    try_write_f32,
    [0.0, -1.5, f32::MAX, f32::NAN, f32::NEG_INFINITY]
);
round_trip!(
    f32_le_round_trips,
    f32,
    to_le_bytes,
    get_f32_le_at,
    try_get_f32_le_at,
    set_f32_le_at,
    try_set_f32_le_at,
    read_f32_le,
    try_read_f32_le,
    write_f32_le,
    try_write_f32_le,
    [0.0, -1.5, f32::MAX, f32::NAN, f32::NEG_INFINITY]
);
round_trip!(
    f64_round_trips,
    f64,
    to_be_bytes,
    get_f64_at,
    try_get_f64_at,
    set_f64_at,
    try_set_f64_at,
    read_f64,
    try_read_f64,
    write_f64,
    try_write_f64,
    [0.0, -1.5, f64::MIN_POSITIVE, f64::NAN, f64::INFINITY]
);
round_trip!(
    f64_le_round_trips,
    f64,
    to_le_bytes,
    get_f64_le_at,
    try_get_f64_le_at,
    set_f64_le_at,
    try_set_f64_le_at,
    read_f64_le,
    try_read_f64_le,
    write_f64_le,
    try_write_f64_le,
    [0.0, -1.5, f64::MIN_POSITIVE, f64::NAN, f64::INFINITY]
);

#[test]
fn big_and_little_endian_lay_out_bytes_differently() {
    let mut buf = alloc().heap_buffer(16);
    buf.write_u32(0x0102_0304);
    buf.write_u32_le(0x0102_0304);
    buf.write_i16(-2);
    buf.write_u64_le(1);
    assert_eq!(&buf[..], &[1, 2, 3, 4, 4, 3, 2, 1, 0xFF, 0xFE, 1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(buf.get_u32_le_at(0), 0x0403_0201);
    assert_eq!(buf.get_u16_at(8), 0xFFFE);
}

// ---- index errors ------------------------------------------------------------

#[test]
#[should_panic(
    expected = "index 13 and length 4 out of bounds: expected 0 <= index and index + length <= 16 (capacity 16)"
)]
fn get_past_the_capacity_panics_naming_index_length_and_capacity() {
    let _ = alloc().heap_buffer(16).get_u32_at(13);
}

#[test]
#[should_panic(
    expected = "index 16 and length 1 out of bounds: expected 0 <= index and index + length <= 16 (capacity 16)"
)]
fn set_past_the_capacity_panics() {
    alloc().heap_buffer(16).set_u8_at(16, 1);
}

#[test]
#[should_panic(
    expected = "index 2 and length 8 out of bounds: expected 0 <= index and index + length <= 3 (capacity 16)"
)]
fn reading_more_than_is_readable_panics() {
    let mut buf = alloc().heap_buffer(16);
    buf.write_bytes(b"abc");
    buf.read_u16();
    let _ = buf.read_u64();
}

#[test]
#[should_panic(
    expected = "index 4 and length 0 out of bounds: expected 0 <= index and index + length <= 3 (capacity 16)"
)]
fn a_reader_index_past_the_writer_index_panics() {
    let mut buf = alloc().heap_buffer(16);
    buf.write_bytes(b"abc");
    buf.set_reader_index(4);
}

#[test]
#[should_panic(
    expected = "index 1 and length 0 out of bounds: expected 2 <= index and index + length <= 16 (capacity 16)"
)]
fn a_writer_index_below_the_reader_index_panics() {
    let mut buf = alloc().heap_buffer(16);
    buf.write_bytes(b"abc");
    buf.set_reader_index(2);
    buf.set_writer_index(1);
}

#[test]
#[should_panic(
    expected = "index 0 and length 4 out of bounds: expected 0 <= index and index + length <= 3 (capacity 16)"
)]
fn splitting_past_the_readable_bytes_panics() {
    let mut buf = alloc().heap_buffer(16);
    buf.write_bytes(b"abc");
    let _ = buf.split_to(4);
}

#[test]
#[should_panic(
    expected = "index 1 and length 3 out of bounds: expected 0 <= index and index + length <= 3 (capacity 16)"
)]
fn a_slice_past_the_readable_bytes_panics() {
    let mut buf = alloc().heap_buffer(16);
    buf.write_bytes(b"abc");
    let _ = buf.slice(1..4);
}

#[test]
fn checked_variants_report_instead_of_panicking_and_change_nothing() {
    let mut buf = alloc().heap_buffer(8);
    buf.write_bytes(b"abcd");
    let err = buf.try_set_writer_index(9).unwrap_err();
    assert_eq!((err.index(), err.length(), err.capacity()), (9, 0, 8));
    assert!(buf.try_set_reader_index(5).is_err());
    assert!(buf.try_get_bytes_at(5, &mut [0; 4]).is_err());
    assert!(buf.try_set_bytes_at(7, b"xy").is_err());
    assert!(buf.try_read_bytes(&mut [0; 5]).is_err());
    assert_eq!(buf.try_read_u64(), None);
    assert_eq!(buf.try_get_u64_at(1), None);
    assert_eq!((buf.reader_index(), buf.writer_index(), &buf[..]), (0, 4, &b"abcd"[..]));
    assert_eq!(buf.try_read_u32(), Some(u32::from_be_bytes(*b"abcd")));
}

// ---- growth, shrinking, maximum capacity -----------------------------------------

#[test]
fn growth_fills_the_size_class_in_place_then_follows_the_policy() {
    let alloc = alloc();
    let mut buf = alloc.try_heap_buffer(150, 500).unwrap();
    buf.set_writer_index(100);
    assert_eq!(buf.max_fast_writable_bytes(), 60, "150 is served from the 160-byte class");
    let addr = buf.memory_address();
    buf.write_bytes(&[1; 60]);
    assert_eq!((buf.capacity(), buf.memory_address()), (160, addr), "grown in place");
    assert_eq!(buf.max_fast_writable_bytes(), 0);
    buf.write_u8(2);
    assert_eq!(buf.capacity(), 256, "the next power of two");
    assert_ne!(buf.memory_address(), addr);
    assert_eq!(&buf[100..], &[[1; 60].as_slice(), &[2]].concat()[..]);
    buf.set_writer_index(256);
    buf.write_u8(3);
    assert_eq!(buf.capacity(), 500, "never past the maximum capacity");
}

#[test]
fn growth_starts_at_64_bytes_and_steps_by_4_mib_above_4_mib() {
    let alloc = alloc();
    let mut buf = alloc.try_heap_buffer(0, 18 << 20).unwrap();
    buf.write_u8(1);
    assert_eq!(buf.capacity(), 16, "a 0-byte request is served from the 16-byte class: grown in place");
    buf.set_writer_index(16);
    buf.write_u8(1);
    assert_eq!(buf.capacity(), 64, "growth starts at 64");
    buf.ensure_writable(100);
    assert_eq!(buf.capacity(), 128);
    buf.set_writer_index(1);
    buf.ensure_writable((4 << 20) - 1);
    assert_eq!(buf.capacity(), 4 << 20);
    buf.set_writer_index(4 << 20);
    buf.ensure_writable(1);
    assert_eq!(buf.capacity(), 8 << 20, "4 MiB steps above 4 MiB");
    buf.set_writer_index(8 << 20);
    buf.ensure_writable((9 << 20) + 1);
    assert_eq!(buf.capacity(), 18 << 20, "20 MiB would pass the maximum capacity");
}

#[test]
fn shrinking_keeps_a_region_that_still_fits_and_moves_out_of_one_that_does_not() {
    let alloc = alloc();
    let mut buf = alloc.heap_buffer(1000); // a 1024-byte class
    let addr = buf.memory_address();
    buf.set_capacity(513);
    assert_eq!(buf.memory_address(), addr, "more than half of a region over 512 bytes: kept");
    buf.set_capacity(512);
    assert_ne!(buf.memory_address(), addr, "half: moved");
    assert_eq!(buf.max_fast_writable_bytes(), 512);

    let mut small = alloc.heap_buffer(500); // a 512-byte class
    small.write_bytes(&[9; 500]);
    small.set_reader_index(498);
    let addr = small.memory_address();
    small.set_capacity(497);
    assert_eq!(small.memory_address(), addr, "within 16 bytes of a small region: kept");
    assert_eq!((small.reader_index(), small.writer_index()), (497, 497), "indexes clamped");
    small.set_writer_index(497);
    small.set_reader_index(10);
    small.set_capacity(496);
    assert_ne!(small.memory_address(), addr, "16 bytes short: moved to a smaller class");
    assert_eq!((small.reader_index(), small.writer_index(), small.capacity()), (10, 496, 496));
    assert!(small[..].iter().all(|&b| b == 9), "the bytes moved with the buffer");
}

#[test]
fn the_maximum_capacity_is_enforced_everywhere() {
    let alloc = alloc();
    let mut buf = alloc.try_heap_buffer(8, 16).unwrap();
    let overflow = |requested| AllocError::CapacityOverflow { requested, max_capacity: 16 };
    assert_eq!(buf.try_set_capacity(17), Err(overflow(17)));
    assert_eq!(buf.try_ensure_writable(17), Err(overflow(17)));
    assert_eq!(buf.try_write_bytes(&[0; 17]), Err(overflow(17)));
    buf.write_bytes(&[0; 12]);
    assert_eq!(buf.try_write_u64(1), Err(overflow(20)));
    assert_eq!(buf.max_writable_bytes(), 4);
    assert_eq!(buf.remaining_mut(), 4);
    assert_eq!(buf.write(&[1; 10]).unwrap(), 4, "io::Write takes what fits");
    assert_eq!(buf.write(&[1; 10]).unwrap(), 0);
    assert!(buf.write_all(&[1]).is_err());
    assert_eq!((buf.capacity(), buf.writer_index()), (16, 16));
    assert_eq!(buf.chunk_mut().len(), 0, "nothing writable and no room to grow");
}

#[test]
#[should_panic(expected = "capacity 17 exceeds the maximum capacity 16")]
fn writing_past_the_maximum_capacity_panics() {
    let mut buf = alloc().try_heap_buffer(8, 16).unwrap();
    buf.write_bytes(&[0; 17]);
}

#[test]
#[should_panic(expected = "capacity 20 exceeds the maximum capacity 16")]
fn setting_a_capacity_past_the_maximum_panics() {
    alloc().try_heap_buffer(8, 16).unwrap().set_capacity(20);
}

#[test]
#[should_panic(expected = "capacity 17 exceeds the maximum capacity 16")]
fn extending_past_the_maximum_capacity_panics() {
    let mut buf = alloc().try_heap_buffer(8, 16).unwrap();
    buf.extend(std::iter::repeat(1u8).take(17));
}

#[test]
fn clear_and_discard_read_bytes_move_indexes_like_netty() {
    let mut buf = alloc().heap_buffer(8);
    buf.write_bytes(b"abcdef");
    buf.read_u16();
    buf.discard_read_bytes();
    assert_eq!((buf.reader_index(), buf.writer_index(), &buf[..]), (0, 4, &b"cdef"[..]));
    buf.read_u32();
    buf.discard_read_bytes();
    assert_eq!((buf.reader_index(), buf.writer_index(), buf.capacity()), (0, 0, 8));
    buf.write_bytes(b"xy");
    buf.clear();
    assert_eq!((buf.reader_index(), buf.writer_index(), buf.readable_bytes(), buf.writable_bytes()), (0, 0, 0, 8));
    buf.write_zero(3);
    assert_eq!(&buf[..], &[0, 0, 0]);
}

#[test]
fn index_of_searches_forward_and_backward_within_the_capacity() {
    let mut buf = alloc().heap_buffer(8);
    buf.write_bytes(b"a.b.c");
    assert_eq!(buf.index_of(0, 5, b'.'), Some(1));
    assert_eq!(buf.index_of(2, 5, b'.'), Some(3));
    assert_eq!(buf.index_of(5, 0, b'.'), Some(3));
    assert_eq!(buf.index_of(3, 0, b'.'), Some(1));
    assert_eq!(buf.index_of(0, 5, b'z'), None);
    assert_eq!(buf.index_of(2, 2, b'b'), None);
}

// ---- sharing and lifetimes ---------------------------------------------------------

#[test]
fn frozen_bytes_and_split_parts_outlive_the_buffer_and_the_allocator() {
    // Plain threads keep no cache: a released region goes straight back to
    // the arena, where the metrics see it.
    let alloc = PooledAllocator::builder().heap_arenas(1).use_cache_for_all_threads(false).build().unwrap();
    let active = |alloc: &PooledAllocator| alloc.metric().heap_arenas()[0].num_active_allocations();
    let watcher = alloc.clone();

    let mut buf = alloc.heap_buffer(64);
    buf.write_bytes(b"first|second|third");
    let first = buf.split_to(6);
    let third = buf.split_off(7);
    let second = buf.freeze();
    let view = {
        let mut third = third;
        let view = third.slice(..);
        drop(third);
        view
    };
    assert_eq!(active(&watcher), 1, "one region for all the parts");
    drop(alloc);

    assert_eq!((&first[..], &second[..], &view[..]), (&b"first|"[..], &b"second|"[..], &b"third"[..]));
    let first_bytes = std::thread::spawn(move || first.freeze()).join().unwrap();
    let second_clone = second.clone();
    drop(second);
    assert_eq!(active(&watcher), 1);
    drop(view);
    assert_eq!(active(&watcher), 1);
    drop(first_bytes);
    assert_eq!(active(&watcher), 1, "a clone of the frozen part is alive");
    assert_eq!(&second_clone[..], b"second|");
    drop(second_clone);
    assert_eq!(active(&watcher), 0, "back in the pool after the last part");
}

#[test]
fn ref_cnt_counts_the_parts_views_and_frozen_owners() {
    let mut buf = alloc().heap_buffer(32);
    buf.write_bytes(b"abcdefgh");
    assert_eq!(buf.ref_cnt(), 1);
    let head = buf.split_to(2);
    let view = buf.slice(..2);
    assert_eq!((buf.ref_cnt(), head.ref_cnt(), view.clone().into_bytes().len()), (3, 3, 2));
    let frozen = head.freeze();
    let frozen_clone = frozen.clone();
    assert_eq!(buf.ref_cnt(), 3, "clones of one `Bytes` share one owner");
    drop((frozen, frozen_clone, view));
    assert_eq!(buf.ref_cnt(), 1);
}

#[test]
fn a_direct_buffer_grows_into_direct_memory() {
    let mut buf = alloc().direct_buffer(16);
    buf.write_bytes(b"0123456789abcdef");
    let head = buf.split_to(4);
    buf.write_bytes(&[7; 100]);
    assert!(buf.is_direct() && head.is_direct());
    assert_eq!(&buf[..12], b"456789abcdef");
}

// ---- ecosystem traits ------------------------------------------------------------

#[test]
fn buf_and_buf_mut_move_the_indexes() {
    let mut buf = alloc().heap_buffer(4);
    buf.put_u32(0xDEAD_BEEF);
    buf.put_slice(b"tail");
    buf.put_bytes(b'!', 2);
    assert_eq!(buf.writer_index(), 10);
    assert_eq!(buf.remaining(), 10);
    assert_eq!(buf.get_u32(), 0xDEAD_BEEF);
    let addr = buf.memory_address();
    let tail = buf.copy_to_bytes(4);
    assert_eq!((&tail[..], tail.as_ptr() as usize), (&b"tail"[..], addr + 4), "zero copy");
    buf.advance(1);
    assert_eq!(buf.chunk(), b"!");
    let mut out = Vec::new();
    out.put(&mut buf);
    assert_eq!((out, buf.remaining()), (b"!".to_vec(), 0));
}

#[test]
fn chunk_mut_grows_a_full_buffer_and_advance_mut_publishes_bytes() {
    let mut buf = alloc().heap_buffer(0);
    let chunk = buf.chunk_mut();
    assert_eq!(chunk.len(), 16, "grown into the 16-byte class a 0-byte request gets");
    chunk[..3].copy_from_slice(b"abc");
    // SAFETY: the three bytes were just written.
    unsafe { buf.advance_mut(3) };
    assert_eq!(&buf[..], b"abc");
}

#[test]
fn std_io_read_and_write_work_with_io_copy() {
    let alloc = alloc();
    let mut src = alloc.heap_buffer(8);
    src.write_all(b"stream of bytes").unwrap();
    let mut dst = alloc.heap_buffer(2);
    assert_eq!(std::io::copy(&mut src, &mut dst).unwrap(), 15);
    assert_eq!(&dst[..], b"stream of bytes");
    let mut rest = [0; 4];
    assert_eq!(src.read(&mut rest).unwrap(), 0);
    let mut text = String::new();
    dst.read_to_string(&mut text).unwrap();
    assert_eq!(text, "stream of bytes");
}

#[test]
fn equality_and_hash_look_at_the_readable_bytes_only() {
    let alloc = alloc();
    let mut a = alloc.heap_buffer(8);
    let mut b = alloc.direct_buffer(64);
    a.write_bytes(b"xxsame");
    a.set_reader_index(2);
    b.write_bytes(b"same");
    assert_eq!(a, b);
    assert_eq!(a, *b"same".as_slice());
    let hash = |v: &dyn Fn(&mut DefaultHasher)| {
        let mut h = DefaultHasher::new();
        v(&mut h);
        h.finish()
    };
    assert_eq!(hash(&|h| a.hash(h)), hash(&|h| b"same"[..].hash(h)));
    b.write_u8(b'!');
    assert_ne!(a, b);
    let (sa, sb) = (a.slice(..), b.slice(..4));
    assert_eq!(sa, sb);
    assert_eq!(hash(&|h| sa.hash(h)), hash(&|h| b"same"[..].hash(h)));
}

#[test]
fn deref_as_ref_and_extend_show_and_append_readable_bytes() {
    let mut buf = alloc().heap_buffer(2);
    buf.extend(b"hello".iter());
    buf.extend([b' ', b'w']);
    buf.read_u8();
    assert_eq!(buf.len(), 6);
    assert_eq!(buf.as_ref(), b"ello w");
    buf[0] = b'E';
    assert!(buf.starts_with(b"Ello"));
    let debug = format!("{buf:?}");
    assert!(debug.contains("reader_index: 1") && !debug.contains("Ello"));
}

#[test]
fn byte_bufs_cross_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ByteBuf>();
    assert_send_sync::<arenabuf::ByteSlice>();
    let mut buf = alloc().heap_buffer(8);
    buf.write_u64(42);
    let bytes: Bytes = std::thread::spawn(move || buf.freeze()).join().unwrap();
    assert_eq!(bytes.as_ref(), &42u64.to_be_bytes());
}

// ---- model test --------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<u8>),
    /// Through `BufMut::put`, which fills `chunk_mut` and calls `advance_mut`.
    Put(Vec<u8>),
    WriteU32(u32, bool),
    Read(usize),
    ReadU16(bool),
    SetBytes(usize, Vec<u8>),
    SetReaderIndex(usize),
    SetWriterIndex(usize),
    EnsureWritable(usize),
    SetCapacity(usize),
    SplitTo(usize),
    SplitOff(usize),
    Slice(usize, usize),
    FreezeHead(usize),
    Freeze,
    DiscardReadBytes,
    Clear,
    /// Drops a kept part, view or frozen `Bytes` (by index, modulo their
    /// number), so that the buffer may become its region's last holder.
    DropKept(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(Op::Write),
        2 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(Op::Put),
        2 => (any::<u32>(), any::<bool>()).prop_map(|(v, le)| Op::WriteU32(v, le)),
        2 => (0usize..40).prop_map(Op::Read),
        1 => any::<bool>().prop_map(Op::ReadU16),
        2 => (0usize..300, proptest::collection::vec(any::<u8>(), 0..16)).prop_map(|(i, v)| Op::SetBytes(i, v)),
        1 => (0usize..300).prop_map(Op::SetReaderIndex),
        1 => (0usize..300).prop_map(Op::SetWriterIndex),
        1 => (0usize..400).prop_map(Op::EnsureWritable),
        2 => (0usize..600).prop_map(Op::SetCapacity),
        1 => (0usize..40).prop_map(Op::SplitTo),
        1 => (0usize..120).prop_map(Op::SplitOff),
        1 => (0usize..40, 0usize..40).prop_map(|(a, b)| Op::Slice(a, b)),
        1 => (0usize..40).prop_map(Op::FreezeHead),
        1 => Just(Op::Freeze),
        1 => Just(Op::DiscardReadBytes),
        1 => Just(Op::Clear),
        2 => (0usize..8).prop_map(Op::DropKept),
    ]
}

/// The buffer as a `Vec`: one entry per byte of capacity, `None` where the
/// content is not known (memory the model never wrote).
struct Model {
    bytes: Vec<Option<u8>>,
    reader: usize,
    writer: usize,
    max_capacity: usize,
}

impl Model {
    fn readable(&self) -> &[Option<u8>] {
        &self.bytes[self.reader..self.writer]
    }

    fn write_at(&mut self, index: usize, src: &[u8]) {
        for (slot, &b) in self.bytes[index..index + src.len()].iter_mut().zip(src) {
            *slot = Some(b);
        }
    }

    /// The buffer may have grown (or moved, forgetting what was past the
    /// writer index `copied_up_to`) to `capacity`.
    fn follow(&mut self, buf: &ByteBuf, moved: bool, copied_up_to: usize) {
        if moved {
            self.bytes[copied_up_to..].fill(None);
        }
        self.bytes.resize(buf.capacity(), None);
    }
}

const MAX_CAPACITY: usize = 512;

fn fresh(alloc: &PooledAllocator, capacity: usize) -> (ByteBuf, Model) {
    let buf = alloc.try_heap_buffer(capacity, MAX_CAPACITY).unwrap();
    let model = Model { bytes: vec![None; capacity], reader: 0, writer: 0, max_capacity: MAX_CAPACITY };
    (buf, model)
}

fn matches(actual: &[u8], expected: &[Option<u8>]) -> bool {
    actual.len() == expected.len() && actual.iter().zip(expected).all(|(a, e)| e.is_none() || *e == Some(*a))
}

/// A value split, frozen or sliced off, with the bytes it must keep.
enum Kept {
    Part(ByteBuf, Vec<Option<u8>>),
    Frozen(Bytes, Vec<Option<u8>>),
    View(arenabuf::ByteSlice, Vec<Option<u8>>),
}

impl Kept {
    fn check(&self) {
        match self {
            Kept::Part(part, expected) => assert!(matches(part, expected), "a split part changed"),
            Kept::Frozen(bytes, expected) => assert!(matches(bytes, expected), "frozen bytes changed"),
            Kept::View(view, expected) => assert!(matches(view, expected), "a view changed"),
        }
    }
}

fn run(capacity: usize, ops: Vec<Op>) {
    let alloc = alloc();
    let (mut buf, mut model) = fresh(&alloc, capacity);
    let mut kept = Vec::new();
    for op in ops {
        let description = format!("{op:?}");
        let addr = buf.memory_address();
        let writer_before = buf.writer_index();
        let fits = |model: &Model, n: usize| model.writer + n <= model.max_capacity;
        match op {
            Op::Write(src) => {
                let ok = buf.try_write_bytes(&src).is_ok();
                assert_eq!(ok, fits(&model, src.len()));
                if ok {
                    model.follow(&buf, buf.memory_address() != addr, writer_before);
                    model.write_at(model.writer, &src);
                    model.writer += src.len();
                }
            }
            Op::Put(src) if fits(&model, src.len()) => {
                buf.put(&src[..]);
                model.follow(&buf, buf.memory_address() != addr, writer_before);
                model.write_at(model.writer, &src);
                model.writer += src.len();
            }
            Op::WriteU32(value, le) => {
                let result = if le { buf.try_write_u32_le(value) } else { buf.try_write_u32(value) };
                assert_eq!(result.is_ok(), fits(&model, 4));
                if result.is_ok() {
                    model.follow(&buf, buf.memory_address() != addr, writer_before);
                    let bytes = if le { value.to_le_bytes() } else { value.to_be_bytes() };
                    model.write_at(model.writer, &bytes);
                    model.writer += 4;
                }
            }
            Op::Read(n) => {
                let mut dst = vec![0; n];
                let ok = buf.try_read_bytes(&mut dst).is_ok();
                assert_eq!(ok, n <= model.writer - model.reader);
                if ok {
                    assert!(matches(&dst, &model.bytes[model.reader..model.reader + n]));
                    model.reader += n;
                }
            }
            Op::ReadU16(le) => {
                let value = if le {
                    buf.try_read_u16_le().map(u16::to_le_bytes)
                } else {
                    buf.try_read_u16().map(u16::to_be_bytes)
                };
                assert_eq!(value.is_some(), model.writer - model.reader >= 2);
                if let Some(bytes) = value {
                    assert!(matches(&bytes, &model.bytes[model.reader..model.reader + 2]));
                    model.reader += 2;
                }
            }
            Op::SetBytes(index, src) => {
                let ok = buf.try_set_bytes_at(index, &src).is_ok();
                assert_eq!(ok, index + src.len() <= model.bytes.len());
                if ok {
                    model.follow(&buf, buf.memory_address() != addr, writer_before);
                    model.write_at(index, &src);
                }
            }
            Op::SetReaderIndex(index) => {
                let ok = buf.try_set_reader_index(index).is_ok();
                assert_eq!(ok, index <= model.writer);
                if ok {
                    model.reader = index;
                }
            }
            Op::SetWriterIndex(index) => {
                let ok = buf.try_set_writer_index(index).is_ok();
                assert_eq!(ok, model.reader <= index && index <= model.bytes.len());
                if ok {
                    model.writer = index;
                }
            }
            Op::EnsureWritable(n) => {
                let ok = buf.try_ensure_writable(n).is_ok();
                assert_eq!(ok, fits(&model, n));
                if ok {
                    assert!(buf.writable_bytes() >= n);
                    model.follow(&buf, buf.memory_address() != addr, writer_before);
                }
            }
            Op::SetCapacity(n) => {
                let ok = buf.try_set_capacity(n).is_ok();
                assert_eq!(ok, n <= MAX_CAPACITY);
                if ok {
                    assert_eq!(buf.capacity(), n);
                    model.writer = model.writer.min(n);
                    model.reader = model.reader.min(model.writer);
                    model.bytes.truncate(n);
                    model.follow(&buf, buf.memory_address() != addr, model.writer);
                }
            }
            Op::SplitTo(n) if n <= model.writer - model.reader => {
                let head = buf.split_to(n);
                let end = model.reader + n;
                let expected = model.bytes[model.reader..end].to_vec();
                assert!(matches(&head, &expected));
                assert_eq!(head.capacity(), n);
                kept.push(Kept::Part(head, expected));
                model.bytes.drain(..end);
                model.writer -= end;
                model.reader = 0;
            }
            Op::SplitOff(n) if model.reader + n <= model.bytes.len() => {
                let tail = buf.split_off(n);
                let split = model.reader + n;
                let expected = model.bytes[split..model.writer.max(split)].to_vec();
                assert!(matches(&tail, &expected));
                assert_eq!(tail.capacity(), model.bytes.len() - split);
                kept.push(Kept::Part(tail, expected));
                model.bytes.truncate(split);
                model.writer = model.writer.min(split);
            }
            Op::Slice(a, b) if a <= b && b <= model.writer - model.reader => {
                let view = buf.slice(a..b);
                let expected = model.readable()[a..b].to_vec();
                assert!(matches(&view, &expected));
                kept.push(Kept::View(view, expected));
            }
            Op::FreezeHead(n) if n <= model.writer - model.reader => {
                let frozen = buf.split_to(n).freeze();
                let end = model.reader + n;
                let expected = model.bytes[model.reader..end].to_vec();
                assert!(matches(&frozen, &expected));
                kept.push(Kept::Frozen(frozen, expected));
                model.bytes.drain(..end);
                model.writer -= end;
                model.reader = 0;
            }
            Op::Freeze => {
                let expected = model.readable().to_vec();
                let (next, next_model) = fresh(&alloc, 16);
                let frozen = std::mem::replace(&mut buf, next).freeze();
                model = next_model;
                assert!(matches(&frozen, &expected));
                kept.push(Kept::Frozen(frozen, expected));
            }
            Op::DiscardReadBytes => {
                buf.discard_read_bytes();
                model.follow(&buf, buf.memory_address() != addr, writer_before);
                model.bytes.copy_within(model.reader..model.writer, 0);
                model.writer -= model.reader;
                model.reader = 0;
            }
            Op::Clear => {
                buf.clear();
                model.reader = 0;
                model.writer = 0;
            }
            Op::DropKept(i) => {
                if !kept.is_empty() {
                    let gone = kept.swap_remove(i % kept.len());
                    gone.check();
                }
            }
            Op::Put(_) | Op::SplitTo(_) | Op::SplitOff(_) | Op::Slice(..) | Op::FreezeHead(_) => {}
        }
        assert_eq!(
            (buf.reader_index(), buf.writer_index(), buf.capacity()),
            (model.reader, model.writer, model.bytes.len()),
            "indexes after {description}"
        );
        assert!(buf.capacity() <= buf.max_capacity());
        assert!(matches(&buf, model.readable()), "readable bytes differ after {description}");
        kept.iter().for_each(Kept::check);
    }
    drop(buf);
    kept.iter().for_each(Kept::check);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_a_vec_model(capacity in 0usize..200, ops in proptest::collection::vec(op(), 1..60)) {
        run(capacity, ops);
    }
}
