//! End to end: WHIP publish (RFC 9725). Headless Chromium with its fake
//! camera and microphone publishes H.264 + Opus (`tests/browser/whip.mjs`);
//! the stream plays over HLS (ffmpeg decodes it without an error, ffprobe
//! sees both tracks) and a DELETE of the session URL ends it. The
//! signalling's refusals (key, content type, offer, methods, CORS) are
//! checked without a browser.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

/// A request with an SDP (or other) body and an optional bearer key.
fn whip_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(k) = key {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    if let Some(t) = content_type {
        head.push_str(&format!("Content-Type: {t}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read http");
    parse_response(&raw)
}

/// An offer as a browser makes it, but with a codec we do not take only
/// (VP8 video): parses, and has nothing for us.
const VP8_ONLY_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=msid-semantic: WMS\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:abcd\r\n\
a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 7A:D7:C9:33:94:8D:8A:BA:10:EB:93:21:7C:B4:91:6D:40:F7:56:07:CA:9D:42:D3:80:32:2D:10:D9:AC:8E:15\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=sendonly\r\n\
a=rtcp-mux\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=ssrc:1111 cname:x\r\n";

#[test]
fn whip_signalling_refuses_what_it_cannot_take() {
    let server = Server::start(&[]);
    let key = server.create_stream("cam", "");
    let other_key = server.create_stream("other", "");
    let sdp = Some("application/sdp");
    let path = "/whip/cam";
    // No key, a wrong key, another stream's key.
    let r = whip_send(server.http, "POST", path, None, sdp, VP8_ONLY_OFFER);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = whip_send(server.http, "POST", path, Some("nope"), sdp, VP8_ONLY_OFFER);
    assert_eq!(r.status, 401, "{}", r.text());
    let r = whip_send(
        server.http,
        "POST",
        path,
        Some(&other_key),
        sdp,
        VP8_ONLY_OFFER,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("not cam"), "{}", r.text());
    // Not SDP; not an offer; an offer with nothing for us.
    let r = whip_send(
        server.http,
        "POST",
        path,
        Some(&key),
        Some("application/json"),
        "{}",
    );
    assert_eq!(r.status, 415, "{}", r.text());
    let r = whip_send(server.http, "POST", path, Some(&key), sdp, "hello");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = whip_send(server.http, "POST", path, Some(&key), sdp, VP8_ONLY_OFFER);
    assert_eq!(r.status, 400, "{}", r.text());
    // A session that is not there; trickle; CORS preflight.
    let r = whip_send(server.http, "DELETE", "/whip/cam/0123", None, None, "");
    assert_eq!(r.status, 404, "{}", r.text());
    let r = whip_send(
        server.http,
        "PATCH",
        "/whip/cam/0123",
        None,
        Some("application/trickle-ice-sdpfrag"),
        "a=x",
    );
    assert_eq!(r.status, 405, "{}", r.text());
    let r = whip_send(server.http, "OPTIONS", path, None, None, "");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(
        r.header("access-control-allow-headers")
            .is_some_and(|h| h.contains("Authorization")),
        "{:?}",
        r.headers
    );
    // Nothing was published.
    assert_eq!(server.get("/live/cam/index.m3u8").status, 404);
}

/// Runs `tests/browser/whip.mjs` (Chromium) publishing `seconds`.
fn chromium_publish(server: &Server, stream: &str, key: &str, seconds: u32) -> std::process::Child {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/whip.mjs");
    Command::new("node")
        .arg(&script)
        .args([
            "--url",
            &server.url(&format!("/whip/{stream}")),
            "--key",
            key,
        ])
        .args(["--seconds", &seconds.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (tests/browser)")
}

#[test]
#[ignore = "needs Chromium and tests/browser/node_modules: run by `make browser-hls-js`"]
fn chromium_publishes_over_whip_and_hls_plays_it() {
    let server = Server::start(&[]);
    let key = server.create_stream("cam", "");
    let browser = chromium_publish(&server, "cam", &key, 14);
    wait_segments(&server, "cam", 3);
    // Segments of about the 2 s target: the browser sends keyframes only
    // when asked, and is asked once a segment.
    let media = server.get("/live/cam/mono.m3u8").text();
    let segments = parse_media_playlist(&media);
    let durations: Vec<f64> = segments.iter().map(|s| s.duration).collect();
    eprintln!("segment durations: {durations:?}");
    assert!(durations.iter().all(|&d| d <= 2.6), "{media}");
    // The session in /metrics (this host needs no token).
    let metrics = server.get("/metrics").text();
    let connected = metrics
        .lines()
        .find(|l| l.starts_with("ugc_whip_connected{") && l.contains("stream=\"live/cam\""));
    assert!(
        connected.is_some_and(|l| l.ends_with(" 1")),
        "{metrics}\nlog:\n{}",
        server.log()
    );
    assert!(
        metrics.contains("ugc_whip_video_frames_total{"),
        "{metrics}"
    );
    // Both tracks, and they decode.
    plays_h264_and_opus(&server, "cam", "640,360");
    let done = browser.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&done.stdout).to_string();
    eprintln!("whip.mjs: {report}");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(report.contains("\"post\":201"), "{report}");
    assert!(report.contains("\"location\":\"/whip/cam/"), "{report}");
    assert!(
        report.contains("video/H264") && report.contains("audio/opus"),
        "{report}"
    );
    assert!(report.contains("\"deleted\":200"), "{report}");
    assert!(report_number(&report, "plis") >= 3.0, "{report}");
    assert!(report.contains("pc:connected"), "{report}");
    // Connected throughout: ICE never dropped before the DELETE.
    assert!(
        !report.contains("disconnected") && !report.contains("failed"),
        "{report}"
    );
    // The DELETE ended the publish.
    wait_until(Duration::from_secs(10), || {
        server.log().contains("whip publish ended")
    })
    .unwrap_or_else(|| panic!("ended; log:\n{}", server.log()));
}

/// Waits for `n` segments of `stream`'s first variant.
fn wait_segments(server: &Server, stream: &str, n: usize) {
    wait_until(Duration::from_secs(40), || {
        let r = server.get(&format!("/live/{stream}/index.m3u8"));
        if r.status != 200 {
            return false;
        }
        let media = r
            .text()
            .lines()
            .find(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.to_string());
        media.is_some_and(|m| {
            let p = server.get(&format!("/live/{stream}/{m}"));
            p.status == 200 && parse_media_playlist(&p.text()).len() >= n
        })
    })
    .unwrap_or_else(|| panic!("{n} segments of {stream}; log:\n{}", server.log()));
}

/// Whether `stream`'s HLS has H.264 at `size` and Opus, and 3 s of it
/// decode without an error.
fn plays_h264_and_opus(server: &Server, stream: &str, size: &str) {
    let url = server.url(&format!("/live/{stream}/index.m3u8"));
    let probe = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
        ])
        .args(["-of", "csv=p=0", &url]));
    let streams = String::from_utf8_lossy(&probe.stdout).to_string();
    assert!(
        streams.contains(&format!("h264,{size}")) && streams.contains("opus"),
        "{streams}\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let out = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i", &url])
        .args(["-t", "3", "-enc_time_base", "-1", "-f", "null", "-"]));
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stderr).trim().is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// FFmpeg 9's `whip` muxer (a second WebRTC stack: its own ICE, DTLS and
/// packetizer; no trickle) publishes x264 baseline + libopus; the stream
/// plays over HLS. A second publish with the same key takes the stream
/// over, as a second RTMP publisher would, and the stream goes on.
#[test]
fn ffmpeg_whip_muxer_publishes_and_a_second_one_takes_over() {
    let server = Server::start(&[]);
    let key = server.create_stream("ff", "");
    let publish = |seconds: u32, tone: u32| {
        Proc(
            Command::new(ffmpeg9())
                .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
                .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
                .args(["-f", "lavfi", "-i"])
                .arg(format!("sine=frequency={tone}:sample_rate=48000"))
                .args(["-t", &seconds.to_string()])
                .args([
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-tune",
                    "zerolatency",
                ])
                .args(["-profile:v", "baseline", "-g", "30", "-bf", "0"])
                .args(["-c:a", "libopus", "-ar", "48000", "-ac", "2"])
                .args(["-f", "whip", "-authorization", &key])
                .arg(server.url("/whip/ff"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("ffmpeg 9 (imageio-ffmpeg)"),
        )
    };
    let mut first = publish(30, 440);
    wait_segments(&server, "ff", 3);
    plays_h264_and_opus(&server, "ff", "640,360");
    // The same key again: the newcomer takes over, the first is closed.
    let started = server.log().matches("whip publish started").count();
    let mut second = publish(30, 660);
    wait_until(Duration::from_secs(15), || {
        server.log().matches("whip publish started").count() > started
            && server.log().contains("whip publish ended")
    })
    .unwrap_or_else(|| panic!("taken over; log:\n{}", server.log()));
    let newest = || {
        let r = server.get("/live/ff/mono.m3u8");
        parse_media_playlist(&r.text()).last().map_or(0, |s| s.msn)
    };
    let before = newest();
    wait_until(Duration::from_secs(15), || newest() > before + 1)
        .unwrap_or_else(|| panic!("the stream goes on; log:\n{}", server.log()));
    plays_h264_and_opus(&server, "ff", "640,360");
    assert!(second.running(), "the newcomer publishes");
    first.kill();
    second.kill();
}
