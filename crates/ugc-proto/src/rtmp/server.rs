//! The tokio adapter of RTMP ingest, in three stages that an embedder can
//! also drive one by one:
//!
//! * [`RtmpListener`] accepts connections (at most
//!   [`RtmpServerConfig::max_connections`], and
//!   [`RtmpServerConfig::max_connections_per_ip`] from one address), counting
//!   what it refuses and what times out in [`RtmpServerStats`];
//! * [`RtmpConnection::publish`] runs a small loop around a
//!   [`ServerSession`] (read -> [`ServerSession::handle_input`] -> write every
//!   [`ServerSession::poll_output`] -> handle every
//!   [`ServerSession::poll_event`]) until the peer asks to publish, and asks
//!   the caller's [`Authorizer`];
//! * an accepted publisher is an [`RtmpPublish`], a [`Source`] of media
//!   events (audio, video and metadata through [`FlvIngest`]).
//!
//! [`serve`] assembles them: every accepted publisher is driven
//! ([`ugc_core::drive`], then [`ugc_core::Sink::finish`]) into a
//! [`ugc_core::HubPublisher`] of the stream the authorizer chose. A connection's error (bad bytes, timeout, takeover of
//! its stream) is logged with the peer address and closes only that
//! connection.
//!
//! A refused publisher gets the authorizer's reason in the `onStatus`
//! description; then we half-close and read what it still sends (discarded)
//! until it closes, for at most [`RtmpServerConfig::refusal_linger`], so the
//! client reads our status instead of a reset.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ugc_core::{AllowAll, Hub, HubConfig, Passthrough, pump};
//! use ugc_proto::rtmp::server::{RtmpListener, RtmpServerConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let hub = Hub::new(HubConfig::default());
//! let mut listener = RtmpListener::bind("0.0.0.0:1935", RtmpServerConfig::default()).await?;
//! loop {
//!     let conn = listener.accept().await?;
//!     let hub = hub.clone();
//!     tokio::spawn(async move {
//!         if let Ok(Some(media)) = conn.publish(&AllowAll).await {
//!             let sink = hub.publish(media.stream());
//!             let _ = pump(media, Passthrough, sink).await;
//!         }
//!     });
//! }
//! # }
//! ```

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout, timeout_at};
use ugc_codec::flv::FlvIngest;
use ugc_core::{
    Authorizer, Hub, LowLatencyProbe, MediaEvent, Passthrough, Protocol, PublishDecision,
    PublishRequest, Sink, Source, SourceRole, StreamPath, drive,
};

use super::session::{ServerEvent, ServerSession, SessionConfig};
use crate::error::{Error, Result};
use crate::limits::{ConnLimiter, ExemptIps, Refused, Slot};

/// Settings of [`serve`].
#[derive(Debug, Clone)]
pub struct RtmpServerConfig {
    /// Settings of every session.
    pub session: SessionConfig,
    /// Time from accept until the peer asks to publish: the RTMP handshake
    /// and the commands before `publish` (`connect`, `createStream`). A
    /// client does all of it in a few round trips; a peer that keeps
    /// sending anything else (pings, chunk-size changes, media before
    /// publishing) is closed when it runs out.
    pub handshake_timeout: Duration,
    /// Longest silence from a connected peer.
    pub idle_timeout: Duration,
    /// Longest time one write to the peer may take.
    pub write_timeout: Duration,
    /// Connections served at once. At the cap a new connection displaces
    /// the oldest one that is not publishing yet, or is closed at accept
    /// when all are ([`crate::limits`]). 0 = no cap.
    pub max_connections: usize,
    /// Connections one peer address may hold at once (publishers and
    /// connections still in their handshake); more from it are closed at
    /// accept. 0 = no cap. A studio or an encoder farm behind one NAT
    /// address publishes all its streams from that address: raise it for
    /// them.
    pub max_connections_per_ip: usize,
    /// Addresses `max_connections_per_ip` does not apply to (they still
    /// count towards `max_connections`). `None`: every address is capped.
    pub ip_cap_exempt: Option<ExemptIps>,
    /// RTMPS: TLS in front of RTMP on this listener (its handshake counts
    /// towards `handshake_timeout`). `None`: plain RTMP. Reads of a TLS
    /// connection are not batched (`batch_reads`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Size of the per-connection read buffer.
    pub read_buffer_size: usize,
    /// Read batching while no viewer wants a stream at low latency
    /// ([`ugc_core::HubPublisher::low_latency_wanted`]): its publisher's socket is
    /// read at most about once per this interval (see [`ReadBatcher`]).
    /// `None`: read whenever data arrives.
    pub batch_reads: Option<Duration>,
    /// After refusing a publish: how long we keep reading (and discarding)
    /// from the half-closed connection, waiting for the peer to close, so
    /// that it reads our status to the end. At most
    /// [`LINGER_MAX_BYTES`] are read meanwhile.
    pub refusal_linger: Duration,
}

