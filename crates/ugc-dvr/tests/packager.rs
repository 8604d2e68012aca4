//! `run_packager` between a real Hub stream and a live window.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ugc_core::{Hub, HubConfig, MediaEvent};
use ugc_dvr::{LiveConfig, LiveStream, SegmenterConfig, Variant, run_packager};

#[tokio::test(start_paused = true)]
async fn packages_a_hub_stream_flushes_when_idle_and_ends() {
    let hub = Hub::new(HubConfig::default());
    let reader = hub.subscribe("live/demo").unwrap();
    let live = Arc::new(LiveStream::new(LiveConfig::default()));
    let task = tokio::spawn(run_packager(
        reader,
        Arc::clone(&live),
        SegmenterConfig::default(),
    ));
    let mut publisher = hub.publish("live/demo").unwrap();
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
    hub.end("live/demo");
    task.await.unwrap();
    assert!(live.is_ended());
    assert!(
        live.render_media_playlist(Variant::Fmp4)
            .ends_with("#EXT-X-ENDLIST\n")
    );
}
