//! The transcoding ladder end to end: ffmpeg publishes 1080p30 over RTMP,
//! the control API turns the ladder on for the running stream, the master
//! playlist lists three renditions that ffprobe decodes at their sizes and
//! bitrates, with IDRs at identical pts at every segment start, audio in
//! every rendition, the logo at its corner, clean rendition switches, and
//! `GET /api/v1/stats/transcode` shows the ladder's counters; then the API
//! turns it off again. An `#[ignore]`d test (`make browser-hls-js`) has
//! hls.js in headless Chromium switch through every rendition.
#![cfg(feature = "ffmpeg")]
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

fn patch_transcode(server: &Server, name: &str, value: &str) {
    let r = http_send(
        server.http,
        "PATCH",
        &format!("/api/v1/streams/{name}"),
        Some(ADMIN_TOKEN),
        Some(&format!("{{\"transcode\": \"{value}\"}}")),
    );
    assert_eq!(r.status, 200, "PATCH transcode: {}", r.text());
}

/// `(uri, attributes)` of every variant of a master playlist.
fn variants(master: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut attrs = None;
    for line in master.lines() {
        if let Some(a) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            attrs = Some(a.to_owned());
        } else if !line.starts_with('#')
            && !line.is_empty()
            && let Some(a) = attrs.take()
        {
            // Without the viewer session (`?vs=`) of this answer.
            let uri = line.split('?').next().unwrap_or(line);
            out.push((uri.to_owned(), a));
        }
    }
    out
}

fn attr<'a>(attrs: &'a str, key: &str) -> Option<&'a str> {
    // CODECS is quoted and contains commas.
    let start = attrs.find(&format!("{key}="))? + key.len() + 1;
    let rest = &attrs[start..];
    if let Some(q) = rest.strip_prefix('"') {
        return q.split('"').next();
    }
    rest.split(',').next()
}

/// The `GET /api/v1/stats/transcode` entry of stream `name` (`Null` when
/// it has no running ladder).
fn transcode_stats(server: &Server, name: &str) -> serde_json::Value {
    let r = http_send(
        server.http,
        "GET",
        "/api/v1/stats/transcode",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(r.status, 200, "stats/transcode: {}", r.text());
    let list: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
    list.into_iter()
        .find(|l| l["stream"] == name)
        .unwrap_or_default()
}

fn fetch(server: &Server, path: &str) -> Vec<u8> {
    let r = server.get(path);
    assert_eq!(r.status, 200, "GET {path}");
    r.body
}

/// First video packet of a segment: (pts seconds, keyframe).
fn first_video_packet(file: &Path) -> (f64, bool) {
    let out = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#1",
        ])
        .args(["-show_entries", "packet=pts_time,flags", "-of", "csv=p=0"])
        .arg(file));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().next().unwrap_or_default().to_owned();
    let mut parts = line.split(',');
    let pts = parts.next().unwrap_or("nan").parse().unwrap_or(f64::NAN);
    let key = parts.next().unwrap_or("").starts_with('K');
    (pts, key)
}

/// Sum of video packet sizes (bytes) and the video duration (s) of a file.
fn video_bytes_and_seconds(file: &Path) -> (u64, f64) {
    let out = run(Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "packet=size,pts_time", "-of", "csv=p=0"])
        .arg(file));
    let mut bytes = 0u64;
    let (mut first, mut last) = (f64::MAX, f64::MIN);
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let mut p = l.split(',');
        let pts: f64 = p.next().unwrap_or("").parse().unwrap_or(f64::NAN);
        let size: u64 = p.next().unwrap_or("").parse().unwrap_or(0);
        bytes += size;
        if pts.is_finite() {
            first = first.min(pts);
            last = last.max(pts);
        }
    }
    (bytes, last - first + 1.0 / 30.0)
}

