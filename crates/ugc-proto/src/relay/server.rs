//! The serving side of the relay over HTTP (axum): `GET /relay/v1/...`.
//!
//! | request | answer |
//! |---|---|
//! | `GET /relay/v1/<name>[/<rendition>][?app=<app>][&window=<id>&from=<seq>]`, `Authorization: Bearer <node token>` | `200`, `Content-Type: video/mp4`, one long-lived body: the relay stream of Hub stream `<app>/<name>[/<rendition>]` ([`crate::relay`] wire format) |
//! | `POST` of the same path with a relay stream as the body (push), `[&role=backup]` | the stream is published into the Hub (each push a new publisher: a reconnect is one discontinuity), as its backup source with `role=backup` (a second publishing point's stream, standing by while a main push lives); `204` after its end, `400` malformed, `409` stale epoch or taken over |
//! | no or another token | `401` (compared in constant time) |
//! | a stream the Hub does not have | `404` |
//! | a malformed name or query | `400` |
//!
//! `app` defaults to [`ugc_core::DEFAULT_APP`]; a stream of another app
//! names it in the query, so the path keeps the contract's shape and is
//! never ambiguous. `window` and `from` resume: the window id of the last
//! hello and the sequence after the last window event received.
//!
//! Per stream one task reads the Hub (a [`ugc_core::HubReader`], which
//! never slows the publisher) into a [`RelayWindow`]; every connection is a
//! cursor into that window with a [`RelayWriter`] of its own. A connection
//! whose position left the window (the puller is slower than the stream)
//! skips to the newest keyframe with one discontinuity, counted in
//! [`RelayStats::skips`]. The task ends with the stream, or when no
//! connection has used the window for [`RelayServerConfig::linger`].

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use ugc_core::metrics::{Exposition, Kind, RecentMax};
use ugc_core::{
    DEFAULT_APP, DiscontinuityReason, Hub, HubPublisher, HubReader, MediaEvent, Sink, SourceRole,
    StreamPath,
};

use super::window::{Next, RelayWindow, Start, WindowConfig};
use super::{Hello, RelayEvent, RelayReader, RelayWriter};

/// Settings of a [`RelayServer`].
#[derive(Debug, Clone)]
pub struct RelayServerConfig {
    /// The node token pullers must present.
    pub token: String,
    /// The lease epoch stated to pullers ([`RelayServer::set_epoch`]
    /// changes it).
    pub epoch: u64,
    /// Bounds of each stream's window.
    pub window: WindowConfig,
    /// An idle connection gets a keepalive box this often.
    pub keepalive: Duration,
    /// A stream's window outlives its last connection this long (so a
    /// reconnect can resume).
    pub linger: Duration,
}

impl RelayServerConfig {
    /// Defaults with `token`: epoch 0, default window, keepalive 2 s,
    /// linger 30 s.
    pub fn new(token: impl Into<String>) -> Self {
        RelayServerConfig {
            token: token.into(),
            epoch: 0,
            window: WindowConfig::default(),
            keepalive: Duration::from_secs(2),
            linger: Duration::from_secs(30),
        }
    }
}

/// Counters of a [`RelayServer`] (all streams).
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Connections served (authorized, stream found).
    pub connections: AtomicU64,
    /// Connections that resumed where the puller asked.
    pub resumed: AtomicU64,
    /// Requests refused with `401`.
    pub unauthorized: AtomicU64,
    /// Times a slow connection skipped to the newest keyframe.
    pub skips: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
}

/// Serves Hub streams to relay pullers. Cheap to clone.
#[derive(Clone)]
pub struct RelayServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RelayServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayServer")
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

struct Inner {
    hub: Hub,
    token: [u8; 32],
    epoch: AtomicU64,
    config: RelayServerConfig,
    streams: Mutex<HashMap<StreamPath, Arc<Shared>>>,
    stats: RelayStats,
    windows: AtomicU64,
    /// Highest epoch a pusher stated, per stream.
    push_epochs: Mutex<HashMap<StreamPath, u64>>,
}

