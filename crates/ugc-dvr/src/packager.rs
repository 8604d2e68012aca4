//! The packager: [`HlsPackager`], a [`Sink`] that segments a stream into a
//! [`LiveStream`], and the thin tokio loops that feed it from the Hub
//! ([`run_packager`] for one stream, [`package_hub`] for every stream). The
//! only place in this crate that reads the wall clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ugc_core::{HubReader, MediaEvent, Sink, StreamPath, Transform};

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
    /// One output, before the live window applies it. `live`: whether
    /// the live window gets it too; `false` for what an aligned segmenter
    /// holds back (see [`crate::Segmenter::poll_all`]), which a recording
    /// keeps as provisional.
    fn on_output(&mut self, output: &SegmenterOutput, live: bool);
}

/// Makes a [`SegmentObserver`] for each Hub stream [`package_hub`] packages.
pub trait ObserverFactory: Send + Sync {
    /// An observer for the Hub stream `stream` (e.g. `live/foo`), or `None`
    /// to observe nothing.
    fn observe(&self, stream: &StreamPath) -> Option<Box<dyn SegmentObserver>>;

    /// [`Self::observe`] for a stream whose media is named after
    /// `session` alike at every origin (aligned segments: the timeline
    /// id), so that a recorder can name its files after it too. By default
    /// the session is not used.
    fn observe_session(
        &self,
        stream: &StreamPath,
        session: u64,
    ) -> Option<Box<dyn SegmentObserver>> {
        let _ = session;
        self.observe(stream)
    }
}

/// Makes a [`Transform`] each Hub stream [`package_hub`] packages goes
/// through first (an audio transcode: Opus -> AAC for HLS players).
pub trait TransformFactory: Send + Sync {
    /// A transform for the Hub stream `stream`, or `None` for none.
    fn transform(&self, stream: &StreamPath) -> Option<Box<dyn Transform>>;
}

/// The HLS / LL-HLS packager of one stream as a [`Sink`]: a [`Segmenter`]
/// whose outputs go to a [`LiveStream`] (and to an optional
/// [`SegmentObserver`], e.g. the DVR recorder), dated by the wall clock.
/// [`Sink::finish`] (and [`MediaEvent::End`]) ends the live stream
/// (`#EXT-X-ENDLIST`).
///
/// ```
/// use std::sync::Arc;
/// use ugc_core::{Hub, HubConfig, Passthrough, StreamPath, pump};
/// use ugc_dvr::{HlsPackager, LiveConfig, LiveStream, SegmenterConfig};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let hub = Hub::new(HubConfig::default());
/// let path = StreamPath::live("demo")?;
/// let live = Arc::new(LiveStream::new(LiveConfig::default()));
/// let reader = hub.subscribe(&path);
/// hub.end(&path); // (a publisher would feed it first)
/// let packager = HlsPackager::new(path, live.clone(), SegmenterConfig::default());
/// pump(reader, Passthrough, packager).await?;
/// assert!(live.is_ended());
/// # Ok::<(), ugc_core::Error>(())
/// # }).unwrap();
/// ```
pub struct HlsPackager {
    name: StreamPath,
    segmenter: Segmenter,
    stream: Arc<LiveStream>,
    observer: Option<Box<dyn SegmentObserver>>,
    now_unix_ms: Box<dyn Fn() -> i64 + Send>,
    overruns: u64,
    /// Of them, started by a discontinuity in mid-cell (aligned).
    mid_cell_overruns: u64,
}

