//! DVR policies: how deep each stream's archive goes, how far back its live
//! playlist rewinds and whether its finished recordings move to S3, from a
//! per-stream setting (a control plane's `dvr_hours`, through any lookup),
//! per-stream overrides and defaults; and re-running retention when
//! settings change.
//!
//! ```
//! use ugc_core::StreamPath;
//! use ugc_dvr::policy::{DvrPolicy, StreamPolicy};
//!
//! let mut policy = DvrPolicy { hours: 2, ..DvrPolicy::default() };
//! policy.streams.insert("news".into(), StreamPolicy { hours: Some(24), ..StreamPolicy::default() });
//! // The control plane says 48 h for "show" and nothing (0) for the rest.
//! let depth = policy.depth(|s: &StreamPath| Some(if s.name() == "show" { 48 } else { 0 }));
//! let hours = |n: &str| depth(&StreamPath::live(n).unwrap());
//! assert_eq!((hours("show"), hours("news"), hours("other")), (48, 24, 2));
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast;
use ugc_core::StreamPath;

use crate::archive::{Archive, DepthPolicy};

/// One stream's own DVR settings (`None`: the [`DvrPolicy`]'s default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct StreamPolicy {
    /// Archive depth in hours (a setting above 0 wins over it).
    pub hours: Option<u32>,
    /// Rewind window of the live playlist in seconds.
    pub rewind_s: Option<u32>,
    /// Move finished recordings to S3 (default true when an S3 tier is
    /// set).
    pub s3: Option<bool>,
}

/// The DVR policy of a server: defaults, and overrides by stream name (the
/// `<name>` of `<app>/<name>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DvrPolicy {
    /// Archive depth in hours of streams without a setting or an override
    /// (0 = not recorded).
    pub hours: u32,
    /// Rewind window of live playlists in seconds (0 = the live window
    /// only).
    pub rewind_s: u32,
    /// Overrides by stream name.
    pub streams: HashMap<String, StreamPolicy>,
}

/// A window per stream in seconds (the DVR origin's rewind policy).
pub type WindowPolicy = Arc<dyn Fn(&StreamPath) -> u32 + Send + Sync>;

impl DvrPolicy {
    /// The archive depth of a stream: `setting(stream)` when above 0 (a
    /// control plane's `dvr_hours`, where 0 means "not set"), else the
    /// stream's override, else [`hours`](Self::hours). For
    /// [`ArchiveConfig::depth`](crate::ArchiveConfig::depth); asked for
    /// every segment, so a changed setting applies at once.
    pub fn depth(
        &self,
        setting: impl Fn(&StreamPath) -> Option<u32> + Send + Sync + 'static,
    ) -> DepthPolicy {
        let default_hours = self.hours;
        let streams = self.streams.clone();
        Arc::new(move |stream: &StreamPath| {
            setting(stream)
                .filter(|&h| h > 0)
                .or_else(|| streams.get(stream.name()).and_then(|s| s.hours))
                .unwrap_or(default_hours)
        })
    }

    /// The rewind window of a stream's live playlist in seconds: its
    /// override, else [`rewind_s`](Self::rewind_s).
    pub fn rewind(&self) -> WindowPolicy {
        let default = self.rewind_s;
        let streams = self.streams.clone();
        Arc::new(move |stream: &StreamPath| {
            streams
                .get(stream.name())
                .and_then(|s| s.rewind_s)
                .unwrap_or(default)
        })
    }

    /// Which streams' finished recordings go to S3: all but those whose
    /// override says `s3 = false`.
    #[cfg(feature = "s3")]
    pub fn s3_streams(&self) -> crate::s3::StreamFilter {
        let streams = self.streams.clone();
        crate::s3::StreamFilter(Arc::new(move |stream: &StreamPath| {
            streams
                .get(stream.name())
                .and_then(|s| s.s3)
                .unwrap_or(true)
        }))
    }
}

/// Re-runs retention ([`Archive::sweep`]) whenever `changes` says a
/// stream's settings changed (or the receiver lagged), so a lower depth
/// applies at once. Returns when `changes` closes.
pub async fn sweep_on_changes<C: Clone + std::fmt::Debug>(
    archive: Archive,
    mut changes: broadcast::Receiver<C>,
) {
    loop {
        match changes.recv().await {
            Ok(change) => {
                tracing::debug!(?change, "dvr: settings changed");
                archive.sweep();
            }
            Err(broadcast::error::RecvError::Lagged(_)) => archive.sweep(),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_and_defaults_by_stream_name() {
        let mut policy = DvrPolicy {
            hours: 1,
            rewind_s: 60,
            ..DvrPolicy::default()
        };
        policy.streams.insert(
            "a".into(),
            StreamPolicy {
                hours: Some(5),
                rewind_s: Some(600),
                s3: Some(false),
            },
        );
        let a = StreamPath::live("a").unwrap();
        let b = StreamPath::live("b").unwrap();
        let depth = policy.depth(|_| None);
        assert_eq!((depth(&a), depth(&b)), (5, 1));
        let depth = policy.depth(|_| Some(0));
        assert_eq!(depth(&a), 5, "a setting of 0 is no setting");
        let depth = policy.depth(|_| Some(9));
        assert_eq!((depth(&a), depth(&b)), (9, 9));
        let rewind = policy.rewind();
        assert_eq!((rewind(&a), rewind(&b)), (600, 60));
        #[cfg(feature = "s3")]
        {
            let s3 = policy.s3_streams();
            assert_eq!(((s3.0)(&a), (s3.0)(&b)), (false, true));
        }
    }
}
