//! End to end with GStreamer 1.22 as a second implementation of both ends:
//! `rtmp2sink` (RTMP) and `srtsink` (SRT + MPEG-TS) publish to the real
//! ugc-server, and `playbin3` plays its live HLS. A wrong key is refused
//! with a reason that `rtmp2sink` prints, and librtmp (`rtmpsink`) fails
//! with an error instead of dying of SIGPIPE.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use support::gst::{self, GstRun};
use support::*;

#[test]
fn rtmp2sink_publishes_h264_and_aac_that_play_over_hls() {
    gst::require_elements(&["rtmp2sink", "flvmux", "openh264enc", "avenc_aac"]);
    let server = Server::start(&[]);
    let work = TempDir::new("gst-rtmp");
    let key = server.create_stream("gstrtmp", "");
    let location = format!("location={}", server.rtmp_url(&key));
    let _publisher = gst::spawn(&gst::av_pipeline(
        640,
        360,
        &[
            "flvmux",
            "name=m",
            "streamable=true",
            "!",
            "rtmp2sink",
            &location,
        ],
    ));
    assert_live_hls_plays(&server, "gstrtmp", 640, work.path());
}

#[test]
fn srtsink_publishes_mpegts_that_plays_over_hls() {
    gst::require_elements(&["srtsink", "mpegtsmux", "openh264enc", "avenc_aac"]);
    let server = Server::start(&[]);
    let work = TempDir::new("gst-srt");
    let key = server.create_stream("gstsrt", "");
    let uri = format!("uri=srt://{}", server.srt);
    // srtsink takes the stream id as a property (a `#` in the URI would
    // start its fragment). `alignment=7`: 7 TS packets per buffer, one SRT
    // message each; with the default, mpegtsmux hands srtsink whole frames
    // and the keyframes (over one SRT payload) never arrive.
    let streamid = format!("streamid=#!::r=live/{key},m=publish");
    let _publisher = gst::spawn(&gst::av_pipeline(
        640,
        360,
        &[
            "mpegtsmux",
            "name=m",
            "alignment=7",
            "!",
            "srtsink",
            &uri,
            &streamid,
        ],
    ));
    assert_live_hls_plays(&server, "gstsrt", 640, work.path());
}

/// A short live H.264 publish to `sink` (tokens), without audio.
fn publish_video(sink: &[&str]) -> GstRun {
    let mut args = vec![
        "videotestsrc",
        "is-live=true",
        "!",
        "video/x-raw,format=I420,width=320,height=180,framerate=30/1",
        "!",
        "openh264enc",
        "!",
        "h264parse",
        "!",
        "flvmux",
        "streamable=true",
        "!",
    ];
    args.extend_from_slice(sink);
    gst::launch(Duration::from_secs(20), &args)
}

#[test]
fn rtmp2sink_with_a_wrong_key_names_the_refusal() {
    gst::require_elements(&["rtmp2sink", "flvmux", "openh264enc"]);
    let server = Server::start(&[]);
    let location = format!("location={}", server.rtmp_url("not-a-key"));
    let run = publish_video(&["rtmp2sink", &location]);
    assert!(
        !run.timed_out,
        "rtmp2sink hung after the refusal:\n{}",
        run.output
    );
    assert_eq!(run.status.code(), Some(1), "{}", run.output);
    // rtmp2sink: "Not authorized to connect: publish denied: { "level":
    // "error", "code": "NetStream.Publish.Denied", "description": "unknown
    // stream key" }". With NetStream.Publish.BadName it says "stream already
    // exists", which sent users looking for a duplicate stream.
    let error = run
        .output
        .lines()
        .find(|l| l.contains("rtmp2sink0") && l.starts_with("ERROR"))
        .unwrap_or_else(|| panic!("no rtmp2sink error:\n{}", run.output));
    assert!(error.contains("publish denied"), "{error}");
    assert!(error.contains("NetStream.Publish.Denied"), "{error}");
    assert!(error.contains("\"unknown stream key\""), "{error}");
    assert!(!error.contains("already exists"), "{error}");
    assert!(
        !error.contains("not-a-key"),
        "the key is not echoed: {error}"
    );
}

