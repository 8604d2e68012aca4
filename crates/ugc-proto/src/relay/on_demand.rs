//! Streams carried on demand: an origin that no node pushes to pulls a
//! stream (its source and its renditions) over the relay from a node that
//! carries it when a viewer first asks, and drops it once no viewer has
//! asked for [`OnDemandPulls::idle`].
//!
//! The pulls publish into the local Hub like any ingest, so the packager,
//! the DVR and the viewer count work unchanged; where a stream is pulled
//! from is the caller's business (a [`Locate`] function: the control
//! plane's answer in a cluster). [`OnDemandPulls`] is the bookkeeping: at
//! most one pull per stream however many viewers arrive at once, a pull
//! whose sender went away is started again (perhaps from another node) on
//! the next request, and [`OnDemandPulls::reap`] stops the idle ones.
//!
//! ```no_run
//! # async fn f(hub: ugc_core::Hub) {
//! use std::time::Duration;
//! use ugc_core::StreamPath;
//! use ugc_proto::relay::on_demand::{Carrier, OnDemandPulls};
//!
//! let pulls = OnDemandPulls::new(hub, "node-token", Duration::from_secs(30), |source: StreamPath| {
//!     Box::pin(async move {
//!         Some(Carrier { base_url: "http://10.0.0.7:8082".into(), streams: vec![source] })
//!     })
//! });
//! tokio::spawn(pulls.clone().reap_every(Duration::from_secs(1)));
//! let started = pulls.pull(&StreamPath::live("news").unwrap()).await;
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ugc_core::metrics::{Exposition, Kind};
use ugc_core::{Hub, Passthrough, Source, SourceRole, StreamPath, pump};

use super::puller::{PullConfig, RelayPuller};

/// Where a stream is pulled from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrier {
    /// The sending node, `http://host:port`.
    pub base_url: String,
    /// The Hub streams to pull: the source and its renditions.
    pub streams: Vec<StreamPath>,
}

/// The answer of a [`Locate`] function, in time.
pub type Located = Pin<Box<dyn Future<Output = Option<Carrier>> + Send>>;

/// Finds where a source stream (`live/news`) is pulled from; `None`: no
/// node carries it.
pub type Locate = Arc<dyn Fn(StreamPath) -> Located + Send + Sync>;

/// Pulls `stream` into `hub` on the sender's timeline (its first
/// connection's hello names it), so this node names the stream's media as
/// every other node that carries it does (aligned segments).
async fn pull_into(hub: &Hub, stream: &StreamPath, config: PullConfig) -> ugc_core::Result<()> {
    let mut puller = RelayPuller::new(config);
    let Some(first) = puller.next_event().await? else {
        return Ok(());
    };
    let mut publisher = hub.publish_on_timeline(stream, SourceRole::Main, puller.timeline());
    publisher.push(first)?;
    pump(puller, Passthrough, publisher).await
}

/// One stream pulled here.
struct Pull {
    last_used: Instant,
    /// The pulls of the source and its renditions; empty while locating.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Dropped with the pull: its tasks stop and end their streams.
    _stop: Option<tokio::sync::watch::Sender<()>>,
}

impl Pull {
    /// Located, and some of its pulls still run.
    fn running(&self) -> bool {
        !self.tasks.is_empty() && self.tasks.iter().any(|t| !t.is_finished())
    }
}

struct Inner {
    hub: Hub,
    token: String,
    idle: Duration,
    locate: Locate,
    pulls: Mutex<HashMap<StreamPath, Pull>>,
    started: AtomicU64,
    not_found: AtomicU64,
    stopped_idle: AtomicU64,
}

/// The streams an origin pulls on demand (see the module doc). Cheap to
/// clone.
#[derive(Clone)]
pub struct OnDemandPulls {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OnDemandPulls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDemandPulls")
            .field("idle", &self.inner.idle)
            .field("pulling", &self.pulling())
            .finish_non_exhaustive()
    }
}

impl OnDemandPulls {
    /// Pulls into `hub` with the node token `token`, from where `locate`
    /// says; a stream nobody asked for in `idle` is dropped by
    /// [`Self::reap`].
    pub fn new(
        hub: Hub,
        token: &str,
        idle: Duration,
        locate: impl Fn(StreamPath) -> Located + Send + Sync + 'static,
    ) -> Self {
        OnDemandPulls {
            inner: Arc::new(Inner {
                hub,
                token: token.to_owned(),
                idle,
                locate: Arc::new(locate),
                pulls: Mutex::new(HashMap::new()),
                started: AtomicU64::new(0),
                not_found: AtomicU64::new(0),
                stopped_idle: AtomicU64::new(0),
            }),
        }
    }

