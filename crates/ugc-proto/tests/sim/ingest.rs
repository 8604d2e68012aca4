//! RTMP ingest to packaging on simulated time: reconnects, timestamp wrap,
//! jitter, bursts and read sizes, and a stream's lives.

use axum::http::StatusCode;
use bytes::Bytes;

use crate::harness::{Chunking, Plan, Playlist, Sim, SimConfig, tfdts};

/// Video is track 1 at 90 kHz in the fMP4 fragments.
const VIDEO_TRACK: u32 = 1;
const VIDEO_TICKS_PER_MS: u64 = 90;

/// Fetches every segment of the playlist and checks that its first video
/// `tfdt` is the segment's start as the live window has it.
async fn check_served_tfdts(sim: &Sim, stream: &str) {
    let name = stream.trim_start_matches("live/");
    let pl = Playlist::parse(
        &sim.get(&format!("/live/{name}/mono.m3u8"))
            .await
            .ok_text("playlist"),
    );
    let live = sim.life(stream).live.clone();
    for s in &pl.segments {
        let seg = live.segment(s.msn).unwrap();
        let r = sim.get(&format!("/live/{name}/{}", s.uri)).await;
        let body = r.body.clone();
        assert_eq!(r.status, StatusCode::OK, "{}", s.uri);
        let video = tfdts(&body)
            .into_iter()
            .find(|(id, _)| *id == VIDEO_TRACK)
            .unwrap();
        assert_eq!(
            video.1,
            seg.start_dts_ms as u64 * VIDEO_TICKS_PER_MS,
            "{}",
            s.uri
        );
    }
}

/// An encoder killed one second into a GOP reconnects half a second later
/// and starts its timestamps at 0 again: the stream goes on as one
/// broadcast (same session, same init segment) with no
/// `#EXT-X-DISCONTINUITY` (same tracks: nothing for a player to reset),
/// consecutive sequence numbers, and timestamps that continue exactly
/// where the first encoder's video ended (the Hub's rebase point). The
/// deterministic twin of
/// `e2e_rtmp_hls::publisher_reconnecting_mid_gop_continues_the_timeline`.
#[tokio::test(start_paused = true)]
async fn a_publisher_reconnecting_mid_gop_continues_the_timeline() {
    let mut sim = Sim::new(SimConfig::ll(2000, 200).window(12));
    let first = sim.publish(Plan::av("re", 5_000));
    sim.run_plans().await;
    sim.disconnect(first);
    sim.run_for(500).await;
    let path = ugc_core::StreamPath::parse("live/re").unwrap();
    assert!(!sim.hub().is_publishing(&path), "in its grace period");
    sim.publish(Plan::av("re", 6_000).seed(2));
    sim.run_plans().await;
    sim.run_for(100).await;
    sim.assert_clean();

    assert_eq!(sim.lives("live/re").len(), 1, "one broadcast");
    let text = sim.get("/live/re/mono.m3u8").await.ok_text("playlist");
    let pl = Playlist::parse(&text);
    assert_eq!(pl.discontinuities, 0, "{text}");
    assert_eq!(pl.maps.len(), 1, "same tracks, same init:\n{text}");
    assert!(!pl.ended);
    let segments = sim.life("live/re").live.window();
    // [0,2) [2,4) [4,5) (checked below), then the new encoder.
    assert!(segments.len() > 3, "{text}");
    for w in segments.windows(2) {
        assert_eq!(w[1].msn, w[0].msn + 1);
        let end = w[0].start_dts_ms + w[0].duration_ms as i64;
        assert_eq!(w[1].start_dts_ms, end, "segment {}", w[1].msn);
        assert!(!w[1].discontinuity);
    }
    // The cut GOP ends where its last frame does (frame 149 at 4967 ms
    // lasts as long as the one before it).
    let plan = Plan::av("re", 5_000);
    let last = plan.frame_ms(149);
    let end = last + (last - plan.frame_ms(148));
    assert_eq!(
        segments[2].start_dts_ms + segments[2].duration_ms as i64,
        end
    );
    check_served_tfdts(&sim, "live/re").await;
}

