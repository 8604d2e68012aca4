//! Helpers shared by the ugc-dvr integration tests.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use ugc_core::{Frame, MediaEvent, TrackId, Tracks};
use ugc_dvr::{Segment, Segmenter, SegmenterConfig, SegmenterOutput};

pub const T0: i64 = 1_795_681_772_000;

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
    }
}

/// 25 fps video (40 ms) with a keyframe every `gop` frames, `n` frames.
pub fn video_events(n: i64, gop: i64) -> Vec<MediaEvent> {
    (0..n).map(|i| v(i * 40, i % gop == 0)).collect()
}
