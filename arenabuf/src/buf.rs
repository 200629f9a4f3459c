//! [`ByteBuf`], the user's handle on pooled memory, and [`ByteSlice`], a
//! read-only view that keeps its region alive.
//!
//! # Sharing without atomics in the common case
//!
//! A fresh buffer owns its region outright (a unique [`Head`]): no `Arc`,
//! no reference count. Only `split_to`, `split_off`, `slice` (and `freeze` of
//! a part that is already shared) move the region into an `Arc`, like
//! `bytes::BytesMut` promotes itself to a shared representation.
//!
//! # Who may touch which bytes
//!
//! Every part of a shared region owns a disjoint window `[offset, offset +
//! room)` of it and only ever makes slices inside its own window. Read-only
//! views ([`ByteSlice`], frozen [`Bytes`]) may see bytes of a part's window
//! below its `frozen` mark; before the part writes there it moves to a fresh
//! region (copy on write), unless it finds it is the last holder of the
//! region, which proves that no view is left.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::io;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::ops::{Bound, Deref, DerefMut, RangeBounds};
use std::ptr::NonNull;
use std::sync::Arc;

use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut, Bytes};

use crate::error::AllocError;
use crate::thread_cache::{Allocation, META_NOT_AN_ALLOCATION, META_OFFSET, META_RELEASE_SLOW};

/// Growth doubles up to this capacity and then grows in steps of it.
const GROWTH_THRESHOLD: usize = 4 << 20;
/// The smallest capacity growth picks.
const MIN_GROWTH: usize = 64;

/// How a part holds its region: the first 24 bytes of a [`ByteBuf`], an
/// enum laid out by hand so that word 0 is the part's first byte in both
/// variants.
///
/// - **Unique** (a fresh buffer, or the last part of a region that starts
///   at the region's first byte): the bytes are the [`Allocation`] itself,
///   whose address comes first. A cache hit copies a cached region in, and
///   a release copies it back out, as a 16-byte and an 8-byte move.
/// - **Shared**: a [`SharedHead`]: the part's first byte, the `Arc` of the
///   region, and in the allocation's meta word a bit no allocation sets.
///
/// Why by hand: the head is what a hit writes and a release reads, and both
/// must move it 16 bytes at a time. A 16-byte load of data written by
/// smaller stores waits for them to reach the cache (a store-forwarding
/// stall): the first move of a new buffer, and the pop of a region just
/// released, read it that way. An `enum` needs the part's first byte in a
/// field of its own next to the allocation's address, which the compiler
/// fills (and splits the copy for) separately. The sizes after the head may
/// be written in pieces: built with one 16-byte store instead, `hot` ran no
/// faster (BENCHMARKS.md, session 4). No niche: an `Option<ByteBuf>` keeps a
/// tag of its own, so that `take()` copies the buffer in whole 16-byte
/// pieces (with the niche in word 0 it copied bytes 8..56, and `window`
/// 4 KiB went from 18 to 37 ns).
#[repr(C)]
struct Head {
    raw: HeadRepr,
}

#[repr(C)]
union HeadRepr {
    unique: ManuallyDrop<Allocation>,
    shared: ManuallyDrop<SharedHead>,
}

/// A shared part's head, over the bytes of an [`Allocation`].
#[repr(C)]
struct SharedHead {
    /// The part's first byte (an allocation's address sits here).
    ptr: NonNull<u8>,
    region: Arc<Allocation>,
    /// [`META_NOT_AN_ALLOCATION`], where an allocation keeps its meta word.
    mark: u64,
}

const _: () = assert!(
    std::mem::size_of::<SharedHead>() == std::mem::size_of::<Allocation>()
        && std::mem::offset_of!(SharedHead, ptr) == 0
        && std::mem::offset_of!(SharedHead, mark) == META_OFFSET
        && std::mem::size_of::<Head>() == 24
);

impl HeadRepr {
    /// A part at `ptr` of a shared region.
    fn shared(ptr: NonNull<u8>, region: Arc<Allocation>) -> HeadRepr {
        HeadRepr { shared: ManuallyDrop::new(SharedHead { ptr, region, mark: META_NOT_AN_ALLOCATION }) }
    }
}

impl Head {
    /// A region owned outright.
    #[inline(always)]
    fn unique(allocation: Allocation) -> Head {
        Head { raw: HeadRepr { unique: ManuallyDrop::new(allocation) } }
    }

    /// A part at `ptr` of a shared region.
    fn shared(ptr: NonNull<u8>, region: Arc<Allocation>) -> Head {
        Head { raw: HeadRepr::shared(ptr, region) }
    }

    /// The word where an allocation keeps its meta.
    #[inline(always)]
    fn meta_word(&self) -> u64 {
        // Both variants keep a plain `u64` there (`Meta` is a transparent `u64`).
        // SAFETY: `META_OFFSET + 8 <= 32`, inside `self` and initialised in either variant.
        unsafe { std::ptr::from_ref(self).cast::<u8>().add(META_OFFSET).cast::<u64>().read() }
    }

    #[inline(always)]
    fn is_shared(&self) -> bool {
        self.meta_word() & META_NOT_AN_ALLOCATION != 0
    }

    /// The part's first byte.
    #[inline(always)]
    fn ptr(&self) -> NonNull<u8> {
        // Both variants keep it in word 0 (checked at compile time above and
        // in `thread_cache`), typed `NonNull<u8>`.
        // SAFETY: word 0 is inside `self`, initialised and aligned.
        unsafe { std::ptr::from_ref(self).cast::<NonNull<u8>>().read() }
    }

    /// The region's `Arc`, when shared.
    #[inline]
    fn region(&self) -> Option<&Arc<Allocation>> {
        // SAFETY: the mark says the bytes are a shared head.
        self.is_shared().then(|| unsafe { &self.raw.shared.region })
    }

    /// The region's allocation (shared with other parts, if any).
    #[inline]
    fn allocation(&self) -> &Allocation {
        match self.region() {
            Some(region) => region,
            // SAFETY: not shared, so the bytes are the allocation.
            None => unsafe { &self.raw.unique },
        }
    }

    /// The allocation, when this part owns it outright.
    fn unique_mut(&mut self) -> Option<&mut Allocation> {
        // SAFETY: not shared, so the bytes are the allocation.
        (!self.is_shared()).then(|| unsafe { &mut *self.raw.unique })
    }

    /// Moves a shared part's first byte (a unique part's is its region's).
    fn set_shared_ptr(&mut self, ptr: NonNull<u8>) {
        assert!(self.is_shared(), "only a shared part's first byte moves");
        // SAFETY: shared, checked above.
        unsafe { (*self.raw.shared).ptr = ptr };
    }

    /// The region as a shared `Arc`, promoting a unique head.
    fn share(&mut self) -> Arc<Allocation> {
        if let Some(region) = self.region() {
            return region.clone();
        }
        // The allocation is moved out and the head rewritten before anything
        // reads it again; should `Arc::new` unwind (an allocation error hook
        // may panic), the guard aborts, so nothing drops the allocation twice.
        let guard = AbortOnUnwind;
        // `self.raw` is overwritten below without being read or dropped in between.
        // SAFETY: not shared (checked above), so the bytes are the allocation.
        let allocation = unsafe { ManuallyDrop::take(&mut self.raw.unique) };
        let ptr = allocation.ptr();
        let region = Arc::new(allocation);
        // Plain assignment: a union's fields are not dropped.
        self.raw = HeadRepr::shared(ptr, region.clone());
        std::mem::forget(guard);
        region
    }

    /// Takes a shared region back when this part is its last holder, and
    /// returns the region's length then. The head turns unique when the part
    /// starts at the region's first byte; else it stays shared, alone.
    fn reclaim(&mut self) -> Option<usize> {
        if !self.is_shared() {
            return None;
        }
        // SAFETY: shared, checked above.
        let shared = unsafe { &mut *self.raw.shared };
        // `get_mut` synchronises with the other holders' drops, so their last
        // reads happen before our next writes.
        let len = Arc::get_mut(&mut shared.region)?.len();
        if shared.ptr != shared.region.ptr() {
            return Some(len);
        }
        // `self.raw` is overwritten below without being read or dropped in between.
        // SAFETY: shared (checked above).
        let region = unsafe { ManuallyDrop::take(&mut self.raw.shared) }.region;
        match Arc::try_unwrap(region) {
            // Plain assignment: a union's fields are not dropped.
            Ok(allocation) => self.raw = HeadRepr { unique: ManuallyDrop::new(allocation) },
            // Not reached (`get_mut` found no other holder, and `&mut self`
            // keeps new ones out), but harmless: the head stays as it was.
            Err(region) => self.raw = HeadRepr::shared(region.ptr(), region),
        }
        Some(len)
    }
}

impl Drop for Head {
    #[inline(always)]
    fn drop(&mut self) {
        if self.meta_word() & META_RELEASE_SLOW == 0 {
            // The test covers the shared mark, the source and the tracking bit.
            // SAFETY: not shared, cached and untracked (the test); released once, here.
            unsafe { (*self.raw.unique).release_cached_untracked() }
        } else {
            self.drop_cold();
        }
    }
}

impl Head {
    /// Every drop but a cached, untracked allocation's, out of line so that
    /// a buffer's drop is small enough to be inlined where it is dropped.
    #[cold]
    #[inline(never)]
    fn drop_cold(&mut self) {
        if self.is_shared() {
            // SAFETY: shared, checked above; dropped once, here.
            unsafe { ManuallyDrop::drop(&mut self.raw.shared) }
        } else {
            // SAFETY: not shared, so the bytes are the allocation; dropped once, here.
            unsafe { ManuallyDrop::drop(&mut self.raw.unique) }
        }
    }
}

/// Aborts the process when dropped: armed across a move out of a value that
/// must be written back, so that an unwind cannot drop it twice.
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        std::process::abort();
    }
}

/// An index or length outside the allowed bounds of a buffer.
///
/// The message names the index, the length and the capacity, like the
/// panic of the unchecked method it stands for.
///
/// # Examples
///
/// ```
/// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
/// let err = buf.try_set_u32_at(6, 1).unwrap_err();
/// assert_eq!((err.index(), err.length(), err.capacity()), (6, 4, 8));
/// assert_eq!(
///     err.to_string(),
///     "index 6 and length 4 out of bounds: expected 0 <= index and index + length <= 8 (capacity 8)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexError {
    index: usize,
    length: usize,
    start: usize,
    end: usize,
    capacity: usize,
}

impl IndexError {
    /// The index asked for.
    ///
    /// # Examples
    ///
    /// ```
    /// let buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// assert_eq!(buf.try_get_bytes_at(7, &mut [0; 2]).unwrap_err().index(), 7);
    /// ```
    #[must_use]
    pub fn index(&self) -> usize {
        self.index
    }

