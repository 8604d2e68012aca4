//! The error type of `ugc-codec`.
// placeholder until wt-b lands

/// Errors of the bitstream and container readers/writers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller passed something the writer cannot represent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}
