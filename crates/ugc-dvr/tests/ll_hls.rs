//! LL-HLS conformance of the live playlists (RFC 8216bis): tags and
//! attributes, part durations within PART-TARGET, msn/part arithmetic across
//! segment boundaries, preload hints, delta updates, and the bytes of parts
//! in progress.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use common::*;
use ugc_core::MediaEvent;
use ugc_dvr::{
    LiveConfig, LiveStream, PartProgress, PlaylistQuery, Segmenter, SegmenterConfig,
    SegmenterOutput, Variant,
};

const PART_MS: u32 = 200;

fn ll_live(window: usize) -> LiveStream {
    LiveStream::new(LiveConfig {
        window_segments: window,
        grace_segments: 2,
        target_duration_ms: 1000,
        part_target_ms: Some(PART_MS),
    })
}

fn ll_segmenter() -> Segmenter {
    Segmenter::new(SegmenterConfig {
        target_duration_ms: 1000,
        part_target_ms: Some(PART_MS),
        ..Default::default()
    })
}

/// `secs` seconds of 30 fps video (GOP `gop` frames) with AAC.
fn av30(secs: i64, gop: i64) -> Vec<MediaEvent> {
    std::iter::once(MediaEvent::Tracks(av()))
        .chain(av30_frames(secs * 30, gop, Ms::Truncated).map(|(_, e)| e))
        .collect()
}

/// How 30 fps frame times become milliseconds.
#[derive(Clone, Copy)]
enum Ms {
    /// Truncated: deltas 33/33/34, a GOP ends 1 ms before its nominal end.
    Truncated,
    /// Rounded, as an RTMP publisher sends them: deltas 33/34/33.
    Rtmp,
}

/// `frames` frames of 30 fps video (GOP `gop` frames), each followed by the
/// AAC frames that start before the next one; every event comes with the
/// index of the video frame it follows.
fn av30_frames(frames: i64, gop: i64, ms: Ms) -> impl Iterator<Item = (i64, MediaEvent)> {
    let mut next_audio = 0i64;
    (0..frames).flat_map(move |i| {
        let t = match ms {
            Ms::Truncated => i * 1000 / 30,
            Ms::Rtmp => (i * 1000 + 15) / 30,
        };
        let mut events = vec![(i, v(t, i % gop == 0))];
        while next_audio * 1024 * 1000 / 44_100 < t + 33 {
            events.push((i, a(next_audio * 1024 * 1000 / 44_100)));
            next_audio += 1;
        }
        events
    })
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=");
    let mut rest = line.split_once(':')?.1;
    while !rest.is_empty() {
        let (item, tail) = if let Some(stripped) = rest.strip_prefix(&key) {
            let value_and_tail = stripped;
            if let Some(q) = value_and_tail.strip_prefix('"') {
                let end = q.find('"')?;
                return Some(&q[..end]);
            }
            let end = value_and_tail.find(',').unwrap_or(value_and_tail.len());
            return Some(&value_and_tail[..end]);
        } else {
            // Skip one attribute (quoted values may hold commas).
            let mut in_quotes = false;
            let mut cut = rest.len();
            for (i, c) in rest.char_indices() {
                match c {
                    '"' => in_quotes = !in_quotes,
                    ',' if !in_quotes => {
                        cut = i;
                        break;
                    }
                    _ => {}
                }
            }
            (&rest[..cut], rest.get(cut + 1..).unwrap_or(""))
        };
        let _ = item;
        rest = tail;
    }
    None
}

fn ms(secs: &str) -> u64 {
    let (s, frac) = secs.split_once('.').unwrap_or((secs, "0"));
    let frac = format!("{frac:0<3}");
    s.parse::<u64>().unwrap() * 1000 + frac[..3].parse::<u64>().unwrap()
}

fn parse_part_uri(uri: &str) -> (u64, u32) {
    match ugc_dvr::MediaFile::parse(uri) {
        Ok(ugc_dvr::MediaFile::Part(0, m, p)) => (m, p),
        other => panic!("{uri}: {other:?}"),
    }
}

/// A listed part: msn, index, duration in ms, independent.
type ListedPart = (u64, u32, u64, bool);

