//! ABR ladder configuration and the pure parts of the ladder: which rungs a
//! source gets ([`LadderConfig::plan`]: never upscale) and how the ladder's
//! combined output is split into one stream per rendition ([`LadderDemux`]).
//!
//! The encoder itself (`transcode::Ladder`) needs the `ffmpeg`
//! feature; everything here builds without it, so servers can parse and
//! validate ladder settings either way.
//!
//! Output layout: the ladder emits one event stream for all renditions.
//! Rendition `i` (its index in [`LadderConfig::renditions`], the passthrough
//! rung is index `renditions.len()`) uses video track `2i + 1` and audio
//! track `2i + 2`. [`LadderDemux`] turns that back into per-rendition streams
//! with the usual ids 1 (video) and 2 (audio).
//!
//! [`stats`]: the counters of running ladders and the registry a server
//! lists them in (`/metrics` families, JSON). `config` (feature `serde`):
//! the `[transcode]` table of a config file, loaded into [`LadderProfiles`].

#[cfg(feature = "serde")]
pub mod config;
pub mod stats;

use std::collections::{BTreeMap, HashMap, VecDeque};

use ugc_core::time::rescale;
use ugc_core::{Frame, MediaEvent, Timescale, TrackId, Tracks};

/// One rung of the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionConfig {
    /// Rendition name (a stream-name segment: `720p`); the Hub stream is
    /// `<source>/<name>`.
    pub name: String,
    /// Output height in pixels (width follows the source aspect, even).
    pub height: u32,
    /// Target video bitrate, bits/s.
    pub video_bitrate: u32,
    /// VBV maximum rate, bits/s (default: `video_bitrate`).
    pub maxrate: Option<u32>,
    /// VBV buffer, bits (default: `2 * maxrate`).
    pub bufsize: Option<u32>,
    /// AAC bitrate, bits/s.
    pub audio_bitrate: u32,
    /// H.264 profile (`baseline`, `main`, `high`).
    pub profile: String,
}

impl RenditionConfig {
    /// A rung named `name` at `height` with the given video and audio
    /// bitrates in kbit/s, H.264 high profile.
    pub fn new(name: &str, height: u32, video_kbps: u32, audio_kbps: u32) -> Self {
        RenditionConfig {
            name: name.to_owned(),
            height,
            video_bitrate: video_kbps.saturating_mul(1000),
            maxrate: None,
            bufsize: None,
            audio_bitrate: audio_kbps.saturating_mul(1000),
            profile: "high".into(),
        }
    }
}

/// Corner of the picture a logo sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Corner {
    /// Top left.
    TopLeft,
    /// Top right.
    #[default]
    TopRight,
    /// Bottom left.
    BottomLeft,
    /// Bottom right.
    BottomRight,
}

impl std::str::FromStr for Corner {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Corner> {
        Ok(match s {
            "top-left" => Corner::TopLeft,
            "top-right" => Corner::TopRight,
            "bottom-left" => Corner::BottomLeft,
            "bottom-right" => Corner::BottomRight,
            other => {
                return Err(crate::Error::InvalidArgument(format!(
                    "logo corner {other:?} (top-left, top-right, bottom-left, bottom-right)"
                )));
            }
        })
    }
}

/// A PNG logo burnt into every re-encoded rendition (drawn once on the
/// decoded source picture, so every rung shows it at the same relative size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoConfig {
    /// The PNG file's bytes.
    pub png: Vec<u8>,
    /// Where it goes.
    pub corner: Corner,
    /// Distance from the picture edges, in pixels of a 1080-line picture.
    pub margin: u32,
    /// Opacity in percent (0..=100), multiplied with the PNG's alpha.
    pub opacity: u8,
    /// Logo height in pixels of a 1080-line picture (scaled with the
    /// source height); 0 keeps the PNG's own size at 1080 lines.
    pub height: u32,
}

