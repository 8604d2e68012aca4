//! Aligned segments (`SegmenterConfig::aligned`): cuts and numbers from the
//! media timeline alone, so that a segmenter that joins a stream later (a
//! second origin, one restarted) makes the same segments, byte for byte.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use proptest::prelude::*;
use ugc_core::{Frame, MediaEvent, TrackId};
use ugc_dvr::{LiveConfig, LiveStream, Segmenter, SegmenterConfig, SegmenterOutput, Variant};

fn aligned(target_ms: u32, part_ms: Option<u32>) -> SegmenterConfig {
    SegmenterConfig {
        target_duration_ms: target_ms,
        part_target_ms: part_ms,
        aligned: true,
        // Dated by the timeline, not by the arrival clock (which differs
        // between the runs compared: it counts events).
        date_anchor_ms: Some(ANCHOR),
        ..Default::default()
    }
}

/// The unix ms of media time 0 in these tests.
const ANCHOR: i64 = 1_750_000_000_000;

/// What a segmenter published: every output from the first segment it
/// opened on, as comparable values (dates included).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Init(u32, Vec<u8>),
    Opened(u64, bool, i64),
    Chunk(u64, u32, Vec<u8>),
    Part(u64, u32, bool, u64, Vec<u8>),
    Hint(u64, u32),
    Segment {
        msn: u64,
        disc: bool,
        start_dts_ms: i64,
        date: i64,
        duration_ms: u64,
        target_s: u64,
        data: Vec<u8>,
    },
    Ended,
}

fn seen(out: &[SegmenterOutput]) -> Vec<Seen> {
    out.iter()
        .map(|o| match o {
            SegmenterOutput::Init(i) => Seen::Init(i.number, i.data.to_vec()),
            SegmenterOutput::Opened(s) => {
                Seen::Opened(s.msn, s.discontinuity, s.program_date_time_ms)
            }
            SegmenterOutput::PartChunk { msn, part, data } => {
                Seen::Chunk(*msn, *part, data.to_vec())
            }
            SegmenterOutput::Part { msn, part } => Seen::Part(
                *msn,
                part.index,
                part.independent,
                part.duration_ms,
                part.data.to_bytes().to_vec(),
            ),
            SegmenterOutput::PreloadHint { msn, part } => Seen::Hint(*msn, *part),
            SegmenterOutput::Segment(s) => Seen::Segment {
                msn: s.msn,
                disc: s.discontinuity,
                start_dts_ms: s.start_dts_ms,
                date: s.program_date_time_ms,
                duration_ms: s.duration_ms,
                target_s: s.target_duration_s,
                data: s.data.to_bytes().to_vec(),
            },
            SegmenterOutput::Ended => Seen::Ended,
        })
        .collect()
}

fn msn_of(s: &Seen) -> Option<u64> {
    match s {
        Seen::Opened(m, ..) | Seen::Chunk(m, _, _) | Seen::Part(m, ..) => Some(*m),
        Seen::Segment { msn, .. } => Some(*msn),
        _ => None,
    }
}

/// The outputs about segments `from` on (and the end), in order.
fn from_msn(all: &[Seen], from: u64) -> Vec<Seen> {
    all.iter()
        .filter(|s| match s {
            Seen::Init(..) => false,
            // A hint names where the next part goes: kept once its
            // segment is one of those compared.
            Seen::Hint(m, _) => *m > from,
            other => msn_of(other).is_none_or(|m| m >= from),
        })
        .cloned()
        .collect()
}

#[test]
fn segments_are_numbered_by_the_timeline() {
    // A stream whose timeline starts at 61 s, 1 s GOPs, 2 s segments: its
    // first keyframe is in the middle of cell 30 (60-62 s). A segmenter
    // publishes from the segment of its second cut (see
    // `the_segment_a_segmenter_opens_first_is_held_back`): cell 32's,
    // from 64 s.
    let mut events = vec![MediaEvent::Tracks(av())];
    for i in 0..250i64 {
        let t = 61_000 + i * 40;
        events.push(v(t, i % 25 == 0));
        events.push(a(t + 3));
    }
    events.push(MediaEvent::End);
    let segs = segments(&run(aligned(2000, None), events));
    let numbers: Vec<u64> = segs.iter().map(|s| s.msn).collect();
    assert_eq!(numbers, vec![32, 33, 34, 35]);
    // Cut at the keyframes of 62, 64, ... s: each segment one cell long.
    let starts: Vec<i64> = segs.iter().map(|s| s.start_dts_ms).collect();
    assert_eq!(starts, vec![64_000, 66_000, 68_000, 70_000]);
    assert!(segs.iter().all(|s| s.target_duration_s == 2));
}

