//! [`RemoteSettings`]: stream settings of a control plane in another
//! process, kept current over HTTP.
//!
//! [`RemoteSettings::connect`] loads `GET /api/v1/settings`, then a
//! background task follows `GET /api/v1/changes` (Server-Sent Events, see
//! the feed description on [`ControlPlane`](crate::ControlPlane)'s
//! `/changes` route in the OpenAPI document). When the stream breaks (the
//! control plane restarts, the network drops, nothing arrives for
//! [`RemoteConfig::idle_timeout`]) it reconnects with exponential backoff
//! and `Last-Event-ID`, so the changes it missed are replayed, or a
//! snapshot is sent and the difference to what it had is announced as
//! created / updated / deleted changes. A key rotation missed during a
//! snapshot resync is not announced (the settings do not show it).
//!
//! Plain `http://` only (this crate carries no TLS stack): run nodes and
//! the control plane on a private network or behind a local TLS proxy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::plane::{ChangeKind, StreamChange, StreamSettings};
use crate::provision::SettingsSource;
use crate::sse::{SseEvent, SseParser};

/// Largest snapshot body or single event accepted (16 MiB).
const MAX_BODY: usize = 16 << 20;

/// Where and how to follow a control plane.
#[derive(Clone)]
pub struct RemoteConfig {
    /// The control plane's base URL, `http://host:port` (the API is at
    /// `/api/v1` below it).
    pub url: String,
    /// The node token (or the admin token).
    pub token: String,
    /// First reconnect delay (200 ms); doubles per failed attempt.
    pub min_backoff: Duration,
    /// Longest reconnect delay (10 s).
    pub max_backoff: Duration,
    /// Reconnect when nothing (not even a keep-alive) arrives for this
    /// long (30 s; the control plane sends a keep-alive every 10 s).
    pub idle_timeout: Duration,
    /// Deadline of the connection and of the snapshot request (5 s).
    pub request_timeout: Duration,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &self.url)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("idle_timeout", &self.idle_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl RemoteConfig {
    /// Defaults for the control plane at `url` with `token`.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        RemoteConfig {
            url: url.into(),
            token: token.into(),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(5),
        }
    }
}

struct Shared {
    settings: RwLock<HashMap<String, StreamSettings>>,
    /// The feed version the settings are at.
    version: Mutex<String>,
    changes: broadcast::Sender<StreamChange>,
    connected: AtomicBool,
    connects: AtomicU64,
}

