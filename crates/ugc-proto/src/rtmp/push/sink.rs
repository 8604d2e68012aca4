//! [`RtmpPush`]: one publish session to an RTMP(S) target, as a [`Sink`].

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use ugc_core::{MediaEvent, Sink};

use super::flv_out::FlvOut;
use super::{PushConfig, redact, split_host_port, tls_config};
use crate::error::{Error, Result};
use crate::rtmp::{ClientConfig, ClientEvent, ClientSession};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A publish session to an `rtmp://` or `rtmps://` target: a [`Sink`] of
/// media events, made by [`RtmpPush::connect`].
///
/// * `send` muxes the event into FLV tags (sequence headers and metadata
///   for a track set, a tag per frame, timestamps from 0 at the first
///   frame) and writes them. Frames wait for a video keyframe at the start
///   and after a [`MediaEvent::Discontinuity`]; [`MediaEvent::End`]
///   unpublishes. The write awaits while the target is slow
///   (backpressure), for at most [`PushConfig::write_timeout`]. A source
///   that must not be held up reads from a Hub (a lagging
///   [`ugc_core::HubReader`] skips to the newest keyframe).
/// * What the target sends (acknowledgements, pings, a refusal, the end of
///   our publish) is read while `send` writes; between events it waits in
///   the socket.
/// * `finish` unpublishes (`FCUnpublish`, `deleteStream`) and closes the
///   connection; `send` after it fails.
///
/// Errors are [`ugc_core::Error::Stage`] around this crate's [`Error`]:
/// [`Error::Refused`] and [`Error::EndedByPeer`] carry what the target
/// said; [`Error::Timeout`] a target that stopped reading; [`Error::Io`]
/// the connection; [`Error::Unsupported`] a video codec FLV cannot carry.
/// A cancelled `send` loses nothing: bytes it did not write go out first
/// on the next `send` or `finish`. Dropping the sink closes the connection
/// without unpublishing.
pub struct RtmpPush {
    io: Box<dyn Io>,
    client: ClientSession,
    flv: FlvOut,
    /// The target, key redacted.
    target: String,
    write_timeout: Duration,
    /// Output taken from the session and not yet written.
    out: Bytes,
    buf: Box<[u8]>,
    tag: Vec<u8>,
    bytes_sent: u64,
    frames_sent: u64,
    unpublished: bool,
}

impl std::fmt::Debug for RtmpPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpPush")
            .field("target", &self.target)
            .field("bytes_sent", &self.bytes_sent)
            .field("frames_sent", &self.frames_sent)
            .field("unpublished", &self.unpublished)
            .finish_non_exhaustive()
    }
}

impl RtmpPush {
    /// Connects to `url` (`rtmp://host[:port]/app/key`, or `rtmps://` over
    /// TLS with [`PushConfig::tls`]), handshakes and publishes; returns once
    /// the target answered `NetStream.Publish.Start`, within
    /// [`PushConfig::connect_timeout`].
    ///
    /// A refusal is [`Error::Refused`] with the target's status code and
    /// description; a URL or TLS setting that cannot work is
    /// [`Error::BadTarget`].
    pub async fn connect(url: &str, config: &PushConfig) -> Result<RtmpPush> {
        let client = ClientConfig::from_url(url).map_err(|e| match e {
            Error::InvalidState(reason) => Error::BadTarget(reason.to_owned()),
            e => e,
        })?;
        let deadline = Instant::now() + config.connect_timeout;
        let io = timeout_at(deadline, open(url, config))
            .await
            .map_err(|_| Error::Timeout("connecting to the target"))??;
        let mut push = RtmpPush {
            io,
            client: ClientSession::new(client),
            flv: FlvOut::default(),
            target: redact(url),
            write_timeout: config.write_timeout,
            out: Bytes::new(),
            buf: vec![0u8; 16 * 1024].into_boxed_slice(),
            tag: Vec::with_capacity(64 * 1024),
            bytes_sent: 0,
            frames_sent: 0,
            unpublished: false,
        };
        timeout_at(deadline, push.start_publish())
            .await
            .map_err(|_| Error::Timeout("waiting for the publish to start"))??;
        Ok(push)
    }

    /// The target URL with its key replaced by `***`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Bytes written to the target, the handshake included.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// Frames sent (frames skipped while waiting for a keyframe, or of a
    /// track FLV cannot carry, are not counted).
    pub fn frames_sent(&self) -> u64 {
        self.frames_sent
    }

    /// Handshake, `connect`, `createStream`, `publish`, until the target
    /// says `NetStream.Publish.Start`.
    async fn start_publish(&mut self) -> Result<()> {
        loop {
            self.exchange().await?;
            if self.client.is_publishing() {
                return Ok(());
            }
            let n = self.io.read(&mut self.buf).await?;
            self.input(n)?;
        }
    }

