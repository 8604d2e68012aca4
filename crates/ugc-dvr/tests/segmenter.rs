//! Segment cutting rules of the `Segmenter`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use proptest::prelude::*;
use ugc_core::{DiscontinuityReason, Frame, MediaEvent, TrackId};
use ugc_dvr::{Error, Segmenter, SegmenterConfig, SegmenterOutput};

#[test]
fn cuts_at_keyframes_on_target() {
    // Keyframe every second, target 2 s: a segment per two GOPs.
    let mut events = vec![MediaEvent::Tracks(video_only())];
    events.extend(video_events(150, 25));
    events.push(MediaEvent::End);
    let out = run(config(2000), events);
    assert!(matches!(out.first(), Some(SegmenterOutput::Init(i)) if i.number == 0));
    assert!(matches!(out.last(), Some(SegmenterOutput::Ended)));
    let segs = segments(&out);
    assert_eq!(segs.len(), 3);
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s.msn, i as u64);
        assert_eq!(s.duration_ms, 2000);
        assert_eq!(s.start_dts_ms, i as i64 * 2000);
        assert_eq!(s.start_pts_ms, i as i64 * 2000 + 40);
        assert_eq!(s.frames.len(), 50);
        assert!(s.frames[0].keyframe);
        assert!(!s.discontinuity);
        assert_eq!(s.parts.len(), 1);
        assert!(s.parts[0].independent);
        assert_eq!(s.parts[0].duration_ms, 2000);
    }
}

#[test]
fn cuts_at_first_keyframe_after_target() {
    // GOP 1.2 s, target 2 s: cut at 2.4 s, 4.8 s; the last segment ends at
    // the last frame plus one frame duration.
    let mut events = vec![MediaEvent::Tracks(video_only())];
    events.extend(video_events(150, 30));
    events.push(MediaEvent::End);
    let segs = segments(&run(config(2000), events));
    let d: Vec<u64> = segs.iter().map(|s| s.duration_ms).collect();
    assert_eq!(d, vec![2400, 2400, 1200]);
    assert_eq!(d.iter().sum::<u64>(), 150 * 40);
    for s in &segs {
        assert!(s.frames[0].keyframe && s.frames[0].track == TrackId(1));
    }
}

#[test]
fn long_gop_makes_long_segments() {
    let mut events = vec![MediaEvent::Tracks(video_only())];
    events.extend(video_events(250, 125)); // 5 s GOPs
    events.push(MediaEvent::End);
    let d: Vec<u64> = segments(&run(config(2000), events))
        .iter()
        .map(|s| s.duration_ms)
        .collect();
    assert_eq!(d, vec![5000, 5000]);
}

#[test]
fn frames_before_the_first_keyframe_are_dropped() {
    let mut s = Segmenter::new(config(2000));
    s.push(MediaEvent::Tracks(av()), T0).unwrap();
    s.push(a(0), T0).unwrap();
    s.push(v(0, false), T0).unwrap();
    s.push(v(40, true), T0).unwrap();
    s.push(a(46), T0).unwrap();
    s.push(MediaEvent::End, T0).unwrap();
    assert_eq!(s.stats().frames_dropped, 2);
    let mut out = Vec::new();
    while let Some(o) = s.poll() {
        out.push(o);
    }
    let segs = segments(&out);
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].frames.len(), 2);
    assert_eq!(segs[0].start_dts_ms, 40);
}

#[test]
fn discontinuity_closes_and_marks_next() {
    let mut events = vec![MediaEvent::Tracks(av())];
    events.extend(video_events(30, 25));
    events.push(MediaEvent::Discontinuity(
        DiscontinuityReason::SourceChanged,
    ));
    // A non-keyframe right after the discontinuity cannot start a segment.
    events.push(v(5000, false));
    events.push(v(5040, true));
    events.push(a(5050));
    events.push(v(5080, false));
    events.push(MediaEvent::End);
    let out = run(config(2000), events);
    let segs = segments(&out);
    assert_eq!(segs.len(), 2);
    assert!(!segs[0].discontinuity);
    assert_eq!(segs[0].duration_ms, 30 * 40);
    assert_eq!(segs[0].frames.len(), 30);
    assert!(segs[1].discontinuity);
    assert_eq!(segs[1].start_dts_ms, 5040);
    assert_eq!(segs[1].frames.len(), 3);
    // `run` delivers 40 ms of media every 10 ms, so every frame arrives
    // earlier (relative to its media time) than the one before: the first
    // segment is dated with the offset of the newest frame when it closes.
    // Frame k (media 40k ms) is event k + 1.
    assert_eq!(segs[0].program_date_time_ms, T0 + 30 * 10 - 29 * 40);
    // After a discontinuity the offset restarts from the new frames, not
    // from the previous segment: the keyframe v(5040) is event 33 and the
    // frame before it, v(5000) event 32, arrived 10 ms later relative to
    // its time.
    assert_eq!(segs[1].program_date_time_ms, T0 + 33 * 10);
    assert_eq!(segs[0].init, segs[1].init);
}

