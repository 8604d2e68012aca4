//! The tokio adapter of SRT ingest: one UDP socket, one task running the
//! [`SrtListener`] (handshakes, routing), one task per connected publisher
//! running its [`SrtConnection`] and a [`TsDemuxer`] into a
//! [`HubPublisher`].
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
    Authorizer, DenyKind, Hub, HubPublisher, Protocol, PublishDecision, PublishRequest, StreamPath,
};

use super::listener::{
    ListenerConfig, ListenerEvent, RejectCode, SrtConnection, SrtConnectionStats, SrtListener,
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
    /// Connected publishers at once; more are refused (2503).
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
/// second; cheap to clone and read from anywhere (metrics, API).
#[derive(Debug, Clone, Default)]
pub struct SrtStatsRegistry(Arc<Mutex<HashMap<SocketAddr, SrtSessionStats>>>);

impl SrtStatsRegistry {
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
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

enum Decision {
    Accept {
        peer: SocketAddr,
        stream: StreamPath,
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

/// Serves SRT publishers on `socket` until it fails for good.
pub async fn serve<A: Authorizer>(
    socket: UdpSocket,
    hub: Hub,
    auth: Arc<A>,
    passphrase: PassphraseLookup,
    config: SrtServerConfig,
    stats: SrtStatsRegistry,
) -> std::io::Result<()> {
    let socket = Arc::new(socket);
    let mut listener = SrtListener::new(config.listener.clone());
    let (dec_tx, mut dec_rx) = mpsc::unbounded_channel::<Decision>();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(SocketAddr, u64)>();
    let mut routes: HashMap<SocketAddr, Route> = HashMap::new();
    let mut deciding: HashMap<SocketAddr, StreamPath> = HashMap::new();
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
                    Decision::Accept { peer, stream, passphrase } => {
                        if routes.len() >= config.max_connections {
                            listener.reject(now, peer, RejectCode::UNAVAILABLE);
                        } else {
                            deciding.insert(peer, stream);
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
            }
            _ = tick.tick() => {
                listener.handle_timeout(Instant::now().into_std());
                deciding.retain(|peer, _| listener.is_pending(peer));
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
                                Ok(PublishDecision::Allow { stream }) => {
                                    let passphrase = passphrase(&stream);
                                    Decision::Accept {
                                        peer,
                                        stream,
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
                    let Some(stream) = deciding.remove(&peer) else {
                        continue;
                    };
                    let publisher = hub.publish(&stream);
                    tracing::info!(%peer, %stream, "srt publish started");
                    next_id += 1;
                    let (tx, rx) = mpsc::channel(config.queue_datagrams.max(16));
                    routes.insert(peer, Route { tx, id: next_id });
                    let task = ConnectionTask {
                        conn: *connection,
                        rx,
                        socket: Arc::clone(&socket),
                        publisher,
                        stream,
                        stats: stats.clone(),
                    };
                    let done = done_tx.clone();
                    let id = next_id;
                    tokio::spawn(async move {
                        task.run().await;
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

struct ConnectionTask {
    conn: SrtConnection,
    rx: mpsc::Receiver<Bytes>,
    socket: Arc<UdpSocket>,
    publisher: HubPublisher,
    stream: StreamPath,
    stats: SrtStatsRegistry,
}

impl ConnectionTask {
    async fn run(mut self) {
        let peer = self.conn.peer();
        let mut demux = TsDemuxer::new();
        let mut out = Vec::with_capacity(1500);
        let mut next_stats = Instant::now();
        let mut taken_over = false;
        loop {
            let now = Instant::now();
            let snow = now.into_std();
            self.conn.handle_timeout(snow);
            while self.conn.poll_transmit(snow, &mut out) {
                let _ = self.socket.send_to(&out, peer).await;
            }
            while let Some(data) = self.conn.poll_data(snow) {
                demux.push(&data);
                while let Some(ev) = demux.poll_event() {
                    if self.publisher.push(ev).is_err() {
                        taken_over = true;
                    }
                }
            }
            if taken_over || self.conn.is_closed() {
                break;
            }
            if now >= next_stats {
                next_stats = now + Duration::from_secs(1);
                let s = SrtSessionStats {
                    peer,
                    stream: self.stream.clone(),
                    connection: self.conn.stats(snow),
                    demux: demux.stats().clone(),
                };
                self.stats.lock().insert(peer, s);
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
                    None => break,
                },
                _ = sleep_until(deadline) => {}
            }
        }
        if self.conn.panicked() {
            tracing::warn!(%peer, stream = %self.stream, "srt connection dropped after a panic in srt-protocol");
        }
        if taken_over || !self.conn.is_closed() {
            let bye = self.conn.close(Instant::now().into_std());
            let _ = self.socket.send_to(&bye, peer).await;
        }
        demux.finish();
        while let Some(ev) = demux.poll_event() {
            if self.publisher.push(ev).is_err() {
                break;
            }
        }
        let final_stats = self.conn.stats(Instant::now().into_std());
        self.stats.lock().remove(&peer);
        tracing::info!(
            %peer,
            stream = %self.stream,
            taken_over,
            lost = final_stats.rx_lost,
            retransmitted = final_stats.rx_retransmitted,
            dropped = final_stats.rx_dropped,
            cc_errors = demux.stats().cc_errors,
            "srt publish ended"
        );
    }
}
