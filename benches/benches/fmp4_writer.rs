//! The CMAF fragment writer (`moof` + `mdat`, the per-part hot path of
//! LL-HLS) with mp4-atom's box types against the hand-written writer, on
//! the same input: the synthetic 1080p 4 Mbit/s H.264 GOP + 128 kbit/s AAC
//! of `mux.rs` as one fragment per video frame, as the segmenter writes
//! LL-HLS parts; next to it the whole packager (segmenter with 200 ms
//! parts, the server's default `--part-ms`) on the same 2 s, to put the
//! writer's cost in proportion.
//!
//! On the 2-core dev VM: hand-written 15.5 us, mp4-atom 49.8 us (36.1 us
//! with a single encode, which would need the moof size computed by hand),
//! packager 65.0 us per 2 s of stream. mp4-atom would add about half of the
//! packager's CPU per stream, far above the 10 % budget, so
//! `ugc_codec::fmp4::fragment` stays hand-written (its tests read it back
//! with mp4-atom); init segments, which are not per frame, use mp4-atom.
//!
//! Run: `cargo bench -p ugc-benches --bench fmp4_writer -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs, clippy::unwrap_used)]

use bytes::{BufMut as _, Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mp4_atom::{Encode as _, Mfhd, Moof, Tfdt, Tfhd, Traf, Trun, TrunEntry, TrunSamples};
use ugc_codec::fmp4::{self, Sample, TrackFragment};
use ugc_core::{Frame, MediaEvent, TrackId};
use ugc_dvr::{Segmenter, SegmenterConfig, SegmenterOutput};

/// One CMAF chunk per video frame (what the segmenter writes with LL-HLS
/// parts: a `moof` + `mdat` per reference frame) over 2 s: a ~120 KB IDR
/// then 59 ~14 KB frames at 30 fps, with the AAC frames (340 bytes, 48 kHz)
/// that fall before the next video frame.
fn chunks() -> Vec<(Vec<Sample>, Vec<Sample>)> {
    let nal = |ty: u8, len: usize| {
        let mut v = Vec::with_capacity(len + 4);
        v.extend_from_slice(&(len as u32).to_be_bytes());
        v.push(ty);
        v.extend((1..len).map(|i| (i * 7 + 11) as u8 | 0x10));
        Bytes::from(v)
    };
    let mut chunks: Vec<(Vec<Sample>, Vec<Sample>)> = (0..60)
        .map(|i| {
            let key = i == 0;
            let v = Sample {
                duration: 3000,
                cts_offset: 6000,
                keyframe: key,
                data: nal(
                    if key { 0x65 } else { 0x41 },
                    if key { 120_000 } else { 14_000 },
                ),
            };
            (vec![v], Vec::new())
        })
        .collect();
    for i in 0..94usize {
        let chunk = (i * 1024 * 30 / 48_000).min(59);
        chunks[chunk].1.push(Sample {
            duration: 1024,
            cts_offset: 0,
            keyframe: true,
            data: Bytes::from(vec![0x21u8; 340]),
        });
    }
    chunks
}

/// The same 2 s as Hub events, for the whole packager (segmenter + writer).
fn events(chunks: &[(Vec<Sample>, Vec<Sample>)]) -> Vec<MediaEvent> {
    let mut events = vec![MediaEvent::Tracks(ugc_core::hub::tests_support::av_tracks())];
    let mut audio = 0i64;
    for (i, (v, a)) in chunks.iter().enumerate() {
        let t = i as i64 * 1000 / 30;
        for s in v {
            events.push(MediaEvent::Frame(Frame {
                track: TrackId(1),
                dts: t,
                pts: t + 66,
                keyframe: s.keyframe,
                data: s.data.clone(),
            }));
        }
        for s in a {
            let at = audio * 1024 * 1000 / 44_100;
            events.push(MediaEvent::Frame(Frame {
                track: TrackId(2),
                dts: at,
                pts: at,
                keyframe: true,
                data: s.data.clone(),
            }));
            audio += 1;
        }
    }
    events.push(MediaEvent::End);
    events
}

const SAMPLE_FLAGS_SYNC: u32 = 0x0200_0000;
const SAMPLE_FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// The fragment writer built on mp4-atom: the `moof` as a box tree, encoded
/// twice (its size fixes the `trun` data offsets), then the `mdat` header
/// and the payloads written directly.
fn fragment_mp4_atom(seq: u32, fragments: &[TrackFragment<'_>]) -> Bytes {
    let mut moof = Moof {
        mfhd: Mfhd {
            sequence_number: seq,
        },
        traf: fragments
            .iter()
            .map(|f| Traf {
                tfhd: Tfhd {
                    track_id: f.track.0,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: f.base_decode_time,
                }),
                trun: vec![Trun {
                    data_offset: Some(0),
                    samples: TrunSamples::Explicit(
                        f.samples
                            .iter()
                            .map(|s| TrunEntry {
                                duration: Some(s.duration),
                                size: Some(s.data.len() as u32),
                                flags: Some(if s.keyframe {
                                    SAMPLE_FLAGS_SYNC
                                } else {
                                    SAMPLE_FLAGS_NON_SYNC
                                }),
                                cts: Some(i64::from(s.cts_offset)),
                            })
                            .collect(),
                    ),
                }],
                ..Default::default()
            })
            .collect(),
    };
    let payload: usize = fragments
        .iter()
        .flat_map(|f| f.samples)
        .map(|s| s.data.len())
        .sum();
    let mut b = BytesMut::with_capacity(1024 + payload);
    moof.encode(&mut b).unwrap();
    let mut offset = b.len() + 8;
    for (traf, f) in moof.traf.iter_mut().zip(fragments) {
        traf.trun[0].data_offset = Some(offset as i32);
        offset += f.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    b.clear();
    moof.encode(&mut b).unwrap();
    b.put_u32((payload + 8) as u32);
    b.put_slice(b"mdat");
    for s in fragments.iter().flat_map(|f| f.samples) {
        b.put_slice(&s.data);
    }
    b.freeze()
}

fn trafs<'a>(seq: usize, v: &'a [Sample], a: &'a [Sample]) -> [TrackFragment<'a>; 2] {
    [
        TrackFragment {
            track: TrackId(1),
            base_decode_time: seq as u64 * 3000,
            samples: v,
        },
        TrackFragment {
            track: TrackId(2),
            base_decode_time: seq as u64 * 1600,
            samples: a,
        },
    ]
}

fn bench(c: &mut Criterion) {
    let chunks = chunks();
    // The same size out (the bytes differ only in the trun flags of
    // one-sample runs, where mp4-atom uses first-sample-flags).
    for (i, (v, a)) in chunks.iter().enumerate() {
        let frags = trafs(i, v, a);
        let hand = fmp4::fragment(i as u32, &frags).unwrap();
        let atom = fragment_mp4_atom(i as u32, &frags);
        assert_eq!(hand.len(), atom.len());
    }
    let payload: u64 = chunks
        .iter()
        .flat_map(|(v, a)| v.iter().chain(a))
        .map(|s| s.data.len() as u64)
        .sum();
    let mut g = c.benchmark_group("fmp4_writer");
    g.throughput(Throughput::Bytes(payload));
    g.bench_function("hand_2s_chunk_per_frame", |b| {
        b.iter(|| {
            let mut n = 0;
            for (i, (v, a)) in chunks.iter().enumerate() {
                n += fmp4::fragment(i as u32, &trafs(i, v, a)).unwrap().len();
            }
            n
        })
    });
    g.bench_function("mp4_atom_2s_chunk_per_frame", |b| {
        b.iter(|| {
            let mut n = 0;
            for (i, (v, a)) in chunks.iter().enumerate() {
                n += fragment_mp4_atom(i as u32, &trafs(i, v, a)).len();
            }
            n
        })
    });
    let events = events(&chunks);
    g.bench_function("packager_2s_200ms_parts", |b| {
        b.iter(|| {
            let mut s = Segmenter::new(SegmenterConfig {
                target_duration_ms: 2000,
                part_target_ms: Some(200),
                ..Default::default()
            });
            let mut n = 0usize;
            for e in events.iter().cloned() {
                s.push(e, 0).unwrap();
                while let Some(o) = s.poll() {
                    if let SegmenterOutput::PartChunk { data, .. } = o {
                        n += data.len();
                    }
                }
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
