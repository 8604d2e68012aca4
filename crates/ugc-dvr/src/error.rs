//! The error type of `ugc-dvr`.

use ugc_core::TrackId;

/// Errors of the segmenter and the live window, classified by blame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The source sent a frame before any track set (source misbehaved).
    #[error("frame for {track:?} (dts {dts}) before any track set")]
    FrameBeforeTracks {
        /// The frame's track.
        track: TrackId,
        /// The frame's decode timestamp.
        dts: i64,
    },
    /// The source sent a frame for a track its track set does not have.
    #[error("frame for unknown {track:?} (dts {dts})")]
    UnknownTrack {
        /// The frame's track.
        track: TrackId,
        /// The frame's decode timestamp.
        dts: i64,
    },
    /// The caller pushed an event after [`ugc_core::MediaEvent::End`].
    #[error("event after the end of the stream")]
    AfterEnd,
    /// A setting is out of its range (the caller's configuration, e.g.
    /// [`HlsTiming::packager`](crate::packager::HlsTiming::packager)); the
    /// message names the setting and the value.
    #[error("{0}")]
    Setting(String),
    /// The muxer refused a segment or an init segment (internal bug or a
    /// track the muxer cannot represent).
    #[error("muxing {what}: {source}")]
    Mux {
        /// What was being muxed (`"init 3"`, `"segment 17 part 0"`, ...).
        what: String,
        /// The muxer's error.
        #[source]
        source: ugc_codec::Error,
    },
}