#[test]
fn a_keyframe_a_little_early_still_starts_its_cell() {
    // 2 s GOPs whose keyframes come up to 40 ms early (a millisecond clock
    // and a frame rate that does not divide it).
    let mut events = vec![MediaEvent::Tracks(video_only())];
    let key_at = [0i64, 1960, 3990, 5975, 8000];
    let mut t = 0;
    while t < 9000 {
        let key = key_at.contains(&t);
        events.push(v(t, key));
        let next_key = key_at.iter().find(|k| **k > t).copied();
        t = match next_key {
            Some(k) if k < t + 40 => k,
            _ => t + 40,
        };
    }
    events.push(MediaEvent::End);
    let segs = segments(&run(aligned(2000, None), events));
    let got: Vec<(u64, i64)> = segs.iter().map(|s| (s.msn, s.start_dts_ms)).collect();
    // (Published from the second cut on.)
    assert_eq!(got, vec![(2, 3990), (3, 5975), (4, 8000)]);
}

#[test]
fn a_gop_longer_than_the_target_is_cut_where_the_cell_begins() {
    // 5 s GOPs, 2 s segments: a cell with no keyframe a quarter of a
    // period past its boundary starts at the frame there (not
    // independent); the numbers stay those of the cells.
    let mut events = vec![MediaEvent::Tracks(video_only())];
    for i in 0..400i64 {
        events.push(v(i * 40, i % 125 == 0));
    }
    events.push(MediaEvent::End);
    let segs = segments(&run(aligned(2000, None), events));
    let got: Vec<(u64, i64, bool)> = segs
        .iter()
        .map(|s| (s.msn, s.start_dts_ms, s.frames[0].keyframe))
        .collect();
    // Published from the second cut with three keyframes seen (the
    // keyframe interval known before the cut); the keyframe of 15 s falls
    // inside segment 7 (cut at 14.52 s).
    assert_eq!(
        got,
        vec![(5, 10_000, true), (6, 12_520, false), (7, 14_520, false),]
    );
}

/// The ladder's renditions (x264 with B-frames, 30 fps): IDRs presented
/// on the grid (+6 ms, the source's phase), decoded 67 ms before, past the
/// 50 ms tolerance. By decode time each fell at the end of the cell before,
/// where the open segment's number was: no cut, and the cell's late cut a
/// frame or two before it instead, so every segment started with two
/// frames that are not a keyframe (1.867 s of 1 s for the first after a
/// discontinuity, in e2e_roles). By presentation time each starts its
/// cell's segment.
#[test]
fn keyframes_decoded_before_their_boundary_start_the_cell_they_are_presented_in() {
    for part in [None, Some(250)] {
        let mut events = vec![MediaEvent::Tracks(av())];
        for i in 30..330i64 {
            let pts = 6 + i * 1000 / 30;
            let mut f = frame(1, pts - 67, i % 30 == 0);
            f.pts = pts;
            events.push(MediaEvent::Frame(f));
            if i % 3 == 0 {
                events.push(a(pts - 60));
                events.push(a(pts - 40));
                events.push(a(pts - 20));
            }
        }
        events.push(MediaEvent::End);
        let mut s = Segmenter::new(aligned(1000, part));
        for (i, e) in events.into_iter().enumerate() {
            s.push(e, T0 + i as i64 * 10).unwrap();
        }
        let out: Vec<_> = std::iter::from_fn(|| s.poll()).collect();
        let got: Vec<(u64, i64, bool, u64)> = segments(&out)
            .iter()
            .map(|s| (s.msn, s.start_dts_ms, s.frames[0].keyframe, s.duration_ms))
            .collect();
        // (Published from the second cut on; the last ends with the media.)
        let want: Vec<(u64, i64, bool, u64)> = (3..11)
            .map(|k| {
                (
                    k,
                    k as i64 * 1000 - 61,
                    true,
                    if k < 10 { 1000 } else { 999 },
                )
            })
            .collect();
        assert_eq!(got, want, "parts: {part:?}");
        assert_eq!(s.stats().target_overruns, 0, "{got:?}");
    }
}

