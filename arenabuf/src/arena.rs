//! An arena: chunk lists, subpage pools and counters behind one lock.
//!
//! A request is sorted by its size class:
//! * *small* (below four pages): an element of a subpage from the class's
//!   pool, or of a new subpage cut from a run;
//! * *normal* (up to the chunk size): a run of the class's page count;
//! * *huge* (above the chunk size): its own exact-size block, outside the
//!   lists and without the lock.
//!
//! A chunk is created only when no listed chunk can serve the request; a
//! failure to create one (system out of memory, direct-memory limit) is
//! returned with every list and counter as it was.

use std::ptr::NonNull;

use crate::chunk::{Chunk, Handle};
use crate::chunk_list::{ChunkLists, BANDS, LIST_NAMES, NUM_LISTS};
use crate::config::HugePages;
use crate::error::AllocError;
use crate::memory::{Backing, MemoryKind, MemoryLimit, RawMemory};
use crate::metric::{ArenaMetric, ChunkListMetric, ChunkMetric, SubpageMetric};
use crate::size_class::SizeClasses;
use crate::subpage::{coloured_shape_for, Freed, SubpagePools, SubpageRef, SubpageShape};
use crate::sync::{lock, Arc, AtomicU64, AtomicUsize, Mutex, Ordering};

/// A region handed out by an arena: where it is and how to give it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PooledRegion {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) chunk: u32,
    pub(crate) handle: Handle,
    pub(crate) size_idx: u32,
}

/// Counters kept under the arena lock.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) small_allocations: u64,
    pub(crate) normal_allocations: u64,
    pub(crate) small_deallocations: u64,
    pub(crate) normal_deallocations: u64,
    /// Bytes of live small and normal regions (class sizes).
    pub(crate) active_bytes: u64,
    pub(crate) chunks_created: u64,
    pub(crate) chunks_destroyed: u64,
}

/// A consistent snapshot of an arena's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArenaCounts {
    pub(crate) pooled: Counters,
    pub(crate) huge_allocations: u64,
    pub(crate) huge_deallocations: u64,
    pub(crate) huge_active_bytes: u64,
    pub(crate) chunks: u64,
}

#[derive(Debug)]
struct ArenaState {
    lists: ChunkLists,
    pools: SubpagePools,
    /// Subpages started per small class: the next is the class's
    /// `started`-th, whose colour follows from that turn and where its run
    /// starts (`chunk::run_colour`), so that the class's runs take every
    /// colour in turn across chunks (a chunk holds as few as 30 runs of
    /// 4 KiB elements, fewer than their 64 colours).
    subpages_started: Box<[u32]>,
    counters: Counters,
}

/// Elements of at most this many bytes are cut from dense chunks under
/// [`HugePages::Dense`]: a run of them is nearly all resident once its
/// elements are in use, since each touches at most two 4 KiB pages.
pub(crate) const DENSE_MAX_ELEM: usize = 4096;

/// One arena of heap or direct memory.
#[derive(Debug)]
pub(crate) struct Arena {
    kind: MemoryKind,
    classes: Arc<SizeClasses>,
    limit: Option<Arc<MemoryLimit>>,
    /// Which new chunks take huge pages (huge buffers never do: each is
    /// mapped for one buffer, so a huge page's fault would be paid per
    /// buffer, not once per chunk).
    huge_pages: HugePages,
    /// Subpage run shape per small class.
    shapes: Box<[SubpageShape]>,
    state: Mutex<ArenaState>,
    huge_allocations: AtomicU64,
    huge_deallocations: AtomicU64,
    huge_active_bytes: AtomicU64,
    /// Thread caches bound to this arena.
    thread_caches: AtomicUsize,
}

impl Arena {
    pub(crate) fn new(
        kind: MemoryKind,
        classes: Arc<SizeClasses>,
        limit: Option<Arc<MemoryLimit>>,
        huge_pages: HugePages,
    ) -> Arena {
        let shapes =
            (0..classes.num_small_classes()).map(|idx| coloured_shape_for(classes.size_of(idx), &classes)).collect();
        let state = ArenaState {
            lists: ChunkLists::new(classes.chunk_size()),
            pools: SubpagePools::new(classes.num_small_classes()),
            subpages_started: vec![0; classes.num_small_classes()].into_boxed_slice(),
            counters: Counters::default(),
        };
        Arena {
            kind,
            classes,
            limit,
            huge_pages,
            shapes,
            state: Mutex::new(state),
            huge_allocations: AtomicU64::new(0),
            huge_deallocations: AtomicU64::new(0),
            huge_active_bytes: AtomicU64::new(0),
            thread_caches: AtomicUsize::new(0),
        }
    }

    /// Thread caches bound to this arena now.
    pub(crate) fn num_thread_caches(&self) -> usize {
        self.thread_caches.load(Ordering::Relaxed)
    }

