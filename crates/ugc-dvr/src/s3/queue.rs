//! The upload queue: [`Uploader`], its settings and counters, jobs persisted
//! under `<root>/.s3/queue/`, the upload loop and its retries.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use ugc_core::StreamPath;

use super::Store;
use crate::archive::{Archive, TrackKey, UploadProgress, write_atomic};

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
    /// Read the recordings other nodes uploaded below this prefix (each
    /// below its own prefix inside it, e.g. `ugc/` above `ugc/<node>/`);
    /// `None`: only this node's. See the `peers` module.
    pub peers: Option<String>,
    /// How often the peers' uploads are listed. Default 60 s.
    pub peer_scan: Duration,
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
            peers: None,
            peer_scan: Duration::from_secs(60),
        }
    }
}

/// One file of a session inside the uploaded object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) file: String,
    pub(super) offset: u64,
    pub(super) size: u64,
}

/// A persisted upload job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Job {
    pub(super) stream: String,
    pub(super) rendition: String,
    pub(super) session: i64,
    pub(super) object: String,
    /// The files in object order (fixed when the upload starts).
    pub(super) entries: Vec<Entry>,
    pub(super) upload_id: Option<String>,
    /// ETags of the finished parts, in order.
    pub(super) parts: Vec<String>,
    pub(super) part_size: usize,
    /// SHA-256 of the whole object, hex.
    pub(super) sha256: Option<String>,
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
    /// Objects deleted: recordings past their depth.
    pub deleted: AtomicU64,
    /// Sessions waiting for their upload or being uploaded (a gauge, from
    /// the queue's job files).
    pub queued: AtomicU64,
    /// Bytes of parts and objects the store accepted.
    pub bytes_uploaded: AtomicU64,
    /// Other nodes' objects read into the index (segments this archive
    /// lacked).
    pub peer_objects: AtomicU64,
    /// Segments of other nodes' objects read into the index.
    pub peer_segments: AtomicU64,
}

/// Moves finished sessions to the object store; see the [module docs](super).
pub struct Uploader {
    pub(super) archive: Archive,
    pub(super) store: Arc<dyn Store>,
    pub(super) config: UploadConfig,
    pub(super) wake: tokio::sync::Notify,
    pub(super) stats: UploadStats,
    /// The running job: its name, bytes sent, bytes in all.
    pub(super) running: std::sync::Mutex<Option<(String, u64, u64)>>,
    /// Peer index objects read: key -> ETag (or size).
    pub(super) peer_seen: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Whether the peers' uploads were listed once since the start.
    pub(super) peers_read: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub(super) fn queue_dir(archive: &Archive) -> PathBuf {
    archive.config().root.join(".s3").join("queue")
}
fn job_name(key: &TrackKey, session: i64) -> String {
    format!(
        "{}_{}_{session}.job",
        key.stream.as_str().replace('/', "~"),
        key.rendition
    )
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
            running: std::sync::Mutex::new(None),
            peer_seen: std::sync::Mutex::new(std::collections::HashMap::new()),
            peers_read: tokio::sync::watch::Sender::new(false),
        });
        up.load_remote_indexes()?;
        up.hook_expiry()?;
        let weak = Arc::downgrade(&up);
        archive.set_upload_progress(Arc::new(move |key, session| {
            weak.upgrade().and_then(|up| up.progress(key, session))
        }));
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

    /// The upload of session `session` of `key`: running (bytes sent of
    /// the object's), queued (bytes of its local files), or `None`.
    pub fn progress(&self, key: &TrackKey, session: i64) -> Option<UploadProgress> {
        let name = job_name(key, session);
        if let Some((running, done, total)) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            && *running == name
        {
            return Some(UploadProgress {
                uploading: true,
                bytes_done: *done,
                bytes_total: *total,
            });
        }
        if !queue_dir(&self.archive).join(&name).exists() {
            return None;
        }
        let files = self.archive.session_files(key, session);
        let total = files
            .inits
            .iter()
            .map(|i| i.1)
            .chain(files.segments.iter().map(|s| s.1))
            .fold(0u64, u64::saturating_add);
        Some(UploadProgress {
            uploading: false,
            bytes_done: 0,
            bytes_total: total,
        })
    }

    pub(super) fn set_running(&self, state: Option<(String, u64, u64)>) {
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = state;
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
        save_job(&dir, &name, &job)?;
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        Ok(())
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
    /// The upload loop: runs queued jobs one at a time, oldest first; sleeps
    /// until woken or for 30 s when the queue is empty.
    /// With [`UploadConfig::peers`] it also lists the peers' uploads (at
    /// start, then every [`UploadConfig::peer_scan`]).
    pub async fn run(self: Arc<Self>) {
        let _peers = self
            .config
            .peers
            .is_some()
            .then(|| AbortOnDrop(tokio::spawn(self.clone().run_peer_scans())));
        loop {
            if let Err(e) = self.run_deletes().await {
                tracing::error!(error = %e, "deleting expired recordings failed; retrying later");
            }
            let next = {
                let dir = queue_dir(&self.archive);
                let (next, queued) = tokio::task::spawn_blocking(move || next_job(&dir))
                    .await
                    .unwrap_or((None, 0));
                self.stats.queued.store(queued, Ordering::Relaxed);
                next
            };
            match next {
                Some(name) => {
                    let done = self.run_job(&name).await;
                    self.set_running(None);
                    if let Err(e) = done {
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
    pub(super) async fn retry<T, F, Fut>(
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
}

pub(super) fn save_job(dir: &Path, name: &str, job: &Job) -> io::Result<()> {
    let text = serde_json::to_vec_pretty(job).map_err(io::Error::other)?;
    write_atomic(dir, name, &[&text])
}

pub(super) fn load_job(path: &Path) -> io::Result<Job> {
    let text = std::fs::read(path)?;
    serde_json::from_slice(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The oldest job file (by session, the last `_` field), and how many
/// there are.
fn next_job(dir: &Path) -> (Option<String>, u64) {
    let mut best: Option<(i64, String)> = None;
    let mut jobs = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (None, 0);
    };
    for e in entries.flatten() {
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
        jobs += 1;
        if best.as_ref().is_none_or(|(s, _)| session < *s) {
            best = Some((session, name));
        }
    }
    (best.map(|b| b.1), jobs)
}

/// Ends the peer scans with the upload loop.
struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