/// RTMP timestamps that start 2.5 s before the 32-bit wrap, sent with our
/// client's delta headers and, as some encoders do, with absolute
/// timestamps in full headers: the stream crosses the wrap without a
/// discontinuity, every segment is 1 s and follows the previous one
/// exactly, timestamps keep growing past 2^32 ms, and the audio clock
/// never re-syncs.
#[tokio::test(start_paused = true)]
async fn rtmp_timestamps_wrap_without_a_discontinuity() {
    for absolute in [false, true] {
        let mut sim = Sim::new(SimConfig::ll(1000, 200).window(20));
        let mut plan = Plan::av("wrap", 8_000)
            .gop_ms(1000)
            .rtmp_start_ts(u32::MAX - 2_500);
        if absolute {
            plan = plan.absolute_timestamps();
        }
        sim.publish(plan);
        sim.run_plans().await;
        sim.run_for(100).await;
        sim.assert_clean();
        let text = sim.get("/live/wrap/mono.m3u8").await.ok_text("playlist");
        let pl = Playlist::parse(&text);
        assert_eq!(pl.discontinuities, 0, "absolute {absolute}:\n{text}");
        let life = sim.life("live/wrap");
        let segments = life.live.window();
        assert_eq!(segments.len(), 7, "absolute {absolute}:\n{text}");
        let start = i64::from(u32::MAX - 2_500);
        for (k, s) in segments.iter().enumerate() {
            assert_eq!(
                s.start_dts_ms,
                start + 1_000 * k as i64,
                "absolute {absolute}"
            );
            assert_eq!(s.duration_ms, 1_000, "absolute {absolute}");
        }
        assert!(segments.last().unwrap().start_dts_ms > i64::from(u32::MAX));
        assert_eq!(life.stats.audio_resyncs, 0, "absolute {absolute}");
        check_served_tfdts(&sim, "live/wrap").await;
    }
}

/// Seeds of [`jitter_bursts_and_read_sizes_change_nothing_but_timing`];
/// append any seed that fails (with the date and what broke).
const SEEDS: &[u64] = &[1, 2, 3, 4, 5, 6, 7, 8];

/// One run of a jittery publisher: the closed segments, with their bytes.
async fn jittery(seed: u64, chunking: Chunking) -> Vec<(u64, bool, u64, Bytes)> {
    // Segments of 900 ms over 1 s GOPs: a keyframe stamped a few ms early
    // still cuts (see `a_keyframe_stamped_a_millisecond_early_doubles_the_first_segment`).
    let mut sim = Sim::new(SimConfig::ll(900, 200).window(20));
    let plan = Plan::av("j", 6_000)
        .gop_ms(1000)
        .ts_jitter(2)
        .send_jitter(40)
        .burst(2_100, 2_700)
        .seed(seed)
        .chunking(chunking);
    sim.publish(plan);
    sim.run_plans().await;
    sim.run_for(100).await;
    sim.assert_clean();
    let what = format!("seed {seed}, {chunking:?}");
    let text = sim.get("/live/j/mono.m3u8").await.ok_text(&what);
    let pl = Playlist::parse(&text);
    assert_eq!(
        pl.target_duration,
        Some(1),
        "{what}:
{text}"
    );
    assert_eq!(pl.discontinuities, 0, "{what}:\n{text}");
    for s in &pl.segments {
        assert!(s.duration <= 1.05, "{what}: {s:?}\n{text}");
    }
    for p in &pl.parts {
        assert!(p.duration <= 0.2, "{what}: {p:?}\n{text}");
    }
    let life = sim.life("live/j");
    assert_eq!(life.stats.audio_resyncs, 0, "{what}");
    assert_eq!(life.stats.target_overruns, 0, "{what}");
    life.live
        .window()
        .iter()
        .map(|s| (s.msn, s.discontinuity, s.duration_ms, s.data.to_bytes()))
        .collect()
}

/// Timestamp jitter (+-2 ms), send jitter (up to 40 ms), a 600 ms stall
/// followed by a burst, and reads of any size: the playlist keeps its
/// promises (target duration, part target, no discontinuity, no audio
/// re-sync), and the segments are byte for byte the same whether the
/// server reads everything at once, a random 1..700 bytes at a time, or
/// one byte at a time.
#[tokio::test(start_paused = true)]
async fn jitter_bursts_and_read_sizes_change_nothing_but_timing() {
    for &seed in SEEDS {
        let whole = jittery(seed, Chunking::Whole).await;
        assert_eq!(whole.len(), 5, "seed {seed}");
        let random = jittery(seed, Chunking::Random { max: 700 }).await;
        assert!(
            whole == random,
            "seed {seed}: random reads changed the segments"
        );
        if seed == SEEDS[0] {
            let bytewise = jittery(seed, Chunking::Fixed(1)).await;
            assert!(
                whole == bytewise,
                "seed {seed}: 1-byte reads changed the segments"
            );
        }
    }
}