    pub(crate) fn bind_thread_cache(&self) {
        self.thread_caches.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unbind_thread_cache(&self) {
        self.thread_caches.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn kind(&self) -> MemoryKind {
        self.kind
    }

    pub(crate) fn size_classes(&self) -> &SizeClasses {
        &self.classes
    }

    /// Allocates a region of size class `size_idx` (small or normal).
    pub(crate) fn allocate(&self, size_idx: usize) -> Result<PooledRegion, AllocError> {
        self.allocate_batch(size_idx, 0, |_| {})
    }

    /// Allocates a region of class `size_idx` (from a new chunk if none has
    /// room; [`allocate`](Self::allocate) asks for no more), then, under
    /// the same lock, up to `extra` more of the class for a thread cache to
    /// keep, each given to `keep` (which must take it: it is the caller's
    /// from then on). The extra regions come from the subpages and chunks
    /// the arena has: a cache's fill never adds a chunk.
    ///
    /// A miss cost about 580 instructions from the buffer call to the arena
    /// and back (`window` 4 KiB, callgrind), against about 135 for each
    /// extra region taken here (310 per region in all, the miss's own way
    /// spread over its batch of 16): a thread that starts to hold many
    /// buffers of a class (a window filling, a burst of connections) takes
    /// them in batches, as jemalloc's thread caches fill.
    pub(crate) fn allocate_batch(
        &self,
        size_idx: usize,
        extra: usize,
        mut keep: impl FnMut(PooledRegion),
    ) -> Result<PooledRegion, AllocError> {
        let classes = &*self.classes;
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let (chunk, handle) = self.allocate_region(state, size_idx, true)?.expect("may add a chunk");
        let first = Self::handed_out(classes, state, size_idx, chunk, handle);
        for _ in 0..extra {
            // An error cannot come without a new chunk.
            let Ok(Some((chunk, handle))) = self.allocate_region(state, size_idx, false) else { break };
            keep(Self::handed_out(classes, state, size_idx, chunk, handle));
        }
        Ok(first)
    }

    /// A region of class `size_idx`, from a new chunk only when
    /// `may_add_chunk` (else `None` when no chunk has room).
    fn allocate_region(
        &self,
        state: &mut ArenaState,
        size_idx: usize,
        may_add_chunk: bool,
    ) -> Result<Option<(u32, Handle)>, AllocError> {
        if self.classes.is_small(size_idx) {
            self.allocate_small(state, size_idx, may_add_chunk)
        } else {
            self.allocate_normal(state, size_idx, may_add_chunk)
        }
    }

    /// A run of normal class `size_idx`, from a new chunk only when
    /// `may_add_chunk`.
    fn allocate_normal(
        &self,
        state: &mut ArenaState,
        size_idx: usize,
        may_add_chunk: bool,
    ) -> Result<Option<(u32, Handle)>, AllocError> {
        let classes = &*self.classes;
        let request = classes.size_of(size_idx);
        let pages = (request >> classes.page_shift()) as u32;
        // A free run of the request's own class first, in any chunk: a run
        // freed by a buffer of the class is taken whole again, with the
        // pages its last user touched, rather than cut anew from some
        // chunk's larger free space (see the `chunk` module).
        if let Some(got) = Self::allocate_in_listed(state, request, false, |c| c.allocate_run_in_class(classes, pages))
        {
            return Ok(Some(got));
        }
        self.allocate_in_lists(state, request, false, may_add_chunk, |c| c.allocate_run(classes, pages))
    }

    /// Counts region `handle` of `chunk` (class `size_idx`) as handed out
    /// and gives its address.
    fn handed_out(
        classes: &SizeClasses,
        state: &mut ArenaState,
        size_idx: usize,
        chunk: u32,
        handle: Handle,
    ) -> PooledRegion {
        let elem_size = classes.size_of(size_idx);
        let ptr = state.lists.get(chunk).region_ptr(handle, elem_size);
        let counters = &mut state.counters;
        if classes.is_small(size_idx) {
            counters.small_allocations += 1;
        } else {
            counters.normal_allocations += 1;
        }
        counters.active_bytes += elem_size as u64;
        PooledRegion { ptr, chunk, handle, size_idx: size_idx as u32 }
    }

    /// An element of small class `size_idx`: from the class's pool, else
    /// from a new subpage, cut from a new chunk if need be and
    /// `may_add_chunk` (`None` when it may not and no chunk has room).
    fn allocate_small(
        &self,
        state: &mut ArenaState,
        size_idx: usize,
        may_add_chunk: bool,
    ) -> Result<Option<(u32, Handle)>, AllocError> {
        if let Some(at) = state.pools.first(size_idx) {
            let chunk = state.lists.get_mut(at.chunk);
            let handle = chunk.allocate_element(at.page).expect("a pooled subpage has a free element");
            if chunk.subpages().get(at.page).num_avail() == 0 {
                state.pools.remove(&mut state.lists, at);
            }
            return Ok(Some((at.chunk, handle)));
        }
        let classes = &*self.classes;
        let shape = self.shapes[size_idx];
        let request = (shape.run_pages as usize) << classes.page_shift();
        let turn = state.subpages_started[size_idx];
        let dense = self.is_dense(size_idx);
        let cut = |c: &mut Chunk| c.allocate_subpage(classes, size_idx, shape, turn);
        let Some((chunk, page)) = self.allocate_in_lists(state, request, dense, may_add_chunk, cut)? else {
            return Ok(None);
        };
        state.subpages_started[size_idx] = state.subpages_started[size_idx].wrapping_add(1);
        let at = SubpageRef { chunk, page };
        let handle = state.lists.get_mut(chunk).allocate_element(page).expect("a new subpage has room");
        if shape.max_elems > 1 {
            state.pools.push_front(&mut state.lists, at);
        }
        Ok(Some((chunk, handle)))
    }

    /// Whether runs of class `size_idx` are cut from dense chunks
    /// ([`HugePages::Dense`]).
    fn is_dense(&self, size_idx: usize) -> bool {
        self.huge_pages == HugePages::Dense
            && self.classes.is_small(size_idx)
            && self.classes.size_of(size_idx) <= DENSE_MAX_ELEM
    }

    /// How a new chunk is backed: dense or not as `dense` says, with
    /// `lists` the arena's chunks so far.
    fn backing_for(&self, lists: &ChunkLists, dense: bool) -> Backing {
        match self.huge_pages {
            HugePages::Off => Backing::BasePages,
            HugePages::All => Backing::HugePages,
            HugePages::Dense if dense && lists.iter().any(|(_, c)| c.is_dense()) => Backing::HugePages,
            HugePages::Dense => Backing::BasePages,
        }
    }

    /// Runs `take` on the listed chunks that are dense or not as `dense`
    /// says, in allocation order, until one serves `request` bytes.
    fn allocate_in_listed<T>(
        state: &mut ArenaState,
        request: usize,
        dense: bool,
        mut take: impl FnMut(&mut Chunk) -> Option<T>,
    ) -> Option<(u32, T)> {
        state.lists.allocate(request, |c| if c.is_dense() == dense { take(c) } else { None })
    }

    /// Runs `take` on the listed chunks that are dense or not as `dense`
    /// says, in allocation order, or, when none can serve `request` bytes
    /// and `may_add_chunk`, on a new such chunk (else `None`). Where the
    /// direct-memory limit refuses a new chunk, a chunk of the other kind
    /// serves if it can, so that keeping the kinds apart never fails a
    /// request that one chunk could serve.
    fn allocate_in_lists<T>(
        &self,
        state: &mut ArenaState,
        request: usize,
        dense: bool,
        may_add_chunk: bool,
        mut take: impl FnMut(&mut Chunk) -> Option<T>,
    ) -> Result<Option<(u32, T)>, AllocError> {
        if let Some(got) = Self::allocate_in_listed(state, request, dense, &mut take) {
            return Ok(Some(got));
        }
        if !may_add_chunk {
            return Ok(None);
        }
        let backing = self.backing_for(&state.lists, dense);
        let mut chunk = match Chunk::new(&self.classes, self.kind, self.limit.as_ref(), backing, dense) {
            Ok(chunk) => chunk,
            Err(refused) => return state.lists.allocate(request, &mut take).ok_or(refused).map(Some),
        };
        let got = take(&mut chunk).expect("a new chunk serves any request up to the chunk size");
        state.counters.chunks_created += 1;
        Ok(Some((state.lists.add(chunk), got)))
    }

    /// Gives back a region that [`Arena::allocate`] handed out.
    ///
    /// # Panics
    ///
    /// When the region was already given back: the pool is left unchanged.
    #[cfg(test)]
    pub(crate) fn free(&self, chunk: u32, handle: Handle, size_idx: usize) {
        self.free_region(chunk, size_idx, |_| handle);
    }

    /// Gives back the region of class `size_idx` at `ptr` in `chunk`, which
    /// [`Arena::allocate`] handed out: its handle is found from the address
    /// ([`Chunk::handle_at`]).
    ///
    /// # Panics
    ///
    /// When the region was already given back, or `ptr` does not start a
    /// region of the chunk: the pool is left unchanged.
    pub(crate) fn free_at(&self, chunk: u32, ptr: NonNull<u8>, size_idx: usize) {
        let classes = &*self.classes;
        let (elem_size, small) = (classes.size_of(size_idx), classes.is_small(size_idx));
        self.free_region(chunk, size_idx, |c| c.handle_at(ptr, elem_size, small));
    }

    /// Gives back a region of `chunk`, whose handle is read under the lock.
    fn free_region(&self, chunk: u32, size_idx: usize, handle: impl FnOnce(&Chunk) -> Handle) {
        let classes = &*self.classes;
        let destroyed = {
            let mut guard = lock(&self.state);
            let state = &mut *guard;
            let handle = handle(state.lists.get(chunk));
            if handle.is_subpage() {
                let page = handle.run_offset();
                let freed = state.lists.get_mut(chunk).free_element(handle);
                let at = SubpageRef { chunk, page };
                let single = state.lists.get(chunk).subpages().get(page).max_elems() == 1;
                let retire = match freed {
                    // A one-element subpage was never in its pool: always retire it.
                    Freed::NowEmpty if single => true,
                    Freed::NowEmpty => {
                        let keep = state.pools.is_only(&mut state.lists, at);
                        if !keep {
                            state.pools.remove(&mut state.lists, at);
                        }
                        !keep
                    }
                    Freed::WasFull => {
                        state.pools.push_front(&mut state.lists, at);
                        false
                    }
                    Freed::Partial => false,
                };
                if retire {
                    state.lists.get_mut(chunk).retire_subpage(classes, page);
                }
                state.counters.small_deallocations += 1;
            } else {
                state.lists.get_mut(chunk).free_run(classes, handle);
                state.counters.normal_deallocations += 1;
            }
            state.counters.active_bytes -= classes.size_of(size_idx) as u64;
            let destroyed = state.lists.after_free(chunk);
            state.counters.chunks_destroyed += destroyed.len() as u64;
            destroyed
        };
        // The chunk's memory goes back to the system outside the lock.
        drop(destroyed);
    }

    /// Allocates a huge block of exactly `size` bytes, outside the lists.
    pub(crate) fn allocate_huge(&self, size: usize) -> Result<RawMemory, AllocError> {
        let memory = RawMemory::allocate(self.kind, size, self.limit.as_ref(), Backing::BasePages)?;
        self.huge_allocations.fetch_add(1, Ordering::Relaxed);
        self.huge_active_bytes.fetch_add(size as u64, Ordering::Relaxed);
        Ok(memory)
    }

    /// Frees a block from [`Arena::allocate_huge`].
    pub(crate) fn free_huge(&self, memory: RawMemory) {
        let size = memory.len() as u64;
        drop(memory);
        self.huge_deallocations.fetch_add(1, Ordering::Relaxed);
        self.huge_active_bytes.fetch_sub(size, Ordering::Relaxed);
    }

    /// Destroys the empty chunks the arena keeps for reuse (their memory
    /// counts against the direct-memory limit).
    pub(crate) fn release_empty_chunks(&self) {
        let destroyed = {
            let mut state = lock(&self.state);
            let destroyed = state.lists.remove_empty();
            state.counters.chunks_destroyed += destroyed.len() as u64;
            destroyed
        };
        // The chunks' memory goes back to the system outside the lock.
        drop(destroyed);
    }

    /// Gives back what the arena holds without use: subpages with no element
    /// in use (even the last of their class, which a free keeps) and then
    /// every empty chunk, whose memory goes back to the system.
    pub(crate) fn trim(&self) {
        let classes = &*self.classes;
        let destroyed = {
            let mut guard = lock(&self.state);
            let state = &mut *guard;
            let mut destroyed = Vec::new();
            for idx in 0..classes.num_small_classes() {
                let refs: Vec<SubpageRef> = state.pools.iter(&mut state.lists, idx).collect();
                for at in refs {
                    let sub = state.lists.get(at.chunk).subpages().get(at.page);
                    if sub.num_avail() == sub.max_elems() {
                        state.pools.remove(&mut state.lists, at);
                        state.lists.get_mut(at.chunk).retire_subpage(classes, at.page);
                        destroyed.extend(state.lists.after_free(at.chunk));
                    }
                }
            }
            state.counters.chunks_destroyed += destroyed.len() as u64;
            destroyed
        };
        // The chunks' memory goes back to the system outside the lock.
        drop(destroyed);
        self.release_empty_chunks();
    }

    /// Allocations and releases the arena has seen, to tell an idle arena.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn num_operations(&self) -> u64 {
        let c = lock(&self.state).counters;
        c.small_allocations
            + c.normal_allocations
            + c.small_deallocations
            + c.normal_deallocations
            + self.huge_allocations.load(Ordering::Relaxed)
            + self.huge_deallocations.load(Ordering::Relaxed)
    }

    /// The arena's counters.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> ArenaCounts {
        let (pooled, chunks) = {
            let state = lock(&self.state);
            (state.counters, state.lists.len() as u64)
        };
        ArenaCounts {
            pooled,
            huge_allocations: self.huge_allocations.load(Ordering::Relaxed),
            huge_deallocations: self.huge_deallocations.load(Ordering::Relaxed),
            huge_active_bytes: self.huge_active_bytes.load(Ordering::Relaxed),
            chunks,
        }
    }

