//! Subpages: a run of pages cut into equal elements of one small size class.
//!
//! A chunk keeps a [`SubpageTable`] with room for a subpage at every page
//! offset (a subpage run is at least one page long, so they never collide),
//! made once with the chunk so that no allocation path touches the global
//! allocator. Each subpage has a bitmap of used elements; the element freed
//! last is the next handed out, because its cache lines are the warmest.
//!
//! A subpage's elements start a few cache lines into its run (its colour),
//! and an arena's runs of one class take the colours in turn
//! ([`coloured_shape_for`]): elements packed at a power-of-two stride would
//! otherwise put the same byte of every element in the same few cache sets.
//!
//! Per arena and small class, the subpages that have free elements form a
//! doubly linked list ([`SubpagePools`]) threaded through the subpages
//! themselves, across chunks: a full subpage leaves it, a subpage that gets
//! a free element again goes back to its front.

use crate::size_class::SizeClasses;

/// A subpage's element count is capped at `page_size >> MAX_ELEMENTS_SHIFT`
/// (512 for 8 KiB pages), which bounds its bitmap.
const MAX_ELEMENTS_SHIFT: u32 = 4;
const NONE: u32 = u32::MAX;

/// A cache line: the step between two colours.
const LINE: usize = 64;
/// The byte period of the cache's set index as far as an allocator can see
/// it: virtual and physical addresses agree in the 12 bits below a 4 KiB
/// page, and a set index (L1's whole; the low part of L2's and L3's) is
/// taken from the bits above the line offset.
const COLOUR_PERIOD: usize = 4096;
/// Classes above this keep the plain shape: a coloured run would hold 32
/// elements, and a run of 32 large elements stays taken while any of them
/// is in use.
const COLOUR_MAX_ELEM: usize = 4096;
/// A coloured run holds at least this many elements (where the bitmap
/// allows), so that the room its colours take costs at most about 1/32.
const COLOURED_MIN_ELEMS: usize = 32;

/// The run a small class is cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubpageShape {
    /// Pages in the run.
    pub(crate) run_pages: u32,
    /// Elements the run holds.
    pub(crate) max_elems: u32,
    /// Distinct starting offsets of the elements, one cache line apart
    /// (1: the elements start at the run's first byte).
    pub(crate) colours: u32,
}

/// The run for elements of `elem_size` bytes: the smallest page multiple that
/// is also a multiple of `elem_size` (so nothing is wasted), shortened until
/// it holds at most `page_size / 16` elements, and never longer than a chunk
/// (Netty has no such cap; it matters only for tiny chunks, where the tail of
/// the run may then be unused).
pub(crate) fn shape_for(elem_size: usize, page_size: usize, chunk_pages: usize) -> SubpageShape {
    debug_assert!(elem_size > 0 && elem_size <= page_size * chunk_pages);
    let max_elems = page_size >> MAX_ELEMENTS_SHIFT;
    let mut run = 0;
    let mut elems;
    loop {
        run += page_size;
        elems = run / elem_size;
        if elems >= max_elems || run == elems * elem_size || run / page_size == chunk_pages {
            break;
        }
    }
    while elems > max_elems {
        run -= page_size;
        elems = run / elem_size;
    }
    SubpageShape { run_pages: (run / page_size) as u32, max_elems: elems as u32, colours: 1 }
}

