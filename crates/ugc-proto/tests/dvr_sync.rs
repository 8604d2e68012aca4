//! DVR replication between two archives in one process over real loopback
//! HTTP: an origin whose archive lacks a stretch copies it from its peer,
//! byte for byte under the peer's names; files damaged on the way
//! (truncated, a flipped byte) are refused and fetched again next round;
//! a wrong node token gets nothing; fetches keep to the pace.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use ugc_core::StreamPath;
use ugc_dvr::archive::names::SegmentName;
use ugc_dvr::archive::{Archive, ArchiveConfig, TrackKey, now_unix_ms};
use ugc_dvr::replica::Pacer;
use ugc_proto::dvr_sync::{DvrSync, SyncConfig, router};

const TOKEN: &str = "dvr-sync-test-token-0123456789";

struct Dir(std::path::PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "ugc-dvr-sync-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn key() -> TrackKey {
    TrackKey::source(&StreamPath::new("live", "twin").unwrap())
}

/// Deterministic bytes of file `i`.
fn bytes(i: u64, len: usize) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `count` 2 s segments of one session from `start`, `len` bytes each.
fn record(a: &Archive, session: i64, start: i64, count: u64, len: usize) -> Vec<SegmentName> {
    a.import_init(&key(), session, 0, &bytes(session as u64, 600))
        .unwrap();
    (0..count)
        .map(|i| {
            let name = SegmentName {
                pdt_ms: start + i as i64 * 2000,
                duration_ms: 2000,
                dts_ms: i as i64 * 2000,
                session,
                msn: i,
                init: 0,
                discontinuity: i == 0,
                provisional: None,
            };
            a.import_segment(&key(), &name, &bytes(name.pdt_ms as u64, len))
                .unwrap();
            name
        })
        .collect()
}

/// Serves `archive`'s replication routes; every `damage_every`-th file
/// answer is truncated (odd) or has a byte flipped (even).
async fn serve(archive: Archive, damage_every: usize) -> SocketAddr {
    let count = Arc::new(AtomicUsize::new(0));
    let damage = move |req: Request, next: Next| {
        let count = count.clone();
        async move {
            let is_file = req.uri().path().starts_with("/dvr/v1/file/");
            let res: Response = next.run(req).await;
            if !is_file || damage_every == 0 {
                return res;
            }
            let n = count.fetch_add(1, Ordering::Relaxed);
            if !n.is_multiple_of(damage_every) {
                return res;
            }
            let (parts, body) = res.into_parts();
            let mut b = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap()
                .to_vec();
            if n % 2 == 1 {
                b.truncate(b.len() / 2);
            } else if let Some(x) = b.get_mut(7) {
                *x ^= 0x40;
            }
            let mut parts = parts;
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(b))
        }
    };
    let app = router(archive, TOKEN).layer(middleware::from_fn(damage));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn open(dir: &Dir) -> Archive {
    Archive::open(ArchiveConfig::new(&dir.0, 1)).unwrap()
}

