//! MPEG-TS demux throughput (the SRT ingest path): bytes in 1316-byte reads
//! (seven TS packets, one SRT payload) through `TsDemuxer`, events drained.
//!
//! * `ffmpeg_320x240_300k`: the real ffmpeg 5.1 capture in
//!   `crates/ugc-codec/tests/data` (small frames, so header-heavy).
//! * `muxed_4mbps_gop`: a 2 s 4 Mbit/s H.264 + AAC GOP written by our
//!   `TsMuxer` (typical contribution bitrate; in-band SPS/PPS).
//!
//! Run quickly: `cargo bench -p ugc-benches --bench ts_demux -- --quick`

#![allow(clippy::unwrap_used, missing_docs)]

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use ugc_codec::flv::{AUDIO_TRACK, VIDEO_TRACK};
use ugc_codec::ts::TsMuxer;
use ugc_codec::ts_demux::TsDemuxer;
use ugc_core::{
    AudioParams, Codec, Frame, MediaEvent, Rational, Timescale, TrackInfo, TrackParams, Tracks,
    VideoParams,
};

const CAPTURE: &[u8] =
    include_bytes!("../../crates/ugc-codec/tests/data/ffmpeg51_libx264_aac_320x240_1s.ts");
const READ: usize = 1316;

const AVCC: &[u8] = &[
    0x01, 0x64, 0x00, 0x0d, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41,
    0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99,
    0x60, 0x01, 0x00, 0x04, 0x68, 0xef, 0xbc, 0xb0, 0xfd, 0xf8, 0xf8, 0x00,
];

fn muxed_gop() -> Vec<u8> {
    let tracks = Tracks::new(vec![
        TrackInfo {
            id: VIDEO_TRACK,
            codec: Codec::H264,
            timescale: Timescale::MILLIS,
            config: Bytes::from_static(AVCC),
            codec_string: "avc1.64000d".into(),
            params: TrackParams::Video(VideoParams {
                width: 320,
                height: 240,
                frame_rate: Some(Rational::new(30, 1)),
            }),
            bitrate: None,
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
            bitrate: None,
        },
    ]);
    let nal = |ty: u8, len: usize| {
        let mut v = Vec::with_capacity(len + 4);
        v.extend_from_slice(&(len as u32).to_be_bytes());
        v.push(ty);
        v.extend((1..len).map(|i| (i * 7 + 11) as u8 | 0x10));
        Bytes::from(v)
    };
    let mut frames = Vec::new();
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
    TsMuxer::new(&tracks)
        .unwrap()
        .write_segment(&frames)
        .unwrap()
        .to_vec()
}

fn demux(data: &[u8]) -> usize {
    let mut d = TsDemuxer::new();
    let mut n = 0usize;
    for read in data.chunks(READ) {
        d.push(read);
        while let Some(e) = d.poll_event() {
            if let MediaEvent::Frame(f) = e {
                n += f.data.len();
            }
        }
    }
    d.finish();
    while let Some(e) = d.poll_event() {
        if let MediaEvent::Frame(f) = e {
            n += f.data.len();
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let gop = muxed_gop();
    assert!(demux(&gop) > 800_000, "the muxed GOP demuxes");
    assert!(demux(CAPTURE) > 30_000);
    let mut g = c.benchmark_group("ts_demux");
    g.throughput(Throughput::Bytes(CAPTURE.len() as u64));
    g.bench_function("ffmpeg_320x240_300k", |b| {
        b.iter(|| demux(black_box(CAPTURE)))
    });
    g.throughput(Throughput::Bytes(gop.len() as u64));
    g.bench_function("muxed_4mbps_gop", |b| b.iter(|| demux(black_box(&gop))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
