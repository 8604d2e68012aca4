//! The tokio adapter of SRT ingest: one UDP socket, one task running the
//! [`SrtListener`] (handshakes, routing), one task per connected publisher:
//! an [`SrtPublish`] source (its [`SrtConnection`] and a [`TsDemuxer`])
//! pumped into a [`ugc_core::HubPublisher`] by [`serve`], or handed to the
//! caller by [`serve_with`].
//!
//! Publish requests go to the caller's [`Authorizer`] (the same one RTMP
//! uses: `app`/`key` from the stream id); the passphrase of the stream it
//! allows comes from the caller's [`PassphraseLookup`]. A refusal is sent as
//! an SRT rejection reason: 2400 malformed stream id, 2401 unknown key, 2405
//! not a publisher, 1010 wrong passphrase, 1011 passphrase missing or
//! unexpected, 2503 decision timed out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use ugc_codec::ts_demux::{TsDemuxStats, TsDemuxer};
use ugc_core::{
    Authorizer, DenyKind, Hub, MediaEvent, Passthrough, Protocol, PublishDecision, PublishRequest,
    Sink, Source, SourceRole, StreamPath, drive,
};

use super::listener::{
    ListenerConfig, ListenerEvent, ListenerStats, RejectCode, SrtConnection, SrtConnectionStats,
    SrtListener,
};

/// Finds the SRT passphrase of a Hub stream (`live/<name>`); `None` for an
/// unencrypted stream. Called once per accepted handshake, after the
/// [`Authorizer`] allowed it.
pub type PassphraseLookup = Arc<dyn Fn(&StreamPath) -> Option<String> + Send + Sync>;

/// Settings of [`serve`].
#[derive(Debug, Clone)]
pub struct SrtServerConfig {
    /// Handshake and latency settings.
    pub listener: ListenerConfig,
    /// Longest wait for the [`Authorizer`].
    pub decision_timeout: Duration,
    /// Connected publishers at once; more are refused (2503). The caps per
    /// IP address (connections and handshakes in progress) are in
    /// [`ListenerConfig`].
    pub max_connections: usize,
    /// Datagrams queued per connection before new ones are dropped (SRT
    /// retransmits them).
    pub queue_datagrams: usize,
}

impl Default for SrtServerConfig {
    fn default() -> Self {
        SrtServerConfig {
            listener: ListenerConfig::default(),
            decision_timeout: Duration::from_secs(5),
            max_connections: 1024,
            queue_datagrams: 4096,
        }
    }
}

/// Live statistics of one SRT publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtSessionStats {
    /// The caller.
    pub peer: SocketAddr,
    /// The Hub stream it publishes.
    pub stream: StreamPath,
    /// Transport statistics (RTT, loss, retransmits, bitrate).
    pub connection: SrtConnectionStats,
    /// Demuxer counters (continuity errors, frames).
    pub demux: TsDemuxStats,
}

/// The statistics of every connected SRT publisher, updated about once a
/// second, and the listener's handshake counters, updated every 100 ms;
/// cheap to clone and read from anywhere (metrics, API).
#[derive(Debug, Clone, Default)]
pub struct SrtStatsRegistry {
    sessions: Arc<Mutex<HashMap<SocketAddr, SrtSessionStats>>>,
    listener: Arc<Mutex<(ListenerStats, usize)>>,
}

impl SrtStatsRegistry {
    /// The listener's counters and the handshakes in progress.
    pub fn listener(&self) -> (ListenerStats, usize) {
        self.listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_listener(&self, listener: &SrtListener) {
        *self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            (listener.stats().clone(), listener.pending());
    }

    /// A snapshot of all sessions.
    pub fn snapshot(&self) -> Vec<SrtSessionStats> {
        let mut v: Vec<_> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| a.stream.cmp(&b.stream).then(a.peer.cmp(&b.peer)));
        v
    }