    /// The number of bytes asked for at the index.
    ///
    /// # Examples
    ///
    /// ```
    /// let buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// assert_eq!(buf.try_get_bytes_at(7, &mut [0; 2]).unwrap_err().length(), 2);
    /// ```
    #[must_use]
    pub fn length(&self) -> usize {
        self.length
    }

    /// The buffer's capacity when the access was attempted.
    ///
    /// # Examples
    ///
    /// ```
    /// let buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// assert_eq!(buf.try_get_bytes_at(7, &mut [0; 2]).unwrap_err().capacity(), 8);
    /// ```
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "index {} and length {} out of bounds: expected {} <= index and index + length <= {} (capacity {})",
            self.index, self.length, self.start, self.end, self.capacity
        )
    }
}

impl std::error::Error for IndexError {}

/// Netty's growth policy: the next power of two >= max(needed, 64) up to
/// 4 MiB; above, a multiple of 4 MiB plus 4 MiB; never past `max_capacity`.
fn next_capacity(needed: usize, max_capacity: usize) -> usize {
    debug_assert!(needed <= max_capacity);
    if needed == GROWTH_THRESHOLD {
        return GROWTH_THRESHOLD;
    }
    if needed > GROWTH_THRESHOLD {
        let rounded = needed / GROWTH_THRESHOLD * GROWTH_THRESHOLD;
        return if rounded > max_capacity - GROWTH_THRESHOLD { max_capacity } else { rounded + GROWTH_THRESHOLD };
    }
    needed.max(MIN_GROWTH).next_power_of_two().min(max_capacity)
}

/// Netty's rule for keeping a region when its buffer shrinks: the new
/// capacity must use more than half of the region, and a region of 512
/// bytes or less must stay within 16 bytes of full.
fn shrinks_in_place(new_capacity: usize, room: usize) -> bool {
    new_capacity > room / 2 && (room > 512 || new_capacity + 16 > room)
}

/// A byte buffer whose memory comes from a [`PooledAllocator`](crate::PooledAllocator)
/// and goes back to it when the buffer (and every part and view split from
/// it) drops.
///
/// It has Netty's two indexes: bytes `reader_index..writer_index` are the
/// readable bytes (what [`Deref`] shows, what [`Buf`] consumes), bytes
/// `writer_index..capacity` are writable (what [`BufMut`] fills). Writing
/// past the capacity grows the buffer up to its `max_capacity`: first into
/// the rest of its size class without moving, then by Netty's policy.
///
/// Every byte of the capacity is initialised (fresh pool memory is zeroed;
/// reused memory holds what its last user wrote). A `ByteBuf` is `Send` and
/// `Sync`: it can be released on any thread, and its region goes back to the
/// cache of the thread that allocated it.
///
/// # Examples
///
/// ```
/// let alloc = arenabuf::PooledAllocator::new();
/// let mut buf = alloc.heap_buffer(16);
/// buf.write_u32(0xCAFE_BABE);
/// buf.write_bytes(b"hi");
/// let mut buf = std::thread::spawn(move || buf).join().unwrap();
/// assert_eq!(buf.read_u32(), 0xCAFE_BABE);
/// assert_eq!(&buf[..], b"hi");
/// ```
// `repr(C)` and laid out in the pieces a move copies: a move of the buffer
// loads and stores three times 16 bytes, and a hit writes each piece with
// one store of that size (the region's address and owner as one copy from
// the stack's slot, its meta word and the limits together with
// `store_two_words`, the marks as one copy of the class's fresh marks). A
// piece written with smaller stores could not be read back by the move's
// load until those stores reached the cache: a stall of about 15 cycles on
// every buffer's first move (see `Head`, and BENCHMARKS.md, sessions 5 and
// 6: written as two words, the limits beside the meta word took `hot-loop`
// from 9.2 to 11.9 ns).
#[repr(C)]
pub struct ByteBuf {
    /// The region, and byte 0 of this part.
    head: Head,
    /// The capacity (low half) and the maximum capacity (high half), in one
    /// word so that a new buffer writes them with one store.
    limits: u64,
    // Indexes and sizes as `u32` (capacities are at most MAX_CAPACITY), so
    // that a buffer is 48 bytes: buffers are kept in slots, queues and maps
    // by the thousand, and moved by value.
    marks: Marks,
}

/// A part's window, frozen mark and indexes: the 16 bytes after a buffer's
/// head. Every fresh buffer of a size class has the same marks (its room is
/// the class size), so a cache hit copies them from its stack whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Marks {
    /// Bytes from `ptr` this part may use without moving: its window.
    room: u32,
    /// Bytes from `ptr` that read-only views may see; writing below this
    /// moves the part first (copy on write).
    frozen: u32,
    reader_index: u32,
    writer_index: u32,
}

impl Marks {
    /// A fresh buffer's marks over a region of `room` bytes: nothing frozen,
    /// nothing read or written.
    pub(crate) fn fresh(room: usize) -> Marks {
        Marks { room: to_index(room), frozen: 0, reader_index: 0, writer_index: 0 }
    }
}

/// The limits word of a buffer with these capacities.
#[inline(always)]
fn limits(capacity: usize, max_capacity: usize) -> u64 {
    u64::from(to_index(capacity)) | u64::from(to_index(max_capacity)) << 32
}

