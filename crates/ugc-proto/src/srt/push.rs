//! [`SrtPush`]: one session to an `srt://` target (a platform's SRT
//! ingest, `srt-live-transmit`, another ugc node), as a [`Sink`].
//!
//! The stream goes out as MPEG-TS ([`ugc_codec::ts::TsMuxer`]: H.264,
//! H.265 and AAC; other tracks are left out) in messages of seven TS
//! packets (1316 bytes), over an SRT caller connection in live mode
//! ([`super::SrtCaller`], then [`super::SrtConnection`] on a UDP socket
//! driven by a task of its own, so acknowledgements, retransmissions and
//! keep-alives run while the stream is idle too). PAT and PMT go before
//! every video keyframe (every 40 frames without video), so a receiver
//! can start at any GOP. Like the RTMP push it starts at a video keyframe
//! and restarts at one after a discontinuity.
//!
//! Target URLs follow libsrt's URI syntax as `srt-live-transmit` and most
//! platforms write it: `srt://host:port?streamid=...&passphrase=...`, with
//! `pbkeylen` (16, 24, 32), `latency` (milliseconds) and `mode=caller`
//! accepted too. Everything after the first `?` is the query, `#`
//! included (stream ids of the access-control syntax start with `#!::`);
//! values may be percent-encoded.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use ugc_codec::ts::{PACKET_SIZE, TsMuxer};
use ugc_core::{MediaEvent, MediaKind, Sink, TrackId, Tracks};

use super::caller::{CallerConfig, CallerEvent, SrtCaller};
use super::listener::SrtConnection;
use crate::error::{Error, Result};
use crate::rtmp::push::PushConfig;

/// Bytes in one SRT message: seven TS packets (what libsrt live mode and
/// ffmpeg send).
pub const MESSAGE_SIZE: usize = 7 * PACKET_SIZE;

/// Messages queued for the connection's task before `send` waits.
const QUEUE: usize = 1024;

/// Frames between PAT/PMT repeats in a stream without video.
const TABLES_EVERY: u32 = 40;

/// An `srt://` target URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtTarget {
    /// `host:port` to resolve.
    pub host: String,
    /// The port.
    pub port: u16,
    /// Stream id, passphrase, key length and latency of the call.
    pub call: CallerSettings,
}

/// The call settings a URL can set (a [`CallerConfig`] without the
/// timeouts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerSettings {
    /// `streamid`.
    pub stream_id: Option<String>,
    /// `passphrase`.
    pub passphrase: Option<String>,
    /// `pbkeylen`, default 16.
    pub key_len: u8,
    /// `latency` in milliseconds, default 120.
    pub latency_ms: u32,
}

fn percent_decode(s: &str) -> Result<String> {
    let bad = || Error::BadTarget(format!("bad percent-encoding in {s:?}"));
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// Parses `srt://host:port[?query]`; see the [module documentation](self).
pub fn parse_target(url: &str) -> Result<SrtTarget> {
    let bad = |why: String| Error::BadTarget(why);
    let rest = url
        .strip_prefix("srt://")
        .ok_or_else(|| bad("not an srt:// URL".into()))?;
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| bad(format!("bad host {authority:?}")))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err(bad(format!("bad host {authority:?}")));
    }
    let port: u16 = port
        .ok_or_else(|| bad("an srt:// URL needs a port".into()))?
        .parse()
        .map_err(|_| bad(format!("bad port in {authority:?}")))?;
    let mut call = CallerSettings {
        stream_id: None,
        passphrase: None,
        key_len: 16,
        latency_ms: 120,
    };
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)?;
        match key {
            "streamid" => call.stream_id = Some(value),
            "passphrase" => call.passphrase = Some(value),
            "pbkeylen" => {
                call.key_len = match value.as_str() {
                    "16" => 16,
                    "24" => 24,
                    "32" => 32,
                    _ => return Err(bad(format!("pbkeylen must be 16, 24 or 32, got {value:?}"))),
                }
            }
            "latency" => {
                call.latency_ms = value
                    .parse()
                    .ok()
                    .filter(|ms| (20..=60_000).contains(ms))
                    .ok_or_else(|| bad(format!("latency must be 20..=60000 ms, got {value:?}")))?;
            }
            "mode" if value == "caller" => {}
            "mode" => return Err(bad(format!("mode {value:?}: a push is the caller"))),
            other => return Err(bad(format!("unknown SRT parameter {other:?}"))),
        }
    }
    Ok(SrtTarget {
        host: host.to_owned(),
        port,
        call,
    })
}

