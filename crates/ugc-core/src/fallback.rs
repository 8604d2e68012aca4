//! The fallback: a short clip looped as a stream's lowest source
//! ([`SourceRole::Fallback`]) while it has no publisher, so viewers see a
//! slate instead of a frozen picture, and the archive has no hole.
//!
//! * [`Clip`]: the media to loop (one track set; each track's frames, the
//!   video starting on a keyframe).
//! * [`Looper`]: a sans-IO cursor over a clip looped forever: given the
//!   time elapsed since it started, the frames now due, each track's
//!   timestamps continuing across loops (each track loops on its own
//!   period, so audio frames need not divide the video's length; or, for a
//!   clip with real sound, [`Clip::in_sync`], all on the longest one's, so
//!   lip sync holds loop after loop).
//! * [`run`] / [`supervise`]: the thin async side, publishing a looper into
//!   a [`Hub`] stream while the stream has neither a main nor a backup
//!   publisher, for at most a hold time.
//! * [`FallbackMedia`]: what a node loops (a slate, a file, a URL, nothing)
//!   and how a stream's own setting picks among them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::hub::{Hub, SourceRole};
use crate::media::{Frame, MediaEvent, MediaKind, TrackId, Tracks};
use crate::name::StreamPath;
use crate::time::{MediaTime, Timescale};

/// Media to loop: a track set and each track's frames in decode order.
#[derive(Debug, Clone)]
pub struct Clip {
    tracks: Tracks,
    /// Per track: frames with timestamps from 0, and the loop period.
    lanes: Vec<Lane>,
    /// Every track loops on this period (microseconds) instead of its own
    /// ([`Clip::in_sync`]).
    common_us: Option<i64>,
}

#[derive(Debug, Clone)]
struct Lane {
    scale: Timescale,
    frames: Vec<Frame>,
    /// Ticks of one loop of this track.
    period: i64,
}

impl Clip {
    /// A clip of `frames` (any order across tracks, decode order within
    /// one) for `tracks`. Each track's timestamps are moved to start at 0
    /// and it loops after its last frame plus that frame's duration (the
    /// step before it). Fails on a frame of an unknown track, a track
    /// without frames, or video not starting on a keyframe.
    pub fn new(tracks: Tracks, frames: Vec<Frame>) -> Result<Clip> {
        let mut by: HashMap<TrackId, Vec<Frame>> = HashMap::new();
        for f in frames {
            if tracks.get(f.track).is_none() {
                return Err(Error::UnknownTrack(f.track));
            }
            by.entry(f.track).or_default().push(f);
        }
        let mut lanes = Vec::new();
        for info in tracks.iter() {
            let Some(mut frames) = by.remove(&info.id) else {
                return Err(Error::InvalidMedia(format!(
                    "fallback clip: no frames for track {}",
                    info.id.0
                )));
            };
            if info.kind() == MediaKind::Video && !frames[0].keyframe {
                return Err(Error::InvalidMedia(
                    "fallback clip: video does not start on a keyframe".into(),
                ));
            }
            if frames.windows(2).any(|w| w[1].dts <= w[0].dts) {
                return Err(Error::InvalidMedia(format!(
                    "fallback clip: track {} does not go forward",
                    info.id.0
                )));
            }
            let first = frames[0].dts;
            for f in &mut frames {
                f.dts -= first;
                f.pts -= first;
            }
            let n = frames.len();
            let step = if n >= 2 {
                (frames[n - 1].dts - frames[n - 2].dts).max(1)
            } else {
                i64::from(info.timescale.get()).max(1)
            };
            let period = frames[n - 1].dts + step;
            lanes.push(Lane {
                scale: info.timescale,
                frames,
                period,
            });
        }
        Ok(Clip {
            tracks,
            lanes,
            common_us: None,
        })
    }

    /// This clip with every track looping on the longest track's period:
    /// a track that ends earlier holds its last frame longer (less than an
    /// audio frame, for a clip cut to its video's length), and the tracks
    /// stay as in sync as in the clip, loop after loop. Looped on their own
    /// periods, audio and video of unequal lengths drift apart by the
    /// difference every loop; that is fine for a silent slate, not for a
    /// clip with speech.
    pub fn in_sync(mut self) -> Clip {
        let us = i64::try_from(self.period().as_micros()).unwrap_or(i64::MAX);
        self.common_us = Some(us.max(1));
        self
    }

    /// Its track set.
    pub fn tracks(&self) -> &Tracks {
        &self.tracks
    }