#[test]
fn contiguous_segments_derive_program_date_time() {
    // Real-time delivery with up to 30 ms of jitter: dates follow media
    // time from the earliest arrival, so contiguous segments are contiguous
    // in wall-clock time too.
    let mut s = Segmenter::new(config(2000));
    s.push(MediaEvent::Tracks(video_only()), T0).unwrap();
    let mut out = Vec::new();
    for (i, e) in video_events(150, 25).into_iter().enumerate() {
        let jitter = [0, 30, 7, 19][i % 4];
        s.push(e, T0 + i as i64 * 40 + jitter).unwrap();
        out.extend(std::iter::from_fn(|| s.poll()));
    }
    s.push(MediaEvent::End, T0 + 6000).unwrap();
    out.extend(std::iter::from_fn(|| s.poll()));
    let segs = segments(&out);
    assert_eq!(segs.len(), 3);
    assert_eq!(segs[0].program_date_time_ms, T0);
    for w in segs.windows(2) {
        assert_eq!(
            w[1].program_date_time_ms,
            w[0].program_date_time_ms + w[0].duration_ms as i64
        );
    }
}

#[test]
fn tracks_change_makes_new_init_and_discontinuity() {
    let mut events = vec![MediaEvent::Tracks(av())];
    events.extend(video_events(30, 25));
    // The same track set again (a Hub reader skip) changes nothing.
    events.push(MediaEvent::Tracks(av()));
    events.push(v(1200, false));
    events.push(MediaEvent::Tracks(video_only()));
    events.push(v(1240, true));
    events.push(v(1280, false));
    events.push(MediaEvent::End);
    let out = run(config(2000), events);
    let inits: Vec<u32> = out
        .iter()
        .filter_map(|o| match o {
            SegmenterOutput::Init(i) => Some(i.number),
            _ => None,
        })
        .collect();
    assert_eq!(inits, vec![0, 1]);
    let segs = segments(&out);
    assert_eq!(segs.len(), 2);
    assert_eq!((segs[0].init, segs[0].discontinuity), (0, false));
    assert_eq!(segs[0].frames.len(), 31);
    assert_eq!((segs[1].init, segs[1].discontinuity), (1, true));
    assert_eq!(segs[1].tracks, video_only());
    // The init output comes before the segments that use it.
    let pos_init1 = out
        .iter()
        .position(|o| matches!(o, SegmenterOutput::Init(i) if i.number == 1))
        .unwrap();
    let pos_seg1 = out
        .iter()
        .position(|o| matches!(o, SegmenterOutput::Segment(s) if s.msn == 1))
        .unwrap();
    assert!(pos_init1 < pos_seg1);
}

/// `av()` with another encoder's H.264 configuration: the same SPS, a
/// different PPS (as a backup encoder or the fallback slate has).
fn av_other_encoder() -> (ugc_core::Tracks, Vec<u8>) {
    let tracks = av();
    let video = tracks.video().unwrap();
    let avc = ugc_codec::h264::AvcConfig::parse(&video.config).unwrap();
    let mut pps = avc.pps[0].to_vec();
    *pps.last_mut().unwrap() ^= 0x40;
    let record = ugc_codec::h264::build_avcc(&[&avc.sps[0]], &[&pps]).unwrap();
    let mut inband = Vec::new();
    for nal in [&avc.sps[0][..], &pps[..]] {
        inband.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        inband.extend_from_slice(nal);
    }
    let mut v = video.clone();
    v.config = bytes::Bytes::from(record);
    let a = tracks.audio().unwrap().clone();
    (ugc_core::Tracks::new(vec![v, a]), inband)
}

