//! The tokio adapter: accepts RTMP connections and publishes accepted
//! streams into a [`Hub`].
//!
//! One task per connection, each a small loop around a [`ServerSession`]:
//! read -> [`ServerSession::handle_input`] -> write every
//! [`ServerSession::poll_output`] -> handle every
//! [`ServerSession::poll_event`]. Publish requests are decided by the
//! caller's [`Authorizer`]; audio, video and metadata go through
//! [`FlvIngest`] into the [`HubPublisher`]. A connection's error (bad bytes,
//! timeout, takeover of its stream) is logged with the peer address and
//! closes only that connection.
//!
//! A refused publisher gets the authorizer's reason in the `onStatus`
//! description; then we half-close and read what it still sends (discarded)
//! until it closes, for at most [`RtmpServerConfig::refusal_linger`], so the
//! client reads our status instead of a reset.

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout, timeout_at};
use ugc_codec::flv::FlvIngest;
use ugc_core::{
    Authorizer, Hub, HubPublisher, Protocol, PublishDecision, PublishRequest, StreamPath,
};

use super::session::{ServerEvent, ServerSession, SessionConfig};
use crate::error::{Error, Result};

/// Settings of [`serve`].
#[derive(Debug, Clone)]
pub struct RtmpServerConfig {
    /// Settings of every session.
    pub session: SessionConfig,
    /// Time from accept until the handshake is complete.
    pub handshake_timeout: Duration,
    /// Longest silence from a connected peer.
    pub idle_timeout: Duration,
    /// Longest time one write to the peer may take.
    pub write_timeout: Duration,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Size of the per-connection read buffer.
    pub read_buffer_size: usize,
    /// Read batching while no viewer wants a stream at low latency
    /// ([`HubPublisher::low_latency_wanted`]): its publisher's socket is
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
            read_buffer_size: 64 * 1024,
            batch_reads: None,
            refusal_linger: Duration::from_secs(2),
        }
    }
}

/// Accepts RTMP connections on `listener` forever, one task per connection.
/// Accepted publishers publish into `hub` under the stream name `auth`
/// returns. Returns only if accepting fails for good.
pub async fn serve<A: Authorizer>(
    listener: TcpListener,
    hub: Hub,
    auth: Arc<A>,
    config: RtmpServerConfig,
) -> std::io::Result<()> {
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let config = Arc::new(config);
    let seeds = std::collections::hash_map::RandomState::new();
    let epoch = Instant::now();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and similar: back off, keep serving.
                tracing::warn!(error = %e, "rtmp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            tracing::warn!(%peer, limit = config.max_connections, "rtmp connection limit reached; closing");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let seed = seeds.hash_one(peer);
        let conn = Connection {
            tcp,
            peer,
            hub: hub.clone(),
            auth: Arc::clone(&auth),
            config: Arc::clone(&config),
            publishing: None,
            batcher: config.batch_reads.map(|i| ReadBatcher::new(epoch, i)),
        };
        tokio::spawn(async move {
            let _permit = permit;
            conn.run(seed).await;
        });
    }
}

/// How a connection's session ended without an error.
enum Closed {
    /// The peer closed the connection.
    ByPeer,
    /// We refused its publish; the refusal is written.
    Refused,
}

struct Publishing {
    stream: StreamPath,
    publisher: HubPublisher,
    ingest: FlvIngest,
}

struct Connection<A> {
    tcp: TcpStream,
    peer: SocketAddr,
    hub: Hub,
    auth: Arc<A>,
    config: Arc<RtmpServerConfig>,
    publishing: Option<Publishing>,
    batcher: Option<ReadBatcher>,
}

impl<A: Authorizer> Connection<A> {
    async fn run(mut self, seed: u64) {
        let mut session = ServerSession::new(SessionConfig {
            handshake_seed: seed,
            ..self.config.session.clone()
        });
        let result = self.drive(&mut session).await;
        let stream = self.publishing.as_ref().map(|p| p.stream.clone());
        self.end_publish();
        match result {
            Ok(Closed::ByPeer) => {
                tracing::debug!(peer = %self.peer, ?stream, "rtmp connection closed")
            }
            Ok(Closed::Refused) => {
                self.linger().await;
                tracing::debug!(peer = %self.peer, "refused rtmp connection closed");
                return;
            }
            Err(e) => {
                tracing::warn!(peer = %self.peer, ?stream, error = %e, "rtmp connection closed on error")
            }
        }
        let _ = self.tcp.shutdown().await;
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
        let mut buf = [0u8; 4096];
        let mut left = LINGER_MAX_BYTES;
        while left > 0 {
            match timeout_at(deadline, self.tcp.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
                // Closed by the peer, reset, or the linger is over.
                _ => break,
            }
        }
    }