#[test]
fn keyframes_anywhere_in_their_cells_start_every_segment() {
    // 2 s GOPs whose keyframes fall 1.3 s into each 2 s cell (an SRT
    // source's timestamps, or a timeline moved by a source change): each
    // cell's keyframe starts its segment, none is cut before it.
    for offset in [300i64, 1300, 1700] {
        let mut events = vec![MediaEvent::Tracks(video_only())];
        for i in 0..300i64 {
            events.push(v(offset + i * 40, i % 50 == 0));
        }
        events.push(MediaEvent::End);
        let segs = segments(&run(aligned(2000, Some(500)), events));
        assert!(segs.len() >= 3, "{offset}");
        for s in &segs {
            assert!(
                s.frames[0].keyframe,
                "offset {offset}: segment {} at {}",
                s.msn, s.start_dts_ms
            );
            assert!(s.parts[0].independent);
            assert_eq!((s.start_dts_ms - offset) % 2000, 0, "offset {offset}");
        }
    }
}

#[test]
fn after_a_discontinuity_mid_cell_the_next_number_runs_to_the_boundary_after() {
    let mut events = vec![MediaEvent::Tracks(video_only())];
    for i in 0..50i64 {
        events.push(v(i * 100, i % 10 == 0));
    }
    // At 5 s (mid-cell 2) the source changes; its first keyframe at 5.1 s.
    events.push(MediaEvent::Discontinuity(
        ugc_core::DiscontinuityReason::SourceChanged,
    ));
    for i in 51..90i64 {
        events.push(v(i * 100, i == 51 || i % 10 == 0));
    }
    events.push(MediaEvent::End);
    let segs = segments(&run(aligned(2000, None), events));
    let got: Vec<(u64, i64, bool)> = segs
        .iter()
        .map(|s| (s.msn, s.start_dts_ms, s.discontinuity))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, 4000, false),
            // Number 3 from 5.1 s to the boundary of cell 4 (8 s).
            (3, 5100, true),
            (4, 8000, false),
        ]
    );
}

/// A relay push that fell behind skips to the next keyframe: a hole on
/// the same timeline, announced as `ReaderSkipped`. Here the media stops at
/// 4.3 s and resumes at 5 s, a keyframe in cell 2 (4-6 s), whose number the
/// segment before took: rather than a segment from 5 s to the boundary
/// after (3 s, past the target duration, under the number that the other
/// origins give the segment from 6 s), the media waits for 6 s.
#[test]
fn after_a_reader_skipped_mid_cell_the_media_waits_for_the_next_cell() {
    for reason in [
        ugc_core::DiscontinuityReason::ReaderSkipped,
        ugc_core::DiscontinuityReason::SourceChanged,
    ] {
        let mut events = vec![MediaEvent::Tracks(av())];
        for i in 0..44i64 {
            events.push(v(i * 100, i % 10 == 0));
            events.push(a(i * 100 + 3));
        }
        events.push(MediaEvent::Discontinuity(reason));
        for i in 50..100i64 {
            events.push(v(i * 100, i % 10 == 0));
            events.push(a(i * 100 + 3));
        }
        events.push(MediaEvent::End);
        let out = run(aligned(2000, None), events);
        let got: Vec<(u64, i64, u64, bool)> = segments(&out)
            .iter()
            .map(|s| (s.msn, s.start_dts_ms, s.duration_ms, s.discontinuity))
            .collect();
        let want = match reason {
            ugc_core::DiscontinuityReason::ReaderSkipped => vec![
                (2, 4000, 400, false),
                (3, 6000, 2000, true),
                (4, 8000, 2000, false),
            ],
            // A new source (which a Hub with the grid lands on a
            // boundary): nothing of it is dropped.
            _ => vec![
                (2, 4000, 400, false),
                (3, 5000, 3000, true),
                (4, 8000, 2000, false),
            ],
        };
        assert_eq!(got, want, "{reason:?}");
    }
}