/// Checks one LL-HLS playlist and returns (parts listed in order, hint).
fn check_playlist(text: &str) -> (Vec<ListedPart>, Option<(u64, u32)>) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "#EXTM3U");
    assert!(lines.contains(&"#EXT-X-VERSION:9"), "{text}");
    let sc = lines
        .iter()
        .find(|l| l.starts_with("#EXT-X-SERVER-CONTROL:"))
        .expect("server control");
    assert_eq!(attr(sc, "CAN-BLOCK-RELOAD"), Some("YES"));
    let target_s: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
        .unwrap()
        .parse()
        .unwrap();
    let part_target = ms(lines
        .iter()
        .find_map(|l| l.strip_prefix("#EXT-X-PART-INF:PART-TARGET="))
        .expect("part inf"));
    assert!(part_target >= u64::from(PART_MS));
    // PART-HOLD-BACK at least 3 x PART-TARGET, CAN-SKIP-UNTIL at least 6 x TD.
    assert!(ms(attr(sc, "PART-HOLD-BACK").unwrap()) >= 3 * part_target);
    assert!(ms(attr(sc, "CAN-SKIP-UNTIL").unwrap()) >= 6 * target_s * 1000);
    let mut msn: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap();
    if let Some(skip) = lines
        .iter()
        .find_map(|l| l.strip_prefix("#EXT-X-SKIP:SKIPPED-SEGMENTS="))
    {
        msn += skip.parse::<u64>().unwrap();
    }
    let mut parts = Vec::new();
    let mut seg_parts: Vec<(u32, u64)> = Vec::new();
    let mut pdt_seen = false;
    let mut hint = None;
    for l in &lines {
        if l.starts_with("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt_seen = true;
        } else if l.starts_with("#EXT-X-PART:") {
            let uri = attr(l, "URI").unwrap();
            let (m, p) = parse_part_uri(uri);
            assert_eq!(m, msn, "part of the wrong segment: {l}\n{text}");
            assert_eq!(p as usize, seg_parts.len(), "part index gap: {l}\n{text}");
            let d = ms(attr(l, "DURATION").unwrap());
            assert!(
                d <= part_target,
                "part {m}.{p} of {d} ms > PART-TARGET\n{text}"
            );
            let independent = attr(l, "INDEPENDENT") == Some("YES");
            if p == 0 {
                assert!(independent, "a segment's first part starts with a keyframe");
            }
            seg_parts.push((p, d));
            parts.push((m, p, d, independent));
        } else if let Some(d) = l.strip_prefix("#EXTINF:") {
            assert!(pdt_seen, "every segment carries a PROGRAM-DATE-TIME");
            pdt_seen = false;
            let d = ms(d.trim_end_matches(','));
            // RFC 8216 4.3.3.1: EXTINF rounded to the nearest integer is at
            // most the target duration.
            assert!(
                d < target_s * 1000 + 500,
                "EXTINF {d} ms > TARGETDURATION {target_s}\n{text}"
            );
            if !seg_parts.is_empty() {
                let sum: u64 = seg_parts.iter().map(|(_, d)| d).sum();
                assert!(
                    sum.abs_diff(d) <= seg_parts.len() as u64,
                    "parts {sum} vs {d}"
                );
            }
            seg_parts.clear();
        } else if l.starts_with("seg-") {
            assert_eq!(*l, format!("seg-0-{msn}.m4s"));
            msn += 1;
        } else if l.starts_with("#EXT-X-PRELOAD-HINT:") {
            assert_eq!(attr(l, "TYPE"), Some("PART"));
            hint = Some(parse_part_uri(attr(l, "URI").unwrap()));
        }
    }
    (parts, hint)
}

