//! The implementations the benchmark compares, behind one trait so that each
//! workload is compiled once per implementation (no dynamic dispatch inside
//! the timed loops).

use std::ffi::c_void;

use arenabuf::{ByteBuf, PooledAllocator};
use bytes::BytesMut;

/// Every implementation's name, in table order.
pub const ALL: [&str; 7] =
    ["arenabuf-direct", "arenabuf-heap", "arenabuf-nocache", "system", "bytesmut", "mimalloc", "jemalloc"];

/// Whether `name` is one of arenabuf's own configurations.
pub fn is_arenabuf(name: &str) -> bool {
    name.starts_with("arenabuf")
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
}

/// arenabuf, direct or heap memory.
pub struct Arenabuf {
    pub alloc: PooledAllocator,
    pub direct: bool,
}

impl Arenabuf {
    pub fn new(name: &str) -> Arenabuf {
        let alloc = match name {
            "arenabuf-nocache" => {
                PooledAllocator::builder().small_cache_size(0).normal_cache_size(0).build().expect("valid settings")
            }
            _ => PooledAllocator::new(),
        };
        Arenabuf { alloc, direct: name != "arenabuf-heap" }
    }
}

impl BufAlloc for Arenabuf {
    type Buf = ByteBuf;

    #[inline]
    fn alloc(&self, size: usize) -> ByteBuf {
        if self.direct {
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

/// A block from a C allocator.
pub struct RawBuf(*mut u8);

// SAFETY: a RawBuf is the sole owner of its block; C allocators allow freeing
// on any thread.
unsafe impl Send for RawBuf {}

/// A C allocator called directly, not as the global allocator: `$malloc` /
/// `$free`, and `$trim` to give memory back.
macro_rules! c_allocator {
    ($(#[$doc:meta])* $name:ident, $malloc:path, $free:path, $trim:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl BufAlloc for $name {
            type Buf = RawBuf;

            #[inline]
            fn alloc(&self, size: usize) -> RawBuf {
                // SAFETY: malloc-style functions have no preconditions; null is checked.
                let ptr = unsafe { $malloc(size) }.cast::<u8>();
                assert!(!ptr.is_null(), concat!(stringify!($name), " out of memory"));
                RawBuf(ptr)
            }

            #[inline]
            fn ptr(buf: &mut RawBuf) -> *mut u8 {
                buf.0
            }

            #[inline]
            fn release(&self, buf: RawBuf) {
                // SAFETY: the block came from this allocator's malloc and is freed once.
                unsafe { $free(buf.0.cast::<c_void>()) }
            }

            fn trim(&self) {
                $trim
            }
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
