//! End to end LL-HLS: real ffmpeg publishes over RTMP to the real
//! ugc-server; the origin is read over HTTP/1.1, h2c and HTTP/2 over TLS
//! (curl), through a real nginx `proxy_cache` edge, and by hls.js in
//! headless Chromium (`#[ignore]`d here: `make test` runs it with the npm
//! dependencies installed, see tests/browser/).

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

fn hint(playlist: &str) -> Option<(u64, u32)> {
    preload_hint(playlist)
}

/// Starts the server (LL-HLS on by default) with HTTPS, creates and publishes
/// stream `name`, and waits until its playlist lists parts.
fn live_server(name: &str, tls: &TempDir) -> (Server, Proc, SocketAddr) {
    let (cert, key) = self_signed(tls);
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = Server::start(&[
        "--https",
        &https.to_string(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        // Not the default 1936: tests run side by side.
        "--rtmps",
        "off",
    ]);
    let key = server.create_stream(name, "");
    let publisher = publish_live(320, 240, &server.rtmp_url(&key));
    wait_until(Duration::from_secs(20), || {
        let r = server.get(&format!("/live/{name}/mono.m3u8"));
        r.status == 200 && r.text().contains("#EXT-X-PART:")
    })
    .unwrap_or_else(|| panic!("no LL-HLS playlist: {}", server.log()));
    (server, publisher, https)
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ll_hls_over_http2_and_through_an_nginx_cache() {
    let tls = TempDir::new("tls");
    let (server, mut publisher, https) = live_server("llcache", &tls);
    let base = "/live/llcache";
    let playlist = server.get(&format!("{base}/mono.m3u8"));
    let text = playlist.text();
    assert_eq!(playlist.header("cache-control"), Some("no-cache"));
    assert!(
        text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES"),
        "{text}"
    );
    assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.200"), "{text}");

    // h2c (prior knowledge) on the plain port; HTTP/2 and HTTP/1.1 over TLS.
    let h2c = curl(&[
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        &server.url(&format!("{base}/mono.m3u8")),
    ]);
    assert_eq!(h2c, "2 200");
    let cacert = tls.path().join("cert.pem");
    let tls_url = format!("https://{https}{base}/mono.m3u8");
    let h2 = curl(&[
        "--cacert",
        cacert.to_str().unwrap(),
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        &tls_url,
    ]);
    assert_eq!(h2, "2 200");
    let h1 = curl(&[
        "--cacert",
        cacert.to_str().unwrap(),
        "--http1.1",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        &tls_url,
    ]);
    assert_eq!(h1, "1.1 200");
    // A blocking reload over HTTP/2 + TLS.
    let (m, p) = hint(&text).unwrap();
    let blocked = curl(&[
        "--cacert",
        cacert.to_str().unwrap(),
        "--http2",
        &format!("{tls_url}?_HLS_msn={m}&_HLS_part={p}"),
    ]);
    assert!(
        lists_part(&blocked, m, p) || lists_segment(&blocked, m),
        "{blocked}"
    );

    // nginx proxy_cache in front of the origin.
    let edge = NginxEdge::start(server.http);
    // Parts and segments: cached (immutable), identical to the origin's.
    let text = edge.get(&format!("{base}/mono.m3u8")).text();
    let part_uri = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
        .filter_map(|l| l.split("URI=\"").nth(1))
        .filter_map(|u| u.split('"').next())
        .next()
        .expect("a part")
        .to_owned();
    let seg_uri = text
        .lines()
        .find(|l| l.starts_with("seg-"))
        .unwrap()
        .to_owned();
    for uri in [&part_uri, &seg_uri] {
        let a = edge.get(&format!("{base}/{uri}"));
        let b = edge.get(&format!("{base}/{uri}"));
        assert_eq!(a.status, 200, "{uri}");
        assert_eq!(b.header("x-cache-status"), Some("HIT"), "{uri}");
        assert_eq!(a.body, b.body);
        assert_eq!(a.body, server.get(&format!("{base}/{uri}")).body);
    }
    // A segment is served as its CMAF chunks, unjoined: over HTTP/2 and
    // TLS too it arrives whole.
    let seg_file = tls.path().join("seg.m4s");
    let got = curl(&[
        "--cacert",
        cacert.to_str().unwrap(),
        "--http2",
        "-o",
        seg_file.to_str().unwrap(),
        "-w",
        "%{http_version} %{http_code}",
        &format!("https://{https}{base}/{seg_uri}"),
    ]);
    assert_eq!(got, "2 200");
    assert_eq!(
        std::fs::read(&seg_file).unwrap(),
        server.get(&format!("{base}/{seg_uri}")).body
    );
    // Plain LL playlists are not served stale: the hint moves on.
    let h1 = hint(&edge.get(&format!("{base}/mono.m3u8")).text()).unwrap();
    std::thread::sleep(Duration::from_millis(450));
    let again = edge.get(&format!("{base}/mono.m3u8"));
    assert_ne!(again.header("x-cache-status"), Some("HIT"));
    let h2 = hint(&again.text()).unwrap();
    assert!(h2 > h1, "{h1:?} then {h2:?}");
    // Blocking reloads: keyed on their query; identical ones collapse and
    // every answer has the asked part; the next part is not answered from
    // the cache of the previous one.
    let (m, p) = h2;
    let q = format!("{base}/mono.m3u8?_HLS_msn={m}&_HLS_part={p}");
    let started = Instant::now();
    let answers: Vec<Response> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..12).map(|_| s.spawn(|| edge.get(&q))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(started.elapsed() < Duration::from_secs(3));
    let mut misses = 0;
    for a in &answers {
        assert_eq!(a.status, 200);
        let t = a.text();
        assert!(lists_part(&t, m, p) || lists_segment(&t, m), "{t}");
        if a.header("x-cache-status") == Some("MISS") {
            misses += 1;
        }
    }
    assert!(
        misses <= 2,
        "{misses} of 12 identical blocking requests reached the origin"
    );
    let next = hint(&answers[0].text()).unwrap();
    let n = edge.get(&format!(
        "{base}/mono.m3u8?_HLS_msn={}&_HLS_part={}",
        next.0, next.1
    ));
    assert_eq!(n.status, 200);
    assert_eq!(n.header("x-cache-status"), Some("MISS"));
    let t = n.text();
    assert!(
        lists_part(&t, next.0, next.1) || lists_segment(&t, next.0),
        "{t}"
    );
    // Bad directives are 400 through the edge too, and not cached.
    for bad in ["_HLS_msn=-1", "_HLS_part=3", "_HLS_msn=x&_HLS_part=1"] {
        let r = edge.get(&format!("{base}/mono.m3u8?{bad}"));
        assert_eq!(r.status, 400, "{bad}");
    }
    publisher.kill();
}

/// hls.js in headless Chromium, `lowLatencyMode: true`: 20 s of playback
/// without a stall, latency under the goal. Needs `npm ci` in
/// tests/browser (make test does it).
#[test]
#[ignore = "needs Chromium and tests/browser/node_modules: run by `make browser-hls-js`"]
fn hls_js_low_latency_plays_20_s_without_stall() {
    let tls = TempDir::new("tls");
    let (server, mut publisher, _) = live_server("llbrowser", &tls);
    let stdout = play_hls_js(&[
        "--url",
        &server.url("/live/llbrowser/index.m3u8"),
        "--seconds",
        "20",
    ]);
    let num = |k: &str| report_number(&stdout, k);
    // The player's report, for figures (`--nocapture`).
    eprintln!("hls.js report: {stdout}");
    assert!(stdout.contains("\"started\":true"), "{stdout}");
    assert!(stdout.contains("\"errors\":[]"), "{stdout}");
    assert!(num("watched_s") >= 19.0, "{stdout}");
    assert!(
        num("advanced_s") >= 18.5,
        "playback did not advance: {stdout}"
    );
    assert_eq!(num("waiting_events"), 0.0, "stalled: {stdout}");
    assert!(num("longest_freeze_s") < 1.0, "froze: {stdout}");
    let latency = num("latency_p50_s");
    assert!(latency < 1.5, "hls.js latency p50 {latency} s: {stdout}");
    publisher.kill();
}

/// HLS viewer counts: three hls.js players, each loading the multivariant
/// playlist as the watch page does, are three viewers in
/// `ugc_stream_viewers` and in the stream's API answer while they play,
/// and none once the 30 s window has passed after they stopped.
#[test]
#[ignore = "needs Chromium and tests/browser/node_modules: run by `make browser-hls-js`"]
fn hls_js_players_are_counted_as_viewers() {
    let tls = TempDir::new("tls-viewers");
    let (server, mut publisher, _) = live_server("viewers", &tls);
    let url = server.url("/live/viewers/index.m3u8");
    let players: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                play_hls_js(&["--url", &url, "--seconds", "20", "--low-latency", "0"])
            })
        })
        .collect();
    let sample = "ugc_stream_viewers{stream=\"live/viewers\"}";
    let mut most = 0.0f64;
    let counted = wait_until(Duration::from_secs(25), || {
        let n = metric_sample(&server, sample).unwrap_or(0.0);
        most = most.max(n);
        n == 3.0
    });
    // The creator's stream answer says as much.
    let api = http_send(
        server.http,
        "GET",
        "/api/v1/streams/viewers",
        Some(ADMIN_TOKEN),
        None,
    );
    for p in players {
        let stdout = p.join().expect("player thread");
        assert!(stdout.contains("\"started\":true"), "{stdout}");
    }
    assert!(counted.is_some(), "at most {most} viewers counted");
    assert!(api.text().contains("\"viewers\":3"), "{}", api.text());
    eprintln!(
        "3 viewers counted {:?} after the players started",
        counted.unwrap()
    );
    let stopped = Instant::now();
    let gone = wait_until(Duration::from_secs(40), || {
        let n = metric_sample(&server, sample).unwrap_or(0.0);
        most = most.max(n);
        n == 0.0
    });
    assert!(
        gone.is_some(),
        "viewers still counted 40 s after they stopped"
    );
    eprintln!(
        "no viewer counted {:?} after the players stopped",
        stopped.elapsed()
    );
    assert!(most <= 4.0, "{most} viewers counted for 3 players");
    publisher.kill();
}

