//! End to end: the DVR. Real ffmpeg publishes over RTMP; the archive is read
//! back through range playlists (played by ffmpeg), the MP4 export (checked
//! with ffprobe, byte ranges compared) and survives `kill -9`.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::*;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Sum of `#EXTINF` durations of a playlist.
fn playlist_seconds(text: &str) -> f64 {
    parse_media_playlist(text).iter().map(|s| s.duration).sum()
}

/// Plays `url` to the end with ffmpeg; returns its error output.
fn play_errors(url: &str) -> String {
    let out = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i", url])
        .args(["-enc_time_base", "-1", "-f", "null", "-"]));
    let mut s = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        s.push_str(&format!("\nffmpeg exited with {}", out.status));
    }
    s
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn dvr_records_60s_ranges_play_export_has_moov_first_and_ranges() {
    let clip = test_clip(640, 360, 60, 800);
    let server = Server::start(&[]);
    let work = TempDir::new("dvr");
    // The archive depth comes from the control API.
    let key = server.create_stream("rec", "\"dvr_hours\": 2");
    let start = unix_now();
    let mut publisher = publish_file(&clip, &server.rtmp_url(&key));

    // While live: "from the start" is a growing EVENT playlist.
    std::thread::sleep(Duration::from_secs(20));
    let r = server.get(&format!("/live/rec/index-{start}-now.m3u8"));
    assert_eq!(r.status, 200, "{}", r.text());
    let ev = r.text();
    assert!(ev.contains("#EXT-X-PLAYLIST-TYPE:EVENT"), "{ev}");
    assert!(!ev.contains("#EXT-X-ENDLIST"), "{ev}");
    assert!(
        playlist_seconds(&ev) >= 12.0,
        "{} s archived after 20 s",
        playlist_seconds(&ev)
    );

    // Ranges below count from where the server's recording begins, not
    // from when this test took the time (ffmpeg may start seconds later).
    let rec = archive_start(&server, "rec", start);

    // Wait for the 60 s publish to end.
    let ended = wait_until(Duration::from_secs(75), || !publisher.running());
    assert!(ended.is_some(), "publisher did not finish");
    std::thread::sleep(Duration::from_secs(3));

    // Range playlists for several windows: right length (+-1 segment), every
    // segment has a date, ffmpeg plays them without error.
    for (offset, len) in [(4i64, 20u32), (30, 10), (0, 56)] {
        let path = format!("/live/rec/index-{}-{len}.m3u8", rec + offset);
        let r = server.get(&path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let text = r.text();
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD"));
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        let segs = parse_media_playlist(&text);
        assert_eq!(
            text.matches("#EXT-X-PROGRAM-DATE-TIME:").count(),
            segs.len(),
            "a date on every segment"
        );
        let total = playlist_seconds(&text);
        assert!(
            (total - f64::from(len)).abs() <= 2.1,
            "{path}: {total} s listed for {len} s"
        );
        let url = server.url(&path);
        let errors = play_errors(&url);
        assert!(errors.trim().is_empty(), "{path}: {errors}");
        let probed = probe_duration(&url);
        assert!(
            (probed - f64::from(len)).abs() <= 2.2,
            "{path}: ffprobe says {probed} s for {len} s"
        );
    }
    // After the publisher left, the from-now playlist ends once the stream
    // is gone; until then it keeps growing. Either way it lists everything.
    let ev = server
        .get(&format!("/live/rec/index-{start}-now.m3u8"))
        .text();
    assert!(playlist_seconds(&ev) >= 54.0, "{ev}");

    // MP4 export of 30 s: duration +-1 GOP (2 s), plays, moov before mdat.
    let mp4_path = format!("/live/rec/archive-{}-30.mp4", rec + 10);
    let r = server.get(&mp4_path);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        r.header("content-length").and_then(|v| v.parse().ok()),
        Some(r.body.len())
    );
    let mp4 = r.body;
    let moov = box_offset(&mp4, b"moov").expect("moov");
    let mdat = box_offset(&mp4, b"mdat").expect("mdat");
    assert!(moov < mdat, "moov at {moov} must precede mdat at {mdat}");
    let file = work.path().join("export.mp4");
    std::fs::write(&file, &mp4).unwrap();
    let errors = decode_errors(&file);
    assert!(errors.trim().is_empty(), "{errors}");
    let d = probe_duration(file.to_str().unwrap());
    assert!((d - 30.0).abs() <= 2.1, "export lasts {d} s");
    let streams = probe_streams(&file);
    assert!(streams.iter().any(|s| s.0 == "video" && s.2 == 640));
    assert!(streams.iter().any(|s| s.0 == "audio"));
    // Same bytes on a second request; Range requests return those bytes.
    let len = mp4.len();
    for (range, want) in [
        ("bytes=0-99".to_string(), 0..100),
        (
            format!("bytes={}-{}", mdat, mdat + 65_535),
            mdat..mdat + 65_536,
        ),
        (format!("bytes={}-", len - 1000), len - 1000..len),
        ("bytes=-777".to_string(), len - 777..len),
        (format!("bytes={}-{}", len / 2, len * 2), len / 2..len),
    ] {
        let r = http_get_headers(server.http, &mp4_path, &[("Range", &range)]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {}-{}/{len}", want.start, want.end - 1).as_str()),
            "{range}"
        );
        assert!(r.body == mp4[want.clone()], "{range}: bytes differ");
    }
    let r = http_get_headers(
        server.http,
        &mp4_path,
        &[("Range", &format!("bytes={len}-"))],
    );
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );

    // The CLI exports the same range to the same bytes.
    let out = work.path().join("cli.mp4");
    let status = Command::new(server_bin())
        .arg("dvr")
        .arg("export")
        .arg("--data")
        .arg(server.data.path())
        .args(["--stream", "rec", "--from", &(rec + 10).to_string()])
        .args(["--duration", "30", "-o"])
        .arg(&out)
        .env("UGC_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success());
    assert!(std::fs::read(&out).unwrap() == mp4, "CLI export differs");

    // Bad input: clear 4xx, no panic, nothing outside the data dir.
    let future = unix_now() + 3600;
    for (path, want) in [
        (format!("/live/rec/index-{future}-10.m3u8"), 400),
        (format!("/live/rec/archive-{future}-10.mp4"), 400),
        (format!("/live/rec/index-{}-10.m3u8", start - 86_400), 404),
        (format!("/live/rec/index-{}-10.m3u8", start - 86_400), 404),
        (format!("/live/rec/index-{start}--10.m3u8"), 400),
        (format!("/live/rec/index--{start}-10.m3u8"), 400),
        (format!("/live/rec/index-{start}-0.m3u8"), 400),
        (format!("/live/rec/index-{start}-99999999.m3u8"), 400),
        (
            format!("/live/rec/archive-{start}-99999999999999999999999.mp4"),
            400,
        ),
        ("/live/rec/index-abc-10.m3u8".into(), 400),
        ("/live/rec/index-1.5-10.m3u8".into(), 400),
        (format!("/live/rec/index-{start}-ten.m3u8"), 400),
        (format!("/live/../index-{start}-10.m3u8"), 400),
        (format!("/live/..%2F..%2Fetc/index-{start}-10.m3u8"), 400),
        ("/live/rec/dvr-..%2F..%2F..%2Fetc%2Fpasswd".into(), 400),
        ("/live/rec/dvr-s1_2_3_4_5_6_c.m4s".into(), 404),
        ("/live/rec/dvr-i1_0.mp4".into(), 404),
        // Unknown streams are not found (not refused: issue #17).
        (format!("/live/nosuch/index-{start}-10.m3u8"), 404),
    ] {
        let r = server.get(&path);
        assert_eq!(r.status, want, "{path}: {}", r.text());
    }
    // Every file the server wrote is inside its data directory, and the
    // archive has one tree per stream and rendition.
    let files = files_under(&server.data.path().join("dvr"));
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("/dvr/live/rec/src/"))
    );
    assert!(files.iter().all(|f| !f.to_string_lossy().ends_with(".tmp")));
    publisher.kill();
}

