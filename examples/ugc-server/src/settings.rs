//! Where each stage's per-stream settings come from: the control plane (any
//! `SettingsSource`: in-process here, `RemoteSettings` on a media node),
//! then the config file's `[streams.<name>]`, then its defaults.

use std::collections::BTreeMap;
use std::sync::Arc;

use ugc_auth::{SettingsSource, stream_name};
use ugc_core::StreamPath;

use crate::config::StreamOverrides;

type Overrides = BTreeMap<String, StreamOverrides>;

/// SRT passphrases: the control plane's, else the config's.
pub fn srt_passphrase(
    settings: impl SettingsSource,
    overrides: Overrides,
) -> ugc_proto::srt::server::PassphraseLookup {
    Arc::new(move |stream: &StreamPath| {
        let name = stream_name(stream)?;
        settings
            .settings(name)
            .and_then(|s| s.srt_passphrase)
            .or_else(|| overrides.get(name).and_then(|o| o.srt_passphrase.clone()))
    })
}

/// Restream targets: the control plane's list when not empty, else the
/// config's.
pub fn restream_targets(
    settings: impl SettingsSource,
    overrides: Overrides,
) -> ugc_proto::rtmp::restream::RestreamTargets {
    Arc::new(move |stream: &StreamPath| {
        let Some(name) = stream_name(stream) else {
            return Vec::new();
        };
        let api = settings
            .settings(name)
            .map(|s| s.restream)
            .unwrap_or_default();
        if !api.is_empty() {
            return api;
        }
        overrides
            .get(name)
            .map(|o| o.restream.clone())
            .unwrap_or_default()
    })
}

/// The transcode profile: the control plane's, else `default` (`off`: none).
#[cfg(feature = "ffmpeg")]
pub fn transcode_profile(
    settings: impl SettingsSource,
    default: String,
) -> ugc_codec::transcode::ProfileOf {
    Arc::new(move |stream: &StreamPath| {
        let name = stream_name(stream)?;
        let profile = settings
            .settings(name)
            .map(|s| s.transcode)
            .unwrap_or_else(|| default.clone());
        (profile != "off").then_some(profile)
    })
}

/// The archive depth the control plane sets (`dvr_hours`; 0 is unset).
pub fn dvr_hours(
    settings: impl SettingsSource,
) -> impl Fn(&StreamPath) -> Option<u32> + Send + Sync + 'static {
    move |stream: &StreamPath| settings.settings(stream.name()).map(|s| s.dvr_hours)
}