/// The run for elements of `elem_size` bytes with room for colours: where
/// elements sit at a stride whose multiples fall on few offsets of a 4 KiB
/// period (every multiple of 128 B: a 1 KiB stride puts every element's
/// first byte in one of 4 lines of the 64), runs start their elements
/// `colour x 64` bytes in, for `colours` offsets that together reach every
/// line of the period. The run is lengthened to hold at least
/// 32 elements besides that room, so the room costs at most about 3%.
///
/// The run's length is a page class of `classes`: a chunk files a free run
/// under the largest page class it holds and looks for a request from the
/// smallest class that holds it, so a free run whose length is not a
/// class's serves no request of that length. Unrounded, a 17-page run of
/// 4 KiB elements freed between two live ones stayed unused by its class,
/// and `window` 4 KiB's chunks grew from 36 to 48 MiB over its first runs
/// (BENCHMARKS.md, session 14).
///
/// Falls back to [`shape_for`] for strides that need no colours (64, 192,
/// 320 B...), classes above 4 KiB, and when the coloured run would not fit
/// the chunk.
///
/// Why: with packed 1 KiB and 4 KiB elements, `window` (one word at each
/// end of 8,192 live buffers) ran 1.5x slower than with 16-byte headers
/// between blocks (`floor-packed` against `floor`, BENCHMARKS.md session 12).
pub(crate) fn coloured_shape_for(elem_size: usize, classes: &SizeClasses) -> SubpageShape {
    let (page_size, chunk_pages) = (classes.page_size(), classes.chunk_pages());
    let plain = shape_for(elem_size, page_size, chunk_pages);
    // Colours fill the lines between two element starts.
    let colours = start_spacing(elem_size) / LINE;
    if colours <= 1 || elem_size > COLOUR_MAX_ELEM {
        return plain;
    }
    let room = (colours - 1) * LINE;
    let max_elems = page_size >> MAX_ELEMENTS_SHIFT;
    let want = COLOURED_MIN_ELEMS.min(max_elems);
    // `None` when the run would not fit the chunk.
    let Some(class) = classes.page_index_ceil((want * elem_size + room).div_ceil(page_size)) else {
        return plain;
    };
    let run = classes.pages_of(class) * page_size;
    let elems = ((run - room) / elem_size).min(max_elems);
    SubpageShape { run_pages: (run / page_size) as u32, max_elems: elems as u32, colours: colours as u32 }
}

/// The spacing of element starts within the 4 KiB period for a stride of
/// `elem_size`: gcd(stride, period), the period being a power of two.
fn start_spacing(elem_size: usize) -> usize {
    1 << elem_size.trailing_zeros().min(COLOUR_PERIOD.trailing_zeros())
}

/// Where a subpage lives: the chunk's slot in its arena and the page offset
/// of its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubpageRef {
    pub(crate) chunk: u32,
    pub(crate) page: u32,
}

impl SubpageRef {
    const NONE: SubpageRef = SubpageRef { chunk: NONE, page: NONE };

    fn is_none(self) -> bool {
        self.chunk == NONE
    }
}

/// The state of one subpage.
#[derive(Debug, Clone)]
pub(crate) struct Subpage {
    size_idx: u32,
    max_elems: u32,
    /// Bytes from the run's start to element 0: its colour times a line.
    first_offset: u32,
    num_avail: u32,
    /// The element to hand out next, or `NONE` to search the bitmap.
    next_avail: u32,
    in_use: bool,
    prev: SubpageRef,
    next: SubpageRef,
}

impl Subpage {
    const UNUSED: Subpage = Subpage {
        size_idx: 0,
        max_elems: 0,
        first_offset: 0,
        num_avail: 0,
        next_avail: NONE,
        in_use: false,
        prev: SubpageRef::NONE,
        next: SubpageRef::NONE,
    };

    pub(crate) fn max_elems(&self) -> usize {
        self.max_elems as usize
    }

    /// Bytes from the run's first byte to element 0.
    pub(crate) fn first_offset(&self) -> usize {
        self.first_offset as usize
    }

    pub(crate) fn num_avail(&self) -> usize {
        self.num_avail as usize
    }

    pub(crate) fn in_use(&self) -> bool {
        self.in_use
    }

    /// The small size class the subpage serves.
    pub(crate) fn size_idx(&self) -> usize {
        self.size_idx as usize
    }
}

/// What freeing an element did to its subpage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freed {
    /// The subpage was full and has a free element again: put it in its pool.
    WasFull,
    /// Every element is free now.
    NowEmpty,
    /// Some elements are still in use.
    Partial,
}

/// Room for one subpage per page offset of a chunk.
#[derive(Debug)]
pub(crate) struct SubpageTable {
    subpages: Box<[Subpage]>,
    /// `words_per_page` bitmap words per page offset.
    bitmap: Box<[u64]>,
    words_per_page: usize,
}