/// After a change of video configuration (a new init segment mid-stream)
/// the first keyframe carries the new parameter sets in band, so a reader
/// that keeps the first init's (FFmpeg's HLS demuxer, its H.264 parser in
/// an MP4 export) decodes the new encoder's slices with the right ones. The
/// first init's keyframes, and a change that keeps the video
/// configuration, carry none.
#[test]
fn a_new_video_configuration_goes_in_band_at_its_first_keyframe() {
    let (other, inband) = av_other_encoder();
    let mut events = vec![MediaEvent::Tracks(av())];
    events.extend(video_events(30, 25));
    events.push(MediaEvent::Tracks(other.clone()));
    events.push(v(1240, false)); // dropped: the segment waits for a keyframe
    events.push(v(1280, true));
    events.push(v(1320, false));
    events.push(v(1360, true));
    events.push(MediaEvent::Tracks(audio_video_same(&other)));
    events.push(v(1400, true));
    events.push(MediaEvent::End);
    let out = run(config(2000), events);
    let segs = segments(&out);
    assert_eq!(segs.len(), 3, "one per init");
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let first = segs[0].data.to_bytes();
    assert_eq!(
        find(&first, &inband[4..20]),
        None,
        "no sets in the first init's"
    );
    let second = segs[1].data.to_bytes();
    let key = frame(1, 1280, true).data;
    let mut expected = inband.clone();
    expected.extend_from_slice(&key);
    assert!(
        find(&second, &expected).is_some(),
        "sets right before the keyframe"
    );
    assert_eq!(
        second
            .windows(inband.len())
            .filter(|w| *w == &inband[..])
            .count(),
        1,
        "at the first keyframe only"
    );
    // Audio added or removed, video unchanged: nothing in band.
    let third = segs[2].data.to_bytes();
    assert_eq!(find(&third, &inband), None);
}

/// `tracks` again with its video only (the video configuration unchanged).
fn audio_video_same(tracks: &ugc_core::Tracks) -> ugc_core::Tracks {
    ugc_core::Tracks::new(tracks.video().into_iter().cloned().collect())
}

#[test]
fn audio_only_is_cut_by_duration() {
    // AAC 44.1 kHz over RTMP: 23/24 ms jittery millisecond timestamps.
    let mut events = vec![MediaEvent::Tracks(audio_only())];
    let n = 400i64;
    for i in 0..n {
        events.push(a(i * 1024 * 1000 / 44_100));
    }
    events.push(MediaEvent::End);
    let mut s = Segmenter::new(config(2000));
    let mut out = Vec::new();
    for e in events {
        s.push(e, T0).unwrap();
        while let Some(o) = s.poll() {
            out.push(o);
        }
    }
    assert_eq!(s.stats().audio_resyncs, 0);
    let segs = segments(&out);
    // 2 s = 86.13 frames: cut after 87 frames (the first at or after 2 s).
    let counts: Vec<usize> = segs.iter().map(|s| s.frames.len()).collect();
    assert_eq!(counts, vec![87, 87, 87, 87, 52]);
    // Clean clock: segment boundaries land on exact multiples of 1024
    // samples, so the total is the sample count, to the millisecond.
    let total: u64 = segs.iter().map(|s| s.duration_ms).sum();
    assert_eq!(total, (n as u64 * 1024 * 1000 + 22_050) / 44_100);
    for s in &segs[..4] {
        assert!(s.duration_ms >= 2000);
        assert!(s.parts[0].independent);
    }
}

#[test]
fn end_closes_and_later_events_are_refused() {
    let mut s = Segmenter::new(config(2000));
    s.push(MediaEvent::Tracks(video_only()), T0).unwrap();
    s.push(v(0, true), T0).unwrap();
    s.push(v(40, false), T0).unwrap();
    assert!(s.poll().is_some()); // init
    assert!(s.poll().is_none()); // open segment not published yet
    s.push(MediaEvent::End, T0).unwrap();
    let seg = match s.poll() {
        Some(SegmenterOutput::Segment(seg)) => seg,
        o => panic!("{o:?}"),
    };
    assert_eq!(seg.duration_ms, 80);
    assert!(matches!(s.poll(), Some(SegmenterOutput::Ended)));
    assert!(s.is_ended());
    assert!(matches!(s.push(v(80, true), T0), Err(Error::AfterEnd)));
}

