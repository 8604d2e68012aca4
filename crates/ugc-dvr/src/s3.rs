//! The S3 tier (feature `s3`): finished recordings move to an
//! S3-compatible bucket through [`object_store`]; ranges that live only
//! there are read back through a size-bounded LRU + TTL cache on local disk.
//!
//! **Upload.** When a recording session ends ([`Archive::set_session_end_hook`]),
//! a job file is written to `<root>/.s3/queue/` (tmp + fsync + rename) and
//! the [`Uploader`] task uploads the session as one object: its init
//! segments followed by its media segments, i.e. a fragmented MP4 of the
//! whole event (`<prefix><stream>/<rendition>/<session>.mp4`), plus a small
//! text index (`.idx`) of where each file sits in it. The upload is
//! multipart; the upload id and every finished part's ETag are persisted in
//! the job, so a restart resumes where it stopped and no multipart upload is
//! left behind (a job that must start over aborts its old upload first).
//! Every request is retried with exponential backoff (capped) for as long
//! as the server is away. After completion the object is read back and its
//! SHA-256 compared with the local files'; only then the index moves to
//! `<root>/.s3/remote/` and the local files are deleted.
//!
//! **Read back.** [`S3Cache`] implements [`RemoteStore`]: a byte range of
//! an object becomes a file in the cache directory; concurrent requests for
//! the same range fetch it once; the cache evicts least-recently-used files
//! beyond its size and refetches files older than its TTL.
//!
//! **HTTP.** By default the S3 client speaks plain HTTP through the
//! `hyper-util` client already in the dependency tree, signing with the
//! RustCrypto `hmac`/`sha2` crates ([`plain_http_store`]); that suits an S3
//! service on the local network (MinIO, garage, s3s). Feature `s3-tls`
//! switches to object_store's own reqwest + rustls client for `https://`.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use ugc_core::StreamPath;

use crate::archive::{
    Archive, ArchivedInit, ArchivedSegment, Location, RemoteStore, SegmentName, TrackKey, names,
    write_atomic,
};

/// An object store with multipart uploads (`AmazonS3`, `InMemory`, ...).
pub trait Store: ObjectStore + MultipartStore {}
impl<T: ObjectStore + MultipartStore> Store for T {}

/// Settings of the [`Uploader`].
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Object key prefix, e.g. `ugc/`.
    pub prefix: String,
    /// Multipart part size (at least 5 MiB except the last part). Default 8 MiB.
    pub part_size: usize,
    /// First retry delay. Default 500 ms.
    pub backoff_initial: Duration,
    /// Longest retry delay. Default 15 s.
    pub backoff_max: Duration,
    /// Delete the local files after a verified upload. Default true.
    pub delete_local: bool,
    /// Which streams (`live/<s>`) go to S3; `None`: all.
    pub streams: Option<StreamFilter>,
}

/// A per-stream on/off switch (`live/<s>` -> upload?).
#[derive(Clone)]
pub struct StreamFilter(pub Arc<dyn Fn(&StreamPath) -> bool + Send + Sync>);

impl std::fmt::Debug for StreamFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamFilter(..)")
    }
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            prefix: "ugc/".into(),
            part_size: 8 << 20,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(15),
            delete_local: true,
            streams: None,
        }
    }
}

/// One file of a session inside the uploaded object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Entry {
    file: String,
    offset: u64,
    size: u64,
}

/// A persisted upload job.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    stream: String,
    rendition: String,
    session: i64,
    object: String,
    /// The files in object order (fixed when the upload starts).
    entries: Vec<Entry>,
    upload_id: Option<String>,
    /// ETags of the finished parts, in order.
    parts: Vec<String>,
    part_size: usize,
    /// SHA-256 of the whole object, hex.
    sha256: Option<String>,
}

/// Counters of the [`Uploader`].
#[derive(Debug, Default)]
pub struct UploadStats {
    /// Sessions uploaded and verified.
    pub uploaded: AtomicU64,
    /// Requests retried.
    pub retries: AtomicU64,
    /// Multipart uploads aborted (to start over).
    pub aborted: AtomicU64,
}