/// One stream's window and the connections on it.
struct Shared {
    window: Mutex<RelayWindow>,
    notify: Notify,
    /// Connections attached (changed under the registry lock).
    conns: AtomicUsize,
    /// When the last connection left.
    idle_since: Mutex<Instant>,
    /// Bumped by [`RelayServer::disconnect`]: connections of an older
    /// generation end.
    generation: AtomicU64,
    /// The Hub stream ended (the window holds its end); kept for resumes.
    ended: AtomicBool,
    /// The largest lag of a connection about to send (media time behind
    /// the newest frame), recently: `ugc_relay_lag_seconds`.
    lag: Mutex<RecentMax>,
}

impl Shared {
    fn window(&self) -> MutexGuard<'_, RelayWindow> {
        // The window is consistent after every call; a panic elsewhere
        // while holding it leaves it usable.
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant-time equality of two digests (no early exit).
pub(crate) fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Whether `headers` carry `Authorization: Bearer <t>` with `t` the node
/// token of digest `token` (compared in constant time).
pub(crate) fn bearer_is(headers: &axum::http::HeaderMap, token: &[u8; 32]) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(digest)
        .is_some_and(|d| same(&d, token))
}

impl RelayServer {
    /// A server of `hub`'s streams.
    pub fn new(hub: Hub, config: RelayServerConfig) -> Self {
        RelayServer {
            inner: Arc::new(Inner {
                hub,
                token: digest(&config.token),
                epoch: AtomicU64::new(config.epoch),
                config,
                streams: Mutex::new(HashMap::new()),
                stats: RelayStats::default(),
                windows: AtomicU64::new(0),
                push_epochs: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The epoch stated to new connections.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Relaxed)
    }

    /// States `epoch` to connections from now on (a new lease).
    pub fn set_epoch(&self, epoch: u64) {
        self.inner.epoch.store(epoch, Ordering::Relaxed);
    }

    /// The counters.
    pub fn stats(&self) -> &RelayStats {
        &self.inner.stats
    }

    /// Ends every connection on `stream` now (their pullers reconnect and
    /// resume); e.g. when this node loses the stream's lease.
    pub fn disconnect(&self, stream: &StreamPath) {
        if let Some(s) = self.inner.registry().get(stream) {
            s.generation.fetch_add(1, Ordering::Relaxed);
            s.notify.notify_waiters();
        }
    }

    /// Connections attached to `stream` now.
    pub fn connections(&self, stream: &StreamPath) -> usize {
        self.inner
            .registry()
            .get(stream)
            .map_or(0, |s| s.conns.load(Ordering::Relaxed))
    }

    /// The router: `GET` (pull) and `POST` (push) of `/relay/v1/{name}` and
    /// `/relay/v1/{name}/{rendition}`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/relay/v1/{name}", get(serve_source).post(receive_source))
            .route(
                "/relay/v1/{name}/{rendition}",
                get(serve_rendition).post(receive_rendition),
            )
            .with_state(self.clone())
    }

    /// Writes the relay counters (`ugc_relay_*`) in Prometheus format.
    pub fn write_metrics(&self, m: &mut Exposition) {
        let s = &self.inner.stats;
        let families: [(&str, &str, &AtomicU64); 5] = [
            (
                "ugc_relay_connections_total",
                "Relay connections served.",
                &s.connections,
            ),
            (
                "ugc_relay_resumed_total",
                "Relay connections that resumed without a gap.",
                &s.resumed,
            ),
            (
                "ugc_relay_unauthorized_total",
                "Relay requests refused for a wrong node token.",
                &s.unauthorized,
            ),
            (
                "ugc_relay_skips_total",
                "Times a slow relay connection skipped to the newest keyframe.",
                &s.skips,
            ),
            (
                "ugc_relay_bytes_out_total",
                "Relay bytes sent.",
                &s.bytes_out,
            ),
        ];
        for (name, help, v) in families {
            m.family(name, Kind::Counter, help)
                .sample(&[], v.load(Ordering::Relaxed) as f64);
        }
        let now = Instant::now();
        let lags: Vec<(String, f64)> = self
            .inner
            .registry()
            .iter()
            .map(|(path, s)| {
                let lag = s.lag.lock().unwrap_or_else(|p| p.into_inner()).get(now);
                (path.to_string(), lag)
            })
            .collect();
        let family = m.family(
            "ugc_relay_lag_seconds",
            Kind::Gauge,
            "How far the slowest relay connection of a stream was behind its newest frame (media time) when it sent, the largest in the last 10-20 s.",
        );
        for (stream, lag) in lags {
            family.sample(&[("stream", &stream)], lag);
        }
    }
}

impl Inner {
    fn registry(&self) -> MutexGuard<'_, HashMap<StreamPath, Arc<Shared>>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new_window_id(&self) -> u64 {
        // Unique across restarts of this node (the clock) and within one
        // run (the counter): a puller never resumes into another window.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos.wrapping_add(self.windows.fetch_add(1, Ordering::Relaxed))
    }

