//! A transcoding node's side of transcode leases: the streams it holds are
//! pulled from their publishing nodes into its Hub (where its ladder makes
//! their renditions) and the renditions are pushed to the origins with the
//! lease's epoch.
//!
//! The control plane's heartbeat answers list the node's leases;
//! [`LeaseFollower::apply`] makes the node do exactly those: a new lease
//! starts a [`RelayPuller`] from the lease's source into the Hub and
//! pushes of the stream's renditions, a lost one stops them at once (the
//! pushes are cut, so the origin waits for the new holder instead of
//! taking an end from the old one) and ends the stream in the Hub, a new
//! epoch on a held stream re-pushes under it. The origins get each
//! stream's source from its publishing node, not from here.
//!
//! [`LeaseFollower::push_all`] is the node's one push loop: renditions of
//! held streams go out under their lease's epoch; until the first lease
//! answer (a control plane that names its transcoders instead, so that
//! publishing nodes push to them) every stream goes out as before, epoch 0.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::AbortHandle;
use ugc_core::metrics::{Exposition, Kind};
use ugc_core::{Hub, Source, StreamPath};

use super::puller::{PullConfig, RelayPuller};
use super::push::{PushOptions, Pushes, RelayPushStats};

/// One lease as the control plane gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedStream {
    /// The source stream (`live/news`).
    pub stream: StreamPath,
    /// The lease's epoch.
    pub epoch: u64,
    /// The publishing node to pull it from, `http://host:port`.
    pub source: String,
}

/// Follows a transcoding node's leases. Cheap to clone.
#[derive(Clone)]
pub struct LeaseFollower {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Hub,
    targets: watch::Receiver<Vec<String>>,
    /// The sender of targets that never change ([`LeaseFollower::new`]).
    _fixed: Option<watch::Sender<Vec<String>>>,
    push: PushOptions,
    /// A lease answer came: push only what is leased.
    leasing: AtomicBool,
    held: Mutex<HashMap<StreamPath, Held>>,
    /// Pushes of streams no lease covers (before the first lease answer).
    loose: Mutex<Pushes>,
    gained: AtomicU64,
    lost: AtomicU64,
}

struct Held {
    epoch: u64,
    source: String,
    pull: AbortHandle,
    /// Cut when dropped.
    pushes: Pushes,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.pull.abort();
    }
}

impl std::fmt::Debug for LeaseFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseFollower")
            .field("targets", &*self.inner.targets.borrow())
            .field("held", &self.held())
            .finish_non_exhaustive()
    }
}

impl LeaseFollower {
    /// A follower pulling into `hub` and pushing to `targets` (the
    /// origins) with the node token.
    pub fn new(
        hub: Hub,
        targets: Vec<String>,
        token: impl Into<String>,
        stats: Arc<RelayPushStats>,
    ) -> Self {
        let (fixed, targets) = watch::channel(targets);
        let push = PushOptions {
            token: token.into(),
            stats,
            ..Default::default()
        };
        Self::build(hub, targets, Some(fixed), push)
    }

    /// [`new`](Self::new) with targets that change while it runs (the
    /// control plane's topology): a target that appears gets the held
    /// streams' renditions, one that goes away has its pushes cut.
    pub fn following(hub: Hub, targets: watch::Receiver<Vec<String>>, push: PushOptions) -> Self {
        Self::build(hub, targets, None, push)
    }