/// Moves finished sessions to the object store; see the [module docs](self).
pub struct Uploader {
    archive: Archive,
    store: Arc<dyn Store>,
    config: UploadConfig,
    wake: tokio::sync::Notify,
    stats: UploadStats,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn queue_dir(archive: &Archive) -> PathBuf {
    archive.config().root.join(".s3").join("queue")
}

fn remote_dir(archive: &Archive, key: &TrackKey) -> PathBuf {
    archive
        .config()
        .root
        .join(".s3")
        .join("remote")
        .join(key.rel_dir())
}

fn job_name(key: &TrackKey, session: i64) -> String {
    format!(
        "{}_{}_{session}.job",
        key.stream.as_str().replace('/', "~"),
        key.rendition
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl Uploader {
    /// An uploader for `archive` into `store`. Reads the remote indexes
    /// (`<root>/.s3/remote/`) into the archive index, finishes moves a crash
    /// interrupted, and hooks the archive's session ends. Blocking (reads
    /// small files): call at start. Run the upload loop with
    /// [`Uploader::run`].
    pub fn new(
        archive: Archive,
        store: Arc<dyn Store>,
        config: UploadConfig,
    ) -> io::Result<Arc<Uploader>> {
        std::fs::create_dir_all(queue_dir(&archive))?;
        let up = Arc::new(Uploader {
            archive: archive.clone(),
            store,
            config,
            wake: tokio::sync::Notify::new(),
            stats: UploadStats::default(),
        });
        up.load_remote_indexes()?;
        let weak = Arc::downgrade(&up);
        archive.set_session_end_hook(Arc::new(move |archive, key, session| {
            if let Some(up) = weak.upgrade() {
                if let Err(e) = up.enqueue(archive, key, session) {
                    tracing::error!(stream = %key.stream, session, error = %e, "queueing the S3 upload");
                }
                up.wake.notify_one();
            }
        }));
        Ok(up)
    }

    /// Counters.
    pub fn stats(&self) -> &UploadStats {
        &self.stats
    }

    /// Queues the upload of session `session` of `key` (also for sessions
    /// that ended before a restart: see [`Uploader::enqueue_finished`]).
    pub fn enqueue(&self, archive: &Archive, key: &TrackKey, session: i64) -> io::Result<()> {
        if let Some(f) = &self.config.streams
            && !(f.0)(&key.stream)
        {
            tracing::debug!(stream = %key.stream, session, "S3 off for this stream: kept local");
            return Ok(());
        }
        let name = job_name(key, session);
        let dir = queue_dir(archive);
        if dir.join(&name).exists() {
            return Ok(());
        }
        let object = format!(
            "{}{}/{}/{session}.mp4",
            self.config.prefix, key.stream, key.rendition
        );
        let job = Job {
            stream: key.stream.to_string(),
            rendition: key.rendition.clone(),
            session,
            object,
            entries: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
            part_size: self.config.part_size.max(5 << 20),
            sha256: None,
        };
        save_job(&dir, &name, &job)
    }

    /// Queues every local session that is not being recorded and has no
    /// job (sessions that ended while the server was down). Blocking.
    pub fn enqueue_finished(&self) -> io::Result<usize> {
        let mut n = 0;
        for key in self.archive.keys() {
            for (session, active) in self.archive.local_sessions(&key) {
                if !active {
                    self.enqueue(&self.archive, &key, session)?;
                    n += 1;
                }
            }
        }
        self.wake.notify_one();
        Ok(n)
    }

    fn load_remote_indexes(&self) -> io::Result<()> {
        for (key, object, entries) in read_remote_indexes(&self.archive)? {
            self.apply_remote(&key, &object, &entries);
        }
        Ok(())
    }

    /// Puts remote locations into the index and deletes local copies.
    fn apply_remote(&self, key: &TrackKey, object: &str, entries: &[Entry]) {
        let moved = add_remote_entries(&self.archive, key, object, entries);
        if self.config.delete_local {
            for p in self.archive.relocate(key, &moved) {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// The upload loop: runs queued jobs one at a time, oldest first; sleeps
    /// until woken or for 30 s when the queue is empty.
    pub async fn run(self: Arc<Self>) {
        loop {
            let next = {
                let dir = queue_dir(&self.archive);
                tokio::task::spawn_blocking(move || next_job(&dir))
                    .await
                    .ok()
                    .flatten()
            };
            match next {
                Some(name) => {
                    if let Err(e) = self.run_job(&name).await {
                        tracing::error!(job = %name, error = %e, "S3 upload failed; retrying later");
                        tokio::time::sleep(self.config.backoff_max).await;
                    }
                }
                None => {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(30), self.wake.notified()).await;
                }
            }
        }
    }

    /// Retries `f` with capped exponential backoff until it succeeds or
    /// fails with an error `fatal` accepts.
    async fn retry<T, F, Fut>(
        &self,
        what: &str,
        fatal: impl Fn(&object_store::Error) -> bool,
        mut f: F,
    ) -> Result<T, object_store::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, object_store::Error>>,
    {
        let mut delay = self.config.backoff_initial;
        let mut attempt = 0u32;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if fatal(&e) => return Err(e),
                Err(e) => {
                    attempt += 1;
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    if attempt == 1 || attempt.is_power_of_two() {
                        tracing::warn!(%what, attempt, error = %e, "S3 request failed; retrying in {delay:?}");
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.config.backoff_max);
                }
            }
        }
    }

    async fn run_job(&self, name: &str) -> io::Result<()> {
        let dir = queue_dir(&self.archive);
        let mut job = load_job(&dir.join(name))?;
        let key = StreamPath::parse(&job.stream)
            .ok()
            .filter(StreamPath::is_source)
            .and_then(|s| TrackKey::rendition(&s, &job.rendition));
        let Some(key) = key else {
            tracing::error!(job = %name, "malformed job dropped");
            let _ = std::fs::remove_file(dir.join(name));
            return Ok(());
        };
        let path = ObjectPath::from(job.object.as_str());
        // Fix the layout once.
        if job.entries.is_empty() {
            let files = self.archive.session_files(&key, job.session);
            let mut offset = 0u64;
            for (n, size) in files.inits {
                job.entries.push(Entry {
                    file: names::init_file_name(job.session, n),
                    offset,
                    size,
                });
                offset += size;
            }
            for (n, size) in files.segments {
                job.entries.push(Entry {
                    file: n.file_name(),
                    offset,
                    size,
                });
                offset += size;
            }
            if !job.entries.iter().any(|e| e.file.starts_with('s')) {
                // Nothing (left) to upload.
                let _ = std::fs::remove_file(dir.join(name));
                return Ok(());
            }
            save_job(&dir, name, &job)?;
        }
        let local_dir = self.archive.dir(&key);
        let total: u64 = job.entries.iter().map(|e| e.size).sum();
        // Every file must still be there (retention may have removed old
        // ones while the job waited): otherwise start over with a new layout.
        let missing = job
            .entries
            .iter()
            .any(|e| !local_dir.join(&e.file).exists());
        if missing {
            tracing::warn!(job = %name, "files of a queued upload are gone; re-planning");
            self.abort(&path, &mut job).await;
            job.entries.clear();
            job.parts.clear();
            job.sha256 = None;
            save_job(&dir, name, &job)?;
            return Box::pin(self.run_job(name)).await;
        }
        if job.sha256.is_none() {
            let entries = job.entries.clone();
            let ld = local_dir.clone();
            let sum = tokio::task::spawn_blocking(move || sha256_of(&ld, &entries))
                .await
                .map_err(io::Error::other)??;
            job.sha256 = Some(sum);
            save_job(&dir, name, &job)?;
        }
        let upload_id = match &job.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self
                    .retry(
                        "create multipart",
                        |_| false,
                        || self.store.create_multipart(&path),
                    )
                    .await
                    .map_err(io::Error::other)?;
                job.upload_id = Some(id.clone());
                save_job(&dir, name, &job)?;
                id
            }
        };
        let part_size = job.part_size as u64;
        let n_parts = total.div_ceil(part_size).max(1);
        while (job.parts.len() as u64) < n_parts {
            let idx = job.parts.len();
            let start = idx as u64 * part_size;
            let end = (start + part_size).min(total);
            let entries = job.entries.clone();
            let ld = local_dir.clone();
            let data = tokio::task::spawn_blocking(move || read_span(&ld, &entries, start, end))
                .await
                .map_err(io::Error::other)??;
            let res = self
                .retry("upload part", is_not_found, || {
                    self.store
                        .put_part(&path, &upload_id, idx, PutPayload::from(data.clone()))
                })
                .await;
            match res {
                Ok(part) => {
                    job.parts.push(part.content_id);
                    save_job(&dir, name, &job)?;
                }
                Err(e) => {
                    // The server forgot the upload: start over.
                    tracing::warn!(job = %name, error = %e, "multipart upload lost; starting over");
                    self.abort(&path, &mut job).await;
                    job.parts.clear();
                    save_job(&dir, name, &job)?;
                    return Box::pin(self.run_job(name)).await;
                }
            }
        }
        let parts: Vec<PartId> = job
            .parts
            .iter()
            .map(|c| PartId {
                content_id: c.clone(),
            })
            .collect();
        let completed = self
            .retry("complete multipart", is_not_found, || {
                self.store
                    .complete_multipart(&path, &upload_id, parts.clone())
            })
            .await;
        if let Err(e) = completed {
            // NotFound: either an earlier complete succeeded but its answer
            // was lost, or the upload is gone; verification decides.
            tracing::warn!(job = %name, error = %e, "completing the upload");
        }
        // Verify: read the object back and compare its SHA-256.
        let want = job.sha256.clone().unwrap_or_default();
        let got = self
            .retry(
                "verify",
                |_| false,
                || async {
                    let r = self.store.get(&path).await?;
                    let mut stream = r.into_stream();
                    let mut h = sha2::Sha256::new();
                    use futures_util::StreamExt as _;
                    while let Some(chunk) = stream.next().await {
                        h.update(&chunk?);
                    }
                    Ok(hex(&h.finalize()))
                },
            )
            .await;
        match got {
            Ok(sum) if sum == want => {}
            Ok(sum) => {
                tracing::error!(job = %name, %want, %sum, "uploaded object differs; uploading again");
                job.upload_id = None;
                job.parts.clear();
                save_job(&dir, name, &job)?;
                return Err(io::Error::other("checksum mismatch after upload"));
            }
            Err(e) if is_not_found(&e) => {
                job.upload_id = None;
                job.parts.clear();
                save_job(&dir, name, &job)?;
                return Err(io::Error::other("object missing after upload"));
            }
            Err(e) => return Err(io::Error::other(e)),
        }
        // The index object, then the local remote index, then the move.
        let index = render_index(&job.object, &job.entries);
        let idx_path = ObjectPath::from(format!("{}.idx", job.object));
        let idx_bytes = Bytes::from(index.clone());
        self.retry(
            "put index",
            |_| false,
            || {
                self.store
                    .put(&idx_path, PutPayload::from(idx_bytes.clone()))
            },
        )
        .await
        .map_err(io::Error::other)?;
        let rdir = remote_dir(&self.archive, &key);
        write_atomic(&rdir, &format!("{}.idx", job.session), &[index.as_bytes()])?;
        self.apply_remote(&key, &job.object, &job.entries);
        std::fs::remove_file(dir.join(name))?;
        self.stats.uploaded.fetch_add(1, Ordering::Relaxed);
        tracing::info!(stream = %key.stream, rendition = %key.rendition, session = job.session,
            object = %job.object, bytes = total, "recording moved to S3");
        Ok(())
    }

    async fn abort(&self, path: &ObjectPath, job: &mut Job) {
        if let Some(id) = job.upload_id.take() {
            let r = self
                .retry("abort multipart", is_not_found, || {
                    self.store.abort_multipart(path, &id)
                })
                .await;
            if r.is_ok() {
                self.stats.aborted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Adds the entries of one remote index to the archive index; returns the
/// new location of every file.
fn add_remote_entries(
    archive: &Archive,
    key: &TrackKey,
    object: &str,
    entries: &[Entry],
) -> HashMap<String, Location> {
    let object: Arc<str> = Arc::from(object);
    let mut segs = Vec::new();
    let mut inits = Vec::new();
    let mut moved = HashMap::new();
    for e in entries {
        let loc = Location::Remote {
            object: object.clone(),
            offset: e.offset,
        };
        if let Some(n) = SegmentName::parse(&e.file) {
            segs.push(ArchivedSegment {
                name: n,
                size: e.size,
                location: loc.clone(),
            });
        } else if let Some(k) = names::parse_init_name(&e.file) {
            inits.push((
                k,
                ArchivedInit {
                    size: e.size,
                    location: loc.clone(),
                },
            ));
        }
        moved.insert(e.file.clone(), loc);
    }
    archive.add_remote(key, segs, inits);
    moved
}

/// Reads the remote indexes under `<root>/.s3/remote/`.
fn read_remote_indexes(archive: &Archive) -> io::Result<Vec<(TrackKey, String, Vec<Entry>)>> {
    let mut out = Vec::new();
    let root = archive.config().root.join(".s3").join("remote");
    if !root.exists() {
        return Ok(out);
    }
    for app in std::fs::read_dir(&root)? {
        let app = app?.path();
        for stream in std::fs::read_dir(&app)? {
            let stream = stream?.path();
            for rendition in std::fs::read_dir(&stream)? {
                let rdir = rendition?.path();
                let name = |p: &Path| {
                    p.file_name()
                        .and_then(|s| s.to_str())
                        .unwrap_or("")
                        .to_owned()
                };
                let key = StreamPath::new(&name(&app), &name(&stream))
                    .ok()
                    .and_then(|s| TrackKey::rendition(&s, &name(&rdir)));
                let Some(key) = key else {
                    continue;
                };
                for f in std::fs::read_dir(&rdir)? {
                    let p = f?.path();
                    if p.extension().is_some_and(|e| e == "idx") {
                        let text = std::fs::read_to_string(&p)?;
                        if let Some((object, entries)) = parse_index(&text) {
                            out.push((key.clone(), object, entries));
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Adds the S3 tier's part of the index to `archive` without touching any
/// file (the read-only CLI export). Blocking.
pub fn load_remote_index(archive: &Archive, _root: &Path) -> io::Result<()> {
    for (key, object, entries) in read_remote_indexes(archive)? {
        add_remote_entries(archive, &key, &object, &entries);
    }
    Ok(())
}

fn save_job(dir: &Path, name: &str, job: &Job) -> io::Result<()> {
    let text = serde_json::to_vec_pretty(job).map_err(io::Error::other)?;
    write_atomic(dir, name, &[&text])
}

fn load_job(path: &Path) -> io::Result<Job> {
    let text = std::fs::read(path)?;
    serde_json::from_slice(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The oldest job file (by session, the last `_` field).
fn next_job(dir: &Path) -> Option<String> {
    let mut best: Option<(i64, String)> = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".job") else {
            continue;
        };
        let session = stem
            .rsplit('_')
            .next()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(i64::MAX);
        if best.as_ref().is_none_or(|(s, _)| session < *s) {
            best = Some((session, name));
        }
    }
    best.map(|b| b.1)
}

fn read_span(dir: &Path, entries: &[Entry], start: u64, end: u64) -> io::Result<Bytes> {
    let mut out = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
    for e in entries {
        let (a, b) = (e.offset, e.offset + e.size);
        if b <= start || a >= end {
            continue;
        }
        let from = start.max(a) - a;
        let to = end.min(b) - a;
        let mut f = std::fs::File::open(dir.join(&e.file))?;
        use std::io::Seek as _;
        f.seek(io::SeekFrom::Start(from))?;
        let mut buf = vec![0u8; usize::try_from(to - from).unwrap_or(0)];
        f.read_exact(&mut buf)?;
        out.extend_from_slice(&buf);
    }
    Ok(Bytes::from(out))
}

fn sha256_of(dir: &Path, entries: &[Entry]) -> io::Result<String> {
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for e in entries {
        let mut f = std::fs::File::open(dir.join(&e.file))?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(buf.get(..n).unwrap_or_default());
        }
    }
    Ok(hex(&h.finalize()))
}

fn render_index(object: &str, entries: &[Entry]) -> String {
    let mut s = format!("ugc-dvr-index 1\nobject {object}\n");
    for e in entries {
        s.push_str(&format!("{} {} {}\n", e.file, e.offset, e.size));
    }
    s
}

fn parse_index(text: &str) -> Option<(String, Vec<Entry>)> {
    let mut lines = text.lines();
    if lines.next()? != "ugc-dvr-index 1" {
        return None;
    }
    let object = lines.next()?.strip_prefix("object ")?.to_owned();
    let mut entries = Vec::new();
    for l in lines {
        let mut it = l.split(' ');
        let file = it.next()?.to_owned();
        let offset = it.next()?.parse().ok()?;
        let size = it.next()?.parse().ok()?;
        entries.push(Entry { file, offset, size });
    }
    Some((object, entries))
}

// ---------------------------------------------------------------- cache

/// Settings of the [`S3Cache`].
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// The cache directory (fast local disk).
    pub dir: PathBuf,
    /// Size bound. Default 100 GB.
    pub max_bytes: u64,
    /// Files older than this are fetched again. Default 24 h.
    pub ttl: Duration,
}

impl CacheConfig {
    /// Defaults in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CacheConfig {
            dir: dir.into(),
            max_bytes: 100_000_000_000,
            ttl: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug)]
struct CacheEntry {
    size: u64,
    fetched: SystemTime,
    used: u64,
}

#[derive(Debug, Default)]
struct CacheState {
    entries: HashMap<String, CacheEntry>,
    total: u64,
    tick: u64,
}

type Inflight = Arc<tokio::sync::OnceCell<PathBuf>>;

/// Counters of the [`S3Cache`].
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Ranges fetched from the object store.
    pub fetches: AtomicU64,
    /// Reads served from the cache.
    pub hits: AtomicU64,
    /// Files evicted (size bound).
    pub evictions: AtomicU64,
    /// Files dropped because their TTL passed.
    pub expired: AtomicU64,
}

/// The read-back cache; see the [module docs](self).
pub struct S3Cache {
    store: Arc<dyn Store>,
    config: CacheConfig,
    state: Mutex<CacheState>,
    inflight: Mutex<HashMap<String, Inflight>>,
    stats: CacheStats,
}

impl std::fmt::Debug for S3Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Cache")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl S3Cache {
    /// A cache over `store`; files already in `config.dir` are reused
    /// (their modification time is their fetch time). Blocking.
    pub fn new(store: Arc<dyn Store>, config: CacheConfig) -> io::Result<S3Cache> {
        std::fs::create_dir_all(&config.dir)?;
        let mut st = CacheState::default();
        let mut found = Vec::new();
        for e in std::fs::read_dir(&config.dir)? {
            let e = e?;
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            if !name.ends_with(".bin") {
                continue;
            }
            let m = e.metadata()?;
            found.push((
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                name,
                m.len(),
            ));
        }
        found.sort();
        for (fetched, name, size) in found {
            st.tick += 1;
            st.total += size;
            st.entries.insert(
                name,
                CacheEntry {
                    size,
                    fetched,
                    used: st.tick,
                },
            );
        }
        Ok(S3Cache {
            store,
            config,
            state: Mutex::new(st),
            inflight: Mutex::new(HashMap::new()),
            stats: CacheStats::default(),
        })
    }

    /// Counters.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Bytes in the cache.
    pub fn bytes(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    fn file_name(object: &str, offset: u64, len: u64) -> String {
        let h = sha2::Sha256::digest(format!("{object}\n{offset}\n{len}").as_bytes());
        format!("{}.bin", hex(h.get(..16).unwrap_or_default()))
    }

    /// A cached file with `len` bytes of `object` from `offset`.
    pub async fn get(&self, object: &str, offset: u64, len: u64) -> io::Result<PathBuf> {
        let name = Self::file_name(object, offset, len);
        let path = self.config.dir.join(&name);
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.tick += 1;
            let tick = st.tick;
            let fresh = st.entries.get(&name).map(|e| {
                e.fetched
                    .elapsed()
                    .map_or(true, |age| age < self.config.ttl)
            });
            match fresh {
                Some(true) => {
                    if let Some(e) = st.entries.get_mut(&name) {
                        e.used = tick;
                    }
                    self.stats.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(path);
                }
                Some(false) => {
                    if let Some(e) = st.entries.remove(&name) {
                        st.total = st.total.saturating_sub(e.size);
                    }
                    self.stats.expired.fetch_add(1, Ordering::Relaxed);
                }
                None => {}
            }
        }
        let cell = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            inflight.entry(name.clone()).or_default().clone()
        };
        let result = cell
            .get_or_try_init(|| self.fetch(object, offset, len, &name))
            .await
            .cloned();
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        result
    }

    async fn fetch(&self, object: &str, offset: u64, len: u64, name: &str) -> io::Result<PathBuf> {
        self.stats.fetches.fetch_add(1, Ordering::Relaxed);
        let path = ObjectPath::from(object);
        let data = self
            .store
            .get_range(&path, offset..offset + len)
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    io::Error::new(io::ErrorKind::NotFound, e)
                } else {
                    io::Error::other(e)
                }
            })?;
        if data.len() as u64 != len {
            return Err(io::Error::other(format!(
                "object {object}: asked {len} bytes at {offset}, got {}",
                data.len()
            )));
        }
        let dir = self.config.dir.clone();
        let file = name.to_owned();
        tokio::task::spawn_blocking(move || write_atomic(&dir, &file, &[&data]))
            .await
            .map_err(io::Error::other)??;
        let evict = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.tick += 1;
            let tick = st.tick;
            st.total += len;
            st.entries.insert(
                name.to_owned(),
                CacheEntry {
                    size: len,
                    fetched: SystemTime::now(),
                    used: tick,
                },
            );
            let mut evict = Vec::new();
            while st.total > self.config.max_bytes {
                let Some(victim) = st
                    .entries
                    .iter()
                    .filter(|(k, _)| k.as_str() != name)
                    .min_by_key(|(_, e)| e.used)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                if let Some(e) = st.entries.remove(&victim) {
                    st.total = st.total.saturating_sub(e.size);
                }
                evict.push(victim);
            }
            evict
        };
        for v in evict {
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            let _ = std::fs::remove_file(self.config.dir.join(v));
        }
        Ok(self.config.dir.join(name))
    }
}

impl RemoteStore for S3Cache {
    fn fetch<'a>(
        &'a self,
        object: &'a str,
        offset: u64,
        len: u64,
    ) -> Pin<Box<dyn Future<Output = io::Result<PathBuf>> + Send + 'a>> {
        Box::pin(self.get(object, offset, len))
    }
}

