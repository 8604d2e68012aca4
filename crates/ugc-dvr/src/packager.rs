//! The thin tokio loop that drives a [`Segmenter`] from a Hub reader into a
//! [`LiveStream`]. The only place in this crate that reads the wall clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ugc_core::{HubReader, MediaEvent, StreamPath};

use crate::live::LiveStream;
use crate::segmenter::{Segmenter, SegmenterConfig, SegmenterOutput};

fn now_unix_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Sees every [`SegmenterOutput`] of one Hub stream, next to its
/// [`LiveStream`] (e.g. the DVR [`crate::archive::Recorder`]).
///
/// Called on the packager task: implementations must return at once (hand
/// work to a thread or a bounded queue; never block on I/O).
pub trait SegmentObserver: Send {
    /// One output, before the live window applies it.
    fn on_output(&mut self, output: &SegmenterOutput);
}

/// Makes a [`SegmentObserver`] for each Hub stream [`package_hub`] packages.
pub trait ObserverFactory: Send + Sync {
    /// An observer for the Hub stream `stream` (e.g. `live/foo`), or `None`
    /// to observe nothing.
    fn observe(&self, stream: &StreamPath) -> Option<Box<dyn SegmentObserver>>;
}

fn drain(
    segmenter: &mut Segmenter,
    stream: &LiveStream,
    observer: &mut Option<Box<dyn SegmentObserver>>,
    overruns: &mut u64,
    name: &StreamPath,
) {
    let mut outputs = Vec::new();
    while let Some(out) = segmenter.poll() {
        if let SegmenterOutput::Segment(seg) = &out
            && segmenter.stats().target_overruns > *overruns
        {
            *overruns = segmenter.stats().target_overruns;
            tracing::warn!(
                stream = %name,
                msn = seg.msn,
                duration_ms = seg.duration_ms,
                target_s = seg.target_duration_s,
                overruns = *overruns,
                "segment longer than the stream's target duration: the encoder's keyframe \
                 interval grew past it (set it at or below the segment duration, or raise \
                 target_duration_s)"
            );
        }
        if let Some(o) = observer.as_mut() {
            o.on_output(&out);
        }
        outputs.push(out);
    }
    // One update per input: a part and the preload hint after it together.
    stream.apply_all(outputs);
}

/// Packages the Hub stream `reader` into `stream` until the stream ends.
///
/// When no event arrives for twice the target duration the open segment is
/// flushed (the publisher went idle), so players get what was sent.
pub async fn run_packager(reader: HubReader, stream: Arc<LiveStream>, config: SegmenterConfig) {
    run_packager_observed(reader, stream, config, None).await;
}

/// [`run_packager`] that also shows every output to `observer`.
pub async fn run_packager_observed(
    reader: HubReader,
    stream: Arc<LiveStream>,
    config: SegmenterConfig,
    observer: Option<Box<dyn SegmentObserver>>,
) {
    run_packager_with_clock(reader, stream, config, observer, now_unix_ms).await;
}