/// The ladder of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderConfig {
    /// Re-encoded rungs, highest first.
    pub renditions: Vec<RenditionConfig>,
    /// Name of a passthrough rung that copies the source (no re-encoding),
    /// or `None`.
    pub passthrough: Option<String>,
    /// x264 preset (`ultrafast` ... `veryslow`).
    pub preset: String,
    /// Keyframe interval, milliseconds; every rung has an IDR at the same
    /// presentation time.
    pub keyframe_interval_ms: u32,
    /// Decoded pictures that may wait for the slowest rung before the ladder
    /// drops pictures (for all rungs alike, so IDRs stay aligned).
    pub max_pending_frames: usize,
    /// Live (`true`, the default): drop pictures when a rung is behind.
    /// Offline (`false`, files and benchmarks): wait for the rungs instead.
    pub drop_when_behind: bool,
    /// Live: how long input may wait for busy rungs (from its arrival)
    /// before pictures are dropped. A ladder that starts on a burst (a
    /// relay or a reader joining at the last keyframe hands over up to a
    /// GOP at once) catches up within it instead of dropping half a second
    /// of pictures while its encoders start; a ladder that cannot keep real
    /// time stays at most this far behind. 0 drops as soon as a rung has
    /// [`Self::max_pending_frames`] waiting.
    pub max_delay_ms: u32,
    /// x264 threads per rung (0 = x264's choice).
    pub encoder_threads: u32,
    /// Burnt-in logo.
    pub logo: Option<LogoConfig>,
}

impl Default for LadderConfig {
    /// The contract's `default` profile: 1080p 4000k / 720p 2000k / 360p
    /// 1000k, AAC 192k / 128k / 96k, x264 `veryfast`, keyframes every 2 s.
    fn default() -> Self {
        LadderConfig {
            renditions: vec![
                RenditionConfig::new("1080p", 1080, 4000, 192),
                RenditionConfig::new("720p", 720, 2000, 128),
                RenditionConfig::new("360p", 360, 1000, 96),
            ],
            passthrough: None,
            preset: "veryfast".into(),
            keyframe_interval_ms: 2000,
            max_pending_frames: 8,
            drop_when_behind: true,
            max_delay_ms: 1000,
            encoder_threads: 0,
            logo: None,
        }
    }
}

/// The ladders a server offers, by profile name, and the profile of streams
/// that have no setting of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderProfiles {
    /// Profile of streams without a setting: `off` (no ladder) or a key of
    /// [`profiles`](Self::profiles).
    pub default: String,
    /// Ladders by profile name; `default` is always there.
    pub profiles: BTreeMap<String, LadderConfig>,
}

impl Default for LadderProfiles {
    /// The built-in `default` ladder only, off unless a stream asks.
    fn default() -> Self {
        LadderProfiles {
            default: "off".into(),
            profiles: BTreeMap::from([("default".into(), LadderConfig::default())]),
        }
    }
}

impl LadderProfiles {
    /// The named profiles besides `default` (and `off`), which a control
    /// plane accepts as a stream's `transcode` setting.
    pub fn profile_names(&self) -> Vec<String> {
        self.profiles
            .keys()
            .filter(|n| n.as_str() != "default")
            .cloned()
            .collect()
    }
}

/// A rung as planned for a source size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRung {
    /// Index of the rendition (see the [module docs](self) for track ids).
    pub index: usize,
    /// Output width (even).
    pub width: u32,
    /// Output height (even).
    pub height: u32,
}

impl LadderConfig {
    /// Checks names, bitrates and the preset.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::InvalidArgument(m));
        if self.renditions.is_empty() && self.passthrough.is_none() {
            return bad("a ladder needs at least one rendition".into());
        }
        let mut names: Vec<&str> = self.renditions.iter().map(|r| r.name.as_str()).collect();
        names.extend(self.passthrough.as_deref());
        for (i, n) in names.iter().enumerate() {
            if ugc_core::name::validate_segment(n).is_err() || n.contains('.') {
                return bad(format!("rendition name {n:?}"));
            }
            if names[..i].contains(n) {
                return bad(format!("rendition name {n:?} used twice"));
            }
        }
        for r in &self.renditions {
            if !(16..=4320).contains(&r.height) {
                return bad(format!("rendition {}: height {}", r.name, r.height));
            }
            if r.video_bitrate < 10_000 || r.audio_bitrate < 8_000 {
                return bad(format!("rendition {}: bitrate too low", r.name));
            }
            if !matches!(r.profile.as_str(), "baseline" | "main" | "high") {
                return bad(format!("rendition {}: profile {:?}", r.name, r.profile));
            }
        }
        const PRESETS: [&str; 10] = [
            "ultrafast",
            "superfast",
            "veryfast",
            "faster",
            "fast",
            "medium",
            "slow",
            "slower",
            "veryslow",
            "placebo",
        ];
        if !PRESETS.contains(&self.preset.as_str()) {
            return bad(format!("x264 preset {:?}", self.preset));
        }
        if !(250..=20_000).contains(&self.keyframe_interval_ms) {
            return bad("keyframe_interval_ms must be within 250..=20000".into());
        }
        // Longer is no live ladder: it would wait like an offline one.
        if self.max_delay_ms > 60_000 {
            return bad("max_delay_ms must be within 0..=60000".into());
        }
        if let Some(l) = &self.logo
            && l.opacity > 100
        {
            return bad("logo opacity is a percentage".into());
        }
        Ok(())
    }

    /// Name of rendition `index` (the passthrough rung is
    /// `renditions.len()`).
    pub fn rendition_name(&self, index: usize) -> Option<&str> {
        match self.renditions.get(index) {
            Some(r) => Some(&r.name),
            None if index == self.renditions.len() => self.passthrough.as_deref(),
            None => None,
        }
    }

    /// The rungs a `width` x `height` source gets: never upscaled (rungs
    /// taller than the source are left out, except that the smallest rung is
    /// kept, at the source size, when all are taller). Sizes keep the
    /// source's aspect ratio and are even.
    pub fn plan(&self, width: u32, height: u32) -> Vec<PlannedRung> {
        let (width, height) = (width.max(2), height.max(2));
        let mut out: Vec<PlannedRung> = Vec::new();
        for (index, r) in self.renditions.iter().enumerate() {
            if r.height > height {
                continue;
            }
            let h = r.height & !1;
            let w = (u64::from(width) * u64::from(h) / u64::from(height)) as u32;
            let w = (w + 1) & !1;
            // Two rungs of the same size are one too many.
            if out.iter().any(|p| p.height == h) {
                continue;
            }
            out.push(PlannedRung {
                index,
                width: w.max(2),
                height: h.max(2),
            });
        }
        if out.is_empty()
            && let Some((index, _)) = self
                .renditions
                .iter()
                .enumerate()
                .min_by_key(|(_, r)| r.height)
        {
            out.push(PlannedRung {
                index,
                width: width & !1,
                height: height & !1,
            });
        }
        out
    }
}

