//! # arenabuf
//!
//! A pooled byte-buffer allocator in the design of Netty's
//! `PooledByteBufAllocator`: arenas of chunks cut into runs of pages and
//! subpages of small elements, jemalloc-4 size classes, per-thread caches,
//! and an unpooled fallback for huge requests.
//!
//! This release holds the pool's core: [`SizeClasses`], the size-class table
//! every request is sorted by, and the arena machinery behind it.
//!
//! ```
//! use arenabuf::SizeClasses;
//!
//! let classes = SizeClasses::new(8192, 9)?;
//! assert_eq!(classes.normalize(1500), 1536);
//! # Ok::<(), arenabuf::ConfigError>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod arena;
mod chunk;
mod chunk_list;
mod error;
mod memory;
mod size_class;
mod subpage;
mod sync;
#[cfg(test)]
mod test_config;

pub use error::{AllocError, ConfigError};
pub use size_class::SizeClasses;