/// The most a refused peer may send us while we linger before closing.
pub const LINGER_MAX_BYTES: usize = 256 * 1024;

impl Default for RtmpServerConfig {
    fn default() -> Self {
        RtmpServerConfig {
            session: SessionConfig::default(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_ip: 64,
            ip_cap_exempt: None,
            tls: None,
            read_buffer_size: 64 * 1024,
            batch_reads: None,
            refusal_linger: Duration::from_secs(2),
        }
    }
}

/// What an [`RtmpListener`] refused and closed, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct RtmpServerStats {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections closed at accept: [`RtmpServerConfig::max_connections`].
    pub refused_total_cap: AtomicU64,
    /// Connections closed at accept: their address held
    /// [`RtmpServerConfig::max_connections_per_ip`].
    pub refused_ip_cap: AtomicU64,
    /// Connections closed for their handshake timeout or for idling
    /// (before or while publishing).
    pub timed_out: AtomicU64,
    /// Connections that had not published yet, closed at the connection
    /// cap to make room for a new one ([`crate::limits`]).
    pub displaced: AtomicU64,
}

impl RtmpServerStats {
    /// The `ugc_rtmp_connections_*_total` families of these counters.
    pub fn write_metrics(&self, m: &mut ugc_core::metrics::Exposition) {
        use ugc_core::metrics::Kind;
        let families: [(&str, &str, &AtomicU64); 5] = [
            (
                "ugc_rtmp_connections_accepted_total",
                "RTMP connections accepted and served.",
                &self.accepted,
            ),
            (
                "ugc_rtmp_connections_refused_total_cap_total",
                "RTMP connections closed at accept: the listener's connection cap.",
                &self.refused_total_cap,
            ),
            (
                "ugc_rtmp_connections_refused_ip_cap_total",
                "RTMP connections closed at accept: their address's connection cap.",
                &self.refused_ip_cap,
            ),
            (
                "ugc_rtmp_connections_timed_out_total",
                "RTMP connections closed for a handshake timeout or for idling.",
                &self.timed_out,
            ),
            (
                "ugc_rtmp_connections_displaced_total",
                "RTMP connections that had not published yet, closed at the listener's connection cap to make room for a new one.",
                &self.displaced,
            ),
        ];
        for (name, help, value) in families {
            m.family(name, Kind::Counter, help)
                .sample(&[], value.load(Ordering::Relaxed) as f64);
        }
    }

    fn timed_out(&self, what: &'static str) -> Error {
        self.timed_out.fetch_add(1, Ordering::Relaxed);
        Error::Timeout(what)
    }
}

/// Accepts RTMP connections on `listener` forever, one task per connection.
/// Accepted publishers publish into `hub` under the stream `auth` returns:
/// each is an [`RtmpPublish`] source pumped into a [`ugc_core::HubPublisher`], whose
/// [`ugc_core::Sink::finish`] ends the stream after the hub's publisher grace
/// when the publisher leaves. Returns only if accepting fails for good.
pub async fn serve<A: Authorizer>(
    listener: TcpListener,
    hub: Hub,
    auth: Arc<A>,
    config: RtmpServerConfig,
) -> std::io::Result<()> {
    serve_with_stats(listener, hub, auth, config, Arc::default()).await
}

