//! End to end: WHIP publish (RFC 9725) and WHEP play. Headless Chromium
//! with its fake camera and microphone publishes H.264 + Opus
//! (`tests/browser/whip.mjs`); the stream plays over HLS (ffmpeg decodes it
//! without an error, ffprobe sees both tracks) and a DELETE of the session
//! URL ends it. Chromium plays over WHEP what it publishes over WHIP
//! (`tests/browser/whep.mjs`, glass-to-glass delay read off the pictures)
//! and what ffmpeg publishes over RTMP. The signalling's refusals (key,
//! token, content type, offer, methods, CORS) are checked without a
//! browser.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

/// An offer taken: 201 with the SDP answer (ICE-lite, H.264), the session
/// URL (128 bits), and the configured STUN/TURN servers as one `Link`
/// header each (RFC 9725 4.6); DELETE of the session URL ends it, once.
#[test]
fn whip_signalling_answers_with_the_session_url_and_ice_servers() {
    let turn = "turn:alice:s3cret@turn.example.net:3478?transport=udp";
    let servers = format!("stun:stun.example.net:3478,{turn}");
    let server = Server::start(&["--whip-ice-server", &servers]);
    let key = server.create_stream("cam", "");
    let r = whip_send(
        server.http,
        "POST",
        "/whip/cam",
        Some(&key),
        Some("application/sdp"),
        &h264_offer(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    let answer = r.text();
    assert!(
        answer.contains("a=ice-lite") && answer.contains("H264/90000"),
        "{answer}"
    );
    let location = r.header("location").unwrap().to_owned();
    let id = location.strip_prefix("/whip/cam/").unwrap();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{location}"
    );
    let links: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("link"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        links,
        [
            "<stun:stun.example.net:3478>; rel=\"ice-server\"",
            "<turn:turn.example.net:3478?transport=udp>; rel=\"ice-server\"; \
             username=\"alice\"; credential=\"s3cret\"; credential-type=\"password\"",
        ]
    );
    assert!(
        r.header("access-control-expose-headers")
            .is_some_and(|h| h.contains("Link")),
        "{:?}",
        r.headers
    );
    let r = whip_send(server.http, "DELETE", &location, None, None, "");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = whip_send(server.http, "DELETE", &location, None, None, "");
    assert_eq!(r.status, 404, "{}", r.text());
}

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

/// The report of a finished `whip.mjs` whose offer was taken (201).
fn published(browser: std::process::Child) -> String {
    let done = browser.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&done.stdout).to_string();
    eprintln!("whip.mjs: {report}");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(report.contains("\"post\":201"), "{report}");
    report
}