// ---------------------------------------------------------------- client

/// Settings of an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `http://host:port`; `None` = AWS (needs feature `s3-tls`).
    pub endpoint: Option<String>,
    /// Bucket.
    pub bucket: String,
    /// Region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

/// The read side of an archive's S3 tier: the client of `settings` and a
/// read-back [`S3Cache`] (`cache`) set as `archive`'s remote store, so that
/// ranges moved to the bucket play and export. Returns the client, for an
/// [`Uploader`]. Blocking (opens the cache directory): call at start.
pub fn attach_read_side(
    archive: &Archive,
    settings: &S3Settings,
    cache: CacheConfig,
) -> io::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = Arc::new(
        s3_store(settings).map_err(|e| io::Error::other(format!("building the S3 client: {e}")))?,
    );
    let dir = cache.dir.clone();
    let cache = S3Cache::new(store.clone(), cache).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("opening the cache {}: {e}", dir.display()),
        )
    })?;
    archive.set_remote(Arc::new(cache));
    Ok(store)
}

/// An S3 client for `settings`: path-style requests, plain HTTP allowed,
/// object_store's own retries kept short (the uploader retries for as long
/// as it takes).
pub fn s3_store(settings: &S3Settings) -> Result<object_store::aws::AmazonS3, object_store::Error> {
    let mut b = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&settings.bucket)
        .with_region(&settings.region)
        .with_access_key_id(&settings.access_key_id)
        .with_secret_access_key(&settings.secret_access_key)
        .with_virtual_hosted_style_request(false)
        .with_allow_http(true)
        .with_retry(object_store::RetryConfig {
            backoff: object_store::BackoffConfig::default(),
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
        })
        .with_crypto_provider(Arc::new(crypto::RustCrypto));
    if let Some(e) = &settings.endpoint {
        b = b.with_endpoint(e);
    }
    #[cfg(not(feature = "s3-tls"))]
    {
        b = b.with_http_connector(plain_http::PlainHttp);
    }
    b.build()
}