/// The same after an idle flush: the main transcoder killed at 4.4 s, the
/// origin's idle flush closes segment 2 (4-6 s) there, and the standby's
/// renditions (the same tracks, no discontinuity) go on from 4.4 s with an
/// IDR, then IDRs on the grid (5 s, 6 s, ...). Rather than a segment from
/// 4.4 s to the boundary after 6 s (3.6 s under number 3), the media waits
/// for 6 s; if the source comes back before the flush, segment 2 goes on
/// with it (nothing is dropped).
#[test]
fn after_an_idle_flush_mid_cell_the_media_waits_for_the_next_cell() {
    for flushed in [true, false] {
        let mut s = Segmenter::new(aligned(2000, None));
        let mut out = Vec::new();
        let mut push = |s: &mut Segmenter, e: MediaEvent| {
            s.push(e, T0).unwrap();
            out.extend(std::iter::from_fn(|| s.poll()));
        };
        push(&mut s, MediaEvent::Tracks(av()));
        for i in 0..44i64 {
            push(&mut s, v(i * 100, i % 10 == 0));
            push(&mut s, a(i * 100 + 3));
        }
        if flushed {
            s.flush(T0 + 5000).unwrap();
        }
        for i in 44..100i64 {
            push(&mut s, v(i * 100, i == 44 || i % 10 == 0));
            push(&mut s, a(i * 100 + 3));
        }
        push(&mut s, MediaEvent::End);
        let got: Vec<(u64, i64, u64)> = segments(&out)
            .iter()
            .map(|s| (s.msn, s.start_dts_ms, s.duration_ms))
            .collect();
        let want = match flushed {
            true => vec![(2, 4000, 400), (3, 6000, 2000), (4, 8000, 2000)],
            false => vec![(2, 4000, 2000), (3, 6000, 2000), (4, 8000, 2000)],
        };
        assert_eq!(got, want, "flushed: {flushed}");
        assert_eq!(s.stats().target_overruns, 0, "{got:?}");
    }
}

/// A stream's slate takes over in mid-cell (its main publisher gone at
/// 5.3 s, 1 s GOPs, 2 s segments with 0.5 s parts), with other tracks: a
/// discontinuity. Through a Hub with a 2 s `discontinuity_grid` the slate
/// lands on 6 s and every segment stays within the target duration under
/// its cell's number; without it the slate's first segment runs from 5.32 s
/// to its first keyframe in the next cell (8.32 s): 3 s, past
/// `#EXT-X-TARGETDURATION:2`.
#[test]
fn a_slate_in_mid_cell_through_a_hub_on_the_grid_keeps_segments_within_the_target() {
    use ugc_core::{Hub, HubConfig, SourceRole, TrackParams, VideoParams};
    for grid in [Some(std::time::Duration::from_secs(2)), None] {
        let hub = Hub::new(HubConfig {
            discontinuity_grid: grid,
            source_timeout: std::time::Duration::ZERO,
            ..HubConfig::default()
        });
        let name = path("live/a");
        let mut reader = hub.subscribe(&name);
        let mut events = Vec::new();
        // Read as it goes (the Hub keeps three GOPs).
        let mut read = |events: &mut Vec<MediaEvent>| {
            while let Some(e) = reader.try_next() {
                events.push(e);
            }
        };
        let mut main = hub.publish(&name);
        let mut slate = hub.publish_as(&name, SourceRole::Fallback);
        main.push(MediaEvent::Tracks(av())).unwrap();
        for i in 0..133i64 {
            let t = i * 40; // to 5.32 s
            main.push(v(t, i % 25 == 0)).unwrap();
            main.push(a(t + 3)).unwrap();
            read(&mut events);
        }
        drop(main);
        let mut other: Vec<_> = av().iter().cloned().collect();
        other[0].params = TrackParams::Video(VideoParams {
            width: 640,
            height: 360,
            frame_rate: None,
        });
        slate
            .push(MediaEvent::Tracks(ugc_core::Tracks::new(other)))
            .unwrap();
        for i in 0..150i64 {
            let t = 90_000 + i * 40;
            slate.push(v(t, i % 25 == 0)).unwrap();
            slate.push(a(t + 3)).unwrap();
            read(&mut events);
        }
        let mut s = Segmenter::new(aligned(2000, Some(500)));
        let mut out = Vec::new();
        for (i, e) in events.into_iter().enumerate() {
            s.push(e, T0 + i as i64 * 10).unwrap();
            while let Some(o) = s.poll() {
                out.push(o);
            }
        }
        s.flush(T0 + 100_000).unwrap();
        while let Some(o) = s.poll() {
            out.push(o);
        }
        let got: Vec<(u64, i64, u64, bool)> = segments(&out)
            .iter()
            .map(|s| (s.msn, s.start_dts_ms, s.duration_ms, s.discontinuity))
            .collect();
        match grid {
            Some(_) => {
                assert_eq!(s.stats().target_overruns, 0, "{got:?}");
                assert_eq!(
                    got,
                    vec![
                        // (A segmenter holds its first segments back.)
                        (2, 4000, 1320, false),
                        // The slate from 6 s: cell 3, 4, ...
                        (3, 6000, 2000, true),
                        (4, 8000, 2000, false),
                        (5, 10_000, 2000, false),
                    ],
                );
                assert!(
                    got.iter()
                        .all(|(msn, start, ..)| *start / 2000 == *msn as i64)
                );
            }
            None => {
                assert_eq!(s.stats().mid_cell_overruns, 1, "{got:?}");
                // From 5.32 s to the slate's first keyframe of cell 4.
                assert!(got.contains(&(3, 5320, 3000, true)), "{got:?}");
            }
        }
    }
}

