//! The restream supervisor: keeps one [`push`](super::push) per (Hub
//! stream, target URL) that its settings ask for, starts and stops pushes
//! as streams come and go and settings change, and reports every push for
//! a stats route and `/metrics`.
//!
//! Settings come through two seams, so that any settings store fits: a
//! [`RestreamTargets`] lookup (the targets of a stream, read on every
//! pass) and a change feed (a `tokio::sync::broadcast` receiver of any
//! message type, a wake-up hint only). Passes also run every second and
//! whenever a Hub stream appears.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ugc_proto::rtmp::push::PushConfig;
//! use ugc_proto::rtmp::restream::{Restreams, supervise};
//!
//! # async fn run(hub: ugc_core::Hub) {
//! let (_settings_changed, changes) = tokio::sync::broadcast::channel::<()>(16);
//! let restreams = Restreams::default();
//! let targets = Arc::new(|stream: &ugc_core::StreamPath| {
//!     if stream.name() == "show" {
//!         vec!["rtmp://a.rtmp.youtube.com/live2/KEY".to_string()]
//!     } else {
//!         Vec::new()
//!     }
//! });
//! tokio::spawn(supervise(hub, targets, changes, PushConfig::default(), restreams.clone()));
//! # }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tracing::info;
use ugc_core::metrics::{Exposition, Family};
use ugc_core::{Hub, StreamPath};

use super::push::{PushConfig, PushHandle, PushState, PushStatus, redact, spawn_push};

/// The restream targets (`rtmp://` / `rtmps://` / `srt://` URLs with their keys) of a
/// Hub stream; empty for none. Called on every pass for every Hub stream,
/// renditions included: answer from memory.
pub type RestreamTargets = Arc<dyn Fn(&StreamPath) -> Vec<String> + Send + Sync>;

/// How often [`supervise`] passes over the streams without a reason.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

type Pushes = Arc<Mutex<HashMap<(StreamPath, String), PushHandle>>>;

/// The running pushes; cheap to clone and read from anywhere (stats route,
/// `/metrics`).
#[derive(Clone, Default)]
pub struct Restreams {
    pushes: Pushes,
}

impl std::fmt::Debug for Restreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restreams")
            .field("pushes", &self.lock().len())
            .finish()
    }
}

impl Restreams {
    /// Every push's stream and status, ordered by stream and target URL
    /// (keys included, so pushes whose redacted targets are equal keep
    /// their order from one call to the next).
    pub fn statuses(&self) -> Vec<(String, PushStatus)> {
        let pushes = self.lock();
        let mut keys: Vec<&(StreamPath, String)> = pushes.keys().collect();
        keys.sort();
        keys.into_iter()
            .map(|k| (k.0.to_string(), pushes[k].status()))
            .collect()
    }

    /// The pushes' families for `/metrics`: `ugc_restream_up`,
    /// `ugc_restream_{bytes_sent,frames_sent,skips,reconnects}_total`, by
    /// `stream` and `target` (key redacted; see [`target_labels`]).
    pub fn write_metrics(&self, m: &mut Exposition) {
        let pushes = self.statuses();
        let families: &[Family<(String, PushStatus)>] = &[
            Family::gauge(
                "ugc_restream_up",
                "1 while the push to the target is publishing.",
                |(_, p)| f64::from(u8::from(p.state == PushState::Live)),
            ),
            Family::counter(
                "ugc_restream_bytes_sent_total",
                "Bytes written to the target.",
                |(_, p)| p.bytes_sent as f64,
            ),
            Family::counter(
                "ugc_restream_frames_sent_total",
                "Frames sent to the target.",
                |(_, p)| p.frames_sent as f64,
            ),
            Family::counter(
                "ugc_restream_skips_total",
                "Times the push fell behind and skipped to a keyframe.",
                |(_, p)| p.skips as f64,
            ),
            Family::counter(
                "ugc_restream_reconnects_total",
                "Sessions started after the first.",
                |(_, p)| p.reconnects as f64,
            ),
        ];
        let rows: Vec<(String, PushStatus)> = target_labels(&pushes)
            .into_iter()
            .zip(pushes)
            .map(|(target, (stream, p))| (stream, PushStatus { target, ..p }))
            .collect();
        m.families(families, &rows, |(stream, p)| {
            vec![("stream", stream.clone()), ("target", p.target.clone())]
        });
    }

