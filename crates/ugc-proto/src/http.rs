//! Serving an axum [`Router`] over TCP with the limits a public server
//! needs: what a slow, idle or greedy client may hold.
//!
//! `axum::serve` sets no timer, so hyper applies no header-read timeout: a
//! client that sends half a request header and stops (slowloris) holds its
//! connection, and its file descriptor, forever, and a few thousand of them
//! lock every viewer out. [`serve`] closes such connections, caps how many
//! connections one address and the whole server hold, and bounds HTTP/2's
//! concurrency. Every limit is a field of [`ServeConfig`] with a default
//! that a public origin can run with:
//!
//! | limit | default | what it stops |
//! |---|---|---|
//! | `header_read_timeout` | 30 s | a request head (HTTP/1), or the first bytes of a connection, not complete in time: slowloris; also ends keep-alive connections idle between requests |
//! | `idle_timeout` | 60 s | no byte read or written in either direction while no request is being answered, or a write blocked that long: dead peers, HTTP/2 connections left open, readers that stopped reading (slow-read) |
//! | `max_connections` | 16,384 | descriptors: at the cap a new connection displaces the oldest one that has sent no request yet (see [`crate::limits`]); with none such, it is closed at accept |
//! | `max_connections_per_ip` | 1,024 | one address taking all of them (a CDN edge or NAT needs hundreds, an attacker needs them all) |
//! | `h2_max_concurrent_streams` | 256 | requests in flight on one HTTP/2 connection |
//! | `h2_max_pending_accept_reset_streams` | 64 | streams opened and reset before we serve them (rapid reset) |
//! | `h2_max_local_error_reset_streams` | 256 | streams the peer makes us reset (stream-error floods) |
//!
//! The header timeout is hyper's default, half of nginx's
//! `client_header_timeout`: clients open connections before they need them
//! (browsers preconnect; a load test opening 2,000 sockets here takes over
//! 10 s before it sends a byte), and 10 s cut such connections.
//!
//! A request being answered is never idle (an LL-HLS blocking reload holds
//! its answer for up to three target durations); a streamed response is
//! idle when it sends nothing for `idle_timeout` (the settings feed sends a
//! comment every 10 s).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

pub use crate::limits::{ConnLimiter, IpCapExempt, Refused, Slot};

/// The limits of [`serve`]; see the module doc for what each one stops.
#[derive(Clone)]
pub struct ServeConfig {
    /// Time to receive a whole request head (HTTP/1), counted from the
    /// moment the server waits for one, and the first bytes of a new
    /// connection (protocol detection, the TLS handshake).
    pub header_read_timeout: Duration,
    /// A connection with no byte read or written for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections of the whole listener; 0 = no cap. At the cap a new
    /// connection displaces the oldest that has sent no request yet, or is
    /// closed at accept when all have ([`crate::limits`]).
    pub max_connections: usize,
    /// Open connections of one peer address; 0 = no cap.
    pub max_connections_per_ip: usize,
    /// Peers exempt from `max_connections_per_ip`: the CDN edge or load
    /// balancer in front of the server, which carries many viewers on one
    /// address (ugc-server: its `trusted_proxies`). The listener's cap
    /// still applies to them.
    pub ip_cap_exempt: Option<IpCapExempt>,
    /// HTTP/2: streams in flight per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: streams reset by the peer before they were served.
    pub h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2: streams we had to reset because of the peer's errors.
    pub h2_max_local_error_reset_streams: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 16_384,
            max_connections_per_ip: 1_024,
            ip_cap_exempt: None,
            h2_max_concurrent_streams: 256,
            h2_max_pending_accept_reset_streams: 64,
            h2_max_local_error_reset_streams: 256,
        }
    }
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("ip_cap_exempt", &self.ip_cap_exempt.is_some())
            .field("h2_max_concurrent_streams", &self.h2_max_concurrent_streams)
            .finish_non_exhaustive()
    }
}

/// What [`serve`] refused and closed, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct ServeStats {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections closed at accept: the listener's cap.
    pub refused_total_cap: AtomicU64,
    /// Connections closed at accept: their address's cap.
    pub refused_ip_cap: AtomicU64,
    /// Connections closed for their idle or first-bytes timeout.
    pub timed_out: AtomicU64,
    /// Connections that had sent no request yet, closed at the connection
    /// cap to make room for a new one ([`crate::limits`]).
    pub displaced: AtomicU64,
    /// Requests answered, by [`RequestKind`] and status class (1xx..5xx).
    requests: [[AtomicU64; 5]; RequestKind::ALL.len()],
    /// Response body bytes sent, by [`RequestKind`].
    bytes: [AtomicU64; RequestKind::ALL.len()],
}

