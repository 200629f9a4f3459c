//! The jemalloc-4 size-class table: which sizes the pool hands out.
//!
//! Sizes grow in groups of four classes per doubling, starting at the 16-byte
//! quantum: 16, 32, 48, 64, then 80, 96, 112, 128 (step 16), then 160 .. 256
//! (step 32), and so on until a class equals the chunk size. Every request
//! is served by the smallest class that holds it, so the waste is at most
//! 25 % (and usually far less). Classes below four pages are *small* (cut
//! from subpages); the rest are *normal* (whole runs of pages). Classes that
//! are a multiple of the page size are also *page classes*: they index the
//! chunk's free runs.
//!
//! Every lookup here is constant time: a byte table for sizes up to 4096 and
//! for page counts, and a few shifts above that.

use crate::error::ConfigError;

/// log2 of the quantum, the smallest class and the step of the first groups.
const LOG2_QUANTUM: u32 = 4;
/// log2 of the number of classes per doubling.
const LOG2_GROUP: u32 = 2;
/// Sizes up to this bound are looked up in a table.
const LOOKUP_MAX: usize = 4096;
/// The largest chunk the pool builds: handles keep run offsets in 15 bits.
const MAX_CHUNK_SIZE: usize = 1 << 30;
/// The largest max order: runs are counted in 15-bit page numbers.
pub(crate) const MAX_ORDER_LIMIT: u32 = 14;
/// The smallest page size.
const MIN_PAGE_SIZE: usize = 4096;

/// The size-class table for one page size and chunk size.
///
/// # Examples
///
/// ```
/// use arenabuf::SizeClasses;
///
/// let classes = SizeClasses::new(8192, 9)?; // 8 KiB pages, 4 MiB chunks
/// assert_eq!(classes.num_classes(), 68);
/// assert_eq!(classes.normalize(100), 112);
/// assert_eq!(classes.normalize(5_000_000), 5_000_000); // huge: exact size
/// # Ok::<(), arenabuf::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SizeClasses {
    page_shift: u32,
    max_order: u32,
    /// Class index -> class size.
    sizes: Box<[usize]>,
    num_small: usize,
    /// Page-class index -> pages in the class.
    page_class_pages: Box<[u32]>,
    /// Size -> class index (and the chunk size, the largest class).
    lookup: ClassLookup,
    /// Page count (0 ..= pages per chunk) -> smallest page class holding it.
    page_ceil: Box<[u8]>,
    /// Page count (1 ..= pages per chunk) -> largest page class it holds.
    page_floor: Box<[u8]>,
}

impl SizeClasses {
    /// Builds the table for pages of `page_size` bytes and chunks of
    /// `page_size << max_order` bytes.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `page_size` when it is not a power of two of
    /// at least 4096, or `max_order` when it is above 14 or makes the chunk
    /// larger than 1 GiB.
    ///
    /// # Examples
    ///
    /// ```
    /// use arenabuf::SizeClasses;
    ///
    /// assert_eq!(SizeClasses::new(8192, 11)?.chunk_size(), 16 << 20);
    /// assert!(SizeClasses::new(6000, 9).is_err());
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    pub fn new(page_size: usize, max_order: u32) -> Result<SizeClasses, ConfigError> {
        if !page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_CHUNK_SIZE).contains(&page_size) {
            return Err(ConfigError::new("page_size", page_size, "a power of two from 4096 to 1073741824"));
        }
        let page_shift = page_size.trailing_zeros();
        let max_order_allowed = MAX_ORDER_LIMIT.min(30 - page_shift);
        if max_order > max_order_allowed {
            return Err(ConfigError::new(
                "max_order",
                max_order,
                format!(
                    "0..=14 with page_size << max_order <= 1 GiB (0..={max_order_allowed} for page_size {page_size})"
                ),
            ));
        }
        let chunk_size = page_size << max_order;