    /// The session publishing `stream`, if any.
    pub fn by_stream(&self, stream: &str) -> Option<SrtSessionStats> {
        self.lock().values().find(|s| s.stream == stream).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, SrtSessionStats>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

enum Decision {
    Accept {
        peer: SocketAddr,
        stream: StreamPath,
        role: SourceRole,
        passphrase: Option<String>,
    },
    Reject {
        peer: SocketAddr,
        code: RejectCode,
    },
}

/// The SRT reject reason for a publish refusal of `kind`.
fn reject_code(kind: DenyKind) -> RejectCode {
    match kind {
        DenyKind::Unauthorized => RejectCode::UNAUTHORIZED,
        DenyKind::BadName => RejectCode::BAD_REQUEST,
        // Unavailable, and kinds added later.
        _ => RejectCode::UNAVAILABLE,
    }
}

struct Route {
    tx: mpsc::Sender<Bytes>,
    id: u64,
}

/// Serves SRT publishers on `socket` until it fails for good: each accepted
/// publisher ([`SrtPublish`]) is pumped into a [`ugc_core::HubPublisher`] of
/// its stream, which ends the stream after the hub's publisher grace when
/// the caller leaves.
pub async fn serve<A: Authorizer>(
    socket: UdpSocket,
    hub: Hub,
    auth: Arc<A>,
    passphrase: PassphraseLookup,
    config: SrtServerConfig,
    stats: SrtStatsRegistry,
) -> std::io::Result<()> {
    let on_publish = move |mut source: SrtPublish| {
        let mut publisher = hub.publish_as(source.stream(), source.role());
        async move {
            let (peer, stream) = (source.peer(), source.stream().clone());
            match drive(&mut source, Passthrough, &mut publisher).await {
                Ok(()) => {}
                // Another publisher took the stream, or its key was revoked.
                Err(ugc_core::Error::Closed) => {
                    tracing::info!(%peer, %stream, taken_over = true, "srt publisher dropped");
                }
                Err(e) => tracing::info!(%peer, %stream, error = %e, "srt publish stopped"),
            }
            // Closed, then the stream ends after the hub's publisher grace.
            drop(source);
            let _ = publisher.finish().await;
        }
    };
    serve_with(socket, auth, passphrase, config, stats, on_publish).await
}

/// [`serve`] that hands every accepted publisher to `on_publish` (run as a
/// task of its own; the connection's datagram route goes when its future
/// ends), e.g. to pump it through a transform of the embedder's.
pub async fn serve_with<A, F, Fut>(
    socket: UdpSocket,
    auth: Arc<A>,
    passphrase: PassphraseLookup,
    config: SrtServerConfig,
    stats: SrtStatsRegistry,
    on_publish: F,
) -> std::io::Result<()>
where
    A: Authorizer,
    F: Fn(SrtPublish) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let socket = Arc::new(socket);
    let mut listener = SrtListener::new(config.listener.clone());
    let (dec_tx, mut dec_rx) = mpsc::unbounded_channel::<Decision>();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(SocketAddr, u64)>();
    let mut routes: HashMap<SocketAddr, Route> = HashMap::new();
    let mut deciding: HashMap<SocketAddr, (StreamPath, SourceRole)> = HashMap::new();
    let mut next_id = 0u64;
    let mut buf = vec![0u8; 65_536];
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    let data = &buf[..n];
                    let routed = match routes.get(&from) {
                        Some(route) => match route.tx.try_send(Bytes::copy_from_slice(data)) {
                            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
                            Err(mpsc::error::TrySendError::Closed(_)) => {
                                routes.remove(&from);
                                false
                            }
                        },
                        None => false,
                    };
                    if !routed {
                        listener.handle_datagram(Instant::now().into_std(), from, data);
                    }
                }
                Err(e) => {
                    // ICMP errors of earlier sends surface here on Linux; the
                    // socket stays usable.
                    tracing::debug!(error = %e, "srt recv");
                    if !matches!(e.kind(), std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::WouldBlock)
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            },
            Some(d) = dec_rx.recv() => {
                let now = Instant::now().into_std();
                match d {
                    Decision::Accept { peer, stream, role, passphrase } => {
                        if routes.len() >= config.max_connections {
                            listener.reject(now, peer, RejectCode::UNAVAILABLE);
                        } else {
                            deciding.insert(peer, (stream, role));
                            listener.accept(now, peer, passphrase.as_deref());
                        }
                    }
                    Decision::Reject { peer, code } => listener.reject(now, peer, code),
                }
            }
            Some((peer, id)) = done_rx.recv() => {
                if routes.get(&peer).is_some_and(|r| r.id == id) {
                    routes.remove(&peer);
                }
                // Sent once per connection task: its place is free.
                listener.connection_closed(&peer);
            }
            _ = tick.tick() => {
                listener.handle_timeout(Instant::now().into_std());
                deciding.retain(|peer, _| listener.is_pending(peer));
                stats.set_listener(&listener);
            }
        }
        while let Some((d, to)) = listener.poll_transmit() {
            let _ = socket.send_to(&d, to).await;
        }
        while let Some(ev) = listener.poll_event() {
            match ev {
                ListenerEvent::AccessRequested {
                    peer,
                    stream_id,
                    encryption,
                } => match stream_id {
                    Ok(sid) => {
                        let auth = Arc::clone(&auth);
                        let passphrase = Arc::clone(&passphrase);
                        let tx = dec_tx.clone();
                        let limit = config.decision_timeout;
                        tracing::debug!(%peer, app = %sid.app, ?encryption, "srt publish requested");
                        tokio::spawn(async move {
                            let req = PublishRequest {
                                protocol: Protocol::Srt,
                                app: sid.app,
                                key: sid.key,
                                client_ip: peer.ip(),
                            };
                            let d = match timeout(limit, auth.authorize_publish(&req)).await {
                                Ok(PublishDecision::Allow { stream, role }) => {
                                    let passphrase = passphrase(&stream);
                                    Decision::Accept {
                                        peer,
                                        stream,
                                        role,
                                        passphrase,
                                    }
                                }
                                Ok(PublishDecision::Deny { kind, reason }) => {
                                    tracing::info!(%peer, app = %req.app, ?kind, %reason, "srt publish denied");
                                    Decision::Reject {
                                        peer,
                                        code: reject_code(kind),
                                    }
                                }
                                Err(_) => Decision::Reject {
                                    peer,
                                    code: RejectCode::UNAVAILABLE,
                                },
                            };
                            let _ = tx.send(d);
                        });
                    }
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "srt stream id refused");
                    }
                },
                ListenerEvent::Connected { peer, connection } => {
                    let Some((stream, role)) = deciding.remove(&peer) else {
                        listener.connection_closed(&peer);
                        continue;
                    };
                    tracing::info!(%peer, %stream, %role, "srt publish started");
                    next_id += 1;
                    let (tx, rx) = mpsc::channel(config.queue_datagrams.max(16));
                    routes.insert(peer, Route { tx, id: next_id });
                    let source = SrtPublish {
                        conn: *connection,
                        rx,
                        socket: Arc::clone(&socket),
                        stream,
                        role,
                        stats: stats.clone(),
                        demux: TsDemuxer::new(),
                        out: Vec::with_capacity(1500),
                        next_stats: Instant::now(),
                        closed: false,
                        finished: false,
                    };
                    let done = done_tx.clone();
                    let id = next_id;
                    let on_publish = on_publish.clone();
                    tokio::spawn(async move {
                        on_publish(source).await;
                        let _ = done.send((peer, id));
                    });
                }
                ListenerEvent::Rejected { peer, code } => {
                    deciding.remove(&peer);
                    tracing::info!(%peer, code = code.0, "srt caller rejected");
                }
            }
        }
    }
}

