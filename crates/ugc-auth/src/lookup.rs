//! Per-stream lookups for the media stages, over any [`SettingsSource`]
//! (the in-process [`ControlPlane`](crate::ControlPlane), or
//! [`RemoteSettings`](crate::RemoteSettings) on a media node): the control
//! plane's setting first, then a config file's `[streams.<name>]`
//! ([`StreamOverrides`]), then a default. Each answers from memory, as the
//! stages call them per stream (and the ladder supervisor on every pass);
//! wrap one in an `Arc` for the stage's lookup type.
//!
//! ```
//! use std::collections::BTreeMap;
//! use ugc_auth::lookup::{self, StreamOverrides};
//! use ugc_core::StreamPath;
//! # fn run(settings: impl ugc_auth::SettingsSource + Clone) {
//! let overrides = BTreeMap::from([("demo".to_owned(), StreamOverrides {
//!     restream: vec!["rtmp://a.example/live/KEY".into()],
//!     ..StreamOverrides::default()
//! })]);
//! let targets = lookup::restream_targets(settings.clone(), overrides);
//! let profile = lookup::transcode_profile(settings, "off".into());
//! let demo = StreamPath::live("demo").unwrap();
//! let _ = (targets(&demo), profile(&demo));
//! # }
//! ```

use std::collections::BTreeMap;

use ugc_core::StreamPath;

use crate::ops::stream_name;
use crate::provision::SettingsSource;

/// `[streams.<name>]` of a config file: settings of one stream that apply
/// when the control plane has none for that field.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOverrides {
    /// SRT passphrase (10..=79 characters).
    pub srt_passphrase: Option<String>,
    /// Restream targets (`rtmp://` / `rtmps://` URLs with the key).
    #[serde(default)]
    pub restream: Vec<String>,
    /// The stream's fallback (see [`crate::validate::fallback`]).
    pub fallback: Option<String>,
    /// The stream's source timeout in ms.
    pub source_timeout_ms: Option<u32>,
}

/// Overrides by stream name.
pub type Overrides = BTreeMap<String, StreamOverrides>;

/// The SRT passphrase of a `live/<name>` stream: the control plane's, else
/// the override's.
pub fn srt_passphrase(
    settings: impl SettingsSource,
    overrides: Overrides,
) -> impl Fn(&StreamPath) -> Option<String> + Send + Sync + 'static {
    move |stream: &StreamPath| {
        let name = stream_name(stream)?;
        settings
            .settings(name)
            .and_then(|s| s.srt_passphrase)
            .or_else(|| overrides.get(name).and_then(|o| o.srt_passphrase.clone()))
    }
}

/// The restream targets of a `live/<name>` stream: the control plane's
/// list when not empty, else the override's.
pub fn restream_targets(
    settings: impl SettingsSource,
    overrides: Overrides,
) -> impl Fn(&StreamPath) -> Vec<String> + Send + Sync + 'static {
    move |stream: &StreamPath| {
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
    }
}

/// The transcode profile of a `live/<name>` stream: the control plane's,
/// else `default`; `None` for `off`.
pub fn transcode_profile(
    settings: impl SettingsSource,
    default: String,
) -> impl Fn(&StreamPath) -> Option<String> + Send + Sync + 'static {
    move |stream: &StreamPath| {
        let name = stream_name(stream)?;
        let profile = settings
            .settings(name)
            .map(|s| s.transcode)
            .unwrap_or_else(|| default.clone());
        (profile != "off").then_some(profile)
    }
}

/// The fallback of a `live/<name>` stream (see
/// [`crate::validate::fallback`]): the control plane's, else the
/// override's; `None` for the media node's own.
pub fn fallback(
    settings: impl SettingsSource,
    overrides: Overrides,
) -> impl Fn(&StreamPath) -> Option<String> + Send + Sync + 'static {
    move |stream: &StreamPath| {
        let name = stream_name(stream)?;
        settings
            .settings(name)
            .and_then(|s| s.fallback)
            .or_else(|| overrides.get(name).and_then(|o| o.fallback.clone()))
    }
}

/// The source timeout of a `live/<name>` stream, for
/// `ugc_core::Hub::with_source_timeouts`: the control plane's, else the
/// override's (0 in either is "not set"); `None` for the media node's.
pub fn source_timeout(
    settings: impl SettingsSource,
    overrides: Overrides,
) -> impl Fn(&StreamPath) -> Option<std::time::Duration> + Send + Sync + 'static {
    move |stream: &StreamPath| {
        let name = stream_name(stream)?;
        let ms = settings
            .settings(name)
            .map(|s| s.source_timeout_ms)
            .filter(|ms| *ms != 0)
            .or_else(|| overrides.get(name).and_then(|o| o.source_timeout_ms))
            .filter(|ms| *ms != 0)?;
        Some(std::time::Duration::from_millis(u64::from(ms)))
    }
}

