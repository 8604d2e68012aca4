//! Ladder profiles as a config file writes them (feature `serde`): the
//! `[transcode]` table of a server's TOML file, and [`TranscodeSection::load`]
//! that turns it into [`LadderProfiles`].
//!
//! ```toml
//! [transcode]
//! default = "off"               # profile of streams without a setting
//! preset = "veryfast"           # keys here change the `default` profile
//! keyframe_interval_ms = 2000
//! passthrough = "source"        # optional rung that copies the source
//! [transcode.logo]              # optional burnt-in PNG
//! png = "/etc/ugc/logo.png"
//! corner = "top-right"          # top-left, top-right, bottom-left, bottom-right
//! margin = 32                   # px at 1080 lines
//! opacity = 80                  # percent
//! height = 96                   # px at 1080 lines (0 = the PNG's own)
//! [transcode.profiles.mobile]   # a named profile, on top of `default`
//! preset = "superfast"
//! renditions = [
//!   { name = "480p", height = 480, video_kbps = 1200, audio_kbps = 96 },
//!   { name = "240p", height = 240, video_kbps = 400, audio_kbps = 64, profile = "main" },
//! ]
//! ```
//!
//! The one file this crate reads is the logo PNG a section names, when
//! [`TranscodeSection::load`] runs.
//!
//! ```
//! use ugc_codec::ladder::config::{ProfileSection, TranscodeSection};
//!
//! let mut section = TranscodeSection::default();
//! section.base.preset = Some("superfast".into());
//! section.profiles.insert("fast".into(), ProfileSection {
//!     keyframe_interval_ms: Some(1000),
//!     ..ProfileSection::default()
//! });
//! let ladders = section.load()?;
//! assert_eq!(ladders.default, "off");
//! assert_eq!(ladders.profile_names(), ["fast"]);
//! assert_eq!(ladders.profiles["fast"].preset, "superfast");
//! # Ok::<(), ugc_codec::Error>(())
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{LadderConfig, LadderProfiles, LogoConfig, RenditionConfig};
use crate::Error;

/// One rung: `{ name, height, video_kbps, audio_kbps, .. }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionSection {
    /// Rendition name (a stream-name segment: `720p`).
    pub name: String,
    /// Output height in pixels.
    pub height: u32,
    /// Video bitrate in kbit/s.
    pub video_kbps: u32,
    /// AAC bitrate in kbit/s.
    pub audio_kbps: u32,
    /// VBV maximum rate in kbit/s (default `video_kbps`).
    pub maxrate_kbps: Option<u32>,
    /// VBV buffer in kbit (default twice the maximum rate).
    pub bufsize_kbps: Option<u32>,
    /// H.264 profile (default `high`).
    pub profile: Option<String>,
}

/// `[transcode.logo]` (or `[transcode.profiles.<name>.logo]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogoSection {
    /// The PNG file, read by [`TranscodeSection::load`].
    pub png: PathBuf,
    /// `top-left`, `top-right` (default), `bottom-left`, `bottom-right`.
    pub corner: Option<String>,
    /// Distance from the edges in pixels at 1080 lines (default 32).
    pub margin: Option<u32>,
    /// Opacity in percent (default 100).
    pub opacity: Option<u8>,
    /// Height in pixels at 1080 lines (default 0: the PNG's own).
    pub height: Option<u32>,
}

/// The keys of one profile; each one given replaces the same setting of
/// the profile it is applied to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSection {
    /// The rungs, highest first.
    pub renditions: Option<Vec<RenditionSection>>,
    /// x264 preset.
    pub preset: Option<String>,
    /// Name of a rung that copies the source.
    pub passthrough: Option<String>,
    /// Keyframe interval in milliseconds.
    pub keyframe_interval_ms: Option<u32>,
    /// See [`LadderConfig::max_pending_frames`].
    pub max_pending_frames: Option<usize>,
    /// See [`LadderConfig::max_delay_ms`].
    pub max_delay_ms: Option<u32>,
    /// x264 threads per rung (0: x264's choice).
    pub encoder_threads: Option<u32>,
    /// A burnt-in logo.
    pub logo: Option<LogoSection>,
}

