//! Pushing a stream to another node: a [`Sink`] that `POST`s the relay
//! framing to `/relay/v1/<name>[/<rendition>]` (same route, same token as
//! a pull), for topologies where the sender dials out (a publishing node
//! feeding its transcoder).
//!
//! ```no_run
//! # async fn f(hub: ugc_core::Hub) -> ugc_proto::Result<()> {
//! use ugc_core::{Passthrough, StreamPath, pump};
//! use ugc_proto::relay::push::{PushConfig, RelayPusher};
//!
//! let stream = StreamPath::live("demo")?;
//! let pusher = RelayPusher::new(PushConfig::new("http://10.0.0.6:8080", stream.clone(), "node-token"));
//! pump(hub.subscribe(&stream), Passthrough, pusher).await?;
//! # Ok(()) }
//! ```
//!
//! Never slows its source: chunks go to a bounded queue in front of the
//! request; when it is full the pusher drops frames up to the next
//! keyframe (counted in [`RelayPusher::dropped`]) and marks the gap with a
//! discontinuity. A failed request is retried on a later event, after a
//! backoff, as a new push (the receiving Hub sees one discontinuity), which
//! starts with the current track set at a keyframe. A `4xx` answer (wrong
//! token, stale epoch, malformed) ends the sink with
//! [`Error::HttpStatus`]. Push does not resume by sequence; pull does.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use ugc_core::{DiscontinuityReason, MediaEvent, MediaKind, Sink, SourceRole, StreamPath, Tracks};

use super::puller::PullConfig;
use super::{Hello, RelayWriter};
use crate::error::{Error, Result};

type PushBody = StreamBody<
    Pin<Box<dyn Stream<Item = std::result::Result<Frame<Bytes>, std::convert::Infallible>> + Send>>,
>;

/// Settings of a [`RelayPusher`].
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// The receiving node, `http://host:port`.
    pub base_url: String,
    /// The stream (the same name on both nodes).
    pub stream: StreamPath,
    /// The node token.
    pub token: String,
    /// This sender's lease epoch.
    pub epoch: u64,
    /// Chunks queued in front of the request (about two per frame).
    pub queue: usize,
    /// First retry delay; doubles per failed attempt.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Where the pusher counts what it sends (shared by a node's pushers).
    pub stats: Arc<RelayPushStats>,
    /// What the source gives within this long of an unsent event goes out
    /// with it as one chunk (one write, one wake-up of the receiver); zero:
    /// each event at once. The trade is CPU on both ends of the hop against
    /// the latency it adds (up to this much per hop).
    pub batch: Duration,
    /// The source the receiver attaches this push as: [`SourceRole::Main`]
    /// (the default), or [`SourceRole::Backup`] for a second publishing
    /// point's stream, which stands by there while a main push lives
    /// (`?role=backup`; a fallback role is sent as main).
    pub role: SourceRole,
    /// The id of the stream's timeline here ([`ugc_core::Hub::timeline`]),
    /// sent in the hello for the receiver's stream to take.
    pub timeline: Option<u64>,
}

/// Counters of a node's [`RelayPusher`]s, for `/metrics` and the load it
/// reports: `ugc_relay_push_*`.
#[derive(Debug, Default)]
pub struct RelayPushStats {
    /// Bytes handed to push connections.
    pub bytes_out: AtomicU64,
    /// Push requests started (the first and every reconnect).
    pub connects: AtomicU64,
    /// Frames dropped: a full queue, a reconnect wait, or waiting for a
    /// keyframe after either.
    pub dropped_frames: AtomicU64,
    /// The longest a chunk waited in a push queue before its request took
    /// it, recently (seconds): how far a push lags its source.
    pub queue_wait: std::sync::Mutex<ugc_core::metrics::RecentMax>,
}

