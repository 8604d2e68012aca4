//! The S3 tier against a real S3 server: `s3s-fs` 0.14.1 (SigV4, files on
//! disk) started on loopback (install: `scripts/install-deps.sh s3`).
//! Upload with the server gone for 60 s in the middle, integrity, no
//! orphaned multipart uploads, read back through the cache (single fetch,
//! LRU by size, TTL); the same over HTTPS (nginx terminating TLS with a
//! private CA's certificate in front of s3s-fs); two nodes sharing one
//! bucket, on s3s-fs and on garage (a distributed S3 store).
#![cfg(feature = "s3")]
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use sha2::Digest as _;
use ugc_core::{Frame, MediaEvent, TrackId};
use ugc_dvr::archive::{Archive, ArchiveConfig, Location, TrackKey, now_unix_ms};
use ugc_dvr::s3::{CacheConfig, S3Cache, S3Settings, Store, UploadConfig, Uploader, s3_store};
use ugc_dvr::{SegmentObserver, Segmenter};

const ACCESS: &str = "ugctestaccess";
const SECRET: &str = "ugctestsecret0123456789";
const BUCKET: &str = "dvr";

struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("ugc-s3-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn s3s_fs_bin() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    for p in [
        home.join(".cargo/bin/s3s-fs"),
        PathBuf::from("/usr/local/bin/s3s-fs"),
    ] {
        if p.exists() {
            return p;
        }
    }
    panic!(
        "s3s-fs not found: run scripts/install-deps.sh s3 (cargo install s3s-fs@0.14.1 --locked --features binary)"
    );
}

struct S3Server {
    child: Child,
    root: PathBuf,
}

impl S3Server {
    fn start(root: &Path, port: u16) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let child = Command::new(s3s_fs_bin())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS, "--secret-key", SECRET])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server {
            child,
            root: root.to_owned(),
        }
    }
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    /// Multipart uploads s3s-fs still holds (its files for them).
    fn pending_uploads(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(".upload"))
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[path = "../../../tests/support/garage.rs"]
mod garage;
use garage::{GARAGE_KEY, GARAGE_SECRET, Garage};

/// A client of a [`Garage`]'s bucket.
fn garage_store(g: &Garage) -> Arc<dyn Store> {
    Arc::new(
        s3_store(&S3Settings {
            endpoint: Some(format!("http://127.0.0.1:{}", g.port)),
            bucket: BUCKET.into(),
            region: "garage".into(),
            access_key_id: GARAGE_KEY.into(),
            secret_access_key: GARAGE_SECRET.into(),
            ca_file: None,
        })
        .unwrap(),
    )
}

/// A free port for the S3 server, below the kernel's ephemeral range
/// (from 32768): one picked by binding port 0 and released can be taken by
/// any outgoing connection before the server binds it. Spread by the process
/// id and a counter, and checked free; under cargo-nextest (one process per
/// test, two at a time in `make unit`) started in the eighth of the range
/// of the test's slot, as the e2e tests' ports are.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let band = std::env::var("NEXTEST_TEST_GLOBAL_SLOT")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .map_or(0, |slot| (slot % 8) * 2_500);
    let spread = std::process::id().wrapping_mul(7919) % 1_250;
    (0..20_000)
        .map(|_| {
            let n = N.fetch_add(1, Ordering::Relaxed);
            10_000 + ((band + spread + n) % 20_000) as u16
        })
        .find(|&p| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok())
        .expect("a free port")
}

fn store(port: u16) -> Arc<dyn Store> {
    Arc::new(
        s3_store(&S3Settings {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            bucket: BUCKET.into(),
            region: "us-east-1".into(),
            access_key_id: ACCESS.into(),
            secret_access_key: SECRET.into(),
            ca_file: None,
        })
        .unwrap(),
    )
}

