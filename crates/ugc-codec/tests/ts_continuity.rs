//! Segments muxed lazily, each by a fresh `TsMuxer` started from the
//! `Continuity` that `advance_segment` computed for the segments before
//! (what the segmenter stores), play back to back as one transport stream:
//! every PID's continuity counter goes on by exactly 1 per payload-carrying
//! packet across segment boundaries, also across a new track set.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use bytes::Bytes;
use proptest::prelude::*;
use ugc_codec::ts::{Continuity, TsMuxer};
use ugc_core::{Frame, TrackId, Tracks};

fn av() -> Tracks {
    ugc_core::hub::tests_support::av_tracks()
}

fn only(id: u32) -> Tracks {
    Tracks::new(
        av().iter()
            .filter(|t| t.id == TrackId(id))
            .cloned()
            .collect(),
    )
}

/// A continuity checker of its own (ISO/IEC 13818-1 2.4.3.3), over packets
/// in order: a packet with payload carries its PID's previous counter + 1
/// (mod 16), one without repeats it. Returns the packets seen per PID.
fn check_continuity(stream: &[u8]) -> Result<Vec<(u16, usize)>, String> {
    if !stream.len().is_multiple_of(188) {
        return Err(format!(
            "{} bytes is not a whole number of packets",
            stream.len()
        ));
    }
    let mut last: Vec<(u16, u8, usize)> = Vec::new();
    for (n, p) in stream.chunks(188).enumerate() {
        if p[0] != 0x47 {
            return Err(format!("packet {n}: sync byte {:#x}", p[0]));
        }
        let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
        let with_payload = p[3] & 0x10 != 0;
        let cc = p[3] & 0x0f;
        match last.iter_mut().find(|(q, _, _)| *q == pid) {
            Some((_, prev, count)) => {
                let want = if with_payload {
                    (*prev + 1) & 0x0f
                } else {
                    *prev
                };
                if cc != want {
                    return Err(format!(
                        "packet {n}, PID {pid:#x}: continuity counter {cc}, want {want}"
                    ));
                }
                *prev = cc;
                *count += 1;
            }
            None => last.push((pid, cc, 1)),
        }
    }
    Ok(last.into_iter().map(|(pid, _, n)| (pid, n)).collect())
}

/// A length-prefixed (4-byte) H.264 access unit of NAL units `(type, len)`;
/// `broken` appends a length that runs past the end (the muxer skips the
/// frame).
fn avc_frame(nals: &[(u8, usize)], broken: bool) -> Bytes {
    let mut v = Vec::new();
    for &(ty, len) in nals {
        v.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
        if len > 0 {
            v.push(0x60 | ty);
            v.extend((1..len).map(|i| (i % 251) as u8));
        }
    }
    if broken {
        v.extend_from_slice(&1000u32.to_be_bytes());
        v.push(0x41);
    }
    Bytes::from(v)
}

#[derive(Debug, Clone)]
enum Gen {
    Video {
        nals: Vec<(u8, usize)>,
        key: bool,
        cts: i64,
        broken: bool,
    },
    Audio {
        len: usize,
    },
}

fn gen_frame() -> impl Strategy<Value = Gen> {
    let nal = (prop::sample::select(vec![1u8, 5, 6, 7, 8, 9]), 0usize..2500);
    prop_oneof![
        (
            prop::collection::vec(nal, 0..4),
            any::<bool>(),
            prop::sample::select(vec![0i64, 40, 80]),
            prop::bool::weighted(0.05),
        )
            .prop_map(|(nals, key, cts, broken)| Gen::Video {
                nals,
                key,
                cts,
                broken
            }),
        // Up to past the ADTS limit (8184 payload bytes): skipped by both.
        prop_oneof![0usize..600, 8000usize..8300].prop_map(|len| Gen::Audio { len }),
    ]
}

fn frames_of(gens: &[Gen]) -> Vec<Frame> {
    gens.iter()
        .enumerate()
        .map(|(i, g)| {
            let dts = i64::try_from(i).unwrap() * 20;
            match g {
                Gen::Video {
                    nals,
                    key,
                    cts,
                    broken,
                } => Frame {
                    track: TrackId(1),
                    dts,
                    pts: dts + cts,
                    keyframe: *key,
                    data: avc_frame(nals, *broken),
                },
                Gen::Audio { len } => Frame {
                    track: TrackId(2),
                    dts,
                    pts: dts,
                    keyframe: true,
                    data: Bytes::from(vec![0x21; *len]),
                },
            }
        })
        .collect()
}