#[test]
fn ll_playlists_conform_while_the_stream_grows() {
    let live = ll_live(8);
    let mut seg = ll_segmenter();
    let mut chunks: HashMap<(u64, u32), BytesMut> = HashMap::new();
    let mut renders = 0;
    for (i, e) in av30(8, 30).into_iter().enumerate() {
        seg.push(e, T0 + i as i64 * 20).unwrap();
        while let Some(o) = seg.poll() {
            match &o {
                SegmenterOutput::PartChunk { msn, part, data } => {
                    chunks
                        .entry((*msn, *part))
                        .or_default()
                        .extend_from_slice(data);
                    // Readers of the part in progress see exactly its chunks so far.
                    let got = match live.part_progress(*msn, *part, 0) {
                        PartProgress::Partial(c) => c.concat(),
                        PartProgress::NotYet => Vec::new(),
                        other => panic!("{other:?}"),
                    };
                    let before = chunks[&(*msn, *part)].len() - data.len();
                    assert_eq!(got.len(), before);
                }
                SegmenterOutput::Part { msn, part } => {
                    // A part is the concatenation of its chunks.
                    let c = chunks.remove(&(*msn, part.index)).unwrap_or_default();
                    assert_eq!(c.freeze(), part.data.to_bytes());
                }
                _ => {}
            }
            live.apply(o, 0);
        }
        if !live.has_segments() || i % 7 != 0 {
            continue;
        }
        renders += 1;
        let text = live.render_media_playlist(Variant::Fmp4);
        let (parts, hint) = check_playlist(&text);
        let (m, p, _, _) = *parts.last().unwrap();
        // The hint is the part after the newest listed one, across a
        // segment boundary when the newest closed its segment.
        let hint = hint.unwrap();
        let update = live.update();
        assert!(
            hint == (m, p + 1) || hint == (m + 1, 0),
            "{hint:?} after {m}.{p}"
        );
        assert!(update.reached(m, Some(p)));
        assert!(!update.reached(hint.0, Some(hint.1)));
        if let Some((om, n)) = update.open_parts.filter(|&(_, n)| n > 0) {
            assert_eq!((om, n - 1), (m, p));
        } else {
            assert_eq!(update.last_msn, Some(m));
            assert_eq!(hint, (m + 1, 0));
        }
        // Every listed part is fetchable and complete.
        for (m, p, _, _) in &parts {
            assert!(
                matches!(live.part_progress(*m, *p, 0), PartProgress::Complete(b) if !b.is_empty())
            );
        }
        // Standard tags still parse for classic clients.
        m3u8_rs::parse_media_playlist_res(text.as_bytes())
            .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    }
    assert!(renders > 20);
    // A segment's parts are views of the fMP4 segment, in order.
    let last = live.window().pop().unwrap();
    let mut joined = BytesMut::new();
    for p in &last.parts {
        joined.extend_from_slice(&p.data.to_bytes());
    }
    assert!(last.data.to_bytes().ends_with(&joined));
    // The part after a closed segment's last is the next segment's first
    // (a preload hint may have named it before the keyframe came).
    assert_eq!(
        live.part_progress(last.msn, u32::try_from(last.parts.len()).unwrap(), 0),
        live.part_progress(last.msn + 1, 0, 0)
    );
    assert_eq!(
        live.part_progress(last.msn, u32::try_from(last.parts.len()).unwrap() + 1, 0),
        PartProgress::Never
    );
    assert_eq!(live.part_progress(0, 999, 0), PartProgress::Never);
    assert_eq!(live.part_progress(u64::MAX, 0, 0), PartProgress::NotYet);
}