/// Writes `low` and `high` to the 16 bytes at `dst` with one store (a
/// vector store on x86-64), so that a 16-byte load of them later is served
/// from the store: two 8-byte stores read back by one 16-byte load cost
/// about 15 cycles on this project's machine (BENCHMARKS.md, session 5).
///
/// # Safety
///
/// `dst` is valid for writing 16 bytes.
#[inline(always)]
unsafe fn store_two_words(dst: *mut u8, low: u64, high: u64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of x86-64; `dst` is writable (this function's contract), unaligned stores allowed.
    unsafe {
        use std::arch::x86_64::{_mm_set_epi64x, _mm_storeu_si128};
        _mm_storeu_si128(dst.cast(), _mm_set_epi64x(high as i64, low as i64));
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above.
    unsafe {
        dst.cast::<[u64; 2]>().write_unaligned([low, high]);
    }
}

const _: () = assert!(
    std::mem::offset_of!(ByteBuf, limits) == META_OFFSET + 8
        && std::mem::offset_of!(ByteBuf, limits) == 24
        && std::mem::offset_of!(ByteBuf, marks) == 32
        && std::mem::size_of::<ByteBuf>() == 48
);

/// The largest capacity a buffer can have: 4 GiB - 1 (Netty's is 2 GiB - 1).
/// A larger `max_capacity` asked of the allocator is capped to it.
///
/// # Examples
///
/// ```
/// use arenabuf::{AllocError, PooledAllocator, MAX_CAPACITY};
///
/// let alloc = PooledAllocator::new();
/// assert_eq!(alloc.try_heap_buffer(10, usize::MAX)?.max_capacity(), MAX_CAPACITY);
/// assert_eq!(
///     alloc.try_heap_buffer(MAX_CAPACITY + 1, usize::MAX).unwrap_err(),
///     AllocError::CapacityOverflow { requested: MAX_CAPACITY + 1, max_capacity: MAX_CAPACITY }
/// );
/// # Ok::<(), AllocError>(())
/// ```
pub const MAX_CAPACITY: usize = u32::MAX as usize;

/// An index or size of a buffer as stored: callers keep every index within
/// the capacity and every capacity within [`MAX_CAPACITY`].
#[inline(always)]
fn to_index(n: usize) -> u32 {
    debug_assert!(n <= MAX_CAPACITY, "buffer index {n} above MAX_CAPACITY");
    n as u32
}

// SAFETY: a `ByteBuf` owns its window of the region exclusively (the only
// other holders are views that only read bytes the part no longer writes),
// `Allocation` is `Send + Sync`, and `&ByteBuf` only gives read access.
unsafe impl Send for ByteBuf {}
// SAFETY: as above: shared references only read.
unsafe impl Sync for ByteBuf {}

impl ByteBuf {
    #[inline(always)]
    pub(crate) fn new(allocation: Allocation, capacity: usize, max_capacity: usize) -> ByteBuf {
        let marks = Marks::fresh(allocation.len());
        ByteBuf::with_marks(allocation, marks, capacity, max_capacity)
    }

    /// As [`new`](Self::new), with the region's fresh marks already known.
    #[inline(always)]
    fn with_marks(allocation: Allocation, marks: Marks, capacity: usize, max_capacity: usize) -> ByteBuf {
        debug_assert!(marks == Marks::fresh(allocation.len()));
        debug_assert!(capacity <= marks.room as usize && capacity <= max_capacity);
        ByteBuf { head: Head::unique(allocation), marks, limits: limits(capacity, max_capacity) }
    }

    /// The cache hit's buffer: a copy of the allocation at `image`, whose
    /// region's fresh marks are `marks`.
    ///
    /// # Safety
    ///
    /// `image` holds the bytes of an allocation (in `Allocation`'s layout)
    /// that nothing else owns or will drop: the new buffer owns it.
    #[inline(always)]
    pub(crate) unsafe fn from_allocation_image(
        image: NonNull<Allocation>,
        marks: Marks,
        capacity: usize,
        max_capacity: usize,
    ) -> ByteBuf {
        debug_assert!(capacity <= marks.room as usize && capacity <= max_capacity);
        // Built in place, each 16 bytes with one store, so that the buffer's
        // first move (16-byte loads) reads them straight from the stores
        // (see the layout note at `ByteBuf`).
        let mut out = MaybeUninit::<ByteBuf>::uninit();
        let (dst, src) = (out.as_mut_ptr().cast::<u8>(), image.as_ptr().cast::<u8>());
        // The address and owner are copied as bytes, so the pointers stay
        // whole; then the meta word beside the limits, then the marks.
        // SAFETY: `image` holds an allocation's bytes that the buffer takes over (this function's contract); every field of `out` is written.
        unsafe {
            std::ptr::copy_nonoverlapping(src, dst, META_OFFSET);
            let meta = src.add(META_OFFSET).cast::<u64>().read();
            store_two_words(dst.add(META_OFFSET), meta, limits(capacity, max_capacity));
            dst.add(std::mem::offset_of!(ByteBuf, marks)).cast::<Marks>().write(marks);
            out.assume_init()
        }
    }

    /// Bytes from `ptr` this part may use without moving: its window.
    #[inline]
    fn room(&self) -> usize {
        self.marks.room as usize
    }

    /// Bytes from `ptr` that read-only views may see.
    #[inline]
    fn frozen(&self) -> usize {
        self.marks.frozen as usize
    }

    /// Sets the capacity, within the window (the caller checks).
    #[inline]
    fn store_capacity(&mut self, capacity: usize) {
        self.limits = limits(capacity, self.max_capacity());
    }

    /// Where this part starts in its region.
    fn offset(&self) -> usize {
        self.ptr().as_ptr() as usize - self.allocation().ptr().as_ptr() as usize
    }

    /// Byte 0 of this part.
    #[inline(always)]
    fn ptr(&self) -> NonNull<u8> {
        self.head.ptr()
    }

    /// The allocation behind the buffer (shared with other parts, if any).
    pub(crate) fn allocation(&self) -> &Allocation {
        self.head.allocation()
    }

    /// The capacity in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(arenabuf::PooledAllocator::new().heap_buffer(100).capacity(), 100);
    /// ```
    #[must_use]
    #[inline]
    pub fn capacity(&self) -> usize {
        self.limits as u32 as usize
    }

    /// The capacity the buffer may grow to.
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::new();
    /// assert_eq!(alloc.try_heap_buffer(100, 500)?.max_capacity(), 500);
    /// # Ok::<(), arenabuf::AllocError>(())
    /// ```
    #[must_use]
    #[inline]
    pub fn max_capacity(&self) -> usize {
        (self.limits >> 32) as usize
    }

    /// Whether the memory is direct (mmap-backed) rather than heap.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(arenabuf::PooledAllocator::new().direct_buffer(1).is_direct());
    /// ```
    #[must_use]
    #[inline]
    pub fn is_direct(&self) -> bool {
        self.head.allocation().is_direct()
    }

    /// The address of byte 0 (index 0, not the reader index), for handing to
    /// system calls and FFI. It changes when the buffer moves to a new
    /// region (growth past its size class, shrinking, copy on write).
    ///
    /// # Examples
    ///
    /// ```
    /// let buf = arenabuf::PooledAllocator::new().direct_buffer(64);
    /// assert_eq!(buf.memory_address(), buf.as_slice().as_ptr() as usize);
    /// ```
    #[must_use]
    #[inline]
    pub fn memory_address(&self) -> usize {
        self.ptr().as_ptr() as usize
    }

    /// How many parts, views and frozen [`Bytes`] share this buffer's region:
    /// 1 while the buffer is its only user.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// assert_eq!(buf.ref_cnt(), 1);
    /// buf.write_bytes(b"abcd");
    /// let head = buf.split_to(2);
    /// assert_eq!((head.ref_cnt(), buf.ref_cnt()), (2, 2));
    /// drop(head);
    /// assert_eq!(buf.ref_cnt(), 1);
    /// ```
    #[must_use]
    pub fn ref_cnt(&self) -> usize {
        self.head.region().map_or(1, Arc::strong_count)
    }

    // ---- indexes -------------------------------------------------------

    /// The index of the next byte to read.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_u16(7);
    /// buf.read_u8();
    /// assert_eq!(buf.reader_index(), 1);
    /// ```
    #[must_use]
    #[inline]
    pub fn reader_index(&self) -> usize {
        self.marks.reader_index as usize
    }

    /// The index of the next byte to write.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_u16(7);
    /// assert_eq!(buf.writer_index(), 2);
    /// ```
    #[must_use]
    #[inline]
    pub fn writer_index(&self) -> usize {
        self.marks.writer_index as usize
    }

    /// Sets the reader index.
    ///
    /// # Panics
    ///
    /// When `index` is greater than the writer index; see
    /// [`try_set_reader_index`](Self::try_set_reader_index).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_bytes(b"abc");
    /// buf.set_reader_index(2);
    /// assert_eq!(&buf[..], b"c");
    /// ```
    pub fn set_reader_index(&mut self, index: usize) {
        self.try_set_reader_index(index).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Sets the reader index, or says why it cannot be.
    ///
    /// # Errors
    ///
    /// When `index` is greater than the writer index.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_bytes(b"abc");
    /// assert!(buf.try_set_reader_index(4).is_err());
    /// assert!(buf.try_set_reader_index(3).is_ok());
    /// ```
    pub fn try_set_reader_index(&mut self, index: usize) -> Result<(), IndexError> {
        self.check(index, 0, 0, self.writer_index())?;
        self.marks.reader_index = to_index(index);
        Ok(())
    }

    /// Sets the writer index. Moving it forward exposes the bytes in
    /// between as they are (pool memory holds what its last user wrote).
    ///
    /// # Panics
    ///
    /// When `index` is below the reader index or above the capacity; see
    /// [`try_set_writer_index`](Self::try_set_writer_index).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_bytes(b"abc");
    /// buf.set_writer_index(1);
    /// assert_eq!(&buf[..], b"a");
    /// ```
    pub fn set_writer_index(&mut self, index: usize) {
        self.try_set_writer_index(index).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Sets the writer index, or says why it cannot be.
    ///
    /// # Errors
    ///
    /// When `index` is below the reader index or above the capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// assert!(buf.try_set_writer_index(9).is_err());
    /// assert!(buf.try_set_writer_index(8).is_ok());
    /// ```
    pub fn try_set_writer_index(&mut self, index: usize) -> Result<(), IndexError> {
        self.check(index, 0, self.reader_index(), self.capacity())?;
        self.marks.writer_index = to_index(index);
        Ok(())
    }

    /// The number of readable bytes: `writer_index - reader_index`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_u32(1);
    /// buf.read_u8();
    /// assert_eq!(buf.readable_bytes(), 3);
    /// ```
    #[must_use]
    #[inline]
    pub fn readable_bytes(&self) -> usize {
        self.writer_index() - self.reader_index()
    }

    /// The number of bytes writable without growing: `capacity - writer_index`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_u16(1);
    /// assert_eq!(buf.writable_bytes(), 6);
    /// ```
    #[must_use]
    #[inline]
    pub fn writable_bytes(&self) -> usize {
        self.capacity() - self.writer_index()
    }

    /// The number of bytes writable when growing up to the maximum capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().try_heap_buffer(8, 100)?;
    /// buf.write_u16(1);
    /// assert_eq!(buf.max_writable_bytes(), 98);
    /// # Ok::<(), arenabuf::AllocError>(())
    /// ```
    #[must_use]
    #[inline]
    pub fn max_writable_bytes(&self) -> usize {
        self.max_capacity() - self.writer_index()
    }

    /// The number of bytes writable without moving memory: up to the end of
    /// the region's size class (or, for a part split from a shared region,
    /// of the part's own window), never past the maximum capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// // 150 bytes are served from the 160-byte class.
    /// let mut buf = arenabuf::PooledAllocator::new().try_heap_buffer(150, 500)?;
    /// buf.set_writer_index(100);
    /// assert_eq!(buf.max_fast_writable_bytes(), 60);
    /// # Ok::<(), arenabuf::AllocError>(())
    /// ```
    #[must_use]
    #[inline]
    pub fn max_fast_writable_bytes(&self) -> usize {
        self.room().min(self.max_capacity()).saturating_sub(self.writer_index())
    }

    /// Sets both indexes to 0; the bytes stay as they are.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_u32(1);
    /// buf.clear();
    /// assert_eq!((buf.reader_index(), buf.writer_index()), (0, 0));
    /// ```
    #[inline]
    pub fn clear(&mut self) {
        self.marks.reader_index = 0;
        self.marks.writer_index = 0;
    }

    /// Moves the readable bytes to index 0 and the indexes with them,
    /// making the bytes already read writable again. The capacity stays.
    ///
    /// # Panics
    ///
    /// When a [`ByteSlice`] still views the bytes to be overwritten and the
    /// memory to copy the buffer to cannot be had.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_bytes(b"abcdef");
    /// buf.read_u32();
    /// buf.discard_read_bytes();
    /// assert_eq!((buf.reader_index(), buf.writer_index(), &buf[..]), (0, 2, &b"ef"[..]));
    /// ```
    pub fn discard_read_bytes(&mut self) {
        let (reader, writer) = (self.reader_index(), self.writer_index());
        if reader == 0 {
            return;
        }
        if reader != writer {
            self.bytes_mut(0, writer).copy_within(reader..writer, 0);
        }
        self.marks.reader_index = 0;
        self.marks.writer_index = to_index(writer - reader);
    }

    // ---- views of the bytes ----------------------------------------------

    /// The whole capacity as a slice.
    ///
    /// # Examples
    ///
    /// ```
    /// let buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// assert_eq!(buf.as_slice().len(), 8);
    /// ```
    #[must_use]
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        // Other parts write only their own windows, and views never write.
        // SAFETY: `ptr..+capacity` is initialised, in this part's window of a region `head` keeps alive.
        unsafe { std::slice::from_raw_parts(self.ptr().as_ptr(), self.capacity()) }
    }

    /// The whole capacity as a mutable slice.
    ///
    /// # Panics
    ///
    /// When a [`ByteSlice`] still views some of the bytes and the memory to
    /// copy the buffer to cannot be had.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(4);
    /// buf.as_mut_slice().copy_from_slice(b"abcd");
    /// assert_eq!(buf.as_slice(), b"abcd");
    /// ```
    #[must_use]
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.bytes_mut(0, self.capacity())
    }

    /// The readable bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_bytes(b"abc");
    /// buf.read_u8();
    /// assert_eq!(buf.readable(), b"bc");
    /// ```
    #[must_use]
    #[inline]
    pub fn readable(&self) -> &[u8] {
        &self.as_slice()[self.reader_index()..self.writer_index()]
    }

    /// The readable bytes, mutably.
    ///
    /// # Panics
    ///
    /// When a [`ByteSlice`] still views some of them and the memory to copy
    /// the buffer to cannot be had.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_bytes(b"abc");
    /// buf.readable_mut().make_ascii_uppercase();
    /// assert_eq!(buf.readable(), b"ABC");
    /// ```
    #[must_use]
    #[inline]
    pub fn readable_mut(&mut self) -> &mut [u8] {
        self.bytes_mut(self.reader_index(), self.writer_index())
    }

    /// Bytes `start..end` of this part, mutably; moves the part first when a
    /// view may see any of them.
    #[inline]
    fn bytes_mut(&mut self, start: usize, end: usize) -> &mut [u8] {
        debug_assert!(start <= end && end <= self.capacity());
        // Whether `start..end` holds any byte at all is asked on the cold
        // side: tested here next to `frozen`, the hot loop's `as_mut_slice`
        // built that test's known answer in a register and tested it, three
        // more instructions per buffer (callgrind).
        if start < self.frozen() {
            self.unfreeze(start, end);
        }
        // No view sees `start..end` (it is empty, at or above `frozen`, or
        // `unfreeze` moved the part to a region nobody else holds), no other
        // part touches this window, and `&mut self` makes the access unique
        // among this part's own borrows.
        // SAFETY: `start..end` lies in this part's window of a live region and is initialised.
        unsafe { std::slice::from_raw_parts_mut(self.ptr().as_ptr().add(start), end - start) }
    }

    /// Before an access to bytes `start..end`, which start below `frozen`:
    /// unless they are none, makes the whole capacity writable again, by
    /// taking the region back when no other holder is left, else by moving
    /// to a fresh region.
    #[cold]
    fn unfreeze(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        self.reclaim();
        if self.frozen() > 0 {
            let capacity = self.capacity();
            self.move_to_new_region(capacity).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Takes a shared region back when this part is its last holder: its
    /// window then extends to the region's end and no view can be left.
    fn reclaim(&mut self) {
        if let Some(len) = self.head.reclaim() {
            self.marks.room = to_index(len - self.offset());
            self.marks.frozen = 0;
        }
    }

    /// Moves to a fresh region of at least `new_capacity` bytes from the same
    /// pool, copying bytes `0..writer_index` (the indexes must already fit).
    fn move_to_new_region(&mut self, new_capacity: usize) -> Result<(), AllocError> {
        debug_assert!(self.writer_index() <= new_capacity);
        let mut allocation = self.head.allocation().allocate_like(new_capacity)?;
        if let Some(old) = self.head.unique_mut() {
            // A tracked buffer stays tracked when it moves.
            if let Some(tracker) = old.take_leak_tracker() {
                allocation.set_leak_tracker(tracker);
            }
        }
        let target = allocation.ptr();
        // `writer_index` is at most the old part's capacity and at most `new_capacity <= allocation.len()`;
        // the old range is only read, and the two regions are distinct because both are alive.
        // SAFETY: both ranges are initialised and `writer_index` bytes long; the new region is ours alone.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr().as_ptr(), target.as_ptr(), self.writer_index()) };
        self.marks.room = to_index(allocation.len());
        self.head = Head::unique(allocation);
        self.marks.frozen = 0;
        self.store_capacity(new_capacity);
        Ok(())
    }

    // ---- capacity -----------------------------------------------------------

    /// Sets the capacity: grows in place within the region's size class,
    /// shrinks in place while the region stays a sensible fit (Netty's rule:
    /// the new capacity uses more than half of it, and a region of at most
    /// 512 bytes stays within 16 bytes of full), and otherwise moves to a
    /// region of the right class, copying the bytes up to the writer index.
    /// Shrinking below the indexes clamps them to the new capacity.
    ///
    /// # Panics
    ///
    /// When `new_capacity` is above the maximum capacity or memory cannot be
    /// had; see [`try_set_capacity`](Self::try_set_capacity).
    ///
    /// # Examples
    ///
    /// ```
    /// let alloc = arenabuf::PooledAllocator::new();
    /// let mut buf = alloc.heap_buffer(1000); // a 1024-byte class
    /// let addr = buf.memory_address();
    /// buf.set_capacity(1024);
    /// assert_eq!(buf.memory_address(), addr, "grown in place");
    /// buf.set_capacity(600);
    /// assert_eq!(buf.memory_address(), addr, "more than half: kept");
    /// buf.set_capacity(100);
    /// assert_ne!(buf.memory_address(), addr, "moved to a smaller class");
    /// ```
    pub fn set_capacity(&mut self, new_capacity: usize) {
        self.try_set_capacity(new_capacity).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Sets the capacity as [`set_capacity`](Self::set_capacity) does, or
    /// says why it cannot; a failed call changes nothing.
    ///
    /// # Errors
    ///
    /// [`AllocError::CapacityOverflow`] above the maximum capacity, and the
    /// pool's errors when a new region cannot be had.
    ///
    /// # Examples
    ///
    /// ```
    /// use arenabuf::AllocError;
    ///
    /// let mut buf = arenabuf::PooledAllocator::new().try_heap_buffer(10, 100)?;
    /// assert_eq!(buf.try_set_capacity(101), Err(AllocError::CapacityOverflow { requested: 101, max_capacity: 100 }));
    /// buf.try_set_capacity(100)?;
    /// assert_eq!(buf.capacity(), 100);
    /// # Ok::<(), AllocError>(())
    /// ```
    pub fn try_set_capacity(&mut self, new_capacity: usize) -> Result<(), AllocError> {
        if new_capacity > self.max_capacity() {
            return Err(AllocError::CapacityOverflow { requested: new_capacity, max_capacity: self.max_capacity() });
        }
        if new_capacity == self.capacity() {
            return Ok(());
        }
        if new_capacity > self.capacity() {
            if new_capacity > self.room() {
                self.reclaim();
            }
            if new_capacity <= self.room() {
                self.store_capacity(new_capacity);
                return Ok(());
            }
        } else if shrinks_in_place(new_capacity, self.room()) {
            self.store_capacity(new_capacity);
            self.clamp_indexes();
            return Ok(());
        }
        let (reader, writer) = (self.reader_index(), self.writer_index());
        if new_capacity < self.capacity() {
            self.marks.writer_index = to_index(writer.min(new_capacity));
        }
        match self.move_to_new_region(new_capacity) {
            Ok(()) => {
                self.clamp_indexes();
                Ok(())
            }
            Err(e) => {
                (self.marks.reader_index, self.marks.writer_index) = (to_index(reader), to_index(writer));
                Err(e)
            }
        }
    }

    /// Netty's `trimIndicesToCapacity`.
    fn clamp_indexes(&mut self) {
        if self.writer_index() > self.capacity() {
            self.marks.writer_index = to_index(self.capacity());
        }
        self.marks.reader_index = self.marks.reader_index.min(self.marks.writer_index);
    }

    /// Makes room for `additional` more bytes after the writer index: in
    /// place up to [`max_fast_writable_bytes`](Self::max_fast_writable_bytes),
    /// else by Netty's growth policy (the next power of two from 64 up to
    /// 4 MiB, then steps of 4 MiB, never past the maximum capacity).
    ///
    /// # Panics
    ///
    /// When `writer_index + additional` is above the maximum capacity, or
    /// memory cannot be had; see [`try_ensure_writable`](Self::try_ensure_writable).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().try_heap_buffer(150, 500)?;
    /// buf.set_writer_index(150);
    /// buf.ensure_writable(20);
    /// assert_eq!(buf.capacity(), 256);
    /// # Ok::<(), arenabuf::AllocError>(())
    /// ```
    pub fn ensure_writable(&mut self, additional: usize) {
        self.try_ensure_writable(additional).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Makes room as [`ensure_writable`](Self::ensure_writable) does, or says
    /// why it cannot; a failed call changes nothing.
    ///
    /// # Errors
    ///
    /// [`AllocError::CapacityOverflow`] when `writer_index + additional` is
    /// above the maximum capacity, and the pool's errors when a new region
    /// cannot be had.
    ///
    /// # Examples
    ///
    /// ```
    /// use arenabuf::AllocError;
    ///
    /// let mut buf = arenabuf::PooledAllocator::new().try_heap_buffer(10, 100)?;
    /// buf.set_writer_index(10);
    /// assert_eq!(
    ///     buf.try_ensure_writable(91),
    ///     Err(AllocError::CapacityOverflow { requested: 101, max_capacity: 100 })
    /// );
    /// buf.try_ensure_writable(90)?;
    /// assert_eq!(buf.capacity(), 100);
    /// # Ok::<(), AllocError>(())
    /// ```
    #[inline]
    pub fn try_ensure_writable(&mut self, additional: usize) -> Result<(), AllocError> {
        if additional <= self.writable_bytes() {
            return Ok(());
        }
        self.grow(additional)
    }

    #[cold]
    fn grow(&mut self, additional: usize) -> Result<(), AllocError> {
        if additional > self.max_writable_bytes() {
            return Err(AllocError::CapacityOverflow {
                requested: self.writer_index().saturating_add(additional),
                max_capacity: self.max_capacity(),
            });
        }
        if additional > self.max_fast_writable_bytes() {
            self.reclaim();
        }
        let fast = self.max_fast_writable_bytes();
        let new_capacity = if fast >= additional {
            self.writer_index() + fast
        } else {
            next_capacity(self.writer_index() + additional, self.max_capacity())
        };
        self.try_set_capacity(new_capacity)
    }

    // ---- bytes ----------------------------------------------------------------

    /// Checks that `index..index + length` lies within `start..=end`.
    #[inline]
    fn check(&self, index: usize, length: usize, start: usize, end: usize) -> Result<(), IndexError> {
        if index >= start && index <= end && length <= end - index {
            Ok(())
        } else {
            Err(IndexError { index, length, start, end, capacity: self.capacity() })
        }
    }

    /// Copies `dst.len()` bytes from `index` into `dst`; the indexes stay.
    ///
    /// # Panics
    ///
    /// When `index + dst.len()` is above the capacity; see
    /// [`try_get_bytes_at`](Self::try_get_bytes_at).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_bytes(b"abcd");
    /// let mut two = [0; 2];
    /// buf.get_bytes_at(1, &mut two);
    /// assert_eq!(&two, b"bc");
    /// ```
    pub fn get_bytes_at(&self, index: usize, dst: &mut [u8]) {
        self.try_get_bytes_at(index, dst).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Copies bytes as [`get_bytes_at`](Self::get_bytes_at) does, or says why
    /// it cannot.
    ///
    /// # Errors
    ///
    /// When `index + dst.len()` is above the capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// let buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// assert!(buf.try_get_bytes_at(4, &mut [0; 4]).is_ok());
    /// assert!(buf.try_get_bytes_at(5, &mut [0; 4]).is_err());
    /// ```
    pub fn try_get_bytes_at(&self, index: usize, dst: &mut [u8]) -> Result<(), IndexError> {
        self.check(index, dst.len(), 0, self.capacity())?;
        dst.copy_from_slice(&self.as_slice()[index..index + dst.len()]);
        Ok(())
    }

    /// Copies `src` to `index`; the indexes stay.
    ///
    /// # Panics
    ///
    /// When `index + src.len()` is above the capacity; see
    /// [`try_set_bytes_at`](Self::try_set_bytes_at).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(4);
    /// buf.set_bytes_at(1, b"xy");
    /// assert_eq!(&buf.as_slice()[1..3], b"xy");
    /// ```
    pub fn set_bytes_at(&mut self, index: usize, src: &[u8]) {
        self.try_set_bytes_at(index, src).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Copies bytes as [`set_bytes_at`](Self::set_bytes_at) does, or says why
    /// it cannot.
    ///
    /// # Errors
    ///
    /// When `index + src.len()` is above the capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(4);
    /// assert!(buf.try_set_bytes_at(3, b"xy").is_err());
    /// ```
    pub fn try_set_bytes_at(&mut self, index: usize, src: &[u8]) -> Result<(), IndexError> {
        self.check(index, src.len(), 0, self.capacity())?;
        self.bytes_mut(index, index + src.len()).copy_from_slice(src);
        Ok(())
    }

    /// Reads `dst.len()` bytes into `dst`, advancing the reader index.
    ///
    /// # Panics
    ///
    /// When fewer than `dst.len()` bytes are readable; see
    /// [`try_read_bytes`](Self::try_read_bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_bytes(b"abc");
    /// let mut two = [0; 2];
    /// buf.read_bytes(&mut two);
    /// assert_eq!((&two, buf.reader_index()), (b"ab", 2));
    /// ```
    pub fn read_bytes(&mut self, dst: &mut [u8]) {
        self.try_read_bytes(dst).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Reads bytes as [`read_bytes`](Self::read_bytes) does, or says why it
    /// cannot (and reads nothing).
    ///
    /// # Errors
    ///
    /// When fewer than `dst.len()` bytes are readable.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_bytes(b"abc");
    /// assert!(buf.try_read_bytes(&mut [0; 4]).is_err());
    /// assert_eq!(buf.reader_index(), 0);
    /// ```
    pub fn try_read_bytes(&mut self, dst: &mut [u8]) -> Result<(), IndexError> {
        let index = self.reader_index();
        self.check(index, dst.len(), 0, self.writer_index())?;
        dst.copy_from_slice(&self.as_slice()[index..index + dst.len()]);
        self.marks.reader_index += to_index(dst.len());
        Ok(())
    }

    /// Writes `src` at the writer index, growing as needed, and advances it.
    ///
    /// # Panics
    ///
    /// Past the maximum capacity, or when memory cannot be had; see
    /// [`try_write_bytes`](Self::try_write_bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(2);
    /// buf.write_bytes(b"hello");
    /// assert_eq!(&buf[..], b"hello");
    /// assert_eq!(buf.capacity(), 16, "grown in place within its 16-byte size class");
    /// ```
    pub fn write_bytes(&mut self, src: &[u8]) {
        self.try_write_bytes(src).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Writes bytes as [`write_bytes`](Self::write_bytes) does, or says why it
    /// cannot (and writes nothing).
    ///
    /// # Errors
    ///
    /// As [`try_ensure_writable`](Self::try_ensure_writable).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().try_heap_buffer(2, 4)?;
    /// assert!(buf.try_write_bytes(b"hello").is_err());
    /// assert_eq!(buf.writer_index(), 0);
    /// # Ok::<(), arenabuf::AllocError>(())
    /// ```
    pub fn try_write_bytes(&mut self, src: &[u8]) -> Result<(), AllocError> {
        self.try_ensure_writable(src.len())?;
        let start = self.writer_index();
        self.bytes_mut(start, start + src.len()).copy_from_slice(src);
        self.marks.writer_index += to_index(src.len());
        Ok(())
    }

    /// Writes `count` zero bytes at the writer index, growing as needed.
    ///
    /// # Panics
    ///
    /// Past the maximum capacity, or when memory cannot be had.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(4);
    /// buf.write_u8(1);
    /// buf.write_zero(3);
    /// assert_eq!(&buf[..], &[1, 0, 0, 0]);
    /// ```
    pub fn write_zero(&mut self, count: usize) {
        self.ensure_writable(count);
        let start = self.writer_index();
        self.bytes_mut(start, start + count).fill(0);
        self.marks.writer_index += to_index(count);
    }

    /// The index of the first `byte` in `from..to` when `from <= to`, or of
    /// the last one in `to..from` when `from > to` (Netty's `indexOf`).
    ///
    /// # Panics
    ///
    /// When the searched range reaches past the capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_bytes(b"a,b,c");
    /// assert_eq!(buf.index_of(0, 5, b','), Some(1));
    /// assert_eq!(buf.index_of(5, 0, b','), Some(3));
    /// assert_eq!(buf.index_of(4, 5, b','), None);
    /// ```
    #[must_use]
    pub fn index_of(&self, from: usize, to: usize, byte: u8) -> Option<usize> {
        let (start, end) = if from <= to { (from, to) } else { (to, from) };
        self.check(start, end - start, 0, self.capacity()).unwrap_or_else(|e| panic!("{e}"));
        let range = &self.as_slice()[start..end];
        let found =
            if from <= to { range.iter().position(|&b| b == byte) } else { range.iter().rposition(|&b| b == byte) };
        found.map(|i| start + i)
    }

    // ---- sharing --------------------------------------------------------------

    /// Splits off the first `at` readable bytes: the returned buffer holds
    /// them (reader index 0, writer index and capacity `at`), and `self`
    /// keeps the rest of its bytes, from index 0. Both share the region and
    /// own disjoint bytes of it; it goes back to the pool when the last
    /// part drops. The bytes before the reader index go to neither.
    ///
    /// # Panics
    ///
    /// When `at` is greater than the number of readable bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(16);
    /// buf.write_bytes(b"head|tail");
    /// let head = buf.split_to(5);
    /// assert_eq!((&head[..], &buf[..]), (&b"head|"[..], &b"tail"[..]));
    /// assert_eq!(buf.capacity(), 11);
    /// ```
    #[must_use = "the split-off bytes are dropped (back to the pool) when unused; use `set_reader_index` to skip bytes"]
    pub fn split_to(&mut self, at: usize) -> ByteBuf {
        let reader = self.reader_index();
        self.check(reader, at, 0, self.writer_index()).unwrap_or_else(|e| panic!("{e}"));
        let end = reader + at;
        let head = self.part(reader, end, end);
        self.advance_window(end);
        head
    }

    /// Splits the buffer `at` bytes after the reader index: `self` keeps
    /// indexes `0..reader_index + at` (its capacity), and the returned buffer
    /// holds the rest of the capacity, with the readable bytes that were
    /// there. Both share the region and own disjoint bytes of it.
    ///
    /// # Panics
    ///
    /// When `reader_index + at` is greater than the capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(16);
    /// buf.write_bytes(b"head|tail");
    /// let tail = buf.split_off(5);
    /// assert_eq!((&buf[..], &tail[..]), (&b"head|"[..], &b"tail"[..]));
    /// assert_eq!((buf.capacity(), tail.capacity()), (5, 11));
    /// ```
    #[must_use = "the split-off bytes are dropped (back to the pool) when unused; use `set_capacity` to shrink"]
    pub fn split_off(&mut self, at: usize) -> ByteBuf {
        let reader = self.reader_index();
        self.check(reader, at, 0, self.capacity()).unwrap_or_else(|e| panic!("{e}"));
        let split = reader + at;
        let mut tail = self.part(split, self.capacity(), self.writer_index().max(split));
        tail.marks.room = to_index(self.room() - split);
        self.store_capacity(split);
        self.marks.room = to_index(split);
        self.marks.frozen = to_index(self.frozen().min(split));
        self.marks.writer_index = to_index(self.writer_index().min(split));
        tail
    }

    /// A new part over indexes `start..capacity_end` of this one, with the
    /// bytes up to `writer_end` readable; its window ends at `capacity_end`.
    fn part(&mut self, start: usize, capacity_end: usize, writer_end: usize) -> ByteBuf {
        let region = self.head.share();
        // SAFETY: `start <= capacity <= room`: within (or one past the end of) the region.
        let ptr = unsafe { self.ptr().add(start) };
        let room = capacity_end - start;
        ByteBuf {
            head: Head::shared(ptr, region),
            marks: Marks {
                room: to_index(room),
                frozen: to_index(self.frozen().saturating_sub(start).min(room)),
                reader_index: 0,
                writer_index: to_index(writer_end - start),
            },
            limits: limits(room, self.max_capacity()),
        }
    }

    /// Drops indexes `0..end` of this part's window (they went to another part).
    fn advance_window(&mut self, end: usize) {
        // SAFETY: `end <= writer_index <= capacity <= room`: within the region.
        let ptr = unsafe { self.ptr().add(end) };
        self.head.set_shared_ptr(ptr);
        self.store_capacity(self.capacity() - end);
        self.marks.room -= to_index(end);
        self.marks.frozen = to_index(self.frozen().saturating_sub(end));
        self.marks.reader_index = 0;
        self.marks.writer_index -= to_index(end);
    }

    /// Hands the readable bytes to [`Bytes`] without copying: the region goes
    /// back to the pool when the last clone of the `Bytes` (and every other
    /// part and view of the region) drops. An empty buffer gives an empty
    /// `Bytes` and releases its region at once.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(16);
    /// buf.write_bytes(b"xxpayload");
    /// buf.set_reader_index(2);
    /// let addr = buf.memory_address();
    /// let bytes: bytes::Bytes = buf.freeze();
    /// assert_eq!(&bytes[..], b"payload");
    /// assert_eq!(bytes.as_ptr() as usize, addr + 2, "no copy");
    /// ```
    #[must_use = "freezing consumes the buffer; dropping the `Bytes` releases the region"]
    pub fn freeze(self) -> Bytes {
        let len = self.readable_bytes();
        if len == 0 {
            return Bytes::new();
        }
        // SAFETY: `reader_index <= capacity`: within the region.
        let ptr = unsafe { self.ptr().add(self.reader_index()) };
        Bytes::from_owner(FrozenRegion { _head: self.head, ptr, len })
    }

    /// A read-only view of readable bytes `range` (indexes relative to the
    /// reader index, like `&buf[range]`) that keeps the region alive after
    /// this buffer drops. The buffer stays usable; should it later write over
    /// bytes the view sees, it first moves to a new region (copy on write),
    /// so a view never changes.
    ///
    /// # Panics
    ///
    /// When `range` is not within the readable bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(16);
    /// buf.write_bytes(b"hello world");
    /// let hello = buf.slice(..5);
    /// buf.set_bytes_at(0, b"HELLO"); // copies the buffer: `hello` stays
    /// drop(buf);
    /// assert_eq!(&hello[..], b"hello");
    /// ```
    #[must_use = "a slice only keeps the region alive; drop it to release the region"]
    pub fn slice(&mut self, range: impl RangeBounds<usize>) -> ByteSlice {
        let readable = self.readable_bytes();
        let (start, end) = bounds(range, readable);
        let length = end.saturating_sub(start);
        self.check(self.reader_index() + start, length, self.reader_index(), self.writer_index())
            .unwrap_or_else(|e| panic!("{e}"));
        let region = self.head.share();
        self.marks.frozen = to_index(self.frozen().max(self.reader_index() + end));
        // SAFETY: `reader_index + start <= writer_index <= capacity`.
        let ptr = unsafe { self.ptr().add(self.reader_index() + start) };
        ByteSlice { region, ptr, len: length }
    }
}

/// `range` as `start..end` over `0..len` (unchecked: the caller checks).
fn bounds(range: impl RangeBounds<usize>, len: usize) -> (usize, usize) {
    let start = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&i) => i.saturating_add(1),
        Bound::Excluded(&i) => i,
        Bound::Unbounded => len,
    };
    (start, end)
}

macro_rules! primitives {
    ($($ty:ident $size:literal $order:literal $from:ident $to:ident $value:literal:
        $get:ident $try_get:ident $set:ident $try_set:ident
        $read:ident $try_read:ident $write:ident $try_write:ident;)*) => {
        /// # Primitives
        ///
        /// Absolute `get_*_at` / `set_*_at` leave the indexes alone and are
        /// bounded by the capacity; relative `read_*` consume readable bytes
        /// and `write_*` append (growing as needed). Multi-byte values are
        /// big-endian, or little-endian in the `_le` variants.
        impl ByteBuf {
            $(
            #[doc = concat!("The `", stringify!($ty), "` (", $order, ") at `index`; the indexes stay.")]
            ///
            /// # Panics
            ///
            #[doc = concat!("When `index + ", $size, "` is above the capacity; see [`", stringify!($try_get), "`](Self::", stringify!($try_get), ").")]
            ///
            /// # Examples
            ///
            /// ```
            /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(16);
            #[doc = concat!("buf.", stringify!($set), "(3, ", stringify!($value), ");")]
            #[doc = concat!("assert_eq!(buf.", stringify!($get), "(3), ", stringify!($value), ");")]
            /// ```
            #[must_use]
            #[inline]
            pub fn $get(&self, index: usize) -> $ty {
                self.$try_get(index).unwrap_or_else(|| panic!("{}", self.check(index, $size, 0, self.capacity()).unwrap_err()))
            }

            #[doc = concat!("The `", stringify!($ty), "` (", $order, ") at `index`, or `None` when `index + ", $size, "` is above the capacity.")]
            ///
            /// # Examples
            ///
            /// ```
            /// let buf = arenabuf::PooledAllocator::new().heap_buffer(16);
            #[doc = concat!("assert!(buf.", stringify!($try_get), "(16 - ", $size, ").is_some());")]
            #[doc = concat!("assert_eq!(buf.", stringify!($try_get), "(17 - ", $size, "), None);")]
            /// ```
            #[must_use]
            #[inline]
            pub fn $try_get(&self, index: usize) -> Option<$ty> {
                let bytes = self.as_slice().get(index..index.checked_add($size)?)?;
                Some($ty::$from(bytes.try_into().expect("exact length")))
            }

            #[doc = concat!("Writes `value` as a `", stringify!($ty), "` (", $order, ") at `index`; the indexes stay.")]
            ///
            /// # Panics
            ///
            #[doc = concat!("When `index + ", $size, "` is above the capacity; see [`", stringify!($try_set), "`](Self::", stringify!($try_set), ").")]
            ///
            /// # Examples
            ///
            /// ```
            /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(16);
            #[doc = concat!("buf.", stringify!($set), "(0, ", stringify!($value), ");")]
            #[doc = concat!("assert_eq!(buf.", stringify!($get), "(0), ", stringify!($value), ");")]
            /// assert_eq!(buf.writer_index(), 0);
            /// ```
            #[inline]
            pub fn $set(&mut self, index: usize, value: $ty) {
                self.$try_set(index, value).unwrap_or_else(|e| panic!("{e}"));
            }

            #[doc = concat!("Writes a `", stringify!($ty), "` as [`", stringify!($set), "`](Self::", stringify!($set), ") does, or says why it cannot.")]
            ///
            /// # Errors
            ///
            #[doc = concat!("When `index + ", $size, "` is above the capacity.")]
            ///
            /// # Examples
            ///
            /// ```
            /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(16);
            #[doc = concat!("assert!(buf.", stringify!($try_set), "(16 - ", $size, ", ", stringify!($value), ").is_ok());")]
            #[doc = concat!("assert!(buf.", stringify!($try_set), "(17 - ", $size, ", ", stringify!($value), ").is_err());")]
            /// ```
            #[inline]
            pub fn $try_set(&mut self, index: usize, value: $ty) -> Result<(), IndexError> {
                self.check(index, $size, 0, self.capacity())?;
                self.bytes_mut(index, index + $size).copy_from_slice(&value.$to());
                Ok(())
            }

            #[doc = concat!("Reads a `", stringify!($ty), "` (", $order, ") at the reader index and advances it.")]
            ///
            /// # Panics
            ///
            #[doc = concat!("When fewer than ", $size, " bytes are readable; see [`", stringify!($try_read), "`](Self::", stringify!($try_read), ").")]
            ///
            /// # Examples
            ///
            /// ```
            /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(16);
            #[doc = concat!("buf.", stringify!($write), "(", stringify!($value), ");")]
            #[doc = concat!("assert_eq!(buf.", stringify!($read), "(), ", stringify!($value), ");")]
            #[doc = concat!("assert_eq!(buf.reader_index(), ", $size, ");")]
            /// ```
            #[inline]
            pub fn $read(&mut self) -> $ty {
                self.$try_read().unwrap_or_else(|| {
                    panic!("{}", self.check(self.reader_index(), $size, 0, self.writer_index()).unwrap_err())
                })
            }

            #[doc = concat!("Reads a `", stringify!($ty), "` as [`", stringify!($read), "`](Self::", stringify!($read), ") does, or gives `None` (and reads nothing) when fewer than ", $size, " bytes are readable.")]
            ///
            /// # Examples
            ///
            /// ```
            /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(16);
            #[doc = concat!("assert_eq!(buf.", stringify!($try_read), "(), None);")]
            #[doc = concat!("buf.", stringify!($write), "(", stringify!($value), ");")]
            #[doc = concat!("assert_eq!(buf.", stringify!($try_read), "(), Some(", stringify!($value), "));")]
            /// ```
            #[inline]
            pub fn $try_read(&mut self) -> Option<$ty> {
                let start = self.reader_index();
                let bytes = self.as_slice()[..self.writer_index()].get(start..start + $size)?;
                let value = $ty::$from(bytes.try_into().expect("exact length"));
                self.marks.reader_index += to_index($size);
                Some(value)
            }

            #[doc = concat!("Writes `value` as a `", stringify!($ty), "` (", $order, ") at the writer index, growing as needed, and advances it.")]
            ///
            /// # Panics
            ///
            #[doc = concat!("Past the maximum capacity, or when memory cannot be had; see [`", stringify!($try_write), "`](Self::", stringify!($try_write), ").")]
            ///
            /// # Examples
            ///
            /// ```
            /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(0);
            #[doc = concat!("buf.", stringify!($write), "(", stringify!($value), ");")]
            #[doc = concat!("assert_eq!(buf.", stringify!($get), "(0), ", stringify!($value), ");")]
            #[doc = concat!("assert_eq!(buf.writer_index(), ", $size, ");")]
            /// ```
            #[inline]
            pub fn $write(&mut self, value: $ty) {
                self.$try_write(value).unwrap_or_else(|e| panic!("{e}"));
            }

            #[doc = concat!("Writes a `", stringify!($ty), "` as [`", stringify!($write), "`](Self::", stringify!($write), ") does, or says why it cannot (and writes nothing).")]
            ///
            /// # Errors
            ///
            /// As [`try_ensure_writable`](Self::try_ensure_writable).
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let mut buf = arenabuf::PooledAllocator::new().try_heap_buffer(0, ", $size, ")?;")]
            #[doc = concat!("assert!(buf.", stringify!($try_write), "(", stringify!($value), ").is_ok());")]
            #[doc = concat!("assert!(buf.", stringify!($try_write), "(", stringify!($value), ").is_err());")]
            /// # Ok::<(), arenabuf::AllocError>(())
            /// ```
            #[inline]
            pub fn $try_write(&mut self, value: $ty) -> Result<(), AllocError> {
                self.try_ensure_writable($size)?;
                let start = self.writer_index();
                self.bytes_mut(start, start + $size).copy_from_slice(&value.$to());
                self.marks.writer_index += to_index($size);
                Ok(())
            }
            )*
        }
    };
}

primitives! {
    u8 1 "one byte" from_be_bytes to_be_bytes 0xA5u8:
        get_u8_at try_get_u8_at set_u8_at try_set_u8_at read_u8 try_read_u8 write_u8 try_write_u8;
    i8 1 "one byte" from_be_bytes to_be_bytes -7i8:
        get_i8_at try_get_i8_at set_i8_at try_set_i8_at read_i8 try_read_i8 write_i8 try_write_i8;
    u16 2 "big-endian" from_be_bytes to_be_bytes 0xA1B2u16:
        get_u16_at try_get_u16_at set_u16_at try_set_u16_at read_u16 try_read_u16 write_u16 try_write_u16;
    u16 2 "little-endian" from_le_bytes to_le_bytes 0xA1B2u16:
        get_u16_le_at try_get_u16_le_at set_u16_le_at try_set_u16_le_at
        read_u16_le try_read_u16_le write_u16_le try_write_u16_le;
    i16 2 "big-endian" from_be_bytes to_be_bytes -300i16:
        get_i16_at try_get_i16_at set_i16_at try_set_i16_at read_i16 try_read_i16 write_i16 try_write_i16;
    i16 2 "little-endian" from_le_bytes to_le_bytes -300i16:
        get_i16_le_at try_get_i16_le_at set_i16_le_at try_set_i16_le_at
        read_i16_le try_read_i16_le write_i16_le try_write_i16_le;
    u32 4 "big-endian" from_be_bytes to_be_bytes 0xA1B2_C3D4u32:
        get_u32_at try_get_u32_at set_u32_at try_set_u32_at read_u32 try_read_u32 write_u32 try_write_u32;
    u32 4 "little-endian" from_le_bytes to_le_bytes 0xA1B2_C3D4u32:
        get_u32_le_at try_get_u32_le_at set_u32_le_at try_set_u32_le_at
        read_u32_le try_read_u32_le write_u32_le try_write_u32_le;
    i32 4 "big-endian" from_be_bytes to_be_bytes -70_000i32:
        get_i32_at try_get_i32_at set_i32_at try_set_i32_at read_i32 try_read_i32 write_i32 try_write_i32;
    i32 4 "little-endian" from_le_bytes to_le_bytes -70_000i32:
        get_i32_le_at try_get_i32_le_at set_i32_le_at try_set_i32_le_at
        read_i32_le try_read_i32_le write_i32_le try_write_i32_le;
    u64 8 "big-endian" from_be_bytes to_be_bytes 0x0102_0304_0506_0708u64:
        get_u64_at try_get_u64_at set_u64_at try_set_u64_at read_u64 try_read_u64 write_u64 try_write_u64;
    u64 8 "little-endian" from_le_bytes to_le_bytes 0x0102_0304_0506_0708u64:
        get_u64_le_at try_get_u64_le_at set_u64_le_at try_set_u64_le_at
        read_u64_le try_read_u64_le write_u64_le try_write_u64_le;
    i64 8 "big-endian" from_be_bytes to_be_bytes -5_000_000_000i64:
        get_i64_at try_get_i64_at set_i64_at try_set_i64_at read_i64 try_read_i64 write_i64 try_write_i64;
    i64 8 "little-endian" from_le_bytes to_le_bytes -5_000_000_000i64:
        get_i64_le_at try_get_i64_le_at set_i64_le_at try_set_i64_le_at
        read_i64_le try_read_i64_le write_i64_le try_write_i64_le;
    f32 4 "big-endian" from_be_bytes to_be_bytes 1.5f32:
        get_f32_at try_get_f32_at set_f32_at try_set_f32_at read_f32 try_read_f32 write_f32 try_write_f32;
    f32 4 "little-endian" from_le_bytes to_le_bytes 1.5f32:
        get_f32_le_at try_get_f32_le_at set_f32_le_at try_set_f32_le_at
        read_f32_le try_read_f32_le write_f32_le try_write_f32_le;
    f64 8 "big-endian" from_be_bytes to_be_bytes -2.25f64:
        get_f64_at try_get_f64_at set_f64_at try_set_f64_at read_f64 try_read_f64 write_f64 try_write_f64;
    f64 8 "little-endian" from_le_bytes to_le_bytes -2.25f64:
        get_f64_le_at try_get_f64_le_at set_f64_le_at try_set_f64_le_at
        read_f64_le try_read_f64_le write_f64_le try_write_f64_le;
}

impl fmt::Debug for ByteBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteBuf")
            .field("reader_index", &self.reader_index())
            .field("writer_index", &self.writer_index())
            .field("capacity", &self.capacity())
            .field("max_capacity", &self.max_capacity())
            .field("direct", &self.is_direct())
            .finish()
    }
}

impl Deref for ByteBuf {
    type Target = [u8];

    /// The readable bytes.
    #[inline]
    fn deref(&self) -> &[u8] {
        self.readable()
    }
}

impl DerefMut for ByteBuf {
    /// The readable bytes, mutably (see [`ByteBuf::readable_mut`]).
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        self.readable_mut()
    }
}

impl AsRef<[u8]> for ByteBuf {
    /// The readable bytes.
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.readable()
    }
}

impl PartialEq for ByteBuf {
    /// Compares the readable bytes only.
    fn eq(&self, other: &ByteBuf) -> bool {
        self.readable() == other.readable()
    }
}

impl Eq for ByteBuf {}

impl PartialEq<[u8]> for ByteBuf {
    fn eq(&self, other: &[u8]) -> bool {
        self.readable() == other
    }
}

impl Hash for ByteBuf {
    /// Hashes the readable bytes, as `[u8]` does.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.readable().hash(state);
    }
}

impl Extend<u8> for ByteBuf {
    /// Writes the bytes at the writer index, growing as needed.
    ///
    /// # Panics
    ///
    /// Past the maximum capacity, or when memory cannot be had.
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        let iter = iter.into_iter();
        self.ensure_writable(iter.size_hint().0.min(self.max_writable_bytes()));
        for byte in iter {
            self.write_u8(byte);
        }
    }
}

impl<'a> Extend<&'a u8> for ByteBuf {
    /// Writes the bytes at the writer index, growing as needed.
    ///
    /// # Panics
    ///
    /// Past the maximum capacity, or when memory cannot be had.
    fn extend<I: IntoIterator<Item = &'a u8>>(&mut self, iter: I) {
        self.extend(iter.into_iter().copied());
    }
}

impl Buf for ByteBuf {
    #[inline]
    fn remaining(&self) -> usize {
        self.readable_bytes()
    }

    #[inline]
    fn chunk(&self) -> &[u8] {
        self.readable()
    }

    #[inline]
    fn advance(&mut self, cnt: usize) {
        let reader = self.reader_index();
        self.check(reader, cnt, 0, self.writer_index()).unwrap_or_else(|e| panic!("{e}"));
        self.marks.reader_index += to_index(cnt);
    }

    /// Zero-copy: the bytes are split off and frozen (see
    /// [`ByteBuf::split_to`] and [`ByteBuf::freeze`]).
    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        self.split_to(len).freeze()
    }
}

