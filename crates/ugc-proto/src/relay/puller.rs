//! The pulling side of the relay over HTTP: a [`Source`] of a remote
//! node's stream that reconnects by itself and resumes where it was.
//!
//! Drive it into a local Hub like any ingest, so the packager, the DVR and
//! restreams work unchanged:
//!
//! ```no_run
//! # async fn f(hub: ugc_core::Hub) -> ugc_proto::Result<()> {
//! use ugc_core::{Passthrough, StreamPath, pump};
//! use ugc_proto::relay::puller::{PullConfig, RelayPuller};
//!
//! let stream = StreamPath::live("demo")?;
//! let puller = RelayPuller::new(PullConfig::new("http://10.0.0.5:8080", stream.clone(), "node-token"));
//! pump(puller, Passthrough, hub.publish(&stream)).await?;
//! # Ok(()) }
//! ```
//!
//! A dropped connection, a read timeout, a truncated body or a `5xx` is
//! retried with exponential backoff, asking to resume at the window and
//! sequence after the last event received: the sender continues there (no
//! gap, no duplicate) or, when that has left its window, starts at a
//! keyframe, and this source emits one
//! [`MediaEvent::Discontinuity`]([`DiscontinuityReason::ReaderSkipped`])
//! before it. Errors that retrying does not cure end the source: `401` and
//! `404` ([`Error::HttpStatus`]), a malformed stream ([`Error::Relay`]), a
//! stale epoch ([`Error::StaleEpoch`]), and
//! [`PullConfig::max_attempts`] failed attempts in a row
//! ([`Error::Unreachable`]).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ugc_core::{DEFAULT_APP, DiscontinuityReason, MediaEvent, Source, StreamPath, Tracks};

use super::{ReaderLimits, RelayEvent, RelayReader};
use crate::error::{Error, Result};

/// Settings of a [`RelayPuller`].
#[derive(Debug, Clone)]
pub struct PullConfig {
    /// The sending node, `http://host:port` (no trailing slash needed).
    pub base_url: String,
    /// The stream to pull (the same name on both nodes).
    pub stream: StreamPath,
    /// The node token.
    pub token: String,
    /// The lowest acceptable epoch: a sender stating a lower one is refused
    /// (the highest epoch seen is remembered from then on).
    pub min_epoch: u64,
    /// First retry delay; doubles per failed attempt.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// A connection silent this long is dropped and retried (the sender
    /// sends keepalives every few seconds).
    pub read_timeout: Duration,
    /// Give up after this many failed attempts in a row; `None`: never.
    pub max_attempts: Option<u32>,
    /// Memory bounds of the stream reader.
    pub limits: ReaderLimits,
}

impl PullConfig {
    /// Defaults: epoch 0, backoff 100 ms to 1 s (as a pusher's), read
    /// timeout 10 s, retry forever.
    pub fn new(base_url: impl Into<String>, stream: StreamPath, token: impl Into<String>) -> Self {
        PullConfig {
            base_url: base_url.into(),
            stream,
            token: token.into(),
            min_epoch: 0,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            read_timeout: Duration::from_secs(10),
            max_attempts: None,
            limits: ReaderLimits::default(),
        }
    }

    /// The URL of the stream, with the resume point if any.
    pub fn url(&self, resume: Option<(u64, u64)>) -> String {
        let s = &self.stream;
        let mut url = format!(
            "{}/relay/v1/{}",
            self.base_url.trim_end_matches('/'),
            s.name()
        );
        if let Some(r) = s.rendition() {
            url.push('/');
            url.push_str(r);
        }
        let mut sep = '?';
        if s.app() != DEFAULT_APP {
            url.push_str(&format!("{sep}app={}", s.app()));
            sep = '&';
        }
        if let Some((w, from)) = resume {
            url.push_str(&format!("{sep}window={w}&from={from}"));
        }
        url
    }
}

/// A relay stream pulled over HTTP, as a [`Source`]. See the module doc.
pub struct RelayPuller {
    config: PullConfig,
    client: Client<HttpConnector, Empty<Bytes>>,
    body: Option<Incoming>,
    reader: RelayReader,
    /// Window id and the sequence after the last window event received.
    resume: Option<(u64, u64)>,
    epoch: u64,
    pending: VecDeque<MediaEvent>,
    /// The track set delivered last.
    tracks: Option<Tracks>,
    delivered: bool,
    done: bool,
    failures: u32,
    connects: u64,
    resumes: u64,
    /// The stream's timeline id at the source, from the last hello.
    timeline: Option<u64>,
}