impl RelayPushStats {
    /// The `ugc_relay_push_*_total` families.
    pub fn write_metrics(&self, m: &mut ugc_core::metrics::Exposition) {
        use ugc_core::metrics::Kind;
        let families: [(&str, &str, &AtomicU64); 3] = [
            (
                "ugc_relay_push_bytes_total",
                "Relay bytes pushed to other nodes.",
                &self.bytes_out,
            ),
            (
                "ugc_relay_push_connects_total",
                "Relay push requests started (the first and every reconnect).",
                &self.connects,
            ),
            (
                "ugc_relay_push_dropped_frames_total",
                "Frames a relay push dropped (a full queue, a reconnect wait, waiting for a keyframe).",
                &self.dropped_frames,
            ),
        ];
        for (name, help, v) in families {
            m.family(name, Kind::Counter, help)
                .sample(&[], v.load(Ordering::Relaxed) as f64);
        }
        let wait = self
            .queue_wait
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(Instant::now());
        m.family(
            "ugc_relay_push_lag_seconds",
            Kind::Gauge,
            "The longest a relay push's bytes waited in its queue before they went out (all pushes of the node), the largest in the last 10-20 s.",
        )
        .sample(&[], wait);
    }

    fn waited(&self, since: Instant) {
        self.queue_wait
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(since.elapsed().as_secs_f64(), Instant::now());
    }
}

impl PushConfig {
    /// Defaults: epoch 0, 1024 chunks, backoff 100 ms to 1 s (a node back
    /// from a restart gets its streams again within a second; an attempt at
    /// a node that is down costs one refused connect).
    pub fn new(base_url: impl Into<String>, stream: StreamPath, token: impl Into<String>) -> Self {
        PushConfig {
            base_url: base_url.into(),
            stream,
            token: token.into(),
            epoch: 0,
            queue: 1024,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            stats: Arc::default(),
            batch: Duration::ZERO,
            role: SourceRole::Main,
            timeline: None,
        }
    }

    /// The URL the push goes to.
    pub fn url(&self) -> String {
        let url = PullConfig::new(self.base_url.clone(), self.stream.clone(), "").url(None);
        match self.role {
            SourceRole::Backup => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}role=backup")
            }
            _ => url,
        }
    }
}

struct Conn {
    /// Chunks with when they were queued.
    tx: mpsc::Sender<(Bytes, Instant)>,
    task: JoinHandle<std::result::Result<u16, String>>,
    writer: RelayWriter,
}

/// A batch is sent once it holds this much, however young.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// `first` and what else the queue gives within `batch` of it (up to
/// [`MAX_BATCH_BYTES`]) as one chunk: one write and one wake-up of the
/// receiver for the lot. Waits at most `batch`; zero gives `first` alone.
async fn gather(rx: &mut mpsc::Receiver<(Bytes, Instant)>, first: Bytes, batch: Duration) -> Bytes {
    if batch.is_zero() {
        return first;
    }
    let deadline = tokio::time::Instant::now() + batch;
    let mut len = first.len();
    let mut parts = vec![first];
    while len < MAX_BATCH_BYTES {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((b, _))) => {
                len += b.len();
                parts.push(b);
            }
            // Closed (the end: the next poll finds it) or due.
            Ok(None) | Err(_) => break,
        }
    }
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    let mut joined = bytes::BytesMut::with_capacity(len);
    for p in parts {
        joined.extend_from_slice(&p);
    }
    joined.freeze()
}

/// A relay stream pushed over HTTP, as a [`Sink`]. See the module doc.
pub struct RelayPusher {
    config: PushConfig,
    url: String,
    client: Client<HttpConnector, PushBody>,
    conn: Option<Conn>,
    seq: u64,
    tracks: Option<Tracks>,
    /// Frames are dropped until a keyframe (after a full queue or a new
    /// connection); `true` also when the gap must be announced.
    skipping: bool,
    announce_gap: bool,
    failures: u32,
    retry_at: Option<Instant>,
    dropped: u64,
    connects: u64,
}