/// [`serve`], counting refused and timed-out connections into `stats`.
pub async fn serve_with_stats<A: Authorizer>(
    listener: TcpListener,
    hub: Hub,
    auth: Arc<A>,
    config: RtmpServerConfig,
    stats: Arc<RtmpServerStats>,
) -> std::io::Result<()> {
    let mut listener = RtmpListener::with_stats(listener, config, stats);
    loop {
        let conn = listener.accept().await?;
        let (hub, auth) = (hub.clone(), Arc::clone(&auth));
        tokio::spawn(async move {
            let peer = conn.peer();
            let mut source = match conn.publish(&*auth).await {
                Ok(Some(source)) => source,
                Ok(None) => return,
                // Counted (timed out, displaced); an idle flood would
                // otherwise log a line per connection.
                Err(e @ Error::Timeout(_)) => {
                    tracing::debug!(%peer, error = %e, "rtmp connection closed before publishing");
                    return;
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "rtmp connection closed on error");
                    return;
                }
            };
            let stream = source.stream().clone();
            let mut publisher = hub.publish_as(&stream, source.role());
            source.follow_low_latency(publisher.low_latency_probe());
            match drive(&mut source, Passthrough, &mut publisher).await {
                Ok(()) => tracing::info!(%peer, %stream, "rtmp publish ended"),
                Err(e) => {
                    tracing::warn!(%peer, %stream, error = %e, "rtmp connection closed on error")
                }
            }
            // Closed, then the stream ends after the hub's publisher grace.
            drop(source);
            let _ = publisher.finish().await;
        });
    }
}

/// Accepts RTMP connections, at most [`RtmpServerConfig::max_connections`]
/// at once and [`RtmpServerConfig::max_connections_per_ip`] per address.
/// Each [`RtmpConnection`] is then driven on a task of its own.
pub struct RtmpListener {
    listener: TcpListener,
    config: Arc<RtmpServerConfig>,
    limit: Arc<ConnLimiter>,
    stats: Arc<RtmpServerStats>,
    seeds: std::collections::hash_map::RandomState,
    /// The grid all connections' batched reads share.
    epoch: Instant,
}

impl std::fmt::Debug for RtmpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpListener")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl RtmpListener {
    /// Listens on `listener` with `config`.
    pub fn new(listener: TcpListener, config: RtmpServerConfig) -> Self {
        Self::with_stats(listener, config, Arc::default())
    }

    /// Listens on `listener` with `config`, counting into `stats`.
    pub fn with_stats(
        listener: TcpListener,
        config: RtmpServerConfig,
        stats: Arc<RtmpServerStats>,
    ) -> Self {
        RtmpListener {
            listener,
            limit: ConnLimiter::with_exempt(
                config.max_connections,
                config.max_connections_per_ip,
                config.ip_cap_exempt.as_ref().map(|e| Arc::clone(&e.0)),
            ),
            stats,
            config: Arc::new(config),
            seeds: std::collections::hash_map::RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// Binds `addr`.
    pub async fn bind(
        addr: impl tokio::net::ToSocketAddrs,
        config: RtmpServerConfig,
    ) -> std::io::Result<Self> {
        Ok(Self::new(crate::http::bind(addr).await?, config))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<RtmpServerStats> {
        &self.stats
    }

    /// Connections open now: in total, and from `ip`.
    pub fn open(&self, ip: std::net::IpAddr) -> (usize, usize) {
        self.limit.open(ip)
    }

    /// The next connection. Connections over a cap are closed here (and
    /// counted); errors accepting one (out of file descriptors) back off
    /// and go on.
    /// Fails only if the listener does.
    pub async fn accept(&mut self) -> std::io::Result<RtmpConnection> {
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "rtmp accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let admitted = self
                .limit
                .admit_soon(peer.ip(), tokio::task::yield_now)
                .await;
            let slot = match admitted {
                Ok(slot) => slot,
                Err(why) => {
                    let counter = match why {
                        Refused::Total => &self.stats.refused_total_cap,
                        Refused::PerIp => &self.stats.refused_ip_cap,
                    };
                    // A flood is logged once per thousand.
                    if counter.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
                        tracing::warn!(%peer, ?why, "rtmp connection cap reached; closing new connections");
                    }
                    drop(tcp);
                    continue;
                }
            };
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            if slot.displaced_another() {
                tracing::debug!(%peer, "rtmp connection cap reached: displaced the oldest connection not yet publishing");
            }
            let _ = tcp.set_nodelay(true);
            let session = ServerSession::new(SessionConfig {
                handshake_seed: self.seeds.hash_one(peer),
                ..self.config.session.clone()
            });
            let tls = self.config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
            return Ok(RtmpConnection {
                tcp: RtmpIo::Plain(tcp),
                tls,
                peer,
                session,
                buf: vec![0u8; self.config.read_buffer_size.max(1)],
                batcher: self
                    .config
                    .batch_reads
                    .filter(|_| self.config.tls.is_none())
                    .map(|i| ReadBatcher::new(self.epoch, i)),
                config: Arc::clone(&self.config),
                stats: Arc::clone(&self.stats),
                slot,
            });
        }
    }
}

