//! End to end: real ffmpeg publishes over RTMP to the real ugc-server binary;
//! real ffprobe/ffmpeg read the HLS it serves.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// Segment target of the server under test (its default).
const SEGMENT_S: f64 = 2.0;

fn media_playlist(server: &Server, stream: &str) -> Option<String> {
    let r = server.get(&format!("/{stream}/mono.m3u8"));
    (r.status == 200).then(|| r.text())
}

fn segments(server: &Server, stream: &str) -> Vec<PlaylistSegment> {
    media_playlist(server, stream)
        .map(|t| parse_media_playlist(&t))
        .unwrap_or_default()
}

/// Checks one served segment: decodes cleanly, starts with a keyframe, audio
/// and video start within 100 ms of each other.
fn check_segment(path: &Path, expect_width: u32) {
    let errors = decode_errors(path);
    assert!(errors.trim().is_empty(), "{}: {errors}", path.display());
    let keys = video_keyframes(path);
    assert!(!keys.is_empty(), "{}: no video frames", path.display());
    assert!(
        keys[0],
        "{}: does not start with a keyframe",
        path.display()
    );
    let streams = probe_streams(path);
    let v = streams.iter().find(|s| s.0 == "video").expect("video");
    let a = streams.iter().find(|s| s.0 == "audio").expect("audio");
    assert_eq!(v.2, expect_width, "{}: width", path.display());
    assert!(
        (v.1 - a.1).abs() <= 0.100,
        "{}: video starts at {} s, audio at {} s",
        path.display(),
        v.1,
        a.1
    );
}

