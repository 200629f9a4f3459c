//! Chunks grouped by usage, and the order in which they are tried.
//!
//! An arena keeps its chunks in six lists by usage band (qInit, q000, q025,
//! q050, q075, q100). Allocation tries q050, q025, q000, qInit, q075, in
//! that order: half-used chunks first, so that allocations concentrate and
//! lightly used chunks get the chance to empty and be given back; nearly full
//! chunks last, since they rarely have room. A chunk whose usage rises to its
//! list's maximum moves to the next list; one whose usage falls below its
//! list's minimum moves to the previous one. A chunk that empties in q000
//! (or falls through it) is destroyed; one in qInit is kept, so a fresh
//! arena does not map and unmap a chunk on every allocation.
//!
//! The lists are doubly linked through a slab of chunk slots: a chunk keeps
//! its slot number for life, and subpages and buffers name it by that number.

use crate::chunk::Chunk;
use crate::subpage::{Subpage, SubpageRef, SubpageStore};

/// The lists, in the order of their bands.
pub(crate) const QINIT: usize = 0;
pub(crate) const Q000: usize = 1;
pub(crate) const Q025: usize = 2;
pub(crate) const Q050: usize = 3;
pub(crate) const Q075: usize = 4;
pub(crate) const Q100: usize = 5;
pub(crate) const NUM_LISTS: usize = 6;

/// The order in which lists are tried for an allocation (never q100).
const ALLOCATION_ORDER: [usize; 5] = [Q050, Q025, Q000, QINIT, Q075];

/// Display names, in list order.
pub(crate) const LIST_NAMES: [&str; NUM_LISTS] = ["qInit", "q000", "q025", "q050", "q075", "q100"];

/// (minimum, maximum) usage of each list, as Netty reports them.
pub(crate) const BANDS: [(u32, u32); NUM_LISTS] = [(1, 25), (1, 50), (25, 75), (50, 100), (75, 100), (100, 100)];

const NONE: u32 = u32::MAX;

/// Empty chunks an arena keeps for reuse: a chunk that empties while the
/// arena holds fewer is filed in qInit instead of being destroyed (Netty
/// destroys a chunk that empties in q000 at once, which under a steady
/// producer/consumer load maps and unmaps a chunk every few dozen buffers).
/// `trim()` gives the reserve back too.
pub(crate) const EMPTY_RESERVE: usize = 1;

#[cold]
fn no_chunk(id: u32) -> ! {
    panic!("arenabuf: no chunk in slot {id}: a region freed twice or never allocated")
}

/// The list a chunk moves to when its usage rises to its list's maximum.
fn next_list(list: usize) -> Option<usize> {
    (list < Q100).then_some(list + 1)
}

/// The list a chunk moves to when its usage falls below its list's minimum;
/// `None` means the chunk is destroyed.
fn prev_list(list: usize) -> Option<usize> {
    match list {
        QINIT => Some(QINIT),
        Q000 => None,
        other => Some(other - 1),
    }
}

/// Whether a chunk at `usage` is above its place in `list`.
fn rises_out_of(list: usize, usage: u32) -> bool {
    list != Q100 && usage >= BANDS[list].1
}

/// Whether a chunk at `usage` is below its place in `list`. qInit has no
/// floor: an empty chunk there is kept.
fn falls_out_of(list: usize, usage: u32) -> bool {
    match list {
        QINIT => false,
        Q000 => usage == 0,
        other => usage < BANDS[other].0,
    }
}

#[derive(Debug)]
struct Slot {
    /// Boxed, so that moving a chunk in or out of the slab moves a pointer.
    chunk: Option<Box<Chunk>>,
    list: usize,
    prev: u32,
    /// Next chunk in the list, or next free slot when `chunk` is `None`.
    next: u32,
}

/// The chunks of one arena in their six lists.
#[derive(Debug)]
pub(crate) struct ChunkLists {
    slots: Vec<Slot>,
    free_slot: u32,
    heads: [u32; NUM_LISTS],
    /// Largest request each list can still serve, in bytes.
    max_request: [usize; NUM_LISTS],
    live_chunks: usize,
    /// Empty chunks kept (at most [`EMPTY_RESERVE`]).
    empty_chunks: usize,
}

impl ChunkLists {
    pub(crate) fn new(chunk_size: usize) -> ChunkLists {
        let max_request = BANDS.map(|(min, _)| chunk_size / 100 * (100 - min as usize));
        ChunkLists {
            slots: Vec::new(),
            free_slot: NONE,
            heads: [NONE; NUM_LISTS],
            max_request,
            live_chunks: 0,
            empty_chunks: 0,
        }
    }