    /// A snapshot of the arena: counters, chunk lists and subpage pools, the
    /// pooled part taken under one hold of the lock so that it is consistent.
    pub(crate) fn metric(&self) -> ArenaMetric {
        let classes = &*self.classes;
        let (pooled, chunks, lists, subpages) = {
            let mut guard = lock(&self.state);
            let state = &mut *guard;
            let lists: Vec<ChunkListMetric> = (0..NUM_LISTS)
                .map(|list| ChunkListMetric {
                    name: LIST_NAMES[list],
                    min_usage: BANDS[list].0,
                    max_usage: BANDS[list].1,
                    chunks: state.lists.iter_list(list).map(|(_, c)| ChunkMetric::of(c, classes)).collect(),
                })
                .collect();
            let mut subpages = Vec::new();
            for idx in 0..classes.num_small_classes() {
                let refs: Vec<SubpageRef> = state.pools.iter(&mut state.lists, idx).collect();
                subpages.extend(refs.into_iter().map(|at| {
                    let sub = state.lists.get(at.chunk).subpages().get(at.page);
                    SubpageMetric {
                        element_size: classes.size_of(idx),
                        max_num_elements: sub.max_elems(),
                        num_available: sub.num_avail(),
                    }
                }));
            }
            (state.counters, state.lists.len() as u64, lists, subpages)
        };
        let counts = ArenaCounts {
            pooled,
            huge_allocations: self.huge_allocations.load(Ordering::Relaxed),
            huge_deallocations: self.huge_deallocations.load(Ordering::Relaxed),
            huge_active_bytes: self.huge_active_bytes.load(Ordering::Relaxed),
            chunks,
        };
        ArenaMetric::new(counts, self.num_thread_caches(), classes.chunk_size(), lists, subpages)
    }