impl std::fmt::Debug for RelayPusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayPusher")
            .field("url", &self.url)
            .field("connects", &self.connects)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl RelayPusher {
    /// A pusher; it connects on the first event.
    pub fn new(config: PushConfig) -> Self {
        let url = config.url();
        RelayPusher {
            client: Client::builder(TokioExecutor::new()).build_http(),
            url,
            config,
            conn: None,
            seq: 0,
            tracks: None,
            skipping: true,
            announce_gap: false,
            failures: 0,
            retry_at: None,
            dropped: 0,
            connects: 0,
        }
    }

    /// Frames dropped (queue full, or waiting for a keyframe after a
    /// reconnect).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn count_drop(&mut self) {
        self.dropped += 1;
        self.config
            .stats
            .dropped_frames
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Push requests started.
    pub fn connects(&self) -> u64 {
        self.connects
    }

    fn connect(&mut self) {
        let (tx, rx) = mpsc::channel::<(Bytes, Instant)>(self.config.queue.max(4));
        let batch = self.config.batch;
        let stats = self.config.stats.clone();
        let stream = futures_util::stream::unfold(rx, move |mut rx| {
            let stats = stats.clone();
            async move {
                let (first, queued) = rx.recv().await?;
                stats.waited(queued);
                Some((Ok(Frame::data(gather(&mut rx, first, batch).await)), rx))
            }
        });
        let body: PushBody = StreamBody::new(Box::pin(stream));
        let req = hyper::Request::post(&self.url)
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.config.token),
            )
            .header(hyper::header::CONTENT_TYPE, "video/mp4")
            .body(body);
        let client = self.client.clone();
        let task = tokio::spawn(async move {
            let req = req.map_err(|e| e.to_string())?;
            let resp = client.request(req).await.map_err(|e| e.to_string())?;
            Ok(resp.status().as_u16())
        });
        let mut writer = RelayWriter::new();
        let window = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // A fresh writer cannot fail its hello.
        let _ = writer.hello(&Hello {
            epoch: self.config.epoch,
            window,
            start: self.seq,
            resumed: false,
            timeline: self.config.timeline,
        });
        self.conn = Some(Conn { tx, task, writer });
        self.connects += 1;
        self.config.stats.connects.fetch_add(1, Ordering::Relaxed);
        self.skipping = true;
        self.announce_gap = false;
        if let Some(t) = self.tracks.clone() {
            let _ = self.write(None, &MediaEvent::Tracks(t));
        }
    }

    /// Writes one event to the connection's queue, all or nothing; `false`
    /// when the queue had no room (or is closed).
    fn write(&mut self, seq: Option<u64>, event: &MediaEvent) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        if conn.writer.event(seq, event).is_err() {
            return false;
        }
        let chunks: Vec<Bytes> = std::iter::from_fn(|| conn.writer.poll_output()).collect();
        if conn.tx.capacity() < chunks.len() {
            return false;
        }
        let now = Instant::now();
        for c in chunks {
            let n = c.len() as u64;
            if conn.tx.try_send((c, now)).is_err() {
                return false;
            }
            self.config.stats.bytes_out.fetch_add(n, Ordering::Relaxed);
        }
        true
    }

    /// Whether `event` is a place to start after a gap.
    fn is_start(&self, event: &MediaEvent) -> bool {
        let MediaEvent::Frame(f) = event else {
            return true;
        };
        let Some(t) = &self.tracks else {
            return false;
        };
        let has_video = t.video().is_some();
        f.keyframe && (!has_video || t.get(f.track).is_some_and(|i| i.kind() == MediaKind::Video))
    }

    /// The connection's request ended: a fatal answer, or retry later.
    fn check_conn(&mut self) -> Result<()> {
        let finished = self
            .conn
            .as_ref()
            .is_some_and(|c| c.task.is_finished() || c.tx.is_closed());
        if !finished {
            return Ok(());
        }
        if let Some(c) = self.conn.take()
            && let Some(Ok(Ok(status))) = c.task.now_or_never_status()
            && (400..500).contains(&status)
        {
            return Err(Error::HttpStatus {
                status,
                url: self.url.clone(),
            });
        }
        self.failures += 1;
        let shift = (self.failures - 1).min(16);
        let delay = self
            .config
            .backoff_min
            .saturating_mul(1 << shift)
            .min(self.config.backoff_max);
        self.retry_at = Some(Instant::now() + delay);
        Ok(())
    }
}

