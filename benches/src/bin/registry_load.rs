//! Load on the node registry's database: `NODES` simulated media nodes
//! each upserting a heartbeat every 2 s (the row a real node writes:
//! public URLs, load and a list of streams) through `ugc_auth::Store`, as
//! the control plane does for `POST /api/v1/node/heartbeat`, while one
//! reader lists every node once a second (what `GET /api/v1/nodes` and
//! every placement do). Prints beats per second and latency percentiles;
//! `benches/registry-load.sh` runs it against a private PostgreSQL and
//! adds the database's CPU.
//!
//! Usage: `registry_load DATABASE_URL NODES SECONDS [STREAMS_PER_NODE]`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ugc_auth::Store;

#[path = "../percentile.rs"]
mod percentile;
use percentile::pct;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: registry_load DATABASE_URL NODES SECONDS [STREAMS_PER_NODE]");
        std::process::exit(2);
    }
    let url = args[1].clone();
    let nodes: usize = args[2].parse().expect("NODES");
    let seconds: u64 = args[3].parse().expect("SECONDS");
    let per_node: usize = args
        .get(4)
        .map_or(10, |s| s.parse().expect("STREAMS_PER_NODE"));
    let store = Store::open(&url).await.expect("open the database");
    let interval = Duration::from_secs(2);
    let end = Instant::now() + Duration::from_secs(seconds);
    let beats: Arc<Mutex<Vec<u32>>> = Arc::default();
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for n in 0..nodes {
        let (store, beats, errors) = (store.clone(), beats.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("node-{n:05}");
            let streams: Vec<String> = (0..per_node).map(|s| format!("live/s{n}-{s}")).collect();
            let info = format!(
                r#"{{"id":"{id}","role":"origin","url":"http://10.0.{}.{}:8080","public":{{"host":"10.0.{}.{}","rtmp_port":1935,"srt_port":9000,"http_port":8080,"http_base":null}},"capacity":100,"load":{{"streams":{per_node},"cpu":0.42,"egress_bps":123456789}},"streams":{},"draining":false}}"#,
                n / 250,
                n % 250,
                n / 250,
                n % 250,
                serde_json::to_string(&streams).unwrap_or_default()
            );
            // Spread the first beats over one interval, as real nodes are.
            let offset = interval.mul_f64(n as f64 / nodes as f64);
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(interval);
            let mut mine = Vec::new();
            while Instant::now() < end {
                tick.tick().await;
                let t0 = Instant::now();
                match store
                    .node_beat(&id, "origin", "http://10.0.0.1:8080", &info, 1_700_000_000)
                    .await
                {
                    Ok(()) => mine.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX)),
                    Err(_) => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            beats.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
        }));
    }
    let mut lists = Vec::new();
    let started = Instant::now();
    while Instant::now() < end {
        let t0 = Instant::now();
        let (_, rows) = store.nodes().await.expect("list nodes");
        lists.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
        std::hint::black_box(rows.len());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut b = beats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!(
        "nodes={nodes} streams_per_node={per_node} beats={} beats_per_s={:.0} errors={} \
         beat_ms_p50={:.2} beat_ms_p99={:.2} beat_ms_max={:.2} list_ms_p50={:.2} list_ms_p99={:.2}",
        b.len(),
        b.len() as f64 / elapsed,
        errors.load(std::sync::atomic::Ordering::Relaxed),
        pct(&mut b, 0.5),
        pct(&mut b, 0.99),
        pct(&mut b, 1.0),
        pct(&mut lists, 0.5),
        pct(&mut lists, 0.99),
    );
    store.close().await;
}
