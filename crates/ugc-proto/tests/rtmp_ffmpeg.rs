//! Interop with the real ffmpeg 5.1 RTMP publisher, and bad clients that must
//! not disturb a following good publisher.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use ugc_core::hub::HubConfig;
use ugc_core::{AllowAll, Hub, MediaEvent, StreamPath};
use ugc_proto::rtmp::amf0::{self, Amf0Value};
use ugc_proto::rtmp::server::{RtmpServerConfig, serve};
use ugc_proto::rtmp::{ChunkDecoder, ChunkEncoder, ServerEvent, ServerSession, SessionConfig};

fn ffmpeg_publish(
    url: &str,
    extra_video: &[&str],
    seconds: u32,
    realtime: bool,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    if realtime {
        cmd.arg("-re");
    }
    cmd.args(["-f", "lavfi", "-i"]);
    cmd.arg(format!(
        "testsrc2=size={}:rate=30",
        if extra_video.is_empty() {
            "640x360"
        } else {
            "1280x720"
        }
    ));
    cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]);
    cmd.args(["-c:v", "libx264", "-g", "30", "-pix_fmt", "yuv420p"]);
    cmd.args(extra_video);
    cmd.args(["-c:a", "aac", "-t", &seconds.to_string(), "-f", "flv", url]);
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Accepts one connection and drives a [`ServerSession`] over it, accepting
/// the publish; returns every event and the raw input bytes.
async fn drive_one(listener: TcpListener) -> (Vec<ServerEvent>, Vec<u8>) {
    let (mut tcp, _) = listener.accept().await.unwrap();
    let mut session = ServerSession::new(SessionConfig::default());
    let mut events = Vec::new();
    let mut recorded = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = tcp.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        recorded.extend_from_slice(&buf[..n]);
        session
            .handle_input(&buf[..n])
            .expect("ffmpeg input is valid");
        while let Some(out) = session.poll_output() {
            tcp.write_all(&out).await.unwrap();
        }
        while let Some(ev) = session.poll_event() {
            if matches!(ev, ServerEvent::PublishRequested { .. }) {
                session.accept_publish().unwrap();
                while let Some(out) = session.poll_output() {
                    tcp.write_all(&out).await.unwrap();
                }
            }
            events.push(ev);
        }
    }
    (events, recorded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publish_yields_h264_aac_events() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(drive_one(listener));
    let url = format!("rtmp://127.0.0.1:{port}/live/test?token=abc");
    let out = ffmpeg_publish(&url, &[], 3, true).output().await.unwrap();
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (events, _) = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();

    let Some(ServerEvent::PublishRequested {
        app,
        key,
        query,
        tc_url,
    }) = events.first()
    else {
        panic!("first event {:?}", events.first());
    };
    assert_eq!((app.as_str(), key.as_str()), ("live", "test"));
    assert_eq!(query.as_deref(), Some("token=abc"));
    assert!(
        tc_url
            .as_deref()
            .unwrap_or_default()
            .starts_with("rtmp://127.0.0.1")
    );
    let meta = events
        .iter()
        .find_map(|e| match e {
            ServerEvent::Metadata(m) => Some(m.clone()),
            _ => None,
        })
        .expect("metadata");
    assert_eq!((meta.width, meta.height), (Some(640), Some(360)));
    assert_eq!(meta.frame_rate_milli, Some(30_000));

    // FLV VIDEODATA: frame type (1 = key) << 4 | codec 7 (AVC); AVCPacketType 0 = config, 1 = NALUs.
    let video: Vec<&bytes::Bytes> = events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Video { body, .. } => Some(body),
            _ => None,
        })
        .collect();
    assert_eq!(video[0][0], 0x17);
    assert_eq!(video[0][1], 0, "AVC sequence header first");
    let frames: Vec<_> = video.iter().filter(|b| b.get(1) == Some(&1)).collect();
    assert!(
        (85..=95).contains(&frames.len()),
        "{} video frames",
        frames.len()
    );
    let keys: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, b)| b[0] >> 4 == 1)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keys, vec![0, 30, 60], "keyframes every 30");
    let video_ts: Vec<i64> = events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Video { timestamp_ms, body } if body[1] == 1 => Some(*timestamp_ms),
            _ => None,
        })
        .collect();
    assert!(video_ts.windows(2).all(|w| w[1] >= w[0]));
    assert!(
        (2900..=3100).contains(video_ts.last().unwrap()),
        "{video_ts:?}"
    );

    // FLV AUDIODATA: sound format 10 (AAC) in the top nibble.
    let audio: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Audio { body, .. } => Some(body),
            _ => None,
        })
        .collect();
    assert!(audio.len() > 100, "{} audio messages", audio.len());
    assert!(audio.iter().all(|b| b[0] >> 4 == 10));
    assert_eq!(events.last(), Some(&ServerEvent::PublishEnded));
}