/// One RTMP connection, before it publishes: [`RtmpConnection::publish`]
/// runs the handshake and the commands up to a publish request and asks
/// the [`Authorizer`].
pub struct RtmpConnection {
    tcp: RtmpIo,
    /// RTMPS: the TLS handshake still to run, first thing in `publish`.
    tls: Option<tokio_rustls::TlsAcceptor>,
    peer: SocketAddr,
    session: ServerSession,
    buf: Vec<u8>,
    batcher: Option<ReadBatcher>,
    config: Arc<RtmpServerConfig>,
    stats: Arc<RtmpServerStats>,
    slot: Slot,
}

impl std::fmt::Debug for RtmpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpConnection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl RtmpConnection {
    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Reads until the peer asks to publish and asks `auth`. Allowed: the
    /// publish is accepted (`NetStream.Publish.Start`) and its media is an
    /// [`RtmpPublish`] source. Refused: the peer reads the reason, we linger
    /// (see [`RtmpServerConfig::refusal_linger`]) and return `None`, as
    /// when the peer leaves first. A timeout or bad bytes are an error, as
    /// is being displaced at the connection cap before publishing
    /// ([`crate::limits`]).
    pub async fn publish<A: Authorizer>(self, auth: &A) -> Result<Option<RtmpPublish>> {
        let displaced = self.slot.displaced();
        let stats = Arc::clone(&self.stats);
        tokio::select! {
            biased;
            () = displaced => {
                stats.displaced.fetch_add(1, Ordering::Relaxed);
                Err(Error::Timeout("displaced at the connection cap before publishing"))
            }
            r = self.handshake_and_publish(auth) => r,
        }
    }

