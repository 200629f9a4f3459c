//! One chunk: a block of `1 << max_order` pages handed out as runs of pages.
//!
//! Free runs are indexed by page class (the floor class of their length) in
//! one bitset per class, keyed by the run's first page. A request for `n`
//! pages takes, from the first non-empty class at or above the ceiling class
//! of `n`, the free run with the lowest offset; the head serves the request
//! and the tail stays free. Each bitset has a summary level, so finding the
//! lowest run is a handful of word operations even in a 16384-page chunk,
//! and nothing here allocates once the chunk exists.
//!
//! A freed run is filed as it is, not merged with its free neighbours at
//! once (jemalloc delays the coalescing of its dirty extents alike): the
//! next request of its class finds it whole in the class's bitset and takes
//! the same pages, which its last user touched. Merged, it would be cut
//! again at another offset, and a buffer's first and last pages would often
//! be pages never touched before, each a page fault (`window` with mixed
//! sizes: 32,500 faults over six runs, 16,000 with runs kept apart and
//! taken by class first; see `Arena::allocate`). Neighbouring free runs
//! merge when a request finds no run that fits in a chunk whose free bytes
//! would hold it ([`Chunk::allocate_run`]), so a chunk still serves every
//! request that its free pages could. A merge visits only the runs freed
//! since the last one (a bit per page), each joined with its free
//! neighbours on both sides, so it costs what merging at each free did.
//!
//! A run is named by a [`Handle`], a `u64` laid out as in Netty:
//! run offset in pages (15 bits, top), run length in pages (15 bits), a used
//! bit, a subpage bit, and the element index within a subpage (32 bits, low).

use std::ptr::NonNull;

use crate::error::AllocError;
use crate::memory::{Backing, MemoryKind, MemoryLimit, RawMemory};
use crate::size_class::SizeClasses;
use crate::subpage::{Freed, SubpageShape, SubpageTable};
use crate::sync::Arc;

const OFFSET_SHIFT: u32 = 49;
const PAGES_SHIFT: u32 = 34;
const USED_BIT: u64 = 1 << 33;
const SUBPAGE_BIT: u64 = 1 << 32;
const FIELD_MASK: u64 = (1 << 15) - 1;

/// A region of a chunk: a run, or one element of a subpage run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Handle(u64);

impl Handle {
    #[inline]
    fn run(offset: u32, pages: u32) -> Handle {
        Handle((offset as u64) << OFFSET_SHIFT | (pages as u64) << PAGES_SHIFT | USED_BIT)
    }

    #[inline]
    fn element(offset: u32, pages: u32, elem: u32) -> Handle {
        Handle(Handle::run(offset, pages).0 | SUBPAGE_BIT | elem as u64)
    }

    /// First page of the run.
    #[inline]
    pub(crate) fn run_offset(self) -> u32 {
        (self.0 >> OFFSET_SHIFT & FIELD_MASK) as u32
    }

    /// Pages in the run.
    #[inline]
    pub(crate) fn run_pages(self) -> u32 {
        (self.0 >> PAGES_SHIFT & FIELD_MASK) as u32
    }

    #[inline]
    pub(crate) fn is_used(self) -> bool {
        self.0 & USED_BIT != 0
    }

    #[inline]
    pub(crate) fn is_subpage(self) -> bool {
        self.0 & SUBPAGE_BIT != 0
    }

    /// Element index within the subpage (0 for a plain run).
    #[inline]
    pub(crate) fn element_index(self) -> u32 {
        self.0 as u32
    }

    #[cfg(test)]
    /// The raw `u64`.
    #[inline]
    pub(crate) fn bits(self) -> u64 {
        self.0
    }
}

/// Run lengths per page: at the first page of every run (free or used) its
/// length `<< 1`, with bit 0 set when the run is used; 0 on other pages.
const RUN_USED: u32 = 1;

/// Free runs by page class: one two-level bitset per class.
#[derive(Debug)]
struct FreeRuns {
    /// Bit `c` set when class `c` has a free run.
    nonempty: u64,
    words_per_class: usize,
    summaries_per_class: usize,
    /// Bit `p` of class `c`: a free run of class `c` starts at page `p`.
    words: Box<[u64]>,
    /// Bit `w` of class `c`: word `w` of class `c` is not zero.
    summaries: Box<[u64]>,
}

