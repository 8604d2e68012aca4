//! Transcoding wiring: ladder profiles from the config file and the
//! supervisor that runs one ladder per live stream whose control-plane
//! setting `transcode` is not `off` (settings changes reach running streams).
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
#[cfg(feature = "ffmpeg")]
use std::sync::{Arc, Mutex};

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

/// One running ladder's counters, for the stats route and `/metrics`.
struct LadderSample {
    stream: String,
    profile: String,
    running: std::time::Duration,
    restarts: u32,
    frames_in: u64,
    frames_out: u64,
    pictures_encoded: u64,
    input_dropped: u64,
    pictures_dropped: u64,
    decode_errors: u64,
    renditions: Vec<RenditionSample>,
}

struct RenditionSample {
    name: String,
    width: u32,
    height: u32,
    video_frames: u64,
    audio_frames: u64,
}

/// The ladders running now, by stream name, for `GET
/// /api/v1/stats/transcode`: the supervisor adds a stream's counters when
/// its ladder starts, the ladder's task removes them when it ends.
#[derive(Clone, Default)]
pub struct TranscodeStats {
    #[cfg(feature = "ffmpeg")]
    running: Arc<Mutex<BTreeMap<String, supervisor::Registered>>>,
}

impl TranscodeStats {
    /// One JSON object per running ladder (none without the `ffmpeg`
    /// feature): stream, profile, seconds running, restarts, the ladder's
    /// counters (drops are for all rungs alike, so they are per ladder) and
    /// per rendition its size and frames out.
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.samples()
            .into_iter()
            .map(|l| {
                let renditions: Vec<serde_json::Value> = l
                    .renditions
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "name": r.name,
                            "width": r.width,
                            "height": r.height,
                            "video_frames_out": r.video_frames,
                            "audio_frames_out": r.audio_frames,
                        })
                    })
                    .collect();
                serde_json::json!({
                    "stream": l.stream,
                    "profile": l.profile,
                    "running_s": l.running.as_secs(),
                    "restarts": l.restarts,
                    "frames_in": l.frames_in,
                    "frames_out": l.frames_out,
                    "pictures_encoded": l.pictures_encoded,
                    "input_dropped": l.input_dropped,
                    "pictures_dropped": l.pictures_dropped,
                    "decode_errors": l.decode_errors,
                    "renditions": renditions,
                })
            })
            .collect()
    }

    /// The ladders' counters for `/metrics` (families without samples
    /// without the `ffmpeg` feature).
    pub fn write_metrics(&self, m: &mut ugc_core::metrics::Exposition) {
        use ugc_core::metrics::Family;
        let ladders = self.samples();
        let families: &[Family<LadderSample>] = &[
            Family::gauge(
                "ugc_transcode_running_seconds",
                "Seconds since the stream's ladder started.",
                |l| l.running.as_secs_f64(),
            ),
            Family::counter(
                "ugc_transcode_restarts_total",
                "Ladders built after the first one failed.",
                |l| f64::from(l.restarts),
            ),
            Family::counter(
                "ugc_transcode_frames_in_total",
                "Source frames taken by the ladder.",
                |l| l.frames_in as f64,
            ),
            Family::counter(
                "ugc_transcode_frames_out_total",
                "Frames put out, all renditions, audio and video.",
                |l| l.frames_out as f64,
            ),
            Family::counter(
                "ugc_transcode_pictures_encoded_total",
                "Decoded pictures sent to the renditions.",
                |l| l.pictures_encoded as f64,
            ),
            Family::counter(
                "ugc_transcode_input_dropped_total",
                "Source frames dropped because decoding was behind.",
                |l| l.input_dropped as f64,
            ),
            Family::counter(
                "ugc_transcode_pictures_dropped_total",
                "Pictures dropped for every rendition because one was behind.",
                |l| l.pictures_dropped as f64,
            ),
            Family::counter(
                "ugc_transcode_decode_errors_total",
                "Source packets the decoders rejected.",
                |l| l.decode_errors as f64,
            ),
        ];
        m.families(families, &ladders, |l| vec![("stream", l.stream.clone())]);
        // One row per rendition and media kind.
        type Output<'a> = (&'a str, &'a str, &'static str, u64);
        let outputs: Vec<Output> = ladders
            .iter()
            .flat_map(|l| {
                l.renditions.iter().flat_map(|r| {
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

    fn samples(&self) -> Vec<LadderSample> {
        #[cfg(feature = "ffmpeg")]
        {
            self.lock()
                .iter()
                .map(|(stream, r)| {
                    let report = r.stats.report();
                    let s = report.stats;
                    LadderSample {
                        stream: stream.clone(),
                        profile: r.profile.clone(),
                        running: r.since.elapsed(),
                        restarts: report.restarts,
                        frames_in: s.frames_in,
                        frames_out: s.frames_out,
                        pictures_encoded: s.pictures_encoded,
                        input_dropped: s.input_dropped,
                        pictures_dropped: s.pictures_dropped,
                        decode_errors: s.decode_errors,
                        renditions: report
                            .renditions
                            .iter()
                            .map(|r| RenditionSample {
                                name: r.name.clone(),
                                width: r.width,
                                height: r.height,
                                video_frames: r.video_frames,
                                audio_frames: r.audio_frames,
                            })
                            .collect(),
                    }
                })
                .collect()
        }
        #[cfg(not(feature = "ffmpeg"))]
        Vec::new()
    }

    #[cfg(feature = "ffmpeg")]
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, supervisor::Registered>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(feature = "ffmpeg")]
pub use supervisor::spawn;

#[cfg(feature = "ffmpeg")]
mod supervisor {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tokio::sync::broadcast::error::RecvError;
    use tokio::sync::watch;
    use tokio::task::JoinHandle;
    use tracing::{info, warn};
    use ugc_auth::ControlPlane;
    use ugc_codec::transcode::LadderRunStats;
    use ugc_core::{Hub, StreamPath};

    use super::{TranscodeConfig, TranscodeStats};

    /// A running ladder as the stats endpoint sees it.
    pub(super) struct Registered {
        pub(super) profile: String,
        pub(super) since: Instant,
        pub(super) stats: Arc<LadderRunStats>,
    }

    struct Running {
        profile: String,
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
    }

    /// Runs a ladder for every `live/<name>` stream whose setting wants one;
    /// `stats` lists the running ones.
    pub fn spawn(
        hub: Hub,
        control: ControlPlane,
        config: TranscodeConfig,
        stats: TranscodeStats,
    ) -> JoinHandle<()> {
        tokio::spawn(supervise(hub, control, Arc::new(config), stats))
    }

    fn wanted(control: &ControlPlane, config: &TranscodeConfig, name: &str) -> String {
        control
            .settings(name)
            .map(|s| s.transcode)
            .unwrap_or_else(|| config.default.clone())
    }

    fn reconcile(
        hub: &Hub,
        control: &ControlPlane,
        config: &TranscodeConfig,
        stats: &TranscodeStats,
        running: &mut HashMap<String, Running>,
        name: &str,
    ) {
        let Ok(source) = StreamPath::live(name) else {
            return;
        };
        let want = wanted(control, config, name);
        let live = hub.is_publishing(&source);
        if let Some(r) = running.get(name)
            && (r.profile != want || r.task.is_finished())
        {
            if !r.task.is_finished() {
                info!(stream = %name, from = %r.profile, to = %want, "transcode setting changed");
            }
            let _ = r.stop.send(true);
            running.remove(name);
        }
        if want == "off" || !live || running.contains_key(name) {
            return;
        }
        let Some(ladder) = config.profiles.get(&want).cloned() else {
            warn!(stream = %name, profile = %want, "unknown transcode profile");
            return;
        };
        let (stop, stop_rx) = watch::channel(false);
        let hub = hub.clone();
        let counters = Arc::new(LadderRunStats::default());
        stats.lock().insert(
            name.to_owned(),
            Registered {
                profile: want.clone(),
                since: Instant::now(),
                stats: counters.clone(),
            },
        );
        let task = tokio::spawn({
            let name = name.to_owned();
            let stats = stats.clone();
            async move {
                let r = ugc_codec::transcode::run_ladder_with_stats(
                    hub,
                    source,
                    ladder,
                    stop_rx,
                    counters.clone(),
                )
                .await;
                if let Err(e) = r {
                    warn!(stream = %name, error = %e, "transcoding not possible");
                }
                // Unless a newer ladder of the stream registered since.
                let mut running = stats.lock();
                if running
                    .get(&name)
                    .is_some_and(|r| Arc::ptr_eq(&r.stats, &counters))
                {
                    running.remove(&name);
                }
            }
        });
        running.insert(
            name.to_owned(),
            Running {
                profile: want,
                stop,
                task,
            },
        );
    }

    async fn supervise(
        hub: Hub,
        control: ControlPlane,
        config: Arc<TranscodeConfig>,
        stats: TranscodeStats,
    ) {
        let mut watch = hub.watch();
        let mut changes = control.subscribe_changes();
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let top_level = |full: &StreamPath| crate::ingest::stream_name(full).map(str::to_owned);
        loop {
            tokio::select! {
                n = watch.next() => match n {
                    Some(full) => {
                        if let Some(n) = top_level(&full) {
                            reconcile(&hub, &control, &config, &stats, &mut running, &n);
                        }
                    }
                    None => return,
                },
                c = changes.recv() => match c {
                    Ok(change) => reconcile(&hub, &control, &config, &stats, &mut running, &change.name),
                    Err(RecvError::Lagged(_)) => {
                        for full in hub.stream_names() {
                            if let Some(n) = top_level(&full) {
                                reconcile(&hub, &control, &config, &stats, &mut running, &n);
                            }
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    // Streams that ended or came back (a reconnecting
                    // publisher keeps its Hub stream: no watch event).
                    let names: Vec<String> = running.keys().cloned().chain(
                        hub.stream_names().iter().filter_map(top_level)
                    ).collect();
                    for n in names {
                        reconcile(&hub, &control, &config, &stats, &mut running, &n);
                    }
                }
            }
        }
    }
}

/// Without the `ffmpeg` feature: say once that transcoding is off.
#[cfg(not(feature = "ffmpeg"))]
pub fn spawn(
    _hub: ugc_core::Hub,
    _control: ugc_auth::ControlPlane,
    config: TranscodeConfig,
    _stats: TranscodeStats,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if config.default != "off" || config.profiles.len() > 1 {
            tracing::warn!("built without the `ffmpeg` feature: transcoding is unavailable");
        }
    })
}
