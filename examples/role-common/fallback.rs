//! The fallback flags of a node that carries live streams, and their
//! wiring (`ugc_codec::transcode::fallback`): a publishing node loops it
//! into a stream whose publisher dropped (it then goes through the ladder
//! like live, so every rendition switches at the same point); an origin
//! loops it into the renditions nobody feeds any more while their source
//! arrives (every transcoder down) after `--fallback-after-ms`.

use std::path::PathBuf;
use std::sync::Arc;

use ugc_core::Hub;
use ugc_core::fallback::FallbackMedia;

/// What viewers get while a stream waits for its source.
#[derive(Debug, clap::Args)]
pub struct FallbackFlags {
    /// The node's fallback: `slate` ("stream will be back shortly" in the
    /// stream's codecs and size), `off`, or a video file looped in each
    /// stream's shape. A stream's own `fallback` setting comes first.
    #[arg(long, env = "UGC_FALLBACK", default_value = "slate",
          value_parser = |s: &str| FallbackMedia::node_setting(s))]
    pub fallback: FallbackMedia,
    /// Where the file names of streams' own `fallback` settings are looked
    /// up (none: such streams get the node's fallback).
    #[arg(long, env = "UGC_FALLBACK_DIR")]
    pub fallback_dir: Option<PathBuf>,
}

/// Loops each stream's fallback (its own setting through `settings`, else
/// the flags') into `hub`'s streams without a publisher, for `hold` (the
/// publisher grace), after `after` without one; renditions too with
/// `renditions`.
#[cfg(feature = "ffmpeg")]
pub fn spawn(
    hub: &Hub,
    flags: &FallbackFlags,
    settings: &ugc_auth::RemoteSettings,
    config: ugc_core::fallback::FallbackConfig,
) -> anyhow::Result<()> {
    use ugc_auth::lookup::{self, Overrides};
    if let Some(dir) = &flags.fallback_dir {
        anyhow::ensure!(
            dir.is_dir(),
            "--fallback-dir {} is no directory",
            dir.display()
        );
    }
    tracing::info!(fallback = ?flags.fallback, after_ms = config.after.as_millis(), "fallback");
    ugc_codec::transcode::fallback::spawn(
        hub,
        ugc_codec::transcode::fallback::FallbackSettings {
            default: flags.fallback.clone(),
            dir: flags.fallback_dir.clone(),
            own: Arc::new(lookup::fallback(settings.clone(), Overrides::default())),
            config,
        },
    );
    Ok(())
}

/// Without the `ffmpeg` feature there is nothing to encode a slate with.
#[cfg(not(feature = "ffmpeg"))]
pub fn spawn(
    _: &Hub,
    flags: &FallbackFlags,
    _: &ugc_auth::RemoteSettings,
    _: ugc_core::fallback::FallbackConfig,
) -> anyhow::Result<()> {
    if flags.fallback != FallbackMedia::Off {
        tracing::warn!("built without the `ffmpeg` feature: no fallback");
    }
    Ok(())
}