/// Decode times of the video packets of one segment, in seconds.
fn video_dts(path: &Path) -> Vec<f64> {
    let out = run(Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries"])
        .args(["packet=dts_time", "-of", "csv=p=0"])
        .arg(path));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

#[test]
fn ffmpeg_1080p_publish_plays_over_hls() {
    let clip = test_clip(1920, 1080, 14, 4000);
    // The segments of one publisher, checked after it ended: no slate
    // after it (e2e_failover tests that).
    let server = Server::start(&["--fallback", "off"]);
    let work = TempDir::new("play");
    let started = Instant::now();
    let key = server.create_stream("e2e", "");
    let mut publisher = publish_file(&clip, &server.rtmp_url(&key));

    // The playlist appears within two segment durations.
    let appeared = wait_until(Duration::from_secs(10), || {
        !segments(&server, "live/e2e").is_empty()
    })
    .expect("playlist with a segment");
    let since_publish = started.elapsed();
    assert!(
        since_publish.as_secs_f64() <= 2.0 * SEGMENT_S + 0.5,
        "first segment after {since_publish:?} (polling took {appeared:?})"
    );

    // Multivariant playlist: one variant with CODECS, RESOLUTION, BANDWIDTH, FRAME-RATE.
    let master = server.get("/live/e2e/index.m3u8");
    assert_eq!(master.status, 200);
    assert_eq!(
        master.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    let text = master.text();
    let inf = text
        .lines()
        .find(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .expect("variant");
    assert!(inf.contains("CODECS=\"avc1.64"), "{inf}");
    assert!(inf.contains("mp4a.40.2"), "{inf}");
    assert!(inf.contains("RESOLUTION=1920x1080"), "{inf}");
    assert!(inf.contains("FRAME-RATE=30.000"), "{inf}");
    assert!(inf.contains("BANDWIDTH="), "{inf}");
    assert!(master.header("access-control-allow-origin").is_some());

    // A live reader: ffmpeg reads the multivariant playlist for 4 s.
    let out = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(server.url("/live/e2e/index.m3u8"))
        .args(["-t", "4", "-enc_time_base", "-1", "-f", "null", "-"]));
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stderr).trim().is_empty(),
        "ffmpeg as HLS reader: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Wait for the whole clip (14 s) to be published, then check every segment.
    assert!(wait_until(Duration::from_secs(30), || !publisher.running()).is_some());
    let segs = segments(&server, "live/e2e");
    assert!(segs.len() >= 4, "{segs:?}");
    for seg in &segs {
        assert!(
            seg.duration <= SEGMENT_S + 0.1,
            "segment {} lasts {} s (GOP is 2 s)",
            seg.msn,
            seg.duration
        );
        let path = fetch_fmp4_segment(&server, "live/e2e", seg, work.path());
        check_segment(&path, 1920);
    }

    // Cache headers: segments immutable, playlists short-lived.
    let seg = server.get(&format!("/live/e2e/{}", segs[0].uri));
    assert!(
        seg.header("cache-control")
            .is_some_and(|v| v.contains("immutable")),
        "{:?}",
        seg.headers
    );
    let pl = server.get("/live/e2e/mono.m3u8");
    let cc = pl.header("cache-control").unwrap_or_default().to_string();
    // A browser never reuses a live playlist from its own cache.
    assert!(cc.contains("no-cache") || cc.contains("max-age=0"), "{cc}");

    // The MPEG-TS variant of the same segments decodes too.
    let ts = server.get("/live/e2e/mono-ts.m3u8");
    assert_eq!(ts.status, 200);
    let ts_segs = parse_media_playlist(&ts.text());
    assert_eq!(ts_segs.len(), segs.len());
    let first = &ts_segs[ts_segs.len() - 1];
    let body = server.get(&format!("/live/e2e/{}", first.uri));
    assert_eq!(body.header("content-type"), Some("video/mp2t"));
    let tsfile = work.path().join("seg.ts");
    std::fs::write(&tsfile, &body.body).unwrap();
    let errors = decode_errors(&tsfile);
    assert!(errors.trim().is_empty(), "TS segment: {errors}");
    assert!(video_keyframes(&tsfile)[0]);

    // Played back to back, the TS segments are one continuous transport
    // stream: every PID's continuity counter goes on across the boundaries
    // (ISO/IEC 13818-1 2.4.3.3), whichever order they were first asked for
    // in (each is muxed on its first request). URIs come from the playlist.
    assert!(ts_segs.len() >= 3, "{ts_segs:?}");
    assert!(!ts_segs.iter().any(|s| s.discontinuity), "{ts_segs:?}");
    let mut joined = Vec::new();
    for seg in &ts_segs {
        let body = server.get(&format!("/live/e2e/{}", seg.uri));
        assert_eq!(body.status, 200, "{}", seg.uri);
        joined.push(body.body);
    }
    assert_ts_continuity(&joined);
    let joined_file = work.path().join("joined.ts");
    std::fs::write(&joined_file, joined.concat()).unwrap();
    let complaints = ts_continuity_complaints(&joined_file);
    assert!(
        complaints.is_empty(),
        "ffmpeg on the joined segments:\n{complaints}"
    );
}

/// Checks with a parser of its own that in the concatenation of `segments`
/// every payload-carrying packet's `continuity_counter` is its PID's previous
/// one plus 1 (mod 16), across segment boundaries too.
fn assert_ts_continuity(segments: &[Vec<u8>]) {
    let mut last: std::collections::HashMap<u16, (u8, usize)> = Default::default();
    let mut packets = 0;
    for (i, seg) in segments.iter().enumerate() {
        assert_eq!(seg.len() % 188, 0, "segment {i}: {} bytes", seg.len());
        for (n, p) in seg.chunks(188).enumerate() {
            assert_eq!(p[0], 0x47, "segment {i} packet {n}: sync byte");
            let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
            let has_payload = p[3] & 0x10 != 0;
            let cc = p[3] & 0x0f;
            if pid == 0x1fff || !has_payload {
                continue;
            }
            if let Some((prev, seg_of_prev)) = last.get(&pid) {
                assert_eq!(
                    cc,
                    (prev + 1) & 0x0f,
                    "PID {pid:#x}: segment {i} packet {n} follows CC {prev} (segment {seg_of_prev})"
                );
            }
            last.insert(pid, (cc, i));
            packets += 1;
        }
    }
    // PAT, PMT, video and audio.
    assert!(last.len() >= 4 && packets > 100, "{last:?}");
}

/// What ffmpeg says about continuity while it reads `file` (its demuxer logs
/// "Continuity check failed" at debug level and "Packet corrupt" at warning
/// level); empty when nothing.
fn ts_continuity_complaints(file: &Path) -> String {
    let out = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "debug", "-i"])
        .arg(file)
        .args(["-map", "0", "-c", "copy", "-f", "null", "-"]));
    assert!(out.status.success(), "ffmpeg failed on {}", file.display());
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("continuity") || l.contains("corrupt")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn two_publishers_stay_independent() {
    // On the shared runtime, woken for every socket event: the other tests
    // cover the default, paced one (one thread, at most a wakeup per tick).
    let server = Server::start(&["--ingest-tick-ms", "0"]);
    let work = TempDir::new("two");
    let mut a = publish_live(
        640,
        360,
        &server.rtmp_url(&server.create_stream("alpha", "")),
    );
    let _b = publish_live(
        320,
        240,
        &server.rtmp_url(&server.create_stream("beta", "")),
    );
    let both = wait_until(Duration::from_secs(15), || {
        segments(&server, "live/alpha").len() >= 2 && segments(&server, "live/beta").len() >= 2
    });
    assert!(both.is_some(), "both streams segment");
    for (stream, width) in [("live/alpha", 640), ("live/beta", 320)] {
        let segs = segments(&server, stream);
        let path = fetch_fmp4_segment(&server, stream, segs.last().unwrap(), work.path());
        check_segment(&path, width);
    }
    // Stopping one publisher does not stop the other.
    a.kill();
    let before = segments(&server, "live/beta").last().unwrap().msn;
    assert!(
        wait_until(Duration::from_secs(8), || {
            segments(&server, "live/beta").last().unwrap().msn >= before + 2
        })
        .is_some(),
        "beta keeps going after alpha stopped"
    );
}

