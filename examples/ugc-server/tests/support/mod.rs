//! Test harness for end-to-end tests: runs the real `ugc-server` binary and
//! real ffmpeg/ffprobe processes, and speaks plain HTTP/1.1 over std sockets.
#![allow(dead_code)]

pub mod gst;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The ugc-server binary under test: `UGC_SERVER_BIN` if set (a copy taken
/// right after the build, when several worktrees share one target dir and
/// may overwrite each other's binary), else the one cargo built.
pub fn server_bin() -> PathBuf {
    std::env::var_os("UGC_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ugc-server")))
}

/// A free TCP port on loopback for a server under test to bind.
///
/// Test ports come from below the kernel's ephemeral range (32768-60999 by
/// default), never from binding port 0: a port picked that way and released
/// lies in the range every outgoing connection draws from, so ffmpeg's or
/// the test's own connect can take it before the server binds it (CI of
/// stop 33: "binding HTTPS on 127.0.0.1:46003: Address already in use").
/// A process-wide counter hands each port out once; its start is spread by
/// the process id, and every port handed out is checked free for TCP and
/// UDP. Under cargo-nextest (`make unit`: one process per test, two at a
/// time) each running test starts in its own part of the range (see
/// [`first_port_offset`]): two tests checking the same port before either
/// binds it could otherwise both take it.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// A free UDP port on loopback (see [`free_port`]; checked for both).
pub fn free_udp_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive ports free for TCP and UDP on every
/// address, below the ephemeral range (see [`free_port`]).
pub fn free_ports(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let high = ephemeral_low().min(32_768);
    let low = 10_000u16.min(high / 2);
    let span = u32::from(high - low);
    assert!(u32::from(n) < span / 2, "{n} ports is too many");
    let next = NEXT.get_or_init(|| AtomicU32::new(first_port_offset(span)));
    for _ in 0..span {
        let first = next.fetch_add(u32::from(n), Ordering::Relaxed) % span;
        if first + u32::from(n) > span {
            continue;
        }
        let first = low + first as u16;
        let free = (first..first + n).all(|p| {
            TcpListener::bind(("0.0.0.0", p)).is_ok()
                && std::net::UdpSocket::bind(("0.0.0.0", p)).is_ok()
        });
        if free {
            return first;
        }
    }
    panic!("no {n} free ports between {low} and {high}");
}

/// Where in a range of `span` ports this process starts handing them out:
/// spread by the process id; under cargo-nextest, in the first half of the
/// eighth of the range that belongs to the test's slot
/// (`NEXTEST_TEST_GLOBAL_SLOT`, from 0 to the number of tests run at once,
/// two in `make unit`), so tests running side by side start far apart and
/// meet only if one takes more than half an eighth (1,400 ports here).
pub fn first_port_offset(span: u32) -> u32 {
    const BANDS: u32 = 8;
    let spread = std::process::id().wrapping_mul(7919);
    let slot = std::env::var("NEXTEST_TEST_GLOBAL_SLOT")
        .ok()
        .and_then(|s| s.parse::<u32>().ok());
    match slot {
        Some(slot) => {
            let width = span / BANDS;
            (slot % BANDS) * width + spread % (width / 2)
        }
        None => spread % span,
    }
}

/// The low end of the kernel's ephemeral port range.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("ugc-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The admin token every test server is started with.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef";