#[test]
fn dvr_survives_kill9_mid_recording_and_resumes() {
    let server = Server::start(&["--dvr-hours", "1"]);
    let key = server.create_stream("crash", "");
    let start = unix_now();
    let mut publisher = publish_live(320, 240, &server.rtmp_url(&key));
    // publish_live sends a keyframe every 30 frames: 1 s GOPs, 2 s segments.
    let ok = wait_until(Duration::from_secs(30), || {
        server
            .get(&format!("/live/crash/index-{start}-now.m3u8"))
            .text()
            .matches("#EXTINF")
            .count()
            >= 5
    });
    assert!(ok.is_some(), "5 segments archived");
    std::thread::sleep(Duration::from_millis(700));
    // What the live window had just before the crash.
    let live_before = parse_media_playlist(&server.get("/live/crash/mono.m3u8").text());
    let last_live = live_before.last().map(|s| s.msn).expect("live segments");
    let archived_before = parse_media_playlist(
        &server
            .get(&format!("/live/crash/index-{start}-now.m3u8"))
            .text(),
    );

    let server = server.kill9_and_restart(&["--dvr-hours", "1"]);
    publisher.kill();
    let dir = server.data.path().join("dvr/live/crash/src");
    let tmp_left: Vec<_> = files_under(&dir)
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(tmp_left.is_empty(), "{tmp_left:?}");

    // Everything archived before the crash is still listed; the segments of
    // the live window are all archived except at most the newest one.
    let r = server.get(&format!("/live/crash/index-{start}-now.m3u8"));
    assert_eq!(r.status, 200, "{}", r.text());
    let after = parse_media_playlist(&r.text());
    assert!(
        after.len() >= archived_before.len(),
        "{} archived before the crash, {} after",
        archived_before.len(),
        after.len()
    );
    for s in &archived_before {
        assert!(after.iter().any(|a| a.uri == s.uri), "{} lost", s.uri);
    }
    // msn is in the file name: `..._<session>_<msn>_<init>_<c|d>.m4s`.
    let msn_of = |uri: &str| -> u64 {
        let parts: Vec<&str> = uri.trim_end_matches(".m4s").split('_').collect();
        parts[parts.len() - 3].parse().unwrap()
    };
    let archived: Vec<u64> = after.iter().map(|s| msn_of(&s.uri)).collect();
    for s in &live_before {
        assert!(
            archived.contains(&s.msn) || s.msn == last_live,
            "live segment {} not archived (archived {archived:?})",
            s.msn
        );
    }
    // The index agrees with the files and everything plays.
    let seg_files = files_under(&dir)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "m4s"))
        .count();
    assert_eq!(seg_files, after.len(), "index and files agree");
    let url = server.url(&format!("/live/crash/index-{start}-now.m3u8"));
    let errors = play_errors(&url);
    assert!(errors.trim().is_empty(), "{errors}");

    // Recording resumes with a new publisher, after a marked discontinuity.
    let resumed_at = Instant::now();
    let _publisher = publish_live(320, 240, &server.rtmp_url(&key));
    let ok = wait_until(Duration::from_secs(30), || {
        let t = server
            .get(&format!("/live/crash/index-{start}-now.m3u8"))
            .text();
        t.matches("#EXTINF").count() >= after.len() + 2
    });
    assert!(
        ok.is_some(),
        "recording did not resume within {:?}",
        resumed_at.elapsed()
    );
    let t = server
        .get(&format!("/live/crash/index-{start}-now.m3u8"))
        .text();
    assert!(t.contains("#EXT-X-DISCONTINUITY"), "{t}");
    assert_eq!(t.matches("#EXT-X-MAP").count(), 2, "{t}");
}

