//! LL-HLS on the origin, against a stream fed in real time: blocking
//! reload timing, 1 000 held requests, bounded holds, bad directives, and a
//! preload-hinted part streamed while it is written.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use ugc_core::{AllowAll, Frame, MediaEvent, StreamPath, TrackId};
use ugc_dvr::{LiveConfig, LiveRegistry, LiveStream, Segmenter, SegmenterConfig, SegmenterOutput};
use ugc_proto::origin::{OriginConfig, peer_is_client, router_with_config};

const PART_MS: u32 = 200;
const FRAME_MS: u64 = 33;

type Produced = Arc<Mutex<HashMap<(u64, u32), Instant>>>;

struct Feed {
    live: Arc<LiveStream>,
    /// When each part was published.
    parts: Produced,
    /// When each part's first chunk was published.
    first_chunks: Produced,
    task: tokio::task::JoinHandle<()>,
}

/// A live stream fed with 30 fps video (1 s GOPs) and AAC in real time for
/// `secs` seconds, then kept open (no end).
fn feed(secs: u64) -> Feed {
    let live = Arc::new(LiveStream::new(LiveConfig {
        window_segments: 6,
        grace_segments: 2,
        target_duration_ms: 1000,
        part_target_ms: Some(PART_MS),
    }));
    let parts: Produced = Arc::default();
    let first_chunks: Produced = Arc::default();
    let task = {
        let (live, parts, first_chunks) = (live.clone(), parts.clone(), first_chunks.clone());
        tokio::spawn(async move {
            let mut seg = Segmenter::new(SegmenterConfig {
                target_duration_ms: 1000,
                part_target_ms: Some(PART_MS),
                ..Default::default()
            });
            let start = tokio::time::Instant::now();
            let apply = |seg: &mut Segmenter| {
                while let Some(o) = seg.poll() {
                    match &o {
                        SegmenterOutput::Part { msn, part } => {
                            parts
                                .lock()
                                .unwrap()
                                .insert((*msn, part.index), Instant::now());
                        }
                        SegmenterOutput::PartChunk { msn, part, .. } => {
                            first_chunks
                                .lock()
                                .unwrap()
                                .entry((*msn, *part))
                                .or_insert_with(Instant::now);
                        }
                        _ => {}
                    }
                    live.apply(o, 0);
                }
            };
            seg.push(
                MediaEvent::Tracks(ugc_core::hub::tests_support::av_tracks()),
                0,
            )
            .unwrap();
            apply(&mut seg);
            let frames = secs * 1000 / FRAME_MS;
            for i in 0..frames as i64 {
                tokio::time::sleep_until(start + Duration::from_millis(i as u64 * FRAME_MS)).await;
                let t = i * FRAME_MS as i64;
                let now = 1_700_000_000_000 + t;
                seg.push(
                    MediaEvent::Frame(Frame {
                        track: TrackId(1),
                        dts: t,
                        pts: t,
                        keyframe: i % 30 == 0,
                        data: Bytes::from(vec![i as u8; 1500]),
                    }),
                    now,
                )
                .unwrap();
                seg.push(
                    MediaEvent::Frame(Frame {
                        track: TrackId(2),
                        dts: t + 1,
                        pts: t + 1,
                        keyframe: true,
                        data: Bytes::from(vec![2u8; 30]),
                    }),
                    now,
                )
                .unwrap();
                apply(&mut seg);
            }
        })
    };
    Feed {
        live,
        parts,
        first_chunks,
        task,
    }
}

fn app(live: &Arc<LiveStream>, config: OriginConfig) -> Router {
    let reg = Arc::new(LiveRegistry::new());
    reg.insert(
        &ugc_core::StreamPath::parse("live/ll").unwrap(),
        live.clone(),
    );
    router_with_config(reg, Arc::new(AllowAll), peer_is_client(), config)
}