/// The `[transcode]` table: its own keys change the built-in `default`
/// profile ([`LadderConfig::default`]); `[transcode.profiles.<name>]`
/// tables are named profiles on top of that.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscodeSection {
    /// The profile of streams without a setting of their own (`off`, the
    /// default, or a profile name).
    pub default: Option<String>,
    /// Changes to the `default` profile.
    #[serde(flatten)]
    pub base: ProfileSection,
    /// Named profiles.
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileSection>,
}

impl ProfileSection {
    /// `ladder` with this section's keys applied, checked; reads the logo.
    pub fn apply(&self, mut ladder: LadderConfig) -> crate::Result<LadderConfig> {
        if let Some(r) = &self.renditions {
            ladder.renditions = r.iter().map(RenditionSection::rendition).collect();
        }
        if let Some(v) = &self.preset {
            ladder.preset = v.clone();
        }
        if self.passthrough.is_some() {
            ladder.passthrough = self.passthrough.clone();
        }
        if let Some(v) = self.keyframe_interval_ms {
            ladder.keyframe_interval_ms = v;
        }
        if let Some(v) = self.max_pending_frames {
            ladder.max_pending_frames = v;
        }
        if let Some(v) = self.max_delay_ms {
            ladder.max_delay_ms = v;
        }
        if let Some(v) = self.encoder_threads {
            ladder.encoder_threads = v;
        }
        if let Some(l) = &self.logo {
            ladder.logo = Some(l.logo()?);
        }
        ladder.validate()?;
        Ok(ladder)
    }
}

impl RenditionSection {
    fn rendition(&self) -> RenditionConfig {
        RenditionConfig {
            maxrate: self.maxrate_kbps.map(|k| k.saturating_mul(1000)),
            bufsize: self.bufsize_kbps.map(|k| k.saturating_mul(1000)),
            profile: self.profile.clone().unwrap_or_else(|| "high".into()),
            ..RenditionConfig::new(&self.name, self.height, self.video_kbps, self.audio_kbps)
        }
    }
}

impl LogoSection {
    fn logo(&self) -> crate::Result<LogoConfig> {
        let png = std::fs::read(&self.png).map_err(|e| {
            Error::InvalidArgument(format!("reading logo {}: {e}", self.png.display()))
        })?;
        Ok(LogoConfig {
            png,
            corner: self.corner.as_deref().unwrap_or("top-right").parse()?,
            margin: self.margin.unwrap_or(32),
            opacity: self.opacity.unwrap_or(100),
            height: self.height.unwrap_or(0),
        })
    }
}