#[test]
fn dvr_moves_an_ended_event_to_s3_and_plays_it_back_from_there() {
    let s3root = TempDir::new("s3");
    let port = free_port();
    let _s3 = S3Fs::start(s3root.path(), port);
    let cfg_dir = TempDir::new("s3cfg");
    let cfg = cfg_dir.path().join("ugc.toml");
    std::fs::write(
        &cfg,
        format!(
            "[dvr]\nhours = 1\nrewind_s = 3600\n[dvr.streams.keep]\ns3 = false\n[dvr.s3]\nendpoint = \"http://127.0.0.1:{port}\"\nbucket = \"dvr\"\n\
             access_key_id = \"e2eaccess\"\nsecret_access_key = \"e2esecret0123456789\"\n"
        ),
    )
    .unwrap();
    let server = Server::start(&[
        "--config",
        cfg.to_str().unwrap(),
        "--publisher-grace-s",
        "1",
        "--window-segments",
        "2",
    ]);
    let key = server.create_stream("ev", "");
    let keep_key = server.create_stream("keep", "");
    let start = unix_now();
    let clip = test_clip(640, 360, 14, 800);
    let mut publisher = publish_file(&clip, &server.rtmp_url(&key));
    let mut keep = publish_live(320, 240, &server.rtmp_url(&keep_key));
    // The rewind window: the live playlist lists the archived segments of
    // this recording before its 2-segment live window, msn consecutive.
    let rewound = wait_until(Duration::from_secs(20), || {
        let t = server.get("/live/ev/mono.m3u8").text();
        t.matches("dvr-s").count() >= 3 && t.contains("#EXT-X-MEDIA-SEQUENCE:0\n")
    });
    let live = server.get("/live/ev/mono.m3u8").text();
    assert!(rewound.is_some(), "{live}");
    let segs = parse_media_playlist(&live);
    assert!(segs.last().unwrap().uri.starts_with("seg-"), "{live}");
    for (i, s) in segs.iter().enumerate() {
        assert!(
            s.uri.contains(&format!("_{i}_0_"))
                || (s.uri.starts_with("seg-") && s.uri.ends_with(&format!("-{i}.m4s"))),
            "{live}"
        );
    }
    let r = server.get(&format!("/live/ev/{}", segs[0].uri));
    assert_eq!(r.status, 200);
    // Where the recording begins, as the server dated it (the publisher may
    // have started seconds after `start` on a loaded machine).
    let rec = first_archived_ms(&live).expect("archived segments listed") / 1000;
    assert!(rec >= start - 1, "{rec} before {start}");
    keep.kill();
    assert!(wait_until(Duration::from_secs(30), || !publisher.running()).is_some());
    // Publisher gone for the grace time: the event ends and moves to S3.
    let local = server.data.path().join("dvr/live/ev/src");
    let moved = wait_until(Duration::from_secs(40), || {
        files_under(&local)
            .iter()
            .all(|f| f.extension().is_none_or(|e| e != "m4s"))
            && files_under(&s3root.path().join("dvr"))
                .iter()
                .any(|f| f.extension().is_some_and(|e| e == "mp4"))
    });
    assert!(moved.is_some(), "event not moved to S3:\n{}", server.log());
    // The uploaded object is a playable (fragmented) MP4 of the event.
    let object = files_under(&s3root.path().join("dvr"))
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "mp4"))
        .unwrap();
    let errors = decode_errors(&object);
    assert!(errors.trim().is_empty(), "{errors}");
    // `[dvr.streams.keep] s3 = false`: that event stays on local disk.
    std::thread::sleep(Duration::from_secs(2));
    let kept = files_under(&server.data.path().join("dvr/live/keep/src"));
    assert!(
        kept.iter()
            .any(|f| f.extension().is_some_and(|e| e == "m4s"))
    );
    // Range playlist and export now come from S3 through the cache.
    let path = format!("/live/ev/index-{rec}-10.m3u8");
    let r = server.get(&path);
    assert_eq!(r.status, 200, "{}", r.text());
    let errors = play_errors(&server.url(&path));
    assert!(errors.trim().is_empty(), "{errors}");
    let r = server.get(&format!("/live/ev/archive-{rec}-10.mp4"));
    assert_eq!(r.status, 200);
    let work = TempDir::new("s3exp");
    let f = work.path().join("e.mp4");
    std::fs::write(&f, &r.body).unwrap();
    let d = probe_duration(f.to_str().unwrap());
    assert!((d - 10.0).abs() <= 2.1, "{d}");
    assert!(
        files_under(&server.data.path().join("dvr-cache"))
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "bin")),
        "reads went through the cache"
    );
    // The recordings API lists the event as stored in S3; its download
    // comes through the cache; deleting it deletes the object.
    let (status, list) = recordings(&server, "ev", ADMIN_TOKEN);
    assert_eq!(status, 200, "{list}");
    let ev = &list["recordings"][0];
    assert_eq!(ev["stored"], "s3", "{list}");
    assert!(ev["upload"].is_null(), "{list}");
    let download = ev["download"].as_str().unwrap();
    let path = download.strip_prefix(&server.url("")).unwrap();
    let r = server.get(path);
    assert_eq!(r.status, 200, "{path}");
    let moov = box_offset(&r.body, b"moov").expect("moov");
    assert!(moov < box_offset(&r.body, b"mdat").expect("mdat"));
    let id = ev["id"].as_i64().unwrap();
    let r = http_send(
        server.http,
        "DELETE",
        &format!("/api/v1/streams/ev/recordings/{id}"),
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let gone = wait_until(Duration::from_secs(30), || {
        !files_under(&s3root.path().join("dvr"))
            .iter()
            .any(|f| f.to_string_lossy().contains("/live/ev/"))
    });
    assert!(gone.is_some(), "object left in S3:\n{}", server.log());
    assert_eq!(
        recordings(&server, "ev", ADMIN_TOKEN).1["recordings"],
        serde_json::json!([])
    );
    assert_eq!(server.get(path).status, 404);
    publisher.kill();
}