    async fn drive(&mut self, session: &mut ServerSession) -> Result<Closed> {
        let handshake_deadline = Instant::now() + self.config.handshake_timeout;
        let mut buf = vec![0u8; self.config.read_buffer_size.max(1)];
        let mut last_full = false;
        loop {
            if let (Some(batcher), Some(p)) = (&self.batcher, &self.publishing) {
                let now = Instant::now();
                let low_latency = p.publisher.low_latency_wanted(now.into_std());
                if let Some(at) = batcher.next_read(now, low_latency, last_full) {
                    tokio::time::sleep_until(at).await;
                }
            }
            let read = if session.is_connected() {
                timeout(self.config.idle_timeout, self.tcp.read(&mut buf))
                    .await
                    .map_err(|_| Error::Timeout("peer idle"))?
            } else {
                timeout_at(handshake_deadline, self.tcp.read(&mut buf))
                    .await
                    .map_err(|_| Error::Timeout("handshake"))?
            };
            let n = read?;
            if n == 0 {
                return Ok(Closed::ByPeer);
            }
            last_full = n == buf.len();
            let input = session.handle_input(&buf[..n]);
            // Events of messages before a bad one are still delivered (a
            // clean FCUnpublish before garbage ends the stream cleanly).
            self.flush(session).await?;
            self.handle_events(session).await?;
            input?;
            if session.is_closed() {
                // Not by an input error (returned above): we refused.
                return Ok(Closed::Refused);
            }
        }
    }

    async fn flush(&mut self, session: &mut ServerSession) -> Result<()> {
        while let Some(out) = session.poll_output() {
            timeout(self.config.write_timeout, self.tcp.write_all(&out))
                .await
                .map_err(|_| Error::Timeout("write"))??;
        }
        Ok(())
    }

    async fn handle_events(&mut self, session: &mut ServerSession) -> Result<()> {
        while let Some(event) = session.poll_event() {
            match event {
                ServerEvent::PublishRequested { app, key, .. } => {
                    self.authorize(session, app, key).await?;
                    self.flush(session).await?;
                }
                ServerEvent::Metadata(meta) => {
                    if let Some(p) = &mut self.publishing {
                        p.ingest.set_metadata(meta);
                    }
                }
                ServerEvent::Audio { timestamp_ms, body } => {
                    if let Some(p) = &mut self.publishing {
                        p.ingest
                            .push_audio(timestamp_ms, body)
                            .map_err(|e| Error::Media(e.to_string()))?;
                        drain(p)?;
                    }
                }
                ServerEvent::Video { timestamp_ms, body } => {
                    if let Some(p) = &mut self.publishing {
                        p.ingest
                            .push_video(timestamp_ms, body)
                            .map_err(|e| Error::Media(e.to_string()))?;
                        drain(p)?;
                    }
                }
                ServerEvent::PublishEnded => {
                    if let Some(stream) = self.publishing.as_ref().map(|p| p.stream.clone()) {
                        tracing::info!(peer = %self.peer, %stream, "rtmp publish ended");
                    }
                    self.end_publish();
                }
            }
        }
        Ok(())
    }

    async fn authorize(
        &mut self,
        session: &mut ServerSession,
        app: String,
        key: String,
    ) -> Result<()> {
        let req = PublishRequest {
            protocol: Protocol::Rtmp,
            app,
            key,
            client_ip: self.peer.ip(),
        };
        match self.auth.authorize_publish(&req).await {
            PublishDecision::Allow { stream } => {
                let publisher = self.hub.publish(&stream);
                session.accept_publish()?;
                tracing::info!(peer = %self.peer, %stream, "rtmp publish started");
                self.publishing = Some(Publishing {
                    stream,
                    publisher,
                    ingest: FlvIngest::new(),
                });
            }
            PublishDecision::Deny { kind, reason } => {
                // The key is not logged (a secret); the reason never holds it.
                tracing::info!(peer = %self.peer, app = %req.app, ?kind, %reason, "rtmp publish denied");
                session.reject_publish(kind, &reason)?;
            }
        }
        Ok(())
    }

    fn end_publish(&mut self) {
        if let Some(mut p) = self.publishing.take() {
            p.ingest.finish();
            if let Err(e) = drain(&mut p) {
                tracing::debug!(peer = %self.peer, stream = %p.stream, error = %e, "final media not accepted");
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

/// Moves the assembled media events into the Hub.
fn drain(p: &mut Publishing) -> Result<()> {
    while let Some(ev) = p.ingest.poll_event() {
        p.publisher.push(ev)?;
    }
    Ok(())
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