    /// Bytes of media it holds (for a cache's budget).
    pub fn bytes(&self) -> usize {
        self.lanes
            .iter()
            .flat_map(|l| &l.frames)
            .map(|f| f.data.len())
            .sum()
    }

    /// The longest track's loop period.
    pub fn period(&self) -> Duration {
        let us = self
            .lanes
            .iter()
            .map(|l| MediaTime::new(l.period, l.scale).ticks_at(Timescale::MICROS))
            .max()
            .unwrap_or(0);
        Duration::from_micros(u64::try_from(us).unwrap_or(0))
    }
}

/// A clip looped forever, sans IO: see the [module](self) doc.
#[derive(Debug, Clone)]
pub struct Looper {
    clip: Arc<Clip>,
    /// Per lane: (loops done, next frame index).
    at: Vec<(i64, usize)>,
}

impl Looper {
    /// Starts `clip` at its beginning.
    pub fn new(clip: Arc<Clip>) -> Looper {
        let at = vec![(0, 0); clip.lanes.len()];
        Looper { clip, at }
    }

    /// The frames due by `elapsed` since the start (timestamps continuing
    /// loop after loop), in timestamp order across tracks.
    pub fn due(&mut self, elapsed: Duration) -> Vec<Frame> {
        let mut out = Vec::new();
        let us = i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX);
        for (lane, (loops, next)) in self.clip.lanes.iter().zip(self.at.iter_mut()) {
            let limit = MediaTime::new(us, Timescale::MICROS).ticks_at(lane.scale);
            loop {
                let f = &lane.frames[*next];
                // From microseconds each time: no rounding adds up.
                let base = match self.clip.common_us {
                    Some(us) => MediaTime::new(loops.saturating_mul(us), Timescale::MICROS)
                        .ticks_at(lane.scale),
                    None => loops.saturating_mul(lane.period),
                };
                let dts = f.dts.saturating_add(base);
                if dts > limit {
                    break;
                }
                let mut f = f.clone();
                f.dts = dts;
                f.pts = f.pts.saturating_add(base);
                out.push((MediaTime::new(dts, lane.scale), f));
                *next += 1;
                if *next == lane.frames.len() {
                    *next = 0;
                    *loops += 1;
                }
            }
        }
        out.sort_by_key(|(t, _)| *t);
        out.into_iter().map(|(_, f)| f).collect()
    }
}

/// Longest file name a stream's own fallback may name.
pub const MAX_FILE_NAME: usize = 128;

/// Whether `name` is a plain file name a stream may pick its fallback by
/// (`[A-Za-z0-9._-]`, 1 to [`MAX_FILE_NAME`] bytes, not starting with a
/// dot): never a path, so a creator names what the operator put in the
/// node's fallback directory and reaches no other file.
pub fn plain_file_name(name: &str) -> bool {
    (1..=MAX_FILE_NAME).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What a node loops into a stream left without a publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FallbackMedia {
    /// Nothing: the picture freezes (players stall) until the publisher
    /// is back or the stream ends.
    Off,
    /// "Stream will be back shortly" on black, with silence, in the
    /// stream's codecs and size.
    Slate,
    /// A video file, re-encoded once per stream shape.
    File(PathBuf),
    /// A video at an `http(s)://` URL (a stream's own setting).
    Url(String),
}

/// Why a stream's own fallback setting was not used (the node's is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnFallbackIgnored {
    /// It names no plain file name ([`plain_file_name`]): a path, a file
    /// edited by hand.
    NotAFileName,
    /// It names a file but the node has no fallback directory.
    NoDirectory,
}

impl std::fmt::Display for OwnFallbackIgnored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OwnFallbackIgnored::NotAFileName => "a stream's fallback is no file name",
            OwnFallbackIgnored::NoDirectory => {
                "a stream names a fallback file but the node has no fallback directory"
            }
        })
    }
}

impl FallbackMedia {
    /// A node's own setting: `slate`, `off` or the path of a video file,
    /// which must exist.
    pub fn node_setting(s: &str) -> std::result::Result<FallbackMedia, String> {
        match s {
            "slate" => Ok(FallbackMedia::Slate),
            "off" => Ok(FallbackMedia::Off),
            path if Path::new(path).is_file() => Ok(FallbackMedia::File(path.into())),
            path => Err(format!(
                "fallback must be \"slate\", \"off\" or a video file; {path} is none"
            )),
        }
    }