/// The plain-HTTP connector for [`s3_store`] without feature `s3-tls`.
#[cfg(not(feature = "s3-tls"))]
pub fn plain_http_store() -> impl object_store::client::HttpConnector {
    plain_http::PlainHttp
}

#[cfg(not(feature = "s3-tls"))]
mod plain_http {
    use http_body_util::BodyExt as _;
    use object_store::client::{
        ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest,
        HttpResponse, HttpResponseBody, HttpService,
    };

    #[derive(Debug, Clone, Copy)]
    pub struct PlainHttp;

    #[derive(Debug)]
    struct Service {
        client: hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            object_store::client::HttpRequestBody,
        >,
    }

    impl HttpConnector for PlainHttp {
        fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .pool_idle_timeout(std::time::Duration::from_secs(30))
                    .build_http();
            Ok(HttpClient::new(Service { client }))
        }
    }

    #[async_trait::async_trait]
    impl HttpService for Service {
        async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
            if req.uri().scheme_str() == Some("https") {
                return Err(HttpError::new(
                    HttpErrorKind::Unknown,
                    std::io::Error::other("https needs ugc-dvr's feature s3-tls"),
                ));
            }
            let res = tokio::time::timeout(
                std::time::Duration::from_secs(120),
                self.client.request(req),
            )
            .await
            .map_err(|e| HttpError::new(HttpErrorKind::Timeout, e))?
            .map_err(|e| {
                let kind = if e.is_connect() {
                    HttpErrorKind::Connect
                } else {
                    HttpErrorKind::Request
                };
                HttpError::new(kind, e)
            })?;
            let (parts, body) = res.into_parts();
            let body = body.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e));
            Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
        }
    }
}