/// The result of a finished task without waiting.
trait NowOrNever {
    fn now_or_never_status(
        self,
    ) -> Option<std::result::Result<std::result::Result<u16, String>, ()>>;
}

impl NowOrNever for JoinHandle<std::result::Result<u16, String>> {
    fn now_or_never_status(
        self,
    ) -> Option<std::result::Result<std::result::Result<u16, String>, ()>> {
        use futures_util::FutureExt;
        self.now_or_never().map(|r| r.map_err(|_| ()))
    }
}

impl RelayPusher {
    async fn push(&mut self, event: MediaEvent) -> Result<()> {
        self.check_conn()?;
        let seq = self.seq;
        if self.conn.is_none() {
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                self.seq += 1;
                if let MediaEvent::Tracks(t) = &event {
                    self.tracks = Some(t.clone());
                } else if matches!(event, MediaEvent::Frame(_)) {
                    self.count_drop();
                }
                return Ok(());
            }
            // Starts at this event, with the track set so far (not the one
            // this event sets).
            self.connect();
        }
        self.seq += 1;
        if let MediaEvent::Tracks(t) = &event {
            self.tracks = Some(t.clone());
        }
        if self.skipping {
            if !self.is_start(&event) {
                self.count_drop();
                return Ok(());
            }
            if self.announce_gap {
                let gap = MediaEvent::Discontinuity(DiscontinuityReason::ReaderSkipped);
                if !self.write(None, &gap) {
                    self.count_drop();
                    return Ok(());
                }
            }
            self.skipping = false;
            self.announce_gap = false;
        }
        if !self.write(Some(seq), &event) {
            if matches!(event, MediaEvent::Frame(_)) {
                self.count_drop();
            }
            self.skipping = true;
            self.announce_gap = true;
        } else if matches!(event, MediaEvent::Frame(_)) {
            self.failures = 0;
        }
        Ok(())
    }
}

impl Sink for RelayPusher {
    async fn send(&mut self, event: MediaEvent) -> ugc_core::Result<()> {
        self.push(event).await.map_err(|e| ugc_core::Error::Stage {
            stage: format!("relay push {}", self.url),
            source: Box::new(e),
        })
    }

    /// Closes the request body and waits for the receiver's answer.
    async fn finish(&mut self) -> ugc_core::Result<()> {
        let Some(Conn { tx, task, .. }) = self.conn.take() else {
            return Ok(());
        };
        drop(tx);
        let answer = tokio::time::timeout(Duration::from_secs(10), task).await;
        match answer {
            Ok(Ok(Ok(status))) if (200..300).contains(&status) => Ok(()),
            Ok(Ok(Ok(status))) => Err(ugc_core::Error::Stage {
                stage: format!("relay push {}", self.url),
                source: Box::new(Error::HttpStatus {
                    status,
                    url: self.url.clone(),
                }),
            }),
            _ => Err(ugc_core::Error::Stage {
                stage: format!("relay push {}", self.url),
                source: Box::new(Error::Unreachable {
                    url: self.url.clone(),
                    reason: "no answer to the push".into(),
                }),
            }),
        }
    }
}

/// Pushes every stream of `hub`, those that exist and those to come, to
/// each node of `targets` (`http://host:port`) with `token`, one
/// [`RelayPusher`] per stream and target for as long as the stream lives:
/// a publishing node feeding its origins or transcoder, a transcoder
/// feeding the origins (its renditions are streams of the Hub too). Runs
/// until the Hub is gone.
pub async fn push_all(hub: ugc_core::Hub, targets: Vec<String>, token: String) {
    push_all_with_stats(hub, targets, token, Arc::default()).await;
}

/// [`push_all`], counting into `stats`.
pub async fn push_all_with_stats(
    hub: ugc_core::Hub,
    targets: Vec<String>,
    token: String,
    stats: Arc<RelayPushStats>,
) {
    let (keep, targets) = tokio::sync::watch::channel(targets);
    let options = PushOptions {
        token,
        stats,
        ..Default::default()
    };
    push_all_following(hub, targets, options).await;
    drop(keep);
}