/// One connected SRT publisher: a [`Source`] of the media events its
/// MPEG-TS makes. Exhausted when the caller closes (or stops answering).
/// Dropping it closes the connection (an SRT shutdown to the caller, if it
/// is still open) and logs its final statistics.
pub struct SrtPublish {
    conn: SrtConnection,
    rx: mpsc::Receiver<Bytes>,
    socket: Arc<UdpSocket>,
    stream: StreamPath,
    role: SourceRole,
    stats: SrtStatsRegistry,
    demux: TsDemuxer,
    out: Vec<u8>,
    next_stats: Instant,
    /// The connection closed (or its datagram route did).
    closed: bool,
    /// The demuxer was finished after the close.
    finished: bool,
}

impl std::fmt::Debug for SrtPublish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtPublish")
            .field("peer", &self.conn.peer())
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl SrtPublish {
    /// The stream the authorizer allowed.
    pub fn stream(&self) -> &StreamPath {
        &self.stream
    }

    /// Which of the stream's sources the authorizer made it.
    pub fn role(&self) -> SourceRole {
        self.role
    }

    /// The caller's address.
    pub fn peer(&self) -> SocketAddr {
        self.conn.peer()
    }

    /// Runs the connection's timers and sends, feeds what it received to
    /// the demuxer; when nothing was received, waits for a datagram or the
    /// next timer.
    async fn step(&mut self) {
        let peer = self.conn.peer();
        let now = Instant::now();
        let snow = now.into_std();
        self.conn.handle_timeout(snow);
        while self.conn.poll_transmit(snow, &mut self.out) {
            let _ = self.socket.send_to(&self.out, peer).await;
        }
        let mut received = false;
        while let Some(data) = self.conn.poll_data(snow) {
            self.demux.push(&data);
            received = true;
        }
        if self.conn.is_closed() {
            self.closed = true;
            return;
        }
        if now >= self.next_stats {
            self.next_stats = now + Duration::from_secs(1);
            let s = SrtSessionStats {
                peer,
                stream: self.stream.clone(),
                connection: self.conn.stats(snow),
                demux: self.demux.stats().clone(),
            };
            self.stats.lock().insert(peer, s);
        }
        if received {
            return;
        }
        // At least 1 ms between timer runs (no spin on a due timer), at
        // most 100 ms (idle detection, statistics).
        let due = self.conn.poll_timeout(snow);
        let deadline = Instant::from_std(due)
            .max(now + Duration::from_millis(1))
            .min(now + Duration::from_millis(100));
        tokio::select! {
            d = self.rx.recv() => match d {
                Some(d) => {
                    let t = Instant::now().into_std();
                    self.conn.handle_datagram(t, &d);
                    // Take what else is queued before running timers.
                    for _ in 0..64 {
                        match self.rx.try_recv() {
                            Ok(d) => self.conn.handle_datagram(t, &d),
                            Err(_) => break,
                        }
                    }
                }
                None => self.closed = true,
            },
            _ = sleep_until(deadline) => {}
        }
    }
}

