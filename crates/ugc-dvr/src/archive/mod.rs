//! The archive: the segments the live window makes, kept on disk under one
//! directory per stream and rendition, with a time index that survives a
//! crash.
//!
//! Layout below the archive root (e.g. `<data>/dvr`):
//!
//! ```text
//! live/<stream>/<rendition>/i<session>_<n>.mp4        init segments
//! live/<stream>/<rendition>/s<pdt>_<dur>_..._<c|d>.m4s  media segments (see [`names`])
//! ```
//!
//! Every file is written to a `.tmp` name, `fsync`ed, renamed into place and
//! the directory `fsync`ed, so after `kill -9` (or a power cut) a file is
//! either complete or absent; the file names carry the index, which
//! [`Archive::open`] rebuilds from a listing. At most the segment in
//! progress is lost.
//!
//! All file I/O happens on one writer thread fed by a bounded queue:
//! [`Recorder::on_output`](crate::packager::SegmentObserver::on_output)
//! (called on the packager task) never blocks; when the queue is full the
//! segment is dropped and counted. A write error (disk
//! full) pauses recording of that stream for [`ArchiveConfig::pause_on_error`]
//! with one error log, live delivery is unaffected, and the next segment
//! after the pause tries again.
//!
//! Retention runs on the writer thread after each write and every
//! [`ArchiveConfig::sweep_interval`]: per stream by depth (the
//! [`DepthPolicy`]), then by total size (oldest segment of any stream first).//!
//! One module per job: `index` (the time index and its queries),
//! `recorder` (segmenter outputs -> write jobs), `writer` (the writer
//! thread), `scan` (rebuilding the index from a listing), `retention` and
//! `relocation` (files the S3 tier moved).

mod import;
mod index;
pub mod names;
mod recorder;
mod recordings;
mod relocation;
mod retention;
mod scan;
mod writer;

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ugc_core::StreamPath;

pub use index::{ArchivedInit, ArchivedSegment, Location, SessionFiles, TrackIndex, keeps_against};
pub use names::{SegmentName, digest};
pub use recorder::Recorder;
pub use recordings::{DeleteRecordingError, Recording, SessionSummary, Stored, group_sessions};
pub use retention::{Expiry, plan_retention};
pub use writer::write_atomic;

use scan::{scan, scan_read_only};
use writer::{Job, writer_loop};

/// The rendition name of a published stream's own media (`live/<stream>`)
/// in the archive. A ladder rung of this name is not archived (it would
/// share the directory).
pub const SOURCE_RENDITION: &str = "src";

/// A stream and rendition of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackKey {
    /// The published stream (`live/<stream>`, no rendition).
    pub stream: StreamPath,
    /// [`SOURCE_RENDITION`] or a ladder rung (`720p`).
    pub rendition: String,
}

impl TrackKey {
    /// The key of a Hub stream: `live/foo` -> (`live/foo`, `src`),
    /// `live/foo/720p` -> (`live/foo`, `720p`). `None` for a rendition named
    /// [`SOURCE_RENDITION`].
    pub fn of(path: &StreamPath) -> Option<TrackKey> {
        let rendition = match path.rendition() {
            None => SOURCE_RENDITION,
            Some(SOURCE_RENDITION) => return None,
            Some(r) => r,
        };
        Some(TrackKey {
            stream: path.source(),
            rendition: rendition.to_owned(),
        })
    }

    /// The source rendition of `stream`.
    pub fn source(stream: &StreamPath) -> TrackKey {
        TrackKey {
            stream: stream.source(),
            rendition: SOURCE_RENDITION.into(),
        }
    }

    /// Rendition `rendition` of `stream` ([`SOURCE_RENDITION`] is the
    /// source); `None` for a name that is not a valid segment.
    pub fn rendition(stream: &StreamPath, rendition: &str) -> Option<TrackKey> {
        ugc_core::name::validate_segment(rendition).ok()?;
        Some(TrackKey {
            stream: stream.source(),
            rendition: rendition.to_owned(),
        })
    }

    /// The directory below the archive root: `<app>/<stream>/<rendition>`.
    /// Every part is a validated stream-path segment (no `.`/`..`, no
    /// separators), so the path stays inside the root.
    pub fn rel_dir(&self) -> PathBuf {
        let mut p = PathBuf::new();
        p.push(self.stream.app());
        p.push(self.stream.name());
        p.push(&self.rendition);
        p
    }
}
/// The archive depth of a published stream (`live/foo`) in hours; 0 = do
/// not record. Asked for every segment, so a changed setting applies at once.
pub type DepthPolicy = Arc<dyn Fn(&StreamPath) -> u32 + Send + Sync>;

