//! Where pool memory comes from: the OS primitives behind one small layer.
//!
//! * *Heap* memory comes from the Rust global allocator, zeroed, except
//!   blocks of [`MAP_MIN`] bytes or more (chunks, huge buffers), which are
//!   mapped like direct memory: glibc serves large `calloc`s from its heap
//!   once its dynamic mmap threshold has risen, and then zeroes every byte,
//!   making a whole 4 MiB chunk resident at once (measured: 4.7 us per
//!   64 KiB buffer on `xthread`, and an out-of-memory kill on `window-mt`
//!   at 1 MiB) and keeping it resident after it is freed.
//! * *Direct* memory comes from anonymous private `mmap`, page aligned and
//!   zero-filled by the kernel, and is counted against a [`MemoryLimit`].
//! * Mapped blocks can ask for transparent huge pages ([`Backing`]): chunks
//!   do as the pool's `HugePages` setting says (by default an arena's dense
//!   chunks after its first), for working sets of tens of MiB, which miss
//!   the TLB on most buffers with 4 KiB pages.
//!
//! A [`RawMemory`] owns one such block and gives it back exactly once, when it
//! drops. Every byte of it is initialised from the start, so safe code may
//! view any byte of a buffer's capacity.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use crate::error::AllocError;
use crate::sync::{Arc, AtomicUsize, Ordering};

/// Alignment of heap blocks: the OS page, so that runs start on page
/// boundaries of the machine whatever the pool's page size.
const HEAP_ALIGN: usize = 4096;

/// Heap blocks this large are mapped rather than taken from the global
/// allocator (module docs).
pub(crate) const MAP_MIN: usize = 1 << 20;

/// The transparent huge page of x86-64, and of arm64 with 4 KiB pages.
/// Elsewhere the advice still applies, at the OS's own size.
const HUGE_PAGE: usize = 2 << 20;

/// How the OS backs a mapped block's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backing {
    /// Base pages, faulted in one at a time.
    BasePages,
    /// Transparent huge pages where the system offers them: a block of at
    /// least [`HUGE_PAGE`] bytes starts on a huge-page boundary and is
    /// advised with `MADV_HUGEPAGE`, so that the kernel backs each whole
    /// huge page it touches with one (with THP `enabled` set to `always`
    /// or `madvise`; `never` ignores the advice). Blocks from the global
    /// allocator (heap blocks below [`MAP_MIN`]) take base pages.
    HugePages,
}

/// Which kind of memory a block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemoryKind {
    /// From the Rust global allocator.
    Heap,
    /// From anonymous `mmap`, counted against the direct-memory limit.
    Direct,
}

impl MemoryKind {
    /// Both kinds, in [`index`](Self::index) order.
    pub(crate) const ALL: [MemoryKind; 2] = [MemoryKind::Heap, MemoryKind::Direct];

    /// 0 for heap, 1 for direct: the index of per-kind arrays.
    #[inline(always)]
    pub(crate) const fn index(self) -> usize {
        match self {
            MemoryKind::Heap => 0,
            MemoryKind::Direct => 1,
        }
    }
}

/// A cap on direct memory, shared by every arena of one allocator.
///
/// Reservations never wait: a request that does not fit fails at once.
#[derive(Debug)]
pub(crate) struct MemoryLimit {
    used: AtomicUsize,
    max: usize,
}

impl MemoryLimit {
    pub(crate) fn new(max: usize) -> MemoryLimit {
        MemoryLimit { used: AtomicUsize::new(0), max }
    }

    #[cfg(test)]
    /// Bytes reserved now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    /// The limit.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    fn reserve(&self, bytes: usize) -> Result<(), AllocError> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let exhausted = AllocError::DirectMemoryExhausted { requested: bytes, used, max: self.max };
            let next = used.checked_add(bytes).ok_or(exhausted.clone())?;
            if next > self.max {
                return Err(exhausted);
            }
            match self.used.compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    fn release(&self, bytes: usize) {
        let before = self.used.fetch_sub(bytes, Ordering::Relaxed);
        debug_assert!(before >= bytes, "direct memory released twice");
    }
}

