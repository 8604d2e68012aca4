//! FLV audio/video tag *bodies* as carried in RTMP messages of type 8 (audio)
//! and 9 (video), legacy and Enhanced RTMP (v1/v2), and [`FlvIngest`], which
//! turns the tags of one publish session into ugc [`MediaEvent`]s.
//!
//! Parsing is zero-copy: payloads are `slice()`s of the tag body `Bytes`.
//! There is no FLV file header or tag header here: RTMP carries bodies only.

use std::collections::VecDeque;

use bytes::Bytes;
use ugc_core::{
    AudioParams, Codec, Frame, MediaEvent, MediaKind, Timescale, TrackId, TrackInfo, TrackParams,
    Tracks, VideoParams,
};

use crate::aac::Asc;
use crate::error::{Error, Reader, Result};
use crate::h264::{AvcConfig, reduce};
use crate::hevc::HevcConfig;

/// A FourCC as a big-endian `u32` (`b"avc1"`).
pub type FourCc = [u8; 4];

/// Legacy video codec id of AVC.
pub const VIDEO_CODEC_AVC: u8 = 7;
/// Legacy sound format of AAC.
pub const SOUND_FORMAT_AAC: u8 = 10;
/// Sound format value announcing an Enhanced RTMP audio ExHeader.
pub const SOUND_FORMAT_EX_HEADER: u8 = 9;

/// Video codec of a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 (legacy codec id 7 or FourCC `avc1`).
    Avc,
    /// H.265 (FourCC `hvc1`).
    Hevc,
    /// AV1 (FourCC `av01`).
    Av1,
    /// Another legacy codec id (Sorenson, VP6, ...), not supported.
    Legacy(u8),
    /// Another FourCC (`vp09`, ...), not supported.
    Other(FourCc),
}

/// `FrameType` of a video tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoFrameType {
    /// 1: a key frame (random access point).
    Key,
    /// 2: an inter frame.
    Inter,
    /// 3: a disposable inter frame.
    DisposableInter,
    /// 4: generated key frame (server use).
    GeneratedKey,
    /// 5: a command / video info frame; carries no picture.
    Command,
    /// Reserved values.
    Reserved(u8),
}

impl VideoFrameType {
    fn from_bits(v: u8) -> Self {
        match v {
            1 => VideoFrameType::Key,
            2 => VideoFrameType::Inter,
            3 => VideoFrameType::DisposableInter,
            4 => VideoFrameType::GeneratedKey,
            5 => VideoFrameType::Command,
            v => VideoFrameType::Reserved(v),
        }
    }

    /// Key or generated key frame.
    pub fn is_key(self) -> bool {
        matches!(self, VideoFrameType::Key | VideoFrameType::GeneratedKey)
    }
}

/// What a video tag carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoPacket {
    /// AVCPacketType 0 / SequenceStart: the decoder configuration record
    /// (`avcC`, `hvcC`, `av1C`).
    SequenceHeader(Bytes),
    /// AVCPacketType 1 / CodedFrames / CodedFramesX: one access unit.
    /// `composition_time` (ms, SI24) is 0 for CodedFramesX and AV1.
    CodedFrames {
        /// pts - dts in milliseconds.
        composition_time: i32,
        /// Length-prefixed NAL units (AVC/HEVC) or OBUs (AV1).
        data: Bytes,
    },
    /// AVCPacketType 2 / SequenceEnd.
    EndOfSequence,
    /// Enhanced RTMP Metadata (an AMF-encoded `colorInfo` object), passed through.
    Metadata(Bytes),
    /// Enhanced RTMP MPEG2TSSequenceStart (an AV1 MPEG-2 TS descriptor), passed through.
    Mpeg2TsSequenceStart(Bytes),
    /// A command frame (FrameType 5); the byte is the command (0 start seek, 1 end seek).
    Command(u8),
}