/// What a request asks for, told from its path alone (cheap: no parsing
/// beyond the last component): the `kind` label of
/// `ugc_http_requests_total` and `ugc_http_response_bytes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// An HLS playlist (`*.m3u8`: live, DVR, multivariant).
    Playlist,
    /// A live media segment (`seg-*`).
    Segment,
    /// An LL-HLS part (`part-*`).
    Part,
    /// An init segment (`init-*`).
    Init,
    /// An archived segment or init segment (`dvr-*`).
    Dvr,
    /// An MP4 export (`archive-*.mp4`).
    Export,
    /// The control plane's REST API (`/api/`).
    Api,
    /// The inter-node relay (`/relay/`).
    Relay,
    /// A player's QoE beacon (`.../qoe`).
    Beacon,
    /// WebRTC signalling (`.../whip`, `.../whep`).
    Webrtc,
    /// `/metrics`.
    Metrics,
    /// Anything else: panels, the watch page, assets, health.
    Other,
}

impl RequestKind {
    /// Every kind, in label order.
    pub const ALL: [RequestKind; 12] = [
        RequestKind::Playlist,
        RequestKind::Segment,
        RequestKind::Part,
        RequestKind::Init,
        RequestKind::Dvr,
        RequestKind::Export,
        RequestKind::Api,
        RequestKind::Relay,
        RequestKind::Beacon,
        RequestKind::Webrtc,
        RequestKind::Metrics,
        RequestKind::Other,
    ];

    /// The kind of a request for `path`.
    pub fn of(path: &str) -> RequestKind {
        if path.starts_with("/api/") {
            return RequestKind::Api;
        }
        if path.starts_with("/relay/") {
            return RequestKind::Relay;
        }
        if path == "/metrics" {
            return RequestKind::Metrics;
        }
        let file = path.rsplit('/').next().unwrap_or("");
        match file {
            "qoe" => return RequestKind::Beacon,
            "whip" | "whep" => return RequestKind::Webrtc,
            _ => {}
        }
        if file.ends_with(".m3u8") {
            RequestKind::Playlist
        } else if file.starts_with("part-") {
            RequestKind::Part
        } else if file.starts_with("seg-") {
            RequestKind::Segment
        } else if file.starts_with("init-") {
            RequestKind::Init
        } else if file.starts_with("dvr-") {
            RequestKind::Dvr
        } else if file.starts_with("archive-") {
            RequestKind::Export
        } else if path.contains("/whep/") || path.contains("/whip/") {
            // A session's resource (PATCH, DELETE).
            RequestKind::Webrtc
        } else {
            RequestKind::Other
        }
    }

    /// Its label value.
    pub fn label(self) -> &'static str {
        match self {
            RequestKind::Playlist => "playlist",
            RequestKind::Segment => "segment",
            RequestKind::Part => "part",
            RequestKind::Init => "init",
            RequestKind::Dvr => "dvr",
            RequestKind::Export => "export",
            RequestKind::Api => "api",
            RequestKind::Relay => "relay",
            RequestKind::Beacon => "beacon",
            RequestKind::Webrtc => "webrtc",
            RequestKind::Metrics => "metrics",
            RequestKind::Other => "other",
        }
    }
}

