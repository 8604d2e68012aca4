//! A node's fallback, wired: every stream of a [`Hub`] left without a
//! publisher loops its fallback ([`ugc_core::fallback::supervise`]), a clip
//! made here ([`slate`], [`fallback_file`], [`fallback_url`]) in the
//! stream's shape, once per fallback and shape, and shared.
//!
//! Which fallback a stream gets: its own setting (the control plane's
//! `fallback`, through [`FallbackSettings::own`]) else the node's
//! ([`FallbackSettings::default`]); see
//! [`FallbackMedia::for_stream`]. Every role that carries live streams
//! runs it: `ugc-server`, a publishing node (a publisher that drops), an
//! origin (with [`FallbackConfig::renditions`] and a wait: every
//! transcoder down).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;
use ugc_core::fallback::{Clip, FallbackConfig, FallbackMedia};
use ugc_core::{Hub, StreamPath, Tracks};

use super::{fallback_file, fallback_url, slate_for_segments};

/// A stream's own fallback setting (`None`: the node's).
pub type FallbackOf = Arc<dyn Fn(&StreamPath) -> Option<String> + Send + Sync>;

/// How long a stream's own fallback (a file, a URL) may take to fetch and
/// encode before the slate is used instead: 30 s of a 720p file took about
/// 6 s on one core of a 2-core VM (release), 1080p about twice that.
pub const OWN_CLIP_LIMIT: Duration = Duration::from_secs(60);

/// Media the clip cache may hold: 20 shapes of a 30 s 1080p file clip, or
/// thousands of slates. Over it, the cache starts again.
pub const CACHE_BYTES: usize = 256 << 20;

/// What [`spawn`] loops, and when.
#[derive(Clone)]
pub struct FallbackSettings {
    /// The node's fallback.
    pub default: FallbackMedia,
    /// Where a stream's own fallback file name is looked up (none: such
    /// names get the node's).
    pub dir: Option<PathBuf>,
    /// A stream's own setting.
    pub own: FallbackOf,
    /// Hold, wait and renditions.
    pub config: FallbackConfig,
}

impl std::fmt::Debug for FallbackSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackSettings")
            .field("default", &self.default)
            .field("dir", &self.dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Loops each stream's fallback into every stream of `hub` left without a
/// publisher (see the [module](self) doc); runs until `hub` is dropped.
pub fn spawn(hub: &Hub, settings: FallbackSettings) -> tokio::task::JoinHandle<()> {
    let config = settings.config.clone();
    tokio::spawn(ugc_core::fallback::supervise(
        hub.clone(),
        clips(settings),
        config,
    ))
}

type Cell = Arc<OnceCell<Option<Arc<Clip>>>>;

/// A clip on its way.
pub type ClipFuture = std::pin::Pin<Box<dyn Future<Output = Option<Arc<Clip>>> + Send>>;

/// The `clip_for` of [`ugc_core::fallback::supervise`]: a stream's clip,
/// made once per fallback and track shape (ids, codecs' sizes, rates,
/// channels) and shared by every caller while it is being made. A file or
/// URL that fails (gone, unreadable, no media) or takes over
/// [`OWN_CLIP_LIMIT`] (a server that sends a byte now and then) leaves the
/// slate: the stream is not kept waiting (the FFmpeg thread finishes on its
/// own).
pub fn clips(
    settings: FallbackSettings,
) -> impl Fn(StreamPath, Tracks) -> ClipFuture + Send + Sync + 'static {
    let cache: Arc<std::sync::Mutex<HashMap<String, Cell>>> = Arc::default();
    move |stream: StreamPath, tracks: Tracks| {
        let cache = Arc::clone(&cache);
        let align = settings.config.align;
        let own = (settings.own)(&stream);
        let fallback = settings
            .default
            .for_stream(own.as_deref(), settings.dir.as_deref())
            .unwrap_or_else(|why| {
                tracing::warn!(stream = %stream, own = ?own, "{why}: the node's fallback");
                settings.default.clone()
            });
        Box::pin(async move {
            if fallback == FallbackMedia::Off {
                return None;
            }
            let key = format!(
                "{fallback:?} {:?}",
                tracks.iter().map(|t| (t.id, &t.params)).collect::<Vec<_>>()
            );
            let cell = {
                let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                let held: usize = cache
                    .values()
                    .filter_map(|c| c.get().cloned().flatten())
                    .map(|c| c.bytes())
                    .sum();
                if held > CACHE_BYTES {
                    cache.clear();
                }
                Arc::clone(cache.entry(key).or_default())
            };
            let made = cell.get_or_init(|| make(stream, fallback, tracks, align));
            made.await.clone()
        })
    }
}

/// The clip of `fallback` in the shape of `tracks`, or the slate when the
/// file or URL fails, either with a keyframe at the start of each segment
/// of `align` ([`FallbackConfig::align`]); `None` when even the slate
/// cannot be made.
async fn make(
    stream: StreamPath,
    fallback: FallbackMedia,
    tracks: Tracks,
    align: Option<Duration>,
) -> Option<Arc<Clip>> {
    let own = match &fallback {
        FallbackMedia::File(_) | FallbackMedia::Url(_) => {
            let shape = tracks.clone();
            let job = tokio::task::spawn_blocking(move || match &fallback {
                FallbackMedia::File(path) => fallback_file(path, &shape, align),
                FallbackMedia::Url(url) => fallback_url(url, &shape, align),
                _ => Err("no file or URL".into()),
            });
            match tokio::time::timeout(OWN_CLIP_LIMIT, job).await {
                Ok(Ok(Ok(clip))) => Some(clip),
                Ok(Ok(Err(e))) => {
                    tracing::warn!(
                        stream = %stream,
                        error = %e,
                        "the fallback file failed: the slate instead"
                    );
                    None
                }
                Ok(Err(_)) => None,
                Err(_) => {
                    tracing::warn!(
                        stream = %stream,
                        limit_s = OWN_CLIP_LIMIT.as_secs(),
                        "the fallback file takes too long: the slate instead"
                    );
                    None
                }
            }
        }
        FallbackMedia::Slate | FallbackMedia::Off => None,
    };
    let made = match own {
        Some(clip) => Ok(Ok(clip)),
        None => tokio::task::spawn_blocking(move || slate_for_segments(&tracks, align)).await,
    };
    match made {
        Ok(Ok(clip)) => Some(Arc::new(clip)),
        Ok(Err(e)) => {
            tracing::warn!(stream = %stream, error = %e, "no fallback slate for this stream");
            None
        }
        Err(_) => None,
    }
}
