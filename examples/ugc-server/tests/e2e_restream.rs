//! End to end: ugc-server pushes live streams to real RTMP servers: Debian's
//! nginx-rtmp (plain, and RTMPS through an nginx `stream` TLS front with a
//! certificate made here with the openssl CLI) and a second ugc-server.
//! Targets are set through the control API (`restream`).

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

/// nginx in the foreground (one process), killed on drop.
struct Nginx {
    proc: Proc,
    conf: PathBuf,
    rtmp: u16,
}

impl Nginx {
    fn start(dir: &Path, rtmp: u16, tls: Option<(u16, &Path, &Path)>) -> Nginx {
        let mut conf = String::from(
            "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n\
             load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
             daemon off;\nmaster_process off;\n",
        );
        conf += &format!(
            "pid {0}/nginx.pid;\nerror_log {0}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{rtmp}; application live {{ live on; }} }} }}\n",
            dir.display()
        );
        if let Some((port, cert, key)) = tls {
            conf += &format!(
                "stream {{ server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {}; \
                 ssl_certificate_key {}; proxy_pass 127.0.0.1:{rtmp}; }} }}\n",
                cert.display(),
                key.display()
            );
        }
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        Self::run(path, rtmp)
    }

    fn run(conf: PathBuf, rtmp: u16) -> Nginx {
        let dir = conf.parent().unwrap().to_path_buf();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian nginx + libnginx-mod-rtmp)");
        wait_until(Duration::from_secs(5), || {
            TcpStream::connect(("127.0.0.1", rtmp)).is_ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "nginx-rtmp listens: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            )
        });
        Nginx {
            proc: Proc(child),
            conf,
            rtmp,
        }
    }

    fn restart(&mut self) {
        self.proc.kill();
        *self = Self::run(self.conf.clone(), self.rtmp);
    }
}

/// A CA and a `localhost` leaf certificate signed by it (EC P-256).
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = dir.join("ca.key");
    let ca = dir.join("ca.pem");
    let key = dir.join("leaf.key");
    let csr = dir.join("leaf.csr");
    let leaf = dir.join("leaf.pem");
    let ext = dir.join("leaf.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for args in [
        vec![
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=ugc test CA",
            "-keyout",
        ],
        vec!["req", "-subj", "/CN=localhost", "-keyout"],
    ] {
        let (k, o) = if args.contains(&"-x509") {
            (&ca_key, &ca)
        } else {
            (&key, &csr)
        };
        let out = run(Command::new("openssl")
            .args(&args)
            .arg(k)
            .args(ec)
            .arg("-out")
            .arg(o));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .args(["-CAcreateserial", "-out"])
        .arg(&leaf)
        .arg("-extfile")
        .arg(&ext));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (ca, leaf, key)
}

/// Decodes 2 s of an RTMP stream; true when it has video and audio and no
/// decode errors.
fn playable(url: &str) -> Result<(), String> {
    let out = run(Command::new("timeout")
        .args(["15", "ffmpeg", "-hide_banner", "-v", "error", "-i", url])
        .args(["-t", "2", "-enc_time_base", "-1", "-f", "null", "-"]));
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !out.status.success() || !err.is_empty() {
        return Err(format!("{url}: {err} ({})", out.status));
    }
    let probe = run(Command::new("timeout")
        .args([
            "15",
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type",
        ])
        .args(["-of", "csv=p=0", url]));
    let types = String::from_utf8_lossy(&probe.stdout).to_string();
    if !(types.contains("video") && types.contains("audio")) {
        return Err(format!("{url}: streams {types:?}"));
    }
    Ok(())
}

fn restream_states(server: &Server) -> String {
    http_send(
        server.http,
        "GET",
        "/api/v1/stats/restream",
        Some(ADMIN_TOKEN),
        None,
    )
    .text()
}