#[test]
fn flush_publishes_the_open_segment() {
    let mut s = Segmenter::new(config(2000));
    s.push(MediaEvent::Tracks(video_only()), T0).unwrap();
    for e in video_events(10, 25) {
        s.push(e, T0).unwrap();
    }
    s.flush(T0 + 4000).unwrap();
    let _init = s.poll();
    assert!(matches!(s.poll(), Some(SegmenterOutput::Segment(seg)) if seg.duration_ms == 400));
    // The publisher comes back: a new segment at the next keyframe, dated now.
    s.push(v(10_000, false), T0 + 9000).unwrap();
    s.push(v(10_040, true), T0 + 9040).unwrap();
    s.push(MediaEvent::End, T0 + 9100).unwrap();
    match s.poll() {
        Some(SegmenterOutput::Segment(seg)) => {
            assert_eq!(seg.msn, 1);
            assert_eq!(seg.program_date_time_ms, T0 + 9040);
            assert_eq!(seg.frames.len(), 1);
        }
        o => panic!("{o:?}"),
    }
}

/// A source cut off just after a keyframe: the open segment has one
/// video frame (presented at 1040) and sound that ends before it. The idle
/// flush leaves it open (a segment whose sound does not reach its picture
/// stalls hls.js); the source's successor goes on on the same timeline and
/// the segment closes with both tracks. Without the sound past the
/// keyframe it is the same; with it, the flush closes the segment.
#[test]
fn flush_keeps_a_segment_whose_sound_ends_before_it_starts_open() {
    let mut s = Segmenter::new(config(1000));
    s.push(MediaEvent::Tracks(av()), T0).unwrap();
    for i in 0..25 {
        s.push(v(i * 40, i == 0), T0).unwrap();
        s.push(a(i * 40), T0).unwrap();
    }
    s.push(v(1000, true), T0).unwrap(); // cuts segment 0
    s.push(a(1000), T0).unwrap();
    s.flush(T0 + 4000).unwrap();
    let outputs: Vec<_> = std::iter::from_fn(|| s.poll()).collect();
    assert_eq!(segments(&outputs).len(), 1, "only the whole segment 0");
    s.push(a(1040), T0 + 4500).unwrap(); // the sound reaches the picture
    s.flush(T0 + 8500).unwrap();
    let outputs: Vec<_> = std::iter::from_fn(|| s.poll()).collect();
    assert_eq!(segments(&outputs).len(), 1, "the flush closed segment 1");
}

#[test]
fn flush_keeps_a_segment_that_lacks_a_track_open() {
    let mut s = Segmenter::new(config(1000));
    s.push(MediaEvent::Tracks(av()), T0).unwrap();
    for i in 0..25 {
        s.push(v(i * 40, i == 0), T0).unwrap();
        s.push(a(i * 40), T0).unwrap();
    }
    s.push(v(1000, true), T0).unwrap(); // cuts segment 0
    s.flush(T0 + 4000).unwrap();
    let outputs: Vec<_> = std::iter::from_fn(|| s.poll()).collect();
    let segs = segments(&outputs);
    assert_eq!(segs.len(), 1, "only the whole segment 0");
    // The takeover: sound from 1000 (the Hub's silence), video on.
    for i in 0..30 {
        s.push(a(1000 + i * 40), T0 + 5000).unwrap();
        s.push(v(1040 + i * 40, i == 24), T0 + 5000).unwrap();
    }
    s.push(MediaEvent::End, T0 + 6000).unwrap();
    let outputs: Vec<_> = std::iter::from_fn(|| s.poll()).collect();
    let segs = segments(&outputs);
    let first = &segs[0];
    assert_eq!(first.msn, 1);
    assert!(!first.discontinuity);
    assert_eq!(first.duration_ms, 1000, "one old frame and 24 new ones");
    assert!(first.frames.iter().any(|f| f.track == TrackId(2)));
}

#[test]
fn source_errors_are_reported() {
    let mut s = Segmenter::new(config(2000));
    assert!(matches!(
        s.push(v(0, true), T0),
        Err(Error::FrameBeforeTracks { .. })
    ));
    s.push(MediaEvent::Tracks(video_only()), T0).unwrap();
    assert!(matches!(
        s.push(a(0), T0),
        Err(Error::UnknownTrack {
            track: TrackId(2),
            ..
        })
    ));
}