/// Segments of a stream: frames and the track set they are muxed with.
fn segments_strategy() -> impl Strategy<Value = Vec<(Tracks, Vec<Frame>)>> {
    (
        prop::collection::vec(gen_frame(), 0..80),
        prop::collection::vec(any::<prop::sample::Index>(), 1..7),
        prop::collection::vec(prop::sample::select(vec![0u8, 0, 0, 1, 2]), 7),
    )
        .prop_map(|(gens, cuts, sets)| {
            let frames = frames_of(&gens);
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(frames.len() + 1)).collect();
            cuts.push(frames.len());
            cuts.sort_unstable();
            let mut from = 0;
            cuts.iter()
                .zip(sets)
                .map(|(&to, set)| {
                    let tracks = match set {
                        0 => av(),
                        1 => only(1),
                        _ => only(2),
                    };
                    let seg = frames[from..to].to_vec();
                    from = to;
                    (tracks, seg)
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn lazily_muxed_segments_continue_the_counters(segs in segments_strategy()) {
        // What the segmenter does when a segment closes: count, don't mux.
        let mut starts: Vec<Continuity> = Vec::new();
        let mut next = Continuity::default();
        for (tracks, frames) in &segs {
            starts.push(next.clone());
            let mut counter = TsMuxer::new(tracks).unwrap();
            counter.set_continuity(&next);
            counter.advance_segment(frames);
            next = counter.continuity();
        }
        // What a player's requests do, in any order (here the last first):
        // mux each segment with a fresh muxer from its stored start.
        let mut muxed: Vec<Option<Bytes>> = vec![None; segs.len()];
        for i in (0..segs.len()).rev() {
            let (tracks, frames) = &segs[i];
            let mut mux = TsMuxer::new(tracks).unwrap();
            mux.set_continuity(&starts[i]);
            muxed[i] = Some(mux.write_segment(frames).unwrap());
            // The real muxer ends where the count said.
            let end = starts.get(i + 1).unwrap_or(&next);
            prop_assert_eq!(&mux.continuity(), end, "segment {}", i);
        }
        let joined: Vec<u8> = muxed.into_iter().flatten().flatten().collect();
        let pids = check_continuity(&joined).map_err(TestCaseError::fail)?;
        // PAT and PMT once per segment.
        let count = |pid| pids.iter().find(|(p, _)| *p == pid).map_or(0, |(_, n)| *n);
        prop_assert_eq!(count(0), segs.len());
        prop_assert_eq!(count(0x1000), segs.len());
    }

    #[test]
    fn one_track_set_lazily_is_byte_identical_to_one_muxer(segs in segments_strategy()) {
        // With the same track set throughout, segments muxed lazily from the
        // counted starts are the bytes one muxer writes for the whole stream.
        let tracks = av();
        let mut whole = TsMuxer::new(&tracks).unwrap();
        let mut counter = TsMuxer::new(&tracks).unwrap();
        for (i, (_, frames)) in segs.iter().enumerate() {
            let mut lazy = TsMuxer::new(&tracks).unwrap();
            lazy.set_continuity(&counter.continuity());
            counter.advance_segment(frames);
            prop_assert_eq!(
                lazy.write_segment(frames).unwrap(),
                whole.write_segment(frames).unwrap(),
                "segment {}", i
            );
        }
    }
}

#[test]
fn checker_sees_counters_restart_in_each_segment() {
    // Without a carried start (each segment from 0, as before), the checker
    // fails at the first boundary: the test can fail.
    let frames = frames_of(&[
        Gen::Video {
            nals: vec![(5, 1500)],
            key: true,
            cts: 0,
            broken: false,
        },
        Gen::Audio { len: 300 },
    ]);
    let mut joined = Vec::new();
    for _ in 0..2 {
        joined.extend_from_slice(&TsMuxer::new(&av()).unwrap().write_segment(&frames).unwrap());
    }
    let err = check_continuity(&joined).unwrap_err();
    assert!(
        err.contains("PID 0x0: continuity counter 0, want 1"),
        "{err}"
    );
}