#[test]
fn delta_update_is_the_full_playlist_minus_skipped_segments() {
    // 20 one-second segments in the window; CAN-SKIP-UNTIL is 6 s.
    let live = ll_live(20);
    let mut seg = ll_segmenter();
    for (i, e) in av30(22, 30).into_iter().enumerate() {
        seg.push(e, T0 + i as i64 * 20).unwrap();
        while let Some(o) = seg.poll() {
            live.apply(o, 0);
        }
    }
    let full = live.render_media_playlist(Variant::Fmp4);
    let delta = live.render_media_playlist_with(
        Variant::Fmp4,
        &PlaylistQuery {
            skip: true,
            ..PlaylistQuery::default()
        },
    );
    check_playlist(&delta);
    let skipped: usize = delta
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-SKIP:SKIPPED-SEGMENTS="))
        .expect("skip tag")
        .parse()
        .unwrap();
    assert!(skipped >= 10, "{delta}");
    // Remove the skipped segments (their tags up to their URI) from the full
    // playlist; the rest must be identical, plus the EXT-X-SKIP line.
    let mut expect = Vec::new();
    let mut seen = 0;
    let mut pending = Vec::new();
    let mut in_header = true;
    for l in full.lines() {
        if in_header && l == "#EXT-X-INDEPENDENT-SEGMENTS" {
            expect.push(l.to_owned());
            expect.push(format!("#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}"));
            in_header = false;
            continue;
        }
        if in_header {
            expect.push(l.to_owned());
            continue;
        }
        pending.push(l.to_owned());
        if l.starts_with("seg-") {
            if seen >= skipped {
                expect.append(&mut pending);
            } else {
                // A skipped segment's MAP must reappear before the first kept one.
                pending.retain(|p| p.starts_with("#EXT-X-MAP"));
            }
            seen += 1;
        }
    }
    expect.append(&mut pending);
    // The first kept segment carries the MAP again.
    let expect = expect.join("\n") + "\n";
    let normalize = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("#EXT-X-MAP"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(normalize(&delta), normalize(&expect));
    assert!(delta.contains("#EXT-X-MAP:URI=\"init-0-0.mp4\""));
    // The segments after the skip boundary span at least CAN-SKIP-UNTIL.
    let kept: f64 = delta
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|d| d.trim_end_matches(',').parse::<f64>().unwrap())
        .sum();
    assert!(kept >= 6.0, "{kept}");
    // Without LL-HLS nothing changes for classic clients.
    let classic = LiveStream::new(LiveConfig::default());
    assert!(
        !classic
            .render_media_playlist(Variant::Fmp4)
            .contains("EXT-X-PART")
    );
}

#[test]
fn reached_follows_msn_and_part_order() {
    let mut u = ugc_dvr::LiveUpdate {
        last_msn: Some(4),
        open_parts: Some((5, 2)),
        ..Default::default()
    };
    assert!(u.reached(4, None));
    assert!(!u.reached(5, None));
    assert!(u.reached(5, Some(1)));
    assert!(!u.reached(5, Some(2)));
    assert!(u.reached(3, Some(99)));
    assert!(u.reached(4, Some(99)), "parts of 4 unknown: all of them");
    u.open_parts = Some((6, 0));
    assert!(!u.reached(5, Some(7)), "no later part yet");
    u.open_parts = Some((6, 1));
    assert!(u.reached(5, Some(7)));
    u.open_parts = None;
    u.last_msn = None;
    assert!(!u.reached(0, Some(0)));
}

/// The part after the last of a closed segment is the next segment's
/// first: a blocking request for it waits for that part, not just for the
/// segment's close.
#[test]
fn the_part_after_a_closed_segments_last_waits_for_the_next_segment() {
    let mut u = ugc_dvr::LiveUpdate {
        last_msn: Some(19),
        last_parts: Some(10),
        open_parts: Some((20, 0)),
        ..Default::default()
    };
    assert!(u.reached(19, None));
    assert!(u.reached(19, Some(9)), "its last part");
    assert!(!u.reached(19, Some(10)), "closed, but no later part yet");
    assert!(!u.reached(20, Some(0)));
    u.open_parts = Some((20, 1));
    assert!(u.reached(19, Some(10)));
    assert!(u.reached(20, Some(0)));
    assert!(!u.reached(20, Some(1)));
    // A later closed segment answers it too.
    u.last_msn = Some(20);
    u.last_parts = Some(3);
    u.open_parts = None;
    assert!(u.reached(19, Some(10)));
    assert!(!u.reached(20, Some(3)));
}