/// [`run_packager_observed`] with the wall clock `now_unix_ms` (unix
/// milliseconds) injected, for tests.
pub async fn run_packager_with_clock(
    mut reader: HubReader,
    stream: Arc<LiveStream>,
    config: SegmenterConfig,
    mut observer: Option<Box<dyn SegmentObserver>>,
    now_unix_ms: impl Fn() -> i64 + Send,
) {
    let idle = Duration::from_millis(u64::from(config.target_duration_ms.max(1)) * 2);
    let mut segmenter = Segmenter::new(config);
    let mut overruns = 0;
    loop {
        match tokio::time::timeout(idle, reader.recv()).await {
            Ok(Some(event)) => {
                let end = matches!(event, MediaEvent::End);
                if let Err(e) = segmenter.push(event, now_unix_ms()) {
                    tracing::warn!(stream = %reader.stream(), error = %e, "segmenter rejected an event");
                }
                drain(
                    &mut segmenter,
                    &stream,
                    &mut observer,
                    &mut overruns,
                    reader.stream(),
                );
                if end {
                    stream.set_ended();
                    return;
                }
            }
            Ok(None) => {
                if let Err(e) = segmenter.push(MediaEvent::End, now_unix_ms()) {
                    tracing::warn!(stream = %reader.stream(), error = %e, "closing the segmenter");
                }
                drain(
                    &mut segmenter,
                    &stream,
                    &mut observer,
                    &mut overruns,
                    reader.stream(),
                );
                stream.set_ended();
                return;
            }
            Err(_idle) => {
                if let Err(e) = segmenter.flush(now_unix_ms()) {
                    tracing::warn!(stream = %reader.stream(), error = %e, "flushing an idle stream");
                }
                drain(
                    &mut segmenter,
                    &stream,
                    &mut observer,
                    &mut overruns,
                    reader.stream(),
                );
            }
        }
    }
}

/// Settings of [`package_hub`].
#[derive(Clone)]
pub struct PackagerConfig {
    /// How segments are cut.
    pub segmenter: SegmenterConfig,
    /// The live window of each stream.
    pub live: crate::live::LiveConfig,
    /// How long an ended stream's playlist stays served (players fetch the
    /// `EXT-X-ENDLIST` and the last segments) before it is forgotten.
    pub linger: Duration,
    /// Makes an observer per stream (the DVR recorder); `None` by default.
    pub observer: Option<Arc<dyn ObserverFactory>>,
}

impl std::fmt::Debug for PackagerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackagerConfig")
            .field("segmenter", &self.segmenter)
            .field("live", &self.live)
            .field("linger", &self.linger)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl PackagerConfig {
    /// Sets the LL-HLS part target of the segmenter and the live window
    /// together (`None`: classic HLS, one part per segment).
    pub fn with_part_target(mut self, part_target_ms: Option<u32>) -> Self {
        self.segmenter.part_target_ms = part_target_ms;
        self.live.part_target_ms = part_target_ms;
        self
    }
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            segmenter: SegmenterConfig::default(),
            live: crate::live::LiveConfig::default(),
            linger: Duration::from_secs(60),
            observer: None,
        }
    }
}

/// Packages every stream of `hub` (present and future) into `registry`: one
/// task per stream runs [`run_packager`]; an ended stream stays in the
/// registry for [`PackagerConfig::linger`] unless a new stream of the same
/// name replaced it. Returns when the hub is dropped.
pub async fn package_hub(
    hub: ugc_core::Hub,
    registry: Arc<crate::live::LiveRegistry>,
    config: PackagerConfig,
) {
    // Every stream: those that exist, then new ones.
    let mut watch = hub.watch();
    loop {
        let Some(name) = watch.next().await else {
            return;
        };
        let Some(reader) = hub.subscribe_existing(&name) else {
            continue;
        };
        // Each life of a stream name gets a session larger than the last
        // one's, so its media URIs (segment numbers restart at 0) never
        // name bytes of an earlier broadcast that a cache may keep: its start
        // in unix ms, also across restarts of this process.
        let session = u64::try_from(now_unix_ms()).unwrap_or(0).max(
            registry
                .get(&name)
                .map_or(0, |old| old.session().saturating_add(1)),
        );
        let live = Arc::new(LiveStream::with_session(config.live.clone(), session));
        registry.insert(&name, live.clone());
        tracing::info!(stream = %name, "packaging");
        let registry = registry.clone();
        let config = config.clone();
        let observer = config.observer.as_ref().and_then(|f| f.observe(&name));
        tokio::spawn(async move {
            run_packager_observed(reader, live.clone(), config.segmenter, observer).await;
            tracing::info!(stream = %name, "stream ended");
            tokio::time::sleep(config.linger).await;
            registry.remove_if_same(&name, &live);
        });
    }
}