// SAFETY: `chunk_mut` returns exactly the writable bytes `writer_index..
// capacity` (all initialised), `remaining_mut` is what writes may still
// reach (growing up to `max_capacity`), and `advance_mut` only moves the
// writer index within the capacity, so the bytes it exposes are ones the
// caller wrote or ones that were initialised already.
unsafe impl BufMut for ByteBuf {
    #[inline]
    fn remaining_mut(&self) -> usize {
        self.max_writable_bytes()
    }

    /// Counts `cnt` more bytes as written.
    ///
    /// # Safety
    ///
    /// As `BufMut::advance_mut`: the caller wrote the next `cnt` bytes. Pool
    /// memory is always initialised, so this buffer's own soundness does not
    /// depend on it; `cnt` past the capacity panics.
    #[inline]
    unsafe fn advance_mut(&mut self, cnt: usize) {
        let writer = self.writer_index();
        self.check(writer, cnt, 0, self.capacity()).unwrap_or_else(|e| panic!("{e}"));
        self.marks.writer_index += to_index(cnt);
    }

    /// The writable bytes; grows first (by the growth policy) when there are
    /// none and the maximum capacity allows.
    ///
    /// # Panics
    ///
    /// When memory cannot be had.
    #[inline]
    fn chunk_mut(&mut self) -> &mut UninitSlice {
        if self.writable_bytes() == 0 && self.max_writable_bytes() > 0 {
            self.ensure_writable(1);
        }
        let (start, end) = (self.writer_index(), self.capacity());
        UninitSlice::new(self.bytes_mut(start, end))
    }