/// A decoded RGB24 picture of a file's first frame.
fn first_picture(file: &Path, w: u32, h: u32) -> Vec<u8> {
    let out = run(Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-frames:v", "1", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), (w * h * 3) as usize);
    out.stdout
}

fn is_magenta(rgb: &[u8], w: u32, x: u32, y: u32) -> bool {
    let o = ((y * w + x) * 3) as usize;
    let (r, g, b) = (rgb[o], rgb[o + 1], rgb[o + 2]);
    r > 190 && g < 70 && b > 190
}

#[test]
fn ladder_on_a_running_stream_through_the_api() {
    // 30 s of 1080p30 at 5 Mbps, published as is (the publisher costs no CPU).
    let clip = test_clip(1920, 1080, 30, 5000);
    let work = TempDir::new("transcode");
    let logo = work.path().join("logo.png");
    let ok = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=c=0xff00ff:s=64x64",
        ])
        .args(["-frames:v", "1"])
        .arg(&logo)
        .status()
        .unwrap();
    assert!(ok.success());
    // The built-in `default` ladder (1080p 4000k / 720p 2000k / 360p 1000k),
    // at `superfast` so the test keeps real time on 2 shared cores.
    let config = work.path().join("ugc.toml");
    std::fs::write(
        &config,
        format!(
            "[transcode]\npreset = \"superfast\"\n[transcode.logo]\npng = \"{}\"\n\
             corner = \"top-right\"\nmargin = 0\nopacity = 100\nheight = 216\n",
            logo.display()
        ),
    )
    .unwrap();
    // No slate after the clip ends: the encoders' rates are measured on
    // the clip (a slate in the renditions is no discontinuity there).
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        "--window-segments",
        "30",
        "--fallback",
        "off",
    ]);
    let key = server.create_stream("ladder", "\"transcode\": \"off\"");
    let mut publisher = publish_file(&clip, &server.rtmp_url(&key));
    // Untranscoded first: the master playlist is the stream itself.
    wait_until(Duration::from_secs(15), || {
        server.get("/live/ladder/index.m3u8").status == 200
    })
    .expect("stream is live");
    let m = server.get("/live/ladder/index.m3u8").text();
    assert!(
        variants(&m).len() == 1 && variants(&m)[0].0 == "mono.m3u8",
        "{m}"
    );

    // Turn the ladder on for the running stream.
    let on_at = Instant::now();
    patch_transcode(&server, "ladder", "default");
    let master = {
        let mut m = String::new();
        wait_until(Duration::from_secs(20), || {
            m = server.get("/live/ladder/index.m3u8").text();
            variants(&m).len() == 3
        })
        .unwrap_or_else(|| panic!("three renditions; master: {m}\nlog:\n{}", server.log()));
        m
    };
    eprintln!("renditions listed {:?} after PATCH", on_at.elapsed());
    // Each rendition's playlists (fMP4 with LL parts, and TS) keep one
    // EXT-X-TARGETDURATION for the rendition's life (RFC 8216 6.2.1):
    // sampled now and again after the checks below.
    let targets = || -> Vec<String> {
        let mut t = Vec::new();
        for r in ["1080p", "720p", "360p"] {
            for p in ["mono.m3u8", "mono-ts.m3u8"] {
                let text = server.get(&format!("/live/ladder/{r}/{p}")).text();
                let line = text
                    .lines()
                    .find(|l| l.starts_with("#EXT-X-TARGETDURATION:"))
                    .unwrap_or_else(|| panic!("{r}/{p}: {text}"));
                t.push(format!("{r}/{p} {line}"));
            }
        }
        t
    };
    let targets_then = targets();
    let v = variants(&master);
    let expect = [
        ("1080p/mono.m3u8", 1920, 1080, 4_000_000u64),
        ("720p/mono.m3u8", 1280, 720, 2_000_000),
        ("360p/mono.m3u8", 640, 360, 1_000_000),
    ];
    for ((uri, attrs), (want_uri, w, h, _)) in v.iter().zip(expect) {
        assert_eq!(uri, want_uri, "{master}");
        assert_eq!(
            attr(attrs, "RESOLUTION"),
            Some(format!("{w}x{h}").as_str()),
            "{attrs}"
        );
        let codecs = attr(attrs, "CODECS").unwrap();
        assert!(
            codecs.starts_with("avc1.") && codecs.contains("mp4a.40.2"),
            "{attrs}"
        );
        assert_eq!(attr(attrs, "FRAME-RATE"), Some("30.000"), "{attrs}");
        assert!(attr(attrs, "BANDWIDTH").unwrap().parse::<u64>().unwrap() > 0);
        assert!(attr(attrs, "AVERAGE-BANDWIDTH").is_some(), "{attrs}");
    }

    // The ladder's counters, admin only: every rendition puts out video and
    // audio; drops are counted (how many depends on the machine).
    let anonymous = http_send(server.http, "GET", "/api/v1/stats/transcode", None, None);
    assert_eq!(anonymous.status, 401);
    let mut stats = serde_json::Value::Null;
    wait_until(Duration::from_secs(20), || {
        stats = transcode_stats(&server, "ladder");
        stats["renditions"].as_array().is_some_and(|r| {
            r.len() == 3
                && r.iter().all(|r| {
                    r["video_frames_out"].as_u64() > Some(0)
                        && r["audio_frames_out"].as_u64() > Some(0)
                })
        })
    })
    .unwrap_or_else(|| panic!("every rendition has output: {stats}"));
    eprintln!("stats/transcode: {stats}");
    assert_eq!(stats["profile"], "default", "{stats}");
    for (r, (uri, w, h, _)) in stats["renditions"].as_array().unwrap().iter().zip(expect) {
        assert_eq!(r["name"], uri.split('/').next().unwrap(), "{stats}");
        let size = (r["width"].as_u64(), r["height"].as_u64());
        assert_eq!(size, (Some(w.into()), Some(h.into())), "{stats}");
    }
    for k in [
        "frames_in",
        "frames_out",
        "pictures_encoded",
        "input_dropped",
        "pictures_dropped",
        "decode_errors",
        "restarts",
        "running_s",
    ] {
        assert!(stats[k].is_u64(), "{k}: {stats}");
    }
    assert!(stats["frames_in"].as_u64() > Some(0), "{stats}");
    assert!(stats["frames_out"].as_u64() > Some(0), "{stats}");
    assert_eq!(stats["restarts"], 0, "{stats}");

    // Let ~20 s of every rendition accumulate, then take them whole.
    let _ = wait_until(Duration::from_secs(40), || !publisher.running());
    std::thread::sleep(Duration::from_secs(3));
    let mut starts: BTreeMap<&str, Vec<(f64, bool)>> = BTreeMap::new();
    let mut ts_segments: BTreeMap<&str, Vec<Vec<u8>>> = BTreeMap::new();
    for (uri, w, h, target) in expect {
        let rendition = uri.split('/').next().unwrap();
        let base = format!("/live/ladder/{rendition}");
        let media = server.get(&format!("{base}/mono.m3u8")).text();
        let segs = parse_media_playlist(&media);
        // Skip the first segment (the ladder started mid-GOP of the source),
        // and stop at a discontinuity: the encoder's rate is measured on
        // the clip.
        let segs: Vec<_> = segs
            .into_iter()
            .skip(1)
            .take_while(|s| !s.discontinuity)
            .collect();
        assert!(segs.len() >= 8, "{rendition}: {media}");
        let init = fetch(&server, &format!("{base}/{}", segs[0].map.clone().unwrap()));
        let mut whole = init.clone();
        let mut seconds = 0.0;
        for s in &segs {
            let data = fetch(&server, &format!("{base}/{}", s.uri));
            let one = work.path().join(format!("{rendition}-{}.mp4", s.msn));
            let mut f = init.clone();
            f.extend_from_slice(&data);
            std::fs::write(&one, &f).unwrap();
            starts
                .entry(rendition)
                .or_default()
                .push(first_video_packet(&one));
            whole.extend_from_slice(&data);
            seconds += s.duration;
            let ts = fetch(&server, &format!("{base}/{}", s.uri.replace(".m4s", ".ts")));
            ts_segments.entry(rendition).or_default().push(ts);
        }
        let file = work.path().join(format!("{rendition}.mp4"));
        std::fs::write(&file, &whole).unwrap();
        let streams = probe_streams(&file);
        assert!(
            streams
                .iter()
                .any(|s| s.0 == "video" && s.2 == w && s.3 == h),
            "{rendition}: {streams:?}"
        );
        assert!(
            streams.iter().any(|s| s.0 == "audio"),
            "{rendition}: audio: {streams:?}"
        );
        let errors = decode_errors(&file);
        assert!(errors.is_empty(), "{rendition} decodes cleanly: {errors}");
        let (bytes, dur) = video_bytes_and_seconds(&file);
        let kbps = bytes as f64 * 8.0 / dur / 1000.0;
        eprintln!(
            "{rendition}: {seconds:.1} s in playlist, video {kbps:.0} kbit/s (target {})",
            target / 1000
        );
        assert!(dur >= 15.0, "{rendition}: only {dur:.1} s measured");
        let ratio = kbps * 1000.0 / target as f64;
        assert!(
            (0.8..=1.2).contains(&ratio),
            "{rendition}: {kbps:.0} kbit/s vs {target}"
        );
        // The logo: top right, 216 lines tall at 1080 lines, scaled with
        // the rendition.
        let rgb = first_picture(&file, w, h);
        let size = h * 216 / 1080;
        assert!(
            is_magenta(&rgb, w, w - size / 2, size / 2),
            "{rendition}: logo at its corner"
        );
        assert!(
            !is_magenta(&rgb, w, size / 2, h - size / 2),
            "{rendition}: no logo bottom left"
        );
        assert!(
            !is_magenta(&rgb, w, w - size / 2, h - size / 2),
            "{rendition}: no logo bottom right"
        );
    }
    // IDRs at identical pts at every segment start, across renditions.
    let a = &starts["1080p"];
    for (r, s) in &starts {
        assert!(
            s.iter().all(|(_, key)| *key),
            "{r}: every segment starts with a keyframe"
        );
        let n = a.len().min(s.len());
        let pa: Vec<i64> = a[..n]
            .iter()
            .map(|(p, _)| (p * 1000.0).round() as i64)
            .collect();
        let ps: Vec<i64> = s[..n]
            .iter()
            .map(|(p, _)| (p * 1000.0).round() as i64)
            .collect();
        assert_eq!(pa, ps, "{r}: segment starts line up with 1080p");
    }
    // A player switching renditions at segment boundaries (360p -> 1080p ->
    // 720p -> ...) decodes without an error.
    let order = ["360p", "1080p", "720p"];
    let n = ts_segments.values().map(Vec::len).min().unwrap();
    let mut switched = Vec::new();
    for i in 0..n.min(9) {
        switched.extend_from_slice(&ts_segments[order[i % 3]][i]);
    }
    let file = work.path().join("switched.ts");
    std::fs::write(&file, &switched).unwrap();
    let errors = decode_errors(&file);
    assert!(errors.is_empty(), "switching renditions: {errors}");

    assert_eq!(targets(), targets_then, "target durations changed");

    // And off again: the master playlist is the stream itself within seconds.
    let key2 = key;
    let mut publisher = publish_file(&clip, &server.rtmp_url(&key2));
    patch_transcode(&server, "ladder", "off");
    let mut m = String::new();
    wait_until(Duration::from_secs(15), || {
        m = server.get("/live/ladder/index.m3u8").text();
        variants(&m).len() == 1 && variants(&m)[0].0 == "mono.m3u8"
    })
    .unwrap_or_else(|| panic!("ladder off: {m}"));
    // A stopped ladder leaves the stats.
    wait_until(Duration::from_secs(10), || {
        transcode_stats(&server, "ladder").is_null()
    })
    .unwrap_or_else(|| panic!("still listed: {}", transcode_stats(&server, "ladder")));
    publisher.kill();
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// hls.js in headless Chromium (tests/browser/play.mjs `--switch`) plays the
/// multivariant playlist of a running ladder and is forced through every
/// rendition: each switch lands (LEVEL_SWITCHED, decoded size = the
/// variant's RESOLUTION), playback goes on, no decode or append error.
/// `#[ignore]`d: it needs the npm dependencies in tests/browser (`make
/// browser-hls-js` installs them and runs it).
#[test]
#[ignore = "needs Chromium and tests/browser/node_modules: make browser-hls-js"]
fn hls_js_switches_between_every_rendition() {
    // 720p in, 720p/480p/240p out: three rungs a 2-core machine keeps real
    // time with while Chromium decodes.
    let clip = test_clip(1280, 720, 60, 2500);
    let work = TempDir::new("transcode-switch");
    let config = work.path().join("ugc.toml");
    std::fs::write(
        &config,
        "[transcode]\npreset = \"superfast\"\n[transcode.profiles.small]\nrenditions = [\n\
         { name = \"720p\", height = 720, video_kbps = 1800, audio_kbps = 128 },\n\
         { name = \"480p\", height = 480, video_kbps = 900, audio_kbps = 96 },\n\
         { name = \"240p\", height = 240, video_kbps = 300, audio_kbps = 64 },\n]\n",
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let key = server.create_stream("abr", "\"transcode\": \"off\"");
    let mut publisher = publish_file(&clip, &server.rtmp_url(&key));
    wait_until(Duration::from_secs(15), || {
        server.get("/live/abr/index.m3u8").status == 200
    })
    .expect("stream is live");
    patch_transcode(&server, "abr", "small");
    let mut m = String::new();
    wait_until(Duration::from_secs(20), || {
        m = server.get("/live/abr/index.m3u8").text();
        variants(&m).len() == 3
    })
    .unwrap_or_else(|| panic!("three renditions; master: {m}\nlog:\n{}", server.log()));

    let stdout = play_hls_js(&[
        "--url",
        &server.url("/live/abr/index.m3u8"),
        "--switch",
        "5",
    ]);
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(r["started"], true, "{stdout}");
    assert_eq!(r["errors"], serde_json::json!([]), "{stdout}");
    let levels = r["levels"].as_array().unwrap();
    let mut sizes: Vec<(u64, u64)> = levels
        .iter()
        .map(|l| (l["width"].as_u64().unwrap(), l["height"].as_u64().unwrap()))
        .collect();
    sizes.sort();
    assert_eq!(sizes, [(426, 240), (854, 480), (1280, 720)], "{stdout}");
    let switches = r["switches"].as_array().unwrap();
    let mut visited: Vec<u64> = switches
        .iter()
        .map(|s| s["level"].as_u64().unwrap())
        .collect();
    visited.sort();
    assert_eq!(visited, [0, 1, 2], "every level once: {stdout}");
    for s in switches {
        assert_eq!(s["already_on"], false, "not a switch: {s}");
        assert!(!s["switched_ms"].is_null(), "no LEVEL_SWITCHED: {s}");
        assert_eq!(s["size_matched"], true, "decoded size: {s}");
        assert_eq!(s["still_matched"], true, "stayed on the level: {s}");
        let advanced = s["advanced_s"].as_f64().unwrap();
        assert!(
            advanced >= 2.5,
            "playback advanced {advanced} s in 5 s: {s}"
        );
    }
    assert!(r["advanced_s"].as_f64().unwrap() >= 15.0, "{stdout}");
    publisher.kill();
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
}
