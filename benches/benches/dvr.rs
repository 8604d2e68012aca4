//! DVR: range playlist generation over a 10 h archive (18 000 two-second
//! segments; goal < 5 ms), and the range lookup alone.

use std::collections::VecDeque;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ugc_dvr::archive::{ArchivedSegment, Location, SegmentName, TrackIndex};
use ugc_dvr::range::{RangeKind, render_range};

const T0: i64 = 1_795_681_772_000;

fn ten_hours() -> TrackIndex {
    let mut segments = VecDeque::new();
    for i in 0..18_000i64 {
        segments.push_back(ArchivedSegment {
            name: SegmentName {
                pdt_ms: T0 + i * 2000,
                duration_ms: 2000,
                dts_ms: i * 2000,
                session: T0 - 100,
                msn: i as u64,
                init: 0,
                discontinuity: false,
                provisional: None,
            },
            size: 1_000_000,
            location: Location::Local,
        });
    }
    TrackIndex {
        segments,
        ..TrackIndex::default()
    }
}

fn bench(c: &mut Criterion) {
    let index = ten_hours();
    let mut g = c.benchmark_group("dvr_range_playlist_10h_archive");
    g.bench_function("whole_10h_vod", |b| {
        b.iter(|| {
            let segs = index.range(black_box(T0), T0 + 36_000_000);
            render_range(segs, RangeKind::Vod, 2000, 1000, None)
        })
    });
    g.bench_function("1h_in_the_middle_vod", |b| {
        b.iter(|| {
            let from = black_box(T0 + 18_000_000);
            render_range(
                index.range(from, from + 3_600_000),
                RangeKind::Vod,
                2000,
                1000,
                None,
            )
        })
    });
    g.bench_function("1h_with_token", |b| {
        b.iter(|| {
            let from = black_box(T0 + 18_000_000);
            render_range(
                index.range(from, from + 3_600_000),
                RangeKind::Vod,
                2000,
                1000,
                Some("AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_"),
            )
        })
    });
    g.bench_function("lookup_only", |b| {
        b.iter(|| {
            index
                .range(black_box(T0 + 18_000_000), T0 + 21_600_000)
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
