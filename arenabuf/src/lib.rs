//! # arenabuf
//!
//! A pooled byte-buffer allocator in the design of Netty's
//! `PooledByteBufAllocator`: arenas of chunks cut into runs of pages and
//! subpages of small elements, jemalloc-4 size classes, per-thread caches,
//! and an unpooled fallback for huge requests.
//!
//! ```
//! use arenabuf::PooledAllocator;
//!
//! let alloc = PooledAllocator::new();
//! let mut buf = alloc.direct_buffer(1500); // served from a 1536-byte class
//! buf.as_mut_slice()[..4].copy_from_slice(b"ping");
//! drop(buf); // back to this thread's cache, ready for the next 1536-byte request
//! ```
//!
//! # The request path
//!
//! [`PooledAllocator::direct_buffer`] finds the calling thread's cache (one
//! thread-local index per allocator); a thread's first allocation binds it
//! to the least-used heap and direct arenas. The request's size class
//! ([`SizeClasses`]) picks a cached region when the cache has one, else the
//! arena serves it: small classes from subpages, normal classes from runs
//! of pages, huge requests from their own block. Dropping the [`ByteBuf`]
//! gives the region back to the cache of the thread that allocated it, from
//! whichever thread drops it.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

mod allocator;
mod arena;
mod buf;
mod cache_registry;
mod chunk;
mod chunk_list;
mod config;
mod dump;
mod error;
mod leak;
mod memory;
mod metric;
mod picture;
mod size_class;
mod subpage;
mod sync;
#[cfg(test)]
mod test_config;
mod thread_cache;
mod thread_local;

pub use allocator::{PooledAllocator, DEFAULT_MAX_CAPACITY};
pub use buf::{ByteBuf, ByteSlice, IndexError, MAX_CAPACITY};
pub use config::{Builder, HugePages};
pub use error::{AllocError, ConfigError};
pub use leak::{LeakLevel, LeakReport};
pub use metric::{AllocatorMetric, ArenaMetric, ChunkListMetric, ChunkMetric, RunMetric, RunState, SubpageMetric};
pub use picture::chunks_svg;
pub use size_class::SizeClasses;
pub use thread_local::{cache_current_thread, spawn};
