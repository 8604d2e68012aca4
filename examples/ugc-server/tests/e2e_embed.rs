//! End to end: the `embed-*` programs (examples/embed-*/main.rs), which
//! assemble the library as an embedder would, work with real clients:
//! ffmpeg publishes RTMP through a custom transform and plays the LL-HLS
//! back; an SRT caller is relayed to an RTMP server (a ugc-server); a TS
//! file becomes an HLS VOD that ffmpeg plays to the end.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

fn embed(name: &str, args: &[&str]) -> Proc {
    let bin = match name {
        "embed-rtmp-hls" => env!("CARGO_BIN_EXE_embed-rtmp-hls"),
        "embed-srt-relay" => env!("CARGO_BIN_EXE_embed-srt-relay"),
        _ => unreachable!("{name}"),
    };
    Proc(
        Command::new(bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the embed program"),
    )
}

fn addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

#[test]
fn embed_rtmp_hls_serves_ll_hls_of_an_ffmpeg_publish() {
    let (rtmp, http) = (addr(), addr());
    let _server = embed("embed-rtmp-hls", &[&rtmp.to_string(), &http.to_string()]);
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(
            rtmp
        )
        .is_ok())
        .is_some()
    );
    let _publisher = publish_live(320, 240, &format!("rtmp://{rtmp}/live/demo"));
    let mut text = String::new();
    let live = wait_until(Duration::from_secs(20), || {
        let r = http_get(http, "/live/demo/mono.m3u8");
        text = r.text();
        r.status == 200 && text.contains("#EXT-X-PART:") && parse_media_playlist(&text).len() >= 2
    });
    assert!(live.is_some(), "no LL-HLS playlist: {text}");
    assert!(preload_hint(&text).is_some(), "{text}");
    // ffmpeg plays it.
    let out = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(format!("http://{http}/live/demo/index.m3u8"))
        .args(["-t", "3", "-enc_time_base", "-1", "-f", "null", "-"]));
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && errors.trim().is_empty(), "{errors}");
}

#[test]
fn embed_srt_relay_pushes_an_srt_publish_to_an_rtmp_server() {
    let server = Server::start(&[]);
    let key = server.create_stream("relayed", "");
    let srt = format!("127.0.0.1:{}", free_udp_port());
    let target = format!("rtmp://{}/live", server.rtmp);
    let _relay = embed("embed-srt-relay", &[&srt, &target]);
    std::thread::sleep(Duration::from_millis(500));
    // The SRT stream is named after the key, so the push lands on it.
    let clip = test_clip(320, 240, 20, 400);
    let _caller = publish_srt(&clip, &format!("srt://{srt}?streamid=live/{key}"));
    let mut text = String::new();
    let relayed = wait_until(Duration::from_secs(30), || {
        let r = server.get("/live/relayed/mono.m3u8");
        text = r.text();
        r.status == 200 && parse_media_playlist(&text).len() >= 2
    });
    assert!(relayed.is_some(), "not relayed: {text}\n{}", server.log());
    let master = server.get("/live/relayed/index.m3u8").text();
    assert!(
        master.contains("avc1.") && master.contains("mp4a.40.2"),
        "{master}"
    );
}

#[test]
fn embed_file_vod_turns_a_ts_file_into_a_playable_vod() {
    let work = TempDir::new("vod");
    let clip = test_clip(320, 240, 12, 400);
    let ts = work.path().join("in.ts");
    let out = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(&ts));
    assert!(out.status.success());
    let dir: PathBuf = work.path().join("vod");
    let out = run(Command::new(env!("CARGO_BIN_EXE_embed-file-vod"))
        .arg(&ts)
        .arg(&dir));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let playlist = std::fs::read_to_string(dir.join("index.m3u8")).unwrap();
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
    let segs = parse_media_playlist(&playlist);
    let listed: f64 = segs.iter().map(|s| s.duration).sum();
    assert!(
        (listed - 12.0).abs() < 0.5,
        "{listed} s listed:\n{playlist}"
    );
    let errors = decode_errors(&dir.join("index.m3u8"));
    assert!(errors.trim().is_empty(), "{errors}");
}