/// `srt://host:port?***`: a target URL safe to log (the stream id and the
/// passphrase are secrets).
pub fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?***"),
        None => url.to_owned(),
    }
}

/// What the connection's task shares with the sink.
#[derive(Default)]
struct Shared {
    bytes_sent: AtomicU64,
    retransmitted: AtomicU64,
    /// Why the connection ended, once it has.
    ended: Mutex<Option<String>>,
}

impl Shared {
    fn ended(&self) -> Option<String> {
        self.ended
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A session to an `srt://` target: a [`Sink`] of media events, made by
/// [`SrtPush::connect`]; see the [module documentation](self).
///
/// `send` waits while the connection's queue is full (for at most
/// [`PushConfig::write_timeout`]); SRT live mode itself never waits: what
/// the network cannot carry within the latency is dropped by the
/// protocol. A connection that ended (the target closed it, went silent
/// for 5 s, or the network failed) fails the next `send`. `finish` sends
/// what is queued, gives retransmissions a moment, and closes.
pub struct SrtPush {
    target: String,
    tx: Option<mpsc::Sender<Bytes>>,
    task: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    write_timeout: Duration,
    mux: Option<TsMuxer>,
    video: Option<TrackId>,
    wait_keyframe: bool,
    since_tables: u32,
    /// TS bytes not yet in a full message.
    pending: Vec<u8>,
    frames_sent: u64,
    finished: bool,
}

impl std::fmt::Debug for SrtPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtPush")
            .field("target", &self.target)
            .field("frames_sent", &self.frames_sent)
            .finish_non_exhaustive()
    }
}

fn random_pair() -> [u32; 2] {
    let r = RandomState::new().hash_one(std::process::id() ^ 0x5a17);
    [r as u32, (r >> 32) as u32]
}

