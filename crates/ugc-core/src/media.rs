//! The media model shared by every crate: tracks, frames and the events a
//! live stream is made of.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::time::{MediaTime, Rational, Timescale};

/// Identifies a track within one stream. Track ids are small and stable for a
/// publisher session; by convention video is 1 and audio is 2.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(pub u32);

impl fmt::Debug for TrackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "track#{}", self.0)
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// Pictures.
    Video,
    /// Sound.
    Audio,
}

/// The coding format of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// H.264 / AVC. Frames are length-prefixed NAL units (AVCC, 4-byte lengths
    /// unless the `avcC` record says otherwise); `config` is the `avcC` record.
    H264,
    /// H.265 / HEVC. Frames are length-prefixed NAL units; `config` is `hvcC`.
    H265,
    /// AV1. Frames are low-overhead OBUs; `config` is `av1C`.
    Av1,
    /// AAC. Frames are raw access units (no ADTS); `config` is the
    /// AudioSpecificConfig.
    Aac,
    /// Opus. Frames are Opus packets; `config` is the `OpusHead`/`dOps` body.
    Opus,
}

impl Codec {
    /// Whether this is a video or an audio format.
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::H264 | Codec::H265 | Codec::Av1 => MediaKind::Video,
            Codec::Aac | Codec::Opus => MediaKind::Audio,
        }
    }
}

/// Parameters of a video track, as parsed from its configuration record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoParams {
    /// Display width in pixels.
    pub width: u32,
    /// Display height in pixels.
    pub height: u32,
    /// Nominal frame rate when the bitstream or the container says it.
    pub frame_rate: Option<Rational>,
}

/// Parameters of an audio track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioParams {
    /// Samples per second.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u8,
    /// Samples in one frame (1024 for AAC-LC, 960 for 20 ms Opus at 48 kHz).
    pub samples_per_frame: u32,
}

/// Kind-specific parameters of a track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackParams {
    /// A video track.
    Video(VideoParams),
    /// An audio track.
    Audio(AudioParams),
}

/// Everything a muxer or a player needs to know about one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// The track id, unique within its stream.
    pub id: TrackId,
    /// Coding format.
    pub codec: Codec,
    /// Clock of this track's frame timestamps.
    pub timescale: Timescale,
    /// The decoder configuration record (`avcC`, `hvcC`, `av1C`,
    /// AudioSpecificConfig, `dOps`), exactly as it goes into an MP4 sample entry.
    pub config: Bytes,
    /// RFC 6381 codec string for HLS `CODECS` (`avc1.64001f`, `mp4a.40.2`).
    pub codec_string: String,
    /// Kind-specific parameters.
    pub params: TrackParams,
    /// Nominal bitrate in bits/s when known (from metadata or configuration).
    pub bitrate: Option<u32>,
}

impl TrackInfo {
    /// Video or audio.
    pub fn kind(&self) -> MediaKind {
        self.codec.kind()
    }

    /// The video parameters, if this is a video track.
    pub fn video(&self) -> Option<&VideoParams> {
        match &self.params {
            TrackParams::Video(v) => Some(v),
            TrackParams::Audio(_) => None,
        }
    }

    /// The audio parameters, if this is an audio track.
    pub fn audio(&self) -> Option<&AudioParams> {
        match &self.params {
            TrackParams::Audio(a) => Some(a),
            TrackParams::Video(_) => None,
        }
    }
}

/// The set of tracks of a stream at one moment. Cheap to clone (shared).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tracks(Arc<Vec<TrackInfo>>);

impl Tracks {
    /// A track set.
    pub fn new(tracks: Vec<TrackInfo>) -> Self {
        Tracks(Arc::new(tracks))
    }

    /// All tracks, in id order as given.
    pub fn iter(&self) -> std::slice::Iter<'_, TrackInfo> {
        self.0.iter()
    }

    /// The track with id `id`.
    pub fn get(&self, id: TrackId) -> Option<&TrackInfo> {
        self.0.iter().find(|t| t.id == id)
    }

    /// The first video track.
    pub fn video(&self) -> Option<&TrackInfo> {
        self.0.iter().find(|t| t.kind() == MediaKind::Video)
    }

    /// The first audio track.
    pub fn audio(&self) -> Option<&TrackInfo> {
        self.0.iter().find(|t| t.kind() == MediaKind::Audio)
    }

    /// Number of tracks.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No tracks at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tracks as a slice.
    pub fn as_slice(&self) -> &[TrackInfo] {
        &self.0
    }
}

/// One encoded access unit of one track: a whole picture or a whole audio
/// frame, never a part of one.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// The track this frame belongs to.
    pub track: TrackId,
    /// Decode timestamp, in the track's timescale.
    pub dts: i64,
    /// Presentation timestamp, in the track's timescale (`>= dts` for
    /// well-formed streams; not enforced).
    pub pts: i64,
    /// A random access point (IDR / key frame; every audio frame is one).
    pub keyframe: bool,
    /// The encoded bytes in the track codec's frame format (see [`Codec`]).
    /// Shared, never copied on fan-out.
    pub data: Bytes,
}

impl Frame {
    /// Decode time as a [`MediaTime`] at `timescale` (the track's).
    pub fn dts_time(&self, timescale: Timescale) -> MediaTime {
        MediaTime::new(self.dts, timescale)
    }

    /// Composition offset `pts - dts`, saturated to `i32`.
    pub fn cts_offset(&self) -> i32 {
        let d = self.pts.saturating_sub(self.dts);
        i32::try_from(d).unwrap_or(if d < 0 { i32::MIN } else { i32::MAX })
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("track", &self.track)
            .field("dts", &self.dts)
            .field("pts", &self.pts)
            .field("keyframe", &self.keyframe)
            .field("len", &self.data.len())
            .finish()
    }
}

/// Why the timeline of a stream is not continuous at this point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscontinuityReason {
    /// A new publisher (a reconnect, a backup, a fallback file) took over.
    SourceChanged,
    /// This reader fell behind and skipped forward to the newest keyframe.
    ReaderSkipped,
    /// The publisher's own timestamps jumped.
    TimestampJump,
}

/// What a live stream is made of, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaEvent {
    /// The track set (first event of a stream, and again whenever it changes).
    /// Frames after it refer to these tracks.
    Tracks(Tracks),
    /// One access unit.
    Frame(Frame),
    /// The next frame does not continue the previous timeline smoothly (a
    /// muxer starts a new segment and a playlist marks a discontinuity).
    /// Timestamps stay monotonic across it: the Hub rebases new sources.
    Discontinuity(DiscontinuityReason),
    /// The stream ended; nothing follows.
    End,
}
