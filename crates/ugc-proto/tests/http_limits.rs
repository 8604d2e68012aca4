//! `ugc_proto::http::serve` against hostile clients on real loopback
//! sockets (issue #17): slowloris heads, silent and half-preface
//! connections, a greedy address, a reader that stops reading. Each test
//! checks that a well-behaved client is served meanwhile.

#![allow(clippy::unwrap_used, missing_docs)]
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use ugc_proto::http::{ServeConfig, ServeStats, serve_until};

const BIG: usize = 64 << 20;

async fn start(config: ServeConfig) -> (SocketAddr, Arc<ServeStats>) {
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/hold",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                "held"
            }),
        )
        .route("/big", get(|| async { vec![b'x'; BIG] }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(ServeStats::default());
    tokio::spawn(serve_until(
        listener,
        app,
        config,
        stats.clone(),
        std::future::pending(),
    ));
    (addr, stats)
}

fn short() -> ServeConfig {
    ServeConfig {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        ..ServeConfig::default()
    }
}

/// A connection from `from` (a loopback address) to `to`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// GET `path` on a fresh connection from `from`; the status line and how
/// long the answer took.
async fn get_from(from: &str, to: SocketAddr, path: &str) -> (String, Duration) {
    let t = Instant::now();
    let mut s = connect_from(from, to).await;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = Vec::new();
    s.read_to_end(&mut body).await.unwrap();
    let text = String::from_utf8_lossy(&body);
    (text.lines().next().unwrap_or("").to_string(), t.elapsed())
}

/// Reads until EOF or an error; true if the server closed within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = vec![0u8; 1 << 16];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_silent_and_half_preface_connections_are_closed() {
    let (addr, stats) = start(short()).await;
    let mut attackers = Vec::new();
    for i in 0..150 {
        let mut s = connect_from("127.0.0.1", addr).await;
        match i % 3 {
            // Half a request head, then nothing.
            0 => s
                .write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\nX-a: ")
                .await
                .unwrap(),
            // The start of the HTTP/2 preface: protocol detection waits.
            1 => s.write_all(b"PRI * HTTP/2").await.unwrap(),
            // Nothing at all.
            _ => {}
        }
        attackers.push(s);
    }
    // Meanwhile a viewer is served at once.
    let (status, took) = get_from("127.0.0.2", addr, "/ok").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(took < Duration::from_millis(500), "viewer waited {took:?}");
    // Every attacker is cut within the header timeout (+ slack).
    let t = Instant::now();
    for s in &mut attackers {
        assert!(closed_within(s, Duration::from_secs(5)).await, "held open");
    }
    let took = t.elapsed();
    assert!(took < Duration::from_secs(3), "closing took {took:?}");
    assert!(stats.timed_out.load(Ordering::Relaxed) >= 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_idle_between_requests_are_closed() {
    let (addr, _) = start(short()).await;
    let mut s = connect_from("127.0.0.1", addr).await;
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
    // Kept alive, then silent: hyper's header timeout ends it.
    assert!(closed_within(&mut s, Duration::from_secs(4)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let config = ServeConfig {
        max_connections_per_ip: 10,
        header_read_timeout: Duration::from_secs(30),
        ..ServeConfig::default()
    };
    let (addr, stats) = start(config).await;
    let mut held = Vec::new();
    for _ in 0..15 {
        held.push(connect_from("127.0.0.1", addr).await);
    }
    // The five beyond the cap are closed at once, the first ten stay.
    let mut closed = 0;
    for s in &mut held {
        if closed_within(s, Duration::from_millis(300)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 5);
    assert_eq!(stats.refused_ip_cap.load(Ordering::Relaxed), 5);
    // Another address is served.
    let (status, _) = get_from("127.0.0.3", addr, "/ok").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    // Freed places are given again.
    held.truncate(2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = get_from("127.0.0.1", addr, "/ok").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_cut_after_the_idle_timeout() {
    let (addr, stats) = start(short()).await;
    let mut s = connect_from("127.0.0.1", addr).await;
    s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    // Read nothing for longer than the idle timeout: the server's writes
    // stall once the socket buffers are full.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got < BIG, "the whole body arrived: the reader was not cut");
    assert!(stats.timed_out.load(Ordering::Relaxed) >= 1);
}

/// With an idle timeout shorter than the header timeout, a reader that
/// stops reading is cut after the idle timeout, not after the first-bytes
/// deadline (which the first bytes replace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_timeout_shorter_than_the_header_timeout_applies_after_the_request() {
    let (addr, stats) = start(ServeConfig {
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(1),
        ..ServeConfig::default()
    })
    .await;
    let mut s = connect_from("127.0.0.1", addr).await;
    s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        stats.timed_out.load(Ordering::Relaxed) >= 1,
        "not cut 3 s after the request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_is_not_idle() {
    // A blocking reload holds its answer (up to three target durations) and
    // the connection is quiet meanwhile: longer than both timeouts here.
    let (addr, _) = start(ServeConfig {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ..ServeConfig::default()
    })
    .await;
    let (status, took) = get_from("127.0.0.1", addr, "/hold").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(took >= Duration::from_millis(2500));
}

/// An HTTP/2 frame: length, type, flags, stream id, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// `GET /ok` as an HPACK block of the static table and literals.
const H2_GET_OK: [u8; 10] = [0x82, 0x86, 0x01, 0x01, b't', 0x04, 0x03, b'/', b'o', b'k'];

/// Sends the client preface, then `streams` requests built by `request`
/// (stream id -> frames) in one burst; reads the server's frames until it
/// closes: (the GOAWAY's error code if one came, bytes read).
async fn h2_flood(
    addr: SocketAddr,
    streams: u32,
    request: impl Fn(u32) -> Vec<u8>,
) -> (Option<u32>, usize) {
    let mut s = connect_from("127.0.0.3", addr).await;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(4, 0, 0, &[]));
    for i in 0..streams {
        out.extend(request(2 * i + 1));
    }
    // The server may close before it read everything: not an error here.
    let _ = s.write_all(&out).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    let mut at = 0;
    let mut goaway = None;
    while at + 9 <= got.len() {
        let len = u32::from_be_bytes([0, got[at], got[at + 1], got[at + 2]]) as usize;
        if got[at + 3] == 7 && at + 9 + 8 <= got.len() {
            let p = &got[at + 9..];
            goaway = Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
        }
        at += 9 + len;
    }
    (goaway, got.len())
}

/// HTTP/2 "rapid reset" (CVE-2023-44487): a client opens streams and
/// cancels each at once, so the server starts work it never finishes;
/// and its sibling, a flood of streams the server must reset itself (here
/// requests without `:path`). Past
/// `h2_max_pending_accept_reset_streams` / `h2_max_local_error_reset_streams`
/// the server ends the connection with GOAWAY ENHANCE_YOUR_CALM (0xb);
/// a viewer is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_reset_floods_end_the_connection_with_enhance_your_calm() {
    let config = ServeConfig::default();
    let (limit_pending, limit_local) = (
        config.h2_max_pending_accept_reset_streams as u32,
        config.h2_max_local_error_reset_streams as u32,
    );
    let (addr, _) = start(config).await;
    // HEADERS (END_STREAM | END_HEADERS) then RST_STREAM (CANCEL).
    let rapid_reset = |id: u32| {
        let mut f = h2_frame(1, 0x5, id, &H2_GET_OK);
        f.extend(h2_frame(3, 0, id, &8u32.to_be_bytes()));
        f
    };
    let (goaway, _) = h2_flood(addr, 20 * limit_pending, rapid_reset).await;
    assert_eq!(goaway, Some(0xb), "rapid reset: GOAWAY {goaway:?}");
    // A request without `:path`: malformed, a stream error the server
    // answers with RST_STREAM (PROTOCOL_ERROR) each time.
    let stream_errors = |id: u32| h2_frame(1, 0x5, id, &H2_GET_OK[..5]);
    let (goaway, _) = h2_flood(addr, 4 * limit_local, stream_errors).await;
    assert_eq!(goaway, Some(0xb), "stream-error flood: GOAWAY {goaway:?}");
    // A viewer meanwhile.
    let (status, took) = get_from("127.0.0.2", addr, "/ok").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(took < Duration::from_millis(500), "viewer waited {took:?}");
}
