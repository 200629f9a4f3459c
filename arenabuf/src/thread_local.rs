//! The per-thread table of thread caches, one slot per pool, and the
//! shortcut to the cache used last.
//!
//! Every pool takes a small integer id for life (ids of dropped pools are
//! reused), and each thread keeps a vector of boxed caches indexed by that
//! id, as with Netty's `FastThreadLocal`, not a hash map. On top of it,
//! `CURRENT` names the cache the thread used last: a constant-initialised
//! thread-local without a destructor, so reading it is a single access
//! relative to the thread pointer, with no lazy-initialisation check. The
//! thread's caches are dropped with the thread, which gives every cached
//! region back to its arena deterministically; each cache clears `CURRENT`
//! when it is dropped.

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;

use crate::allocator::Pool;
use crate::sync::Arc;
use crate::thread_cache::{CacheShared, CacheTable, Outbox, ThreadCache};

/// The cache this thread used last. Without one, the pool id is none of a
/// pool's and the pointers are null, so each lookup is one comparison, with
/// no separate check for "no cache". Raw pointers rather than `NonNull`:
/// with a niche, the thread-local's `Result` was told apart by the loaded
/// pointer, a null check on every lookup.
#[derive(Debug, Clone, Copy)]
struct Current {
    pool_id: usize,
    cache: *mut ThreadCache,
    shared: *const CacheShared,
}

impl Current {
    const NONE: Current = Current { pool_id: usize::MAX, cache: std::ptr::null_mut(), shared: std::ptr::null() };
}

#[cfg(not(loom))]
std::thread_local! {
    static CACHES: RefCell<CacheTable> = const { RefCell::new(CacheTable::new()) };
    static OUTBOX: RefCell<Outbox> = const { RefCell::new(Outbox::new()) };
    static CURRENT: Cell<Current> = const { Cell::new(Current::NONE) };
    static OPTED_IN: Cell<bool> = const { Cell::new(false) };
}

#[cfg(loom)]
loom::thread_local! {
    static CACHES: RefCell<CacheTable> = RefCell::new(CacheTable::new());
    static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox::new());
    static CURRENT: Cell<Current> = Cell::new(Current::NONE);
    static OPTED_IN: Cell<bool> = Cell::new(false);
}

#[inline(always)]
fn current() -> Current {
    CURRENT.try_with(Cell::get).unwrap_or(Current::NONE)
}

/// The calling thread's cache for pool `pool_id` when it is the one used last.
///
/// The pointer is valid until the cache is dropped (thread exit, or its pool
/// closed), and only on this thread; callers must not hold it across a call
/// that could drop caches.
#[inline(always)]
pub(crate) fn current_cache(pool_id: usize) -> Option<*mut ThreadCache> {
    let current = current();
    if current.pool_id == pool_id {
        // Set with the pool id in `make_current`, so not null.
        Some(current.cache)
    } else {
        None
    }
}

/// The calling thread's cache whose shared part is `shared`, when it is the
/// one used last: then this thread is the owner of `shared`.
#[inline(always)]
pub(crate) fn current_cache_with(shared: NonNull<CacheShared>) -> Option<*mut ThreadCache> {
    let current = current();
    if current.shared == shared.as_ptr().cast_const() {
        // Set with the shared part in `make_current`, so not null.
        Some(current.cache)
    } else {
        None
    }
}

/// Clears `CURRENT` if it names the cache with shared part `shared`, which
/// is being dropped.
pub(crate) fn forget_current(shared: NonNull<CacheShared>) {
    let _ = CURRENT.try_with(|current| {
        if current.get().shared == shared.as_ptr().cast_const() {
            current.set(Current::NONE);
        }
    });
}

fn make_current(pool_id: usize, cache: &ThreadCache, at: NonNull<ThreadCache>) {
    let current = Current { pool_id, shared: cache.shared_ptr().as_ptr(), cache: at.as_ptr() };
    let _ = CURRENT.try_with(|c| c.set(current));
}

