//! Provisioning over HTTP: a real control plane served on a loopback port,
//! a `RemoteSettings` client following its change feed through changes,
//! feed server restarts and a control plane restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{ADMIN, Api, Db, TempDir, serve};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::sync::broadcast;
use ugc_auth::{
    ChangeKind, ControlPlane, Principal, RemoteConfig, RemoteSettings, SettingsSource, StreamChange,
};

/// The API served with hyper, one task per connection, so that killing it
/// really closes the open event streams (axum::serve's connection tasks
/// outlive its accept loop).
struct Feed {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Feed {
    async fn start(cp: &ControlPlane, addr: Option<SocketAddr>) -> Feed {
        let app = axum::Router::new().nest("/api/v1", cp.router());
        let bind = addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        let l = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                let app = app.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        tower::ServiceExt::oneshot(app.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Feed { addr, task }
    }

    /// Stops accepting and drops every open connection.
    async fn kill(self) -> SocketAddr {
        self.task.abort();
        let _ = self.task.await;
        self.addr
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn admin() -> Principal {
    Principal {
        id: "admin".into(),
        admin: true,
    }
}

fn fast(url: String, token: &str) -> RemoteConfig {
    let mut c = RemoteConfig::new(url, token);
    c.min_backoff = Duration::from_millis(50);
    c.max_backoff = Duration::from_millis(400);
    c
}

/// The next change within `within`, skipping none.
async fn next(rx: &mut broadcast::Receiver<StreamChange>, within: Duration) -> StreamChange {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("no change in time")
        .expect("change channel")
}

async fn expect(rx: &mut broadcast::Receiver<StreamChange>, name: &str, kind: ChangeKind) {
    let t0 = Instant::now();
    let c = next(rx, Duration::from_secs(1)).await;
    assert_eq!(
        (c.name.as_str(), c.kind),
        (name, kind),
        "after {:?}",
        t0.elapsed()
    );
}

/// Collects changes until `want` (sorted) arrived or `within` passed.
async fn expect_set(
    rx: &mut broadcast::Receiver<StreamChange>,
    want: &[(&str, ChangeKind)],
    within: Duration,
) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < want.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(c)) => got.push((c.name, c.kind)),
            _ => break,
        }
    }
    let mut got: Vec<(String, ChangeKind)> = got;
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let want: Vec<(String, ChangeKind)> = want.iter().map(|(n, k)| ((*n).into(), *k)).collect();
    assert_eq!(got, want);
}