    /// Fills the `len` first bytes of a region with `byte`, or checks that
    /// they all hold it. For tests, which hold regions without buffers.
    #[cfg(test)]
    fn test_touch(&self, region: &PooledRegion, len: usize, byte: u8, check: bool) -> bool {
        let mut state = lock(&self.state);
        let elem = self.classes.size_of(region.size_idx as usize);
        state.lists.get_mut(region.chunk).test_region_bytes(region.handle, elem, len, byte, check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_list::QINIT;
    use crate::RunState;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn arena(kind: MemoryKind, limit: Option<Arc<MemoryLimit>>) -> Arena {
        Arena::new(kind, Arc::new(crate::test_config::classes()), limit, HugePages::Off)
    }

    fn arena_with(huge_pages: HugePages, limit: Option<Arc<MemoryLimit>>) -> Arena {
        Arena::new(MemoryKind::Direct, Arc::new(crate::test_config::classes()), limit, huge_pages)
    }

    /// (dense, backing) of the chunk `r` came from.
    fn chunk_of(a: &Arena, r: &PooledRegion) -> (bool, Backing) {
        let state = lock(&a.state);
        let chunk = state.lists.get(r.chunk);
        (chunk.is_dense(), chunk.backing())
    }

    /// Huge pages where a chunk is large enough for one (not with Miri's
    /// 256 KiB chunks, nor where there is no mmap).
    fn huge_if_possible() -> Backing {
        let big = crate::test_config::classes().chunk_size() >= 2 << 20;
        if big && cfg!(all(unix, not(miri))) {
            Backing::HugePages
        } else {
            Backing::BasePages
        }
    }

    #[test]
    fn dense_elements_and_other_runs_never_share_a_chunk() {
        let a = arena_with(HugePages::Dense, None);
        let classes = crate::test_config::classes();
        let sizes = [256, 4096, 8192, 64 << 10, 16, 5 << 10];
        let regions: Vec<(usize, PooledRegion)> = sizes
            .iter()
            .map(|&size| {
                let idx = classes.index_of(size).unwrap();
                (idx, a.allocate(idx).unwrap())
            })
            .collect();
        for (&size, (_, r)) in sizes.iter().zip(&regions) {
            let dense = size <= DENSE_MAX_ELEM;
            assert_eq!(chunk_of(&a, r).0, dense, "{size} B");
            assert_eq!(r.chunk == regions[0].1.chunk, dense, "{size} B");
        }
        assert_eq!(a.counts().chunks, 2);
        for (idx, r) in &regions {
            a.free(r.chunk, r.handle, *idx);
        }
    }

    #[test]
    fn a_batch_takes_what_the_chunks_have_and_adds_a_chunk_only_for_its_first_region() {
        let a = arena(MemoryKind::Heap, None);
        let classes = crate::test_config::classes();
        let idx = classes.index_of(4096).unwrap();
        let mut regions = Vec::new();
        let first = a.allocate_batch(idx, usize::MAX, |r| regions.push(r)).unwrap();
        // The chunk the first region needed, and every element of the
        // subpages it could cut.
        assert!(regions.iter().all(|r| r.chunk == first.chunk && r.size_idx == idx as u32));
        let metric = a.metric();
        let mut held = 0;
        for run in metric.chunk_lists().iter().flat_map(|l| l.chunks()).flat_map(|c| c.runs()) {
            match run.state() {
                RunState::Subpage { max_num_elements, num_available, .. } => {
                    assert_eq!(num_available, 0);
                    held += max_num_elements;
                }
                RunState::Free => {}
                RunState::Used => unreachable!("no run was asked for"),
            }
        }
        assert_eq!(held, regions.len() + 1);
        // And the listed chunks can cut no more (a free run may be too short).
        assert_eq!(a.allocate_small(&mut lock(&a.state), idx, false).unwrap(), None);
        let mut addrs: Vec<NonNull<u8>> = regions.iter().map(|r| r.ptr).chain([first.ptr]).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), regions.len() + 1, "every region apart");
        let c = a.counts();
        assert_eq!((c.chunks, c.pooled.small_allocations), (1, regions.len() as u64 + 1));
        assert_eq!(c.pooled.active_bytes, 4096 * (regions.len() as u64 + 1));
        // Nothing left: the next batch's first region takes a new chunk, and
        // the batch takes no more than it is asked for.
        let before = regions.len();
        let second = a.allocate_batch(idx, 3, |r| regions.push(r)).unwrap();
        assert_ne!(second.chunk, first.chunk);
        assert_eq!(regions.len(), before + 3);
        assert_eq!(a.counts().pooled.small_allocations, regions.len() as u64 + 2);
        for r in regions.iter().chain([&first, &second]) {
            a.free(r.chunk, r.handle, idx);
        }
        assert_eq!(a.counts().pooled.active_bytes, 0);
    }