#[test]
fn part_bytes_from_an_offset() {
    let live = ll_live(4);
    let mut seg = ll_segmenter();
    let mut seen_partial = false;
    for (i, e) in av30(2, 30).into_iter().enumerate() {
        seg.push(e, T0 + i as i64 * 20).unwrap();
        while let Some(o) = seg.poll() {
            if let SegmenterOutput::PartChunk { msn, part, data } = &o {
                let before: Vec<Bytes> = match live.part_progress(*msn, *part, 0) {
                    PartProgress::Partial(c) => c,
                    _ => Vec::new(),
                };
                let len: usize = before.iter().map(Bytes::len).sum();
                live.apply(o.clone(), 0);
                // From the old end on, exactly the new chunk; from the middle
                // of it, its tail.
                assert_eq!(
                    live.part_progress(*msn, *part, len),
                    PartProgress::Partial(vec![data.clone()])
                );
                assert_eq!(
                    live.part_progress(*msn, *part, len + 3),
                    PartProgress::Partial(vec![data.slice(3..)])
                );
                seen_partial = true;
                continue;
            }
            live.apply(o, 0);
        }
    }
    assert!(seen_partial);
}

/// A part is published when its last video frame is pushed (its end is where
/// the next frame is expected), not a frame interval later when the next
/// frame arrives; jitter on the next frame keeps the timeline consistent.
#[test]
fn a_part_closes_with_its_last_frame() {
    let mut s = ll_segmenter();
    s.push(MediaEvent::Tracks(av()), T0).unwrap();
    let mut parts = Vec::new();
    let mut all = Vec::new();
    // 25 fps: 5 frames fill a 200 ms part. Audio interleaved after each frame;
    // frames 10 and 11 arrive 3 ms late / early in media time.
    let dts = |i: i64| match i {
        10 => 403,
        11 => 437,
        _ => i * 40,
    };
    for i in 0..30i64 {
        s.push(v(dts(i), i % 25 == 0), T0 + i * 40).unwrap();
        let mut new = Vec::new();
        while let Some(o) = s.poll() {
            if let SegmenterOutput::Part { part, .. } = &o {
                new.push(part.clone());
            }
            all.push(o);
        }
        // The last frame of parts 0 to 3 (frames 4, 9, ...) closes them.
        match i {
            4 | 9 | 14 | 19 => {
                assert_eq!(new.len(), 1, "frame {i} completes a part");
                assert_eq!(new[0].duration_ms, 200);
                assert_eq!(new[0].index as i64, i / 5);
            }
            0..=3 | 5..=8 => assert!(new.is_empty(), "frame {i}: part not full yet"),
            // Part 4 ends the segment: it waits for the audio up to its end,
            // which comes next (not for the keyframe that cuts the segment).
            24 | 25 => assert!(new.is_empty()),
            _ => {}
        }
        parts.extend(new);
        s.push(a(dts(i) + 5), T0 + i * 40 + 5).unwrap();
        while let Some(o) = s.poll() {
            if let SegmenterOutput::Part { part, .. } = &o {
                assert_eq!(i, 24, "audio closes only the segment's last part");
                assert_eq!((part.index, part.duration_ms), (4, 200));
                parts.push(part.clone());
            }
            all.push(o);
        }
    }
    s.push(MediaEvent::End, T0 + 1300).unwrap();
    all.extend(std::iter::from_fn(|| s.poll()));
    let segs = segments(&all);
    assert_eq!(segs.len(), 2);
    // The segment is its parts, byte for byte, and they tile its duration
    // within the jitter.
    let seg = &segs[0];
    assert_eq!(seg.duration_ms, 1000);
    let mut joined = BytesMut::new();
    for p in &seg.parts {
        assert!(p.duration_ms <= u64::from(PART_MS), "{}", p.duration_ms);
        joined.extend_from_slice(&p.data.to_bytes());
    }
    assert!(seg.data.to_bytes().ends_with(&joined));
    let total: u64 = seg.parts.iter().map(|p| p.duration_ms).sum();
    assert!(total.abs_diff(seg.duration_ms) <= 5, "{total}");
    // Five 200 ms parts; the last one (ending at the target duration) was
    // closed by the audio pushed after its last video frame (a(965)), which
    // is in it.
    assert_eq!(seg.parts.len(), 5);
    assert_eq!(seg.frames.len(), 25 + 25);
    assert_eq!(segs[1].frames.first().map(|f| f.dts), Some(1000));
    // Segment 1 (frames 25..=29) ends with the stream: the audio after its
    // last video frame is dropped rather than made a part of no duration.
    assert_eq!(segs[1].parts.len(), 1);
    assert_eq!(segs[1].parts[0].duration_ms, 200);
    assert_eq!(segs[1].frames.len(), 5 + 4);
    assert!(parts.iter().all(|p| p.duration_ms > 0));
    // One CMAF chunk per video frame: the audio pending after a part closed
    // early waits for the next video frame instead of making a chunk alone.
    let chunks = all
        .iter()
        .filter(|o| matches!(o, SegmenterOutput::PartChunk { .. }))
        .count();
    assert_eq!(chunks, 30);
}

