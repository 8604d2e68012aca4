//! The HTTP origin over a live registry: headers, content types, errors and
//! hostile paths.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode, header};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use ugc_core::{Frame, MediaEvent, TrackId};
use ugc_dvr::{LiveConfig, LiveRegistry, LiveStream, Segmenter, SegmenterConfig};
use ugc_proto::origin::router;

fn stream_with_segments(end: bool) -> Arc<LiveStream> {
    let live = Arc::new(LiveStream::new(LiveConfig::default()));
    let mut seg = Segmenter::new(SegmenterConfig::default());
    let mut events = vec![MediaEvent::Tracks(ugc_core::hub::tests_support::av_tracks())];
    for i in 0..150i64 {
        events.push(MediaEvent::Frame(Frame {
            track: TrackId(1),
            dts: i * 40,
            pts: i * 40,
            keyframe: i % 25 == 0,
            data: Bytes::from(vec![i as u8; 300]),
        }));
        events.push(MediaEvent::Frame(Frame {
            track: TrackId(2),
            dts: i * 40 + 3,
            pts: i * 40 + 3,
            keyframe: true,
            data: Bytes::from(vec![1u8; 20]),
        }));
    }
    if end {
        events.push(MediaEvent::End);
    }
    for e in events {
        seg.push(e, 1_700_000_000_000).unwrap();
        while let Some(o) = seg.poll() {
            live.apply(o, 0);
        }
    }
    live
}

