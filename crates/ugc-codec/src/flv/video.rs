//! Video tag bodies: legacy AVC (codec id 7) and Enhanced RTMP video
//! (ExVideoTagHeader with a FourCC: `avc1`, `hvc1`, `av01`; ModEx,
//! multitrack).

use bytes::Bytes;

use super::audio::skip_mod_ex;
use super::{FourCc, VIDEO_CODEC_AVC};
use crate::error::{Error, Reader, Result};

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
    pub(super) const WHAT: &str = "FLV video tag";
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