        let mut sizes = Vec::new();
        // First group: 16, 32, 48, 64.
        for n_delta in 0..(1usize << LOG2_GROUP) {
            sizes.push((1usize << LOG2_QUANTUM) + (n_delta << LOG2_QUANTUM));
        }
        // Then four classes per doubling, the step doubling with the group.
        let mut log2_group = LOG2_QUANTUM + LOG2_GROUP;
        let mut log2_delta = LOG2_QUANTUM;
        'groups: loop {
            for n_delta in 1..=(1usize << LOG2_GROUP) {
                let size = (1usize << log2_group) + (n_delta << log2_delta);
                if size > chunk_size {
                    break 'groups;
                }
                sizes.push(size);
                if size == chunk_size {
                    break 'groups;
                }
            }
            log2_group += 1;
            log2_delta += 1;
        }
        let small_limit = page_size.saturating_mul(1 << LOG2_GROUP);
        let num_small = sizes.iter().take_while(|&&s| s < small_limit).count();
        let page_class_pages: Vec<u32> =
            sizes.iter().filter(|&&s| s % page_size == 0).map(|&s| (s >> page_shift) as u32).collect();

        let mut small_lookup = [0u8; LOOKUP_MAX >> LOG2_QUANTUM];
        let mut class = 0;
        for (slot, entry) in small_lookup.iter_mut().enumerate() {
            let size = (slot + 1) << LOG2_QUANTUM;
            while sizes[class] < size {
                class += 1;
            }
            *entry = class as u8;
        }

        let max_pages = 1usize << max_order;
        let mut page_ceil = vec![0u8; max_pages + 1];
        let mut page_floor = vec![0u8; max_pages + 1];
        let mut ceil = 0;
        for pages in 1..=max_pages {
            while (page_class_pages[ceil] as usize) < pages {
                ceil += 1;
            }
            page_ceil[pages] = ceil as u8;
            let exact = page_class_pages[ceil] as usize == pages;
            page_floor[pages] = if exact { ceil } else { ceil - 1 } as u8;
        }

        Ok(SizeClasses {
            page_shift,
            max_order,
            sizes: sizes.into_boxed_slice(),
            num_small,
            page_class_pages: page_class_pages.into_boxed_slice(),
            lookup: ClassLookup { small_lookup, chunk_size },
            page_ceil: page_ceil.into_boxed_slice(),
            page_floor: page_floor.into_boxed_slice(),
        })
    }

    /// The page size in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(arenabuf::SizeClasses::new(8192, 9)?.page_size(), 8192);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn page_size(&self) -> usize {
        1 << self.page_shift
    }

    /// log2 of the page size.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(arenabuf::SizeClasses::new(8192, 9)?.page_shift(), 13);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn page_shift(&self) -> u32 {
        self.page_shift
    }

    /// The max order: a chunk holds `1 << max_order` pages.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(arenabuf::SizeClasses::new(8192, 9)?.max_order(), 9);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn max_order(&self) -> u32 {
        self.max_order
    }

    /// The chunk size in bytes, which is also the largest class.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(arenabuf::SizeClasses::new(8192, 9)?.chunk_size(), 4 << 20);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn chunk_size(&self) -> usize {
        self.lookup.chunk_size
    }

    /// Pages in one chunk.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(arenabuf::SizeClasses::new(8192, 9)?.chunk_pages(), 512);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn chunk_pages(&self) -> usize {
        1 << self.max_order
    }

    /// How many size classes there are (68 for 8 KiB pages and 4 MiB chunks).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(arenabuf::SizeClasses::new(4096, 9)?.num_classes(), 64);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn num_classes(&self) -> usize {
        self.sizes.len()
    }

    /// How many classes are small (below four pages); they are the indexes
    /// `0..num_small_classes()`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(arenabuf::SizeClasses::new(8192, 9)?.num_small_classes(), 39);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn num_small_classes(&self) -> usize {
        self.num_small
    }

    /// How many classes are whole multiples of the page size.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(arenabuf::SizeClasses::new(8192, 9)?.num_page_classes(), 32);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn num_page_classes(&self) -> usize {
        self.page_class_pages.len()
    }

    /// The size in bytes of class `index`.
    ///
    /// # Panics
    ///
    /// When `index >= num_classes()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let classes = arenabuf::SizeClasses::new(8192, 9)?;
    /// assert_eq!(classes.size_of(0), 16);
    /// assert_eq!(classes.size_of(38), 28 * 1024);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    #[inline]
    pub fn size_of(&self, index: usize) -> usize {
        self.sizes[index]
    }

    /// The index of the smallest class that holds `size` bytes, or `None`
    /// when `size` is above the chunk size (a huge request). Size 0 maps to
    /// class 0.
    ///
    /// # Examples
    ///
    /// ```
    /// let classes = arenabuf::SizeClasses::new(8192, 9)?;
    /// assert_eq!(classes.index_of(17), Some(1));
    /// assert_eq!(classes.index_of(4 << 20), Some(67));
    /// assert_eq!(classes.index_of((4 << 20) + 1), None);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    #[inline]
    pub fn index_of(&self, size: usize) -> Option<usize> {
        self.lookup.index_of(size)
    }

    /// The size-to-class lookup alone, to keep where the hit path reads it
    /// without going through the table (a thread cache holds a copy).
    pub(crate) fn lookup(&self) -> &ClassLookup {
        &self.lookup
    }

    /// The size a request of `size` bytes is served with: its class size,
    /// or `size` itself when it is above the chunk size.
    ///
    /// # Examples
    ///
    /// ```
    /// let classes = arenabuf::SizeClasses::new(8192, 9)?;
    /// assert_eq!(classes.normalize(1025), 1280);
    /// assert_eq!(classes.normalize(65537), 81920);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    #[inline]
    pub fn normalize(&self, size: usize) -> usize {
        match self.index_of(size) {
            Some(index) => self.sizes[index],
            None => size,
        }
    }

    /// Whether class `index` is small (served from subpages).
    ///
    /// # Examples
    ///
    /// ```
    /// let classes = arenabuf::SizeClasses::new(8192, 9)?;
    /// assert!(classes.is_small(38));
    /// assert!(!classes.is_small(39));
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    #[inline]
    pub fn is_small(&self, index: usize) -> bool {
        index < self.num_small
    }

    /// The smallest page class of at least `pages` pages, or `None` when
    /// `pages` is more than a chunk holds.
    ///
    /// # Examples
    ///
    /// ```
    /// let classes = arenabuf::SizeClasses::new(8192, 9)?;
    /// let ceil = classes.page_index_ceil(9).unwrap();
    /// assert_eq!(classes.pages_of(ceil), 10);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    #[inline]
    pub fn page_index_ceil(&self, pages: usize) -> Option<usize> {
        self.page_ceil.get(pages).map(|&i| i as usize)
    }

    /// The largest page class of at most `pages` pages, or `None` when
    /// `pages` is 0 or more than a chunk holds.
    ///
    /// # Examples
    ///
    /// ```
    /// let classes = arenabuf::SizeClasses::new(8192, 9)?;
    /// let floor = classes.page_index_floor(9).unwrap();
    /// assert_eq!(classes.pages_of(floor), 8);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    #[inline]
    pub fn page_index_floor(&self, pages: usize) -> Option<usize> {
        if pages == 0 {
            return None;
        }
        self.page_floor.get(pages).map(|&i| i as usize)
    }

    /// Pages in page class `page_index`.
    ///
    /// # Panics
    ///
    /// When `page_index >= num_page_classes()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let classes = arenabuf::SizeClasses::new(8192, 9)?;
    /// assert_eq!(classes.pages_of(8), 10);
    /// # Ok::<(), arenabuf::ConfigError>(())
    /// ```
    #[must_use]
    pub fn pages_of(&self, page_index: usize) -> usize {
        self.page_class_pages[page_index] as usize
    }
}