    #[inline]
    fn put_slice(&mut self, src: &[u8]) {
        self.write_bytes(src);
    }

    fn put_bytes(&mut self, val: u8, cnt: usize) {
        self.ensure_writable(cnt);
        let start = self.writer_index();
        self.bytes_mut(start, start + cnt).fill(val);
        self.marks.writer_index += to_index(cnt);
    }
}

impl io::Read for ByteBuf {
    /// Reads up to `buf.len()` readable bytes, advancing the reader index;
    /// `Ok(0)` once nothing is readable.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len().min(self.readable_bytes());
        self.read_bytes(&mut buf[..len]);
        Ok(len)
    }
}

impl io::Write for ByteBuf {
    /// Writes as much of `buf` as the maximum capacity allows, growing as
    /// needed; `Ok(0)` when the buffer is at its maximum capacity.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::OutOfMemory`] when the pool cannot serve the growth.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len().min(self.max_writable_bytes());
        self.try_write_bytes(&buf[..len]).map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))?;
        Ok(len)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a frozen [`Bytes`] owns: the region (or its share of it) and where
/// its bytes are.
struct FrozenRegion {
    /// Only kept alive: dropping it releases the region.
    _head: Head,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the bytes are only read, and `Allocation` is `Send + Sync`.
unsafe impl Send for FrozenRegion {}
// SAFETY: as above.
unsafe impl Sync for FrozenRegion {}

impl AsRef<[u8]> for FrozenRegion {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` lies in the region `_head` keeps alive, is
        // initialised and no longer written by anyone: the part that owned it
        // was consumed by `freeze`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

/// A read-only view of bytes of a [`ByteBuf`], made by [`ByteBuf::slice`].
///
/// It keeps the buffer's region alive (the region goes back to the pool when
/// the last part, view and frozen [`Bytes`] of it drops) and never changes:
/// the buffer moves to a new region before writing over bytes a view sees.
/// Cloning is cheap (a reference count).
///
/// # Examples
///
/// ```
/// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(16);
/// buf.write_bytes(b"key=value");
/// let key = buf.slice(..3);
/// let value = buf.slice(4..);
/// drop(buf);
/// assert_eq!((&key[..], &value[..]), (&b"key"[..], &b"value"[..]));
/// ```
#[derive(Clone)]
pub struct ByteSlice {
    region: Arc<Allocation>,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a view only reads bytes nobody writes while it lives (module docs),
// and `Allocation` is `Send + Sync`.
unsafe impl Send for ByteSlice {}
// SAFETY: as above.
unsafe impl Sync for ByteSlice {}

impl ByteSlice {
    /// The bytes viewed.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(4);
    /// buf.write_bytes(b"abcd");
    /// assert_eq!(buf.slice(1..3).as_slice(), b"bc");
    /// ```
    #[must_use]
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` lies in the region `self.region` keeps
        // alive, is initialised, and nobody writes it while a view sees it
        // (the owning part copies itself away first).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// A view of `range` of this view's bytes.
    ///
    /// # Panics
    ///
    /// When `range` is not within this view.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_bytes(b"abcdef");
    /// assert_eq!(&buf.slice(1..5).slice(1..)[..], b"cde");
    /// ```
    #[must_use = "a slice only keeps the region alive; drop it to release the region"]
    pub fn slice(&self, range: impl RangeBounds<usize>) -> ByteSlice {
        let (start, end) = bounds(range, self.len);
        if start > end || end > self.len {
            let err = IndexError {
                index: start,
                length: end.saturating_sub(start),
                start: 0,
                end: self.len,
                capacity: self.len,
            };
            panic!("{err}");
        }
        // SAFETY: `start <= len`: within the viewed bytes.
        let ptr = unsafe { self.ptr.add(start) };
        ByteSlice { region: self.region.clone(), ptr, len: end - start }
    }

