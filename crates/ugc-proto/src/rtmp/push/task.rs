//! [`spawn_push`]: a Hub stream kept pushed to a target, session after
//! session, with a status.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::time::timeout;
use ugc_core::{DiscontinuityReason, Hub, MediaEvent, Passthrough, Sink, StreamPath, drive};

use super::{PushConfig, TargetPush, redact};
use crate::error::Error;

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

    /// Stops the push (also on drop); a live session unpublishes.
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
/// runtime): session after session, `drive(reader, Passthrough,
/// TargetPush)` with a fresh [`Hub::subscribe_existing`] reader (it starts
/// at the newest keyframe), until the stream ends or the push is stopped;
/// see the [module documentation](super).
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

enum SessionEnd {
    /// The Hub stream ended.
    StreamEnded,
    /// Stopped by the owner.
    Stopped,
}

/// Why a session failed.
enum Failure {
    /// Worth retrying soon (network, timeout, the target went away).
    Transient(String),
    /// The target refused us or can never take this stream (bad URL,
    /// codec).
    Permanent(String),
}

impl Failure {
    fn of(e: &Error) -> Failure {
        let text = e.to_string();
        match e {
            Error::Refused { .. } | Error::BadTarget(_) | Error::Unsupported(_) => {
                Failure::Permanent(text)
            }
            _ => Failure::Transient(text),
        }
    }

    /// A pipeline error: the [`TargetPush`]'s own when it is one.
    fn of_stage(e: &ugc_core::Error) -> Failure {
        match e {
            ugc_core::Error::Stage { source, .. } => match source.downcast_ref::<Error>() {
                Some(e) => Failure::of(e),
                None => Failure::Transient(e.to_string()),
            },
            e => Failure::Transient(e.to_string()),
        }
    }
}

/// Waits until the push is stopped (or its handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

struct Pusher {
    hub: Hub,
    stream: StreamPath,
    url: String,
    config: PushConfig,
    status: Arc<Mutex<PushStatus>>,
    stop: watch::Receiver<bool>,
}

impl Pusher {
    fn set(&self, f: impl FnOnce(&mut PushStatus)) {
        f(&mut lock(&self.status));
    }

    async fn run(self) {
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
                    let (msg, permanent) = match f {
                        Failure::Transient(m) => (m, false),
                        Failure::Permanent(m) => (m, true),
                    };
                    refusals = if permanent { refusals + 1 } else { 0 };
                    tracing::warn!(stream = %self.stream, %target, error = %msg, retry_in = ?backoff, "restream target failed");
                    self.set(|s| s.last_error = Some(msg));
                    if permanent && refusals >= self.config.max_refusals {
                        self.set(|s| s.state = PushState::Failed);
                        // Wait to be stopped (the supervisor replaces us on a
                        // settings change).
                        stopped(&mut self.stop.clone()).await;
                        return;
                    }
                    self.set(|s| s.state = PushState::Retrying);
                    if timeout(backoff, stopped(&mut self.stop.clone()))
                        .await
                        .is_ok()
                    {
                        break;
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
        self.set(|s| s.state = PushState::Stopped);
    }

    /// One session: connect and publish, then the Hub stream's events
    /// from its newest keyframe into the [`TargetPush`].
    async fn session(&self, went_live: &mut bool) -> Result<SessionEnd, Failure> {
        let mut stop = self.stop.clone();
        let push = tokio::select! {
            push = TargetPush::connect(&self.url, &self.config) => push.map_err(|e| Failure::of(&e))?,
            () = stopped(&mut stop) => return Ok(SessionEnd::Stopped),
        };
        *went_live = true;
        let mut sink = Tracked::new(push, Arc::clone(&self.status));
        self.set(|s| {
            s.state = PushState::Live;
            s.last_error = None;
        });
        tracing::info!(stream = %self.stream, target = %sink.push.target(), "restream live");

        // A stream that ended meanwhile is not created anew (it would wait
        // for a publisher forever).
        let Some(reader) = self.hub.subscribe_existing(&self.stream) else {
            let _ = sink.finish().await;
            return Ok(SessionEnd::StreamEnded);
        };
        let driven = tokio::select! {
            driven = drive(reader, Passthrough, &mut sink) => driven,
            () = stopped(&mut stop) => {
                let _ = sink.finish().await;
                return Ok(SessionEnd::Stopped);
            }
        };
        match driven {
            // The reader is exhausted after the stream's End (which
            // unpublished).
            Ok(()) => {
                let _ = sink.finish().await;
                Ok(SessionEnd::StreamEnded)
            }
            Err(e) => Err(Failure::of_stage(&e)),
        }
    }
}

/// A session's [`TargetPush`] that keeps the push's status current: bytes
/// and frames sent, and the Hub reader's skips (its
/// [`DiscontinuityReason::ReaderSkipped`]s).
struct Tracked {
    push: TargetPush,
    status: Arc<Mutex<PushStatus>>,
    /// The push's counters as last added to the status.
    bytes: u64,
    frames: u64,
}

impl Tracked {
    fn new(push: TargetPush, status: Arc<Mutex<PushStatus>>) -> Tracked {
        let mut t = Tracked {
            push,
            status,
            bytes: 0,
            frames: 0,
        };
        t.report(false);
        t
    }

    fn report(&mut self, skipped: bool) {
        let (bytes, frames) = (self.push.bytes_sent(), self.push.frames_sent());
        if (bytes, frames) == (self.bytes, self.frames) && !skipped {
            return;
        }
        let mut s = lock(&self.status);
        s.bytes_sent += bytes - self.bytes;
        s.frames_sent += frames - self.frames;
        s.skips += u64::from(skipped);
        (self.bytes, self.frames) = (bytes, frames);
    }
}

impl Sink for Tracked {
    async fn send(&mut self, event: MediaEvent) -> ugc_core::Result<()> {
        let skipped = matches!(
            event,
            MediaEvent::Discontinuity(DiscontinuityReason::ReaderSkipped)
        );
        let sent = self.push.send(event).await;
        self.report(skipped);
        sent
    }

    async fn finish(&mut self) -> ugc_core::Result<()> {
        let finished = self.push.finish().await;
        self.report(false);
        finished
    }
}
