//! Opus tracks as ISO BMFF carries them (the `dOps` box body, "Encapsulation
//! of Opus in ISO Base Media File Format" 4.3.2), for every ingest that
//! takes Opus: FLV's Enhanced RTMP (`OpusHead` converted by
//! [`crate::flv::opus_head_to_dops`]) and WebRTC (RTP carries no header:
//! [`dops`] makes one).

use bytes::Bytes;
use ugc_core::{AudioParams, Codec, Timescale, TrackId, TrackInfo, TrackParams};

/// The samples of one 20 ms frame at 48 kHz, what encoders send live.
pub const SAMPLES_PER_FRAME: u32 = 960;

/// A `dOps` body for `channels` channels as WebRTC sends them: version 0,
/// no pre-skip (RTP carries none), 48 kHz input, no output gain, mapping
/// family 0 (mono or stereo).
pub fn dops(channels: u8) -> Bytes {
    let mut d = vec![0u8, channels];
    d.extend_from_slice(&0u16.to_be_bytes());
    d.extend_from_slice(&48_000u32.to_be_bytes());
    d.extend_from_slice(&0i16.to_be_bytes());
    d.push(0);
    Bytes::from(d)
}

/// The Opus track `id` on `timescale` with the `dOps` body `dops` (its
/// channel count is the track's; 2 if the body is too short to say).
/// Opus always decodes at 48 kHz, whatever the input rate in `dOps`.
pub fn track(id: TrackId, timescale: Timescale, dops: Bytes, bitrate: Option<u32>) -> TrackInfo {
    let channels = dops.get(1).copied().unwrap_or(2);
    TrackInfo {
        id,
        codec: Codec::Opus,
        timescale,
        config: dops,
        codec_string: "opus".to_owned(),
        params: TrackParams::Audio(AudioParams {
            sample_rate: 48_000,
            channels,
            samples_per_frame: SAMPLES_PER_FRAME,
        }),
        bitrate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webrtc_stereo_track() {
        let t = track(TrackId(2), Timescale::new(48_000).unwrap(), dops(2), None);
        assert_eq!(&t.config[..], &[0, 2, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 0]);
        let a = t.audio().unwrap();
        assert_eq!(
            (a.channels, a.sample_rate, a.samples_per_frame),
            (2, 48_000, 960)
        );
        assert_eq!(t.codec_string, "opus");
    }
}