    /// The viewed bytes as [`Bytes`], without copying.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut buf = arenabuf::PooledAllocator::new().heap_buffer(8);
    /// buf.write_bytes(b"abc");
    /// let view = buf.slice(..);
    /// let addr = view.as_ptr() as usize;
    /// let bytes = view.into_bytes();
    /// assert_eq!((&bytes[..], bytes.as_ptr() as usize), (&b"abc"[..], addr));
    /// ```
    #[must_use = "the `Bytes` holds the region; dropping it releases the region"]
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(FrozenRegion { _head: Head::shared(self.ptr, self.region), ptr: self.ptr, len: self.len })
    }
}

#[cfg(all(test, not(loom)))]
impl ByteSlice {
    fn ref_cnt_for_test(&self) -> usize {
        Arc::strong_count(&self.region)
    }
}

impl Deref for ByteSlice {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for ByteSlice {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl fmt::Debug for ByteSlice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteSlice").field("len", &self.len).finish()
    }
}

impl PartialEq for ByteSlice {
    fn eq(&self, other: &ByteSlice) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for ByteSlice {}

impl PartialEq<[u8]> for ByteSlice {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl Hash for ByteSlice {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::test_config::{active, pool};
    use crate::PooledAllocator;

    #[test]
    fn the_whole_capacity_is_initialised_and_writable() {
        let alloc = pool();
        // All alive at once: each is fresh pool memory, which is zeroed.
        let mut bufs: Vec<_> = [0, 1, 15, 16, 17, 4096, 40_000].map(|size| alloc.heap_buffer(size)).into();
        for buf in &mut bufs {
            assert!(buf.as_slice().iter().all(|&b| b == 0));
            buf.as_mut_slice().fill(0xEE);
            assert!(buf.as_slice().iter().all(|&b| b == 0xEE));
        }
        let sizes: Vec<usize> = bufs.iter().map(|b| b.as_slice().len()).collect();
        assert_eq!(sizes, [0, 1, 15, 16, 17, 4096, 40_000]);
    }