    /// Hands `n` bytes read to the session and acts on its events.
    fn input(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "target closed the connection",
            )));
        }
        let input = self.client.handle_input(&self.buf[..n]);
        // Events of messages before a bad one first: a refusal followed by
        // garbage is a refusal.
        while let Some(event) = self.client.poll_event() {
            match event {
                ClientEvent::Publishing => {}
                ClientEvent::Rejected { code, description } => {
                    return Err(Error::Refused { code, description });
                }
                ClientEvent::Ended { code, description } => {
                    return Err(Error::EndedByPeer { code, description });
                }
            }
        }
        input
    }

    /// Writes everything the session has queued, reading (with `read`)
    /// what the target sends meanwhile; ready when all is written and
    /// flushed.
    fn poll_exchange(&mut self, cx: &mut Context<'_>, read: bool) -> Poll<Result<()>> {
        loop {
            // What the target sent: acknowledgements, pings, a refusal.
            if read {
                loop {
                    let mut rb = ReadBuf::new(&mut self.buf);
                    if Pin::new(&mut self.io).poll_read(cx, &mut rb)?.is_pending() {
                        break;
                    }
                    let n = rb.filled().len();
                    self.input(n)?;
                }
            }
            if self.out.is_empty() {
                match self.client.poll_output() {
                    Some(b) => self.out = b,
                    None => break,
                }
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(Error::Io(std::io::ErrorKind::WriteZero.into())));
            }
            self.out.advance(n);
            self.bytes_sent += n as u64;
        }
        Pin::new(&mut self.io).poll_flush(cx).map_err(Error::from)
    }

    /// [`Self::poll_exchange`] within the write timeout.
    async fn write_out(&mut self, read: bool) -> Result<()> {
        timeout(
            self.write_timeout,
            poll_fn(|cx| self.poll_exchange(cx, read)),
        )
        .await
        .map_err(|_| Error::Timeout("the target stopped reading"))?
    }

    async fn exchange(&mut self) -> Result<()> {
        self.write_out(true).await
    }

    async fn send_event(&mut self, event: MediaEvent) -> Result<()> {
        if self.unpublished {
            return Err(Error::Closed);
        }
        match event {
            MediaEvent::Tracks(t) => self.flv.set_tracks(&t, &mut self.client)?,
            MediaEvent::Frame(f) => {
                let sent = self.flv.send_frame(&f, &mut self.client, &mut self.tag)?;
                self.frames_sent += u64::from(sent);
            }
            MediaEvent::Discontinuity(_) => self.flv.restart_at_keyframe(),
            MediaEvent::End => return self.unpublish().await,
            // Events added later carry nothing FLV has.
            _ => {}
        }
        self.exchange().await
    }

    /// Ends the publish politely and closes; once.
    async fn unpublish(&mut self) -> Result<()> {
        if self.unpublished {
            return Ok(());
        }
        self.unpublished = true;
        self.client.unpublish();
        // The target may close as soon as it reads deleteStream: not read.
        let written = self.write_out(false).await;
        let _ = timeout(self.write_timeout, self.io.shutdown()).await;
        written
    }

    fn stage_error(&self, e: Error) -> ugc_core::Error {
        ugc_core::Error::Stage {
            stage: format!("rtmp push to {}", self.target),
            source: Box::new(e),
        }
    }
}

impl Sink for RtmpPush {
    async fn send(&mut self, event: MediaEvent) -> ugc_core::Result<()> {
        let sent = self.send_event(event).await;
        sent.map_err(|e| self.stage_error(e))
    }

    /// Unpublishes and closes (nothing if [`MediaEvent::End`] did already).
    async fn finish(&mut self) -> ugc_core::Result<()> {
        let done = self.unpublish().await;
        done.map_err(|e| self.stage_error(e))
    }
}

/// A TCP connection to the URL's host (port 1935, 443 for `rtmps://`),
/// with TLS for `rtmps://`.
async fn open(url: &str, config: &PushConfig) -> Result<Box<dyn Io>> {
    let tls = url.starts_with("rtmps://");
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = split_host_port(authority, if tls { 443 } else { 1935 })
        .ok_or_else(|| Error::BadTarget(format!("bad host {authority:?}")))?;
    let with = |what: &str, e: std::io::Error| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("{what} {authority}: {e}"),
        ))
    };
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| with("connect", e))?;
    let _ = tcp.set_nodelay(true);
    if !tls {
        return Ok(Box::new(tcp));
    }
    let tls_config = match &config.tls {
        Some(c) => c.clone(),
        None => tls_config([]).map_err(|e| Error::BadTarget(e.to_string()))?,
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| Error::BadTarget(format!("bad TLS server name {host:?}: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(tls_config)
        .connect(name, tcp)
        .await
        .map_err(|e| with("TLS with", e))?;
    Ok(Box::new(stream))
}