/// What a node's pushes share: the node token, the counters,
/// [`PushConfig::batch`], and which streams the node only stands by for.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// The node token.
    pub token: String,
    /// The node's push counters.
    pub stats: Arc<RelayPushStats>,
    /// See [`PushConfig::batch`].
    pub batch: Duration,
    /// Streams this node carries for a backup publisher while the main one
    /// publishes to another node (a second publishing point): see
    /// [`push_all_following`]. None: every stream is pushed as main.
    pub standby: Option<StandbyOf>,
}

/// A stream a node carries for its backup publisher alone (the stream's
/// main publisher goes to another publishing node).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Standby {
    /// The main publisher's node (`http://host:port`), when known: the
    /// stream goes there too, as its backup, so that node switches to it
    /// when the main publisher drops (before its own fallback).
    pub main_node: Option<String>,
}

/// Which streams of a Hub are [`Standby`] ones, asked when a stream
/// appears (`ugc_auth::node::RemoteAuthorizer::standby` answers it from
/// the control plane's publish decisions).
#[derive(Clone)]
pub struct StandbyOf(pub Arc<StandbyFn>);

/// The question [`StandbyOf`] answers.
pub type StandbyFn = dyn Fn(&StreamPath) -> Option<Standby> + Send + Sync;

impl std::fmt::Debug for StandbyOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StandbyOf(..)")
    }
}

/// [`push_all_with_stats`] to targets that change while it runs (the
/// control plane's topology, `ugc_auth::node::Topology::follow`): a target
/// that appears gets a push of every stream the Hub has, one that goes
/// away has its pushes cut.
///
/// A stream [`PushOptions::standby`] names goes to every target as a
/// backup ([`PushConfig::role`]), and to its main publisher's node as a
/// backup too: there it stands in for a main publisher that drops; at the
/// targets, for that whole node when it dies (its push ends and the
/// receivers' source timeout passes).
pub async fn push_all_following(
    hub: ugc_core::Hub,
    mut targets: tokio::sync::watch::Receiver<Vec<String>>,
    options: PushOptions,
) {
    let mut pushes = Pushes::default();
    let mut forwards = Pushes::default();
    let mut current = targets.borrow_and_update().clone();
    let mut following = true;
    let mut watch = hub.watch();
    let standby = |stream: &StreamPath| options.standby.as_ref().and_then(|f| (f.0)(stream));
    let role = |standby: &Option<Standby>| match standby {
        Some(_) => SourceRole::Backup,
        None => SourceRole::Main,
    };
    loop {
        tokio::select! {
            stream = watch.next() => {
                let Some(stream) = stream else { return };
                pushes.tidy();
                forwards.tidy();
                let standby = standby(&stream);
                for target in &current {
                    pushes.start_as(&hub, &stream, target, 0, role(&standby), &options);
                }
                if let Some(Standby { main_node: Some(node) }) = &standby {
                    tracing::info!(%stream, main = %node,
                        "a backup publisher: its stream goes to the main's node too");
                    forwards.start_as(&hub, &stream, node, 0, SourceRole::Backup, &options);
                }
            }
            changed = targets.changed(), if following => {
                if changed.is_err() {
                    following = false; // the last targets stay
                    continue;
                }
                let new = targets.borrow_and_update().clone();
                pushes.stop_except(&new);
                for target in new.iter().filter(|t| !current.contains(t)) {
                    for stream in hub.stream_names() {
                        let role = role(&standby(&stream));
                        pushes.start_as(&hub, &stream, target, 0, role, &options);
                    }
                }
                current = new;
            }
        }
    }
}

/// Running pushes by stream and target, cut when dropped. A key holds
/// every push still running there: a push of an earlier stream of that
/// name (left to end with it when the stream comes back) is cut with the
/// newest when the target leaves.
#[derive(Default)]
pub(crate) struct Pushes(
    std::collections::HashMap<(StreamPath, String), Vec<tokio::task::AbortHandle>>,
);