    /// One JSON object per push, in [`statuses`](Self::statuses) order,
    /// as [`json_schema`](Self::json_schema) describes.
    #[cfg(feature = "json")]
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.statuses()
            .into_iter()
            .map(|(stream, s)| {
                serde_json::json!({
                    "stream": stream,
                    "target": s.target,
                    "state": format!("{:?}", s.state).to_lowercase(),
                    "last_error": s.last_error,
                    "bytes_sent": s.bytes_sent,
                    "frames_sent": s.frames_sent,
                    "skips": s.skips,
                    "reconnects": s.reconnects,
                })
            })
            .collect()
    }

    /// The JSON Schema (OpenAPI 3.0 flavour) of one [`json`](Self::json)
    /// object.
    #[cfg(feature = "json")]
    pub fn json_schema() -> serde_json::Value {
        let int = || serde_json::json!({ "type": "integer" });
        serde_json::json!({ "type": "object", "properties": {
            "stream": { "type": "string" },
            "target": { "type": "string", "description": "URL, key redacted" },
            "state": { "type": "string", "enum": ["connecting", "live", "retrying", "failed"] },
            "last_error": { "type": "string", "nullable": true },
            "bytes_sent": int(), "frames_sent": int(), "skips": int(), "reconnects": int()
        } })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(StreamPath, String), PushHandle>> {
        self.pushes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The `target` label of each push. Targets are shown with their keys
/// redacted, so two pushes of a stream to one server (two channels of one
/// platform) would be the same series, which Prometheus refuses; the
/// second and later get ` #2`, ` #3`, ... in `pushes`' order.
pub fn target_labels(pushes: &[(String, PushStatus)]) -> Vec<String> {
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    pushes
        .iter()
        .map(|(stream, p)| {
            let n = seen.entry((stream, &p.target)).or_default();
            *n += 1;
            if *n == 1 {
                p.target.clone()
            } else {
                format!("{} #{n}", p.target)
            }
        })
        .collect()
}

/// Starts and stops pushes as streams come and go and settings change:
/// a pass every [`RECONCILE_INTERVAL`], when a Hub stream appears and when
/// `changes` says something (a lagged receiver counts too; a closed one is
/// no longer waited on). `restreams` lists the pushes. Runs until dropped
/// (dropping it leaves the pushes in `restreams` running).
pub async fn supervise<C: Clone>(
    hub: Hub,
    targets: RestreamTargets,
    changes: broadcast::Receiver<C>,
    config: PushConfig,
    restreams: Restreams,
) {
    let mut watch = hub.watch();
    let mut changes = Some(changes);
    let mut tick = tokio::time::interval(RECONCILE_INTERVAL);
    loop {
        tokio::select! {
            _ = watch.next() => {}
            _ = changed(&mut changes) => {}
            _ = tick.tick() => {}
        }
        reconcile(&hub, &targets, &config, &restreams);
    }
}

/// Waits for a message (or a lag) on `changes`; forever once it is closed.
async fn changed<C: Clone>(changes: &mut Option<broadcast::Receiver<C>>) {
    let Some(rx) = changes else {
        return std::future::pending().await;
    };
    if let Err(broadcast::error::RecvError::Closed) = rx.recv().await {
        *changes = None;
    }
}

fn reconcile(hub: &Hub, targets: &RestreamTargets, config: &PushConfig, restreams: &Restreams) {
    let mut want: Vec<(StreamPath, String)> = Vec::new();
    for stream in hub.stream_names() {
        for url in targets(&stream) {
            want.push((stream.clone(), url));
        }
    }
    let mut pushes = restreams.lock();
    pushes.retain(|k, h| {
        let keep = want.contains(k) && h.status().state != PushState::Stopped;
        if !keep {
            info!(stream = %k.0, target = %h.status().target, "restream stopped");
        }
        keep
    });
    for k in want {
        if let std::collections::hash_map::Entry::Vacant(slot) = pushes.entry(k) {
            let (stream, url) = slot.key().clone();
            info!(stream = %stream, target = %redact(&url), "restream started");
            slot.insert(spawn_push(hub.clone(), stream, url, config.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(stream: &str, target: &str) -> (String, PushStatus) {
        let status = PushStatus {
            target: target.into(),
            state: PushState::Live,
            last_error: None,
            bytes_sent: 0,
            frames_sent: 0,
            skips: 0,
            reconnects: 0,
        };
        (stream.into(), status)
    }

    #[test]
    fn pushes_with_one_redacted_target_stay_distinct_series() {
        let yt = "rtmp://a.rtmp.youtube.com/live2/***";
        let pushes = [
            push("live/a", yt),
            push("live/a", yt),
            push("live/a", "rtmp://live.twitch.tv/app/***"),
            push("live/a", yt),
            push("live/b", yt),
        ];
        assert_eq!(
            target_labels(&pushes),
            [
                yt.to_string(),
                format!("{yt} #2"),
                "rtmp://live.twitch.tv/app/***".into(),
                format!("{yt} #3"),
                yt.into(),
            ]
        );
    }
}