#[test]
fn librtmp_with_a_wrong_key_fails_with_an_error_not_sigpipe() {
    gst::require_elements(&["rtmpsink", "flvmux", "openh264enc", "avenc_aac"]);
    let server = Server::start(&[]);
    let location = format!("location={}", server.rtmp_url("not-a-key"));
    // librtmp (Debian's 2.4, under GStreamer's rtmpsink) ignores the status
    // code and waits for the server to close; then it writes FCUnpublish
    // and deleteStream. Closing at once made the second write hit a reset:
    // SIGPIPE killed it in about half of the runs, without a word. Several
    // runs, so the old behaviour would show.
    for attempt in 0..6 {
        let args: Vec<String> = gst::av_pipeline(
            320,
            180,
            &[
                "flvmux",
                "name=m",
                "streamable=true",
                "!",
                "rtmpsink",
                &location,
            ],
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = gst::launch(Duration::from_secs(20), &args);
        assert!(!run.timed_out, "attempt {attempt}: hung:\n{}", run.output);
        assert_eq!(
            run.status.signal(),
            None,
            "attempt {attempt}: killed by a signal:\n{}",
            run.output
        );
        assert_eq!(
            run.status.code(),
            Some(1),
            "attempt {attempt}: {:?} (141 = SIGPIPE under timeout):\n{}",
            run.status,
            run.output
        );
        assert!(
            run.output.contains("Could not connect to RTMP stream")
                && run.output.contains("for writing"),
            "attempt {attempt}:\n{}",
            run.output
        );
    }
    let log = server.log();
    assert!(
        log.contains("rtmp publish denied") && log.contains("unknown stream key"),
        "{log}"
    );
}

#[test]
fn playbin3_plays_the_live_fmp4_playlist_and_playbin_the_ts_one() {
    gst::require_elements(&["playbin3", "playbin", "hlsdemux2", "fakesink"]);
    // A short window, so that the players join a stream whose playlist no
    // longer starts at its first segment (legacy playbin plays fMP4 only
    // when it joins at the first segment).
    let server = Server::start(&["--window-segments", "3"]);
    let key = server.create_stream("players", "");
    let _publisher = publish_live(640, 360, &server.rtmp_url(&key));
    let ready = wait_until(Duration::from_secs(30), || {
        let r = server.get("/live/players/mono.m3u8");
        r.status == 200
            && parse_media_playlist(&r.text())
                .first()
                .is_some_and(|s| s.msn >= 2)
    });
    assert!(ready.is_some(), "the window did not slide");
    // playbin3 (hlsdemux2) on the fMP4 playlist; the legacy playbin on the
    // MPEG-TS variant (see the README's "Players").
    for (player, playlist) in [("playbin3", "mono.m3u8"), ("playbin", "mono-ts.m3u8")] {
        let uri = format!("uri={}", server.url(&format!("/live/players/{playlist}")));
        let run = gst::launch(
            Duration::from_secs(8),
            &[
                "-v",
                player,
                &uri,
                "video-sink=fakesink name=vs silent=false sync=true",
                "audio-sink=fakesink name=as silent=false sync=true",
            ],
        );
        let what = format!("{player} {playlist}");
        // A live stream never ends: it played until we stopped it.
        assert!(
            run.timed_out,
            "{what} stopped by itself:\n{}",
            tail(&run.output)
        );
        assert!(
            !run.output.contains("ERROR") && !run.output.contains("WARNING: from element"),
            "{what}:\n{}",
            tail(&run.output)
        );
        assert!(run.output.contains("Setting pipeline to PLAYING"), "{what}");
        // In real time (sync=true), at least 4 s of the 8 s were played:
        // video and audio buffers reached the sinks with advancing PTS.
        let video = gst::sink_pts(&run.output, "vs");
        let audio = gst::sink_pts(&run.output, "as");
        let span = |v: &[f64]| v.last().zip(v.first()).map_or(0.0, |(l, f)| l - f);
        assert!(
            video.len() >= 120 && span(&video) >= 4.0,
            "{what}: {} video buffers over {:.2} s",
            video.len(),
            span(&video)
        );
        assert!(
            span(&audio) >= 4.0,
            "{what}: {} audio buffers over {:.2} s",
            audio.len(),
            span(&audio)
        );
    }
}

/// The end of a long gst-launch output, for assertion messages.
fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
