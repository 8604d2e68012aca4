//! Provisioning: stream settings for the media servers.
//!
//! In the all-in-one server the supervisors read the [`ControlPlane`]
//! directly. Separate media nodes read the same settings over HTTP:
//!
//! * `GET /api/v1/settings`: a snapshot, `{"version": "<epoch>-<seq>",
//!   "streams": {"<name>": StreamSettings, ...}}`;
//! * `GET /api/v1/changes`: Server-Sent Events (`text/event-stream`). Each
//!   settings change is one `change` event whose `id` is the version after
//!   it and whose data is `{"name", "kind", "settings"}` (`settings` is
//!   `null` after a deletion). A client that reconnects with
//!   `Last-Event-ID` gets the changes it missed from an in-memory ring of
//!   the last [`RING`] changes, or, when that id is too old or from
//!   another run of the control plane (the epoch part differs), one
//!   `snapshot` event (same data as `GET /settings`) to resync from.
//!   Without `Last-Event-ID` the stream starts with a snapshot. A comment
//!   line is sent every [`KEEPALIVE`] so both sides notice a dead peer.
//!
//! Both routes need the admin token or the configured node token: the
//! settings include SRT passphrases.
//!
//! Versions are `<epoch>-<seq>`: `epoch` is random per
//! [`ControlPlane::open`], `seq` counts changes from 0.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::api::ApiError;
use crate::error::Result;
use crate::plane::{ControlPlane, StreamChange, StreamSettings};
use crate::util::{hex, random_bytes, sha256};

/// How many recent changes `Last-Event-ID` can resume from.
pub const RING: usize = 1024;

/// How often the change stream sends a keep-alive comment.
pub const KEEPALIVE: Duration = Duration::from_secs(10);

/// Where a running server gets its streams' settings: the in-process
/// [`ControlPlane`] or a [`RemoteSettings`](crate::RemoteSettings) that
/// follows a control plane over HTTP.
pub trait SettingsSource: Send + Sync + 'static {
    /// The settings of stream `name` (without `live/`), from memory.
    fn settings(&self, name: &str) -> Option<StreamSettings>;
    /// Change notifications. A receiver that lags gets
    /// `RecvError::Lagged` and should re-read the streams it cares about.
    fn subscribe_changes(&self) -> broadcast::Receiver<StreamChange>;
}

impl SettingsSource for ControlPlane {
    fn settings(&self, name: &str) -> Option<StreamSettings> {
        ControlPlane::settings(self, name)
    }
    fn subscribe_changes(&self) -> broadcast::Receiver<StreamChange> {
        ControlPlane::subscribe_changes(self)
    }
}

/// One change with its sequence number and the settings after it.
#[derive(Debug, Clone)]
pub(crate) struct Sequenced {
    seq: u64,
    change: StreamChange,
    settings: Option<StreamSettings>,
}

/// The sequenced change log: a ring of recent changes and a broadcast of
/// new ones. Lives under a mutex in the control plane.
#[derive(Debug)]
pub(crate) struct Feed {
    epoch: String,
    seq: u64,
    ring: VecDeque<Sequenced>,
    tx: broadcast::Sender<Sequenced>,
}

/// How a change stream starts.
enum Start {
    /// These changes, then the live ones.
    Replay(Vec<Sequenced>),
    /// A snapshot at `seq`, then the live ones.
    Snapshot { seq: u64, streams: Value },
}

impl Feed {
    pub(crate) fn new() -> Result<Feed> {
        let (tx, _) = broadcast::channel(RING);
        Ok(Feed {
            epoch: hex(&random_bytes::<6>()?),
            seq: 0,
            ring: VecDeque::with_capacity(RING),
            tx,
        })
    }

    pub(crate) fn push(&mut self, change: StreamChange, settings: Option<StreamSettings>) {
        self.seq = self.seq.saturating_add(1);
        let ev = Sequenced {
            seq: self.seq,
            change,
            settings,
        };
        if self.ring.len() >= RING {
            self.ring.pop_front();
        }
        self.ring.push_back(ev.clone());
        let _ = self.tx.send(ev);
    }

    fn version(&self, seq: u64) -> String {
        format!("{}-{seq}", self.epoch)
    }

    /// The changes after `last` if the ring still holds all of them.
    fn since(&self, last: &str) -> Option<Vec<Sequenced>> {
        let (epoch, seq) = last.trim().rsplit_once('-')?;
        if epoch != self.epoch {
            return None;
        }
        let seq: u64 = seq.parse().ok()?;
        if seq > self.seq {
            return None;
        }
        let oldest_kept = self
            .ring
            .front()
            .map_or(self.seq.saturating_add(1), |e| e.seq);
        if seq.saturating_add(1) < oldest_kept {
            return None;
        }
        Some(self.ring.iter().filter(|e| e.seq > seq).cloned().collect())
    }
}

fn lock(cp: &ControlPlane) -> std::sync::MutexGuard<'_, Feed> {
    cp.inner
        .feed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn streams_json(cp: &ControlPlane) -> Value {
    let map = cp
        .inner
        .settings
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let sorted: std::collections::BTreeMap<&String, &StreamSettings> = map.iter().collect();
    serde_json::to_value(sorted).unwrap_or(Value::Null)
}

impl ControlPlane {
    /// All streams' settings and the feed version they are at
    /// (`<epoch>-<seq>`), consistent with each other.
    pub fn settings_snapshot(&self) -> (String, HashMap<String, StreamSettings>) {
        let feed = lock(self);
        let map = self
            .inner
            .settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        (feed.version(feed.seq), map)
    }