impl SrtPush {
    /// Calls `url` (`srt://host:port?streamid=...`) and returns once the
    /// listener accepted, within [`PushConfig::connect_timeout`].
    ///
    /// A refusal is [`Error::Refused`] with the reason code
    /// (`SRT_REJ_...` or 2000 + an HTTP status, as the listener sent it); a
    /// URL that cannot work is [`Error::BadTarget`]; no answer is
    /// [`Error::Timeout`].
    pub async fn connect(url: &str, config: &PushConfig) -> Result<SrtPush> {
        let target = parse_target(url)?;
        let shown = redact(url);
        // The name lookup is bounded like the handshake: a resolver that
        // hangs must not hold the push in `Connecting` forever.
        let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
        let remote = tokio::time::timeout(config.connect_timeout, lookup)
            .await
            .map_err(|_| Error::Timeout("resolving the SRT target's host"))?
            .map_err(|e| Error::Io(std::io::Error::new(e.kind(), format!("{shown}: {e}"))))?
            .next()
            .ok_or_else(|| Error::BadTarget(format!("{}: no address", target.host)))?;
        let any: IpAddr = match remote {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let socket = UdpSocket::bind((any, 0)).await?;
        socket.connect(remote).await?;
        let local_ip = socket.local_addr()?.ip();
        let call = CallerConfig {
            stream_id: target.call.stream_id.clone(),
            passphrase: target.call.passphrase.clone(),
            key_len: target.call.key_len,
            latency: Duration::from_millis(u64::from(target.call.latency_ms)),
            ..CallerConfig::default()
        };
        let caller =
            SrtCaller::new(&call, remote, local_ip, random_pair()).map_err(Error::BadTarget)?;
        let conn = tokio::time::timeout(config.connect_timeout, handshake(&socket, caller))
            .await
            .map_err(|_| Error::Timeout("the SRT target did not answer the handshake"))??;
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel(QUEUE);
        let linger = (call.latency * 2).clamp(Duration::from_millis(300), Duration::from_secs(2));
        let task = tokio::spawn(drive(socket, conn, rx, Arc::clone(&shared), linger));
        Ok(SrtPush {
            target: shown,
            tx: Some(tx),
            task: Some(task),
            shared,
            write_timeout: config.write_timeout,
            mux: None,
            video: None,
            wait_keyframe: true,
            since_tables: 0,
            pending: Vec::new(),
            frames_sent: 0,
            finished: false,
        })
    }

    /// The target, secrets redacted.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Bytes put on the wire (SRT payload, retransmissions included).
    pub fn bytes_sent(&self) -> u64 {
        self.shared.bytes_sent.load(Ordering::Relaxed)
    }

    /// Packets sent again after a loss report.
    pub fn retransmitted(&self) -> u64 {
        self.shared.retransmitted.load(Ordering::Relaxed)
    }

    /// Frames muxed and queued.
    pub fn frames_sent(&self) -> u64 {
        self.frames_sent
    }

    fn set_tracks(&mut self, tracks: &Tracks) -> Result<()> {
        let mux = TsMuxer::new(tracks).map_err(|e| Error::Media(e.to_string()))?;
        if tracks.iter().all(|t| mux.pid(t.id).is_none()) {
            let codecs: Vec<String> = tracks.iter().map(|t| format!("{:?}", t.codec)).collect();
            return Err(Error::Unsupported(format!(
                "MPEG-TS over SRT carries H.264, H.265 and AAC; the stream has {}",
                codecs.join(", ")
            )));
        }
        // The video track that keyframes are taken from (the muxer
        // carries one).
        self.video = tracks
            .iter()
            .find(|t| t.kind() == MediaKind::Video && mux.pid(t.id).is_some())
            .map(|t| t.id);
        self.mux = Some(mux);
        self.wait_keyframe = true;
        self.since_tables = TABLES_EVERY;
        Ok(())
    }

    async fn send_event(&mut self, event: MediaEvent) -> Result<()> {
        if self.finished {
            return Err(Error::Closed);
        }
        if let Some(why) = self.shared.ended() {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                why,
            )));
        }
        match event {
            MediaEvent::Tracks(t) => self.set_tracks(&t)?,
            MediaEvent::Frame(f) => {
                let Some(mux) = self.mux.as_mut() else {
                    return Ok(());
                };
                if mux.pid(f.track).is_none() {
                    return Ok(());
                }
                let key = self.video == Some(f.track) && f.keyframe;
                if self.wait_keyframe {
                    if self.video.is_some() && !key {
                        return Ok(());
                    }
                    self.wait_keyframe = false;
                }
                if key || (self.video.is_none() && self.since_tables >= TABLES_EVERY) {
                    mux.write_tables(&mut self.pending);
                    self.since_tables = 0;
                }
                self.since_tables += 1;
                if mux.write_frame(&f, &mut self.pending).is_ok() {
                    self.frames_sent += 1;
                }
                self.queue(false).await?;
            }
            MediaEvent::Discontinuity(_) => self.wait_keyframe = true,
            MediaEvent::End => return self.close().await,
            _ => {}
        }
        Ok(())
    }

    /// Queues the whole messages of `pending` (and the rest with `all`).
    async fn queue(&mut self, all: bool) -> Result<()> {
        let Some(tx) = self.tx.clone() else {
            return Err(Error::Closed);
        };
        let whole = self.pending.len() / MESSAGE_SIZE * MESSAGE_SIZE;
        let upto = if all { self.pending.len() } else { whole };
        if upto == 0 {
            return Ok(());
        }
        let data = Bytes::from(self.pending.drain(..upto).collect::<Vec<u8>>());
        for i in (0..data.len()).step_by(MESSAGE_SIZE) {
            let msg = data.slice(i..(i + MESSAGE_SIZE).min(data.len()));
            match tokio::time::timeout(self.write_timeout, tx.send(msg)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    let why = self
                        .shared
                        .ended()
                        .unwrap_or_else(|| "connection ended".into());
                    return Err(Error::Io(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        why,
                    )));
                }
                Err(_) => return Err(Error::Timeout("the SRT connection stopped sending")),
            }
        }
        Ok(())
    }

    /// Sends what is left, lets the connection linger for retransmissions
    /// and closes it; once.
    async fn close(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        let queued = self.queue(true).await;
        self.finished = true;
        self.tx = None;
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(self.write_timeout, task).await;
        }
        queued
    }

    fn stage_error(&self, e: Error) -> ugc_core::Error {
        ugc_core::Error::Stage {
            stage: format!("srt push to {}", self.target),
            source: Box::new(e),
        }
    }
}