struct Follower {
    shared: Arc<Shared>,
    cfg: RemoteConfig,
    settings_uri: Uri,
    changes_uri: Uri,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// Aborts the follower task when the last handle goes.
struct TaskGuard(tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The settings of a remote control plane, kept current by a background
/// task. Cheap to clone; the task stops when the last clone is dropped.
#[derive(Clone)]
pub struct RemoteSettings {
    shared: Arc<Shared>,
    _task: Arc<TaskGuard>,
}

impl std::fmt::Debug for RemoteSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSettings")
            .field("version", &self.version())
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RemoteSettings {
    /// Loads the snapshot (an error if the control plane is unreachable,
    /// refuses the token or answers garbage) and starts following the
    /// change feed. Needs a Tokio runtime.
    pub async fn connect(cfg: RemoteConfig) -> Result<RemoteSettings> {
        let remote = |reason: String| Error::Remote {
            url: cfg.url.clone(),
            status: None,
            reason,
        };
        let base = cfg.url.trim_end_matches('/');
        let parse = |path: &str| -> Result<Uri> {
            let uri: Uri = format!("{base}/api/v1{path}")
                .parse()
                .map_err(|e| remote(format!("bad URL: {e}")))?;
            if uri.scheme_str() != Some("http") || uri.host().is_none() {
                return Err(remote(
                    "only http://host[:port] is supported (no TLS stack)".into(),
                ));
            }
            Ok(uri)
        };
        let settings_uri = parse("/settings")?;
        let changes_uri = parse("/changes")?;
        if cfg.token.is_empty() || cfg.token.len() > 256 {
            return Err(remote("token must be 1 to 256 characters".into()));
        }
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(cfg.request_timeout));
        conn.set_nodelay(true);
        let (changes, _) = broadcast::channel(1024);
        let f = Follower {
            shared: Arc::new(Shared {
                settings: RwLock::new(HashMap::new()),
                version: Mutex::new(String::new()),
                changes,
                connected: AtomicBool::new(false),
                connects: AtomicU64::new(0),
            }),
            settings_uri,
            changes_uri,
            client: Client::builder(TokioExecutor::new()).build(conn),
            cfg,
        };
        let (version, map) = f.snapshot().await?;
        *lock(&f.shared.version) = version;
        *f.shared
            .settings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = map;
        let shared = f.shared.clone();
        let task = tokio::spawn(f.run());
        Ok(RemoteSettings {
            shared,
            _task: Arc::new(TaskGuard(task)),
        })
    }

    /// The settings of stream `name`, from memory.
    pub fn settings(&self, name: &str) -> Option<StreamSettings> {
        self.shared
            .settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Change notifications, as [`ControlPlane::subscribe_changes`](crate::ControlPlane::subscribe_changes).
    pub fn subscribe_changes(&self) -> broadcast::Receiver<StreamChange> {
        self.shared.changes.subscribe()
    }

    /// The names of all known streams.
    pub fn stream_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .shared
            .settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// The feed version the settings are at (`<epoch>-<seq>`).
    pub fn version(&self) -> String {
        lock(&self.shared.version).clone()
    }

    /// Whether the change stream is open right now.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// How many times the change stream was opened (1 after the first
    /// connection; more after reconnects).
    pub fn connects(&self) -> u64 {
        self.shared.connects.load(Ordering::Relaxed)
    }
}

impl SettingsSource for RemoteSettings {
    fn settings(&self, name: &str) -> Option<StreamSettings> {
        RemoteSettings::settings(self, name)
    }
    fn subscribe_changes(&self) -> broadcast::Receiver<StreamChange> {
        RemoteSettings::subscribe_changes(self)
    }
}

#[derive(serde::Deserialize)]
struct SnapshotJson {
    version: String,
    streams: HashMap<String, StreamSettings>,
}

#[derive(serde::Deserialize)]
struct ChangeJson {
    name: String,
    kind: ChangeKind,
    settings: Option<StreamSettings>,
}

impl Follower {
    fn err(&self, status: Option<u16>, reason: impl Into<String>) -> Error {
        Error::Remote {
            url: self.cfg.url.clone(),
            status,
            reason: reason.into(),
        }
    }

    fn request(&self, uri: &Uri, accept: &'static str) -> Result<hyper::Request<Empty<Bytes>>> {
        let mut b = hyper::Request::get(uri.clone())
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.cfg.token),
            )
            .header(hyper::header::ACCEPT, accept);
        let last = lock(&self.shared.version).clone();
        if accept == "text/event-stream" && !last.is_empty() {
            b = b.header("last-event-id", last);
        }
        b.body(Empty::new())
            .map_err(|e| self.err(None, format!("request: {e}")))
    }

