//! Relay demux and mux throughput (issue #14 asks >= 1 GB/s demux).
//!
//! The stream: 2 s of 1080p-sized H.264 (30 fps, a 250 KB keyframe then
//! 40 KB frames, about 10 Mbit/s) with AAC (48 kHz, 400-byte frames), as
//! the relay writer frames it. Demux feeds it to `RelayReader` in reads of
//! 16 KiB and 64 KiB (what an HTTP body yields) and drains every event;
//! mux writes the same events with `RelayWriter` and drains the chunks.
//!
//! Run quickly: `cargo bench -p ugc-benches --bench relay -- --quick`

#![allow(clippy::unwrap_used, missing_docs)]

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use ugc_core::{Frame, MediaEvent, TrackId};
use ugc_proto::relay::{Hello, RelayEvent, RelayReader, RelayWriter};

fn events() -> Vec<RelayEvent> {
    let tracks = ugc_core::hub::tests_support::av_tracks();
    let mut out = vec![
        RelayEvent::Hello(Hello {
            epoch: 1,
            window: 1,
            start: 0,
            resumed: false,
            timeline: Some(1),
        }),
        RelayEvent::Media {
            seq: Some(0),
            event: MediaEvent::Tracks(tracks),
        },
    ];
    let mut frames = Vec::new();
    for i in 0..60i64 {
        let len = if i == 0 { 250_000 } else { 40_000 };
        frames.push(Frame {
            track: TrackId(1),
            dts: i * 1000 / 30,
            pts: i * 1000 / 30 + 66,
            keyframe: i == 0,
            data: Bytes::from(
                (0..len)
                    .map(|j| (j * 7 + i as usize) as u8)
                    .collect::<Vec<_>>(),
            ),
        });
    }
    for i in 0..94i64 {
        frames.push(Frame {
            track: TrackId(2),
            dts: i * 1024 * 1000 / 48_000,
            pts: i * 1024 * 1000 / 48_000,
            keyframe: true,
            data: Bytes::from(vec![0x21u8; 400]),
        });
    }
    frames.sort_by_key(|f| f.dts);
    for (i, f) in frames.into_iter().enumerate() {
        out.push(RelayEvent::Media {
            seq: Some(1 + i as u64),
            event: MediaEvent::Frame(f),
        });
    }
    out
}

fn write(events: &[RelayEvent]) -> Vec<Bytes> {
    let mut w = RelayWriter::new();
    let mut chunks = Vec::new();
    for e in events {
        w.write(e).unwrap();
        while let Some(c) = w.poll_output() {
            chunks.push(c);
        }
    }
    chunks
}

fn bench(c: &mut Criterion) {
    let events = events();
    let stream: Vec<u8> = write(&events).concat();
    let mut g = c.benchmark_group("relay");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    for read in [16 << 10, 64 << 10] {
        g.bench_function(format!("demux_1080p_{}k_reads", read >> 10), |b| {
            b.iter(|| {
                let mut r = RelayReader::default();
                let mut n = 0usize;
                for piece in stream.chunks(read) {
                    r.handle_input(piece);
                    while let Some(e) = r.poll_event().unwrap() {
                        n += 1;
                        black_box(&e);
                    }
                }
                assert_eq!(n, events.len());
            })
        });
    }
    g.bench_function("mux_1080p", |b| b.iter(|| black_box(write(&events)).len()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
