//! Every control API route, happy path and errors, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ADMIN, Api, Db, TempDir, serve};
use serde_json::{Value, json};
use ugc_auth::{ChangeKind, ControlPlane};
use ugc_core::{
    Authorizer, PlayDecision, PlayRequest, Protocol, PublishDecision, PublishRequest, StreamPath,
};

async fn publish(cp: &ControlPlane, key: &str) -> PublishDecision {
    cp.authorizer()
        .authorize_publish(&PublishRequest {
            protocol: Protocol::Rtmp,
            app: "live".into(),
            key: key.into(),
            client_ip: [127, 0, 0, 1].into(),
        })
        .await
}

async fn play(cp: &ControlPlane, stream: &str, token: Option<&str>) -> PlayDecision {
    cp.authorizer()
        .authorize_play(&PlayRequest {
            stream: StreamPath::parse(stream).unwrap(),
            token: token.map(Into::into),
            client_ip: [127, 0, 0, 1].into(),
        })
        .await
}

async fn suite(db: Db) {
    let dir = TempDir::new("api");
    let hub = ugc_core::Hub::new(ugc_core::HubConfig::default());
    let mut cfg = db.config(&dir);
    cfg.hub = Some(hub.clone());
    cfg.transcode_profiles = vec!["mobile".into()];
    let cp = ControlPlane::open(cfg).await.expect("open");
    assert_eq!(
        cp.take_generated_admin_token(),
        None,
        "admin token was configured"
    );
    let mut changes = cp.subscribe_changes();
    let srv = serve(&cp).await;
    let api = Api::new(&srv);
    let a = Some(ADMIN);

    // ---- 401 on every authenticated route without / with a bad token
    for (m, p) in [
        ("POST", "/streams"),
        ("GET", "/streams"),
        ("GET", "/streams/x"),
        ("PATCH", "/streams/x"),
        ("DELETE", "/streams/x"),
        ("POST", "/streams/x/key"),
        ("POST", "/streams/x/play"),
        ("DELETE", "/sessions/00000000000000000000000000000000"),
        ("POST", "/creators"),
    ] {
        let (s, v) = api.call(m, p, None, json!({})).await;
        assert_eq!(s, 401, "{m} {p} without token");
        assert!(v["error"].is_string(), "{m} {p}: JSON error body");
        assert_eq!(
            api.call(m, p, Some("nope"), json!({})).await.0,
            401,
            "{m} {p} bad token"
        );
    }

    // ---- creators
    let (s, v) = api
        .call("POST", "/creators", a, json!({"name": "Alice"}))
        .await;
    assert_eq!(s, 201, "{v}");
    let alice = v["token"].as_str().unwrap().to_owned();
    assert!(v["id"].as_str().unwrap().starts_with("c_"));
    let (s, v) = api.call("POST", "/creators", a, Value::Null).await;
    assert_eq!(s, 201, "{v}");
    let bob = v["token"].as_str().unwrap().to_owned();
    assert_eq!(
        api.call("POST", "/creators", Some(&alice), json!({}))
            .await
            .0,
        403
    );
    assert_eq!(api.raw("POST", "/creators", a, "{bad").await.0, 400);
    assert_eq!(
        api.call("POST", "/creators", a, json!({"name": ""}))
            .await
            .0,
        400
    );

    // ---- create
    let (s, v) = api
        .call(
            "POST",
            "/streams",
            Some(&alice),
            json!({"name": "cam1", "title": "My cam", "private": true, "transcode": "default",
                   "dvr_hours": 24, "restream": ["rtmp://a.example/live/k"], "srt_passphrase": "0123456789ab"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let key = v["key"].as_str().unwrap().to_owned();
    assert!(key.len() >= 22, "128-bit key: {key}");
    assert_eq!(
        v["publish"]["rtmp"],
        format!("rtmp://localhost:1935/live/{key}")
    );
    assert_eq!(
        v["publish"]["srt"],
        format!("srt://localhost:9000?streamid=#!::r=live/{key},m=publish")
    );
    assert_eq!(v["publish"]["whip"], "http://localhost:8080/whip/cam1");
    assert_eq!(v["private"], true);
    assert_eq!(v["dvr_hours"], 24);
    assert_eq!(v["transcode"], "default");
    assert_eq!(v["restream"], json!(["rtmp://a.example/live/k"]));
    assert_eq!(v["srt_passphrase"], "0123456789ab");
    assert_eq!(v["fallback"], Value::Null, "the server's fallback");
    assert_eq!(v["source_timeout_ms"], 0, "the server's timeout");
    assert_eq!(
        changes.recv().await.unwrap(),
        ugc_auth::StreamChange {
            name: "cam1".into(),
            kind: ChangeKind::Created
        }
    );
    // 409 duplicate (also for another creator)
    assert_eq!(
        api.call("POST", "/streams", Some(&alice), json!({"name": "cam1"}))
            .await
            .0,
        409
    );
    assert_eq!(
        api.call("POST", "/streams", Some(&bob), json!({"name": "cam1"}))
            .await
            .0,
        409
    );
    // 400: bad JSON, bad names, bad fields, unknown fields
    assert_eq!(
        api.raw("POST", "/streams", Some(&alice), "{\"name\":")
            .await
            .0,
        400
    );
    assert_eq!(api.raw("POST", "/streams", Some(&alice), "").await.0, 400);
    for bad in [
        json!({"name": "../etc"}),
        json!({"name": "a/b"}),
        json!({"name": "Caps"}),
        json!({"name": ""}),
        json!({"name": "x".repeat(65)}),
        json!({"name": "a\u{0}b"}),
        json!({"name": "ok", "transcode": "ultra"}),
        json!({"name": "ok", "dvr_hours": 100000}),
        json!({"name": "ok", "dvr_hours": -1}),
        json!({"name": "ok", "restream": ["http://x/y"]}),
        json!({"name": "ok", "srt_passphrase": "short"}),
        json!({"name": "ok", "private": "yes"}),
        json!({"name": "ok", "bogus": 1}),
        json!({"name": "ok", "fallback": "/etc/passwd"}),
        json!({"name": "ok", "fallback": "../loop.mp4"}),
        json!({"name": "ok", "fallback": "file:///etc/passwd"}),
        json!({"name": "ok", "source_timeout_ms": 100}),
        json!({"name": "ok", "source_timeout_ms": 600_000}),
        json!({"title": "no name"}),
    ] {
        let (s, v) = api
            .call("POST", "/streams", Some(&alice), bad.clone())
            .await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert!(v["error"].is_string());
    }
    let (s, v) = api
        .call(
            "POST",
            "/streams",
            Some(&bob),
            json!({"name": "bobcast", "transcode": "mobile"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let bob_key = v["key"].as_str().unwrap().to_owned();
    assert_eq!(changes.recv().await.unwrap().name, "bobcast");

    // ---- list: creators see their own, admin all
    let (s, v) = api.call("GET", "/streams", Some(&alice), Value::Null).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cam1"]);
    let (_, v) = api.call("GET", "/streams", a, Value::Null).await;
    assert_eq!(v["streams"].as_array().unwrap().len(), 2);

    // ---- get
    let (s, v) = api
        .call("GET", "/streams/cam1", Some(&alice), Value::Null)
        .await;
    assert_eq!((s, v["title"].as_str()), (200, Some("My cam")));
    assert_eq!(
        api.call("GET", "/streams/cam1", a, Value::Null).await.0,
        200
    );
    assert_eq!(
        api.call("GET", "/streams/cam1", Some(&bob), Value::Null)
            .await
            .0,
        403
    );
    assert_eq!(
        api.call("GET", "/streams/nope", Some(&alice), Value::Null)
            .await
            .0,
        404
    );
    assert_eq!(
        api.call("GET", "/streams/Bad..Name", Some(&alice), Value::Null)
            .await
            .0,
        400
    );
    assert_eq!(
        api.call("GET", "/streams/%2e%2e", Some(&alice), Value::Null)
            .await
            .0,
        400
    );

    // ---- publish authorization
    assert_eq!(
        publish(&cp, &key).await,
        PublishDecision::allow(StreamPath::parse("live/cam1").unwrap())
    );
    // Refusals say why (the publisher reads it), never echoing the key.
    assert_eq!(
        publish(&cp, "wrong-key").await,
        PublishDecision::unauthorized("unknown stream key")
    );
    assert_eq!(
        publish(&cp, "../x").await,
        PublishDecision::unauthorized("malformed stream key: name segment starts with '.'")
    );
    let mut req = PublishRequest {
        protocol: Protocol::Srt,
        app: "other".into(),
        key: key.clone(),
        client_ip: [127, 0, 0, 1].into(),
    };
    assert_eq!(
        cp.authorizer().authorize_publish(&req).await,
        PublishDecision::unauthorized(
            "unknown application \"other\" (publish to live/<stream key>, or \
             backup/<stream key> as the stream's backup)"
        )
    );
    // The same key under `backup` is the stream's backup publisher.
    req.app = "backup".into();
    assert_eq!(
        cp.authorizer().authorize_publish(&req).await,
        PublishDecision::Allow {
            stream: StreamPath::parse("live/cam1").unwrap(),
            role: ugc_core::SourceRole::Backup,
        }
    );
    req.app = "live".into();
    assert!(matches!(
        cp.authorizer().authorize_publish(&req).await,
        PublishDecision::Allow { .. }
    ));

    // ---- patch reaches settings and subscribers
    let (s, v) = api
        .call(
            "PATCH",
            "/streams/cam1",
            Some(&alice),
            json!({"transcode": "off", "dvr_hours": 0, "srt_passphrase": null, "title": "T2"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["srt_passphrase"], Value::Null);
    assert_eq!(v["title"], "T2");
    assert_eq!(v["private"], true, "absent fields stay");
    assert_eq!(
        changes.recv().await.unwrap(),
        ugc_auth::StreamChange {
            name: "cam1".into(),
            kind: ChangeKind::Updated
        }
    );
    let st = cp.settings("cam1").unwrap();
    assert_eq!(
        (st.transcode.as_str(), st.dvr_hours, st.private),
        ("off", 0, true)
    );
    // Failover settings: set, read back (API and settings), and back to
    // the server's with null and 0.
    let (s, v) = api
        .call(
            "PATCH",
            "/streams/cam1",
            Some(&alice),
            json!({"fallback": "https://cdn.example/back-soon.mp4", "source_timeout_ms": 1500}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["fallback"], "https://cdn.example/back-soon.mp4");
    assert_eq!(v["source_timeout_ms"], 1500);
    changes.recv().await.unwrap();
    let st = cp.settings("cam1").unwrap();
    assert_eq!(
        (st.fallback.as_deref(), st.source_timeout_ms),
        (Some("https://cdn.example/back-soon.mp4"), 1500)
    );
    let (_, v) = api
        .call("GET", "/streams/cam1", Some(&alice), Value::Null)
        .await;
    assert_eq!(v["fallback"], "https://cdn.example/back-soon.mp4");
    assert_eq!(v["source_timeout_ms"], 1500);
    for bad in [
        json!({"fallback": "a/b.mp4"}),
        json!({"fallback": ""}),
        json!({"source_timeout_ms": 499}),
    ] {
        let (s, v) = api
            .call("PATCH", "/streams/cam1", Some(&alice), bad.clone())
            .await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    let (s, v) = api
        .call(
            "PATCH",
            "/streams/cam1",
            Some(&alice),
            json!({"fallback": null, "source_timeout_ms": 0}),
        )
        .await;
    assert_eq!(
        (s, &v["fallback"], &v["source_timeout_ms"]),
        (200, &Value::Null, &json!(0))
    );
    changes.recv().await.unwrap();
    assert_eq!(cp.settings("cam1").unwrap().fallback, None);
    assert_eq!(
        api.call("PATCH", "/streams/cam1", Some(&bob), json!({"title": "x"}))
            .await
            .0,
        403
    );
    assert_eq!(
        api.call(
            "PATCH",
            "/streams/nope",
            Some(&alice),
            json!({"title": "x"})
        )
        .await
        .0,
        404
    );
    assert_eq!(
        api.raw("PATCH", "/streams/cam1", Some(&alice), "nope")
            .await
            .0,
        400
    );
    assert_eq!(
        api.call(
            "PATCH",
            "/streams/cam1",
            Some(&alice),
            json!({"dvr_hours": 9999})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.call(
            "PATCH",
            "/streams/cam1",
            Some(&alice),
            json!({"name": "renamed"})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.call("PATCH", "/streams/a.b", Some(&alice), json!({}))
            .await
            .0,
        400
    );

    // ---- play tokens
    assert!(
        matches!(
            play(&cp, "live/cam1", None).await,
            PlayDecision::Deny { .. }
        ),
        "private needs a token"
    );
    assert_eq!(
        play(&cp, "live/bobcast", None).await,
        PlayDecision::Allow,
        "public"
    );
    let (s, v) = api
        .call(
            "POST",
            "/streams/cam1/play",
            Some(&alice),
            json!({"ttl_s": 60}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let session = v["session"].as_str().unwrap().to_owned();
    assert_eq!(
        v["url"],
        format!("http://localhost:8080/live/cam1/index.m3u8?token={token}")
    );
    assert_eq!(v["whep"], "http://localhost:8080/whep/cam1");
    let exp = v["expires_at"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 55..=now + 61).contains(&exp), "{exp} vs {now}");
    assert_eq!(
        play(&cp, "live/cam1", Some(&token)).await,
        PlayDecision::Allow
    );
    assert_eq!(
        play(&cp, "live/cam1/720p", Some(&token)).await,
        PlayDecision::Allow
    );
    // A stream nobody created is not found, token or not.
    assert!(matches!(
        play(&cp, "live/bobcast2", Some(&token)).await,
        PlayDecision::NotFound { .. }
    ));
    // empty body: defaults
    let (s, v) = api
        .call("POST", "/streams/cam1/play", Some(&alice), Value::Null)
        .await;
    assert_eq!(s, 200, "{v}");
    // IP-bound
    let (s, v) = api
        .call(
            "POST",
            "/streams/cam1/play",
            Some(&alice),
            json!({"bind_ip": "10.9.9.9"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let bound = v["token"].as_str().unwrap().to_owned();
    assert!(
        matches!(
            play(&cp, "live/cam1", Some(&bound)).await,
            PlayDecision::Deny { .. }
        ),
        "wrong IP"
    );
    let from_bound = PlayRequest {
        stream: StreamPath::parse("live/cam1").unwrap(),
        token: Some(bound),
        client_ip: [10, 9, 9, 9].into(),
    };
    assert_eq!(
        cp.authorizer().authorize_play(&from_bound).await,
        PlayDecision::Allow
    );
    // errors
    assert_eq!(
        api.call(
            "POST",
            "/streams/cam1/play",
            Some(&alice),
            json!({"bind_ip": "nope"})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.call(
            "POST",
            "/streams/cam1/play",
            Some(&alice),
            json!({"ttl_s": 0})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.call(
            "POST",
            "/streams/cam1/play",
            Some(&alice),
            json!({"ttl_s": 99999999})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.raw("POST", "/streams/cam1/play", Some(&alice), "{")
            .await
            .0,
        400
    );
    assert_eq!(
        api.call("POST", "/streams/cam1/play", Some(&bob), json!({}))
            .await
            .0,
        403
    );
    assert_eq!(
        api.call("POST", "/streams/nope/play", Some(&alice), json!({}))
            .await
            .0,
        404
    );
    assert_eq!(
        api.call("POST", "/streams/No!/play", Some(&alice), json!({}))
            .await
            .0,
        400
    );

    // ---- revoke
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/sessions/{session}"),
            Some(&bob),
            Value::Null
        )
        .await
        .0,
        403
    );
    assert_eq!(
        api.call(
            "DELETE",
            "/sessions/00000000000000000000000000000000",
            Some(&alice),
            Value::Null
        )
        .await
        .0,
        404
    );
    assert_eq!(
        api.call("DELETE", "/sessions/zz", Some(&alice), Value::Null)
            .await
            .0,
        404
    );
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/sessions/{session}"),
            Some(&alice),
            Value::Null
        )
        .await
        .0,
        204
    );
    assert!(
        matches!(
            play(&cp, "live/cam1", Some(&token)).await,
            PlayDecision::Deny { .. }
        ),
        "revoked"
    );

    // ---- key rotation: old key refused, publisher dropped
    let publisher = hub.publish(&StreamPath::parse("live/cam1").unwrap());
    assert!(hub.is_publishing(&StreamPath::parse("live/cam1").unwrap()));
    assert_eq!(
        api.call("GET", "/streams/cam1", Some(&alice), Value::Null)
            .await
            .1["live"],
        true
    );
    let (s, v) = api
        .call("POST", "/streams/cam1/key", Some(&alice), Value::Null)
        .await;
    assert_eq!(s, 200, "{v}");
    let new_key = v["key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    assert!(
        !hub.is_publishing(&StreamPath::parse("live/cam1").unwrap()),
        "publisher on the old key dropped"
    );
    assert!(!publisher.is_current());
    assert!(
        matches!(publish(&cp, &key).await, PublishDecision::Deny { .. }),
        "old key refused"
    );
    assert_eq!(
        publish(&cp, &new_key).await,
        PublishDecision::allow(StreamPath::parse("live/cam1").unwrap())
    );
    assert_eq!(
        changes.recv().await.unwrap(),
        ugc_auth::StreamChange {
            name: "cam1".into(),
            kind: ChangeKind::KeyRotated
        }
    );
    assert_eq!(
        api.call("POST", "/streams/cam1/key", Some(&bob), Value::Null)
            .await
            .0,
        403
    );
    assert_eq!(
        api.call("POST", "/streams/nope/key", Some(&alice), Value::Null)
            .await
            .0,
        404
    );
    assert_eq!(
        api.call("POST", "/streams/..x/key", Some(&alice), Value::Null)
            .await
            .0,
        400
    );

    // ---- delete
    assert_eq!(
        api.call("DELETE", "/streams/cam1", Some(&bob), Value::Null)
            .await
            .0,
        403
    );
    assert_eq!(
        api.call("DELETE", "/streams/nope", Some(&alice), Value::Null)
            .await
            .0,
        404
    );
    assert_eq!(
        api.call("DELETE", "/streams/A", Some(&alice), Value::Null)
            .await
            .0,
        400
    );
    assert_eq!(
        api.call("DELETE", "/streams/cam1", Some(&alice), Value::Null)
            .await
            .0,
        204
    );
    assert_eq!(
        api.call("GET", "/streams/cam1", Some(&alice), Value::Null)
            .await
            .0,
        404
    );
    assert!(cp.settings("cam1").is_none());
    assert!(matches!(
        publish(&cp, &new_key).await,
        PublishDecision::Deny { .. }
    ));
    assert_eq!(
        changes.recv().await.unwrap(),
        ugc_auth::StreamChange {
            name: "cam1".into(),
            kind: ChangeKind::Deleted
        }
    );
    // the name is free again
    assert_eq!(
        api.call("POST", "/streams", Some(&alice), json!({"name": "cam1"}))
            .await
            .0,
        201
    );
    assert_eq!(
        publish(&cp, &bob_key).await,
        PublishDecision::allow(StreamPath::parse("live/bobcast").unwrap())
    );

    // ---- what the server prints at start: the demo stream's settings,
    // made once, with a key that publishes and a WHIP URL as the API's
    let w = cp.welcome("ugc-server", Some("demo"), true).await.unwrap();
    let key = w
        .lines()
        .find_map(|l| l.trim().strip_prefix("Stream key: "))
        .unwrap()
        .to_owned();
    assert_eq!(
        publish(&cp, &key).await,
        PublishDecision::allow(StreamPath::parse("live/demo").unwrap())
    );
    let (_, demo) = api.call("GET", "/streams/demo", a, Value::Null).await;
    let whip = demo["publish"]["whip"].as_str().unwrap();
    assert!(w.contains(&format!("WHIP:       {whip}  (")), "{w}");
    assert!(w.contains("> demo > Go live here"), "{w}");
    let again = cp.welcome("ugc-server", Some("demo"), false).await.unwrap();
    assert!(again.contains(&format!("Stream key: {key}")), "{again}");
    assert!(!again.contains("Go live here"), "no panel: {again}");

    // ---- history: empty where no Hub of this process carries the stream
    let (s, h) = api
        .call("GET", "/streams/demo/history", a, Value::Null)
        .await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(h, json!({"every_ms": 5000, "samples": []}));
    let (s, _) = api
        .call("GET", "/streams/nosuch/history", a, Value::Null)
        .await;
    assert_eq!(s, 404);

    // ---- capacity planner: the guide's example by default
    let (s, p) = api.call("POST", "/plan", a, json!({})).await;
    assert_eq!(s, 200, "{p}");
    let close = |v: &Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-6 * want.max(1.0);
    assert!(close(&p["input_mbps"], 51.92), "{p}");
    assert!(close(&p["ladder_output_mbps"], 74.16), "{p}");
    assert!(close(&p["inter_node_mbps"], 200.24), "{p}");
    assert!(close(&p["viewers_mbps"], 419_200.0), "{p}");
    assert!(close(&p["dvr_ladder_gb"], 333.72), "{p}");
    assert!(close(&p["dvr_top_gb"], 188.64), "{p}");
    assert_eq!(p["guide_example"], true);
    assert!(
        p["ladder_output_note"]
            .as_str()
            .unwrap()
            .contains("223 Mbit/s"),
        "{p}"
    );
    assert_eq!(p["capacity"]["sources"].as_array().unwrap().len(), 3);
    assert_eq!(p["servers"]["cores"], 16.0);
    // Any caller's own inputs and capacities; out of range is 400.
    let (s, q) = api
        .call(
            "POST",
            "/plan",
            a,
            json!({"streams": 40, "ladder": [], "viewers": 1000, "cdn_share": 0.5,
                   "streams_per_publish_server": 8, "gbps_per_origin": 1}),
        )
        .await;
    assert_eq!(s, 200, "{q}");
    assert_eq!(q["servers"]["publish"], 5, "{q}");
    assert_eq!(
        q["servers"]["transcode"], 0,
        "no ladder, no transcoders: {q}"
    );
    assert_eq!(q["guide_example"], false);
    for bad in [
        json!({"cdn_share": 2}),
        json!({"cores": -1}),
        json!({"viewer_rung": "4k"}),
        json!({"ladder": [{"name": "", "video_kbps": 1, "audio_kbps": 1}]}),
        json!({"nonsense": 1}),
        // Out of range counts are refused, not clamped into another plan.
        json!({"origins": 0}),
        json!({"origins": 1001}),
        json!({"streams": 1_000_001}),
        json!({"viewers": 10_000_000_001u64}),
        json!({"dvr_streams": 2_000_000}),
    ] {
        let (s, e) = api.call("POST", "/plan", a, bad.clone()).await;
        assert_eq!(s, 400, "{bad}: {e}");
    }
    let (s, _) = api.call("POST", "/plan", None, json!({})).await;
    assert_eq!(s, 401);

    // ---- openapi
    let (s, v) = api.call("GET", "/openapi.json", None, Value::Null).await;
    assert_eq!(s, 200);
    assert_eq!(v["openapi"], "3.0.3");
    drop(srv);
    cp.store().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_on_sqlite() {
    suite(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_on_postgres() {
    suite(Db::postgres()).await;
}