/// The archive depth the control plane sets for a stream and its
/// renditions (`dvr_hours`, where 0 means unset), for
/// `ugc_dvr::policy::DvrPolicy::depth`.
pub fn dvr_hours(
    settings: impl SettingsSource,
) -> impl Fn(&StreamPath) -> Option<u32> + Send + Sync + 'static {
    move |stream: &StreamPath| settings.settings(stream.name()).map(|s| s.dvr_hours)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::sync::broadcast;

    use super::*;
    use crate::{StreamChange, StreamSettings};

    /// One stream, `api`, with settings of its own.
    struct OneStream(StreamSettings);

    impl SettingsSource for OneStream {
        fn settings(&self, name: &str) -> Option<StreamSettings> {
            (name == "api").then(|| self.0.clone())
        }
        fn subscribe_changes(&self) -> broadcast::Receiver<StreamChange> {
            broadcast::channel(1).1
        }
    }

    fn api(restream: &[&str], passphrase: Option<&str>) -> OneStream {
        OneStream(StreamSettings {
            private: false,
            transcode: "mobile".into(),
            dvr_hours: 5,
            restream: restream.iter().map(|s| s.to_string()).collect(),
            srt_passphrase: passphrase.map(Into::into),
            fallback: Some("https://api/loop.mp4".into()),
            source_timeout_ms: 0,
        })
    }

    fn overrides() -> Overrides {
        ["api", "file"]
            .into_iter()
            .map(|n| {
                let o = StreamOverrides {
                    srt_passphrase: Some(format!("{n}-file-passphrase")),
                    restream: vec![format!("rtmp://file/{n}")],
                    fallback: Some(format!("{n}.mp4")),
                    source_timeout_ms: Some(1500),
                };
                (n.to_owned(), o)
            })
            .collect()
    }

    fn path(p: &str) -> StreamPath {
        StreamPath::parse(p).unwrap()
    }

    #[test]
    fn the_control_plane_wins_then_the_overrides() {
        let pass = srt_passphrase(api(&[], Some("api-passphrase")), overrides());
        assert_eq!(pass(&path("live/api")).unwrap(), "api-passphrase");
        assert_eq!(pass(&path("live/file")).unwrap(), "file-file-passphrase");
        assert_eq!(pass(&path("live/none")), None);
        let pass = srt_passphrase(api(&[], None), overrides());
        assert_eq!(pass(&path("live/api")).unwrap(), "api-file-passphrase");

        let targets = restream_targets(api(&["rtmp://api/x"], None), overrides());
        assert_eq!(targets(&path("live/api")), ["rtmp://api/x"]);
        assert_eq!(targets(&path("live/file")), ["rtmp://file/file"]);
        // An empty list in the control plane is "not set".
        let targets = restream_targets(api(&[], None), overrides());
        assert_eq!(targets(&path("live/api")), ["rtmp://file/api"]);
    }

    #[test]
    fn renditions_and_other_apps_have_no_settings_but_their_depth() {
        let pass = srt_passphrase(api(&[], Some("api-passphrase")), overrides());
        let targets = restream_targets(api(&["rtmp://api/x"], None), overrides());
        let profile = transcode_profile(api(&[], None), "default".into());
        for p in ["live/api/720p", "other/api"] {
            assert_eq!(
                (pass(&path(p)), targets(&path(p)), profile(&path(p))),
                (None, vec![], None)
            );
        }
        let hours = dvr_hours(api(&[], None));
        assert_eq!(hours(&path("live/api/720p")), Some(5));
        assert_eq!(hours(&path("live/file")), None);
    }

    #[test]
    fn failover_settings_come_from_the_control_plane_then_the_overrides() {
        let fallback = fallback(api(&[], None), overrides());
        assert_eq!(fallback(&path("live/api")).unwrap(), "https://api/loop.mp4");
        assert_eq!(fallback(&path("live/file")).unwrap(), "file.mp4");
        assert_eq!(fallback(&path("live/none")), None);
        assert_eq!(fallback(&path("live/api/720p")), None);
        // 0 in the control plane is "not set": the override's.
        let timeout = source_timeout(api(&[], None), overrides());
        let ms = |p: &str| timeout(&path(p)).map(|d| d.as_millis());
        assert_eq!(ms("live/api"), Some(1500));
        assert_eq!(ms("live/none"), None);
        let mut own = api(&[], None);
        own.0.source_timeout_ms = 800;
        let timeout = source_timeout(own, Overrides::new());
        assert_eq!(timeout(&path("live/api")).map(|d| d.as_millis()), Some(800));
        assert_eq!(timeout(&path("live/api/720p")), None);
    }

    #[test]
    fn transcode_profile_defaults_and_off() {
        let profile = transcode_profile(api(&[], None), "default".into());
        assert_eq!(profile(&path("live/api")).unwrap(), "mobile");
        assert_eq!(profile(&path("live/file")).unwrap(), "default");
        let profile = transcode_profile(api(&[], None), "off".into());
        assert_eq!(profile(&path("live/file")), None);
    }
}