/// A running ugc-server, killed on drop.
pub struct Server {
    child: Child,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    /// SRT (UDP) listen address.
    pub srt: SocketAddr,
    pub data: TempDir,
    pub cwd: TempDir,
    log: PathBuf,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let data = TempDir::new("data");
        let rtmp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let srt: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
        Server::start_at(data, rtmp, http, srt, extra)
    }

    /// `kill -9` (SIGKILL) the server and start it again on the same data
    /// directory and ports with `extra` flags.
    pub fn kill9_and_restart(self, extra: &[&str]) -> Server {
        let mut this = std::mem::ManuallyDrop::new(self);
        let _ = this.child.kill();
        let _ = this.child.wait();
        // Move the fields out without running Drop (which would delete data).
        let data = TempDir(std::mem::take(&mut this.data.0));
        let _ = std::fs::remove_file(&this.log);
        let _ = std::fs::remove_dir_all(&this.cwd.0);
        let (rtmp, http, srt) = (this.rtmp, this.http, this.srt);
        Server::start_at(data, rtmp, http, srt, extra)
    }

    pub fn start_at(
        data: TempDir,
        rtmp: SocketAddr,
        http: SocketAddr,
        srt: SocketAddr,
        extra: &[&str],
    ) -> Server {
        let cwd = TempDir::new("cwd");
        let log = cwd.path().with_extension("log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(server_bin())
            .current_dir(cwd.path())
            .arg("--data")
            .arg(data.path())
            .args(["--rtmp", &rtmp.to_string(), "--http", &http.to_string()])
            .args(["--srt", &srt.to_string()])
            .args(["--public-host", "127.0.0.1"])
            // WHIP on a port of its own (servers run side by side).
            .args(if extra.contains(&"--whip-udp") {
                &[][..]
            } else {
                &["--whip-udp", "127.0.0.1:0"][..]
            })
            .args(extra)
            .env("UGC_LOG", "info,ugc_proto=debug")
            .env("UGC_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start ugc-server");
        let server = Server {
            child,
            rtmp,
            http,
            srt,
            data,
            cwd,
            log,
        };
        wait_until(Duration::from_secs(10), || {
            TcpStream::connect(server.http).is_ok() && TcpStream::connect(server.rtmp).is_ok()
        })
        .expect("ugc-server listens");
        server
    }

    /// Creates stream `name` through the control API; returns its publish
    /// key. `extra` is more JSON fields, e.g. `"private": true`.
    pub fn create_stream(&self, name: &str, extra: &str) -> String {
        let sep = if extra.is_empty() { "" } else { ", " };
        let body = format!("{{\"name\": \"{name}\"{sep}{extra}}}");
        let r = http_send(
            self.http,
            "POST",
            "/api/v1/streams",
            Some(ADMIN_TOKEN),
            Some(&body),
        );
        assert_eq!(r.status, 201, "create stream: {}", r.text());
        json_str(&r.text(), "key").expect("key in answer")
    }

    /// A play URL with token for `name` (`ttl_s`, optional bound IP).
    pub fn play_token(&self, name: &str, body: &str) -> String {
        let r = http_send(
            self.http,
            "POST",
            &format!("/api/v1/streams/{name}/play"),
            Some(ADMIN_TOKEN),
            Some(body),
        );
        assert_eq!(r.status, 200, "play token: {}", r.text());
        json_str(&r.text(), "token").expect("token in answer")
    }

    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://{}/live/{key}", self.rtmp)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn get(&self, path: &str) -> Response {
        http_get(self.http, path)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- ugc-server log ----\n{}", self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A process killed on drop (publishers).
pub struct Proc(pub Child);

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` every 50 ms until it holds or `timeout` passes; the time it took.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Polls `f` every 50 ms until it gives a value or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let mut out = None;
    wait_until(timeout, || {
        out = f();
        out.is_some()
    });
    out
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A minimal HTTP/1.1 GET (the path is sent exactly as given, so tests can
/// send traversal attempts no client library would).
pub fn http_get(addr: SocketAddr, path: &str) -> Response {
    http_request(addr, "GET", path)
}

pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> Response {
    http_send(addr, method, path, None, None)
}

/// A GET with extra request headers (e.g. `Range`).
pub fn http_get_headers(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read http");
    parse_response(&raw)
}

/// A log without its ANSI colour codes.
pub fn without_ansi(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A minimal HTTP/1.1 request with an optional bearer token and JSON body.
pub fn http_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    json: Option<&str>,
) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nOrigin: http://example.test\r\n"
    );
    if let Some(b) = bearer {
        head.push_str(&format!("Authorization: Bearer {b}\r\n"));
    }
    let body = json.unwrap_or("");
    if json.is_some() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read http");
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Response {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size_str = String::from_utf8_lossy(&b[..i]);
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = i + 2;
        out.extend_from_slice(&b[start..start + size]);
        b = &b[start + size + 2..];
    }
    out
}

/// The string value of `"key": "..."` in a flat JSON text (enough for the
/// control API's answers; avoids a JSON dependency in tests).
pub fn json_str(json: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":");
    let at = json.find(&pat)? + pat.len();
    let rest = json[at..].trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].to_string())
}

/// Runs a command to completion, returning its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Plays with hls.js in headless Chromium (`tests/browser/play.mjs`, which
/// needs `npm ci` there; `make browser-hls-js` does it) with `args`,
/// asserts it exited 0, and returns the JSON report it printed.
pub fn play_hls_js(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/play.mjs");
    let out = run(Command::new("node").arg(&script).args(args));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("hls.js: {stdout}");
    stdout
}

/// The number `key` of a player report (the JSON line `play_hls_js`
/// returns); NaN if it is not a number.
pub fn report_number(report: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let at = report
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} in {report}"));
    let rest = &report[at + pat.len()..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].parse().unwrap_or(f64::NAN)
}

/// A generated test clip, made once per machine and cached in the temp dir
/// (ffmpeg lavfi test pattern + tone): `WxH@30`, H.264 High with a keyframe
/// every 2 s, AAC-LC 48 kHz stereo.
pub fn test_clip(width: u32, height: u32, seconds: u32, kbps: u32) -> PathBuf {
    static LOCK: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _g = LOCK.get_or_init(Default::default).lock().unwrap();
    let dir = std::env::temp_dir().join("ugc-test-media");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "testsrc2_{width}x{height}_30fps_{seconds}s_{kbps}k_aac.mp4"
    ));
    if path.exists() {
        return path;
    }
    let tmp = path.with_extension(format!("{}.tmp.mp4", std::process::id()));
    let out = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={width}x{height}:rate=30"),
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo",
        ])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        ])
        .args(["-b:v", &format!("{kbps}k"), "-maxrate", &format!("{kbps}k")])
        .args(["-bufsize", &format!("{}k", kbps * 2)])
        .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
        .args(["-c:a", "aac", "-b:a", "128k"])
        .arg(&tmp));
    assert!(
        out.status.success(),
        "ffmpeg failed to make the test clip: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// `ffmpeg -re -i clip -c copy -f flv url` in the background.
pub fn publish_file(clip: &Path, url: &str) -> Proc {
    publish_args(&["-re", "-i", clip.to_str().unwrap(), "-c", "copy"], url)
}

/// `ffmpeg -re -i clip -c copy -f mpegts srt://...` in the background.
pub fn publish_srt(clip: &Path, url: &str) -> Proc {
    Proc(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-nostdin",
                "-re",
                "-i",
            ])
            .arg(clip)
            .args(["-c", "copy", "-f", "mpegts", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ffmpeg"),
    )
}

/// A live-encoded publisher (lavfi pattern, low CPU), for several at once.
pub fn publish_live(width: u32, height: u32, url: &str) -> Proc {
    publish_lavfi(&format!("testsrc2=size={width}x{height}:rate=30"), url)
}

/// [`publish_live`] of the lavfi video source `video` (30 fps: 1 s GOPs),
/// e.g. `color=c=blue:size=320x240:rate=30`, with a 440 Hz tone.
pub fn publish_lavfi(video: &str, url: &str) -> Proc {
    publish_args(
        &[
            "-re",
            "-f",
            "lavfi",
            "-i",
            video,
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-c:a",
            "aac",
        ],
        url,
    )
}

fn publish_args(input: &[&str], url: &str) -> Proc {
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(input)
        .args(["-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ffmpeg");
    Proc(child)
}

/// A parsed media playlist: (msn, discontinuity before it, duration s, uri).
#[derive(Debug, Clone)]
pub struct PlaylistSegment {
    pub msn: u64,
    pub discontinuity: bool,
    pub duration: f64,
    pub uri: String,
    pub map: Option<String>,
}

pub fn parse_media_playlist(text: &str) -> Vec<PlaylistSegment> {
    let mut out = Vec::new();
    let mut msn = 0u64;
    let mut disc = false;
    let mut dur = 0.0;
    let mut map = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            msn = v.trim().parse().unwrap();
        } else if line.starts_with("#EXT-X-DISCONTINUITY") && !line.contains("SEQUENCE") {
            disc = true;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            dur = v.split(',').next().unwrap().parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:URI=") {
            map = Some(v.trim_matches('"').to_string());
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            out.push(PlaylistSegment {
                msn,
                discontinuity: disc,
                duration: dur,
                uri: line.trim().to_string(),
                map: map.clone(),
            });
            msn += 1;
            disc = false;
        }
    }
    out
}

