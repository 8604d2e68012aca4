//! Load of transcode leases on the control plane's database (issue #22,
//! "Scale"): `JOBS` streams with a ladder published on `PUBLISHERS`
//! simulated publishing nodes (beating every 2 s with their streams) and
//! `TRANSCODERS` simulated transcoders, each beating every third of the
//! lease TTL through [`ControlPlane::transcode_leases`], the same call
//! `POST /api/v1/node/heartbeat` makes (the HTTP layer aside). After the
//! run-up (every job held) a third of the transcoders stop beating: the
//! others claim their jobs after the lease.
//!
//! Prints the lease round latency (steady state and during the takeover),
//! how long until every job was held, and how long the takeover took;
//! `benches/registry-load.sh leases` runs it against a private PostgreSQL
//! and adds the database's CPU per round.
//!
//! Usage: `lease_load DATABASE_URL TRANSCODERS JOBS SECONDS [PUBLISHERS]`

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ugc_auth::registry::{NodeBeat, NodeLoad, NodeRole};
use ugc_auth::store::Principal;
use ugc_auth::{ControlConfig, ControlPlane};

#[path = "../percentile.rs"]
mod percentile;
use percentile::pct;

fn beat(id: &str, role: NodeRole, streams: Vec<String>) -> NodeBeat {
    NodeBeat {
        id: id.into(),
        role,
        url: format!("http://{id}.test:8080"),
        public: None,
        capacity: 0,
        load: NodeLoad::default(),
        streams,
        standby: Vec::new(),
        fallback: Vec::new(),
        stats: Vec::new(),
        timelines: Default::default(),
        draining: false,
        priority: 0,
        pulls: false,
    }
}