impl std::fmt::Debug for RelayPuller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayPuller")
            .field("stream", &self.config.stream)
            .field("resume", &self.resume)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl RelayPuller {
    /// A puller; it connects on the first [`Source::next_event`].
    pub fn new(config: PullConfig) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        RelayPuller {
            epoch: config.min_epoch,
            reader: RelayReader::new(config.limits.clone()),
            config,
            client,
            body: None,
            resume: None,
            pending: VecDeque::new(),
            tracks: None,
            delivered: false,
            done: false,
            failures: 0,
            connects: 0,
            resumes: 0,
            timeline: None,
        }
    }

    /// The id of the stream's timeline at the source (from the last
    /// connection's hello; `None` before one, or from older senders): give
    /// it to [`ugc_core::Hub::publish_on_timeline`].
    pub fn timeline(&self) -> Option<u64> {
        self.timeline
    }

    /// Connections made (answered `200`).
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// Connections that resumed without a gap.
    pub fn resumes(&self) -> u64 {
        self.resumes
    }

    /// The highest epoch seen (or [`PullConfig::min_epoch`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Where a reconnect would resume: window id and sequence.
    pub fn position(&self) -> Option<(u64, u64)> {
        self.resume
    }

    fn backoff(&self) -> Duration {
        if self.failures == 0 {
            return Duration::ZERO;
        }
        let shift = (self.failures - 1).min(16);
        self.config
            .backoff_min
            .saturating_mul(1 << shift)
            .min(self.config.backoff_max)
    }

    /// Connects (retrying with backoff) until a `200` or a fatal answer.
    async fn connect(&mut self) -> Result<()> {
        loop {
            if let Some(max) = self.config.max_attempts
                && self.failures >= max
            {
                return Err(Error::Unreachable {
                    url: self.config.url(self.resume),
                    reason: format!("{} attempts failed", self.failures),
                });
            }
            let delay = self.backoff();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let url = self.config.url(self.resume);
            let req = hyper::Request::get(&url)
                .header(
                    hyper::header::AUTHORIZATION,
                    format!("Bearer {}", self.config.token),
                )
                .body(Empty::new())
                .map_err(|e| Error::Unreachable {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
            let answer =
                tokio::time::timeout(self.config.read_timeout, self.client.request(req)).await;
            match answer {
                Ok(Ok(resp)) => {
                    let status = resp.status().as_u16();
                    match status {
                        200 => {
                            self.body = Some(resp.into_body());
                            self.reader = RelayReader::new(self.config.limits.clone());
                            self.connects += 1;
                            return Ok(());
                        }
                        400..=499 => return Err(Error::HttpStatus { status, url }),
                        _ => {
                            tracing::debug!(%url, status, "relay: retrying");
                        }
                    }
                }
                Ok(Err(e)) => tracing::debug!(%url, error = %e, "relay: connect failed"),
                Err(_) => tracing::debug!(%url, "relay: connect timed out"),
            }
            self.failures += 1;
        }
    }

    /// Takes what the reader has; protocol errors are fatal.
    fn drain(&mut self) -> Result<()> {
        while let Some(ev) = self.reader.poll_event()? {
            match ev {
                RelayEvent::Hello(h) => {
                    if h.epoch < self.epoch {
                        return Err(Error::StaleEpoch {
                            seen: self.epoch,
                            got: h.epoch,
                        });
                    }
                    self.epoch = h.epoch;
                    self.timeline = h.timeline.or(self.timeline);
                    let resumed = h.resumed && self.resume.is_some_and(|(w, _)| w == h.window);
                    if resumed {
                        self.resumes += 1;
                    } else {
                        if self.delivered {
                            self.pending.push_back(MediaEvent::Discontinuity(
                                DiscontinuityReason::ReaderSkipped,
                            ));
                        }
                        self.resume = None;
                    }
                    self.resume = Some((h.window, self.resume.map_or(h.start, |r| r.1)));
                }
                // A resumed connection's track set is the one delivered
                // last, unless the connection that announced a new one
                // broke before its first window event.
                RelayEvent::Context { tracks, .. } => {
                    if self.tracks.as_ref() != Some(&tracks) {
                        self.tracks = Some(tracks.clone());
                        self.pending.push_back(MediaEvent::Tracks(tracks));
                    }
                }
                RelayEvent::Media { seq, event } => {
                    if let (Some(s), Some(r)) = (seq, self.resume.as_mut()) {
                        r.1 = s.saturating_add(1);
                    }
                    if let MediaEvent::Tracks(t) = &event {
                        self.tracks = Some(t.clone());
                    }
                    self.failures = 0;
                    self.delivered = true;
                    self.pending.push_back(event);
                }
            }
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<MediaEvent>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                if matches!(e, MediaEvent::End) {
                    self.done = true;
                    self.body = None;
                }
                return Ok(Some(e));
            }
            if self.done {
                return Ok(None);
            }
            let Some(body) = self.body.as_mut() else {
                self.connect().await?;
                continue;
            };
            let frame = tokio::time::timeout(self.config.read_timeout, body.frame()).await;
            match frame {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.reader.handle_input(&data);
                        self.drain()?;
                    }
                }
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %e, "relay: connection lost; resuming");
                    self.lost();
                }
                Ok(None) => {
                    tracing::debug!("relay: response ended before the stream; resuming");
                    self.lost();
                }
                Err(_) => {
                    tracing::debug!("relay: connection silent; resuming");
                    self.lost();
                }
            }
        }
    }

    /// The connection is gone: a partial box is dropped, the next attempt
    /// resumes after the last whole event.
    fn lost(&mut self) {
        self.body = None;
        self.failures += 1;
    }
}

impl Source for RelayPuller {
    async fn next_event(&mut self) -> ugc_core::Result<Option<MediaEvent>> {
        self.next().await.map_err(|e| ugc_core::Error::Stage {
            stage: format!("relay pull {}", self.config.url(None)),
            source: Box::new(e),
        })
    }
}

impl RelayPuller {
    /// [`Source::next_event`] with this crate's error type (to match on
    /// [`Error::StaleEpoch`], [`Error::HttpStatus`], ...).
    pub async fn next_relay_event(&mut self) -> Result<Option<MediaEvent>> {
        self.next().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_app_only_when_not_default() {
        let c = PullConfig::new("http://a:1/", StreamPath::live("s").unwrap(), "t");
        assert_eq!(c.url(None), "http://a:1/relay/v1/s");
        assert_eq!(c.url(Some((4, 9))), "http://a:1/relay/v1/s?window=4&from=9");
        let r = StreamPath::parse("studio/s/720p").unwrap();
        let c = PullConfig::new("http://a:1", r, "t");
        assert_eq!(
            c.url(Some((1, 2))),
            "http://a:1/relay/v1/s/720p?app=studio&window=1&from=2"
        );
    }
}