/// The part of [`SizeClasses`] that maps a request's size to its class: a
/// few hundred bytes, copied into each thread cache so that the hit path
/// reads it one pointer nearer.
#[derive(Debug, Clone)]
pub(crate) struct ClassLookup {
    /// `(size - 1) >> LOG2_QUANTUM` -> class index, for sizes 1..=LOOKUP_MAX.
    /// A fixed array, so the hot lookup needs no pointer and no bounds check.
    small_lookup: [u8; LOOKUP_MAX >> LOG2_QUANTUM],
    chunk_size: usize,
}

impl ClassLookup {
    /// As [`SizeClasses::index_of`].
    #[inline]
    pub(crate) fn index_of(&self, size: usize) -> Option<usize> {
        if size <= LOOKUP_MAX {
            return Some(self.small_lookup[size.saturating_sub(1) >> LOG2_QUANTUM] as usize);
        }
        if size > self.chunk_size {
            return None;
        }
        // x = ceil(log2(size)); the class lies in the group ending at 2^x.
        let x = usize::BITS - (size - 1).leading_zeros();
        let shift = x - (LOG2_GROUP + LOG2_QUANTUM);
        let log2_delta = x - LOG2_GROUP - 1;
        let group = (shift as usize) << LOG2_GROUP;
        let within = ((size - 1) >> log2_delta) & ((1 << LOG2_GROUP) - 1);
        Some(group + within)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_classes() -> SizeClasses {
        SizeClasses::new(8192, 9).unwrap()
    }

    #[test]
    fn class_counts_match_netty() {
        let c = default_classes();
        assert_eq!((c.num_classes(), c.num_small_classes(), c.num_page_classes()), (68, 39, 32));
        assert_eq!(c.size_of(38), 28672);
        assert_eq!(c.size_of(39), 32768);
        assert_eq!(c.size_of(67), 4 << 20);

        let c = SizeClasses::new(8192, 11).unwrap();
        assert_eq!(c.num_classes(), 76);
        assert_eq!(c.num_small_classes(), 39);

        let c = SizeClasses::new(4096, 9).unwrap();
        assert_eq!((c.num_classes(), c.num_small_classes()), (64, 35));
        assert_eq!(c.chunk_size(), 2 << 20);
    }

    #[test]
    fn first_groups_follow_the_quantum() {
        let c = default_classes();
        let first: Vec<usize> = (0..12).map(|i| c.size_of(i)).collect();
        assert_eq!(first, [16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256]);
    }

    #[test]
    fn page_classes_are_the_page_multiples() {
        let c = default_classes();
        let pages: Vec<usize> = (0..c.num_page_classes()).map(|i| c.pages_of(i)).collect();
        let expected = [
            1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224,
            256, 320, 384, 448, 512,
        ];
        assert_eq!(pages, expected);
    }

    #[test]
    fn facts_sheet_examples() {
        let c = default_classes();
        let examples = [
            (0, 16),
            (1, 16),
            (15, 16),
            (17, 32),
            (100, 112),
            (129, 160),
            (257, 320),
            (510, 512),
            (513, 640),
            (1023, 1024),
            (1025, 1280),
            (1500, 1536),
            (2049, 2560),
            (3000, 3072),
            (4097, 5120),
            (7169, 8192),
            (8193, 10240),
            (16385, 20480),
            (28672, 28672),
            (28673, 32768),
            (65537, 81920),
            (100000, 114688),
            (1000000, 1048576),
            (1048577, 1310720),
            (4194304, 4194304),
        ];
        for (request, size) in examples {
            assert_eq!(c.normalize(request), size, "request {request}");
        }
        assert_eq!(c.index_of(4194305), None);
        assert_eq!(c.normalize(4194305), 4194305);
    }

    /// Every size from 0 to the chunk size maps to the smallest class that
    /// holds it, for several geometries.
    #[test]
    fn every_size_maps_to_the_smallest_fitting_class() {
        for (page, order) in [(8192, 9), (4096, 9), (4096, 0), (16384, 3)] {
            let c = SizeClasses::new(page, order).unwrap();
            let mut class = 0;
            for size in 0..=c.chunk_size() {
                while c.size_of(class) < size {
                    class += 1;
                }
                assert_eq!(c.index_of(size), Some(class), "size {size} page {page} order {order}");
            }
            assert_eq!(c.index_of(c.chunk_size() + 1), None);
        }
    }

    #[test]
    fn small_means_below_four_pages() {
        for (page, order) in [(8192, 9), (4096, 9), (65536, 4)] {
            let c = SizeClasses::new(page, order).unwrap();
            for i in 0..c.num_classes() {
                assert_eq!(c.is_small(i), c.size_of(i) < 4 * page, "class {i}");
            }
        }
    }

    #[test]
    fn page_index_ceil_and_floor_for_every_page_count() {
        for (page, order) in [(8192, 9), (8192, 11), (4096, 14)] {
            let c = SizeClasses::new(page, order).unwrap();
            let max = c.chunk_pages();
            for pages in 1..=max {
                let ceil = c.page_index_ceil(pages).unwrap();
                assert!(c.pages_of(ceil) >= pages);
                assert!(ceil == 0 || c.pages_of(ceil - 1) < pages, "ceil of {pages}");
                let floor = c.page_index_floor(pages).unwrap();
                assert!(c.pages_of(floor) <= pages);
                assert!(floor + 1 == c.num_page_classes() || c.pages_of(floor + 1) > pages);
            }
            assert_eq!(c.page_index_ceil(max + 1), None);
            assert_eq!(c.page_index_floor(0), None);
        }
        let c = default_classes();
        assert_eq!(c.pages_of(c.page_index_ceil(9).unwrap()), 10);
        assert_eq!(c.pages_of(c.page_index_floor(9).unwrap()), 8);
    }

    #[test]
    fn invalid_geometry_is_rejected_with_the_setting_named() {
        for page in [0, 1, 2048, 6000, 8191, 1 << 31] {
            let err = SizeClasses::new(page, 9).unwrap_err();
            assert_eq!(err.setting(), "page_size", "page {page}");
            assert!(err.to_string().contains(&page.to_string()));
        }
        let err = SizeClasses::new(8192, 15).unwrap_err();
        assert_eq!(err.setting(), "max_order");
        // 64 KiB pages << 14 is exactly 1 GiB, the largest chunk.
        assert!(SizeClasses::new(65536, 14).is_ok());
        let err = SizeClasses::new(1 << 20, 11).unwrap_err();
        assert_eq!(err.setting(), "max_order");
        assert!(err.allowed().contains("0..=10"));
    }
}