/// A parsed video tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTag {
    /// `FrameType`.
    pub frame_type: VideoFrameType,
    /// Codec.
    pub codec: VideoCodec,
    /// Whether the tag used the Enhanced RTMP ExHeader.
    pub enhanced: bool,
    /// Contents.
    pub packet: VideoPacket,
}

fn si24(v: u32) -> i32 {
    // Sign-extend 24 bits.
    ((v << 8) as i32) >> 8
}

/// Parses a video tag body (RTMP message type 9).
pub fn parse_video_tag(body: &Bytes) -> Result<VideoTag> {
    const WHAT: &str = "FLV video tag";
    let mut r = Reader::new(WHAT, body);
    let b0 = r.u8()?;
    let enhanced = b0 & 0x80 != 0;
    if !enhanced {
        let frame_type = VideoFrameType::from_bits(b0 >> 4);
        let codec_id = b0 & 0x0f;
        if frame_type == VideoFrameType::Command {
            let cmd = r.u8().unwrap_or(0);
            return Ok(VideoTag {
                frame_type,
                codec: VideoCodec::Legacy(codec_id),
                enhanced,
                packet: VideoPacket::Command(cmd),
            });
        }
        if codec_id != VIDEO_CODEC_AVC {
            return Ok(VideoTag {
                frame_type,
                codec: VideoCodec::Legacy(codec_id),
                enhanced,
                packet: VideoPacket::CodedFrames {
                    composition_time: 0,
                    data: body.slice(r.pos()..),
                },
            });
        }
        let packet_type = r.u8()?;
        let cts = si24(r.u24()?);
        let rest = body.slice(r.pos()..);
        let packet = match packet_type {
            0 => VideoPacket::SequenceHeader(rest),
            1 => VideoPacket::CodedFrames {
                composition_time: cts,
                data: rest,
            },
            2 => VideoPacket::EndOfSequence,
            t => {
                return Err(Error::invalid(WHAT, body, 1, format!("AVCPacketType {t}")));
            }
        };
        return Ok(VideoTag {
            frame_type,
            codec: VideoCodec::Avc,
            enhanced,
            packet,
        });
    }

    // Enhanced RTMP: [IsExHeader:1][FrameType:3][PacketType:4]
    let frame_type = VideoFrameType::from_bits((b0 >> 4) & 0x07);
    let packet_type = skip_mod_ex(&mut r, b0 & 0x0f)?;
    if packet_type == 6 {
        return Err(Error::unsupported(WHAT, "Enhanced RTMP multitrack video"));
    }
    let fourcc: FourCc = r.array()?;
    let codec = match &fourcc {
        b"avc1" => VideoCodec::Avc,
        b"hvc1" => VideoCodec::Hevc,
        b"av01" => VideoCodec::Av1,
        _ => VideoCodec::Other(fourcc),
    };
    if frame_type == VideoFrameType::Command && packet_type != 4 {
        let cmd = r.u8().unwrap_or(0);
        return Ok(VideoTag {
            frame_type,
            codec,
            enhanced,
            packet: VideoPacket::Command(cmd),
        });
    }
    let packet = match packet_type {
        0 => VideoPacket::SequenceHeader(body.slice(r.pos()..)),
        1 => {
            let composition_time = if matches!(codec, VideoCodec::Avc | VideoCodec::Hevc) {
                si24(r.u24()?)
            } else {
                0
            };
            VideoPacket::CodedFrames {
                composition_time,
                data: body.slice(r.pos()..),
            }
        }
        2 => VideoPacket::EndOfSequence,
        3 => VideoPacket::CodedFrames {
            composition_time: 0,
            data: body.slice(r.pos()..),
        },
        4 => VideoPacket::Metadata(body.slice(r.pos()..)),
        5 => VideoPacket::Mpeg2TsSequenceStart(body.slice(r.pos()..)),
        t => {
            return Err(Error::invalid(
                WHAT,
                body,
                0,
                format!("VideoPacketType {t}"),
            ));
        }
    };
    Ok(VideoTag {
        frame_type,
        codec,
        enhanced,
        packet,
    })
}

