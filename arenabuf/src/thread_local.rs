//! The per-thread table of thread caches, one slot per pool.
//!
//! Every pool takes a small integer id for life (ids of dropped pools are
//! reused), and each thread keeps a vector of caches indexed by that id, so
//! finding the calling thread's cache is one thread-local access and one
//! bounds-checked index, as with Netty's `FastThreadLocal`, not a hash map
//! lookup. The thread's caches are dropped with the thread, which gives
//! every cached region back to its arena deterministically.

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;

use crate::allocator::Pool;
use crate::sync::Arc;
use crate::thread_cache::{CacheShared, ThreadCache};

#[cfg(not(loom))]
std::thread_local! {
    static CACHES: RefCell<Vec<Option<ThreadCache>>> = const { RefCell::new(Vec::new()) };
    static OPTED_IN: Cell<bool> = const { Cell::new(false) };
}

#[cfg(loom)]
loom::thread_local! {
    static CACHES: RefCell<Vec<Option<ThreadCache>>> = RefCell::new(Vec::new());
    static OPTED_IN: Cell<bool> = Cell::new(false);
}

/// Runs `f` on the calling thread's cache for `pool`, creating the cache on
/// first use. `None` when the thread's caches are gone (the thread is
/// exiting) or already borrowed further up the stack.
#[inline]
pub(crate) fn with_cache<R>(pool: &Arc<Pool>, f: impl FnOnce(&mut ThreadCache) -> R) -> Option<R> {
    let id = pool.id();
    CACHES
        .try_with(|caches| {
            let mut caches = caches.try_borrow_mut().ok()?;
            if let Some(Some(cache)) = caches.get_mut(id) {
                return Some(f(cache));
            }
            let cache = new_cache(&mut caches, pool);
            Some(f(cache))
        })
        .ok()
        .flatten()
}

#[cold]
fn new_cache<'a>(caches: &'a mut Vec<Option<ThreadCache>>, pool: &Arc<Pool>) -> &'a mut ThreadCache {
    // Caches of pools whose users have all gone are dropped here, the next
    // time this thread binds to a pool, rather than at thread exit.
    for slot in caches.iter_mut() {
        if slot.as_ref().is_some_and(ThreadCache::pool_is_closed) {
            *slot = None;
        }
    }
    let id = pool.id();
    if caches.len() <= id {
        caches.resize_with(id + 1, || None);
    }
    let caching = pool.config().use_cache_for_all_threads || OPTED_IN.with(Cell::get);
    caches[id].insert(ThreadCache::new(pool, caching))
}

/// Runs `f` on the calling thread's cache for pool `id` if that cache is the
/// one whose shared part is `shared`; `None` otherwise.
#[inline]
pub(crate) fn with_cache_if<R>(
    id: usize,
    shared: NonNull<CacheShared>,
    f: impl FnOnce(&mut ThreadCache) -> R,
) -> Option<R> {
    CACHES
        .try_with(|caches| {
            let mut caches = caches.try_borrow_mut().ok()?;
            match caches.get_mut(id) {
                Some(Some(cache)) if cache.shared_ptr() == shared => Some(f(cache)),
                _ => None,
            }
        })
        .ok()
        .flatten()
}

/// Runs `f` on the calling thread's existing cache for pool `id`, if any.
pub(crate) fn with_existing_cache<R>(id: usize, f: impl FnOnce(&mut ThreadCache) -> R) -> Option<R> {
    CACHES
        .try_with(|caches| {
            let mut caches = caches.try_borrow_mut().ok()?;
            caches.get_mut(id)?.as_mut().map(f)
        })
        .ok()
        .flatten()
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