/// Who holds what, as the transcoders were last told.
type Holdings = Arc<Mutex<HashMap<String, usize>>>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: lease_load DATABASE_URL TRANSCODERS JOBS SECONDS [PUBLISHERS]");
        std::process::exit(2);
    }
    let url = args[1].clone();
    let transcoders: usize = args[2].parse().expect("TRANSCODERS");
    let jobs: usize = args[3].parse().expect("JOBS");
    let seconds: u64 = args[4].parse().expect("SECONDS");
    let publishers: usize = args.get(5).map_or(100, |s| s.parse().expect("PUBLISHERS"));
    let dir = std::env::temp_dir().join(format!("ugc-lease-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut cfg = ControlConfig::new(&dir);
    cfg.database_url = Some(url);
    let ttl = cfg.lease_ttl;
    let cp = ControlPlane::open(cfg)
        .await
        .expect("open the control plane");
    let admin = Principal {
        id: "admin".into(),
        admin: true,
    };
    let t0 = Instant::now();
    for i in 0..jobs {
        let name = format!("s{i}");
        if cp.settings(&name).is_some() {
            continue;
        }
        let new = serde_json::from_value(serde_json::json!({"name": name, "transcode": "default"}))
            .expect("a new stream");
        cp.create_stream(&admin, new)
            .await
            .expect("create a stream");
    }
    eprintln!(
        "{jobs} streams ready in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let end = Instant::now() + Duration::from_secs(seconds);
    // Publishing nodes: jobs spread over them.
    for p in 0..publishers {
        let streams: Vec<String> = (p..jobs)
            .step_by(publishers)
            .map(|i| format!("live/s{i}"))
            .collect();
        let b = beat(&format!("pub-{p:04}"), NodeRole::Publish, streams);
        let cp = cp.clone();
        let offset = Duration::from_secs(2).mul_f64(p as f64 / publishers as f64);
        tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            while Instant::now() < end {
                tick.tick().await;
                if cp.node_beat(&b).await.is_err() {
                    break; // the run is over
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let started = Instant::now();
    let holdings: Holdings = Arc::default();
    let rounds: Arc<Mutex<Vec<(Duration, u32)>>> = Arc::default();
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let interval = ttl / 3;
    let killed_at = started + Duration::from_secs(seconds / 2);
    let mut stops = Vec::new();
    for t in 0..transcoders {
        let stop = Arc::new(AtomicBool::new(false));
        stops.push(stop.clone());
        let (cp, holdings, rounds, errors) =
            (cp.clone(), holdings.clone(), rounds.clone(), errors.clone());
        let b = beat(&format!("tc-{t:04}"), NodeRole::Transcode, Vec::new());
        let offset = interval.mul_f64(t as f64 / transcoders as f64);
        tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(interval);
            while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let r0 = Instant::now();
                let res = async {
                    cp.node_beat(&b).await?;
                    cp.transcode_leases(&b).await
                }
                .await;
                let took = u32::try_from(r0.elapsed().as_micros()).unwrap_or(u32::MAX);
                match res {
                    Ok(leases) => {
                        rounds
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((started.elapsed(), took));
                        let mut h = holdings.lock().unwrap_or_else(|e| e.into_inner());
                        h.retain(|_, holder| *holder != t);
                        for l in leases {
                            h.insert(l.stream, t);
                        }
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("lease round failed: {e}");
                        }
                    }
                }
            }
        });
    }

    // Every 100 ms: how many jobs are held (as their holders were told).
    let mut all_held: Option<f64> = None;
    let mut retaken: Option<f64> = None;
    let mut killed = false;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let held = holdings.lock().unwrap_or_else(|e| e.into_inner()).len();
        if all_held.is_none() && held == jobs {
            all_held = Some(started.elapsed().as_secs_f64());
        }
        if !killed && Instant::now() >= killed_at {
            killed = true;
            let mut h = holdings.lock().unwrap_or_else(|e| e.into_inner());
            for (t, stop) in stops.iter().enumerate() {
                if t % 3 == 0 {
                    stop.store(true, Ordering::Relaxed);
                    h.retain(|_, holder| *holder != t);
                }
            }
        }
        let held = holdings.lock().unwrap_or_else(|e| e.into_inner()).len();
        if killed && retaken.is_none() && held == jobs {
            retaken = Some((Instant::now() - killed_at).as_secs_f64());
        }
    }
    let rounds = rounds.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let kill_s = (killed_at - started).as_secs_f64();
    let (mut steady, mut takeover): (Vec<u32>, Vec<u32>) = (Vec::new(), Vec::new());
    for (at, us) in &rounds {
        let at = at.as_secs_f64();
        if at > kill_s && at < kill_s + 2.0 * ttl.as_secs_f64() {
            takeover.push(*us);
        } else if all_held.is_some_and(|a| at > a + 1.0) && at < kill_s {
            steady.push(*us);
        }
    }
    let per_t: Vec<usize> = {
        let h = holdings.lock().unwrap_or_else(|e| e.into_inner());
        (0..transcoders)
            .filter(|t| t % 3 != 0)
            .map(|t| h.values().filter(|x| **x == t).count())
            .collect()
    };
    println!(
        "transcoders={transcoders} jobs={jobs} publishers={publishers} rounds={} errors={} \
         round_ms_p50={:.2} round_ms_p99={:.2} round_ms_max={:.2} \
         takeover_round_ms_p50={:.2} takeover_round_ms_p99={:.2} \
         all_held_s={:.1} retaken_s={:.1} max_held={} min_held={}",
        rounds.len(),
        errors.load(Ordering::Relaxed),
        pct(&mut steady.clone(), 0.5),
        pct(&mut steady.clone(), 0.99),
        pct(&mut steady, 1.0),
        pct(&mut takeover.clone(), 0.5),
        pct(&mut takeover, 0.99),
        all_held.unwrap_or(-1.0),
        retaken.unwrap_or(-1.0),
        per_t.iter().max().unwrap_or(&0),
        per_t.iter().min().unwrap_or(&0),
    );
    cp.store().close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
