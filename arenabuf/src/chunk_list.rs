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

use std::time::{Duration, Instant};

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

/// Empty chunks an arena keeps however long they stay empty: a chunk that
/// empties is filed in qInit instead of being destroyed (Netty destroys a
/// chunk that empties in q000 at once, which under a steady
/// producer/consumer load maps and unmaps a chunk every few dozen buffers).
/// `trim()` gives these back too.
pub(crate) const EMPTY_RESERVE: usize = 1;
/// How long further empty chunks are kept: with large buffers in flight
/// between threads, chunks empty and fill again in waves (a batch of 64
/// buffers of 1 MiB is 16 chunks), and mapping a chunk anew costs a system
/// call and a page fault per page touched. A chunk empty for longer than
/// this is unmapped the next time a chunk of its arena empties (or at
/// `trim()`, or by the idle trim), so the arena keeps at most the chunks
/// its buffers needed within the last second, as jemalloc's decay does.
pub(crate) const EMPTY_CHUNK_DECAY: Duration = Duration::from_secs(1);

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
    /// When the chunk was last filed as empty.
    emptied_at: Option<Instant>,
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
    /// Empty chunks kept (see [`EMPTY_CHUNK_DECAY`]).
    empty_chunks: usize,
    /// No kept empty chunk expires before this.
    next_expiry: Option<Instant>,
}