    /// `GET /settings`, validated.
    async fn snapshot(&self) -> Result<(String, HashMap<String, StreamSettings>)> {
        let req = self.request(&self.settings_uri, "application/json")?;
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| self.err(None, format!("unreachable: {e}")))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| self.err(Some(status.as_u16()), format!("body: {e}")))?
                .to_bytes();
            if !status.is_success() {
                return Err(self.err(
                    Some(status.as_u16()),
                    format!("GET /settings answered {status}"),
                ));
            }
            let s: SnapshotJson = serde_json::from_slice(&body)
                .map_err(|e| self.err(None, format!("bad snapshot: {e}")))?;
            check_snapshot(s).map_err(|r| self.err(None, r))
        };
        tokio::time::timeout(self.cfg.request_timeout, fut)
            .await
            .map_err(|_| self.err(None, "snapshot timed out"))?
    }

    async fn run(self) {
        let mut backoff = self.cfg.min_backoff;
        loop {
            let opened = match self.follow().await {
                Ok(()) => {
                    tracing::info!(url = %self.cfg.url, "control plane change stream ended");
                    true
                }
                Err((opened, e)) => {
                    tracing::warn!(error = %e, "control plane change stream");
                    opened
                }
            };
            self.shared.connected.store(false, Ordering::Relaxed);
            if opened {
                backoff = self.cfg.min_backoff;
            }
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2).min(self.cfg.max_backoff);
        }
    }

    /// One connection of the change stream, until it ends. The error says
    /// whether the stream was open (to reset the backoff).
    async fn follow(&self) -> std::result::Result<(), (bool, Error)> {
        let req = self
            .request(&self.changes_uri, "text/event-stream")
            .map_err(|e| (false, e))?;
        let resp = tokio::time::timeout(self.cfg.request_timeout, self.client.request(req))
            .await
            .map_err(|_| (false, self.err(None, "change stream: connect timed out")))?
            .map_err(|e| (false, self.err(None, format!("unreachable: {e}"))))?;
        let status = resp.status();
        let ct_ok = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !status.is_success() || !ct_ok {
            return Err((
                false,
                self.err(
                    Some(status.as_u16()),
                    format!("GET /changes answered {status} (event stream: {ct_ok})"),
                ),
            ));
        }
        self.shared.connected.store(true, Ordering::Relaxed);
        self.shared.connects.fetch_add(1, Ordering::Relaxed);
        let mut body = resp.into_body();
        let mut parser = SseParser::new(MAX_BODY);
        let mut events = Vec::new();
        loop {
            let frame = match tokio::time::timeout(self.cfg.idle_timeout, body.frame()).await {
                Err(_) => return Err((true, self.err(None, "change stream idle, reconnecting"))),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => return Err((true, self.err(None, format!("read: {e}")))),
                Ok(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            parser
                .feed(&data, &mut events)
                .map_err(|_| (true, self.err(None, "event over the size cap")))?;
            for ev in events.drain(..) {
                self.apply(ev).map_err(|e| (true, e))?;
            }
        }
    }

    fn apply(&self, ev: SseEvent) -> Result<()> {
        match ev.event.as_str() {
            "change" => {
                let c: ChangeJson = serde_json::from_str(&ev.data)
                    .map_err(|e| self.err(None, format!("bad change event: {e}")))?;
                crate::validate::stream_name(&c.name)
                    .map_err(|e| self.err(None, format!("change event: {e}")))?;
                {
                    let mut map = self
                        .shared
                        .settings
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    match (c.kind, c.settings) {
                        (ChangeKind::Deleted, _) => {
                            map.remove(&c.name);
                        }
                        (_, Some(s)) => {
                            map.insert(c.name.clone(), s);
                        }
                        (_, None) => {}
                    }
                }
                if let Some(id) = ev.id {
                    *lock(&self.shared.version) = id;
                }
                let _ = self.shared.changes.send(StreamChange {
                    name: c.name,
                    kind: c.kind,
                });
            }
            "snapshot" => {
                let s: SnapshotJson = serde_json::from_str(&ev.data)
                    .map_err(|e| self.err(None, format!("bad snapshot event: {e}")))?;
                let (version, new) = check_snapshot(s).map_err(|r| self.err(None, r))?;
                let diff = {
                    let mut map = self
                        .shared
                        .settings
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let diff = diff(&map, &new);
                    *map = new;
                    diff
                };
                *lock(&self.shared.version) = version;
                for c in diff {
                    let _ = self.shared.changes.send(c);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn check_snapshot(
    s: SnapshotJson,
) -> std::result::Result<(String, HashMap<String, StreamSettings>), String> {
    for name in s.streams.keys() {
        crate::validate::stream_name(name).map_err(|e| format!("snapshot: {e}"))?;
    }
    if s.version.is_empty() || s.version.len() > 64 {
        return Err("snapshot: bad version".into());
    }
    Ok((s.version, s.streams))
}

/// The changes that turn `old` into `new`, sorted by name.
fn diff(
    old: &HashMap<String, StreamSettings>,
    new: &HashMap<String, StreamSettings>,
) -> Vec<StreamChange> {
    let mut out: Vec<StreamChange> = Vec::new();
    for (name, s) in new {
        let kind = match old.get(name) {
            None => ChangeKind::Created,
            Some(o) if o != s => ChangeKind::Updated,
            Some(_) => continue,
        };
        out.push(StreamChange {
            name: name.clone(),
            kind,
        });
    }
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        out.push(StreamChange {
            name: name.clone(),
            kind: ChangeKind::Deleted,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