    #[test]
    fn a_batch_of_runs_takes_what_the_listed_chunks_have_and_adds_no_chunk_for_it() {
        let a = arena(MemoryKind::Heap, None);
        let size = 64 << 10;
        let idx = a.size_classes().index_of(size).unwrap();
        let per_chunk = a.size_classes().chunk_size() / size;
        let mut regions = Vec::new();
        let first = a.allocate_batch(idx, usize::MAX, |r| regions.push(r)).unwrap();
        assert_eq!(regions.len() + 1, per_chunk, "every run of the chunk the first one needed");
        assert!(regions.iter().all(|r| r.chunk == first.chunk && r.size_idx == idx as u32));
        let mut addrs: Vec<NonNull<u8>> = regions.iter().map(|r| r.ptr).chain([first.ptr]).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), per_chunk, "every run apart");
        let c = a.counts();
        assert_eq!((c.chunks, c.pooled.normal_allocations), (1, per_chunk as u64));
        // A run freed in the full chunk serves the next batch's first region
        // whole; its extras find no room and add no chunk.
        a.free(first.chunk, first.handle, idx);
        let again = a.allocate_batch(idx, 3, |r| regions.push(r)).unwrap();
        assert_eq!((again.ptr, regions.len() + 1, a.counts().chunks), (first.ptr, per_chunk, 1));
        for r in regions.iter().chain([&again]) {
            a.free(r.chunk, r.handle, idx);
        }
        assert_eq!(a.counts().pooled.active_bytes, 0);
    }

    #[test]
    fn a_chunk_with_a_free_quarter_serves_a_quarter_chunk_request() {
        let a = arena(MemoryKind::Heap, None);
        let quarter = a.size_classes().chunk_size() / 4;
        let idx = a.size_classes().index_of(quarter).unwrap();
        let mut runs: Vec<PooledRegion> = (0..4).map(|_| a.allocate(idx).unwrap()).collect();
        let freed = runs.swap_remove(1);
        a.free(freed.chunk, freed.handle, idx);
        // The chunk, now at 75 % usage, sits in q075, whose bound is exactly
        // a quarter chunk (Netty's).
        let again = a.allocate(idx).unwrap();
        assert_eq!((again.ptr, a.counts().chunks), (freed.ptr, 1));
        for r in runs.iter().chain([&again]) {
            a.free(r.chunk, r.handle, idx);
        }
    }

    #[test]
    fn a_subpage_run_freed_between_live_ones_serves_its_class_again() {
        let a = arena(MemoryKind::Heap, None);
        // 2 KiB elements: runs of 10 pages, three to a chunk even under Miri.
        let idx = a.size_classes().index_of(2048).unwrap();
        let per_run = a.shapes[idx].max_elems as usize;
        // Every element the first chunk holds, then one freed from its first
        // run (so that the pool holds a subpage of the class), then all of a
        // middle run, which retires and frees that run between live ones.
        let mut regions = Vec::new();
        let first = a.allocate_batch(idx, usize::MAX, |r| regions.push(r)).unwrap();
        regions.push(first);
        let mut runs: Vec<u32> = regions.iter().map(|r| r.handle.run_offset()).collect();
        runs.sort_unstable();
        runs.dedup();
        assert!(runs.len() >= 3, "{} runs", runs.len());
        let (head, middle) = (runs[0], runs[runs.len() / 2]);
        let one = regions.iter().position(|r| r.handle.run_offset() == head).unwrap();
        let mut freed = vec![regions.swap_remove(one)];
        freed.extend(regions.extract_if(.., |r| r.handle.run_offset() == middle));
        assert_eq!(freed.len(), per_run + 1);
        for r in &freed {
            a.free(r.chunk, r.handle, idx);
        }
        // The pool's element and a whole run again, from the same chunk:
        // the freed run is found for its class.
        let mut again = Vec::new();
        let r = a.allocate_batch(idx, per_run, |r| again.push(r)).unwrap();
        again.push(r);
        assert_eq!(again.len(), per_run + 1);
        assert!(again.iter().all(|r| r.chunk == first.chunk));
        assert_eq!(a.counts().chunks, 1);
        for r in regions.iter().chain(&again) {
            a.free(r.chunk, r.handle, idx);
        }
    }

    #[test]
    fn an_arenas_second_dense_chunk_takes_huge_pages_and_no_other_does() {
        let a = arena_with(HugePages::Dense, None);
        let classes = crate::test_config::classes();
        let idx = classes.index_of(4096).unwrap();
        let per_chunk = classes.chunk_size() / 4096;
        let regions: Vec<PooledRegion> = (0..per_chunk + 1).map(|_| a.allocate(idx).unwrap()).collect();
        let normal = classes.index_of(classes.chunk_size() / 2).unwrap();
        let run = a.allocate(normal).unwrap();
        assert_eq!(chunk_of(&a, &regions[0]), (true, Backing::BasePages));
        assert_eq!(chunk_of(&a, &regions[per_chunk]), (true, huge_if_possible()));
        assert_eq!(chunk_of(&a, &run), (false, Backing::BasePages));
        a.free(run.chunk, run.handle, normal);
        for r in &regions {
            a.free(r.chunk, r.handle, idx);
        }
    }

    #[test]
    fn with_huge_pages_all_or_off_every_chunk_is_alike_and_none_is_dense() {
        let classes = crate::test_config::classes();
        let (small, normal) = (classes.index_of(256).unwrap(), classes.index_of(64 << 10).unwrap());
        for (mode, backing) in [(HugePages::All, huge_if_possible()), (HugePages::Off, Backing::BasePages)] {
            let a = arena_with(mode, None);
            let (r1, r2) = (a.allocate(small).unwrap(), a.allocate(normal).unwrap());
            assert_eq!(r1.chunk, r2.chunk, "{mode:?}");
            assert_eq!(chunk_of(&a, &r1), (false, backing), "{mode:?}");
            a.free(r1.chunk, r1.handle, small);
            a.free(r2.chunk, r2.handle, normal);
        }
    }

    #[test]
    fn where_the_limit_refuses_a_chunk_one_of_the_other_kind_serves() {
        let chunk = crate::test_config::classes().chunk_size();
        let limit = Arc::new(MemoryLimit::new(chunk));
        let a = arena_with(HugePages::Dense, Some(limit.clone()));
        let classes = crate::test_config::classes();
        let (small, half) = (classes.index_of(256).unwrap(), classes.index_of(chunk / 2).unwrap());
        let r1 = a.allocate(small).unwrap();
        let r2 = a.allocate(half).unwrap();
        assert_eq!(r1.chunk, r2.chunk);
        assert!(chunk_of(&a, &r2).0, "the dense chunk served the run");
        // What no chunk can serve still fails with the limit's error.
        let err = a.allocate(half).unwrap_err();
        assert_eq!(err, AllocError::DirectMemoryExhausted { requested: chunk, used: chunk, max: chunk });
        assert_eq!(limit.used(), chunk);
        a.free(r1.chunk, r1.handle, small);
        a.free(r2.chunk, r2.handle, half);
    }

    #[test]
    fn small_normal_and_huge_paths_count_separately() {
        let a = arena(MemoryKind::Heap, None);
        let classes = crate::test_config::classes();
        let huge_size = classes.chunk_size() + 4096;
        let small = a.allocate(classes.index_of(100).unwrap()).unwrap();
        let normal = a.allocate(classes.index_of(100_000).unwrap()).unwrap();
        let huge = a.allocate_huge(huge_size).unwrap();
        let c = a.counts();
        assert_eq!((c.pooled.small_allocations, c.pooled.normal_allocations, c.huge_allocations), (1, 1, 1));
        assert_eq!(c.pooled.active_bytes, 112 + 114688);
        assert_eq!(c.huge_active_bytes, huge_size as u64);
        assert_eq!(c.pooled.chunks_created, 1);
        a.free(small.chunk, small.handle, small.size_idx as usize);
        a.free(normal.chunk, normal.handle, normal.size_idx as usize);
        a.free_huge(huge);
        let c = a.counts();
        assert_eq!((c.pooled.small_deallocations, c.pooled.normal_deallocations, c.huge_deallocations), (1, 1, 1));
        assert_eq!((c.pooled.active_bytes, c.huge_active_bytes), (0, 0));
        assert_eq!(c.chunks, 1, "the empty chunk stays in qInit");
    }

    #[test]
    fn the_handle_found_from_an_address_is_the_one_handed_out() {
        let a = arena(MemoryKind::Heap, None);
        let classes = a.size_classes().clone();
        // Every class of one chunk, three regions each: elements of
        // multi-page subpages (not the first of their run), runs of several
        // pages, and the whole chunk.
        let mut regions = Vec::new();
        for idx in (0..classes.num_classes()).filter(|&i| classes.size_of(i) <= classes.chunk_size()) {
            let count = if classes.size_of(idx) * 3 <= classes.chunk_size() { 3 } else { 1 };
            for _ in 0..count {
                regions.push(a.allocate(idx).unwrap());
            }
        }
        for r in &regions {
            let state = lock(&a.state);
            let chunk = state.lists.get(r.chunk);
            let found =
                chunk.handle_at(r.ptr, classes.size_of(r.size_idx as usize), classes.is_small(r.size_idx as usize));
            assert_eq!(found, r.handle, "class {} at {:?}", r.size_idx, r.ptr);
        }
        for r in &regions {
            a.free_at(r.chunk, r.ptr, r.size_idx as usize);
        }
        let counts = a.counts();
        assert_eq!(counts.pooled.active_bytes, 0);
        assert_eq!(
            counts.pooled.small_deallocations + counts.pooled.normal_deallocations,
            regions.len() as u64,
            "every region freed by its address"
        );
    }

    #[test]
    #[should_panic(expected = "inside a subpage element")]
    fn an_address_inside_a_region_is_refused() {
        let a = arena(MemoryKind::Heap, None);
        let idx = a.size_classes().index_of(512).unwrap();
        let r = a.allocate(idx).unwrap();
        let inside = NonNull::new(r.ptr.as_ptr().wrapping_add(1)).unwrap();
        a.free_at(r.chunk, inside, idx);
    }

    #[test]
    fn a_subpage_serves_its_elements_before_a_new_one_is_cut() {
        let a = arena(MemoryKind::Heap, None);
        let idx = a.size_classes().index_of(512).unwrap();
        let per_run = a.shapes[idx].max_elems as usize;
        let regions: Vec<PooledRegion> = (0..=per_run).map(|_| a.allocate(idx).unwrap()).collect();
        let pages: Vec<u32> = regions.iter().map(|r| r.handle.run_offset()).collect();
        assert!(pages[..per_run].iter().all(|&p| p == pages[0]));
        assert_ne!(pages[per_run], pages[0]);
        let base = regions[0].ptr.as_ptr() as usize;
        for (i, r) in regions[..per_run].iter().enumerate() {
            assert_eq!(r.ptr.as_ptr() as usize - base, i * 512);
        }
        for r in &regions {
            a.free(r.chunk, r.handle, idx);
        }
        // The first subpage emptied while another was pooled: retired. The
        // second is the only one left in its pool: kept.
        let state = lock(&a.state);
        let chunk = state.lists.get(regions[0].chunk);
        assert!(!chunk.subpages().get(pages[0]).in_use());
        assert!(chunk.subpages().get(pages[per_run]).in_use());
    }

    #[test]
    fn runs_of_a_class_take_every_colour() {
        let a = arena(MemoryKind::Heap, None);
        let idx = a.size_classes().index_of(256).unwrap();
        let shape = a.shapes[idx];
        assert_eq!(shape.colours, 4);
        let regions: Vec<PooledRegion> = (0..shape.max_elems as usize * 8).map(|_| a.allocate(idx).unwrap()).collect();
        let mut offsets: Vec<usize> = {
            let state = lock(&a.state);
            regions
                .iter()
                .step_by(shape.max_elems as usize)
                .map(|r| state.lists.get(r.chunk).subpages().get(r.handle.run_offset()).first_offset())
                .collect()
        };
        offsets.sort_unstable();
        offsets.dedup();
        assert_eq!(offsets, [0, 64, 128, 192]);
        for r in &regions {
            a.free(r.chunk, r.handle, idx);
        }
    }

    /// Where the first and last words of 8,192 elements of `size` bytes
    /// fall among the 2,048 sets of a 2 MiB, 16-way cache indexed by
    /// address: (sets used, most lines in one set).
    fn cache_sets_of_elements(size: usize) -> (usize, usize) {
        let a = arena(MemoryKind::Heap, None);
        let idx = a.size_classes().index_of(size).unwrap();
        let regions: Vec<PooledRegion> = (0..8192).map(|_| a.allocate(idx).unwrap()).collect();
        let mut lines = std::collections::HashSet::new();
        let mut sets = vec![0usize; 2048];
        for r in &regions {
            let start = r.ptr.as_ptr() as usize;
            for line in [start >> 6, (start + size - 8) >> 6] {
                if lines.insert(line) {
                    sets[line % 2048] += 1;
                }
            }
        }
        for r in &regions {
            a.free(r.chunk, r.handle, idx);
        }
        (sets.iter().filter(|&&n| n > 0).count(), sets.into_iter().max().unwrap())
    }

    #[test]
    fn elements_spread_over_the_sets_of_a_cache() {
        if crate::test_config::SMALL {
            return; // 8,192 elements take longer than Miri should.
        }
        // 16,384 lines in 2,048 sets: 8 a set on average. Before colours
        // took the run's position into account, 256 B elements used 1,008
        // sets (17 lines in some: more than the 16 ways), 1 KiB ones 1,631.
        for size in [256, 512, 1024, 2048, 4096] {
            let (used, most) = cache_sets_of_elements(size);
            assert!(used >= 2048 * 95 / 100, "{size} B: {used} sets used");
            assert!(most <= 16, "{size} B: {most} lines in one set");
        }
    }

    #[test]
    fn the_direct_limit_fails_cleanly_and_the_arena_still_works() {
        let chunk = crate::test_config::classes().chunk_size();
        let limit = Arc::new(MemoryLimit::new(chunk + chunk / 2));
        let a = arena(MemoryKind::Direct, Some(limit.clone()));
        let whole = a.size_classes().index_of(chunk).unwrap();
        let first = a.allocate(whole).unwrap();
        let before = a.counts();
        let err = a.allocate(whole).unwrap_err();
        assert_eq!(err, AllocError::DirectMemoryExhausted { requested: chunk, used: chunk, max: chunk + chunk / 2 });
        assert_eq!(a.counts(), before, "a failed request changes no counter");
        assert_eq!(limit.used(), chunk);
        assert!(a.allocate_huge(chunk).is_err());
        a.free(first.chunk, first.handle, whole);
        // The whole-chunk run was in q100 and falls out of q000 empty: kept as
        // the arena's one empty chunk in reserve, which serves the next request
        // without touching the limit.
        assert_eq!(a.counts().chunks, 1);
        assert_eq!(limit.used(), chunk);
        let again = a.allocate(whole).unwrap();
        assert_eq!(a.counts().pooled.chunks_created, 1);
        a.free(again.chunk, again.handle, whole);
    }

    #[test]
    fn trim_retires_kept_subpages_and_destroys_empty_chunks() {
        let a = arena(MemoryKind::Direct, None);
        let idx = a.size_classes().index_of(512).unwrap();
        let regions: Vec<PooledRegion> = (0..20).map(|_| a.allocate(idx).unwrap()).collect();
        for r in &regions {
            a.free(r.chunk, r.handle, idx);
        }
        // The last subpage of the class is kept, so the chunk is not empty.
        assert_eq!(a.counts().chunks, 1);
        assert_eq!(a.metric().small_subpages().len(), 1);
        a.trim();
        let c = a.counts();
        assert_eq!((c.chunks, c.pooled.chunks_created, c.pooled.chunks_destroyed), (0, 1, 1));
        assert!(a.metric().small_subpages().is_empty());
        // The arena works after a trim.
        let r = a.allocate(idx).unwrap();
        a.test_touch(&r, 512, 7, false);
        assert!(a.test_touch(&r, 512, 7, true));
        a.free(r.chunk, r.handle, idx);
    }

    #[test]
    #[should_panic(expected = "freed twice")]
    fn a_double_free_panics_instead_of_corrupting() {
        let a = arena(MemoryKind::Heap, None);
        let idx = a.size_classes().index_of(64 << 10).unwrap();
        let r = a.allocate(idx).unwrap();
        a.free(r.chunk, r.handle, idx);
        a.free(r.chunk, r.handle, idx);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(usize),
        /// A small allocation and up to this many more of its class, as a
        /// thread cache's fill takes them.
        AllocBatch(usize, usize),
        Free(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let chunk = crate::test_config::classes().chunk_size();
        let top = chunk.trailing_zeros() + 2;
        prop_oneof![
            // Log-uniform sizes from 16 B to 2 x chunk.
            3 => (4u32..top, any::<u32>()).prop_map(move |(shift, r)| {
                let base = 1usize << shift;
                Op::Alloc((base + r as usize % base).min(2 * chunk))
            }),
            1 => (4u32..13, any::<u32>(), 0usize..80).prop_map(|(shift, r, extra)| {
                let base = 1usize << shift;
                Op::AllocBatch(base + r as usize % base, extra)
            }),
            2 => any::<usize>().prop_map(Op::Free),
        ]
    }

    struct Live {
        region: Option<PooledRegion>,
        huge: Option<RawMemory>,
        addr: usize,
        len: usize,
        class_size: usize,
        pattern: u8,
    }

    fn free_live(a: &Arena, live: Live) {
        if let Some(r) = live.region {
            assert!(a.test_touch(&r, live.len, live.pattern, true), "pattern of a {}-byte region", live.len);
            a.free(r.chunk, r.handle, r.size_idx as usize);
        } else if let Some(m) = live.huge {
            a.free_huge(m);
        }
    }

    proptest! {
        #![proptest_config(crate::test_config::proptest(64))]

        /// Random allocate / free sequences against a model: regions never
        /// overlap, lie inside their chunk, hold their bytes, and every
        /// counter and free-byte figure matches.
        #[test]
        fn arena_matches_a_model(ops in proptest::collection::vec(op(), 1..if crate::test_config::SMALL { 24 } else { 300 })) {
            let a = arena(MemoryKind::Direct, None);
            let classes = crate::test_config::classes();
            let mut live: Vec<Live> = Vec::new();
            let (mut allocs, mut frees) = (0u64, 0u64);
            let mut pattern = 0u8;
            for op in ops {
                match op {
                    Op::Alloc(size) => {
                        pattern = pattern.wrapping_add(1);
                        let entry = match classes.index_of(size) {
                            Some(idx) => {
                                let r = a.allocate(idx).unwrap();
                                prop_assert!(a.test_touch(&r, size, pattern, false));
                                Live { region: Some(r), huge: None, addr: r.ptr.as_ptr() as usize, len: size, class_size: classes.size_of(idx), pattern }
                            }
                            None => {
                                let m = a.allocate_huge(size).unwrap();
                                prop_assert_eq!(m.len(), size);
                                Live { region: None, addr: m.ptr().as_ptr() as usize, huge: Some(m), len: size, class_size: size, pattern }
                            }
                        };
                        allocs += entry.region.is_some() as u64;
                        live.push(entry);
                    }
                    Op::AllocBatch(size, extra) => {
                        let idx = classes.index_of(size).unwrap();
                        prop_assert!(classes.is_small(idx));
                        let mut regions = Vec::new();
                        let first = a.allocate_batch(idx, extra, |r| regions.push(r)).unwrap();
                        prop_assert!(regions.len() <= extra);
                        for r in std::iter::once(first).chain(regions) {
                            pattern = pattern.wrapping_add(1);
                            prop_assert_eq!(r.size_idx as usize, idx);
                            prop_assert!(a.test_touch(&r, size, pattern, false));
                            let addr = r.ptr.as_ptr() as usize;
                            live.push(Live { region: Some(r), huge: None, addr, len: size, class_size: classes.size_of(idx), pattern });
                            allocs += 1;
                        }
                    }
                    Op::Free(i) if !live.is_empty() => {
                        let entry = live.swap_remove(i % live.len());
                        frees += entry.region.is_some() as u64;
                        free_live(&a, entry);
                    }
                    Op::Free(_) => {}
                }
                // No two live regions overlap (class sizes, not just asked sizes).
                let mut spans: BTreeMap<usize, usize> = BTreeMap::new();
                for l in &live {
                    spans.insert(l.addr, l.addr + l.class_size);
                }
                let mut end = 0;
                for (&start, &stop) in &spans {
                    prop_assert!(start >= end, "overlap at {:#x}", start);
                    end = stop;
                }
                prop_assert_eq!(spans.len(), live.len());
                // Each pooled region lies inside its chunk; free bytes add up.
                let state = lock(&a.state);
                let mut used_by_chunk: BTreeMap<u32, usize> = BTreeMap::new();
                for l in live.iter().filter(|l| l.region.is_some()) {
                    let r = l.region.unwrap();
                    let chunk = state.lists.get(r.chunk);
                    prop_assert!(l.addr >= chunk.base_addr() && l.addr + l.class_size <= chunk.base_addr() + chunk.size());
                    if !r.handle.is_subpage() {
                        *used_by_chunk.entry(r.chunk).or_default() += l.class_size;
                    }
                }
                for list in 0..LIST_NAMES.len() {
                    for (id, chunk) in state.lists.iter_list(list) {
                        let runs: usize = chunk.runs().filter(|r| r.2).map(|r| r.1 as usize * 8192).sum();
                        prop_assert_eq!(chunk.size() - chunk.free_bytes(), runs);
                        // Runs in use are the normal regions plus subpage runs.
                        let subpage_runs: usize = chunk.runs().filter(|r| r.2 && chunk.subpages().get(r.0).in_use()).map(|r| r.1 as usize * 8192).sum();
                        prop_assert_eq!(runs - subpage_runs, used_by_chunk.get(&id).copied().unwrap_or(0));
                    }
                }
                drop(state);
                let counts = a.counts();
                prop_assert_eq!(counts.pooled.small_allocations + counts.pooled.normal_allocations, allocs);
                prop_assert_eq!(counts.pooled.small_deallocations + counts.pooled.normal_deallocations, frees);
                let active: usize = live.iter().filter(|l| l.region.is_some()).map(|l| l.class_size).sum();
                prop_assert_eq!(counts.pooled.active_bytes as usize, active);
                let huge: usize = live.iter().filter(|l| l.huge.is_some()).map(|l| l.len).sum();
                prop_assert_eq!(counts.huge_active_bytes as usize, huge);
            }
            for entry in live.drain(..) {
                free_live(&a, entry);
            }
            // Everything freed: every chunk left is free runs (kept apart
            // until a request needs them merged), except for the subpages
            // kept as the last of their pool (one run each).
            let state = lock(&a.state);
            for list in 0..LIST_NAMES.len() {
                for (_, chunk) in state.lists.iter_list(list) {
                    let kept: Vec<_> = chunk.runs().filter(|r| r.2).collect();
                    prop_assert!(kept.iter().all(|r| chunk.subpages().get(r.0).in_use()));
                    prop_assert!(kept.iter().all(|r| chunk.subpages().get(r.0).num_avail() == chunk.subpages().get(r.0).max_elems()));
                    if kept.is_empty() {
                        prop_assert_eq!(chunk.free_bytes(), chunk.size());
                        prop_assert!(list == QINIT, "an empty chunk outside qInit is destroyed");
                    }
                }
            }
            drop(state);
            prop_assert_eq!(a.counts().pooled.active_bytes, 0);
        }
    }
}
