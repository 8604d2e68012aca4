//! The node registry on SQLite and on PostgreSQL: nodes register and beat
//! over HTTP with the node token, `GET /api/v1/nodes` judges them by the
//! database clock, and publish and play URLs are placed on live nodes by
//! load. The library's [`Heartbeat`] client beats against the same server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN, Api, Db, TempDir, serve};
use serde_json::{Value, json};
use ugc_auth::ControlPlane;
use ugc_auth::lease::Lease;
use ugc_auth::registry::{Heartbeat, NodeBeat, NodeLoad, NodeRole};

const NODE: &str = "node-token-0123456789";

fn beat(id: &str, role: &str, rtmp_port: u16, streams: &[&str]) -> Value {
    json!({
        "id": id,
        "role": role,
        "url": format!("http://{id}.test:8081"),
        "public": {"host": format!("{id}.test"), "rtmp_port": rtmp_port, "http_port": 8081},
        "load": {"streams": streams.len(), "cpu": 0.1, "egress_bps": 1000},
        "streams": streams,
    })
}

/// Posts node beat `b`, then answers `GET /streams/s0`.
async fn beat_then_s0(api: &Api, b: Value) -> Value {
    let (s, _) = api.call("POST", "/node/heartbeat", Some(NODE), b).await;
    assert_eq!(s, 200);
    api.call("GET", "/streams/s0", Some(ADMIN), Value::Null)
        .await
        .1
}

fn rtmp_host(stream: &Value) -> String {
    // A stream answer, or the publish route's URLs alone.
    let urls = if stream["publish"].is_null() {
        stream
    } else {
        &stream["publish"]
    };
    let url = urls["rtmp"].as_str().unwrap();
    url.trim_start_matches("rtmp://")
        .split(['/', ':'])
        .next()
        .unwrap()
        .to_owned()
}