/// Video fragments (tfdt, sum of trun durations) of a CMAF byte string
/// (track 1 is video in the test tracks).
fn video_fragments(data: &[u8]) -> Vec<(u64, u64)> {
    track_runs(data)
        .into_iter()
        .filter(|r| r.track == 1)
        .map(|r| (r.base, r.samples.iter().map(|s| u64::from(s.0)).sum()))
        .collect()
}

#[test]
fn early_closed_parts_never_overlap_the_next_chunk_with_ms_jitter() {
    // RTMP timestamps in ms at 30 fps alternate 33/34 ms deltas: the nominal
    // duration given to a part's last frame is often 1 ms longer than the real
    // gap to the next frame. Decode times must still never go backwards.
    let mut s = ll_segmenter();
    let mut data = Vec::new();
    // Deltas alternate 33 and 34 ms (as ffmpeg's ms clock gives ~29.9 fps),
    // so every other frame's nominal duration is 1 ms too long.
    let mut events = vec![MediaEvent::Tracks(av())];
    for i in 0..180i64 {
        let t = i * 33 + i / 2;
        events.push(v(t, i % 30 == 0));
        events.push(a(t + 2));
    }
    for e in events {
        s.push(e, T0).unwrap();
        while let Some(o) = s.poll() {
            if let SegmenterOutput::Segment(seg) = o {
                data.push(seg.data.to_bytes());
            }
        }
    }
    let frags: Vec<(u64, u64)> = data.iter().flat_map(|d| video_fragments(d)).collect();
    assert!(frags.len() > 100, "one chunk per frame: {}", frags.len());
    for w in frags.windows(2) {
        let (base, dur) = w[0];
        assert!(
            w[1].0 >= base + dur,
            "fragment at {} starts before the previous one ends ({base} + {dur})",
            w[1].0
        );
    }
}

/// Feeds 30 fps video with RTMP millisecond timestamps (deltas 33/34/33) and
/// AAC interleaved after each frame; returns, per part, its (msn, index,
/// duration) and the index of the video frame whose push published it.
fn parts_published(target_ms: u32, gop: i64, frames: i64) -> Vec<(u64, u32, u64, i64)> {
    let mut s = Segmenter::new(SegmenterConfig {
        target_duration_ms: target_ms,
        part_target_ms: Some(PART_MS),
        ..Default::default()
    });
    s.push(MediaEvent::Tracks(av()), T0).unwrap();
    let mut out = Vec::new();
    for (i, e) in av30_frames(frames, gop, Ms::Rtmp) {
        s.push(e, T0 + i * 1000 / 30).unwrap();
        while let Some(o) = s.poll() {
            if let SegmenterOutput::Part { msn, part } = o {
                out.push((msn, part.index, part.duration_ms, i));
            }
        }
    }
    out
}