impl ChunkLists {
    pub(crate) fn new(chunk_size: usize) -> ChunkLists {
        // Multiplied before the division, as Netty computes it: divided
        // first, q075's bound fell short of a quarter chunk by up to 99
        // bytes, and a chunk there with a free quarter (a freed 1 MiB run of
        // a 4 MiB chunk) was never asked for a request of that size.
        let max_request = BANDS.map(|(min, _)| chunk_size * (100 - min as usize) / 100);
        ChunkLists {
            slots: Vec::new(),
            free_slot: NONE,
            heads: [NONE; NUM_LISTS],
            max_request,
            live_chunks: 0,
            empty_chunks: 0,
            next_expiry: None,
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
        let slot = Slot { chunk: Some(Box::new(chunk)), list: QINIT, prev: NONE, next: NONE, emptied_at: None };
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

    /// Re-files chunk `id` after a free lowered its usage. A chunk that
    /// empties is kept; the chunks returned are kept empty ones whose time
    /// is up ([`EMPTY_CHUNK_DECAY`]), for the caller to drop, ideally after
    /// releasing the arena's lock.
    #[allow(clippy::vec_box)] // the chunks live boxed in the slab; unboxing would copy each
    pub(crate) fn after_free(&mut self, id: u32) -> Vec<Box<Chunk>> {
        self.after_free_at(id, Instant::now)
    }

    /// [`after_free`](Self::after_free) with the clock passed in (read only
    /// when the chunk empties).
    #[allow(clippy::vec_box)] // as in `after_free`
    fn after_free_at(&mut self, id: u32, clock: impl FnOnce() -> Instant) -> Vec<Box<Chunk>> {
        let list = self.slots[id as usize].list;
        let usage = self.get(id).usage();
        if usage == 0 {
            self.unlink(id);
            let now = clock();
            let expired = self.remove_expired(now);
            self.empty_chunks += 1;
            self.slots[id as usize].emptied_at = Some(now);
            self.next_expiry = self.next_expiry.or(Some(now + EMPTY_CHUNK_DECAY));
            self.link(QINIT, id);
            return expired;
        }
        if !falls_out_of(list, usage) {
            return Vec::new();
        }
        self.unlink(id);
        let mut to = prev_list(list);
        while let Some(l) = to {
            if !falls_out_of(l, usage) {
                self.link(l, id);
                return Vec::new();
            }
            to = prev_list(l);
        }
        unreachable!("only an empty chunk falls out of q000")
    }

    /// Takes out the kept empty chunks that have been empty for longer than
    /// [`EMPTY_CHUNK_DECAY`] at `now`, but the newest [`EMPTY_RESERVE`].
    #[allow(clippy::vec_box)] // as in `after_free`
    fn remove_expired(&mut self, now: Instant) -> Vec<Box<Chunk>> {
        if self.next_expiry.map_or(true, |expiry| now < expiry) {
            return Vec::new();
        }
        let mut empty: Vec<(Instant, u32)> = self
            .iter_list(QINIT)
            .filter(|(_, chunk)| chunk.is_empty())
            .map(|(id, _)| (self.slots[id as usize].emptied_at.expect("filed as empty"), id))
            .collect();
        // Newest first: the reserve is kept from the front.
        empty.sort_unstable_by_key(|&(emptied_at, _)| std::cmp::Reverse(emptied_at));
        let mut expired = Vec::new();
        self.next_expiry = None;
        for &(emptied_at, id) in empty.iter().skip(EMPTY_RESERVE) {
            if now.duration_since(emptied_at) > EMPTY_CHUNK_DECAY {
                self.unlink(id);
                self.empty_chunks -= 1;
                expired.push(self.remove(id));
            } else {
                let expiry = emptied_at + EMPTY_CHUNK_DECAY;
                self.next_expiry = Some(self.next_expiry.map_or(expiry, |e| e.min(expiry)));
            }
        }
        expired
    }

    /// Takes every empty chunk out of the lists, for the caller to destroy.
    #[allow(clippy::vec_box)] // the chunks live boxed in the slab; unboxing would copy each
    pub(crate) fn remove_empty(&mut self) -> Vec<Box<Chunk>> {
        self.empty_chunks = 0;
        self.next_expiry = None;
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

    /// Every chunk, list by list.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Chunk)> + '_ {
        (0..NUM_LISTS).flat_map(move |list| self.iter_list(list))
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
        Chunk::new(classes, MemoryKind::Heap, None, crate::memory::Backing::BasePages, false).unwrap()
    }

    fn run(classes: &SizeClasses, lists: &mut ChunkLists, pages: u32) -> (u32, Handle) {
        lists.allocate(pages as usize * 8192, |c| c.allocate_run(classes, pages)).unwrap()
    }

    /// Frees a run; returns how many chunks that destroyed.
    fn free(classes: &SizeClasses, lists: &mut ChunkLists, region: (u32, Handle)) -> usize {
        free_at(classes, lists, region, Instant::now())
    }

    #[test]
    fn bands_follow_netty() {
        assert_eq!(BANDS, [(1, 25), (1, 50), (25, 75), (50, 100), (75, 100), (100, 100)]);
        let lists = ChunkLists::new(4 << 20);
        assert_eq!(lists.max_request[QINIT], (4 << 20) * 99 / 100);
        assert_eq!(lists.max_request[Q075], 1 << 20, "a quarter chunk, exactly");
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
        assert_eq!(free(&classes, &mut lists, held.pop().unwrap()), 0);
        assert_eq!(lists.list_of(id), Q075);
        // 50 %: q050; then 37.5 %: q025.
        assert_eq!(free(&classes, &mut lists, held.pop().unwrap()), 0);
        assert_eq!(lists.list_of(id), Q050);
        assert_eq!(free(&classes, &mut lists, held.pop().unwrap()), 0);
        assert_eq!(lists.list_of(id), Q025);
        assert_eq!(free(&classes, &mut lists, held.pop().unwrap()), 0);
        assert_eq!(lists.list_of(id), Q000);
        // Empty in q000: Netty destroys it; the arena keeps it as its one
        // empty chunk in reserve, in qInit.
        assert_eq!(free(&classes, &mut lists, held.pop().unwrap()), 0);
        assert_eq!(lists.list_of(id), QINIT);
        assert_eq!(lists.len(), 1);
    }

    #[test]
    fn an_empty_chunk_in_qinit_is_kept() {
        let (classes, mut lists) = setup();
        let mut c = new_chunk(&classes);
        let h = c.allocate_run(&classes, 1).unwrap();
        let id = lists.add(c);
        assert_eq!(free(&classes, &mut lists, (id, h)), 0);
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

    /// Frees a run at time `now`; returns how many chunks that destroyed.
    fn free_at(classes: &SizeClasses, lists: &mut ChunkLists, (id, h): (u32, Handle), now: Instant) -> usize {
        lists.get_mut(id).free_run(classes, h);
        lists.after_free_at(id, || now).len()
    }

    fn one_page_runs(classes: &SizeClasses, lists: &mut ChunkLists, chunks: usize) -> Vec<(u32, Handle)> {
        (0..chunks)
            .map(|_| {
                let mut c = new_chunk(classes);
                let h = c.allocate_run(classes, 1).unwrap();
                (lists.add(c), h)
            })
            .collect()
    }

    #[test]
    fn emptied_chunks_are_kept_for_reuse_until_trim() {
        let (classes, mut lists) = setup();
        let held = one_page_runs(&classes, &mut lists, 3);
        for run in held {
            assert_eq!(free(&classes, &mut lists, run), 0);
        }
        assert_eq!(lists.len(), 3);
        // A kept chunk serves the next request before any new chunk is made.
        let (id, h) = run(&classes, &mut lists, 1);
        assert!(lists.get(id).usage() > 0);
        assert_eq!(free(&classes, &mut lists, (id, h)), 0);
        assert_eq!(lists.remove_empty().len(), 3, "trim takes every empty chunk");
        assert_eq!(lists.len(), 0);
    }

    #[test]
    fn empty_chunks_decay_but_the_reserve_stays() {
        let (classes, mut lists) = setup();
        let held = one_page_runs(&classes, &mut lists, 4);
        let t0 = Instant::now();
        assert_eq!(free_at(&classes, &mut lists, held[0], t0), 0);
        assert_eq!(free_at(&classes, &mut lists, held[1], t0 + Duration::from_millis(10)), 0);
        // Within the decay time nothing goes.
        assert_eq!(free_at(&classes, &mut lists, held[2], t0 + EMPTY_CHUNK_DECAY / 2), 0);
        assert_eq!(lists.len(), 4);
        // Later, the two oldest have expired; the newest of the kept ones is
        // the reserve (EMPTY_RESERVE = 1) and stays.
        let later = t0 + EMPTY_CHUNK_DECAY + Duration::from_millis(20);
        assert_eq!(free_at(&classes, &mut lists, held[3], later), 2);
        assert_eq!(lists.len(), 2);
        assert_eq!(lists.empty_chunks, 2);
    }

    #[test]
    fn slots_are_reused_after_a_chunk_is_destroyed() {
        let (classes, mut lists) = setup();
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut c = new_chunk(&classes);
            let h = c.allocate_run(&classes, 200).unwrap(); // 39 %: q000
            held.push((lists.add(c), h));
        }
        assert_eq!(lists.list_of(held[0].0), Q000);
        let t0 = Instant::now();
        assert_eq!(free_at(&classes, &mut lists, held[0], t0), 0, "kept");
        assert_eq!(free_at(&classes, &mut lists, held[1], t0 + Duration::from_millis(1)), 0, "kept");
        // After the decay time the oldest goes (the newer one is the reserve).
        assert_eq!(free_at(&classes, &mut lists, held[2], t0 + 2 * EMPTY_CHUNK_DECAY), 1);
        let id2 = lists.add(new_chunk(&classes));
        assert_eq!(id2, held[0].0);
    }
}