/// ffprobe of a file: per stream (codec_type, start_time s, width, height).
pub fn probe_streams(file: &Path) -> Vec<(String, f64, u32, u32)> {
    let out = run(Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .arg("stream=codec_type,start_time,width,height")
        .args(["-of", "compact=p=0"])
        .arg(file));
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let field = |k: &str| {
                l.split('|')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default()
            };
            (
                field("codec_type"),
                field("start_time").parse().unwrap_or(f64::NAN),
                field("width").parse().unwrap_or(0),
                field("height").parse().unwrap_or(0),
            )
        })
        .collect()
}

/// Decodes every frame of `file`; returns ffmpeg's error output (empty when clean).
///
/// `-enc_time_base -1` (here and in every `-f null` read of the e2e tests):
/// the null output keeps the input's time base. Otherwise ffmpeg rescales
/// to 1/(the frame rate it guessed from the first frames), and a live
/// source that started irregularly (a ladder dropping pictures under load,
/// a pusher's first frames after a reconnect) made it guess low, so
/// distinct frames met on one tick: "non monotonically increasing dts to
/// muxer" although the media was right. Equal input timestamps still fail.
pub fn decode_errors(file: &Path) -> String {
    let out = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(file)
        .args(["-enc_time_base", "-1", "-f", "null", "-"]));
    let mut s = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        s.push_str(&format!("\nffmpeg exited with {}", out.status));
    }
    s
}