    /// The fallback of a stream whose own setting is `own` (the control
    /// plane's `fallback`): `None` is `self` (the node's); `slate`, `off`
    /// and `http(s)://` URLs are taken as they are; a file name is looked
    /// up in `dir`. A name that is no plain file name, or any name without
    /// a `dir`, is refused (the caller says so and uses `self`).
    pub fn for_stream(
        &self,
        own: Option<&str>,
        dir: Option<&Path>,
    ) -> std::result::Result<FallbackMedia, OwnFallbackIgnored> {
        Ok(match own {
            None => self.clone(),
            Some("slate") => FallbackMedia::Slate,
            Some("off") => FallbackMedia::Off,
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                FallbackMedia::Url(url.to_owned())
            }
            Some(name) if !plain_file_name(name) => return Err(OwnFallbackIgnored::NotAFileName),
            Some(name) => match dir {
                Some(dir) => FallbackMedia::File(dir.join(name)),
                None => return Err(OwnFallbackIgnored::NoDirectory),
            },
        })
    }
}

/// How the fallback of [`supervise`] behaves.
#[derive(Debug, Clone)]
pub struct FallbackConfig {
    /// How long a stream may run on its fallback before it ends (the
    /// publisher did not come back). Use the hub's publisher grace. A
    /// rendition's fallback ([`FallbackConfig::renditions`]) holds on
    /// while its source stream has a publisher.
    pub hold: Duration,
    /// How often a stream's sources are looked at (and frames sent).
    pub tick: Duration,
    /// How long a stream must be without a publisher before the fallback
    /// stands in: 0 on the node publishers connect to (a publisher that
    /// drops is gone); a node fed by another that fails over on its own
    /// (an origin behind main/standby transcoders) waits for that
    /// failover instead of flashing the fallback during it.
    pub after: Duration,
    /// Source streams get a fallback. On where publishers connect; off on
    /// an origin: a relay that ends there ends the same way when the
    /// stream ended upstream (after its own fallback) and when its node
    /// went down, so the origin cannot tell an outage to cover.
    pub sources: bool,
    /// Renditions of a source that is live get a fallback of their own.
    /// Off where a ladder runs (the source's fallback goes through it, so
    /// every rendition switches at the same point); on where renditions
    /// arrive made elsewhere (an origin, when every transcoder is down
    /// while the source still arrives). Their checks run on one clock, so
    /// the renditions of a source that stop together switch in the same
    /// tick.
    pub renditions: bool,
    /// Renditions' fallbacks start on a multiple of this on the timeline:
    /// the first at or after the latest end of the source's renditions
    /// (set it to the segment duration of aligned segments). The
    /// renditions of one transcoder stop a few frames apart, so their own
    /// ends can straddle a segment boundary: landing there, one
    /// rendition's slate would start a segment later than another's. On a
    /// common boundary every rendition's slate starts the same segment
    /// (the media before it has a hole of less than this). `None`: each
    /// lands where its own timeline ends. ugc-codec's slate also takes its
    /// keyframe interval from it (one at every segment's start; sources
    /// land by `HubConfig::discontinuity_grid`, not by this).
    pub align: Option<Duration>,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            hold: Duration::from_secs(20),
            tick: Duration::from_millis(20),
            after: Duration::ZERO,
            sources: true,
            renditions: false,
            align: None,
        }
    }
}

/// Where the fallback of rendition `name` lands with [`FallbackConfig::align`]
/// `period`: the first multiple of `period` at or after the latest
/// timeline end of its source's renditions (`None`: none has media).
pub fn aligned_landing(hub: &Hub, name: &StreamPath, period: Duration) -> Option<MediaTime> {
    let source = name.source();
    let latest = hub
        .stream_names()
        .into_iter()
        .filter(|p| p.rendition().is_some() && p.source() == source)
        .filter_map(|p| hub.timeline_end(&p))
        .map(|t| t.as_micros())
        .max()?;
    let period = i64::try_from(period.as_micros()).unwrap_or(i64::MAX).max(1);
    let at = latest
        .saturating_add(period - 1)
        .div_euclid(period)
        .saturating_mul(period);
    Some(MediaTime::new(at, Timescale::MICROS))
}

/// Whether stream `name` has media and neither a main nor a backup
/// publisher attached.
fn orphaned(hub: &Hub, name: &StreamPath) -> Option<bool> {
    let s = hub.stats(name)?;
    Some(
        s.tracks.is_some()
            && !s
                .sources
                .iter()
                .any(|r| matches!(r, SourceRole::Main | SourceRole::Backup)),
    )
}