/// Video track id within one rendition, after [`LadderDemux`] (as FLV
/// ingest numbers it).
pub const RENDITION_VIDEO_TRACK: TrackId = TrackId(1);
/// Audio track id within one rendition, after [`LadderDemux`].
pub const RENDITION_AUDIO_TRACK: TrackId = TrackId(2);

/// Video track id of rendition `index` in the ladder's combined output.
pub fn video_track(index: usize) -> TrackId {
    TrackId(u32::try_from(index).unwrap_or(u32::MAX / 2 - 1) * 2 + 1)
}

/// Audio track id of rendition `index` in the ladder's combined output.
pub fn audio_track(index: usize) -> TrackId {
    TrackId(u32::try_from(index).unwrap_or(u32::MAX / 2 - 1) * 2 + 2)
}

/// Rendition index and per-rendition track id ([`RENDITION_VIDEO_TRACK`]
/// or [`RENDITION_AUDIO_TRACK`]) of a combined-output track.
pub fn split_track(id: TrackId) -> Option<(usize, TrackId)> {
    let n = id.0.checked_sub(1)?;
    let index = usize::try_from(n / 2).ok()?;
    let track = if n % 2 == 0 {
        RENDITION_VIDEO_TRACK
    } else {
        RENDITION_AUDIO_TRACK
    };
    Some((index, track))
}

/// Splits the ladder's combined output into per-rendition events (pure),
/// each rendition's frames in decode order across its tracks: the video
/// encoder hands out a frame only after its lookahead (a third of a second
/// at `superfast`), the audio encoder at once, so a rendition's audio is
/// held until its video has caught up (at most [`MAX_AUDIO_HOLD_US`]).
/// Without it every LL-HLS part carried audio a third of a second later
/// than its video, and a rendition cut mid-stream (a transcoder lost)
/// ended with audio past its video.
#[derive(Debug, Default)]
pub struct LadderDemux {
    present: Vec<usize>,
    waiting: HashMap<usize, Interleave>,
}

/// Longest a rendition's audio waits for its video, in microseconds.
pub const MAX_AUDIO_HOLD_US: i64 = 1_000_000;

/// One rendition's audio waiting for its video.
#[derive(Debug, Default)]
struct Interleave {
    video: Option<Timescale>,
    audio: Option<Timescale>,
    /// Decode time of the last video frame out, µs.
    video_us: Option<i64>,
    held: VecDeque<Frame>,
}

impl Interleave {
    fn us(&self, f: &Frame) -> i64 {
        let scale = if f.track == RENDITION_VIDEO_TRACK {
            self.video
        } else {
            self.audio
        };
        scale.map_or(f.dts, |s| rescale(f.dts, s, Timescale::MICROS))
    }