/// Audio codec of a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// AAC (sound format 10 or FourCC `mp4a`).
    Aac,
    /// Opus (FourCC `Opus`).
    Opus,
    /// Another legacy sound format (MP3 = 2, ...), not supported.
    Legacy(u8),
    /// Another FourCC (`ac-3`, `fLaC`, ...), not supported.
    Other(FourCc),
}

/// What an audio tag carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioPacket {
    /// AACPacketType 0 / SequenceStart: AudioSpecificConfig, or for Opus the
    /// `OpusHead` identification header as sent.
    SequenceHeader(Bytes),
    /// AACPacketType 1 / CodedFrames: one raw frame.
    Raw(Bytes),
    /// SequenceEnd.
    SequenceEnd,
    /// An Enhanced RTMP packet type this crate passes over (MultichannelConfig).
    Other(u8),
}

/// A parsed audio tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTag {
    /// Codec.
    pub codec: AudioCodec,
    /// Contents.
    pub packet: AudioPacket,
}

/// Skips Enhanced RTMP v2 ModEx prefixes (packet type 7:
/// `[size-1 (UI8, 255 -> UI16 size-1)][data][ModExType:4][PacketType:4]`,
/// repeatable) and returns the real packet type. Shared by audio and video.
fn skip_mod_ex(r: &mut Reader<'_>, mut packet_type: u8) -> Result<u8> {
    let mut guard = 0;
    while packet_type == 7 {
        guard += 1;
        if guard > 16 {
            return Err(r.invalid("too many ModEx packets"));
        }
        let mut size = usize::from(r.u8()?) + 1;
        if size == 256 {
            size = usize::from(r.u16()?) + 1;
        }
        r.bytes(size)?;
        packet_type = r.u8()? & 0x0f;
    }
    Ok(packet_type)
}

/// Parses an audio tag body (RTMP message type 8).
pub fn parse_audio_tag(body: &Bytes) -> Result<AudioTag> {
    const WHAT: &str = "FLV audio tag";
    let mut r = Reader::new(WHAT, body);
    let b0 = r.u8()?;
    let format = b0 >> 4;
    if format == SOUND_FORMAT_EX_HEADER {
        let packet_type = skip_mod_ex(&mut r, b0 & 0x0f)?;
        if packet_type == 5 {
            return Err(Error::unsupported(WHAT, "Enhanced RTMP multitrack audio"));
        }
        let fourcc: FourCc = r.array()?;
        let codec = match &fourcc {
            b"mp4a" => AudioCodec::Aac,
            b"Opus" => AudioCodec::Opus,
            _ => AudioCodec::Other(fourcc),
        };
        let rest = body.slice(r.pos()..);
        let packet = match packet_type {
            0 => AudioPacket::SequenceHeader(rest),
            1 => AudioPacket::Raw(rest),
            2 => AudioPacket::SequenceEnd,
            t => AudioPacket::Other(t),
        };
        return Ok(AudioTag { codec, packet });
    }
    if format != SOUND_FORMAT_AAC {
        return Ok(AudioTag {
            codec: AudioCodec::Legacy(format),
            packet: AudioPacket::Raw(body.slice(r.pos()..)),
        });
    }
    let packet = match r.u8()? {
        0 => AudioPacket::SequenceHeader(body.slice(r.pos()..)),
        1 => AudioPacket::Raw(body.slice(r.pos()..)),
        t => return Err(Error::invalid(WHAT, body, 1, format!("AACPacketType {t}"))),
    };
    Ok(AudioTag {
        codec: AudioCodec::Aac,
        packet,
    })
}