/// Runs `tests/browser/whip.mjs` (Chromium) publishing `seconds`, with
/// `extra` arguments.
fn chromium_publish(
    server: &Server,
    stream: &str,
    key: &str,
    seconds: u32,
    extra: &[&str],
) -> std::process::Child {
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
        .args(extra)
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
    let browser = chromium_publish(&server, "cam", &key, 14, &[]);
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
    plays_h264_and(&server, "cam", "640,360", "aac");
    let report = published(browser);
    assert!(report.contains("\"location\":\"/whip/cam/"), "{report}");
    assert!(
        report.contains("video/H264") && report.contains("audio/opus"),
        "{report}"
    );
    assert!(report.contains("\"deleted\":200"), "{report}");
    // UDP, though the answer offers ICE-TCP too (of lower priority).
    assert!(
        report.contains("\"transport\":{\"protocol\":\"udp\""),
        "{report}"
    );
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

/// AV1 over WHIP (#18: "HEVC/AV1 when offered and configured"), with
/// `--whip-av1 on`: Chromium's AV1 encoder publishes (the page prefers AV1
/// with `setCodecPreferences`); the HLS carries AV1 in CMAF (ffprobe: av1
/// at 640x360, the multivariant playlist's `CODECS` an `av01` string from
/// the sequence header) with the Opus made AAC, and decodes without an
/// error. (Without the setting the answer has no AV1:
/// `whip_session::an_av1_publisher_is_taken_when_the_setup_says_so`.)
#[test]
#[ignore = "needs Chromium and tests/browser/node_modules: run by `make browser-hls-js`"]
fn chromium_publishes_av1_over_whip_when_it_is_on() {
    let server = Server::start(&["--whip-av1", "on"]);
    let key = server.create_stream("av1", "");
    let browser = chromium_publish(&server, "av1", &key, 12, &["--codec", "AV1"]);
    wait_segments(&server, "av1", 3);
    let multivariant = server.get("/live/av1/index.m3u8").text();
    assert!(multivariant.contains("av01.0."), "{multivariant}");
    plays(&server, "av1", "av1,640,360", "aac");
    let report = published(browser);
    assert!(report.contains("video/AV1"), "{report}");
    assert!(report.contains("\"deleted\":200"), "{report}");
}

/// Lip sync from a browser to HLS: Chromium's camera and microphone play
/// a file that flashes white and beeps (1 kHz) together for 100 ms every
/// second; in the HLS, ffmpeg finds where each flash and each beep starts,
/// and every flash has its beep within 100 ms (the goal), once the sender
/// reports are in (the audio is moved onto the video then: a step, perhaps
/// one refinement).
#[test]
#[ignore = "needs Chromium and tests/browser/node_modules: run by `make browser-hls-js`"]
fn chromium_lip_sync_holds_through_whip_to_hls() {
    let work = TempDir::new("whip-sync");
    let (video, audio) = (work.path().join("flash.y4m"), work.path().join("beep.wav"));
    let made = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("color=c=black:s=320x180:r=30:d=4,geq=lum='if(lt(mod(T\\,1)\\,0.1)\\,235\\,16)':cb=128:cr=128")
        .args(["-pix_fmt", "yuv420p"])
        .arg(&video)
        .args(["-f", "lavfi", "-i"])
        .arg("aevalsrc='if(lt(mod(t\\,1)\\,0.1)\\,0.8*sin(2*PI*1000*t)\\,0)':s=48000:d=4")
        .args(["-map", "1:a", "-ac", "1", "-c:a", "pcm_s16le"])
        .arg(&audio));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let server = Server::start(&[]);
    let key = server.create_stream("sync", "");
    let files = [
        "--video",
        video.to_str().unwrap(),
        "--audio",
        audio.to_str().unwrap(),
        "--width",
        "320",
        "--height",
        "180",
    ];
    let browser = chromium_publish(&server, "sync", &key, 16, &files);
    wait_segments(&server, "sync", 5);
    let (flashes, beeps) = flashes_and_beeps(&server.url("/live/sync/index.m3u8"), 6);
    let offsets: Vec<f64> = flashes
        .iter()
        .filter_map(|&v| {
            beeps
                .iter()
                .map(|&a| a - v)
                .filter(|d| d.abs() < 0.5)
                .min_by(|x, y| x.abs().total_cmp(&y.abs()))
        })
        .collect();
    let metrics = server.get("/metrics").text();
    let steps = metrics
        .lines()
        .find(|l| l.starts_with("ugc_whip_av_sync_steps_total{") && l.contains("live/sync"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    eprintln!(
        "flashes {flashes:?}\nbeeps {beeps:?}\naudio - video: {offsets:?} s; sync steps {steps:?}"
    );
    assert!(offsets.len() >= 4, "flashes {flashes:?} beeps {beeps:?}");
    assert!(
        offsets.iter().all(|d| d.abs() < 0.1),
        "audio - video {offsets:?} s"
    );
    // A step when the reports come, perhaps one refinement; more is a flap.
    assert!(steps.is_some_and(|s| s <= 2.0), "{steps:?}");
    let done = browser.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
}

/// Where the picture turns bright and where the sound turns loud in
/// `seconds` of `url` as ffmpeg decodes it (s, on the input's timeline,
/// which both tracks share): mean luma over half, and RMS over -30 dBFS in
/// 5 ms steps.
fn flashes_and_beeps(url: &str, seconds: u32) -> (Vec<f64>, Vec<f64>) {
    let out = run(Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-v",
            "info",
            "-i",
            url,
            "-t",
            &seconds.to_string(),
        ])
        .args([
            "-filter_complex",
            "[0:v]scale=16:16,format=gray,showinfo[v];\
             [0:a]aformat=channel_layouts=mono,asetnsamples=n=240:p=0,\
             astats=metadata=1:reset=1,ametadata=print:key=lavfi.astats.Overall.RMS_level[a]",
        ])
        .args(["-map", "[v]", "-map", "[a]", "-f", "null", "-"]));
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{log}");
    let field = |line: &str, key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len()..];
        let end = rest.find([' ', ']']).unwrap_or(rest.len());
        rest[..end].trim().parse().ok()
    };
    let (mut flashes, mut beeps) = (Vec::new(), Vec::new());
    let (mut bright, mut loud, mut audio_at) = (true, true, None);
    for line in log.lines() {
        if line.contains("Parsed_showinfo") && line.contains(" n:") {
            let (Some(t), Some(mean)) = (field(line, "pts_time:"), field(line, "mean:[")) else {
                continue;
            };
            let now = mean > 128.0;
            if now && !bright {
                flashes.push(t);
            }
            bright = now;
        } else if line.contains("Parsed_ametadata") {
            if let Some(t) = field(line, "pts_time:") {
                audio_at = Some(t);
            } else if let (Some(level), Some(t)) = (field(line, "RMS_level="), audio_at) {
                let now = level > -30.0;
                if now && !loud {
                    beeps.push(t);
                }
                loud = now;
            }
        }
    }
    (flashes, beeps)
}

/// GStreamer 1.22's webrtcbin as a publisher (`tests/gst/whip_webrtcbin.py`:
/// libnice ICE, OpenSSL DTLS; Debian's simple-whip-client, the same stack,
/// cannot start on Debian 12). Its ICE works with ours (libnice offers no
/// loopback candidate, so the server is on this host's other address), but
/// its DTLS certificate is RSA and str0m's DTLS (dimpl) does ECDSA only: the
/// handshake fails. Pinned here as it is: the signalling answers, ICE
/// connects, and the server ends the session within its connect timeout
/// saying why (the DTLS error), rather than a bare "closed". When either
/// side changes, this test says so.
#[test]
fn gstreamer_webrtcbin_connects_ice_and_its_rsa_dtls_is_refused_clearly() {
    let ip = ugc_proto::whip::server::default_route_ip().expect("a default route");
    let udp = format!("{ip}:0");
    let server = Server::start(&["--whip-udp", &udp]);
    let key = server.create_stream("gst", "");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/gst/whip_webrtcbin.py");
    let url = server.url("/whip/gst");
    let done = Command::new("/usr/bin/python3")
        .arg(&script)
        // `--key=` keeps a key that begins with '-' (one in 64) a value
        // for argparse rather than an unknown option.
        .args(["--url", &url, &format!("--key={key}"), "--seconds", "5"])
        .stdin(Stdio::null())
        .output()
        .expect("python3 with GStreamer's introspection (install-deps)");
    let report = String::from_utf8_lossy(&done.stdout).to_string();
    let stderr = String::from_utf8_lossy(&done.stderr).to_string();
    eprintln!("whip_webrtcbin.py: {report}");
    assert!(report.contains("\"post\": 201"), "{report}\n{stderr}");
    assert!(
        report.contains("\"completed\"") || report.contains("\"connected\""),
        "ICE: {report}"
    );
    assert!(report.contains("dtlsdec"), "DTLS: {report}\n{stderr}");
    wait_until(Duration::from_secs(25), || {
        server.log().contains("whip publish ended")
    })
    .unwrap_or_else(|| panic!("ended; log:\n{}", server.log()));
    let log = server.log();
    let ended = log
        .lines()
        .find(|l| l.contains("whip publish ended"))
        .unwrap();
    eprintln!("{ended}");
    assert!(
        ended.contains("not connected within") && ended.contains("DTLS"),
        "{ended}"
    );
}

