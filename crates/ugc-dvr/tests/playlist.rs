//! The live window and its playlists, parsed back with m3u8-rs.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use ugc_core::{DiscontinuityReason, MediaEvent};
use ugc_dvr::{LiveConfig, LiveStream, Segmenter, SegmenterConfig, Variant};

fn live(window: usize, grace: usize) -> LiveStream {
    LiveStream::new(LiveConfig {
        window_segments: window,
        grace_segments: grace,
        target_duration_ms: 2000,
        part_target_ms: None,
    })
}

/// Feeds `events` through a segmenter (target 2 s) into `stream`.
fn feed(stream: &LiveStream, seg: &mut Segmenter, events: Vec<MediaEvent>, t0: i64) {
    for (i, e) in events.into_iter().enumerate() {
        seg.push(e, t0 + i as i64 * 40).unwrap();
        while let Some(o) = seg.poll() {
            stream.apply(o, 0);
        }
    }
}

/// `n` seconds of A/V from `start_ms`, 25 fps video with 1 s GOPs, AAC.
fn av_seconds(start_ms: i64, secs: i64, gop: i64) -> Vec<MediaEvent> {
    let mut out = Vec::new();
    let mut next_audio = start_ms;
    for i in 0..secs * 25 {
        let t = start_ms + i * 40;
        out.push(v(t, i % gop == 0));
        while next_audio < t + 40 {
            out.push(a(next_audio));
            next_audio += 23;
        }
    }
    out
}

fn parse_media(s: &str) -> m3u8_rs::MediaPlaylist {
    m3u8_rs::parse_media_playlist_res(s.as_bytes())
        .unwrap_or_else(|e| panic!("unparsable playlist {e:?}:\n{s}"))
}

#[test]
fn media_playlist_standard_tags() {
    let stream = live(3, 1);
    let mut seg = Segmenter::new(SegmenterConfig::default());
    let mut events = vec![MediaEvent::Tracks(av())];
    // GOP 1.2 s: segments of 2.4 s, so TARGETDURATION must be 3.
    events.extend(av_seconds(0, 12, 30));
    feed(&stream, &mut seg, events, T0);
    let text = stream.render_media_playlist(Variant::Fmp4);
    let pl = parse_media(&text);
    assert_eq!(pl.version, Some(7));
    assert!(pl.independent_segments);
    assert!(!pl.end_list);
    assert!(pl.unknown_tags.is_empty(), "{:?}", pl.unknown_tags);
    assert_eq!(pl.segments.len(), 3);
    assert_eq!(pl.target_duration, 3);
    for s in &pl.segments {
        assert!(s.duration.round() as u64 <= pl.target_duration);
        assert!((s.duration - 2.4).abs() < 1e-6, "{}", s.duration);
        assert!(s.unknown_tags.is_empty());
    }
    // 12 s in 2.4 s segments: msn 0..=3 closed (4 is open); window of 3.
    assert_eq!(pl.media_sequence, 1);
    let uris: Vec<&str> = pl.segments.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(uris, ["seg-0-1.m4s", "seg-0-2.m4s", "seg-0-3.m4s"]);
    assert_eq!(
        pl.segments[0].map.as_ref().map(|m| m.uri.as_str()),
        Some("init-0-0.mp4")
    );
    assert!(pl.segments[1].map.is_none());
    // Dates: from the clock for the first segment, then derived, and parsed
    // back exactly.
    let window = stream.window();
    for (s, w) in pl.segments.iter().zip(&window) {
        let pdt = s.program_date_time.expect("date");
        assert_eq!(pdt.timestamp_millis(), w.program_date_time_ms);
    }
    // The segment before the window is still fetchable (grace), not older.
    assert!(stream.segment(0).is_some());
    assert!(stream.segment(4).is_none());
    feed(&stream, &mut seg, av_seconds(12_000, 3, 30), T0 + 20_000);
    // Cuts at 12.0 s and 14.4 s close msn 4 and 5: retained 2..=5.
    assert!(stream.segment(1).is_none());
    assert!(stream.segment(2).is_some());
    assert!(stream.segment(5).is_some());
    assert!(stream.segment(u64::MAX).is_none());
    let pl = parse_media(&stream.render_media_playlist(Variant::Fmp4));
    assert_eq!(pl.media_sequence, 3);
}

#[test]
fn target_duration_never_below_config() {
    let stream = LiveStream::new(LiveConfig {
        target_duration_ms: 6000,
        ..LiveConfig::default()
    });
    let mut seg = Segmenter::new(SegmenterConfig::default());
    let mut events = vec![MediaEvent::Tracks(av())];
    events.extend(av_seconds(0, 5, 25));
    feed(&stream, &mut seg, events, T0);
    let pl = parse_media(&stream.render_media_playlist(Variant::Fmp4));
    assert_eq!(pl.target_duration, 6);
}