    /// The stream's window with one more connection on it, starting its
    /// feeding task if needed; `None` if the hub has no such stream. The
    /// window of an ended stream serves only resumes into it (the rest of
    /// the stream and its end); anyone else gets the hub's stream anew.
    fn attach(self: &Arc<Self>, path: &StreamPath, resume: Option<u64>) -> Option<Arc<Shared>> {
        let mut reg = self.registry();
        if let Some(s) = reg.get(path) {
            let ended = s.ended.load(Ordering::Relaxed);
            if !ended || resume == Some(s.window().id()) {
                s.conns.fetch_add(1, Ordering::Relaxed);
                return Some(s.clone());
            }
        }
        let reader = self.hub.subscribe_existing(path)?;
        let shared = Arc::new(Shared {
            window: Mutex::new(RelayWindow::new(
                self.new_window_id(),
                self.config.window.clone(),
            )),
            notify: Notify::new(),
            conns: AtomicUsize::new(1),
            idle_since: Mutex::new(Instant::now()),
            generation: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            lag: Mutex::new(RecentMax::new(LAG_PERIOD)),
        });
        reg.insert(path.clone(), shared.clone());
        tokio::spawn(feed(self.clone(), path.clone(), shared.clone(), reader));
        Some(shared)
    }

    fn detach(&self, shared: &Shared) {
        let _reg = self.registry();
        if shared.conns.fetch_sub(1, Ordering::Relaxed) == 1 {
            *shared.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
    }
}

/// Reads the Hub stream into the window until it ends or nobody used the
/// window for the linger time.
async fn feed(inner: Arc<Inner>, path: StreamPath, shared: Arc<Shared>, mut reader: HubReader) {
    let linger = inner.config.linger;
    let mut tick = tokio::time::interval(
        linger
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(10)),
    );
    loop {
        tokio::select! {
            ev = reader.recv() => {
                let Some(ev) = ev else { break };
                let end = matches!(ev, MediaEvent::End);
                shared.window().push(ev);
                shared.notify.notify_waiters();
                if end {
                    break;
                }
            }
            _ = tick.tick() => {
                let reg = inner.registry();
                let idle = shared.conns.load(Ordering::Relaxed) == 0
                    && shared.idle_since.lock().unwrap_or_else(|p| p.into_inner()).elapsed() >= linger;
                if idle {
                    drop(reg);
                    break;
                }
            }
        }
    }
    // Forget the window (new connections start a new one), unless a newer
    // one took its place already.
    let mut reg = inner.registry();
    if reg.get(&path).is_some_and(|s| Arc::ptr_eq(s, &shared)) {
        reg.remove(&path);
    }
}

async fn serve_source(
    State(server): State<RelayServer>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    serve(server, name, None, req).await
}