/// Key-frame flags of the video frames of `file`, in order.
pub fn video_keyframes(file: &Path) -> Vec<bool> {
    let out = run(Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg("frame=key_frame")
        .args(["-of", "csv=p=0"])
        .arg(file));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().starts_with('1'))
        .collect()
}

/// The wall clock (unix ms) of the first archived segment listed in a
/// playlist, read from its name (`dvr-s<pdt_ms>_...`), or `None`.
pub fn first_archived_ms(playlist: &str) -> Option<i64> {
    playlist.lines().find_map(|l| {
        let name = l.rsplit('/').next()?.strip_prefix("dvr-s")?;
        name.split('_').next()?.parse().ok()
    })
}

/// The unix second in which the archive of `stream` (e.g. `rec` or
/// `lad/240p`) begins, as the server recorded it: read from its first
/// archived segment after `since` (waits up to 30 s for one). Tests build
/// DVR ranges from it rather than from their own clock, because on a loaded
/// machine a publisher may start seconds after the test took the time.
pub fn archive_start(server: &Server, stream: &str, since: i64) -> i64 {
    let path = format!("/live/{stream}/index-{since}-now.m3u8");
    let mut found = None;
    wait_until(Duration::from_secs(30), || {
        found = first_archived_ms(&server.get(&path).text());
        found.is_some()
    });
    let ms = found.unwrap_or_else(|| panic!("nothing archived in {path}:\n{}", server.log()));
    ms.div_euclid(1000)
}

/// Every media file a playlist names (URI lines and `URI="..."`
/// attributes, without their query), parsed: `seg-<session>-<msn>`,
/// `part-<session>-<msn>.<i>`, `init-<session>-<n>`.
pub fn media_files(playlist: &str) -> Vec<ugc_dvr::MediaFile> {
    let mut uris = Vec::new();
    for line in playlist.lines() {
        if !line.starts_with('#') {
            uris.push(line);
        } else if let Some(rest) = line.split("URI=\"").nth(1) {
            uris.push(rest.split('"').next().unwrap_or(""));
        }
    }
    uris.into_iter()
        .filter_map(|u| ugc_dvr::MediaFile::parse(u.split('?').next()?).ok())
        .collect()
}

/// Whether a playlist lists part `p` of segment `m` (any session).
pub fn lists_part(playlist: &str, m: u64, p: u32) -> bool {
    media_files(playlist)
        .iter()
        .any(|f| matches!(*f, ugc_dvr::MediaFile::Part(_, mm, pp) if (mm, pp) == (m, p)))
}

/// Whether a playlist lists segment `m` (any session, either variant).
pub fn lists_segment(playlist: &str, m: u64) -> bool {
    media_files(playlist)
        .iter()
        .any(|f| matches!(*f, ugc_dvr::MediaFile::Segment(_, _, mm) if mm == m))
}

/// The `#EXT-X-PRELOAD-HINT` part of a playlist: (msn, index).
pub fn preload_hint(playlist: &str) -> Option<(u64, u32)> {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))?;
    match media_files(line).first()? {
        ugc_dvr::MediaFile::Part(_, m, p) => Some((*m, *p)),
        _ => None,
    }
}

