//! The text report of [`PooledAllocator::dump_stats`](crate::PooledAllocator::dump_stats):
//! a [`Display`](fmt::Display) for the metric snapshots, in the spirit of
//! Netty's `dumpStats`.

use std::fmt;

use crate::metric::{AllocatorMetric, ArenaMetric, ChunkListMetric};

impl fmt::Display for AllocatorMetric {
    /// Totals, then every arena.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} heap arena(s), {} direct arena(s), chunk size {} B, {} thread cache(s)",
            self.num_heap_arenas(),
            self.num_direct_arenas(),
            self.chunk_size(),
            self.num_thread_local_caches()
        )?;
        writeln!(f, "used heap memory {} B, pinned {} B", self.used_heap_memory(), self.pinned_heap_memory())?;
        writeln!(f, "used direct memory {} B, pinned {} B", self.used_direct_memory(), self.pinned_direct_memory())?;
        for (kind, arenas) in [("heap", self.heap_arenas()), ("direct", self.direct_arenas())] {
            for (i, arena) in arenas.iter().enumerate() {
                writeln!(f, "{kind} arena {i}:")?;
                write!(f, "{arena}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for ArenaMetric {
    /// Counters, chunk lists with each chunk, and the pooled subpages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  thread caches {}, allocations {} (small {}, normal {}, huge {}), deallocations {} \
             (small {}, normal {}, huge {}), active {}",
            self.num_thread_caches(),
            self.num_allocations(),
            self.num_small_allocations(),
            self.num_normal_allocations(),
            self.num_huge_allocations(),
            self.num_deallocations(),
            self.num_small_deallocations(),
            self.num_normal_deallocations(),
            self.num_huge_deallocations(),
            self.num_active_allocations()
        )?;
        writeln!(
            f,
            "  chunks: {} active, {} created, {} destroyed; active bytes {}",
            self.num_active_chunks(),
            self.num_chunks_created(),
            self.num_chunks_destroyed(),
            self.num_active_bytes()
        )?;
        for list in self.chunk_lists() {
            write!(f, "{list}")?;
        }
        write!(f, "  small subpages:")?;
        if self.small_subpages().is_empty() {
            writeln!(f, " none")?;
        } else {
            writeln!(f)?;
            for subpage in self.small_subpages() {
                writeln!(f, "    {subpage}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for ChunkListMetric {
    /// The list's band and one line per chunk.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "  {} ({}%..{}%):", self.name(), self.min_usage(), self.max_usage())?;
        if self.chunks().is_empty() {
            return writeln!(f, " none");
        }
        writeln!(f)?;
        for chunk in self.chunks() {
            writeln!(
                f,
                "    chunk: usage {}%, free {} of {} B, {} run(s){}{}",
                chunk.usage(),
                chunk.free_bytes(),
                chunk.chunk_size(),
                chunk.runs().len(),
                if chunk.is_dense() { ", dense" } else { "" },
                if chunk.huge_pages() { ", huge pages" } else { "" },
            )?;
        }
        Ok(())
    }
}
