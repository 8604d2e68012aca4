//! End to end: a stream with a main and a backup publisher (two real ffmpeg
//! encoders, as vMix or a hardware encoder with a backup URL sends). Killing
//! the main one hands the stream to the backup within one GOP, the main one
//! coming back takes it back after the hysteresis, and what viewers get
//! stays one timeline: ffprobe over every segment served finds timestamps
//! that never go back and no discontinuity.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

const STREAM: &str = "live/fo";

/// A metric of the stream, by name.
fn stream_metric(server: &Server, name: &str) -> Option<f64> {
    metric_sample(server, &format!("{name}{{stream=\"{STREAM}\"}}"))
}

/// `ugc_stream_active_source` of the stream: 0 main, 1 backup, 2 fallback.
fn active_source(server: &Server) -> Option<f64> {
    stream_metric(server, "ugc_stream_active_source")
}

/// `ugc_stream_fallback_seconds_total` of the stream.
fn fallback_seconds(server: &Server) -> f64 {
    stream_metric(server, "ugc_stream_fallback_seconds_total").unwrap_or(0.0)
}

/// `ugc_stream_source_switches_total` of the stream.
fn switches(server: &Server) -> f64 {
    stream_metric(server, "ugc_stream_source_switches_total").unwrap_or(0.0)
}

/// The backup URL of a stream key on this server.
fn backup_url(server: &Server, key: &str) -> String {
    server.rtmp_url(key).replace("/live/", "/backup/")
}

/// Keeps every fMP4 segment the live playlist lists, by sequence number.
#[derive(Default)]
struct Recorder {
    init: Option<Vec<u8>>,
    segments: BTreeMap<u64, (bool, Vec<u8>)>,
}

impl Recorder {
    fn poll(&mut self, server: &Server) {
        let r = server.get(&format!("/{STREAM}/mono.m3u8"));
        if r.status != 200 {
            return;
        }
        for seg in parse_media_playlist(&r.text()) {
            if self.segments.contains_key(&seg.msn) {
                continue;
            }
            if self.init.is_none() {
                let map = seg.map.as_deref().expect("EXT-X-MAP");
                let init = server.get(&format!("/{STREAM}/{map}"));
                assert_eq!(init.status, 200);
                self.init = Some(init.body.clone());
            }
            let body = server.get(&format!("/{STREAM}/{}", seg.uri));
            if body.status == 200 {
                self.segments
                    .insert(seg.msn, (seg.discontinuity, body.body.clone()));
            }
        }
    }
}

/// Per stream of `file`, the packets' DTS (s) in file order.
fn packet_dts(file: &std::path::Path) -> BTreeMap<String, Vec<f64>> {
    let out = run(Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "packet=codec_type,dts_time"])
        .args(["-of", "csv=p=0"])
        .arg(file));
    assert!(out.status.success());
    let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut it = line.split(',');
        let (Some(kind), Some(dts)) = (it.next(), it.next()) else {
            continue;
        };
        if let Ok(d) = dts.parse() {
            by.entry(kind.to_owned()).or_default().push(d);
        }
    }
    by
}