/// The URI of the first `#EXT-X-MAP` of a playlist (without a query).
pub fn init_uri(playlist: &str) -> Option<String> {
    let line = playlist.lines().find(|l| l.starts_with("#EXT-X-MAP:"))?;
    let uri = line.split("URI=\"").nth(1)?.split('"').next()?;
    Some(uri.split('?').next()?.to_owned())
}

/// nginx with `proxy_cache` in front of an origin, on a free port, as a
/// child process with its files in a temp dir.
pub struct NginxEdge {
    proc: Proc,
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl NginxEdge {
    pub fn start(origin: SocketAddr) -> NginxEdge {
        Self::with_config(|dir, listen| {
            format!(
                include_str!("../nginx-edge.conf.in"),
                dir = dir.display(),
                listen = listen,
                origin = origin
            )
        })
    }

    /// nginx on the configuration `make(dir, listen)` writes for its
    /// files' directory and its address (which must keep nginx in the
    /// foreground: `daemon off;`).
    pub fn with_config(make: impl FnOnce(&Path, SocketAddr) -> String) -> NginxEdge {
        let dir = TempDir::new("nginx");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let conf = make(dir.path(), addr);
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-e", "stderr"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let nginx = NginxEdge {
            proc: Proc(child),
            addr,
            _dir: dir,
        };
        wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(addr).is_ok()
        })
        .expect("nginx listens");
        nginx
    }

    pub fn get(&self, path: &str) -> Response {
        http_get(self.addr, path)
    }
}

impl Drop for NginxEdge {
    fn drop(&mut self) {
        self.proc.kill();
    }
}

/// Downloads the init segment and media segment `seg` of Hub stream
/// `stream` (`live/<name>`), by the URIs its playlist gave, into one file
/// ready for ffprobe.
pub fn fetch_fmp4_segment(
    server: &Server,
    stream: &str,
    seg: &PlaylistSegment,
    dir: &Path,
) -> PathBuf {
    fetch_fmp4_segment_at(server.http, stream, seg, dir)
}

/// [`fetch_fmp4_segment`] from the node at `http` (an origin).
pub fn fetch_fmp4_segment_at(
    http: SocketAddr,
    stream: &str,
    seg: &PlaylistSegment,
    dir: &Path,
) -> PathBuf {
    let map = seg.map.as_deref().expect("EXT-X-MAP before segment");
    let init = http_get(http, &format!("/{stream}/{map}"));
    assert_eq!(init.status, 200, "init {map}");
    let media = http_get(http, &format!("/{stream}/{}", seg.uri));
    assert_eq!(media.status, 200, "segment {}", seg.uri);
    let path = dir.join(format!("{}-{}.mp4", stream.replace('/', "_"), seg.msn));
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&init.body).unwrap();
    f.write_all(&media.body).unwrap();
    path
}

/// The mean colour (R, G, B) of the first picture of `file`.
pub fn mean_rgb(file: &Path) -> (f64, f64, f64) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = (out.stdout.len() / 3) as f64;
    let sum = |c: usize| {
        out.stdout
            .iter()
            .skip(c)
            .step_by(3)
            .map(|&v| f64::from(v))
            .sum::<f64>()
    };
    (sum(0) / n, sum(1) / n, sum(2) / n)
}