/// The second server's `live/mirror` plays: 3 s decode without an error,
/// 640x360 with AAC.
fn mirror_plays(target: &Server) {
    let out = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(target.url("/live/mirror/index.m3u8"))
        .args(["-t", "3", "-enc_time_base", "-1", "-f", "null", "-"]));
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stderr).trim().is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let master = target.get("/live/mirror/index.m3u8").text();
    assert!(
        master.contains("RESOLUTION=640x360") && master.contains("mp4a.40.2"),
        "{master}"
    );
}

fn hls_segments(server: &Server, stream: &str) -> usize {
    let r = server.get(&format!("/{stream}/mono.m3u8"));
    if r.status != 200 {
        return 0;
    }
    parse_media_playlist(&r.text()).len()
}

#[test]
fn pushes_to_nginx_rtmp_and_over_rtmps_and_survive_a_target_restart() {
    let work = TempDir::new("restream-nginx");
    let (ca, leaf, key) = make_certs(work.path());
    let rtmp = free_port();
    let rtmps = free_port();
    let mut nginx = Nginx::start(work.path(), rtmp, Some((rtmps, &leaf, &key)));
    let config = work.path().join("ugc.toml");
    std::fs::write(
        &config,
        format!("restream_ca_file = \"{}\"\n", ca.display()),
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let key_in = server.create_stream(
        "multi",
        &format!(
            "\"restream\": [\"rtmp://127.0.0.1:{rtmp}/live/plain\", \"rtmps://localhost:{rtmps}/live/tls\"]"
        ),
    );
    let mut publisher = publish_live(640, 360, &server.rtmp_url(&key_in));
    let plain = format!("rtmp://127.0.0.1:{rtmp}/live/plain");
    let tls = format!("rtmp://127.0.0.1:{rtmp}/live/tls");
    wait_until(Duration::from_secs(20), || {
        restream_states(&server)
            .matches("\"state\":\"live\"")
            .count()
            == 2
    })
    .unwrap_or_else(|| panic!("both targets live: {}", restream_states(&server)));
    playable(&plain).unwrap();
    playable(&tls).unwrap();

    // Kill the target: the pushers retry, the ingest goes on.
    nginx.proc.kill();
    wait_until(Duration::from_secs(15), || {
        restream_states(&server)
            .matches("\"state\":\"retrying\"")
            .count()
            == 2
    })
    .unwrap_or_else(|| panic!("both retrying: {}", restream_states(&server)));
    let before = hls_segments(&server, "live/multi");
    wait_until(Duration::from_secs(10), || {
        hls_segments(&server, "live/multi") > before
    })
    .expect("HLS keeps growing while the target is down");
    assert!(publisher.running());

    // Bring it back: both reconnect and play again.
    nginx.restart();
    wait_until(Duration::from_secs(40), || {
        let s = restream_states(&server);
        s.matches("\"state\":\"live\"").count() == 2 && !s.contains("\"reconnects\":0")
    })
    .unwrap_or_else(|| panic!("both live again: {}", restream_states(&server)));
    playable(&plain).unwrap();
    playable(&tls).unwrap();
    assert!(publisher.running());
}

#[test]
fn pushes_an_srt_ingest_to_a_second_ugc_server() {
    let target = Server::start(&[]);
    let target_key = target.create_stream("mirror", "");
    let origin = Server::start(&[]);
    let key = origin.create_stream(
        "source",
        &format!("\"restream\": [\"{}\"]", target.rtmp_url(&target_key)),
    );
    // Publish to the origin over SRT.
    let _p = Proc(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "60"])
            .args(["-c:a", "aac", "-f", "mpegts"])
            .arg(format!(
                "srt://{}?streamid=#!::r=live/{key},m=publish",
                origin.srt
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(Duration::from_secs(30), || {
        hls_segments(&target, "live/mirror") >= 2
    })
    .unwrap_or_else(|| panic!("mirror segments; origin log:\n{}", origin.log()));
    // The pushed stream plays on the second server.
    mirror_plays(&target);
}

/// Whether the MPEG-TS file `path` has video and audio and decodes
/// without an error but for its last half second (the receiver was killed
/// mid-frame).
fn ts_decodes(path: &Path) -> Result<(), String> {
    let probe = run(Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration"])
        .args(["-of", "csv=p=0"])
        .arg(path));
    let duration: f64 = String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("{}: duration: {e}", path.display()))?;
    if duration < 3.0 {
        return Err(format!("{}: only {duration} s", path.display()));
    }
    let out = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(path)
        .args(["-t", &format!("{:.2}", duration - 0.5)])
        .args(["-enc_time_base", "-1", "-f", "null", "-"]));
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !out.status.success() || !err.is_empty() {
        return Err(format!("{}: {err} ({})", path.display(), out.status));
    }
    let probe = run(Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name"])
        .args(["-of", "csv=p=0"])
        .arg(path));
    let codecs = String::from_utf8_lossy(&probe.stdout).to_string();
    if !(codecs.contains("h264") && codecs.contains("aac")) {
        return Err(format!("{}: streams {codecs:?}", path.display()));
    }
    Ok(())
}

