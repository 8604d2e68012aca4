//! [`FlvIngest`]: the tags of one publish session -> track sets and frames.

use std::collections::VecDeque;

use bytes::Bytes;
use ugc_core::{
    AudioParams, Codec, Frame, MediaEvent, MediaKind, Timescale, TrackId, TrackInfo, TrackParams,
    Tracks, VideoParams,
};

use super::audio::{AudioCodec, AudioPacket, opus_head_to_dops, parse_audio_tag};
use super::video::{VideoCodec, VideoPacket, parse_video_tag};
use crate::aac::Asc;
use crate::error::{Error, Result};
use crate::h264::{AvcConfig, reduce};
use crate::hevc::HevcConfig;

/// Hints from the publisher's `onMetaData` (all optional; AMF numbers already converted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlvMetadata {
    /// `hasAudio`.
    pub has_audio: Option<bool>,
    /// `hasVideo`.
    pub has_video: Option<bool>,
    /// `width`.
    pub width: Option<u32>,
    /// `height`.
    pub height: Option<u32>,
    /// frames per second * 1000 (29.97 -> 29970)
    pub frame_rate_milli: Option<u32>,
    /// bits per second
    pub video_bitrate: Option<u32>,
    /// bits per second
    pub audio_bitrate: Option<u32>,
}

/// Counters of one [`FlvIngest`] session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlvIngestStats {
    /// Video frames pushed.
    pub video_frames: u64,
    /// Audio frames pushed.
    pub audio_frames: u64,
    /// Frames dropped because their track had no sequence header yet.
    pub dropped_before_header: u64,
    /// Video frames skipped because their payload was empty.
    pub empty_video_frames: u64,
    /// Frames dropped because the start-up buffer was full (should stay 0: the
    /// buffer is released before it fills).
    pub dropped_buffer_full: u64,
    /// `MediaEvent::Tracks` emitted.
    pub tracks_emitted: u64,
}

/// How long [`FlvIngest`] buffers frames while waiting for the sequence header
/// of a track kind it expects, in milliseconds of media.
pub const STARTUP_BUFFER_MS: i64 = 2_000;
/// How many frames [`FlvIngest`] buffers at most while waiting.
pub const STARTUP_BUFFER_FRAMES: usize = 300;

/// Track id of the video track produced by [`FlvIngest`].
pub const VIDEO_TRACK: TrackId = TrackId(1);
/// Track id of the audio track produced by [`FlvIngest`].
pub const AUDIO_TRACK: TrackId = TrackId(2);

/// Turns the audio/video tag bodies of one RTMP/FLV publish session into ugc MediaEvents.
///
/// Push every audio/video message body in arrival order, then drain
/// [`FlvIngest::poll_event`] until it returns `None`:
///
/// ```
/// use bytes::Bytes;
/// use ugc_codec::flv::{FlvIngest, FlvMetadata};
///
/// let mut ingest = FlvIngest::new();
/// ingest.set_metadata(FlvMetadata { has_audio: Some(false), ..Default::default() });
/// // An AVC sequence header whose avcC is broken is an error for that tag only.
/// assert!(ingest.push_video(0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1])).is_err());
/// while let Some(event) = ingest.poll_event() {
///     // hand `event` to the Hub publisher
///     let _ = event;
/// }
/// ingest.finish();
/// assert!(ingest.poll_event().is_none());
/// ```
///
/// Semantics: video is [`VIDEO_TRACK`], audio [`AUDIO_TRACK`], both at a
/// 1 000 Hz timescale. `MediaEvent::Tracks` comes once every expected kind has
/// its sequence header (expectation from `hasVideo`/`hasAudio` when given,
/// else both), or once [`STARTUP_BUFFER_MS`] of media or
/// [`STARTUP_BUFFER_FRAMES`] frames show a kind is missing, and again whenever
/// a sequence header changes. Frames before their track's sequence header are
/// dropped and counted. Errors are scoped to the one pushed tag; the session
/// state stays usable. `finish` does not emit `MediaEvent::End`: ending the
/// stream is the caller's decision.
#[derive(Debug, Default)]
pub struct FlvIngest {
    meta: FlvMetadata,
    video: Option<TrackInfo>,
    audio: Option<TrackInfo>,
    /// The track set last emitted; `None` while starting up.
    emitted: Option<Tracks>,
    pending: VecDeque<Frame>,
    out: VecDeque<MediaEvent>,
    stats: FlvIngestStats,
}

impl FlvIngest {
    /// A fresh session.
    pub fn new() -> Self {
        Self::default()
    }

    /// Session counters.
    pub fn stats(&self) -> &FlvIngestStats {
        &self.stats
    }