    /// How long a stream stays pulled without a request.
    pub fn idle(&self) -> Duration {
        self.inner.idle
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamPath, Pull>> {
        self.inner
            .pulls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Streams pulled (or being located) now.
    pub fn pulling(&self) -> usize {
        self.lock().len()
    }

    /// Makes sure source stream `source` is pulled: starts its pulls
    /// unless they run (or another request is locating it). `false`: no
    /// node carries it.
    pub async fn pull(&self, source: &StreamPath) -> bool {
        let source = source.source();
        {
            let mut pulls = self.lock();
            match pulls.get_mut(&source) {
                // Running, or being located by another request.
                Some(p) if p.running() || p.tasks.is_empty() => {
                    p.last_used = Instant::now();
                    return true;
                }
                // Its sender went away: locate it again.
                Some(_) => {
                    pulls.remove(&source);
                }
                None => {}
            }
            pulls.insert(
                source.clone(),
                Pull {
                    last_used: Instant::now(),
                    tasks: Vec::new(),
                    _stop: None,
                },
            );
        }
        // On a task of its own: a request given up on (its viewer left)
        // does not leave the stream half-started.
        let this = self.clone();
        tokio::spawn(async move { this.start(source).await })
            .await
            .unwrap_or(false)
    }

    /// Pulls source stream `source` again if it was pulled here and every
    /// pull of it ended (its sender went away for good); a stream not
    /// pulled here (pushed to this node) is left alone. `true`: pulled
    /// again.
    pub async fn pull_again_if_lost(&self, source: &StreamPath) -> bool {
        let lost = matches!(
            self.lock().get(&source.source()),
            Some(p) if !p.tasks.is_empty() && !p.running()
        );
        lost && self.pull(source).await
    }

    async fn start(&self, source: StreamPath) -> bool {
        let carrier = (self.inner.locate)(source.clone()).await;
        let mut pulls = self.lock();
        let Some(carrier) = carrier.filter(|c| c.streams.iter().any(|s| s.source() == source))
        else {
            pulls.remove(&source);
            self.inner.not_found.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let (stop, stopped) = tokio::sync::watch::channel(());
        let tasks = carrier
            .streams
            .iter()
            .filter(|s| s.source() == source)
            .map(|stream| {
                let mut stopped = stopped.clone();
                let mut config =
                    PullConfig::new(&carrier.base_url, stream.clone(), &self.inner.token);
                // A sender gone for good ends the pull; the next request
                // locates the stream again.
                config.max_attempts = Some(10);
                let (hub, stream) = (self.inner.hub.clone(), stream.clone());
                tokio::spawn(async move {
                    let stop = tokio::select! {
                        r = pull_into(&hub, &stream, config) => {
                            if let Err(e) = r {
                                tracing::info!(%stream, error = %e, "on-demand pull ended");
                            }
                            false
                        }
                        _ = stopped.changed() => true,
                    };
                    // The pull (its publisher) is gone: nobody watches, so
                    // the stream ends now rather than wait for one.
                    if stop {
                        hub.end_unless_published(&stream);
                    }
                })
            })
            .collect();
        tracing::info!(stream = %source, from = %carrier.base_url, "pulling on demand");
        self.inner.started.fetch_add(1, Ordering::Relaxed);
        pulls.insert(
            source,
            Pull {
                last_used: Instant::now(),
                tasks,
                _stop: Some(stop),
            },
        );
        true
    }

    /// A viewer asked for `stream` (or one of its renditions): it stays
    /// pulled for [`Self::idle`] from now.
    pub fn used(&self, stream: &StreamPath) {
        if let Some(p) = self.lock().get_mut(&stream.source()) {
            p.last_used = Instant::now();
        }
    }

    /// Stops the pulls nobody asked for in [`Self::idle`] (their streams
    /// end); how many.
    pub fn reap(&self, now: Instant) -> usize {
        let idle = self.inner.idle;
        let mut pulls = self.lock();
        let before = pulls.len();
        pulls.retain(|stream, p| {
            let keep = p.tasks.is_empty() || now.saturating_duration_since(p.last_used) < idle;
            if !keep {
                tracing::info!(%stream, "on-demand pull idle: stopped");
            }
            keep
        });
        let n = before - pulls.len();
        self.inner
            .stopped_idle
            .fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// [`Self::reap`] every `every`, for ever.
    pub async fn reap_every(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            self.reap(Instant::now());
        }
    }

    /// `ugc_on_demand_pulls` (streams pulled now) and
    /// `ugc_on_demand_pulls_total{outcome}` (`started`, `not_found`,
    /// `stopped_idle`).
    pub fn write_metrics(&self, m: &mut Exposition) {
        m.family(
            "ugc_on_demand_pulls",
            Kind::Gauge,
            "Streams this origin pulls on demand now.",
        )
        .sample(&[], self.pulling() as f64);
        m.family(
            "ugc_on_demand_pulls_total",
            Kind::Counter,
            "On-demand pulls by outcome: started, not found anywhere, stopped for want of viewers.",
        );
        let i = &self.inner;
        for (outcome, n) in [
            ("started", &i.started),
            ("not_found", &i.not_found),
            ("stopped_idle", &i.stopped_idle),
        ] {
            m.sample(&[("outcome", outcome)], n.load(Ordering::Relaxed) as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pulls from nowhere (port 9: nobody listens) that count their
    /// locates; `carrier` answers each.
    fn counted(carrier: fn(&StreamPath) -> Option<Carrier>) -> (OnDemandPulls, Arc<AtomicU64>) {
        let hub = Hub::new(ugc_core::HubConfig::default());
        let located = Arc::new(AtomicU64::new(0));
        let counter = located.clone();
        let pulls = OnDemandPulls::new(hub, "t", Duration::from_secs(30), move |source| {
            let counter = counter.clone();
            Box::pin(async move {
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
                carrier(&source)
            })
        });
        (pulls, located)
    }

    /// Concurrent viewers of one stream locate it once; a stream nobody
    /// carries is not found; an idle pull is reaped, a used one is not.
    #[tokio::test]
    async fn one_locate_per_stream_and_idle_pulls_reaped() {
        let (pulls, located) = counted(|source| {
            (source.name() == "news").then(|| Carrier {
                // Nobody listens: the pulls retry until stopped.
                base_url: "http://127.0.0.1:9".into(),
                streams: vec![source.clone(), source.with_rendition("720p").unwrap()],
            })
        });
        let news = StreamPath::live("news").unwrap();
        let asked = futures_util::future::join_all((0..5).map(|_| pulls.pull(&news))).await;
        assert_eq!(asked, [true; 5]);
        assert_eq!(located.load(Ordering::Relaxed), 1);
        assert_eq!(pulls.pulling(), 1);
        // A rendition's request finds its source's pull.
        assert!(pulls.pull(&news.with_rendition("720p").unwrap()).await);
        assert_eq!(located.load(Ordering::Relaxed), 1);

        assert!(!pulls.pull(&StreamPath::live("gone").unwrap()).await);
        assert_eq!(pulls.pulling(), 1);

        let now = Instant::now();
        assert_eq!(pulls.reap(now + Duration::from_secs(29)), 0);
        pulls.used(&news);
        assert_eq!(pulls.reap(now + Duration::from_secs(29)), 0);
        assert_eq!(pulls.reap(Instant::now() + Duration::from_secs(31)), 1);
        assert_eq!(pulls.pulling(), 0);
        let mut m = Exposition::new();
        pulls.write_metrics(&mut m);
        let text = m.finish();
        for line in [
            "ugc_on_demand_pulls 0",
            "ugc_on_demand_pulls_total{outcome=\"started\"} 1",
            "ugc_on_demand_pulls_total{outcome=\"not_found\"} 1",
            "ugc_on_demand_pulls_total{outcome=\"stopped_idle\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
    }

    /// A pull whose sender is gone for good (every attempt failed) is
    /// located again by `pull_again_if_lost`; a stream never pulled here
    /// (pushed to this node) is not.
    #[tokio::test(start_paused = true)]
    async fn a_lost_pull_is_located_again_and_a_pushed_stream_is_not_pulled() {
        let (pulls, located) = counted(|source| {
            Some(Carrier {
                // Nobody listens: the pull gives up after its attempts.
                base_url: "http://127.0.0.1:9".into(),
                streams: vec![source.clone()],
            })
        });
        let news = StreamPath::live("news").unwrap();
        let pushed = StreamPath::live("pushed").unwrap();
        assert!(pulls.pull(&news).await);
        // Running: nothing to do.
        assert!(!pulls.pull_again_if_lost(&news).await);
        assert!(!pulls.pull_again_if_lost(&pushed).await);
        assert_eq!(located.load(Ordering::Relaxed), 1);
        let mut waited = Duration::ZERO;
        while pulls.lock().get(&news).is_some_and(Pull::running) {
            assert!(waited < Duration::from_secs(600), "the pull gives up");
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += Duration::from_millis(100);
        }
        assert!(pulls.pull_again_if_lost(&news).await);
        assert_eq!(located.load(Ordering::Relaxed), 2);
        assert!(pulls.lock().get(&news).is_some_and(Pull::running));
        assert!(!pulls.pull_again_if_lost(&pushed).await);
        assert_eq!(located.load(Ordering::Relaxed), 2);
    }
}
