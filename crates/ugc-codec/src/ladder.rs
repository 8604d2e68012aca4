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

use std::collections::BTreeMap;

use ugc_core::{MediaEvent, TrackId, Tracks};

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

/// Splits the ladder's combined output into per-rendition events (pure).
#[derive(Debug, Default)]
pub struct LadderDemux {
    present: Vec<usize>,
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
        match event {
            MediaEvent::Tracks(tracks) => {
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
                per.into_iter()
                    .map(|(i, mut v)| {
                        v.sort_by_key(|t| t.id);
                        (i, MediaEvent::Tracks(Tracks::new(v)))
                    })
                    .collect()
            }
            MediaEvent::Frame(mut f) => match split_track(f.track) {
                Some((index, id)) => {
                    f.track = id;
                    vec![(index, MediaEvent::Frame(f))]
                }
                None => Vec::new(),
            },
            other => self.present.iter().map(|&i| (i, other.clone())).collect(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
}