/// Configuration of an [`Archive`].
#[derive(Clone)]
pub struct ArchiveConfig {
    /// The archive root (e.g. `<data>/dvr`).
    pub root: PathBuf,
    /// Depth per stream.
    pub depth: DepthPolicy,
    /// Total size of the local archive; the oldest segments of any stream
    /// go first. `None`: unbounded.
    pub max_bytes: Option<u64>,
    /// Writer queue length (segments and init segments). Default 512.
    pub queue: usize,
    /// How long a stream's recording pauses after a write error. Default 10 s.
    pub pause_on_error: Duration,
    /// Retention runs at least this often. Default 30 s.
    pub sweep_interval: Duration,
    /// A jump of more than this between one segment's end and the next
    /// one's start is a gap (marked in playlists). Default 1000 ms.
    pub gap_tolerance_ms: u32,
}

impl std::fmt::Debug for ArchiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveConfig")
            .field("root", &self.root)
            .field("max_bytes", &self.max_bytes)
            .field("queue", &self.queue)
            .field("pause_on_error", &self.pause_on_error)
            .field("sweep_interval", &self.sweep_interval)
            .field("gap_tolerance_ms", &self.gap_tolerance_ms)
            .finish_non_exhaustive()
    }
}

impl ArchiveConfig {
    /// Defaults below `root`, recording every stream `hours` deep.
    pub fn new(root: impl Into<PathBuf>, hours: u32) -> Self {
        ArchiveConfig {
            root: root.into(),
            depth: Arc::new(move |_| hours),
            max_bytes: None,
            queue: 512,
            pause_on_error: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(30),
            gap_tolerance_ms: 1000,
        }
    }
}

/// Counters of an [`Archive`].
#[derive(Debug, Default)]
pub struct ArchiveStats {
    /// Segments written.
    pub segments_written: AtomicU64,
    /// Segments dropped: queue full, paused after an error, or a failed write.
    pub segments_dropped: AtomicU64,
    /// Write errors.
    pub write_errors: AtomicU64,
    /// Segments removed by retention.
    pub segments_expired: AtomicU64,
    /// Segments copied from another origin (DVR replication).
    pub segments_imported: AtomicU64,
    /// Provisional segments replaced by another origin's copy of the same
    /// time (see [`SegmentName::provisional`]).
    pub segments_replaced: AtomicU64,
    /// Recordings deleted on request ([`Archive::delete_recording`]).
    pub recordings_deleted: AtomicU64,
    /// Segments and init segments queued for the writer thread, not
    /// written yet (a gauge: the disk keeping up, or not).
    pub write_queue: AtomicU64,
    /// Segment bytes written to the local disk.
    pub bytes_written: AtomicU64,
}

/// The recording state of one stream and rendition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordingStatus {
    /// Paused after this error (cleared by the next successful write).
    pub paused: Option<String>,
}
/// The remote tier's read side: makes a byte range of an object available
/// as a local file (through the local cache) and returns its path.
pub trait RemoteStore: Send + Sync {
    /// `len` bytes of `object` from `offset`, as a local file.
    fn fetch<'a>(
        &'a self,
        object: &'a str,
        offset: u64,
        len: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<PathBuf>> + Send + 'a>>;
}

/// How far the remote tier is with moving one session (see
/// [`Archive::set_upload_progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadProgress {
    /// Parts are being sent (else queued, waiting for its turn).
    pub uploading: bool,
    /// Bytes sent.
    pub bytes_done: u64,
    /// Bytes of the object (while queued: of the local files).
    pub bytes_total: u64,
}

/// Answers the upload progress of session `i64` of a track, `None` when no
/// upload of it is queued or running.
pub type UploadProgressFn = Arc<dyn Fn(&TrackKey, i64) -> Option<UploadProgress> + Send + Sync>;

/// Called on the writer thread when a recording session ended (the Hub
/// stream ended): the S3 tier queues its upload.
pub type SessionEndHook = Arc<dyn Fn(&Archive, &TrackKey, i64) + Send + Sync>;

/// Called when every segment of an object of the remote tier left the
/// index (session `i64` of the track): `true` when retention dropped it
/// (past its depth), `false` when its recording was deleted on request.
/// The S3 tier deletes the object (a peer's only when deleted on request).
pub type ObjectExpiredHook = Arc<dyn Fn(&Archive, &TrackKey, i64, &str, bool) + Send + Sync>;