/// Checks that live stream `live/<name>`, published with H.264 `width`
/// pixels wide + AAC and 2 s GOPs, plays over HLS: the multivariant
/// playlist names both codecs, ffmpeg reads the live playlist for 4 s
/// without an error, and the newest fMP4 segments and the newest MPEG-TS
/// segment decode cleanly, start with a keyframe and hold audio and video.
pub fn assert_live_hls_plays(server: &Server, name: &str, width: u32, work: &Path) {
    let stream = format!("live/{name}");
    let mono = || {
        let r = server.get(&format!("/{stream}/mono.m3u8"));
        if r.status == 200 {
            parse_media_playlist(&r.text())
        } else {
            Vec::new()
        }
    };
    assert!(
        wait_until(Duration::from_secs(30), || mono().len() >= 3).is_some(),
        "{stream}: no 3 segments in 30 s: {:?}",
        mono()
    );
    let master = server.get(&format!("/{stream}/index.m3u8")).text();
    assert!(
        master.contains("avc1.") && master.contains("mp4a.40.2"),
        "{master}"
    );
    let out = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(server.url(&format!("/{stream}/index.m3u8")))
        .args(["-t", "4", "-enc_time_base", "-1", "-f", "null", "-"]));
    let errors = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && errors.trim().is_empty(),
        "ffmpeg reading {stream} live: {errors}"
    );
    let segs = mono();
    for seg in &segs[segs.len() - 2..] {
        assert!(
            seg.duration <= 2.1,
            "{stream} segment {} lasts {} s (GOP is 2 s)",
            seg.uri,
            seg.duration
        );
        let path = fetch_fmp4_segment(server, &stream, seg, work);
        let errors = decode_errors(&path);
        assert!(errors.trim().is_empty(), "{}: {errors}", path.display());
        let keys = video_keyframes(&path);
        assert!(keys.first() == Some(&true), "{}: {keys:?}", path.display());
        let streams = probe_streams(&path);
        let v = streams.iter().find(|s| s.0 == "video").expect("video");
        assert_eq!(v.2, width, "{}: width", path.display());
        assert!(streams.iter().any(|s| s.0 == "audio"), "{streams:?}");
    }
    let ts = server.get(&format!("/{stream}/mono-ts.m3u8"));
    assert_eq!(ts.status, 200);
    let ts_segs = parse_media_playlist(&ts.text());
    let last = ts_segs.last().expect("a TS segment");
    let body = server.get(&format!("/{stream}/{}", last.uri));
    assert_eq!(body.status, 200, "{}", last.uri);
    let path = work.join(format!("{name}-{}.ts", last.msn));
    std::fs::write(&path, &body.body).unwrap();
    let errors = decode_errors(&path);
    assert!(errors.trim().is_empty(), "{}: {errors}", path.display());
    assert!(video_keyframes(&path).first() == Some(&true));
}

/// Requests a [`WebhookReceiver`] got: (head, body).
type Requests = std::sync::Mutex<Vec<(String, Vec<u8>)>>;

/// A webhook receiver on loopback: keeps every POST's headers and body and
/// answers 204 (HTTP/1.1, keep-alive).
pub struct WebhookReceiver {
    pub url: String,
    got: std::sync::Arc<Requests>,
}

impl WebhookReceiver {
    pub fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = std::sync::Arc::new(Requests::default());
        let store = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let store = store.clone();
                std::thread::spawn(move || Self::serve(conn, &store));
            }
        });
        WebhookReceiver { url, got }
    }

    fn serve(mut conn: TcpStream, store: &Requests) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            store.lock().unwrap().push((head, body));
            if conn
                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .is_err()
            {
                return;
            }
        }
    }

    /// Request heads and bodies so far.
    pub fn requests(&self) -> Vec<(String, Vec<u8>)> {
        self.got.lock().unwrap().clone()
    }

    /// The `(from, to)` of every `stream.source_switched` event for `name`
    /// so far, in order.
    pub fn switches(&self, name: &str) -> Vec<(String, String)> {
        self.requests()
            .iter()
            .filter_map(|(_, body)| {
                let v: serde_json::Value = serde_json::from_slice(body).ok()?;
                (v["event"] == "stream.source_switched" && v["stream"] == name).then(|| {
                    (
                        v["from"].as_str().unwrap_or_default().to_owned(),
                        v["to"].as_str().unwrap_or_default().to_owned(),
                    )
                })
            })
            .collect()
    }
}