    async fn handshake_and_publish<A: Authorizer>(
        mut self,
        auth: &A,
    ) -> Result<Option<RtmpPublish>> {
        let deadline = Instant::now() + self.config.handshake_timeout;
        if let Some(acceptor) = self.tls.take() {
            let RtmpIo::Plain(tcp) = std::mem::replace(&mut self.tcp, RtmpIo::Closed) else {
                return Err(Error::Io(std::io::ErrorKind::NotConnected.into()));
            };
            let tls = timeout_at(deadline, acceptor.accept(tcp))
                .await
                .map_err(|_| self.stats.timed_out("TLS handshake"))?;
            match tls {
                Ok(tls) => self.tcp = RtmpIo::Tls(Box::new(tls)),
                Err(e) => {
                    tracing::debug!(peer = %self.peer, error = %e, "rtmps: TLS handshake failed");
                    return Ok(None);
                }
            }
        }
        loop {
            let idle = Instant::now() + self.config.idle_timeout;
            let (until, why) = match (deadline <= idle, self.session.is_connected()) {
                (true, false) => (deadline, "handshake"),
                (true, true) => (deadline, "no publish request in time"),
                (false, _) => (idle, "peer idle"),
            };
            // A peer that always has more to send never waits for a read:
            // the deadline is checked, not only raced.
            if until <= Instant::now() {
                return Err(self.stats.timed_out(why));
            }
            let read = timeout_at(until, self.tcp.read(&mut self.buf))
                .await
                .map_err(|_| self.stats.timed_out(why))?;
            let n = read?;
            if n == 0 {
                tracing::debug!(peer = %self.peer, "rtmp connection closed before publishing");
                return Ok(None);
            }
            let input = self.session.handle_input(&self.buf[..n]);
            self.flush().await?;
            while let Some(event) = self.session.poll_event() {
                let ServerEvent::PublishRequested { app, key, .. } = event else {
                    // Media before a publish was accepted: not ours to take.
                    continue;
                };
                let req = PublishRequest {
                    protocol: Protocol::Rtmp,
                    app,
                    key,
                    client_ip: self.peer.ip(),
                };
                match auth.authorize_publish(&req).await {
                    PublishDecision::Allow { stream, role } => {
                        self.slot.prove();
                        self.session.accept_publish()?;
                        self.flush().await?;
                        input?;
                        tracing::info!(peer = %self.peer, %stream, %role, "rtmp publish started");
                        return Ok(Some(RtmpPublish {
                            conn: self,
                            stream,
                            role,
                            ingest: FlvIngest::new(),
                            low_latency: None,
                            last_full: false,
                            unpublished: false,
                            ended: false,
                            error: None,
                        }));
                    }
                    PublishDecision::Deny { kind, reason } => {
                        // The key is not logged (a secret); the reason never holds it.
                        tracing::info!(peer = %self.peer, app = %req.app, ?kind, %reason, "rtmp publish denied");
                        self.session.reject_publish(kind, &reason)?;
                        self.flush().await?;
                        self.linger().await;
                        tracing::debug!(peer = %self.peer, "refused rtmp connection closed");
                        return Ok(None);
                    }
                }
            }
            input?;
        }
    }

    async fn flush(&mut self) -> Result<()> {
        while let Some(out) = self.session.poll_output() {
            timeout(self.config.write_timeout, self.tcp.write_all(&out))
                .await
                .map_err(|_| Error::Timeout("write"))??;
        }
        // TLS holds records until flushed; plain TCP has nothing to flush.
        timeout(self.config.write_timeout, self.tcp.flush())
            .await
            .map_err(|_| Error::Timeout("write"))??;
        Ok(())
    }