    fn feed_start(&self, last: Option<&str>) -> (Start, broadcast::Receiver<Sequenced>) {
        let feed = lock(self);
        let rx = feed.tx.subscribe();
        let start = match last.and_then(|l| feed.since(l)) {
            Some(replay) => Start::Replay(replay),
            None => Start::Snapshot {
                seq: feed.seq,
                streams: streams_json(self),
            },
        };
        (start, rx)
    }

    fn snapshot_at(&self) -> (u64, Value) {
        let feed = lock(self);
        (feed.seq, streams_json(self))
    }

    fn epoch(&self) -> String {
        lock(self).epoch.clone()
    }
}

/// The admin or the node token, else 401 (403 for a creator).
pub(crate) async fn node_auth(cp: &ControlPlane, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or bad bearer token".into(),
        )
    };
    let token = crate::api::bearer(headers).ok_or_else(unauthorized)?;
    if let Some(want) = &cp.inner.node_token {
        let got = sha256(token);
        // Constant time over the (fixed length) hashes.
        if got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 {
            return Ok(());
        }
    }
    match cp.authenticate(token).await? {
        Some(p) if p.admin => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "media node routes need the admin or the node token".into(),
        )),
        None => Err(unauthorized()),
    }
}

pub(crate) async fn get_settings(State(cp): State<ControlPlane>, headers: HeaderMap) -> Response {
    if let Err(e) = node_auth(&cp, &headers).await {
        return e.into_response();
    }
    let feed = lock(&cp);
    let body = json!({ "version": feed.version(feed.seq), "streams": streams_json(&cp) });
    drop(feed);
    axum::Json(body).into_response()
}

fn sse_event(id: &str, event: &str, data: &Value) -> Bytes {
    // serde_json never emits a raw newline, so the data is one line.
    Bytes::from(format!("id: {id}\nevent: {event}\ndata: {data}\n\n"))
}

fn change_event(epoch: &str, e: &Sequenced) -> Bytes {
    sse_event(
        &format!("{epoch}-{}", e.seq),
        "change",
        &json!({ "name": e.change.name, "kind": e.change.kind, "settings": e.settings }),
    )
}

fn snapshot_event(epoch: &str, seq: u64, streams: Value) -> Bytes {
    let v = format!("{epoch}-{seq}");
    sse_event(&v, "snapshot", &json!({ "version": v, "streams": streams }))
}

/// A response body fed by a channel; dropping it (client gone) ends the
/// feeding task.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

pub(crate) async fn get_changes(State(cp): State<ControlPlane>, headers: HeaderMap) -> Response {
    if let Err(e) = node_auth(&cp, &headers).await {
        return e.into_response();
    }
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let epoch = cp.epoch();
    let (start, mut rx) = cp.feed_start(last.as_deref());
    let (tx, body_rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut sent = 0u64;
        let mut first = vec![Bytes::from_static(b"retry: 1000\n\n")];
        match start {
            Start::Replay(list) => {
                // Nothing missed: no event, the client keeps its id.
                for e in &list {
                    first.push(change_event(&epoch, e));
                    sent = e.seq;
                }
            }
            Start::Snapshot { seq, streams } => {
                first.push(snapshot_event(&epoch, seq, streams));
                sent = seq;
            }
        }
        for b in first {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        let mut ping = tokio::time::interval(KEEPALIVE);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            let out = tokio::select! {
                r = rx.recv() => match r {
                    Ok(e) if e.seq <= sent => continue,
                    Ok(e) => {
                        sent = e.seq;
                        change_event(&epoch, &e)
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let (seq, streams) = cp.snapshot_at();
                        sent = seq;
                        snapshot_event(&epoch, seq, streams)
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ping.tick() => Bytes::from_static(b": keep-alive\n\n"),
            };
            if tx.send(out).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(axum::body::Body::new(ChannelBody(body_rx)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Tell nginx-style proxies not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChangeKind;

    fn ch(n: &str) -> StreamChange {
        StreamChange {
            name: n.into(),
            kind: ChangeKind::Updated,
        }
    }

    #[test]
    fn resume_from_ring_or_not() {
        let mut f = Feed::new().unwrap();
        let e = f.epoch.clone();
        assert_eq!(f.since(&format!("{e}-0")).unwrap().len(), 0);
        for i in 0..(RING + 10) {
            f.push(ch(&format!("s{i}")), None);
        }
        let top = (RING + 10) as u64;
        assert_eq!(f.since(&format!("{e}-{top}")).unwrap().len(), 0);
        let r = f.since(&format!("{e}-{}", top - 3)).unwrap();
        assert_eq!(
            r.iter().map(|x| x.seq).collect::<Vec<_>>(),
            [top - 2, top - 1, top]
        );
        // the oldest kept is seq 11: resuming from 10 works, from 9 not
        assert_eq!(f.since(&format!("{e}-10")).unwrap().len(), RING);
        assert!(f.since(&format!("{e}-9")).is_none());
        assert!(
            f.since(&format!("{e}-{}", top + 1)).is_none(),
            "from the future"
        );
        assert!(f.since(&format!("other-{top}")).is_none(), "another epoch");
        for bad in [
            "",
            "-",
            "x",
            &format!("{e}-"),
            &format!("{e}--1"),
            &format!("{e}-1x"),
        ] {
            assert!(f.since(bad).is_none(), "{bad:?}");
        }
    }
}