fn registry() -> Arc<LiveRegistry> {
    let reg = Arc::new(LiveRegistry::new());
    reg.insert(
        &ugc_core::StreamPath::parse("live/demo").unwrap(),
        stream_with_segments(false),
    );
    reg.insert(
        &ugc_core::StreamPath::parse("live/done").unwrap(),
        stream_with_segments(true),
    );
    reg.insert(
        &ugc_core::StreamPath::parse("live/empty").unwrap(),
        Arc::new(LiveStream::new(LiveConfig::default())),
    );
    reg
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

async fn request(method: Method, uri: &str) -> Answer {
    let res = router(registry())
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = to_bytes(res.into_body(), 1 << 24).await.unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(uri: &str) -> Answer {
    request(Method::GET, uri).await
}

/// Streams of any app are served under it (the control plane's are all
/// `live/`; an embedder's authorizer may allow others), and a path names
/// exactly one stream.
#[tokio::test]
async fn any_app_is_served_under_its_own_path() {
    let reg = registry();
    reg.insert(
        &ugc_core::StreamPath::parse("tv/news").unwrap(),
        stream_with_segments(false),
    );
    let app = router(reg);
    let call = |uri: &'static str| {
        let app = app.clone();
        async move {
            app.oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(call("/tv/news/mono.m3u8").await, StatusCode::OK);
    assert_eq!(call("/tv/news/index.m3u8").await, StatusCode::OK);
    assert_eq!(call("/live/news/mono.m3u8").await, StatusCode::NOT_FOUND);
    assert_eq!(call("/tv/demo/mono.m3u8").await, StatusCode::NOT_FOUND);
    assert_eq!(call("/..%2f/demo/mono.m3u8").await, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn playlists() {
    for (uri, needle) in [
        ("/live/demo/index.m3u8", "mono.m3u8"),
        ("/live/demo/mono.m3u8", "seg-0-0.m4s"),
        ("/live/demo/mono-ts.m3u8", "seg-0-0.ts"),
    ] {
        let r = get(uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert_eq!(
            r.header(header::CONTENT_TYPE),
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(
            r.header(header::CACHE_CONTROL),
            "public, max-age=0, s-maxage=1"
        );
        assert_eq!(r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
        let text = std::str::from_utf8(&r.body).unwrap();
        assert!(text.starts_with("#EXTM3U\n"));
        assert!(text.contains(needle), "{uri}: {text}");
    }
    let r = get("/live/done/mono.m3u8").await;
    assert!(
        std::str::from_utf8(&r.body)
            .unwrap()
            .ends_with("#EXT-X-ENDLIST\n")
    );
    // The stream may be published again under this URL: kept no longer
    // than a live playlist.
    assert_eq!(
        r.header(header::CACHE_CONTROL),
        "public, max-age=0, s-maxage=1"
    );
}

#[tokio::test]
async fn segments_and_init() {
    let reg = registry();
    let live = reg
        .get(&ugc_core::StreamPath::parse("live/demo").unwrap())
        .unwrap();
    let r = get("/live/demo/init-0-0.mp4").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_TYPE), "video/mp4");
    assert_eq!(
        r.header(header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    assert!(!r.body.is_empty());

    let r = get("/live/demo/seg-0-1.m4s").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_TYPE), "video/iso.segment");
    assert_eq!(
        r.header(header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    // Same length as the segment the live window holds (our registry is a
    // fresh one, built the same way).
    assert_eq!(r.body.len(), live.segment(1).unwrap().data.len());

    let r = get("/live/demo/seg-0-1.ts").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_TYPE), "video/mp2t");
    assert_eq!(r.body.len() % 188, 0);
}

#[tokio::test]
async fn head_has_headers_and_no_body() {
    let r = request(Method::HEAD, "/live/demo/seg-0-0.m4s").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_TYPE), "video/iso.segment");
    assert!(r.body.is_empty());
    let r = request(Method::HEAD, "/live/demo/mono.m3u8").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn cors_preflight() {
    let res = router(registry())
        .oneshot(
            Request::builder()
                .method(Method::OPTIONS)
                .uri("/live/demo/mono.m3u8")
                .header(header::ORIGIN, "https://player.example")
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
                .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "range")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(res.status().is_success());
    let h = res.headers();
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(
        h[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap()
            .contains("GET")
    );
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_HEADERS], "range");
}

#[tokio::test]
async fn not_found_is_not_cached() {
    for uri in [
        "/live/nosuch/index.m3u8",
        "/live/empty/index.m3u8",
        "/live/empty/mono.m3u8",
        "/live/demo/seg-0-999.m4s",
        "/live/demo/seg-0-999.ts",
        "/live/demo/init-0-7.mp4",
        "/live/demo/seg-0-99999999999999999999.m4s",
        // Another session's media: an earlier life of the stream.
        "/live/demo/seg-1-0.m4s",
        "/live/demo/init-7-0.mp4",
        "/live/demo/seg-1764757328123-0.ts",
        "/live/demo/init-0-4294967296.mp4",
        "/live/demo/passwd",
        "/live/demo",
        "/",
        "/live/a/../../x",
        "/live/demo/sub/seg-0-0.m4s",
    ] {
        let r = get(uri).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(r.header(header::CACHE_CONTROL), "no-cache", "{uri}");
        assert_eq!(r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*", "{uri}");
    }
}

#[tokio::test]
async fn bad_names_and_numbers_are_rejected() {
    let long = format!("/live/{}/index.m3u8", "a".repeat(300));
    let huge = format!("/live/demo/seg-0-{}.m4s", "9".repeat(4000));
    for uri in [
        "/live/..%2f..%2fetc%2fpasswd/index.m3u8",
        "/live/..%2f..%2fetc/passwd/index.m3u8",
        "/live/%2e%2e/index.m3u8",
        "/live/.hidden/index.m3u8",
        "/live/a%00b/index.m3u8",
        "/live/a%20b/mono.m3u8",
        "/live/%ff%fe/index.m3u8",
        long.as_str(),
        "/live/demo/seg-abc.m4s",
        "/live/demo/seg--1.m4s",
        "/live/demo/seg-1e3.ts",
        "/live/demo/seg-.m4s",
        "/live/demo/init-x.mp4",
        huge.as_str(),
    ] {
        let r = get(uri).await;
        assert!(
            r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::NOT_FOUND,
            "{uri}: {}",
            r.status
        );
        assert_eq!(r.header(header::CACHE_CONTROL), "no-cache", "{uri}");
    }
    assert_eq!(
        get("/live/%2e%2e/index.m3u8").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get("/live/demo/seg-abc.m4s").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn serves_over_a_real_socket() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, router(registry())).await.unwrap();
    });
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(b"GET /live/demo/mono.m3u8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    sock.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("content-type: application/vnd.apple.mpegurl\r\n"));
    assert!(lower.contains("access-control-allow-origin: *\r\n"));
    assert!(text.contains("\r\n\r\n#EXTM3U\n"));
    server.abort();
}

fn percent_encode(s: &[u8]) -> String {
    s.iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (*b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

    /// Any path (raw or percent-encoded bytes) gets a 2xx/400/404, never a
    /// panic or a 5xx.
    #[test]
    fn arbitrary_paths_are_answered(
        stream in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        file in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        raw in "[a-z0-9%./+-]{0,40}",
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let app = router(registry());
        for uri in [
            format!("/live/{}/{}", percent_encode(&stream), percent_encode(&file)),
            format!("/live/demo/{raw}"),
            format!("/live/{raw}/index.m3u8"),
            format!("/{raw}"),
        ] {
            let Ok(req) = Request::builder().uri(uri.as_str()).body(Body::empty()) else {
                continue;
            };
            let status = rt.block_on(app.clone().oneshot(req)).unwrap().status();
            proptest::prop_assert!(
                status.is_success() || status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
                "{uri}: {status}"
            );
        }
    }
}

#[tokio::test]
async fn ladder_renditions_have_their_own_playlists() {
    let reg = registry();
    reg.insert(
        &ugc_core::StreamPath::parse("live/demo/720p").unwrap(),
        stream_with_segments(false),
    );
    reg.insert(
        &ugc_core::StreamPath::parse("live/demo/360p").unwrap(),
        stream_with_segments(false),
    );
    let call = |uri: &'static str| {
        let reg = reg.clone();
        async move {
            let res = router(reg)
                .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = res.status();
            let body = to_bytes(res.into_body(), 1 << 24).await.unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (status, master) = call("/live/demo/index.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    assert!(master.contains("\n360p/mono.m3u8\n"), "{master}");
    assert!(master.contains("\n720p/mono.m3u8\n"), "{master}");
    assert!(!master.contains("\nmono.m3u8\n"), "{master}");
    let (status, media) = call("/live/demo/720p/mono.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    assert!(media.contains("seg-0-0.m4s"));
    assert_eq!(call("/live/demo/720p/seg-0-0.m4s").await.0, StatusCode::OK);
    assert_eq!(call("/live/demo/720p/init-0-0.mp4").await.0, StatusCode::OK);
    assert_eq!(call("/live/demo/720p/mono-ts.m3u8").await.0, StatusCode::OK);
    assert_eq!(
        call("/live/demo/720p/index.m3u8").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call("/live/demo/1080p/mono.m3u8").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call("/live/demo/..%2f/mono.m3u8").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call("/live/demo/.x/mono.m3u8").await.0,
        StatusCode::BAD_REQUEST
    );
}

/// `live/private` plays with the token `good` only; other streams are
/// public.
struct PrivateStream;

impl ugc_core::Authorizer for PrivateStream {
    async fn authorize_publish(
        &self,
        _req: &ugc_core::PublishRequest,
    ) -> ugc_core::PublishDecision {
        ugc_core::PublishDecision::unauthorized("no publishing here")
    }

    async fn authorize_play(&self, req: &ugc_core::PlayRequest) -> ugc_core::PlayDecision {
        match (req.stream.as_str(), req.token.as_deref()) {
            ("live/private", Some("good")) => ugc_core::PlayDecision::Allow,
            ("live/private", _) => ugc_core::PlayDecision::Deny {
                reason: "token".into(),
            },
            ("live/gone", _) => ugc_core::PlayDecision::NotFound {
                reason: "no such stream".into(),
            },
            _ => ugc_core::PlayDecision::Allow,
        }
    }
}

/// QoE beacons (`POST /<app>/<stream>/qoe`): taken for live streams the
/// client may play, counted as viewers (a token is the session of a
/// private stream's viewer), refused clearly otherwise, and rate-limited
/// before the body is read.
#[tokio::test]
async fn qoe_beacons_are_taken_counted_refused_and_rate_limited() {
    use ugc_core::qoe::{QoeCollector, QoeConfig, Refusal};
    use ugc_core::viewers::{ViewerConfig, ViewerCounter};

    let reg = registry();
    reg.insert(
        &ugc_core::StreamPath::parse("live/private").unwrap(),
        stream_with_segments(false),
    );
    let viewers = Arc::new(ViewerCounter::new(ViewerConfig::default()));
    let qoe = Arc::new(QoeCollector::new(
        QoeConfig {
            per_address_rate: 0.001,
            per_address_burst: 13.0,
            ..QoeConfig::default()
        },
        Some(viewers.clone()),
    ));
    let app = ugc_proto::origin::router_with_config(
        reg,
        Arc::new(PrivateStream),
        ugc_proto::origin::peer_is_client(),
        ugc_proto::origin::OriginConfig {
            qoe: Some(qoe.clone()),
            ..Default::default()
        },
    );
    let post = |uri: &str, body: &'static str| {
        let app = app.clone();
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        async move { app.oneshot(req).await.unwrap() }
    };
    let ok = post(
        "/live/demo/qoe",
        "sid=v1&startup_ms=900&played_ms=1000&latency_ms=2500",
    )
    .await;
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert_eq!(ok.headers()[header::CACHE_CONTROL], "no-store");
    // Players learn how often to post one from the multivariant playlist.
    let res = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/live/demo/index.m3u8")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text =
        String::from_utf8(to_bytes(res.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
    assert!(
        text.starts_with(
            "#EXTM3U\n#EXT-X-SESSION-DATA:DATA-ID=\"com.ugc.qoe-interval\",VALUE=\"20\"\n"
        ),
        "{text}"
    );
    let status = |uri: &'static str, body: &'static str| {
        let f = post(uri, body);
        async move { f.await.status() }
    };
    assert_eq!(
        status("/live/demo/qoe", "sid=v2").await,
        StatusCode::NO_CONTENT
    );
    // A private stream's viewer is its token, whatever sid it sends.
    for body in ["sid=a", "sid=b"] {
        assert_eq!(
            status("/live/private/qoe?token=good", body).await,
            StatusCode::NO_CONTENT
        );
    }
    let now = std::time::Instant::now();
    let demo = ugc_core::StreamPath::parse("live/demo").unwrap();
    let private = ugc_core::StreamPath::parse("live/private").unwrap();
    assert_eq!(viewers.count(&demo, now), 2);
    assert_eq!(viewers.count(&private, now), 1);
    // An end beacon ends its viewer at once.
    assert_eq!(
        status("/live/demo/qoe", "sid=v1&end=1").await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(viewers.count(&demo, now), 1);
    // Refusals, each as a play request would get it, each counted.
    let cases: [(&str, &str, StatusCode); 6] = [
        ("/live/private/qoe", "sid=a", StatusCode::FORBIDDEN),
        (
            "/live/private/qoe?token=bad",
            "sid=a",
            StatusCode::FORBIDDEN,
        ),
        ("/live/gone/qoe", "sid=a", StatusCode::NOT_FOUND),
        ("/live/offline/qoe", "sid=a", StatusCode::NOT_FOUND),
        (
            "/live/demo/qoe",
            "sid=a&played_ms=x",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/live/demo/qoe",
            "\u{0}\u{1}garbage",
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (uri, body, want) in cases {
        assert_eq!(status(uri, body).await, want, "{uri} {body:?}");
    }
    assert_eq!(qoe.refused(Refusal::Denied), 2);
    assert_eq!(qoe.refused(Refusal::UnknownStream), 2);
    assert_eq!(qoe.refused(Refusal::Malformed), 2);
    // Too large: 413 (the limit holds however the body comes).
    let big: &'static str = Box::leak(format!("sid=a&x={}", "y".repeat(4096)).into_boxed_str());
    assert_eq!(
        status("/live/demo/qoe", big).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Only `qoe` takes a POST; GET of it is no file.
    assert_eq!(
        status("/live/demo/index.m3u8", "sid=a").await,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(get("/live/demo/qoe").await.status, StatusCode::NOT_FOUND);
    // 12 beacons so far from this address (burst 13): one more, then 429
    // with Retry-After, counted as rate.
    assert_eq!(
        status("/live/demo/qoe", "sid=v2").await,
        StatusCode::NO_CONTENT
    );
    let limited = post("/live/demo/qoe", "sid=v2").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()[header::RETRY_AFTER], "10");
    assert_eq!(qoe.refused(Refusal::Rate), 1);
    let mut m = ugc_core::metrics::Exposition::new();
    qoe.write_metrics(&mut m, now);
    let text = m.finish();
    assert!(
        text.contains("ugc_qoe_beacons_total{stream=\"live/demo\"} 4\n"),
        "{text}"
    );
    assert!(
        text.contains("ugc_qoe_startup_seconds_count{stream=\"live/demo\"} 1\n"),
        "{text}"
    );
    // Without a collector, there is no such route.
    assert_eq!(
        router(registry())
            .oneshot(
                Request::builder()
                    .method(Method::POST)
                    .uri("/live/demo/qoe")
                    .body(Body::from("sid=a"))
                    .unwrap()
            )
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

/// A beacon whose body never completes is answered 408 after
/// `BEACON_BODY_TIMEOUT` (simulated time), not held for ever.
#[tokio::test(start_paused = true)]
async fn a_trickled_beacon_body_times_out() {
    use futures_util::StreamExt as _;
    let qoe = Arc::new(ugc_core::qoe::QoeCollector::default());
    let app = ugc_proto::origin::router_with_config(
        registry(),
        Arc::new(ugc_core::AllowAll),
        ugc_proto::origin::peer_is_client(),
        ugc_proto::origin::OriginConfig {
            qoe: Some(qoe.clone()),
            ..Default::default()
        },
    );
    let first: Result<Bytes, std::io::Error> = Ok(Bytes::from_static(b"sid=a&played"));
    let body = futures_util::stream::iter([first]).chain(futures_util::stream::pending());
    let started = tokio::time::Instant::now();
    let res = app
        .oneshot(
            Request::builder()
                .method(Method::POST)
                .uri("/live/demo/qoe")
                .body(Body::from_stream(body))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(started.elapsed(), ugc_proto::origin::BEACON_BODY_TIMEOUT);
    assert_eq!(qoe.refused(ugc_core::qoe::Refusal::Malformed), 1);
}

/// A balancing origin asks where each new viewer (a multivariant request)
/// plays: `302` to the same path and query at another origin, marked so
/// that origin serves it; its own turn, a marked request, or any other file
/// is served here without asking; and private streams are checked first.
#[tokio::test]
async fn a_balancing_origin_redirects_new_viewers_only() {
    use std::sync::Mutex;
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let turn = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let balance = {
        let (asked, turn) = (asked.clone(), turn.clone());
        ugc_proto::origin::Balance(Arc::new(move |stream| {
            asked.lock().unwrap().push(stream.to_string());
            // Every other viewer elsewhere.
            let n = turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async move { (n % 2 == 0).then(|| "http://10.0.0.2:8082".to_owned()) })
        }))
    };
    let app = ugc_proto::origin::router_with_config(
        registry(),
        Arc::new(PrivateStream),
        ugc_proto::origin::peer_is_client(),
        ugc_proto::origin::OriginConfig {
            balance: Some(balance),
            ..Default::default()
        },
    );
    let get = |uri: &str| {
        let app = app.clone();
        let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        async move { app.oneshot(req).await.unwrap() }
    };
    let first = get("/live/demo/index.m3u8?vs=abc").await;
    assert_eq!(first.status(), StatusCode::FOUND);
    assert_eq!(
        first.headers()[header::LOCATION],
        "http://10.0.0.2:8082/live/demo/index.m3u8?vs=abc&balanced=1"
    );
    assert_eq!(first.headers()[header::CACHE_CONTROL], "no-store");
    let second = get("/live/demo/index.m3u8").await;
    assert_eq!(second.status(), StatusCode::OK);
    let third = get("/live/demo/index.m3u8").await;
    assert_eq!(
        third.headers()[header::LOCATION],
        "http://10.0.0.2:8082/live/demo/index.m3u8?balanced=1"
    );
    assert_eq!(asked.lock().unwrap().len(), 3);
    // Sent here by another origin, or not a new viewer: not asked.
    assert_eq!(
        get("/live/demo/index.m3u8?balanced=1").await.status(),
        StatusCode::OK
    );
    assert_eq!(get("/live/demo/mono.m3u8").await.status(), StatusCode::OK);
    assert_eq!(asked.lock().unwrap().len(), 3);
    // A viewer the stream refuses is refused here, not sent on.
    assert_eq!(
        get("/live/private/index.m3u8").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(*asked.lock().unwrap(), vec!["live/demo"; 3]);
}