/// A stream that ends (its publisher left and the grace period passed) and
/// is published again names its media anew: the first broadcast's
/// playlist ends, the second's URIs carry a larger session, and every
/// media URI of the first is 404 afterwards (no cache can mix them). The
/// stream ends when the grace period is over (the publisher's
/// `Sink::finish`, as `rtmp::server::serve` runs it). The
/// deterministic core of `e2e_conformance::a_new_broadcast_never_reuses_a_media_uri_through_an_edge`
/// (which also goes through nginx and decodes).
#[tokio::test(start_paused = true)]
async fn a_stream_published_again_names_its_media_anew() {
    let mut sim = Sim::new(SimConfig::ll(1000, 200).grace_ms(Some(1_000)));
    let first = sim.publish(Plan::av("again", 4_000).gop_ms(1000));
    sim.run_plans().await;
    let before = Playlist::parse(
        &sim.get("/live/again/mono.m3u8")
            .await
            .ok_text("first broadcast"),
    );
    sim.unpublish(first);
    let left = sim.now_ms();
    sim.run_for(2_000).await;
    let ended = sim
        .life("live/again")
        .ended_ms
        .expect("ended after the grace");
    assert_eq!(ended, left + 1_000, "left at {left}, ended at {ended}");
    let r = sim.get("/live/again/mono.m3u8").await;
    let ended_pl = Playlist::parse(&r.ok_text("ended"));
    assert!(ended_pl.ended);
    assert_eq!(r.cache_control(), "public, max-age=0, s-maxage=1");

    sim.publish(Plan::av("again", 4_000).gop_ms(1000).seed(9));
    sim.run_plans().await;
    sim.assert_clean();
    assert_eq!(sim.lives("live/again").len(), 2);
    let after = Playlist::parse(
        &sim.get("/live/again/mono.m3u8")
            .await
            .ok_text("second broadcast"),
    );
    assert!(!after.ended);
    assert_eq!(after.media_sequence, 0, "numbers restart");
    assert!(
        after.session() > ended_pl.session(),
        "{} then {}",
        ended_pl.session(),
        after.session()
    );
    let old: Vec<String> = before
        .segments
        .iter()
        .map(|s| s.uri.clone())
        .chain(before.maps.iter().cloned())
        .chain(
            before
                .parts
                .iter()
                .map(|p| ugc_dvr::MediaFile::Part(p.session, p.msn, p.index).to_string()),
        )
        .collect();
    assert!(old.len() > 10);
    for uri in &old {
        let r = sim.get(&format!("/live/again/{uri}")).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{uri} of the first broadcast"
        );
    }
    for s in &after.segments {
        let r = sim.get(&format!("/live/again/{}", s.uri)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", s.uri);
    }
}

/// Found with this harness: with the segment duration equal to the
/// encoder's GOP (ugc-server's 2 s default and OBS's 2 s keyframe
/// interval), a keyframe stamped 1 ms before the target (timestamp jitter of
/// encoders that stamp on capture) did not cut, so the first segment ran to
/// the next keyframe, twice as long, and `#EXT-X-TARGETDURATION`, fixed by
/// the first segment, doubled for the stream's life. A keyframe within
/// 50 ms of the target now cuts.
#[tokio::test(start_paused = true)]
async fn a_keyframe_stamped_a_millisecond_early_still_cuts() {
    let mut sim = Sim::new(SimConfig::ll(1000, 200));
    // 37 ms frames: keyframes at 0, 999 (one ms early), 2035, 3034.
    let plan = Plan::av("early", 4_500)
        .fps(1000, 37)
        .keyframes_at(&[999, 2_000, 3_000]);
    sim.publish(plan);
    sim.run_plans().await;
    sim.assert_clean();
    let text = sim.get("/live/early/mono.m3u8").await.ok_text("playlist");
    let pl = Playlist::parse(&text);
    assert_eq!(pl.target_duration, Some(1), "{text}");
    assert!(pl.segments.iter().all(|s| s.duration < 1.1), "{text}");
}