#[test]
fn backup_publisher_stands_in_for_the_main_one_and_hands_back() {
    let work = TempDir::new("failover");
    let hooks = WebhookReceiver::start();
    let config = work.path().join("ugc.toml");
    std::fs::write(
        &config,
        format!(
            "[webhooks]\nurls = [\"{}\"]\nsecret = \"hook-secret\"\n",
            hooks.url
        ),
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let key = server.create_stream("fo", "");
    let mut rec = Recorder::default();
    let mut main = publish_live(640, 360, &server.rtmp_url(&key));
    wait_until(Duration::from_secs(30), || {
        rec.poll(&server);
        !rec.segments.is_empty()
    })
    .expect("the stream is packaged");
    let mut backup = publish_live(640, 360, &backup_url(&server, &key));
    wait_until(Duration::from_secs(30), || {
        rec.poll(&server);
        rec.segments.len() >= 4
    })
    .expect("the stream goes on");
    assert_eq!(active_source(&server), Some(0.0), "main is live");
    assert_eq!(switches(&server), 0.0, "the backup stands by");

    // Main dies (its connection closes): the backup's next keyframe (GOP
    // is 1 s) carries the stream.
    main.kill();
    let killed = Instant::now();
    let took = wait_until(Duration::from_secs(10), || {
        rec.poll(&server);
        active_source(&server) == Some(1.0)
    })
    .expect("the backup took over");
    eprintln!(
        "switch to the backup: {} ms after the kill",
        took.as_millis()
    );
    assert!(took <= Duration::from_millis(2_500), "{took:?}");
    let seq_at_switch = rec.segments.keys().last().copied().unwrap_or(0);
    wait_until(Duration::from_secs(15), || {
        rec.poll(&server);
        rec.segments.keys().filter(|m| **m > seq_at_switch).count() >= 2
    })
    .expect("segments from the backup");

    // Main comes back: it takes over after 5 s of sending, on a keyframe.
    let mut main = publish_live(640, 360, &server.rtmp_url(&key));
    let back = wait_until(Duration::from_secs(20), || {
        rec.poll(&server);
        active_source(&server) == Some(0.0)
    })
    .expect("main took back over");
    eprintln!(
        "back to main: {} ms after it restarted ({} ms after the kill)",
        back.as_millis(),
        killed.elapsed().as_millis()
    );
    assert!(back >= Duration::from_secs(5), "hysteresis: {back:?}");
    assert!(back <= Duration::from_secs(10), "{back:?}");
    assert_eq!(switches(&server), 2.0);
    let seq_back = rec.segments.keys().last().copied().unwrap_or(0);
    wait_until(Duration::from_secs(15), || {
        rec.poll(&server);
        rec.segments.keys().filter(|m| **m > seq_back).count() >= 2
    })
    .expect("segments from main again");
    main.kill();
    backup.kill();

    // The operator's webhook heard of both switches, signed.
    let name = STREAM.trim_start_matches("live/");
    let expected = [("main", "backup"), ("backup", "main")].map(|(f, t)| (f.into(), t.into()));
    wait_until(Duration::from_secs(5), || hooks.switches(name) == expected)
        .unwrap_or_else(|| panic!("webhooks: {:?}", hooks.switches(name)));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (head, body) in hooks.requests() {
        let sig = head
            .lines()
            .find_map(|l| l.strip_prefix("x-ugc-signature: "))
            .unwrap_or_else(|| panic!("unsigned: {head}"));
        assert!(
            ugc_auth::webhook::verify(b"hook-secret", sig, &body, now, 300),
            "{head}"
        );
    }

    // Everything viewers got, as one file: no discontinuity, consecutive
    // segments, each stream's DTS strictly increasing, audio and video
    // ending together.
    let msns: Vec<u64> = rec.segments.keys().copied().collect();
    for w in msns.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a segment was missed: {msns:?}");
    }
    assert!(
        rec.segments.values().all(|(disc, _)| !disc),
        "same encoder settings: no discontinuity"
    );
    let path = work.path().join("all.mp4");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(rec.init.as_ref().unwrap()).unwrap();
    for (_, body) in rec.segments.values() {
        f.write_all(body).unwrap();
    }
    drop(f);
    let errors = decode_errors(&path);
    assert!(errors.trim().is_empty(), "{errors}");
    let dts = packet_dts(&path);
    for (kind, d) in &dts {
        for w in d.windows(2) {
            assert!(w[1] > w[0], "{kind} DTS goes from {} to {}", w[0], w[1]);
        }
    }
    let (v, a) = (&dts["video"], &dts["audio"]);
    let span = v.last().unwrap() - v.first().unwrap();
    assert!(span >= 15.0, "{span} s recorded");
    let drift = (v.last().unwrap() - a.last().unwrap()).abs();
    assert!(drift < 0.1, "audio and video end {drift} s apart");
}

/// A server with the slate on and stream `fo` packaged from a main
/// publisher, then a backup standing by for 3 s: (server, key, main,
/// backup).
fn main_and_backup() -> (Server, String, Proc, Proc) {
    let server = Server::start(&["--fallback", "slate"]);
    let key = server.create_stream("fo", "");
    let main = publish_live(640, 360, &server.rtmp_url(&key));
    let mut rec = Recorder::default();
    wait_until(Duration::from_secs(30), || {
        rec.poll(&server);
        rec.segments.len() >= 2
    })
    .expect("the stream is packaged");
    let backup = publish_live(640, 360, &backup_url(&server, &key));
    std::thread::sleep(Duration::from_secs(3));
    (server, key, main, backup)
}