/// One block of zeroed memory, freed exactly once when it drops.
#[derive(Debug)]
pub(crate) struct RawMemory {
    ptr: NonNull<u8>,
    len: usize,
    kind: MemoryKind,
    /// Whether the block is a mapping (else it is from the global allocator).
    mapped: bool,
    /// How the block was asked to be backed: huge pages only where it is a
    /// mapping of at least a huge page, advised for them.
    backing: Backing,
    /// The limit the block is counted against (direct blocks only).
    limit: Option<Arc<MemoryLimit>>,
}

// SAFETY: a RawMemory is the sole owner of its block; the block is plain bytes
// with no thread affinity, so it may move to and be shared by any thread.
// Who may read or write which bytes is decided above this layer.
unsafe impl Send for RawMemory {}
// SAFETY: as above; `&RawMemory` only exposes the pointer and length.
unsafe impl Sync for RawMemory {}

impl RawMemory {
    /// Obtains `len` zeroed bytes of `kind` memory, backed as `backing`
    /// asks where the block is mapped. Direct memory is first reserved
    /// against `limit`; on any failure nothing stays reserved.
    pub(crate) fn allocate(
        kind: MemoryKind,
        len: usize,
        limit: Option<&Arc<MemoryLimit>>,
        backing: Backing,
    ) -> Result<RawMemory, AllocError> {
        assert!(len > 0, "RawMemory of zero bytes");
        let limit = match kind {
            MemoryKind::Direct => limit.cloned(),
            MemoryKind::Heap => None,
        };
        if let Some(limit) = &limit {
            limit.reserve(len)?;
        }
        let mapped = kind == MemoryKind::Direct || len >= MAP_MIN;
        let huge = backing == Backing::HugePages && len >= HUGE_PAGE;
        let ptr = match (mapped, huge) {
            (true, true) => map_huge(len),
            (true, false) => map_anonymous(len),
            (false, _) => heap_alloc(len),
        };
        match ptr {
            Some(ptr) => {
                let backing = if huge && cfg!(all(unix, not(miri))) { Backing::HugePages } else { Backing::BasePages };
                Ok(RawMemory { ptr, len, kind, mapped, backing, limit })
            }
            None => {
                if let Some(limit) = &limit {
                    limit.release(len);
                }
                Err(AllocError::OutOfMemory { requested: len })
            }
        }
    }

    /// Address of the first byte.
    #[inline]
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Length in bytes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Heap or direct.
    #[inline]
    pub(crate) fn kind(&self) -> MemoryKind {
        self.kind
    }

    /// How the block was asked to be backed (whether the kernel gave huge
    /// pages is its own choice).
    pub(crate) fn backing(&self) -> Backing {
        self.backing
    }
}

impl Drop for RawMemory {
    fn drop(&mut self) {
        if self.mapped {
            // SAFETY: the block came from `map_anonymous(self.len)` and is
            // unmapped only here, once; no reference into it outlives `self`
            // (the layers above hold the owner of this block while they use it).
            unsafe { unmap(self.ptr, self.len) }
        } else {
            // SAFETY: the block came from `heap_alloc(self.len)`, which used
            // exactly this layout, and is freed only here, once.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), heap_layout(self.len)) }
        }
        if let Some(limit) = &self.limit {
            limit.release(self.len);
        }
    }
}

fn heap_layout(len: usize) -> Layout {
    Layout::from_size_align(len, HEAP_ALIGN).expect("block length overflows a Layout")
}

fn heap_alloc(len: usize) -> Option<NonNull<u8>> {
    let layout = Layout::from_size_align(len, HEAP_ALIGN).ok()?;
    // SAFETY: `layout` has a non-zero size (`allocate` asserts `len > 0`).
    NonNull::new(unsafe { alloc::alloc_zeroed(layout) })
}

/// Anonymous private mapping: zero-filled, page aligned, faulted in lazily.
#[cfg(all(unix, not(miri)))]
fn map_anonymous(len: usize) -> Option<NonNull<u8>> {
    // SAFETY: a fresh anonymous mapping at an address the kernel picks cannot
    // alias anything; the arguments are valid for mmap(2).
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return None;
    }
    NonNull::new(addr.cast())
}

