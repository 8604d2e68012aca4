//! LL-HLS on simulated time: when parts exist relative to the media, when
//! blocking reloads answer, how long they are held, and what preload hints
//! and the target duration promise across keyframes.

use std::collections::BTreeSet;

use axum::http::StatusCode;

use crate::harness::{Plan, Playlist, Sim, SimConfig, TagKind};

/// The simulated instant a blocking reload for `(msn, part)` can be
/// answered: the asked part or any later one is published, or segment
/// `msn` (or a later one) is closed. (For a part past the last of a closed
/// segment only a later part answers, see
/// `the_part_after_a_segments_last_is_answered_with_the_next_segments_first`;
/// preload hints never name one.)
fn reachable_at(sim: &Sim, stream: &str, msn: u64, part: u32) -> Option<i64> {
    let life = sim.life(stream);
    let by_part = life.parts.range((msn, part)..).map(|(_, t)| *t).min();
    let by_segment = life.segments.range(msn..).map(|(_, t)| *t).min();
    by_part.into_iter().chain(by_segment).min()
}

/// A part is published at the instant its last video frame arrives (the
/// publisher sends in real time, so that is a frame interval before the
/// part's media end), not when the next frame does; a segment's last part
/// waits at most for the audio up to its end. Measured on the simulated
/// clock, this is the packager's whole share of LL-HLS latency.
#[tokio::test(start_paused = true)]
async fn a_part_is_published_when_its_last_frame_arrives() {
    let mut sim = Sim::new(SimConfig::ll(1000, 200).window(10));
    let id = sim.publish(Plan::av("cam", 6_000).gop_ms(1000));
    sim.run_plans().await;
    sim.assert_clean();
    assert_eq!(sim.origin_ms(id), 0, "media time is simulated time");
    let video: Vec<i64> = sim
        .sent(id)
        .iter()
        .filter(|t| matches!(t.kind, TagKind::Video { .. }))
        .map(|t| t.at_ms)
        .collect();
    let life = sim.life("live/cam");
    let segments = life.live.window();
    assert_eq!(segments.len(), 5, "[0, 5) s closed, the sixth open");
    let mut checked = 0;
    for seg in &segments {
        let mut start = seg.start_dts_ms;
        for (k, part) in seg.parts.iter().enumerate() {
            let end = start + part.duration_ms as i64;
            let last_frame = *video.iter().rfind(|&&t| t < end).unwrap();
            let published = life.parts[&(seg.msn, part.index)];
            let what = format!(
                "part {}.{k} [{start}, {end}) published at {published}",
                seg.msn
            );
            if k + 1 < seg.parts.len() {
                assert_eq!(published, last_frame, "{what}");
                assert!(published < end, "{what}");
            } else {
                assert!((last_frame..=end).contains(&published), "{what}");
            }
            assert!(part.duration_ms <= 200, "{what}");
            checked += 1;
            start = end;
        }
        assert_eq!(start, seg.start_dts_ms + seg.duration_ms as i64);
    }
    assert_eq!(checked, 25, "five 200 ms parts per 1 s segment");
}