#[test]
fn parts_are_cut_on_part_target() {
    let cfg = SegmenterConfig {
        target_duration_ms: 2000,
        part_target_ms: Some(500),
        ..Default::default()
    };
    let mut events = vec![MediaEvent::Tracks(av())];
    for i in 0..100i64 {
        events.push(v(i * 40, i % 50 == 0));
        events.push(a(i * 40 + 5));
    }
    events.push(MediaEvent::End);
    let out = run(cfg, events);
    let segs = segments(&out);
    assert_eq!(segs.len(), 2);
    for s in &segs {
        // A part is cut before the frame that would take it past 500 ms.
        assert_eq!(s.parts.len(), 5);
        let d: Vec<u64> = s.parts.iter().map(|p| p.duration_ms).collect();
        assert_eq!(d, vec![480, 480, 480, 480, 80]);
        let indep: Vec<bool> = s.parts.iter().map(|p| p.independent).collect();
        assert_eq!(indep, vec![true, false, false, false, false]);
        // The segment is styp + its parts, and the parts are views of it.
        let parts_len: usize = s.parts.iter().map(|p| p.data.len()).sum();
        assert_eq!(s.data.len(), ugc_codec::fmp4::styp().len() + parts_len);
        assert!(s.data.to_bytes().ends_with(&s.parts[4].data.to_bytes()));
    }
    // Every part was announced before its segment.
    let mut announced = 0;
    for o in &out {
        match o {
            SegmenterOutput::Part { msn, part } => {
                assert_eq!(part.index, announced);
                assert!(*msn <= 1);
                announced += 1;
            }
            SegmenterOutput::Segment(s) => {
                assert_eq!(announced as usize, s.parts.len());
                announced = 0;
            }
            _ => {}
        }
    }
}

#[test]
fn ts_rendition_is_rendered_once() {
    let mut events = vec![MediaEvent::Tracks(av())];
    events.extend(video_events(10, 25));
    events.push(MediaEvent::End);
    let segs = segments(&run(config(2000), events));
    assert_eq!(segs[0].ts_size(), None);
    let a = segs[0].ts().unwrap();
    let b = segs[0].ts().unwrap();
    assert_eq!(a.as_ptr(), b.as_ptr());
    assert_eq!(segs[0].ts_size(), Some(a.len()));
}

/// A video frame with a real NAL length framing (one 4-byte-prefixed slice
/// whose size varies), so the MPEG-TS muxer keeps it.
fn sized_video(dts: i64, key: bool) -> MediaEvent {
    let len = 200 + usize::try_from(dts * 37 % 3000).unwrap();
    let mut data = u32::try_from(len).unwrap().to_be_bytes().to_vec();
    data.push(if key { 0x65 } else { 0x41 });
    data.resize(4 + len, 0x5a);
    MediaEvent::Frame(Frame {
        track: TrackId(1),
        dts,
        pts: dts + 40,
        keyframe: key,
        data: data.into(),
    })
}

/// Checks (a parser of its own) that every payload-carrying packet's
/// continuity counter is its PID's previous one + 1 (mod 16); returns the
/// packets per PID.
fn ts_continuity(stream: &[u8]) -> Result<std::collections::BTreeMap<u16, usize>, String> {
    let mut last = std::collections::BTreeMap::<u16, (u8, usize)>::new();
    for (n, p) in stream.chunks(188).enumerate() {
        if p.len() != 188 || p[0] != 0x47 {
            return Err(format!("packet {n}: not a TS packet"));
        }
        let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
        let cc = p[3] & 0x0f;
        let payload = p[3] & 0x10 != 0;
        if let Some((prev, count)) = last.get_mut(&pid) {
            let want = if payload { (*prev + 1) & 0x0f } else { *prev };
            if cc != want {
                return Err(format!(
                    "packet {n}, PID {pid:#x}: counter {cc}, want {want}"
                ));
            }
            *prev = cc;
            *count += 1;
        } else {
            last.insert(pid, (cc, 1));
        }
    }
    Ok(last.into_iter().map(|(pid, (_, n))| (pid, n)).collect())
}

