//! Writing tag bodies (RTMP push): sequence headers and coded frames,
//! legacy for H.264/AAC, Enhanced RTMP for the other codecs.

use ugc_core::{Codec, Frame, Timescale, TrackInfo};

use crate::error::{Error, Result};

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