impl FreeRuns {
    fn new(classes: usize, pages: usize) -> FreeRuns {
        debug_assert!(classes <= 64);
        let words_per_class = pages.div_ceil(64);
        let summaries_per_class = words_per_class.div_ceil(64);
        FreeRuns {
            nonempty: 0,
            words_per_class,
            summaries_per_class,
            words: vec![0; classes * words_per_class].into_boxed_slice(),
            summaries: vec![0; classes * summaries_per_class].into_boxed_slice(),
        }
    }

    fn insert(&mut self, class: usize, page: usize) {
        let w = class * self.words_per_class + page / 64;
        debug_assert_eq!(self.words[w] >> (page % 64) & 1, 0);
        self.words[w] |= 1 << (page % 64);
        let word_in_class = page / 64;
        self.summaries[class * self.summaries_per_class + word_in_class / 64] |= 1 << (word_in_class % 64);
        self.nonempty |= 1 << class;
    }

    fn remove(&mut self, class: usize, page: usize) {
        let w = class * self.words_per_class + page / 64;
        debug_assert_eq!(self.words[w] >> (page % 64) & 1, 1);
        self.words[w] &= !(1 << (page % 64));
        if self.words[w] == 0 {
            let word_in_class = page / 64;
            let s = class * self.summaries_per_class + word_in_class / 64;
            self.summaries[s] &= !(1 << (word_in_class % 64));
            let first = class * self.summaries_per_class;
            if self.summaries[first..first + self.summaries_per_class].iter().all(|&x| x == 0) {
                self.nonempty &= !(1 << class);
            }
        }
    }

    /// Whether class `class` has a free run.
    #[inline]
    fn has(&self, class: usize) -> bool {
        self.nonempty >> class & 1 != 0
    }

    /// The lowest-offset free run in the first non-empty class `>= min_class`.
    #[inline]
    fn first_from(&self, min_class: usize) -> Option<usize> {
        let classes = self.nonempty & (u64::MAX << min_class);
        if classes == 0 {
            return None;
        }
        let class = classes.trailing_zeros() as usize;
        let summaries = &self.summaries[class * self.summaries_per_class..][..self.summaries_per_class];
        let (s, summary) = summaries.iter().enumerate().find(|(_, &x)| x != 0)?;
        let word_in_class = s * 64 + summary.trailing_zeros() as usize;
        let word = self.words[class * self.words_per_class + word_in_class];
        Some(word_in_class * 64 + word.trailing_zeros() as usize)
    }
}

/// One chunk of pool memory and the bookkeeping of its runs and subpages.
#[derive(Debug)]
pub(crate) struct Chunk {
    memory: RawMemory,
    page_shift: u32,
    pages: u32,
    free_bytes: usize,
    runs: FreeRuns,
    /// See [`RUN_USED`].
    run_head: Box<[u32]>,
    /// At the last page of every free run: its first page + 1; else 0.
    free_tail: Box<[u32]>,
    /// Bit `p`: the free run at page `p` was freed since free neighbours
    /// last merged, and may lie next to another free run. A merge visits
    /// these runs only, so that it costs what merging each at its free
    /// would have (plus a scan of these words), not a pass over the chunk.
    unmerged: Box<[u64]>,
    /// Set with a bit of `unmerged`, cleared by a merge: false means no bit
    /// is set (true may outlast bits that allocations cleared; the next
    /// merge then finds nothing to do).
    any_unmerged: bool,
    subpages: SubpageTable,
    /// Whether the chunk serves only runs of dense elements
    /// (`arena::DENSE_MAX_ELEM`), under `HugePages::Dense`.
    dense: bool,
}

impl Chunk {
    /// Obtains a chunk's memory and lays it out as one free run.
    pub(crate) fn new(
        classes: &SizeClasses,
        kind: MemoryKind,
        limit: Option<&Arc<MemoryLimit>>,
        backing: Backing,
        dense: bool,
    ) -> Result<Chunk, AllocError> {
        let memory = RawMemory::allocate(kind, classes.chunk_size(), limit, backing)?;
        let pages = classes.chunk_pages();
        let mut chunk = Chunk {
            memory,
            page_shift: classes.page_shift(),
            pages: pages as u32,
            free_bytes: classes.chunk_size(),
            runs: FreeRuns::new(classes.num_page_classes(), pages),
            run_head: vec![0; pages].into_boxed_slice(),
            free_tail: vec![0; pages].into_boxed_slice(),
            unmerged: vec![0; pages.div_ceil(64)].into_boxed_slice(),
            any_unmerged: false,
            subpages: SubpageTable::new(classes.page_size(), pages),
            dense,
        };
        chunk.insert_free(classes, 0, pages as u32);
        Ok(chunk)
    }