fn config(token: &str, bytes_per_s: u64) -> SyncConfig {
    SyncConfig {
        settle: Duration::from_secs(5),
        bytes_per_s,
        ..SyncConfig::new(token)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hole_is_copied_byte_for_byte_and_damaged_files_are_asked_again() {
    let (da, db) = (Dir::new("a"), Dir::new("b"));
    let (a, b) = (open(&da), open(&db));
    let t0 = now_unix_ms() - 600_000;
    // B recorded 0..120 s; A recorded 0..40 s and 80..120 s in sessions
    // of its own (cut a few ms apart from B's).
    let theirs = record(&b, t0, t0, 60, 20_000);
    record(&a, t0 + 1, t0 + 3, 20, 20_000);
    record(&a, t0 + 80_000, t0 + 80_003, 20, 20_000);
    // Every third file answer is damaged on the way.
    let peer = format!("http://{}", serve(b.clone(), 3).await);
    let sync = DvrSync::new(a.clone(), config(TOKEN, 0));
    let mut pacer = Pacer::new(0);
    for _ in 0..10 {
        sync.round(&peer, &mut pacer).await.unwrap();
    }
    // The init's first copy was damaged (its segments waited a round), and
    // one in three of the segments' first copies.
    let rejected = sync.stats().rejected.load(Ordering::Relaxed);
    assert!(rejected >= 6, "{rejected}");
    assert_eq!(sync.stats().errors.load(Ordering::Relaxed), 0);
    // The hole (40..80 s) is B's 20 segments, identical, plus B's init.
    let hole: Vec<&SegmentName> = theirs
        .iter()
        .filter(|n| n.pdt_ms >= t0 + 40_000 && n.pdt_ms < t0 + 80_000)
        .collect();
    assert_eq!(hole.len(), 20);
    for n in &hole {
        let mine = std::fs::read(a.segment_path(&key(), n)).unwrap();
        let peer = std::fs::read(b.segment_path(&key(), n)).unwrap();
        assert!(mine == peer, "{} differs", n.file_name());
    }
    assert_eq!(
        std::fs::read(a.init_path(&key(), t0, 0)).unwrap(),
        std::fs::read(b.init_path(&key(), t0, 0)).unwrap()
    );
    assert_eq!(sync.stats().files.load(Ordering::Relaxed), 21);
    assert!(
        ugc_dvr::replica::holes(
            a.with_index(&key(), |i| i.cloned()).as_ref(),
            t0 + 3,
            t0 + 120_000,
            1000
        )
        .is_empty()
    );
    // Nothing more to copy: B's segments A covers stay B's alone.
    let before = sync.stats().files.load(Ordering::Relaxed);
    sync.round(&peer, &mut pacer).await.unwrap();
    assert_eq!(sync.stats().files.load(Ordering::Relaxed), before);
    assert_eq!(a.range(&key(), 0, i64::MAX).len(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_gets_nothing_and_the_pace_holds() {
    let (da, db) = (Dir::new("a"), Dir::new("b"));
    let (a, b) = (open(&da), open(&db));
    let t0 = now_unix_ms() - 600_000;
    record(&b, t0, t0, 10, 50_000);
    let peer = format!("http://{}", serve(b.clone(), 0).await);
    let wrong = DvrSync::new(a.clone(), config("not-the-token-0123456789", 0));
    assert!(wrong.round(&peer, &mut Pacer::new(0)).await.is_err());
    assert!(a.keys().is_empty());
    // 10 x 50 kB + the init at 1 MB/s: half a second at least.
    let paced = DvrSync::new(a.clone(), config(TOKEN, 1_000_000));
    let started = Instant::now();
    let mut pacer = Pacer::new(1_000_000);
    paced.round(&peer, &mut pacer).await.unwrap();
    let took = started.elapsed();
    assert_eq!(paced.stats().files.load(Ordering::Relaxed), 11);
    assert!(took >= Duration::from_millis(450), "{took:?}");
    eprintln!("500 kB at 1 MB/s in {took:?}");
}

/// `count` 2 s segments of session `session` from `start`, by the clock of
/// origin `salt` (cut `salt` ms later than the others), each after its
/// init.
fn record_at(a: &Archive, session: i64, start: i64, count: u64, salt: i64) {
    record(a, session, start + salt, count, 5_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_down_at_different_times_fill_from_each_other() {
    let (da, db) = (Dir::new("a"), Dir::new("b"));
    let (a, b) = (open(&da), open(&db));
    let t0 = now_unix_ms() - 600_000;
    // A was down 40..60 s, B 50..56 s and 80..100 s: both were down
    // 50..56 s.
    record_at(&a, t0, t0, 20, 0);
    record_at(&a, t0 + 60_000, t0 + 60_000, 30, 0);
    record_at(&b, t0 + 1, t0, 25, 3);
    record_at(&b, t0 + 56_000, t0 + 56_000, 12, 3);
    record_at(&b, t0 + 100_000, t0 + 100_000, 10, 3);
    let (pa, pb) = (
        format!("http://{}", serve(a.clone(), 0).await),
        format!("http://{}", serve(b.clone(), 0).await),
    );
    let (sa, sb) = (
        DvrSync::new(a.clone(), config(TOKEN, 0)),
        DvrSync::new(b.clone(), config(TOKEN, 0)),
    );
    for _ in 0..2 {
        sa.round(&pb, &mut Pacer::new(0)).await.unwrap();
        sb.round(&pa, &mut Pacer::new(0)).await.unwrap();
    }
    let holes = |x: &Archive| {
        ugc_dvr::replica::holes(
            x.with_index(&key(), |i| i.cloned()).as_ref(),
            t0,
            t0 + 120_000,
            1000,
        )
    };
    // Each holds the union; the stretch both missed is reported by both.
    let (ha, hb) = (holes(&a), holes(&b));
    assert_eq!(ha.len(), 1, "{ha:?}");
    assert_eq!(hb.len(), 1, "{hb:?}");
    for (from, to) in [ha[0], hb[0]] {
        assert!((t0 + 49_000..=t0 + 50_003).contains(&from), "{}", from - t0);
        assert!((t0 + 56_000..=t0 + 56_003).contains(&to), "{}", to - t0);
    }
    // A copied B's 40..50 s (5 segments) and 56..60 s (2), each run with
    // its init; B copied A's 80..100 s (10) and its init. The second round
    // copied nothing.
    assert_eq!(sa.stats().files.load(Ordering::Relaxed), 1 + 5 + 1 + 2);
    assert_eq!(sb.stats().files.load(Ordering::Relaxed), 1 + 10);
}