/// Follows the preload hint with blocking reloads for 5.5 s: every reload
/// is held, then answered at exactly the simulated instant its part (or a
/// later one, or its segment) is published, and lists it. Replaces the
/// wall-clock bound of `ll_origin::blocking_reload_answers_within_one_part_of_production`.
#[tokio::test(start_paused = true)]
async fn blocking_reloads_answer_at_the_instant_the_part_exists() {
    let mut sim = Sim::new(SimConfig::ll(1000, 200));
    sim.publish(Plan::av("cam", 8_000).gop_ms(1000));
    sim.run_until(1_500).await;
    let mut asked = 0;
    while sim.now_ms() < 7_000 {
        let pl = Playlist::parse(&sim.get("/live/cam/mono.m3u8").await.ok_text("playlist"));
        let (m, p) = pl.preload_hint.expect("a preload hint");
        let held = sim.spawn_get(&format!("/live/cam/mono.m3u8?_HLS_msn={m}&_HLS_part={p}"));
        let from = sim.now_ms();
        while !held.is_finished() && sim.now_ms() < from + 1_000 {
            sim.run_for(1).await;
        }
        let r = held.await.unwrap();
        let text = r.ok_text("blocking reload");
        assert!(
            r.cache_control().starts_with("public, max-age="),
            "{}",
            r.cache_control()
        );
        let expected = reachable_at(&sim, "live/cam", m, p).unwrap();
        assert!(r.answered_ms > r.asked_ms, "{m}.{p} was not held");
        assert_eq!(r.answered_ms, expected, "{m}.{p}");
        let got = Playlist::parse(&text);
        assert!(
            got.parts.iter().any(|x| (x.msn, x.index) >= (m, p))
                || got.segments.iter().any(|s| s.msn >= m),
            "{m}.{p} not in\n{text}"
        );
        asked += 1;
    }
    assert!(asked >= 25, "{asked} reloads");
    sim.assert_clean();
}

/// What hls.js asks after each part: part N + 1 of the newest part's
/// segment, not the preload hint. When that segment closes with N + 1
/// parts, the request is for the next segment's first part: it is answered
/// when that part is published (and lists it), not at the segment's close
/// a frame earlier, which carries no new media. Every segment boundary of
/// 6 s is crossed so.
#[tokio::test(start_paused = true)]
async fn the_part_after_a_segments_last_is_answered_with_the_next_segments_first() {
    let mut sim = Sim::new(SimConfig::ll(1000, 200));
    sim.publish(Plan::av("cam", 8_000).gop_ms(1000));
    sim.run_until(1_500).await;
    let (mut crossed, mut asked) = (0, 0);
    while sim.now_ms() < 7_500 {
        let pl = Playlist::parse(&sim.get("/live/cam/mono.m3u8").await.ok_text("playlist"));
        let newest = pl.parts.last().expect("parts");
        let (m, p) = (newest.msn, newest.index + 1);
        let held = sim.spawn_get(&format!("/live/cam/mono.m3u8?_HLS_msn={m}&_HLS_part={p}"));
        let from = sim.now_ms();
        while !held.is_finished() && sim.now_ms() < from + 1_000 {
            sim.run_for(1).await;
        }
        let r = held.await.unwrap();
        let got = Playlist::parse(&r.ok_text("blocking reload"));
        let life = sim.life("live/cam");
        let first_later = life.parts.range((m, p)..).map(|(_, t)| *t).min();
        assert_eq!(
            Some(r.answered_ms),
            first_later,
            "{m}.{p}: answered before a later part existed"
        );
        let closed_short = life.segments.get(&m).is_some_and(|&at| at <= r.answered_ms)
            && !life.parts.contains_key(&(m, p));
        if closed_short {
            crossed += 1;
            assert!(
                life.segments[&m] < r.answered_ms,
                "{m}.{p}: the segment's close alone answered it"
            );
            assert!(
                got.parts.iter().any(|x| (x.msn, x.index) == (m + 1, 0)),
                "{m}.{p}: no part of the next segment in\n{got:?}"
            );
        }
        asked += 1;
    }
    assert!(
        crossed >= 5,
        "{crossed} segment boundaries in {asked} reloads"
    );
    sim.assert_clean();
}