/// hls.js in headless Chromium plays through a failover and back, LL-HLS
/// then classic HLS: no error, playback keeps advancing, no freeze of a
/// second or more at either switch.
#[test]
#[ignore = "needs Chromium and tests/browser/node_modules: run by `make browser-hls-js`"]
fn hls_js_plays_through_a_failover_and_back() {
    let (server, key, mut main, mut backup) = main_and_backup();
    for low_latency in ["1", "0"] {
        let url = server.url(&format!("/{STREAM}/index.m3u8"));
        let player = std::thread::spawn(move || {
            play_hls_js(&[
                "--url",
                &url,
                "--seconds",
                "30",
                "--low-latency",
                low_latency,
            ])
        });
        // Playing by then; kill main, bring it back, let it take over.
        std::thread::sleep(Duration::from_secs(7));
        main.kill();
        wait_until(Duration::from_secs(10), || {
            active_source(&server) == Some(1.0)
        })
        .expect("the backup took over");
        std::thread::sleep(Duration::from_secs(3));
        main = publish_live(640, 360, &server.rtmp_url(&key));
        wait_until(Duration::from_secs(15), || {
            active_source(&server) == Some(0.0)
        })
        .expect("main took back over");
        let stdout = player.join().expect("player thread");
        let num = |k: &str| report_number(&stdout, k);
        eprintln!("hls.js (low latency {low_latency}) through a failover: {stdout}");
        assert!(stdout.contains("\"started\":true"), "{stdout}");
        assert!(stdout.contains("\"errors\":[]"), "{stdout}");
        assert!(num("watched_s") >= 29.0, "{stdout}");
        assert!(num("advanced_s") >= 27.0, "{stdout}");
        assert!(num("longest_freeze_s") < 1.0, "froze: {stdout}");
    }
    assert_eq!(switches(&server), 4.0);
    // Both publishers gone: the slate (other codec parameters: a
    // discontinuity and a new init segment), then main back.
    for low_latency in ["1", "0"] {
        let url = server.url(&format!("/{STREAM}/index.m3u8"));
        let player = std::thread::spawn(move || {
            play_hls_js(&[
                "--url",
                &url,
                "--seconds",
                "30",
                "--low-latency",
                low_latency,
            ])
        });
        std::thread::sleep(Duration::from_secs(7));
        main.kill();
        backup.kill();
        wait_until(Duration::from_secs(10), || {
            active_source(&server) == Some(2.0)
        })
        .expect("the slate took over");
        std::thread::sleep(Duration::from_secs(3));
        main = publish_live(640, 360, &server.rtmp_url(&key));
        backup = publish_live(640, 360, &backup_url(&server, &key));
        wait_until(Duration::from_secs(15), || {
            active_source(&server) == Some(0.0)
        })
        .expect("main took back over");
        let stdout = player.join().expect("player thread");
        eprintln!("hls.js (low latency {low_latency}) through the slate: {stdout}");
        assert!(stdout.contains("\"started\":true"), "{stdout}");
        assert!(stdout.contains("\"errors\":[]"), "{stdout}");
        let num = |k: &str| report_number(&stdout, k);
        assert!(num("advanced_s") >= 27.0, "{stdout}");
        assert!(num("longest_freeze_s") < 1.0, "froze: {stdout}");
    }
    main.kill();
    backup.kill();
}

