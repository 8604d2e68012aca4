//! The video elementary stream layer: H.264 / H.265 Annex B access units
//! into length-prefixed frames, with the `avcC` / `hvcC` built from the
//! in-band parameter sets (taken out of the frames).

use bytes::Bytes;
use ugc_core::{Codec, Frame, MediaKind, Timescale, TrackInfo, TrackParams, VideoParams};

use super::psi::EsKind;
use super::{TsDemuxer, VIDEO_TRACK};
use crate::h264;
use crate::hevc::{self, HevcConfig};

/// Video elementary stream state.
#[derive(Debug, Default)]
pub(super) struct VideoState {
    vps: Option<Bytes>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    /// The access unit in progress (`pts`, `dts`, length-prefixed data).
    au: Option<(i64, i64, Vec<u8>, bool)>,
}

impl TsDemuxer {
    pub(super) fn video_pes_data(
        &mut self,
        kind: EsKind,
        pts: Option<i64>,
        dts: Option<i64>,
        data: &[u8],
    ) {
        if let Some(pts) = pts {
            // A PES with a PTS starts a new access unit.
            self.flush_au();
            self.video.au = Some((
                pts,
                dts.unwrap_or(pts),
                Vec::with_capacity(data.len() + 16),
                false,
            ));
        } else if self.video.au.is_none() {
            self.stats.dropped_frames += 1;
            return;
        }
        let mut config_changed = false;
        let mut key = false;
        let mut nals: Vec<&[u8]> = Vec::new();
        for_each_nal(data, |nal| nals.push(nal));
        for nal in nals {
            match kind {
                EsKind::H264 => match h264::nal_type(nal) {
                    Some(h264::NAL_SPS) => config_changed |= set_ps(&mut self.video.sps, nal),
                    Some(h264::NAL_PPS) => config_changed |= set_ps(&mut self.video.pps, nal),
                    Some(h264::NAL_AUD) | Some(12) => {}
                    Some(t) => {
                        key |= t == h264::NAL_IDR;
                        self.append_nal(nal);
                    }
                    None => {}
                },
                _ => match hevc::nal_type(nal) {
                    Some(hevc::NAL_VPS) => config_changed |= set_ps(&mut self.video.vps, nal),
                    Some(hevc::NAL_SPS) => config_changed |= set_ps(&mut self.video.sps, nal),
                    Some(hevc::NAL_PPS) => config_changed |= set_ps(&mut self.video.pps, nal),
                    Some(hevc::NAL_AUD) | Some(38) => {}
                    Some(t) => {
                        key |= hevc::is_irap_type(t);
                        self.append_nal(nal);
                    }
                    None => {}
                },
            }
        }
        if let Some(au) = self.video.au.as_mut() {
            au.3 |= key;
        }
        if config_changed {
            self.video_config(kind);
        }
    }

    fn append_nal(&mut self, nal: &[u8]) {
        if let Some((_, _, buf, _)) = self.video.au.as_mut() {
            // NAL units come out of PES payloads, far below 4 GiB.
            let len = u32::try_from(nal.len()).unwrap_or(u32::MAX);
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(nal);
        }
    }

    fn video_config(&mut self, kind: EsKind) {
        let (Some(sps), Some(pps)) = (self.video.sps.clone(), self.video.pps.clone()) else {
            return;
        };
        let info = match kind {
            EsKind::H264 => {
                let Ok(info) = h264::track_from_parameter_sets(VIDEO_TRACK, &sps, &pps) else {
                    return;
                };
                info
            }
            _ => {
                let Some(vps) = self.video.vps.clone() else {
                    return;
                };
                let Ok(rec) = hevc::build_hvcc(&[&vps], &[&sps], &[&pps]) else {
                    return;
                };
                let config = Bytes::from(rec);
                let Ok(c) = HevcConfig::parse(&config) else {
                    return;
                };
                TrackInfo {
                    id: VIDEO_TRACK,
                    codec: Codec::H265,
                    timescale: Timescale::MPEG,
                    codec_string: c.codec_string(),
                    params: TrackParams::Video(VideoParams {
                        width: c.width,
                        height: c.height,
                        frame_rate: c.frame_rate,
                    }),
                    config,
                    bitrate: None,
                }
            }
        };
        if self.video_track.as_ref() != Some(&info) {
            self.video_track = Some(info);
            self.announce();
        }
    }

    pub(super) fn flush_au(&mut self) {
        let Some((pts, dts, data, key)) = self.video.au.take() else {
            return;
        };
        if data.is_empty() {
            return;
        }
        self.stats.video_frames += 1;
        self.push_frame(
            MediaKind::Video,
            Frame {
                track: VIDEO_TRACK,
                dts,
                pts,
                keyframe: key,
                data: Bytes::from(data),
            },
        );
    }
}

fn set_ps(slot: &mut Option<Bytes>, nal: &[u8]) -> bool {
    if slot.as_deref() == Some(nal) {
        return false;
    }
    *slot = Some(Bytes::copy_from_slice(nal));
    true
}
/// Calls `f` with every NAL unit of an Annex B byte stream (without start
/// codes and trailing zero bytes).
fn for_each_nal<'a>(data: &'a [u8], mut f: impl FnMut(&'a [u8])) {
    let mut start: Option<usize> = None;
    let mut i = 0usize;
    let n = data.len();
    while i + 2 < n {
        // Find the next 0x01 quickly, then look back for 00 00.
        let Some(off) = memchr::memchr(1, &data[i + 2..]) else {
            break;
        };
        let one = i + 2 + off;
        if data[one - 1] == 0 && data[one - 2] == 0 {
            if let Some(s) = start {
                emit_nal(&data[s..one - 2], &mut f);
            }
            start = Some(one + 1);
            i = one + 1;
        } else {
            i = one + 1;
        }
    }
    if let Some(s) = start
        && let Some(tail) = data.get(s..)
    {
        emit_nal(tail, &mut f);
    }
}

fn emit_nal<'a>(mut nal: &'a [u8], f: &mut impl FnMut(&'a [u8])) {
    while let [rest @ .., 0] = nal {
        nal = rest;
    }
    if !nal.is_empty() {
        f(nal);
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nal_scan_handles_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 9, 0xf0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3,
        ];
        let mut v = Vec::new();
        for_each_nal(&data, |n| v.push(n.to_vec()));
        assert_eq!(v, vec![vec![9, 0xf0], vec![0x67, 1, 2], vec![0x68, 3]]);
    }
}