impl std::fmt::Debug for HlsPackager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlsPackager")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl HlsPackager {
    /// Packages stream `name` into `stream` with `config`.
    pub fn new(name: StreamPath, stream: Arc<LiveStream>, config: SegmenterConfig) -> Self {
        HlsPackager {
            name,
            segmenter: Segmenter::new(config),
            stream,
            observer: None,
            now_unix_ms: Box::new(now_unix_ms),
            overruns: 0,
            mid_cell_overruns: 0,
        }
    }

    /// Shows every output to `observer` too.
    pub fn with_observer(mut self, observer: Option<Box<dyn SegmentObserver>>) -> Self {
        self.observer = observer;
        self
    }

    /// Dates segments by `now_unix_ms` (unix milliseconds) instead of the
    /// wall clock, for tests.
    pub fn with_clock(mut self, now_unix_ms: impl Fn() -> i64 + Send + 'static) -> Self {
        self.now_unix_ms = Box::new(now_unix_ms);
        self
    }

    /// The live stream it fills.
    pub fn live(&self) -> &Arc<LiveStream> {
        &self.stream
    }

    /// The source went idle: publishes the open segment (players get what
    /// was sent; the next segment starts at the next keyframe).
    pub fn flush_idle(&mut self) {
        if let Err(e) = self.segmenter.flush((self.now_unix_ms)()) {
            tracing::warn!(stream = %self.name, error = %e, "flushing an idle stream");
        }
        self.drain();
    }

    /// Segments one event; the live stream ends with [`MediaEvent::End`].
    fn push(&mut self, event: MediaEvent) {
        if self.segmenter.is_ended() {
            return;
        }
        let end = matches!(event, MediaEvent::End);
        if let Err(e) = self.segmenter.push(event, (self.now_unix_ms)()) {
            tracing::warn!(stream = %self.name, error = %e, "segmenter rejected an event");
        }
        self.drain();
        if end {
            self.stream.set_ended();
        }
    }

    fn drain(&mut self) {
        let mut outputs = Vec::new();
        while let Some((out, live)) = self.segmenter.poll_all() {
            if let SegmenterOutput::Segment(seg) = &out
                && self.segmenter.stats().target_overruns > self.overruns
            {
                self.overruns = self.segmenter.stats().target_overruns;
                let mid_cell = self.segmenter.stats().mid_cell_overruns;
                let cause = if mid_cell > self.mid_cell_overruns {
                    self.mid_cell_overruns = mid_cell;
                    // Aligned segments: media that resumed in mid-cell
                    // (see `HubConfig::discontinuity_grid`).
                    "it started in the middle of a segment's time, after a source switch or \
                     an idle source (sources with other tracks land on the segment grid with \
                     the Hub's discontinuity_grid: UGC_SEGMENT_MS on every node)"
                } else {
                    "the encoder's keyframe interval grew past it (set it at or below the \
                     segment duration, or raise target_duration_s)"
                };
                tracing::warn!(
                    stream = %self.name,
                    msn = seg.msn,
                    duration_ms = seg.duration_ms,
                    target_s = seg.target_duration_s,
                    overruns = self.overruns,
                    "segment longer than the stream's target duration: {cause}"
                );
            }
            // The recorder keeps what aligned segments hold back from the
            // live window (a stream's first seconds).
            if let Some(o) = self.observer.as_mut() {
                o.on_output(&out, live);
            }
            if live {
                outputs.push(out);
            }
        }
        // One update per input: a part and the preload hint after it together.
        self.stream.apply_all(outputs, (self.now_unix_ms)());
    }
}

impl Sink for HlsPackager {
    async fn send(&mut self, event: MediaEvent) -> ugc_core::Result<()> {
        self.push(event);
        Ok(())
    }

    async fn finish(&mut self) -> ugc_core::Result<()> {
        self.push(MediaEvent::End);
        self.stream.set_ended();
        Ok(())
    }
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
    reader: HubReader,
    stream: Arc<LiveStream>,
    config: SegmenterConfig,
    observer: Option<Box<dyn SegmentObserver>>,
    now_unix_ms: impl Fn() -> i64 + Send + 'static,
) {
    run_packager_transformed(reader, stream, config, observer, None, now_unix_ms).await;
}

