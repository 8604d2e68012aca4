//! Audio tag bodies: legacy AAC (sound format 10) and Enhanced RTMP audio
//! (ExAudioTagHeader with a FourCC: `mp4a`, `Opus`; ModEx, multitrack),
//! and the Opus `OpusHead` -> `dOps` conversion.

use bytes::Bytes;

use super::{FourCc, SOUND_FORMAT_AAC, SOUND_FORMAT_EX_HEADER};
use crate::error::{Error, Reader, Result};

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
pub(super) fn skip_mod_ex(r: &mut Reader<'_>, mut packet_type: u8) -> Result<u8> {
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
    pub(super) const WHAT: &str = "FLV audio tag";
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
    pub(super) const WHAT: &str = "OpusHead";
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