async fn wait_until(what: &str, within: Duration, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Same settings on both sides for every listed stream.
fn same(cp: &ControlPlane, node: &dyn SettingsSource, names: &[&str]) {
    for n in names {
        assert_eq!(node.settings(n), cp.settings(n), "settings of {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_a_remote_node_across_restarts() {
    let dir = TempDir::new("remote");
    let cp = ControlPlane::open(Db::sqlite().config(&dir)).await.unwrap();
    let api_srv = serve(&cp).await;
    let api = Api::new(&api_srv);
    let a = Some(ADMIN);
    let (s, _) = api
        .call(
            "POST",
            "/streams",
            a,
            json!({"name": "pre", "dvr_hours": 2}),
        )
        .await;
    assert_eq!(s, 201);

    let feed = Feed::start(&cp, None).await;
    let node = RemoteSettings::connect(fast(feed.url(), ADMIN))
        .await
        .unwrap();
    assert_eq!(
        node.settings("pre").unwrap().dvr_hours,
        2,
        "snapshot loaded"
    );
    let mut rx = SettingsSource::subscribe_changes(&node);
    wait_until("connected", Duration::from_secs(2), || node.is_connected()).await;

    // ---- each change arrives within 1 s, with the settings after it
    let (s, _) = api
        .call("POST", "/streams", a, json!({"name": "a", "private": true}))
        .await;
    assert_eq!(s, 201);
    expect(&mut rx, "a", ChangeKind::Created).await;
    assert!(node.settings("a").unwrap().private);
    let (s, _) = api
        .call("PATCH", "/streams/a", a, json!({"transcode": "default"}))
        .await;
    assert_eq!(s, 200);
    expect(&mut rx, "a", ChangeKind::Updated).await;
    assert_eq!(
        node.settings("a").unwrap().transcode,
        "default",
        "ladder on"
    );
    let (s, _) = api.call("POST", "/streams/a/key", a, json!({})).await;
    assert_eq!(s, 200);
    expect(&mut rx, "a", ChangeKind::KeyRotated).await;
    let (s, _) = api
        .call(
            "PATCH",
            "/streams/pre",
            a,
            json!({"srt_passphrase": "0123456789ab", "restream": ["rtmp://x.example/live/k"]}),
        )
        .await;
    assert_eq!(s, 200);
    expect(&mut rx, "pre", ChangeKind::Updated).await;
    let (s, _) = api.call("DELETE", "/streams/a", a, json!({})).await;
    assert_eq!(s, 204);
    expect(&mut rx, "a", ChangeKind::Deleted).await;
    assert_eq!(node.settings("a"), None);
    same(&cp, &node, &["pre", "a"]);
    assert_eq!(node.version(), cp.settings_snapshot().0);
    assert_eq!(node.connects(), 1);

    // ---- the feed server dies; changes made meanwhile are replayed
    let addr = feed.kill().await;
    wait_until("disconnect noticed", Duration::from_secs(2), || {
        !node.is_connected()
    })
    .await;
    let (s, _) = api.call("POST", "/streams", a, json!({"name": "b"})).await;
    assert_eq!(s, 201);
    cp.update_stream(
        &admin(),
        "pre",
        ugc_auth::StreamPatch {
            dvr_hours: Some(5),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(node.settings("b"), None, "not connected, not seen yet");
    let feed = Feed::start(&cp, Some(addr)).await;
    expect_set(
        &mut rx,
        &[("b", ChangeKind::Created), ("pre", ChangeKind::Updated)],
        Duration::from_secs(3),
    )
    .await;
    same(&cp, &node, &["pre", "a", "b"]);
    assert_eq!(node.settings("pre").unwrap().dvr_hours, 5);
    assert_eq!(node.connects(), 2);
    assert_eq!(node.version(), cp.settings_snapshot().0);

    // ---- the whole control plane restarts on the same store (new epoch):
    // the node resyncs from a snapshot, deletions included
    let addr = feed.kill().await;
    drop(api_srv);
    drop(cp);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cp = ControlPlane::open(Db::sqlite().config(&dir)).await.unwrap();
    cp.delete_stream(&admin(), "b").await.unwrap();
    cp.create_stream(
        &admin(),
        ugc_auth::NewStream {
            name: "c".into(),
            dvr_hours: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let feed = Feed::start(&cp, Some(addr)).await;
    expect_set(
        &mut rx,
        &[("b", ChangeKind::Deleted), ("c", ChangeKind::Created)],
        Duration::from_secs(3),
    )
    .await;
    same(&cp, &node, &["pre", "a", "b", "c"]);
    assert_eq!(node.stream_names(), ["c", "pre"]);
    assert_eq!(node.version(), cp.settings_snapshot().0);
    // and it follows the new control plane live
    let api_srv = serve(&cp).await;
    let api = Api::new(&api_srv);
    let (s, _) = api
        .call("PATCH", "/streams/c", a, json!({"private": true}))
        .await;
    assert_eq!(s, 200);
    expect(&mut rx, "c", ChangeKind::Updated).await;
    assert!(node.settings("c").unwrap().private);
    drop(feed);
}

async fn get(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    last: Option<&str>,
) -> hyper::Response<hyper::body::Incoming> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let mut b = hyper::Request::get(format!("http://{addr}/api/v1{path}"));
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if let Some(l) = last {
        b = b.header("last-event-id", l);
    }
    client
        .request(b.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap()
}

/// Reads the event stream until `n` events (not comments) arrived.
async fn read_events(
    resp: hyper::Response<hyper::body::Incoming>,
    n: usize,
) -> Vec<(String, String)> {
    let mut body = resp.into_body();
    let mut text = String::new();
    let mut events = Vec::new();
    while events.len() < n {
        let f = tokio::time::timeout(Duration::from_secs(2), body.frame())
            .await
            .expect("event in time")
            .expect("stream open")
            .unwrap();
        if let Ok(d) = f.into_data() {
            text.push_str(std::str::from_utf8(&d).unwrap());
        }
        while let Some((ev, rest)) = text.split_once("\n\n") {
            let mut kind = String::new();
            let mut id = String::new();
            for line in ev.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    kind = v.into();
                }
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.into();
                }
            }
            if !kind.is_empty() {
                events.push((kind, id));
            }
            text = rest.to_owned();
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_auth_resume_and_snapshot() {
    let dir = TempDir::new("feed");
    let mut cfg = Db::sqlite().config(&dir);
    cfg.node_token = Some("node-token-0123456789".into());
    let cp = ControlPlane::open(cfg).await.unwrap();
    let srv = serve(&cp).await;
    let api = Api::new(&srv);
    let (s, v) = api.call("POST", "/creators", Some(ADMIN), json!({})).await;
    assert_eq!(s, 201);
    let creator = v["token"].as_str().unwrap().to_owned();

    // ---- tokens
    for path in ["/settings", "/changes"] {
        assert_eq!(
            get(srv.addr, path, None, None).await.status(),
            401,
            "{path}"
        );
        assert_eq!(
            get(srv.addr, path, Some("wrong-token-xxxxxxxx"), None)
                .await
                .status(),
            401,
            "{path}"
        );
        assert_eq!(
            get(srv.addr, path, Some(&creator), None).await.status(),
            403,
            "{path} creator"
        );
        assert_eq!(
            get(srv.addr, path, Some(ADMIN), None).await.status(),
            200,
            "{path} admin"
        );
        assert_eq!(
            get(srv.addr, path, Some("node-token-0123456789"), None)
                .await
                .status(),
            200,
            "{path} node"
        );
    }
    let url = format!("http://{}", srv.addr);
    match RemoteSettings::connect(fast(url.clone(), "wrong-token-xxxxxxxx")).await {
        Err(ugc_auth::Error::Remote {
            status: Some(401), ..
        }) => {}
        other => panic!("bad token: {other:?}"),
    }
    match RemoteSettings::connect(fast(url.clone(), &creator)).await {
        Err(ugc_auth::Error::Remote {
            status: Some(403), ..
        }) => {}
        other => panic!("creator token: {other:?}"),
    }
    let node = RemoteSettings::connect(fast(url, "node-token-0123456789"))
        .await
        .unwrap();

    // ---- snapshot and stream content
    let (v0, _) = cp.settings_snapshot();
    for n in ["x", "y"] {
        api.call("POST", "/streams", Some(ADMIN), json!({"name": n}))
            .await;
    }
    let (v2, map) = cp.settings_snapshot();
    assert_eq!(map.len(), 2);
    let resp = get(srv.addr, "/changes", Some(ADMIN), Some(&v0)).await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let ev = read_events(resp, 2).await;
    let epoch = v0.rsplit_once('-').unwrap().0;
    assert_eq!(
        ev,
        [
            ("change".to_owned(), format!("{epoch}-1")),
            ("change".to_owned(), format!("{epoch}-2")),
        ],
        "resumed from the ring"
    );
    assert_eq!(v2, format!("{epoch}-2"));
    // no id, an unknown epoch or a future id: a snapshot first
    for last in [
        None,
        Some("0badc0ffee00-1"),
        Some(&*format!("{epoch}-99")),
        Some("garbage"),
    ] {
        let ev = read_events(get(srv.addr, "/changes", Some(ADMIN), last).await, 1).await;
        assert_eq!(ev, [("snapshot".to_owned(), v2.clone())], "{last:?}");
    }
    // the node saw the two creations
    wait_until("node caught up", Duration::from_secs(1), || {
        node.version() == v2
    })
    .await;
    assert_eq!(node.stream_names(), ["x", "y"]);
}
