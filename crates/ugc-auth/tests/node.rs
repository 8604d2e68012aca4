//! Publish authorization for a media node in another process: the control
//! plane's `POST /api/v1/node/publish` served on a loopback port, asked by a
//! `RemoteAuthorizer`, with key rotation and deletion followed through the
//! settings feed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{ADMIN, Api, Db, TempDir, serve};
use serde_json::json;
use ugc_auth::node::RemoteAuthorizer;
use ugc_auth::{ControlPlane, RemoteConfig, RemoteSettings};
use ugc_core::auth::{Authorizer, DenyKind, Protocol, PublishDecision, PublishRequest};
use ugc_core::{Hub, HubConfig, StreamPath};

const NODE: &str = "node-token-0123456789";

fn req(key: &str) -> PublishRequest {
    PublishRequest {
        protocol: Protocol::Rtmp,
        app: "live".into(),
        key: key.into(),
        client_ip: "203.0.113.7".parse::<IpAddr>().unwrap(),
    }
}

fn kind(d: &PublishDecision) -> Option<DenyKind> {
    match d {
        PublishDecision::Deny { kind, .. } => Some(*kind),
        PublishDecision::Allow { .. } => None,
    }
}

async fn wait_until(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_node_asks_the_control_plane_and_follows_rotations() {
    let dir = TempDir::new("node");
    let mut cfg = Db::sqlite().config(&dir);
    cfg.node_token = Some(NODE.into());
    let cp = ControlPlane::open(cfg).await.unwrap();
    let srv = serve(&cp).await;
    let api = Api::new(&srv);
    let url = format!("http://{}", srv.addr);
    let (s, v) = api
        .call("POST", "/streams", Some(ADMIN), json!({"name": "news"}))
        .await;
    assert_eq!(s, 201, "{v}");
    let key = v["key"].as_str().unwrap().to_owned();
    let news = StreamPath::live("news").unwrap();

    let auth = RemoteAuthorizer::new(&url, NODE, Duration::from_secs(2)).unwrap();
    assert_eq!(
        auth.authorize_publish(&req(&key)).await,
        PublishDecision::allow(news.clone())
    );
    assert_eq!(
        kind(&auth.authorize_publish(&req("not-a-key")).await),
        Some(DenyKind::Unauthorized)
    );
    // The wrong node token: no decision, the publisher may retry later.
    let stranger =
        RemoteAuthorizer::new(&url, "wrong-token-0123456789", Duration::from_secs(2)).unwrap();
    assert_eq!(
        kind(&stranger.authorize_publish(&req(&key)).await),
        Some(DenyKind::Unavailable)
    );
    // A control plane that is not there: the same, within the timeout.
    let gone = RemoteAuthorizer::new("http://127.0.0.1:9", NODE, Duration::from_secs(1)).unwrap();
    let t0 = Instant::now();
    assert_eq!(
        kind(&gone.authorize_publish(&req(&key)).await),
        Some(DenyKind::Unavailable)
    );
    assert!(t0.elapsed() < Duration::from_secs(2));

    // The node's ingest publishes on its own Hub; a rotation at the control
    // plane drops that publisher and the old key's cached allow.
    let hub = Hub::new(HubConfig::default());
    let settings = RemoteSettings::connect(RemoteConfig::new(url.clone(), NODE))
        .await
        .unwrap();
    tokio::spawn(
        auth.clone()
            .follow(hub.clone(), settings.subscribe_changes()),
    );
    let _publisher = hub.publish(&news);
    assert!(hub.is_publishing(&news));
    assert!(matches!(
        auth.authorize_publish(&req(&key)).await,
        PublishDecision::Allow { .. }
    ));
    let (s, v) = api
        .call("POST", "/streams/news/key", Some(ADMIN), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let new_key = v["key"].as_str().unwrap().to_owned();
    let took = wait_until(
        "the publisher to be dropped",
        Duration::from_secs(2),
        async || !hub.is_publishing(&news),
    )
    .await;
    println!("rotation reached the node's publisher in {took:?}");
    // Well inside the 2 s cache: the allow was forgotten, not expired.
    assert_eq!(
        kind(&auth.authorize_publish(&req(&key)).await),
        Some(DenyKind::Unauthorized)
    );
    assert!(matches!(
        auth.authorize_publish(&req(&new_key)).await,
        PublishDecision::Allow { .. }
    ));

    // Deleted: the same.
    let _publisher = hub.publish(&news);
    assert!(hub.is_publishing(&news));
    let (s, _) = api
        .call("DELETE", "/streams/news", Some(ADMIN), json!(null))
        .await;
    assert_eq!(s, 204);
    wait_until(
        "the publisher to be dropped",
        Duration::from_secs(2),
        async || !hub.is_publishing(&news),
    )
    .await;
    assert_eq!(
        kind(&auth.authorize_publish(&req(&new_key)).await),
        Some(DenyKind::Unauthorized)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_check_wants_the_node_token_and_a_good_body() {
    let dir = TempDir::new("node-auth");
    let mut cfg = Db::sqlite().config(&dir);
    cfg.node_token = Some(NODE.into());
    let cp = ControlPlane::open(cfg).await.unwrap();
    let srv = serve(&cp).await;
    let api = Api::new(&srv);
    let (_, v) = api.call("POST", "/creators", Some(ADMIN), json!({})).await;
    let creator = v["token"].as_str().unwrap().to_owned();
    let body = json!({"protocol": "srt", "app": "live", "key": "k", "client_ip": "192.0.2.1"});
    for (token, want) in [
        (None, 401),
        (Some("wrong-token-0123456789"), 401),
        (Some(creator.as_str()), 403),
        (Some(NODE), 200),
        (Some(ADMIN), 200),
    ] {
        let (s, v) = api.call("POST", "/node/publish", token, body.clone()).await;
        assert_eq!(s, want, "{token:?}: {v}");
        if s == 200 {
            assert_eq!(v["decision"], "deny", "{v}");
            assert_eq!(v["kind"], "unauthorized", "{v}");
        }
    }
    for bad in [
        json!({"protocol": "ftp", "app": "live", "key": "k", "client_ip": "192.0.2.1"}),
        json!({"protocol": "rtmp", "app": "live", "key": "k"}),
        json!({"protocol": "rtmp", "app": "live", "key": "k", "client_ip": "x", "more": 1}),
    ] {
        let (s, v) = api
            .call("POST", "/node/publish", Some(NODE), bad.clone())
            .await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_learn_the_topology_from_the_control_plane() {
    use ugc_auth::node::Topology;
    let dir = TempDir::new("node-topology");
    let topology = Topology {
        transcoders: vec!["http://10.0.0.3:8083".into()],
        origins: vec!["http://10.0.0.4:8082".into(), "http://10.0.0.5:8082".into()],
    };
    let mut cfg = Db::sqlite().config(&dir);
    cfg.node_token = Some(NODE.into());
    cfg.topology = topology.clone();
    let cp = ControlPlane::open(cfg).await.unwrap();
    let srv = serve(&cp).await;
    let api = Api::new(&srv);
    let (_, v) = api.call("POST", "/creators", Some(ADMIN), json!({})).await;
    let creator = v["token"].as_str().unwrap().to_owned();
    for (token, want) in [
        (None, 401),
        (Some(creator.as_str()), 403),
        (Some(NODE), 200),
    ] {
        let (s, v) = api.call("GET", "/node/topology", token, json!(null)).await;
        assert_eq!(s, want, "{token:?}: {v}");
    }
    let got = Topology::fetch(&format!("http://{}", srv.addr), NODE).await;
    assert_eq!(got, topology);
    assert_eq!(got.publish_targets(), &topology.transcoders[..]);
    let no_transcoder = Topology {
        transcoders: Vec::new(),
        ..topology
    };
    assert_eq!(no_transcoder.publish_targets(), &no_transcoder.origins[..]);

    // Only bare http://host:port URLs.
    for bad in [
        "https://10.0.0.4",
        "http://10.0.0.4:8082/path",
        "http://10.0.0.4:8082/",
        "10.0.0.4:8082",
    ] {
        let t = Topology {
            transcoders: Vec::new(),
            origins: vec![bad.into()],
        };
        assert!(t.check().is_err(), "{bad}");
        let dir = TempDir::new("node-topology-bad");
        let mut cfg = Db::sqlite().config(&dir);
        cfg.topology = t;
        assert!(ControlPlane::open(cfg).await.is_err(), "{bad}");
    }
}

/// An origin checks play tokens itself with the key `GET /node/play-auth`
/// hands it (node or admin token only), as the control plane would, and a
/// revoked session is refused there within a poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_checks_play_tokens_with_the_control_planes_key() {
    use ugc_auth::node::PlayKeys;
    use ugc_core::auth::{PlayDecision, PlayRequest};
    let dir = TempDir::new("node-play");
    let mut cfg = Db::sqlite().config(&dir);
    cfg.node_token = Some(NODE.into());
    let cp = ControlPlane::open(cfg).await.unwrap();
    let srv = serve(&cp).await;
    let api = Api::new(&srv);
    let url = format!("http://{}", srv.addr);
    let (_, v) = api.call("POST", "/creators", Some(ADMIN), json!({})).await;
    let creator = v["token"].as_str().unwrap().to_owned();
    for (token, want) in [
        (None, 401),
        (Some(creator.as_str()), 403),
        (Some("wrong-token-0123456789"), 401),
        (Some(NODE), 200),
    ] {
        let (s, v) = api.call("GET", "/node/play-auth", token, json!(null)).await;
        assert_eq!(s, want, "{token:?}: {v}");
    }
    for name in ["priv", "open"] {
        let private = name == "priv";
        let (s, v) = api
            .call(
                "POST",
                "/streams",
                Some(ADMIN),
                json!({"name": name, "private": private}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let play = async |body: serde_json::Value| {
        let (s, v) = api
            .call("POST", "/streams/priv/play", Some(ADMIN), body)
            .await;
        assert_eq!(s, 200, "{v}");
        (
            v["token"].as_str().unwrap().to_owned(),
            v["session"].as_str().unwrap().to_owned(),
        )
    };
    let (token, session) = play(json!({})).await;
    let (bound, _) = play(json!({"bind_ip": "192.0.2.7"})).await;

    let settings = RemoteSettings::connect(RemoteConfig::new(&url, NODE))
        .await
        .unwrap();
    let keys = PlayKeys::follow(
        &url,
        NODE,
        Duration::from_millis(100),
        Duration::from_secs(2),
    )
    .unwrap();
    let origin = RemoteAuthorizer::new(&url, NODE, Duration::from_secs(2))
        .unwrap()
        .with_public_play(settings.clone())
        .with_play_tokens(keys.clone());
    let without_keys = RemoteAuthorizer::new(&url, NODE, Duration::from_secs(2))
        .unwrap()
        .with_public_play(settings);
    wait_until("the key", Duration::from_secs(5), async || keys.loaded()).await;
    let ask = |stream: &str, token: Option<&str>, ip: &str| PlayRequest {
        stream: StreamPath::parse(stream).unwrap(),
        token: token.map(str::to_owned),
        client_ip: ip.parse().unwrap(),
    };
    let allowed = |d: &PlayDecision| *d == PlayDecision::Allow;
    let viewer = "198.51.100.9";
    for (what, req, want) in [
        ("good token", ask("live/priv", Some(&token), viewer), true),
        (
            "rendition",
            ask("live/priv/720p", Some(&token), viewer),
            true,
        ),
        ("no token", ask("live/priv", None, viewer), false),
        ("garbage", ask("live/priv", Some("abc"), viewer), false),
        ("other stream", ask("live/open", Some(&token), viewer), true),
        (
            "bound, right IP",
            ask("live/priv", Some(&bound), "192.0.2.7"),
            true,
        ),
        (
            "bound, other IP",
            ask("live/priv", Some(&bound), viewer),
            false,
        ),
        ("public", ask("live/open", None, viewer), true),
    ] {
        let d = origin.authorize_play(&req).await;
        assert_eq!(allowed(&d), want, "{what}: {d:?}");
        // The control plane's own decision is the same.
        assert_eq!(
            allowed(&cp.authorizer().authorize_play(&req).await),
            want,
            "{what}"
        );
    }
    // A token for another stream: ask the public stream's decision with the
    // private one's name swapped in (a token signed for "open").
    let (s, v) = api
        .call("POST", "/streams/open/play", Some(ADMIN), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let foreign = v["token"].as_str().unwrap();
    assert!(!allowed(
        &origin
            .authorize_play(&ask("live/priv", Some(foreign), viewer))
            .await
    ));
    // Without the key, the private stream is refused whatever the token.
    assert!(!allowed(
        &without_keys
            .authorize_play(&ask("live/priv", Some(&token), viewer))
            .await
    ));
    // Revoked: refused at the origin within a poll.
    let (s, v) = api
        .call(
            "DELETE",
            &format!("/sessions/{session}"),
            Some(ADMIN),
            json!(null),
        )
        .await;
    assert!(s == 200 || s == 204, "{s} {v}");
    let took = wait_until("the revocation", Duration::from_secs(5), async || {
        !allowed(
            &origin
                .authorize_play(&ask("live/priv", Some(&token), viewer))
                .await,
        )
    })
    .await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    // A control plane that never answered: private streams are refused
    // (fail closed), whatever the token.
    let unreachable = PlayKeys::follow(
        "http://127.0.0.1:9",
        NODE,
        Duration::from_millis(50),
        Duration::from_secs(1),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!unreachable.loaded());
    assert!(!allowed(
        &unreachable.check(
            &ask("live/priv", Some(&bound), "192.0.2.7"),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        )
    ));
}

/// A balancing origin asks the control plane at most
/// `PlayBalancer::MAX_ASKING` questions at once: a flood of new viewers
/// is served here past them, at once, instead of being passed on; a
/// control plane slower than `PlayBalancer::TIMEOUT` leaves the viewer
/// here too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balancing_origin_passes_no_flood_to_the_control_plane() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use ugc_auth::balance::PlayBalancer;
    // A control plane that answers "the other origin" after 300 ms.
    let asked = Arc::new(AtomicUsize::new(0));
    let slow = {
        let asked = asked.clone();
        axum::Router::new().route(
            "/api/v1/node/play/{name}",
            axum::routing::get(move || {
                let asked = asked.clone();
                async move {
                    asked.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    axum::Json(json!({"node": "other", "url": "http://10.0.0.2:8082"}))
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, slow).await });
    let balancer = PlayBalancer::new(&url, NODE, "me");
    let stream = StreamPath::live("ev").unwrap();
    let flood = PlayBalancer::MAX_ASKING + 36;
    let t0 = Instant::now();
    let answers = futures_join_all((0..flood).map(|_| {
        let (b, s) = (balancer.clone(), stream.clone());
        tokio::spawn(async move { (b.elsewhere(&s).await, Instant::now()) })
    }))
    .await;
    let sent: Vec<_> = answers.iter().filter(|(a, _)| a.is_some()).collect();
    let here: Vec<_> = answers.iter().filter(|(a, _)| a.is_none()).collect();
    assert!(asked.load(Ordering::SeqCst) <= PlayBalancer::MAX_ASKING);
    assert_eq!(
        sent.len(),
        asked.load(Ordering::SeqCst),
        "every answer sent on"
    );
    assert!(here.len() >= 36, "{} served here", here.len());
    // Those past the bound were not held for the slow answers.
    let quick = here
        .iter()
        .filter(|(_, at)| at.duration_since(t0) < Duration::from_millis(200))
        .count();
    assert!(quick >= 36, "{quick} served at once");
    let mut m = ugc_core::metrics::Exposition::new();
    balancer.write_metrics(&mut m);
    let text = m.finish();
    assert!(
        text.contains(&format!(
            "ugc_balance_viewers_total{{decision=\"busy\"}} {}",
            here.len()
        )),
        "{text}"
    );
}

/// Awaits every task, in order.
async fn futures_join_all<T: Send + 'static>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks.collect::<Vec<_>>() {
        out.push(t.await.unwrap());
    }
    out
}