async fn serve_rendition(
    State(server): State<RelayServer>,
    Path((name, rendition)): Path<(String, String)>,
    req: Request,
) -> Response {
    serve(server, name, Some(rendition), req).await
}

fn status(code: StatusCode, text: &'static str) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The query: `app`, `window`, `from` (anything else is ignored).
struct Query {
    app: Option<String>,
    window: Option<u64>,
    from: Option<u64>,
    /// A push's source role (`role=main|backup`).
    role: SourceRole,
}

fn parse_query(q: Option<&str>) -> Option<Query> {
    let mut out = Query {
        app: None,
        window: None,
        from: None,
        role: SourceRole::Main,
    };
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "app" => out.app = Some(v.to_owned()),
            "window" => out.window = Some(v.parse().ok()?),
            "from" => out.from = Some(v.parse().ok()?),
            "role" => {
                out.role = match v {
                    "main" => SourceRole::Main,
                    "backup" => SourceRole::Backup,
                    _ => return None,
                }
            }
            _ => {}
        }
    }
    Some(out)
}

/// Checks the token and parses the stream and query: the answer to send
/// instead when they are wrong.
fn check(
    server: &RelayServer,
    name: &str,
    rendition: Option<&str>,
    req: &Request,
) -> Result<(StreamPath, Query), Box<Response>> {
    let inner = &server.inner;
    if !bearer_is(req.headers(), &inner.token) {
        inner.stats.unauthorized.fetch_add(1, Ordering::Relaxed);
        let mut r = status(StatusCode::UNAUTHORIZED, "node token required\n");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Err(Box::new(r));
    }
    let Some(q) = parse_query(req.uri().query()) else {
        return Err(Box::new(status(
            StatusCode::BAD_REQUEST,
            "bad window, from or role\n",
        )));
    };
    let app = q.app.as_deref().unwrap_or(DEFAULT_APP);
    let path = StreamPath::new(app, name).and_then(|p| match rendition {
        Some(r) => p.with_rendition(r),
        None => Ok(p),
    });
    match path {
        Ok(path) => Ok((path, q)),
        Err(_) => Err(Box::new(status(
            StatusCode::BAD_REQUEST,
            "bad stream name\n",
        ))),
    }
}

