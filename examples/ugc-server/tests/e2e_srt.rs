//! End to end: real SRT callers (ffmpeg/libsrt 1.5.1, srt-live-transmit)
//! publish MPEG-TS to the real ugc-server binary; ffmpeg/ffprobe read the HLS
//! it serves. Stream settings (passphrases) go through the control API.

mod support;

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::*;

const PASS: &str = "correcthorsebattery";

/// The server log without ANSI colour codes.
fn plain_log(server: &Server) -> String {
    without_ansi(&server.log())
}

fn srt_url(addr: SocketAddr, key: &str, extra: &str) -> String {
    format!("srt://{addr}?streamid=#!::r=live/{key},m=publish{extra}")
}

/// Runs an SRT caller that should be refused; returns when it gave up.
fn refused_caller(url: &str) -> bool {
    let out = run(Command::new("timeout")
        .args([
            "10",
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=10",
            "-t",
            "2",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-f",
            "mpegts",
            url,
        ]));
    !out.status.success()
}

fn segments(server: &Server, stream: &str) -> Vec<PlaylistSegment> {
    let r = server.get(&format!("/{stream}/mono.m3u8"));
    if r.status != 200 {
        return Vec::new();
    }
    parse_media_playlist(&r.text())
}

fn fetch(server: &Server, stream: &str, seg: &PlaylistSegment, dir: &Path) -> PathBuf {
    let map = seg.map.as_deref().expect("EXT-X-MAP");
    let init = server.get(&format!("/{stream}/{map}"));
    assert_eq!(init.status, 200);
    let media = server.get(&format!("/{stream}/{}", seg.uri));
    assert_eq!(media.status, 200);
    let path = dir.join(format!("{}-{}.mp4", stream.replace('/', "_"), seg.msn));
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&init.body).unwrap();
    f.write_all(&media.body).unwrap();
    path
}

/// The same checks as for RTMP: decodes cleanly, starts with a keyframe,
/// audio present and aligned with video.
fn check_segment(path: &Path, width: u32) {
    let errors = decode_errors(path);
    assert!(errors.trim().is_empty(), "{}: {errors}", path.display());
    let keys = video_keyframes(path);
    assert!(
        !keys.is_empty() && keys[0],
        "{}: keyframe first",
        path.display()
    );
    let streams = probe_streams(path);
    let v = streams.iter().find(|s| s.0 == "video").expect("video");
    let a = streams
        .iter()
        .find(|s| s.0 == "audio")
        .expect("audio present");
    assert_eq!(v.2, width);
    assert!(
        (v.1 - a.1).abs() <= 0.1,
        "{}: v {} a {}",
        path.display(),
        v.1,
        a.1
    );
}

/// Waits for `n` complete segments of `stream` and checks all of them.
fn expect_hls(server: &Server, stream: &str, n: usize, width: u32, dir: &Path) {
    wait_until(Duration::from_secs(25), || {
        segments(server, stream).len() >= n
    })
    .unwrap_or_else(|| panic!("{stream}: {n} segments; log:\n{}", server.log()));
    for seg in segments(server, stream).iter().take(n) {
        check_segment(&fetch(server, stream, seg, dir), width);
    }
}

#[test]
fn ffmpeg_publishes_plain_aes128_and_aes256_and_hls_plays() {
    let clip = test_clip(640, 360, 10, 1000);
    let server = Server::start(&[]);
    let work = TempDir::new("srt-play");
    let plain = server.create_stream("plain", "");
    let aes128 = server.create_stream("aes128", &format!("\"srt_passphrase\": \"{PASS}\""));
    let aes256 = server.create_stream("aes256", &format!("\"srt_passphrase\": \"{PASS}\""));
    let _p1 = publish_srt(&clip, &srt_url(server.srt, &plain, ""));
    let _p2 = publish_srt(
        &clip,
        &srt_url(
            server.srt,
            &aes128,
            &format!("&passphrase={PASS}&pbkeylen=16"),
        ),
    );
    // libsrt's trap case 1: pbkeylen=32 where a naive listener answers AES-128.
    let _p3 = publish_srt(
        &clip,
        &srt_url(
            server.srt,
            &aes256,
            &format!("&passphrase={PASS}&pbkeylen=32"),
        ),
    );
    for s in ["live/plain", "live/aes128", "live/aes256"] {
        expect_hls(&server, s, 2, 640, work.path());
    }
    let master = server.get("/live/aes256/index.m3u8").text();
    assert!(
        master.contains("avc1.64") && master.contains("mp4a.40.2"),
        "{master}"
    );
    let log = server.log();
    assert!(!log.contains("panic"), "{log}");
}