/// Whether `name` is a rendition whose source stream has a live main or
/// backup publisher (an origin whose transcoders are all down still gets
/// the source from its publishing node).
fn source_live(hub: &Hub, name: &StreamPath) -> bool {
    if name.is_source() {
        return false;
    }
    let source = name.source();
    orphaned(hub, &source) == Some(false)
        && hub
            .stats(&source)
            .is_some_and(|s| s.publishing && s.active_source != SourceRole::Fallback)
}

/// Loops `clip` into stream `name` as its fallback source until a main or
/// backup publisher is live again (returns `Ok`), or for `hold` without
/// one (then ends the stream; a rendition holds on while its source is
/// live). Timestamps are the hub's business: it
/// continues the stream's timeline on the switch.
pub async fn run(
    hub: &Hub,
    name: &StreamPath,
    clip: Arc<Clip>,
    config: &FallbackConfig,
) -> Result<()> {
    run_from(hub, name, clip, config, None).await
}

/// [`run`], the clip's first frame landing on the stream's timeline at
/// `landing` or later ([`HubPublisher::land_not_before`]).
///
/// [`HubPublisher::land_not_before`]: crate::HubPublisher::land_not_before
pub async fn run_from(
    hub: &Hub,
    name: &StreamPath,
    clip: Arc<Clip>,
    config: &FallbackConfig,
    landing: Option<MediaTime>,
) -> Result<()> {
    let mut publisher = hub.publish_as(name, SourceRole::Fallback);
    if let Some(at) = landing {
        publisher.land_not_before(at);
    }
    publisher.push(MediaEvent::Tracks(clip.tracks().clone()))?;
    let mut looper = Looper::new(clip);
    let start = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(config.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = tokio::time::Instant::now();
        for f in looper.due(now - start) {
            publisher.push_at(MediaEvent::Frame(f), now.into_std())?;
        }
        let real_live = hub
            .stats(name)
            .is_some_and(|s| s.active_source != SourceRole::Fallback && s.publishing);
        if real_live && !orphaned(hub, name).unwrap_or(true) {
            // A publisher is back and live: stand down.
            return Ok(());
        }
        if now - start >= config.hold && !source_live(hub, name) {
            drop(publisher);
            hub.end_unless_published(name);
            return Ok(());
        }
    }
}