/// Behind a 1:1 NAT: the server's WHIP socket is on this host's
/// non-loopback address, but publishers reach it at a "public" one
/// (`--whip-public-ip`), here 127.0.0.7 where a UDP forwarder stands in for
/// the NAT. FFmpeg 9's `whip` muxer goes to the candidate in the answer, so
/// it publishes through the forwarder or not at all; the stream plays.
#[test]
fn whip_behind_a_nat_is_offered_at_its_public_address() {
    // This host's address on its default route (what a NATed server binds).
    let private = ugc_proto::whip::server::default_route_ip().expect("a default route");
    assert!(!private.is_loopback(), "{private}");
    let port = free_udp_port();
    let public: std::net::SocketAddr = format!("127.0.0.7:{port}").parse().unwrap();
    let nat = UdpForwarder::start(public, (private, port).into());
    let udp = format!("{private}:{port}");
    let server = Server::start(&["--whip-udp", &udp, "--whip-public-ip", "127.0.0.7"]);
    let key = server.create_stream("nat", "");
    let mut ffmpeg = Proc(
        Command::new(ffmpeg9())
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", "30", "-c:v", "libx264", "-preset", "ultrafast"])
            .args(["-tune", "zerolatency", "-profile:v", "baseline", "-g", "30"])
            .args(["-c:a", "libopus", "-ar", "48000", "-ac", "2"])
            .args(["-f", "whip", "-authorization", &key])
            .arg(server.url("/whip/nat"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ffmpeg 9 (imageio-ffmpeg)"),
    );
    wait_segments(&server, "nat", 2);
    plays_h264_and(&server, "nat", "320,180", "aac");
    let (up, down) = nat.counts();
    eprintln!("through the NAT: {up} datagrams up, {down} down");
    // Down: STUN answers, the DTLS handshake, RTCP (feedback is sparse).
    assert!(up > 100 && down > 3, "{up} up, {down} down");
    ffmpeg.kill();
}

/// ICE-TCP (RFC 6544, #18): a publisher and a viewer whose network lets
/// no UDP through. The answer's UDP candidate is at 127.0.0.7
/// (`--whip-public-ip`) where nothing listens, so every UDP check fails as
/// behind a firewall that drops UDP; its passive TCP candidate
/// (`--whip-tcp`) is reachable. Chromium publishes over WHIP and watches
/// over WHEP in one page: both connect over TCP (their selected pairs say
/// so), the pictures arrive, the stream plays over HLS, and the server
/// counts the connections.
#[test]
#[ignore = "needs Chromium and tests/browser/node_modules: run by `make browser-hls-js`"]
fn chromium_publishes_and_watches_over_ice_tcp_when_udp_is_blocked() {
    let private = ugc_proto::whip::server::default_route_ip().expect("a default route");
    let port = free_ports(2);
    let udp = format!("{private}:{port}");
    let tcp = format!("127.0.0.7:{}", port + 1);
    let server = Server::start(&[
        "--whip-udp",
        &udp,
        "--whip-public-ip",
        "127.0.0.7",
        "--whip-tcp",
        &tcp,
    ]);
    let key = server.create_stream("cam", "");
    let whip = server.url("/whip/cam");
    let http = server.http;
    let watch = std::thread::spawn(move || {
        // While both are connected: the gauge at its highest, and the
        // HLS's segments at their most.
        let (mut most, mut segments) = (0.0f64, 0);
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(250));
            let m = http_get(http, "/metrics").text();
            let open = m
                .lines()
                .find_map(|l| l.strip_prefix("ugc_webrtc_tcp_connections "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            most = most.max(open);
            let hls = http_get(http, "/live/cam/mono.m3u8");
            if hls.status == 200 {
                segments = segments.max(parse_media_playlist(&hls.text()).len());
            }
        }
        (most, segments)
    });
    let report = chromium_whep(&server, "cam", 10, &["--whip", &whip, "--key", &key]);
    let (most, segments) = watch.join().unwrap();
    assert!(report.contains("\"whip\":201"), "{report}");
    let r: serde_json::Value = serde_json::from_str(report.trim()).unwrap_or_default();
    assert_eq!(
        r["inbound"]["transport"]["protocol"], "tcp",
        "the viewer's pair: {report}"
    );
    assert!(
        section_number(&report, "video", "frames") >= 150.0,
        "{report}"
    );
    assert!(
        report.contains("video/H264") && report.contains("audio/opus"),
        "{report}"
    );
    let p50 = section_number(&report, "latency", "p50");
    eprintln!("over ICE-TCP: glass to glass p50 {p50} ms, {most} TCP connections at most");
    assert!(p50 <= 1000.0, "glass to glass {p50} ms: {report}");
    // The publisher's and the viewer's connections.
    assert!(most >= 2.0, "{most} ICE-TCP connections");
    assert!(segments >= 2, "{segments} HLS segments");
}

/// A lossy path (#18): Chromium publishes over WHIP through a forwarder
/// that drops 3 % of the datagrams each way and delays each by 50 ms each
/// way (netem's job; this VM's kernel has none, so the forwarder of the
/// NAT test does it in user space, the server advertising it with
/// `--whip-public-ip`). NACK and PLI do their job: the browser is asked to
/// resend (its NACK count) and for keyframes, nearly every hole is filled
/// (`ugc_whip_discontinuities_total`), the HLS decodes without one error,
/// and its video has no gap over 1 s. In `make chaos`, not `make test`:
/// Chromium's bitrate over the lossy path differs from run to run (650
/// to 4,100 video packets in 24 s), and so does how many holes NACK
/// leaves (none at the low rates, about 1 % of the packets at the high).
#[test]
#[ignore = "chaos: a lossy path, Chromium; run by `make chaos`"]
fn chaos_chromium_publishes_over_a_lossy_path_and_nack_and_pli_repair_it() {
    let private = ugc_proto::whip::server::default_route_ip().expect("a default route");
    let port = free_udp_port();
    let public: std::net::SocketAddr = format!("127.0.0.7:{port}").parse().unwrap();
    let path = UdpForwarder::impaired(
        public,
        (private, port).into(),
        Impairment {
            loss: 0.03,
            delay: Duration::from_millis(50),
        },
    );
    let udp = format!("{private}:{port}");
    let server = Server::start(&["--whip-udp", &udp, "--whip-public-ip", "127.0.0.7"]);
    let key = server.create_stream("lossy", "");
    let browser = chromium_publish(&server, "lossy", &key, 24, &[]);
    wait_segments(&server, "lossy", 6);
    let metrics = server.get("/metrics").text();
    let done = browser.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&done.stdout).to_string();
    let (up, down) = path.counts();
    let holes = metrics
        .lines()
        .filter(|l| l.starts_with("ugc_whip_discontinuities_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    let r: serde_json::Value = serde_json::from_str(report.trim()).unwrap_or_default();
    let video = &r["outbound"]["video"];
    let (packets, nacks, plis) = (
        video["packets"].as_f64().unwrap_or(0.0),
        video["nacks"].as_f64().unwrap_or(0.0),
        video["plis"].as_f64().unwrap_or(0.0),
    );
    eprintln!(
        "lossy path: {up} datagrams up, {down} down (3 % dropped each way, +50 ms); the browser \
         sent {packets} video packets, got {nacks} NACKs and {plis} PLIs; holes left {holes}"
    );
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    // About 3 % of the video packets were lost on the way.
    assert!(
        packets > 300.0 && nacks >= packets * 0.01,
        "NACK did not ask for the losses: {report}"
    );
    // NACK repairs most losses (about 3 % of the packets were lost): what it
    // could not is a hole, a keyframe asked for and frames dropped until it.
    assert!(
        holes <= packets * 0.015,
        "{holes} holes NACK did not fill of {packets} packets\n{metrics}"
    );
    // The HLS decodes cleanly, with no gap in its video over 1 s.
    let url = server.url("/live/lossy/mono.m3u8");
    let out = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i", &url])
        .args(["-enc_time_base", "-1", "-f", "null", "-"]));
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stderr).trim().is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probe = run(Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "frame=pts_time", "-of", "csv=p=0", &url]));
    let times: Vec<f64> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    let gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    eprintln!("{} frames, longest gap {gap:.3} s", times.len());
    assert!(
        times.len() > 100 && gap <= 1.0,
        "longest video gap {gap:.3} s"
    );
}

