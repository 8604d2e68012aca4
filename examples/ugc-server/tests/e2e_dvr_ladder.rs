//! End to end: the DVR with a transcoding ladder. Every rendition is
//! archived; the range and from-now playlists of the stream become a
//! multivariant playlist listing each archived rendition (the source as
//! `src/`) with its measured bandwidth, resolution and codecs; each
//! rendition's range playlist plays with ffmpeg and exports as MP4.
#![cfg(feature = "ffmpeg")]
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::*;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `(uri, attributes)` of every variant of a multivariant playlist.
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
            out.push((line.to_owned(), a));
        }
    }
    out
}

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

#[test]
fn dvr_archives_every_rendition_and_serves_a_multivariant_range() {
    // 24 s of 360p30; a two-rung ladder at superfast keeps real time on 2 cores.
    let clip = test_clip(640, 360, 24, 800);
    let work = TempDir::new("dvr-ladder");
    let config = work.path().join("ugc.toml");
    std::fs::write(
        &config,
        "[transcode]\npreset = \"superfast\"\n[transcode.profiles.small]\n\
         renditions = [{ name = \"240p\", height = 240, video_kbps = 400, audio_kbps = 64 },\
         { name = \"144p\", height = 144, video_kbps = 150, audio_kbps = 64 }]\n",
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let key = server.create_stream("lad", "\"dvr_hours\": 1, \"transcode\": \"small\"");
    let start = unix_now();
    let mut publisher = publish_file(&clip, &server.rtmp_url(&key));
    let ended = wait_until(Duration::from_secs(45), || !publisher.running());
    assert!(ended.is_some(), "publisher did not finish");
    std::thread::sleep(Duration::from_secs(4));

    let range = format!("index-{start}-30.m3u8");
    let r = server.get(&format!("/live/lad/{range}"));
    assert_eq!(r.status, 200, "{}\nlog:\n{}", r.text(), server.log());
    let master = r.text();
    assert!(!master.contains("#EXTINF"), "multivariant: {master}");
    let v = variants(&master);
    let uris: Vec<&str> = v.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(uris.len(), 3, "{master}");
    for want in ["src/", "240p/", "144p/"] {
        assert!(
            uris.contains(&format!("{want}{range}").as_str()),
            "{want} missing: {master}"
        );
    }
    // Highest bandwidth first: the 800 kbps source.
    assert_eq!(uris[0], format!("src/{range}"), "{master}");
    for (uri, attrs) in &v {
        assert!(attrs.contains("CODECS=\"avc1."), "{attrs}");
        assert!(attrs.contains("mp4a.40.2"), "{attrs}");
        let height = if uri.starts_with("src/") {
            "x360"
        } else if uri.starts_with("240p/") {
            "x240"
        } else {
            "x144"
        };
        assert!(attrs.contains(height), "{uri}: {attrs}");
        assert!(attrs.contains("AVERAGE-BANDWIDTH="), "{attrs}");
    }

    // Each rendition's range playlist is a VOD media playlist that plays.
    for uri in &uris {
        let path = format!("/live/lad/{uri}");
        let r = server.get(&path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let text = r.text();
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{text}");
        let secs: f64 = parse_media_playlist(&text).iter().map(|s| s.duration).sum();
        assert!(secs >= 16.0, "{path}: {secs} s listed");
        let errors = play_errors(&server.url(&path));
        assert!(errors.trim().is_empty(), "{path}: {errors}");
    }

    // From-now is multivariant too, pointing at the renditions' EVENT lists.
    let now = server
        .get(&format!("/live/lad/index-{start}-now.m3u8"))
        .text();
    assert!(
        now.contains(&format!("\n240p/index-{start}-now.m3u8\n")),
        "{now}"
    );
    let ev = server
        .get(&format!("/live/lad/240p/index-{start}-now.m3u8"))
        .text();
    assert!(ev.contains("#EXT-X-PLAYLIST-TYPE:EVENT"), "{ev}");

    // MP4 export of one rendition: its size, about the asked duration.
    let rec = archive_start(&server, "lad/240p", start);
    let r = server.get(&format!("/live/lad/240p/archive-{}-12.mp4", rec + 4));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-disposition")
            .is_some_and(|d| d.contains("lad-240p-")),
        "{:?}",
        r.header("content-disposition")
    );
    let file = work.path().join("240p.mp4");
    std::fs::write(&file, &r.body).unwrap();
    let streams = probe_streams(&file);
    assert!(
        streams.iter().any(|s| s.0 == "video" && s.3 == 240),
        "{streams:?}"
    );
    let d = probe_duration(&file);
    assert!((d - 12.0).abs() <= 2.5, "export of 12 s lasts {d} s");
    assert!(decode_errors(&file).trim().is_empty());

    // Bad rendition names are refused, unknown ones are not archived.
    assert_eq!(server.get(&format!("/live/lad/..%2F/{range}")).status, 400);
    assert_eq!(server.get(&format!("/live/lad/999p/{range}")).status, 404);
}