    fn build(
        hub: Hub,
        targets: watch::Receiver<Vec<String>>,
        fixed: Option<watch::Sender<Vec<String>>>,
        push: PushOptions,
    ) -> Self {
        LeaseFollower {
            inner: Arc::new(Inner {
                hub,
                targets,
                _fixed: fixed,
                loose: Mutex::new(Pushes::default()),
                push,
                leasing: AtomicBool::new(false),
                held: Mutex::new(HashMap::new()),
                gained: AtomicU64::new(0),
                lost: AtomicU64::new(0),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<StreamPath, Held>> {
        self.inner
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The streams held and their epochs, by stream.
    pub fn held(&self) -> Vec<(StreamPath, u64)> {
        let mut v: Vec<_> = self
            .lock()
            .iter()
            .map(|(s, h)| (s.clone(), h.epoch))
            .collect();
        v.sort();
        v
    }

    /// Makes the node run exactly `leases` (a heartbeat's answer). Needs a
    /// Tokio runtime.
    pub fn apply(&self, leases: &[LeasedStream]) {
        self.inner.leasing.store(true, Ordering::Relaxed);
        let want: HashMap<&StreamPath, &LeasedStream> =
            leases.iter().map(|l| (&l.stream, l)).collect();
        let mut held = self.lock();
        let lost: Vec<StreamPath> = held
            .keys()
            .filter(|s| !want.contains_key(s))
            .cloned()
            .collect();
        for s in lost {
            drop(held.remove(&s));
            self.inner.hub.end(&s);
            self.inner.lost.fetch_add(1, Ordering::Relaxed);
            tracing::info!(stream = %s, "transcode lease lost: stopped");
        }
        for l in leases {
            match held.get_mut(&l.stream) {
                Some(h) => {
                    if h.source != l.source {
                        tracing::info!(stream = %l.stream, source = %l.source, "lease source moved");
                        h.pull.abort();
                        h.pull = self.spawn_pull(l);
                        h.source = l.source.clone();
                    }
                    if h.epoch != l.epoch {
                        tracing::info!(stream = %l.stream, epoch = l.epoch, "lease epoch changed");
                        h.epoch = l.epoch;
                        h.pushes = self.push_renditions(&l.stream, l.epoch);
                    }
                }
                None => {
                    tracing::info!(stream = %l.stream, epoch = l.epoch, source = %l.source,
                        "transcode lease gained");
                    self.inner.gained.fetch_add(1, Ordering::Relaxed);
                    let h = Held {
                        epoch: l.epoch,
                        source: l.source.clone(),
                        pull: self.spawn_pull(l),
                        pushes: self.push_renditions(&l.stream, l.epoch),
                    };
                    held.insert(l.stream.clone(), h);
                }
            }
        }
    }

    /// Pulls the leased stream into the Hub for as long as the lease
    /// lasts: a failed pull (the source not there yet, a refused epoch) is
    /// retried every second, and so is one that ended (the creator may
    /// publish again before the control plane has seen the end).
    fn spawn_pull(&self, l: &LeasedStream) -> AbortHandle {
        let (hub, token) = (self.inner.hub.clone(), self.inner.push.token.clone());
        let (stream, source) = (l.stream.clone(), l.source.clone());
        tokio::spawn(async move {
            loop {
                let mut puller = RelayPuller::new(PullConfig::new(&source, stream.clone(), &token));
                // Publish only once the source answers: a node that cannot
                // pull the stream does not carry it.
                let first = match puller.next_event().await {
                    Ok(Some(e)) => e,
                    Ok(None) => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(%stream, %source, error = %e, "lease pull: no source yet");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let mut publisher =
                    hub.publish_on_timeline(&stream, ugc_core::SourceRole::Main, puller.timeline());
                if let Err(e) = publisher.push(first) {
                    tracing::warn!(%stream, error = %e, "lease pull: the Hub refused the stream");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                match ugc_core::drive(puller, ugc_core::Passthrough, &mut publisher).await {
                    Ok(()) => {
                        tracing::info!(%stream, %source, "leased stream ended at its source");
                    }
                    Err(e) => {
                        tracing::warn!(%stream, %source, error = %e, "lease pull failed; retrying");
                    }
                }
                // The publisher detaches now and waits out the Hub's
                // publisher grace on its own: the stream ends then unless
                // the retry below has taken it over. (`pump` waited here:
                // a source node restarted a moment before its publishers
                // came back answered 404, and the ladder stopped for the
                // whole grace, 20 s, in the chaos run's seed 1.)
                tokio::spawn(async move {
                    let _ = ugc_core::Sink::finish(&mut publisher).await;
                });
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
        .abort_handle()
    }

    /// Pushes of the renditions of `root` the Hub has now, to every target.
    fn push_renditions(&self, root: &StreamPath, epoch: u64) -> Pushes {
        let mut pushes = Pushes::default();
        let targets = self.inner.targets.borrow().clone();
        for s in self.renditions(root) {
            for t in &targets {
                pushes.start(&self.inner.hub, &s, t, epoch, &self.inner.push);
            }
        }
        pushes
    }

    /// The renditions of `root` in the Hub.
    fn renditions(&self, root: &StreamPath) -> Vec<StreamPath> {
        self.inner
            .hub
            .stream_names()
            .into_iter()
            .filter(|s| !s.is_source() && s.source() == *root)
            .collect()
    }

    fn push(&self, pushes: &mut Pushes, stream: &StreamPath, target: &str, epoch: u64) {
        pushes.start(&self.inner.hub, stream, target, epoch, &self.inner.push);
    }

    /// The node's push loop (see the module doc); runs until the Hub is
    /// gone.
    pub async fn push_all(self) {
        let mut watch = self.inner.hub.watch();
        let mut targets = self.inner.targets.clone();
        let mut current = targets.borrow_and_update().clone();
        let mut following = true;
        loop {
            tokio::select! {
                stream = watch.next() => {
                    let Some(stream) = stream else { return };
                    self.pushes_of(&stream, &current);
                }
                changed = targets.changed(), if following => {
                    if changed.is_err() {
                        following = false; // the last targets stay
                        continue;
                    }
                    let new = targets.borrow_and_update().clone();
                    self.retarget(&current, &new);
                    current = new;
                }
            }
        }
    }

    /// A stream appeared in the Hub: its pushes to `targets`.
    fn pushes_of(&self, stream: &StreamPath, targets: &[String]) {
        let root = stream.source();
        let mut held = self.lock();
        match held.get_mut(&root) {
            Some(_) if stream.is_source() => {} // the origins have it
            Some(h) => {
                let epoch = h.epoch;
                let mut pushes = std::mem::take(&mut h.pushes);
                pushes.tidy();
                for t in targets {
                    self.push(&mut pushes, stream, t, epoch);
                }
                h.pushes = pushes;
            }
            None if self.inner.leasing.load(Ordering::Relaxed) => {}
            None => {
                drop(held);
                let mut loose = self.loose();
                loose.tidy();
                for t in targets {
                    self.push(&mut loose, stream, t, 0);
                }
            }
        }
    }

    /// The targets went from `old` to `new`: pushes to those gone are cut,
    /// those added get what this node sends.
    fn retarget(&self, old: &[String], new: &[String]) {
        let added: Vec<&String> = new.iter().filter(|t| !old.contains(t)).collect();
        let mut held = self.lock();
        for (root, h) in held.iter_mut() {
            let epoch = h.epoch;
            let mut pushes = std::mem::take(&mut h.pushes);
            pushes.stop_except(new);
            for s in self.renditions(root) {
                for t in &added {
                    self.push(&mut pushes, &s, t, epoch);
                }
            }
            h.pushes = pushes;
        }
        let roots: Vec<StreamPath> = held.keys().cloned().collect();
        drop(held);
        let mut loose = self.loose();
        loose.stop_except(new);
        if !self.inner.leasing.load(Ordering::Relaxed) {
            for s in self.inner.hub.stream_names() {
                if roots.contains(&s.source()) {
                    continue;
                }
                for t in &added {
                    self.push(&mut loose, &s, t, 0);
                }
            }
        }
    }

    fn loose(&self) -> MutexGuard<'_, Pushes> {
        self.inner
            .loose
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `ugc_transcode_leases` (held now), `..._gained_total`,
    /// `..._lost_total`.
    pub fn write_metrics(&self, m: &mut Exposition) {
        let held = self.lock().len();
        m.family(
            "ugc_transcode_leases",
            Kind::Gauge,
            "Transcode leases this node holds.",
        );
        m.sample(&[], held as f64);
        for (name, help, v) in [
            (
                "ugc_transcode_leases_gained_total",
                "Transcode leases this node claimed.",
                &self.inner.gained,
            ),
            (
                "ugc_transcode_leases_lost_total",
                "Transcode leases this node lost or gave up.",
                &self.inner.lost,
            ),
        ] {
            m.family(name, Kind::Counter, help);
            m.sample(&[], v.load(Ordering::Relaxed) as f64);
        }
    }
}
