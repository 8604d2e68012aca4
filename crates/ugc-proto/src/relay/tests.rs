//! Round-trip and robustness tests of the relay core.

use bytes::Bytes;
use proptest::prelude::*;
use ugc_core::{
    AudioParams, Codec, DiscontinuityReason, Frame, MediaEvent, Rational, Timescale, TrackId,
    TrackInfo, TrackParams, Tracks, VideoParams,
};

use super::*;
use crate::Error;

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![
        Just(Codec::H264),
        Just(Codec::H265),
        Just(Codec::Av1),
        Just(Codec::Aac),
        Just(Codec::Opus),
    ]
}

fn params() -> impl Strategy<Value = TrackParams> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u32>(),
            proptest::option::of((any::<u32>(), any::<u32>()))
        )
            .prop_map(|(width, height, fr)| TrackParams::Video(VideoParams {
                width,
                height,
                frame_rate: fr.map(|(n, d)| Rational::new(n, d)),
            })),
        (any::<u32>(), any::<u8>(), any::<u32>()).prop_map(|(sample_rate, channels, spf)| {
            TrackParams::Audio(AudioParams {
                sample_rate,
                channels,
                samples_per_frame: spf,
            })
        }),
    ]
}

fn track(id: u32) -> impl Strategy<Value = TrackInfo> {
    (
        codec(),
        1..=u32::MAX,
        proptest::collection::vec(any::<u8>(), 0..48),
        "\\PC{0,12}",
        params(),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(
            move |(codec, scale, config, cs, params, bitrate)| TrackInfo {
                id: TrackId(id),
                codec,
                timescale: Timescale::new(scale).unwrap_or(Timescale::MPEG),
                config: Bytes::from(config),
                codec_string: cs,
                params,
                bitrate,
            },
        )
}

fn tracks() -> impl Strategy<Value = Tracks> {
    (any::<u32>(), 0usize..4).prop_flat_map(|(base, n)| {
        let v: Vec<_> = (0..n as u32).map(|i| track(base.wrapping_add(i))).collect();
        v.prop_map(Tracks::new)
    })
}

/// One step of a generated stream.
#[derive(Debug, Clone)]
enum Op {
    Tracks(Tracks, bool),
    Frame(usize, i64, i64, bool, Vec<u8>),
    Disc(u8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (tracks(), any::<bool>()).prop_map(|(t, s)| Op::Tracks(t, s)),
        6 => (
            any::<usize>(),
            prop_oneof![any::<i64>(), -1000i64..1_000_000],
            prop_oneof![3 => -5000i64..5000, 1 => any::<i64>()],
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(t, dts, d, k, data)| Op::Frame(t, dts, d, k, data)),
        1 => (1u8..4, any::<bool>()).prop_map(|(r, s)| Op::Disc(r, s)),
    ]
}

/// The events a script makes, with sequence numbers from `base` in steps.
fn script(hello: Hello, ops: &[Op], steps: &[u64], end: bool) -> Vec<RelayEvent> {
    let mut out = vec![RelayEvent::Hello(hello)];
    let mut seq = hello.start;
    let mut current: Option<Tracks> = None;
    let mut steps = steps.iter().cycle();
    let mut next = |seq: &mut u64| {
        let s = *seq;
        *seq = seq.saturating_add(*steps.next().unwrap_or(&1));
        Some(s)
    };
    if hello.resumed {
        out.push(RelayEvent::Context {
            tracks: ugc_core::hub::tests_support::av_tracks(),
            seq: hello.start,
        });
        current = Some(ugc_core::hub::tests_support::av_tracks());
    }
    for op in ops {
        match op {
            Op::Tracks(t, synth) => {
                let s = if *synth { None } else { next(&mut seq) };
                out.push(RelayEvent::Media {
                    seq: s,
                    event: MediaEvent::Tracks(t.clone()),
                });
                current = Some(t.clone());
            }
            Op::Frame(i, dts, d, key, data) => {
                let Some(t) = current.as_ref().filter(|t| !t.is_empty()) else {
                    continue;
                };
                let track = t.as_slice()[i % t.len()].id;
                // A generated offset may overflow: keep the pts it saturates to.
                let pts = dts.saturating_add(*d);
                out.push(RelayEvent::Media {
                    seq: next(&mut seq),
                    event: MediaEvent::Frame(Frame {
                        track,
                        dts: *dts,
                        pts,
                        keyframe: *key,
                        data: Bytes::from(data.clone()),
                    }),
                });
            }
            Op::Disc(r, synth) => {
                let reason = match r {
                    1 => DiscontinuityReason::SourceChanged,
                    2 => DiscontinuityReason::ReaderSkipped,
                    _ => DiscontinuityReason::TimestampJump,
                };
                let s = if *synth { None } else { next(&mut seq) };
                out.push(RelayEvent::Media {
                    seq: s,
                    event: MediaEvent::Discontinuity(reason),
                });
            }
        }
    }
    if end {
        out.push(RelayEvent::Media {
            seq: next(&mut seq),
            event: MediaEvent::End,
        });
    }
    out
}

fn write_all(events: &[RelayEvent]) -> Vec<u8> {
    let mut w = RelayWriter::new();
    let mut bytes = Vec::new();
    for e in events {
        w.write(e).unwrap();
        while let Some(b) = w.poll_output() {
            bytes.extend_from_slice(&b);
        }
    }
    bytes
}

fn read_chunked(bytes: &[u8], cuts: &[usize]) -> Result<Vec<RelayEvent>, Error> {
    let mut r = RelayReader::default();
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut cuts = cuts.iter().cycle();
    while !rest.is_empty() {
        let n = (*cuts.next().unwrap_or(&rest.len())).clamp(1, rest.len());
        let (a, b) = rest.split_at(n);
        rest = b;
        r.handle_input(a);
        while let Some(e) = r.poll_event()? {
            out.push(e);
        }
    }
    r.finish()?;
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn writer_then_reader_is_identity(
        epoch in any::<u64>(),
        window in any::<u64>(),
        start in prop_oneof![Just(0u64), Just((1u64 << 32) - 3), 0u64..u64::MAX / 2],
        resumed in any::<bool>(),
        ops in proptest::collection::vec(op(), 0..40),
        steps in proptest::collection::vec(prop_oneof![4 => Just(1u64), 1 => 1u64..10], 1..5),
        end in any::<bool>(),
        cuts in proptest::collection::vec(prop_oneof![1usize..8, 1usize..4000], 1..8),
    ) {
        let hello = Hello { epoch, window, start, resumed, timeline: None };
        let events = script(hello, &ops, &steps, end);
        let bytes = write_all(&events);
        let read = read_chunked(&bytes, &cuts).unwrap();
        prop_assert_eq!(read, events);
    }

    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000), cut in 1usize..300) {
        let _ = read_chunked(&data, &[cut]);
    }

    #[test]
    fn flipped_bytes_never_panic(
        ops in proptest::collection::vec(op(), 1..12),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let hello = Hello { epoch: 1, window: 2, start: 3, resumed: false, timeline: Some(9) };
        let mut bytes = write_all(&script(hello, &ops, &[1], true));
        for (at, v) in flips {
            let n = bytes.len();
            bytes[at % n] ^= v | 1;
        }
        let _ = read_chunked(&bytes, &[7, 100]);
    }

    #[test]
    fn every_truncation_is_need_more_or_an_error(ops in proptest::collection::vec(op(), 1..8), keep in any::<usize>()) {
        let hello = Hello { epoch: 1, window: 2, start: 3, resumed: false, timeline: Some(9) };
        let events = script(hello, &ops, &[1], true);
        let bytes = write_all(&events);
        let keep = keep % bytes.len();
        let mut r = RelayReader::default();
        r.handle_input(&bytes[..keep]);
        let mut got = Vec::new();
        while let Some(e) = r.poll_event().unwrap() {
            got.push(e);
        }
        // What was read is a prefix of the stream.
        prop_assert_eq!(&events[..got.len()], &got[..]);
    }
}

