//! The implementations the benchmark compares, behind one trait so that each
//! workload is compiled once per implementation (no dynamic dispatch inside
//! the timed loops).

use std::ffi::c_void;
use std::marker::PhantomData;
use std::num::NonZeroU64;

use arenabuf::{ByteBuf, HugePages, PooledAllocator};
use bytes::BytesMut;

/// Every implementation's name, in table order.
pub const ALL: [&str; 8] =
    ["arenabuf-direct", "arenabuf-heap", "arenabuf-nocache", "system", "bytesmut", "mimalloc", "jemalloc", "floor"];

/// References run only when asked for (`--impl`): an allocator whose
/// buffers are carried in handles as large as arenabuf's, or of 32 bytes
/// (see [`Wide`]), `floor` with its blocks packed (see [`FloorPacked`]), and
/// the two page policies swapped: arenabuf with every chunk on huge pages
/// (see [`Arenabuf`]), mimalloc on base pages (see [`MimallocNoThp`]).
pub const EXTRA: [&str; 8] = [
    "floor-wide",
    "mimalloc-wide",
    "floor-w32",
    "mimalloc-w32",
    "floor-packed",
    "floor-packed-wide",
    "arenabuf-huge",
    "mimalloc-nothp",
];

/// Whether `name` is one of arenabuf's own configurations.
pub fn is_arenabuf(name: &str) -> bool {
    name.starts_with("arenabuf")
}

/// Whether `name` competes for "best": the general-purpose allocators, not
/// arenabuf itself nor the `floor` reference.
pub fn is_baseline(name: &str) -> bool {
    !is_arenabuf(name) && name != "floor" && !EXTRA.contains(&name)
}

/// A buffer allocator under test.
pub trait BufAlloc: Sync {
    /// The buffer type; released by [`BufAlloc::release`].
    type Buf: Send;
    /// Allocates a buffer of at least `size` bytes.
    fn alloc(&self, size: usize) -> Self::Buf;
    /// The first byte of the buffer's (at least `size`-byte) memory.
    fn ptr(buf: &mut Self::Buf) -> *mut u8;
    /// Releases a buffer.
    fn release(&self, buf: Self::Buf);
    /// Gives unused memory back to the system, if the allocator can.
    fn trim(&self) {}
    /// The allocator's own used-memory figure, if it keeps one.
    fn pool_used(&self) -> Option<u64> {
        None
    }
    /// Whether the implementation can run `workload` (see [`Floor`]).
    fn runs(&self, workload: crate::harness::Workload) -> bool {
        let _ = workload;
        true
    }
}

/// arenabuf, direct (`DIRECT`) or heap memory: one type per kind, so that
/// each call site compiles to one hit path, as a user's call of
/// `direct_buffer` or `heap_buffer` does, instead of a call to a function
/// holding both.
///
/// `arenabuf-huge` is `arenabuf-direct` with every chunk on huge pages
/// ([`HugePages::All`]), a reference for the page policy rather than a
/// configuration to choose: mimalloc advises its whole arena with
/// `MADV_HUGEPAGE` when the kernel's THP setting is `madvise`, while
/// arenabuf's default keeps larger buffers on base pages, so that one
/// touched at its ends leaves its middle unmapped. It does not run
/// `window-mt`: at 1 MiB its two windows alone would keep 16 GiB resident.
pub struct Arenabuf<const DIRECT: bool> {
    pub alloc: PooledAllocator,
    every_chunk_huge: bool,
}

impl<const DIRECT: bool> Arenabuf<DIRECT> {
    pub fn new(name: &str) -> Arenabuf<DIRECT> {
        let every_chunk_huge = name == "arenabuf-huge";
        let alloc = match name {
            "arenabuf-nocache" => {
                PooledAllocator::builder().small_cache_size(0).normal_cache_size(0).build().expect("valid settings")
            }
            "arenabuf-huge" => PooledAllocator::builder().huge_pages(HugePages::All).build().expect("valid settings"),
            _ => PooledAllocator::new(),
        };
        Arenabuf { alloc, every_chunk_huge }
    }
}