#[test]
fn ts_playlist_has_no_map() {
    let stream = live(6, 2);
    let mut seg = Segmenter::new(SegmenterConfig::default());
    let mut events = vec![MediaEvent::Tracks(av())];
    events.extend(av_seconds(0, 5, 25));
    events.push(MediaEvent::End);
    feed(&stream, &mut seg, events, T0);
    let pl = parse_media(&stream.render_media_playlist(Variant::Ts));
    assert_eq!(pl.version, Some(3));
    assert!(pl.end_list);
    assert!(pl.segments.iter().all(|s| s.map.is_none()));
    assert!(pl.segments.iter().all(|s| s.uri.ends_with(".ts")));
    let total: f32 = pl.segments.iter().map(|s| s.duration).sum();
    assert!((total - 5.0).abs() < 1e-3, "{total}");
}

#[test]
fn discontinuity_sequence_counts_slid_out_discontinuities() {
    let stream = live(3, 1);
    let mut seg = Segmenter::new(SegmenterConfig::default());
    let mut events = vec![MediaEvent::Tracks(av())];
    // Segments 0,1 | disc | 2,3 | disc (new tracks) | 4,5,6 ...
    events.extend(av_seconds(0, 4, 25));
    events.push(MediaEvent::Discontinuity(
        DiscontinuityReason::SourceChanged,
    ));
    events.extend(av_seconds(10_000, 4, 25));
    events.push(MediaEvent::Tracks(video_only()));
    events.extend((0..300).map(|i| v(20_000 + i * 40, i % 25 == 0)));
    feed(&stream, &mut seg, events, T0);

    let mut seen = Vec::new();
    // Replay the window history: render after every segment.
    let stream2 = live(3, 1);
    let mut seg2 = Segmenter::new(SegmenterConfig::default());
    let mut events = vec![MediaEvent::Tracks(av())];
    events.extend(av_seconds(0, 4, 25));
    events.push(MediaEvent::Discontinuity(
        DiscontinuityReason::SourceChanged,
    ));
    events.extend(av_seconds(10_000, 4, 25));
    events.push(MediaEvent::Tracks(video_only()));
    events.extend((0..300).map(|i| v(20_000 + i * 40, i % 25 == 0)));
    for e in events {
        seg2.push(e, T0).unwrap();
        while let Some(o) = seg2.poll() {
            let is_segment = matches!(o, ugc_dvr::SegmenterOutput::Segment(_));
            stream2.apply(o, 0);
            if is_segment {
                let pl = parse_media(&stream2.render_media_playlist(Variant::Fmp4));
                seen.push((
                    pl.media_sequence,
                    pl.discontinuity_sequence,
                    pl.segments
                        .iter()
                        .map(|s| s.discontinuity)
                        .collect::<Vec<_>>(),
                    pl.segments
                        .iter()
                        .filter_map(|s| s.map.as_ref().map(|m| m.uri.clone()))
                        .collect::<Vec<_>>(),
                ));
            }
        }
    }
    // Discontinuities precede msn 2 and msn 4.
    let expect_disc = |msn: u64| msn == 2 || msn == 4;
    for (ms, ds, flags, _) in &seen {
        let before = (0..*ms).filter(|&m| expect_disc(m)).count() as u64;
        assert_eq!(*ds, before, "media sequence {ms}");
        for (i, f) in flags.iter().enumerate() {
            assert_eq!(*f, expect_disc(ms + i as u64));
        }
    }
    // Init changes at msn 4: a second MAP while both are in the window.
    let (_, _, _, maps) = seen.iter().find(|(ms, ..)| *ms == 3).unwrap();
    assert_eq!(maps, &["init-0-0.mp4", "init-0-1.mp4"]);
    assert!(seen.iter().any(|(_, ds, ..)| *ds == 2));
    // The first run (other wall clock) ends in the same state but for dates.
    let strip = |t: String| {
        t.lines()
            .filter(|l| !l.starts_with("#EXT-X-PROGRAM-DATE-TIME"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    assert_eq!(
        strip(stream.render_media_playlist(Variant::Fmp4)),
        strip(stream2.render_media_playlist(Variant::Fmp4))
    );
    // Init 0 is gone once no retained segment needs it; init 1 stays.
    assert!(stream.init(0).is_none());
    assert!(stream.init(1).is_some());
}

#[test]
fn multivariant_describes_the_stream() {
    let stream = live(6, 2);
    let mut seg = Segmenter::new(SegmenterConfig::default());
    let mut events = vec![MediaEvent::Tracks(av())];
    events.extend(av_seconds(0, 7, 25));
    feed(&stream, &mut seg, events, T0);
    let text = stream.render_multivariant();
    let pl = match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(pl)) => pl,
        other => panic!("{other:?}\n{text}"),
    };
    assert_eq!(pl.variants.len(), 1);
    let v = &pl.variants[0];
    assert_eq!(v.uri, "mono.m3u8");
    assert_eq!(v.codecs.as_deref(), Some("avc1.64001f,mp4a.40.2"));
    let res = v.resolution.unwrap();
    assert_eq!((res.width, res.height), (1280, 720));
    assert_eq!(v.frame_rate, Some(30.0));
    // Bandwidth measured over the window: peak >= average > 0.
    let window = stream.window();
    let bytes: usize = window.iter().map(|s| s.fmp4_size()).sum();
    let ms: u64 = window.iter().map(|s| s.duration_ms).sum();
    assert_eq!(v.average_bandwidth, Some(bytes as u64 * 8 * 1000 / ms));
    assert!(v.bandwidth >= v.average_bandwidth.unwrap());
    assert!(text.contains("FRAME-RATE=30.000"));
}

#[test]
fn multivariant_measures_the_frame_rate_none_declares() {
    // No timing info in the SPS, no metadata: FRAME-RATE from the frames
    // of the closed segments (25 fps here), once there is a second of them.
    let mut tracks = av();
    let undeclared = ugc_core::Tracks::new(
        tracks
            .iter()
            .cloned()
            .map(|mut t| {
                if let ugc_core::TrackParams::Video(v) = &mut t.params {
                    v.frame_rate = None;
                }
                t
            })
            .collect(),
    );
    let stream = live(6, 2);
    let mut seg = Segmenter::new(SegmenterConfig::default());
    feed(
        &stream,
        &mut seg,
        vec![MediaEvent::Tracks(undeclared.clone())],
        T0,
    );
    feed(&stream, &mut seg, av_seconds(0, 1, 25), T0);
    assert!(!stream.render_multivariant().contains("FRAME-RATE"));
    feed(&stream, &mut seg, av_seconds(1000, 6, 25), T0);
    let text = stream.render_multivariant();
    assert!(text.contains(",FRAME-RATE=25.000\n"), "{text}");
    // A new track set is measured on its own segments only: 50 fps now.
    tracks = undeclared;
    let mut v = tracks.video().unwrap().clone();
    v.codec_string = "avc1.640020".into();
    let changed = ugc_core::Tracks::new(vec![v, tracks.audio().unwrap().clone()]);
    let mut events = vec![MediaEvent::Tracks(changed)];
    events.extend((0..250).map(|i| common::v(7000 + i * 20, i % 50 == 0)));
    feed(&stream, &mut seg, events, T0);
    let text = stream.render_multivariant();
    assert!(text.contains(",FRAME-RATE=50.000\n"), "{text}");
}

#[tokio::test]
async fn watchers_see_every_segment() {
    let stream = live(6, 2);
    let mut rx = stream.subscribe();
    let mut seg = Segmenter::new(SegmenterConfig::default());
    let mut events = vec![MediaEvent::Tracks(av())];
    events.extend(av_seconds(0, 5, 25));
    feed(&stream, &mut seg, events, T0);
    assert!(rx.has_changed().unwrap());
    let u = *rx.borrow_and_update();
    assert_eq!(u.last_msn, Some(1));
    assert!(!u.ended);
    // Blocking-reload style wait, satisfied by the end of the stream.
    let waiter = {
        let mut rx = stream.subscribe();
        tokio::spawn(async move { rx.wait_for(|u| u.last_msn >= Some(2)).await.map(|u| *u) })
    };
    feed(&stream, &mut seg, vec![MediaEvent::End], T0);
    let u = waiter.await.unwrap().unwrap();
    assert_eq!(u.last_msn, Some(2));
    assert!(u.ended);
    assert!(stream.is_ended());
}

#[test]
fn registry_insert_replace_remove() {
    use std::sync::Arc;
    use ugc_dvr::LiveRegistry;
    let reg = LiveRegistry::new();
    let a = Arc::new(live(6, 2));
    let b = Arc::new(live(6, 2));
    assert!(reg.insert(&path("live/x"), Arc::clone(&a)).is_none());
    assert!(Arc::ptr_eq(
        &reg.insert(&path("live/x"), Arc::clone(&b)).unwrap(),
        &a
    ));
    reg.insert(&path("live/a"), Arc::clone(&a));
    assert_eq!(reg.list(), ["live/a", "live/x"]);
    // An old packager cannot remove its successor's stream.
    assert!(!reg.remove_if_same(&path("live/x"), &a));
    assert!(reg.remove_if_same(&path("live/x"), &b));
    assert!(reg.get(&path("live/x")).is_none());
    assert!(reg.remove(&path("live/a")).is_some());
    assert!(reg.list().is_empty());
}

#[test]
fn multivariant_lists_every_rendition_of_a_ladder() {
    use std::sync::Arc;
    let registry = ugc_dvr::LiveRegistry::new();
    let main = Arc::new(live(6, 2));
    feed(
        &main,
        &mut Segmenter::new(SegmenterConfig::default()),
        std::iter::once(MediaEvent::Tracks(av()))
            .chain(av_seconds(0, 6, 25))
            .collect(),
        0,
    );
    registry.insert(&path("live/x"), main);
    // Without renditions: the stream itself.
    let own = registry.render_multivariant(&path("live/x")).unwrap();
    assert!(own.contains("\nmono.m3u8\n"), "{own}");
    // Two renditions, the smaller one with less data per frame.
    for (name, repeat) in [("720p", 4usize), ("360p", 1usize)] {
        let s = Arc::new(live(6, 2));
        let events = std::iter::once(MediaEvent::Tracks(av()))
            .chain(av_seconds(0, 6, 25))
            .map(|e| match e {
                MediaEvent::Frame(mut f) if f.track.0 == 1 => {
                    f.data = bytes::Bytes::from(f.data.repeat(repeat * 50));
                    MediaEvent::Frame(f)
                }
                e => e,
            })
            .collect();
        feed(
            &s,
            &mut Segmenter::new(SegmenterConfig::default()),
            events,
            0,
        );
        registry.insert(&path(&format!("live/x/{name}")), s);
    }
    // Not a rendition of x: a prefix sibling, and another app's x. (A
    // deeper name cannot be a StreamPath.)
    registry.insert(&path("live/xy"), Arc::new(live(6, 2)));
    registry.insert(&path("other/x/480p"), Arc::new(live(6, 2)));
    assert_eq!(
        registry
            .renditions(&path("live/x"))
            .iter()
            .map(|(r, _)| r.as_str())
            .collect::<Vec<_>>(),
        vec!["360p", "720p"]
    );
    let text = registry.render_multivariant(&path("live/x")).unwrap();
    let parsed = m3u8_rs::parse_master_playlist_res(text.as_bytes()).unwrap();
    let uris: Vec<&str> = parsed.variants.iter().map(|v| v.uri.as_str()).collect();
    assert_eq!(uris, vec!["720p/mono.m3u8", "360p/mono.m3u8"], "{text}");
    assert!(parsed.variants[0].bandwidth > parsed.variants[1].bandwidth);
    for v in &parsed.variants {
        assert!(v.average_bandwidth.is_some());
        assert!(v.codecs.is_some());
        assert!(v.resolution.is_some());
    }
    assert_eq!(registry.render_multivariant(&path("live/none")), None);
}

/// `#EXT-X-TARGETDURATION` must not change during a live stream: a long
/// segment that left the window keeps it up, and a few ms of timestamp
/// jitter over the target do not raise it.
#[test]
fn target_duration_never_drops_and_ignores_ms_jitter() {
    // A first GOP of 2.4 s (60 frames at 25 fps), then 2 s GOPs.
    let stream = live(2, 0);
    let mut seg = Segmenter::new(SegmenterConfig::default());
    let mut events = vec![MediaEvent::Tracks(av())];
    events.extend(av_seconds(0, 3, 60).into_iter().filter(|e| match e {
        MediaEvent::Frame(f) => f.dts < 2400,
        _ => true,
    }));
    events.extend(av_seconds(2400, 12, 50));
    feed(&stream, &mut seg, events, T0);
    let pl = parse_media(&stream.render_media_playlist(Variant::Fmp4));
    assert!(pl.media_sequence >= 1, "the 2.4 s segment left the window");
    assert!(
        pl.segments.iter().all(|s| (s.duration - 2.0).abs() < 1e-6),
        "{pl:?}"
    );
    assert_eq!(pl.target_duration, 3);
    // 2 s GOPs, every other one 2 ms longer: 2.002 s segments stay at 2.
    let stream = live(3, 1);
    let mut seg = Segmenter::new(SegmenterConfig::default());
    let mut events = vec![MediaEvent::Tracks(av())];
    for gop in 0..6i64 {
        let start = gop * 2000 + (gop + 1) / 2 * 2;
        events.extend((0..60).map(|i| v(start + i * 33, i == 0)));
    }
    feed(&stream, &mut seg, events, T0);
    let pl = parse_media(&stream.render_media_playlist(Variant::Fmp4));
    assert!(
        pl.segments
            .iter()
            .any(|s| (s.duration - 2.002).abs() < 1e-6),
        "{pl:?}"
    );
    assert_eq!(pl.target_duration, 2);
}

#[test]
fn target_duration_rounds_up_past_the_slack() {
    use ugc_dvr::playlist::target_duration_secs as td;
    assert_eq!(
        [td(0), td(1000), td(2000), td(2002), td(2050)],
        [1, 1, 2, 2, 2]
    );
    assert_eq!([td(2051), td(2400), td(3000)], [3, 3, 3]);
}