#[test]
fn a_hole_in_the_timeline_jumps_the_numbers_and_restarts_the_window() {
    let mut events = vec![MediaEvent::Tracks(video_only())];
    for i in 0..50i64 {
        events.push(v(i * 100, i % 10 == 0));
    }
    // Nothing from 5 s to 11 s.
    for i in 110..160i64 {
        events.push(v(i * 100, i % 10 == 0));
    }
    events.push(MediaEvent::End);
    let out = run(aligned(2000, None), events);
    let segs = segments(&out);
    let got: Vec<(u64, i64, u64)> = segs
        .iter()
        .map(|s| (s.msn, s.start_dts_ms, s.duration_ms))
        .collect();
    // Segment 2 ends with its media (5 s), not at the next segment.
    assert_eq!(
        got,
        vec![
            (2, 4000, 1000),
            (5, 11_000, 1000),
            (6, 12_000, 2000),
            (7, 14_000, 2000)
        ]
    );
    // A live window can list no hole: it starts again after it.
    let live = LiveStream::new(LiveConfig::default());
    live.apply_all(out, 0);
    let text = live.render_media_playlist(Variant::Fmp4);
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:5\n"), "{text}");
    assert_eq!(text.matches("#EXTINF").count(), 3, "{text}");
    assert!(live.segment(2).is_none());
    assert!(live.segment(6).is_some());
}

/// A stream like an encoder's: video at `fps` with millisecond timestamps,
/// a keyframe every `gop_ms` (and scene cuts), sound every 1024 samples at
/// 44.1 kHz with millisecond timestamps, interleaved in a random order, as
/// a relay delivers it.
fn encoder_stream() -> impl Strategy<Value = (Vec<Frame>, u32, Option<u32>, usize)> {
    (
        (24u32..=60, 400i64..=5000, 0i64..=3000, 60usize..=500),
        proptest::collection::vec(proptest::bool::weighted(0.03), 500),
        proptest::collection::vec(any::<bool>(), 2000),
        (1000u32..=4000, proptest::option::of(200u32..=600)),
        any::<proptest::sample::Index>(),
    )
        .prop_map(
            |((fps, gop_ms, start, n), scene_cuts, order, (target, part), join)| {
                let mut video = Vec::new();
                let mut next_key = start;
                for i in 0..n {
                    let t = start + (i as i64 * 1000) / i64::from(fps);
                    let key = i == 0 || t >= next_key || scene_cuts[i % 500];
                    if key && t >= next_key {
                        next_key += gop_ms;
                    }
                    video.push(frame(1, t, key));
                }
                let end = video.last().unwrap().dts;
                let mut audio = Vec::new();
                let mut k = 0i64;
                loop {
                    let t = start + 7 + (k * 1024 * 1000 + 22_050) / 44_100;
                    if t > end {
                        break;
                    }
                    audio.push(frame(2, t, true));
                    k += 1;
                }
                let mut frames = vec![video.remove(0)];
                let (mut vi, mut ai) = (0, 0);
                let mut o = order.iter().cycle();
                while vi < video.len() || ai < audio.len() {
                    let v_first = ai >= audio.len()
                        || (vi < video.len()
                            && (video[vi].dts <= audio[ai].dts || *o.next().unwrap())
                            && video[vi].dts <= audio[ai].dts + 60);
                    if v_first {
                        frames.push(video[vi].clone());
                        vi += 1;
                    } else {
                        frames.push(audio[ai].clone());
                        ai += 1;
                    }
                }
                // Where the later segmenter joins: a video keyframe, as a
                // relay starts.
                let keys: Vec<usize> = frames
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.track == TrackId(1) && f.keyframe)
                    .map(|(i, _)| i)
                    .collect();
                let join = keys[join.index(keys.len())];
                (frames, target, part, join)
            },
        )
}

