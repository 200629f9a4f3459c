//! Subpages: a run of pages cut into equal elements of one small size class.
//!
//! A chunk keeps a [`SubpageTable`] with room for a subpage at every page
//! offset (a subpage run is at least one page long, so they never collide),
//! made once with the chunk so that no allocation path touches the global
//! allocator. Each subpage has a bitmap of used elements; the element freed
//! last is the next handed out, because its cache lines are the warmest.
//!
//! Per arena and small class, the subpages that have free elements form a
//! doubly linked list ([`SubpagePools`]) threaded through the subpages
//! themselves, across chunks: a full subpage leaves it, a subpage that gets
//! a free element again goes back to its front.

/// A subpage's element count is capped at `page_size >> MAX_ELEMENTS_SHIFT`
/// (512 for 8 KiB pages), which bounds its bitmap.
const MAX_ELEMENTS_SHIFT: u32 = 4;
const NONE: u32 = u32::MAX;

/// The run a small class is cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubpageShape {
    /// Pages in the run.
    pub(crate) run_pages: u32,
    /// Elements the run holds.
    pub(crate) max_elems: u32,
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
    SubpageShape { run_pages: (run / page_size) as u32, max_elems: elems as u32 }
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
        num_avail: 0,
        next_avail: NONE,
        in_use: false,
        prev: SubpageRef::NONE,
        next: SubpageRef::NONE,
    };

    pub(crate) fn max_elems(&self) -> usize {
        self.max_elems as usize
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

    /// Starts a subpage over the run at `page`, all elements free.
    pub(crate) fn init(&mut self, page: u32, size_idx: usize, shape: SubpageShape) {
        let words = self.words(page);
        let used_words = (shape.max_elems as usize).div_ceil(64);
        self.bitmap[words.clone()][..used_words].fill(0);
        self.subpages[page as usize] = Subpage {
            size_idx: size_idx as u32,
            max_elems: shape.max_elems,
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
        assert_eq!(shape(16), SubpageShape { run_pages: 1, max_elems: 512 });
        assert_eq!(shape(48), SubpageShape { run_pages: 3, max_elems: 512 });
        assert_eq!(shape(512), SubpageShape { run_pages: 1, max_elems: 16 });
        assert_eq!(shape(1280), SubpageShape { run_pages: 5, max_elems: 32 });
        assert_eq!(shape(28672), SubpageShape { run_pages: 7, max_elems: 2 });
        assert_eq!(shape(8192), SubpageShape { run_pages: 1, max_elems: 1 });
        // A chunk of two pages caps the 10 KiB run (lcm 5 pages) at 2 pages.
        assert_eq!(shape_for(10240, 8192, 2), SubpageShape { run_pages: 2, max_elems: 1 });
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
    fn elements_are_handed_out_in_order_and_the_last_freed_comes_back_first() {
        let shape = shape_for(512, 8192, 4);
        let mut table = SubpageTable::new(8192, 4);
        table.init(1, 0, shape);
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
        table.init(0, 0, shape);
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
        table.init(0, 0, shape_for(1024, 8192, 1));
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