impl TranscodeSection {
    /// The profiles: `default` (the built-in ladder with the section's own
    /// keys applied) and every named profile applied on top of it, each
    /// checked ([`LadderConfig::validate`]), logos read. Errors name the
    /// table (`[transcode.profiles.mobile]: x264 preset "warp"`).
    pub fn load(&self) -> crate::Result<LadderProfiles> {
        let in_table = |table: &str| {
            let table = table.to_owned();
            move |e: Error| match e {
                Error::InvalidArgument(m) => Error::InvalidArgument(format!("{table}: {m}")),
                other => other,
            }
        };
        let base = self
            .base
            .apply(LadderConfig::default())
            .map_err(in_table("[transcode]"))?;
        let mut profiles = BTreeMap::new();
        for (name, p) in &self.profiles {
            if name == "off" {
                return Err(Error::InvalidArgument(
                    "a transcode profile cannot be called \"off\"".into(),
                ));
            }
            let table = format!("[transcode.profiles.{name}]");
            profiles.insert(
                name.clone(),
                p.apply(base.clone()).map_err(in_table(&table))?,
            );
        }
        profiles.entry("default".into()).or_insert(base);
        let default = self.default.clone().unwrap_or_else(|| "off".into());
        if default != "off" && !profiles.contains_key(&default) {
            return Err(Error::InvalidArgument(format!(
                "transcode default {default:?} is not a profile"
            )));
        }
        Ok(LadderProfiles { default, profiles })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TranscodeSection, toml::de::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            transcode: TranscodeSection,
        }
        toml::from_str::<File>(text).map(|f| f.transcode)
    }

    #[test]
    fn readme_profiles_load_over_the_default_ladder() {
        let s = parse(
            "[transcode]\npreset = \"faster\"\nkeyframe_interval_ms = 1000\n\
             passthrough = \"source\"\n\
             [transcode.profiles.mobile]\npreset = \"superfast\"\nrenditions = [\n\
             { name = \"480p\", height = 480, video_kbps = 1200, audio_kbps = 96 },\n\
             { name = \"240p\", height = 240, video_kbps = 400, audio_kbps = 64, \
               profile = \"main\", maxrate_kbps = 500, bufsize_kbps = 800 },\n]\n",
        )
        .unwrap();
        let l = s.load().unwrap();
        assert_eq!(l.default, "off");
        assert_eq!(l.profile_names(), ["mobile"]);
        let d = &l.profiles["default"];
        assert_eq!(
            (d.preset.as_str(), d.keyframe_interval_ms),
            ("faster", 1000)
        );
        assert_eq!(d.renditions, LadderConfig::default().renditions);
        assert_eq!(d.passthrough.as_deref(), Some("source"));
        let m = &l.profiles["mobile"];
        // Named profiles start from the section's `default`.
        assert_eq!(
            (m.preset.as_str(), m.keyframe_interval_ms),
            ("superfast", 1000)
        );
        assert_eq!(m.passthrough.as_deref(), Some("source"));
        assert_eq!(
            m.renditions[1],
            RenditionConfig {
                maxrate: Some(500_000),
                bufsize: Some(800_000),
                profile: "main".into(),
                ..RenditionConfig::new("240p", 240, 400, 64)
            }
        );
    }

    #[test]
    fn an_empty_section_is_the_default_ladder_and_off() {
        let l = TranscodeSection::default().load().unwrap();
        assert_eq!(l.default, "off");
        assert!(l.profile_names().is_empty());
        assert_eq!(l.profiles["default"], LadderConfig::default());
    }

    #[test]
    fn logo_is_read_from_its_path() {
        let dir = std::env::temp_dir().join(format!("ugc-ladder-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("logo.png");
        std::fs::write(&png, b"\x89PNG not really").unwrap();
        let text = format!(
            "[transcode]\ndefault = \"default\"\n[transcode.logo]\npng = {:?}\n\
             corner = \"bottom-left\"\nopacity = 80\n",
            png.display().to_string()
        );
        let l = parse(&text).unwrap().load();
        let missing = parse(&text.replace("logo.png", "nope.png")).unwrap().load();
        let _ = std::fs::remove_dir_all(&dir);
        let l = l.unwrap();
        assert_eq!(l.default, "default");
        let logo = l.profiles["default"].logo.clone().unwrap();
        assert_eq!(logo.png, b"\x89PNG not really");
        assert_eq!(
            (logo.corner, logo.margin, logo.opacity, logo.height),
            (crate::ladder::Corner::BottomLeft, 32, 80, 0)
        );
        let e = missing.unwrap_err().to_string();
        assert!(
            e.contains("[transcode]: reading logo") && e.contains("nope.png"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_table() {
        let e = parse("[transcode.profiles.x]\npreset = \"warp\"\n").unwrap();
        let e = e.load().unwrap_err().to_string();
        assert!(
            e.contains("[transcode.profiles.x]: x264 preset \"warp\""),
            "{e}"
        );
        let off = parse("[transcode.profiles.off]\n").unwrap().load();
        assert!(
            off.unwrap_err()
                .to_string()
                .contains("cannot be called \"off\"")
        );
        let unknown = parse("[transcode]\ndefault = \"nope\"\n").unwrap().load();
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("\"nope\" is not a profile")
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(parse("[transcode]\nbogus = 1\n").is_err());
        assert!(parse("[transcode.profiles.x]\nbogus = 1\n").is_err());
        assert!(parse("[transcode.logo]\npng = \"a\"\nbogus = 1\n").is_err());
        assert!(parse("[transcode]\nrenditions = [{ name = \"a\", height = 1 }]\n").is_err());
    }
}
