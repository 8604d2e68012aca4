//! FLV audio/video tag *bodies* as carried in RTMP messages of type 8 (audio)
//! and 9 (video), legacy and Enhanced RTMP (v1/v2), and [`FlvIngest`], which
//! turns the tags of one publish session into ugc
//! [`MediaEvent`](ugc_core::MediaEvent)s.
//!
//! Parsing is zero-copy: payloads are `slice()`s of the tag body `Bytes`.
//! There is no FLV file header or tag header here: RTMP carries bodies only.
//!
//! One module per job: `video` and `audio` read tag bodies, `ingest` is
//! [`FlvIngest`], `write` writes tag bodies for RTMP push.

mod audio;
mod ingest;
mod video;
mod write;

pub use audio::{AudioCodec, AudioPacket, AudioTag, opus_head_to_dops, parse_audio_tag};
pub use ingest::{
    AUDIO_TRACK, FlvIngest, FlvIngestStats, FlvMetadata, STARTUP_BUFFER_FRAMES, STARTUP_BUFFER_MS,
    VIDEO_TRACK,
};
pub use video::{VideoCodec, VideoFrameType, VideoPacket, VideoTag, parse_video_tag};
pub use write::{audio_sequence_header, video_sequence_header, write_audio_tag, write_video_tag};

/// A FourCC as a big-endian `u32` (`b"avc1"`).
pub type FourCc = [u8; 4];

/// Legacy video codec id of AVC.
pub const VIDEO_CODEC_AVC: u8 = 7;
/// Legacy sound format of AAC.
pub const SOUND_FORMAT_AAC: u8 = 10;
/// Sound format value announcing an Enhanced RTMP audio ExHeader.
pub const SOUND_FORMAT_EX_HEADER: u8 = 9;

#[cfg(test)]
mod tests;