/// [`run_packager_with_clock`] with every event going through `transform`
/// first (whose failure passes the event on as it was).
pub async fn run_packager_transformed(
    mut reader: HubReader,
    stream: Arc<LiveStream>,
    config: SegmenterConfig,
    observer: Option<Box<dyn SegmentObserver>>,
    mut transform: Option<Box<dyn Transform>>,
    now_unix_ms: impl Fn() -> i64 + Send + 'static,
) {
    let idle = Duration::from_millis(u64::from(config.target_duration_ms.max(1)) * 2);
    let mut packager = HlsPackager::new(reader.stream().clone(), stream, config)
        .with_observer(observer)
        .with_clock(now_unix_ms);
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(idle, reader.recv()).await {
            Ok(Some(event)) => {
                let end = matches!(event, MediaEvent::End);
                match transform.as_mut() {
                    Some(t) => {
                        let kept = (!matches!(event, MediaEvent::Frame(_))).then(|| event.clone());
                        if t.push(event, &mut out).is_err() {
                            // Nothing of this event came out: pass it on.
                            transform = None;
                            out.extend(kept);
                        }
                        for e in out.drain(..) {
                            packager.push(e);
                        }
                    }
                    None => packager.push(event),
                }
                if end {
                    return;
                }
            }
            // The reader is done without an End: end the live stream too.
            Ok(None) => {
                packager.push(MediaEvent::End);
                packager.stream.set_ended();
                return;
            }
            Err(_idle) => packager.flush_idle(),
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
    /// Makes a transform per stream, before the segmenter; `None` by
    /// default.
    pub transform: Option<Arc<dyn TransformFactory>>,
}

impl std::fmt::Debug for PackagerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackagerConfig")
            .field("segmenter", &self.segmenter)
            .field("live", &self.live)
            .field("linger", &self.linger)
            .field("observer", &self.observer.is_some())
            .field("transform", &self.transform.is_some())
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

/// The HLS timing a server exposes as settings, in the units its users
/// write (`segment_ms = 2000`), turned into a checked [`PackagerConfig`] by
/// [`packager`](Self::packager). The defaults are the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HlsTiming {
    /// Target segment duration in ms (segments are cut at keyframes);
    /// 200..=30000, default 2000.
    pub segment_ms: u32,
    /// `#EXT-X-TARGETDURATION` in seconds, fixed for a stream's life: 0
    /// (default) derives it from the segments
    /// ([`SegmenterConfig::target_duration_s`]), else at least the
    /// segment duration and at most 60.
    pub target_duration_s: u32,
    /// Segments in the live playlist window; 2..=100, default 6.
    pub window_segments: usize,
    /// LL-HLS part target in ms: 0 is classic HLS (one part per
    /// segment), else 50..=`segment_ms`; default 200.
    pub part_ms: u32,
    /// Aligned segments ([`SegmenterConfig::aligned`]), named after the
    /// stream's timeline ([`ugc_core::Hub::timeline`]): origins carrying
    /// one stream serve the same media under the same URIs. Default off.
    pub aligned: bool,
}

impl Default for HlsTiming {
    fn default() -> Self {
        HlsTiming {
            segment_ms: 2000,
            target_duration_s: 0,
            window_segments: 6,
            part_ms: 200,
            aligned: false,
        }
    }
}