#[test]
fn hevc_over_srt_reaches_the_hub_with_its_codec_config() {
    let server = Server::start(&[]);
    let work = TempDir::new("srt-hevc");
    let key = server.create_stream("hevc", "");
    let _p = Proc(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=352x288:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-c:v", "libx265", "-preset", "ultrafast", "-b:v", "300k"])
            .args(["-x265-params", "keyint=25:min-keyint=25:log-level=none"])
            .args(["-c:a", "aac", "-t", "8", "-f", "mpegts"])
            .arg(srt_url(server.srt, &key, ""))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    expect_hls(&server, "live/hevc", 2, 352, work.path());
    let master = server.get("/live/hevc/index.m3u8").text();
    assert!(master.contains("CODECS=\"hvc1.1."), "{master}");
    assert!(master.contains("RESOLUTION=352x288"), "{master}");
    assert!(master.contains(",FRAME-RATE=25.000\n"), "{master}");

    // The publisher stops after 8 s: the slate stands in, in H.265 (so a
    // player keeps its HEVC decoder), at the stream's size.
    wait_until(Duration::from_secs(20), || {
        metric_sample(&server, "ugc_stream_active_source{stream=\"live/hevc\"}") == Some(2.0)
    })
    .expect("the slate stands in");
    let mut slate = None;
    wait_until(Duration::from_secs(20), || {
        let r = server.get("/live/hevc/mono.m3u8");
        let segs = parse_media_playlist(&r.text());
        // Two segments after the discontinuity of the switch: slate only.
        let Some(at) = segs.iter().rposition(|s| s.discontinuity) else {
            return false;
        };
        slate = segs.get(at + 1).cloned();
        slate.is_some()
    })
    .expect("a slate segment");
    let path = fetch_fmp4_segment(&server, "live/hevc", &slate.unwrap(), work.path());
    let codec = run(Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries"])
        .args(["stream=codec_name,width,height", "-of", "csv=p=0"])
        .arg(&path));
    assert_eq!(
        String::from_utf8_lossy(&codec.stdout).trim(),
        "hevc,352,288"
    );
    let errors = decode_errors(&path);
    assert!(errors.trim().is_empty(), "{errors}");
}

#[test]
fn srt_live_transmit_publishes_a_ts_file() {
    let clip = test_clip(640, 360, 10, 1000);
    let server = Server::start(&[]);
    let work = TempDir::new("srt-slt");
    let key = server.create_stream("slt", &format!("\"srt_passphrase\": \"{PASS}\""));
    let ts = work.path().join("clip.ts");
    let out = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(&ts));
    assert!(out.status.success());
    // ffmpeg paces the file (-re) into srt-live-transmit's stdin, which
    // sends it as an encrypted SRT caller.
    let mut pacer = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-i",
        ])
        .arg(&ts)
        .args(["-c", "copy", "-f", "mpegts", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let paced = pacer.stdout.take().unwrap();
    let _pacer = Proc(pacer);
    let url = format!(
        "srt://{}?streamid=#!::r=live/{key},m=publish&passphrase={PASS}&pbkeylen=16",
        server.srt
    );
    let _slt = Proc(
        Command::new("srt-live-transmit")
            .args(["-q", "file://con", &url])
            .stdin(paced)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("srt-live-transmit (Debian srt-tools)"),
    );
    expect_hls(&server, "live/slt", 2, 640, work.path());
}

#[test]
fn refusals_carry_srt_reasons_and_the_listener_keeps_serving() {
    let server = Server::start(&[]);
    let work = TempDir::new("srt-refuse");
    let open = server.create_stream("open", "");
    let locked = server.create_stream("locked", &format!("\"srt_passphrase\": \"{PASS}\""));
    // A good publisher runs during all of it.
    let mut good = publish_live_srt(&srt_url(server.srt, &open, ""));
    wait_until(Duration::from_secs(15), || {
        !segments(&server, "live/open").is_empty()
    })
    .expect("good publisher live");

    let cases: [(&str, String, u16); 6] = [
        (
            "wrong passphrase",
            srt_url(
                server.srt,
                &locked,
                "&passphrase=wrongwrongwrong&pbkeylen=16",
            ),
            1010,
        ),
        ("missing passphrase", srt_url(server.srt, &locked, ""), 1011),
        // Trap case 3: a passphrase sent to an unencrypted stream.
        (
            "unexpected passphrase",
            srt_url(
                server.srt,
                &open,
                &format!("&passphrase={PASS}&pbkeylen=32"),
            ),
            1011,
        ),
        ("unknown key", srt_url(server.srt, "nosuchkey123", ""), 2401),
        (
            "malformed stream id",
            format!("srt://{}?streamid=#!::m=publish,u=x", server.srt),
            2400,
        ),
        (
            "play mode",
            format!("srt://{}?streamid=#!::r=live/{open},m=request", server.srt),
            2405,
        ),
    ];
    for (what, url, code) in &cases {
        let before = plain_log(&server).matches(&format!("code={code}")).count();
        assert!(refused_caller(url), "{what}: caller was not refused");
        assert!(
            plain_log(&server).matches(&format!("code={code}")).count() > before,
            "{what}: no rejection with code {code}; log:\n{}",
            server.log()
        );
    }
    // Trap case 2: a passphrase without pbkeylen is AES-128 and is accepted.
    let _ok = publish_live_srt(&srt_url(
        server.srt,
        &locked,
        &format!("&passphrase={PASS}"),
    ));
    expect_hls(&server, "live/locked", 1, 320, work.path());
    // The first publisher was never disturbed, and the server never panicked.
    assert!(good.running(), "good publisher died");
    let n = segments(&server, "live/open").len();
    wait_until(Duration::from_secs(8), || {
        segments(&server, "live/open").len() > n
    })
    .expect("good stream keeps growing");
    expect_hls(&server, "live/open", 2, 320, work.path());
    assert!(!server.log().contains("panic"));
}

fn publish_live_srt(url: &str) -> Proc {
    Proc(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args(["-g", "30", "-c:a", "aac", "-f", "mpegts", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A UDP relay between one SRT caller and the server that drops a share of
/// the datagrams in both directions (deterministic xorshift).
struct LossProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    passed: Arc<AtomicU64>,
}

impl LossProxy {
    fn start(server: SocketAddr, loss_percent: u64) -> LossProxy {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(server).unwrap();
        front
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        back.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let passed = Arc::new(AtomicU64::new(0));
        let caller: Arc<std::sync::Mutex<Option<SocketAddr>>> = Default::default();
        let (front, back) = (Arc::new(front), Arc::new(back));
        let lose = move |rng: &mut u64| {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            *rng % 100 < loss_percent
        };
        {
            let (front, back, stop, dropped, passed, caller) = (
                front.clone(),
                back.clone(),
                stop.clone(),
                dropped.clone(),
                passed.clone(),
                caller.clone(),
            );
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let mut rng = 0x9e37_79b9_7f4a_7c15u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *caller.lock().unwrap() = Some(from);
                        if lose(&mut rng) {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        } else {
                            passed.fetch_add(1, Ordering::Relaxed);
                            let _ = back.send(&buf[..n]);
                        }
                    }
                }
            });
        }
        {
            let (stop, dropped) = (stop.clone(), dropped.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let mut rng = 0x2545_f491_4f6c_dd1du64;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = back.recv(&mut buf) {
                        let to = *caller.lock().unwrap();
                        if let Some(to) = to {
                            if lose(&mut rng) {
                                dropped.fetch_add(1, Ordering::Relaxed);
                            } else {
                                let _ = front.send_to(&buf[..n], to);
                            }
                        }
                    }
                }
            });
        }
        LossProxy {
            addr,
            stop,
            dropped,
            passed,
        }
    }
}