/// A mapping of `len` bytes (at least [`HUGE_PAGE`]) that starts on a
/// huge-page boundary, advised for huge pages. The kernel aligns large
/// mappings itself only since Linux 6.7, so this maps a huge page more and
/// unmaps what lies before the boundary and after the block.
#[cfg(all(unix, not(miri)))]
fn map_huge(len: usize) -> Option<NonNull<u8>> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok().filter(|&p| p > 0)?;
    // The block's pages: munmap at drop rounds its length up to them.
    let kept = len.checked_next_multiple_of(page)?;
    let span = kept.checked_add(HUGE_PAGE)?;
    let start = map_anonymous(span)?.as_ptr() as usize;
    let head = start.next_multiple_of(HUGE_PAGE) - start;
    let tail = span - head - kept;
    // Both ranges start on page boundaries: `start` is one, and `head` and
    // `kept` are page multiples (the huge page is one).
    // SAFETY: both are parts of the mapping just made, outside the block kept, and nothing refers to them.
    unsafe {
        if head > 0 {
            unmap(NonNull::new_unchecked(start as *mut u8), head);
        }
        if tail > 0 {
            unmap(NonNull::new_unchecked((start + head + kept) as *mut u8), tail);
        }
    }
    let block = (start + head) as *mut libc::c_void;
    // Advice only: where the kernel has no THP it fails, and the block keeps
    // base pages.
    // SAFETY: the range is a mapping of ours; the advice changes no contents.
    let _ = unsafe { libc::madvise(block, len, libc::MADV_HUGEPAGE) };
    NonNull::new(block.cast())
}

/// # Safety
///
/// `ptr` and `len` must describe a mapping made by [`map_anonymous`] (or a
/// page-aligned part of one) that is not used after this call.
#[cfg(all(unix, not(miri)))]
unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
    // SAFETY: by this function's contract the range is a whole mapping of ours
    // that nobody uses any more.
    let rc = unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
    debug_assert_eq!(rc, 0, "munmap failed");
}

// Miri and non-unix targets have no mmap: direct memory comes from the global
// allocator there, with the same zeroing and alignment guarantees.
#[cfg(any(not(unix), miri))]
fn map_anonymous(len: usize) -> Option<NonNull<u8>> {
    heap_alloc(len)
}

/// Without mmap there is no page advice: a plain block.
#[cfg(any(not(unix), miri))]
fn map_huge(len: usize) -> Option<NonNull<u8>> {
    map_anonymous(len)
}

/// # Safety
///
/// `ptr` and `len` must describe a block made by [`map_anonymous`] that is
/// not used after this call.
#[cfg(any(not(unix), miri))]
unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
    // SAFETY: on these targets `map_anonymous` is `heap_alloc` with this layout.
    unsafe { alloc::dealloc(ptr.as_ptr(), heap_layout(len)) }
}

/// The memory this process may use: physical memory, or the cgroup's limit
/// when one is set and lower.
pub(crate) fn system_memory() -> usize {
    let physical = physical_memory();
    cgroup_limit().map_or(physical, |limit| limit.min(physical))
}

#[cfg(all(unix, not(miri)))]
fn physical_memory() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    if pages > 0 && page > 0 {
        (pages as usize).saturating_mul(page as usize)
    } else {
        FALLBACK_MEMORY
    }
}

#[cfg(any(not(unix), miri))]
fn physical_memory() -> usize {
    FALLBACK_MEMORY
}

/// What to assume when the system does not say: 4 GiB.
const FALLBACK_MEMORY: usize = 4 << 30;

fn cgroup_limit() -> Option<usize> {
    if cfg!(miri) {
        return None;
    }
    ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok()?.trim().parse::<usize>().ok())
}

