//! Muxing throughput: CMAF fragments and MPEG-TS segments of a synthetic
//! 1080p-ish 4 Mbit/s H.264 GOP (2 s, 30 fps) + 128 kbit/s AAC, and the FLV
//! ingest of the real ffmpeg capture in `crates/ugc-codec/tests/data`.
//!
//! Run quickly: `cargo bench -p ugc-benches --bench mux -- --quick`

#![allow(clippy::unwrap_used)]

#[path = "../../crates/ugc-codec/tests/support/flv_file.rs"]
mod flv_file;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ugc_codec::flv::{AUDIO_TRACK, FlvIngest, VIDEO_TRACK};
use ugc_codec::fmp4::{self, Sample, TrackFragment};
use ugc_codec::ts::TsMuxer;
use ugc_core::{
    AudioParams, Codec, Frame, Rational, Timescale, TrackInfo, TrackParams, Tracks, VideoParams,
};

const AVCC: &[u8] = &[
    0x01, 0x64, 0x00, 0x0d, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41,
    0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99,
    0x60, 0x01, 0x00, 0x04, 0x68, 0xef, 0xbc, 0xb0, 0xfd, 0xf8, 0xf8, 0x00,
];

fn tracks() -> Tracks {
    Tracks::new(vec![
        TrackInfo {
            id: VIDEO_TRACK,
            codec: Codec::H264,
            timescale: Timescale::MILLIS,
            config: Bytes::from_static(AVCC),
            codec_string: "avc1.64000d".into(),
            params: TrackParams::Video(VideoParams {
                width: 1920,
                height: 1080,
                frame_rate: Some(Rational::new(30, 1)),
            }),
            bitrate: Some(4_000_000),
        },
        TrackInfo {
            id: AUDIO_TRACK,
            codec: Codec::Aac,
            timescale: Timescale::MILLIS,
            config: Bytes::from_static(&[0x11, 0x90]),
            codec_string: "mp4a.40.2".into(),
            params: TrackParams::Audio(AudioParams {
                sample_rate: 48_000,
                channels: 2,
                samples_per_frame: 1024,
            }),
            bitrate: Some(128_000),
        },
    ])
}

/// One 2 s GOP: a ~120 KB IDR then 59 ~14 KB frames (~4 Mbit/s), each one
/// length-prefixed slice NAL, plus 94 AAC frames of ~340 bytes.
fn gop() -> Vec<Frame> {
    let mut frames = Vec::new();
    let nal = |ty: u8, len: usize| {
        let mut v = Vec::with_capacity(len + 4);
        v.extend_from_slice(&(len as u32).to_be_bytes());
        v.push(ty);
        v.extend((1..len).map(|i| (i * 7 + 11) as u8 | 0x10));
        Bytes::from(v)
    };
    for i in 0..60i64 {
        let key = i == 0;
        frames.push(Frame {
            track: VIDEO_TRACK,
            dts: i * 1000 / 30,
            pts: i * 1000 / 30 + 66,
            keyframe: key,
            data: nal(
                if key { 0x65 } else { 0x41 },
                if key { 120_000 } else { 14_000 },
            ),
        });
    }
    for i in 0..94i64 {
        frames.push(Frame {
            track: AUDIO_TRACK,
            dts: i * 1024 * 1000 / 48_000,
            pts: i * 1024 * 1000 / 48_000,
            keyframe: true,
            data: Bytes::from(vec![0x21u8; 340]),
        });
    }
    frames.sort_by_key(|f| f.dts);
    frames
}

fn bench_mux(c: &mut Criterion) {
    let tracks = tracks();
    let frames = gop();
    let payload: u64 = frames.iter().map(|f| f.data.len() as u64).sum();
    let vsamples: Vec<Sample> = frames
        .iter()
        .filter(|f| f.track == VIDEO_TRACK)
        .map(|f| Sample {
            duration: 3000,
            cts_offset: ((f.pts - f.dts) * 90) as i32,
            keyframe: f.keyframe,
            data: f.data.clone(),
        })
        .collect();
    let asamples: Vec<Sample> = frames
        .iter()
        .filter(|f| f.track == AUDIO_TRACK)
        .map(|f| Sample {
            duration: 1024,
            cts_offset: 0,
            keyframe: true,
            data: f.data.clone(),
        })
        .collect();

    let mut g = c.benchmark_group("mux");
    g.throughput(Throughput::Bytes(payload));
    g.bench_function("fmp4_fragment_2s_gop_4mbps", |b| {
        b.iter(|| {
            fmp4::fragment(
                1,
                &[
                    TrackFragment {
                        track: VIDEO_TRACK,
                        base_decode_time: 0,
                        samples: &vsamples,
                    },
                    TrackFragment {
                        track: AUDIO_TRACK,
                        base_decode_time: 0,
                        samples: &asamples,
                    },
                ],
            )
            .unwrap()
        })
    });
    // LL-HLS style: one fragment per video frame.
    g.bench_function("fmp4_fragment_per_frame", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for (i, s) in vsamples.iter().enumerate() {
                let f = fmp4::fragment(
                    i as u32,
                    &[TrackFragment {
                        track: VIDEO_TRACK,
                        base_decode_time: i as u64 * 3000,
                        samples: std::slice::from_ref(s),
                    }],
                )
                .unwrap();
                n += f.len();
            }
            for (i, s) in asamples.iter().enumerate() {
                let f = fmp4::fragment(
                    i as u32,
                    &[TrackFragment {
                        track: AUDIO_TRACK,
                        base_decode_time: i as u64 * 1024,
                        samples: std::slice::from_ref(s),
                    }],
                )
                .unwrap();
                n += f.len();
            }
            n
        })
    });
    let mut ts = TsMuxer::new(&tracks).unwrap();
    g.bench_function("ts_segment_2s_gop_4mbps", |b| {
        b.iter(|| ts.write_segment(&frames).unwrap())
    });
    // What every closed segment costs when nobody watches MPEG-TS: its
    // continuity counters, counted without muxing.
    g.bench_function("ts_advance_2s_gop_4mbps", |b| {
        b.iter(|| {
            ts.advance_segment(&frames);
            ts.continuity()
        })
    });
    g.finish();

    // FLV ingest of the real capture (tag parsing + FlvIngest).
    let file = Bytes::from(
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crates/ugc-codec/tests/data/ffmpeg51_libx264_aac_320x240_2s.flv"
        ))
        .unwrap(),
    );
    let tags = flv_file::read_flv(&file);
    let bytes: u64 = tags.iter().map(|t| t.body.len() as u64).sum();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("flv_ingest_ffmpeg_capture", |b| {
        b.iter(|| {
            let mut ingest = FlvIngest::new();
            let mut n = 0usize;
            for t in &tags {
                let ts = i64::from(t.timestamp);
                let _ = match t.tag_type {
                    8 => ingest.push_audio(ts, t.body.clone()),
                    9 => ingest.push_video(ts, t.body.clone()),
                    _ => Ok(()),
                };
                while ingest.poll_event().is_some() {
                    n += 1;
                }
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench_mux);
criterion_main!(benches);
