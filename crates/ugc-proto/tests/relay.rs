//! The relay between two Hubs in one process over real loopback HTTP:
//! frames published into hub A arrive in hub B identical (H.264 + AAC, then
//! HEVC + Opus after a track change), reconnects resume without a gap or a
//! duplicate inside the window and with one discontinuity outside it, and
//! bad tokens, unknown streams, stale epochs and garbage bodies are clear
//! errors that leave other streams alone.
#![allow(clippy::unwrap_used)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ugc_core::{
    AudioParams, Codec, DiscontinuityReason, Frame, Hub, HubConfig, HubReader, MediaEvent,
    Passthrough, Rational, StreamPath, Timescale, TrackId, TrackInfo, TrackParams, Tracks,
    VideoParams, pump,
};
use ugc_proto::Error;
use ugc_proto::relay::WindowConfig;
use ugc_proto::relay::puller::{PullConfig, RelayPuller};
use ugc_proto::relay::server::{RelayServer, RelayServerConfig};

const TOKEN: &str = "node-secret";

fn h264_aac() -> Tracks {
    let mut t = ugc_core::hub::tests_support::av_tracks()
        .as_slice()
        .to_vec();
    t[1].bitrate = Some(128_000);
    Tracks::new(t)
}

fn hevc_opus() -> Tracks {
    Tracks::new(vec![
        TrackInfo {
            id: TrackId(1),
            codec: Codec::H265,
            timescale: Timescale::MPEG,
            // hvcC header with no arrays: the relay carries it byte-exact.
            config: Bytes::from_static(&[
                0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x5d, 0xf0,
                0x00, 0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x00,
            ]),
            codec_string: "hvc1.1.6.L93.90".into(),
            params: TrackParams::Video(VideoParams {
                width: 1920,
                height: 1080,
                frame_rate: Some(Rational::new(30000, 1001)),
            }),
            bitrate: None,
        },
        TrackInfo {
            id: TrackId(2),
            codec: Codec::Opus,
            timescale: Timescale::new(48_000).unwrap(),
            config: Bytes::from_static(&[0, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]),
            codec_string: "opus".into(),
            params: TrackParams::Audio(AudioParams {
                sample_rate: 48_000,
                channels: 2,
                samples_per_frame: 960,
            }),
            bitrate: None,
        },
    ])
}

/// Deterministic frame bytes.
fn payload(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    Bytes::from(
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect::<Vec<u8>>(),
    )
}

/// `gops` GOPs of 10 video frames (keyframe first) and interleaved audio,
/// starting at video frame `first`; timestamps in each track's timescale.
fn gops(tracks: &Tracks, first: i64, gops: i64) -> Vec<MediaEvent> {
    let v = tracks.video().unwrap();
    let a = tracks.audio().unwrap();
    let vstep = i64::from(v.timescale.get()) / 25; // 40 ms
    let astep = i64::from(a.timescale.get()) / 25;
    let mut out = Vec::new();
    for i in first..first + gops * 10 {
        out.push(MediaEvent::Frame(Frame {
            track: v.id,
            dts: i * vstep,
            pts: i * vstep + 2 * vstep,
            keyframe: i % 10 == 0,
            data: payload(i as u64, 2000 + (i as usize % 7) * 300),
        }));
        out.push(MediaEvent::Frame(Frame {
            track: a.id,
            dts: i * astep,
            pts: i * astep,
            keyframe: true,
            data: payload(1_000_000 + i as u64, 200),
        }));
    }
    out
}

type Key = (u32, i64, i64, bool, u64);

fn key(f: &Frame) -> Key {
    let mut h = DefaultHasher::new();
    f.data.hash(&mut h);
    (f.track.0, f.dts, f.pts, f.keyframe, h.finish())
}

fn frames(events: &[MediaEvent]) -> Vec<Key> {
    events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Frame(f) => Some(key(f)),
            _ => None,
        })
        .collect()
}

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

struct Pair {
    hub_a: Hub,
    hub_b: Hub,
    server: RelayServer,
    addr: SocketAddr,
    path: StreamPath,
}

