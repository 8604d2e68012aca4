//! Webhooks against real HTTP receivers on loopback: a failover of a Hub
//! stream reaches the receiver signed, a failing receiver gets the same
//! event again until it answers 2xx, and a receiver that never answers
//! delays no other receiver (its events are dropped and counted instead).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};
use ugc_auth::webhook::{
    SIGNATURE_HEADER, WebhookConfig, Webhooks, forward_source_switches, verify,
};
use ugc_core::hub::tests_support::av_tracks;
use ugc_core::{Frame, Hub, HubConfig, MediaEvent, SourceRole, StreamPath, TrackId};

/// What a receiver got: (X-Ugc-Signature, body) per request.
type Got = Arc<Mutex<Vec<(Option<String>, Bytes)>>>;

/// A receiver at `/hook` answering `status(n)` to its n-th request (0-based)
/// after `delay`.
async fn receiver(
    status: impl Fn(usize) -> StatusCode + Send + Sync + 'static,
    delay: Duration,
) -> (String, Got) {
    let got: Got = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let status = Arc::new(status);
    let app = axum::Router::new().route(
        "/hook",
        post({
            let got = got.clone();
            move |headers: HeaderMap, body: Bytes| async move {
                let sig = headers
                    .get(SIGNATURE_HEADER)
                    .map(|v| v.to_str().unwrap().to_owned());
                got.lock().unwrap().push((sig, body));
                tokio::time::sleep(delay).await;
                status(count.fetch_add(1, Ordering::SeqCst))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn frame(track: u32, ms: i64) -> MediaEvent {
    MediaEvent::Frame(Frame {
        track: TrackId(track),
        dts: ms,
        pts: ms,
        keyframe: true,
        data: Bytes::from_static(b"x"),
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_failover_reaches_the_receiver_signed() {
    let (url, got) = receiver(|_| StatusCode::NO_CONTENT, Duration::ZERO).await;
    let webhooks = Webhooks::start(WebhookConfig {
        secret: Some("s3cret".into()),
        ..WebhookConfig::new(vec![url])
    })
    .unwrap();
    let hub = Hub::new(HubConfig::default());
    tokio::spawn(forward_source_switches(&hub, webhooks.clone()));
    let name = StreamPath::live("show").unwrap();
    let t0 = Instant::now();
    let mut main = hub.publish_at(&name, SourceRole::Main, t0);
    main.push(MediaEvent::Tracks(av_tracks())).unwrap();
    let mut fallback = hub.publish_at(&name, SourceRole::Fallback, t0);
    fallback.push(MediaEvent::Tracks(av_tracks())).unwrap();
    main.push_at(frame(1, 0), t0).unwrap();
    // The main publisher leaves: the fallback takes over on its keyframe;
    // it comes back: the main one takes over on its first.
    drop(main);
    fallback.push_at(frame(1, 0), t0).unwrap();
    let mut main = hub.publish_at(&name, SourceRole::Main, t0);
    main.push(MediaEvent::Tracks(av_tracks())).unwrap();
    main.push_at(frame(1, 0), t0 + Duration::from_secs(1))
        .unwrap();

    wait_for("two events", || got.lock().unwrap().len() == 2).await;
    let got = got.lock().unwrap().clone();
    let mut ids = Vec::new();
    for ((sig, body), (from, to)) in got.iter().zip([("main", "fallback"), ("fallback", "main")]) {
        let sig = sig.as_deref().expect("signed");
        assert!(verify(b"s3cret", sig, body, unix_now(), 300), "{sig}");
        assert!(!verify(b"other", sig, body, unix_now(), 300));
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["event"], "stream.source_switched");
        assert_eq!(
            (&v["stream"], &v["from"], &v["to"]),
            (&json!("show"), &json!(from), &json!(to))
        );
        let at_ms = v["at_ms"].as_u64().unwrap();
        assert!(at_ms.abs_diff(unix_now() * 1000) < 60_000, "{at_ms}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    assert_ne!(ids[0], ids[1]);
    assert_eq!(webhooks.stats().delivered.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_event_until_it_answers() {
    // 500, 503, then 200.
    let (url, got) = receiver(
        |n| match n {
            0 => StatusCode::INTERNAL_SERVER_ERROR,
            1 => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::OK,
        },
        Duration::ZERO,
    )
    .await;
    let webhooks = Webhooks::start(WebhookConfig {
        first_backoff: Duration::from_millis(20),
        ..WebhookConfig::new(vec![url])
    })
    .unwrap();
    webhooks.send("test.event", json!({"n": 1}));
    webhooks.send("test.event", json!({"n": 2}));
    let stats = webhooks.stats().clone();
    wait_for("both delivered", || {
        stats.delivered.load(Ordering::Relaxed) == 2
    })
    .await;
    let got = got.lock().unwrap().clone();
    let bodies: Vec<Value> = got
        .iter()
        .map(|(sig, b)| {
            assert!(sig.is_none(), "no secret, no signature");
            serde_json::from_slice(b).unwrap()
        })
        .collect();
    // The first event three times (same id), in order before the second.
    let ns: Vec<_> = bodies.iter().map(|b| b["n"].as_u64().unwrap()).collect();
    assert_eq!(ns, [1, 1, 1, 2]);
    assert!(bodies[..3].iter().all(|b| b["id"] == bodies[0]["id"]));
    assert_eq!(stats.retried.load(Ordering::Relaxed), 2);
    assert_eq!(stats.failed.load(Ordering::Relaxed), 0);

    // A receiver that is gone: retried, then given up and counted.
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    let webhooks = Webhooks::start(WebhookConfig {
        first_backoff: Duration::from_millis(10),
        retries: 2,
        ..WebhookConfig::new(vec![gone])
    })
    .unwrap();
    webhooks.send("test.event", json!({}));
    let stats = webhooks.stats().clone();
    wait_for("given up", || stats.failed.load(Ordering::Relaxed) == 1).await;
    assert_eq!(stats.retried.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_receiver_that_never_answers_delays_no_other() {
    let (stuck, stuck_got) = receiver(|_| StatusCode::OK, Duration::from_secs(3600)).await;
    let (fine, fine_got) = receiver(|_| StatusCode::OK, Duration::ZERO).await;
    let webhooks = Webhooks::start(WebhookConfig {
        queue: 4,
        timeout: Duration::from_secs(30),
        ..WebhookConfig::new(vec![stuck, fine])
    })
    .unwrap();
    // Rounds of 4 events (one URL's queue), each delivered to the good
    // receiver before the next: it keeps up while the stuck one is full.
    let sent_at = Instant::now();
    for round in 0..5 {
        for n in 0..4 {
            webhooks.send("test.event", json!({ "n": round * 4 + n }));
        }
        wait_for("the good receiver's round", || {
            fine_got.lock().unwrap().len() == (round + 1) * 4
        })
        .await;
    }
    assert!(sent_at.elapsed() < Duration::from_secs(5));
    // The stuck one holds one in flight and 4 queued; the other 15 were
    // dropped at once, and none of the good receiver's.
    // (The receiver has a body before its sender has the answer and
    // counts it: wait for the count of the last one.)
    let stats = webhooks.stats();
    wait_for("the last delivery counted", || {
        stats.delivered.load(Ordering::Relaxed) == 20
    })
    .await;
    assert_eq!(stuck_got.lock().unwrap().len(), 1);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 15);
}
