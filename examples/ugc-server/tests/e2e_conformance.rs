//! End to end: what players and caches rely on across a stream's life
//! (issue #21): media URIs never name other bytes when a stream is published
//! again (checked through the nginx edge), `#EXT-X-TARGETDURATION` holds
//! across keyframes the encoder puts early, and every LL-HLS preload hint
//! names a part that is served.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::*;

/// `#EXT-X-TARGETDURATION` and every `#EXTINF` (seconds) of a playlist.
fn durations(playlist: &str) -> (u64, Vec<f64>) {
    let target = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no target duration:\n{playlist}"));
    let extinf = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|v| v.trim_end_matches(',').parse().ok())
        .collect();
    (target, extinf)
}

/// A stream is published, ends, and is published again at another size.
/// Each broadcast's media URIs (init, segments, parts, the TS variant) are
/// fetched through an nginx `proxy_cache` edge: no URI of the second names
/// bytes of the first, and the second's init segment, as the edge serves it,
/// is the new size. Before, both broadcasts started at `init-0.mp4` and
/// `seg-0.m4s`, served `immutable`, and the edge answered the second
/// broadcast with the first one's bytes.
#[test]
fn a_new_broadcast_never_reuses_a_media_uri_through_an_edge() {
    let server = Server::start(&["--publisher-grace-s", "1"]);
    let edge = NginxEdge::start(server.http);
    let key = server.create_stream("again", "");
    let work = TempDir::new("again");
    let mut bytes_of: HashMap<String, Vec<u8>> = HashMap::new();
    let mut inits = Vec::new();
    for (clip, height) in [
        (test_clip(640, 360, 6, 600), 360),
        (test_clip(320, 180, 6, 300), 180),
    ] {
        let mut publisher = publish_file(&clip, &server.rtmp_url(&key));
        // This broadcast, as the edge serves it: a playlist that does not
        // end and names an init segment not seen before.
        let mut playlist = String::new();
        let live = wait_until(Duration::from_secs(20), || {
            let r = edge.get("/live/again/mono.m3u8");
            playlist = r.text();
            r.status == 200
                && !playlist.contains("#EXT-X-ENDLIST")
                && init_uri(&playlist).is_some_and(|i| !inits.contains(&i))
                && parse_media_playlist(&playlist).len() >= 2
        });
        assert!(live.is_some(), "broadcast {height}p not live:\n{playlist}");
        let init = init_uri(&playlist).unwrap();
        inits.push(init.clone());
        let ts = edge.get("/live/again/mono-ts.m3u8").text();
        let mut files = media_files(&playlist);
        files.extend(media_files(&ts));
        assert!(files.len() >= 4, "{playlist}\n{ts}");
        for f in &files {
            let name = f.to_string();
            let r = edge.get(&format!("/live/again/{name}"));
            if r.status != 200 {
                // A part that left the window between the playlist and now.
                assert!(
                    matches!(f, ugc_dvr::MediaFile::Part(..)),
                    "{name}: {}",
                    r.status
                );
                continue;
            }
            match bytes_of.get(&name) {
                Some(before) => assert!(before == &r.body, "{name} names other bytes now"),
                None => {
                    bytes_of.insert(name, r.body);
                }
            }
        }
        // The init segment and the first segment, as the edge has them,
        // decode at this broadcast's size.
        let seg = parse_media_playlist(&playlist)[0].uri.clone();
        let mut joined = edge.get(&format!("/live/again/{init}")).body;
        joined.extend(edge.get(&format!("/live/again/{seg}")).body);
        let file = work.path().join(format!("{height}.mp4"));
        std::fs::write(&file, &joined).unwrap();
        let video = probe_streams(&file)
            .into_iter()
            .find(|s| s.0 == "video")
            .expect("a video stream");
        assert_eq!(video.3, height, "{init} + {seg} through the edge");
        assert!(wait_until(Duration::from_secs(20), || !publisher.running()).is_some());
        // The stream ends after the grace time.
        let ended = wait_until(Duration::from_secs(10), || {
            server
                .get("/live/again/mono.m3u8")
                .text()
                .contains("#EXT-X-ENDLIST")
        });
        assert!(ended.is_some());
    }
    assert_ne!(inits[0], inits[1]);
}

