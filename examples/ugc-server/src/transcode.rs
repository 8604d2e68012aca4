//! Transcoding wiring: ladder profiles from the config file, and the
//! library's supervisor (one ladder per live stream whose control-plane
//! setting `transcode` is not `off`; settings changes reach running
//! streams).
//!
//! ```toml
//! [transcode]
//! default = "off"            # streams the control plane does not know
//! preset = "veryfast"        # of the built-in `default` profile
//! [transcode.logo]
//! png = "logo.png"
//! corner = "top-right"
//! opacity = 80
//! [transcode.profiles.mobile]
//! preset = "superfast"
//! renditions = [{ name = "480p", height = 480, video_kbps = 1200, audio_kbps = 96 }]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use serde::Deserialize;
use ugc_codec::ladder::{LadderConfig, LogoConfig, RenditionConfig};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionFile {
    name: String,
    height: u32,
    video_kbps: u32,
    audio_kbps: u32,
    maxrate_kbps: Option<u32>,
    bufsize_kbps: Option<u32>,
    profile: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct LogoFile {
    png: PathBuf,
    corner: Option<String>,
    margin: Option<u32>,
    opacity: Option<u8>,
    height: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    renditions: Option<Vec<RenditionFile>>,
    preset: Option<String>,
    passthrough: Option<String>,
    keyframe_interval_ms: Option<u32>,
    max_pending_frames: Option<usize>,
    encoder_threads: Option<u32>,
    logo: Option<LogoFile>,
}

/// The `[transcode]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscodeFile {
    default: Option<String>,
    #[serde(flatten)]
    base: ProfileFile,
    #[serde(default)]
    profiles: BTreeMap<String, ProfileFile>,
}

/// Effective transcoding settings.
#[derive(Debug, Clone)]
pub struct TranscodeConfig {
    /// Profile of streams without a control-plane setting.
    pub default: String,
    /// Ladders by profile name (`default` always present).
    pub profiles: BTreeMap<String, LadderConfig>,
}

fn apply(mut c: LadderConfig, p: &ProfileFile) -> anyhow::Result<LadderConfig> {
    if let Some(r) = &p.renditions {
        c.renditions = r
            .iter()
            .map(|r| RenditionConfig {
                maxrate: r.maxrate_kbps.map(|k| k.saturating_mul(1000)),
                bufsize: r.bufsize_kbps.map(|k| k.saturating_mul(1000)),
                profile: r.profile.clone().unwrap_or_else(|| "high".into()),
                ..RenditionConfig::new(&r.name, r.height, r.video_kbps, r.audio_kbps)
            })
            .collect();
    }
    if let Some(v) = &p.preset {
        c.preset = v.clone();
    }
    if p.passthrough.is_some() {
        c.passthrough = p.passthrough.clone();
    }
    if let Some(v) = p.keyframe_interval_ms {
        c.keyframe_interval_ms = v;
    }
    if let Some(v) = p.max_pending_frames {
        c.max_pending_frames = v;
    }
    if let Some(v) = p.encoder_threads {
        c.encoder_threads = v;
    }
    if let Some(l) = &p.logo {
        c.logo = Some(LogoConfig {
            png: std::fs::read(&l.png)
                .with_context(|| format!("reading logo {}", l.png.display()))?,
            corner: l.corner.as_deref().unwrap_or("top-right").parse()?,
            margin: l.margin.unwrap_or(32),
            opacity: l.opacity.unwrap_or(100),
            height: l.height.unwrap_or(0),
        });
    }
    c.validate()?;
    Ok(c)
}

impl TranscodeConfig {
    /// Builds the profiles: the built-in `default` ladder with the
    /// section's own keys applied, and every named profile on top of it.
    pub fn load(file: Option<TranscodeFile>, default_flag: Option<String>) -> anyhow::Result<Self> {
        let file = file.unwrap_or_default();
        let base = apply(LadderConfig::default(), &file.base).context("[transcode]")?;
        let mut profiles = BTreeMap::new();
        for (name, p) in &file.profiles {
            anyhow::ensure!(
                name != "off",
                "a transcode profile cannot be called \"off\""
            );
            profiles.insert(
                name.clone(),
                apply(base.clone(), p).with_context(|| format!("[transcode.profiles.{name}]"))?,
            );
        }
        profiles.entry("default".into()).or_insert(base);
        let default = default_flag
            .or(file.default)
            .unwrap_or_else(|| "off".into());
        anyhow::ensure!(
            default == "off" || profiles.contains_key(&default),
            "transcode default {default:?} is not a profile"
        );
        Ok(TranscodeConfig { default, profiles })
    }

    /// Named profiles the control API accepts besides `off` and `default`.
    pub fn profile_names(&self) -> Vec<String> {
        self.profiles
            .keys()
            .filter(|n| n.as_str() != "default")
            .cloned()
            .collect()
    }
}

/// Runs a ladder for every `live/<name>` stream whose setting wants one;
/// `ladders` lists the running ones.
#[cfg(feature = "ffmpeg")]
pub fn spawn(
    hub: ugc_core::Hub,
    settings: impl ugc_auth::SettingsSource,
    config: TranscodeConfig,
    ladders: ugc_codec::ladder::stats::LadderRegistry,
) -> tokio::task::JoinHandle<()> {
    let changes = settings.subscribe_changes();
    let profile_of = crate::settings::transcode_profile(settings, config.default);
    tokio::spawn(ugc_codec::transcode::supervise(
        hub,
        config.profiles,
        profile_of,
        changes,
        ladders,
    ))
}

/// Without the `ffmpeg` feature: say once that transcoding is off.
#[cfg(not(feature = "ffmpeg"))]
pub fn spawn(
    _hub: ugc_core::Hub,
    _settings: impl ugc_auth::SettingsSource,
    config: TranscodeConfig,
    _ladders: ugc_codec::ladder::stats::LadderRegistry,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if config.default != "off" || config.profiles.len() > 1 {
            tracing::warn!("built without the `ffmpeg` feature: transcoding is unavailable");
        }
    })
}