/// A self-signed certificate for 127.0.0.1 in `tls`: (cert, key) PEM files.
pub fn self_signed(tls: &TempDir) -> (PathBuf, PathBuf) {
    let cert = tls.path().join("cert.pem");
    let key = tls.path().join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// A sample of the server's `/metrics` by its exact name with labels
/// (`ugc_stream_viewers{stream="live/x"}`); `None` when it is not there.
pub fn metric_sample(server: &Server, sample: &str) -> Option<f64> {
    let text = server.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// FFmpeg 9 from the `imageio-ffmpeg` wheel (scripts/install-deps.sh).
pub fn ffmpeg9() -> PathBuf {
    let out = run(Command::new("python3").args([
        "-c",
        "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())",
    ]));
    assert!(
        out.status.success(),
        "imageio-ffmpeg missing (scripts/install-deps.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// An offer as a browser makes it, but with a codec we do not take only
/// (VP8 video): parses, and has nothing for us.
pub const VP8_ONLY_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=msid-semantic: WMS\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:abcd\r\n\
a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 7A:D7:C9:33:94:8D:8A:BA:10:EB:93:21:7C:B4:91:6D:40:F7:56:07:CA:9D:42:D3:80:32:2D:10:D9:AC:8E:15\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=sendonly\r\n\
a=rtcp-mux\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=ssrc:1111 cname:x\r\n";

/// The same offer with H.264 (what browsers send first): taken.
pub fn h264_offer() -> String {
    VP8_ONLY_OFFER.replace("SAVPF 96", "SAVPF 102").replace(
        "a=rtpmap:96 VP8/90000\r\n",
        "a=rtpmap:102 H264/90000\r\n\
             a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n",
    )
}

/// A viewer's offer as a browser makes it: the H.264 offer, receiving.
pub fn h264_recv_offer() -> String {
    h264_offer()
        .replace("a=sendonly", "a=recvonly")
        .replace("a=ssrc:1111 cname:x\r\n", "")
}

/// A request with an SDP (or other) body and an optional bearer key.
pub fn whip_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(k) = key {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    if let Some(t) = content_type {
        head.push_str(&format!("Content-Type: {t}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) and close before it reads a body it
    // refuses: the answer is read all the same.
    let wrote = s.write_all(body.as_bytes());
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    if raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return parse_response(&raw);
    }
    panic!("{method} {path}: no answer (write {wrote:?}, read {read:?})");
}

/// `s3s-fs` (installed by `scripts/install-deps.sh s3`) on loopback.
pub struct S3Fs(std::process::Child);

impl S3Fs {
    /// Serves the buckets of directory `root` (bucket `dvr` made) on
    /// `port`, keys `e2eaccess` / `e2esecret0123456789`.
    pub fn start(root: &Path, port: u16) -> S3Fs {
        let home = std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_default();
        let bin = home.join(".cargo/bin/s3s-fs");
        assert!(
            bin.exists(),
            "s3s-fs missing: run scripts/install-deps.sh s3"
        );
        std::fs::create_dir_all(root.join("dvr")).unwrap();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--access-key",
                "e2eaccess",
                "--secret-key",
                "e2esecret0123456789",
            ])
            .arg(root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .expect("s3s-fs listens");
        S3Fs(child)
    }
}

impl Drop for S3Fs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// ffprobe's duration of a file or URL.
pub fn probe_duration(input: impl AsRef<std::ffi::OsStr>) -> f64 {
    let input = input.as_ref();
    let out = run(Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration"])
        .args(["-of", "csv=p=0"])
        .arg(input));
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(f64::NAN)
}

/// Offset of the first top-level ISO BMFF box of type `kind`.
pub fn box_offset(data: &[u8], kind: &[u8; 4]) -> Option<usize> {
    // Top-level boxes only.
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        if &data[at + 4..at + 8] == kind {
            return Some(at);
        }
        if size < 8 {
            return None;
        }
        at += size;
    }
    None
}

#[path = "../../../../tests/support/garage.rs"]
mod garage;
pub use garage::{GARAGE_KEY, GARAGE_SECRET, Garage};

/// What the process tests do with a [`Garage`].
pub trait GarageExt {
    /// A `[dvr.s3]` table for bucket `dvr` (no prefix).
    fn dvr_s3_toml(&self) -> String;
    /// The keys of bucket `dvr` below `prefix` (ListObjectsV2, signed by
    /// curl; up to 1,000).
    fn keys(&self, prefix: &str) -> Vec<String>;
}

impl GarageExt for Garage {
    fn dvr_s3_toml(&self) -> String {
        format!(
            "[dvr.s3]\nendpoint = \"http://127.0.0.1:{}\"\nregion = \"garage\"\nbucket = \"dvr\"\n\
             access_key_id = \"{GARAGE_KEY}\"\nsecret_access_key = \"{GARAGE_SECRET}\"\n",
            self.port
        )
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        // garage wants the payload hash header; curl 7.88 leaves it out.
        let out = run(Command::new("curl")
            .args(["-sS", "--fail", "--aws-sigv4", "aws:amz:garage:s3"])
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
            .args(["--user", &format!("{GARAGE_KEY}:{GARAGE_SECRET}")])
            .arg(format!(
                "http://127.0.0.1:{}/dvr?list-type=2&prefix={}",
                self.port,
                prefix.replace('/', "%2F")
            )));
        assert!(
            out.status.success(),
            "listing the bucket: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }
}