mod crypto {
    use hmac::{KeyInit as _, Mac as _};
    use object_store::client::{
        CryptoProvider, DigestAlgorithm, DigestContext, HmacContext, Signer, SigningAlgorithm,
    };
    use sha2::Digest as _;

    /// SHA-256 and HMAC-SHA-256 from RustCrypto (SigV4 needs nothing else).
    #[derive(Debug)]
    pub struct RustCrypto;

    struct Sha(sha2::Sha256, Vec<u8>);
    struct Hmac(Option<hmac::Hmac<sha2::Sha256>>, Vec<u8>);

    impl DigestContext for Sha {
        fn update(&mut self, data: &[u8]) {
            self.0.update(data);
        }
        fn finish(&mut self) -> object_store::Result<&[u8]> {
            self.1 = std::mem::take(&mut self.0).finalize().to_vec();
            Ok(&self.1)
        }
    }

    impl HmacContext for Hmac {
        fn update(&mut self, data: &[u8]) {
            if let Some(m) = self.0.as_mut() {
                m.update(data);
            }
        }
        fn finish(&mut self) -> object_store::Result<&[u8]> {
            if let Some(m) = self.0.take() {
                self.1 = m.finalize().into_bytes().to_vec();
            }
            Ok(&self.1)
        }
    }

