//! Counters of running ladders, and the registry a server keeps of them
//! for its stats route and `/metrics` ([`LadderRegistry`]). Everything here
//! builds without the `ffmpeg` feature (a server without it has no ladder
//! to list); the ladder itself ([`crate::transcode`]) counts into them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ugc_core::StreamPath;
use ugc_core::metrics::{Exposition, Family};

/// Counters of a ladder (shared with its threads).
#[derive(Debug, Default)]
pub struct LadderStats {
    /// Frames accepted by `push`.
    pub frames_in: AtomicU64,
    /// Input frames dropped because the decode thread was behind (video up
    /// to the next keyframe).
    pub input_dropped: AtomicU64,
    /// Decoded pictures dropped for all rungs because a rung was behind.
    pub pictures_dropped: AtomicU64,
    /// Packets the decoders rejected (corrupt input).
    pub decode_errors: AtomicU64,
    /// Pictures sent to the rungs.
    pub pictures_encoded: AtomicU64,
    /// Of those, the old source's last picture repeated over the hole
    /// before a new source's first (its landing on the segment grid).
    pub pictures_repeated: AtomicU64,
    /// Output frames (all rungs, audio and video).
    pub frames_out: AtomicU64,
    /// Media time the decoded source pictures cover, in microseconds (the
    /// advance of their timestamps; jumps over 10 s are not counted). Its
    /// rate is the ladder's speed: 1 while it keeps up with a live source.
    pub media_us: AtomicU64,
    /// Wall time the decode thread spent working (decoding, the logo,
    /// handing pictures out; not waiting for input or for a rung), in
    /// nanoseconds.
    pub decode_busy_ns: AtomicU64,
    /// Wall time each rung's thread spent scaling and encoding, by
    /// rendition index, in nanoseconds (shared with the rung threads).
    rung_busy_ns: Mutex<BTreeMap<usize, Arc<AtomicU64>>>,
}

/// A snapshot of [`LadderStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LadderStatsSnapshot {
    /// See [`LadderStats::frames_in`].
    pub frames_in: u64,
    /// See [`LadderStats::input_dropped`].
    pub input_dropped: u64,
    /// See [`LadderStats::pictures_dropped`].
    pub pictures_dropped: u64,
    /// See [`LadderStats::decode_errors`].
    pub decode_errors: u64,
    /// See [`LadderStats::pictures_encoded`].
    pub pictures_encoded: u64,
    /// See [`LadderStats::pictures_repeated`].
    pub pictures_repeated: u64,
    /// See [`LadderStats::frames_out`].
    pub frames_out: u64,
    /// See [`LadderStats::media_us`].
    pub media_us: u64,
    /// See [`LadderStats::decode_busy_ns`].
    pub decode_busy_ns: u64,
}

impl LadderStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> LadderStatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LadderStatsSnapshot {
            frames_in: l(&self.frames_in),
            input_dropped: l(&self.input_dropped),
            pictures_dropped: l(&self.pictures_dropped),
            decode_errors: l(&self.decode_errors),
            pictures_encoded: l(&self.pictures_encoded),
            pictures_repeated: l(&self.pictures_repeated),
            frames_out: l(&self.frames_out),
            media_us: l(&self.media_us),
            decode_busy_ns: l(&self.decode_busy_ns),
        }
    }

    /// The busy-time counter of rendition `index`'s rung (the same one
    /// across ladder restarts).
    pub fn rung_busy(&self, index: usize) -> Arc<AtomicU64> {
        self.rung_busy_ns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(index)
            .or_default()
            .clone()
    }

    /// Busy nanoseconds of every rung that ran, by rendition index.
    pub fn rungs_busy(&self) -> BTreeMap<usize, u64> {
        self.rung_busy_ns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(i, n)| (*i, n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// How a ladder run went (or goes: [`LadderRunStats::report`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LadderReport {
    /// Ladders built after the first one failed.
    pub restarts: u32,
    /// Counters summed over every ladder instance. Drops are for all rungs
    /// alike (IDRs stay aligned), so they are not counted per rendition.
    pub stats: LadderStatsSnapshot,
    /// What each rendition put out, in config order (a rendition the
    /// source is too small for never appears).
    pub renditions: Vec<RenditionReport>,
}

/// Output of one rendition of a ladder run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenditionReport {
    /// Its name ([`LadderConfig::rendition_name`](super::LadderConfig::rendition_name)).
    pub name: String,
    /// Video size of its latest track set (0 before one, or without video).
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// Video frames published to its Hub stream.
    pub video_frames: u64,
    /// Audio frames published to its Hub stream.
    pub audio_frames: u64,
    /// Wall time its rung's thread spent scaling and encoding, in
    /// nanoseconds ([`LadderStats::rung_busy`]).
    pub busy_ns: u64,
}