fn states(nodes: &Value) -> Vec<(String, String)> {
    nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_owned(),
                n["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn suite(db: Db) {
    let dir = TempDir::new("registry");
    let mut cfg = db.config(&dir);
    cfg.node_token = Some(NODE.into());
    cfg.node_down_after = Duration::from_millis(1500);
    let cp = ControlPlane::open(cfg).await.unwrap();
    let srv = serve(&cp).await;
    let api = Api::new(&srv);

    // No node yet: the control plane's own addresses, as on one machine.
    let (s, v) = api.call("GET", "/nodes", Some(ADMIN), Value::Null).await;
    assert_eq!((s, v.clone()), (200, json!([])), "{v}");
    let (s, v) = api
        .call("POST", "/streams", Some(ADMIN), json!({"name": "solo"}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(rtmp_host(&v), "localhost");

    // Who may beat and list.
    let b = beat("pub-a", "publish", 1935, &[]);
    let (s, _) = api.call("POST", "/node/heartbeat", None, b.clone()).await;
    assert_eq!(s, 401);
    let (s, _) = api
        .call(
            "POST",
            "/node/heartbeat",
            Some("wrong-0123456789"),
            b.clone(),
        )
        .await;
    assert_eq!(s, 401);
    let (s, v) = api
        .call(
            "POST",
            "/node/heartbeat",
            Some(NODE),
            json!({"id": "x y", "role": "publish", "url": "http://a:1"}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = api
        .call(
            "POST",
            "/node/heartbeat",
            Some(NODE),
            json!({"id": "x", "role": "mixer", "url": "http://a:1"}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = api.call("GET", "/nodes", Some(NODE), Value::Null).await;
    assert_eq!(s, 401, "the node token does not list nodes: {v}");
    let (s, v) = api
        .call("POST", "/creators", Some(ADMIN), json!({"name": "c"}))
        .await;
    assert_eq!(s, 201, "{v}");
    let creator = v["token"].as_str().unwrap().to_owned();
    let (s, _) = api.call("GET", "/nodes", Some(&creator), Value::Null).await;
    assert_eq!(s, 403);

    // Two publishing nodes and an origin register.
    for b in [
        beat("pub-a", "publish", 1935, &[]),
        beat("pub-b", "publish", 1936, &[]),
        beat("origin-1", "origin", 0, &[]),
    ] {
        let (s, v) = api.call("POST", "/node/heartbeat", Some(NODE), b).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["interval_ms"], 2000);
    }
    let (s, v) = api.call("GET", "/nodes", Some(ADMIN), Value::Null).await;
    assert_eq!(s, 200);
    assert_eq!(
        states(&v),
        [("origin-1", "live"), ("pub-a", "live"), ("pub-b", "live")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let a = &v[1];
    assert_eq!(a["role"], "publish");
    assert_eq!(a["url"], "http://pub-a.test:8081");
    assert_eq!(a["load"]["egress_bps"], 1000);
    assert!(a["last_seen"].as_i64().unwrap() > 1_700_000_000_000, "{a}");
    assert!(a["age_ms"].as_i64().unwrap() < 1000, "{a}");

    // New streams alternate between the idle publishing nodes.
    let mut hosts = Vec::new();
    for i in 0..4 {
        let (s, v) = api
            .call(
                "POST",
                "/streams",
                Some(ADMIN),
                json!({"name": format!("s{i}")}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        hosts.push(rtmp_host(&v));
    }
    let on_a = hosts.iter().filter(|h| *h == "pub-a.test").count();
    assert_eq!(on_a, 2, "{hosts:?}");
    // Sticky: the stream answer and the publish route say the same.
    let (_, v) = api
        .call("GET", "/streams/s0", Some(ADMIN), Value::Null)
        .await;
    assert_eq!(rtmp_host(&v), hosts[0]);
    assert_eq!(v["live"], false, "placed, not published: {v}");
    let (s, v) = api
        .call("GET", "/streams/s0/publish", Some(ADMIN), Value::Null)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(rtmp_host(&v), hosts[0]);
    assert!(v["srt"].as_str().unwrap().contains(&hosts[0]), "{v}");

    // The backup publisher is sent to the other publishing node (a second
    // publishing point), sticky too. A backup's publish check there names
    // the main's node, and that node's beat standing by for the stream
    // (a backup publisher alone) moves no main publisher to it.
    let backup = v["backup"].clone();
    let backup_host = rtmp_host(&backup);
    assert!(backup["rtmp"].as_str().unwrap().contains("/backup/"), "{v}");
    assert_ne!(backup_host, hosts[0], "{v}");
    let (_, again) = api
        .call("GET", "/streams/s0", Some(ADMIN), Value::Null)
        .await;
    assert_eq!(rtmp_host(&again["publish"]["backup"]), backup_host);
    let key = again["key"].as_str().unwrap().to_owned();
    let check =
        |app: &str| json!({"protocol": "rtmp", "app": app, "key": key, "client_ip": "127.0.0.1"});
    let (s, d) = api
        .call("POST", "/node/publish", Some(NODE), check("backup"))
        .await;
    assert_eq!(s, 200, "{d}");
    let main_id = hosts[0].trim_end_matches(".test");
    assert_eq!(
        d,
        json!({"decision": "allow", "stream": "live/s0", "role": "backup",
               "main_node": format!("http://{main_id}.test:8081")})
    );
    let (_, d) = api
        .call("POST", "/node/publish", Some(NODE), check("live"))
        .await;
    assert!(d.get("main_node").is_none(), "{d}");
    assert!(
        d.get("timeline").is_none(),
        "no node reported the stream: {d}"
    );
    // A node that reported the stream's timeline (its last beat, its node
    // killed since, included): a main publisher goes on with it, a backup
    // publisher (whose stream stands by on its own timeline) does not.
    let mut carrying = beat("origin-1", "origin", 0, &["live/s0"]);
    carrying["timelines"] = json!({"live/s0": 1_700_000_000_123u64});
    let (s, _) = api
        .call("POST", "/node/heartbeat", Some(NODE), carrying)
        .await;
    assert_eq!(s, 200);
    let (_, d) = api
        .call("POST", "/node/publish", Some(NODE), check("live"))
        .await;
    assert_eq!(d["timeline"], 1_700_000_000_123u64, "{d}");
    let (_, d) = api
        .call("POST", "/node/publish", Some(NODE), check("backup"))
        .await;
    assert!(d.get("timeline").is_none(), "{d}");
    let (s, _) = api
        .call(
            "POST",
            "/node/heartbeat",
            Some(NODE),
            beat("origin-1", "origin", 0, &[]),
        )
        .await;
    assert_eq!(s, 200);
    let backup_id = backup_host.trim_end_matches(".test").to_owned();
    let backup_port = if backup_id == "pub-a" { 1935 } else { 1936 };
    let mut standing_by = beat(&backup_id, "publish", backup_port, &["live/s0"]);
    standing_by["standby"] = json!(["live/s0"]);
    let (s, _) = api
        .call("POST", "/node/heartbeat", Some(NODE), standing_by)
        .await;
    assert_eq!(s, 200);
    let (_, v) = api
        .call("GET", "/streams/s0", Some(ADMIN), Value::Null)
        .await;
    assert_eq!(rtmp_host(&v), hosts[0], "{v}");
    assert_eq!(rtmp_host(&v["publish"]["backup"]), backup_host, "{v}");
    let (s, _) = api
        .call(
            "POST",
            "/node/heartbeat",
            Some(NODE),
            beat(&backup_id, "publish", backup_port, &[]),
        )
        .await;
    assert_eq!(s, 200);

    // A publisher that went to the other node anyway: the node carrying
    // the stream is the answer.
    let other = if hosts[0] == "pub-a.test" {
        "pub-b"
    } else {
        "pub-a"
    };
    let port = if other == "pub-a" { 1935 } else { 1936 };
    let v = beat_then_s0(&api, beat(other, "publish", port, &["live/s0"])).await;
    assert_eq!(rtmp_host(&v), format!("{other}.test"));
    // Live by the publishing node's beat (this control plane has no Hub).
    assert_eq!(v["live"], true, "{v}");
    // Its publisher dropped, the node loops the fallback: not live, and the
    // publisher is sent back to the node that carries the stream.
    let mut on_slate = beat(other, "publish", port, &["live/s0"]);
    on_slate["fallback"] = json!(["live/s0"]);
    let on = beat_then_s0(&api, on_slate).await;
    assert_eq!(on["live"], false, "{on}");
    assert_eq!(rtmp_host(&on), format!("{other}.test"), "{on}");
    beat_then_s0(&api, beat(other, "publish", port, &["live/s0"])).await;
    // No origins named: the topology answers the registered one.
    let (s, t) = api
        .call("GET", "/node/topology", Some(NODE), Value::Null)
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        t,
        json!({"transcoders": [], "origins": ["http://origin-1.test:8081"]})
    );
    // Viewers are sent to the origin.
    assert_eq!(v["play"], "http://origin-1.test:8081/live/s0/index.m3u8");
    assert_eq!(v["whep"], "http://origin-1.test:8081/whep/s0");
    let (s, v) = api
        .call("POST", "/streams/s0/play", Some(ADMIN), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["url"]
            .as_str()
            .unwrap()
            .starts_with("http://origin-1.test:8081/live/s0/index.m3u8?token="),
        "{v}"
    );

    // A draining node gets no new streams.
    let mut drain = beat("pub-a", "publish", 1935, &[]);
    drain["draining"] = json!(true);
    let (s, _) = api.call("POST", "/node/heartbeat", Some(NODE), drain).await;
    assert_eq!(s, 200);
    for i in 4..6 {
        let (_, v) = api
            .call(
                "POST",
                "/streams",
                Some(ADMIN),
                json!({"name": format!("s{i}")}),
            )
            .await;
        assert_eq!(rtmp_host(&v), "pub-b.test", "{v}");
    }

    // The library's client beats pub-b and origin-1; pub-a stops beating
    // and is down by the database clock after the threshold.
    let url = format!("http://{}", srv.addr);
    let hb = Heartbeat::new(&url, NODE);
    let keep = |id: &str, role| NodeBeat {
        id: id.into(),
        role,
        url: format!("http://{id}.test:8081"),
        public: Some(ugc_auth::PublicUrls {
            host: format!("{id}.test"),
            rtmp_port: 1936,
            ..Default::default()
        }),
        capacity: 10,
        load: NodeLoad::default(),
        streams: Vec::new(),
        standby: Vec::new(),
        fallback: Vec::new(),
        stats: Vec::new(),
        timelines: Default::default(),
        draining: false,
        priority: 0,
        pulls: false,
    };
    let t0 = Instant::now();
    let down = loop {
        assert_eq!(
            hb.send(&keep("pub-b", NodeRole::Publish)).await.unwrap(),
            Duration::from_secs(2)
        );
        hb.send(&keep("origin-1", NodeRole::Origin)).await.unwrap();
        let (_, v) = api.call("GET", "/nodes", Some(ADMIN), Value::Null).await;
        let st = states(&v);
        if st.contains(&("pub-a".to_owned(), "down".to_owned())) {
            assert!(
                st.contains(&("pub-b".to_owned(), "live".to_owned())),
                "{st:?}"
            );
            break t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "pub-a never down: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        down >= Duration::from_millis(1000),
        "down too early: {down:?}"
    );
    // No live publishing node reports s0 any more (its carrier is down or
    // beats without it): not live.
    let (_, v) = api
        .call("GET", "/streams/s0", Some(ADMIN), Value::Null)
        .await;
    assert_eq!(v["live"], false, "{v}");
    // A beat brings it back (a restarted node re-registers).
    let (s, _) = api
        .call(
            "POST",
            "/node/heartbeat",
            Some(NODE),
            beat("pub-a", "publish", 1935, &[]),
        )
        .await;
    assert_eq!(s, 200);
    let (_, v) = api.call("GET", "/nodes", Some(ADMIN), Value::Null).await;
    assert!(states(&v).contains(&("pub-a".to_owned(), "live".to_owned())));
    // The heartbeat client against a wrong token fails clearly.
    let err = Heartbeat::new(&url, "wrong-token-0123456789")
        .send(&keep("pub-b", NodeRole::Publish))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    // The panel's chart of a stream in a cluster: its history comes from
    // the beats' stats, the ingest counters from the publishing node (not
    // the origins' relay counters), the viewers summed over the origins.
    let stat_beat = |id: &str, role: &str, bytes: u64, viewers: Option<u32>| {
        let mut b = beat(id, role, 1935, &["live/s1"]);
        b["stats"] = json!([{"stream": "live/s1", "bytes_in": bytes, "frames_in": bytes / 1000,
                             "skips": 0, "source": 0, "viewers": viewers}]);
        b
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for (t, bytes, v) in [(now_ms - 5_000, 1_000_000u64, 3u32), (now_ms, 1_625_000, 4)] {
        for b in [
            stat_beat("pub-b", "publish", bytes, None),
            stat_beat("origin-1", "origin", bytes * 3, Some(v)),
            stat_beat("origin-2", "origin", bytes * 3, Some(v)),
        ] {
            let (s, a) = api.call("POST", "/node/heartbeat", Some(NODE), b).await;
            assert_eq!(s, 200, "{a}");
        }
        cp.sample_history_from(&cp.nodes().await.unwrap(), t);
    }
    let (s, h) = api
        .call("GET", "/streams/s1/history", Some(ADMIN), Value::Null)
        .await;
    assert_eq!(s, 200, "{h}");
    let samples = h["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 1, "{h}");
    assert_eq!(samples[0]["bitrate_bps"], 1_000_000, "{h}");
    assert_eq!(samples[0]["viewers"], 8, "{h}");
    assert_eq!(samples[0]["source"], "main", "{h}");

    // Forgetting a node.
    let (s, _) = api
        .call("DELETE", "/nodes/pub-a", Some(ADMIN), Value::Null)
        .await;
    assert_eq!(s, 204);
    let (s, _) = api
        .call("DELETE", "/nodes/pub-a", Some(ADMIN), Value::Null)
        .await;
    assert_eq!(s, 404);
    drop(srv);
    cp.store().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_sqlite() {
    suite(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_postgres() {
    suite(Db::postgres()).await;
}

/// Now in unix ms.
fn unix_ms() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    d.as_millis() as u64
}

fn transcoder(id: &str, priority: i32) -> NodeBeat {
    NodeBeat {
        id: id.into(),
        role: NodeRole::Transcode,
        url: format!("http://{id}.test:8083"),
        public: None,
        capacity: 0,
        load: NodeLoad::default(),
        streams: Vec::new(),
        standby: Vec::new(),
        fallback: Vec::new(),
        stats: Vec::new(),
        timelines: Default::default(),
        draining: false,
        priority,
        pulls: false,
    }
}

fn publisher(streams: &[&str]) -> NodeBeat {
    NodeBeat {
        role: NodeRole::Publish,
        url: "http://pub.test:8081".into(),
        streams: streams.iter().map(|s| s.to_string()).collect(),
        ..transcoder("pub", 0)
    }
}

async fn leases_of(hb: &Heartbeat, t: &NodeBeat) -> Vec<Lease> {
    let a = hb.send_for_answer(t).await.unwrap();
    a.leases.expect("a transcoder gets its leases")
}

/// Transcode leases on the database: jobs are the published streams with
/// a ladder, each held by one transcoder, claimed again with a new epoch
/// when its holder stops beating; a standby takes over from its main and
/// gives the jobs back; two control planes on one PostgreSQL never lease a
/// job twice.
async fn lease_suite(db: Db) {
    let dir = TempDir::new("leases");
    let mut cfg = db.config(&dir);
    cfg.node_token = Some(NODE.into());
    cfg.node_down_after = Duration::from_millis(1500);
    cfg.lease_ttl = Duration::from_millis(600);
    let cp = ControlPlane::open(cfg.clone()).await.unwrap();
    let srv = serve(&cp).await;
    let api = Api::new(&srv);
    for (name, transcode) in [
        ("a", "default"),
        ("b", "default"),
        ("c", "default"),
        ("d", "off"),
    ] {
        let (s, v) = api
            .call(
                "POST",
                "/streams",
                Some(ADMIN),
                json!({"name": name, "transcode": transcode}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let hb = Heartbeat::new(&format!("http://{}", srv.addr), NODE);
    // Other roles get no leases.
    let pubs = publisher(&["live/a", "live/b", "live/c", "live/d", "live/zz"]);
    let a = hb.send_for_answer(&pubs).await.unwrap();
    assert_eq!(a.leases, None);
    assert_eq!(a.interval, Duration::from_secs(2));

    let (t1, t2) = (transcoder("t1", 0), transcoder("t2", 0));
    let answer = hb.send_for_answer(&t1).await.unwrap();
    assert_eq!(
        answer.interval,
        Duration::from_millis(200),
        "a third of the TTL"
    );
    let l1 = answer.leases.unwrap();
    let l2 = leases_of(&hb, &t2).await;
    let l1b = leases_of(&hb, &t1).await;
    let mut all: Vec<&str> = l1b.iter().chain(&l2).map(|l| l.stream.as_str()).collect();
    all.sort();
    assert_eq!(all, ["live/a", "live/b", "live/c"], "{l1:?} {l2:?}");
    assert!(l1b.len() <= 3 && l2.len() <= 3);
    // A first claim's epoch is the database clock in ms (this machine's).
    for l in l1b.iter().chain(&l2) {
        assert_eq!(l.source, "http://pub.test:8081");
        assert!(l.epoch.abs_diff(unix_ms()) < 60_000, "{l:?}");
    }

    // t1 stops beating: t2 takes its jobs once their lease ran out, each
    // with a new epoch.
    let t0 = Instant::now();
    let took = loop {
        hb.send_for_answer(&pubs).await.unwrap();
        let l = leases_of(&hb, &t2).await;
        if l.len() == 3 {
            break l;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "t2 never took over: {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "taken before the lease ran out: {waited:?}"
    );
    for l in &took {
        match l1b.iter().find(|o| o.stream == l.stream) {
            Some(was) => assert!(l.epoch > was.epoch, "{took:?} {l1b:?}"),
            None => assert!(l2.contains(l), "{took:?} {l2:?}"),
        }
    }
    // t1 comes back: it holds nothing now (its epochs are stale) and takes
    // no job from an equal that holds its share plus one.
    let back = leases_of(&hb, &t1).await;
    assert!(back.iter().all(|l| {
        !l1b.iter()
            .any(|o| o.stream == l.stream && o.epoch == l.epoch)
    }));

    // A main (priority 10) takes every job from the standbys and, when it
    // stops beating, the standby takes them back.
    let main = transcoder("main", 10);
    let held = leases_of(&hb, &main).await;
    assert_eq!(held.len(), 3, "{held:?}");
    assert!(leases_of(&hb, &t2).await.is_empty());
    let t0 = Instant::now();
    loop {
        hb.send_for_answer(&pubs).await.unwrap();
        hb.send_for_answer(&t1).await.unwrap();
        if leases_of(&hb, &t2).await.len() + leases_of(&hb, &t1).await.len() == 3 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no standby took over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = leases_of(&hb, &main).await;
    assert_eq!(again.len(), 3, "the main takes its jobs back: {again:?}");
    assert!(leases_of(&hb, &t1).await.is_empty());

    // A stream on its publishing node's fallback (its publisher dropped,
    // the slate within the grace) is still a job: its lease holds, epoch
    // and all, so the slate goes through the same ladder.
    let mut slate = pubs.clone();
    slate.fallback = vec!["live/b".into()];
    hb.send_for_answer(&slate).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut held = leases_of(&hb, &main).await;
    held.sort_by(|a, b| a.stream.cmp(&b.stream));
    let mut was = again.clone();
    was.sort_by(|a, b| a.stream.cmp(&b.stream));
    assert_eq!(held, was, "the lease of a stream on its fallback holds");
    // Its publisher on another publishing node meanwhile (the old one
    // loops the slate for the grace): that node is the source, under the
    // same lease and epoch.
    let moved = NodeBeat {
        id: "pub2".into(),
        url: "http://pub2.test:8081".into(),
        streams: vec!["live/b".into()],
        ..publisher(&[])
    };
    hb.send_for_answer(&moved).await.unwrap();
    hb.send_for_answer(&slate).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let held = leases_of(&hb, &main).await;
    let b = held
        .iter()
        .find(|l| l.stream == "live/b")
        .expect("live/b held");
    assert_eq!(b.source, "http://pub2.test:8081", "{held:?}");
    assert_eq!(
        Some(b.epoch),
        was.iter().find(|l| l.stream == "live/b").map(|l| l.epoch)
    );
    // Back to one publishing node (pub2 no longer carries it).
    hb.send_for_answer(&NodeBeat {
        streams: Vec::new(),
        ..moved
    })
    .await
    .unwrap();

    // A stream that ends is no job.
    hb.send_for_answer(&publisher(&["live/a"])).await.unwrap();
    // (Lease rounds read the registry at most every 200 ms.)
    tokio::time::sleep(Duration::from_millis(250)).await;
    let l = leases_of(&hb, &main).await;
    assert_eq!(l.len(), 1, "{l:?}");

    // Two control planes on one PostgreSQL, beaten at concurrently: every
    // job held by exactly one transcoder, epochs only grow.
    if matches!(db, Db::Postgres(_)) {
        hb.send_for_answer(&pubs).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let cp2 = ControlPlane::open(cfg).await.unwrap();
        let srv2 = serve(&cp2).await;
        let hb2 = Heartbeat::new(&format!("http://{}", srv2.addr), NODE);
        let ts: Vec<NodeBeat> = (0..6).map(|i| transcoder(&format!("p{i}"), 20)).collect();
        let mut last: std::collections::HashMap<String, u64> = Default::default();
        for round in 0..10 {
            // A beat interval (a third of the TTL) apart, as transcoders
            // beat: the registry view of a round may be 200 ms old.
            tokio::time::sleep(Duration::from_millis(200)).await;
            hb.send_for_answer(&pubs).await.unwrap();
            let mut beats = Vec::new();
            for (i, t) in ts.iter().enumerate() {
                let hb = if i % 2 == 0 { hb.clone() } else { hb2.clone() };
                let t = t.clone();
                beats.push(tokio::spawn(async move {
                    (t.id.clone(), leases_of(&hb, &t).await)
                }));
            }
            let mut holder: std::collections::HashMap<String, String> = Default::default();
            for b in beats {
                let (id, leases) = b.await.unwrap();
                for l in leases {
                    if let Some(other) = holder.insert(l.stream.clone(), id.clone()) {
                        panic!("{} leased to {other} and {id}", l.stream);
                    }
                    let seen = last.entry(l.stream.clone()).or_default();
                    assert!(l.epoch >= *seen, "epoch went back: {l:?}");
                    *seen = l.epoch;
                }
            }
            let per: Vec<usize> = ts
                .iter()
                .map(|t| holder.values().filter(|h| **h == t.id).count())
                .collect();
            // Once all six have beaten, none holds more than ceil(3/6) + 1.
            if round >= 3 {
                assert!(per.iter().all(|&n| n <= 2), "round {round}: {per:?}");
                assert_eq!(per.iter().sum::<usize>(), 3, "round {round}: {per:?}");
            }
        }
        drop(srv2);
        cp2.store().close().await;
    }
    drop(srv);
    cp.store().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_on_sqlite() {
    lease_suite(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_on_postgres() {
    lease_suite(Db::postgres()).await;
}

/// A claim takes only jobs, found by the rows' live flag rather than by
/// naming every job: streams that ended while no lease round ran (the
/// control plane went down) are flagged not live by the next control
/// plane's first round, so a transcoder below its share is not offered
/// them in place of a job. (Before the resync, the three stale rows sort
/// before the job and fill the claim's one place: t2 got nothing.)
async fn claims_take_live_jobs_only(db: Db) {
    let dir = TempDir::new("lease-live");
    let mut cfg = db.config(&dir);
    cfg.node_token = Some(NODE.into());
    cfg.node_down_after = Duration::from_millis(1500);
    cfg.lease_ttl = Duration::from_millis(600);
    let cp = ControlPlane::open(cfg.clone()).await.unwrap();
    let srv = serve(&cp).await;
    let api = Api::new(&srv);
    for name in ["b", "c", "d", "z"] {
        let (s, v) = api
            .call(
                "POST",
                "/streams",
                Some(ADMIN),
                json!({"name": name, "transcode": "default"}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let hb = Heartbeat::new(&format!("http://{}", srv.addr), NODE);
    hb.send_for_answer(&publisher(&["live/b", "live/c", "live/d"]))
        .await
        .unwrap();
    let t1 = transcoder("t1", 0);
    let held = leases_of(&hb, &t1).await;
    assert_eq!(held.len(), 3, "{held:?}");
    // b, c and d end and z starts, but no lease round runs before this
    // control plane goes away: their rows still say live.
    hb.send_for_answer(&publisher(&["live/z"])).await.unwrap();
    drop(srv);
    cp.store().close().await;
    drop(cp);
    // t1's leases run out; a new control plane on the same database.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let cp = ControlPlane::open(cfg).await.unwrap();
    let srv = serve(&cp).await;
    let hb = Heartbeat::new(&format!("http://{}", srv.addr), NODE);
    hb.send_for_answer(&publisher(&["live/z"])).await.unwrap();
    let t2 = transcoder("t2", 0);
    let got = leases_of(&hb, &t2).await;
    let streams: Vec<&str> = got.iter().map(|l| l.stream.as_str()).collect();
    assert_eq!(streams, ["live/z"], "the job at the first round: {got:?}");
    // b, c and d were not claimed (their epochs stay t1's), and return as
    // jobs when they start again.
    let rows = cp.lease_rows().await.unwrap();
    for r in rows.iter().filter(|r| r.stream != "live/z") {
        let was = held.iter().find(|l| l.stream == r.stream).unwrap();
        assert_eq!(r.epoch as u64, was.epoch, "{rows:?}");
    }
    hb.send_for_answer(&publisher(&["live/z", "live/b"]))
        .await
        .unwrap();
    // (A lease time after the control plane started, t1's old lease of b
    // may be taken; the registry view is read at most every 200 ms.)
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got = leases_of(&hb, &t2).await;
    let streams: Vec<&str> = got.iter().map(|l| l.stream.as_str()).collect();
    assert_eq!(streams, ["live/b", "live/z"], "{got:?}");
    let b1 = held.iter().find(|l| l.stream == "live/b").unwrap();
    assert!(got[0].epoch > b1.epoch, "claimed again: {got:?}");

    // Pruning: no row goes within the hour's keep; with none, the rows of
    // c and d (no job, unheld) go and those of the live b and z stay;
    // once b and z end and t2 lets go of them, theirs go too. b comes
    // back on a new row with an epoch above the one it had.
    let b_before = got[0].epoch;
    assert_eq!(cp.prune_leases().await.unwrap(), 0, "kept for an hour");
    let rows = |cp: &ControlPlane| {
        let cp = cp.clone();
        async move {
            let mut r: Vec<String> = cp
                .lease_rows()
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.stream)
                .collect();
            r.sort();
            r
        }
    };
    assert_eq!(cp.store().prune_leases(0).await.unwrap(), 2);
    assert_eq!(rows(&cp).await, ["live/b", "live/z"]);
    hb.send_for_answer(&publisher(&[])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = leases_of(&hb, &t2).await;
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(cp.store().prune_leases(0).await.unwrap(), 2);
    assert!(rows(&cp).await.is_empty());
    hb.send_for_answer(&publisher(&["live/b"])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = leases_of(&hb, &t2).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(again[0].epoch > b_before, "{again:?} after {b_before}");
    drop(srv);
    cp.store().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_take_live_jobs_only_on_sqlite() {
    claims_take_live_jobs_only(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_take_live_jobs_only_on_postgres() {
    claims_take_live_jobs_only(Db::postgres()).await;
}

/// A publishing node killed a moment ago reads live until the down
/// threshold (10 s here) with the streams of its last beat; its publisher
/// reconnected to another node. The lease follows the node that still
/// beats once the dead one has been silent for 3 s (`STALE_BEAT_MS`),
/// not at the down threshold (with equal ranks the first node listed,
/// the dead one, stayed the source: the chaos run's seed-2 stall).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_leaves_a_silent_publishing_node_before_it_is_down() {
    let dir = TempDir::new("lease-stale");
    let mut cfg = Db::sqlite().config(&dir);
    cfg.node_token = Some(NODE.into());
    cfg.node_down_after = Duration::from_secs(10);
    cfg.lease_ttl = Duration::from_millis(600);
    let cp = ControlPlane::open(cfg).await.unwrap();
    let srv = serve(&cp).await;
    let api = Api::new(&srv);
    let (s, v) = api
        .call(
            "POST",
            "/streams",
            Some(ADMIN),
            json!({"name": "a", "transcode": "default"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let hb = Heartbeat::new(&format!("http://{}", srv.addr), NODE);
    let t = transcoder("t", 0);
    let source_of_a = |leases: Vec<Lease>| {
        leases
            .into_iter()
            .find(|l| l.stream == "live/a")
            .map(|l| (l.source, l.epoch))
    };
    hb.send_for_answer(&publisher(&["live/a"])).await.unwrap();
    let (first, epoch) = source_of_a(leases_of(&hb, &t).await).expect("leased");
    assert_eq!(first, "http://pub.test:8081");
    // "pub" goes silent; its publisher is on "pub2" now, which beats.
    let moved = NodeBeat {
        id: "pub2".into(),
        url: "http://pub2.test:8081".into(),
        ..publisher(&["live/a"])
    };
    let t0 = Instant::now();
    let followed = loop {
        hb.send_for_answer(&moved).await.unwrap();
        let (source, e) = source_of_a(leases_of(&hb, &t).await).expect("still leased");
        assert_eq!(e, epoch, "the same lease");
        if source == "http://pub2.test:8081" {
            break t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(6), "still on {source}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Stale after 3 s of silence, well before the 10 s down threshold.
    assert!(followed < Duration::from_secs(6), "{followed:?}");
    drop(srv);
    cp.store().close().await;
}

/// Viewers go to the live origin carrying the stream with the fewest
/// viewers, counting those its beats report and those sent there lately
/// (`GET /node/play/{name}`, asked by balancing origins, and play grants):
/// a loaded origin gets none until the other has as many, then they
/// alternate; an origin without the stream gets none while one has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_go_to_the_origin_with_the_fewest() {
    let dir = TempDir::new("play-pick");
    let mut cfg = Db::sqlite().config(&dir);
    cfg.node_token = Some(NODE.into());
    let cp = ControlPlane::open(cfg).await.unwrap();
    let srv = serve(&cp).await;
    let api = Api::new(&srv);
    let origin = |id: &str, streams: &[&str], viewers: u32| {
        let mut b = beat(id, "origin", 0, streams);
        b["stats"] = json!(
            streams
                .iter()
                .map(|s| json!({"stream": s, "viewers": viewers}))
                .collect::<Vec<_>>()
        );
        b
    };
    for b in [
        origin("origin-1", &["live/ev"], 5),
        origin("origin-2", &["live/ev"], 0),
        origin("origin-3", &[], 0),
    ] {
        let (s, a) = api.call("POST", "/node/heartbeat", Some(NODE), b).await;
        assert_eq!(s, 200, "{a}");
    }
    let (s, v) = api
        .call("POST", "/streams", Some(ADMIN), json!({"name": "ev"}))
        .await;
    assert_eq!(s, 201, "{v}");
    // Who may ask.
    let (s, _) = api.call("GET", "/node/play/ev", None, Value::Null).await;
    assert_eq!(s, 401);
    let (s, v) = api
        .call("POST", "/creators", Some(ADMIN), json!({"name": "c"}))
        .await;
    assert_eq!(s, 201, "{v}");
    let creator = v["token"].as_str().unwrap().to_owned();
    let (s, _) = api
        .call("GET", "/node/play/ev", Some(&creator), Value::Null)
        .await;
    assert_eq!(s, 403);
    let (s, _) = api
        .call("GET", "/node/play/no%20name", Some(NODE), Value::Null)
        .await;
    assert_eq!(s, 400);

    let mut picks = Vec::new();
    for i in 0..12 {
        // Every third viewer through a play grant, the rest through an
        // origin's question: both count.
        let node = if i % 3 == 2 {
            let (s, v) = api
                .call("POST", "/streams/ev/play", Some(ADMIN), json!({}))
                .await;
            assert_eq!(s, 200, "{v}");
            let url = v["url"].as_str().unwrap();
            url.trim_start_matches("http://")
                .split('.')
                .next()
                .unwrap()
                .to_owned()
        } else {
            let (s, v) = api
                .call("GET", "/node/play/ev", Some(NODE), Value::Null)
                .await;
            assert_eq!(s, 200, "{v}");
            let node = v["node"].as_str().unwrap().to_owned();
            assert_eq!(v["url"], format!("http://{node}.test:8081"), "{v}");
            node
        };
        picks.push(node);
    }
    // Five viewers (and a pick's worth of decay) before origin-1 gets one.
    assert!(picks[..5].iter().all(|p| p == "origin-2"), "{picks:?}");
    let ones = picks.iter().filter(|p| *p == "origin-1").count();
    assert!((2..=4).contains(&ones), "{picks:?}");
    assert!(!picks.iter().any(|p| p == "origin-3"), "{picks:?}");
    // A stream no origin carries: any live origin.
    let (s, v) = api
        .call("GET", "/node/play/other", Some(NODE), Value::Null)
        .await;
    assert_eq!(s, 200, "{v}");
    drop(srv);
    cp.store().close().await;
}