impl ServeStats {
    /// Response body bytes sent so far, of every kind.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes
            .iter()
            .fold(0u64, |sum, b| sum.saturating_add(b.load(Ordering::Relaxed)))
    }

    /// Prometheus families of these counters, labelled `listener`
    /// (`http`, `https`), for each `(listener, stats)`.
    pub fn write_metrics(m: &mut ugc_core::metrics::Exposition, listeners: &[(&str, &ServeStats)]) {
        use ugc_core::metrics::Kind;
        type Field = fn(&ServeStats) -> &AtomicU64;
        let families: [(&str, &str, Field); 5] = [
            (
                "ugc_http_connections_accepted_total",
                "HTTP connections accepted and served.",
                |s| &s.accepted,
            ),
            (
                "ugc_http_connections_refused_total_cap_total",
                "HTTP connections closed at accept: the listener's connection cap.",
                |s| &s.refused_total_cap,
            ),
            (
                "ugc_http_connections_refused_ip_cap_total",
                "HTTP connections closed at accept: their address's connection cap.",
                |s| &s.refused_ip_cap,
            ),
            (
                "ugc_http_connections_displaced_total",
                "HTTP connections that had sent no request yet, closed at the listener's connection cap to make room for a new one.",
                |s| &s.displaced,
            ),
            (
                "ugc_http_connections_timed_out_total",
                "HTTP connections closed for sending no request in time or idling.",
                |s| &s.timed_out,
            ),
        ];
        for (name, help, field) in families {
            m.family(name, Kind::Counter, help);
            for (listener, stats) in listeners {
                m.sample(
                    &[("listener", listener)],
                    field(stats).load(Ordering::Relaxed) as f64,
                );
            }
        }
        // By kind: only the pairs seen (a counter appears at its first
        // request).
        const CODES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        m.family(
            "ugc_http_requests_total",
            Kind::Counter,
            "HTTP requests answered, by what they asked for (kind) and status class (code).",
        );
        for (listener, stats) in listeners {
            for (k, kind) in RequestKind::ALL.iter().enumerate() {
                for (c, code) in CODES.iter().enumerate() {
                    let n = stats.requests[k][c].load(Ordering::Relaxed);
                    if n > 0 {
                        m.sample(
                            &[
                                ("listener", listener),
                                ("kind", kind.label()),
                                ("code", code),
                            ],
                            n as f64,
                        );
                    }
                }
            }
        }
        m.family(
            "ugc_http_response_bytes_total",
            Kind::Counter,
            "HTTP response body bytes sent, by what the requests asked for (kind).",
        );
        for (listener, stats) in listeners {
            for (k, kind) in RequestKind::ALL.iter().enumerate() {
                let n = stats.bytes[k].load(Ordering::Relaxed);
                if n > 0 {
                    m.sample(&[("listener", listener), ("kind", kind.label())], n as f64);
                }
            }
        }
    }

    /// Requests of `kind` answered with a status of `class` (1..=5) so far.
    pub fn requests(&self, kind: RequestKind, class: usize) -> u64 {
        let k = RequestKind::ALL
            .iter()
            .position(|x| *x == kind)
            .unwrap_or(0);
        self.requests[k]
            .get(class.wrapping_sub(1))
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// Response body bytes of requests of `kind` sent so far.
    pub fn response_bytes(&self, kind: RequestKind) -> u64 {
        let k = RequestKind::ALL
            .iter()
            .position(|x| *x == kind)
            .unwrap_or(0);
        self.bytes[k].load(Ordering::Relaxed)
    }
}

/// A response body that counts the bytes it yields into a counter.
struct Counted {
    inner: axum::body::Body,
    bytes: Arc<ServeStats>,
    kind: usize,
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.bytes.bytes[self.kind].fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl ConnLimiter {
    /// A limiter with `config`'s caps and exemptions.
    pub fn of(config: &ServeConfig) -> Arc<Self> {
        Self::with_exempt(
            config.max_connections,
            config.max_connections_per_ip,
            config.ip_cap_exempt.clone(),
        )
    }
}

/// Serves `app` on `listener` over HTTP/1.1 and HTTP/2 (h2c, prior
/// knowledge) with `config`'s limits. Each request carries
/// `ConnectInfo<SocketAddr>` of its peer, as with
/// `into_make_service_with_connect_info`. Runs until the listener fails
/// for good; transient accept errors (out of descriptors) back off.
pub async fn serve(listener: TcpListener, app: Router, config: ServeConfig) -> io::Result<()> {
    serve_until(
        listener,
        app,
        config,
        Arc::default(),
        std::future::pending(),
    )
    .await
}

/// The accept queue a listener bound by [`bind`] asks for. The kernel
/// caps it at `net.core.somaxconn` (4,096 by default since Linux 5.4).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener (HTTP, HTTPS, RTMP, RTMPS) on `addr` with an accept
/// queue of [`LISTEN_BACKLOG`]. `TcpListener::bind` (std's, tokio's)
/// asks for 128: a burst of connections larger than that while the
/// acceptor is busy (a flash crowd sent to an origin at once, publishers
/// reconnecting after a network blip, an idle-connection flood the caps
/// must see to displace) overflows it, and each dropped SYN costs its
/// client a 1 s, then 2 s, retransmission (measured: 1,000 connections
/// to a loaded debug server took 7 s with 128, the 7 overflows all
/// retried).
pub async fn bind(addr: impl tokio::net::ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As std and tokio do: a restarted server rebinds at once.
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))
}

