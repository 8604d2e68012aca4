//! Restream: pushes a Hub stream to an `rtmp://` or `rtmps://` target (a
//! platform, another ugc-server) as a tracked output.
//!
//! One task per target around a [`ClientSession`] over TCP or TLS (rustls).
//! Each target
//!
//! * has a state ([`PushState`]: connecting, live, retrying, failed), the
//!   last error, bytes and frames sent, reconnects and skips, readable at any
//!   time through its [`PushHandle`];
//! * reconnects with exponential backoff (1 s doubling to 30 s, reset once
//!   live); a refusal by the target or an unusable URL/codec is `Failed`
//!   after [`PushConfig::max_refusals`] consecutive refusals;
//! * starts at a keyframe (a Hub reader starts at the newest GOP; frames
//!   before the first video keyframe are not sent);
//! * never holds up the ingest or other targets: it is a Hub reader, and a
//!   reader that falls behind the Hub window jumps to the newest keyframe
//!   (counted in [`PushStatus::skips`]); a target that stops reading is
//!   dropped after [`PushConfig::write_timeout`] and retried.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, timeout};
use ugc_codec::flv;
use ugc_core::{Codec, Hub, MediaEvent, MediaKind, StreamPath, Timescale, Tracks, time::rescale};

use super::client::{ClientConfig, ClientEvent, ClientSession};
use crate::error::{Error, Result};

/// The state of one restream target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushState {
    /// Connecting / handshaking / waiting for the publish to start.
    Connecting,
    /// Publishing media.
    Live,
    /// Waiting to reconnect after an error.
    Retrying,
    /// Given up (refused repeatedly, bad URL, unsupported codec); the
    /// supervisor may start a new push when the settings change.
    Failed,
    /// Stopped by its owner or because the stream ended.
    Stopped,
}

/// What a [`PushHandle`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushStatus {
    /// The target with its key replaced by `***`.
    pub target: String,
    /// Current state.
    pub state: PushState,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Bytes written to the target (all sessions).
    pub bytes_sent: u64,
    /// Frames sent (all sessions).
    pub frames_sent: u64,
    /// Times the pusher fell behind and skipped to a keyframe.
    pub skips: u64,
    /// Sessions started after the first.
    pub reconnects: u64,
}

/// Settings of a push.
#[derive(Clone)]
pub struct PushConfig {
    /// First reconnect delay; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// Time to connect, handshake and get `NetStream.Publish.Start`.
    pub connect_timeout: Duration,
    /// Longest a write to the target may block.
    pub write_timeout: Duration,
    /// Consecutive refusals (or permanent errors) before `Failed`.
    pub max_refusals: u32,
    /// TLS settings for `rtmps://` (default: web PKI roots).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for PushConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushConfig")
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("connect_timeout", &self.connect_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("max_refusals", &self.max_refusals)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_refusals: 5,
            tls: None,
        }
    }
}