impl Source for SrtPublish {
    async fn next_event(&mut self) -> ugc_core::Result<Option<MediaEvent>> {
        loop {
            if let Some(ev) = self.demux.poll_event() {
                return Ok(Some(ev));
            }
            if self.finished {
                return Ok(None);
            }
            if self.closed {
                self.demux.finish();
                self.finished = true;
                continue;
            }
            self.step().await;
        }
    }
}

impl Drop for SrtPublish {
    fn drop(&mut self) {
        let peer = self.conn.peer();
        let now = Instant::now().into_std();
        if self.conn.panicked() {
            tracing::warn!(%peer, stream = %self.stream, "srt connection dropped after a panic in srt-protocol");
        }
        if !self.conn.is_closed() {
            // Taken over, or the pipeline failed: tell the caller. One UDP
            // datagram; dropping cannot wait, so it is not retried.
            let bye = self.conn.close(now);
            let _ = self.socket.try_send_to(&bye, peer);
        }
        let final_stats = self.conn.stats(now);
        self.stats.lock().remove(&peer);
        tracing::info!(
            %peer,
            stream = %self.stream,
            lost = final_stats.rx_lost,
            retransmitted = final_stats.rx_retransmitted,
            dropped = final_stats.rx_dropped,
            cc_errors = self.demux.stats().cc_errors,
            "srt publish ended"
        );
    }
}