/// RTMPS ingest (what OBS uses for services that require it): ffmpeg
/// publishes over TLS to `--rtmps` with the HTTPS certificate and the
/// stream plays; the API answers the `rtmps` URL; a plain RTMP client on
/// the RTMPS port gets nowhere.
#[test]
fn ffmpeg_publishes_over_rtmps() {
    let tls = TempDir::new("rtmps");
    let (cert, key) = self_signed(&tls);
    let https = format!("127.0.0.1:{}", free_port());
    let rtmps = format!("127.0.0.1:{}", free_port());
    let server = Server::start(&[
        "--https",
        &https,
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--rtmps",
        &rtmps,
    ]);
    let stream_key = server.create_stream("sec", "");
    let r = http_send(
        server.http,
        "GET",
        "/api/v1/streams/sec",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let url = format!("rtmps://{rtmps}/live/{stream_key}");
    assert!(
        r.text().contains(&format!("\"rtmps\":\"{url}\"")),
        "{}",
        r.text()
    );

    // Plain RTMP on the TLS port: refused (ffmpeg gives up), no stream.
    let mut plain = publish_live(320, 180, &format!("rtmp://{rtmps}/live/{stream_key}"));
    let gave_up = wait_until(Duration::from_secs(10), || !plain.running());
    assert!(
        gave_up.is_some(),
        "a plain RTMP publisher kept going on RTMPS"
    );
    assert_ne!(server.get("/live/sec/mono.m3u8").status, 200);

    let _ffmpeg = publish_live(320, 180, &url);
    let playlist = wait_until(Duration::from_secs(20), || {
        let r = server.get("/live/sec/mono.m3u8");
        r.status == 200 && parse_media_playlist(&r.text()).len() >= 2
    });
    assert!(
        playlist.is_some(),
        "no playlist over RTMPS:\n{}",
        server.log()
    );
    eprintln!("RTMPS: 2 segments after {:?}", playlist.unwrap());
    let segs = parse_media_playlist(&server.get("/live/sec/mono.m3u8").text());
    let file = fetch_fmp4_segment(&server, "live/sec", &segs[0], tls.path());
    let lines = probe_streams(&file);
    assert!(
        lines
            .iter()
            .any(|s| s.0 == "video" && (s.2, s.3) == (320, 180)),
        "{lines:?}"
    );
}
