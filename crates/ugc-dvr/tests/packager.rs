//! `run_packager` between a real Hub stream and a live window.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ugc_core::{Hub, HubConfig, MediaEvent};
use ugc_dvr::{
    LiveConfig, LiveStream, SegmenterConfig, Variant, run_packager, run_packager_with_clock,
};

#[tokio::test(start_paused = true)]
async fn packages_a_hub_stream_flushes_when_idle_and_ends() {
    let hub = Hub::new(HubConfig::default());
    let reader = hub.subscribe(&path("live/demo"));
    let live = Arc::new(LiveStream::new(LiveConfig::default()));
    let task = tokio::spawn(run_packager(
        reader,
        Arc::clone(&live),
        SegmenterConfig::default(),
    ));
    let mut publisher = hub.publish(&path("live/demo"));
    publisher.push(MediaEvent::Tracks(av())).unwrap();
    // Real-time pacing (a Hub reader that has not read anything yet starts
    // at the newest keyframe).
    for e in video_events(75, 25) {
        publisher.push(e).unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(live.window().len(), 1);
    assert_eq!(live.window()[0].frames.len(), 50);
    // The publisher goes quiet: after 2 x target the open GOP is published.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(live.window().len(), 2);
    assert_eq!(live.window()[1].duration_ms, 1000);
    assert!(!live.is_ended());
    hub.end(&path("live/demo"));
    task.await.unwrap();
    assert!(live.is_ended());
    assert!(
        live.render_media_playlist(Variant::Fmp4)
            .ends_with("#EXT-X-ENDLIST\n")
    );
}

/// A reader that starts late gets the cached GOP as a burst: its frames
/// arrive up to 400 ms after their time. `EXT-X-PROGRAM-DATE-TIME` must date
/// them from the frames that arrived on time, not from the burst.
#[tokio::test(start_paused = true)]
async fn program_date_time_is_not_late_after_a_burst_of_cached_frames() {
    const BASE: i64 = 1_800_000_000_000;
    let start = tokio::time::Instant::now();
    let clock = move || BASE + i64::try_from(start.elapsed().as_millis()).unwrap();
    let hub = Hub::new(HubConfig::default());
    let mut publisher = hub.publish(&path("live/demo"));
    publisher.push(MediaEvent::Tracks(video_only())).unwrap();
    // 25 fps, keyframe every 2 s; frame k has media time 40k ms and is
    // published at wall clock BASE + 40k ms (+ up to 25 ms of jitter).
    let mut events = video_events(160, 50).into_iter();
    for e in events.by_ref().take(10) {
        publisher.push(e).unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // 400 ms in: a packager starts and first reads frames 0..=9 at once.
    let reader = hub.subscribe_existing(&path("live/demo")).unwrap();
    let live = Arc::new(LiveStream::new(LiveConfig {
        part_target_ms: Some(200),
        ..LiveConfig::default()
    }));
    let task = tokio::spawn(run_packager_with_clock(
        reader,
        Arc::clone(&live),
        SegmenterConfig {
            target_duration_ms: 2000,
            part_target_ms: Some(200),
            ..Default::default()
        },
        None,
        clock,
    ));
    let mut open_dates = Vec::new();
    for (i, e) in events.enumerate() {
        publisher.push(e).unwrap();
        // Late by 25 ms every other frame, on time otherwise.
        let pause = if i % 2 == 0 { 65 } else { 15 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        // What an origin serves (nothing before the first segment).
        if !live.has_segments() {
            continue;
        }
        let text = live.render_media_playlist(Variant::Fmp4);
        if let Some(d) = text
            .lines()
            .rfind(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME:"))
        {
            open_dates.push(d.to_owned());
        }
    }
    hub.end(&path("live/demo"));
    task.await.unwrap();
    let window = live.window();
    assert_eq!(window.len(), 4, "segments at 0, 2, 4, 6 s");
    for (k, seg) in window.iter().enumerate() {
        assert_eq!(seg.start_dts_ms, 2000 * k as i64);
        assert_eq!(
            seg.program_date_time_ms,
            BASE + 2000 * k as i64,
            "segment {k} dated from its media time, not from its late arrival"
        );
    }
    let text = live.render_media_playlist(Variant::Fmp4);
    assert!(text.contains(&format!(
        "#EXT-X-PROGRAM-DATE-TIME:{}\n",
        ugc_dvr::format_program_date_time(BASE)
    )));
    // The served dates never went backwards (no segment was re-dated once
    // listed).
    let mut sorted = open_dates.clone();
    sorted.sort();
    assert_eq!(open_dates, sorted);
}