#[test]
fn ts_renditions_continue_continuity_counters_across_segments() {
    // Segments with frames of many sizes, a discontinuity and a new track
    // set (video only) in the middle, classic and LL-HLS; each TS
    // rendition muxed lazily, the last segment first: played back to back
    // in order, every PID's counter goes on.
    let mut events = vec![MediaEvent::Tracks(av())];
    for i in 0..100 {
        events.push(sized_video(i * 40, i % 25 == 0));
        events.push(a(i * 40 + 7));
    }
    events.push(MediaEvent::Discontinuity(
        DiscontinuityReason::SourceChanged,
    ));
    for i in 100..200 {
        events.push(sized_video(i * 40, i % 25 == 0));
        events.push(a(i * 40 + 7));
    }
    events.push(MediaEvent::Tracks(video_only()));
    for i in 200..300 {
        events.push(sized_video(i * 40, i % 25 == 0));
    }
    events.push(MediaEvent::End);
    for part_target_ms in [None, Some(200)] {
        let config = SegmenterConfig {
            target_duration_ms: 1000,
            part_target_ms,
            ..Default::default()
        };
        let segs = segments(&run(config, events.clone()));
        assert_eq!(segs.len(), 12);
        assert_eq!(segs.iter().filter(|s| s.discontinuity).count(), 2);
        let ts: Vec<_> = segs.iter().rev().map(|s| s.ts().unwrap()).collect();
        let joined: Vec<u8> = ts.iter().rev().flatten().copied().collect();
        let pids = ts_continuity(&joined).unwrap_or_else(|e| panic!("{part_target_ms:?}: {e}"));
        assert_eq!(
            pids.keys().copied().collect::<Vec<_>>(),
            [0, 0x100, 0x101, 0x1000]
        );
        assert_eq!((pids[&0], pids[&0x1000]), (12, 12));
        // Many times round the 4-bit counter.
        assert!(pids[&0x100] > 16 * 20, "{pids:?}");
    }
}

