//! DVR replication between origins over HTTP: the routes an origin
//! answers its peers on ([`router`]) and the loop that fills its archive's
//! holes from them ([`DvrSync`]); the decisions are sans-IO in
//! [`ugc_dvr::replica`].
//!
//! | route (`Authorization: Bearer <node token>`) | answer |
//! |---|---|
//! | `GET /dvr/v1/tracks` | `text/plain`: `<app>/<stream> <rendition>` per archived track |
//! | `GET /dvr/v1/index/<app>/<stream>/<rendition>?from=<unix ms>` | `text/plain`: `<file> <size>` per init segment and segment ending after `from` ([`ugc_dvr::replica::render_listing`]) |
//! | `GET /dvr/v1/file/<app>/<stream>/<rendition>/<file>` | the file's bytes, `x-ugc-sha256: <hex>` of them |
//! | `GET /dvr/v1/deleted` | `text/plain`: `<app>/<stream> <from ms> <to ms>` per span of recordings deleted on request ([`ugc_dvr::replica::render_deleted`]) |
//!
//! A recording deleted on one origin stays deleted on all: a round first
//! applies the peer's deleted spans here ([`Archive::delete_span`]), and
//! never copies a peer segment inside a span deleted here
//! ([`ugc_dvr::replica::without_deleted`]), so an origin that was down
//! while a recording was deleted loses it when it is back instead of
//! bringing it back to the other.
//!
//! A fetched file enters the archive only when its length is the size the
//! listing gave and its SHA-256 the one its peer read from disk; anything
//! else is counted as rejected and asked again next round. Fetches are
//! paced ([`SyncConfig::bytes_per_s`]) and run one at a time, so a restore
//! never takes the bandwidth or the disk that live delivery needs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};
use ugc_core::StreamPath;
use ugc_core::metrics::{Exposition, Family};
use ugc_dvr::archive::names::{SegmentName, parse_init_name};
use ugc_dvr::archive::{Archive, TrackKey, now_unix_ms};
use ugc_dvr::replica::{self, Pacer, PeerFile, Window};

/// Response header with the hex SHA-256 of a file's bytes.
pub const SHA256_HEADER: &str = "x-ugc-sha256";

/// Bytes a listing answer may have.
const MAX_LISTING_BYTES: usize = 64 << 20;
/// Bytes a fetched file may have.
const MAX_FILE_BYTES: u64 = 256 << 20;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Served {
    archive: Archive,
    token: [u8; 32],
}