fn run_all(config: SegmenterConfig, frames: &[Frame]) -> Vec<Seen> {
    let mut events = vec![MediaEvent::Tracks(av())];
    events.extend(frames.iter().cloned().map(MediaEvent::Frame));
    events.push(MediaEvent::End);
    seen(&run(config, events))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Two segmenters on one stream, the second joining at a random
    /// keyframe: from the second's first segment on, both publish the same
    /// outputs (segments, parts, chunks, hints, numbers and bytes), in the
    /// same order; and the first's numbers are the cells'.
    #[test]
    fn a_segmenter_that_joins_later_makes_the_same_segments(
        (frames, target, part, join) in encoder_stream()
    ) {
        let config = aligned(target, part);
        let all = run_all(config.clone(), &frames);
        let late = run_all(config.clone(), &frames[join..]);
        // Numbers: consecutive (no hole in this stream), each segment's the
        // cell of its start (or of just before it).
        let segs: Vec<(u64, i64)> = all.iter().filter_map(|s| match s {
            Seen::Segment { msn, start_dts_ms, .. } => Some((*msn, *start_dts_ms)),
            _ => None,
        }).collect();
        for w in segs.windows(2) {
            prop_assert_eq!(w[1].0, w[0].0 + 1, "{:?}", segs);
        }
        // Each segment dated by the timeline: anchor + its start.
        for s in all.iter() {
            if let Seen::Segment { start_dts_ms, date, .. } = s {
                prop_assert_eq!(*date, ANCHOR + start_dts_ms);
            }
        }
        for (msn, start) in segs.iter().skip(1) {
            let cell = (start + 50).div_euclid(i64::from(target));
            let key = frames.iter().find(|f| f.track == TrackId(1) && f.dts == *start && f.keyframe);
            // A keyframe's segment is the cell it is presented in; a cell
            // with no keyframe may be cut as late as its end (its first
            // frame after it).
            if let Some(key) = key {
                let cell = (key.pts + 50).div_euclid(i64::from(target));
                prop_assert_eq!(*msn as i64, cell, "{:?}", segs);
            } else {
                prop_assert!(*msn as i64 == cell || *msn as i64 == cell - 1, "{:?}", segs);
            }
        }
        let Some(first) = late.iter().find_map(|s| match s {
            Seen::Opened(m, ..) => Some(*m),
            Seen::Segment { msn, .. } => Some(*msn),
            _ => None,
        }) else {
            // Joined too near the end to publish anything: nothing to differ.
            return Ok(());
        };
        let a = from_msn(&all, first);
        let b = from_msn(&late, first);
        prop_assert_eq!(a.len(), b.len(), "joined at frame {}, first segment {}", join, first);
        for (x, y) in a.iter().zip(b.iter()) {
            prop_assert_eq!(x, y, "joined at frame {}, first segment {}", join, first);
        }
        // The init segment is the same too.
        prop_assert_eq!(&all[0], &late[0]);
    }
}

#[test]
fn the_segment_a_segmenter_opens_first_is_held_back() {
    // 1 s GOPs, 2 s segments.
    let mut frames = Vec::new();
    for i in 0..300i64 {
        frames.push(frame(1, i * 40, i % 25 == 0));
    }
    let first_msn = |from: usize| {
        let mut s = Segmenter::new(aligned(2000, Some(500)));
        s.push(MediaEvent::Tracks(video_only()), 0).unwrap();
        for f in &frames[from..] {
            s.push(MediaEvent::Frame(f.clone()), 0).unwrap();
        }
        s.push(MediaEvent::End, 0).unwrap();
        let out: Vec<SegmenterOutput> = std::iter::from_fn(|| s.poll()).collect();
        // Nothing about the held-back segment, not even a hint.
        let first = out
            .iter()
            .find_map(|o| match o {
                SegmenterOutput::Opened(seg) => Some(seg.msn),
                SegmenterOutput::Init(_) => None,
                other => panic!("before the first segment opened: {other:?}"),
            })
            .unwrap();
        let start = out
            .iter()
            .find_map(|o| match o {
                SegmenterOutput::Segment(seg) => Some(seg.start_dts_ms),
                _ => None,
            })
            .unwrap();
        (first, start)
    };
    // A segmenter's first segment starts wherever it joined, its parts
    // with it, and what a segment leaves to the next (sound past its last
    // part) depends on where its parts were cut: published from the
    // segment of its second cut, whose predecessor started where every
    // segmenter starts it. Joined at the keyframe of 4 s (a boundary's) or
    // of 5 s (mid-cell): cuts at 6 and 8 s, published from 8 s.
    assert_eq!(first_msn(100), (4, 8000));
    assert_eq!(first_msn(125), (4, 8000));
    // From the stream's start: from 4 s.
    assert_eq!(first_msn(0), (2, 4000));
}