impl Pushes {
    /// Forgets pushes that ended with their stream.
    pub(crate) fn tidy(&mut self) {
        self.0.retain(|_, hs| {
            hs.retain(|h| !h.is_finished());
            !hs.is_empty()
        });
    }

    /// Pushes `stream` to `target` under `epoch` (nothing when the Hub has
    /// no such stream). A push there of an earlier stream of that name is
    /// left to end with it.
    pub(crate) fn start(
        &mut self,
        hub: &ugc_core::Hub,
        stream: &StreamPath,
        target: &str,
        epoch: u64,
        options: &PushOptions,
    ) {
        self.start_as(hub, stream, target, epoch, SourceRole::Main, options);
    }

    /// [`Self::start`] attaching as `role` at the target.
    pub(crate) fn start_as(
        &mut self,
        hub: &ugc_core::Hub,
        stream: &StreamPath,
        target: &str,
        epoch: u64,
        role: SourceRole,
        options: &PushOptions,
    ) {
        let key = (stream.clone(), target.to_owned());
        let Some(reader) = hub.subscribe_existing(stream) else {
            return;
        };
        let pusher = RelayPusher::new(PushConfig {
            epoch,
            stats: options.stats.clone(),
            batch: options.batch,
            role,
            timeline: hub.timeline(stream),
            ..PushConfig::new(target, stream.clone(), &options.token)
        });
        let (stream, target) = key.clone();
        let task = tokio::spawn(async move {
            match ugc_core::pump(reader, ugc_core::Passthrough, pusher).await {
                Ok(()) => tracing::info!(%stream, %target, "relay push ended with the stream"),
                Err(e) => tracing::warn!(%stream, %target, error = %e, "relay push failed"),
            }
        });
        self.insert(key, task.abort_handle());
    }

    fn insert(&mut self, key: (StreamPath, String), push: tokio::task::AbortHandle) {
        let hs = self.0.entry(key).or_default();
        hs.retain(|h| !h.is_finished());
        hs.push(push);
    }

    /// Cuts the pushes to targets not in `keep`.
    pub(crate) fn stop_except(&mut self, keep: &[String]) {
        self.0.retain(|(stream, target), hs| {
            let stays = keep.contains(target);
            if !stays {
                tracing::info!(%stream, %target, pushes = hs.len(),
                    "relay push stopped: the target left the topology");
                hs.iter().for_each(tokio::task::AbortHandle::abort);
            }
            stays
        });
    }
}

impl Drop for Pushes {
    fn drop(&mut self) {
        for h in self.0.values().flatten() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod pushes_tests {
    use super::*;

    /// Two pushes of one stream name to one target (an earlier incarnation
    /// still draining, and the newest): a target that leaves cuts both;
    /// the other target's push runs on.
    #[tokio::test]
    async fn a_target_that_leaves_cuts_every_push_to_it() {
        let stream = StreamPath::new("live", "p").expect("name");
        let forever = || tokio::spawn(std::future::pending::<()>());
        let (old, new, other) = (forever(), forever(), forever());
        let mut pushes = Pushes::default();
        pushes.insert((stream.clone(), "http://a".into()), old.abort_handle());
        pushes.insert((stream.clone(), "http://a".into()), new.abort_handle());
        pushes.insert((stream.clone(), "http://b".into()), other.abort_handle());
        pushes.stop_except(&["http://b".to_owned()]);
        let cut = |t| tokio::time::timeout(std::time::Duration::from_secs(2), t);
        assert!(
            cut(old)
                .await
                .expect("the earlier push is cut")
                .is_err_and(|e| e.is_cancelled())
        );
        assert!(
            cut(new)
                .await
                .expect("the newest push is cut")
                .is_err_and(|e| e.is_cancelled())
        );
        pushes.tidy();
        assert!(!other.is_finished());
        drop(pushes);
        assert!(other.await.is_err_and(|e| e.is_cancelled()));
    }
}