/// A main publisher that comes and goes (2 s up, 2 s down, for 30 s) with
/// a steady backup: the backup takes over once and keeps the stream (main
/// never sends the 5 s it needs to take back), and hls.js plays the whole
/// 40 s in LL-HLS with no error and no freeze of a second.
#[test]
#[ignore = "needs Chromium and tests/browser/node_modules: run by `make browser-hls-js`"]
fn hls_js_plays_through_a_flapping_main_publisher() {
    let (server, key, mut main, mut backup) = main_and_backup();
    let url = server.url(&format!("/{STREAM}/index.m3u8"));
    let player = std::thread::spawn(move || {
        play_hls_js(&["--url", &url, "--seconds", "40", "--low-latency", "1"])
    });
    std::thread::sleep(Duration::from_secs(5));
    let start = Instant::now();
    let mut flaps = 0;
    // Which source is live, whenever it changes: (ms into the flapping,
    // ugc_stream_active_source).
    let mut seen: Vec<(u128, Option<f64>)> = Vec::new();
    let watch = |seen: &mut Vec<(u128, Option<f64>)>, d: Duration| {
        let until = Instant::now() + d;
        while Instant::now() < until {
            let a = active_source(&server);
            if seen.last().map(|l| l.1) != Some(a) {
                seen.push((start.elapsed().as_millis(), a));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    while start.elapsed() < Duration::from_secs(30) {
        main.kill();
        watch(&mut seen, Duration::from_secs(2));
        main = publish_live(640, 360, &server.rtmp_url(&key));
        flaps += 1;
        watch(&mut seen, Duration::from_secs(2));
    }
    // Down for good (up for longer, it would take back over, as it should).
    main.kill();
    let stdout = player.join().expect("player thread");
    let switched = switches(&server);
    backup.kill();
    let num = |k: &str| report_number(&stdout, k);
    eprintln!("hls.js through {flaps} flaps of main, live sources {seen:?}: {stdout}");
    assert!(flaps >= 6, "{flaps}");
    assert!(stdout.contains("\"started\":true"), "{stdout}");
    assert!(stdout.contains("\"errors\":[]"), "{stdout}");
    assert!(num("advanced_s") >= 36.0, "{stdout}");
    assert!(num("longest_freeze_s") < 1.0, "froze: {stdout}");
    // Hysteresis: one switch to the backup, none back.
    assert_eq!(switched, 1.0, "{flaps} flaps: {seen:?}");
}

/// Without any publisher the stream plays its slate ("stream will be back
/// shortly", silence) in the stream's own picture size, for the publisher
/// grace; the publisher coming back takes over again, and a publisher gone
/// for good ends the stream after the grace.
#[test]
fn the_slate_stands_in_while_the_stream_waits_for_its_publisher() {
    let server = Server::start(&["--publisher-grace-s", "10", "--fallback", "slate"]);
    let work = TempDir::new("slate");
    let key = server.create_stream("fo", "");
    let mut main = publish_live(640, 360, &server.rtmp_url(&key));
    // Every segment listed, fetched (with its init segment) when first seen.
    let mut segs: BTreeMap<u64, PlaylistSegment> = BTreeMap::new();
    let mut files: BTreeMap<u64, std::path::PathBuf> = BTreeMap::new();
    let dir = work.path().to_owned();
    let poll = |segs: &mut BTreeMap<u64, PlaylistSegment>,
                files: &mut BTreeMap<u64, std::path::PathBuf>| {
        let r = server.get(&format!("/{STREAM}/mono.m3u8"));
        if r.status == 200 {
            for s in parse_media_playlist(&r.text()) {
                if let std::collections::btree_map::Entry::Vacant(e) = segs.entry(s.msn) {
                    files.insert(s.msn, fetch_fmp4_segment(&server, STREAM, &s, &dir));
                    e.insert(s);
                }
            }
        }
    };
    wait_until(Duration::from_secs(30), || {
        poll(&mut segs, &mut files);
        segs.len() >= 2
    })
    .expect("the stream is packaged");
    main.kill();
    let killed = Instant::now();
    let took = wait_until(Duration::from_secs(10), || {
        poll(&mut segs, &mut files);
        active_source(&server) == Some(2.0)
    })
    .expect("the slate took over");
    eprintln!("slate live {} ms after the kill", took.as_millis());
    let before = segs.keys().last().copied().unwrap_or(0);
    wait_until(Duration::from_secs(15), || {
        poll(&mut segs, &mut files);
        segs.keys().filter(|m| **m > before).count() >= 2
    })
    .expect("slate segments");
    // A slate segment: decodes, keyframe first, the stream's size, audio.
    let slate = segs
        .keys()
        .filter(|m| **m > before)
        .nth(1)
        .copied()
        .unwrap();
    let path = files[&slate].clone();
    let errors = decode_errors(&path);
    assert!(errors.trim().is_empty(), "{errors}");
    assert_eq!(video_keyframes(&path).first(), Some(&true));
    let streams = probe_streams(&path);
    let v = streams.iter().find(|s| s.0 == "video").expect("video");
    assert_eq!((v.2, v.3), (640, 360));
    assert!(streams.iter().any(|s| s.0 == "audio"), "{streams:?}");

    // The publisher is back: it takes over from the slate on its first
    // keyframe (no hysteresis from a slate).
    let mut main = publish_live(640, 360, &server.rtmp_url(&key));
    let back_in = wait_until(Duration::from_secs(20), || {
        poll(&mut segs, &mut files);
        active_source(&server) == Some(0.0)
    })
    .expect("the publisher took back over");
    eprintln!(
        "publisher back {} ms after it restarted",
        back_in.as_millis()
    );
    // The time viewers had the slate (a segment of it at least), within
    // the outage, and no longer growing once the publisher is back.
    let on_slate = fallback_seconds(&server);
    let outage = killed.elapsed().as_secs_f64();
    assert!(
        on_slate > 1.0 && on_slate <= outage,
        "{on_slate} s on the slate, of {outage} s"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fallback_seconds(&server), on_slate);
    assert!(back_in < Duration::from_secs(4), "{back_in:?}");
    let back = segs.keys().last().copied().unwrap_or(0);
    wait_until(Duration::from_secs(15), || {
        poll(&mut segs, &mut files);
        segs.keys().filter(|m| **m > back).count() >= 2
    })
    .expect("segments from the publisher again");
    // Every segment decodes with its own init segment; the track configs
    // changed twice (to the slate, back), so two discontinuities, no more.
    let msns: Vec<u64> = segs.keys().copied().collect();
    for w in msns.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a segment was missed: {msns:?}");
    }
    let discontinuities = segs.values().filter(|s| s.discontinuity).count();
    assert_eq!(
        discontinuities,
        2,
        "{:?}",
        segs.values().collect::<Vec<_>>()
    );
    for (msn, path) in &files {
        let errors = decode_errors(path);
        assert!(errors.trim().is_empty(), "segment {msn}: {errors}");
    }

    // Gone for good: the slate plays for the grace, then the stream ends.
    main.kill();
    wait_until(Duration::from_secs(10), || {
        active_source(&server) == Some(2.0)
    })
    .expect("the slate took over again");
    let ended = wait_until(Duration::from_secs(20), || active_source(&server).is_none())
        .expect("the stream ended after the grace");
    eprintln!(
        "stream ended {} ms after the slate took over",
        ended.as_millis()
    );
    assert!(ended >= Duration::from_secs(8), "{ended:?}");
}

/// A 4 s 320x240 25 fps clip of one colour (`c`, an FFmpeg colour name)
/// with a tone, at `path`.
fn coloured_clip(path: &std::path::Path, c: &str) {
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("color=c={c}:size=320x240:rate=25:duration=4"))
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=4"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .arg(path)
        .status()
        .expect("ffmpeg");
    assert!(made.success());
}

/// Stream `fo` of `server`, packaged while `publishers` publish; `stop`
/// kills them. Waits for the fallback to go live and returns the second
/// segment after that, written in `dir`, after checking it: the stream's
/// size (640x360), keyframe first, with sound, decoding cleanly.
fn fallback_segment(
    server: &Server,
    dir: &std::path::Path,
    stop: impl FnOnce(),
) -> std::path::PathBuf {
    let mut segs: BTreeMap<u64, std::path::PathBuf> = BTreeMap::new();
    let mut poll = || {
        let r = server.get(&format!("/{STREAM}/mono.m3u8"));
        if r.status == 200 {
            for s in parse_media_playlist(&r.text()) {
                segs.entry(s.msn)
                    .or_insert_with(|| fetch_fmp4_segment(server, STREAM, &s, dir));
            }
        }
        segs.keys().last().copied()
    };
    wait_until(Duration::from_secs(30), || poll().is_some_and(|m| m >= 1))
        .expect("the stream is packaged");
    stop();
    let took = wait_until(Duration::from_secs(15), || {
        poll();
        active_source(server) == Some(2.0)
    })
    .expect("the fallback took over");
    eprintln!("fallback live {} ms after the kill", took.as_millis());
    let before = poll().unwrap_or(0);
    let mut last = before;
    wait_until(Duration::from_secs(15), || {
        last = poll().unwrap_or(0);
        last >= before + 2
    })
    .expect("segments of the fallback");
    let path = poll().map(|_| segs[&(before + 2)].clone()).unwrap();
    let errors = decode_errors(&path);
    assert!(errors.trim().is_empty(), "{errors}");
    assert_eq!(video_keyframes(&path).first(), Some(&true));
    let streams = probe_streams(&path);
    let v = streams.iter().find(|s| s.0 == "video").expect("video");
    assert_eq!((v.2, v.3), (640, 360), "the stream's size");
    assert!(streams.iter().any(|s| s.0 == "audio"), "{streams:?}");
    path
}

/// `--fallback FILE`: the operator's own clip (here red, 320x240 at
/// 25 fps with a tone) stands in, encoded in the stream's shape: the
/// stream's size, keyframe first, with sound, decoding cleanly.
#[test]
fn the_operators_fallback_file_stands_in() {
    let work = TempDir::new("fallback-file");
    let clip = work.path().join("be-right-back.mp4");
    coloured_clip(&clip, "red");
    let server = Server::start(&["--fallback", clip.to_str().unwrap()]);
    let key = server.create_stream("fo", "");
    let mut main = publish_live(640, 360, &server.rtmp_url(&key));
    let path = fallback_segment(&server, work.path(), || main.kill());
    let (r, g, b) = mean_rgb(&path);
    assert!(r > 200.0 && g < 60.0 && b < 60.0, "red: {r} {g} {b}");
}

/// An AV1 stream (FFmpeg 9, SVT-AV1 over Enhanced RTMP) gets an AV1 slate
/// (libaom), so a player keeps its AV1 decoder through the outage: the
/// slate segments are `av01` at the stream's size, keyframe first, with
/// sound, decoding cleanly, and black.
#[test]
fn an_av1_streams_slate_is_av1() {
    let work = TempDir::new("fallback-av1");
    let server = Server::start(&["--fallback", "slate"]);
    let key = server.create_stream("fo", "");
    let mut main = Proc(
        Command::new(ffmpeg9())
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args([
                "-c:v",
                "libsvtav1",
                "-preset",
                "12",
                "-g",
                "30",
                "-svtav1-params",
            ])
            .args(["lp=1:scd=0", "-c:a", "aac", "-f", "flv"])
            .arg(server.rtmp_url(&key))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start ffmpeg 9"),
    );
    let path = fallback_segment(&server, work.path(), || main.kill());
    let codec = run(Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=codec_name", "-of", "csv=p=0"])
        .arg(&path));
    let codec = String::from_utf8_lossy(&codec.stdout).trim().to_owned();
    assert_eq!(codec, "av1", "the slate keeps the stream's codec");
    let (r, g, b) = mean_rgb(&path);
    assert!(r + g + b < 60.0, "the slate is black: {r} {g} {b}");
}

/// A stream's own settings: `source_timeout_ms` 1000 moves a stalled
/// main (SIGSTOP: connection open, nothing sent) to the backup within 1 s
/// and one GOP (1 s), where the server's 3 s would take 3-4 s; its
/// `fallback`, a file name in `--fallback-dir` (green), stands in for both
/// instead of the server's slate; set to a URL through the API, the next
/// outage loops that video (blue, served over HTTP).
#[test]
fn a_streams_own_timeout_and_fallback_apply() {
    let work = TempDir::new("fallback-own");
    let loops = work.path().join("loops");
    std::fs::create_dir_all(&loops).unwrap();
    coloured_clip(&loops.join("green.mp4"), "lime");
    let server = Server::start(&[
        "--fallback",
        "slate",
        "--fallback-dir",
        loops.to_str().unwrap(),
    ]);
    let key = server.create_stream(
        "fo",
        "\"source_timeout_ms\": 1000, \"fallback\": \"green.mp4\"",
    );
    let mut main = publish_live(640, 360, &server.rtmp_url(&key));
    let mut backup = None;
    let path = fallback_segment(&server, work.path(), || {
        backup = Some(publish_live(640, 360, &backup_url(&server, &key)));
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(active_source(&server), Some(0.0), "main is live");
        let stop = Command::new("kill")
            .args(["-STOP", &main.0.id().to_string()])
            .status()
            .unwrap();
        assert!(stop.success());
        let took = wait_until(Duration::from_secs(10), || {
            active_source(&server) == Some(1.0)
        })
        .expect("the backup took over");
        eprintln!("a stalled main: the backup {} ms after", took.as_millis());
        assert!(
            (Duration::from_millis(900)..Duration::from_millis(2_600)).contains(&took),
            "1 s timeout + 1 s GOP: {took:?}"
        );
        main.kill();
        backup.as_mut().unwrap().kill();
    });
    let (r, g, b) = mean_rgb(&path);
    assert!(g > 200.0 && r < 60.0 && b < 60.0, "green: {r} {g} {b}");

    // The stream's fallback set to a URL: the next outage loops it.
    let blue = work.path().join("blue.mp4");
    coloured_clip(&blue, "blue");
    let url = serve_file(std::fs::read(&blue).unwrap());
    let r = http_send(
        server.http,
        "PATCH",
        "/api/v1/streams/fo",
        Some(ADMIN_TOKEN),
        Some(&format!("{{\"fallback\": \"{url}\"}}")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut main = publish_live(640, 360, &server.rtmp_url(&key));
    wait_until(Duration::from_secs(20), || {
        active_source(&server) == Some(0.0)
    })
    .expect("main took over from the fallback");
    let path = fallback_segment(&server, work.path(), || main.kill());
    let (r, g, b) = mean_rgb(&path);
    assert!(b > 200.0 && r < 60.0 && g < 60.0, "blue: {r} {g} {b}");
}

/// Serves `body` as `video/mp4` to every HTTP request on a loopback port,
/// in a thread: its URL.
fn serve_file(body: Vec<u8>) -> String {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/blue.mp4", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(&body);
        }
    });
    url
}