/// How often [`supervise`] looks at a stream's publishers.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Gives every source stream of `hub` its fallback: when a stream that had
/// media is left without a main or backup publisher for
/// [`FallbackConfig::after`] (a rendition: while its source is live),
/// `clip_for(name, tracks)` (the stream and its
/// track set; `None`: no fallback for it, e.g. one whose settings turn it
/// off) is looped into it by [`run`]. `clip_for` is also called, in a task
/// of its own, as soon as a stream's track set is known or changes, so
/// that a clip that takes long to make (an operator's file) is ready
/// before the outage: a `clip_for` that caches by track shape makes it
/// once. Sources and renditions ([`StreamPath::rendition`]) get one with
/// [`FallbackConfig::sources`] and [`FallbackConfig::renditions`]. Every stream is looked at every
/// [`CHECK_EVERY`] on one clock. Runs until the hub is dropped.
pub async fn supervise<F, Fut>(hub: Hub, clip_for: F, config: FallbackConfig)
where
    F: Fn(StreamPath, Tracks) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Arc<Clip>>> + Send + 'static,
{
    let clip_for = Arc::new(clip_for);
    let mut watch = hub.watch();
    let epoch = tokio::time::Instant::now();
    // With `align`: the landing of each source's renditions, by the tick
    // it was found in. The first rendition of a tick finds it (before any
    // fallback of that tick sends, which would move the ends), the others
    // of the same tick take it.
    let landings: Arc<std::sync::Mutex<HashMap<StreamPath, (tokio::time::Instant, MediaTime)>>> =
        Arc::default();
    while let Some(name) = watch.next().await {
        if !(if name.is_source() {
            config.sources
        } else {
            config.renditions
        }) {
            continue;
        }
        let (hub, clip_for, config) = (hub.clone(), Arc::clone(&clip_for), config.clone());
        let landings = Arc::clone(&landings);
        // The next tick of the one clock: streams that lose their
        // publishers together (the renditions of one transcoder) are seen
        // in the same tick, and their fallbacks start together.
        let ticks = epoch.elapsed().as_nanos() / CHECK_EVERY.as_nanos() + 1;
        let first = epoch + CHECK_EVERY * u32::try_from(ticks).unwrap_or(u32::MAX);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(first, CHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut prepared: Option<Tracks> = None;
            let mut orphaned_at: Option<tokio::time::Instant> = None;
            loop {
                let now = tick.tick().await;
                let orphan = match orphaned(&hub, &name) {
                    None => return, // the stream ended
                    Some(o) => o,
                };
                let Some(tracks) = hub.stats(&name).and_then(|s| s.tracks) else {
                    continue;
                };
                if !orphan {
                    orphaned_at = None;
                    // The publisher's tracks (not the fallback's own).
                    if prepared.as_ref() != Some(&tracks) {
                        prepared = Some(tracks.clone());
                        tokio::spawn(clip_for(name.clone(), tracks));
                    }
                    continue;
                }
                if now.duration_since(*orphaned_at.get_or_insert(now)) < config.after {
                    continue;
                }
                if !name.is_source() && !source_live(&hub, &name) {
                    // The source went too: the renditions follow it.
                    continue;
                }
                orphaned_at = None;
                let Some(clip) = clip_for(name.clone(), tracks).await else {
                    return;
                };
                // Renditions that stopped together (this tick) share one
                // landing point.
                let landing = config
                    .align
                    .filter(|_| !name.is_source())
                    .and_then(|period| {
                        let mut found = landings.lock().unwrap_or_else(|e| e.into_inner());
                        let source = name.source();
                        match found.get(&source) {
                            Some((tick, at)) if *tick == now => Some(*at),
                            _ => {
                                let at = aligned_landing(&hub, &name, period)?;
                                found.insert(source, (now, at));
                                Some(at)
                            }
                        }
                    });
                // Closed: the stream ended, its publishers were cut off
                // (key revoked) or another fallback took the role.
                if run_from(&hub, &name, clip, &config, landing).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::tests_support::av_tracks;
    use bytes::Bytes;

    fn frame(track: u32, dts: i64, key: bool) -> Frame {
        Frame {
            track: TrackId(track),
            dts,
            pts: dts,
            keyframe: key,
            data: Bytes::from_static(b"x"),
        }
    }

    /// 1 s of 25 fps video (ms clock) starting at 5000, and 1.1 s of audio
    /// in 23 ms frames.
    fn clip() -> Arc<Clip> {
        let mut frames: Vec<Frame> = (0..25).map(|i| frame(1, 5000 + i * 40, i == 0)).collect();
        frames.extend((0..48).map(|i| frame(2, 7000 + i * 23, true)));
        Arc::new(Clip::new(av_tracks(), frames).unwrap())
    }

    #[test]
    fn tracks_loop_on_their_own_periods_with_continuous_timestamps() {
        let mut l = Looper::new(clip());
        let mut got = Vec::new();
        for ms in (0..=10_000).step_by(10) {
            got.extend(l.due(Duration::from_millis(ms)));
        }
        for track in [1, 2] {
            let dts: Vec<i64> = got
                .iter()
                .filter(|f| f.track.0 == track)
                .map(|f| f.dts)
                .collect();
            let step = if track == 1 { 40 } else { 23 };
            assert_eq!(dts[0], 0);
            for w in dts.windows(2) {
                assert_eq!(w[1] - w[0], step, "track {track}");
            }
            // Real time: nothing is sent ahead of the clock.
            assert!(*dts.last().unwrap() <= 10_000);
            assert!(*dts.last().unwrap() > 10_000 - step);
        }
        // Video loops every 1 s, on its keyframe.
        let keys: Vec<i64> = got
            .iter()
            .filter(|f| f.track.0 == 1 && f.keyframe)
            .map(|f| f.dts)
            .collect();
        assert_eq!(keys, (0..=10).map(|s| s * 1000).collect::<Vec<_>>());
    }

    #[test]
    fn tracks_in_sync_loop_together_on_the_longest_period() {
        let clip = Arc::new(Clip::clone(&clip()).in_sync());
        let mut l = Looper::new(clip);
        let mut got = Vec::new();
        for ms in (0..=10_000).step_by(10) {
            got.extend(l.due(Duration::from_millis(ms)));
        }
        // Both tracks restart together every 1104 ms, whatever the loop.
        for track in [1, 2] {
            let starts: Vec<i64> = got
                .iter()
                .filter(|f| f.track.0 == track)
                .scan(None, |prev: &mut Option<i64>, f| {
                    let gap = prev.map(|p| f.dts - p);
                    *prev = Some(f.dts);
                    Some((f.dts, gap))
                })
                .filter(|(_, gap)| gap.is_some_and(|g| g > 40))
                .map(|(d, _)| d)
                .collect();
            let expect: Vec<i64> = (1..=9).map(|n| n * 1104).collect();
            if track == 1 {
                // The video's last frame lasts 40 + 104 ms.
                assert_eq!(starts, expect);
            } else {
                assert!(starts.is_empty(), "audio has no gap: {starts:?}");
            }
        }
        let keys: Vec<i64> = got
            .iter()
            .filter(|f| f.track.0 == 1 && f.keyframe)
            .map(|f| f.dts)
            .collect();
        assert_eq!(keys, (0..=9).map(|n| n * 1104).collect::<Vec<_>>());
    }

    #[test]
    fn a_clip_must_be_usable() {
        assert!(matches!(
            Clip::new(av_tracks(), vec![frame(1, 0, true)]),
            Err(Error::InvalidMedia(_))
        ));
        assert!(matches!(
            Clip::new(av_tracks(), vec![frame(1, 0, false), frame(2, 0, true)]),
            Err(Error::InvalidMedia(_))
        ));
        assert!(matches!(
            Clip::new(av_tracks(), vec![frame(9, 0, true)]),
            Err(Error::UnknownTrack(TrackId(9)))
        ));
        assert_eq!(clip().period(), Duration::from_millis(1104));
    }

    #[tokio::test(start_paused = true)]
    async fn the_fallback_stands_in_and_ends_the_stream_after_the_hold() {
        let hub = Hub::new(crate::HubConfig::default());
        let name = StreamPath::parse("live/a").unwrap();
        let mut r = hub.subscribe(&name);
        let mut main = hub.publish(&name);
        main.push(MediaEvent::Tracks(av_tracks())).unwrap();
        main.push(MediaEvent::Frame(frame(1, 0, true))).unwrap();
        drop(main);
        let config = FallbackConfig {
            hold: Duration::from_secs(5),
            ..FallbackConfig::default()
        };
        let c = clip();
        let sup = tokio::spawn(supervise(
            hub.clone(),
            move |_, _| {
                let c = Arc::clone(&c);
                async move { Some(c) }
            },
            config,
        ));
        let mut frames = 0;
        let mut ended = false;
        let mut on_fallback_at_3s = false;
        for step in 0..60 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if step == 30 {
                on_fallback_at_3s =
                    hub.stats(&name).map(|s| s.active_source) == Some(SourceRole::Fallback);
            }
            while let Some(e) = r.try_next() {
                match e {
                    MediaEvent::Frame(_) => frames += 1,
                    MediaEvent::End => ended = true,
                    _ => {}
                }
            }
        }
        assert!(on_fallback_at_3s);
        assert!(hub.stats(&name).is_none(), "ended after the hold");
        assert!(ended);
        // 5 s of 25 fps video and ~43 audio frames a second.
        assert!(frames > 5 * 60, "{frames} frames");
        sup.abort();
    }

    /// The clip is asked for as soon as a stream's tracks are known (so a
    /// slow one is ready before the outage), once per track set, and again
    /// at the outage.
    #[tokio::test(start_paused = true)]
    async fn the_clip_is_prepared_while_the_publisher_is_live() {
        let hub = Hub::new(crate::HubConfig::default());
        let name = StreamPath::parse("live/a").unwrap();
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let c = clip();
        let seen = Arc::clone(&calls);
        let sup = tokio::spawn(supervise(
            hub.clone(),
            move |stream: StreamPath, tracks: Tracks| {
                assert_eq!(stream.to_string(), "live/a");
                seen.lock().unwrap().push(tracks);
                let c = Arc::clone(&c);
                async move { Some(c) }
            },
            FallbackConfig::default(),
        ));
        let mut main = hub.publish(&name);
        main.push(MediaEvent::Tracks(av_tracks())).unwrap();
        main.push(MediaEvent::Frame(frame(1, 0, true))).unwrap();
        for i in 1..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            main.push(MediaEvent::Frame(frame(1, i * 40, false)))
                .unwrap();
        }
        assert_eq!(*calls.lock().unwrap(), vec![av_tracks()], "prepared once");
        drop(main);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            calls.lock().unwrap().len(),
            2,
            "and asked for at the outage"
        );
        assert_eq!(
            hub.stats(&name).map(|s| s.active_source),
            Some(SourceRole::Fallback)
        );
        sup.abort();
    }

    /// The renditions of one transcoder stop a few frames apart, their
    /// ends on either side of a segment boundary (r1's timeline ends at
    /// 9.92 s, r2's at 10.12 s; 1 s segments): with `align` both slates
    /// land on the first boundary after the later end (11 s), so an
    /// aligned segmenter starts the same segment in each; without it each
    /// lands at its own end, in different segments.
    #[tokio::test(start_paused = true)]
    async fn renditions_fallbacks_land_on_one_aligned_boundary() {
        for align in [Some(Duration::from_secs(1)), None] {
            let hub = Hub::new(crate::HubConfig::default());
            let sup = supervise_clip(
                &hub,
                FallbackConfig {
                    after: Duration::from_secs(1),
                    sources: false,
                    renditions: true,
                    align,
                    ..FallbackConfig::default()
                },
            );
            let source = live(&hub, "live/a");
            let mut readers = Vec::new();
            let mut renditions = Vec::new();
            for (name, frames) in [("live/a/r1", 249), ("live/a/r2", 254)] {
                let path = StreamPath::parse(name).unwrap();
                let mut p = hub.publish(&path);
                p.push(MediaEvent::Tracks(av_tracks())).unwrap();
                // Read as it comes (a reader left behind skips ahead).
                let mut reader = hub.subscribe(&path);
                readers.push(tokio::spawn(async move {
                    let mut video = Vec::new();
                    while let Some(e) = reader.recv().await {
                        if let MediaEvent::Frame(f) = e
                            && f.track == TrackId(1)
                        {
                            video.push(f.dts);
                        }
                    }
                    video
                }));
                renditions.push((p, frames));
            }
            // Both send in step; r1 stops 5 frames (200 ms) before r2.
            for i in 0..254i64 {
                for (p, n) in &mut renditions {
                    if i < *n {
                        p.push(MediaEvent::Frame(frame(1, i * 40, i % 25 == 0)))
                            .unwrap();
                    }
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            drop(renditions);
            tokio::time::sleep(Duration::from_secs(3)).await;
            source.abort();
            sup.abort();
            // The renditions end with the supervisor's fallbacks.
            for name in ["live/a/r1", "live/a/r2"] {
                hub.end_unless_published(&StreamPath::parse(name).unwrap());
            }
            let mut landed = Vec::new();
            for (r, last) in readers.into_iter().zip([248 * 40, 253 * 40]) {
                let video = tokio::time::timeout(Duration::from_secs(5), r)
                    .await
                    .expect("the reader ends")
                    .unwrap();
                landed.push(video.into_iter().find(|t| *t > last));
            }
            match align {
                Some(_) => assert_eq!(landed, [Some(11_000), Some(11_000)]),
                None => assert_eq!(landed, [Some(9_960), Some(10_160)]),
            }
        }
    }

    /// [`supervise`] of `hub` with `config`, every stream's clip [`clip`].
    fn supervise_clip(hub: &Hub, config: FallbackConfig) -> tokio::task::JoinHandle<()> {
        let c = clip();
        tokio::spawn(supervise(
            hub.clone(),
            move |_, _| {
                let c = Arc::clone(&c);
                async move { Some(c) }
            },
            config,
        ))
    }

    /// A live main publisher of `name` sending a frame every 40 ms until
    /// dropped (returned: abort it to stop).
    fn live(hub: &Hub, name: &str) -> tokio::task::JoinHandle<()> {
        let mut p = hub.publish(&StreamPath::parse(name).unwrap());
        p.push(MediaEvent::Tracks(av_tracks())).unwrap();
        tokio::spawn(async move {
            for i in 0.. {
                if p.push(MediaEvent::Frame(frame(1, i * 40, i % 25 == 0)))
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    }

    fn active(hub: &Hub, name: &str) -> Option<SourceRole> {
        hub.stats(&StreamPath::parse(name).unwrap())
            .map(|s| s.active_source)
    }

    /// An origin whose transcoders all stop: its renditions get their own
    /// fallback after the wait (none during a shorter outage), both in the
    /// same tick though they stopped 100 ms apart, and hold on past the
    /// hold time while the source stream is live; once the source is gone
    /// too they end, and the source gets none (sources off).
    #[tokio::test(start_paused = true)]
    async fn renditions_stand_in_together_after_the_wait_while_the_source_lives() {
        let hub = Hub::new(crate::HubConfig::default());
        let sup = supervise_clip(
            &hub,
            FallbackConfig {
                hold: Duration::from_secs(5),
                after: Duration::from_secs(2),
                sources: false,
                renditions: true,
                ..FallbackConfig::default()
            },
        );
        let source = live(&hub, "live/a");
        let r1 = live(&hub, "live/a/r1");
        // The second rendition appears a moment later (its checks still run
        // on the same clock).
        tokio::time::sleep(Duration::from_millis(130)).await;
        let r2 = live(&hub, "live/a/r2");
        tokio::time::sleep(Duration::from_millis(9_920)).await;
        // A 1.5 s outage of one rendition: shorter than the wait.
        r1.abort();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(active(&hub, "live/a/r1"), Some(SourceRole::Main));
        let r1 = live(&hub, "live/a/r1");
        tokio::time::sleep(Duration::from_millis(3000)).await;
        assert_eq!(active(&hub, "live/a/r1"), Some(SourceRole::Main));
        // Both transcoders' renditions stop, 100 ms apart.
        r1.abort();
        tokio::time::sleep(Duration::from_millis(100)).await;
        r2.abort();
        let stopped = tokio::time::Instant::now();
        let mut switched: [Option<Duration>; 2] = [None, None];
        while stopped.elapsed() < Duration::from_secs(4) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            for (i, r) in ["live/a/r1", "live/a/r2"].iter().enumerate() {
                if switched[i].is_none() && active(&hub, r) == Some(SourceRole::Fallback) {
                    switched[i] = Some(stopped.elapsed());
                }
            }
        }
        let [Some(a), Some(b)] = switched else {
            panic!("both renditions on their fallback: {switched:?}");
        };
        assert_eq!(a, b, "in the same tick");
        assert!(
            a >= Duration::from_millis(1900) && a <= Duration::from_millis(2300),
            "{a:?}"
        );
        assert_eq!(active(&hub, "live/a"), Some(SourceRole::Main));
        // Past the hold: the source is live, the renditions hold on.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(active(&hub, "live/a/r1"), Some(SourceRole::Fallback));
        assert_eq!(active(&hub, "live/a/r2"), Some(SourceRole::Fallback));
        // The source goes too (the stream ended upstream): no fallback of
        // its own here, and the renditions, past their hold, end.
        source.abort();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_ne!(active(&hub, "live/a"), Some(SourceRole::Fallback));
        assert_eq!(active(&hub, "live/a/r1"), None);
        assert_eq!(active(&hub, "live/a/r2"), None);
        // A rendition that stops while its source is gone gets none.
        live(&hub, "live/a/r3").abort();
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_ne!(active(&hub, "live/a/r3"), Some(SourceRole::Fallback));
        sup.abort();
    }

    #[test]
    fn a_streams_own_fallback_is_a_file_in_the_directory_a_url_or_the_nodes() {
        use FallbackMedia::*;
        let node = File(PathBuf::from("/srv/brb.mp4"));
        let dir = Path::new("/srv/loops");
        assert_eq!(node.for_stream(None, Some(dir)), Ok(node.clone()));
        assert_eq!(node.for_stream(Some("off"), Some(dir)), Ok(Off));
        assert_eq!(Off.for_stream(Some("slate"), None), Ok(Slate));
        assert_eq!(
            node.for_stream(Some("https://cdn.example/a.mp4"), None),
            Ok(Url("https://cdn.example/a.mp4".into()))
        );
        assert_eq!(
            node.for_stream(Some("mine.mp4"), Some(dir)),
            Ok(File(PathBuf::from("/srv/loops/mine.mp4")))
        );
        // No directory, or no plain name (a file edited by hand): refused.
        let refused = |own| node.for_stream(Some(own), Some(dir));
        assert_eq!(
            node.for_stream(Some("mine.mp4"), None),
            Err(OwnFallbackIgnored::NoDirectory)
        );
        for own in ["../etc/passwd", "/etc/passwd", ".hidden", "a/b.mp4", ""] {
            assert_eq!(refused(own), Err(OwnFallbackIgnored::NotAFileName), "{own}");
        }
        assert!(!plain_file_name(&"a".repeat(MAX_FILE_NAME + 1)));
        assert!(plain_file_name(&"a".repeat(MAX_FILE_NAME)));
        assert_eq!(FallbackMedia::node_setting("off"), Ok(Off));
        assert_eq!(FallbackMedia::node_setting("slate"), Ok(Slate));
        let e = FallbackMedia::node_setting("/no/such/loop.mp4").unwrap_err();
        assert!(e.contains("is none"), "{e}");
    }
}