fn text(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The answer to a request without the node token, `None` with it.
fn refused(s: &Served, headers: &HeaderMap) -> Option<Response> {
    if crate::relay::server::bearer_is(headers, &s.token) {
        return None;
    }
    let mut r = text(StatusCode::UNAUTHORIZED, "node token required\n".into());
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(r)
}

fn track(app: &str, name: &str, rendition: &str) -> Option<TrackKey> {
    StreamPath::new(app, name)
        .ok()
        .filter(|s| s.rendition().is_none())
        .and_then(|s| TrackKey::rendition(&s, rendition))
}

fn bad_track() -> Response {
    text(StatusCode::BAD_REQUEST, "bad stream or rendition\n".into())
}

/// The routes an origin answers its peers on, for `archive`, to holders of
/// the node token `token`.
pub fn router(archive: Archive, token: &str) -> Router {
    let served = Arc::new(Served {
        archive,
        token: crate::relay::server::digest(token),
    });
    Router::new()
        .route("/dvr/v1/tracks", get(tracks))
        .route("/dvr/v1/index/{app}/{name}/{rendition}", get(index))
        .route("/dvr/v1/file/{app}/{name}/{rendition}/{file}", get(file))
        .route("/dvr/v1/deleted", get(deleted))
        .with_state(served)
}

async fn deleted(State(s): State<Arc<Served>>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    let body: String = s
        .archive
        .deleted()
        .iter()
        .map(|(stream, from, to)| replica::render_deleted(stream, *from, *to))
        .collect();
    text(StatusCode::OK, body)
}

async fn tracks(State(s): State<Arc<Served>>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    let body: String = s.archive.keys().iter().map(replica::render_track).collect();
    text(StatusCode::OK, body)
}

async fn index(
    State(s): State<Arc<Served>>,
    Path((app, name, rendition)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    let Some(key) = track(&app, &name, &rendition) else {
        return bad_track();
    };
    let from = match q
        .as_deref()
        .map(|q| q.split('&').find_map(|kv| kv.strip_prefix("from=")))
    {
        None | Some(None) => i64::MIN,
        Some(Some(v)) => match v.parse() {
            Ok(v) => v,
            Err(_) => return text(StatusCode::BAD_REQUEST, "bad from\n".into()),
        },
    };
    let body = s.archive.with_index(&key, |i| {
        let i = i?;
        let segments: Vec<(SegmentName, u64)> = i
            .segments
            .iter()
            .filter(|seg| seg.name.end_ms() > from)
            .map(|seg| (seg.name, seg.size))
            .collect();
        let used: std::collections::BTreeSet<(i64, u32)> =
            segments.iter().map(|(n, _)| (n.session, n.init)).collect();
        let inits: Vec<(i64, u32, u64)> = i
            .inits
            .iter()
            .filter(|(k, _)| used.contains(k))
            .map(|(&(session, n), init)| (session, n, init.size))
            .collect();
        Some(replica::render_listing(&inits, &segments))
    });
    match body {
        Some(b) => text(StatusCode::OK, b),
        None => text(StatusCode::NOT_FOUND, "no such track\n".into()),
    }
}

async fn file(
    State(s): State<Arc<Served>>,
    Path((app, name, rendition, file)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    let Some(key) = track(&app, &name, &rendition) else {
        return bad_track();
    };
    let path = if let Some(n) = SegmentName::parse(&file) {
        s.archive.segment_file(&key, &n).await
    } else if let Some((session, n)) = parse_init_name(&file) {
        s.archive.init_file(&key, session, n).await
    } else {
        return text(StatusCode::BAD_REQUEST, "not an archive file\n".into());
    };
    let path = match path {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return text(StatusCode::NOT_FOUND, "no such file\n".into());
        }
        Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    };
    let read = tokio::task::spawn_blocking(move || {
        std::fs::read(path).map(|b| {
            let sum = hex(&Sha256::digest(&b));
            (b, sum)
        })
    })
    .await;
    match read {
        Ok(Ok((bytes, sum))) => {
            let mut r = Response::new(Body::from(bytes));
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(v) = HeaderValue::from_str(&sum) {
                h.insert(SHA256_HEADER, v);
            }
            r
        }
        Ok(Err(e)) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// How an origin fills its archive from its peers.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// The node token the peers' routes want.
    pub token: String,
    /// A round over every peer this often.
    pub every: Duration,
    /// Peer segments that ended less than this ago are left: the live edge
    /// is being recorded here too. Default 10 s.
    pub settle: Duration,
    /// Fetch rate (bytes per second; 0: unpaced). Default 8 MB/s.
    pub bytes_per_s: u64,
    /// Bytes one track takes at most per round (the rest next round), so
    /// one long hole does not hold back the others. Default 256 MB.
    pub round_bytes: u64,
    /// This origin's own URL among the peers (skipped).
    pub own_url: Option<String>,
}

impl SyncConfig {
    /// Defaults with the node token `token`.
    pub fn new(token: impl Into<String>) -> Self {
        SyncConfig {
            token: token.into(),
            every: Duration::from_secs(10),
            settle: Duration::from_secs(10),
            bytes_per_s: 8_000_000,
            round_bytes: 256 << 20,
            own_url: None,
        }
    }
}

/// Counters of a [`DvrSync`].
#[derive(Debug, Default)]
pub struct SyncStats {
    /// Rounds over the peers finished.
    pub rounds: AtomicU64,
    /// Files (segments and init segments) copied in.
    pub files: AtomicU64,
    /// Bytes copied in.
    pub bytes: AtomicU64,
    /// Files refused: size or SHA-256 not the peer's.
    pub rejected: AtomicU64,
    /// Peer requests that failed (unreachable, an error status, a bad
    /// listing, a write error here).
    pub errors: AtomicU64,
    /// Peer segments skipped for an init segment of another size here.
    pub conflicts: AtomicU64,
    /// Peer segments of another session past this origin's live
    /// recording, left ([`replica::Window::recording`]); counted each
    /// round until the recording covers their time.
    pub past_live_edge: AtomicU64,
}

/// The replication loop of one origin; see the [module docs](self).
#[derive(Clone)]
pub struct DvrSync {
    archive: Archive,
    config: Arc<SyncConfig>,
    stats: Arc<SyncStats>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl std::fmt::Debug for DvrSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DvrSync")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

enum Fetched {
    Ok(Bytes),
    Rejected(String),
}

impl DvrSync {
    /// A loop filling `archive` from peers.
    pub fn new(archive: Archive, config: SyncConfig) -> Self {
        DvrSync {
            archive,
            config: Arc::new(config),
            stats: Arc::default(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// This origin's own URL among the peers, skipped (known once it
    /// registered).
    pub fn with_own_url(mut self, url: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config).own_url = Some(url.into());
        self
    }

    /// Counters.
    pub fn stats(&self) -> &SyncStats {
        &self.stats
    }

    /// `ugc_dvr_sync_{rounds,files,bytes,rejected,errors,conflicts,past_live_edge}_total`.
    pub fn write_metrics(&self, m: &mut Exposition) {
        let f: &[Family<SyncStats>] = &[
            Family::counter(
                "ugc_dvr_sync_rounds_total",
                "DVR replication rounds over the peer origins.",
                |s| s.rounds.load(Ordering::Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_sync_files_total",
                "Archive files copied in from peer origins.",
                |s| s.files.load(Ordering::Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_sync_bytes_total",
                "Bytes copied in from peer origins.",
                |s| s.bytes.load(Ordering::Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_sync_rejected_total",
                "Files from peer origins refused: size or SHA-256 not the listed ones.",
                |s| s.rejected.load(Ordering::Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_sync_errors_total",
                "DVR replication requests that failed.",
                |s| s.errors.load(Ordering::Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_sync_conflicts_total",
                "Peer segments skipped: an init segment of the same name and another size here.",
                |s| s.conflicts.load(Ordering::Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_sync_past_live_edge_total",
                "Peer segments of another recording session past this origin's live recording, \
                 left (the same stream dated otherwise); counted each round.",
                |s| s.past_live_edge.load(Ordering::Relaxed) as f64,
            ),
        ];
        m.families(f, std::slice::from_ref(&*self.stats), |_| Vec::new());
    }

    /// Rounds every [`SyncConfig::every`] over the peers `peers` names
    /// (origin URLs, `http://host:port`; this origin's own skipped), for as
    /// long as the sender lives. The first round starts at once (after a
    /// restart the holes are filled first).
    pub async fn run(self, mut peers: tokio::sync::watch::Receiver<Vec<String>>) {
        let mut pacer = Pacer::new(self.config.bytes_per_s);
        loop {
            let list: Vec<String> = peers
                .borrow_and_update()
                .iter()
                .filter(|p| {
                    Some(p.trim_end_matches('/'))
                        != self
                            .config
                            .own_url
                            .as_deref()
                            .map(|u| u.trim_end_matches('/'))
                })
                .cloned()
                .collect();
            for peer in &list {
                if let Err(why) = self.round(peer, &mut pacer).await {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, error = %why, "dvr sync: peer round failed");
                }
            }
            self.stats.rounds.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = tokio::time::sleep(self.config.every) => {}
                changed = peers.changed() => if changed.is_err() { return },
            }
        }
    }

    /// One round with `peer`: every track it lists that this archive keeps.
    pub async fn round(&self, peer: &str, pacer: &mut Pacer) -> Result<(), String> {
        let base = peer.trim_end_matches('/');
        // Deletions first: what the peer deleted goes here too.
        match self.get_text(&format!("{base}/dvr/v1/deleted")).await {
            Ok(text) => self.apply_deleted(peer, &text).await,
            Err(why) => tracing::debug!(%peer, error = %why, "dvr sync: no deletions listed"),
        }
        let listing = self.get_text(&format!("{base}/dvr/v1/tracks")).await?;
        for key in replica::parse_tracks(&listing) {
            let depth = self.archive.depth_hours(&key.stream);
            if depth == 0 {
                continue;
            }
            let now = now_unix_ms();
            let window = Window {
                from_ms: now.saturating_sub(i64::from(depth) * 3_600_000),
                settle_before_ms: now.saturating_sub(
                    i64::try_from(self.config.settle.as_millis()).unwrap_or(i64::MAX),
                ),
                recording: self.archive.current_session(&key),
            };
            if let Err(why) = self.track(base, &key, window, pacer).await {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, stream = %key.stream, rendition = %key.rendition,
                    error = %why, "dvr sync: track failed");
            }
        }
        Ok(())
    }

    /// Deletes here what `peer` lists as deleted and is not yet deleted
    /// here (a span no local span covers).
    async fn apply_deleted(&self, peer: &str, text: &str) {
        for (stream, from, to) in replica::parse_deleted(text) {
            let known = self
                .archive
                .deleted_spans(&stream)
                .iter()
                .any(|&(f, t)| f <= from && to <= t);
            if known {
                continue;
            }
            let archive = self.archive.clone();
            let s = stream.clone();
            let done = tokio::task::spawn_blocking(move || archive.delete_span(&s, from, to)).await;
            match done {
                Ok(Ok(n)) => {
                    tracing::info!(%peer, %stream, from, to, recordings = n,
                        "dvr sync: a recording deleted on a peer is deleted here too");
                }
                Ok(Err(e)) => {
                    tracing::warn!(%peer, %stream, from, to, error = %e,
                        "dvr sync: applying a peer's deletion");
                }
                Err(e) => tracing::warn!(error = %e, "dvr sync: deletion task"),
            }
        }
    }

    async fn track(
        &self,
        base: &str,
        key: &TrackKey,
        window: Window,
        pacer: &mut Pacer,
    ) -> Result<(), String> {
        let dir = format!(
            "{}/{}/{}",
            key.stream.app(),
            key.stream.name(),
            key.rendition
        );
        let listing = self
            .get_text(&format!(
                "{base}/dvr/v1/index/{dir}?from={}",
                window.from_ms
            ))
            .await?;
        let files = replica::parse_listing(&listing).map_err(|e| format!("listing: {e}"))?;
        let files = replica::without_deleted(files, &self.archive.deleted_spans(&key.stream));
        let plan = self.archive.with_index(key, |i| {
            replica::plan(i, &files, window, self.config.round_bytes)
        });
        if plan.past_live_edge > 0 {
            self.stats
                .past_live_edge
                .fetch_add(plan.past_live_edge as u64, Ordering::Relaxed);
            tracing::debug!(stream = %key.stream, rendition = %key.rendition,
                left = plan.past_live_edge,
                "dvr sync: a peer's other session past the live recording left");
        }
        if plan.conflicts > 0 {
            self.stats
                .conflicts
                .fetch_add(plan.conflicts as u64, Ordering::Relaxed);
            tracing::warn!(stream = %key.stream, rendition = %key.rendition, skipped = plan.conflicts,
                "dvr sync: a peer's init segment has another size under the same name; its segments are not copied");
        }
        if plan.fetch.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let (mut copied, mut bytes) = (0u64, 0u64);
        // Init segments not copied this round: their segments wait too.
        let mut missing = std::collections::BTreeSet::new();
        for f in &plan.fetch {
            if let PeerFile::Segment { name, .. } = f
                && missing.contains(&(name.session, name.init))
            {
                continue;
            }
            if f.size() > MAX_FILE_BYTES {
                // No archive file is that large: refused unread.
                if let PeerFile::Init { session, n, .. } = f {
                    missing.insert((*session, *n));
                }
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %f.file_name(), size = f.size(), "dvr sync: a peer lists a file over {MAX_FILE_BYTES} bytes; refused");
                continue;
            }
            let wait = pacer.reserve(Instant::now(), f.size());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let url = format!("{base}/dvr/v1/file/{dir}/{}", f.file_name());
            let data = match self.fetch(&url, f.size()).await? {
                Fetched::Ok(b) => b,
                Fetched::Rejected(why) => {
                    if let PeerFile::Init { session, n, .. } = f {
                        missing.insert((*session, *n));
                    }
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%url, reason = %why, "dvr sync: file refused; asked again next round");
                    continue;
                }
            };
            let (archive, key2, f2) = (self.archive.clone(), key.clone(), *f);
            let wrote = tokio::task::spawn_blocking(move || match f2 {
                PeerFile::Init { session, n, .. } => archive.import_init(&key2, session, n, &data),
                PeerFile::Segment { name, .. } => archive.import_segment(&key2, &name, &data),
            })
            .await
            .map_err(|e| e.to_string())?;
            match wrote {
                Ok(()) => {
                    copied += 1;
                    bytes += f.size();
                    self.stats.files.fetch_add(1, Ordering::Relaxed);
                    self.stats.bytes.fetch_add(f.size(), Ordering::Relaxed);
                }
                Err(e) => {
                    if let PeerFile::Init { session, n, .. } = f {
                        missing.insert((*session, *n));
                    }
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%url, error = %e, "dvr sync: import failed");
                }
            }
        }
        tracing::info!(stream = %key.stream, rendition = %key.rendition, peer = %base, files = copied, bytes,
            secs = started.elapsed().as_secs_f32(), "dvr sync: archive hole filled from a peer");
        Ok(())
    }

    async fn request(&self, url: &str) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let req = hyper::Request::get(url)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.config.token),
            )
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if resp.status() != StatusCode::OK {
            return Err(format!("{url}: status {}", resp.status()));
        }
        Ok(resp)
    }

    async fn get_text(&self, url: &str) -> Result<String, String> {
        let resp = self.request(url).await?;
        let body = tokio::time::timeout(
            Duration::from_secs(30),
            Limited::new(resp.into_body(), MAX_LISTING_BYTES).collect(),
        )
        .await
        .map_err(|_| format!("{url}: body timed out"))?
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| format!("{url}: not UTF-8"))
    }

    async fn fetch(&self, url: &str, size: u64) -> Result<Fetched, String> {
        let resp = self.request(url).await?;
        let want = resp
            .headers()
            .get(SHA256_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let limit = usize::try_from(size.min(MAX_FILE_BYTES)).unwrap_or(usize::MAX);
        // One byte over the listed size is enough to know it is wrong.
        let body = tokio::time::timeout(
            Duration::from_secs(60),
            Limited::new(resp.into_body(), limit.saturating_add(1)).collect(),
        )
        .await;
        let body = match body {
            Err(_) => return Err(format!("{url}: body timed out")),
            Ok(Err(e)) => return Ok(Fetched::Rejected(format!("body: {e}"))),
            Ok(Ok(b)) => b.to_bytes(),
        };
        Ok(verify(body, size, want.as_deref()))
    }
}

/// A fetched file against its listed size and its peer's SHA-256.
fn verify(body: Bytes, size: u64, sha256: Option<&str>) -> Fetched {
    if body.len() as u64 != size {
        return Fetched::Rejected(format!("{} bytes, listed {size}", body.len()));
    }
    let Some(want) = sha256 else {
        return Fetched::Rejected("no SHA-256".into());
    };
    let got = hex(&Sha256::digest(&body));
    if got != want {
        return Fetched::Rejected(format!("SHA-256 {got}, peer read {want}"));
    }
    Fetched::Ok(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn files_of_another_size_or_digest_are_refused() {
        let b = Bytes::from_static(b"segment bytes");
        let sum = hex(&Sha256::digest(&b));
        assert!(matches!(verify(b.clone(), 13, Some(&sum)), Fetched::Ok(_)));
        assert!(matches!(
            verify(b.slice(..12), 13, Some(&sum)),
            Fetched::Rejected(_)
        ));
        assert!(matches!(verify(b.clone(), 13, None), Fetched::Rejected(_)));
        let mut flipped = b.to_vec();
        flipped[3] ^= 1;
        assert!(matches!(
            verify(Bytes::from(flipped), 13, Some(&sum)),
            Fetched::Rejected(_)
        ));
    }
}