    /// Held audio that may go now.
    fn release(&mut self, out: &mut Vec<Frame>) {
        while let Some(front) = self.held.front() {
            let at = self.us(front);
            let newest = self.held.back().map_or(at, |b| self.us(b));
            let caught_up = self.video_us.is_some_and(|v| at <= v);
            if !caught_up && newest - at <= MAX_AUDIO_HOLD_US {
                break;
            }
            out.extend(self.held.pop_front());
        }
    }
}

impl LadderDemux {
    /// A demux that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renditions in the latest combined track set.
    pub fn renditions(&self) -> &[usize] {
        &self.present
    }

    /// Routes one combined event: `(rendition index, event)` pairs, with
    /// track ids renumbered to 1 (video) and 2 (audio). A track set goes to
    /// every rendition it lists; discontinuities and the end go to all.
    pub fn route(&mut self, event: MediaEvent) -> Vec<(usize, MediaEvent)> {
        let mut out = Vec::new();
        match event {
            MediaEvent::Frame(mut f) => {
                let Some((index, id)) = split_track(f.track) else {
                    return out;
                };
                f.track = id;
                let w = self.waiting.entry(index).or_default();
                let mut frames = Vec::new();
                if id == RENDITION_VIDEO_TRACK || w.video.is_none() {
                    if id == RENDITION_VIDEO_TRACK {
                        w.video_us = Some(w.us(&f));
                        w.release(&mut frames);
                    }
                    frames.push(f);
                } else {
                    w.held.push_back(f);
                    w.release(&mut frames);
                }
                out.extend(frames.into_iter().map(|f| (index, MediaEvent::Frame(f))));
            }
            MediaEvent::Tracks(tracks) => {
                // What waits goes first, in its own track set.
                self.flush(&mut out);
                let mut per: Vec<(usize, Vec<ugc_core::TrackInfo>)> = Vec::new();
                for t in tracks.iter() {
                    let Some((index, id)) = split_track(t.id) else {
                        continue;
                    };
                    let mut t = t.clone();
                    t.id = id;
                    match per.iter_mut().find(|(i, _)| *i == index) {
                        Some((_, v)) => v.push(t),
                        None => per.push((index, vec![t])),
                    }
                }
                self.present = per.iter().map(|(i, _)| *i).collect();
                self.waiting.clear();
                for (i, mut v) in per {
                    v.sort_by_key(|t| t.id);
                    let scale = |id| v.iter().find(|t| t.id == id).map(|t| t.timescale);
                    self.waiting.insert(
                        i,
                        Interleave {
                            video: scale(RENDITION_VIDEO_TRACK),
                            audio: scale(RENDITION_AUDIO_TRACK),
                            ..Interleave::default()
                        },
                    );
                    out.push((i, MediaEvent::Tracks(Tracks::new(v))));
                }
            }
            other => {
                // A discontinuity or the end: what waits goes before it,
                // and audio after it waits for the video after it.
                self.flush(&mut out);
                for w in self.waiting.values_mut() {
                    w.video_us = None;
                }
                out.extend(self.present.iter().map(|&i| (i, other.clone())));
            }
        }
        out
    }