async fn serve(
    server: RelayServer,
    name: String,
    rendition: Option<String>,
    req: Request,
) -> Response {
    let inner = &server.inner;
    let (path, q) = match check(&server, &name, rendition.as_deref(), &req) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(shared) = inner.attach(&path, q.window) else {
        return status(StatusCode::NOT_FOUND, "no such stream\n");
    };
    inner.stats.connections.fetch_add(1, Ordering::Relaxed);
    let resume = q.window.zip(q.from);
    let (start, hello) = {
        let w = shared.window();
        let start = w.start(resume);
        let (at, resumed) = match &start {
            Start::Resume { from, .. } => (*from, true),
            Start::Fresh { at, .. } | Start::End { at } => (*at, false),
            Start::Wait => (w.next_seq(), false),
        };
        let hello = Hello {
            epoch: server.epoch(),
            window: w.id(),
            start: at,
            resumed,
            timeline: inner.hub.timeline(&path),
        };
        (start, hello)
    };
    if hello.resumed {
        inner.stats.resumed.fetch_add(1, Ordering::Relaxed);
    }
    let mut conn = Conn {
        generation: shared.generation.load(Ordering::Relaxed),
        guard: Guard {
            inner: inner.clone(),
            shared,
        },
        writer: RelayWriter::new(),
        pos: Pos::Waiting { skipped: false },
        done: false,
    };
    if let Err(e) = conn.begin(&hello, start) {
        tracing::warn!(stream = %path, error = %e, "relay: cannot start");
        return status(StatusCode::INTERNAL_SERVER_ERROR, "relay writer failed\n");
    }
    let body = futures_util::stream::unfold(conn, |mut conn| async move {
        conn.next_chunk().await.map(|c| (c, conn))
    });
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn receive_source(
    State(server): State<RelayServer>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    receive(server, name, None, req).await
}

async fn receive_rendition(
    State(server): State<RelayServer>,
    Path((name, rendition)): Path<(String, String)>,
    req: Request,
) -> Response {
    receive(server, name, Some(rendition), req).await
}

/// `POST`: a pushed relay stream into the Hub. Each push connection
/// publishes anew (a reconnect is a Hub takeover: one discontinuity,
/// continuous timestamps). `204` after the stream's end, `400` for a
/// malformed stream, `409` for a stale epoch or a publisher taken over.
async fn receive(
    server: RelayServer,
    name: String,
    rendition: Option<String>,
    req: Request,
) -> Response {
    let (path, query) = match check(&server, &name, rendition.as_deref(), &req) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let inner = &server.inner;
    inner.stats.connections.fetch_add(1, Ordering::Relaxed);
    let mut body = req.into_body();
    let mut reader = RelayReader::default();
    let mut publisher: Option<HubPublisher> = None;
    loop {
        let data = match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
            // The pusher went away: detach (the stream waits for it).
            Some(Err(_)) => return status(StatusCode::BAD_REQUEST, "push interrupted\n"),
            None => {
                return match reader.finish() {
                    Ok(()) => status(StatusCode::NO_CONTENT, ""),
                    Err(e) => bad_push(&path, &e),
                };
            }
        };
        reader.handle_input(&data);
        loop {
            let ev = match reader.poll_event() {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => return bad_push(&path, &e),
            };
            let event = match ev {
                RelayEvent::Hello(h) => {
                    let mut epochs = inner.push_epochs.lock().unwrap_or_else(|p| p.into_inner());
                    let seen = epochs.entry(path.clone()).or_insert(0);
                    if h.epoch < *seen {
                        return status(StatusCode::CONFLICT, "stale epoch\n");
                    }
                    *seen = h.epoch;
                    drop(epochs);
                    publisher = Some(inner.hub.publish_on_timeline(&path, query.role, h.timeline));
                    continue;
                }
                RelayEvent::Context { tracks, .. } => MediaEvent::Tracks(tracks),
                RelayEvent::Media { event, .. } => event,
            };
            let Some(p) = publisher.as_mut() else {
                continue; // the reader yields the hello first
            };
            let end = matches!(event, MediaEvent::End);
            match p.push(event) {
                Ok(()) => {}
                Err(ugc_core::Error::Closed) => {
                    return status(StatusCode::CONFLICT, "publisher taken over\n");
                }
                Err(e) => {
                    tracing::warn!(stream = %path, error = %e, "relay push: media refused");
                    return status(StatusCode::BAD_REQUEST, "media refused by the hub\n");
                }
            }
            if end {
                let _ = p.finish().await;
                return status(StatusCode::NO_CONTENT, "");
            }
        }
    }
}

fn bad_push(path: &StreamPath, e: &crate::Error) -> Response {
    tracing::warn!(stream = %path, error = %e, "relay push: malformed");
    let mut r = Response::new(Body::from(format!("{e}\n")));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

/// Detaches its connection from the window when the response ends.
struct Guard {
    inner: Arc<Inner>,
    shared: Arc<Shared>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.inner.detach(&self.shared);
    }
}

enum Pos {
    /// Sequence of the next window event to send.
    At(u64),
    /// Waiting for a keyframe (after a skip: announce it).
    Waiting { skipped: bool },
}

/// One connection: a cursor into the window and its writer.
struct Conn {
    guard: Guard,
    generation: u64,
    writer: RelayWriter,
    pos: Pos,
    done: bool,
}

