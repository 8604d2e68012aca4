//! End to end: the web panel routes next to the API and the origin, the
//! OpenAPI document against the routes the server answers, and 2 000
//! parallel token-checked segment requests against the real binary.
//! (The panels themselves are exercised in Chromium by `web/tests/browser.mjs`.)

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use support::*;

/// `/api/v1/openapi.json` of the real server lists the control API and the
/// server's own routes (`/stats/*`); every documented route exists (401
/// without a token, 200 for the document itself and with the admin token
/// for the stats), and a route it does not list is a 404.
#[test]
fn openapi_lists_every_api_route_of_the_server() {
    let server = Server::start(&[]);
    let r = http_send(server.http, "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(r.status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    for stats in ["/stats/restream", "/stats/srt", "/stats/transcode"] {
        assert!(
            routes.contains(&("GET".into(), stats.into())),
            "{stats} is not documented"
        );
        let r = http_send(
            server.http,
            "GET",
            &format!("/api/v1{stats}"),
            Some(ADMIN_TOKEN),
            None,
        );
        assert_eq!(r.status, 200, "{stats}");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v.is_array(), "{stats}: {v}");
    }
    assert!(routes.len() >= 15, "{routes:?}");
    for (method, path) in &routes {
        let concrete = path
            .replace("{name}", "x")
            .replace("{id}", "00000000000000000000000000000000");
        let r = http_send(
            server.http,
            method,
            &format!("/api/v1{concrete}"),
            None,
            None,
        );
        let want = if path == "/openapi.json" { 200 } else { 401 };
        assert_eq!(r.status, want, "{method} {path}");
    }
    let r = http_send(
        server.http,
        "GET",
        "/api/v1/stats/nothing",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(r.status, 404);
}

/// A throwaway panel directory with a file outside it that must stay unreachable.
fn fake_web_dir() -> TempDir {
    let root = TempDir::new("web");
    let web = root.path().join("web");
    std::fs::create_dir_all(web.join("assets")).unwrap();
    std::fs::create_dir_all(web.join("dist")).unwrap();
    std::fs::write(
        web.join("index.html"),
        "<!doctype html><title>panel</title>",
    )
    .unwrap();
    std::fs::write(
        web.join("watch.html"),
        "<!doctype html><title>watch</title>",
    )
    .unwrap();
    std::fs::write(web.join("assets/panel.js"), "export {};").unwrap();
    std::fs::write(web.join("assets/style.css"), "body{}").unwrap();
    std::fs::write(web.join("assets/.hidden.js"), "hidden").unwrap();
    std::fs::write(web.join("dist/hls.min.js"), "var Hls;").unwrap();
    std::fs::write(root.path().join("secret.js"), "SECRET").unwrap();
    std::fs::write(web.join("assets/run.sh"), "SECRET").unwrap();
    root
}

#[test]
fn panel_routes_serve_only_their_files_and_leave_api_and_origin_alone() {
    let root = fake_web_dir();
    let web = root.path().join("web");
    let server = Server::start(&["--web", web.to_str().unwrap()]);

    let index = server.get("/");
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(index.text().contains("panel"));
    let csp = index.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert_eq!(index.header("referrer-policy"), Some("no-referrer"));

    let watch = server.get("/watch/some-stream");
    assert_eq!(watch.status, 200);
    assert!(watch.text().contains("watch"));
    // The page is served whether the stream exists or not (the player
    // explains); bad names are not.
    for bad in ["/watch/UPPER", "/watch/..", "/watch/a%2Fb", "/watch/%2e%2e"] {
        assert_eq!(server.get(bad).status, 404, "{bad}");
    }

    let js = server.get("/assets/panel.js");
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(server.get("/assets/style.css").status, 200);
    assert_eq!(server.get("/vendor/hls.min.js").status, 200);
    assert_eq!(server.get("/assets/missing.js").status, 404);
    for bad in [
        "/assets/../secret.js",
        "/assets/..%2F..%2Fsecret.js",
        "/assets/%2e%2e%2fsecret.js",
        "/vendor/..%2F..%2Fsecret.js",
        "/assets/.hidden.js",
        "/assets/run.sh",
        "/assets/",
        "/assets/..%5csecret.js",
    ] {
        let r = server.get(bad);
        assert_ne!(r.status, 200, "{bad}");
        assert!(!r.text().contains("SECRET"), "{bad} leaked a file");
    }

    // The API and the origin answer as before.
    assert_eq!(server.get("/api/v1/streams").status, 401);
    assert_eq!(server.get("/api/v1/nope").status, 404);
    assert_eq!(server.get("/api/v1/openapi.json").status, 200);
    let origin = server.get("/live/nothing/index.m3u8").status;
    assert!(origin == 403 || origin == 404, "{origin}");
    assert_eq!(server.get("/nowhere").status, 404);
}