async fn pair(window: WindowConfig) -> Pair {
    let config = HubConfig {
        max_gops: 1000,
        max_bytes: 1 << 30,
        ..HubConfig::default()
    };
    let hub_a = Hub::new(config.clone());
    let mut cfg = RelayServerConfig::new(TOKEN);
    cfg.window = window;
    cfg.epoch = 3;
    let server = RelayServer::new(hub_a.clone(), cfg);
    let addr = serve(server.router()).await;
    Pair {
        hub_a,
        hub_b: Hub::new(config),
        server,
        addr,
        path: StreamPath::live("cam").unwrap(),
    }
}

fn pull_config(addr: SocketAddr, path: &StreamPath, token: &str) -> PullConfig {
    let mut c = PullConfig::new(format!("http://{addr}"), path.clone(), token);
    c.backoff_min = Duration::from_millis(20);
    c.read_timeout = Duration::from_secs(5);
    c
}

/// Starts pulling `path` of the pair into hub B; returns B's reader and
/// the pump task (which gives the puller back).
async fn start_pull(
    p: &Pair,
    config: PullConfig,
) -> (
    HubReader,
    tokio::task::JoinHandle<(RelayPuller, ugc_core::Result<()>)>,
) {
    let reader = p.hub_b.subscribe(&p.path);
    let publisher = p.hub_b.publish(&p.path);
    let mut puller = RelayPuller::new(config);
    let task = tokio::spawn(async move {
        let r = pump(&mut puller, Passthrough, publisher).await;
        (puller, r)
    });
    wait_for(|| p.server.connections(&p.path) == 1).await;
    (reader, task)
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition within 10 s");
}

/// Reads `reader` until `n` frames arrived (or the end).
async fn read_frames(reader: &mut HubReader, n: usize, into: &mut Vec<MediaEvent>) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while frames(into).len() < n {
            match reader.recv().await {
                Some(e) => into.push(e),
                None => break,
            }
        }
    })
    .await
    .expect("frames within 10 s");
}

async fn read_to_end(reader: &mut HubReader, into: &mut Vec<MediaEvent>) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = reader.recv().await {
            into.push(e);
        }
    })
    .await
    .expect("end within 10 s");
}