impl<const DIRECT: bool> BufAlloc for Arenabuf<DIRECT> {
    type Buf = ByteBuf;

    #[inline]
    fn alloc(&self, size: usize) -> ByteBuf {
        if DIRECT {
            self.alloc.direct_buffer(size)
        } else {
            self.alloc.heap_buffer(size)
        }
    }

    #[inline]
    fn ptr(buf: &mut ByteBuf) -> *mut u8 {
        buf.as_mut_slice().as_mut_ptr()
    }

    #[inline]
    fn release(&self, buf: ByteBuf) {
        drop(buf);
    }

    fn trim(&self) {
        self.alloc.trim();
    }

    fn pool_used(&self) -> Option<u64> {
        let m = self.alloc.metric();
        Some(m.used_direct_memory() + m.used_heap_memory())
    }

    fn runs(&self, workload: crate::harness::Workload) -> bool {
        !(self.every_chunk_huge && workload == crate::harness::Workload::WindowMt)
    }
}

/// `Vec<u8>::with_capacity` on the default global allocator (glibc here).
pub struct System;

impl BufAlloc for System {
    type Buf = Vec<u8>;

    #[inline]
    fn alloc(&self, size: usize) -> Vec<u8> {
        Vec::with_capacity(size)
    }

    #[inline]
    fn ptr(buf: &mut Vec<u8>) -> *mut u8 {
        buf.spare_capacity_mut().as_mut_ptr().cast()
    }

    #[inline]
    fn release(&self, buf: Vec<u8>) {
        drop(buf);
    }

    fn trim(&self) {
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc_malloc_trim(0) };
    }
}

extern "C" {
    #[link_name = "malloc_trim"]
    fn libc_malloc_trim(pad: usize) -> i32;
}

/// `bytes::BytesMut::with_capacity`.
pub struct Bytes;

impl BufAlloc for Bytes {
    type Buf = BytesMut;

    #[inline]
    fn alloc(&self, size: usize) -> BytesMut {
        BytesMut::with_capacity(size)
    }

    #[inline]
    fn ptr(buf: &mut BytesMut) -> *mut u8 {
        buf.spare_capacity_mut().as_mut_ptr().cast()
    }

    #[inline]
    fn release(&self, buf: BytesMut) {
        drop(buf);
    }

    fn trim(&self) {
        System.trim();
    }
}

/// A block from a C allocator: its address, cast from the pointer (which
/// exposes its provenance) and back to use it, so that the buffer holds an
/// integer only ([`in_whole_stores`]).
pub struct RawBuf(usize);