/// Converts an Opus `OpusHead` identification header (RFC 7845 5.1,
/// little-endian) into a `dOps` box body (big-endian, version 0). A body that
/// does not start with `OpusHead` is taken as `dOps` already.
pub fn opus_head_to_dops(head: &Bytes) -> Result<Bytes> {
    const WHAT: &str = "OpusHead";
    if !head.starts_with(b"OpusHead") {
        if head.len() < 11 {
            return Err(Error::truncated("dOps", head, 0, 11));
        }
        return Ok(head.clone());
    }
    let mut r = Reader::new(WHAT, head);
    r.bytes(8)?;
    let _version = r.u8()?;
    let channels = r.u8()?;
    let pre_skip = u16::from_le_bytes(r.array()?);
    let rate = u32::from_le_bytes(r.array()?);
    let gain = i16::from_le_bytes(r.array()?);
    let family = r.u8()?;
    let mut out = Vec::with_capacity(11 + 2 + usize::from(channels));
    out.push(0);
    out.push(channels);
    out.extend_from_slice(&pre_skip.to_be_bytes());
    out.extend_from_slice(&rate.to_be_bytes());
    out.extend_from_slice(&gain.to_be_bytes());
    out.push(family);
    if family != 0 {
        // StreamCount, CoupledCount, ChannelMapping[channels]
        let table = r.bytes(2 + usize::from(channels))?;
        out.extend_from_slice(table);
    }
    Ok(Bytes::from(out))
}

/// Codec string of an `av1C` record: `av01.P.LLT.DD`.
fn av1_codec_string(av1c: &[u8]) -> Result<String> {
    let mut r = Reader::new("av1C", av1c);
    let marker = r.u8()?;
    if marker & 0x80 == 0 {
        return Err(r.invalid("av1C marker bit not set"));
    }
    let b1 = r.u8()?;
    let b2 = r.u8()?;
    let profile = b1 >> 5;
    let level = b1 & 0x1f;
    let tier = if b2 & 0x80 != 0 { 'H' } else { 'M' };
    let depth = match (b2 & 0x40 != 0, b2 & 0x20 != 0) {
        (true, true) => 12,
        (true, false) => 10,
        _ => 8,
    };
    Ok(format!("av01.{profile}.{level:02}{tier}.{depth:02}"))
}

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
                let dops = opus_head_to_dops(&head)?;
                let channels = dops.get(1).copied().unwrap_or(2);
                let info = TrackInfo {
                    id: AUDIO_TRACK,
                    codec: Codec::Opus,
                    timescale: Timescale::MILLIS,
                    config: dops,
                    codec_string: "opus".to_owned(),
                    params: TrackParams::Audio(AudioParams {
                        sample_rate: 48_000,
                        channels,
                        samples_per_frame: 960,
                    }),
                    bitrate: self.meta.audio_bitrate.filter(|b| *b > 0),
                };
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
                let s = av1_codec_string(&config)?;
                (Codec::Av1, s, 0, 0, None)
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

// ---- writing tag bodies (RTMP push) ---------------------------------------

/// The FLV video tag body announcing `track`'s configuration (AVC sequence
/// header for H.264; Enhanced RTMP `SequenceStart` with FourCC `hvc1` /
/// `av01` for H.265 / AV1).
pub fn video_sequence_header(track: &TrackInfo) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(track.config.len() + 8);
    match track.codec {
        Codec::H264 => out.extend_from_slice(&[0x17, 0x00, 0, 0, 0]),
        Codec::H265 => out.extend_from_slice(&[0x90, b'h', b'v', b'c', b'1']),
        Codec::Av1 => out.extend_from_slice(&[0x90, b'a', b'v', b'0', b'1']),
        other => {
            return Err(Error::InvalidArgument(format!(
                "{other:?} is not an FLV video codec"
            )));
        }
    }
    out.extend_from_slice(&track.config);
    Ok(out)
}