/// One generated stream: video frames with random steps and keyframes,
/// audio frames with jitter, merged in a random order that keeps each
/// track's own order.
fn stream_strategy() -> impl Strategy<Value = (Vec<Frame>, u32)> {
    (
        proptest::collection::vec((30i64..=45, proptest::bool::weighted(0.06)), 2..400),
        proptest::collection::vec(22i64..=24, 0..600),
        proptest::collection::vec(any::<bool>(), 1000),
        500u32..4000,
    )
        .prop_map(|(vsteps, asteps, order, target)| {
            let mut video = Vec::new();
            let mut t = 1000;
            for (i, (step, key)) in vsteps.iter().enumerate() {
                video.push(frame(1, t, i == 0 || *key));
                t += step;
            }
            let mut audio = Vec::new();
            let mut t = 1003;
            for step in asteps {
                audio.push(frame(2, t, true));
                t += step;
            }
            // The first event is the first video keyframe.
            let mut frames = vec![video.remove(0)];
            let (mut vi, mut ai) = (0, 0);
            let mut o = order.iter().cycle();
            while vi < video.len() || ai < audio.len() {
                let take_video = ai >= audio.len() || (vi < video.len() && *o.next().unwrap());
                if take_video {
                    frames.push(video[vi].clone());
                    vi += 1;
                } else {
                    frames.push(audio[ai].clone());
                    ai += 1;
                }
            }
            (frames, target)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn segmenter_invariants((frames, target) in stream_strategy()) {
        let mut events = vec![MediaEvent::Tracks(av())];
        events.extend(frames.iter().cloned().map(MediaEvent::Frame));
        events.push(MediaEvent::End);
        let out = run(config(target), events);
        let segs = segments(&out);
        prop_assert!(!segs.is_empty());
        // msn strictly increasing (consecutive from 0).
        for (i, s) in segs.iter().enumerate() {
            prop_assert_eq!(s.msn, i as u64);
            prop_assert!(!s.discontinuity);
            // Every segment starts with a video keyframe.
            prop_assert_eq!(s.frames[0].track, TrackId(1));
            prop_assert!(s.frames[0].keyframe);
            prop_assert_eq!(s.parts.len(), 1);
        }
        // All but the last reach the target, or were cut at a keyframe at
        // least a quarter of it in, so the next keyframe would not make
        // them longer than the fixed target duration.
        for s in &segs[..segs.len() - 1] {
            prop_assert!(s.duration_ms >= u64::from(target / 4), "{} < {}", s.duration_ms, target);
        }
        // One target duration for the stream's life.
        let fixed = segs[0].target_duration_s;
        prop_assert!(segs.iter().all(|s| s.target_duration_s == fixed));
        prop_assert!(fixed >= u64::from(target).div_ceil(1000).max(1) - 1);
        // No frame lost or duplicated, order kept.
        let got: Vec<&Frame> = segs.iter().flat_map(|s| s.frames.iter()).collect();
        prop_assert_eq!(got.len(), frames.len());
        for (g, f) in got.iter().zip(frames.iter()) {
            prop_assert_eq!(*g, f);
        }
        // Durations sum to the input span of the video track (its last
        // frame lasting as long as the one before).
        let vdts: Vec<i64> = frames.iter().filter(|f| f.track == TrackId(1)).map(|f| f.dts).collect();
        let last = vdts[vdts.len() - 1];
        let span = last + (last - vdts[vdts.len() - 2]) - vdts[0];
        prop_assert_eq!(segs.iter().map(|s| s.duration_ms).sum::<u64>(), span as u64);
        // Segments tile the timeline.
        for w in segs.windows(2) {
            prop_assert_eq!(w[0].start_dts_ms + w[0].duration_ms as i64, w[1].start_dts_ms);
        }
    }
}

fn hostile_event() -> impl Strategy<Value = MediaEvent> {
    let dts = prop_oneof![
        -5_000i64..100_000,
        any::<i64>(),
        Just(i64::MAX),
        Just(i64::MIN),
    ];
    prop_oneof![
        20 => (1u32..=3, dts.clone(), dts, any::<bool>()).prop_map(|(t, d, p, k)| {
            let mut f = frame(t, d, k);
            f.pts = p;
            MediaEvent::Frame(f)
        }),
        2 => Just(MediaEvent::Discontinuity(DiscontinuityReason::TimestampJump)),
        1 => prop_oneof![Just(av()), Just(audio_only()), Just(video_only())].prop_map(MediaEvent::Tracks),
        1 => Just(MediaEvent::End),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Garbage timestamps, unknown tracks, events after the end: errors at
    /// worst, never a panic (overflow checks are on in tests), and every
    /// segment still starts with a random access point of its reference track
    /// (its first frame of that track).
    #[test]
    fn hostile_events_never_panic(
        events in proptest::collection::vec(hostile_event(), 0..300),
        target in 0u32..3000,
        part in proptest::option::of(0u32..1000),
    ) {
        let mut s = Segmenter::new(SegmenterConfig { target_duration_ms: target, part_target_ms: part, ..Default::default() });
        let mut msn = None;
        for (i, e) in events.into_iter().enumerate() {
            let _ = s.push(e, i as i64);
            if i % 7 == 0 {
                let _ = s.flush(i64::MAX);
            }
            while let Some(o) = s.poll() {
                if let SegmenterOutput::Segment(seg) = o {
                    prop_assert!(msn.is_none_or(|m| seg.msn == m + 1));
                    msn = Some(seg.msn);
                    // Other tracks' frames may come first: those that
                    // arrived after the previous segment's last part.
                    let reference = seg.tracks.video().or(seg.tracks.audio()).unwrap();
                    let first = seg.frames.iter().find(|f| f.track == reference.id);
                    prop_assert!(first.is_some());
                    prop_assert!(first.unwrap().keyframe || reference.id == TrackId(2));
                    let _ = seg.ts();
                }
            }
        }
    }
}

/// RTMP audio timestamps are milliseconds: 1024-sample AAC frames at
/// 44.1 kHz arrive 23 or 24 ms apart around their exact 23.22 ms. The
/// samples go on a clean clock, and each is presented when it is decoded:
/// a composition offset would carry the jitter into presentation times,
/// where MSE (which buffers by PTS) sees holes between frames.
#[test]
fn audio_is_presented_when_decoded_despite_ms_jitter() {
    let mut events = vec![MediaEvent::Tracks(av())];
    for i in 0..200i64 {
        let video_ms = i * 40;
        events.push(v(video_ms, i % 25 == 0));
        // Two audio frames per video frame's 40 ms, at ms resolution.
        for k in 0..2 {
            let n = i * 2 + k;
            let exact = n * 1024 * 1000 / 44_100;
            events.push(a((exact + (n % 3) - 1).max(0)));
        }
    }
    events.push(MediaEvent::End);
    let segs = segments(&run(config(2000), events));
    assert!(segs.len() >= 3);
    let mut audio_samples = 0;
    for seg in &segs {
        for run in track_runs(&seg.data.to_bytes()) {
            if run.track == 2 {
                for (duration, cts) in run.samples {
                    assert_eq!(duration, 1024, "msn {}", seg.msn);
                    assert_eq!(cts, 0, "msn {}: audio composition offset", seg.msn);
                    audio_samples += 1;
                }
            }
        }
    }
    assert!(audio_samples > 300);
}

/// A scene cut that resets the encoder's GOP (keyframes at 0, 2, 4, 5, 7,
/// 9 s...) used to make a 3 s segment [4, 7) and raise the target duration
/// from 2 to 3 mid-stream, which RFC 8216 6.2.1 forbids. The keyframe at 5 s
/// now cuts: waiting for the next one (2 s away, the longest recent
/// interval) would overrun the fixed target.
#[test]
fn a_gop_reset_cuts_early_to_keep_the_target_duration() {
    let keys = [0i64, 50, 100, 125, 175, 225, 275, 325];
    let mut events = vec![MediaEvent::Tracks(video_only())];
    events.extend((0..350).map(|i| v(i * 40, keys.contains(&i))));
    events.push(MediaEvent::End);
    let mut s = Segmenter::new(config(2000));
    let mut segs = Vec::new();
    for (i, e) in events.into_iter().enumerate() {
        s.push(e, T0 + i as i64 * 40).unwrap();
        while let Some(o) = s.poll() {
            if let SegmenterOutput::Segment(seg) = o {
                segs.push(seg);
            }
        }
    }
    let d: Vec<u64> = segs.iter().map(|s| s.duration_ms).collect();
    assert_eq!(d, vec![2000, 2000, 1000, 2000, 2000, 2000, 2000, 1000]);
    assert!(segs.iter().all(|s| s.target_duration_s == 2));
    assert_eq!(s.stats().early_cuts, 1);
    assert_eq!(s.stats().target_overruns, 0);

    // A GOP that grows past the target for good cannot be cut shorter
    // (segments start at keyframes): the target stays, the overrun counts.
    let mut events = vec![MediaEvent::Tracks(video_only())];
    events.extend((0..300).map(|i| v(i * 40, if i < 100 { i % 50 == 0 } else { i % 100 == 0 })));
    events.push(MediaEvent::End);
    let mut s = Segmenter::new(config(2000));
    let mut segs = Vec::new();
    for (i, e) in events.into_iter().enumerate() {
        s.push(e, T0 + i as i64 * 40).unwrap();
        while let Some(o) = s.poll() {
            if let SegmenterOutput::Segment(seg) = o {
                segs.push(seg);
            }
        }
    }
    let d: Vec<u64> = segs.iter().map(|s| s.duration_ms).collect();
    assert_eq!(d, vec![2000, 2000, 4000, 4000]);
    assert!(segs.iter().all(|s| s.target_duration_s == 2));
    assert_eq!(s.stats().target_overruns, 2);

    // An explicit target duration (for encoders whose GOP varies) is kept
    // as given, and its headroom avoids the early cut.
    let mut events = vec![MediaEvent::Tracks(video_only())];
    events.extend((0..350).map(|i| v(i * 40, keys.contains(&i))));
    events.push(MediaEvent::End);
    let segs = segments(&run(
        SegmenterConfig {
            target_duration_s: Some(4),
            ..config(2000)
        },
        events,
    ));
    let d: Vec<u64> = segs.iter().map(|s| s.duration_ms).collect();
    assert_eq!(d, vec![2000, 2000, 3000, 2000, 2000, 2000, 1000]);
    assert!(segs.iter().all(|s| s.target_duration_s == 4));
}

/// An encoder whose 2 s GOP puts a keyframe a millisecond early (RTMP's
/// millisecond timestamps: 1999 ms) still gets 2 s segments. Without a
/// tolerance the keyframe did not cut, the first segment ran to the next
/// keyframe (4 s) and fixed the stream's target duration at 4.
#[test]
fn a_keyframe_a_millisecond_early_still_cuts() {
    let mut events = vec![MediaEvent::Tracks(video_only())];
    // 25 fps: frame i at 40 i ms, but every keyframe 1 ms early.
    events.extend((0..250).map(|i| {
        let key = i % 50 == 0;
        v(i * 40 - i64::from(key && i > 0), key)
    }));
    events.push(MediaEvent::End);
    let segs = segments(&run(config(2000), events));
    let d: Vec<u64> = segs.iter().map(|s| s.duration_ms).collect();
    assert_eq!(d, vec![1999, 2000, 2000, 2000, 2001], "{d:?}");
    assert!(segs.iter().all(|s| s.target_duration_s == 2));
}
