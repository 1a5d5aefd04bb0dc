//! The one error type of the core.

/// Everything that can go wrong in the core. The Python bindings map each variant to one
/// exception class (`DecodeError`, `LineageError`, `QueryError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// Encoded bytes are damaged, truncated or not ours.
    #[error("cannot decode hippo_dask bytes: {0}")]
    Decode(String),
    /// Arguments that do not describe a valid row map or array (wrong sizes, bad codes).
    #[error("{0}")]
    InvalidInput(String),
    /// A queried row does not exist on the side being queried.
    #[error("row {row} is out of range: valid rows are 0..{n} (0 <= row < {n})")]
    OutOfRange {
        /// The offending row.
        row: i64,
        /// Number of rows on the queried side.
        n: u64,
    },
}

/// Result alias of the core.
pub type Result<T> = std::result::Result<T, CoreError>;

/// Shorthand for a [`CoreError::Decode`] with a formatted message.
pub(crate) fn decode_err(message: impl Into<String>) -> CoreError {
    CoreError::Decode(message.into())
}

/// Shorthand for a [`CoreError::InvalidInput`] with a formatted message.
pub(crate) fn invalid(message: impl Into<String>) -> CoreError {
    CoreError::InvalidInput(message.into())
}