/// The FLV video tag body of one frame of `track` (composition time in ms
/// from the frame's pts - dts), appended to `out`.
pub fn write_video_tag(track: &TrackInfo, frame: &Frame, out: &mut Vec<u8>) -> Result<()> {
    let cts = ugc_core::time::rescale(
        frame.pts.saturating_sub(frame.dts),
        track.timescale,
        Timescale::MILLIS,
    )
    .clamp(-(1 << 23), (1 << 23) - 1) as i32;
    let cts = cts.to_be_bytes();
    let frame_type: u8 = if frame.keyframe { 1 } else { 2 };
    out.reserve(frame.data.len() + 8);
    match track.codec {
        Codec::H264 => {
            out.extend_from_slice(&[(frame_type << 4) | 7, 0x01, cts[1], cts[2], cts[3]]);
        }
        Codec::H265 => {
            // PacketType 1 = CodedFrames (with SI24 composition time).
            out.extend_from_slice(&[0x80 | (frame_type << 4) | 1, b'h', b'v', b'c', b'1']);
            out.extend_from_slice(&cts[1..]);
        }
        Codec::Av1 => {
            out.extend_from_slice(&[0x80 | (frame_type << 4) | 1, b'a', b'v', b'0', b'1']);
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "{other:?} is not an FLV video codec"
            )));
        }
    }
    out.extend_from_slice(&frame.data);
    Ok(())
}

/// The FLV audio tag body announcing an AAC track (AudioSpecificConfig).
pub fn audio_sequence_header(track: &TrackInfo) -> Result<Vec<u8>> {
    if track.codec != Codec::Aac {
        return Err(Error::InvalidArgument(format!(
            "{:?} is not pushed in FLV audio tags (AAC only)",
            track.codec
        )));
    }
    let mut out = Vec::with_capacity(track.config.len() + 2);
    out.extend_from_slice(&[0xaf, 0x00]);
    out.extend_from_slice(&track.config);
    Ok(out)
}