/// A TLS client configuration trusting the web PKI roots plus `extra` CA
/// certificates (DER).
pub fn tls_config(
    extra: impl IntoIterator<Item = rustls::pki_types::CertificateDer<'static>>,
) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for c in extra {
        roots
            .add(c)
            .map_err(|e| Error::Protocol(format!("bad CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Protocol(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl PushConfig {
    /// The defaults, with TLS roots the web PKI plus the CA certificates in
    /// the PEM file `ca_file` (for `rtmps://` targets with a private CA).
    pub fn with_ca_file(ca_file: Option<&std::path::Path>) -> Result<PushConfig> {
        use rustls::pki_types::pem::PemObject;
        let mut extra = Vec::new();
        if let Some(path) = ca_file {
            let io = |what: &str, e: &dyn std::fmt::Display| {
                Error::Io(std::io::Error::other(format!(
                    "{what} {}: {e}",
                    path.display()
                )))
            };
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| io("reading", &e))?
            {
                extra.push(cert.map_err(|e| io("parsing", &e))?);
            }
        }
        Ok(PushConfig {
            tls: Some(tls_config(extra)?),
            ..PushConfig::default()
        })
    }
}

/// `rtmp://host/app/***`: a target URL safe to log.
pub fn redact(url: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/***"),
        None => "***".into(),
    }
}

/// A running push; dropping it stops the push.
#[derive(Debug)]
pub struct PushHandle {
    url: String,
    status: Arc<Mutex<PushStatus>>,
    stop: watch::Sender<bool>,
}

impl PushHandle {
    /// The target URL (with its key; do not log).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A snapshot of the status.
    pub fn status(&self) -> PushStatus {
        lock(&self.status).clone()
    }

    /// Stops the push (also on drop).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for PushHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock(m: &Mutex<PushStatus>) -> std::sync::MutexGuard<'_, PushStatus> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts pushing Hub stream `stream` to `url` (on the current tokio
/// runtime).
pub fn spawn_push(hub: Hub, stream: StreamPath, url: String, config: PushConfig) -> PushHandle {
    let status = Arc::new(Mutex::new(PushStatus {
        target: redact(&url),
        state: PushState::Connecting,
        last_error: None,
        bytes_sent: 0,
        frames_sent: 0,
        skips: 0,
        reconnects: 0,
    }));
    let (stop_tx, stop_rx) = watch::channel(false);
    let pusher = Pusher {
        hub,
        stream,
        url: url.clone(),
        config,
        status: Arc::clone(&status),
        stop: stop_rx,
    };
    tokio::spawn(pusher.run());
    PushHandle {
        url,
        status,
        stop: stop_tx,
    }
}

/// A target's status for our log and [`PushStatus::last_error`]:
/// `refused: unknown stream key (NetStream.Publish.Denied)`. The target's
/// description is cut to 200 characters with control characters blanked.
fn status_text(what: &str, code: &str, description: &str) -> String {
    let description: String = description
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let description = description.trim();
    if description.is_empty() {
        format!("{what}: {code}")
    } else {
        format!("{what}: {description} ({code})")
    }
}

enum SessionEnd {
    /// The Hub stream ended.
    StreamEnded,
    /// Stopped by the owner.
    Stopped,
}

/// Why a session failed.
enum Failure {
    /// Worth retrying soon (network, timeout, target went away).
    Transient(String),
    /// The target refused us or can never take this stream.
    Refused(String),
}

struct Pusher {
    hub: Hub,
    stream: StreamPath,
    url: String,
    config: PushConfig,
    status: Arc<Mutex<PushStatus>>,
    stop: watch::Receiver<bool>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Pusher {
    fn set(&self, f: impl FnOnce(&mut PushStatus)) {
        f(&mut lock(&self.status));
    }

    async fn run(mut self) {
        let target = redact(&self.url);
        let mut backoff = self.config.initial_backoff;
        let mut refusals = 0u32;
        let mut sessions = 0u64;
        loop {
            if *self.stop.borrow() {
                break;
            }
            self.set(|s| s.state = PushState::Connecting);
            sessions += 1;
            if sessions > 1 {
                self.set(|s| s.reconnects += 1);
            }
            let mut went_live = false;
            match self.session(&mut went_live).await {
                Ok(SessionEnd::StreamEnded) => {
                    tracing::info!(stream = %self.stream, %target, "restream: stream ended");
                    break;
                }
                Ok(SessionEnd::Stopped) => break,
                Err(f) => {
                    if went_live {
                        backoff = self.config.initial_backoff;
                        refusals = 0;
                    }
                    let (msg, refused) = match f {
                        Failure::Transient(m) => (m, false),
                        Failure::Refused(m) => (m, true),
                    };
                    refusals = if refused { refusals + 1 } else { 0 };
                    tracing::warn!(stream = %self.stream, %target, error = %msg, retry_in = ?backoff, "restream target failed");
                    self.set(|s| s.last_error = Some(msg));
                    if refused && refusals >= self.config.max_refusals {
                        self.set(|s| s.state = PushState::Failed);
                        // Wait to be stopped (the supervisor replaces us on a
                        // settings change).
                        let mut stop = self.stop.clone();
                        let _ = async move { stop.wait_for(|s| *s).await.map(|_| ()) }.await;
                        return;
                    }
                    self.set(|s| s.state = PushState::Retrying);
                    let mut stop = self.stop.clone();
                    let stopped = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    if timeout(backoff, stopped).await.is_ok() {
                        break;
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
        self.set(|s| s.state = PushState::Stopped);
    }

    async fn connect(&self) -> std::result::Result<(Box<dyn Io>, ClientConfig), Failure> {
        let client =
            ClientConfig::from_url(&self.url).map_err(|e| Failure::Refused(e.to_string()))?;
        let tls = self.url.starts_with("rtmps://");
        let rest = self.url.split_once("://").map_or("", |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or("");
        let (host, port) = split_host_port(authority, if tls { 443 } else { 1935 })
            .ok_or_else(|| Failure::Refused(format!("bad host {authority:?}")))?;
        let addr = format!("{host}:{port}");
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|e| Failure::Transient(format!("connect {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        if !tls {
            return Ok((Box::new(tcp), client));
        }
        let config = match &self.config.tls {
            Some(c) => Arc::clone(c),
            None => tls_config([]).map_err(|e| Failure::Refused(e.to_string()))?,
        };
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| Failure::Refused(format!("bad TLS server name {host:?}: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| Failure::Transient(format!("TLS with {addr}: {e}")))?;
        Ok((Box::new(stream), client))
    }

    async fn session(&mut self, went_live: &mut bool) -> std::result::Result<SessionEnd, Failure> {
        let deadline = Instant::now() + self.config.connect_timeout;
        let (mut io, client_config) = tokio::time::timeout_at(deadline, self.connect())
            .await
            .map_err(|_| Failure::Transient("connect timed out".into()))??;
        let mut client = ClientSession::new(client_config);
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent_before = 0u64;
        // Handshake and publish.
        loop {
            self.flush(&mut io, &mut client, &mut sent_before).await?;
            let n = tokio::time::timeout_at(deadline, io.read(&mut buf))
                .await
                .map_err(|_| Failure::Transient("publish start timed out".into()))?
                .map_err(|e| Failure::Transient(format!("read: {e}")))?;
            if n == 0 {
                return Err(Failure::Transient("target closed the connection".into()));
            }
            client
                .handle_input(&buf[..n])
                .map_err(|e| Failure::Transient(format!("target sent bad RTMP: {e}")))?;
            let mut live = false;
            while let Some(ev) = client.poll_event() {
                match ev {
                    ClientEvent::Publishing => live = true,
                    ClientEvent::Rejected { code, description } => {
                        return Err(Failure::Refused(status_text(
                            "refused",
                            &code,
                            &description,
                        )));
                    }
                    ClientEvent::Ended { code, description } => {
                        return Err(Failure::Transient(status_text(
                            "ended by target",
                            &code,
                            &description,
                        )));
                    }
                }
            }
            if live {
                break;
            }
        }
        self.flush(&mut io, &mut client, &mut sent_before).await?;
        *went_live = true;
        self.set(|s| {
            s.state = PushState::Live;
            s.last_error = None;
        });
        tracing::info!(stream = %self.stream, target = %redact(&self.url), "restream live");

        // Media. A fresh reader starts at the newest keyframe. A stream that
        // ended meanwhile is not created anew (it would wait for a
        // publisher forever).
        let Some(mut reader) = self.hub.subscribe_existing(&self.stream) else {
            client.unpublish();
            let _ = self.flush(&mut io, &mut client, &mut sent_before).await;
            return Ok(SessionEnd::StreamEnded);
        };
        let mut media = MediaState::default();
        let mut tag = Vec::with_capacity(64 * 1024);
        let mut stop = self.stop.clone();
        loop {
            tokio::select! {
                ev = reader.recv() => {
                    let Some(ev) = ev else {
                        client.unpublish();
                        let _ = self.flush(&mut io, &mut client, &mut sent_before).await;
                        return Ok(SessionEnd::StreamEnded);
                    };
                    match ev {
                        MediaEvent::Tracks(t) => {
                            media.set_tracks(&t, &mut client).map_err(Failure::Refused)?;
                        }
                        MediaEvent::Frame(f) => {
                            let sent = media
                                .send_frame(&f, &mut client, &mut tag)
                                .map_err(|e| Failure::Transient(e.to_string()))?;
                            if sent {
                                self.set(|s| s.frames_sent += 1);
                            }
                        }
                        MediaEvent::Discontinuity(_) => {
                            let skips = reader.skips();
                            self.set(|s| s.skips = s.skips.max(skips));
                            media.wait_keyframe = true;
                        }
                        MediaEvent::End => {
                            client.unpublish();
                            let _ = self.flush(&mut io, &mut client, &mut sent_before).await;
                            return Ok(SessionEnd::StreamEnded);
                        }
                        _ => {}
                    }
                    self.flush(&mut io, &mut client, &mut sent_before).await?;
                }
                r = io.read(&mut buf) => {
                    let n = r.map_err(|e| Failure::Transient(format!("read: {e}")))?;
                    if n == 0 {
                        return Err(Failure::Transient("target closed the connection".into()));
                    }
                    client.handle_input(&buf[..n])
                        .map_err(|e| Failure::Transient(format!("target sent bad RTMP: {e}")))?;
                    while let Some(ev) = client.poll_event() {
                        match ev {
                            ClientEvent::Rejected { code, description } => {
                                return Err(Failure::Refused(status_text("refused", &code, &description)));
                            }
                            ClientEvent::Ended { code, description } => {
                                return Err(Failure::Transient(status_text("ended by target", &code, &description)));
                            }
                            ClientEvent::Publishing => {}
                        }
                    }
                    self.flush(&mut io, &mut client, &mut sent_before).await?;
                }
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    client.unpublish();
                    let _ = self.flush(&mut io, &mut client, &mut sent_before).await;
                    let _ = io.shutdown().await;
                    return Ok(SessionEnd::Stopped);
                }
            }
        }
    }

    async fn flush(
        &self,
        io: &mut Box<dyn Io>,
        client: &mut ClientSession,
        sent_before: &mut u64,
    ) -> std::result::Result<(), Failure> {
        while let Some(b) = client.poll_output() {
            timeout(self.config.write_timeout, io.write_all(&b))
                .await
                .map_err(|_| Failure::Transient("target stopped reading (write timeout)".into()))?
                .map_err(|e| Failure::Transient(format!("write: {e}")))?;
        }
        let total = client.bytes_sent();
        let delta = total.saturating_sub(*sent_before);
        *sent_before = total;
        if delta > 0 {
            self.set(|s| s.bytes_sent += delta);
        }
        Ok(())
    }
}

/// Per-session media conversion: Hub frames to FLV tags.
#[derive(Default)]
struct MediaState {
    tracks: Option<Tracks>,
    /// The first frame's time (ms) of this session: RTMP timestamps start
    /// near 0.
    base_ms: Option<i64>,
    wait_keyframe: bool,
    started: bool,
    last_ts: u32,
}

impl MediaState {
    fn set_tracks(
        &mut self,
        t: &Tracks,
        client: &mut ClientSession,
    ) -> std::result::Result<(), String> {
        if self.tracks.as_ref() == Some(t) {
            return Ok(());
        }
        let ts = self.last_ms();
        let mut meta = Vec::new();
        if let Some(v) = t.video() {
            let body = flv::video_sequence_header(v).map_err(|e| e.to_string())?;
            client.send_video(ts, &body).map_err(|e| e.to_string())?;
            if let Some(p) = v.video() {
                meta.push((
                    "width".to_owned(),
                    super::Amf0Value::Number(f64::from(p.width)),
                ));
                meta.push((
                    "height".to_owned(),
                    super::Amf0Value::Number(f64::from(p.height)),
                ));
            }
            let id = match v.codec {
                Codec::H264 => 7.0,
                Codec::H265 => 12.0,
                _ => 0.0,
            };
            meta.push(("videocodecid".to_owned(), super::Amf0Value::Number(id)));
        }
        if let Some(a) = t.audio() {
            match flv::audio_sequence_header(a) {
                Ok(body) => {
                    client.send_audio(ts, &body).map_err(|e| e.to_string())?;
                    meta.push(("audiocodecid".to_owned(), super::Amf0Value::Number(10.0)));
                }
                // An audio codec FLV cannot carry: push video only.
                Err(e) => tracing::debug!(error = %e, "restream without audio"),
            }
        }
        if !self.started {
            let _ = client.send_metadata(meta);
        }
        self.tracks = Some(t.clone());
        self.wait_keyframe = true;
        Ok(())
    }

    fn last_ms(&self) -> u32 {
        self.last_ts
    }

    /// Sends one frame; false when it was skipped (waiting for a keyframe,
    /// unknown track, unsupported codec).
    fn send_frame(
        &mut self,
        f: &ugc_core::Frame,
        client: &mut ClientSession,
        tag: &mut Vec<u8>,
    ) -> Result<bool> {
        let Some(tracks) = &self.tracks else {
            return Ok(false);
        };
        let Some(track) = tracks.get(f.track) else {
            return Ok(false);
        };
        let has_video = tracks.video().is_some();
        if self.wait_keyframe {
            let video_key = track.kind() == MediaKind::Video && f.keyframe;
            if has_video && !video_key {
                return Ok(false);
            }
            self.wait_keyframe = false;
        }
        let ms = rescale(f.dts, track.timescale, Timescale::MILLIS);
        let base = *self.base_ms.get_or_insert(ms);
        // RTMP timestamps are 32-bit and wrap by definition.
        let ts = (ms.saturating_sub(base).max(0) & 0xffff_ffff) as u32;
        self.last_ts = ts;
        tag.clear();
        match track.kind() {
            MediaKind::Video => {
                if flv::write_video_tag(track, f, tag).is_err() {
                    return Ok(false);
                }
                client.send_video(ts, tag)?;
            }
            MediaKind::Audio => {
                if track.codec != Codec::Aac {
                    return Ok(false);
                }
                flv::write_audio_tag(f, tag);
                client.send_audio(ts, tag)?;
            }
        }
        self.started = true;
        Ok(true)
    }
}

fn split_host_port(authority: &str, default: u16) -> Option<(&str, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h, p.parse().ok()?)),
        None => Some((authority, default)),
    }
    .filter(|(h, _)| !h.is_empty())
}

/// The address a target URL points at (for tests and logs).
pub fn target_addr(url: &str) -> Option<SocketAddr> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let (h, p) = split_host_port(authority, 1935)?;
    format!("{h}:{p}").parse().ok()
}