impl SubpageTable {
    pub(crate) fn new(page_size: usize, chunk_pages: usize) -> SubpageTable {
        let words_per_page = (page_size >> MAX_ELEMENTS_SHIFT).div_ceil(64);
        SubpageTable {
            subpages: vec![Subpage::UNUSED; chunk_pages].into_boxed_slice(),
            bitmap: vec![0; words_per_page * chunk_pages].into_boxed_slice(),
            words_per_page,
        }
    }

    pub(crate) fn get(&self, page: u32) -> &Subpage {
        &self.subpages[page as usize]
    }

    pub(crate) fn get_mut(&mut self, page: u32) -> &mut Subpage {
        &mut self.subpages[page as usize]
    }

    /// Starts a subpage over the run at `page`, all elements free, its
    /// element 0 `colour` lines into the run.
    pub(crate) fn init(&mut self, page: u32, size_idx: usize, shape: SubpageShape, colour: u32) {
        assert!(colour < shape.colours, "colour {colour} of {}", shape.colours);
        let words = self.words(page);
        let used_words = (shape.max_elems as usize).div_ceil(64);
        self.bitmap[words.clone()][..used_words].fill(0);
        self.subpages[page as usize] = Subpage {
            size_idx: size_idx as u32,
            max_elems: shape.max_elems,
            first_offset: colour * LINE as u32,
            num_avail: shape.max_elems,
            next_avail: 0,
            in_use: true,
            prev: SubpageRef::NONE,
            next: SubpageRef::NONE,
        };
    }

    /// Ends the subpage at `page`; its run goes back to the chunk.
    pub(crate) fn retire(&mut self, page: u32) {
        let sub = &mut self.subpages[page as usize];
        debug_assert!(sub.in_use && sub.num_avail == sub.max_elems);
        *sub = Subpage::UNUSED;
    }

    fn words(&self, page: u32) -> std::ops::Range<usize> {
        let start = page as usize * self.words_per_page;
        start..start + self.words_per_page
    }

    /// Takes a free element of the subpage at `page`, or `None` when it is full.
    pub(crate) fn alloc(&mut self, page: u32) -> Option<u32> {
        let words = self.words(page);
        let sub = &mut self.subpages[page as usize];
        if sub.num_avail == 0 {
            return None;
        }
        let bitmap = &mut self.bitmap[words];
        let elem = if sub.next_avail != NONE {
            std::mem::replace(&mut sub.next_avail, NONE)
        } else {
            find_free(bitmap, sub.max_elems)?
        };
        let (word, bit) = (elem as usize / 64, elem % 64);
        debug_assert_eq!(bitmap[word] >> bit & 1, 0);
        bitmap[word] |= 1 << bit;
        sub.num_avail -= 1;
        if sub.num_avail > 0 && sub.next_avail == NONE {
            // Keep the next element ready when it is the neighbour: the
            // common case for a fresh subpage, so the bitmap is rarely scanned.
            let next = elem + 1;
            if next < sub.max_elems && bitmap[next as usize / 64] >> (next % 64) & 1 == 0 {
                sub.next_avail = next;
            }
        }
        Some(elem)
    }

    /// Frees element `elem` of the subpage at `page`.
    ///
    /// # Panics
    ///
    /// When the subpage is not in use or the element is not allocated: the
    /// region was freed twice, which must never corrupt the pool.
    pub(crate) fn free(&mut self, page: u32, elem: u32) -> Freed {
        let words = self.words(page);
        let sub = &mut self.subpages[page as usize];
        let bitmap = &mut self.bitmap[words];
        let (word, bit) = (elem as usize / 64, elem % 64);
        assert!(
            sub.in_use && elem < sub.max_elems && bitmap[word] >> bit & 1 == 1,
            "arenabuf: subpage element {elem} at page {page} freed twice"
        );
        bitmap[word] &= !(1 << bit);
        sub.next_avail = elem;
        sub.num_avail += 1;
        if sub.num_avail == sub.max_elems {
            Freed::NowEmpty
        } else if sub.num_avail == 1 {
            Freed::WasFull
        } else {
            Freed::Partial
        }
    }