/// The publisher dies mid-GOP and comes back with the same encoder
/// settings: the stream goes on on its timeline, with no discontinuity
/// (nothing for a player to reset: hls.js realigns a discontinuity onto
/// the playlist's durations and opens a hole in its buffer), and every
/// segment decodes.
#[test]
fn publisher_reconnecting_mid_gop_continues_the_timeline() {
    let clip = test_clip(1920, 1080, 14, 4000);
    // No slate between the two sessions (e2e_failover tests that).
    let server = Server::start(&["--fallback", "off"]);
    let work = TempDir::new("reconnect");
    let key = server.create_stream("re", "");
    let mut first = publish_file(&clip, &server.rtmp_url(&key));
    assert!(
        wait_until(Duration::from_secs(10), || segments(&server, "live/re")
            .len()
            >= 2)
        .is_some()
    );
    // Kill the publisher in the middle of a GOP (GOPs are 2 s).
    std::thread::sleep(Duration::from_millis(1000));
    first.kill();
    std::thread::sleep(Duration::from_millis(500));
    let before = segments(&server, "live/re").last().map_or(0, |s| s.msn);
    let mut second = publish_file(&clip, &server.rtmp_url(&key));
    let continued = wait_until(Duration::from_secs(15), || {
        segments(&server, "live/re")
            .last()
            .is_some_and(|s| s.msn >= before + 2)
    });
    second.kill();
    assert!(
        continued.is_some(),
        "no new segments after the reconnect: {}",
        media_playlist(&server, "live/re").unwrap_or_default()
    );
    let segs = segments(&server, "live/re");
    assert!(
        segs.iter().all(|s| !s.discontinuity),
        "{}",
        media_playlist(&server, "live/re").unwrap_or_default()
    );
    let mut msns = HashSet::new();
    let mut last_dts = f64::MIN;
    for seg in &segs {
        assert!(msns.insert(seg.msn));
        let path = fetch_fmp4_segment(&server, "live/re", seg, work.path());
        check_segment(&path, 1920);
        // The second session continues the first one's timeline.
        let dts = video_dts(&path);
        assert!(
            dts.first().is_some_and(|d| *d > last_dts),
            "segment {} starts at {:?}, the last one ended at {last_dts}",
            seg.msn,
            dts.first()
        );
        last_dts = dts.last().copied().unwrap_or(last_dts);
    }
}

