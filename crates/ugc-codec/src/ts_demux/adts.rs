//! The audio elementary stream layer: AAC in ADTS into raw frames, with
//! the AudioSpecificConfig derived from the ADTS header and timestamps
//! for the frames a PES carries after its first.

use bytes::Bytes;
use ugc_core::{
    AudioParams, Codec, Frame, MediaKind, Timescale, TrackInfo, TrackParams, time::rescale,
};

use super::{AUDIO_TRACK, TsDemuxer};
use crate::aac::{Asc, parse_adts};

/// Audio elementary stream state.
#[derive(Debug, Default)]
pub(super) struct AudioState {
    /// ADTS bytes of a frame cut by the end of a PES.
    carry: Vec<u8>,
    /// Where the next frame's PTS would be (audio timescale).
    next_pts: Option<i64>,
    asc_key: Option<(u8, u8, u8)>,
}

impl TsDemuxer {
    pub(super) fn audio_pes_data(&mut self, pts90: Option<i64>, data: &Bytes) {
        let mut carry = std::mem::take(&mut self.audio.carry);
        let carried = carry.len();
        // Frames cut by a PES boundary are joined (rare; ffmpeg never does it).
        let joined: Bytes = if carried == 0 {
            data.clone()
        } else {
            carry.extend_from_slice(data);
            Bytes::from(std::mem::take(&mut carry))
        };
        let mut pos = 0usize;
        let mut pes_pts_used = false;
        while pos < joined.len() {
            let rest = &joined[pos..];
            let h = match parse_adts(rest) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    self.audio.carry = rest.to_vec();
                    break;
                }
                Err(_) => {
                    // Lost ADTS sync: look for the next syncword.
                    self.stats.dropped_frames += 1;
                    match rest.get(1..).and_then(|r| {
                        r.windows(2)
                            .position(|w| w[0] == 0xff && w[1] & 0xf0 == 0xf0)
                    }) {
                        Some(off) => {
                            pos += 1 + off;
                            continue;
                        }
                        None => break,
                    }
                }
            };
            let header_len = if rest[1] & 0x01 == 0 { 9 } else { 7 };
            let frame_len = header_len + h.payload_len;
            if rest.len() < frame_len {
                if rest.len() > 8191 {
                    break;
                }
                self.audio.carry = rest.to_vec();
                break;
            }
            let key = (
                h.audio_object_type,
                h.sampling_frequency_index,
                h.channel_configuration,
            );
            if self.audio.asc_key != Some(key) && !self.audio_config(key) {
                self.stats.dropped_frames += 1;
                pos += frame_len;
                continue;
            }
            let Some(track) = self.audio_track.as_ref() else {
                pos += frame_len;
                continue;
            };
            let rate = track.timescale;
            let spf = i64::from(track.audio().map_or(1024, |a| a.samples_per_frame));
            // The PES timestamp belongs to the first frame that starts in it.
            let pts = match (pts90, pes_pts_used || pos < carried) {
                (Some(p), false) => {
                    pes_pts_used = true;
                    rescale(p, Timescale::MPEG, rate)
                }
                _ => match self.audio.next_pts {
                    Some(n) => n,
                    None => {
                        self.stats.dropped_frames += 1;
                        pos += frame_len;
                        continue;
                    }
                },
            };
            self.audio.next_pts = Some(pts.saturating_add(spf));
            let raw = joined.slice(pos + header_len..pos + frame_len);
            pos += frame_len;
            if raw.is_empty() {
                continue;
            }
            self.stats.audio_frames += 1;
            self.push_frame(
                MediaKind::Audio,
                Frame {
                    track: AUDIO_TRACK,
                    dts: pts,
                    pts,
                    keyframe: true,
                    data: raw,
                },
            );
        }
    }

    /// Derives the AudioSpecificConfig of an ADTS header; false if unusable.
    fn audio_config(&mut self, (aot, sfi, ch): (u8, u8, u8)) -> bool {
        let v: u16 = (u16::from(aot & 0x1f) << 11)
            | (u16::from(sfi & 0x0f) << 7)
            | (u16::from(ch & 0x0f) << 3);
        let config = Bytes::copy_from_slice(&v.to_be_bytes());
        let Ok(asc) = Asc::parse(&config) else {
            return false;
        };
        let Some(rate) = Timescale::new(asc.sample_rate()) else {
            return false;
        };
        self.audio.asc_key = Some((aot, sfi, ch));
        self.audio.next_pts = None;
        let info = TrackInfo {
            id: AUDIO_TRACK,
            codec: Codec::Aac,
            timescale: rate,
            codec_string: asc.codec_string(),
            params: TrackParams::Audio(AudioParams {
                sample_rate: asc.sample_rate(),
                channels: asc.channels(),
                samples_per_frame: asc.samples_per_frame(),
            }),
            config,
            bitrate: None,
        };
        if self.audio_track.as_ref() != Some(&info) {
            self.audio_track = Some(info);
            self.announce();
        }
        true
    }
}