    fn unsupported(what: &str) -> object_store::Error {
        object_store::Error::NotSupported {
            source: format!("{what} is not provided by ugc-dvr's RustCrypto provider").into(),
        }
    }

    impl CryptoProvider for RustCrypto {
        fn digest(
            &self,
            algorithm: DigestAlgorithm,
        ) -> object_store::Result<Box<dyn DigestContext>> {
            match algorithm {
                DigestAlgorithm::Sha256 => Ok(Box::new(Sha(sha2::Sha256::new(), Vec::new()))),
                _ => Err(unsupported("this digest")),
            }
        }
        fn hmac(
            &self,
            algorithm: DigestAlgorithm,
            secret: &[u8],
        ) -> object_store::Result<Box<dyn HmacContext>> {
            match algorithm {
                DigestAlgorithm::Sha256 => {
                    let m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
                        .map_err(|_| unsupported("this HMAC key"))?;
                    Ok(Box::new(Hmac(Some(m), Vec::new())))
                }
                _ => Err(unsupported("this HMAC")),
            }
        }
        fn sign(
            &self,
            _algorithm: SigningAlgorithm,
            _pem: &[u8],
        ) -> object_store::Result<Box<dyn Signer>> {
            Err(unsupported("RSA signing"))
        }
    }
}