    /// Every rendition's held audio, now.
    fn flush(&mut self, out: &mut Vec<(usize, MediaEvent)>) {
        let mut ids: Vec<usize> = self.waiting.keys().copied().collect();
        ids.sort_unstable();
        for i in ids {
            if let Some(w) = self.waiting.get_mut(&i) {
                out.extend(w.held.drain(..).map(|f| (i, MediaEvent::Frame(f))));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn video_info(id: TrackId) -> ugc_core::TrackInfo {
        ugc_core::TrackInfo {
            id,
            codec: ugc_core::Codec::H264,
            timescale: Timescale::MPEG,
            config: bytes::Bytes::new(),
            codec_string: "avc1.42c00d".into(),
            params: ugc_core::TrackParams::Video(ugc_core::VideoParams {
                width: 16,
                height: 16,
                frame_rate: None,
            }),
            bitrate: None,
        }
    }

    fn audio_info(id: TrackId) -> ugc_core::TrackInfo {
        ugc_core::TrackInfo {
            id,
            codec: ugc_core::Codec::Aac,
            timescale: Timescale::new(48_000).unwrap(),
            config: bytes::Bytes::new(),
            codec_string: "mp4a.40.2".into(),
            params: ugc_core::TrackParams::Audio(ugc_core::AudioParams {
                sample_rate: 48_000,
                channels: 2,
                samples_per_frame: 1024,
            }),
            bitrate: None,
        }
    }

    /// The combined track set of rendition 0: video at 90 kHz, audio at
    /// 48 kHz (`audio`: whether it has audio at all).
    fn combined(audio: bool) -> MediaEvent {
        let mut v = vec![video_info(video_track(0))];
        if audio {
            v.push(audio_info(audio_track(0)));
        }
        MediaEvent::Tracks(Tracks::new(v))
    }

    fn frame(track: TrackId, dts: i64) -> MediaEvent {
        MediaEvent::Frame(Frame {
            track,
            dts,
            pts: dts,
            keyframe: true,
            data: bytes::Bytes::new(),
        })
    }

    /// (track, dts in ms) of the frames routed.
    fn order(d: &mut LadderDemux, events: Vec<MediaEvent>) -> Vec<(u32, i64)> {
        let mut out = Vec::new();
        for e in events {
            for (_, e) in d.route(e) {
                if let MediaEvent::Frame(f) = e {
                    let ms = if f.track == RENDITION_VIDEO_TRACK {
                        f.dts / 90
                    } else {
                        f.dts / 48
                    };
                    out.push((f.track.0, ms));
                }
            }
        }
        out
    }

    #[test]
    fn a_renditions_audio_waits_for_its_delayed_video() {
        let (v, a) = (video_track(0), audio_track(0));
        let mut d = LadderDemux::new();
        // The audio encoder is 360 ms ahead of the video encoder.
        let got = order(
            &mut d,
            vec![
                combined(true),
                frame(a, 0),
                frame(a, 48 * 200),
                frame(a, 48 * 400),
                frame(v, 0),
                frame(a, 48 * 600),
                frame(v, 90 * 200),
                frame(v, 90 * 400),
                MediaEvent::End,
            ],
        );
        assert_eq!(
            got,
            [
                (2, 0),
                (1, 0),
                (2, 200),
                (1, 200),
                (2, 400),
                (1, 400),
                (2, 600)
            ]
        );
    }

    #[test]
    fn audio_waits_at_most_a_second_and_alone_not_at_all() {
        let (v, a) = (video_track(0), audio_track(0));
        let mut d = LadderDemux::new();
        let mut events = vec![combined(true), frame(v, 0)];
        events.extend((1..=12).map(|i| frame(a, 48 * 100 * i)));
        let got = order(&mut d, events);
        // The video stalled: audio goes once it is a second ahead.
        assert_eq!(got.first(), Some(&(1, 0)));
        assert_eq!(got.last(), Some(&(2, 100)), "{got:?}");
        // A rendition without video passes its audio straight on.
        let mut d = LadderDemux::new();
        let only_audio = MediaEvent::Tracks(Tracks::new(vec![audio_info(a)]));
        let got = order(&mut d, vec![only_audio, frame(a, 0), frame(a, 48 * 20)]);
        assert_eq!(got, [(2, 0), (2, 20)]);
    }

    #[test]
    fn never_upscales_and_keeps_aspect() {
        let c = LadderConfig::default();
        let p = c.plan(1920, 1080);
        assert_eq!(
            p.iter().map(|r| (r.width, r.height)).collect::<Vec<_>>(),
            vec![(1920, 1080), (1280, 720), (640, 360)]
        );
        let p = c.plan(1280, 720);
        assert_eq!(p.iter().map(|r| r.index).collect::<Vec<_>>(), vec![1, 2]);
        let p = c.plan(320, 240);
        assert_eq!(
            p,
            vec![PlannedRung {
                index: 2,
                width: 320,
                height: 240
            }]
        );
        // Odd sizes become even.
        let p = c.plan(853, 481);
        assert!(p.iter().all(|r| r.width % 2 == 0 && r.height % 2 == 0));
    }

    #[test]
    fn track_ids_round_trip() {
        for i in 0..5 {
            assert_eq!(split_track(video_track(i)), Some((i, TrackId(1))));
            assert_eq!(split_track(audio_track(i)), Some((i, TrackId(2))));
        }
        assert_eq!(split_track(TrackId(0)), None);
    }

    #[test]
    fn validate_rejects_bad_names() {
        let mut c = LadderConfig::default();
        assert!(c.validate().is_ok());
        c.renditions[1].name = "1080p".into();
        assert!(c.validate().is_err());
        c.renditions[1].name = "a/b".into();
        assert!(c.validate().is_err());
        c.renditions[1].name = "index".into();
        c.preset = "warp".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn validate_bounds_the_live_delay() {
        let mut c = LadderConfig {
            max_delay_ms: 60_000,
            ..LadderConfig::default()
        };
        assert!(c.validate().is_ok());
        c.max_delay_ms = 60_001;
        assert!(c.validate().is_err());
    }
}
