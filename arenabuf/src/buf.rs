//! [`ByteBuf`], the user's handle on pooled memory.

use std::fmt;

use crate::thread_cache::Allocation;

/// A byte buffer whose memory comes from a [`PooledAllocator`](crate::PooledAllocator)
/// and goes back to it when the buffer drops.
///
/// Every byte of the capacity is initialised (fresh pool memory is zeroed;
/// reused memory holds what its last user wrote), so the whole capacity can
/// be viewed as a slice. A `ByteBuf` is `Send` and `Sync`: it can be
/// released on any thread, and its region goes back to the cache of the
/// thread that allocated it.
///
/// # Examples
///
/// ```
/// let alloc = arenabuf::PooledAllocator::new();
/// let mut buf = alloc.heap_buffer(16);
/// buf.as_mut_slice()[0] = 7;
/// let buf = std::thread::spawn(move || buf).join().unwrap();
/// assert_eq!(buf.as_slice()[0], 7);
/// ```
pub struct ByteBuf {
    allocation: Allocation,
    capacity: usize,
    max_capacity: usize,
}

impl ByteBuf {
    pub(crate) fn new(allocation: Allocation, capacity: usize, max_capacity: usize) -> ByteBuf {
        debug_assert!(capacity <= allocation.len() && capacity <= max_capacity);
        ByteBuf { allocation, capacity, max_capacity }
    }

    pub(crate) fn allocation(&self) -> &Allocation {
        &self.allocation
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
        self.capacity
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
        self.max_capacity
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
        self.allocation.is_direct()
    }

    /// The address of byte 0, for handing to system calls and FFI.
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
        self.allocation.ptr().as_ptr() as usize
    }

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
        // SAFETY: the region is this buffer's alone until it drops, at least
        // `capacity` bytes long (checked in `new`) and fully initialised.
        unsafe { std::slice::from_raw_parts(self.allocation.ptr().as_ptr(), self.capacity) }
    }

    /// The whole capacity as a mutable slice.
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
        // SAFETY: as in `as_slice`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.allocation.ptr().as_ptr(), self.capacity) }
    }
}

impl fmt::Debug for ByteBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteBuf")
            .field("capacity", &self.capacity)
            .field("max_capacity", &self.max_capacity)
            .field("direct", &self.is_direct())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::PooledAllocator;

    fn pool() -> PooledAllocator {
        PooledAllocator::builder()
            .heap_arenas(1)
            .direct_arenas(1)
            .max_order(crate::test_config::MAX_ORDER)
            .build()
            .unwrap()
    }

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

    #[test]
    fn debug_shows_sizes_not_contents() {
        let buf = pool().try_heap_buffer(10, 20).unwrap();
        assert_eq!(format!("{buf:?}"), "ByteBuf { capacity: 10, max_capacity: 20, direct: false }");
    }
}
