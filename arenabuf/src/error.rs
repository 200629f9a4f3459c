//! Error types: [`ConfigError`] for settings that `build()` rejects and
//! [`AllocError`] for requests the pool cannot serve.

use std::fmt;

/// A setting that is out of its allowed range.
///
/// The message names the setting, the value given and the range allowed, so
/// that a configuration mistake can be fixed from the error alone.
///
/// # Examples
///
/// ```
/// use arenabuf::SizeClasses;
///
/// let err = SizeClasses::new(1000, 9).unwrap_err();
/// assert_eq!(err.setting(), "page_size");
/// assert!(err.to_string().contains("1000"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    setting: &'static str,
    value: String,
    allowed: String,
}

impl ConfigError {
    pub(crate) fn new(setting: &'static str, value: impl fmt::Display, allowed: impl Into<String>) -> Self {
        ConfigError { setting, value: value.to_string(), allowed: allowed.into() }
    }

    /// The name of the rejected setting, as the builder spells it.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = arenabuf::SizeClasses::new(8192, 15).unwrap_err();
    /// assert_eq!(err.setting(), "max_order");
    /// ```
    #[must_use]
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// The rejected value, as text.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = arenabuf::SizeClasses::new(8192, 15).unwrap_err();
    /// assert_eq!(err.value(), "15");
    /// ```
    #[must_use]
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The allowed range, in words.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = arenabuf::SizeClasses::new(8192, 15).unwrap_err();
    /// assert!(err.allowed().contains("0..=14"));
    /// ```
    #[must_use]
    pub fn allowed(&self) -> &str {
        &self.allowed
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid setting {} = {}: allowed {}", self.setting, self.value, self.allowed)
    }
}

impl std::error::Error for ConfigError {}

/// Why a buffer could not be allocated.
///
/// A failed request changes nothing: every list, counter and limit of the
/// pool is as it was before the request.
///
/// # Examples
///
/// ```
/// use arenabuf::AllocError;
///
/// let err = AllocError::DirectMemoryExhausted { requested: 8, used: 100, max: 100 };
/// assert_eq!(
///     err.to_string(),
///     "failed to allocate 8 byte(s) of direct memory (used: 100, max: 100)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllocError {
    /// Serving the request would take direct memory past its limit.
    DirectMemoryExhausted {
        /// Bytes the pool tried to reserve (a whole chunk, or a huge buffer).
        requested: usize,
        /// Direct bytes already reserved.
        used: usize,
        /// The direct-memory limit.
        max: usize,
    },
    /// The operating system or the global allocator refused memory.
    OutOfMemory {
        /// Bytes the pool asked for.
        requested: usize,
    },
    /// A capacity above the buffer's maximum capacity was asked for.
    CapacityOverflow {
        /// The capacity asked for.
        requested: usize,
        /// The buffer's maximum capacity.
        max_capacity: usize,
    },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AllocError::DirectMemoryExhausted { requested, used, max } => {
                write!(f, "failed to allocate {requested} byte(s) of direct memory (used: {used}, max: {max})")
            }
            AllocError::OutOfMemory { requested } => {
                write!(f, "failed to allocate {requested} byte(s): the system refused memory")
            }
            AllocError::CapacityOverflow { requested, max_capacity } => {
                write!(f, "capacity {requested} exceeds the maximum capacity {max_capacity}")
            }
        }
    }
}

impl std::error::Error for AllocError {}
