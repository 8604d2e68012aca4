//! Play authorization, external backends, OpenAPI coverage, persistence and
//! concurrency.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{ADMIN, Api, Db, TempDir, serve};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ugc_auth::{ControlConfig, ControlPlane, ExternalBackend, PlayClaims, Principal, SessionId};
use ugc_core::{
    Authorizer, DenyKind, PlayDecision, PlayRequest, Protocol, PublishDecision, PublishRequest,
    StreamPath,
};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn admin() -> Principal {
    Principal {
        id: "admin".into(),
        admin: true,
    }
}

fn preq(stream: &str, token: Option<&str>, ip: [u8; 4]) -> PlayRequest {
    PlayRequest {
        stream: StreamPath::parse(stream).unwrap(),
        token: token.map(Into::into),
        client_ip: IpAddr::from(ip),
    }
}

async fn private_stream(cp: &ControlPlane, name: &str) {
    cp.create_stream(
        &admin(),
        serde_json::from_value(json!({"name": name, "private": true})).unwrap(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn private_stream_tokens() {
    let dir = TempDir::new("tok");
    let cp = ControlPlane::open(Db::sqlite().config(&dir)).await.unwrap();
    private_stream(&cp, "priv").await;
    let auth = cp.authorizer();
    let ip = [192, 0, 2, 7];
    let deny = |d: PlayDecision| matches!(d, PlayDecision::Deny { .. });

    // valid
    let g = cp
        .issue_play(&admin(), "priv", Some(600), None)
        .await
        .unwrap();
    assert_eq!(
        auth.authorize_play(&preq("live/priv", Some(&g.token), ip))
            .await,
        PlayDecision::Allow
    );
    // none
    assert!(deny(
        auth.authorize_play(&preq("live/priv", None, ip)).await
    ));
    // tampered: every position
    for i in 0..g.token.len() {
        let mut b = g.token.clone().into_bytes();
        b[i] = if b[i] == b'x' { b'y' } else { b'x' };
        let t = String::from_utf8(b).unwrap();
        if t != g.token {
            assert!(
                deny(auth.authorize_play(&preq("live/priv", Some(&t), ip)).await),
                "pos {i}"
            );
        }
    }
    // expired (signed with the real key, expiry in the past)
    let claims = PlayClaims {
        stream: "priv".into(),
        expires_at: now() - 1,
        session: SessionId([1; 16]),
        bind_ip: None,
    };
    let expired = cp.token_key().sign(&claims).unwrap();
    assert!(deny(
        auth.authorize_play(&preq("live/priv", Some(&expired), ip))
            .await
    ));
    // another stream's token
    private_stream(&cp, "other").await;
    let g2 = cp.issue_play(&admin(), "other", None, None).await.unwrap();
    assert!(deny(
        auth.authorize_play(&preq("live/priv", Some(&g2.token), ip))
            .await
    ));
    // another secret
    let foreign = ugc_auth::TokenKey::new(b"another secret, 32 bytes long...")
        .sign(&PlayClaims {
            expires_at: now() + 100,
            ..claims.clone()
        })
        .unwrap();
    assert!(deny(
        auth.authorize_play(&preq("live/priv", Some(&foreign), ip))
            .await
    ));
    // wrong IP, right IP, IPv4-mapped IPv6 of the right IP
    let b = cp
        .issue_play(&admin(), "priv", None, Some(IpAddr::from(ip)))
        .await
        .unwrap();
    assert!(deny(
        auth.authorize_play(&preq("live/priv", Some(&b.token), [192, 0, 2, 8]))
            .await
    ));
    assert_eq!(
        auth.authorize_play(&preq("live/priv", Some(&b.token), ip))
            .await,
        PlayDecision::Allow
    );
    let mapped = PlayRequest {
        client_ip: "::ffff:192.0.2.7".parse().unwrap(),
        ..preq("live/priv", Some(&b.token), ip)
    };
    assert_eq!(auth.authorize_play(&mapped).await, PlayDecision::Allow);
    // revoked
    cp.revoke_session(&admin(), &g.session.to_string())
        .await
        .unwrap();
    assert!(deny(
        auth.authorize_play(&preq("live/priv", Some(&g.token), ip))
            .await
    ));
    // unknown stream, wrong app: not found (404), not refused
    let not_found = |d: PlayDecision| matches!(d, PlayDecision::NotFound { .. });
    assert!(not_found(
        auth.authorize_play(&preq("live/ghost", None, ip)).await
    ));
    assert!(not_found(
        auth.authorize_play(&preq("vod/priv", Some(&b.token), ip))
            .await
    ));
    // turning private off opens it
    cp.update_stream(
        &admin(),
        "priv",
        serde_json::from_value(json!({"private": false})).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        auth.authorize_play(&preq("live/priv", None, ip)).await,
        PlayDecision::Allow
    );
}

#[tokio::test]
async fn state_survives_restart() {
    let dir = TempDir::new("restart");
    let mut cfg = ControlConfig::new(dir.path());
    let cp = ControlPlane::open(cfg.clone()).await.unwrap();
    let admin_token = cp
        .take_generated_admin_token()
        .expect("generated on first start");
    assert_eq!(cp.take_generated_admin_token(), None, "only once");
    let p = cp
        .authenticate(&admin_token)
        .await
        .unwrap()
        .expect("admin token works");
    assert!(p.admin);
    let (s, key) = cp.ensure_demo_stream("demo").await.unwrap();
    assert_eq!(s.name, "demo");
    private_stream(&cp, "priv").await;
    let g = cp.issue_play(&admin(), "priv", None, None).await.unwrap();
    let g2 = cp.issue_play(&admin(), "priv", None, None).await.unwrap();
    cp.revoke_session(&admin(), &g2.session.to_string())
        .await
        .unwrap();
    cp.store().close().await;
    drop(cp);

    let cp = ControlPlane::open(cfg.clone()).await.unwrap();
    assert_eq!(cp.take_generated_admin_token(), None, "not regenerated");
    assert!(cp.authenticate(&admin_token).await.unwrap().is_some());
    assert_eq!(
        cp.ensure_demo_stream("demo").await.unwrap().1,
        key,
        "same demo stream"
    );
    let auth = cp.authorizer();
    let pr = PublishRequest {
        protocol: Protocol::Rtmp,
        app: "live".into(),
        key,
        client_ip: [127, 0, 0, 1].into(),
    };
    assert_eq!(
        auth.authorize_publish(&pr).await,
        PublishDecision::allow(StreamPath::parse("live/demo").unwrap())
    );
    // the secret persisted: old tokens verify; revocations were reloaded
    assert_eq!(
        auth.authorize_play(&preq("live/priv", Some(&g.token), [1, 1, 1, 1]))
            .await,
        PlayDecision::Allow
    );
    assert!(matches!(
        auth.authorize_play(&preq("live/priv", Some(&g2.token), [1, 1, 1, 1]))
            .await,
        PlayDecision::Deny { .. }
    ));
    cp.store().close().await;
    drop(cp);

    // a configured admin token replaces the generated one
    cfg.admin_token = Some(ADMIN.into());
    let cp = ControlPlane::open(cfg).await.unwrap();
    assert!(cp.authenticate(ADMIN).await.unwrap().is_some());
    assert!(cp.authenticate(&admin_token).await.unwrap().is_none());
}

/// A tiny HTTP/1.1 server: `/allow` 200, `/deny` 403, `/hang` never
/// answers, `/redirect` 302 to `/allow`, `/big` 200 with a 1 MiB body.
/// Returns its address and a counter of requests received.
async fn backend() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let h = h.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // read headers and the Content-Length body
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let text = String::from_utf8_lossy(&buf).to_string();
                let body_start = text.find("\r\n\r\n").unwrap() + 4;
                let body: Value = serde_json::from_str(&text[body_start..]).unwrap();
                assert!(
                    body["action"].is_string() && body["client_ip"].is_string(),
                    "{body}"
                );
                let path = text.split_whitespace().nth(1).unwrap_or("").to_owned();
                let resp: Vec<u8> = match path.as_str() {
                    "/allow" => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
                    "/deny" => b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n".to_vec(),
                    "/redirect" => {
                        b"HTTP/1.1 302 Found\r\nlocation: /allow\r\ncontent-length: 0\r\n\r\n"
                            .to_vec()
                    }
                    "/big" => {
                        let mut r = b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n".to_vec();
                        r.extend(std::iter::repeat_n(b'x', 1 << 20));
                        r
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                };
                let _ = s.write_all(&resp).await;
            });
        }
    });
    (addr, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_backends() {
    let (addr, hits) = backend().await;
    let dir = TempDir::new("ext");
    let mut cfg = Db::sqlite().config(&dir);
    let base = ControlPlane::open(cfg.clone()).await.unwrap();
    let (_, key) = base.ensure_demo_stream("demo").await.unwrap();
    base.store().close().await;
    drop(base);

    let pubreq = |key: &str| PublishRequest {
        protocol: Protocol::Whip,
        app: "live".into(),
        key: key.into(),
        client_ip: [127, 0, 0, 1].into(),
    };
    for (path, allow) in [
        ("/allow", true),
        ("/deny", false),
        ("/hang", false),
        ("/redirect", false),
        ("/big", false),
    ] {
        let mut be = ExternalBackend::new(format!("http://{addr}{path}"));
        be.timeout = Duration::from_millis(300);
        cfg.publish_backend = Some(be.clone());
        cfg.play_backend = Some(be);
        let cp = ControlPlane::open(cfg.clone()).await.unwrap();
        let auth = cp.authorizer();
        let before = hits.load(std::sync::atomic::Ordering::SeqCst);
        let t0 = Instant::now();
        let d = auth.authorize_publish(&pubreq(&key)).await;
        assert_eq!(
            matches!(d, PublishDecision::Allow { .. }),
            allow,
            "publish {path}: {d:?}"
        );
        // The publisher reads the reason: a refusal names the backend's
        // status; a failed backend is "try again", without its address.
        let expect = match path {
            "/deny" => Some(PublishDecision::unauthorized(
                "refused by the publish auth backend (HTTP 403)",
            )),
            "/redirect" => Some(PublishDecision::unauthorized(
                "refused by the publish auth backend (HTTP 302)",
            )),
            "/hang" | "/big" => Some(PublishDecision::unavailable(
                "publish auth backend unavailable; try again",
            )),
            _ => None,
        };
        if let Some(expect) = expect {
            assert_eq!(d, expect, "publish {path}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{path} took {:?}",
            t0.elapsed()
        );
        let d = auth
            .authorize_play(&preq("live/demo", None, [127, 0, 0, 1]))
            .await;
        assert_eq!(d == PlayDecision::Allow, allow, "play {path}: {d:?}");
        if path != "/hang" {
            assert_eq!(
                hits.load(std::sync::atomic::Ordering::SeqCst),
                before + 2,
                "{path}: redirect not followed"
            );
        }
        // a wrong key never reaches the backend and is denied
        assert!(matches!(
            auth.authorize_publish(&pubreq("nokey")).await,
            PublishDecision::Deny { .. }
        ));
        cp.store().close().await;
    }
    // unreachable backend: fail closed
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = l.local_addr().unwrap();
    drop(l);
    cfg.publish_backend = Some(ExternalBackend::new(format!("http://{dead}/x")));
    cfg.play_backend = None;
    let cp = ControlPlane::open(cfg.clone()).await.unwrap();
    assert_eq!(
        cp.authorizer().authorize_publish(&pubreq(&key)).await,
        PublishDecision::Deny {
            kind: DenyKind::Unavailable,
            reason: "publish auth backend unavailable; try again".into()
        }
    );
    // https is refused at open (no TLS stack)
    cfg.publish_backend = Some(ExternalBackend::new("https://auth.example/x"));
    assert!(matches!(
        ControlPlane::open(cfg).await,
        Err(ugc_auth::Error::Config(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_matches_router() {
    let dir = TempDir::new("oapi");
    let cp = ControlPlane::open(Db::sqlite().config(&dir)).await.unwrap();
    let srv = serve(&cp).await;
    let api = Api::new(&srv);
    let (s, doc) = api.call("GET", "/openapi.json", None, Value::Null).await;
    assert_eq!(s, 200);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete", "head", "options"].contains(&m.as_str()) {
                documented.insert((m.clone(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = ControlPlane::api_routes()
        .into_iter()
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
    assert_eq!(documented, routed, "OpenAPI paths vs router");
    // and the table really is the router: every route answers (401 or 200),
    // not 404/405; an undocumented one does not exist
    for (m, p) in &routed {
        let concrete = p
            .replace("{name}", "x")
            .replace("{id}", "00000000000000000000000000000000");
        let (s, _) = api.raw(&m.to_uppercase(), &concrete, None, "").await;
        let want = if p == "/openapi.json" { 200 } else { 401 };
        assert_eq!(s, want, "{m} {p}");
    }
    assert_eq!(api.raw("PUT", "/streams/x", None, "").await.0, 405);
    let (s, v) = api.raw("GET", "/nothing", None, "").await;
    assert_eq!((s, v["error"].is_string()), (404, true), "{v}");
}

async fn parallel_play_tokens(db: Db) {
    let dir = TempDir::new("par");
    let cp = ControlPlane::open(db.config(&dir)).await.unwrap();
    private_stream(&cp, "busy").await;
    let srv = serve(&cp).await;
    let api = Api::new(&srv);
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let api = api.clone();
        tasks.spawn(async move {
            let body = if i % 2 == 0 {
                json!({"ttl_s": 120})
            } else {
                json!({"bind_ip": format!("10.0.{}.{}", i / 256, i % 256)})
            };
            api.call("POST", "/streams/busy/play", Some(ADMIN), body)
                .await
        });
    }
    let mut tokens = BTreeSet::new();
    while let Some(r) = tasks.join_next().await {
        let (s, v) = r.unwrap();
        assert_eq!(s, 200, "{v}");
        tokens.insert(v["token"].as_str().unwrap().to_owned());
    }
    assert_eq!(tokens.len(), 200, "distinct tokens");
    eprintln!("200 parallel play-token requests in {:?}", t0.elapsed());
    let auth = cp.authorizer();
    let mut allowed = 0;
    for t in &tokens {
        for i in 0..200u32 {
            let ip = [
                10,
                0,
                u8::try_from(i / 256).unwrap(),
                u8::try_from(i % 256).unwrap(),
            ];
            if auth.authorize_play(&preq("live/busy", Some(t), ip)).await == PlayDecision::Allow {
                allowed += 1;
                break;
            }
        }
    }
    assert_eq!(allowed, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_play_tokens_sqlite() {
    parallel_play_tokens(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_play_tokens_postgres() {
    parallel_play_tokens(Db::postgres()).await;
}

#[tokio::test]
async fn client_ip_through_trusted_proxy() {
    let dir = TempDir::new("xff");
    let mut cfg = Db::sqlite().config(&dir);
    cfg.trusted_proxies = ugc_auth::TrustedProxies::parse(&["127.0.0.1"]).unwrap();
    let cp = ControlPlane::open(cfg).await.unwrap();
    let lo: IpAddr = [127, 0, 0, 1].into();
    let far: IpAddr = [198, 51, 100, 1].into();
    assert_eq!(
        cp.client_ip(lo, ["203.0.113.5"]),
        IpAddr::from([203, 0, 113, 5])
    );
    assert_eq!(cp.client_ip(far, ["203.0.113.5"]), far);
}

/// Two control planes on one database (two nodes): a key created on one is
/// accepted by the other through its cache-miss lookup; a key rotated on a
/// node is refused there at once.
#[tokio::test]
async fn second_node_sees_new_keys() {
    let dir = TempDir::new("nodes");
    let cfg = Db::sqlite().config(&dir);
    let a = ControlPlane::open(cfg.clone()).await.unwrap();
    let b = ControlPlane::open(cfg).await.unwrap();
    let (_, key) = a.ensure_demo_stream("late").await.unwrap();
    let req = |key: &str| PublishRequest {
        protocol: Protocol::Rtmp,
        app: "live".into(),
        key: key.into(),
        client_ip: [127, 0, 0, 1].into(),
    };
    assert_eq!(
        b.authorizer().authorize_publish(&req(&key)).await,
        PublishDecision::allow(StreamPath::parse("live/late").unwrap())
    );
    let new = b.rotate_key(&admin(), "late").await.unwrap();
    assert_eq!(
        b.authorizer().authorize_publish(&req(&key)).await,
        PublishDecision::unauthorized("stream key was rotated or deleted")
    );
    assert_eq!(
        b.authorizer().authorize_publish(&req(&new)).await,
        PublishDecision::allow(StreamPath::parse("live/late").unwrap())
    );
    assert_eq!(
        a.authorizer().authorize_publish(&req(&new)).await,
        PublishDecision::allow(StreamPath::parse("live/late").unwrap())
    );
}