/// Asks the C allocator to return its free pages to the system: glibc keeps
/// memory freed by the global allocator (for example the bookkeeping of
/// destroyed chunks, about 50 KiB each) until asked. Elsewhere a no-op.
pub(crate) fn release_free_heap_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(miri)))]
    // SAFETY: malloc_trim has no preconditions; it only returns free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_and_direct_blocks_are_zeroed_and_writable() {
        for kind in MemoryKind::ALL {
            let block = RawMemory::allocate(kind, 3 * 4096, None, Backing::BasePages).unwrap();
            assert_eq!(block.len(), 3 * 4096);
            assert_eq!(block.kind(), kind);
            assert_eq!(block.ptr().as_ptr() as usize % 4096, 0);
            // SAFETY: the block is ours, `len` bytes long and initialised.
            let bytes = unsafe { std::slice::from_raw_parts_mut(block.ptr().as_ptr(), block.len()) };
            assert!(bytes.iter().all(|&b| b == 0));
            bytes.fill(0xA5);
            assert!(bytes.iter().all(|&b| b == 0xA5));
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "a 1 MiB zero check is slow under Miri")]
    fn large_heap_blocks_are_mapped_zeroed_and_not_counted() {
        let limit = Arc::new(MemoryLimit::new(0));
        let block = RawMemory::allocate(MemoryKind::Heap, MAP_MIN, Some(&limit), Backing::BasePages).unwrap();
        assert!(block.mapped && block.kind() == MemoryKind::Heap);
        assert_eq!(limit.used(), 0);
        // SAFETY: the block is ours, `len` bytes long and initialised.
        let bytes = unsafe { std::slice::from_raw_parts_mut(block.ptr().as_ptr(), block.len()) };
        assert!(bytes.iter().all(|&b| b == 0));
        bytes[MAP_MIN - 1] = 1;
        let small = RawMemory::allocate(MemoryKind::Heap, 4096, None, Backing::HugePages).unwrap();
        assert!(!small.mapped);
    }

    #[test]
    #[cfg_attr(miri, ignore = "mmap: Miri has none")]
    fn huge_page_blocks_start_on_a_huge_page_boundary() {
        let limit = Arc::new(MemoryLimit::new(usize::MAX));
        for (kind, len) in [
            (MemoryKind::Direct, HUGE_PAGE),
            (MemoryKind::Heap, 2 * HUGE_PAGE),
            (MemoryKind::Direct, 3 * HUGE_PAGE + 8192),
            (MemoryKind::Heap, HUGE_PAGE + 100),
        ] {
            let blocks: Vec<RawMemory> =
                (0..3).map(|_| RawMemory::allocate(kind, len, Some(&limit), Backing::HugePages).unwrap()).collect();
            for block in &blocks {
                assert!(block.mapped);
                assert_eq!(block.ptr().as_ptr() as usize % HUGE_PAGE, 0, "{kind:?} block of {len}");
                // SAFETY: the block is ours, `len` bytes long and initialised.
                let bytes = unsafe { std::slice::from_raw_parts_mut(block.ptr().as_ptr(), block.len()) };
                assert_eq!((bytes[0], bytes[len / 2], bytes[len - 1]), (0, 0, 0));
                bytes[0] = 1;
                bytes[len - 1] = 1;
            }
        }
        assert_eq!(limit.used(), 0, "the direct blocks are released, each once");
        let direct = RawMemory::allocate(MemoryKind::Direct, HUGE_PAGE, Some(&limit), Backing::HugePages).unwrap();
        assert_eq!(limit.used(), HUGE_PAGE, "the limit counts the block, not the span mapped to align it");
        drop(direct);
    }

    #[test]
    fn direct_memory_is_counted_and_released_once() {
        let limit = Arc::new(MemoryLimit::new(10_000));
        let a = RawMemory::allocate(MemoryKind::Direct, 4096, Some(&limit), Backing::BasePages).unwrap();
        let b = RawMemory::allocate(MemoryKind::Direct, 4096, Some(&limit), Backing::BasePages).unwrap();
        assert_eq!(limit.used(), 8192);
        let err = RawMemory::allocate(MemoryKind::Direct, 4096, Some(&limit), Backing::BasePages).unwrap_err();
        assert_eq!(err, AllocError::DirectMemoryExhausted { requested: 4096, used: 8192, max: 10_000 });
        assert_eq!(limit.used(), 8192, "a failed reservation leaves the count as it was");
        drop(a);
        assert_eq!(limit.used(), 4096);
        drop(b);
        assert_eq!(limit.used(), 0);
        assert_eq!(limit.max(), 10_000);
    }

    #[test]
    fn heap_memory_is_not_counted_against_the_direct_limit() {
        let limit = Arc::new(MemoryLimit::new(0));
        let block = RawMemory::allocate(MemoryKind::Heap, 4096, Some(&limit), Backing::BasePages).unwrap();
        assert_eq!(limit.used(), 0);
        drop(block);
    }
}