impl HlsTiming {
    /// The default [`PackagerConfig`] with this timing, or
    /// [`Error::Setting`](crate::Error::Setting) naming the value out of
    /// its range.
    pub fn packager(&self) -> Result<PackagerConfig, crate::Error> {
        let HlsTiming {
            segment_ms,
            target_duration_s: target_s,
            window_segments,
            part_ms,
            aligned: _,
        } = *self;
        let check = |ok: bool, message: String| match ok {
            true => Ok(()),
            false => Err(crate::Error::Setting(message)),
        };
        check(
            (200..=30_000).contains(&segment_ms),
            format!("segment_ms must be within 200..=30000, got {segment_ms}"),
        )?;
        check(
            target_s == 0 || u64::from(target_s) * 1000 >= u64::from(segment_ms),
            format!(
                "target_duration_s must be 0 (automatic) or at least segment_ms, got {target_s}"
            ),
        )?;
        check(
            target_s <= 60,
            "target_duration_s must be at most 60".into(),
        )?;
        check(
            (2..=100).contains(&window_segments),
            "window_segments must be within 2..=100".into(),
        )?;
        check(
            part_ms == 0 || (50..=segment_ms).contains(&part_ms),
            format!("part_ms must be 0 (off) or within 50..=segment_ms, got {part_ms}"),
        )?;
        let mut c = PackagerConfig::default();
        c.segmenter.target_duration_ms = segment_ms;
        c.segmenter.aligned = self.aligned;
        c.segmenter.target_duration_s = (target_s > 0).then_some(target_s);
        c.live.target_duration_ms = segment_ms;
        c.live.window_segments = window_segments;
        Ok(c.with_part_target((part_ms > 0).then_some(part_ms)))
    }
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            segmenter: SegmenterConfig::default(),
            live: crate::live::LiveConfig::default(),
            linger: Duration::from_secs(60),
            observer: None,
            transform: None,
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
        // in unix ms, also across restarts of this process. Aligned
        // segments take the id of the stream's timeline instead (the
        // first node's unix ms), which every origin carrying this life of
        // the stream knows alike.
        let start = if config.segmenter.aligned {
            hub.timeline(&name)
        } else {
            None
        };
        let session = start
            .unwrap_or_else(|| u64::try_from(now_unix_ms()).unwrap_or(0))
            .max(
                registry
                    .get(&name)
                    .map_or(0, |old| old.session().saturating_add(1)),
            );
        // Aligned segments are dated by the timeline too: its id is the
        // unix ms of its media time 0 (`HubConfig::timeline_on_clock` at
        // the node that made it), so every origin dates them alike.
        let mut segmenter = config.segmenter.clone();
        if segmenter.aligned {
            segmenter.date_anchor_ms = start.and_then(|t| i64::try_from(t).ok());
        }
        let live = Arc::new(LiveStream::with_session(config.live.clone(), session));
        registry.insert(&name, live.clone());
        tracing::info!(stream = %name, "packaging");
        let registry = registry.clone();
        let config = config.clone();
        let observer = config
            .observer
            .as_ref()
            .and_then(|f| match segmenter.aligned {
                true => f.observe_session(&name, session),
                false => f.observe(&name),
            });
        let transform = config.transform.as_ref().and_then(|f| f.transform(&name));
        tokio::spawn(async move {
            run_packager_transformed(
                reader,
                live.clone(),
                segmenter,
                observer,
                transform,
                now_unix_ms,
            )
            .await;
            tracing::info!(stream = %name, "stream ended");
            tokio::time::sleep(config.linger).await;
            registry.remove_if_same(&name, &live);
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hls_timing_defaults_are_the_servers() {
        let c = HlsTiming::default().packager().unwrap();
        let s = &c.segmenter;
        assert_eq!(
            (s.target_duration_ms, s.target_duration_s, s.part_target_ms),
            (2000, None, Some(200))
        );
        assert_eq!(
            (c.live.target_duration_ms, c.live.window_segments),
            (2000, 6)
        );
        assert_eq!(c.live.part_target_ms, Some(200));
    }

    #[test]
    fn hls_timing_zero_turns_parts_and_a_fixed_target_off() {
        let t = HlsTiming {
            segment_ms: 4000,
            target_duration_s: 8,
            window_segments: 3,
            part_ms: 0,
            aligned: true,
        };
        let c = t.packager().unwrap();
        assert!(c.segmenter.aligned);
        assert_eq!(
            (c.segmenter.target_duration_s, c.segmenter.part_target_ms),
            (Some(8), None)
        );
        assert_eq!((c.live.window_segments, c.live.part_target_ms), (3, None));
    }

    #[test]
    fn hls_timing_out_of_range_names_the_setting() {
        let d = HlsTiming::default();
        for (t, says) in [
            (
                HlsTiming {
                    segment_ms: 100,
                    ..d
                },
                "segment_ms must be within 200..=30000, got 100",
            ),
            (
                HlsTiming {
                    target_duration_s: 1,
                    ..d
                },
                "target_duration_s must be 0 (automatic) or at least segment_ms, got 1",
            ),
            (
                HlsTiming {
                    segment_ms: 30_000,
                    target_duration_s: 61,
                    ..d
                },
                "target_duration_s must be at most 60",
            ),
            (
                HlsTiming {
                    window_segments: 1,
                    ..d
                },
                "window_segments must be within 2..=100",
            ),
            (
                HlsTiming { part_ms: 20, ..d },
                "part_ms must be 0 (off) or within 50..=segment_ms, got 20",
            ),
            (
                HlsTiming { part_ms: 2001, ..d },
                "part_ms must be 0 (off) or within 50..=segment_ms, got 2001",
            ),
        ] {
            assert_eq!(t.packager().unwrap_err().to_string(), says);
        }
    }
}