async fn start_server() -> (SocketAddr, Hub) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = Hub::new(HubConfig::default());
    let config = RtmpServerConfig {
        handshake_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(3),
        ..RtmpServerConfig::default()
    };
    tokio::spawn(serve(listener, hub.clone(), Arc::new(AllowAll), config));
    (addr, hub)
}

/// Publishes with ffmpeg through `serve` and checks the Hub saw a publisher on `live/<key>`.
async fn good_publish(addr: SocketAddr, hub: &Hub, key: &str) {
    let url = format!("rtmp://{addr}/live/{key}");
    let child = ffmpeg_publish(&url, &[], 2, true).spawn().unwrap();
    let stream = ugc_core::StreamPath::live(key).unwrap();
    let mut seen = false;
    for _ in 0..100 {
        if hub.is_publishing(&stream) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(seen, "hub never saw a publisher on {stream}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_publishes_ffmpeg_into_the_hub() {
    let (addr, hub) = start_server().await;
    good_publish(addr, &hub, "test").await;
}

/// Needs the real `FlvIngest` from wt-b (the placeholder emits no media).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_delivers_tracks_and_frames_to_hub_readers() {
    let (addr, hub) = start_server().await;
    let mut reader = hub.subscribe(&StreamPath::parse("live/test").unwrap());
    let url = format!("rtmp://{addr}/live/test");
    let child = ffmpeg_publish(&url, &[], 3, true).spawn().unwrap();
    let mut tracks = None;
    let mut video = 0usize;
    let mut keys = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, reader.recv()).await {
        match ev {
            MediaEvent::Tracks(t) => tracks = Some(t),
            MediaEvent::Frame(f) => {
                let t = tracks.as_ref().unwrap();
                if t.get(f.track).map(|i| i.kind()) == Some(ugc_core::MediaKind::Video) {
                    if f.keyframe {
                        keys.push(video);
                    }
                    video += 1;
                    if video >= 90 {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    let _ = child.wait_with_output().await;
    let t = tracks.expect("tracks");
    assert_eq!(t.video().map(|v| v.codec), Some(ugc_core::Codec::H264));
    assert_eq!(t.audio().map(|a| a.codec), Some(ugc_core::Codec::Aac));
    assert!(video >= 85, "{video} frames");
    assert_eq!(keys, vec![0, 30, 60]);
}

/// A hand-driven client: handshake, then chunked messages.
struct RawClient {
    tcp: TcpStream,
    enc: ChunkEncoder,
}

impl RawClient {
    async fn connect(addr: SocketAddr) -> Self {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut c0c1 = vec![3u8];
        c0c1.extend((0..1536).map(|i| (i % 251) as u8));
        c0c1[5..9].copy_from_slice(&[0; 4]);
        tcp.write_all(&c0c1).await.unwrap();
        let mut s = vec![0u8; 1 + 2 * 1536];
        tcp.read_exact(&mut s).await.unwrap();
        tcp.write_all(&s[1..1537]).await.unwrap();
        RawClient {
            tcp,
            enc: ChunkEncoder::new(),
        }
    }

    async fn send(&mut self, csid: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
        let mut out = BytesMut::new();
        self.enc
            .write(csid, 0, type_id, stream_id, payload, &mut out);
        let _ = self.tcp.write_all(&out).await;
    }

    async fn command(&mut self, stream_id: u32, values: &[Amf0Value]) {
        let mut body = BytesMut::new();
        amf0::encode_all(values, &mut body);
        self.send(3, 20, stream_id, &body).await;
    }

    async fn connect_app(&mut self) {
        self.command(
            0,
            &[
                Amf0Value::String("connect".into()),
                Amf0Value::Number(1.0),
                Amf0Value::Object(vec![("app".into(), Amf0Value::String("live".into()))]),
            ],
        )
        .await;
    }

    async fn publish(&mut self, key: &str) {
        self.command(
            0,
            &[
                Amf0Value::String("createStream".into()),
                Amf0Value::Number(2.0),
                Amf0Value::Null,
            ],
        )
        .await;
        self.command(
            1,
            &[
                Amf0Value::String("publish".into()),
                Amf0Value::Number(3.0),
                Amf0Value::Null,
                Amf0Value::String(key.into()),
                Amf0Value::String("live".into()),
            ],
        )
        .await;
    }

    /// Reads until the server closes; returns the decoded messages seen.
    async fn read_until_closed(mut self) -> Vec<ugc_proto::rtmp::Message> {
        let mut dec = ChunkDecoder::default();
        let mut msgs = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let r = tokio::time::timeout(Duration::from_secs(5), self.tcp.read(&mut buf))
                .await
                .expect("server must close a bad connection");
            match r {
                Ok(0) | Err(_) => return msgs,
                Ok(n) => {
                    let _ = dec.feed(&buf[..n]);
                    while let Some(m) = dec.poll_message() {
                        msgs.push(m);
                    }
                }
            }
        }
    }
}

fn on_status_codes(msgs: &[ugc_proto::rtmp::Message]) -> Vec<(u32, String)> {
    msgs.iter()
        .filter(|m| m.type_id == 20)
        .filter_map(|m| {
            let v = amf0::decode(&m.payload).ok()?;
            if v.first()?.as_str()? != "onStatus" {
                return None;
            }
            Some((m.stream_id, v.get(3)?.get("code")?.as_str()?.to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clients_are_closed_and_the_listener_keeps_serving() {
    let (addr, hub) = start_server().await;

    // Garbage instead of a handshake (an HTTP request).
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "garbage must be closed, got {n:?}"
    );

    // Truncated handshake: closed by the handshake timeout.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&[3u8; 700]).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "truncated handshake must be closed, got {n:?}"
    );

    // Set Chunk Size 0 and 2^31.
    for size in [0u32, 1 << 31] {
        let mut c = RawClient::connect(addr).await;
        c.connect_app().await;
        c.send(2, 1, 0, &size.to_be_bytes()).await;
        c.read_until_closed().await;
    }

    // An AMF string longer than its message.
    let mut c = RawClient::connect(addr).await;
    c.send(3, 20, 0, &[0x02, 0x00, 0x07, b'c', b'o', b'n'])
        .await;
    c.read_until_closed().await;

    // A 5000-byte stream name and a `..` key: refused by the authorizer
    // (StreamName) with an onStatus error on the publishing stream, then closed.
    for key in ["k".repeat(5000), "..".to_owned(), "../etc".to_owned()] {
        let mut c = RawClient::connect(addr).await;
        c.connect_app().await;
        c.publish(&key).await;
        let codes = on_status_codes(&c.read_until_closed().await);
        assert_eq!(
            codes,
            vec![(1, "NetStream.Publish.BadName".to_owned())],
            "key {:.20}",
            key
        );
    }
    assert!(hub.stream_names().is_empty(), "{:?}", hub.stream_names());

    // A good publisher still gets through.
    good_publish(addr, &hub, "after-bad").await;
}

/// Records the raw bytes of an ffmpeg 5.1 publish (720p, ~1.5 Mbps, 8 s)
/// into `tests/data/ffmpeg51_publish_720p.bin` for the benches and fuzz
/// seeds. Run with `cargo test -p ugc-proto --test rtmp_ffmpeg -- --ignored record`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "regenerates the committed capture"]
async fn record_ffmpeg51_publish_720p() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(drive_one(listener));
    let url = format!("rtmp://127.0.0.1:{port}/live/bench");
    let extra = [
        "-preset", "veryfast", "-b:v", "1500k", "-maxrate", "1500k", "-bufsize", "3000k", "-g",
        "60",
    ];
    let out = ffmpeg_publish(&url, &extra, 8, false)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (events, recorded) = server.await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ServerEvent::Video { .. }))
    );
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ffmpeg51_publish_720p.bin"
    );
    std::fs::write(path, &recorded).unwrap();
}

/// Arrival times, at a Hub reader, of the frames of `seconds` of a real-time
/// ffmpeg publish through `serve` with read batching.
async fn frame_arrivals(reader: &mut ugc_core::HubReader, seconds: f64) -> Vec<std::time::Instant> {
    let mut at = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, reader.recv()).await {
        if matches!(ev, MediaEvent::Frame(_)) {
            at.push(std::time::Instant::now());
        }
    }
    at
}

/// Groups of frames that reached the reader together (less than 15 ms
/// apart), per second.
fn bursts_per_second(at: &[std::time::Instant]) -> f64 {
    let (Some(first), Some(last)) = (at.first(), at.last()) else {
        return 0.0;
    };
    let bursts = 1 + at
        .windows(2)
        .filter(|w| w[1] - w[0] > Duration::from_millis(15))
        .count();
    bursts as f64 / (*last - *first).as_secs_f64().max(0.001)
}

/// While no viewer wants the stream at low latency, a publisher is read
/// once per batch interval: its 30 fps video and ~43 audio frames/s reach
/// the Hub in a few bursts per second. A viewer's low-latency wish switches
/// to reading as data arrives within an interval; when it lapses, batching
/// resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_batched_until_a_viewer_wants_low_latency() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = Hub::new(HubConfig::default());
    let config = RtmpServerConfig {
        batch_reads: Some(Duration::from_millis(200)),
        ..RtmpServerConfig::default()
    };
    tokio::spawn(serve(listener, hub.clone(), Arc::new(AllowAll), config));
    let mut reader = hub.subscribe(&StreamPath::parse("live/batch").unwrap());
    let url = format!("rtmp://{addr}/live/batch");
    let child = ffmpeg_publish(&url, &[], 8, true).spawn().unwrap();
    // Until the first frame (ffmpeg start-up), then settle.
    let _ = tokio::time::timeout(Duration::from_secs(10), reader.recv()).await;
    frame_arrivals(&mut reader, 0.5).await;

    let batched = bursts_per_second(&frame_arrivals(&mut reader, 2.0).await);
    let wish = std::time::Instant::now() + Duration::from_millis(2500);
    hub.want_low_latency(&StreamPath::parse("live/batch").unwrap(), wish);
    frame_arrivals(&mut reader, 0.4).await;
    let live = frame_arrivals(&mut reader, 1.8).await;
    let low_latency = bursts_per_second(&live);
    let longest_gap = live.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    tokio::time::sleep_until(wish.into()).await;
    frame_arrivals(&mut reader, 0.4).await;
    let again = bursts_per_second(&frame_arrivals(&mut reader, 2.0).await);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    eprintln!(
        "bursts/s: batched {batched:.1}, low latency {low_latency:.1} (longest gap \
         {longest_gap:?}), lapsed {again:.1}"
    );
    // Batched: 5 reads/s, each a burst (a little more when a read ends
    // within a frame's bytes). As data arrives: about one burst per video
    // frame.
    assert!(batched <= 8.0, "{batched:.1} bursts/s while batched");
    assert!(again <= 8.0, "{again:.1} bursts/s after the wish lapsed");
    assert!(
        low_latency >= 15.0,
        "{low_latency:.1} bursts/s at low latency"
    );
    assert!(
        longest_gap < Duration::from_millis(150),
        "{longest_gap:?} without frames at low latency"
    );
}