/// Runs `f` on the calling thread's cache for `pool`, creating the cache on
/// first use, and makes it the thread's `CURRENT`. `None` when the thread's
/// caches are gone (the thread is exiting) or already borrowed further up
/// the stack.
pub(crate) fn with_cache<R>(pool: &Arc<Pool>, f: impl FnOnce(&mut ThreadCache) -> R) -> Option<R> {
    let id = pool.id();
    CACHES
        .try_with(|caches| {
            let mut caches = caches.try_borrow_mut().ok()?;
            let at = match caches.get(id) {
                Some(at) => at,
                None => new_cache(&mut caches, pool),
            };
            caches.with(id, |cache| {
                make_current(id, cache, at);
                f(cache)
            })
        })
        .ok()
        .flatten()
}

#[cold]
fn new_cache(caches: &mut CacheTable, pool: &Arc<Pool>) -> NonNull<ThreadCache> {
    // Caches of pools whose users have all gone are dropped here, the next
    // time this thread binds to a pool, rather than at thread exit.
    caches.remove_where(ThreadCache::pool_is_closed);
    let caching = pool.config().use_cache_for_all_threads || OPTED_IN.with(Cell::get);
    caches.insert(pool.id(), ThreadCache::new(pool, caching))
}

/// Runs `f` on the calling thread's cache for pool `id` if that cache is the
/// one whose shared part is `shared`; `None` otherwise.
pub(crate) fn with_cache_if<R>(
    id: usize,
    shared: NonNull<CacheShared>,
    f: impl FnOnce(&mut ThreadCache) -> R,
) -> Option<R> {
    CACHES
        .try_with(|caches| {
            let mut caches = caches.try_borrow_mut().ok()?;
            caches.with(id, |cache| (cache.shared_ptr() == shared).then(|| f(cache))).flatten()
        })
        .ok()
        .flatten()
}

/// A number that tells the calling thread from every other running thread
/// (the address of one of its thread-locals); 0 once its thread-locals are
/// gone. An exited thread's number may be reused by a later thread.
#[inline]
pub(crate) fn thread_token() -> usize {
    OPTED_IN.try_with(|opted| std::ptr::from_ref(opted) as usize).unwrap_or(0)
}

/// Runs `f` on the calling thread's outbox of regions released for other
/// threads' caches; `None` when it is gone (the thread is exiting) or in use
/// further up the stack.
pub(crate) fn with_outbox<R>(f: impl FnOnce(&mut Outbox) -> R) -> Option<R> {
    OUTBOX.try_with(|outbox| Some(f(&mut *outbox.try_borrow_mut().ok()?))).ok().flatten()
}

/// Sends the regions the calling thread released for other threads' caches.
pub(crate) fn send_outbox() {
    with_outbox(Outbox::send);
}

/// Runs `f` on the calling thread's existing cache for pool `id`, if any.
pub(crate) fn with_existing_cache<R>(id: usize, f: impl FnOnce(&mut ThreadCache) -> R) -> Option<R> {
    CACHES.try_with(|caches| caches.try_borrow_mut().ok()?.with(id, f)).ok().flatten()
}

/// Marks the calling thread as one that caches regions even when the pool
/// is built with `use_cache_for_all_threads(false)`, like Netty's
/// `FastThreadLocalThread`. It takes effect for pools the thread has not
/// allocated from yet.
///
/// # Examples
///
/// ```
/// let alloc = arenabuf::PooledAllocator::builder()
///     .use_cache_for_all_threads(false)
///     .build()?;
/// std::thread::spawn(move || {
///     arenabuf::cache_current_thread();
///     let buf = alloc.heap_buffer(100);
///     assert_eq!(buf.capacity(), 100);
/// })
/// .join()
/// .unwrap();
/// # Ok::<(), arenabuf::ConfigError>(())
/// ```
pub fn cache_current_thread() {
    OPTED_IN.with(|opted| opted.set(true));
}

/// Spawns a thread that caches regions (see [`cache_current_thread`]).
///
/// # Panics
///
/// When the OS cannot create a thread, like [`std::thread::spawn`].
///
/// # Examples
///
/// ```
/// let handle = arenabuf::spawn(|| 40 + 2);
/// assert_eq!(handle.join().unwrap(), 42);
/// ```
pub fn spawn<F, T>(f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        cache_current_thread();
        f()
    })
}