impl Drop for LossProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// CPU seconds (user + system) and resident KiB of a process.
fn cpu_and_rss(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, rss)
}

#[test]
fn five_percent_loss_loses_no_frames_fifteen_percent_degrades_gracefully() {
    let clip = test_clip(640, 360, 10, 1000);
    // Loopback RTT is well under 1 ms; 300 ms latency is far above 4x RTT
    // and leaves room for several retransmission rounds.
    let server = Server::start(&["--srt-latency-ms", "300"]);
    let work = TempDir::new("srt-loss");
    let key = server.create_stream("lossy", "");
    {
        let proxy = LossProxy::start(server.srt, 5);
        let mut p = publish_srt(&clip, &srt_url(proxy.addr, &key, "&latency=300000"));
        expect_hls(&server, "live/lossy", 3, 640, work.path());
        wait_until(Duration::from_secs(20), || !p.running()).expect("clip published");
        assert!(
            proxy.dropped.load(Ordering::Relaxed) > 20,
            "the proxy lost packets"
        );
        assert!(proxy.passed.load(Ordering::Relaxed) > 500);
        // The session summary: retransmissions happened, nothing was dropped
        // as too late, no TS continuity error (no lost frame).
        let ended = wait_until(Duration::from_secs(10), || {
            server.log().contains("srt publish ended")
        });
        assert!(ended.is_some(), "{}", server.log());
        let log = plain_log(&server);
        let line = log
            .lines()
            .find(|l| l.contains("srt publish ended"))
            .unwrap()
            .to_string();
        assert!(line.contains("dropped=0"), "{line}");
        assert!(line.contains("cc_errors=0"), "{line}");
        assert!(!line.contains("retransmitted=0 "), "{line}");
    }
    // 15 %: the stream may degrade, the server must not spin or grow.
    let mut server = server;
    let pid = server.pid();
    let proxy = LossProxy::start(server.srt, 15);
    let _p = publish_live_srt(&srt_url(proxy.addr, &key, "&latency=300000"));
    std::thread::sleep(Duration::from_secs(3));
    let (cpu0, rss0) = cpu_and_rss(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    let (cpu1, rss1) = cpu_and_rss(pid);
    let share = (cpu1 - cpu0) / t0.elapsed().as_secs_f64();
    assert!(
        share < 0.5,
        "server used {:.0} % CPU under 15 % loss",
        share * 100.0
    );
    assert!(
        rss1 < rss0 + 64 * 1024,
        "RSS grew from {rss0} to {rss1} KiB"
    );
    assert!(server.alive());
}

#[test]
fn key_rotation_drops_the_srt_publisher() {
    let server = Server::start(&[]);
    let key = server.create_stream("rotate", "");
    let mut p = publish_live_srt(&srt_url(server.srt, &key, ""));
    wait_until(Duration::from_secs(15), || {
        !segments(&server, "live/rotate").is_empty()
    })
    .expect("live");
    let r = http_send(
        server.http,
        "POST",
        "/api/v1/streams/rotate/key",
        Some(ADMIN_TOKEN),
        Some("{}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // The connection is shut down at once; ffmpeg gives up.
    wait_until(Duration::from_secs(10), || {
        plain_log(&server).contains("taken_over=true")
    })
    .unwrap_or_else(|| panic!("publisher dropped: {}", plain_log(&server)));
    wait_until(Duration::from_secs(15), || !p.running()).expect("ffmpeg stopped");
    // The old key is refused now.
    assert!(refused_caller(&srt_url(server.srt, &key, "")));
}