fn publish(publisher: &mut ugc_core::HubPublisher, events: &[MediaEvent]) {
    for e in events {
        publisher.push(e.clone()).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_arrive_identical_h264_aac_then_hevc_opus() {
    let p = pair(WindowConfig::default()).await;
    let mut pub_a = p.hub_a.publish(&p.path);
    pub_a.push(MediaEvent::Tracks(h264_aac())).unwrap();
    let (mut reader_b, task) = start_pull(&p, pull_config(p.addr, &p.path, TOKEN)).await;

    // B's reader starts at B's first keyframe, then follows.
    let mut sent = gops(&h264_aac(), 0, 1);
    publish(&mut pub_a, &sent);
    let mut got = Vec::new();
    read_frames(&mut reader_b, 1, &mut got).await;
    let mut rest = gops(&h264_aac(), 10, 2);
    rest.push(MediaEvent::Tracks(hevc_opus()));
    rest.extend(gops(&hevc_opus(), 30, 2));
    publish(&mut pub_a, &rest);
    sent.extend(rest);
    drop(pub_a);
    p.hub_a.end(&p.path);
    read_to_end(&mut reader_b, &mut got).await;
    assert_eq!(frames(&got), frames(&sent));
    let track_sets: Vec<&Tracks> = got
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Tracks(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(track_sets, vec![&h264_aac(), &hevc_opus()]);
    assert!(
        !got.iter()
            .any(|e| matches!(e, MediaEvent::Discontinuity(_)))
    );
    let (puller, result) = task.await.unwrap();
    result.unwrap();
    assert_eq!(puller.epoch(), 3);
    assert_eq!(puller.connects(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_inside_the_window_has_no_gap_and_no_duplicate() {
    let p = pair(WindowConfig::default()).await;
    let mut pub_a = p.hub_a.publish(&p.path);
    pub_a.push(MediaEvent::Tracks(hevc_opus())).unwrap();
    let (mut reader_b, task) = start_pull(&p, pull_config(p.addr, &p.path, TOKEN)).await;

    let mut first = gops(&hevc_opus(), 0, 1);
    publish(&mut pub_a, &first);
    let mut got = Vec::new();
    read_frames(&mut reader_b, 1, &mut got).await;
    let second = gops(&hevc_opus(), 10, 1);
    publish(&mut pub_a, &second);
    first.extend(second);
    read_frames(&mut reader_b, 15, &mut got).await;
    // Cut every connection (mid-stream: the rest of the two GOPs may still
    // be on its way), publish more meanwhile, and let the puller come back.
    for round in 0..3 {
        p.server.disconnect(&p.path);
        publish(&mut pub_a, &gops(&hevc_opus(), 20 + round * 10, 1));
        let want = 40 + 20 * (round as usize + 1);
        read_frames(&mut reader_b, want, &mut got).await;
    }
    drop(pub_a);
    p.hub_a.end(&p.path);
    read_to_end(&mut reader_b, &mut got).await;

    let mut sent = first;
    for round in 0..3 {
        sent.extend(gops(&hevc_opus(), 20 + round * 10, 1));
    }
    assert_eq!(frames(&got), frames(&sent));
    assert!(
        !got.iter()
            .any(|e| matches!(e, MediaEvent::Discontinuity(_)))
    );
    let (puller, result) = task.await.unwrap();
    result.unwrap();
    assert_eq!(puller.connects(), 4);
    assert_eq!(puller.resumes(), 3);
    assert_eq!(
        p.server
            .stats()
            .resumed
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_outside_the_window_starts_at_a_keyframe_with_one_discontinuity() {
    // Half a second of media: two GOPs of 400 ms do not fit.
    let p = pair(WindowConfig {
        max_bytes: 64 << 20,
        max_duration: Duration::from_millis(500),
    })
    .await;
    let mut pub_a = p.hub_a.publish(&p.path);
    pub_a.push(MediaEvent::Tracks(h264_aac())).unwrap();
    let mut config = pull_config(p.addr, &p.path, TOKEN);
    // The puller stays away long enough for the window to move on.
    config.backoff_min = Duration::from_millis(500);
    let (mut reader_b, task) = start_pull(&p, config).await;

    let first = gops(&h264_aac(), 0, 1);
    publish(&mut pub_a, &first);
    let mut got = Vec::new();
    read_frames(&mut reader_b, 20, &mut got).await;
    p.server.disconnect(&p.path);
    let missed = gops(&h264_aac(), 10, 3);
    publish(&mut pub_a, &missed);
    let served = || {
        p.server
            .stats()
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    wait_for(|| served() == 2).await;
    let after = gops(&h264_aac(), 40, 1);
    publish(&mut pub_a, &after);
    drop(pub_a);
    p.hub_a.end(&p.path);
    read_to_end(&mut reader_b, &mut got).await;

    let discs: Vec<usize> = got
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, MediaEvent::Discontinuity(_)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(discs.len(), 1, "exactly one discontinuity");
    assert!(matches!(
        got[discs[0]],
        MediaEvent::Discontinuity(DiscontinuityReason::ReaderSkipped)
    ));
    let before = frames(&got[..discs[0]]);
    let resumed = frames(&got[discs[0]..]);
    assert_eq!(before, frames(&first));
    // After it: the track set, then a video keyframe, then everything up
    // to the end without a gap.
    assert!(matches!(got[discs[0] + 1], MediaEvent::Tracks(_)));
    assert_eq!((resumed[0].0, resumed[0].3), (1, true));
    let mut all = first.clone();
    all.extend(missed);
    all.extend(after);
    let all = frames(&all);
    let at = all.iter().position(|k| *k == resumed[0]).unwrap();
    assert!(at > frames(&first).len(), "something was skipped");
    assert_eq!(resumed, all[at..].to_vec());
    let (puller, result) = task.await.unwrap();
    result.unwrap();
    assert_eq!(puller.resumes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_401_unknown_stream_404_stale_epoch_refused() {
    let p = pair(WindowConfig::default()).await;
    let mut pub_a = p.hub_a.publish(&p.path);
    pub_a.push(MediaEvent::Tracks(h264_aac())).unwrap();
    publish(&mut pub_a, &gops(&h264_aac(), 0, 1));

    let mut wrong = RelayPuller::new(pull_config(p.addr, &p.path, "not-the-token"));
    let e = wrong.next_relay_event().await.unwrap_err();
    assert!(matches!(e, Error::HttpStatus { status: 401, .. }), "{e}");

    let mut none = RelayPuller::new(pull_config(
        p.addr,
        &StreamPath::live("nope").unwrap(),
        TOKEN,
    ));
    let e = none.next_relay_event().await.unwrap_err();
    assert!(matches!(e, Error::HttpStatus { status: 404, .. }), "{e}");

    // The same name in another app is another stream (`?app=`).
    let other = StreamPath::new("studio", "cam").unwrap();
    let mut other_app = RelayPuller::new(pull_config(p.addr, &other, TOKEN));
    let e = other_app.next_relay_event().await.unwrap_err();
    assert!(matches!(e, Error::HttpStatus { status: 404, .. }), "{e}");
    let mut pub_other = p.hub_a.publish(&other);
    pub_other.push(MediaEvent::Tracks(hevc_opus())).unwrap();
    publish(&mut pub_other, &gops(&hevc_opus(), 0, 1));
    let mut other_app = RelayPuller::new(pull_config(p.addr, &other, TOKEN));
    assert_eq!(
        other_app.next_relay_event().await.unwrap(),
        Some(MediaEvent::Tracks(hevc_opus()))
    );

    // A sender whose epoch is older than one seen is refused.
    let mut config = pull_config(p.addr, &p.path, TOKEN);
    config.min_epoch = 4;
    let mut stale = RelayPuller::new(config);
    let e = stale.next_relay_event().await.unwrap_err();
    assert!(matches!(e, Error::StaleEpoch { seen: 4, got: 3 }), "{e}");

    assert_eq!(
        p.server
            .stats()
            .unauthorized
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_body_is_a_clear_error_and_other_streams_continue() {
    let p = pair(WindowConfig::default()).await;
    let mut pub_a = p.hub_a.publish(&p.path);
    pub_a.push(MediaEvent::Tracks(h264_aac())).unwrap();
    let (mut reader_b, task) = start_pull(&p, pull_config(p.addr, &p.path, TOKEN)).await;

    // A "node" that answers 200 with something that is not a relay stream.
    let bad = axum::Router::new().route(
        "/relay/v1/{name}",
        axum::routing::get(|| async { "<html>502 Bad Gateway</html>" }),
    );
    let bad_addr = serve(bad).await;
    let mut garbage = RelayPuller::new(pull_config(bad_addr, &p.path, TOKEN));
    let e = garbage.next_relay_event().await.unwrap_err();
    assert!(matches!(e, Error::Relay { offset: 0, .. }), "{e}");
    assert!(e.to_string().contains("not a ugc relay stream"), "{e}");

    // The healthy stream is unaffected.
    let mut sent = gops(&h264_aac(), 0, 1);
    publish(&mut pub_a, &sent);
    let mut got = Vec::new();
    read_frames(&mut reader_b, 1, &mut got).await;
    let rest = gops(&h264_aac(), 10, 1);
    publish(&mut pub_a, &rest);
    sent.extend(rest);
    drop(pub_a);
    p.hub_a.end(&p.path);
    read_to_end(&mut reader_b, &mut got).await;
    assert_eq!(frames(&got), frames(&sent));
    task.await.unwrap().1.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_puller_that_stops_reading_skips_to_a_keyframe_and_never_slows_the_publisher() {
    // A 1 MB window; the publisher sends 40 MB while the puller reads
    // nothing, more than the window and the socket buffers hold.
    let p = pair(WindowConfig {
        max_bytes: 1 << 20,
        max_duration: Duration::from_secs(3600),
    })
    .await;
    let mut pub_a = p.hub_a.publish(&p.path);
    pub_a.push(MediaEvent::Tracks(h264_aac())).unwrap();
    let mut puller = RelayPuller::new(pull_config(p.addr, &p.path, TOKEN));
    let frame = |i: i64| big_frame(i, 10);
    // The connection starts at the first keyframe; then the puller stops.
    pub_a.push(frame(0)).unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), puller.next_relay_event()).await;
    assert_eq!(
        first.unwrap().unwrap(),
        Some(MediaEvent::Tracks(h264_aac()))
    );
    let frames: Vec<MediaEvent> = (1..400).map(frame).collect();
    let started = std::time::Instant::now();
    for f in frames {
        pub_a.push(f).unwrap();
        tokio::task::yield_now().await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "publisher slowed"
    );
    drop(pub_a);
    p.hub_a.end(&p.path);

    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(e) = puller.next_relay_event().await.unwrap() {
            got.push(e);
        }
    })
    .await
    .expect("the end within 20 s");
    let skips = p
        .server
        .stats()
        .skips
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(skips >= 1, "the slow connection skipped");
    let disc = got
        .iter()
        .position(|e| *e == MediaEvent::Discontinuity(DiscontinuityReason::ReaderSkipped))
        .expect("a skip discontinuity");
    // Then the newest keyframe with its track set (or, if the window had
    // none left by then, the end).
    match &got[disc + 1..] {
        [MediaEvent::End] => {}
        [MediaEvent::Tracks(_), MediaEvent::Frame(f), ..] => assert!(f.keyframe),
        other => panic!("after the skip: {:?}", &other[..other.len().min(2)]),
    }
    assert_eq!(got.last(), Some(&MediaEvent::End));
    // Fewer frames than sent, each at most once, in order.
    let dts: Vec<i64> = got
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Frame(f) => Some(f.dts),
            _ => None,
        })
        .collect();
    assert!(dts.len() < 400);
    assert!(dts.windows(2).all(|w| w[0] < w[1]));
}

/// Video frame `i` of 100 kB at 25 fps, a keyframe every `gop` frames:
/// a few of them fill the socket buffers.
fn big_frame(i: i64, gop: i64) -> MediaEvent {
    MediaEvent::Frame(Frame {
        track: TrackId(1),
        dts: i * 40,
        pts: i * 40,
        keyframe: i % gop == 0,
        data: payload(i as u64, 100_000),
    })
}

/// `ugc_relay_lag_seconds`: a puller that stopped reading while 8 s of
/// media arrived (the window holds it all) catches up from far behind, and
/// the stream's lag gauge shows it; a scrape reads it without resetting.
#[tokio::test]
async fn a_lagging_puller_shows_in_the_lag_gauge() {
    let p = pair(WindowConfig {
        max_bytes: 64 << 20,
        max_duration: Duration::from_secs(60),
    })
    .await;
    let mut pub_a = p.hub_a.publish(&p.path);
    pub_a.push(MediaEvent::Tracks(h264_aac())).unwrap();
    let mut puller = RelayPuller::new(pull_config(p.addr, &p.path, TOKEN));
    let frame = |i: i64| big_frame(i, 25);
    pub_a.push(frame(0)).unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), puller.next_relay_event()).await;
    assert!(first.is_ok());
    // 8 s of media (20 MB, more than the socket buffers) while the puller
    // reads nothing.
    for i in 1..200 {
        pub_a.push(frame(i)).unwrap();
        tokio::task::yield_now().await;
    }
    let mut frames = 1;
    tokio::time::timeout(Duration::from_secs(20), async {
        while frames < 200 {
            if let Some(MediaEvent::Frame(_)) = puller.next_relay_event().await.unwrap() {
                frames += 1;
            }
        }
    })
    .await
    .expect("every frame within 20 s");
    let scrape = || {
        let mut m = ugc_core::metrics::Exposition::new();
        p.server.write_metrics(&mut m);
        let text = m.finish();
        text.lines()
            .find_map(|l| l.strip_prefix("ugc_relay_lag_seconds{stream=\"live/cam\"} "))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let lag = scrape();
    assert!(lag.is_some_and(|l| (1.0..=8.0).contains(&l)), "lag {lag:?}");
    eprintln!("lag gauge after catching up: {lag:?} s");
    assert_eq!(scrape(), lag, "a scrape does not reset the gauge");
    assert_eq!(
        p.server
            .stats()
            .skips
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// Hub A pushing `path` to a relay server over hub B, batching `batch`.
struct PushPair {
    hub_a: Hub,
    pub_a: ugc_core::HubPublisher,
    reader_b: HubReader,
    task: tokio::task::JoinHandle<ugc_core::Result<()>>,
    addr: SocketAddr,
}

async fn push_pair(path: &StreamPath, batch: Duration) -> PushPair {
    use ugc_proto::relay::push::{PushConfig, RelayPusher};
    let config = HubConfig {
        max_gops: 1000,
        max_bytes: 1 << 30,
        ..HubConfig::default()
    };
    let (hub_a, hub_b) = (Hub::new(config.clone()), Hub::new(config));
    let server_b = RelayServer::new(hub_b.clone(), RelayServerConfig::new(TOKEN));
    let addr = serve(server_b.router()).await;
    let reader_b = hub_b.subscribe(path);
    let reader_a = hub_a.subscribe(path);
    let pub_a = hub_a.publish(path);
    let pusher = RelayPusher::new(PushConfig {
        batch,
        ..PushConfig::new(format!("http://{addr}"), path.clone(), TOKEN)
    });
    let task = tokio::spawn(pump(reader_a, Passthrough, pusher));
    PushPair {
        hub_a,
        pub_a,
        reader_b,
        task,
        addr,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_delivers_identical_frames_and_a_wrong_token_ends_the_pusher() {
    use ugc_proto::relay::push::{PushConfig, RelayPusher};
    let path = StreamPath::new("studio", "cam").unwrap();
    let PushPair {
        hub_a,
        mut pub_a,
        mut reader_b,
        task,
        addr,
    } = push_pair(&path, Duration::ZERO).await;

    pub_a.push(MediaEvent::Tracks(hevc_opus())).unwrap();
    let mut sent = gops(&hevc_opus(), 0, 1);
    publish(&mut pub_a, &sent);
    let mut got = Vec::new();
    read_frames(&mut reader_b, 1, &mut got).await;
    let rest = gops(&hevc_opus(), 10, 2);
    publish(&mut pub_a, &rest);
    sent.extend(rest);
    drop(pub_a);
    hub_a.end(&path);
    read_to_end(&mut reader_b, &mut got).await;
    assert_eq!(frames(&got), frames(&sent));
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // The same push with a wrong token: the receiver answers 401 and the
    // pusher fails on a following event.
    let mut wrong = RelayPusher::new(PushConfig::new(
        format!("http://{addr}"),
        path.clone(),
        "nope",
    ));
    let events = gops(&hevc_opus(), 0, 50);
    let e = tokio::time::timeout(Duration::from_secs(10), async {
        use ugc_core::Sink;
        wrong.send(MediaEvent::Tracks(hevc_opus())).await.unwrap();
        for e in events.iter().cycle() {
            if let Err(e) = wrong.send(e.clone()).await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        unreachable!()
    })
    .await
    .unwrap();
    assert!(e.to_string().contains("HTTP 401"), "{e}");
}

/// A push that batches (`PushConfig::batch`) delivers every frame, in
/// order and intact: those of a batch cut by time, and the last ones when
/// the stream ends before their batch is due.
#[tokio::test]
async fn a_batching_push_delivers_identical_frames() {
    let path = StreamPath::new("studio", "batched").unwrap();
    let PushPair {
        hub_a,
        mut pub_a,
        mut reader_b,
        task,
        ..
    } = push_pair(&path, Duration::from_millis(40)).await;
    pub_a.push(MediaEvent::Tracks(h264_aac())).unwrap();
    let mut sent = gops(&h264_aac(), 0, 1);
    publish(&mut pub_a, &sent);
    let mut got = Vec::new();
    read_frames(&mut reader_b, 1, &mut got).await;
    // Then frame by frame, so that batches are cut by time.
    for g in 1..4 {
        let gop = gops(&h264_aac(), g * 10, 1);
        for e in &gop {
            publish(&mut pub_a, std::slice::from_ref(e));
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        sent.extend(gop);
    }
    drop(pub_a);
    hub_a.end(&path);
    read_to_end(&mut reader_b, &mut got).await;
    assert_eq!(frames(&got), frames(&sent));
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A push with `role=backup` (a second publishing point's stream) attaches
/// as the receiver's backup source: it stands by while the main push
/// lives, and the main one stays the stream readers get. An unknown role
/// is a `400`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_push_stands_by_behind_the_main_push() {
    use ugc_core::SourceRole;
    use ugc_proto::relay::push::{PushConfig, RelayPusher};
    let path = StreamPath::live("two-points").unwrap();
    let hub_b = Hub::new(HubConfig::default());
    let server_b = RelayServer::new(hub_b.clone(), RelayServerConfig::new(TOKEN));
    let addr = serve(server_b.router()).await;
    let mut pushes = Vec::new();
    let mut publishers = Vec::new();
    for role in [SourceRole::Main, SourceRole::Backup] {
        let hub = Hub::new(HubConfig::default());
        let reader = hub.subscribe(&path);
        let mut publisher = hub.publish(&path);
        publisher.push(MediaEvent::Tracks(h264_aac())).unwrap();
        let config = PushConfig {
            role,
            ..PushConfig::new(format!("http://{addr}"), path.clone(), TOKEN)
        };
        assert_eq!(
            config.url().ends_with("?role=backup"),
            role == SourceRole::Backup,
            "{}",
            config.url()
        );
        pushes.push(tokio::spawn(pump(
            reader,
            Passthrough,
            RelayPusher::new(config),
        )));
        publishers.push((hub, publisher));
    }
    let mut at = 0;
    let attached = |hub: &Hub| hub.stats(&path).map(|s| (s.active_source, s.sources));
    tokio::time::timeout(Duration::from_secs(10), async {
        while attached(&hub_b)
            != Some((SourceRole::Main, vec![SourceRole::Main, SourceRole::Backup]))
        {
            for (_, publisher) in &mut publishers {
                publish(publisher, &gops(&h264_aac(), at, 1));
            }
            at += 10;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("main and backup attached: {:?}", attached(&hub_b)));
    for (hub, _) in &publishers {
        hub.end(&path);
    }
    for push in pushes {
        push.abort();
    }

    let r = post_status(addr, "/relay/v1/two-points?role=fallback").await;
    assert_eq!(r, 400);
}

/// The status of an empty `POST` to `path` of the relay server at `addr`.
async fn post_status(addr: SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split(' ').nth(1).unwrap().parse().unwrap()
}

/// A transcoder's lease pull whose source node restarts (a new process on
/// the same port, its publisher not back yet: the resume gets `404`)
/// retries within a second or two and takes the stream again when the
/// publisher returns, without waiting out the Hub's publisher grace
/// first (it did: the ladder stopped for the whole grace).
#[tokio::test]
async fn a_lease_pull_takes_a_restarted_source_back_within_the_publisher_grace() {
    use std::sync::Arc;
    use ugc_proto::relay::lease::{LeaseFollower, LeasedStream};
    let path = StreamPath::live("cam").unwrap();
    let grace = Duration::from_secs(30);
    let hub = Hub::new(HubConfig {
        publisher_grace: grace,
        ..HubConfig::default()
    });
    // The source node: a runtime of its own, so that its death closes
    // every connection it served.
    let node = |listener: std::net::TcpListener| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let source = Hub::new(HubConfig::default());
        let router = RelayServer::new(source.clone(), RelayServerConfig::new(TOKEN)).router();
        rt.spawn(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, router).await
        });
        (source, rt)
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (source, rt) = node(listener);
    let tracks = h264_aac();
    let old = gops(&tracks, 0, 2);
    let mut publisher = source.publish(&path);
    publisher.push(MediaEvent::Tracks(tracks.clone())).unwrap();
    publish(&mut publisher, &old);
    let follower = LeaseFollower::new(
        hub.clone(),
        Vec::new(),
        TOKEN,
        Arc::new(ugc_proto::relay::push::RelayPushStats::default()),
    );
    follower.apply(&[LeasedStream {
        stream: path.clone(),
        epoch: 1,
        source: format!("http://{addr}"),
    }]);
    let mut reader = hub.subscribe(&path);
    let mut got = Vec::new();
    read_frames(&mut reader, 1, &mut got).await;

    // The source node dies and comes back empty on the same port.
    rt.shutdown_background();
    drop((publisher, source));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (source, rt) = node(std::net::TcpListener::bind(addr).unwrap());
    // Its resumes are answered 404 for a while; then the publisher is back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let back = std::time::Instant::now();
    let mut publisher = source.publish(&path);
    publisher.push(MediaEvent::Tracks(tracks.clone())).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeding = {
        let (stop, tracks) = (stop.clone(), tracks.clone());
        tokio::spawn(async move {
            // A GOP at a time, as it goes (a pull starts at the latest
            // keyframe).
            let mut at = 1000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                publish(&mut publisher, &gops(&tracks, at, 1));
                at += 10;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    // A frame of the new publisher (not one of the old source's).
    let old: Vec<u64> = frames(&old).iter().map(|k| k.4).collect();
    let new_frame = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match reader.recv().await {
                Some(MediaEvent::Frame(f)) if !old.contains(&key(&f).4) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = feeding.await;
    rt.shutdown_background();
    assert_eq!(new_frame, Ok(true), "the stream is pulled again");
    assert!(
        back.elapsed() < Duration::from_secs(5),
        "back after {:?} (grace {grace:?})",
        back.elapsed()
    );
    follower.apply(&[]);
}
