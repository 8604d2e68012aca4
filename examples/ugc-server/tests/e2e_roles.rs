//! Three processes on loopback, as in the contract's "Several machines":
//! `ugc-server` as the control plane, `ugc-publish` taking RTMP with
//! decisions asked from it, `ugc-origin` packaging and recording what the
//! publishing node pushes over the relay. ffmpeg publishes to the
//! publishing node; ffprobe plays the HLS of the origin.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

const NODE_TOKEN: &str = "e2e-node-token-0123456789abcdef";

/// A role binary, killed on drop (its log printed if the test failed).
struct Node {
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl Node {
    fn start(bin: &str, args: &[String]) -> Node {
        let name = std::path::Path::new(bin).file_name().unwrap();
        let dir = TempDir::new(&name.to_string_lossy());
        let log = dir.path().join("log");
        let child = Command::new(bin)
            .args(args)
            .env("UGC_NODE_TOKEN", NODE_TOKEN)
            .env("UGC_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("UGC_LOG", "info")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        Node {
            child,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- log of {:?}\n{}", self.log, self.log());
        }
    }
}

fn addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

fn listening(a: SocketAddr) -> bool {
    std::net::TcpStream::connect(a).is_ok()
}

#[test]
fn rtmp_to_a_publishing_node_plays_from_an_origin_node() {
    let control = {
        let data = TempDir::new("control");
        let (rtmp, http, srt) = (addr(), addr(), free_udp_port());
        let child = Command::new(server_bin())
            .arg("--data")
            .arg(data.path())
            .args(["--rtmp", &rtmp.to_string(), "--http", &http.to_string()])
            .args(["--srt", &format!("127.0.0.1:{srt}")])
            .args(["--public-host", "127.0.0.1"])
            .env("UGC_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("UGC_NODE_TOKEN", NODE_TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ugc-server");
        (Proc(child), data, http)
    };
    let cp = control.2;
    wait_until(Duration::from_secs(10), || listening(cp)).expect("control plane listens");
    let control_url = format!("http://{cp}");
    let r = http_send(
        cp,
        "POST",
        "/api/v1/streams",
        Some(ADMIN_TOKEN),
        Some(r#"{"name": "roles", "dvr_hours": 1}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let key = json_str(&r.text(), "key").unwrap();

    let origin_http = addr();
    let origin_data = TempDir::new("origin-data");
    let origin = Node::start(
        env!("CARGO_BIN_EXE_ugc-origin"),
        &[
            "--control-url".into(),
            control_url.clone(),
            "--http".into(),
            origin_http.to_string(),
            "--data".into(),
            origin_data.path().display().to_string(),
            "--segment-ms".into(),
            "1000".into(),
        ],
    );
    wait_until(Duration::from_secs(10), || listening(origin_http)).expect("origin listens");
    let (rtmp, http) = (addr(), addr());
    let publish = Node::start(
        env!("CARGO_BIN_EXE_ugc-publish"),
        &[
            "--control-url".into(),
            control_url.clone(),
            "--rtmp".into(),
            rtmp.to_string(),
            "--srt".into(),
            format!("127.0.0.1:{}", free_udp_port()),
            "--http".into(),
            http.to_string(),
            "--push-to".into(),
            format!("http://{origin_http}"),
        ],
    );
    wait_until(Duration::from_secs(10), || listening(rtmp)).expect("publishing node listens");

    // A wrong key: the control plane refuses it through the node.
    let wrong = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x90:rate=10",
            "-t",
            "2",
        ])
        .args(["-c:v", "libx264", "-f", "flv"])
        .arg(format!("rtmp://{rtmp}/live/not-the-key")));
    assert!(!wrong.status.success(), "a wrong key published");

    let clip = test_clip(320, 240, 20, 400);
    let mut ffmpeg = publish_file(&clip, &format!("rtmp://{rtmp}/live/{key}"));
    // The origin serves what the publishing node pushed.
    let playlist = "/live/roles/index.m3u8";
    wait_until(Duration::from_secs(20), || {
        let r = http_get(origin_http, playlist);
        r.status == 200
            && parse_media_playlist(&http_get(origin_http, "/live/roles/mono.m3u8").text()).len()
                >= 3
    })
    .unwrap_or_else(|| {
        panic!(
            "no playlist at the origin:\n{}\n{}",
            origin.log(),
            publish.log()
        )
    });
    let probe = run(Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=codec_name,width,height"])
        .args(["-of", "csv=p=0"])
        .arg(format!("http://{origin_http}{playlist}")));
    let out = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    // A line per program of the multivariant playlist.
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        !lines.is_empty() && lines.iter().all(|l| *l == "h264,320,240"),
        "{out}"
    );
    // And records it.
    wait_until(Duration::from_secs(10), || {
        let m = http_get(origin_http, "/metrics").text();
        m.lines().any(|l| {
            l.starts_with("ugc_dvr_segments_written_total")
                && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) > Some(0.0)
        })
    })
    .expect("the origin records the stream");
    // Viewers of an unknown stream: 404 at the origin; of a private one,
    // 403 (the origin cannot check play tokens yet, so it lets none in).
    assert_eq!(http_get(origin_http, "/live/nope/index.m3u8").status, 404);
    let r = http_send(
        cp,
        "POST",
        "/api/v1/streams",
        Some(ADMIN_TOKEN),
        Some(r#"{"name": "secret", "private": true}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    wait_until(Duration::from_secs(5), || {
        http_get(origin_http, "/live/secret/index.m3u8").status == 403
    })
    .expect("a private stream refused at the origin");

    // A key rotation at the control plane drops the publisher at the node.
    let r = http_send(
        cp,
        "POST",
        "/api/v1/streams/roles/key",
        Some(ADMIN_TOKEN),
        Some("{}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let gone = wait_until(Duration::from_secs(5), || !ffmpeg.running());
    assert!(
        gone.is_some(),
        "the publisher on the rotated key is still connected"
    );
    drop(control);
}