/// The FLV audio tag body of one raw AAC frame, appended to `out`.
pub fn write_audio_tag(frame: &Frame, out: &mut Vec<u8>) {
    out.reserve(frame.data.len() + 2);
    out.extend_from_slice(&[0xaf, 0x01]);
    out.extend_from_slice(&frame.data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h264::tests::X264_AVCC_320X240;
    use crate::hevc::tests::X265_HVCC_352X288;
    use proptest::prelude::*;
    use ugc_core::Rational;

    const ASC_LC_44K_MONO: &[u8] = &[0x12, 0x08];

    fn avc_seq(avcc: &[u8]) -> Bytes {
        let mut b = vec![0x17, 0, 0, 0, 0];
        b.extend_from_slice(avcc);
        Bytes::from(b)
    }
    fn avc_frame(key: bool, cts: i32, nal: &[u8]) -> Bytes {
        let c = cts.to_be_bytes();
        let mut b = vec![if key { 0x17 } else { 0x27 }, 1, c[1], c[2], c[3]];
        b.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        b.extend_from_slice(nal);
        Bytes::from(b)
    }
    fn aac_seq() -> Bytes {
        let mut b = vec![0xaf, 0];
        b.extend_from_slice(ASC_LC_44K_MONO);
        Bytes::from(b)
    }
    fn aac_frame() -> Bytes {
        Bytes::from_static(&[0xaf, 1, 0x21, 0x10, 0x04])
    }
    fn drain(i: &mut FlvIngest) -> Vec<MediaEvent> {
        std::iter::from_fn(|| i.poll_event()).collect()
    }

    #[test]
    fn legacy_avc_tags_parse_with_negative_composition_time() {
        let t = parse_video_tag(&avc_frame(false, -40, &[0x41, 0x9a])).unwrap();
        assert_eq!(t.frame_type, VideoFrameType::Inter);
        assert_eq!(t.codec, VideoCodec::Avc);
        match t.packet {
            VideoPacket::CodedFrames {
                composition_time,
                data,
            } => {
                assert_eq!(composition_time, -40);
                assert_eq!(&data[..], &[0, 0, 0, 2, 0x41, 0x9a]);
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn frames_before_sequence_header_are_dropped_and_counted() {
        let mut i = FlvIngest::new();
        i.push_video(0, avc_frame(true, 0, &[0x65, 1])).unwrap();
        i.push_audio(0, aac_frame()).unwrap();
        assert!(drain(&mut i).is_empty());
        assert_eq!(i.stats().dropped_before_header, 2);
    }

    #[test]
    fn tracks_wait_for_both_kinds_then_release_buffered_frames() {
        let mut i = FlvIngest::new();
        i.set_metadata(FlvMetadata {
            video_bitrate: Some(2_500_000),
            ..Default::default()
        });
        i.push_video(0, avc_seq(X264_AVCC_320X240)).unwrap();
        i.push_video(0, avc_frame(true, 66, &[0x65, 1])).unwrap();
        assert!(drain(&mut i).is_empty(), "waits for audio");
        i.push_audio(10, aac_seq()).unwrap();
        let ev = drain(&mut i);
        assert_eq!(ev.len(), 2);
        let MediaEvent::Tracks(t) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(t.len(), 2);
        assert_eq!(t.video().unwrap().bitrate, Some(2_500_000));
        let MediaEvent::Frame(f) = &ev[1] else {
            panic!("{ev:?}")
        };
        assert_eq!(
            (f.track, f.dts, f.pts, f.keyframe),
            (VIDEO_TRACK, 0, 66, true)
        );
        i.push_audio(20, aac_frame()).unwrap();
        assert!(matches!(&drain(&mut i)[..], [MediaEvent::Frame(f)] if f.track == AUDIO_TRACK));
    }

    #[test]
    fn metadata_without_audio_emits_at_once() {
        let mut i = FlvIngest::new();
        i.set_metadata(FlvMetadata {
            has_audio: Some(false),
            has_video: Some(true),
            ..Default::default()
        });
        i.push_video(0, avc_seq(X264_AVCC_320X240)).unwrap();
        let ev = drain(&mut i);
        assert!(matches!(&ev[..], [MediaEvent::Tracks(t)] if t.len() == 1));
    }

    #[test]
    fn missing_audio_is_given_up_after_two_seconds() {
        let mut i = FlvIngest::new();
        i.push_video(0, avc_seq(X264_AVCC_320X240)).unwrap();
        for n in 0..60 {
            i.push_video(n * 33, avc_frame(n % 30 == 0, 0, &[0x41, 1]))
                .unwrap();
            assert!(drain(&mut i).is_empty(), "frame {n}");
        }
        i.push_video(2000, avc_frame(false, 0, &[0x41, 1])).unwrap();
        let ev = drain(&mut i);
        assert!(matches!(&ev[0], MediaEvent::Tracks(t) if t.len() == 1));
        assert_eq!(ev.len(), 62);
    }

    #[test]
    fn finish_releases_buffered_frames() {
        let mut i = FlvIngest::new();
        i.push_audio(0, aac_seq()).unwrap();
        i.push_audio(0, aac_frame()).unwrap();
        assert!(drain(&mut i).is_empty());
        i.finish();
        assert_eq!(drain(&mut i).len(), 2);
    }

    #[test]
    fn sequence_header_change_emits_tracks_again() {
        let mut i = FlvIngest::new();
        i.set_metadata(FlvMetadata {
            has_audio: Some(false),
            ..Default::default()
        });
        i.push_video(0, avc_seq(X264_AVCC_320X240)).unwrap();
        i.push_video(0, avc_seq(X264_AVCC_320X240)).unwrap(); // repeat: ignored
        i.set_metadata(FlvMetadata {
            video_bitrate: Some(1),
            ..Default::default()
        }); // no re-announce
        assert_eq!(drain(&mut i).len(), 1);
        // avcC of ffmpeg 5.1 / libx264 ultrafast at 1280x720 (Constrained Baseline@3.1).
        let avcc: &[u8] = &[
            0x01, 0x42, 0xc0, 0x1f, 0xff, 0xe1, 0x00, 0x17, 0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01,
            0x40, 0x16, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0f, 0x03,
            0xc6, 0x0c, 0xa8, 0x01, 0x00, 0x04, 0x68, 0xce, 0x0f, 0xc8,
        ];
        let sps = &avcc[8..31];
        let rebuilt = crate::h264::build_avcc(&[sps], &[&avcc[34..]]).unwrap();
        assert_eq!(&rebuilt[..], avcc);
        i.push_video(40, avc_seq(avcc)).unwrap();
        let ev = drain(&mut i);
        let [MediaEvent::Tracks(t)] = &ev[..] else {
            panic!("{ev:?}")
        };
        let v = t.video().unwrap().video().unwrap();
        assert_eq!((v.width, v.height), (1280, 720));
        assert_eq!(i.stats().tracks_emitted, 2);
    }

    #[test]
    fn enhanced_hevc_sequence_start_and_coded_frames_x() {
        let mut seq = vec![0x90, b'h', b'v', b'c', b'1']; // ExHeader, key, SequenceStart
        seq.extend_from_slice(X265_HVCC_352X288);
        let mut i = FlvIngest::new();
        i.set_metadata(FlvMetadata {
            has_audio: Some(false),
            frame_rate_milli: Some(30_000),
            ..Default::default()
        });
        i.push_video(0, Bytes::from(seq)).unwrap();
        let ev = drain(&mut i);
        let [MediaEvent::Tracks(t)] = &ev[..] else {
            panic!("{ev:?}")
        };
        let v = t.video().unwrap();
        assert_eq!(v.codec, Codec::H265);
        assert_eq!(v.codec_string, "hvc1.1.6.L60.90");
        // The SPS's VUI timing info beats onMetaData's framerate.
        assert_eq!(v.video().unwrap().frame_rate, Some(Rational::new(25, 1)));
        // CodedFramesX: no composition time, pts == dts.
        i.push_video(
            40,
            Bytes::from_static(&[0x93, b'h', b'v', b'c', b'1', 0, 0, 0, 2, 0x26, 0x01]),
        )
        .unwrap();
        // CodedFrames with SI24 composition time 40.
        i.push_video(
            80,
            Bytes::from_static(&[
                0xa1, b'h', b'v', b'c', b'1', 0, 0, 40, 0, 0, 0, 2, 0x02, 0x01,
            ]),
        )
        .unwrap();
        // Empty frame: skipped.
        i.push_video(120, Bytes::from_static(&[0xa3, b'h', b'v', b'c', b'1']))
            .unwrap();
        let ev = drain(&mut i);
        let frames: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                MediaEvent::Frame(f) => Some(f),
                _ => None,
            })
            .collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(
            (frames[0].dts, frames[0].pts, frames[0].keyframe),
            (40, 40, true)
        );
        assert_eq!(
            (frames[1].dts, frames[1].pts, frames[1].keyframe),
            (80, 120, false)
        );
        assert_eq!(i.stats().empty_video_frames, 1);
    }

    #[test]
    fn enhanced_mod_ex_and_multitrack() {
        // ModEx (type 7) with 3 bytes of TimestampOffsetNano, then CodedFramesX.
        let body = Bytes::from_static(&[
            0x97, 2, 0, 0, 1, 0x03, b'a', b'v', b'c', b'1', 0, 0, 0, 1, 0x65,
        ]);
        let t = parse_video_tag(&body).unwrap();
        assert!(matches!(
            t.packet,
            VideoPacket::CodedFrames {
                composition_time: 0,
                ..
            }
        ));
        assert!(parse_video_tag(&Bytes::from_static(&[0x96, 0, b'a', b'v', b'c', b'1'])).is_err());
    }

    #[test]
    fn enhanced_opus_audio() {
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]);
        let mut body = vec![0x90, b'O', b'p', b'u', b's'];
        body.extend_from_slice(&head);
        let mut i = FlvIngest::new();
        i.set_metadata(FlvMetadata {
            has_video: Some(false),
            ..Default::default()
        });
        i.push_audio(0, Bytes::from(body)).unwrap();
        let ev = drain(&mut i);
        let [MediaEvent::Tracks(t)] = &ev[..] else {
            panic!("{ev:?}")
        };
        let a = t.audio().unwrap();
        assert_eq!(a.codec, Codec::Opus);
        assert_eq!(
            &a.config[..],
            &[0, 2, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0]
        );
    }

    #[test]
    fn unsupported_codecs_are_errors_not_state_changes() {
        let mut i = FlvIngest::new();
        assert!(
            i.push_audio(0, Bytes::from_static(&[0x2f, 0xff, 0xfb]))
                .is_err()
        ); // MP3
        assert!(i.push_video(0, Bytes::from_static(&[0x12, 0, 0])).is_err()); // Sorenson
        assert!(drain(&mut i).is_empty());
    }

    proptest! {
        #[test]
        fn ingest_never_panics_on_arbitrary_tags(tags in proptest::collection::vec(
            (any::<bool>(), -5_000i64..5_000, proptest::collection::vec(any::<u8>(), 0..48)), 0..40)) {
            let mut i = FlvIngest::new();
            i.push_video(0, avc_seq(X264_AVCC_320X240)).unwrap();
            for (audio, ts, body) in tags {
                let body = Bytes::from(body);
                let _ = if audio { i.push_audio(ts, body) } else { i.push_video(ts, body) };
                while let Some(ev) = i.poll_event() {
                    if let MediaEvent::Frame(f) = ev {
                        prop_assert!(f.track == VIDEO_TRACK || f.track == AUDIO_TRACK);
                    }
                }
            }
            i.finish();
            let _ = drain(&mut i);
        }

        #[test]
        fn valid_tags_cut_anywhere_never_panic(cut in 0usize..60, which in 0usize..4) {
            let bodies = [avc_seq(X264_AVCC_320X240), avc_frame(true, 3, &[0x65, 1, 2]), aac_seq(), aac_frame()];
            let b = &bodies[which];
            let b = b.slice(..cut.min(b.len()));
            let mut i = FlvIngest::new();
            let _ = i.push_video(0, b.clone());
            let _ = i.push_audio(0, b);
            i.finish();
            let _ = drain(&mut i);
        }
    }

    #[test]
    fn written_tags_parse_back() {
        use ugc_core::hub::tests_support::av_tracks;
        let tracks = av_tracks();
        let v = tracks.video().unwrap();
        let hdr = Bytes::from(video_sequence_header(v).unwrap());
        let tag = parse_video_tag(&hdr).unwrap();
        assert!(matches!(tag.packet, VideoPacket::SequenceHeader(c) if c == v.config));
        let f = Frame {
            track: v.id,
            dts: 1000,
            pts: 1066,
            keyframe: true,
            data: Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]),
        };
        let mut out = Vec::new();
        write_video_tag(v, &f, &mut out).unwrap();
        let tag = parse_video_tag(&Bytes::from(out)).unwrap();
        assert!(tag.frame_type.is_key());
        match tag.packet {
            VideoPacket::CodedFrames {
                composition_time,
                data,
            } => {
                assert_eq!(composition_time, 66);
                assert_eq!(data, f.data);
            }
            other => panic!("{other:?}"),
        }
        // HEVC goes out as Enhanced RTMP.
        let mut h = v.clone();
        h.codec = Codec::H265;
        let mut out = Vec::new();
        write_video_tag(&h, &f, &mut out).unwrap();
        let tag = parse_video_tag(&Bytes::from(out)).unwrap();
        assert!(matches!(tag.codec, VideoCodec::Hevc));
        let a = tracks.audio().unwrap();
        let hdr = Bytes::from(audio_sequence_header(a).unwrap());
        assert!(
            matches!(parse_audio_tag(&hdr).unwrap().packet, AudioPacket::SequenceHeader(c) if c == a.config)
        );
    }
}