    /// Lets a refused peer read our last bytes (already written): sends
    /// FIN, then reads and drops whatever it still sends until it closes,
    /// for at most `refusal_linger` and [`LINGER_MAX_BYTES`]. Closing with
    /// unread input, or before the peer's last writes arrive, makes the
    /// kernel answer with a reset: the client may lose our status, and
    /// librtmp, whose close writes `FCUnpublish` + `deleteStream` after our
    /// FIN, dies of SIGPIPE on the second write.
    async fn linger(&mut self) {
        if self.tcp.shutdown().await.is_err() {
            return;
        }
        let deadline = Instant::now() + self.config.refusal_linger;
        let mut left = LINGER_MAX_BYTES;
        while left > 0 {
            match timeout_at(deadline, self.tcp.read(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
                // Closed by the peer, reset, or the linger is over.
                _ => break,
            }
        }
    }
}

/// The media of an accepted RTMP publisher: a [`Source`] of the events its
/// FLV tags make (tracks, frames). Exhausted when the publisher unpublishes
/// or closes; an error when it sends bad bytes or goes idle past
/// [`RtmpServerConfig::idle_timeout`]. Dropping it closes the connection.
///
/// With [`RtmpServerConfig::batch_reads`] it reads at most once per interval
/// while [`Self::follow_low_latency`]'s probe says no viewer wants the
/// stream at low latency (see [`ReadBatcher`]).
pub struct RtmpPublish {
    conn: RtmpConnection,
    stream: StreamPath,
    role: SourceRole,
    ingest: FlvIngest,
    low_latency: Option<LowLatencyProbe>,
    last_full: bool,
    /// The publisher sent FCUnpublish / deleteStream.
    unpublished: bool,
    ended: bool,
    /// Why it ended, reported once its last events are out.
    error: Option<Error>,
}

impl std::fmt::Debug for RtmpPublish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpPublish")
            .field("peer", &self.conn.peer)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl RtmpPublish {
    /// The stream the authorizer allowed.
    pub fn stream(&self) -> &StreamPath {
        &self.stream
    }

    /// Which of the stream's sources the authorizer made it.
    pub fn role(&self) -> SourceRole {
        self.role
    }

    /// The publisher's address.
    pub fn peer(&self) -> SocketAddr {
        self.conn.peer
    }

    /// Batches reads while `probe` says no viewer wants the stream at low
    /// latency (only with [`RtmpServerConfig::batch_reads`]). Without a
    /// probe it reads as data arrives.
    pub fn follow_low_latency(&mut self, probe: LowLatencyProbe) {
        self.low_latency = Some(probe);
    }

    /// Reads once (after the batching wait) into the session: `false` when
    /// the publisher closed the connection.
    async fn read_some(&mut self) -> Result<bool> {
        if let (Some(batcher), Some(probe)) = (&self.conn.batcher, &self.low_latency) {
            let now = Instant::now();
            let low_latency = probe.wanted(now.into_std());
            if let Some(at) = batcher.next_read(now, low_latency, self.last_full) {
                tokio::time::sleep_until(at).await;
            }
        }
        let conn = &mut self.conn;
        let n = timeout(conn.config.idle_timeout, conn.tcp.read(&mut conn.buf))
            .await
            .map_err(|_| conn.stats.timed_out("peer idle"))??;
        if n == 0 {
            return Ok(false);
        }
        self.last_full = n == conn.buf.len();
        let input = conn.session.handle_input(&conn.buf[..n]);
        // Events of messages before a bad one are still delivered (a clean
        // FCUnpublish before garbage ends the stream cleanly).
        conn.flush().await?;
        self.handle_events()?;
        input?;
        Ok(true)
    }

    /// Feeds the session's queued events to the FLV ingest; how many there
    /// were. Notes when the publisher unpublished.
    fn handle_events(&mut self) -> Result<usize> {
        let mut n = 0;
        while let Some(event) = self.conn.session.poll_event() {
            n += 1;
            match event {
                ServerEvent::Metadata(meta) => self.ingest.set_metadata(meta),
                ServerEvent::Audio { timestamp_ms, body } => self
                    .ingest
                    .push_audio(timestamp_ms, body)
                    .map_err(|e| Error::Media(e.to_string()))?,
                ServerEvent::Video { timestamp_ms, body } => self
                    .ingest
                    .push_video(timestamp_ms, body)
                    .map_err(|e| Error::Media(e.to_string()))?,
                ServerEvent::PublishEnded => self.unpublished = true,
                // One publish per connection: a second request is ignored
                // (the session has answered the first).
                ServerEvent::PublishRequested { .. } => {}
            }
        }
        Ok(n)
    }
}

impl Source for RtmpPublish {
    async fn next_event(&mut self) -> ugc_core::Result<Option<MediaEvent>> {
        loop {
            if let Some(ev) = self.ingest.poll_event() {
                return Ok(Some(ev));
            }
            // What arrived before an error reached the stream first.
            if let Some(e) = self.error.take() {
                return Err(ugc_core::Error::Stage {
                    stage: format!("rtmp ingest from {}", self.conn.peer),
                    source: Box::new(e),
                });
            }
            if self.ended {
                return Ok(None);
            }
            // Events the session queued with the publish request (media in
            // the same read) first, then the socket.
            let step = match self.handle_events() {
                Ok(_) if self.unpublished => Ok(false),
                Ok(0) => self.read_some().await.map(|open| open && !self.unpublished),
                Ok(_) => Ok(true),
                Err(e) => Err(e),
            };
            if !matches!(step, Ok(true)) {
                self.ended = true;
                self.ingest.finish();
                self.error = step.err();
            }
        }
    }
}

/// When a publishing connection reads next while no viewer wants its
/// stream at low latency, so that a publisher's data comes in a few large
/// reads instead of many small ones.
///
/// Why it saves: ffmpeg writes each RTMP chunk header and its payload with
/// separate sends and leaves Nagle on. After a small segment its TCP holds
/// the rest until that segment is acknowledged, and our acknowledgement goes
/// out when we read. Reading as data arrives makes about one TCP segment,
/// one ACK, one wakeup and one `recvfrom` per send. Reading once per
/// interval lets the sender coalesce everything written in between into one
/// segment, which our next read takes with the rest.
///
/// Reads happen at grid points (`epoch + k * interval`), shared by all
/// connections so their wakeups coincide. Data waits at most about two
/// intervals: held at the sender until a read, then in our socket until the
/// next one. A read that fills the buffer is followed by another at once, so
/// a publisher of any bitrate is never throttled.
#[derive(Debug, Clone)]
pub struct ReadBatcher {
    epoch: Instant,
    interval: Duration,
}

impl ReadBatcher {
    /// A batcher on the grid `epoch + k * interval`.
    pub fn new(epoch: Instant, interval: Duration) -> Self {
        ReadBatcher {
            epoch,
            interval: interval.max(Duration::from_millis(1)),
        }
    }