async fn get(app: &Router, uri: &str) -> (StatusCode, String, Bytes) {
    let res = app
        .clone()
        .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let cc = res
        .headers()
        .get(header::CACHE_CONTROL)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        cc,
        to_bytes(res.into_body(), 1 << 24).await.unwrap(),
    )
}

fn hint(playlist: &str) -> (u64, u32) {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))
        .unwrap();
    let uri = line.split("URI=\"").nth(1).unwrap().trim_end_matches('"');
    match ugc_dvr::MediaFile::parse(uri) {
        Ok(ugc_dvr::MediaFile::Part(0, m, p)) => (m, p),
        other => panic!("{uri}: {other:?}"),
    }
}

async fn wait_for_segments(live: &LiveStream) {
    for _ in 0..500 {
        if live.has_segments() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no segment after 10 s");
}

/// A player that asks for the playlist of a stream that began moments
/// ago, before its first segment, waits for it and gets the playlist (a
/// 404 there is fatal to hls.js after one retry); an ended stream
/// without segments is still a 404 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_playlist_asked_before_the_first_segment_waits_for_it() {
    let f = feed(4);
    let early = app(&f.live, OriginConfig::default());
    assert!(!f.live.has_segments());
    let (status, _, body) = get(&early, "/live/ll/mono.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains("#EXTINF:"), "{text}");
    f.task.abort();

    let ended = Arc::new(LiveStream::new(LiveConfig::default()));
    ended.set_ended();
    let gone = app(&ended, OriginConfig::default());
    let asked = Instant::now();
    let (status, _, _) = get(&gone, "/live/ll/mono.m3u8").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(asked.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reload_answers_within_one_part_of_production() {
    let f = feed(6);
    let app = app(&f.live, OriginConfig::default());
    wait_for_segments(&f.live).await;
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let (_, _, body) = get(&app, "/live/ll/mono.m3u8").await;
        let (m, p) = hint(std::str::from_utf8(&body).unwrap());
        let (status, cc, body) = get(
            &app,
            &format!("/live/ll/mono.m3u8?_HLS_msn={m}&_HLS_part={p}"),
        )
        .await;
        let answered = Instant::now();
        assert_eq!(status, StatusCode::OK);
        assert!(cc.starts_with("public, max-age="), "{cc}");
        let text = String::from_utf8(body.to_vec()).unwrap();
        // The answer lists the asked part (or its segment closed with fewer
        // parts and the next segment began).
        let listed = text.contains(&format!("URI=\"part-0-{m}.{p}.m4s\""));
        let produced = f.parts.lock().unwrap().get(&(m, p)).copied();
        match produced {
            Some(at) if listed => worst = worst.max(answered.saturating_duration_since(at)),
            _ => assert!(text.contains(&format!("seg-0-{m}.m4s")), "{text}"),
        }
    }
    assert!(
        worst < Duration::from_millis(u64::from(PART_MS)),
        "blocking reload answered {worst:?} after the part"
    );
    f.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_held_requests_return_correctly_in_bounded_memory() {
    let f = feed(5);
    let app = app(&f.live, OriginConfig::default());
    wait_for_segments(&f.live).await;
    let (_, _, body) = get(&app, "/live/ll/mono.m3u8").await;
    let (m, p) = hint(std::str::from_utf8(&body).unwrap());
    let rss_before = rss_kib();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let app = app.clone();
        let uri = format!("/live/ll/mono.m3u8?_HLS_msn={m}&_HLS_part={p}");
        tasks.push(tokio::spawn(async move { get(&app, &uri).await }));
    }
    let mut texts = Vec::new();
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        texts.push(body);
    }
    let took = started.elapsed();
    let grew = rss_kib().saturating_sub(rss_before);
    // Every answer has the asked part.
    for t in &texts {
        let t = std::str::from_utf8(t).unwrap();
        assert!(
            t.contains(&format!("URI=\"part-0-{m}.{p}.m4s\""))
                || t.contains(&format!("seg-0-{m}.m4s")),
            "{t}"
        );
    }
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(
        grew < 64 * 1024,
        "RSS grew by {grew} KiB for 1000 held requests"
    );
    f.task.abort();
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_are_bounded_and_bad_directives_are_400() {
    let f = feed(5);
    let config = OriginConfig {
        hold: Some(Duration::from_millis(300)),
        max_held_requests: 1,
        ..OriginConfig::default()
    };
    let app = app(&f.live, config);
    wait_for_segments(&f.live).await;
    f.task.await.unwrap();
    let last = f.live.update().last_msn.unwrap();
    for bad in [
        "_HLS_msn=-1",
        "_HLS_msn=abc",
        "_HLS_msn=99999999999999999999999999",
        "_HLS_msn=18446744073709551615",
        "_HLS_part=1",
        "_HLS_msn=1&_HLS_part=-1",
        "_HLS_msn=1&_HLS_part=x",
        "_HLS_msn=1&_HLS_part=4294967295",
        "_HLS_skip=maybe",
    ] {
        let (status, cc, _) = get(&app, &format!("/live/ll/mono.m3u8?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(cc, "no-cache");
    }
    let (status, _, _) = get(&app, &format!("/live/ll/mono.m3u8?_HLS_msn={}", last + 3)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "too far ahead");
    // The publisher stalled: a held request ends with 503 after the hold, and
    // a second one meanwhile is refused at once (limit 1).
    let uri = format!("/live/ll/mono.m3u8?_HLS_msn={}", last + 2);
    let held = {
        let (app, uri) = (app.clone(), uri.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            (get(&app, &uri).await.0, t.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    assert_eq!(get(&app, &uri).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert!(t.elapsed() < Duration::from_millis(100));
    let (status, took) = held.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(1),
        "{took:?}"
    );
    // Satisfied requests answer at once; the plain playlist is not cached.
    let (status, cc, _) = get(&app, &format!("/live/ll/mono.m3u8?_HLS_msn={last}")).await;
    assert_eq!((status, cc.as_str()), (StatusCode::OK, "public, max-age=1"));
    let (status, cc, _) = get(&app, "/live/ll/mono.m3u8").await;
    assert_eq!((status, cc.as_str()), (StatusCode::OK, "no-cache"));
    // Parts: immutable; unknown ones 404.
    let (status, cc, body) = get(&app, &format!("/live/ll/part-0-{last}.0.m4s")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cc.contains("immutable"));
    assert_eq!(&body[4..8], b"moof");
    let (status, _, _) = get(&app, &format!("/live/ll/part-0-{last}.999.m4s")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(&app, "/live/ll/part-0-99999.0.m4s").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preload_hinted_part_streams_while_it_is_written() {
    let f = feed(6);
    let app = app(&f.live, OriginConfig::default());
    wait_for_segments(&f.live).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    // Ask for a part two parts ahead of the hint so it has not started.
    let (m, p) = f.live.preload_hint().unwrap();
    let want = (m, p + 1);
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(
        format!(
            "GET /live/ll/part-0-{}.{}.m4s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            want.0, want.1
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    let mut first_body_at = None;
    let mut buf = [0u8; 65536];
    loop {
        let n = sock.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if first_body_at.is_none()
            && let Some(h) = raw.windows(4).position(|w| w == b"\r\n\r\n")
            && raw.len() > h + 4
        {
            first_body_at = Some(Instant::now());
        }
    }
    let text_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..text_end]).to_lowercase();
    if !head.starts_with("http/1.1 200") {
        // The segment closed before that part: a 404 is the right answer.
        assert!(head.starts_with("http/1.1 404"), "{head}");
        server.abort();
        return;
    }
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let body = dechunk(&raw[text_end + 4..]);
    let done = f.parts.lock().unwrap()[&want];
    let first = f.first_chunks.lock().unwrap()[&want];
    let part = match f.live.part_progress(want.0, want.1, 0) {
        ugc_dvr::PartProgress::Complete(b) => b,
        other => panic!("{other:?}"),
    };
    assert_eq!(Bytes::from(body), part.to_bytes());
    // The first bytes left before the part was complete.
    let first_body_at = first_body_at.unwrap();
    assert!(first_body_at < done, "no bytes before the part completed");
    assert!(first_body_at.saturating_duration_since(first) < Duration::from_millis(50));
    server.abort();
    f.task.abort();
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// A live stream fed at once with `frames` frames of 30 fps video (1 s
/// GOPs) and AAC, left open.
fn fed_now(frames: i64) -> Arc<LiveStream> {
    let live = Arc::new(LiveStream::new(LiveConfig {
        window_segments: 6,
        grace_segments: 2,
        target_duration_ms: 1000,
        part_target_ms: Some(PART_MS),
    }));
    let mut seg = Segmenter::new(SegmenterConfig {
        target_duration_ms: 1000,
        part_target_ms: Some(PART_MS),
        ..Default::default()
    });
    let mut events = vec![MediaEvent::Tracks(ugc_core::hub::tests_support::av_tracks())];
    for i in 0..frames {
        let t = i * FRAME_MS as i64;
        events.push(MediaEvent::Frame(Frame {
            track: TrackId(1),
            dts: t,
            pts: t,
            keyframe: i % 30 == 0,
            data: Bytes::from(vec![i as u8; 500]),
        }));
        events.push(MediaEvent::Frame(Frame {
            track: TrackId(2),
            dts: t + 1,
            pts: t + 1,
            keyframe: true,
            data: Bytes::from(vec![2u8; 30]),
        }));
    }
    for e in events {
        seg.push(e, 1_700_000_000_000).unwrap();
        while let Some(o) = seg.poll() {
            live.apply(o, 0);
        }
    }
    live
}

#[tokio::test]
async fn rendition_playlists_report_every_other_rendition() {
    let reg = Arc::new(LiveRegistry::new());
    // 30 fps with 1 s GOPs: 33 ms frames put the keyframes at 0, 990, 1980
    // ms, and a keyframe within 50 ms of the 1 s target cuts: segments of
    // 30 frames (990 ms, 5 parts).
    let source = fed_now(100);
    let hi = fed_now(100);
    // Mid-segment with parts, and just after a cut (no part of the open
    // segment published yet).
    let mid = fed_now(80);
    let lo = fed_now(61);
    reg.insert(&ugc_core::StreamPath::parse("live/ll").unwrap(), source);
    reg.insert(
        &ugc_core::StreamPath::parse("live/ll/hi").unwrap(),
        hi.clone(),
    );
    reg.insert(
        &ugc_core::StreamPath::parse("live/ll/mid").unwrap(),
        mid.clone(),
    );
    reg.insert(
        &ugc_core::StreamPath::parse("live/ll/lo").unwrap(),
        lo.clone(),
    );
    let app = router_with_config(
        reg,
        Arc::new(AllowAll),
        peer_is_client(),
        OriginConfig::default(),
    );
    let reports = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("#EXT-X-RENDITION-REPORT:"))
            .map(str::to_owned)
            .collect()
    };
    // The expected report of a rendition, from its own playlist.
    let expect = |name: &str, live: &LiveStream| {
        let u = live.update();
        let (msn, part) = match u.open_parts {
            Some((m, n)) if n > 0 => (m, n - 1),
            _ => {
                let m = u.last_msn.unwrap();
                (m, live.segment(m).unwrap().parts.len() as u32 - 1)
            }
        };
        format!(
            "#EXT-X-RENDITION-REPORT:URI=\"../{name}/mono.m3u8\",LAST-MSN={msn},LAST-PART={part}"
        )
    };
    assert_eq!(
        lo.update().open_parts,
        Some((2, 0)),
        "lo: no part after the cut"
    );
    assert!(mid.update().open_parts.unwrap().1 > 0);

    let (status, _, body) = get(&app, "/live/ll/hi/mono.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(
        reports(&text),
        vec![expect("lo", &lo), expect("mid", &mid)],
        "{text}"
    );
    // Reports come last, after the preload hint.
    assert!(
        text.find("#EXT-X-PRELOAD-HINT").unwrap() < text.find("#EXT-X-RENDITION-REPORT").unwrap()
    );
    // The reported part exists where the report points.
    let (status, _, _) = get(&app, "/live/ll/lo/part-0-1.4.m4s").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        expect("lo", &lo),
        "#EXT-X-RENDITION-REPORT:URI=\"../lo/mono.m3u8\",LAST-MSN=1,LAST-PART=4"
    );

    let (_, _, body) = get(&app, "/live/ll/lo/mono.m3u8?_HLS_msn=0").await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(
        reports(&text),
        vec![expect("hi", &hi), expect("mid", &mid)],
        "{text}"
    );
    // Delta updates keep them; a token follows the URIs.
    let (_, _, body) = get(&app, "/live/ll/mid/mono.m3u8?_HLS_skip=YES&token=abc").await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(reports(&text).len(), 2, "{text}");
    assert!(text.contains("URI=\"../hi/mono.m3u8?token=abc\""), "{text}");

    // The source playlist (not a rendition) and classic TS playlists carry none.
    let (_, _, body) = get(&app, "/live/ll/mono.m3u8").await;
    assert!(reports(std::str::from_utf8(&body).unwrap()).is_empty());
    let (_, _, body) = get(&app, "/live/ll/hi/mono-ts.m3u8").await;
    assert!(reports(std::str::from_utf8(&body).unwrap()).is_empty());
}

/// Segments and parts are served from their CMAF chunks as they are (no
/// joined copy): the body is the chunks in order, with an exact
/// `Content-Length`, not a chunked transfer.
#[tokio::test]
async fn segments_and_parts_are_served_from_their_chunks() {
    let live = fed_now(100);
    let app = app(&live, OriginConfig::default());
    let seg = live.segment(0).unwrap();
    assert!(seg.data.pieces().len() > 30, "{:?}", seg.data);
    let part = seg.parts[1].clone();
    assert!(part.data.pieces().len() > 1, "{:?}", part.data);
    for (uri, want, ctype) in [
        ("/live/ll/seg-0-0.m4s", &seg.data, "video/iso.segment"),
        ("/live/ll/part-0-0.1.m4s", &part.data, "video/mp4"),
    ] {
        let res = app
            .clone()
            .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
        assert_eq!(res.headers()[header::CONTENT_TYPE], ctype, "{uri}");
        let body = res.into_body();
        use http_body::Body as _;
        assert_eq!(body.size_hint().exact(), Some(want.len() as u64), "{uri}");
        let got = to_bytes(body, 1 << 24).await.unwrap();
        assert_eq!(got, want.to_bytes(), "{uri}");
    }
}

/// Blocking reloads and parts mark the stream wanted at low latency on the
/// hub (which stops its ingest from batching reads); plain playlist reloads,
/// segments and the multivariant playlist do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_latency_requests_tell_the_hub() {
    let f = feed(4);
    let hub = ugc_core::Hub::new(ugc_core::hub::HubConfig::default());
    let publisher = hub.publish(&StreamPath::parse("live/ll").unwrap());
    let app = app(
        &f.live,
        OriginConfig {
            low_latency_hub: Some(hub.clone()),
            ..OriginConfig::default()
        },
    );
    wait_for_segments(&f.live).await;
    let wanted = || publisher.low_latency_wanted(Instant::now());
    let (_, _, body) = get(&app, "/live/ll/mono.m3u8").await;
    let playlist = String::from_utf8(body.to_vec()).unwrap();
    let seg = playlist.lines().find(|l| l.starts_with("seg-")).unwrap();
    for uri in [
        "/live/ll/index.m3u8".to_owned(),
        "/live/ll/mono.m3u8".to_owned(),
        "/live/ll/mono-ts.m3u8?_HLS_msn=1".to_owned(),
        format!("/live/ll/{seg}"),
    ] {
        let (status, _, _) = get(&app, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(!wanted(), "{uri} marked the stream low-latency");
    }
    let (m, p) = hint(&playlist);
    let (status, _, _) = get(
        &app,
        &format!("/live/ll/mono.m3u8?_HLS_msn={m}&_HLS_part={p}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(wanted(), "a blocking reload did not mark the stream");
    // For a while, not forever.
    assert!(!publisher.low_latency_wanted(Instant::now() + Duration::from_secs(11)));

    // A part request alone marks it too (a fresh hub: nothing marked yet).
    let hub = ugc_core::Hub::new(ugc_core::hub::HubConfig::default());
    let publisher = hub.publish(&StreamPath::parse("live/ll").unwrap());
    let app = self::app(
        &f.live,
        OriginConfig {
            low_latency_hub: Some(hub.clone()),
            ..OriginConfig::default()
        },
    );
    let part = playlist
        .lines()
        .rev()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .find_map(|l| l.split("URI=\"").nth(1)?.split('"').next())
        .unwrap();
    let (status, _, _) = get(&app, &format!("/live/ll/{part}")).await;
    assert_eq!(status, StatusCode::OK, "{part}");
    assert!(publisher.low_latency_wanted(Instant::now()));
    f.task.abort();
}

/// With a viewer counter, each multivariant request of a public stream
/// gets its own viewer session in the variant URIs (a private answer);
/// media playlist reloads with it count one viewer each, segments carry
/// none, and requests without a session count nobody.
#[tokio::test]
async fn viewers_are_counted_per_play_session() {
    let f = feed(3);
    let viewers = Arc::new(ugc_core::viewers::ViewerCounter::default());
    let app = app(
        &f.live,
        OriginConfig {
            viewers: Some(viewers.clone()),
            ..OriginConfig::default()
        },
    );
    wait_for_segments(&f.live).await;
    let stream = StreamPath::parse("live/ll").unwrap();
    let variant = |body: &Bytes| {
        String::from_utf8(body.to_vec())
            .unwrap()
            .lines()
            .find(|l| l.starts_with("mono.m3u8"))
            .unwrap()
            .to_owned()
    };
    let mut uris = Vec::new();
    for _ in 0..3 {
        let (status, cc, body) = get(&app, "/live/ll/index.m3u8").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cc, "private, no-cache", "one viewer's playlist");
        uris.push(variant(&body));
    }
    assert!(
        uris.iter().all(|u| u.starts_with("mono.m3u8?vs=")),
        "{uris:?}"
    );
    uris.dedup();
    assert_eq!(uris.len(), 3, "a session each: {uris:?}");
    // A player that kept its session keeps it.
    let (_, _, body) = get(&app, "/live/ll/index.m3u8?vs=abc123").await;
    assert_eq!(variant(&body), "mono.m3u8?vs=abc123");
    assert_eq!(
        viewers.count(&stream, Instant::now()),
        0,
        "nobody plays yet"
    );
    // Two players reload their media playlists, one of them three times;
    // one request has no session; one a session that is no id.
    for uri in [&uris[0], &uris[0], &uris[0], &uris[1]] {
        let (status, _, body) = get(&app, &format!("/live/ll/{uri}")).await;
        assert_eq!(status, StatusCode::OK);
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains("vs="), "segments carry no session: {text}");
    }
    get(&app, "/live/ll/mono.m3u8").await;
    get(&app, "/live/ll/mono.m3u8?vs=a%2Fb").await;
    assert_eq!(viewers.count(&stream, Instant::now()), 2);
    f.task.abort();
}