fn sample_stream() -> Vec<u8> {
    let hello = Hello {
        epoch: 1,
        window: 2,
        start: 0,
        resumed: false,
        timeline: None,
    };
    let ops = [
        Op::Tracks(ugc_core::hub::tests_support::av_tracks(), false),
        Op::Frame(0, 0, 40, true, vec![1; 100]),
        Op::Frame(1, 0, 0, true, vec![2; 10]),
    ];
    write_all(&script(hello, &ops, &[1], true))
}

#[test]
fn garbage_is_a_clear_error_at_the_first_box() {
    let mut r = RelayReader::default();
    r.handle_input(b"HTTP/1.1 200 OK\r\n\r\nhello");
    let e = r.poll_event().unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("not a ugc relay stream"), "{msg}");
    assert!(matches!(e, Error::Relay { offset: 0, .. }));
    assert!(matches!(r.poll_event(), Err(Error::Closed)));
}

#[test]
fn truncated_stream_fails_finish_with_the_box_named() {
    let bytes = sample_stream();
    let mut r = RelayReader::default();
    r.handle_input(&bytes[..bytes.len() - 30]);
    while r.poll_event().unwrap().is_some() {}
    let msg = r.finish().unwrap_err().to_string();
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn oversized_frame_is_refused_at_its_header() {
    let bytes = sample_stream();
    let mut r = RelayReader::new(ReaderLimits {
        max_frame: 50,
        ..ReaderLimits::default()
    });
    r.handle_input(&bytes);
    let err = loop {
        match r.poll_event() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("no error"),
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("exceeds the limit of 50"), "{err}");
}

#[test]
fn a_huge_declared_box_is_refused_before_buffering() {
    let bytes = sample_stream();
    // ftyp + ugch, then a moov that claims 3 GiB.
    let mut head = bytes[..24 + 36].to_vec();
    head.extend_from_slice(&[0xc0, 0, 0, 0, b'm', b'o', b'o', b'v']);
    let mut r = RelayReader::default();
    r.handle_input(&head);
    assert!(matches!(r.poll_event(), Ok(Some(RelayEvent::Hello(_)))));
    let e = r.poll_event().unwrap_err().to_string();
    assert!(e.contains("exceeds the limit"), "{e}");
}

#[test]
fn frames_are_zero_copy_slices_on_the_writer_side() {
    let data = Bytes::from(vec![7u8; 1000]);
    let mut w = RelayWriter::new();
    w.hello(&Hello {
        epoch: 0,
        window: 0,
        start: 0,
        resumed: false,
        timeline: None,
    })
    .unwrap();
    w.event(
        Some(0),
        &MediaEvent::Tracks(ugc_core::hub::tests_support::av_tracks()),
    )
    .unwrap();
    w.event(
        Some(1),
        &MediaEvent::Frame(Frame {
            track: TrackId(1),
            dts: 0,
            pts: 0,
            keyframe: true,
            data: data.clone(),
        }),
    )
    .unwrap();
    let chunks: Vec<Bytes> = std::iter::from_fn(|| w.poll_output()).collect();
    let last = chunks.last().unwrap();
    assert_eq!(last.as_ptr(), data.as_ptr());
}

#[test]
fn frame_of_an_unknown_track_is_refused_by_the_writer() {
    let mut w = RelayWriter::new();
    w.hello(&Hello {
        epoch: 0,
        window: 0,
        start: 0,
        resumed: false,
        timeline: None,
    })
    .unwrap();
    let f = MediaEvent::Frame(Frame {
        track: TrackId(1),
        dts: 0,
        pts: 0,
        keyframe: true,
        data: Bytes::new(),
    });
    assert!(w.event(Some(0), &f).is_err());
}

/// Writes the seed corpus of the `relay_reader` fuzz target when
/// `UGC_WRITE_RELAY_SEEDS` names a directory (`fuzz/corpus/relay_reader`).
#[test]
fn write_fuzz_seeds() {
    let Some(dir) = std::env::var_os("UGC_WRITE_RELAY_SEEDS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fresh = Hello {
        epoch: 1,
        window: 2,
        start: (1 << 32) - 2,
        resumed: false,
        timeline: None,
    };
    let av = ugc_core::hub::tests_support::av_tracks();
    let seeds: [(&str, Vec<RelayEvent>); 2] = [
        (
            "seed_h264_aac_track_change_end",
            script(
                fresh,
                &[
                    Op::Tracks(av.clone(), true),
                    Op::Frame(0, 0, 80, true, vec![0, 0, 0, 2, 0x65, 0x88]),
                    Op::Frame(1, 0, 0, true, vec![0x21; 12]),
                    Op::Frame(0, 40, 40, false, vec![0, 0, 0, 2, 0x41, 0x9a]),
                    Op::Disc(1, false),
                    Op::Tracks(av.clone(), false),
                    Op::Frame(0, i64::MIN + 5, i64::MAX, true, vec![9; 3]),
                ],
                &[1],
                true,
            ),
        ),
        (
            "seed_resumed_with_skip",
            script(
                Hello {
                    resumed: true,
                    ..fresh
                },
                &[
                    Op::Frame(1, 1024, 1024, true, vec![1; 8]),
                    Op::Disc(2, true),
                    Op::Tracks(av, true),
                    Op::Frame(0, 2000, 2080, true, vec![2; 16]),
                ],
                &[1, 5],
                false,
            ),
        ),
    ];
    for (name, events) in seeds {
        let mut bytes = vec![13u8]; // split seed
        bytes.extend(write_all(&events));
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