    /// The chunk in slot `id`.
    ///
    /// # Panics
    ///
    /// When the slot holds no chunk.
    #[inline]
    pub(crate) fn get(&self, id: u32) -> &Chunk {
        match self.slots.get(id as usize).and_then(|s| s.chunk.as_ref()) {
            Some(chunk) => chunk,
            None => no_chunk(id),
        }
    }

    /// The chunk in slot `id`, mutably.
    ///
    /// # Panics
    ///
    /// When the slot holds no chunk.
    #[inline]
    pub(crate) fn get_mut(&mut self, id: u32) -> &mut Chunk {
        match self.slots.get_mut(id as usize).and_then(|s| s.chunk.as_mut()) {
            Some(chunk) => chunk,
            None => no_chunk(id),
        }
    }

    /// Chunks held.
    pub(crate) fn len(&self) -> usize {
        self.live_chunks
    }

    /// Tries the lists in allocation order and, in each, its chunks from the
    /// front, until `take` succeeds on one; that chunk then moves up if its
    /// usage reached its list's maximum. `request` is the bytes asked for,
    /// which lets lists whose chunks cannot hold them be skipped.
    pub(crate) fn allocate<T>(
        &mut self,
        request: usize,
        mut take: impl FnMut(&mut Chunk) -> Option<T>,
    ) -> Option<(u32, T)> {
        for list in ALLOCATION_ORDER {
            if request > self.max_request[list] {
                continue;
            }
            let mut id = self.heads[list];
            while id != NONE {
                let next = self.slots[id as usize].next;
                let was_empty = self.get(id).is_empty();
                if let Some(got) = take(self.get_mut(id)) {
                    self.empty_chunks -= was_empty as usize;
                    if rises_out_of(list, self.get(id).usage()) {
                        self.unlink(id);
                        self.add_from(next_list(list).expect("q100 is never tried"), id);
                    }
                    return Some((id, got));
                }
                id = next;
            }
        }
        if self.empty_chunks > 0 {
            // An empty chunk in reserve serves even what the lists' bounds
            // skip (a whole-chunk request), before any new chunk is made.
            let mut id = self.heads[QINIT];
            while id != NONE {
                let next = self.slots[id as usize].next;
                if self.get(id).is_empty() {
                    if let Some(got) = take(self.get_mut(id)) {
                        self.empty_chunks -= 1;
                        if rises_out_of(QINIT, self.get(id).usage()) {
                            self.unlink(id);
                            self.add_from(next_list(QINIT).expect("qInit has a next list"), id);
                        }
                        return Some((id, got));
                    }
                }
                id = next;
            }
        }
        None
    }

    /// Takes a new chunk (on which the caller may already have allocated)
    /// into qInit, or further up if its usage says so; returns its slot.
    pub(crate) fn add(&mut self, chunk: Chunk) -> u32 {
        let slot = Slot { chunk: Some(Box::new(chunk)), list: QINIT, prev: NONE, next: NONE };
        let id = if self.free_slot != NONE {
            let id = self.free_slot;
            self.free_slot = self.slots[id as usize].next;
            self.slots[id as usize] = slot;
            id
        } else {
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        };
        self.live_chunks += 1;
        self.add_from(QINIT, id);
        id
    }

    /// Re-files chunk `id` after a free lowered its usage. Returns the chunk
    /// when it must be destroyed: it is empty and the arena already keeps
    /// [`EMPTY_RESERVE`] empty chunks. The caller drops it, ideally after
    /// releasing the arena's lock.
    pub(crate) fn after_free(&mut self, id: u32) -> Option<Box<Chunk>> {
        let list = self.slots[id as usize].list;
        let usage = self.get(id).usage();
        if usage == 0 {
            self.unlink(id);
            if self.empty_chunks < EMPTY_RESERVE {
                self.empty_chunks += 1;
                self.link(QINIT, id);
                return None;
            }
            return Some(self.remove(id));
        }
        if !falls_out_of(list, usage) {
            return None;
        }
        self.unlink(id);
        let mut to = prev_list(list);
        while let Some(l) = to {
            if !falls_out_of(l, usage) {
                self.link(l, id);
                return None;
            }
            to = prev_list(l);
        }
        unreachable!("only an empty chunk falls out of q000")
    }

