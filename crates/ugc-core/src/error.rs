//! The error type of `ugc-core`.

use crate::media::TrackId;

/// Errors of the media model, the pipeline traits and the Hub, classified by
/// who is to blame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The source of the media sent something invalid (a frame for a track
    /// that was never announced, a frame before any tracks).
    #[error("invalid media from source: {0}")]
    InvalidMedia(String),
    /// A frame names a track the stream does not have.
    #[error("frame for unknown {0:?}")]
    UnknownTrack(TrackId),
    /// The caller used the API wrongly (e.g. a stream name that is not allowed).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The named stream already has a publisher and takeover was not allowed.
    #[error("stream {0:?} already has a publisher")]
    AlreadyPublishing(String),
    /// The stream or the pipeline stage was closed.
    #[error("closed")]
    Closed,
    /// A pipeline stage failed for a reason of its own.
    #[error("{stage}: {source}")]
    Stage {
        /// The stage (e.g. `"restream rtmp://…"`).
        stage: String,
        /// What went wrong.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
