//! Restream pushes against our own RTMP server core over real TCP: a target
//! that stops reading falls behind, skips to a keyframe (counted) and
//! catches up, while another target and the publisher are not held up.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use ugc_core::hub::tests_support::av_tracks;
use ugc_core::{AllowAll, Frame, Hub, HubConfig, MediaEvent, StreamPath, TrackId};
use ugc_proto::rtmp::push::{PushConfig, PushState, spawn_push};
use ugc_proto::rtmp::server::{RtmpServerConfig, serve};
use ugc_proto::rtmp::{ServerEvent, ServerSession, SessionConfig};

/// An RTMP target that accepts one publisher, then stops reading for
/// `pause`, then reads again; counts video messages.
async fn stalling_target(listener: TcpListener, pause: Duration) -> usize {
    let (mut tcp, _) = listener.accept().await.unwrap();
    let mut s = ServerSession::new(SessionConfig::default());
    let mut buf = vec![0u8; 64 * 1024];
    let mut videos = 0usize;
    let mut paused = false;
    let started = Instant::now();
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return videos,
        };
        s.handle_input(&buf[..n]).unwrap();
        while let Some(ev) = s.poll_event() {
            match ev {
                ServerEvent::PublishRequested { .. } => s.accept_publish().unwrap(),
                ServerEvent::Video { .. } => videos += 1,
                _ => {}
            }
        }
        while let Some(out) = s.poll_output() {
            tcp.write_all(&out).await.unwrap();
        }
        if videos > 0 && !paused {
            paused = true;
            tokio::time::sleep(pause).await;
        }
        if started.elapsed() > Duration::from_secs(20) {
            return videos;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_target_skips_to_a_keyframe_without_holding_up_others() {
    // Small window: 2 GOPs, 4 MB.
    let hub = Hub::new(HubConfig {
        max_gops: 2,
        max_bytes: 4 << 20,
        ..HubConfig::default()
    });
    let sink_hub = Hub::new(HubConfig::default());
    let fast = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fast_addr = fast.local_addr().unwrap();
    tokio::spawn(serve(
        fast,
        sink_hub.clone(),
        Arc::new(AllowAll),
        RtmpServerConfig::default(),
    ));
    let slow = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_addr = slow.local_addr().unwrap();
    let slow_task = tokio::spawn(stalling_target(slow, Duration::from_secs(4)));

    let mut publisher = hub.publish(&StreamPath::parse("live/src").unwrap());
    publisher.push(MediaEvent::Tracks(av_tracks())).unwrap();
    let config = PushConfig::default();
    let p_fast = spawn_push(
        hub.clone(),
        StreamPath::parse("live/src").unwrap(),
        format!("rtmp://{fast_addr}/live/copy"),
        config.clone(),
    );
    let p_slow = spawn_push(
        hub.clone(),
        StreamPath::parse("live/src").unwrap(),
        format!("rtmp://{slow_addr}/live/stall"),
        config,
    );
    // Wait until both are live.
    for _ in 0..100 {
        if p_fast.status().state == PushState::Live && p_slow.status().state == PushState::Live {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(p_fast.status().state, PushState::Live);
    // 8 s of 30 fps video, 2 s GOPs, 150 KB frames (36 Mbit/s): far more
    // than the socket buffers hold while the slow target sleeps.
    let payload = Bytes::from(vec![0x41u8; 150_000]);
    let mut worst_push = Duration::ZERO;
    let t0 = tokio::time::Instant::now();
    for i in 0..240i64 {
        let mut data = vec![0, 2, 0x49, 0x2c];
        data.extend_from_slice(&payload[..150_000 - 4]);
        let f = Frame {
            track: TrackId(1),
            dts: i * 33,
            pts: i * 33,
            keyframe: i % 60 == 0,
            data: Bytes::from(data),
        };
        let start = Instant::now();
        publisher.push(MediaEvent::Frame(f)).unwrap();
        worst_push = worst_push.max(start.elapsed());
        tokio::time::sleep_until(t0 + Duration::from_millis(33 * (i as u64 + 1))).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let slow_status = p_slow.status();
    let fast_status = p_fast.status();
    assert!(
        slow_status.skips >= 1,
        "slow target skipped: {slow_status:?}"
    );
    assert_eq!(fast_status.skips, 0, "{fast_status:?}");
    assert!(fast_status.frames_sent >= 239, "{fast_status:?}");
    assert!(
        worst_push < Duration::from_millis(50),
        "publisher held up {worst_push:?}"
    );
    // The fast copy got every frame.
    let got = sink_hub
        .stats(&StreamPath::parse("live/copy").unwrap())
        .map_or(0, |s| s.frames_in);
    assert!(got >= 239, "fast copy has {got} frames");
    drop(p_slow);
    drop(p_fast);
    let slow_videos = slow_task.await.unwrap();
    assert!(
        slow_videos > 10 && slow_videos < 240,
        "slow target got {slow_videos}"
    );
}