/// A server with a two-rung ladder (360p and 180p, ultrafast) and stream
/// `fo` on it, published by a main and a backup: (server, key, main,
/// backup), with both renditions packaged.
fn ladder_main_and_backup(work: &TempDir) -> (Server, String, Proc, Proc) {
    let config = work.path().join("ugc.toml");
    std::fs::write(
        &config,
        "[transcode]\npreset = \"ultrafast\"\n[transcode.profiles.small]\nrenditions = [\n\
         { name = \"360p\", height = 360, video_kbps = 600, audio_kbps = 64 },\n\
         { name = \"180p\", height = 180, video_kbps = 200, audio_kbps = 48 },\n]\n",
    )
    .unwrap();
    let server = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        "--window-segments",
        "30",
    ]);
    let key = server.create_stream("fo", "\"transcode\": \"small\"");
    let main = publish_live(640, 360, &server.rtmp_url(&key));
    wait_until(Duration::from_secs(40), || {
        RUNGS.iter().all(|r| {
            let p = server.get(&format!("/{STREAM}/{r}/mono.m3u8"));
            p.status == 200 && parse_media_playlist(&p.text()).len() >= 2
        })
    })
    .unwrap_or_else(|| panic!("both renditions are packaged; log:\n{}", server.log()));
    let backup = publish_live(640, 360, &backup_url(&server, &key));
    std::thread::sleep(Duration::from_secs(3));
    (server, key, main, backup)
}