/// A C allocator called directly, not as the global allocator: `$malloc` /
/// `$free`, `$trim` to give memory back, and the workloads it runs (every
/// one unless `$runs`, a function of the workload, says otherwise).
macro_rules! c_allocator {
    ($(#[$doc:meta])* $name:ident, $malloc:path, $free:path, $trim:expr $(, runs: $runs:expr)?) => {
        $(#[$doc])*
        pub struct $name;

        impl BufAlloc for $name {
            type Buf = RawBuf;

            #[inline]
            fn alloc(&self, size: usize) -> RawBuf {
                // SAFETY: malloc-style functions have no preconditions; null is checked.
                let ptr = unsafe { $malloc(size) }.cast::<u8>();
                assert!(!ptr.is_null(), concat!(stringify!($name), " out of memory"));
                RawBuf(ptr as usize)
            }

            #[inline]
            fn ptr(buf: &mut RawBuf) -> *mut u8 {
                buf.0 as *mut u8
            }

            #[inline]
            fn release(&self, buf: RawBuf) {
                // SAFETY: the block came from this allocator's malloc and is freed once.
                unsafe { $free(buf.0 as *mut c_void) }
            }

            fn trim(&self) {
                $trim
            }

            $(
                fn runs(&self, workload: crate::harness::Workload) -> bool {
                    $runs(workload)
                }
            )?
        }
    };
}

c_allocator!(
    /// mimalloc (`mi_malloc` / `mi_free`).
    Mimalloc,
    libmimalloc_sys::mi_malloc,
    libmimalloc_sys::mi_free,
    // SAFETY: mi_collect has no preconditions.
    unsafe { libmimalloc_sys::mi_collect(true) }
);

/// How much address space [`mimalloc_nothp_heap`]'s arena reserves: what
/// one mimalloc arena can hold (16 GiB, less room for its own metadata),
/// more than `window` at 1 MiB keeps live (8 GiB, most of it never
/// touched). Reserved, not committed: mimalloc maps it without access and
/// commits what it uses.
const NOTHP_ARENA_BYTES: usize = 15 << 30;

/// The heap `mimalloc-nothp` allocates from: mimalloc's own, in an arena of
/// its own reserved without huge pages (`allow_large` false), which only
/// this heap uses (`exclusive`). A mimalloc 3 heap serves any thread.
fn mimalloc_nothp_heap() -> *mut libmimalloc_sys::mi_heap_t {
    use libmimalloc_sys::{mi_arena_id_t, mi_heap_new_in_arena, mi_reserve_os_memory_ex};
    static HEAP: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let heap = *HEAP.get_or_init(|| {
        let mut arena: mi_arena_id_t = std::ptr::null_mut();
        // SAFETY: `arena` is a valid place for the new arena's id.
        let err = unsafe { mi_reserve_os_memory_ex(NOTHP_ARENA_BYTES, false, false, true, &mut arena) };
        assert_eq!(err, 0, "mimalloc-nothp: reserving its arena failed");
        // SAFETY: `arena` was just reserved, and stays for the process.
        let heap = unsafe { mi_heap_new_in_arena(arena) };
        assert!(!heap.is_null(), "mimalloc-nothp: no heap");
        heap as usize
    });
    heap as *mut libmimalloc_sys::mi_heap_t
}

/// `mi_heap_malloc` on [`mimalloc_nothp_heap`].
///
/// # Safety
///
/// None beyond `malloc`'s: the block is freed with `mi_free` once.
unsafe fn mimalloc_nothp_malloc(size: usize) -> *mut c_void {
    // SAFETY: a heap of mimalloc's, alive for the process.
    unsafe { libmimalloc_sys::mi_heap_malloc(mimalloc_nothp_heap(), size) }
}

c_allocator!(
    /// mimalloc on base pages: `mi_heap_malloc` on a heap whose arena was
    /// reserved without huge pages, and `mi_free`. mimalloc's default
    /// (`mimalloc`) advises its arenas with `MADV_HUGEPAGE` when the
    /// kernel's THP setting is `madvise`, as on this machine, so that every
    /// block it hands out sits on 2 MiB pages; this reference shows what
    /// that page policy is worth to it, next to `arenabuf-huge`. It does not
    /// run `window-mt`, whose two windows at 1 MiB would not fit its arena.
    MimallocNoThp,
    mimalloc_nothp_malloc,
    libmimalloc_sys::mi_free,
    // SAFETY: a heap of mimalloc's, alive for the process.
    unsafe { libmimalloc_sys::mi_heap_collect(mimalloc_nothp_heap(), true) },
    runs: |workload| workload != crate::harness::Workload::WindowMt
);

c_allocator!(
    /// jemalloc with prefixed symbols (`malloc` / `free`).
    Jemalloc,
    tikv_jemalloc_sys::malloc,
    tikv_jemalloc_sys::free,
    // "arena.<MALLCTL_ARENAS_ALL>.purge": every arena's dirty pages go back.
    // SAFETY: a NUL-terminated name and no old/new values, as purge takes none.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
);

/// Blocks of one thread's [`Floor`], per power-of-two class; freed when the
/// thread exits.
struct FloorLists([Vec<*mut u8>; 64]);

impl FloorLists {
    fn free_all(&mut self) {
        for list in &mut self.0 {
            for ptr in list.drain(..) {
                // SAFETY: every listed block came from `libc::malloc` and is listed once.
                unsafe { libc::free(ptr.cast()) };
            }
        }
    }
}

impl Drop for FloorLists {
    fn drop(&mut self) {
        self.free_all();
    }
}

/// Blocks of one thread's [`FloorPacked`], per power-of-two class, and the
/// slabs they were carved from; the slabs are freed when the thread exits.
struct PackedLists {
    blocks: [Vec<*mut u8>; 64],
    slabs: Vec<(*mut u8, std::alloc::Layout)>,
}

impl PackedLists {
    /// Carves a new slab into blocks of `1 << class` bytes, placed end to
    /// end, and lists them.
    #[cold]
    fn carve(&mut self, class: u32) {
        let block = 1usize << class;
        let slab = block.max(PACKED_SLAB);
        let layout = std::alloc::Layout::from_size_align(slab, 4096).expect("slab layout");
        // SAFETY: the layout's size is not zero.
        let base = unsafe { std::alloc::alloc(layout) };
        assert!(!base.is_null(), "floor-packed out of memory");
        self.slabs.push((base, layout));
        // The lowest address on top, so that a fresh slab is used in order.
        // SAFETY: every offset is below the slab's size.
        self.blocks[class as usize].extend((0..slab / block).rev().map(|i| unsafe { base.add(i * block) }));
    }
}

impl Drop for PackedLists {
    fn drop(&mut self) {
        for &(base, layout) in &self.slabs {
            // SAFETY: allocated in `carve` with this layout, freed once, here.
            unsafe { std::alloc::dealloc(base, layout) };
        }
    }
}

/// Bytes of one [`FloorPacked`] slab (or one block, when larger).
const PACKED_SLAB: usize = 1 << 20;

std::thread_local! {
    static FLOOR: std::cell::RefCell<FloorLists> =
        const { std::cell::RefCell::new(FloorLists([const { Vec::new() }; 64])) };
    static PACKED: std::cell::RefCell<PackedLists> =
        const { std::cell::RefCell::new(PackedLists { blocks: [const { Vec::new() }; 64], slabs: Vec::new() }) };
}

/// A reference, not an allocator: what a buffer costs with no allocator
/// work at all. Each thread keeps LIFO lists of power-of-two blocks (from
/// `malloc` on a miss) and never gives them to another thread or back to the
/// system until it exits, so it runs only the single-thread-per-buffer
/// workloads (`hot`, `fill`, `window`, `window-mt`). A ratio to `floor` below
/// a target means no allocator could meet that target on this machine.
pub struct Floor;

/// A [`Floor`] block and its class, as integers only (the block's address,
/// cast from its pointer, which exposes its provenance; a word for the
/// class: no padding bytes), so that [`in_whole_stores`] may copy the
/// buffer as words.
pub struct FloorBuf {
    addr: usize,
    class: u64,
}

/// Where a floor reference's blocks come from: one thread's LIFO lists of
/// blocks per power-of-two class.
pub trait FloorBlocks: Sync {
    /// A block of `1 << class` bytes.
    fn take(class: u32) -> *mut u8;
    /// Lists a block that [`take`](Self::take) gave for `class`.
    fn give(class: u32, block: *mut u8);
    /// Frees the listed blocks, where the reference can.
    fn free_listed() {}
}

impl FloorBlocks for Floor {
    #[inline]
    fn take(class: u32) -> *mut u8 {
        let reused = FLOOR.with(|lists| lists.borrow_mut().0[class as usize].pop());
        reused.unwrap_or_else(|| {
            // SAFETY: malloc has no preconditions; null is checked.
            let ptr = unsafe { libc::malloc(1 << class) }.cast::<u8>();
            assert!(!ptr.is_null(), "floor out of memory");
            ptr
        })
    }

    #[inline]
    fn give(class: u32, block: *mut u8) {
        FLOOR.with(|lists| lists.borrow_mut().0[class as usize].push(block));
    }

    fn free_listed() {
        FLOOR.with(|lists| lists.borrow_mut().free_all());
    }
}

impl<F: FloorBlocks> BufAlloc for F {
    type Buf = FloorBuf;

    #[inline]
    fn alloc(&self, size: usize) -> FloorBuf {
        let class = size.max(16).next_power_of_two().trailing_zeros();
        FloorBuf { addr: F::take(class) as usize, class: class.into() }
    }

    #[inline]
    fn ptr(buf: &mut FloorBuf) -> *mut u8 {
        buf.addr as *mut u8
    }

    #[inline]
    fn release(&self, buf: FloorBuf) {
        F::give(buf.class as u32, buf.addr as *mut u8);
    }

    fn trim(&self) {
        F::free_listed();
    }

    fn runs(&self, workload: crate::harness::Workload) -> bool {
        use crate::harness::Workload;
        matches!(workload, Workload::Hot | Workload::Fill | Workload::Window | Workload::WindowMt)
    }
}

/// [`Floor`] with its blocks packed as an allocator without block headers
/// packs them (arenabuf's runs, jemalloc's slabs): end to end, at exactly
/// the class size, carved from 1 MiB slabs aligned to 4 KiB. `floor`'s
/// blocks come from `malloc`, which puts a 16-byte header before each, so
/// the last word the workloads touch in one block often shares a cache line
/// (and a page) with the first word of the next; here it never does. Where
/// `floor-packed` misses a target that `floor` meets, the target asks for
/// glibc's block layout rather than for less allocator work. Slabs are
/// freed when their thread exits; [`BufAlloc::trim`] keeps them (live blocks
/// share them).
pub struct FloorPacked;

impl FloorBlocks for FloorPacked {
    #[inline]
    fn take(class: u32) -> *mut u8 {
        PACKED.with(|lists| {
            let mut lists = lists.borrow_mut();
            if lists.blocks[class as usize].is_empty() {
                lists.carve(class);
            }
            lists.blocks[class as usize].pop().expect("just carved")
        })
    }

    #[inline]
    fn give(class: u32, block: *mut u8) {
        PACKED.with(|lists| lists.borrow_mut().blocks[class as usize].push(block));
    }
}

/// A reference for the cost of a buffer's handle: `A`'s buffers, each
/// carried with padding `P` that brings it to a given size: that of an
/// `arenabuf::ByteBuf` (see [`FloorWide`], [`MimallocWide`]), so that slots,
/// channels and moves handle as many bytes as they do for arenabuf, or 32
/// bytes (see [`FloorW32`], [`MimallocW32`]). The padding is written when a
/// buffer is made and its address goes through `black_box` when the buffer
/// is released, so that every store stays. Compare `floor` with `floor-wide`
/// to see what the handle's size costs a workload.
///
/// The buffer is written 16 bytes at a time ([`in_whole_stores`]), as
/// arenabuf writes its own: built with the compiler's 8-byte stores and
/// moved with 16-byte loads, each load waited for the stores it read (about
/// 15 cycles on this project's machine), and `floor-wide` took 14.5 ns per
/// `hot` pair, more than arenabuf's 10.8, against 6.4 now.
pub struct Wide<A, P>(pub A, PhantomData<P>);

impl<A, P> Wide<A, P> {
    pub fn new(alloc: A) -> Wide<A, P> {
        Wide(alloc, PhantomData)
    }
}

/// [`Floor`] with arenabuf's handle size.
pub type FloorWide = Wide<Floor, [u64; 4]>;
/// [`Mimalloc`] with arenabuf's handle size.
pub type MimallocWide = Wide<Mimalloc, [u64; 5]>;
/// [`FloorPacked`] with arenabuf's handle size.
pub type FloorPackedWide = Wide<FloorPacked, [u64; 4]>;
/// [`Floor`] with a 32-byte handle.
pub type FloorW32 = Wide<Floor, Niched<1>>;
/// [`Mimalloc`] with a 32-byte handle.
pub type MimallocW32 = Wide<Mimalloc, Niched<2>>;

const _: () = assert!(
    // As `ByteBuf`, without a niche: an `Option` of either is 8 bytes larger.
    std::mem::size_of::<Option<WideBuf<FloorBuf, [u64; 4]>>>() == std::mem::size_of::<Option<ByteBuf>>()
        && std::mem::size_of::<Option<WideBuf<RawBuf, [u64; 5]>>>() == std::mem::size_of::<Option<ByteBuf>>()
        // 32 bytes with a niche, so that slots of `Option`s are 32 bytes too.
        && std::mem::size_of::<Option<WideBuf<FloorBuf, Niched<1>>>>() == 32
        && std::mem::size_of::<Option<WideBuf<RawBuf, Niched<2>>>>() == 32
);

/// `value`, rewritten 16 bytes at a time, so that a move of it (16-byte
/// loads) does not wait for the 8-byte stores the compiler builds it with:
/// a buffer handle built as arenabuf builds its own.
///
/// `T`'s size is a multiple of 16, and it holds integers only, with no
/// padding bytes (every [`WideBuf`] here: addresses are kept with their
/// provenance exposed), so that its bytes may pass through integer
/// registers.
#[inline(always)]
fn in_whole_stores<T>(value: T) -> T {
    const { assert!(std::mem::size_of::<T>() % 16 == 0) };
    let mut out = std::mem::MaybeUninit::<T>::uninit();
    #[cfg(target_arch = "x86_64")]
    for piece in 0..std::mem::size_of::<T>() / 16 {
        use std::arch::x86_64::{_mm_set_epi64x, _mm_storeu_si128};
        // Two 8-byte loads (served from the 8-byte stores that built `value`)
        // joined in a register: one 16-byte load would wait for those stores.
        // `T` is integers without padding (the caller's types), so every byte
        // read is initialised and carries no provenance to lose.
        // SAFETY: `piece * 16 + 16 <= size_of::<T>()`: inside `value` and `out`; SSE2 is x86-64's; unaligned is allowed.
        unsafe {
            let from = std::ptr::from_ref(&value).cast::<u64>().add(piece * 2);
            let (low, high) = (from.read_unaligned() as i64, from.add(1).read_unaligned() as i64);
            _mm_storeu_si128(out.as_mut_ptr().cast::<u8>().add(piece * 16).cast(), _mm_set_epi64x(high, low));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    out.write(value);
    #[cfg(target_arch = "x86_64")]
    std::mem::forget(value);
    // SAFETY: every byte of `out` was written from `value` (a bitwise move).
    unsafe { out.assume_init() }
}

/// A [`Wide`] buffer.
pub struct WideBuf<B, P> {
    buf: B,
    pad: P,
}

/// The padding of a [`Wide`] buffer, made from the size asked for.
pub trait Padding: Copy + Send + Sync {
    fn of(size: usize) -> Self;
}

impl<const N: usize> Padding for [u64; N] {
    #[inline]
    fn of(size: usize) -> Self {
        [size as u64; N]
    }
}

/// Padding whose first word is never zero, so that an `Option` of the
/// buffer needs no tag of its own, as a handle whose address comes first
/// would not.
#[derive(Clone, Copy)]
pub struct Niched<const N: usize> {
    _first: NonZeroU64,
    _rest: [u64; N],
}

impl<const N: usize> Padding for Niched<N> {
    #[inline]
    fn of(size: usize) -> Self {
        Niched { _first: NonZeroU64::MIN.saturating_add(size as u64), _rest: [size as u64; N] }
    }
}

impl<A: BufAlloc, P: Padding> BufAlloc for Wide<A, P> {
    type Buf = WideBuf<A::Buf, P>;

    #[inline(always)]
    fn alloc(&self, size: usize) -> Self::Buf {
        in_whole_stores(WideBuf { buf: self.0.alloc(size), pad: P::of(size) })
    }

    #[inline(always)]
    fn ptr(buf: &mut Self::Buf) -> *mut u8 {
        A::ptr(&mut buf.buf)
    }

    #[inline(always)]
    fn release(&self, buf: Self::Buf) {
        std::hint::black_box(&buf.pad);
        self.0.release(buf.buf);
    }

    fn trim(&self) {
        self.0.trim();
    }

    fn runs(&self, workload: crate::harness::Workload) -> bool {
        self.0.runs(workload)
    }
}