    /// Element indexes in use in the subpage at `page` (for checks and dumps).
    #[cfg(test)]
    pub(crate) fn used_elements(&self, page: u32) -> Vec<u32> {
        let sub = &self.subpages[page as usize];
        let bitmap = &self.bitmap[self.words(page)];
        (0..sub.max_elems).filter(|&e| bitmap[e as usize / 64] >> (e % 64) & 1 == 1).collect()
    }
}

fn find_free(bitmap: &[u64], max_elems: u32) -> Option<u32> {
    let words = (max_elems as usize).div_ceil(64);
    for (i, &word) in bitmap[..words].iter().enumerate() {
        if word != u64::MAX {
            let elem = (i * 64) as u32 + (!word).trailing_zeros();
            return (elem < max_elems).then_some(elem);
        }
    }
    None
}

/// Access to subpages by reference, across the chunks of an arena.
pub(crate) trait SubpageStore {
    fn subpage_mut(&mut self, at: SubpageRef) -> &mut Subpage;
}

/// Per small class, the subpages with free elements, most recently freed
/// first.
#[derive(Debug)]
pub(crate) struct SubpagePools {
    heads: Box<[SubpageRef]>,
}

impl SubpagePools {
    pub(crate) fn new(num_small_classes: usize) -> SubpagePools {
        SubpagePools { heads: vec![SubpageRef::NONE; num_small_classes].into_boxed_slice() }
    }

    /// The first subpage with free elements of class `size_idx`.
    #[inline]
    pub(crate) fn first(&self, size_idx: usize) -> Option<SubpageRef> {
        let head = self.heads[size_idx];
        (!head.is_none()).then_some(head)
    }

    /// Whether `at` is the only subpage in its class's pool.
    pub(crate) fn is_only(&self, store: &mut impl SubpageStore, at: SubpageRef) -> bool {
        let sub = store.subpage_mut(at);
        let class = sub.size_idx as usize;
        sub.prev.is_none() && sub.next.is_none() && self.heads[class] == at
    }

    pub(crate) fn push_front(&mut self, store: &mut impl SubpageStore, at: SubpageRef) {
        let class = store.subpage_mut(at).size_idx as usize;
        let old = self.heads[class];
        if !old.is_none() {
            store.subpage_mut(old).prev = at;
        }
        let sub = store.subpage_mut(at);
        sub.prev = SubpageRef::NONE;
        sub.next = old;
        self.heads[class] = at;
    }

    pub(crate) fn remove(&mut self, store: &mut impl SubpageStore, at: SubpageRef) {
        let sub = store.subpage_mut(at);
        let (class, prev, next) = (sub.size_idx as usize, sub.prev, sub.next);
        sub.prev = SubpageRef::NONE;
        sub.next = SubpageRef::NONE;
        if prev.is_none() {
            debug_assert_eq!(self.heads[class], at);
            self.heads[class] = next;
        } else {
            store.subpage_mut(prev).next = next;
        }
        if !next.is_none() {
            store.subpage_mut(next).prev = prev;
        }
    }