    /// Takes every empty chunk out of the lists, for the caller to destroy.
    #[allow(clippy::vec_box)] // the chunks live boxed in the slab; unboxing would copy each
    pub(crate) fn remove_empty(&mut self) -> Vec<Box<Chunk>> {
        self.empty_chunks = 0;
        let empty: Vec<u32> = (0..NUM_LISTS)
            .flat_map(|list| self.iter_list(list).filter(|(_, c)| c.usage() == 0).map(|(id, _)| id).collect::<Vec<_>>())
            .collect();
        empty
            .into_iter()
            .map(|id| {
                self.unlink(id);
                self.remove(id)
            })
            .collect()
    }

    /// The chunks of `list`, front first.
    pub(crate) fn iter_list(&self, list: usize) -> impl Iterator<Item = (u32, &Chunk)> + '_ {
        let mut id = self.heads[list];
        std::iter::from_fn(move || {
            if id == NONE {
                return None;
            }
            let at = id;
            id = self.slots[at as usize].next;
            Some((at, self.get(at)))
        })
    }

    #[cfg(test)]
    /// The list chunk `id` is in.
    pub(crate) fn list_of(&self, id: u32) -> usize {
        self.slots[id as usize].list
    }

    fn add_from(&mut self, mut list: usize, id: u32) {
        let usage = self.get(id).usage();
        while rises_out_of(list, usage) {
            list = next_list(list).expect("q100 has no maximum");
        }
        self.link(list, id);
    }

    fn link(&mut self, list: usize, id: u32) {
        let head = self.heads[list];
        if head != NONE {
            self.slots[head as usize].prev = id;
        }
        let slot = &mut self.slots[id as usize];
        slot.list = list;
        slot.prev = NONE;
        slot.next = head;
        self.heads[list] = id;
    }

    fn unlink(&mut self, id: u32) {
        let (list, prev, next) = {
            let s = &self.slots[id as usize];
            (s.list, s.prev, s.next)
        };
        if prev == NONE {
            self.heads[list] = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next != NONE {
            self.slots[next as usize].prev = prev;
        }
    }

    fn remove(&mut self, id: u32) -> Box<Chunk> {
        let slot = &mut self.slots[id as usize];
        let chunk = slot.chunk.take().expect("no chunk in this slot");
        slot.prev = NONE;
        slot.next = self.free_slot;
        self.free_slot = id;
        self.live_chunks -= 1;
        chunk
    }
}

