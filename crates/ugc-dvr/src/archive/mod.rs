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
//! [`Recorder::on_output`] (called on the packager task) never blocks; when
//! the queue is full the segment is dropped and counted. A write error (disk
//! full) pauses recording of that stream for [`ArchiveConfig::pause_on_error`]
//! with one error log, live delivery is unaffected, and the next segment
//! after the pause tries again.
//!
//! Retention runs on the writer thread after each write and every
//! [`ArchiveConfig::sweep_interval`]: per stream by depth (the
//! [`DepthPolicy`]), then by total size (oldest segment of any stream first).

pub mod names;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ugc_core::StreamPath;

use crate::packager::{ObserverFactory, SegmentObserver};
use crate::segmenter::{InitSegment, Segment, SegmenterOutput};
pub use names::SegmentName;

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

/// Where the bytes of an archived file are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// In the stream's directory under the archive root.
    Local,
    /// In an object of the remote tier, at `offset`.
    Remote {
        /// The object key.
        object: Arc<str>,
        /// Byte offset of the file inside the object.
        offset: u64,
    },
}

/// One archived media segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedSegment {
    /// Its index fields (and file name).
    pub name: SegmentName,
    /// Size in bytes.
    pub size: u64,
    /// Where it is.
    pub location: Location,
}

/// One archived init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedInit {
    /// Size in bytes.
    pub size: u64,
    /// Where it is.
    pub location: Location,
}

/// The index of one stream and rendition.
#[derive(Debug, Default, Clone)]
pub struct TrackIndex {
    /// Segments sorted by wall clock.
    pub segments: VecDeque<ArchivedSegment>,
    /// Init segments by (session, number).
    pub inits: BTreeMap<(i64, u32), ArchivedInit>,
    /// Bytes of local files.
    pub local_bytes: u64,
}

impl TrackIndex {
    fn insert(&mut self, seg: ArchivedSegment) {
        if seg.location == Location::Local {
            self.local_bytes = self.local_bytes.saturating_add(seg.size);
        }
        let at = self.segments.partition_point(|s| s.name <= seg.name);
        if at > 0
            && let Some(prev) = self.segments.get(at - 1)
            && prev.name == seg.name
        {
            // Same file seen twice (a re-scan): keep one.
            if prev.location == Location::Local && seg.location == Location::Local {
                self.local_bytes = self.local_bytes.saturating_sub(seg.size);
            }
            return;
        }
        if at == self.segments.len() {
            self.segments.push_back(seg);
        } else {
            self.segments.insert(at, seg);
        }
    }