    #[test]
    fn live_buffers_never_share_bytes() {
        let alloc = pool();
        let mut bufs: Vec<_> = (0..64u8).map(|i| (i, alloc.direct_buffer(16 + i as usize * 7))).collect();
        for (tag, buf) in &mut bufs {
            buf.as_mut_slice().fill(*tag);
        }
        for (tag, buf) in &bufs {
            assert!(buf.as_slice().iter().all(|b| b == tag));
        }
    }

    /// No caching on plain threads: a released region goes straight back
    /// to the arena.
    fn uncached_pool() -> PooledAllocator {
        PooledAllocator::builder()
            .heap_arenas(1)
            .direct_arenas(0)
            .use_cache_for_all_threads(false)
            .max_order(crate::test_config::MAX_ORDER)
            .build()
            .unwrap()
    }

    #[test]
    fn split_parts_own_disjoint_bytes_and_release_the_region_last() {
        let alloc = uncached_pool();
        let mut buf = alloc.heap_buffer(32);
        buf.write_bytes(b"0123456789");
        let mut head = buf.split_to(4);
        let mut tail = buf.split_off(3);
        assert_eq!((&head[..], &buf[..], &tail[..]), (&b"0123"[..], &b"456"[..], &b"789"[..]));
        assert_eq!((head.capacity(), buf.capacity(), tail.capacity()), (4, 3, 25));
        assert_eq!(buf.ref_cnt(), 3);
        // Each part writes only its own bytes; the others do not change.
        head.readable_mut().fill(b'h');
        buf.readable_mut().fill(b'b');
        tail.write_bytes(b"xyz");
        assert_eq!((&head[..], &buf[..], &tail[..]), (&b"hhhh"[..], &b"bbb"[..], &b"789xyz"[..]));
        // The tail may grow into the rest of the 32-byte class without moving.
        assert_eq!(tail.max_fast_writable_bytes(), 32 - 7 - 6);
        drop(head);
        drop(buf);
        assert_eq!(active(&alloc), 1);
        drop(tail);
        assert_eq!(active(&alloc), 0);
    }