/// A 1:1 NAT on loopback: datagrams to `public` go on to `private` from a
/// socket of its own, and the answers come back from `public` (one
/// publisher at a time).
struct UdpForwarder {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    up: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    down: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// How a [`UdpForwarder`] treats each datagram, each way: dropped with
/// probability `loss`, else sent on `delay` later (a path with loss and
/// latency, as netem would make it; this VM's kernel has no netem).
#[derive(Clone, Copy)]
struct Impairment {
    loss: f64,
    delay: Duration,
}

impl UdpForwarder {
    fn start(public: std::net::SocketAddr, private: std::net::SocketAddr) -> UdpForwarder {
        Self::impaired(
            public,
            private,
            Impairment {
                loss: 0.0,
                delay: Duration::ZERO,
            },
        )
    }

    /// [`Self::start`] over a path with `impairment` each way. Each
    /// outside address gets an inside socket of its own (a NAT's mapping):
    /// a browser checks from several candidates, and each pair must get
    /// its own answers.
    fn impaired(
        public: std::net::SocketAddr,
        private: std::net::SocketAddr,
        impairment: Impairment,
    ) -> UdpForwarder {
        use std::net::{SocketAddr, UdpSocket};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
        let outside = Arc::new(UdpSocket::bind(public).expect("bind the NAT's public side"));
        outside
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (up, down) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        // Drops with probability `loss` (xorshift: the same run each time).
        let seed = Arc::new(AtomicU64::new(0x9e37_79b9_7f4a_7c15));
        let lose = move || {
            let mut x = seed.load(Ordering::Relaxed);
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            seed.store(x, Ordering::Relaxed);
            (x % 1_000_000) as f64 / 1_000_000.0 < impairment.loss
        };
        // One delay line for both ways: (due, socket, to, datagram).
        type Item = (
            std::time::Instant,
            Arc<UdpSocket>,
            Option<SocketAddr>,
            Vec<u8>,
        );
        let (line, due) = std::sync::mpsc::channel::<Item>();
        let s0 = stop.clone();
        std::thread::spawn(move || {
            while !s0.load(Ordering::Relaxed) {
                let Ok((at, sock, to, d)) = due.recv_timeout(Duration::from_millis(20)) else {
                    continue;
                };
                std::thread::sleep(at.saturating_duration_since(std::time::Instant::now()));
                let _ = match to {
                    Some(to) => sock.send_to(&d, to),
                    None => sock.send(&d),
                };
            }
        });
        let (s1, u1, d1) = (stop.clone(), up.clone(), down.clone());
        std::thread::spawn(move || {
            let mut maps: std::collections::HashMap<SocketAddr, Arc<UdpSocket>> =
                std::collections::HashMap::new();
            let mut buf = [0u8; 2048];
            while !s1.load(Ordering::Relaxed) {
                let Ok((n, from)) = outside.recv_from(&mut buf) else {
                    continue;
                };
                let inside = maps.entry(from).or_insert_with(|| {
                    let inside = Arc::new(UdpSocket::bind("0.0.0.0:0").unwrap());
                    inside.connect(private).unwrap();
                    inside
                        .set_read_timeout(Some(Duration::from_millis(20)))
                        .unwrap();
                    let (back, out, line) = (inside.clone(), outside.clone(), line.clone());
                    let (s2, d2, lose) = (s1.clone(), d1.clone(), lose.clone());
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 2048];
                        while !s2.load(Ordering::Relaxed) {
                            if let Ok(n) = back.recv(&mut buf) {
                                if !lose() {
                                    let at = std::time::Instant::now() + impairment.delay;
                                    let _ =
                                        line.send((at, out.clone(), Some(from), buf[..n].to_vec()));
                                }
                                d2.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                    inside
                });
                if !lose() {
                    let at = std::time::Instant::now() + impairment.delay;
                    let _ = line.send((at, inside.clone(), None, buf[..n].to_vec()));
                }
                u1.fetch_add(1, Ordering::Relaxed);
            }
        });
        UdpForwarder { stop, up, down }
    }

    fn counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }
}

impl Drop for UdpForwarder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Waits for `n` segments of `stream`'s first variant.
fn wait_segments(server: &Server, stream: &str, n: usize) {
    wait_until(Duration::from_secs(40), || segments(server, stream) >= n)
        .unwrap_or_else(|| panic!("{n} segments of {stream}; log:\n{}", server.log()));
}

/// How many segments `stream`'s first variant lists now.
fn segments(server: &Server, stream: &str) -> usize {
    let r = server.get(&format!("/live/{stream}/index.m3u8"));
    if r.status != 200 {
        return 0;
    }
    let media = r
        .text()
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.to_string());
    media.map_or(0, |m| {
        let p = server.get(&format!("/live/{stream}/{m}"));
        if p.status == 200 {
            parse_media_playlist(&p.text()).len()
        } else {
            0
        }
    })
}

