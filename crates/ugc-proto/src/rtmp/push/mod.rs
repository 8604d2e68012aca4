//! Restream: pushes media to an `rtmp://`, `rtmps://` or `srt://` target
//! (a platform, another ugc-server), in two layers.
//!
//! * [`RtmpPush`] is a [`ugc_core::Sink`]: one publish session to one
//!   target, over TCP or TLS (rustls), around the sans-IO
//!   [`ClientSession`](super::ClientSession). [`RtmpPush::connect`]
//!   handshakes and waits for `NetStream.Publish.Start`; `send` muxes each
//!   event into FLV tags and writes them, waiting while the target is slow
//!   (backpressure); `finish` unpublishes (`FCUnpublish`, `deleteStream`)
//!   and closes. It starts at a video keyframe and restarts at one after a
//!   discontinuity. Errors say what the target said ([`Error::Refused`]
//!   with its status code and description). Pump any source into it: an
//!   ingest session, a [`ugc_core::HubReader`], a file.
//!   [`crate::srt::push::SrtPush`] is the same for an `srt://` target
//!   (MPEG-TS over an SRT caller); [`TargetPush`] is either, by the URL's
//!   scheme.
//! * [`spawn_push`] keeps a Hub stream pushed to a target as a tracked
//!   output: per session `drive(hub reader, Passthrough, TargetPush)`, and
//!   around it
//!   * a state ([`PushState`]: connecting, live, retrying, failed,
//!     stopped), the last error, bytes and frames sent, reconnects and
//!     skips, readable at any time through its [`PushHandle`];
//!   * reconnects with exponential backoff (1 s doubling to 30 s, reset
//!     once live); a refusal by the target or an unusable URL/codec is
//!     `Failed` after [`PushConfig::max_refusals`] consecutive refusals;
//!   * a keyframe start: each session's Hub reader starts at the newest
//!     GOP; a stream that ended is not created anew;
//!   * it never holds up the ingest or other targets: while the target is
//!     slow the Hub reader waits, and a reader that falls behind the Hub
//!     window jumps to the newest keyframe (counted in
//!     [`PushStatus::skips`]); a target that stops reading is dropped after
//!     [`PushConfig::write_timeout`] and retried (what a target sends
//!     while the stream is idle waits in the socket: a target that went
//!     away then is noticed at the next event);
//!   * a stopped push unpublishes.
//!
//! ```no_run
//! use ugc_core::{Passthrough, Source, pump};
//! use ugc_proto::rtmp::push::{PushConfig, RtmpPush};
//!
//! /// Publishes `source` (an ingest, a Hub reader, a file) to YouTube until it ends.
//! async fn push(source: impl Source) -> Result<(), Box<dyn std::error::Error>> {
//!     let url = "rtmp://a.rtmp.youtube.com/live2/KEY";
//!     let sink = RtmpPush::connect(url, &PushConfig::default()).await?;
//!     pump(source, Passthrough, sink).await?;
//!     Ok(())
//! }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};

mod any;
mod flv_out;
mod sink;
mod task;

pub use any::TargetPush;
pub use sink::RtmpPush;
pub use task::{PushHandle, PushState, PushStatus, spawn_push};

/// Settings of a push: the session's ([`RtmpPush`]: `connect_timeout`,
/// `write_timeout`, `tls`) and the supervised push's ([`spawn_push`]:
/// backoff, refusals).
#[derive(Clone)]
pub struct PushConfig {
    /// First reconnect delay; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// Time to connect, handshake and get `NetStream.Publish.Start`.
    pub connect_timeout: Duration,
    /// Longest a write to the target may block (one event's tags, or the
    /// unpublish).
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

/// `rtmp://host/app/***` (`srt://host:port?***`): a target URL safe to log.
pub fn redact(url: &str) -> String {
    if url.starts_with("srt://") {
        return crate::srt::push::redact(url);
    }
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/***"),
        None => "***".into(),
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