const RUNGS: [&str; 2] = ["360p", "180p"];

/// The fallback goes in before the ladder, so every rendition switches at
/// the same point: main killed (the backup), then the backup (the slate);
/// both renditions' playlists then list the same segments (numbers,
/// durations within 1 ms: keyframes stay aligned; no discontinuity, as
/// the renditions' encoders and so their codec parameters stay), and the
/// first slate picture (black) is in the same segment of each.
#[test]
fn every_rendition_of_a_ladder_switches_at_the_same_segment() {
    let work = TempDir::new("fallback-ladder");
    let (server, _key, mut main, mut backup) = ladder_main_and_backup(&work);
    main.kill();
    wait_until(Duration::from_secs(10), || {
        active_source(&server) == Some(1.0)
    })
    .expect("the backup took over");
    std::thread::sleep(Duration::from_secs(4));
    backup.kill();
    wait_until(Duration::from_secs(10), || {
        active_source(&server) == Some(2.0)
    })
    .expect("the slate took over");
    let list_of =
        |r: &str| parse_media_playlist(&server.get(&format!("/{STREAM}/{r}/mono.m3u8")).text());
    let last_msn = |l: &Vec<PlaylistSegment>| l.last().map_or(0, |s| s.msn);
    let at_slate: Vec<u64> = RUNGS.iter().map(|r| last_msn(&list_of(r))).collect();
    // Three more segments in each (the slate's).
    let mut lists = Vec::new();
    wait_until(Duration::from_secs(30), || {
        lists = RUNGS.iter().map(|r| list_of(r)).collect();
        lists
            .iter()
            .zip(&at_slate)
            .all(|(l, at)| last_msn(l) >= at + 3)
    })
    .unwrap_or_else(|| panic!("slate segments in every rendition: {lists:?}"));
    // The same segments: from the first number both list to the last.
    let from = lists.iter().map(|l| l[0].msn).max().unwrap();
    let to = lists.iter().map(|l| l.last().unwrap().msn).min().unwrap();
    let span = |l: &Vec<PlaylistSegment>| -> Vec<(u64, bool, i64)> {
        l.iter()
            .filter(|s| (from..=to).contains(&s.msn))
            .map(|s| (s.msn, s.discontinuity, (s.duration * 1000.0).round() as i64))
            .collect()
    };
    let (a, b) = (span(&lists[0]), span(&lists[1]));
    assert!(a.len() >= 6, "{a:?}");
    assert!(
        a.iter().all(|s| !s.1),
        "no discontinuity in a rendition: {a:?}"
    );
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.0, x.1), (y.0, y.1), "360p {a:?}\n180p {b:?}");
        assert!((x.2 - y.2).abs() <= 1, "durations: 360p {a:?}\n180p {b:?}");
    }
    // The first segment whose first picture is the slate (black), per rung.
    let first_slate: Vec<u64> = RUNGS
        .iter()
        .zip(&lists)
        .map(|(r, l)| {
            l.iter()
                .filter(|s| (from..=to).contains(&s.msn))
                .find(|s| {
                    let path =
                        fetch_fmp4_segment(&server, &format!("{STREAM}/{r}"), s, work.path());
                    let (r, g, b) = mean_rgb(&path);
                    r + g + b < 60.0
                })
                .map(|s| s.msn)
                .expect("a slate segment")
        })
        .collect();
    eprintln!("renditions: {a:?}; first slate segment per rung {first_slate:?}");
    assert_eq!(first_slate[0], first_slate[1], "{first_slate:?}");
}