    /// Whether the chunk serves only runs of dense elements.
    #[inline]
    pub(crate) fn is_dense(&self) -> bool {
        self.dense
    }

    /// How the chunk's pages are backed.
    pub(crate) fn backing(&self) -> Backing {
        self.memory.backing()
    }

    /// Bytes not in any used run.
    #[inline]
    pub(crate) fn free_bytes(&self) -> usize {
        self.free_bytes
    }

    /// Whether no run is in use.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.free_bytes == self.size()
    }

    /// Bytes in the chunk.
    #[inline]
    pub(crate) fn size(&self) -> usize {
        self.memory.len()
    }

    /// Usage in percent as Netty counts it: 100 only when full, else at
    /// most 99, and 0 only when empty.
    pub(crate) fn usage(&self) -> u32 {
        usage(self.free_bytes, self.size())
    }

    /// Address of the first byte of the region named by `handle`.
    ///
    /// `elem_size` is the element size for subpage handles (ignored for runs).
    #[inline]
    pub(crate) fn region_ptr(&self, handle: Handle, elem_size: usize) -> NonNull<u8> {
        let mut offset = (handle.run_offset() as usize) << self.page_shift;
        if handle.is_subpage() {
            offset +=
                self.subpages.get(handle.run_offset()).first_offset() + handle.element_index() as usize * elem_size;
        }
        assert!(offset < self.memory.len(), "handle outside its chunk");
        // SAFETY: `offset` is inside the block (checked above), so the result
        // stays within one allocation and is not null.
        unsafe { NonNull::new_unchecked(self.memory.ptr().as_ptr().add(offset)) }
    }

    /// The handle of the region of `elem_size` bytes at `ptr`: an element of
    /// a subpage when `subpage`, else a run. The run holding the address
    /// starts at the nearest run head at or below its page (run heads are
    /// set on the first page of every run and nowhere else), so a buffer
    /// need not carry its handle.
    ///
    /// # Panics
    ///
    /// When `ptr` is not in this chunk, or not at the start of an element
    /// or of a run.
    pub(crate) fn handle_at(&self, ptr: NonNull<u8>, elem_size: usize, subpage: bool) -> Handle {
        let offset = (ptr.as_ptr() as usize).wrapping_sub(self.memory.ptr().as_ptr() as usize);
        assert!(offset < self.memory.len(), "arenabuf: a region's address outside its chunk");
        let page = (offset >> self.page_shift) as u32;
        let start = (0..=page).rev().find(|&q| self.run_head[q as usize] != 0).expect("page 0 heads a run");
        let pages = self.run_head[start as usize] >> 1;
        let within = offset - ((start as usize) << self.page_shift);
        if subpage {
            let first = self.subpages.get(start).first_offset();
            assert!(
                within >= first && (within - first) % elem_size == 0,
                "arenabuf: an address inside a subpage element"
            );
            Handle::element(start, pages, ((within - first) / elem_size) as u32)
        } else {
            assert!(within == 0, "arenabuf: an address inside a run");
            Handle::run(start, pages)
        }
    }

    #[cfg(test)]
    /// Start of the chunk's memory (for overlap checks and pictures).
    pub(crate) fn base_addr(&self) -> usize {
        self.memory.ptr().as_ptr() as usize
    }

    fn insert_free(&mut self, classes: &SizeClasses, start: u32, len: u32) {
        let class = classes.page_index_floor(len as usize).expect("run inside the chunk");
        self.runs.insert(class, start as usize);
        self.run_head[start as usize] = len << 1;
        self.free_tail[(start + len - 1) as usize] = start + 1;
    }

    fn remove_free(&mut self, classes: &SizeClasses, start: u32, len: u32) {
        let class = classes.page_index_floor(len as usize).expect("run inside the chunk");
        self.runs.remove(class, start as usize);
        self.run_head[start as usize] = 0;
        self.free_tail[(start + len - 1) as usize] = 0;
        self.unmerged[start as usize / 64] &= !(1 << (start % 64));
    }

    /// Takes a run of `pages` pages: the lowest-offset free run of the first
    /// class that fits, split so that its tail stays free. Where none fits
    /// and the chunk has the free bytes, free neighbours merge first.
    pub(crate) fn allocate_run(&mut self, classes: &SizeClasses, pages: u32) -> Option<Handle> {
        let min_class = classes.page_index_ceil(pages as usize)?;
        self.take_run(classes, min_class, pages)
    }

    /// [`allocate_run`](Self::allocate_run) with the ceiling class of
    /// `pages` looked up.
    fn take_run(&mut self, classes: &SizeClasses, min_class: usize, pages: u32) -> Option<Handle> {
        let start = match self.runs.first_from(min_class) {
            Some(start) => start,
            None if self.any_unmerged && self.free_bytes >= (pages as usize) << self.page_shift => {
                self.merge_free_runs(classes);
                self.runs.first_from(min_class)?
            }
            None => return None,
        } as u32;
        let len = self.run_head[start as usize] >> 1;
        debug_assert!(len >= pages && self.run_head[start as usize] & RUN_USED == 0);
        self.remove_free(classes, start, len);
        if len > pages {
            self.insert_free(classes, start + pages, len - pages);
        }
        self.run_head[start as usize] = pages << 1 | RUN_USED;
        self.free_bytes -= (pages as usize) << self.page_shift;
        Some(Handle::run(start, pages))
    }

    /// Gives back the run named by `handle`, merging it with free neighbours.
    ///
    /// # Panics
    ///
    /// When the handle does not name a used run of this chunk (a double
    /// free): the chunk is left unchanged.
    pub(crate) fn free_run(&mut self, classes: &SizeClasses, handle: Handle) {
        let (offset, pages) = (handle.run_offset(), handle.run_pages());
        assert!(
            handle.is_used() && offset < self.pages && self.run_head[offset as usize] == (pages << 1 | RUN_USED),
            "arenabuf: run at page {offset} of {pages} page(s) freed twice or never allocated"
        );
        self.free_bytes += (pages as usize) << self.page_shift;
        self.insert_free(classes, offset, pages);
        self.unmerged[offset as usize / 64] |= 1 << (offset % 64);
        self.any_unmerged = true;
    }

    /// Takes a run of `pages` pages from a free run of their own class only
    /// (one that an earlier request of the class used, or what is left of
    /// one), or `None`, merging and splitting nothing larger: the arena asks
    /// every chunk this first, so that a run freed in one chunk is not cut
    /// anew from another's larger free space.
    pub(crate) fn allocate_run_in_class(&mut self, classes: &SizeClasses, pages: u32) -> Option<Handle> {
        let class = classes.page_index_ceil(pages as usize)?;
        if !self.runs.has(class) {
            return None;
        }
        self.take_run(classes, class, pages)
    }

    /// Merges every run freed since the last merge with its free
    /// neighbours, before and after: taken only when a request found no
    /// run that fits. A run is absorbed into a neighbour at most once, so
    /// merging costs what it cost when each free merged at once.
    fn merge_free_runs(&mut self, classes: &SizeClasses) {
        for w in 0..self.unmerged.len() {
            while self.unmerged[w] != 0 {
                let start = (w * 64) as u32 + self.unmerged[w].trailing_zeros();
                let head = self.run_head[start as usize];
                debug_assert!(head != 0 && head & RUN_USED == 0, "an unmerged run is a free run");
                let len = head >> 1;
                // Clears the run's bit too.
                self.remove_free(classes, start, len);
                let (mut first, mut end) = (start, start + len);
                while first > 0 && self.free_tail[first as usize - 1] != 0 {
                    let before = self.free_tail[first as usize - 1] - 1;
                    self.remove_free(classes, before, first - before);
                    first = before;
                }
                while end < self.pages && self.run_head[end as usize] & RUN_USED == 0 {
                    debug_assert_ne!(self.run_head[end as usize], 0, "runs tile the chunk");
                    let next_len = self.run_head[end as usize] >> 1;
                    self.remove_free(classes, end, next_len);
                    end += next_len;
                }
                self.insert_free(classes, first, end - first);
            }
        }
        self.any_unmerged = false;
    }

    /// Takes a run for a new subpage of class `size_idx`, the class's
    /// `turn`-th, and returns its page offset; the subpage starts with every
    /// element free. Its elements start [`run_colour`] lines into the run.
    pub(crate) fn allocate_subpage(
        &mut self,
        classes: &SizeClasses,
        size_idx: usize,
        shape: SubpageShape,
        turn: u32,
    ) -> Option<u32> {
        let run = self.allocate_run(classes, shape.run_pages)?;
        let page = run.run_offset();
        let start = self.region_ptr(run, 0).as_ptr() as usize;
        self.subpages.init(page, size_idx, shape, run_colour(turn, start, shape.colours));
        Some(page)
    }

    /// Takes an element of the subpage at `page`, or `None` when it is full.
    #[inline]
    pub(crate) fn allocate_element(&mut self, page: u32) -> Option<Handle> {
        let elem = self.subpages.alloc(page)?;
        let pages = self.run_head[page as usize] >> 1;
        Some(Handle::element(page, pages, elem))
    }

    /// Frees the subpage element named by `handle`.
    ///
    /// # Panics
    ///
    /// On a double free; the chunk is left unchanged.
    pub(crate) fn free_element(&mut self, handle: Handle) -> Freed {
        assert!(handle.is_subpage(), "not a subpage handle");
        let page = handle.run_offset();
        assert!(page < self.pages, "handle outside its chunk");
        self.subpages.free(page, handle.element_index())
    }

    /// Ends the (empty) subpage at `page` and frees its run.
    pub(crate) fn retire_subpage(&mut self, classes: &SizeClasses, page: u32) {
        self.subpages.retire(page);
        let pages = self.run_head[page as usize] >> 1;
        self.free_run(classes, Handle::run(page, pages));
    }

    pub(crate) fn subpages(&self) -> &SubpageTable {
        &self.subpages
    }

    pub(crate) fn subpages_mut(&mut self) -> &mut SubpageTable {
        &mut self.subpages
    }

    /// The runs of the chunk in page order: (first page, pages, used).
    pub(crate) fn runs(&self) -> impl Iterator<Item = (u32, u32, bool)> + '_ {
        let mut page = 0;
        std::iter::from_fn(move || {
            if page >= self.pages {
                return None;
            }
            let head = self.run_head[page as usize];
            let run = (page, head >> 1, head & RUN_USED != 0);
            page += (head >> 1).max(1);
            Some(run)
        })
    }
}