/// A publisher stalls after 3 s. A reload for its open segment is held
/// until the idle flush closes that segment (twice the target duration
/// after the last media); one for the next segment, which never comes, is
/// held for the whole hold (three target durations) and answered `503`; a
/// third while two are held is `503` at once. Replaces the wall-clock
/// bounds of `ll_origin::holds_are_bounded_and_bad_directives_are_400`.
#[tokio::test(start_paused = true)]
async fn a_stalled_publisher_holds_reloads_until_the_flush_or_503() {
    let mut config = SimConfig::ll(1000, 200);
    config.origin.max_held_requests = 2;
    let mut sim = Sim::new(config);
    sim.publish(Plan::av("cam", 3_000).gop_ms(1000));
    sim.run_plans().await;
    let last_media = sim.now_ms();
    let pl = Playlist::parse(&sim.get("/live/cam/mono.m3u8").await.ok_text("playlist"));
    // The open segment's last part is out; the hint names the next
    // segment's first part (its keyframe is due at 3 s).
    assert_eq!(pl.preload_hint, Some((3, 0)), "{pl:?}");
    assert_eq!(sim.life("live/cam").live.update().open_parts, Some((2, 5)));
    let open = sim.spawn_get("/live/cam/mono.m3u8?_HLS_msn=2");
    let next = sim.spawn_get("/live/cam/mono.m3u8?_HLS_msn=3&_HLS_part=0");
    sim.settle().await;
    let third = sim.get("/live/cam/mono.m3u8?_HLS_msn=3").await;
    assert_eq!(
        third.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "over the limit"
    );
    assert_eq!(third.answered_ms, last_media, "refused at once");
    sim.run_until(last_media + 3_500).await;

    let open = open.await.unwrap();
    assert_eq!(open.status, StatusCode::OK);
    assert_eq!(open.answered_ms, last_media + 2_000, "at the idle flush");
    assert_eq!(sim.life("live/cam").flushes, 1);
    assert_eq!(sim.life("live/cam").segments[&2], last_media + 2_000);
    assert!(open.text().contains("seg-"), "{}", open.text());

    let next = next.await.unwrap();
    assert_eq!(next.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(next.cache_control(), "no-cache");
    assert_eq!(next.answered_ms - next.asked_ms, 3_000, "the hold");
    sim.assert_clean();
}

/// The part after a stalled segment's last: a reload for part 5 of
/// segment 2 (five parts out) is not answered when the idle flush closes
/// segment 2 with those five (as a reload for the segment alone is), since
/// only a later part, the next segment's first, would answer it (RFC
/// 8216bis 6.2.5.2 "or later"); none comes, so `503` after the hold, as
/// for any request for the next segment. A plain reload at that point
/// shows the segment closed and the hint on the next one.
#[tokio::test(start_paused = true)]
async fn after_the_idle_flush_the_part_after_the_last_waits_out_the_hold() {
    let mut sim = Sim::new(SimConfig::ll(1000, 200));
    sim.publish(Plan::av("cam", 3_000).gop_ms(1000));
    sim.run_plans().await;
    let last_media = sim.now_ms();
    assert_eq!(sim.life("live/cam").live.update().open_parts, Some((2, 5)));
    let after = sim.spawn_get("/live/cam/mono.m3u8?_HLS_msn=2&_HLS_part=5");
    sim.run_until(last_media + 3_500).await;
    assert_eq!(
        sim.life("live/cam").segments[&2],
        last_media + 2_000,
        "flushed"
    );
    let after = after.await.unwrap();
    assert_eq!(after.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(after.answered_ms - after.asked_ms, 3_000, "the hold");
    let pl = Playlist::parse(&sim.get("/live/cam/mono.m3u8").await.ok_text("playlist"));
    assert!(pl.segments.iter().any(|s| s.msn == 2), "{pl:?}");
    assert_eq!(pl.preload_hint, Some((3, 0)), "{pl:?}");
    sim.assert_clean();
}

/// One client holding its budget of blocking requests gets `503` at once
/// for the next, while another client's blocking reload is still held and
/// answered when its part comes; a slot given back is taken again. Before
/// the per-client budget, one address could hold every slot (over HTTP/2,
/// 256 requests per connection) and every other viewer got `503`.
#[tokio::test(start_paused = true)]
async fn one_client_cannot_take_every_held_slot() {
    let mut config = SimConfig::ll(1000, 200);
    config.origin.max_held_requests = 100;
    config.origin.max_held_per_client = 3;
    let mut sim = Sim::new(config);
    sim.publish(Plan::av("cam", 10_000).gop_ms(1000));
    sim.run_until(1_100).await;
    let pl = Playlist::parse(&sim.get("/live/cam/mono.m3u8").await.ok_text("playlist"));
    let (m, p) = pl.preload_hint.expect("a hint");
    let attacker: std::net::SocketAddr = "192.0.2.1:4000".parse().unwrap();
    let viewer: std::net::SocketAddr = "198.51.100.7:5000".parse().unwrap();
    // The attacker's blocking reloads for the segment after the next: held.
    let target = format!("/live/cam/mono.m3u8?_HLS_msn={}", m + 1);
    let held: Vec<_> = (0..3)
        .map(|_| sim.spawn_get_from(&target, attacker))
        .collect();
    sim.settle().await;
    let refused = sim.spawn_get_from(&target, attacker);
    sim.settle().await;
    let refused = refused.await.unwrap();
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "over the budget"
    );
    assert_eq!(refused.answered_ms, refused.asked_ms, "refused at once");
    // Another client is held as usual, and answered by its part.
    let asked = sim.now_ms();
    let mine = sim.spawn_get_from(
        &format!("/live/cam/mono.m3u8?_HLS_msn={m}&_HLS_part={p}"),
        viewer,
    );
    let part = sim.spawn_get_from(
        &format!("/live/cam/part-{}-{m}.{p}.m4s", pl.session()),
        viewer,
    );
    sim.run_until(asked + 400).await;
    let mine = mine.await.unwrap();
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text());
    assert!(
        mine.answered_ms > asked,
        "it was held, not answered from the past"
    );
    assert_eq!(part.await.unwrap().status, StatusCode::OK);
    // The attacker's held reloads end (answered when their segment is
    // complete); its budget is free again.
    sim.run_until(asked + 2_500).await;
    for h in held {
        assert_eq!(h.await.unwrap().status, StatusCode::OK);
    }
    let again = sim.spawn_get_from(&format!("/live/cam/mono.m3u8?_HLS_msn={}", m + 2), attacker);
    sim.settle().await;
    assert!(
        !again.is_finished(),
        "held again once its slots were given back"
    );
    sim.run_plans().await;
    let _ = again.await.unwrap();
    sim.assert_clean();
}