/// hls.js plays the ladder's multivariant playlist and is forced through
/// every rendition (tests/browser/play.mjs `--switch`) while main is
/// killed (the backup) and then the backup (the slate): every switch lands,
/// no error, no freeze of a second, playback goes on at each level.
#[test]
#[ignore = "needs Chromium and tests/browser/node_modules: run by `make browser-hls-js`"]
fn hls_js_switches_renditions_during_a_failover() {
    let work = TempDir::new("fallback-ladder-hls");
    let (server, _key, mut main, mut backup) = ladder_main_and_backup(&work);
    let url = server.url(&format!("/{STREAM}/index.m3u8"));
    let player = std::thread::spawn(move || play_hls_js(&["--url", &url, "--switch", "8"]));
    std::thread::sleep(Duration::from_secs(6));
    main.kill();
    wait_until(Duration::from_secs(10), || {
        active_source(&server) == Some(1.0)
    })
    .expect("the backup took over");
    std::thread::sleep(Duration::from_secs(5));
    backup.kill();
    wait_until(Duration::from_secs(10), || {
        active_source(&server) == Some(2.0)
    })
    .expect("the slate took over");
    let stdout = player.join().expect("player thread");
    eprintln!("hls.js switching renditions through a failover: {stdout}");
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(r["started"], true, "{stdout}");
    assert_eq!(r["errors"], serde_json::json!([]), "{stdout}");
    let freeze = r["longest_freeze_s"].as_f64().unwrap();
    assert!(freeze < 1.0, "froze {freeze} s: {stdout}");
    let switches = r["switches"].as_array().unwrap();
    assert_eq!(switches.len(), 2, "{stdout}");
    for s in switches {
        assert!(!s["switched_ms"].is_null(), "no LEVEL_SWITCHED: {s}");
        assert_eq!(s["size_matched"], true, "decoded size: {s}");
        let advanced = s["advanced_s"].as_f64().unwrap();
        assert!(
            advanced >= 4.0,
            "playback advanced {advanced} s in 8 s: {s}"
        );
    }
}