struct Inner {
    config: ArchiveConfig,
    index: RwLock<HashMap<TrackKey, TrackIndex>>,
    status: RwLock<HashMap<TrackKey, RecordingStatus>>,
    /// Sessions being recorded (never expired as "unused init").
    active: Mutex<HashSet<(TrackKey, i64)>>,
    tx: SyncSender<Job>,
    stats: ArchiveStats,
    last_session: AtomicI64,
    local_bytes: AtomicU64,
    on_session_end: RwLock<Option<SessionEndHook>>,
    on_object_expired: RwLock<Option<ObjectExpiredHook>>,
    remote: RwLock<Option<Arc<dyn RemoteStore>>>,
    upload_progress: RwLock<Option<UploadProgressFn>>,
    /// Spans of recordings deleted on request (`.deleted`).
    deleted: Mutex<Vec<(StreamPath, i64, i64)>>,
}

/// The archive; cheap to clone. See the [module docs](self).
#[derive(Clone)]
pub struct Archive {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("root", &self.inner.config.root)
            .finish_non_exhaustive()
    }
}

/// Unix milliseconds now.
pub fn now_unix_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
impl Archive {
    /// Opens (creating) the archive at `config.root`: deletes leftover
    /// `.tmp` files, rebuilds the index from the file names and starts the
    /// writer thread. Blocking (a directory walk): call it before the
    /// runtime starts or in `spawn_blocking`.
    pub fn open(config: ArchiveConfig) -> io::Result<Archive> {
        std::fs::create_dir_all(&config.root)?;
        let index = scan(&config.root)?;
        let deleted = recordings::load_deleted(&config.root);
        let local: u64 = index.values().map(|t| t.local_bytes).sum();
        let last_session = index
            .values()
            .flat_map(|t| t.inits.keys().map(|k| k.0))
            .max()
            .unwrap_or(0);
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue.max(1));
        let inner = Arc::new(Inner {
            config,
            index: RwLock::new(index),
            status: RwLock::new(HashMap::new()),
            active: Mutex::new(HashSet::new()),
            tx,
            stats: ArchiveStats::default(),
            last_session: AtomicI64::new(last_session),
            local_bytes: AtomicU64::new(local),
            on_session_end: RwLock::new(None),
            on_object_expired: RwLock::new(None),
            remote: RwLock::new(None),
            upload_progress: RwLock::new(None),
            deleted: Mutex::new(deleted),
        });
        let archive = Archive {
            inner: inner.clone(),
        };
        let weak = Arc::downgrade(&inner);
        drop(inner);
        std::thread::Builder::new()
            .name("ugc-dvr-writer".into())
            .spawn(move || writer_loop(weak, rx))?;
        Ok(archive)
    }

    /// Opens the archive for reading only (no writer thread is started and
    /// nothing is deleted): the CLI export.
    pub fn open_read_only(root: &Path) -> io::Result<Archive> {
        let index = scan_read_only(root)?;
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        Ok(Archive {
            inner: Arc::new(Inner {
                config: ArchiveConfig::new(root, 0),
                index: RwLock::new(index),
                status: RwLock::new(HashMap::new()),
                active: Mutex::new(HashSet::new()),
                tx,
                stats: ArchiveStats::default(),
                last_session: AtomicI64::new(0),
                local_bytes: AtomicU64::new(0),
                on_session_end: RwLock::new(None),
                on_object_expired: RwLock::new(None),
                remote: RwLock::new(None),
                upload_progress: RwLock::new(None),
                deleted: Mutex::new(recordings::load_deleted(root)),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ArchiveConfig {
        &self.inner.config
    }

    /// Counters.
    pub fn stats(&self) -> &ArchiveStats {
        &self.inner.stats
    }

    /// Bytes of local archive files.
    pub fn local_bytes(&self) -> u64 {
        self.inner.local_bytes.load(Ordering::Relaxed)
    }

    /// Sets the hook run (on the writer thread) when a session ended.
    pub fn set_session_end_hook(&self, hook: SessionEndHook) {
        *write(&self.inner.on_session_end) = Some(hook);
    }

    /// Sets where [`Archive::recordings`] reads the upload progress of
    /// sessions (the S3 tier's uploader).
    pub fn set_upload_progress(&self, f: UploadProgressFn) {
        *write(&self.inner.upload_progress) = Some(f);
    }

    /// Sets the hook run (on the writer thread) when retention dropped a
    /// whole object of the remote tier.
    pub fn set_object_expired_hook(&self, hook: ObjectExpiredHook) {
        *write(&self.inner.on_object_expired) = Some(hook);
    }

    /// Sets the remote tier that serves [`Location::Remote`] files.
    pub fn set_remote(&self, remote: Arc<dyn RemoteStore>) {
        *write(&self.inner.remote) = Some(remote);
    }

    async fn local_file(
        &self,
        local: PathBuf,
        size: u64,
        location: &Location,
    ) -> io::Result<PathBuf> {
        match location {
            Location::Local => Ok(local),
            Location::Remote { object, offset } => {
                let remote = read(&self.inner.remote).clone();
                match remote {
                    Some(r) => r.fetch(object, *offset, size).await,
                    None => Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        "archived in the remote tier, which is not configured",
                    )),
                }
            }
        }
    }

    /// A local file with the bytes of segment `name` of `key` (fetched into
    /// the cache when it lives only in the remote tier).
    pub async fn segment_file(&self, key: &TrackKey, name: &SegmentName) -> io::Result<PathBuf> {
        // A provisional name listed before a peer's copy replaced it (a
        // range playlist fetched just before) gets that copy.
        let entry = self
            .segment(key, name)
            .or_else(|| {
                name.is_provisional()
                    .then(|| self.successor(key, name))
                    .flatten()
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such segment"))?;
        self.local_file(
            self.segment_path(key, &entry.name),
            entry.size,
            &entry.location,
        )
        .await
    }

    /// A local file with init segment `n` of `session` of `key`.
    pub async fn init_file(&self, key: &TrackKey, session: i64, n: u32) -> io::Result<PathBuf> {
        let entry = self
            .init(key, session, n)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such init segment"))?;
        self.local_file(self.init_path(key, session, n), entry.size, &entry.location)
            .await
    }

    /// Plans the MP4 export of `key` over `[from_ms, to_ms)`: local files
    /// for every segment (fetching remote ones into the cache), then
    /// [`crate::export::plan_export`] off the reactor.
    pub async fn plan_export(
        &self,
        key: &TrackKey,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<crate::export::ExportPlan, crate::export::ExportError> {
        use crate::export::{ExportError, ExportSegment};
        let segments = self.range(key, from_ms, to_ms);
        let mut inits: Vec<((i64, u32), PathBuf)> = Vec::new();
        let mut inputs = Vec::with_capacity(segments.len());
        for s in &segments {
            let ik = (s.name.session, s.name.init);
            let init = match inits.iter().position(|(k, _)| *k == ik) {
                Some(i) => i,
                None => {
                    let p = self.init_file(key, ik.0, ik.1).await.map_err(|source| {
                        ExportError::Io {
                            path: self.init_path(key, ik.0, ik.1),
                            source,
                        }
                    })?;
                    inits.push((ik, p));
                    inits.len() - 1
                }
            };
            let path = self
                .local_file(self.segment_path(key, &s.name), s.size, &s.location)
                .await
                .map_err(|source| ExportError::Io {
                    path: self.segment_path(key, &s.name),
                    source,
                })?;
            inputs.push(ExportSegment { path, init });
        }
        tokio::task::spawn_blocking(move || {
            let mut loaded = Vec::with_capacity(inits.len());
            for (_, p) in inits {
                let b = std::fs::read(&p).map_err(|source| ExportError::Io {
                    path: p.clone(),
                    source,
                })?;
                loaded.push((p, bytes::Bytes::from(b)));
            }
            crate::export::plan_export(&loaded, &inputs)
        })
        .await
        .map_err(|e| ExportError::Io {
            path: PathBuf::new(),
            source: io::Error::other(e.to_string()),
        })?
    }

    /// The directory of `key`.
    pub fn dir(&self, key: &TrackKey) -> PathBuf {
        self.inner.config.root.join(key.rel_dir())
    }

    /// The local path of a segment of `key`.
    pub fn segment_path(&self, key: &TrackKey, name: &SegmentName) -> PathBuf {
        self.dir(key).join(name.file_name())
    }

    /// The local path of an init segment of `key`.
    pub fn init_path(&self, key: &TrackKey, session: i64, n: u32) -> PathBuf {
        self.dir(key).join(names::init_file_name(session, n))
    }
    /// The depth of `stream` in hours, per the policy.
    pub fn depth_hours(&self, stream: &StreamPath) -> u32 {
        (self.inner.config.depth)(stream)
    }

    /// Asks the writer thread to run retention now (e.g. a depth setting
    /// changed). Never blocks.
    pub fn sweep(&self) {
        let _ = self.inner.tx.try_send(Job::Sweep);
    }

    /// Waits until the writer thread has handled everything queued so far
    /// (tests, shutdown). Blocking.
    pub fn flush_blocking(&self, timeout: Duration) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.inner.tx.send(Job::Barrier(tx)).is_err() {
            return false;
        }
        rx.recv_timeout(timeout).is_ok()
    }
}
