//! The ladder supervisor: runs one [`run_ladder`](super::run_ladder) per
//! live source stream whose settings want a profile, stops or replaces it
//! when the setting changes or the stream ends, and lists the running
//! ladders in a [`LadderRegistry`].
//!
//! Settings come through two seams, so that any settings store fits (this
//! crate knows no control plane): a [`ProfileOf`] lookup (the profile a
//! stream wants, read on every pass) and a change feed (a
//! `tokio::sync::broadcast` receiver of any message type, a wake-up hint
//! only).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};
use ugc_core::{Hub, StreamPath};

use crate::ladder::LadderConfig;
use crate::ladder::stats::LadderRegistry;

/// The ladder profile a source stream wants (a key of the supervisor's
/// ladders), `None` for no ladder. Called for every source stream on every
/// pass: answer from memory.
pub type ProfileOf = Arc<dyn Fn(&StreamPath) -> Option<String> + Send + Sync>;

/// How often [`supervise`] passes over the streams without a reason: a
/// stream that ended, or came back (a reconnecting publisher keeps its Hub
/// stream, so no Hub event says so).
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(2);

struct Running {
    profile: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct Supervisor {
    hub: Hub,
    ladders: BTreeMap<String, LadderConfig>,
    profile_of: ProfileOf,
    registry: LadderRegistry,
    running: HashMap<StreamPath, Running>,
}

/// Runs a ladder (`<source>` into `<source>/<rendition>`) for every source
/// stream of `hub` that has a publisher and whose [`ProfileOf`] names one
/// of `ladders`; a changed profile replaces the ladder, `None` stops it.
/// Passes over the streams when one appears, when `changes` says something
/// (a lagged receiver counts too; a closed one is no longer waited on) and
/// every [`RECONCILE_INTERVAL`]. `registry` lists the running ladders.
/// Runs until the Hub is gone or it is dropped (running ladders go on until
/// their streams end).
pub async fn supervise<C: Clone>(
    hub: Hub,
    ladders: BTreeMap<String, LadderConfig>,
    profile_of: ProfileOf,
    changes: broadcast::Receiver<C>,
    registry: LadderRegistry,
) {
    let mut watch = hub.watch();
    let mut changes = Some(changes);
    let mut tick = tokio::time::interval(RECONCILE_INTERVAL);
    let mut s = Supervisor {
        hub,
        ladders,
        profile_of,
        registry,
        running: HashMap::new(),
    };
    loop {
        tokio::select! {
            n = watch.next() => match n {
                Some(stream) if stream.is_source() => s.reconcile(&stream),
                Some(_) => {}
                None => return,
            },
            _ = changed(&mut changes) => s.reconcile_all(),
            _ = tick.tick() => s.reconcile_all(),
        }
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

impl Supervisor {
    /// The running ladders' streams and every source stream of the Hub.
    fn reconcile_all(&mut self) {
        let streams: Vec<StreamPath> = self
            .running
            .keys()
            .cloned()
            .chain(
                self.hub
                    .stream_names()
                    .into_iter()
                    .filter(StreamPath::is_source),
            )
            .collect();
        for stream in streams {
            self.reconcile(&stream);
        }
    }

    fn reconcile(&mut self, source: &StreamPath) {
        let want = (self.profile_of)(source);
        let live = self.hub.is_publishing(source);
        if let Some(r) = self.running.get(source)
            && (Some(&r.profile) != want.as_ref() || r.task.is_finished())
        {
            if !r.task.is_finished() {
                let to = want.as_deref().unwrap_or("off");
                info!(stream = %source, from = %r.profile, to, "transcode setting changed");
            }
            let _ = r.stop.send(true);
            self.running.remove(source);
        }
        let Some(want) = want else {
            return;
        };
        if !live || self.running.contains_key(source) {
            return;
        }
        let Some(ladder) = self.ladders.get(&want).cloned() else {
            warn!(stream = %source, profile = %want, "unknown transcode profile");
            return;
        };
        let (stop, stop_rx) = watch::channel(false);
        let counters = self.registry.register(source, &want, Instant::now());
        let task = tokio::spawn({
            let (hub, source, registry) = (self.hub.clone(), source.clone(), self.registry.clone());
            async move {
                let r = super::run_ladder_with_stats(
                    hub,
                    source.clone(),
                    ladder,
                    stop_rx,
                    counters.clone(),
                )
                .await;
                if let Err(e) = r {
                    warn!(stream = %source, error = %e, "transcoding not possible");
                }
                registry.unregister(&source, &counters);
            }
        });
        self.running.insert(
            source.clone(),
            Running {
                profile: want,
                stop,
                task,
            },
        );
    }
}
