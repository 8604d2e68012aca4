//! FLV tags and the RTMP/FLV ingest assembler.
//!
//! placeholder until wt-b lands: only [`FlvMetadata`] (final definition) and a
//! stub [`FlvIngest`] with the agreed API, which accepts everything and emits
//! no media events. The merge takes wt-b's file.

use bytes::Bytes;

/// Stream metadata from an FLV `onMetaData` script tag.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlvMetadata {
    /// `hasAudio`.
    pub has_audio: Option<bool>,
    /// `hasVideo`.
    pub has_video: Option<bool>,
    /// `width` in pixels.
    pub width: Option<u32>,
    /// `height` in pixels.
    pub height: Option<u32>,
    /// fps*1000
    pub frame_rate_milli: Option<u32>,
    /// bits/s
    pub video_bitrate: Option<u32>,
    /// bits/s
    pub audio_bitrate: Option<u32>,
}

/// Errors of the FLV ingest (placeholder until wt-b lands).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Invalid FLV tag body.
    #[error("invalid flv tag: {0}")]
    InvalidTag(String),
}

/// Turns RTMP/FLV audio and video tag bodies into [`ugc_core::MediaEvent`]s.
///
/// placeholder until wt-b lands: accepts every tag and emits nothing.
#[derive(Debug, Default)]
pub struct FlvIngest {
    _meta: Option<FlvMetadata>,
}

impl FlvIngest {
    /// A new assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Metadata from `onMetaData`.
    pub fn set_metadata(&mut self, meta: FlvMetadata) {
        self._meta = Some(meta);
    }

    /// One audio tag body (FLV AUDIODATA) at `timestamp_ms`.
    pub fn push_audio(&mut self, timestamp_ms: i64, body: Bytes) -> Result<(), Error> {
        let _ = (timestamp_ms, body);
        Ok(())
    }

    /// One video tag body (FLV VIDEODATA) at `timestamp_ms`.
    pub fn push_video(&mut self, timestamp_ms: i64, body: Bytes) -> Result<(), Error> {
        let _ = (timestamp_ms, body);
        Ok(())
    }

    /// The next media event, if any.
    pub fn poll_event(&mut self) -> Option<ugc_core::MediaEvent> {
        None
    }

    /// The publisher finished.
    pub fn finish(&mut self) {}
}