/// Whether `stream`'s HLS has H.264 at `size` and Opus, and 3 s of it
/// decode without an error.
/// The stream's HLS has H.264 of `size` (`W,H`) and `audio` (`aac`: the
/// Opus re-encoded, the default; `opus` with `--opus-to-aac off`), and
/// decodes without an error.
fn plays_h264_and(server: &Server, stream: &str, size: &str, audio: &str) {
    plays(server, stream, &format!("h264,{size}"), audio);
}

/// The stream's HLS has a video stream whose ffprobe line (`codec,w,h`)
/// is `video` and audio of codec `audio`, and decodes without an error.
fn plays(server: &Server, stream: &str, video: &str, audio: &str) {
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
        streams.contains(video) && streams.lines().any(|l| l.starts_with(audio)),
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

/// FFmpeg 9's `whip` muxer publishing `seconds` of a test pattern (x264
/// baseline, 640x360, 30 fps, a keyframe a second) and a `tone` Hz sine
/// (libopus) to `stream` with `key`.
fn ffmpeg_whip(server: &Server, key: &str, stream: &str, seconds: u32, tone: u32) -> Proc {
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
            .args(["-f", "whip", "-authorization", key])
            .arg(server.url(&format!("/whip/{stream}")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ffmpeg 9 (imageio-ffmpeg)"),
    )
}

/// Hostile SDP, STUN, RTP and DTLS beside a live WHIP stream (#18): while
/// FFmpeg's `whip` muxer publishes, 8 s of garbage datagrams of every
/// kind the WHIP port demultiplexes (random bytes; STUN binding requests
/// with unknown, empty and overlong users, bad lengths and no integrity;
/// RTP and RTCP of random SSRCs; DTLS records) go to the WHIP UDP port,
/// and bad offers to the stream's endpoint, with its right key among them
/// (garbage, truncated, a megabyte, a thousand m-lines). Every offer is
/// refused, none takes the stream over, the live session keeps
/// publishing (its segments keep coming at the pace of the media, no
/// publisher change), it decodes cleanly after, and memory stays bounded.
/// Over ICE-TCP meanwhile: connections whose frames no session takes
/// (strangers' STUN checks, garbage) are closed after eight, and 40 idle
/// connections from one address meet its cap of 16: each past it closes
/// the oldest idle one (the first 24 closed, the newest 16 open).
#[test]
fn hostile_sdp_stun_and_rtp_change_nothing_for_a_live_whip_stream() {
    let server = Server::start(&["--opus-to-aac", "off"]);
    let key = server.create_stream("live1", "");
    let probe_key = server.create_stream("probe", "");
    // The WHIP UDP port, from the candidate of an answer.
    let r = whip_send(
        server.http,
        "POST",
        "/whip/probe",
        Some(&probe_key),
        Some("application/sdp"),
        &h264_offer(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let answer = r.text();
    let port: u16 = answer
        .lines()
        .find_map(|l| {
            let c = l.strip_prefix("a=candidate:")?;
            let f: Vec<&str> = c.split_whitespace().collect();
            (f.get(2) == Some(&"udp") || f.get(2) == Some(&"UDP"))
                .then(|| f.get(5)?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no UDP candidate: {answer}"));
    // Its passive ICE-TCP candidate (beside the UDP socket).
    let tcp_port: u16 = answer
        .lines()
        .find_map(|l| {
            let c = l.strip_prefix("a=candidate:")?;
            let f: Vec<&str> = c.split_whitespace().collect();
            (f.get(2)?.eq_ignore_ascii_case("tcp") && c.contains("tcptype passive"))
                .then(|| f.get(5)?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no passive TCP candidate: {answer}"));
    let location = r.header("location").unwrap().to_owned();
    assert_eq!(
        whip_send(server.http, "DELETE", &location, None, None, "").status,
        200
    );
    let whip_udp: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let whip_tcp: std::net::SocketAddr = ([127, 0, 0, 1], tcp_port).into();

    let _publisher = ffmpeg_whip(&server, &key, "live1", 40, 440);
    wait_segments(&server, "live1", 3);
    let rss = || {
        std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0)
    };
    let rss_before = rss();
    let newest = || {
        let r = server.get("/live/live1/mono.m3u8");
        parse_media_playlist(&r.text()).last().map_or(0, |s| s.msn)
    };
    let started = server.log().matches("whip publish started").count();
    let msn_before = newest();
    let attack_for = Duration::from_secs(8);

    // UDP: every kind of datagram the port tells apart, garbled.
    let udp = std::thread::spawn(move || {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let until = std::time::Instant::now() + attack_for;
        let mut sent = 0u64;
        while std::time::Instant::now() < until {
            let len = (rand() % 1400) as usize + 1;
            let mut d: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
            match sent % 6 {
                // STUN binding request, cookie right, length and user wrong.
                0 => {
                    d.resize(d.len().max(28), 0);
                    d[0..2].copy_from_slice(&[0x00, 0x01]);
                    d[2..4].copy_from_slice(&((rand() % 2000) as u16).to_be_bytes());
                    d[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
                    // USERNAME of a random length, perhaps past the end.
                    d[20..22].copy_from_slice(&[0x00, 0x06]);
                    d[22..24].copy_from_slice(&((rand() % 600) as u16).to_be_bytes());
                }
                // A STUN header alone, truncated.
                1 => d = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, 1, 2],
                // RTP of a random SSRC and payload type.
                2 => {
                    d.resize(d.len().max(12), 0);
                    d[0] = 0x80;
                    d[1] = (rand() % 128) as u8 | (rand() as u8 & 0x80);
                }
                // RTCP (SR, RR, PLI, NACK types) with bad lengths.
                3 => {
                    d.resize(d.len().max(8), 0);
                    d[0] = 0x81;
                    d[1] = [200u8, 201, 205, 206][(rand() % 4) as usize];
                }
                // A DTLS handshake record header with garbage.
                4 => {
                    d.resize(d.len().max(13), 0);
                    d[0] = 22;
                    d[1..3].copy_from_slice(&[0xfe, 0xfd]);
                }
                _ => {}
            }
            if sock.send_to(&d, whip_udp).is_ok() {
                sent += 1;
            }
            if sent.is_multiple_of(64) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        sent
    });
    // ICE-TCP: connections that send frames no session takes (STUN of a
    // stranger, garbage) are closed after a few; then idle connections
    // from one address past its cap (16): each new one closes the oldest
    // idle one, so idle connections never lock the address out.
    let tcp = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let closed = |c: &mut std::net::TcpStream, wait: Duration| {
            let _ = c.set_read_timeout(Some(wait));
            match c.read(&mut [0u8; 256]) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            }
        };
        let until = std::time::Instant::now() + attack_for;
        let (mut strangers, mut strangers_closed) = (0u32, 0u32);
        while std::time::Instant::now() < until {
            let Ok(mut c) = std::net::TcpStream::connect(whip_tcp) else {
                continue;
            };
            strangers += 1;
            for i in 0..8 {
                let len = (rand() % 1400) as usize + 28;
                let mut d: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
                if i % 2 == 0 {
                    d[0..2].copy_from_slice(&[0x00, 0x01]);
                    d[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
                }
                let mut frame = (len as u16).to_be_bytes().to_vec();
                frame.extend(d);
                if c.write_all(&frame).is_err() {
                    break;
                }
            }
            strangers_closed += u32::from(closed(&mut c, Duration::from_secs(3)));
        }
        let mut idle: Vec<std::net::TcpStream> = (0..40)
            .filter_map(|_| std::net::TcpStream::connect(whip_tcp).ok())
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let refused: Vec<bool> = idle
            .iter_mut()
            .map(|c| closed(c, Duration::from_millis(300)))
            .collect();
        // Those left open stay so until the metrics are read.
        (strangers, strangers_closed, idle, refused)
    });
    // Offers: the stream's own key with bad SDP, and other keys.
    let http = server.http;
    let offers = std::thread::spawn({
        let key = key.clone();
        move || {
            let huge = format!("v=0\r\n{}", "a=x\r\n".repeat(250_000));
            let many = format!(
                "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n{}",
                "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\n"
                    .repeat(1000)
            );
            let truncated: String = h264_offer().chars().take(200).collect();
            let bodies = [
                "garbage".to_owned(),
                truncated,
                huge,
                many,
                "v=0\r\n\0\0\0".to_owned(),
            ];
            let until = std::time::Instant::now() + attack_for;
            let mut statuses = std::collections::BTreeMap::new();
            let mut i = 0usize;
            while std::time::Instant::now() < until {
                let body = &bodies[i % bodies.len()];
                let k = if i % 3 == 2 { "wrong" } else { key.as_str() };
                let r = whip_send(
                    http,
                    "POST",
                    "/whip/live1",
                    Some(k),
                    Some("application/sdp"),
                    body,
                );
                *statuses.entry(r.status).or_insert(0u32) += 1;
                i += 1;
            }
            statuses
        }
    });
    let sent = udp.join().unwrap();
    let statuses = offers.join().unwrap();
    let (strangers, strangers_closed, idle_open, refused) = tcp.join().unwrap();
    let idle = idle_open.len();
    let evicted = refused.iter().filter(|&&c| c).count();
    let rss_after = rss();
    let msn_after = newest();
    eprintln!(
        "hostile WHIP: {sent} datagrams, offers answered {statuses:?}; segments {msn_before} -> \
         {msn_after} in {attack_for:?}; RSS {rss_before:.1} -> {rss_after:.1} MB; ICE-TCP: \
         {strangers_closed} of {strangers} strangers' connections closed, {evicted} of {idle} \
         idle ones closed for newer ones"
    );
    assert!(strangers > 10, "{strangers} ICE-TCP connections");
    assert_eq!(
        strangers_closed, strangers,
        "strangers' connections left open"
    );
    assert_eq!(idle, 40);
    // The oldest 24 made room; the newest 16 (the cap) are open.
    assert!(
        refused[..24].iter().all(|&c| c) && refused[24..].iter().all(|&c| !c),
        "closed: {refused:?}"
    );
    let metrics = server.get("/metrics").text();
    let metric = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
    };
    assert_eq!(
        (
            metric("ugc_webrtc_tcp_refused_total"),
            metric("ugc_webrtc_tcp_connections"),
            metric("ugc_webrtc_tcp_unused_total"),
        ),
        (Some(24.0), Some(16.0), Some(f64::from(strangers + 24))),
        "{metrics}"
    );
    drop(idle_open);
    assert!(
        statuses.keys().all(|s| [400, 401, 413].contains(s)),
        "a bad offer was taken: {statuses:?}"
    );
    assert_eq!(
        server.log().matches("whip publish started").count(),
        started,
        "the live session was taken over"
    );
    assert!(
        !server
            .log()
            .lines()
            .any(|l| l.contains("whip publish ended") && l.contains("live/live1")),
        "the live session ended"
    );
    // 2 s segments: the media's pace, less one for where the window fell.
    assert!(
        msn_after >= msn_before + 3,
        "segments {msn_before} -> {msn_after} during the attack"
    );
    plays_h264_and(&server, "live1", "640,360", "opus");
    assert!(
        rss_after < rss_before + 64.0,
        "RSS {rss_before:.1} -> {rss_after:.1} MB"
    );
}

/// FFmpeg 9's `whip` muxer (a second WebRTC stack: its own ICE, DTLS and
/// packetizer; no trickle) publishes x264 baseline + libopus; the stream
/// plays over HLS. A second publish with the same key takes the stream
/// over, as a second RTMP publisher would, and the stream goes on.
#[test]
fn ffmpeg_whip_muxer_publishes_and_a_second_one_takes_over() {
    // HLS carries the Opus as it came (the transcode to AAC off).
    let server = Server::start(&["--opus-to-aac", "off"]);
    let key = server.create_stream("ff", "");
    let publish = |seconds: u32, tone: u32| ffmpeg_whip(&server, &key, "ff", seconds, tone);
    let mut first = publish(30, 440);
    wait_segments(&server, "ff", 3);
    plays_h264_and(&server, "ff", "640,360", "opus");
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
    plays_h264_and(&server, "ff", "640,360", "opus");
    assert!(second.running(), "the newcomer publishes");
    first.kill();
    second.kill();
}

/// POSTs a WHEP offer, with a bearer token if any.
fn whep_post(server: &Server, path: &str, token: Option<&str>, offer: &str) -> Response {
    whip_send(
        server.http,
        "POST",
        path,
        token,
        Some("application/sdp"),
        offer,
    )
}

/// [`whep_post`] again while the stream is not live yet (404), for 20 s:
/// the first other answer.
fn whep_post_when_live(server: &Server, path: &str, token: Option<&str>, offer: &str) -> Response {
    let mut answer = None;
    wait_until(Duration::from_secs(20), || {
        let r = whep_post(server, path, token, offer);
        let live = r.status != 404;
        answer = Some(r);
        live
    })
    .unwrap_or_else(|| panic!("{path} live; log:\n{}", server.log()));
    answer.expect("an answer")
}

/// WHEP's signalling: a stream that is not live is 404; a taken offer is
/// 201 with a send-only answer and a session URL that DELETE ends, once; a
/// private stream wants its play token (as bearer or `?token=`), 403
/// without; an offer that receives nothing we send is 400; the viewers are
/// in `/metrics` by stream; one address holds at most 8 offers that have
/// not connected.
#[test]
fn whep_signalling_plays_what_is_live_to_whom_may_watch() {
    let server = Server::start(&[]);
    let key = server.create_stream("cam", "");
    let secret = server.create_stream("secret", "\"private\": true");
    let offer = h264_recv_offer();
    let r = whep_post(&server, "/whep/cam", None, &offer);
    assert_eq!(r.status, 404, "{}", r.text());
    let _cam = publish_live(320, 180, &server.rtmp_url(&key));
    let _secret = publish_live(320, 180, &server.rtmp_url(&secret));
    let r = whep_post_when_live(&server, "/whep/cam", None, &offer);
    assert_eq!(r.status, 201, "{}", r.text());
    let answer = r.text();
    assert!(
        answer.contains("a=sendonly") && answer.contains("H264/90000"),
        "{answer}"
    );
    let location = r.header("location").unwrap().to_owned();
    let id = location.strip_prefix("/whep/cam/").unwrap();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{location}"
    );
    assert_eq!(
        metric_sample(&server, "ugc_whep_viewers{stream=\"live/cam\"}"),
        Some(1.0)
    );
    let r = whip_send(server.http, "DELETE", &location, None, None, "");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = whip_send(server.http, "DELETE", &location, None, None, "");
    assert_eq!(r.status, 404, "{}", r.text());

    // (Its playlist is 403 without a token, live or not: ask with one.)
    let token = server.play_token("secret", "{}");
    let r = whep_post_when_live(&server, "/whep/secret", Some(&token), &offer);
    assert_eq!(r.status, 201, "{}", r.text());
    let r = whep_post(&server, "/whep/secret", None, &offer);
    assert_eq!(r.status, 403, "{}", r.text());
    let r = whep_post(
        &server,
        &format!("/whep/secret?token={token}"),
        None,
        &offer,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = whep_post(&server, "/whep/secret", Some("not-a-token"), &offer);
    assert_eq!(r.status, 403, "{}", r.text());

    let vp8 = VP8_ONLY_OFFER.replace("a=sendonly", "a=recvonly");
    let r = whep_post(&server, "/whep/cam", None, &vp8);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("receives neither"), "{}", r.text());
    let r = whip_send(
        server.http,
        "POST",
        "/whep/cam",
        None,
        Some("text/plain"),
        &offer,
    );
    assert_eq!(r.status, 415, "{}", r.text());
}

fn chromium_whep(server: &Server, stream: &str, seconds: u32, extra: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/whep.mjs");
    let done = Command::new("node")
        .arg(&script)
        .args(["--url", &server.url(&format!("/whep/{stream}"))])
        .args(["--seconds", &seconds.to_string()])
        .args(extra)
        .output()
        .expect("node (tests/browser)");
    let report = String::from_utf8_lossy(&done.stdout).to_string();
    eprintln!("whep.mjs: {report}");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(report.contains("\"post\":201"), "{report}");
    assert!(report.contains("\"deleted\":200"), "{report}");
    report
}

/// The number after `"key":` inside the `"section":{...}` object.
fn section_number(report: &str, section: &str, key: &str) -> f64 {
    let at = report
        .find(&format!("\"{section}\":{{"))
        .unwrap_or_else(|| panic!("no {section}: {report}"));
    let end = at + report[at..].find('}').unwrap_or(report.len() - at);
    report_number(&report[at..end], key)
}

/// Browser to browser through the server: Chromium publishes a canvas
/// showing its clock over WHIP and watches it over WHEP in the same page;
/// every picture shown is read for the clock it was drawn at. H.264 and
/// Opus arrive and decode, and the glass-to-glass delay is printed (the
/// goal is 400 ms p50 on loopback; measured 34-52 ms here, asserted under
/// 1 s so a loaded CI machine does not fail it).
#[test]
#[ignore = "needs Chromium and tests/browser/node_modules: run by `make browser-hls-js`"]
fn chromium_watches_over_whep_what_it_publishes_over_whip() {
    let server = Server::start(&[]);
    let key = server.create_stream("cam", "");
    let whip = server.url("/whip/cam");
    let report = chromium_whep(&server, "cam", 10, &["--whip", &whip, "--key", &key]);
    assert!(report.contains("\"whip\":201"), "{report}");
    assert!(
        section_number(&report, "video", "frames") >= 150.0,
        "{report}"
    );
    assert_eq!(section_number(&report, "video", "width"), 640.0, "{report}");
    assert!(
        report.contains("video/H264") && report.contains("audio/opus"),
        "{report}"
    );
    assert!(
        section_number(&report, "audio", "samples") > 100_000.0,
        "{report}"
    );
    let p50 = section_number(&report, "latency", "p50");
    assert!(section_number(&report, "latency", "n") >= 100.0, "{report}");
    assert!(p50 <= 1000.0, "glass to glass {p50} ms: {report}");
}

/// AV1 both ways (#18): with `--whip-av1 on` Chromium publishes AV1 over
/// WHIP and watches it over WHEP in the same page; the viewer's offer has
/// AV1, so the stream goes out as it came (no transcode): the pictures
/// arrive as AV1 and decode, with their clock read off them.
#[test]
#[ignore = "needs Chromium and tests/browser/node_modules: run by `make browser-hls-js`"]
fn chromium_watches_over_whep_the_av1_it_publishes_over_whip() {
    let server = Server::start(&["--whip-av1", "on"]);
    let key = server.create_stream("cam", "");
    let whip = server.url("/whip/cam");
    let report = chromium_whep(
        &server,
        "cam",
        10,
        &["--whip", &whip, "--key", &key, "--codec", "AV1"],
    );
    assert!(report.contains("\"whip\":201"), "{report}");
    assert!(report.contains("video/AV1"), "{report}");
    assert!(
        section_number(&report, "video", "frames") >= 100.0,
        "{report}"
    );
    assert_eq!(section_number(&report, "video", "width"), 640.0, "{report}");
    let p50 = section_number(&report, "latency", "p50");
    eprintln!("AV1 over WebRTC both ways: glass to glass p50 {p50} ms");
    assert!(section_number(&report, "latency", "n") >= 50.0, "{report}");
    assert!(p50 <= 1000.0, "glass to glass {p50} ms: {report}");
}

/// An RTMP stream (H.264 without B pictures, AAC) over WHEP: the video
/// plays from its next keyframe, the AAC re-encoded to Opus (WebRTC has no
/// AAC) plays as sound; with `--aac-to-opus off`, video alone.
#[test]
#[ignore = "needs Chromium and tests/browser/node_modules: run by `make browser-hls-js`"]
fn chromium_watches_an_rtmp_stream_over_whep() {
    for transcode in ["on", "off"] {
        let server = Server::start(&["--aac-to-opus", transcode]);
        let key = server.create_stream("cam", "");
        let _ffmpeg = publish_live(640, 360, &server.rtmp_url(&key));
        wait_until(Duration::from_secs(20), || {
            server.get("/live/cam/mono.m3u8").status != 404
        })
        .unwrap_or_else(|| panic!("live; log:\n{}", server.log()));
        let report = chromium_whep(&server, "cam", 6, &[]);
        assert!(
            section_number(&report, "video", "frames") >= 100.0,
            "{report}"
        );
        assert_eq!(
            section_number(&report, "video", "height"),
            360.0,
            "{report}"
        );
        if transcode == "on" {
            assert!(report.contains("audio/opus"), "{report}");
            // 6 s at 48 kHz is 288000 samples: sound from the start.
            let samples = section_number(&report, "audio", "samples");
            assert!(samples > 150_000.0, "{report}");
        } else {
            assert!(!report.contains("audio/opus"), "{report}");
        }
    }
}