impl Drop for SrtPush {
    fn drop(&mut self) {
        // Without `finish`: the task sends the shutdown and ends once the
        // queue is closed; nothing to wait for here.
        self.tx = None;
    }
}

impl Sink for SrtPush {
    async fn send(&mut self, event: MediaEvent) -> ugc_core::Result<()> {
        let sent = self.send_event(event).await;
        sent.map_err(|e| self.stage_error(e))
    }

    async fn finish(&mut self) -> ugc_core::Result<()> {
        let done = self.close().await;
        done.map_err(|e| self.stage_error(e))
    }
}

/// Runs the handshake on `socket` until the listener answers.
async fn handshake(socket: &UdpSocket, mut caller: SrtCaller) -> Result<Box<SrtConnection>> {
    let remote = caller.remote();
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        if caller.poll_timeout(now) <= now {
            caller.handle_timeout(now);
        }
        while let Some(d) = caller.poll_transmit() {
            socket.send(&d).await?;
        }
        match caller.poll_event() {
            Some(CallerEvent::Connected(c)) => return Ok(c),
            Some(CallerEvent::Rejected(code)) => {
                return Err(Error::Refused {
                    code: format!("SRT reject {}", code.0),
                    description: reject_text(code.0).into(),
                });
            }
            Some(CallerEvent::Failed(why)) => {
                return Err(Error::Io(std::io::Error::other(why)));
            }
            None => {}
        }
        let wake = caller.poll_timeout(Instant::now());
        tokio::select! {
            r = socket.recv(&mut buf) => {
                let n = r.map_err(|e| Error::Io(std::io::Error::new(e.kind(), format!("{remote}: {e}"))))?;
                caller.handle_datagram(Instant::now(), remote, &buf[..n]);
            }
            () = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

/// What an SRT reject code means (libsrt's `SRT_REJ_*`, and the access
/// control range 2000 + HTTP status).
fn reject_text(code: u16) -> &'static str {
    match code {
        1002 => "the listener refused the call",
        1003 => "the listener is out of resources",
        1004 => "the listener refused the call's settings",
        1006 => "internal error at the listener",
        1007 => "the socket closed during the handshake",
        1010 => "wrong passphrase",
        1011 => "the encryption settings do not match (a passphrase missing on one side)",
        1012 => "the listener wants another message API",
        1013 => "the listener wants another congestion control",
        1014 => "the listener refused the packet filter",
        1015 => "a connection group mismatch",
        2400 => "bad stream id",
        2401 => "unauthorized: unknown or revoked key",
        2402 => "the listener is overloaded",
        2403 => "forbidden",
        2404 => "no such stream",
        2405 => "the listener does not take this mode",
        2409 => "the stream is busy",
        2503 => "the listener is unavailable",
        _ => "",
    }
}

/// The connection's task: sends what the sink queues, runs SRT's timers,
/// takes the target's acknowledgements and loss reports, and ends when
/// the queue closes (after `linger`) or the connection does.
async fn drive(
    socket: UdpSocket,
    mut conn: Box<SrtConnection>,
    mut rx: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
    linger: Duration,
) {
    let mut out = Vec::with_capacity(1500);
    let mut buf = vec![0u8; 2048];
    let mut closing: Option<Instant> = None;
    let ended: String = loop {
        let now = Instant::now();
        if conn.poll_timeout(now) <= now {
            conn.handle_timeout(now);
        }
        let mut failed = None;
        while conn.poll_transmit(now, &mut out) {
            if let Err(e) = socket.send(&out).await {
                failed = Some(format!("sending: {e}"));
                break;
            }
        }
        let (bytes, retransmitted) = conn.tx_totals();
        shared.bytes_sent.store(bytes, Ordering::Relaxed);
        shared.retransmitted.store(retransmitted, Ordering::Relaxed);
        if let Some(why) = failed {
            break why;
        }
        if conn.is_closed() {
            break if conn.panicked() {
                "srt-protocol failed in the connection".into()
            } else {
                "the target closed the connection or went silent".into()
            };
        }
        if closing.is_some_and(|at| now >= at) {
            let _ = socket.send(&conn.close(now)).await;
            break "closed".into();
        }
        let mut wake = conn.poll_timeout(now);
        if let Some(at) = closing {
            wake = wake.min(at);
        }
        tokio::select! {
            r = socket.recv(&mut buf) => match r {
                Ok(n) => conn.handle_datagram(Instant::now(), &buf[..n]),
                Err(e) => break format!("receiving: {e}"),
            },
            m = rx.recv(), if closing.is_none() => match m {
                Some(data) => {
                    conn.send(Instant::now(), data);
                    // Take whatever else is queued before sending.
                    while let Ok(data) = rx.try_recv() {
                        conn.send(Instant::now(), data);
                    }
                }
                None => closing = Some(Instant::now() + linger),
            },
            () = tokio::time::sleep_until(wake.into()) => {}
        }
    };
    *shared
        .ended
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(ended);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn target_urls_parse_as_libsrt_writes_them() {
        let t = parse_target(
            "srt://ingest.example.com:9000?streamid=#!::r=live/show,m=publish&passphrase=correct%20horse1&pbkeylen=32&latency=400",
        )
        .unwrap();
        assert_eq!((t.host.as_str(), t.port), ("ingest.example.com", 9000));
        assert_eq!(
            t.call.stream_id.as_deref(),
            Some("#!::r=live/show,m=publish")
        );
        assert_eq!(t.call.passphrase.as_deref(), Some("correct horse1"));
        assert_eq!((t.call.key_len, t.call.latency_ms), (32, 400));
        let t = parse_target("srt://[::1]:9000/?mode=caller&streamid=%23!%3A%3Ar%3Dx").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert_eq!(t.call.stream_id.as_deref(), Some("#!::r=x"));
        let t = parse_target("srt://10.0.0.1:1234").unwrap();
        assert_eq!((t.call.key_len, t.call.latency_ms), (16, 120));
    }

    #[test]
    fn target_urls_that_cannot_work_say_why() {
        for (url, says) in [
            ("rtmp://a:1/x", "not an srt:// URL"),
            ("srt://host", "needs a port"),
            ("srt://:9000", "bad host"),
            ("srt://h:99999", "bad port"),
            ("srt://h:1?mode=listener", "a push is the caller"),
            ("srt://h:1?pbkeylen=20", "pbkeylen must be 16, 24 or 32"),
            ("srt://h:1?latency=5", "latency must be 20..=60000 ms"),
            ("srt://h:1?oheadbw=5", "unknown SRT parameter"),
            ("srt://h:1?streamid=%zz", "bad percent-encoding"),
        ] {
            let e = parse_target(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn redaction_hides_the_query() {
        assert_eq!(
            redact("srt://h:1?streamid=secret&passphrase=x"),
            "srt://h:1?***"
        );
        assert_eq!(redact("srt://h:1"), "srt://h:1");
    }
}
