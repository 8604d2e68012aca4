//! Helpers shared by the ugc-dvr integration tests.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use ugc_core::{Frame, MediaEvent, TrackId, Tracks};
use ugc_dvr::{Segment, Segmenter, SegmenterConfig, SegmenterOutput};

pub const T0: i64 = 1_795_681_772_000;

/// A stream path from a test literal.
pub fn path(s: &str) -> ugc_core::StreamPath {
    ugc_core::StreamPath::parse(s).unwrap()
}

pub fn av() -> Tracks {
    ugc_core::hub::tests_support::av_tracks()
}

pub fn audio_only() -> Tracks {
    Tracks::new(
        av().iter()
            .filter(|t| t.id == TrackId(2))
            .cloned()
            .collect(),
    )
}

pub fn video_only() -> Tracks {
    Tracks::new(
        av().iter()
            .filter(|t| t.id == TrackId(1))
            .cloned()
            .collect(),
    )
}

/// A frame whose payload encodes its track and dts, so tests can tell
/// frames apart.
pub fn frame(track: u32, dts: i64, key: bool) -> Frame {
    let mut data = track.to_be_bytes().to_vec();
    data.extend_from_slice(&dts.to_be_bytes());
    Frame {
        track: TrackId(track),
        dts,
        pts: dts.saturating_add(if track == 1 { 40 } else { 0 }),
        keyframe: key,
        data: Bytes::from(data),
    }
}

pub fn v(dts: i64, key: bool) -> MediaEvent {
    MediaEvent::Frame(frame(1, dts, key))
}

pub fn a(dts: i64) -> MediaEvent {
    MediaEvent::Frame(frame(2, dts, true))
}

/// Pushes every event (wall clock = T0 + index * 10 ms) and collects outputs.
pub fn run(config: SegmenterConfig, events: Vec<MediaEvent>) -> Vec<SegmenterOutput> {
    let mut s = Segmenter::new(config);
    let mut out = Vec::new();
    for (i, e) in events.into_iter().enumerate() {
        s.push(e, T0 + i as i64 * 10).expect("push");
        while let Some(o) = s.poll() {
            out.push(o);
        }
    }
    out
}

pub fn segments(out: &[SegmenterOutput]) -> Vec<Arc<Segment>> {
    out.iter()
        .filter_map(|o| match o {
            SegmenterOutput::Segment(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

pub fn config(target_ms: u32) -> SegmenterConfig {
    SegmenterConfig {
        target_duration_ms: target_ms,
        part_target_ms: None,
        ..Default::default()
    }
}

/// 25 fps video (40 ms) with a keyframe every `gop` frames, `n` frames.
pub fn video_events(n: i64, gop: i64) -> Vec<MediaEvent> {
    (0..n).map(|i| v(i * 40, i % gop == 0)).collect()
}

/// One `traf` of a CMAF fragment: its track, `tfdt` and per sample
/// (duration, composition offset), read by walking the boxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRun {
    pub track: u32,
    pub base: u64,
    pub samples: Vec<(u32, i32)>,
}

/// Every `traf` of the `moof`s of a CMAF byte string, in order.
pub fn track_runs(data: &[u8]) -> Vec<TrackRun> {
    fn boxes(b: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= b.len() {
            let size = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            let kind: [u8; 4] = b[at + 4..at + 8].try_into().unwrap();
            assert!(
                size >= 8 && at + size <= b.len(),
                "box {kind:?} size {size}"
            );
            out.push((kind, &b[at + 8..at + size]));
            at += size;
        }
        out
    }
    let u32_at = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    let mut runs = Vec::new();
    for (kind, moof) in boxes(data) {
        if &kind != b"moof" {
            continue;
        }
        for (kind, traf) in boxes(moof) {
            if &kind != b"traf" {
                continue;
            }
            let children = boxes(traf);
            let find = |k: &[u8; 4]| children.iter().find(|(c, _)| c == k).unwrap().1;
            let track = u32_at(find(b"tfhd"), 4);
            let tfdt = find(b"tfdt");
            let base = if tfdt[0] == 1 {
                u64::from_be_bytes(tfdt[4..12].try_into().unwrap())
            } else {
                u64::from(u32_at(tfdt, 4))
            };
            let trun = find(b"trun");
            let flags = u32_at(trun, 0) & 0xff_ffff;
            let count = u32_at(trun, 4) as usize;
            assert!(flags & 0x100 != 0, "trun carries durations");
            let mut at = 8;
            if flags & 0x1 != 0 {
                at += 4;
            }
            if flags & 0x4 != 0 {
                at += 4;
            }
            let fields = [0x100, 0x200, 0x400, 0x800];
            let per = fields.iter().filter(|f| flags & **f != 0).count() * 4;
            // Offset of the composition offset within a sample record.
            let cts_at = (flags & 0x800 != 0)
                .then(|| fields[..3].iter().filter(|f| flags & **f != 0).count() * 4);
            let samples = (0..count)
                .map(|i| {
                    let rec = at + i * per;
                    let cts = cts_at.map_or(0, |o| u32_at(trun, rec + o) as i32);
                    (u32_at(trun, rec), cts)
                })
                .collect();
            runs.push(TrackRun {
                track,
                base,
                samples,
            });
        }
    }
    runs
}