    /// When to read next (`None`: now), given the time, whether a viewer
    /// wants the stream at low latency, and whether the last read filled
    /// the buffer (more may be waiting).
    pub fn next_read(&self, now: Instant, low_latency: bool, last_full: bool) -> Option<Instant> {
        if low_latency || last_full {
            return None;
        }
        let since = now.saturating_duration_since(self.epoch).as_nanos();
        let step = self.interval.as_nanos();
        let next =
            u64::try_from((since / step + 1) * step).map_or(Duration::MAX, Duration::from_nanos);
        Some(
            self.epoch
                .checked_add(next)
                .unwrap_or_else(|| now + self.interval),
        )
    }
}

/// The bytes of one RTMP connection: plain TCP (`rtmp://`) or TLS over it
/// (`rtmps://`).
enum RtmpIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Between taking the TCP stream for the TLS handshake and its end.
    Closed,
}

fn not_connected() -> std::io::Error {
    std::io::ErrorKind::NotConnected.into()
}

impl tokio::io::AsyncRead for RtmpIo {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            RtmpIo::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            RtmpIo::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
            RtmpIo::Closed => std::task::Poll::Ready(Err(not_connected())),
        }
    }
}

impl tokio::io::AsyncWrite for RtmpIo {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            RtmpIo::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            RtmpIo::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
            RtmpIo::Closed => std::task::Poll::Ready(Err(not_connected())),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            RtmpIo::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            RtmpIo::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
            RtmpIo::Closed => std::task::Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            RtmpIo::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            RtmpIo::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
            RtmpIo::Closed => std::task::Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_reads_fall_on_a_shared_grid_unless_low_latency_or_a_full_buffer() {
        let epoch = Instant::now();
        let ms = Duration::from_millis;
        let b = ReadBatcher::new(epoch, ms(40));
        // The next grid point strictly after now, whatever the phase.
        assert_eq!(b.next_read(epoch, false, false), Some(epoch + ms(40)));
        assert_eq!(
            b.next_read(epoch + ms(1), false, false),
            Some(epoch + ms(40))
        );
        assert_eq!(
            b.next_read(epoch + ms(39), false, false),
            Some(epoch + ms(40))
        );
        assert_eq!(
            b.next_read(epoch + ms(40), false, false),
            Some(epoch + ms(80))
        );
        assert_eq!(
            b.next_read(epoch + ms(1001), false, false),
            Some(epoch + ms(1040))
        );
        // Another connection's batcher on the same epoch wakes at the same points.
        let other = ReadBatcher::new(epoch, ms(40));
        assert_eq!(
            other.next_read(epoch + ms(17), false, false),
            Some(epoch + ms(40))
        );
        // A viewer wants low latency, or the buffer came back full: read now.
        assert_eq!(b.next_read(epoch + ms(5), true, false), None);
        assert_eq!(b.next_read(epoch + ms(5), false, true), None);
        // A zero interval is taken as 1 ms, never a division by zero.
        let z = ReadBatcher::new(epoch, Duration::ZERO);
        assert_eq!(z.next_read(epoch, false, false), Some(epoch + ms(1)));
    }
}