/// An error that ends a response body (hyper aborts the connection).
#[derive(Debug)]
struct Abort(&'static str);

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Abort {}

/// Events written per lock of the window.
const BATCH: usize = 64;

/// A lag peak stays in `ugc_relay_lag_seconds` for 10-20 s.
const LAG_PERIOD: Duration = Duration::from_secs(10);

impl Conn {
    fn begin(&mut self, hello: &Hello, start: Start) -> crate::Result<()> {
        self.writer.hello(hello)?;
        match start {
            Start::Resume { from, context } => {
                if let Some(t) = context {
                    self.writer.context(&t, from)?;
                }
                self.pos = Pos::At(from);
            }
            Start::Fresh { at, tracks } => {
                self.writer.event(None, &MediaEvent::Tracks(tracks))?;
                self.pos = Pos::At(at);
            }
            Start::End { at } => self.pos = Pos::At(at),
            Start::Wait => {}
        }
        Ok(())
    }

    async fn next_chunk(&mut self) -> Option<Result<Bytes, Abort>> {
        let shared = self.guard.shared.clone();
        let keepalive = self.guard.inner.config.keepalive;
        loop {
            if let Some(b) = self.writer.poll_output() {
                self.guard
                    .inner
                    .stats
                    .bytes_out
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                return Some(Ok(b));
            }
            if self.done {
                return None;
            }
            let mut notified = pin!(shared.notify.notified());
            notified.as_mut().enable();
            if shared.generation.load(Ordering::Relaxed) != self.generation {
                self.done = true;
                return Some(Err(Abort("relay connection closed by the server")));
            }
            match self.step() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "relay: writer failed");
                    self.done = true;
                    return Some(Err(Abort("relay writer failed")));
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(keepalive) => self.writer.keepalive(),
            }
        }
    }

    /// Writes what the window has for this connection; whether it wrote.
    fn step(&mut self) -> crate::Result<bool> {
        let shared = self.guard.shared.clone();
        let w = shared.window();
        let mut wrote = false;
        for _ in 0..BATCH {
            match self.pos {
                Pos::Waiting { skipped } => match w.start(None) {
                    Start::Fresh { at, tracks } => {
                        if skipped {
                            self.writer.event(
                                None,
                                &MediaEvent::Discontinuity(DiscontinuityReason::ReaderSkipped),
                            )?;
                        }
                        self.writer.event(None, &MediaEvent::Tracks(tracks))?;
                        self.pos = Pos::At(at);
                        wrote = true;
                    }
                    // Ended with no keyframe left: the end.
                    Start::End { at } => {
                        if skipped {
                            self.writer.event(
                                None,
                                &MediaEvent::Discontinuity(DiscontinuityReason::ReaderSkipped),
                            )?;
                        }
                        self.pos = Pos::At(at);
                        wrote = true;
                    }
                    _ => break,
                },
                Pos::At(p) => match w.get(p) {
                    Next::Event(seq, ev) => {
                        if !wrote && let Some(lag) = w.behind(seq) {
                            shared
                                .lag
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .record(lag.as_secs_f64(), Instant::now());
                        }
                        self.writer.event(Some(seq), ev)?;
                        self.pos = Pos::At(seq + 1);
                        wrote = true;
                        if matches!(ev, MediaEvent::End) {
                            self.done = true;
                            break;
                        }
                    }
                    Next::Pending => break,
                    Next::Behind => {
                        self.guard.inner.stats.skips.fetch_add(1, Ordering::Relaxed);
                        self.pos = Pos::Waiting { skipped: true };
                    }
                },
            }
        }
        Ok(wrote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = parse_query(Some("app=studio&window=5&from=17&x=1")).unwrap();
        assert_eq!(q.app.as_deref(), Some("studio"));
        assert_eq!((q.window, q.from), (Some(5), Some(17)));
        assert!(parse_query(Some("from=abc")).is_none());
        assert!(parse_query(None).is_some());
    }

    #[test]
    fn digests_compare_in_full() {
        let a = digest("secret");
        assert!(same(&a, &digest("secret")));
        assert!(!same(&a, &digest("secreT")));
    }
}