#[test]
fn bad_clients_do_not_hurt_the_server_or_other_streams() {
    let server = Server::start(&[]);
    let good = publish_live(
        320,
        240,
        &server.rtmp_url(&server.create_stream("good", "")),
    );
    assert!(
        wait_until(Duration::from_secs(15), || !segments(&server, "live/good")
            .is_empty())
        .is_some()
    );

    let send = |bytes: &[u8]| {
        if let Ok(mut s) = TcpStream::connect(server.rtmp) {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = s.write_all(bytes);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut s, &mut sink);
        }
    };
    // Garbage, a truncated handshake, a bad version byte.
    send(&[0xde; 4096]);
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0u8; 700]);
    send(&c0c1);
    send(&[0x06; 1537]);

    // Publishers with hostile or unknown keys: refused, not written anywhere.
    let long_key = "k".repeat(5000);
    for key in [
        long_key.as_str(),
        "..",
        "a..b/../../etc",
        "good",
        "no-such-key",
    ] {
        let out = run(Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-nostdin", "-f", "lavfi"])
            .args(["-i", "testsrc2=size=160x120:rate=10", "-t", "1"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-f", "flv"])
            .arg(format!("rtmp://{}/live/{key}", server.rtmp)));
        assert!(!out.status.success(), "publish to {key:.40} was accepted");
    }

    // HTTP traversal attempts.
    for path in [
        "/live/..%2f..%2fetc%2fpasswd/index.m3u8",
        "/live/../../etc/passwd",
        "/live/good/../../../etc/passwd",
        "/live/good/seg-99999999999999999999999.m4s",
        "/live/good/seg-abc.m4s",
        "/live/good/init-x.mp4",
    ] {
        let r = server.get(path);
        assert!(
            (400..500).contains(&r.status),
            "{path}: {} {}",
            r.status,
            r.text()
        );
    }

    // Still serving, the good stream keeps producing segments.
    let mut server = server;
    assert!(server.alive());
    let last = segments(&server, "live/good").last().unwrap().msn;
    assert!(
        wait_until(Duration::from_secs(8), || {
            segments(&server, "live/good").last().unwrap().msn > last
        })
        .is_some()
    );
    drop(good);
    // Nothing was written outside the data dir (the server's cwd is empty).
    let written: Vec<_> = std::fs::read_dir(server.cwd.path()).unwrap().collect();
    assert!(written.is_empty(), "server wrote {written:?} into its cwd");
}

#[test]
fn wrong_keys_are_refused_and_rotation_drops_the_publisher() {
    let server = Server::start(&[]);
    let key = server.create_stream("rot", "");
    let mut publisher = publish_live(320, 240, &server.rtmp_url(&key));
    assert!(
        wait_until(Duration::from_secs(15), || !segments(&server, "live/rot")
            .is_empty())
        .is_some()
    );
    let r = http_send(
        server.http,
        "POST",
        "/api/v1/streams/rot/key",
        Some(ADMIN_TOKEN),
        Some("{}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let new_key = json_str(&r.text(), "key").unwrap();
    assert_ne!(new_key, key);
    // The live publisher on the old key is dropped at once.
    assert!(
        wait_until(Duration::from_secs(5), || !publisher.running()).is_some(),
        "publisher on the rotated key still connected"
    );
    // The old key is refused, and ffmpeg prints why (the `onStatus`
    // description: "Server error: <reason>"); so is an unknown key.
    let publish_1s = |key: &str| {
        run(Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-nostdin", "-f", "lavfi"])
            .args(["-i", "testsrc2=size=160x120:rate=10", "-t", "1"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-f", "flv"])
            .arg(server.rtmp_url(key)))
    };
    for (key, reason) in [
        (key.as_str(), "stream key was rotated or deleted"),
        ("not-a-key", "unknown stream key"),
    ] {
        let out = publish_1s(key);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{reason}: accepted");
        assert!(
            stderr.contains(&format!("Server error: {reason}")),
            "{reason}: ffmpeg said {stderr}"
        );
        assert!(!stderr.contains("already exists"), "{stderr}");
    }
    let out = publish_1s(&new_key);
    assert!(
        out.status.success(),
        "new key refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn private_stream_needs_a_valid_token_on_every_request() {
    let server = Server::start(&[]);
    let key = server.create_stream("secret", "\"private\": true");
    let _publisher = publish_live(320, 240, &server.rtmp_url(&key));
    let token = server.play_token("secret", "{\"ttl_s\": 600}");
    let with = |path: &str| server.get(&format!("/live/secret/{path}?token={token}"));
    assert!(
        wait_until(Duration::from_secs(15), || with("mono.m3u8").status == 200).is_some(),
        "playlist with a valid token"
    );
    let playlist = with("mono.m3u8").text();
    // URIs in the playlist carry the token, so players keep sending it.
    let seg_uri = playlist
        .lines()
        .find(|l| l.starts_with("seg-"))
        .expect("a segment")
        .to_string();
    assert!(seg_uri.contains(&format!("token={token}")), "{seg_uri}");
    assert_eq!(server.get(&format!("/live/secret/{seg_uri}")).status, 200);
    assert!(
        with("index.m3u8")
            .text()
            .contains(&format!("mono.m3u8?token={token}"))
    );

    let seg = seg_uri.split('?').next().unwrap().to_string();
    let expired = server.play_token("secret", "{\"ttl_s\": 1}");
    let other_ip = server.play_token("secret", "{\"bind_ip\": \"203.0.113.9\"}");
    let mut tampered = token.clone().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let init = init_uri(&playlist).expect("an init segment");
    for path in ["mono.m3u8", "index.m3u8", seg.as_str(), init.as_str()] {
        assert_eq!(
            server.get(&format!("/live/secret/{path}")).status,
            403,
            "{path} without token"
        );
        for (what, t) in [
            ("expired", &expired),
            ("other ip", &other_ip),
            ("tampered", &tampered),
        ] {
            let r = server.get(&format!("/live/secret/{path}?token={t}"));
            assert_eq!(r.status, 403, "{path} with {what} token");
        }
    }
}

/// FFmpeg 9 publishing 640x360 libx265 + AAC over Enhanced RTMP for 12 s at
/// `rate`, without FLV metadata (so no `framerate` there), with `x265`
/// parameters added.
fn publish_hevc(server: &Server, key: &str, rate: &str, x265: &str) -> Proc {
    Proc(
        Command::new(ffmpeg9())
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size=640x360:rate={rate}"))
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-c:v", "libx265", "-preset", "ultrafast", "-g", "30"])
            .args([
                "-x265-params",
                &format!("log-level=none:keyint=30:min-keyint=30:scenecut=0{x265}"),
            ])
            .args([
                "-c:a",
                "aac",
                "-t",
                "12",
                "-flvflags",
                "no_metadata",
                "-f",
                "flv",
            ])
            .arg(server.rtmp_url(key))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start ffmpeg 9"),
    )
}

#[test]
fn enhanced_rtmp_hevc_from_ffmpeg9_plays_over_hls() {
    let server = Server::start(&[]);
    let work = TempDir::new("hevc");
    let key = server.create_stream("hevc", "");
    // The frame rate is in the SPS's VUI timing info only (x265 writes
    // none in the VPS, and no FLV metadata is sent).
    let _publisher = publish_hevc(&server, &key, "30", "");
    // A second stream whose encoder writes no timing info at all: its
    // frame rate is measured on the segments.
    let key = server.create_stream("hevcnotiming", "");
    let _untimed = publish_hevc(&server, &key, "25", ":vui-timing-info=0");
    assert!(
        wait_until(Duration::from_secs(20), || segments(&server, "live/hevc")
            .len()
            >= 2
            && segments(&server, "live/hevcnotiming").len() >= 2)
        .is_some(),
        "HEVC stream segments"
    );
    let master = server.get("/live/hevc/index.m3u8").text();
    assert!(master.contains("CODECS=\"hvc1."), "{master}");
    assert!(master.contains("RESOLUTION=640x360"), "{master}");
    assert!(master.contains(",FRAME-RATE=30.000\n"), "{master}");
    let master = server.get("/live/hevcnotiming/index.m3u8").text();
    assert!(master.contains(",FRAME-RATE=25.000\n"), "{master}");
    for seg in segments(&server, "live/hevc").iter().take(2) {
        let path = fetch_fmp4_segment(&server, "live/hevc", seg, work.path());
        check_segment(&path, 640);
    }
}

/// One Prometheus sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// `/metrics` parsed by prometheus_client (tests/metrics/parse.py): the
/// samples as (name, labels, value).
fn scrape_metrics(server: &Server, headers: &[(&str, &str)]) -> Vec<Sample> {
    let r = http_get_headers(server.http, "/metrics", headers);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/metrics/parse.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(&r.body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition ({}; scripts/install-deps.sh installs it):\n{}",
        String::from_utf8_lossy(&out.stderr),
        r.text()
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let labels = v[1]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            (
                v[0].as_str().unwrap().to_string(),
                labels,
                v[2].as_f64().unwrap(),
            )
        })
        .collect()
}

fn metric(samples: &[Sample], name: &str, stream: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(n, labels, _)| {
            n == name && labels.iter().any(|(k, v)| k == "stream" && v == stream)
        })
        .map(|s| s.2)
}

/// `/metrics` is an exposition Prometheus' reference client parses, whose
/// Hub counters follow a live publisher. It names streams and publishers,
/// so a client that is not on this host (here: behind a trusted proxy)
/// needs the admin token.
#[test]
fn metrics_follow_a_live_stream_and_want_the_admin_token_from_afar() {
    let work = TempDir::new("metrics");
    let config = work.path().join("ugc.toml");
    std::fs::write(&config, "trusted_proxies = [\"127.0.0.1\"]\n").unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let key = server.create_stream("gauges", "");
    let mut publisher = publish_live(320, 240, &server.rtmp_url(&key));
    wait_until(Duration::from_secs(20), || {
        !segments(&server, "live/gauges").is_empty()
    })
    .expect("the stream is packaged");

    let first = scrape_metrics(&server, &[]);
    let info = first.iter().find(|s| s.0 == "ugc_info").expect("ugc_info");
    assert_eq!(info.2, 1.0);
    assert!(first.iter().any(|s| s.0 == "ugc_streams" && s.2 >= 1.0));
    assert_eq!(
        metric(&first, "ugc_stream_publishing", "live/gauges"),
        Some(1.0)
    );
    assert_eq!(
        metric(&first, "ugc_stream_publishers_total", "live/gauges"),
        Some(1.0)
    );
    // The packager and the archive read the stream.
    assert!(metric(&first, "ugc_stream_readers", "live/gauges").unwrap() >= 1.0);
    let frames = metric(&first, "ugc_stream_frames_in_total", "live/gauges").unwrap();
    let bytes = metric(&first, "ugc_stream_bytes_in_total", "live/gauges").unwrap();
    assert!(
        frames > 0.0 && bytes > frames,
        "{frames} frames, {bytes} bytes"
    );
    // Every family is there, with samples or not.
    let text = http_get(server.http, "/metrics").text();
    for family in [
        "ugc_restream_up",
        "ugc_srt_rx_packets_total",
        "ugc_transcode_frames_in_total",
        "ugc_dvr_segments_written_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }

    std::thread::sleep(Duration::from_secs(2));
    let later = scrape_metrics(&server, &[]);
    let frames_later = metric(&later, "ugc_stream_frames_in_total", "live/gauges").unwrap();
    // ~30 video + ~47 audio frames a second.
    assert!(frames_later >= frames + 100.0, "{frames} -> {frames_later}");

    // From afar (a trusted proxy forwards a public client): the admin token.
    let remote = [("X-Forwarded-For", "203.0.113.9")];
    let r = http_get_headers(server.http, "/metrics", &remote);
    assert_eq!(r.status, 401);
    assert!(!r.text().contains("gauges"));
    let creator = format!("Bearer {key}");
    let r = http_get_headers(
        server.http,
        "/metrics",
        &[remote[0], ("Authorization", &creator)],
    );
    assert_eq!(r.status, 401, "a stream key is not an admin token");
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let with_token = scrape_metrics(&server, &[remote[0], ("Authorization", &admin)]);
    assert!(metric(&with_token, "ugc_stream_frames_in_total", "live/gauges").is_some());

    publisher.kill();
    wait_until(Duration::from_secs(10), || {
        metric(
            &scrape_metrics(&server, &[]),
            "ugc_stream_publishing",
            "live/gauges",
        ) == Some(0.0)
    })
    .expect("publishing drops to 0 when the publisher leaves");
}

/// The origin's low-latency signal reaches the ingest of the real server:
/// a stream nobody plays at low latency is batched (`ugc_stream_low_latency`
/// 0); plain playlist and segment fetches leave it so, and one LL-HLS part
/// request switches it (1).
#[test]
fn a_low_latency_viewer_switches_its_stream_out_of_read_batching() {
    let server = Server::start(&[]);
    let key = server.create_stream("lowlat", "");
    let mut publisher = publish_live(320, 240, &server.rtmp_url(&key));
    wait_until(Duration::from_secs(20), || {
        !segments(&server, "live/lowlat").is_empty()
    })
    .expect("the stream is packaged");
    let low_latency = || {
        metric(
            &scrape_metrics(&server, &[]),
            "ugc_stream_low_latency",
            "live/lowlat",
        )
    };
    assert_eq!(low_latency(), Some(0.0));
    let playlist = media_playlist(&server, "live/lowlat").expect("playlist");
    let seg = &segments(&server, "live/lowlat")[0];
    assert_eq!(server.get(&format!("/live/lowlat/{}", seg.uri)).status, 200);
    assert_eq!(low_latency(), Some(0.0), "a classic viewer switched it");
    let part = playlist
        .lines()
        .rev()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .find_map(|l| l.split("URI=\"").nth(1)?.split('"').next())
        .expect("the default server has LL-HLS parts");
    assert_eq!(server.get(&format!("/live/lowlat/{part}")).status, 200);
    assert_eq!(low_latency(), Some(1.0));
    publisher.kill();
}