    /// The subpages in class `size_idx`'s pool, front first.
    pub(crate) fn iter<'a>(
        &self,
        store: &'a mut impl SubpageStore,
        size_idx: usize,
    ) -> impl Iterator<Item = SubpageRef> + 'a {
        let mut cur = self.heads[size_idx];
        std::iter::from_fn(move || {
            if cur.is_none() {
                return None;
            }
            let at = cur;
            cur = store.subpage_mut(at).next;
            Some(at)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_the_facts_sheet() {
        let shape = |elem| shape_for(elem, 8192, 512);
        assert_eq!(shape(16), SubpageShape { run_pages: 1, max_elems: 512, colours: 1 });
        assert_eq!(shape(48), SubpageShape { run_pages: 3, max_elems: 512, colours: 1 });
        assert_eq!(shape(512), SubpageShape { run_pages: 1, max_elems: 16, colours: 1 });
        assert_eq!(shape(1280), SubpageShape { run_pages: 5, max_elems: 32, colours: 1 });
        assert_eq!(shape(28672), SubpageShape { run_pages: 7, max_elems: 2, colours: 1 });
        assert_eq!(shape(8192), SubpageShape { run_pages: 1, max_elems: 1, colours: 1 });
        // A chunk of two pages caps the 10 KiB run (lcm 5 pages) at 2 pages.
        assert_eq!(shape_for(10240, 8192, 2), SubpageShape { run_pages: 2, max_elems: 1, colours: 1 });
    }

    #[test]
    fn every_small_class_shape_is_tight_and_bounded() {
        let classes = crate::SizeClasses::new(8192, 9).unwrap();
        for idx in 0..classes.num_small_classes() {
            let elem = classes.size_of(idx);
            let s = shape_for(elem, 8192, 512);
            assert!(s.max_elems >= 1 && s.max_elems <= 512, "class {idx}");
            assert!(s.max_elems as usize * elem <= s.run_pages as usize * 8192);
        }
    }

    #[test]
    fn coloured_shapes_reach_every_line_and_waste_little() {
        let classes = crate::SizeClasses::new(8192, 9).unwrap();
        let mut coloured = 0;
        for idx in 0..classes.num_small_classes() {
            let elem = classes.size_of(idx);
            let s = coloured_shape_for(elem, &classes);
            let run = s.run_pages as usize * 8192;
            let room = (s.colours as usize - 1) * LINE;
            assert!(s.max_elems >= 1 && s.max_elems <= 512, "{elem} B");
            // The last element of the last colour ends inside the run.
            assert!(s.max_elems as usize * elem + room <= run, "{elem} B: {s:?}");
            if s.colours == 1 {
                assert_eq!(s, shape_for(elem, 8192, 512), "{elem} B");
                // Plain only where the strides already reach every line (elements of a
                // line or less, odd multiples of one), or above 4 KiB.
                assert!(start_spacing(elem) <= LINE || elem > COLOUR_MAX_ELEM, "{elem} B");
                continue;
            }
            coloured += 1;
            // Every line of the 4 KiB period starts some element of some colour.
            let mut lines = [false; COLOUR_PERIOD / LINE];
            for colour in 0..s.colours as usize {
                for e in 0..s.max_elems as usize {
                    lines[(colour * LINE + e * elem) % COLOUR_PERIOD / LINE] = true;
                }
            }
            assert!(lines.iter().all(|&l| l), "{elem} B: {s:?}");
            // At least 32 elements, and at most 3% of the run left unused.
            assert!(s.max_elems >= 32, "{elem} B: {s:?}");
            assert!((run - s.max_elems as usize * elem) * 100 <= 3 * run, "{elem} B: {s:?}");
        }
        // The classes from 128 B to 4 KiB that are multiples of 128 B.
        assert_eq!(coloured, 16);
        assert_eq!(coloured_shape_for(1024, &classes), SubpageShape { run_pages: 5, max_elems: 39, colours: 16 });
        assert_eq!(coloured_shape_for(4096, &classes), SubpageShape { run_pages: 20, max_elems: 39, colours: 64 });
        // Too long for a chunk of 16 pages: the plain run.
        let small_chunks = crate::SizeClasses::new(8192, 4).unwrap();
        assert_eq!(coloured_shape_for(4096, &small_chunks), shape_for(4096, 8192, 16));
    }

    #[test]
    fn coloured_runs_are_page_classes_so_a_freed_one_serves_its_class_again() {
        for (page, order) in [(8192, 9), (8192, 11), (4096, 14), (8192, crate::test_config::MAX_ORDER)] {
            let classes = crate::SizeClasses::new(page, order).unwrap();
            for idx in 0..classes.num_small_classes() {
                let s = coloured_shape_for(classes.size_of(idx), &classes);
                let pages = s.run_pages as usize;
                let (ceil, floor) = (classes.page_index_ceil(pages).unwrap(), classes.page_index_floor(pages).unwrap());
                assert_eq!(ceil, floor, "{} B: {pages} pages", classes.size_of(idx));
            }
        }
    }

    #[test]
    fn a_subpage_starts_its_elements_colour_lines_in() {
        let shape = coloured_shape_for(256, &crate::SizeClasses::new(8192, 9).unwrap());
        assert_eq!(shape.colours, 4);
        let mut table = SubpageTable::new(8192, 16);
        for colour in 0..4 {
            let page = colour * shape.run_pages;
            table.init(page, 0, shape, colour);
            assert_eq!(table.get(page).first_offset(), colour as usize * 64);
        }
    }

    #[test]
    #[should_panic(expected = "colour 4 of 4")]
    fn a_colour_beyond_the_shapes_is_refused() {
        let shape = coloured_shape_for(256, &crate::SizeClasses::new(8192, 9).unwrap());
        SubpageTable::new(8192, 16).init(0, 0, shape, 4);
    }

    #[test]
    fn elements_are_handed_out_in_order_and_the_last_freed_comes_back_first() {
        let shape = shape_for(512, 8192, 4);
        let mut table = SubpageTable::new(8192, 4);
        table.init(1, 0, shape, 0);
        let got: Vec<u32> = (0..16).map(|_| table.alloc(1).unwrap()).collect();
        assert_eq!(got, (0..16).collect::<Vec<_>>());
        assert_eq!(table.alloc(1), None);
        assert_eq!(table.free(1, 7), Freed::WasFull);
        assert_eq!(table.free(1, 3), Freed::Partial);
        assert_eq!(table.alloc(1), Some(3));
        assert_eq!(table.alloc(1), Some(7));
        for e in 0..16 {
            let expect = if e == 15 {
                Freed::NowEmpty
            } else if e == 0 {
                Freed::WasFull
            } else {
                Freed::Partial
            };
            assert_eq!(table.free(1, e), expect, "elem {e}");
        }
        assert!(table.used_elements(1).is_empty());
        table.retire(1);
        assert!(!table.get(1).in_use());
    }

    #[test]
    fn bitmap_search_finds_holes_across_words() {
        let shape = shape_for(16, 8192, 4);
        let mut table = SubpageTable::new(8192, 4);
        table.init(0, 0, shape, 0);
        for _ in 0..512 {
            table.alloc(0).unwrap();
        }
        table.free(0, 300);
        table.free(0, 70);
        // Two frees: the last freed comes first, then the bitmap is searched.
        assert_eq!(table.alloc(0), Some(70));
        assert_eq!(table.alloc(0), Some(300));
        assert_eq!(table.alloc(0), None);
    }

    #[test]
    #[should_panic(expected = "freed twice")]
    fn double_free_panics() {
        let mut table = SubpageTable::new(8192, 1);
        table.init(0, 0, shape_for(1024, 8192, 1), 0);
        let e = table.alloc(0).unwrap();
        table.free(0, e);
        table.free(0, e);
    }

    struct Flat(Vec<Subpage>);
    impl SubpageStore for Flat {
        fn subpage_mut(&mut self, at: SubpageRef) -> &mut Subpage {
            &mut self.0[at.page as usize]
        }
    }

    #[test]
    fn pools_link_front_first_and_unlink_anywhere() {
        let mut store = Flat(vec![Subpage { in_use: true, ..Subpage::UNUSED }; 4]);
        let mut pools = SubpagePools::new(1);
        let at = |page| SubpageRef { chunk: 0, page };
        for p in 0..4 {
            pools.push_front(&mut store, at(p));
        }
        assert_eq!(pools.iter(&mut store, 0).map(|r| r.page).collect::<Vec<_>>(), [3, 2, 1, 0]);
        pools.remove(&mut store, at(2));
        pools.remove(&mut store, at(3));
        pools.remove(&mut store, at(0));
        assert_eq!(pools.iter(&mut store, 0).map(|r| r.page).collect::<Vec<_>>(), [1]);
        assert!(pools.is_only(&mut store, at(1)));
        pools.remove(&mut store, at(1));
        assert_eq!(pools.first(0), None);
    }
}