/// (status, body length) of one answer, or what went wrong.
type Outcome = Result<(u16, usize), String>;

/// Sends `GET path` on an already connected socket.
fn get_on(mut s: TcpStream, host: &str, path: &str) -> Outcome {
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    if raw.is_empty() {
        return Err("empty answer".into());
    }
    let r = parse_response(&raw);
    Ok((r.status, r.body.len()))
}

/// Opens `n` connections, then sends `path` on all of them at once.
fn parallel_gets(server: &Server, n: usize, path: &str) -> (Vec<Outcome>, Duration) {
    let conns: Vec<TcpStream> = (0..n)
        .map(|i| TcpStream::connect(server.http).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    let barrier = Arc::new(Barrier::new(n + 1));
    let host = server.http.to_string();
    let handles: Vec<_> = conns
        .into_iter()
        .map(|s| {
            let barrier = barrier.clone();
            let host = host.clone();
            let path = path.to_string();
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    barrier.wait();
                    get_on(s, &host, &path)
                })
                .expect("spawn a client thread")
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let results = handles
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|_| Err("client panicked".into())))
        .collect();
    (results, start.elapsed())
}

#[test]
fn two_thousand_parallel_token_checked_segment_requests() {
    const N: usize = 2000;
    // 2,000 viewers from one address: what a CDN edge in front looks like,
    // so it is a trusted proxy (which the per-address cap exempts).
    let work = TempDir::new("crowd");
    let config = work.path().join("ugc.toml");
    std::fs::write(&config, "trusted_proxies = [\"127.0.0.1\"]\n").unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let key = server.create_stream("crowd", "\"private\": true");
    let _publisher = publish_live(320, 240, &server.rtmp_url(&key));
    let token = server.play_token("crowd", "{\"ttl_s\": 600}");
    let playlist = format!("/live/crowd/mono.m3u8?token={token}");
    assert!(
        wait_until(Duration::from_secs(15), || {
            let r = server.get(&playlist);
            r.status == 200 && r.text().lines().any(|l| l.starts_with("seg-"))
        })
        .is_some(),
        "a segment in the private playlist"
    );
    let text = server.get(&playlist).text();
    let seg = text
        .lines()
        .rfind(|l| l.starts_with("seg-"))
        .expect("segment")
        .to_string();
    assert!(seg.contains("token="), "{seg}");
    let expect_len = server.get(&format!("/live/crowd/{seg}")).body.len();
    assert!(expect_len > 0);

    let (results, took) = parallel_gets(&server, N, &format!("/live/crowd/{seg}"));
    let mut errors: Vec<String> = Vec::new();
    for r in &results {
        match r {
            Ok((200, len)) if *len == expect_len => {}
            Ok((status, len)) => errors.push(format!("{status} with {len} bytes")),
            Err(e) => errors.push(e.clone()),
        }
    }
    eprintln!("{N} parallel token-checked segment requests ({expect_len} bytes each) in {took:?}");
    assert!(
        errors.is_empty(),
        "{} of {N} failed, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );

    // The same crowd without a token is refused, every one of them.
    let bare = seg.split('?').next().unwrap().to_string();
    let (results, took) = parallel_gets(&server, N, &format!("/live/crowd/{bare}"));
    let refused = results.iter().filter(|r| matches!(r, Ok((403, _)))).count();
    eprintln!("{N} parallel segment requests without token refused in {took:?}");
    assert_eq!(refused, N, "every request without a token gets 403");
}