impl SubpageStore for ChunkLists {
    fn subpage_mut(&mut self, at: SubpageRef) -> &mut Subpage {
        self.get_mut(at.chunk).subpages_mut().get_mut(at.page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::Handle;
    use crate::memory::MemoryKind;
    use crate::SizeClasses;

    fn setup() -> (SizeClasses, ChunkLists) {
        let classes = SizeClasses::new(8192, 9).unwrap();
        let lists = ChunkLists::new(classes.chunk_size());
        (classes, lists)
    }

    fn new_chunk(classes: &SizeClasses) -> Chunk {
        Chunk::new(classes, MemoryKind::Heap, None).unwrap()
    }

    fn run(classes: &SizeClasses, lists: &mut ChunkLists, pages: u32) -> (u32, Handle) {
        lists.allocate(pages as usize * 8192, |c| c.allocate_run(classes, pages)).unwrap()
    }

    fn free(classes: &SizeClasses, lists: &mut ChunkLists, (id, h): (u32, Handle)) -> Option<Box<Chunk>> {
        lists.get_mut(id).free_run(classes, h);
        lists.after_free(id)
    }

    #[test]
    fn bands_follow_netty() {
        assert_eq!(BANDS, [(1, 25), (1, 50), (25, 75), (50, 100), (75, 100), (100, 100)]);
        let lists = ChunkLists::new(4 << 20);
        assert_eq!(lists.max_request[QINIT], (4 << 20) / 100 * 99);
        assert_eq!(lists.max_request[Q100], 0);
    }

    #[test]
    fn chunks_climb_the_lists_as_usage_rises() {
        let (classes, mut lists) = setup();
        let mut c = new_chunk(&classes);
        let first = c.allocate_run(&classes, 64).unwrap(); // 12.5 %
        let id = lists.add(c);
        assert_eq!(lists.list_of(id), QINIT);
        let mut held = vec![(id, first)];
        held.push(run(&classes, &mut lists, 128)); // 37.5 %
        assert_eq!(lists.list_of(id), Q000);
        held.push(run(&classes, &mut lists, 64)); // 50 %
        assert_eq!(lists.list_of(id), Q025);
        held.push(run(&classes, &mut lists, 128)); // 75 %
        assert_eq!(lists.list_of(id), Q050);
        held.push(run(&classes, &mut lists, 128)); // 100 %
        assert_eq!(lists.list_of(id), Q100);
        // Falling: 75 % is q075's band.
        assert!(free(&classes, &mut lists, held.pop().unwrap()).is_none());
        assert_eq!(lists.list_of(id), Q075);
        // 50 %: q050; then 37.5 %: q025.
        assert!(free(&classes, &mut lists, held.pop().unwrap()).is_none());
        assert_eq!(lists.list_of(id), Q050);
        assert!(free(&classes, &mut lists, held.pop().unwrap()).is_none());
        assert_eq!(lists.list_of(id), Q025);
        assert!(free(&classes, &mut lists, held.pop().unwrap()).is_none());
        assert_eq!(lists.list_of(id), Q000);
        // Empty in q000: Netty destroys it; the arena keeps it as its one
        // empty chunk in reserve, in qInit.
        assert!(free(&classes, &mut lists, held.pop().unwrap()).is_none());
        assert_eq!(lists.list_of(id), QINIT);
        assert_eq!(lists.len(), 1);
    }

    #[test]
    fn an_empty_chunk_in_qinit_is_kept() {
        let (classes, mut lists) = setup();
        let mut c = new_chunk(&classes);
        let h = c.allocate_run(&classes, 1).unwrap();
        let id = lists.add(c);
        assert!(free(&classes, &mut lists, (id, h)).is_none());
        assert_eq!(lists.list_of(id), QINIT);
        assert_eq!(lists.get(id).usage(), 0);
        assert_eq!(lists.len(), 1);
    }

    #[test]
    fn allocation_prefers_q050_then_q025_then_q000_then_qinit_then_q075() {
        let (classes, mut lists) = setup();
        // Build one chunk per list by filling chunks to the right usage.
        let mut ids = Vec::new();
        for pages in [20u32, 200, 300, 420] {
            let mut c = new_chunk(&classes);
            c.allocate_run(&classes, pages).unwrap();
            ids.push(lists.add(c));
        }
        let lists_of: Vec<usize> = ids.iter().map(|&id| lists.list_of(id)).collect();
        assert_eq!(lists_of, [QINIT, Q000, Q025, Q050]);
        let order: Vec<u32> = (0..4)
            .map(|_| {
                let (id, _) = run(&classes, &mut lists, 1);
                id
            })
            .collect();
        // The q050 chunk (index 3) takes the first request; it stays in q050
        // until it is full.
        assert!(order.iter().all(|&id| id == ids[3]));
        // A request too large for q050's chunk goes to q025's (its free
        // 212-page run is filed under the 192-page class, so it serves 192).
        let (id, _) = run(&classes, &mut lists, 192);
        assert_eq!(id, ids[2]);
        // 200 pages need the 224-page class: only q000's 312-page run has it.
        let (id, _) = run(&classes, &mut lists, 200);
        assert_eq!(id, ids[1]);
    }

    #[test]
    fn only_one_empty_chunk_is_kept_in_reserve() {
        let (classes, mut lists) = setup();
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut c = new_chunk(&classes);
            let h = c.allocate_run(&classes, 1).unwrap();
            held.push((lists.add(c), h));
        }
        assert!(free(&classes, &mut lists, held.pop().unwrap()).is_none(), "the first to empty is the reserve");
        assert!(free(&classes, &mut lists, held.pop().unwrap()).is_some(), "a second empty chunk goes");
        let (id, h) = held.pop().unwrap();
        assert!(free(&classes, &mut lists, (id, h)).is_some());
        assert_eq!(lists.len(), 1);
        assert_eq!(lists.remove_empty().len(), 1, "trim takes the reserve too");
        assert_eq!(lists.len(), 0);
    }

    #[test]
    fn slots_are_reused_after_a_chunk_is_destroyed() {
        let (classes, mut lists) = setup();
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut c = new_chunk(&classes);
            let h = c.allocate_run(&classes, 200).unwrap(); // 39 %: q000
            held.push((lists.add(c), h));
        }
        assert!(free(&classes, &mut lists, held[0]).is_none(), "the reserve");
        let (id, h) = held[1];
        assert_eq!(lists.list_of(id), Q000);
        assert!(free(&classes, &mut lists, (id, h)).is_some(), "beyond the reserve: destroyed");
        let id2 = lists.add(new_chunk(&classes));
        assert_eq!(id2, id);
    }
}