    /// Applies `onMetaData` hints. They fill in what the bitstream does not say
    /// (bitrates, a frame rate without VUI timing, HEVC/AV1 picture size) and set
    /// which track kinds to wait for. Sent mid-stream, they take effect with the
    /// next sequence header rather than re-announcing the tracks.
    pub fn set_metadata(&mut self, meta: FlvMetadata) {
        self.meta = meta;
        if self.emitted.is_some() {
            // Mid-stream `onMetaData` updates do not by themselves change the
            // announced tracks (that would start a new init segment downstream);
            // they apply from the next sequence header on.
            return;
        }
        if let Some(v) = self.video.take() {
            self.video = Some(self.apply_video_meta(v));
        }
        if let Some(a) = self.audio.as_mut() {
            a.bitrate = self.meta.audio_bitrate.filter(|b| *b > 0);
        }
        self.check_ready(None);
    }

    /// `timestamp_ms` is the already-widened (i64, wrap-corrected) RTMP timestamp.
    pub fn push_audio(&mut self, timestamp_ms: i64, body: bytes::Bytes) -> Result<(), Error> {
        if body.is_empty() {
            return Ok(());
        }
        let tag = parse_audio_tag(&body)?;
        match (tag.codec, tag.packet) {
            (AudioCodec::Aac, AudioPacket::SequenceHeader(asc_bytes)) => {
                let asc = Asc::parse(&asc_bytes)?;
                let info = TrackInfo {
                    id: AUDIO_TRACK,
                    codec: Codec::Aac,
                    timescale: Timescale::MILLIS,
                    config: asc_bytes,
                    codec_string: asc.codec_string(),
                    params: TrackParams::Audio(AudioParams {
                        sample_rate: asc.sample_rate(),
                        channels: asc.channels(),
                        samples_per_frame: asc.samples_per_frame(),
                    }),
                    bitrate: self.meta.audio_bitrate.filter(|b| *b > 0),
                };
                self.set_track(MediaKind::Audio, info, timestamp_ms);
                Ok(())
            }
            (AudioCodec::Opus, AudioPacket::SequenceHeader(head)) => {
                let info = crate::opus::track(
                    AUDIO_TRACK,
                    Timescale::MILLIS,
                    opus_head_to_dops(&head)?,
                    self.meta.audio_bitrate.filter(|b| *b > 0),
                );
                self.set_track(MediaKind::Audio, info, timestamp_ms);
                Ok(())
            }
            (AudioCodec::Aac | AudioCodec::Opus, AudioPacket::Raw(data)) => {
                self.stats.audio_frames += 1;
                if data.is_empty() {
                    return Ok(());
                }
                self.push_frame(
                    MediaKind::Audio,
                    Frame {
                        track: AUDIO_TRACK,
                        dts: timestamp_ms,
                        pts: timestamp_ms,
                        keyframe: true,
                        data,
                    },
                );
                Ok(())
            }
            (AudioCodec::Aac | AudioCodec::Opus, _) => Ok(()),
            (AudioCodec::Legacy(f), _) => Err(Error::unsupported(
                "FLV audio tag",
                format!("sound format {f}"),
            )),
            (AudioCodec::Other(cc), _) => Err(Error::unsupported(
                "FLV audio tag",
                format!("audio FourCC {:?}", String::from_utf8_lossy(&cc)),
            )),
        }
    }

    /// `timestamp_ms` is the already-widened (i64, wrap-corrected) RTMP timestamp.
    pub fn push_video(&mut self, timestamp_ms: i64, body: bytes::Bytes) -> Result<(), Error> {
        if body.is_empty() {
            return Ok(());
        }
        let tag = parse_video_tag(&body)?;
        match (tag.codec, tag.packet) {
            (codec @ (VideoCodec::Avc | VideoCodec::Hevc | VideoCodec::Av1), packet) => {
                match packet {
                    VideoPacket::SequenceHeader(config) => {
                        let info = self.video_track(codec, config)?;
                        self.set_track(MediaKind::Video, info, timestamp_ms);
                    }
                    VideoPacket::CodedFrames {
                        composition_time,
                        data,
                    } => {
                        self.stats.video_frames += 1;
                        if data.is_empty() {
                            self.stats.empty_video_frames += 1;
                            return Ok(());
                        }
                        let pts = timestamp_ms.saturating_add(i64::from(composition_time));
                        self.push_frame(
                            MediaKind::Video,
                            Frame {
                                track: VIDEO_TRACK,
                                dts: timestamp_ms,
                                pts,
                                keyframe: tag.frame_type.is_key(),
                                data,
                            },
                        );
                    }
                    VideoPacket::EndOfSequence
                    | VideoPacket::Metadata(_)
                    | VideoPacket::Mpeg2TsSequenceStart(_)
                    | VideoPacket::Command(_) => {}
                }
                Ok(())
            }
            (_, VideoPacket::Command(_)) => Ok(()),
            (VideoCodec::Legacy(id), _) => Err(Error::unsupported(
                "FLV video tag",
                format!("video codec id {id}"),
            )),
            (VideoCodec::Other(cc), _) => Err(Error::unsupported(
                "FLV video tag",
                format!("video FourCC {:?}", String::from_utf8_lossy(&cc)),
            )),
        }
    }