    /// The segments of the wall-clock range `[from_ms, to_ms)`, oldest
    /// first: those whose midpoint lies in the range (so the total is within
    /// one segment of the length asked for), or, when that is none (a range
    /// shorter than a segment), those overlapping it.
    pub fn range(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Iterator<Item = &ArchivedSegment> + Clone {
        let mid = |s: &ArchivedSegment| {
            s.name
                .pdt_ms
                .saturating_add(i64::from(s.name.duration_ms / 2))
        };
        let mut a = self.segments.partition_point(|s| mid(s) < from_ms);
        let mut b = self.segments.partition_point(|s| mid(s) < to_ms).max(a);
        if a == b {
            a = self
                .segments
                .partition_point(|s| s.name.end_ms() <= from_ms);
            b = self
                .segments
                .partition_point(|s| s.name.pdt_ms < to_ms)
                .max(a);
        }
        self.segments.range(a..b)
    }

    /// Wall clock of the first segment's start and the last one's end.
    pub fn bounds(&self) -> Option<(i64, i64)> {
        Some((
            self.segments.front()?.name.pdt_ms,
            self.segments.back()?.name.end_ms(),
        ))
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
}

/// The recording state of one stream and rendition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordingStatus {
    /// Paused after this error (cleared by the next successful write).
    pub paused: Option<String>,
}

enum Job {
    Init {
        key: TrackKey,
        session: i64,
        init: Arc<InitSegment>,
    },
    Segment {
        key: TrackKey,
        session: i64,
        init: Arc<InitSegment>,
        seg: Arc<Segment>,
    },
    Ended {
        key: TrackKey,
        session: i64,
    },
    Sweep,
    Barrier(std::sync::mpsc::Sender<()>),
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

/// Called on the writer thread when a recording session ended (the Hub
/// stream ended): the S3 tier queues its upload.
pub type SessionEndHook = Arc<dyn Fn(&Archive, &TrackKey, i64) + Send + Sync>;

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
    remote: RwLock<Option<Arc<dyn RemoteStore>>>,
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
            remote: RwLock::new(None),
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
                remote: RwLock::new(None),
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
        let entry = self
            .segment(key, name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such segment"))?;
        self.local_file(self.segment_path(key, name), entry.size, &entry.location)
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

    /// Runs `f` over the index of `key` (a read lock is held: keep it short).
    pub fn with_index<R>(&self, key: &TrackKey, f: impl FnOnce(Option<&TrackIndex>) -> R) -> R {
        f(read(&self.inner.index).get(key))
    }

    /// The segments of `key` overlapping `[from_ms, to_ms)`, oldest first.
    pub fn range(&self, key: &TrackKey, from_ms: i64, to_ms: i64) -> Vec<ArchivedSegment> {
        self.with_index(key, |i| {
            i.map(|i| i.range(from_ms, to_ms).cloned().collect())
                .unwrap_or_default()
        })
    }

    /// First start and last end of `key`'s archive.
    pub fn bounds(&self, key: &TrackKey) -> Option<(i64, i64)> {
        self.with_index(key, |i| i.and_then(TrackIndex::bounds))
    }

    /// The init segment entry.
    pub fn init(&self, key: &TrackKey, session: i64, n: u32) -> Option<ArchivedInit> {
        self.with_index(key, |i| i.and_then(|i| i.inits.get(&(session, n)).cloned()))
    }

    /// The segment named `name`, if archived.
    pub fn segment(&self, key: &TrackKey, name: &SegmentName) -> Option<ArchivedSegment> {
        self.with_index(key, |i| {
            let i = i?;
            let at = i.segments.partition_point(|s| s.name < *name);
            i.segments.get(at).filter(|s| s.name == *name).cloned()
        })
    }

    /// Keys in the index.
    pub fn keys(&self) -> Vec<TrackKey> {
        let mut k: Vec<TrackKey> = read(&self.inner.index).keys().cloned().collect();
        k.sort();
        k
    }

    /// The recording status of `key`.
    pub fn status(&self, key: &TrackKey) -> RecordingStatus {
        read(&self.inner.status)
            .get(key)
            .cloned()
            .unwrap_or_default()
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

    /// A recorder for the Hub stream `hub_name`, or `None` for names the
    /// archive does not keep.
    pub fn recorder(&self, hub_name: &StreamPath) -> Option<Recorder> {
        let key = TrackKey::of(hub_name)?;
        // Unique, increasing session ids even when two start in one ms.
        let now = now_unix_ms();
        let mut cur = self.inner.last_session.load(Ordering::Acquire);
        let session = loop {
            let next = now.max(cur.saturating_add(1));
            match self.inner.last_session.compare_exchange(
                cur,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break next,
                Err(c) => cur = c,
            }
        };
        Some(Recorder {
            archive: self.clone(),
            key,
            session,
            init: None,
            init_sent: false,
            warned_full: false,
        })
    }

    /// Replaces the location of archived files (the S3 tier moved them):
    /// `moved` maps file names to their new location. Returns the local
    /// bytes released from the index (the caller deletes the files).
    pub fn relocate(&self, key: &TrackKey, moved: &HashMap<String, Location>) -> Vec<PathBuf> {
        let mut released = Vec::new();
        let mut idx = write(&self.inner.index);
        let Some(t) = idx.get_mut(key) else {
            return released;
        };
        for s in t.segments.iter_mut() {
            if s.location == Location::Local
                && let Some(loc) = moved.get(&s.name.file_name())
            {
                s.location = loc.clone();
                t.local_bytes = t.local_bytes.saturating_sub(s.size);
                self.inner.local_bytes.fetch_sub(
                    s.size.min(self.inner.local_bytes.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
                released.push(self.dir(key).join(s.name.file_name()));
            }
        }
        for (&(session, n), init) in t.inits.iter_mut() {
            let file = names::init_file_name(session, n);
            if init.location == Location::Local
                && let Some(loc) = moved.get(&file)
            {
                init.location = loc.clone();
                released.push(self.dir(key).join(file));
            }
        }
        released
    }

    /// Adds remote entries to the index (rebuilding the S3 tier's part of
    /// the index on start).
    pub fn add_remote(
        &self,
        key: &TrackKey,
        segments: Vec<ArchivedSegment>,
        inits: Vec<((i64, u32), ArchivedInit)>,
    ) {
        let mut idx = write(&self.inner.index);
        let t = idx.entry(key.clone()).or_default();
        for s in segments {
            // A local copy (not yet deleted) wins.
            t.insert(s);
        }
        for (k, i) in inits {
            t.inits.entry(k).or_insert(i);
        }
    }

    /// The local files of session `session` of `key`: init segments and
    /// segments, oldest first.
    pub fn session_files(&self, key: &TrackKey, session: i64) -> SessionFiles {
        self.with_index(key, |i| {
            let mut f = SessionFiles::default();
            if let Some(i) = i {
                for (&(s, n), init) in &i.inits {
                    if s == session && init.location == Location::Local {
                        f.inits.push((n, init.size));
                    }
                }
                for s in &i.segments {
                    if s.name.session == session && s.location == Location::Local {
                        f.segments.push((s.name, s.size));
                    }
                }
            }
            f
        })
    }

    /// The newest session of `key` being recorded now.
    pub fn current_session(&self, key: &TrackKey) -> Option<i64> {
        self.inner
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, s)| *s)
            .max()
    }

    /// Sessions of `key` with local files, and whether each is still
    /// being recorded.
    pub fn local_sessions(&self, key: &TrackKey) -> Vec<(i64, bool)> {
        let active = self
            .inner
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.with_index(key, |i| {
            let mut v: Vec<i64> = i
                .map(|i| {
                    i.segments
                        .iter()
                        .filter(|s| s.location == Location::Local)
                        .map(|s| s.name.session)
                        .collect()
                })
                .unwrap_or_default();
            v.sort_unstable();
            v.dedup();
            v.into_iter()
                .map(|s| (s, active.contains(&(key.clone(), s))))
                .collect()
        })
    }
}

/// The local files of one recording session.
#[derive(Debug, Default, Clone)]
pub struct SessionFiles {
    /// Init segment numbers and sizes.
    pub inits: Vec<(u32, u64)>,
    /// Segments and sizes, oldest first.
    pub segments: Vec<(SegmentName, u64)>,
}

/// Records one Hub stream into the [`Archive`]; a [`SegmentObserver`] for
/// the packager.
pub struct Recorder {
    archive: Archive,
    key: TrackKey,
    session: i64,
    init: Option<Arc<InitSegment>>,
    init_sent: bool,
    warned_full: bool,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("key", &self.key)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// The recording session id.
    pub fn session(&self) -> i64 {
        self.session
    }

    /// The stream and rendition.
    pub fn key(&self) -> &TrackKey {
        &self.key
    }

    fn send(&mut self, job: Job) -> bool {
        match self.archive.inner.tx.try_send(job) {
            Ok(()) => {
                self.warned_full = false;
                true
            }
            Err(TrySendError::Full(_)) => {
                self.archive
                    .inner
                    .stats
                    .segments_dropped
                    .fetch_add(1, Ordering::Relaxed);
                if !self.warned_full {
                    tracing::warn!(stream = %self.key.stream, rendition = %self.key.rendition,
                        "archive writer queue full: dropping segments (disk too slow?)");
                    self.warned_full = true;
                }
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

impl SegmentObserver for Recorder {
    fn on_output(&mut self, output: &SegmenterOutput) {
        match output {
            SegmenterOutput::Init(init) => {
                self.init = Some(init.clone());
                self.init_sent = false;
            }
            SegmenterOutput::Segment(seg) => {
                if self.archive.depth_hours(&self.key.stream) == 0 {
                    return;
                }
                let Some(init) = self.init.clone() else {
                    return;
                };
                if !self.init_sent {
                    {
                        let mut active = self
                            .archive
                            .inner
                            .active
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        active.insert((self.key.clone(), self.session));
                    }
                    self.init_sent = self.send(Job::Init {
                        key: self.key.clone(),
                        session: self.session,
                        init: init.clone(),
                    });
                    if !self.init_sent {
                        return;
                    }
                }
                self.send(Job::Segment {
                    key: self.key.clone(),
                    session: self.session,
                    init,
                    seg: seg.clone(),
                });
            }
            SegmenterOutput::Ended => {
                let job = Job::Ended {
                    key: self.key.clone(),
                    session: self.session,
                };
                // The end must not be lost (it triggers the S3 upload): wait
                // briefly for room rather than drop it. The queue drains in
                // milliseconds unless the disk hangs.
                if let Err(TrySendError::Full(job)) = self.archive.inner.tx.try_send(job) {
                    let tx = self.archive.inner.tx.clone();
                    std::thread::spawn(move || {
                        let _ = tx.send(job);
                    });
                }
            }
            SegmenterOutput::Part { .. }
            | SegmenterOutput::PreloadHint { .. }
            | SegmenterOutput::Opened(_)
            | SegmenterOutput::PartChunk { .. } => {}
        }
    }
}

impl ObserverFactory for Archive {
    fn observe(&self, stream: &StreamPath) -> Option<Box<dyn SegmentObserver>> {
        self.recorder(stream)
            .map(|r| Box::new(r) as Box<dyn SegmentObserver>)
    }
}

// ---------------------------------------------------------------- scanning

fn scan_dirs(root: &Path) -> io::Result<Vec<(TrackKey, PathBuf)>> {
    // <root>/<app>/<stream>/<rendition>/
    let mut out = Vec::new();
    for app in read_dir_names(root)? {
        let app_dir = root.join(&app);
        if !app_dir.is_dir() {
            continue;
        }
        for stream in read_dir_names(&app_dir)? {
            let sdir = app_dir.join(&stream);
            if !sdir.is_dir() {
                continue;
            }
            for rendition in read_dir_names(&sdir)? {
                let rdir = sdir.join(&rendition);
                if !rdir.is_dir() {
                    continue;
                }
                let Some(key) = StreamPath::new(&app, &stream)
                    .ok()
                    .and_then(|s| TrackKey::rendition(&s, &rendition))
                else {
                    continue;
                };
                out.push((key, rdir));
            }
        }
    }
    Ok(out)
}

fn read_dir_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Ok(name) = e.file_name().into_string() {
            v.push(name);
        }
    }
    Ok(v)
}

fn scan_inner(root: &Path, clean: bool) -> io::Result<HashMap<TrackKey, TrackIndex>> {
    let mut index = HashMap::new();
    if !root.exists() {
        return Ok(index);
    }
    for (key, dir) in scan_dirs(root)? {
        let mut t = TrackIndex::default();
        let mut segs = Vec::new();
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if name.ends_with(".tmp") {
                if clean {
                    let _ = std::fs::remove_file(e.path());
                }
                continue;
            }
            let size = e.metadata()?.len();
            if let Some(n) = SegmentName::parse(&name) {
                segs.push(ArchivedSegment {
                    name: n,
                    size,
                    location: Location::Local,
                });
            } else if let Some(k) = names::parse_init_name(&name) {
                t.inits.insert(
                    k,
                    ArchivedInit {
                        size,
                        location: Location::Local,
                    },
                );
            }
        }
        segs.sort_by_key(|s| s.name);
        for s in segs {
            // A segment whose init segment is missing cannot be played.
            if t.inits.contains_key(&(s.name.session, s.name.init)) {
                t.local_bytes = t.local_bytes.saturating_add(s.size);
                t.segments.push_back(s);
            }
        }
        if !t.segments.is_empty() || !t.inits.is_empty() {
            index.insert(key, t);
        }
    }
    Ok(index)
}

fn scan(root: &Path) -> io::Result<HashMap<TrackKey, TrackIndex>> {
    scan_inner(root, true)
}

fn scan_read_only(root: &Path) -> io::Result<HashMap<TrackKey, TrackIndex>> {
    scan_inner(root, false)
}

// ---------------------------------------------------------------- writing

/// Writes `data` to `dir/name` crash-safely: `.tmp`, fsync, rename, fsync
/// of the directory.
pub fn write_atomic(dir: &Path, name: &str, data: &[&[u8]]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{name}.tmp"));
    let result = (|| {
        // A live segment comes in dozens of CMAF chunks: one write each
        // would be dozens of syscalls.
        let mut f = io::BufWriter::with_capacity(64 * 1024, File::create(&tmp)?);
        for d in data {
            f.write_all(d)?;
        }
        let f = f.into_inner().map_err(io::IntoInnerError::into_error)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, dir.join(name))?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[derive(Default)]
struct TrackWriter {
    paused_until: Option<Instant>,
    inits_written: HashSet<(i64, u32)>,
}

struct Writer {
    tracks: HashMap<TrackKey, TrackWriter>,
}

fn writer_loop(inner: std::sync::Weak<Inner>, rx: Receiver<Job>) {
    let mut w = Writer {
        tracks: HashMap::new(),
    };
    let sweep_every = match inner.upgrade() {
        Some(i) => i.config.sweep_interval,
        None => return,
    };
    let mut last_sweep = Instant::now();
    loop {
        let job = rx.recv_timeout(sweep_every.max(Duration::from_millis(100)));
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let archive = Archive { inner };
        match job {
            Ok(job) => w.handle(&archive, job),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if last_sweep.elapsed() >= sweep_every {
            retention(&archive, now_unix_ms());
            last_sweep = Instant::now();
        }
    }
}

impl Writer {
    fn handle(&mut self, archive: &Archive, job: Job) {
        match job {
            Job::Init { key, session, init } => {
                let tw = self.tracks.entry(key.clone()).or_default();
                if tw.paused_until.is_some_and(|t| Instant::now() < t) {
                    return;
                }
                if let Err(e) = write_init(archive, &key, session, &init) {
                    pause(archive, &key, tw, &e);
                } else {
                    tw.inits_written.insert((session, init.number));
                }
            }
            Job::Segment {
                key,
                session,
                init,
                seg,
            } => {
                let tw = self.tracks.entry(key.clone()).or_default();
                if tw.paused_until.is_some_and(|t| Instant::now() < t) {
                    archive
                        .inner
                        .stats
                        .segments_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                match write_segment(archive, &key, session, &init, &seg, tw) {
                    Ok(()) => {
                        if tw.paused_until.take().is_some() {
                            tracing::info!(stream = %key.stream, rendition = %key.rendition,
                                "recording resumed");
                            write(&archive.inner.status).remove(&key);
                        }
                        archive
                            .inner
                            .stats
                            .segments_written
                            .fetch_add(1, Ordering::Relaxed);
                        retention(archive, now_unix_ms());
                    }
                    Err(e) => {
                        archive
                            .inner
                            .stats
                            .segments_dropped
                            .fetch_add(1, Ordering::Relaxed);
                        pause(archive, &key, tw, &e);
                    }
                }
            }
            Job::Ended { key, session } => {
                archive
                    .inner
                    .active
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&(key.clone(), session));
                let hook = read(&archive.inner.on_session_end).clone();
                if let Some(h) = hook {
                    h(archive, &key, session);
                }
            }
            Job::Sweep => retention(archive, now_unix_ms()),
            Job::Barrier(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

fn pause(archive: &Archive, key: &TrackKey, tw: &mut TrackWriter, e: &io::Error) {
    archive
        .inner
        .stats
        .write_errors
        .fetch_add(1, Ordering::Relaxed);
    let pause = archive.inner.config.pause_on_error;
    if tw.paused_until.is_none() {
        tracing::error!(stream = %key.stream, rendition = %key.rendition, error = %e,
            "recording paused for {pause:?}: archive write failed (disk full?); live delivery continues");
    }
    tw.paused_until = Some(Instant::now() + pause);
    write(&archive.inner.status).insert(
        key.clone(),
        RecordingStatus {
            paused: Some(e.to_string()),
        },
    );
}

fn write_init(
    archive: &Archive,
    key: &TrackKey,
    session: i64,
    init: &InitSegment,
) -> io::Result<()> {
    let dir = archive.dir(key);
    write_atomic(
        &dir,
        &names::init_file_name(session, init.number),
        &[&init.data],
    )?;
    let mut idx = write(&archive.inner.index);
    idx.entry(key.clone()).or_default().inits.insert(
        (session, init.number),
        ArchivedInit {
            size: init.data.len() as u64,
            location: Location::Local,
        },
    );
    Ok(())
}

fn write_segment(
    archive: &Archive,
    key: &TrackKey,
    session: i64,
    init: &InitSegment,
    seg: &Segment,
    tw: &mut TrackWriter,
) -> io::Result<()> {
    if seg.init != init.number {
        return Err(io::Error::other(format!(
            "segment {} needs init {} but the recorder has init {}",
            seg.msn, seg.init, init.number
        )));
    }
    if !tw.inits_written.contains(&(session, init.number)) {
        write_init(archive, key, session, init)?;
        tw.inits_written.insert((session, init.number));
    }
    let name = SegmentName {
        pdt_ms: seg.program_date_time_ms,
        duration_ms: u32::try_from(seg.duration_ms).unwrap_or(u32::MAX),
        dts_ms: seg.start_dts_ms,
        session,
        msn: seg.msn,
        init: seg.init,
        discontinuity: seg.discontinuity,
    };
    let pieces: Vec<&[u8]> = seg.data.pieces().iter().map(|p| &p[..]).collect();
    write_atomic(&archive.dir(key), &name.file_name(), &pieces)?;
    let size = seg.data.len() as u64;
    write(&archive.inner.index)
        .entry(key.clone())
        .or_default()
        .insert(ArchivedSegment {
            name,
            size,
            location: Location::Local,
        });
    archive.inner.local_bytes.fetch_add(size, Ordering::Relaxed);
    Ok(())
}

// ---------------------------------------------------------------- retention

/// What retention removes: `(key, segments)` in order, and init segments no
/// segment needs any more.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expiry {
    /// Segments to remove.
    pub segments: Vec<(TrackKey, ArchivedSegment)>,
    /// Init segments to remove.
    pub inits: Vec<(TrackKey, (i64, u32), ArchivedInit)>,
}

/// Decides what to remove (pure): per stream everything that ended before
/// `now - depth` (streams with depth 0 are left alone), then the oldest
/// local segments of any stream until the local total is within
/// `max_bytes`.
pub fn plan_retention(
    index: &HashMap<TrackKey, TrackIndex>,
    depth_hours: &dyn Fn(&StreamPath) -> u32,
    max_bytes: Option<u64>,
    active: &HashSet<(TrackKey, i64)>,
    now_ms: i64,
) -> Expiry {
    let mut out = Expiry::default();
    let mut removed: HashMap<&TrackKey, usize> = HashMap::new();
    let mut total: u64 = index.values().map(|t| t.local_bytes).sum();
    for (key, t) in index {
        let hours = depth_hours(&key.stream);
        if hours == 0 {
            continue;
        }
        let horizon = now_ms.saturating_sub(i64::from(hours).saturating_mul(3_600_000));
        let n = t.segments.partition_point(|s| s.name.end_ms() <= horizon);
        for s in t.segments.range(..n) {
            if s.location == Location::Local {
                total = total.saturating_sub(s.size);
            }
            out.segments.push((key.clone(), s.clone()));
        }
        removed.insert(key, n);
    }
    if let Some(max) = max_bytes {
        let mut keys: Vec<&TrackKey> = index.keys().collect();
        keys.sort();
        while total > max {
            // The oldest local segment left of any stream.
            let mut best: Option<(&TrackKey, usize, i64)> = None;
            for k in &keys {
                let Some(t) = index.get(*k) else { continue };
                let start = removed.get(k).copied().unwrap_or(0);
                let Some((i, s)) = t
                    .segments
                    .iter()
                    .enumerate()
                    .skip(start)
                    .find(|(_, s)| s.location == Location::Local)
                else {
                    continue;
                };
                if best.is_none_or(|(_, _, pdt)| s.name.pdt_ms < pdt) {
                    best = Some((k, i, s.name.pdt_ms));
                }
            }
            let Some((k, i, _)) = best else { break };
            let Some(t) = index.get(k) else { break };
            let start = removed.get(k).copied().unwrap_or(0);
            // Remove everything of this stream up to and including i.
            for s in t.segments.range(start..=i) {
                if s.location == Location::Local {
                    total = total.saturating_sub(s.size);
                }
                out.segments.push((k.clone(), s.clone()));
            }
            removed.insert(k, i + 1);
        }
    }
    // Init segments no remaining segment uses, of sessions not recording.
    for (key, t) in index {
        let start = removed.get(key).copied().unwrap_or(0);
        let used: HashSet<(i64, u32)> = t
            .segments
            .range(start..)
            .map(|s| (s.name.session, s.name.init))
            .collect();
        for (k, init) in &t.inits {
            if !used.contains(k) && !active.contains(&(key.clone(), k.0)) {
                out.inits.push((key.clone(), *k, init.clone()));
            }
        }
    }
    out
}

fn retention(archive: &Archive, now_ms: i64) {
    let active = archive
        .inner
        .active
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let plan = {
        let idx = read(&archive.inner.index);
        plan_retention(
            &idx,
            &|s| (archive.inner.config.depth)(s),
            archive.inner.config.max_bytes,
            &active,
            now_ms,
        )
    };
    if plan.segments.is_empty() && plan.inits.is_empty() {
        return;
    }
    {
        let mut idx = write(&archive.inner.index);
        for (key, seg) in &plan.segments {
            if let Some(t) = idx.get_mut(key) {
                let at = t.segments.partition_point(|s| s.name < seg.name);
                if t.segments.get(at).is_some_and(|s| s.name == seg.name) {
                    t.segments.remove(at);
                    if seg.location == Location::Local {
                        t.local_bytes = t.local_bytes.saturating_sub(seg.size);
                    }
                }
            }
        }
        for (key, k, _) in &plan.inits {
            if let Some(t) = idx.get_mut(key) {
                t.inits.remove(k);
            }
        }
        idx.retain(|_, t| !t.segments.is_empty() || !t.inits.is_empty());
    }
    let mut freed = 0u64;
    for (key, seg) in &plan.segments {
        if seg.location == Location::Local {
            let _ = std::fs::remove_file(archive.segment_path(key, &seg.name));
            freed = freed.saturating_add(seg.size);
        }
        archive
            .inner
            .stats
            .segments_expired
            .fetch_add(1, Ordering::Relaxed);
    }
    for (key, (session, n), init) in &plan.inits {
        if init.location == Location::Local {
            let _ = std::fs::remove_file(archive.init_path(key, *session, *n));
        }
    }
    let cur = archive.inner.local_bytes.load(Ordering::Relaxed);
    archive
        .inner
        .local_bytes
        .store(cur.saturating_sub(freed), Ordering::Relaxed);
    tracing::debug!(segments = plan.segments.len(), freed, "archive retention");
}