/// `restream` to `srt://` targets: Debian's srt-live-transmit as a plain
/// listener (what it writes decodes, H.264 and AAC), a second ugc-server's
/// SRT ingest with an AES-256 passphrase (its HLS plays), and the same
/// ingest with a wrong passphrase (refused, and the status says why).
#[test]
fn pushes_over_srt_to_srt_live_transmit_and_an_encrypted_ugc_ingest() {
    let work = TempDir::new("restream-srt");
    const PASS: &str = "restream-passphrase-1";
    let target = Server::start(&[]);
    let target_key = target.create_stream("mirror", &format!("\"srt_passphrase\": \"{PASS}\""));
    let slt_port = free_port();
    let ts = work.path().join("slt.ts");
    let mut slt = Proc(
        Command::new("srt-live-transmit")
            .args([
                "-q",
                &format!("srt://127.0.0.1:{slt_port}?mode=listener"),
                "file://con",
            ])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&ts).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("srt-live-transmit (Debian srt-tools)"),
    );
    let sid = format!("#!::r=live/{target_key},m=publish");
    let targets = [
        format!("srt://127.0.0.1:{slt_port}?latency=200"),
        format!(
            "srt://{}?streamid={sid}&passphrase={PASS}&pbkeylen=32",
            target.srt
        ),
        format!(
            "srt://{}?streamid={sid}&passphrase=not-the-passphrase",
            target.srt
        ),
    ];
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    let server = Server::start(&[]);
    let key = server.create_stream("multi", &format!("\"restream\": [{}]", list.join(",")));
    let mut publisher = publish_live(640, 360, &server.rtmp_url(&key));
    wait_until(Duration::from_secs(30), || {
        let s = restream_states(&server);
        s.matches("\"state\":\"live\"").count() == 2 && s.contains("wrong passphrase")
    })
    .unwrap_or_else(|| panic!("two live, one refused: {}", restream_states(&server)));
    let states = restream_states(&server);
    // Secrets stay out of the status.
    assert!(
        !states.contains(PASS) && !states.contains(&target_key),
        "{states}"
    );
    wait_until(Duration::from_secs(30), || {
        hls_segments(&target, "live/mirror") >= 3
    })
    .unwrap_or_else(|| panic!("mirror segments; log:\n{}", server.log()));
    mirror_plays(&target);
    // srt-live-transmit got the stream from a keyframe on.
    wait_until(Duration::from_secs(10), || {
        std::fs::metadata(&ts).map(|m| m.len()).unwrap_or(0) > 1_000_000
    })
    .expect("srt-live-transmit received the stream");
    slt.kill();
    ts_decodes(&ts).unwrap();
    assert!(publisher.running());
}