/// The segment's last part is published with its last video frame, not a
/// frame interval later with the keyframe that cuts the segment; the audio
/// in between starts the next segment.
#[test]
fn a_segments_last_part_is_published_with_its_last_frame() {
    // 2 s GOPs and segments, RTMP's rounded millisecond timestamps (33/34/33
    // ms). A part is cut as soon as its last frame is in, when one more
    // frame would not fit the 200 ms target; a frame is taken to last the
    // shorter of the last two deltas, so 34 ms deltas do not make a sixth
    // frame look too long. Every part holds six frames (200 ms, LL-HLS asks
    // for at least 85 % of the target but for the last part of a segment),
    // is published while its own last frame is pushed, and the segment's
    // last part does not wait for the keyframe after it.
    let parts = parts_published(2000, 60, 300);
    assert_eq!(
        parts.len(),
        50,
        "10 parts in each of the 5 segments: {parts:?}"
    );
    for (k, &(msn, index, dur, pushed)) in parts.iter().enumerate() {
        let what = format!("part {msn}.{index} ({dur} ms)");
        assert_eq!(dur, u64::from(PART_MS), "{what}: {parts:?}");
        let last_frame = k as i64 * 6 + 5;
        assert_eq!(pushed, last_frame, "{what}: published a frame late");
    }
    // A GOP (1 s) shorter than the target: the keyframe at 1 s does not cut,
    // and once the interval is known no part is cut there for it.
    let parts = parts_published(2000, 30, 300);
    for msn in 1..4 {
        let durs: Vec<u64> = parts.iter().filter(|p| p.0 == msn).map(|p| p.2).collect();
        assert_eq!(durs.len(), 10, "segment {msn}: {durs:?}");
        assert!(durs.iter().all(|d| *d >= 166), "segment {msn}: {durs:?}");
    }
    // A GOP (3 s) longer than the target: the segment goes on past it.
    let parts = parts_published(2000, 90, 450);
    let durs: Vec<u64> = parts.iter().filter(|p| p.0 == 2).map(|p| p.2).collect();
    assert_eq!(durs.len(), 15, "{durs:?}");
    assert!(durs.iter().sum::<u64>().abs_diff(3000) <= 2, "{durs:?}");
}

/// Every part a playlist ever hinted is served: a player that follows the
/// hint (as RFC 8216bis allows) gets bytes, never a 404. With regular GOPs
/// the hint after a segment's last part names the next segment's first
/// part; keyframes the segmenter did not expect (scene cuts, a GOP that
/// changes length) end a segment after a hint named a part of it, and that
/// part is then served as the next segment's first.
#[test]
fn every_hinted_part_is_served() {
    // Keyframe pattern in frames (30 fps): regular 2 s GOPs, then scene
    // cuts and GOP resets at odd places.
    let mut keyframes = vec![0, 60, 120, 180, 240];
    keyframes.extend([271, 300, 333, 360, 420, 455, 480, 540, 570, 600, 660]);
    for (target, frames) in [(2000u32, 720i64), (1000, 720)] {
        let live = LiveStream::new(LiveConfig {
            window_segments: 100,
            grace_segments: 2,
            target_duration_ms: target,
            part_target_ms: Some(PART_MS),
        });
        let mut seg = Segmenter::new(SegmenterConfig {
            target_duration_ms: target,
            part_target_ms: Some(PART_MS),
            ..Default::default()
        });
        seg.push(MediaEvent::Tracks(av()), T0).unwrap();
        let mut hints = Vec::new();
        let mut target_line = None;
        let mut next_audio = 0i64;
        for i in 0..frames {
            let t = (i * 1000 + 15) / 30;
            let mut events = vec![v(t, keyframes.contains(&i))];
            while next_audio * 1024 * 1000 / 44_100 < t + 33 {
                events.push(a(next_audio * 1024 * 1000 / 44_100));
                next_audio += 1;
            }
            for e in events {
                seg.push(e, T0 + t).unwrap();
                let mut outs = Vec::new();
                while let Some(o) = seg.poll() {
                    outs.push(o);
                }
                live.apply_all(outs, 0);
                if live.has_segments() {
                    let text = live.render_media_playlist(Variant::Fmp4);
                    // The target duration never changes (RFC 8216 6.2.1),
                    // across scene cuts and GOP resets.
                    let line = text
                        .lines()
                        .find(|l| l.starts_with("#EXT-X-TARGETDURATION:"));
                    let line = line.unwrap().to_owned();
                    assert_eq!(target_line.get_or_insert_with(|| line.clone()), &line);
                    let (_, hint) = check_playlist(&text);
                    let hint = hint.unwrap();
                    if hints.last() != Some(&hint) {
                        hints.push(hint);
                    }
                }
            }
        }
        // The newest hint may still come; every earlier one has bytes.
        hints.pop();
        assert!(hints.len() > 40, "{hints:?}");
        let mut next_segment_first = 0;
        for (m, p) in &hints {
            match live.part_progress(*m, *p, 0) {
                PartProgress::Complete(b) if !b.is_empty() => {}
                other => panic!("target {target}: hinted part {m}.{p} is {other:?}"),
            }
            if live
                .segment(*m)
                .is_some_and(|s| s.parts.len() == *p as usize)
            {
                next_segment_first += 1;
            }
        }
        // Hints name parts that really come, but for the unexpected cuts.
        assert!(
            next_segment_first <= 6,
            "target {target}: {next_segment_first} hints named a part after a segment's last"
        );
    }
}