#[cfg(test)]
impl Chunk {
    /// Fills the first `len` bytes of a region with `byte` (`check` false), or
    /// reports whether they all hold it (`check` true).
    ///
    /// Test-only: the arena and chunk tests hold regions without buffers, so
    /// nothing else reads or writes a region while `&mut self` is held.
    pub(crate) fn test_region_bytes(
        &mut self,
        handle: Handle,
        elem_size: usize,
        len: usize,
        byte: u8,
        check: bool,
    ) -> bool {
        let ptr = self.region_ptr(handle, elem_size);
        let start = ptr.as_ptr() as usize - self.base_addr();
        assert!(start + len <= self.size(), "region outside its chunk");
        // SAFETY: the range lies inside the chunk's initialised block (checked
        // above), and `&mut self` plus the test-only contract above mean no
        // other reference to these bytes exists while the slice lives.
        let bytes = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), len) };
        if check {
            // A slice comparison rather than a loop over the bytes: Miri runs
            // it as one `memcmp`, where a loop over a 256 KiB region took it
            // minutes (the arena's model test draws such regions at random).
            *bytes == *vec![byte; len]
        } else {
            bytes.fill(byte);
            true
        }
    }
}

/// Run starts this far apart share a colour's position in the cache: 128
/// KiB is the span of a 2 MiB, 16-way L2's set index (2,048 sets of 64
/// bytes) and of a 1 MiB, 8-way one's.
const COLOUR_SPAN_SHIFT: u32 = 17;