/// An encoder that puts keyframes early (a scene cut that resets its GOP:
/// keyframes at 0, 2, 4, 5, 7, 9, 10.5, 12.5 s...) keeps
/// `#EXT-X-TARGETDURATION:2` for the stream's life in the LL, classic TS
/// and DVR playlists, and every segment rounds within it (RFC 8216 4.3.3.1,
/// 6.2.1). Before, the 3 s segment [4, 7) raised it to 3 mid-stream.
#[test]
fn the_target_duration_holds_across_early_keyframes() {
    let server = Server::start(&["--dvr-hours", "1"]);
    let key = server.create_stream("cuts", "");
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 1;
    let keyframes = "0,2,4,5,7,9,10.5,12.5,14.5,16.5";
    let mut publisher = Proc(
        std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-t", "18", "-c:v", "libx264", "-preset", "ultrafast"])
            .args(["-g", "600", "-keyint_min", "600", "-sc_threshold", "0"])
            .args(["-force_key_frames", keyframes, "-c:a", "aac"])
            .args(["-f", "flv", &server.rtmp_url(&key)])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start ffmpeg"),
    );
    let mut checked = 0;
    let mut longest: f64 = 0.0;
    let started = Instant::now();
    while publisher.running() && started.elapsed() < Duration::from_secs(40) {
        for path in ["/live/cuts/mono.m3u8", "/live/cuts/mono-ts.m3u8"] {
            let r = server.get(path);
            if r.status != 200 {
                continue;
            }
            let text = r.text();
            let (target, extinf) = durations(&text);
            assert_eq!(target, 2, "{path}:\n{text}");
            for d in extinf {
                assert!(d < 2.5, "{path}: a {d} s segment:\n{text}");
                longest = longest.max(d);
            }
            checked += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(checked > 40, "{checked} playlists checked");
    assert!(longest > 1.9, "{longest}");
    // The recording: one target duration over all of it.
    let start = archive_start(&server, "cuts", since);
    let range = server.get(&format!("/live/cuts/index-{start}-30.m3u8"));
    assert_eq!(range.status, 200, "{}", range.text());
    let text = range.text();
    let (target, extinf) = durations(&text);
    assert_eq!(target, 2, "{text}");
    assert!(extinf.iter().all(|d| *d < 2.5), "{text}");
    assert!(extinf.iter().sum::<f64>() > 14.0, "{text}");
}

/// A player that follows every `#EXT-X-PRELOAD-HINT` (as RFC 8216bis
/// allows) gets every hinted part: for ~10 s of blocking reloads on a live
/// ffmpeg publish, every distinct hint is fetched afterwards and answers 200
/// with a CMAF chunk. Before, the hint at each segment's end named a part
/// that never came (404).
#[test]
fn every_preload_hint_names_a_part_that_is_served() {
    let server = Server::start(&[]);
    let key = server.create_stream("hints", "");
    let _publisher = publish_live(320, 240, &server.rtmp_url(&key));
    let mut text = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            text = server.get("/live/hints/mono.m3u8").text();
            preload_hint(&text).is_some()
        })
        .is_some(),
        "no LL playlist:\n{}",
        server.log()
    );
    let mut hints: Vec<(u64, u32)> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let (m, p) = preload_hint(&text).unwrap();
        if hints.last() != Some(&(m, p)) {
            hints.push((m, p));
        }
        // The next playlist: blocking until the hinted part exists.
        let r = server.get(&format!("/live/hints/mono.m3u8?_HLS_msn={m}&_HLS_part={p}"));
        assert_eq!(r.status, 200, "{m}.{p}: {}", r.text());
        text = r.text();
    }
    assert!(hints.len() > 30, "{hints:?}");
    let session = media_files(&text)[0].session();
    for (m, p) in &hints {
        let name = ugc_dvr::MediaFile::Part(session, *m, *p).to_string();
        let r = server.get(&format!("/live/hints/{name}"));
        assert_eq!(r.status, 200, "hinted {name}");
        assert_eq!(&r.body[4..8], b"moof", "hinted {name}");
    }
}