/// The origin serves `media_playlist`, rendered once per change and shared
/// by every viewer: after every segmenter output, and for each variant,
/// delta or full, with or without rendition reports, it is byte for byte
/// what a fresh rendering gives (a stale entry would show up here as an old
/// preload hint or a missing part).
#[test]
fn shared_rendering_is_never_stale() {
    let live = ll_live(4);
    let mut seg = ll_segmenter();
    let report = ugc_dvr::RenditionReport {
        uri: "../720p/mono.m3u8".into(),
        last_msn: 3,
        last_part: Some(1),
    };
    let queries = [
        PlaylistQuery::default(),
        PlaylistQuery {
            skip: true,
            rendition_reports: Vec::new(),
        },
        PlaylistQuery {
            skip: false,
            rendition_reports: vec![report.clone()],
        },
    ];
    let mut checked = 0;
    for (i, e) in av30(8, 30).into_iter().enumerate() {
        seg.push(e, T0 + i as i64 * 10).unwrap();
        while let Some(o) = seg.poll() {
            live.apply(o, 0);
            for q in &queries {
                for variant in [Variant::Fmp4, Variant::Ts] {
                    // Twice: the second answer comes from the cache.
                    for _ in 0..2 {
                        let shared = live.media_playlist(variant, q);
                        let fresh = live.render_media_playlist_with(variant, q);
                        assert_eq!(std::str::from_utf8(&shared).unwrap(), fresh);
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} comparisons");
}

/// Part intervals (`ugc_llhls_part_interval_seconds`) are timed by the
/// caller's clock, so simulated time drives them: parts that come at the
/// media's pace fall in the buckets around the part target, and a source
/// that stalls 3 s makes one part late (over 1.5 targets).
#[test]
fn part_intervals_are_timed_by_the_callers_clock() {
    use ugc_dvr::live::{PART_INTERVAL_BOUNDS, PART_STATS};
    let live = ll_live(6);
    let mut seg = ll_segmenter();
    let (before, _, late_before) = PART_STATS.read();
    let mut parts = 0u64;
    for (frame, e) in
        std::iter::once((0, MediaEvent::Tracks(av()))).chain(av30_frames(4 * 30, 30, Ms::Truncated))
    {
        // Arrival at the media's pace, 3 s late from frame 60 on.
        let now = T0 + frame * 1000 / 30 + if frame >= 60 { 3000 } else { 0 };
        seg.push(e, now).unwrap();
        while let Some(o) = seg.poll() {
            if matches!(o, SegmenterOutput::Part { .. }) {
                parts += 1;
            }
            live.apply(o, now);
        }
    }
    // The other tests of this binary run alongside and feed the same
    // process-wide stats, but with a constant clock: intervals of 0, in
    // the first bucket, never late. What is above it is this test's.
    let (after, _, late_after) = PART_STATS.read();
    let delta = |i: usize| after[i] - before[i];
    let at = |s: f64| PART_INTERVAL_BOUNDS.iter().position(|b| *b == s).unwrap();
    assert!(parts >= 15, "{parts} parts");
    assert_eq!(late_after - late_before, 1);
    // The stall lands in the 5 s bucket, nothing else above 0.3 s, and the
    // parts at the media's pace (about 200 ms apart) mostly in 0.1-0.3 s.
    assert_eq!(delta(at(5.0)), 1);
    let slow: u64 = (at(0.5)..after.len()).map(delta).sum();
    assert_eq!(slow, 1, "{after:?} {before:?}");
    let paced: u64 = (at(0.2)..=at(0.3)).map(delta).sum();
    assert!(
        paced >= (parts - 2) / 2,
        "{paced} of {parts}: {after:?} {before:?}"
    );
}