    #[test]
    fn a_head_part_grows_by_moving_and_keeps_its_bytes() {
        let alloc = uncached_pool();
        let mut buf = alloc.heap_buffer(64);
        buf.write_bytes(b"abcdef");
        let mut head = buf.split_to(3);
        let addr = head.memory_address();
        assert_eq!(head.max_fast_writable_bytes(), 0, "the next bytes belong to the other part");
        head.write_bytes(b"XYZ");
        assert_ne!(head.memory_address(), addr);
        assert_eq!((head.ref_cnt(), buf.ref_cnt()), (1, 1));
        assert_eq!((&head[..], &buf[..]), (&b"abcXYZ"[..], &b"def"[..]));
        assert_eq!(active(&alloc), 2);
    }

    #[test]
    fn the_last_part_takes_the_region_back_instead_of_moving() {
        let alloc = uncached_pool();
        let mut buf = alloc.heap_buffer(64);
        buf.write_bytes(b"abcdef");
        let mut head = buf.split_to(3);
        drop(buf);
        let addr = head.memory_address();
        head.write_bytes(b"XYZ");
        assert_eq!(head.memory_address(), addr, "the tail's bytes are free again");
        assert_eq!(head.ref_cnt(), 1);
        assert_eq!(&head[..], b"abcXYZ");
    }

    #[test]
    fn the_last_part_past_the_regions_start_takes_its_window_back_in_place() {
        let alloc = uncached_pool();
        let mut buf = alloc.heap_buffer(64);
        buf.write_bytes(b"abcdef");
        let head = buf.split_to(3);
        let view = buf.slice(..);
        drop(head);
        drop(view);
        let addr = buf.memory_address();
        // Writing over the bytes the view saw finds the part alone: no copy,
        // and its window reaches the region's end again (the part starts 3
        // bytes in, so it keeps the region as a shared head of its own).
        buf.set_bytes_at(0, b"DEF");
        assert_eq!((buf.memory_address(), buf.ref_cnt()), (addr, 1));
        assert_eq!(buf.max_fast_writable_bytes(), 64 - 3 - 3);
        buf.write_bytes(&[b'x'; 61 - 3]);
        assert_eq!(buf.memory_address(), addr, "grew within the region");
        assert_eq!(&buf[..4], b"DEFx");
        assert_eq!(active(&alloc), 1);
        drop(buf);
        assert_eq!(active(&alloc), 0);
    }

    #[test]
    fn frozen_bytes_are_zero_copy_and_hold_the_region() {
        let alloc = uncached_pool();
        let mut buf = alloc.heap_buffer(16);
        buf.write_bytes(b"--frozen");
        buf.set_reader_index(2);
        let addr = buf.memory_address();
        let bytes = buf.freeze();
        assert_eq!(bytes.as_ptr() as usize, addr + 2);
        let clone = bytes.clone();
        drop(bytes);
        assert_eq!(active(&alloc), 1);
        let clone = std::thread::spawn(move || clone).join().unwrap();
        assert_eq!(&clone[..], b"frozen");
        drop(clone);
        assert_eq!(active(&alloc), 0);
    }

    #[test]
    fn a_slice_never_sees_later_writes() {
        let alloc = uncached_pool();
        let mut buf = alloc.heap_buffer(16);
        buf.write_bytes(b"abcd");
        let view = buf.slice(1..3);
        let addr = buf.memory_address();
        buf.write_bytes(b"ef"); // above the viewed bytes: in place
        assert_eq!(buf.memory_address(), addr);
        buf.set_u8_at(1, b'B'); // over them: copy on write
        assert_ne!(buf.memory_address(), addr);
        assert_eq!((&view[..], &buf[..]), (&b"bc"[..], &b"aBcdef"[..]));
        assert_eq!(active(&alloc), 2);
        drop(buf);
        assert_eq!(view.clone().into_bytes(), &b"bc"[..]);
        drop(view);
        assert_eq!(active(&alloc), 0);
    }

    #[test]
    fn a_mutable_borrow_moves_only_when_it_holds_viewed_bytes() {
        let alloc = uncached_pool();
        let mut buf = alloc.heap_buffer(16);
        buf.write_bytes(b"abcd");
        let view = buf.slice(..);
        buf.set_reader_index(2);
        buf.set_writer_index(2);
        let addr = buf.memory_address();
        assert!(buf.readable_mut().is_empty(), "no bytes: nothing to move for");
        assert_eq!(buf.memory_address(), addr);
        buf.as_mut_slice()[0] = b'A'; // over the viewed bytes: copy on write (of the bytes below the writer index)
        assert_ne!(buf.memory_address(), addr);
        assert_eq!((&view[..], &buf.as_slice()[..2]), (&b"abcd"[..], &b"Ab"[..]));
    }

    #[test]
    fn writes_after_the_views_are_gone_stay_in_place() {
        let alloc = uncached_pool();
        let mut buf = alloc.heap_buffer(16);
        buf.write_bytes(b"abcd");
        drop(buf.slice(..));
        let addr = buf.memory_address();
        buf.clear();
        buf.write_bytes(b"wxyz");
        assert_eq!(buf.memory_address(), addr);
        assert_eq!((buf.ref_cnt(), &buf[..]), (1, &b"wxyz"[..]));
    }

    #[test]
    fn growth_by_moving_copies_up_to_the_writer_index() {
        let alloc = pool();
        let mut buf = alloc.try_heap_buffer(16, 1000).unwrap();
        buf.write_bytes(&[7; 16]);
        buf.read_u32();
        let addr = buf.memory_address();
        buf.write_u8(8);
        assert_ne!(buf.memory_address(), addr);
        assert_eq!((buf.reader_index(), buf.writer_index(), buf.capacity()), (4, 17, 64));
        assert_eq!(&buf[..], &[7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8]);
    }

    #[test]
    fn parts_drop_on_other_threads_in_any_order() {
        let alloc = uncached_pool();
        let mut buf = alloc.heap_buffer(48);
        buf.write_bytes(&[1; 48]);
        let head = buf.split_to(16);
        let view = buf.slice(..8);
        let frozen = buf.split_off(16).freeze();
        let handles: Vec<_> = [
            std::thread::spawn(move || drop(head)),
            std::thread::spawn(move || assert_eq!(&frozen[..], &[1; 16])),
            std::thread::spawn(move || assert_eq!(&view[..], &[1; 8])),
        ]
        .into();
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(active(&alloc), 1);
        drop(buf);
        assert_eq!(active(&alloc), 0);
    }

    #[test]
    fn discarding_under_a_view_copies_first() {
        let alloc = uncached_pool();
        let mut buf = alloc.heap_buffer(16);
        buf.write_bytes(b"abcdef");
        buf.read_u16();
        let view = buf.slice(..2);
        buf.discard_read_bytes();
        assert_eq!((&view[..], &buf[..]), (&b"cd"[..], &b"cdef"[..]));
        assert_eq!((view.ref_cnt_for_test(), buf.ref_cnt()), (1, 1), "the buffer moved away");
    }

    #[test]
    fn buf_mut_io_and_views_stay_in_their_bytes() {
        use std::io::{Read, Write};

        use bytes::{Buf, BufMut};

        let alloc = uncached_pool();
        let mut buf = alloc.heap_buffer(4);
        buf.put_u32(1);
        buf.put_slice(b"xyz"); // grows in place within the 16-byte class
        let chunk = buf.chunk_mut();
        assert_eq!(chunk.len(), 9);
        chunk[..2].copy_from_slice(b"!!");
        // SAFETY: the two bytes were just written.
        unsafe { buf.advance_mut(2) };
        buf.write_all(b"0123456789").unwrap(); // moves to a 64-byte class
        assert_eq!(buf.get_u32(), 1);
        let mut out = [0; 5];
        buf.read_exact(&mut out).unwrap();
        assert_eq!(&out, b"xyz!!");
        let digits = buf.copy_to_bytes(4);
        let view = buf.slice(1..);
        let sub = view.slice(2..4);
        drop(buf);
        assert_eq!((&digits[..], &view[..], &sub[..]), (&b"0123"[..], &b"56789"[..], &b"78"[..]));
        assert_eq!(sub.into_bytes(), &b"78"[..]);
    }

    #[test]
    fn debug_shows_indexes_and_sizes_not_contents() {
        let mut buf = pool().try_heap_buffer(10, 20).unwrap();
        buf.write_bytes(b"secret");
        buf.read_u8();
        assert_eq!(
            format!("{buf:?}"),
            "ByteBuf { reader_index: 1, writer_index: 6, capacity: 10, max_capacity: 20, direct: false }"
        );
    }
}