/// Records `seconds` of 25 fps video with `frame_kb` KiB frames into the
/// archive as one session that then ends.
fn record_session(archive: &Archive, hub: &str, seconds: i64, frame_kb: usize) {
    let mut seg = Segmenter::new(config(2000));
    let mut rec = archive.recorder(&path(hub)).unwrap();
    let t0 = now_unix_ms() - seconds * 1000 - 5000;
    let mut events = vec![MediaEvent::Tracks(av())];
    for i in 0..seconds * 25 {
        let mut data = vec![(i % 251) as u8; frame_kb * 1024];
        data[..8].copy_from_slice(&i.to_be_bytes());
        events.push(MediaEvent::Frame(Frame {
            track: TrackId(1),
            dts: i * 40,
            pts: i * 40,
            keyframe: i % 50 == 0,
            data: Bytes::from(data),
        }));
        events.push(a(i * 40));
    }
    events.push(MediaEvent::End);
    for (i, e) in events.into_iter().enumerate() {
        seg.push(e, t0 + i as i64 * 20).unwrap();
        while let Some(o) = seg.poll() {
            rec.on_output(&o, true);
        }
    }
}

/// The session's files concatenated as the uploader lays them out.
fn local_object(archive: &Archive, key: &TrackKey, session: i64) -> Vec<u8> {
    let files = archive.session_files(key, session);
    let mut out = Vec::new();
    for (n, _) in files.inits {
        out.extend(std::fs::read(archive.init_path(key, session, n)).unwrap());
    }
    for (n, _) in files.segments {
        out.extend(std::fs::read(archive.segment_path(key, &n)).unwrap());
    }
    out
}