/// Whether `stream` has a segment to list yet.
fn started(sim: &Sim, stream: &str) -> bool {
    sim.lives(stream)
        .last()
        .is_some_and(|l| l.live.has_segments())
}

/// A playlist asked before the stream's first segment (a viewer who
/// comes as the stream begins) is held and answered when that segment
/// closes, not with a 404 (hls.js gives up after one retry of a 404).
#[tokio::test(start_paused = true)]
async fn a_playlist_asked_before_the_first_segment_is_answered_when_it_closes() {
    let mut sim = Sim::new(SimConfig::ll(2000, 200));
    sim.publish(Plan::av("early", 8_000));
    sim.run_until(300).await;
    assert!(!started(&sim, "live/early"));
    let early = sim.spawn_get("/live/early/mono.m3u8");
    sim.settle().await;
    assert!(!early.is_finished(), "held, not a 404");
    sim.run_until(6_000).await;
    let r = early.await.unwrap();
    let text = r.ok_text("playlist");
    assert!(text.contains("#EXTINF:"), "{text}");
    let first = *sim.life("live/early").segments.values().next().unwrap();
    assert!(
        (first..first + 100).contains(&r.answered_ms),
        "answered at {} ms, the first segment closed at {first} ms",
        r.answered_ms
    );
    sim.run_plans().await;
    sim.assert_clean();
}

/// Keyframes where an encoder with scene cuts puts them (0, 2, 4, 5, 7, 9,
/// 10.5, 12.5, 14.5, 16.5 s), 2 s segments.
const SCENE_CUTS: &[i64] = &[
    0, 2_000, 4_000, 5_000, 7_000, 9_000, 10_500, 12_500, 14_500, 16_500,
];