/// How long [`serve_until`] lets requests in flight finish after `shutdown`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// [`serve`], counting into `stats`, until `shutdown` completes: then it
/// stops accepting, lets requests in flight finish (at most
/// [`SHUTDOWN_GRACE`]; long-lived responses such as event streams are cut)
/// and returns.
pub async fn serve_until(
    listener: TcpListener,
    app: Router,
    config: ServeConfig,
    stats: Arc<ServeStats>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let builder = Arc::new(builder(&config));
    let limiter = ConnLimiter::of(&config);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = accept(&listener, &limiter, &stats) => a,
            () = &mut shutdown => break,
        };
        let Some((tcp, peer, slot)) = accepted else {
            continue;
        };
        let io = Guarded::new(tcp, &config, stats.clone());
        let in_flight = io.in_flight();
        let (builder, app, stopped) = (builder.clone(), app.clone(), stopped.clone());
        let stats = stats.clone();
        tokio::spawn(async move {
            serve_connection(&builder, io, peer, app, stopped, in_flight, &stats, slot).await;
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while limiter.open_total() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Accepts one connection and admits it, or closes it (cap reached) and
/// answers `None`; backs off on accept errors.
pub(crate) async fn accept(
    listener: &TcpListener,
    limiter: &Arc<ConnLimiter>,
    stats: &ServeStats,
) -> Option<(tokio::net::TcpStream, SocketAddr, Slot)> {
    let (tcp, peer) = match listener.accept().await {
        Ok(c) => c,
        Err(e) => {
            // Out of descriptors and the like: back off, keep serving.
            tracing::warn!(error = %e, "accepting an HTTP connection");
            tokio::time::sleep(Duration::from_millis(50)).await;
            return None;
        }
    };
    match limiter.admit_soon(peer.ip(), tokio::task::yield_now).await {
        Ok(slot) => {
            stats.accepted.fetch_add(1, Ordering::Relaxed);
            let _ = tcp.set_nodelay(true);
            Some((tcp, peer, slot))
        }
        Err(why) => {
            let counter = match why {
                Refused::Total => &stats.refused_total_cap,
                Refused::PerIp => &stats.refused_ip_cap,
            };
            if counter.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
                tracing::warn!(%peer, ?why, "connection cap reached: closing new connections");
            }
            None
        }
    }
}

/// The hyper connection builder with `config`'s protocol limits.
pub(crate) fn builder(config: &ServeConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(config.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(config.h2_max_local_error_reset_streams);
    builder
}

/// Serves one connection's requests with `app`, each carrying the peer,
/// counting the requests being answered in `in_flight` (see [`Guarded`]);
/// when `stop` turns true, finishes the requests in flight and closes.
/// Its first request proves the connection's `slot`; until then a newer
/// connection may displace it at the cap ([`crate::limits`]), which closes
/// it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve_connection<S>(
    builder: &auto::Builder<TokioExecutor>,
    io: S,
    peer: SocketAddr,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
    in_flight: Arc<AtomicUsize>,
    stats: &Arc<ServeStats>,
    slot: Slot,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let counts = stats.clone();
    let displaced = slot.displaced();
    let slot = Arc::new(slot);
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        slot.prove();
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        let answering = Answering::enter(&in_flight);
        let app = app.clone();
        let kind = RequestKind::of(req.uri().path());
        let kind = RequestKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        let stats = counts.clone();
        async move {
            let response = app.oneshot(req).await;
            drop(answering);
            response.map(|r| {
                let class = usize::from(r.status().as_u16() / 100).clamp(1, 5) - 1;
                stats.requests[kind][class].fetch_add(1, Ordering::Relaxed);
                r.map(|inner| {
                    axum::body::Body::new(Counted {
                        inner,
                        bytes: stats,
                        kind,
                    })
                })
            })
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let stopping = async move {
        // Dropping the guard before anything else awaits.
        let _ = stop.wait_for(|stop| *stop).await.map(|_| ());
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        () = displaced => {
            stats.displaced.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "HTTP connection displaced at the connection cap before its first request");
            return;
        }
    };
    if let Err(e) = result {
        // hyper's own header-read timeout (the first-bytes and idle ones
        // are counted where they expire).
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(|e| e.is_timeout())
        {
            stats.timed_out.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// A request being answered; counted while it lives.
struct Answering(Arc<AtomicUsize>);

impl Answering {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Answering(Arc::clone(count))
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's byte stream with two deadlines: the first bytes must
/// arrive within `header_read_timeout`, and afterwards some byte must move
/// (either way) every `idle_timeout`. When one passes, reads and writes
/// fail with `TimedOut` and hyper closes the connection.
///
/// While a request is being answered (the handler has not returned its
/// response yet: a blocking reload holding for the next part) the client
/// has nothing to send, so a quiet read is not idleness then; a write that
/// cannot proceed always is (a reader that stopped reading).
pub struct Guarded<S> {
    inner: S,
    in_flight: Arc<AtomicUsize>,
    started: bool,
    idle_timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    expired: bool,
    stats: Arc<ServeStats>,
}

impl<S> Guarded<S> {
    /// Wraps `inner` with `config`'s deadlines, counting expiries in `stats`.
    pub fn new(inner: S, config: &ServeConfig, stats: Arc<ServeStats>) -> Self {
        Guarded {
            inner,
            in_flight: Arc::default(),
            started: false,
            idle_timeout: config.idle_timeout,
            deadline: Box::pin(tokio::time::sleep(config.header_read_timeout)),
            expired: false,
            stats,
        }
    }

    /// The count of requests being answered on this connection, which
    /// [`serve`] keeps; a quiet read does not expire while it is above 0.
    pub fn in_flight(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.in_flight)
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn progressed(&mut self) {
        // The first progress replaces the first-bytes deadline, even by an
        // earlier one (an `idle_timeout` shorter than `header_read_timeout`).
        let first = !self.started;
        self.started = true;
        let at = Instant::now() + self.idle_timeout;
        // Resetting the timer entry on every read is cheap, but skip it
        // when the deadline barely moved (a busy connection).
        if first || at > self.deadline.deadline() + Duration::from_millis(250) {
            self.deadline.as_mut().reset(at);
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.expired {
            return Err(timed_out(self.started));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired = true;
            self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
            return Err(timed_out(self.started));
        }
        Ok(())
    }
}

fn timed_out(started: bool) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        if started {
            "HTTP connection idle for too long"
        } else {
            "HTTP connection sent no request in time"
        },
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.progressed();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if self.in_flight.load(Ordering::Acquire) == 0 {
                    self.check(cx)?;
                } else if self.started {
                    // Answering takes the time it takes: the idle time
                    // counts from its end.
                    self.progressed();
                }
                Poll::Pending
            }
        }
    }
}

impl<S> Guarded<S> {
    /// What a write of the inner stream answered, with the deadlines
    /// applied: a blocked write may expire, one that took bytes is progress.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let n = match r {
            Poll::Pending => {
                self.check(cx)?;
                return Poll::Pending;
            }
            Poll::Ready(r) => r?,
        };
        if n > 0 && self.started {
            self.progressed();
        }
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_kinds_from_paths() {
        use super::RequestKind::*;
        let kind = super::RequestKind::of;
        for (path, want) in [
            ("/live/s/index.m3u8", Playlist),
            ("/live/s/720p/mono.m3u8", Playlist),
            ("/live/s/index-1700000000-60.m3u8", Playlist),
            ("/live/s/seg-3-17.m4s", Segment),
            ("/live/s/seg-3-17.ts", Segment),
            ("/live/s/part-3-17.2.m4s", Part),
            ("/live/s/360p/init-3-1.mp4", Init),
            ("/live/s/dvr-s1-2.m4s", Dvr),
            ("/live/s/archive-1700000000-60.mp4", Export),
            ("/api/v1/streams", Api),
            ("/relay/v1/s", Relay),
            ("/live/s/qoe", Beacon),
            ("/live/s/whip", Webrtc),
            ("/live/s/whep/abc", Webrtc),
            ("/metrics", Metrics),
            ("/", Other),
            ("/watch/s", Other),
            ("/assets/player.js", Other),
        ] {
            assert_eq!(kind(path), want, "{path}");
        }
        let labels: std::collections::BTreeSet<_> =
            super::RequestKind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels.len(), super::RequestKind::ALL.len());
    }
}