fn job_parts(queue: &Path) -> Option<usize> {
    let e = std::fs::read_dir(queue).ok()?.flatten().next()?;
    let text = std::fs::read_to_string(e.path()).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("parts")?.as_array().map(Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_survives_a_60s_outage_then_reads_come_back_through_the_cache() {
    let dir = Dir::new("outage");
    let s3root = dir.0.join("s3");
    let port = free_port();
    let mut server = S3Server::start(&s3root, port);
    let archive_root = dir.0.join("dvr");
    let archive = Archive::open(ArchiveConfig::new(&archive_root, 1)).unwrap();
    let cache = Arc::new(S3Cache::new(store(port), CacheConfig::new(dir.0.join("cache"))).unwrap());
    archive.set_remote(cache.clone());
    let up = Uploader::new(
        archive.clone(),
        store(port),
        UploadConfig {
            part_size: 5 << 20,
            backoff_max: Duration::from_secs(4),
            ..UploadConfig::default()
        },
    )
    .unwrap();
    let key = TrackKey::source(&path("live/event"));

    // ~45 MB, 9 parts of 5 MiB. Hold the uploader until the files are
    // checked, so the whole object is known.
    let rec_session = {
        let a = archive.clone();
        tokio::task::spawn_blocking(move || {
            record_session(&a, "live/event", 28, 64);
            a.flush_blocking(Duration::from_secs(30))
        })
        .await
        .unwrap()
    };
    assert!(rec_session);
    let segs = archive.range(&key, 0, i64::MAX);
    assert!(segs.len() >= 13, "{} segments", segs.len());
    let session = segs[0].name.session;
    let expected = local_object(&archive, &key, session);
    let expected_sha = sha2::Sha256::digest(&expected);
    let first_seg_bytes = std::fs::read(archive.segment_path(&key, &segs[0].name)).unwrap();
    let queue = archive_root.join(".s3/queue");
    assert!(job_parts(&queue).is_some() || queue.read_dir().unwrap().count() == 1);
    // Queued: the recording says so, with the size of its files.
    let upload = |a: &Archive| {
        let recs = a.recordings(&path("live/event"));
        assert_eq!(recs.len(), 1);
        recs[0].upload()
    };
    let queued = upload(&archive).expect("queued upload");
    assert!(!queued.uploading && queued.bytes_done == 0);
    assert_eq!(queued.bytes_total, expected.len() as u64);

    // Start uploading; stop the S3 server once two parts are in.
    let task = tokio::spawn(up.clone().run());
    let started = Instant::now();
    loop {
        if job_parts(&queue).unwrap_or(0) >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "upload did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.stop();
    let parts_at_stop = job_parts(&queue).unwrap_or(0);
    assert!(
        parts_at_stop < 9,
        "the upload finished before the server stopped ({parts_at_stop} parts)"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(up.stats().uploaded.load(Ordering::Relaxed), 0);
    // Stalled mid-way: visible as an upload in progress.
    let stalled = upload(&archive).expect("running upload");
    assert!(stalled.uploading, "{stalled:?}");
    assert_eq!(stalled.bytes_total, expected.len() as u64);
    assert!(
        stalled.bytes_done >= 2 * (5 << 20) && stalled.bytes_done < stalled.bytes_total,
        "{stalled:?}"
    );
    let _server = S3Server::start(&s3root, port);
    let deadline = Instant::now() + Duration::from_secs(120);
    while up.stats().uploaded.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "upload did not complete after the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(up.stats().retries.load(Ordering::Relaxed) > 0);

    // The object equals the local files; no multipart upload is left.
    let object = s3root
        .join(BUCKET)
        .join(format!("ugc/live/event/src/{session}.mp4"));
    let stored = std::fs::read(&object).unwrap();
    assert_eq!(stored.len(), expected.len());
    assert_eq!(sha2::Sha256::digest(&stored), expected_sha);
    assert!(
        _server.pending_uploads().is_empty(),
        "{:?}",
        _server.pending_uploads()
    );
    assert!(
        queue.read_dir().unwrap().next().is_none(),
        "job left in the queue"
    );
    assert_eq!(upload(&archive), None, "uploaded: no progress left");

    // Local files are gone; the index points into the object.
    let segs_after = archive.range(&key, 0, i64::MAX);
    assert_eq!(segs_after.len(), segs.len());
    assert!(
        segs_after
            .iter()
            .all(|s| matches!(s.location, Location::Remote { .. }))
    );
    assert!(!archive.segment_path(&key, &segs[0].name).exists());

    // Eight concurrent reads of one segment: one S3 fetch.
    let mut reads = Vec::new();
    for _ in 0..8 {
        let a = archive.clone();
        let k = key.clone();
        let n = segs[0].name;
        reads.push(tokio::spawn(async move {
            a.segment_file(&k, &n).await.unwrap()
        }));
    }
    for r in reads {
        let p = r.await.unwrap();
        assert!(std::fs::read(p).unwrap() == first_seg_bytes);
    }
    assert_eq!(cache.stats().fetches.load(Ordering::Relaxed), 1);
    archive.segment_file(&key, &segs[0].name).await.unwrap();
    assert_eq!(cache.stats().fetches.load(Ordering::Relaxed), 1);
    assert!(cache.stats().hits.load(Ordering::Relaxed) >= 1);
    // An MP4 export of a range that lives only in S3 works through the cache.
    let plan = archive.plan_export(&key, 0, i64::MAX).await.unwrap();
    assert!(plan.moov_offset < plan.mdat_offset);

    // After a restart the index is rebuilt from the remote index files.
    drop(task);
    let archive2 = Archive::open(ArchiveConfig::new(&archive_root, 1)).unwrap();
    let _up2 = Uploader::new(archive2.clone(), store(port), UploadConfig::default()).unwrap();
    let segs2 = archive2.range(&key, 0, i64::MAX);
    assert_eq!(segs2.len(), segs.len());
    assert!(
        segs2
            .iter()
            .all(|s| matches!(s.location, Location::Remote { .. }))
    );

    // LRU by size: room for two segments.
    let seg_len = segs[0].size;
    let mut cfg = CacheConfig::new(dir.0.join("lru"));
    cfg.max_bytes = seg_len * 5 / 2;
    let lru = S3Cache::new(store(port), cfg).unwrap();
    let obj = format!("ugc/live/event/src/{session}.mp4");
    let at = |i: usize| match &segs_after[i].location {
        Location::Remote { offset, .. } => *offset,
        Location::Local => unreachable!(),
    };
    let pa = lru.get(&obj, at(0), seg_len).await.unwrap();
    let pb = lru.get(&obj, at(1), segs_after[1].size).await.unwrap();
    lru.get(&obj, at(0), seg_len).await.unwrap(); // a is now the most recent
    let pc = lru.get(&obj, at(2), segs_after[2].size).await.unwrap();
    assert!(pa.exists() && pc.exists());
    assert!(!pb.exists(), "the least recently used file is evicted");
    assert_eq!(lru.stats().evictions.load(Ordering::Relaxed), 1);
    assert!(lru.bytes() <= seg_len * 5 / 2);
    assert_eq!(lru.stats().fetches.load(Ordering::Relaxed), 3);
    lru.get(&obj, at(1), segs_after[1].size).await.unwrap();
    assert_eq!(lru.stats().fetches.load(Ordering::Relaxed), 4);

    // TTL: an old file is fetched again.
    let mut cfg = CacheConfig::new(dir.0.join("ttl"));
    cfg.ttl = Duration::from_millis(300);
    let ttl = S3Cache::new(store(port), cfg).unwrap();
    ttl.get(&obj, at(0), seg_len).await.unwrap();
    ttl.get(&obj, at(0), seg_len).await.unwrap();
    assert_eq!(ttl.stats().fetches.load(Ordering::Relaxed), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let p = ttl.get(&obj, at(0), seg_len).await.unwrap();
    assert_eq!(ttl.stats().fetches.load(Ordering::Relaxed), 2);
    assert_eq!(ttl.stats().expired.load(Ordering::Relaxed), 1);
    assert!(std::fs::read(p).unwrap() == first_seg_bytes);
}

/// Retention past the depth deletes the recording from S3 too (object,
/// its `.idx`, the local copy of the index), never a younger one, and
/// nothing comes back after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_past_their_depth_or_deleted_leave_the_object_store() {
    use std::sync::atomic::AtomicU32;
    use ugc_dvr::archive::SegmentName;
    let dir = Dir::new("expiry");
    let s3root = dir.0.join("s3");
    let port = free_port();
    let _server = S3Server::start(&s3root, port);
    let depth = Arc::new(AtomicU32::new(4));
    let config = || {
        let d = depth.clone();
        let mut c = ArchiveConfig::new(dir.0.join("dvr"), 0);
        c.depth = Arc::new(move |_| d.load(Ordering::Relaxed));
        c
    };
    let archive = Archive::open(config()).unwrap();
    let upload = UploadConfig {
        backoff_max: Duration::from_secs(1),
        ..UploadConfig::default()
    };
    let up = Uploader::new(archive.clone(), store(port), upload.clone()).unwrap();
    let key = TrackKey::source(&path("live/old"));
    // Two recordings: 3 h ago and 30 min ago, five 2 s segments each.
    let now = now_unix_ms();
    let sessions = [now - 3 * 3_600_000, now - 30 * 60_000];
    for session in sessions {
        archive
            .import_init(&key, session, 0, b"init segment bytes")
            .unwrap();
        for i in 0..5u8 {
            let name = SegmentName {
                pdt_ms: session + i64::from(i) * 2000,
                duration_ms: 2000,
                dts_ms: i64::from(i) * 2000,
                session,
                msn: u64::from(i),
                init: 0,
                discontinuity: i == 0,
                provisional: None,
            };
            archive.import_segment(&key, &name, &vec![i; 1000]).unwrap();
        }
        up.enqueue(&archive, &key, session).unwrap();
    }
    let task = tokio::spawn(up.clone().run());
    let deadline = Instant::now() + Duration::from_secs(60);
    while up.stats().uploaded.load(Ordering::Relaxed) < 2 {
        assert!(Instant::now() < deadline, "uploads did not complete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let object = |s: i64| {
        s3root
            .join(BUCKET)
            .join(format!("ugc/live/old/src/{s}.mp4"))
    };
    let idx = |s: i64| {
        s3root
            .join(BUCKET)
            .join(format!("ugc/live/old/src/{s}.mp4.idx"))
    };
    let local_idx = |s: i64| dir.0.join(format!("dvr/.s3/remote/live/old/src/{s}.idx"));
    for s in sessions {
        assert!(object(s).exists() && idx(s).exists() && local_idx(s).exists());
    }
    // Depth 4 h -> 2 h: the recording of 3 h ago expires, from S3 too.
    depth.store(2, Ordering::Relaxed);
    archive.sweep();
    let deadline = Instant::now() + Duration::from_secs(30);
    while up.stats().deleted.load(Ordering::Relaxed) < 1 {
        assert!(
            Instant::now() < deadline,
            "the expired object was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!object(sessions[0]).exists());
    assert!(!idx(sessions[0]).exists());
    assert!(!local_idx(sessions[0]).exists());
    assert!(object(sessions[1]).exists() && idx(sessions[1]).exists());
    let left = archive.range(&key, 0, i64::MAX);
    assert_eq!(left.len(), 5);
    assert!(left.iter().all(|s| s.name.session == sessions[1]));
    assert!(
        dir.0
            .join("dvr/.s3/delete")
            .read_dir()
            .unwrap()
            .next()
            .is_none()
    );
    // After a restart nothing of it comes back.
    task.abort();
    drop(up);
    let archive = Archive::open(config()).unwrap();
    let up = Uploader::new(archive.clone(), store(port), upload).unwrap();
    assert_eq!(archive.range(&key, 0, i64::MAX).len(), 5);
    // Deleting the recording left (an API call) deletes its object too.
    let recs = archive.recordings(&path("live/old"));
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].id, sessions[1]);
    assert_eq!(recs[0].stored(), ugc_dvr::archive::Stored::Remote);
    assert_eq!(recs[0].bytes(), 5 * 1000 + 18);
    archive
        .delete_recording(&path("live/old"), sessions[1])
        .unwrap();
    let _task = AbortOnDrop(tokio::spawn(up.clone().run()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while up.stats().deleted.load(Ordering::Relaxed) < 1 {
        assert!(
            Instant::now() < deadline,
            "the deleted recording's object is still there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!object(sessions[1]).exists() && !idx(sessions[1]).exists());
    assert!(!local_idx(sessions[1]).exists());
    assert!(archive.range(&key, 0, i64::MAX).is_empty());
    assert!(archive.recordings(&path("live/old")).is_empty());
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// nginx terminating TLS on `port` in front of `upstream` (its `stream`
/// module), killed on drop.
struct TlsProxy(Child);

impl TlsProxy {
    fn start(dir: &Path, port: u16, upstream: u16, cert: &Path, key: &Path) -> TlsProxy {
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
                 daemon off;\nmaster_process off;\npid {0}/nginx.pid;\n\
                 error_log {0}/nginx-error.log info;\nevents {{ worker_connections 64; }}\n\
                 stream {{ server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {1}; \
                 ssl_certificate_key {2}; proxy_pass 127.0.0.1:{upstream}; }} }}\n",
                dir.display(),
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (scripts/install-deps.sh: nginx, libnginx-mod-stream)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen: {}",
                std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsProxy(child)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private CA and a certificate it signed for 127.0.0.1 (openssl):
/// (CA certificate, server certificate, server key).
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-days", "1", "-subj", "/CN=ugc test CA"],
        &["-keyout", "ca.key", "-out", "ca.pem"],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "s3.key",
            "-out",
            "s3.csr",
        ],
    ]
    .concat());
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "s3.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "s3.pem",
    ]);
    (dir.join("ca.pem"), dir.join("s3.pem"), dir.join("s3.key"))
}

/// The S3 tier over HTTPS: a client that does not trust the server's CA
/// sends nothing; one given the CA file uploads an event (verified, equal
/// to the local files) and reads a segment back through the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_reads_back_over_https_with_a_private_ca() {
    use object_store::ObjectStoreExt as _;
    let dir = Dir::new("https");
    let s3root = dir.0.join("s3");
    let port = free_port();
    let _server = S3Server::start(&s3root, port);
    let tls_port = free_port();
    let (ca, cert, key) = private_ca(&dir.0);
    let _proxy = TlsProxy::start(&dir.0, tls_port, port, &cert, &key);
    let https = |ca_file: Option<PathBuf>| -> Arc<dyn Store> {
        Arc::new(
            s3_store(&S3Settings {
                endpoint: Some(format!("https://127.0.0.1:{tls_port}")),
                bucket: BUCKET.into(),
                region: "us-east-1".into(),
                access_key_id: ACCESS.into(),
                secret_access_key: SECRET.into(),
                ca_file,
            })
            .unwrap(),
        )
    };
    // Not trusted: refused at the handshake.
    let err = https(None)
        .head(&object_store::path::Path::from("ugc/none"))
        .await
        .unwrap_err();
    let text = format!("{err:?}").to_lowercase();
    assert!(
        text.contains("certificate") || text.contains("unknownissuer"),
        "{err:?}"
    );

    let archive = Archive::open(ArchiveConfig::new(dir.0.join("dvr"), 1)).unwrap();
    let cache = Arc::new(
        S3Cache::new(
            https(Some(ca.clone())),
            CacheConfig::new(dir.0.join("cache")),
        )
        .unwrap(),
    );
    archive.set_remote(cache.clone());
    let up = Uploader::new(
        archive.clone(),
        https(Some(ca)),
        UploadConfig {
            backoff_max: Duration::from_secs(1),
            ..UploadConfig::default()
        },
    )
    .unwrap();
    let recorded = {
        let a = archive.clone();
        tokio::task::spawn_blocking(move || {
            record_session(&a, "live/tls", 10, 16);
            a.flush_blocking(Duration::from_secs(30))
        })
        .await
        .unwrap()
    };
    assert!(recorded);
    let key = TrackKey::source(&path("live/tls"));
    let segs = archive.range(&key, 0, i64::MAX);
    assert!(segs.len() >= 4, "{} segments", segs.len());
    let session = segs[0].name.session;
    let expected = local_object(&archive, &key, session);
    let second = std::fs::read(archive.segment_path(&key, &segs[1].name)).unwrap();
    let _task = AbortOnDrop(tokio::spawn(up.clone().run()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while up.stats().uploaded.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no upload over HTTPS");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = std::fs::read(
        s3root
            .join(BUCKET)
            .join(format!("ugc/live/tls/src/{session}.mp4")),
    )
    .unwrap();
    assert!(
        stored == expected,
        "the object differs from the local files"
    );
    assert!(!archive.segment_path(&key, &segs[1].name).exists());
    let back = archive.segment_file(&key, &segs[1].name).await.unwrap();
    assert!(std::fs::read(back).unwrap() == second);
    assert_eq!(cache.stats().fetches.load(Ordering::Relaxed), 1);
}

/// Two nodes writing below their own prefixes of one bucket (`ugc/a/`,
/// `ugc/b/`) with `peers = "ugc/"`: each reads in what the other uploaded
/// and it lacks (a hole in the same event, an event it never saw), plays
/// it from the other's object through its own cache, byte for byte; a
/// second listing adds nothing; retention never deletes the other's
/// object, a recording deleted on request does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_a_bucket_read_each_others_recordings() {
    let dir = Dir::new("peers");
    let port = free_port();
    let _server = S3Server::start(&dir.0.join("s3"), port);
    two_nodes_share_a_bucket(&dir, &|| store(port)).await;
}

/// The same against garage, a distributed S3 store (one node here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_a_garage_bucket_read_each_others_recordings() {
    let dir = Dir::new("garage");
    let garage = Garage::start(&dir.0.join("garage"), free_port(), free_port());
    two_nodes_share_a_bucket(&dir, &|| garage_store(&garage)).await;
}

async fn two_nodes_share_a_bucket(dir: &Dir, store: &dyn Fn() -> Arc<dyn Store>) {
    use object_store::ObjectStoreExt as _;
    use std::sync::atomic::AtomicU32;
    use ugc_dvr::archive::SegmentName;
    let bucket = store();
    let exists = |key: String| {
        let bucket = bucket.clone();
        async move {
            let at = object_store::path::Path::from(key.as_str());
            match bucket.head(&at).await {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => panic!("HEAD {key}: {e}"),
            }
        }
    };
    let depths = [Arc::new(AtomicU32::new(24)), Arc::new(AtomicU32::new(24))];
    let node = |name: &str, d: Arc<AtomicU32>| {
        let mut c = ArchiveConfig::new(dir.0.join(name), 0);
        c.depth = Arc::new(move |_| d.load(Ordering::Relaxed));
        let archive = Archive::open(c).unwrap();
        let cache = S3Cache::new(
            store(),
            CacheConfig::new(dir.0.join(format!("{name}-cache"))),
        );
        archive.set_remote(Arc::new(cache.unwrap()));
        let up = Uploader::new(
            archive.clone(),
            store(),
            UploadConfig {
                prefix: format!("ugc/{name}/"),
                peers: Some("ugc/".into()),
                peer_scan: Duration::from_secs(3600),
                backoff_max: Duration::from_secs(1),
                ..UploadConfig::default()
            },
        )
        .unwrap();
        (archive, up)
    };
    let (a, up_a) = node("a", depths[0].clone());
    let (b, up_b) = node("b", depths[1].clone());
    let key = TrackKey::source(&path("live/ev"));
    let seg_bytes = |node: u8, session: i64, i: u64| {
        let mut v = vec![node; 1500];
        v[..8].copy_from_slice(&session.to_be_bytes());
        v[8..16].copy_from_slice(&i.to_be_bytes());
        v
    };
    // Event 1, 2 h ago: A records 20 s; B only its first 10 s (cut 300 ms
    // later, its own session). Event 2, 30 min ago: only B.
    let now = now_unix_ms();
    let ev1_a = now - 2 * 3_600_000;
    let ev1_b = ev1_a + 300;
    let ev2_b = now - 1_800_000;
    let record = |archive: &Archive, node: u8, session: i64, n: u64| {
        archive
            .import_init(&key, session, 0, format!("init of {node}").as_bytes())
            .unwrap();
        for i in 0..n {
            let name = SegmentName {
                pdt_ms: session + i as i64 * 2000,
                duration_ms: 2000,
                dts_ms: i as i64 * 2000,
                session,
                msn: i,
                init: 0,
                discontinuity: i == 0,
                provisional: None,
            };
            archive
                .import_segment(&key, &name, &seg_bytes(node, session, i))
                .unwrap();
        }
    };
    record(&a, b'a', ev1_a, 10);
    record(&b, b'b', ev1_b, 5);
    record(&b, b'b', ev2_b, 5);
    // B also holds copies replication made of A's segments 5-7 (and
    // their init): the same names and bytes.
    b.import_init(&key, ev1_a, 0, b"init of 97").unwrap();
    let a_names: Vec<SegmentName> = a
        .range(&key, ev1_a, ev1_a + 21_000)
        .into_iter()
        .map(|s| s.name)
        .collect();
    for n in &a_names[5..8] {
        b.import_segment(&key, n, &seg_bytes(b'a', ev1_a, n.msn))
            .unwrap();
    }
    up_a.enqueue(&a, &key, ev1_a).unwrap();
    up_b.enqueue(&b, &key, ev1_b).unwrap();
    up_b.enqueue(&b, &key, ev2_b).unwrap();
    let _ta = AbortOnDrop(tokio::spawn(up_a.clone().run()));
    let _tb = AbortOnDrop(tokio::spawn(up_b.clone().run()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while up_a.stats().uploaded.load(Ordering::Relaxed) < 1
        || up_b.stats().uploaded.load(Ordering::Relaxed) < 2
    {
        assert!(Instant::now() < deadline, "uploads did not complete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let object = |node: &str, s: i64| format!("ugc/{node}/live/ev/src/{s}.mp4");
    assert!(exists(object("a", ev1_a)).await);
    assert!(exists(object("b", ev2_b)).await);

    // Each reads the other's listing.
    assert_eq!(up_a.scan_peers().await.unwrap(), 1, "A reads B's event 2");
    assert_eq!(up_b.scan_peers().await.unwrap(), 1, "B reads A's event 1");
    let in_object = |s: &ugc_dvr::archive::ArchivedSegment, o: &str| matches!(&s.location, Location::Remote { object, .. } if &**object == o);
    // B: its own first 10 s of event 1, A's last 10 s (its copies of 5-7
    // now read from A's object too, their local files gone), all of
    // event 2.
    let b_ev1 = b.range(&key, ev1_a, ev1_a + 21_000);
    assert_eq!(b_ev1.len(), 10, "{b_ev1:?}");
    assert!(b_ev1[..5].iter().all(|s| s.name.session == ev1_b));
    assert!(b_ev1[5..].iter().all(|s| in_object(s, &object("a", ev1_a))));
    assert_eq!(b_ev1[5].name.msn, 5);
    for n in &a_names[5..8] {
        assert!(!b.segment_path(&key, n).exists(), "B's copy of {n:?} stays");
    }
    assert!(!b.init_path(&key, ev1_a, 0).exists());
    // A: event 1 its own, event 2 from B's object.
    let a_ev2 = a.range(&key, ev2_b, ev2_b + 10_000);
    assert_eq!(a_ev2.len(), 5);
    assert!(a_ev2.iter().all(|s| in_object(s, &object("b", ev2_b))));
    assert_eq!(a.range(&key, ev1_a, ev1_a + 21_000).len(), 10);
    // Played from the other's object through the own cache, byte for byte.
    for (archive, seg, node, session) in
        [(&b, &b_ev1[7], b'a', ev1_a), (&a, &a_ev2[2], b'b', ev2_b)]
    {
        let file = archive.segment_file(&key, &seg.name).await.unwrap();
        assert_eq!(
            std::fs::read(file).unwrap(),
            seg_bytes(node, session, seg.name.msn)
        );
    }
    // Both are recordings there, stored in S3.
    let recs = a.recordings(&path("live/ev"));
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert!(
        recs.iter()
            .all(|r| r.stored() == ugc_dvr::archive::Stored::Remote)
    );
    // A second listing adds nothing.
    assert_eq!(up_a.scan_peers().await.unwrap(), 0);
    assert_eq!(up_b.scan_peers().await.unwrap(), 0);
    assert_eq!(up_a.stats().peer_objects.load(Ordering::Relaxed), 1);
    assert_eq!(up_b.stats().peer_segments.load(Ordering::Relaxed), 5);

    // B's depth 24 h -> 1 h: event 1 expires there. B deletes its own
    // object of it, never A's.
    depths[1].store(1, Ordering::Relaxed);
    b.sweep();
    let deadline = Instant::now() + Duration::from_secs(30);
    while exists(object("b", ev1_b)).await {
        assert!(Instant::now() < deadline, "B's expired object stays");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(exists(object("a", ev1_a)).await, "B deleted A's object");
    assert!(b.range(&key, ev1_a, ev1_a + 21_000).is_empty());
    assert_eq!(b.range(&key, ev2_b, ev2_b + 10_000).len(), 5);
    // A recording deleted on request on A goes from S3 too, though B
    // wrote it.
    a.delete_recording(&path("live/ev"), ev2_b).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    // The delete job removes the object, then its index: both go.
    let idx = format!("{}.idx", object("b", ev2_b));
    while exists(object("b", ev2_b)).await || exists(idx.clone()).await {
        assert!(
            Instant::now() < deadline,
            "the deleted recording's object or index stays"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(exists(object("a", ev1_a)).await);
    assert!(a.recordings(&path("live/ev")).len() == 1);
}