/// Live counters of a ladder run (`transcode::run_ladder_with_stats`, feature
/// `ffmpeg`), for a caller that shows them while it runs (a stats
/// endpoint). They add up over ladder restarts.
#[derive(Debug, Default)]
pub struct LadderRunStats {
    pub(crate) ladder: Arc<LadderStats>,
    pub(crate) restarts: AtomicU32,
    /// By rendition index.
    pub(crate) renditions: Mutex<BTreeMap<usize, RenditionReport>>,
}

impl LadderRunStats {
    /// Reads every counter.
    pub fn report(&self) -> LadderReport {
        let busy = self.ladder.rungs_busy();
        LadderReport {
            restarts: self.restarts.load(Ordering::Relaxed),
            stats: self.ladder.snapshot(),
            renditions: self
                .lock()
                .iter()
                .map(|(i, r)| RenditionReport {
                    busy_ns: busy.get(i).copied().unwrap_or(0),
                    ..r.clone()
                })
                .collect(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, BTreeMap<usize, RenditionReport>> {
        self.renditions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running ladder as the registry lists it.
#[derive(Debug)]
struct Registered {
    profile: String,
    since: Instant,
    stats: Arc<LadderRunStats>,
}

/// One running ladder's counters at some instant ([`LadderRegistry::rows`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderRow {
    /// The source stream.
    pub stream: StreamPath,
    /// The profile it runs.
    pub profile: String,
    /// Since it started.
    pub running: Duration,
    /// Its counters.
    pub report: LadderReport,
}

/// The ladders running now, by source stream, for a stats route and
/// `/metrics`: a supervisor adds a stream's counters when its ladder starts
/// ([`register`](Self::register)) and removes them when it ends
/// ([`unregister`](Self::unregister)). Cheap to clone; clones share.
#[derive(Debug, Clone, Default)]
pub struct LadderRegistry {
    running: Arc<Mutex<BTreeMap<StreamPath, Registered>>>,
}

impl LadderRegistry {
    /// Lists the ladder of `stream` (replacing an older entry), running
    /// `profile` since `since`; returns the counters to run it with.
    pub fn register(
        &self,
        stream: &StreamPath,
        profile: &str,
        since: Instant,
    ) -> Arc<LadderRunStats> {
        let stats = Arc::new(LadderRunStats::default());
        self.lock().insert(
            stream.clone(),
            Registered {
                profile: profile.to_owned(),
                since,
                stats: stats.clone(),
            },
        );
        stats
    }

    /// Removes the ladder of `stream`, unless a newer one (other counters
    /// than `stats`) registered since.
    pub fn unregister(&self, stream: &StreamPath, stats: &Arc<LadderRunStats>) {
        let mut running = self.lock();
        if running
            .get(stream)
            .is_some_and(|r| Arc::ptr_eq(&r.stats, stats))
        {
            running.remove(stream);
        }
    }

    /// Every running ladder's counters at `now`, ordered by stream.
    pub fn rows(&self, now: Instant) -> Vec<LadderRow> {
        self.lock()
            .iter()
            .map(|(stream, r)| LadderRow {
                stream: stream.clone(),
                profile: r.profile.clone(),
                running: now.saturating_duration_since(r.since),
                report: r.stats.report(),
            })
            .collect()
    }

    /// The ladders' families for `/metrics` at `now`: `ugc_transcode_*` by
    /// `stream` (its path, `live/<name>`, as every other family labels
    /// it), and the renditions' frames out by `stream`, `rendition` and
    /// `kind`.
    pub fn write_metrics(&self, m: &mut Exposition, now: Instant) {
        let ladders = self.rows(now);
        let families: &[Family<LadderRow>] = &[
            Family::gauge(
                "ugc_transcode_running_seconds",
                "Seconds since the stream's ladder started.",
                |l| l.running.as_secs_f64(),
            ),
            Family::counter(
                "ugc_transcode_restarts_total",
                "Ladders built after the first one failed.",
                |l| f64::from(l.report.restarts),
            ),
            Family::counter(
                "ugc_transcode_frames_in_total",
                "Source frames taken by the ladder.",
                |l| l.report.stats.frames_in as f64,
            ),
            Family::counter(
                "ugc_transcode_frames_out_total",
                "Frames put out, all renditions, audio and video.",
                |l| l.report.stats.frames_out as f64,
            ),
            Family::counter(
                "ugc_transcode_pictures_encoded_total",
                "Decoded pictures sent to the renditions.",
                |l| l.report.stats.pictures_encoded as f64,
            ),
            Family::counter(
                "ugc_transcode_pictures_repeated_total",
                "Of those, a source's last picture repeated over the hole before the next source's first.",
                |l| l.report.stats.pictures_repeated as f64,
            ),
            Family::counter(
                "ugc_transcode_input_dropped_total",
                "Source frames dropped because decoding was behind.",
                |l| l.report.stats.input_dropped as f64,
            ),
            Family::counter(
                "ugc_transcode_pictures_dropped_total",
                "Pictures dropped for every rendition because one was behind.",
                |l| l.report.stats.pictures_dropped as f64,
            ),
            Family::counter(
                "ugc_transcode_decode_errors_total",
                "Source packets the decoders rejected.",
                |l| l.report.stats.decode_errors as f64,
            ),
            Family::counter(
                "ugc_transcode_media_seconds_total",
                "Media time of the source pictures decoded; its rate is the ladder's speed (1 = real time).",
                |l| l.report.stats.media_us as f64 / 1e6,
            ),
        ];
        m.families(families, &ladders, |l| {
            vec![("stream", l.stream.to_string())]
        });
        // Busy time per stage: the decode thread and each rendition's
        // rung. rate(media) / rate(busy) is how many times faster than real
        // time a stage works; the slowest stage's is the ladder's realtime
        // factor (below 1 it cannot keep up and drops pictures).
        type Busy<'a> = (&'a str, &'a str, u64);
        let busy: Vec<Busy> = ladders
            .iter()
            .flat_map(|l| {
                std::iter::once((l.stream.as_str(), "decode", l.report.stats.decode_busy_ns)).chain(
                    l.report
                        .renditions
                        .iter()
                        .map(|r| (l.stream.as_str(), r.name.as_str(), r.busy_ns)),
                )
            })
            .collect();
        m.families(
            &[Family::counter(
                "ugc_transcode_busy_seconds_total",
                "Wall time a ladder stage's thread spent working: stage \"decode\" or a rendition's rung (scale and encode).",
                |b: &Busy| b.2 as f64 / 1e9,
            )],
            &busy,
            |&(stream, stage, _)| vec![("stream", stream.to_string()), ("stage", stage.to_string())],
        );
        // One row per rendition and media kind.
        type Output<'a> = (&'a str, &'a str, &'static str, u64);
        let outputs: Vec<Output> = ladders
            .iter()
            .flat_map(|l| {
                l.report.renditions.iter().flat_map(|r| {
                    [("video", r.video_frames), ("audio", r.audio_frames)]
                        .map(|(kind, n)| (l.stream.as_str(), r.name.as_str(), kind, n))
                })
            })
            .collect();
        m.families(
            &[Family::counter(
                "ugc_transcode_rendition_frames_out_total",
                "Frames a rendition published, by media kind.",
                |o: &Output| o.3 as f64,
            )],
            &outputs,
            |&(stream, rendition, kind, _)| {
                vec![
                    ("stream", stream.to_string()),
                    ("rendition", rendition.to_string()),
                    ("kind", kind.to_string()),
                ]
            },
        );
    }

    /// One JSON object per running ladder at `now`, as
    /// [`json_schema`](Self::json_schema) describes: stream (its name,
    /// without the app), profile, seconds running, restarts, the ladder's
    /// counters (drops are for all rungs alike, so they are per ladder) and
    /// per rendition its size, frames out and busy time (milliseconds of
    /// its thread's work; with `media_ms`, how near real time it runs).
    #[cfg(feature = "json")]
    pub fn json(&self, now: Instant) -> Vec<serde_json::Value> {
        self.rows(now)
            .into_iter()
            .map(|l| {
                let renditions: Vec<serde_json::Value> = l
                    .report
                    .renditions
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "name": r.name,
                            "width": r.width,
                            "height": r.height,
                            "video_frames_out": r.video_frames,
                            "audio_frames_out": r.audio_frames,
                            "busy_ms": r.busy_ns / 1_000_000,
                        })
                    })
                    .collect();
                let s = l.report.stats;
                serde_json::json!({
                    "stream": l.stream.name(),
                    "profile": l.profile,
                    "running_s": l.running.as_secs(),
                    "restarts": l.report.restarts,
                    "frames_in": s.frames_in,
                    "frames_out": s.frames_out,
                    "pictures_encoded": s.pictures_encoded,
                    "pictures_repeated": s.pictures_repeated,
                    "input_dropped": s.input_dropped,
                    "pictures_dropped": s.pictures_dropped,
                    "decode_errors": s.decode_errors,
                    "media_ms": s.media_us / 1000,
                    "decode_busy_ms": s.decode_busy_ns / 1_000_000,
                    "renditions": renditions,
                })
            })
            .collect()
    }

    /// The JSON Schema (OpenAPI 3.0 flavour) of one [`json`](Self::json)
    /// object.
    #[cfg(feature = "json")]
    pub fn json_schema() -> serde_json::Value {
        use serde_json::json;
        let int = || json!({ "type": "integer" });
        let string = || json!({ "type": "string" });
        let rendition = json!({ "type": "object", "properties": {
            "name": string(), "width": int(), "height": int(),
            "video_frames_out": int(), "audio_frames_out": int(), "busy_ms": int()
        } });
        json!({ "type": "object", "properties": {
            "stream": string(), "profile": string(), "running_s": int(), "restarts": int(),
            "frames_in": int(), "frames_out": int(), "pictures_encoded": int(),
            "pictures_repeated": int(),
            "input_dropped": int(), "pictures_dropped": int(), "decode_errors": int(),
            "media_ms": int(), "decode_busy_ms": int(),
            "renditions": { "type": "array", "items": rendition }
        } })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<StreamPath, Registered>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ladder_is_listed_until_it_ends_unless_a_newer_one_replaced_it() {
        let registry = LadderRegistry::default();
        let a = StreamPath::live("a").unwrap();
        let t0 = Instant::now();
        let first = registry.register(&a, "default", t0);
        first.ladder.frames_in.fetch_add(3, Ordering::Relaxed);
        let rows = registry.rows(t0 + Duration::from_secs(5));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].running, Duration::from_secs(5));
        assert_eq!(rows[0].report.stats.frames_in, 3);
        let second = registry.register(&a, "mobile", t0);
        registry.unregister(&a, &first);
        assert_eq!(registry.rows(t0)[0].profile, "mobile");
        registry.unregister(&a, &second);
        assert!(registry.rows(t0).is_empty());
    }

    #[test]
    fn metrics_label_ladders_by_stream_name() {
        let registry = LadderRegistry::default();
        let t0 = Instant::now();
        let stats = registry.register(&StreamPath::live("a").unwrap(), "default", t0);
        stats.lock().insert(
            0,
            RenditionReport {
                name: "720p".into(),
                video_frames: 7,
                ..RenditionReport::default()
            },
        );
        let mut m = Exposition::new();
        registry.write_metrics(&mut m, t0);
        let text = m.finish();
        assert!(text.contains("ugc_transcode_frames_in_total{stream=\"live/a\"} 0\n"));
        assert!(text.contains(
            "ugc_transcode_rendition_frames_out_total{stream=\"live/a\",rendition=\"720p\",kind=\"video\"} 7\n"
        ));
    }
}
