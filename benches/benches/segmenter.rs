//! Frames -> segments, including the fMP4 mux: 10 s of a 720p30 A/V stream
//! (about 4 Mbit/s video in 2 s GOPs, AAC 44.1 kHz) through the segmenter.
#![allow(missing_docs, clippy::unwrap_used)]

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ugc_core::{Frame, MediaEvent, TrackId};
use ugc_dvr::{Segmenter, SegmenterConfig, SegmenterOutput};

fn stream() -> (Vec<MediaEvent>, u64) {
    let mut events = vec![MediaEvent::Tracks(ugc_core::hub::tests_support::av_tracks())];
    let key = Bytes::from(vec![0x65u8; 120_000]);
    let delta = Bytes::from(vec![0x41u8; 14_000]);
    let aac = Bytes::from(vec![0x21u8; 370]);
    let mut bytes = 0u64;
    let mut next_audio = 0i64;
    for i in 0..300i64 {
        let t = i * 1000 / 30;
        let data = if i % 60 == 0 {
            key.clone()
        } else {
            delta.clone()
        };
        bytes += data.len() as u64;
        events.push(MediaEvent::Frame(Frame {
            track: TrackId(1),
            dts: t,
            pts: t + 66,
            keyframe: i % 60 == 0,
            data,
        }));
        while next_audio * 1024 * 1000 / 44_100 < t + 33 {
            bytes += aac.len() as u64;
            let at = next_audio * 1024 * 1000 / 44_100;
            events.push(MediaEvent::Frame(Frame {
                track: TrackId(2),
                dts: at,
                pts: at,
                keyframe: true,
                data: aac.clone(),
            }));
            next_audio += 1;
        }
    }
    events.push(MediaEvent::End);
    (events, bytes)
}

fn segment(c: &mut Criterion) {
    let (events, bytes) = stream();
    let mut g = c.benchmark_group("segmenter");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("av_720p_10s_fmp4", |b| {
        b.iter(|| {
            let mut s = Segmenter::new(SegmenterConfig::default());
            let mut n = 0usize;
            for e in events.iter().cloned() {
                s.push(e, 0).unwrap();
                while let Some(o) = s.poll() {
                    if let SegmenterOutput::Segment(seg) = o {
                        n += seg.data.len();
                    }
                }
            }
            n
        })
    });
    g.bench_function("av_720p_10s_fmp4_with_parts", |b| {
        b.iter(|| {
            let mut s = Segmenter::new(SegmenterConfig {
                target_duration_ms: 2000,
                part_target_ms: Some(500),
                ..Default::default()
            });
            let mut n = 0usize;
            for e in events.iter().cloned() {
                s.push(e, 0).unwrap();
                while let Some(o) = s.poll() {
                    if let SegmenterOutput::Segment(seg) = o {
                        n += seg.data.len();
                    }
                }
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, segment);
criterion_main!(benches);