    /// Next event ready (Tracks, Frame); drain after every push.
    pub fn poll_event(&mut self) -> Option<ugc_core::MediaEvent> {
        self.out.pop_front()
    }

    /// The publisher is done: release anything buffered to poll_event.
    pub fn finish(&mut self) {
        if self.emitted.is_none() && (self.video.is_some() || self.audio.is_some()) {
            self.release();
        }
        self.pending.clear();
    }

    fn video_track(&self, codec: VideoCodec, config: Bytes) -> Result<TrackInfo> {
        let (codec, codec_string, width, height, frame_rate) = match codec {
            VideoCodec::Avc => {
                let c = AvcConfig::parse(&config)?;
                (
                    Codec::H264,
                    c.codec_string(),
                    c.width,
                    c.height,
                    c.frame_rate,
                )
            }
            VideoCodec::Hevc => {
                let c = HevcConfig::parse(&config)?;
                (
                    Codec::H265,
                    c.codec_string(),
                    c.width,
                    c.height,
                    c.frame_rate,
                )
            }
            _ => {
                let s = crate::av1::codec_string(&config)?;
                // The sequence header's largest picture (encoders write
                // their picture size there); metadata's when it has none.
                let (w, h) = crate::av1::dimensions(&config).unwrap_or((0, 0));
                (Codec::Av1, s, w, h, None)
            }
        };
        let info = TrackInfo {
            id: VIDEO_TRACK,
            codec,
            timescale: Timescale::MILLIS,
            config,
            codec_string,
            params: TrackParams::Video(VideoParams {
                width,
                height,
                frame_rate,
            }),
            bitrate: None,
        };
        Ok(self.apply_video_meta(info))
    }

    /// Fills bitrate, and size / frame rate where the bitstream had none.
    fn apply_video_meta(&self, mut info: TrackInfo) -> TrackInfo {
        info.bitrate = self.meta.video_bitrate.filter(|b| *b > 0);
        if let TrackParams::Video(v) = &mut info.params {
            if let (true, Some(w), Some(h)) = (
                v.width == 0 || v.height == 0,
                self.meta.width,
                self.meta.height,
            ) {
                v.width = w;
                v.height = h;
            }
            if v.frame_rate.is_none() {
                v.frame_rate = self
                    .meta
                    .frame_rate_milli
                    .and_then(|m| reduce(u64::from(m), 1000));
            }
        }
        info
    }

    fn set_track(&mut self, kind: MediaKind, info: TrackInfo, now_ms: i64) {
        let slot = match kind {
            MediaKind::Video => &mut self.video,
            MediaKind::Audio => &mut self.audio,
        };
        if slot.as_ref() == Some(&info) {
            return; // a repeated, identical sequence header
        }
        *slot = Some(info);
        if self.emitted.is_some() {
            self.emit_tracks();
        } else {
            self.check_ready(Some(now_ms));
        }
    }

    fn push_frame(&mut self, kind: MediaKind, frame: Frame) {
        let has_track = match kind {
            MediaKind::Video => self.video.is_some(),
            MediaKind::Audio => self.audio.is_some(),
        };
        if !has_track {
            self.stats.dropped_before_header += 1;
            return;
        }
        if self.emitted.is_some() {
            self.out.push_back(MediaEvent::Frame(frame));
            return;
        }
        let ts = frame.dts;
        if self.pending.len() >= STARTUP_BUFFER_FRAMES {
            // Unreachable in practice: check_ready releases at the limit.
            self.stats.dropped_buffer_full += 1;
            return;
        }
        self.pending.push_back(frame);
        self.check_ready(Some(ts));
    }

    fn check_ready(&mut self, now_ms: Option<i64>) {
        if self.emitted.is_some() || (self.video.is_none() && self.audio.is_none()) {
            return;
        }
        let want_video = self.meta.has_video.unwrap_or(true);
        let want_audio = self.meta.has_audio.unwrap_or(true);
        let complete =
            (!want_video || self.video.is_some()) && (!want_audio || self.audio.is_some());
        let span = match (self.pending.front(), now_ms) {
            (Some(f), Some(now)) => now.saturating_sub(f.dts),
            _ => 0,
        };
        let bound = self.pending.len() >= STARTUP_BUFFER_FRAMES || span >= STARTUP_BUFFER_MS;
        if complete || bound {
            self.release();
        }
    }

    fn release(&mut self) {
        self.emit_tracks();
        let pending = std::mem::take(&mut self.pending);
        self.out.extend(pending.into_iter().map(MediaEvent::Frame));
    }

    fn emit_tracks(&mut self) {
        let tracks: Vec<TrackInfo> = self
            .video
            .iter()
            .chain(self.audio.iter())
            .cloned()
            .collect();
        let tracks = Tracks::new(tracks);
        if self.emitted.as_ref() == Some(&tracks) {
            return;
        }
        self.emitted = Some(tracks.clone());
        self.stats.tracks_emitted += 1;
        self.out.push_back(MediaEvent::Tracks(tracks));
    }
}