/// Every `#EXT-X-PRELOAD-HINT` the playlist showed (read every 20 ms for
/// 18 s, across segment boundaries at scene cuts) names a part that is
/// served (once the publisher went on): 200 with a CMAF chunk. The deterministic twin of
/// `e2e_conformance::every_preload_hint_names_a_part_that_is_served`.
#[tokio::test(start_paused = true)]
async fn every_preload_hint_names_a_part_that_is_served() {
    let mut sim = Sim::new(SimConfig::ll(2000, 200).window(12));
    sim.publish(Plan::av("cuts", 20_000).keyframes_at(SCENE_CUTS));
    let mut hints = BTreeSet::new();
    let mut session = None;
    let mut t = 0;
    while t < 18_000 {
        t += 20;
        sim.run_until(t).await;
        // (Asked before the first segment, the playlist waits for it.)
        if !started(&sim, "live/cuts") {
            continue;
        }
        let r = sim.get("/live/cuts/mono.m3u8").await;
        if r.status == StatusCode::NOT_FOUND {
            continue;
        }
        let pl = Playlist::parse(&r.ok_text("playlist"));
        session = Some(pl.session());
        hints.insert(pl.preload_hint.expect("a hint while live"));
    }
    // The last hinted part completes.
    sim.run_until(19_000).await;
    sim.assert_clean();
    // Nine segment boundaries, five parts or more each.
    assert!(hints.len() > 80, "{} hints", hints.len());
    let session = session.unwrap();
    let life = sim.life("live/cuts");
    for (m, p) in &hints {
        let uri = format!("/live/cuts/part-{session}-{m}.{p}.m4s");
        let r = sim.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK, "hinted {uri}");
        assert_eq!(&r.body[4..8], b"moof", "hinted {uri}");
        // A hint past a segment's last part is the next segment's first.
        assert!(
            life.parts.contains_key(&(*m, *p)) || life.parts.contains_key(&(m + 1, 0)),
            "{m}.{p}"
        );
    }
}

/// `#EXT-X-TARGETDURATION` stays 2 in the fMP4 and the TS playlists for
/// the whole stream although keyframes come early, and every segment
/// rounds within it (RFC 8216 4.3.3.1, 6.2.1): keyframes before the
/// configured duration cut when waiting for the next would overrun. The
/// deterministic twin of `e2e_conformance::the_target_duration_holds_across_early_keyframes`
/// (which also checks the DVR playlist).
#[tokio::test(start_paused = true)]
async fn the_target_duration_holds_across_early_keyframes() {
    let mut sim = Sim::new(SimConfig::ll(2000, 200));
    sim.publish(Plan::av("cuts", 18_000).keyframes_at(SCENE_CUTS));
    let mut checked = 0;
    let mut longest: f64 = 0.0;
    let mut t = 0;
    while t < 18_000 {
        t += 100;
        sim.run_until(t).await;
        if !started(&sim, "live/cuts") {
            continue;
        }
        for uri in ["/live/cuts/mono.m3u8", "/live/cuts/mono-ts.m3u8"] {
            let r = sim.get(uri).await;
            if r.status == StatusCode::NOT_FOUND {
                continue;
            }
            let text = r.ok_text(uri);
            let pl = Playlist::parse(&text);
            assert_eq!(pl.target_duration, Some(2), "{uri} at {t}:\n{text}");
            for s in &pl.segments {
                assert!(s.duration < 2.5, "{uri} at {t}: {s:?}\n{text}");
                longest = longest.max(s.duration);
            }
            checked += 1;
        }
    }
    sim.assert_clean();
    assert!(checked > 300, "{checked}");
    assert!(longest > 1.9, "{longest}");
    let stats = &sim.life("live/cuts").stats;
    assert!(stats.early_cuts >= 2, "{stats:?}");
    assert_eq!(stats.target_overruns, 0, "{stats:?}");
}