/// The colour of the class's `turn`-th run, which starts at address
/// `start`: the turn, advanced by one for each 128 KiB the start lies
/// above address 0.
///
/// Why the start: a class's runs are often cut one after the other, so run
/// `n` starts at a fixed position within 128 KiB for every `n` that differs
/// by a multiple of the runs in 128 KiB; had the colour been `turn` alone,
/// it would repeat with the position wherever the colours' count divides
/// that multiple. With 256 B elements (runs of 16 KiB, 8 to 128 KiB, 4
/// colours), each position then took one colour, and the elements' first
/// and last words fell in half of such a cache's sets; the advance gives
/// each position every colour in turn. Where the pages are huge (a chunk's
/// set index is then virtual up to 2 MiB) that is what the cache sees;
/// with 4 KiB pages it still is wherever the system hands out physical
/// pages in order.
fn run_colour(turn: u32, start: usize, colours: u32) -> u32 {
    (turn as usize).wrapping_add(start >> COLOUR_SPAN_SHIFT) as u32 % colours
}

/// Netty's usage percentage of a chunk of `size` bytes with `free` free.
pub(crate) fn usage(free: usize, size: usize) -> u32 {
    if free == 0 {
        return 100;
    }
    // Chunks are at most 1 GiB, so `free * 100` fits in a u64.
    let free_percent = (free as u64 * 100 / size as u64) as u32;
    if free_percent == 0 {
        99
    } else {
        100 - free_percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(order: u32) -> (SizeClasses, Chunk) {
        let classes = SizeClasses::new(8192, order.min(crate::test_config::MAX_ORDER)).unwrap();
        let chunk = Chunk::new(&classes, MemoryKind::Heap, None, Backing::BasePages, false).unwrap();
        (classes, chunk)
    }

    #[test]
    fn handle_fields_round_trip() {
        let h = Handle::element(0x7ABC, 0x1234, 0xDEAD_BEEF);
        assert_eq!(h.run_offset(), 0x7ABC);
        assert_eq!(h.run_pages(), 0x1234);
        assert!(h.is_used() && h.is_subpage());
        assert_eq!(h.element_index(), 0xDEAD_BEEF);
        let r = Handle::run(16383, 16384);
        assert_eq!((r.run_offset(), r.run_pages(), r.is_subpage()), (16383, 16384, false));
        assert_eq!(r.bits() >> 49, 16383);
    }

    #[test]
    fn runs_are_placed_lowest_offset_first_and_freed_runs_stay_whole() {
        let (classes, mut c) = chunk(9);
        let a = c.allocate_run(&classes, 4).unwrap();
        let b = c.allocate_run(&classes, 5).unwrap();
        let d = c.allocate_run(&classes, 6).unwrap();
        assert_eq!([a, b, d].map(Handle::run_offset), [0, 4, 9]);
        c.free_run(&classes, b);
        c.free_run(&classes, d);
        let pages = classes.chunk_pages() as u32;
        // Merged at once, b, d and the free tail would be one run from page
        // 4, and the next 6 pages would start there.
        assert_eq!(c.runs().collect::<Vec<_>>(), [(0, 4, true), (4, 5, false), (9, 6, false), (15, pages - 15, false)]);
        assert_eq!(c.allocate_run(&classes, 6).unwrap().run_offset(), 9, "d's pages again");
        assert_eq!(c.allocate_run(&classes, 5).unwrap().run_offset(), 4, "b's pages again");
        assert_eq!(c.free_bytes(), (pages as usize - 15) * 8192);
    }

    #[test]
    fn free_neighbours_merge_when_no_run_fits() {
        let (classes, mut c) = chunk(3);
        let a = c.allocate_run(&classes, 2).unwrap();
        let b = c.allocate_run(&classes, 3).unwrap();
        let d = c.allocate_run(&classes, 3).unwrap();
        c.free_run(&classes, b);
        c.free_run(&classes, d);
        // Two 3-page runs; 6 pages fit only once they merge.
        assert_eq!(c.runs().count(), 3);
        assert_eq!(c.allocate_run(&classes, 6).unwrap().run_offset(), 2);
        assert_eq!(c.allocate_run(&classes, 1), None, "full");
        c.free_run(&classes, a);
        assert_eq!(c.allocate_run(&classes, 3), None, "2 free pages do not make 3");
        let all: Vec<_> = c.runs().collect();
        assert_eq!(all, [(0, 2, false), (2, 6, true)], "a refused request merges nothing it cannot use");
    }

    #[test]
    fn a_merge_joins_each_freed_run_with_the_free_runs_on_both_sides() {
        let (classes, mut c) = chunk(3);
        let runs: Vec<Handle> = (0..4).map(|_| c.allocate_run(&classes, 2).unwrap()).collect();
        c.free_run(&classes, runs[1]);
        c.free_run(&classes, runs[0]);
        c.merge_free_runs(&classes);
        assert_eq!(c.runs().collect::<Vec<_>>(), [(0, 4, false), (4, 2, true), (6, 2, true)]);
        // A run freed after the merge joins the merged run before it.
        c.free_run(&classes, runs[2]);
        c.merge_free_runs(&classes);
        assert_eq!(c.runs().collect::<Vec<_>>(), [(0, 6, false), (6, 2, true)]);
        c.free_run(&classes, runs[3]);
        assert_eq!(c.allocate_run(&classes, 8).unwrap().run_offset(), 0);
        assert_eq!(c.free_bytes(), 0);
    }

    #[test]
    fn a_request_in_its_class_takes_only_a_run_of_that_class() {
        let (classes, mut c) = chunk(9);
        let a = c.allocate_run(&classes, 5).unwrap();
        let _b = c.allocate_run(&classes, 1).unwrap();
        assert_eq!(c.allocate_run_in_class(&classes, 5), None, "only the larger free tail");
        c.free_run(&classes, a);
        assert_eq!(c.allocate_run_in_class(&classes, 6), None);
        assert_eq!(c.allocate_run_in_class(&classes, 5), Some(a));
    }

    #[test]
    fn a_request_takes_the_first_class_that_fits_not_the_lowest_offset_overall() {
        let (classes, mut c) = chunk(9);
        let runs: Vec<Handle> = [1, 3, 1, 8, 1].iter().map(|&p| c.allocate_run(&classes, p).unwrap()).collect();
        // Free a 3-page hole at 1 and an 8-page hole at 5.
        c.free_run(&classes, runs[1]);
        c.free_run(&classes, runs[3]);
        // 2 pages: class of 2 is empty; 3-page class holds the hole at 1.
        assert_eq!(c.allocate_run(&classes, 2).unwrap().run_offset(), 1);
        // 4 pages: the 1-page leftover at 3 is too small; the 8-page hole.
        assert_eq!(c.allocate_run(&classes, 4).unwrap().run_offset(), 5);
    }

    #[test]
    fn a_full_chunk_refuses_and_recovers() {
        let (classes, mut c) = chunk(3);
        let all = c.allocate_run(&classes, 8).unwrap();
        assert_eq!(c.usage(), 100);
        assert_eq!(c.allocate_run(&classes, 1), None);
        c.free_run(&classes, all);
        assert_eq!(c.usage(), 0);
        assert_eq!(c.allocate_run(&classes, 9), None, "more than a chunk");
    }

    #[test]
    #[should_panic(expected = "freed twice")]
    fn freeing_a_run_twice_panics() {
        let (classes, mut c) = chunk(9);
        let a = c.allocate_run(&classes, 2).unwrap();
        c.free_run(&classes, a);
        c.free_run(&classes, a);
    }

    #[test]
    fn subpage_elements_have_distinct_addresses_inside_their_run() {
        let (classes, mut c) = chunk(9);
        let idx = classes.index_of(1280).unwrap();
        let shape = crate::subpage::shape_for(1280, 8192, classes.chunk_pages());
        let page = c.allocate_subpage(&classes, idx, shape, 0).unwrap();
        let base = c.region_ptr(Handle::run(page, shape.run_pages), 0).as_ptr() as usize;
        let mut addrs = Vec::new();
        while let Some(h) = c.allocate_element(page) {
            assert_eq!(h.run_pages(), 5);
            addrs.push(c.region_ptr(h, 1280).as_ptr() as usize - base);
        }
        assert_eq!(addrs, (0..32).map(|i| i * 1280).collect::<Vec<_>>());
        for (i, _) in addrs.iter().enumerate() {
            let h = Handle::element(page, 5, i as u32);
            c.free_element(h);
        }
        c.retire_subpage(&classes, page);
        assert_eq!(c.free_bytes(), classes.chunk_size());
    }

    #[test]
    fn coloured_elements_start_past_their_colour_and_map_back_to_their_handles() {
        let (classes, mut c) = chunk(9);
        let idx = classes.index_of(256).unwrap();
        let shape = crate::subpage::coloured_shape_for(256, &classes);
        assert!(shape.colours > 1);
        for turn in 0..shape.colours {
            let page = c.allocate_subpage(&classes, idx, shape, turn).unwrap();
            let run_start = c.region_ptr(Handle::run(page, shape.run_pages), 0).as_ptr() as usize;
            let colour = run_colour(turn, run_start, shape.colours) as usize;
            for e in 0..shape.max_elems as usize {
                let h = c.allocate_element(page).unwrap();
                let ptr = c.region_ptr(h, 256);
                assert_eq!(ptr.as_ptr() as usize - run_start, colour * 64 + e * 256);
                assert_eq!(c.handle_at(ptr, 256, true), h);
            }
            // The last element ends inside the run.
            assert!(colour * 64 + shape.max_elems as usize * 256 <= shape.run_pages as usize * 8192);
        }
    }

    #[test]
    fn a_runs_colour_advances_with_its_turn_and_its_128_kib_span() {
        assert_eq!(run_colour(0, 0, 4), 0);
        assert_eq!(run_colour(1, 0, 4), 1);
        assert_eq!(run_colour(5, 0, 4), 1);
        assert_eq!(run_colour(0, (128 << 10) - 1, 4), 0);
        assert_eq!(run_colour(0, 128 << 10, 4), 1);
        assert_eq!(run_colour(3, 3 << 17, 4), 2);
        assert_eq!(run_colour(7, 5 << 20, 1), 0);
        // Eight 16 KiB runs per span: turn n at position n % 8 takes every
        // colour over 32 turns, instead of colour n % 4 only.
        for position in 0..8usize {
            let mut colours: Vec<u32> =
                (0..4).map(|span| position + 8 * span).map(|n| run_colour(n as u32, n << 14, 4)).collect();
            colours.sort_unstable();
            assert_eq!(colours, [0, 1, 2, 3], "position {position}");
        }
    }

    #[test]
    #[should_panic(expected = "inside a subpage element")]
    fn the_start_of_a_coloured_run_is_not_an_element() {
        let (classes, mut c) = chunk(9);
        let idx = classes.index_of(256).unwrap();
        let shape = crate::subpage::coloured_shape_for(256, &classes);
        // Of two runs cut in turn, at least one has elements from byte 64 on.
        let mut coloured = None;
        for turn in 0..2 {
            let page = c.allocate_subpage(&classes, idx, shape, turn).unwrap();
            if c.subpages().get(page).first_offset() != 0 {
                coloured = Some(page);
            }
        }
        let coloured = coloured.expect("two turns in a row take two colours");
        let run_start = c.region_ptr(Handle::run(coloured, shape.run_pages), 0);
        c.handle_at(run_start, 256, true);
    }

    #[test]
    fn usage_is_netty_rounded() {
        assert_eq!(usage(100, 100), 0);
        assert_eq!(usage(0, 100), 100);
        assert_eq!(usage(1, 1000), 99);
        assert_eq!(usage(250, 1000), 75);
        assert_eq!(usage(999, 1000), 1);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a 64 MiB chunk is too slow under Miri")]
    fn large_chunks_index_runs_through_the_summary_level() {
        // 4 KiB pages << 14: 16384 pages, 256 words per class.
        let classes = SizeClasses::new(4096, 14).unwrap();
        let mut c = Chunk::new(&classes, MemoryKind::Direct, None, Backing::BasePages, false).unwrap();
        let mut held: Vec<Handle> = (0..16384).map(|_| c.allocate_run(&classes, 1).unwrap()).collect();
        assert_eq!(c.allocate_run(&classes, 1), None);
        let last = held.pop().unwrap();
        c.free_run(&classes, last);
        let h = held.remove(9000);
        c.free_run(&classes, h);
        assert_eq!(c.allocate_run(&classes, 1).unwrap().run_offset(), 9000);
        assert_eq!(c.allocate_run(&classes, 1).unwrap().run_offset(), 16383);
    }
}