/// `GET /api/v1/streams/<name>/recordings` with `token`: status and JSON.
fn recordings(server: &Server, name: &str, token: &str) -> (u16, serde_json::Value) {
    let r = http_send(
        server.http,
        "GET",
        &format!("/api/v1/streams/{name}/recordings"),
        Some(token),
        None,
    );
    let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, v)
}

/// A new creator's bearer token.
fn creator(server: &Server) -> String {
    let r = http_send(
        server.http,
        "POST",
        "/api/v1/creators",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    json_str(&r.text(), "token").unwrap()
}

/// Two events of one stream (the publisher gone longer than the grace time
/// between them): the creator's recordings API lists both, newest first,
/// with play and download URLs that ffprobe reads; another creator cannot
/// see them; a running one cannot be deleted; a finished one is deleted
/// from the disk.
#[test]
fn recordings_api_lists_plays_downloads_and_deletes_events() {
    let server = Server::start(&["--publisher-grace-s", "1"]);
    let (alice, bob) = (creator(&server), creator(&server));
    let r = http_send(
        server.http,
        "POST",
        "/api/v1/streams",
        Some(&alice),
        Some("{\"name\": \"show\", \"dvr_hours\": 2}"),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let key = json_str(&r.text(), "key").unwrap();
    let clip = test_clip(640, 360, 10, 800);
    let work = TempDir::new("recordings");
    let mut first = publish_file(&clip, &server.rtmp_url(&key));
    assert!(wait_until(Duration::from_secs(30), || !first.running()).is_some());
    // Past the grace time: the next publish is another event.
    std::thread::sleep(Duration::from_secs(3));
    let mut second = publish_file(&clip, &server.rtmp_url(&key));
    let live = wait_until(Duration::from_secs(20), || {
        recordings(&server, "show", &alice).1["recordings"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
    });
    let (_, list) = recordings(&server, "show", &alice);
    assert!(live.is_some(), "{list}");
    assert_eq!(list["recordings"][0]["recording"], true, "{list}");
    let running = list["recordings"][0]["id"].as_i64().unwrap();
    let r = http_send(
        server.http,
        "DELETE",
        &format!("/api/v1/streams/show/recordings/{running}"),
        Some(&alice),
        None,
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(wait_until(Duration::from_secs(30), || !second.running()).is_some());
    let ended = wait_until(Duration::from_secs(10), || {
        recordings(&server, "show", &alice).1["recordings"][0]["recording"] == false
    });
    assert!(ended.is_some());

    // Who may look: the creator and the admin; not another creator, not
    // without a token.
    assert_eq!(recordings(&server, "show", &bob).0, 403);
    assert_eq!(recordings(&server, "show", "not-a-token").0, 401);
    assert_eq!(recordings(&server, "nope", &alice).0, 404);
    let (status, list) = recordings(&server, "show", ADMIN_TOKEN);
    assert_eq!(status, 200);
    let recs = list["recordings"].as_array().unwrap().clone();
    assert_eq!(recs.len(), 2, "{list}");
    assert!(
        recs[0]["start_ms"].as_i64() > recs[1]["end_ms"].as_i64(),
        "{list}"
    );
    for rec in &recs {
        let d = rec["duration_ms"].as_i64().unwrap();
        assert!((8_000..=12_500).contains(&d), "{rec}");
        assert_eq!(rec["renditions"], serde_json::json!(["src"]));
        assert_eq!(rec["stored"], "local");
        assert!(rec["bytes"].as_u64().unwrap() > 500_000, "{rec}");
        // The range playlist plays for the event's length.
        let play = rec["play"].as_str().unwrap();
        assert!(play.starts_with(&server.url("/live/show/index-")), "{play}");
        let errors = play_errors(play);
        assert!(errors.trim().is_empty(), "{play}: {errors}");
        let probed = probe_duration(play);
        assert!(
            (probed - d as f64 / 1000.0).abs() <= 2.5,
            "{play}: {probed} s"
        );
        // The download: a progressive MP4, moov first.
        let download = rec["download"].as_str().unwrap();
        assert_eq!(rec["downloads"]["src"], download);
        let r = server.get(download.strip_prefix(&server.url("")).unwrap());
        assert_eq!(r.status, 200, "{download}");
        let moov = box_offset(&r.body, b"moov").expect("moov");
        assert!(moov < box_offset(&r.body, b"mdat").expect("mdat"));
        let f = work.path().join("download.mp4");
        std::fs::write(&f, &r.body).unwrap();
        let probed = probe_duration(f.to_str().unwrap());
        assert!(
            (probed - d as f64 / 1000.0).abs() <= 2.5,
            "{download}: {probed} s"
        );
    }

    // Deleting the older event: its files leave the disk, the newer stays.
    let dir = server.data.path().join("dvr/live/show/src");
    let session_files = |id: i64| {
        files_under(&dir)
            .iter()
            .filter(|f| {
                let n = f.file_name().unwrap().to_string_lossy().into_owned();
                n.contains(&format!("_{id}_")) || n.starts_with(&format!("i{id}_"))
            })
            .count()
    };
    let (old, new) = (
        recs[1]["id"].as_i64().unwrap(),
        recs[0]["id"].as_i64().unwrap(),
    );
    assert!(session_files(old) >= 5 && session_files(new) >= 5);
    let delete = |token: &str, id: i64| {
        http_send(
            server.http,
            "DELETE",
            &format!("/api/v1/streams/show/recordings/{id}"),
            Some(token),
            None,
        )
        .status
    };
    assert_eq!(delete(&bob, old), 403);
    assert_eq!(delete(&alice, old), 204);
    assert_eq!(session_files(old), 0);
    assert!(session_files(new) >= 5);
    let (_, list) = recordings(&server, "show", &alice);
    assert_eq!(list["recordings"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["recordings"][0]["id"], new);
    let old_download = recs[1]["download"].as_str().unwrap();
    assert_eq!(
        server
            .get(old_download.strip_prefix(&server.url("")).unwrap())
            .status,
        404
    );
    assert_eq!(delete(&alice, old), 404);
    assert_eq!(
        metric_sample(&server, "ugc_dvr_recordings_deleted_total"),
        Some(1.0)
    );
}

/// An export across a new publisher with other video parameters (360p then
/// 240p, same audio): one MP4 with two `avc1` sample entries that ffmpeg
/// decodes to the end at both sizes, not an export cut at the change.
#[test]
fn dvr_export_spans_a_resolution_change() {
    let first = test_clip(640, 360, 10, 800);
    let second = test_clip(426, 240, 10, 400);
    let server = Server::start(&[]);
    let work = TempDir::new("dvr-change");
    let key = server.create_stream("chg", "\"dvr_hours\": 1");
    let start = unix_now();
    for clip in [&first, &second] {
        let mut p = publish_file(clip, &server.rtmp_url(&key));
        assert!(wait_until(Duration::from_secs(25), || !p.running()).is_some());
        std::thread::sleep(Duration::from_secs(2));
    }
    let secs = unix_now() - start + 1;
    let r = server.get(&format!("/live/chg/archive-{start}-{secs}.mp4"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("x-ugc-export-truncated").is_none());
    let file = work.path().join("change.mp4");
    std::fs::write(&file, &r.body).unwrap();
    let d = probe_duration(file.to_str().unwrap());
    assert!(d >= 16.0, "export across the change lasts {d} s");
    let errors = play_errors(file.to_str().unwrap());
    assert!(errors.trim().is_empty(), "{errors}");
    // Frame sizes as decoded: both resolutions appear, in order.
    let out = run(Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["frame=width,height", "-of", "csv=p=0"])
        .arg(&file));
    let sizes: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end_matches(',').to_owned())
        .collect();
    assert_eq!(sizes.first().map(String::as_str), Some("640,360"));
    assert_eq!(sizes.last().map(String::as_str), Some("426,240"));
}
