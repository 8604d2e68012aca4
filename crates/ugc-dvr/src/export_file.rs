//! The DVR export as a command runs it: an archived range of a stream to a
//! progressive MP4 file, written off the reactor to `<file>.part` and
//! renamed when complete, with progress. The HTTP route serves the same
//! [`ExportPlan`](crate::export::ExportPlan) as a body instead.

use std::io;
use std::path::{Path, PathBuf};

use crate::archive::{Archive, TrackKey};
use crate::export::ExportError;

/// What [`export_to_file`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileExport {
    /// Bytes written.
    pub bytes: u64,
    /// Duration of the longest track in milliseconds.
    pub duration_ms: u64,
    /// Archived segments it holds.
    pub segments: usize,
    /// The track set changed inside the range: the export stops before
    /// the change.
    pub truncated: bool,
}

/// A range as a person asks for one (`ugc-server dvr export --stream news
/// --from -600 --duration 60`), resolved against the clock: the track and
/// `[from_ms, to_ms)` in unix ms for [`export_to_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRange {
    /// The stream's source rendition.
    pub key: TrackKey,
    /// Start, unix ms.
    pub from_ms: i64,
    /// End (exclusive), unix ms.
    pub to_ms: i64,
}

impl ExportRange {
    /// `stream` is `name` (application `live`) or `app/name`; `from_s` is
    /// unix seconds, or when negative seconds before `now_ms`, and may not
    /// be after `now_ms`; `duration_s` is within
    /// 1..=[`MAX_RANGE_SECONDS`](crate::range::MAX_RANGE_SECONDS).
    pub fn resolve(
        stream: &str,
        from_s: i64,
        duration_s: u32,
        now_ms: i64,
    ) -> Result<ExportRange, FileExportError> {
        let bad = |m: String| FileExportError::Request(m);
        let path = match stream.contains('/') {
            true => ugc_core::StreamPath::parse(stream),
            false => ugc_core::StreamPath::live(stream),
        }
        .map_err(|e| bad(format!("bad stream name {stream:?}: {e}")))?;
        if !(1..=crate::range::MAX_RANGE_SECONDS).contains(&duration_s) {
            return Err(bad(format!(
                "the duration must be within 1..={} seconds, got {duration_s}",
                crate::range::MAX_RANGE_SECONDS
            )));
        }
        let now_s = now_ms.div_euclid(1000);
        let from_s = match from_s < 0 {
            true => now_s.saturating_add(from_s),
            false => from_s,
        };
        if from_s > now_s {
            return Err(bad(format!("the start {from_s} is in the future")));
        }
        let from_ms = from_s.saturating_mul(1000);
        Ok(ExportRange {
            key: TrackKey::source(&path),
            from_ms,
            to_ms: from_ms.saturating_add(i64::from(duration_s) * 1000),
        })
    }
}

/// Why [`export_to_file`] wrote nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileExportError {
    /// The archive has no segment of the stream in the range (the caller
    /// asked for a range that was not recorded).
    #[error(
        "nothing of {stream} archived in [{}, {}) (archive: {})",
        from_ms / 1000,
        to_ms / 1000,
        match bounds {
            Some((a, b)) => format!("{}..{}", a / 1000, b / 1000),
            None => "empty".into(),
        }
    )]
    NothingArchived {
        /// The stream.
        stream: ugc_core::StreamPath,
        /// Start of the range, unix ms.
        from_ms: i64,
        /// End of the range, unix ms.
        to_ms: i64,
        /// What the archive has of the stream (unix ms), if anything.
        bounds: Option<(i64, i64)>,
    },
    /// The request itself is wrong: a bad stream name, a duration out of
    /// range, a start in the future ([`ExportRange::resolve`]).
    #[error("{0}")]
    Request(String),
    /// Reading the archived files failed, or they are not what the archive
    /// wrote.
    #[error("planning the export: {0}")]
    Plan(#[from] ExportError),
    /// Writing the output failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Exports `key`'s archive over `[from_ms, to_ms)` (unix ms) as a
/// progressive MP4 to `output`, without re-encoding: written to
/// `output` with the extension `mp4.part`, then renamed to `output`, so
/// the file is whole or absent. Segments moved to S3 are read back through
/// the archive's remote store. `progress(bytes_done, bytes_total)` after
/// every piece. The writing runs on tokio's blocking pool.
pub async fn export_to_file(
    archive: &Archive,
    key: &TrackKey,
    from_ms: i64,
    to_ms: i64,
    output: &Path,
    mut progress: impl FnMut(u64, u64) + Send + 'static,
) -> Result<FileExport, FileExportError> {
    if archive.range(key, from_ms, to_ms).is_empty() {
        return Err(FileExportError::NothingArchived {
            stream: key.stream.clone(),
            from_ms,
            to_ms,
            bounds: archive.bounds(key),
        });
    }
    let plan = archive.plan_export(key, from_ms, to_ms).await?;
    if plan.truncated {
        tracing::warn!(
            "the track set changed inside the range: the export stops before the change"
        );
    }
    let tmp = output.with_extension("mp4.part");
    let output = output.to_owned();
    let write = move || -> Result<FileExport, FileExportError> {
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| FileExportError::Write { path, source }
        };
        let mut out = std::fs::File::create(&tmp).map_err(err(&tmp))?;
        let total = plan.len;
        let bytes = plan
            .write_file(&mut out, |done| progress(done, total))
            .map_err(err(&tmp))?;
        drop(out);
        std::fs::rename(&tmp, &output).map_err(err(&output))?;
        Ok(FileExport {
            bytes,
            duration_ms: plan.duration_ms,
            segments: plan.files.len(),
            truncated: plan.truncated,
        })
    };
    tokio::task::spawn_blocking(write)
        .await
        .map_err(|e| FileExportError::Write {
            path: PathBuf::new(),
            source: io::Error::other(e.to_string()),
        })?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_800_000_000_500;

    #[test]
    fn export_range_from_a_command_line() {
        let r = ExportRange::resolve("news", 1_799_999_000, 600, NOW_MS).unwrap();
        assert_eq!(r.key.stream.to_string(), "live/news");
        assert_eq!(r.key.rendition, crate::archive::SOURCE_RENDITION);
        assert_eq!((r.from_ms, r.to_ms), (1_799_999_000_000, 1_799_999_600_000));
        // Negative: seconds before now (whole seconds, as the flags are).
        let r = ExportRange::resolve("other/show", -3600, 60, NOW_MS).unwrap();
        assert_eq!(r.key.stream.to_string(), "other/show");
        assert_eq!((r.from_ms, r.to_ms), (1_799_996_400_000, 1_799_996_460_000));
        // Now itself is not in the future.
        assert!(ExportRange::resolve("news", 1_800_000_000, 1, NOW_MS).is_ok());
    }

    #[test]
    fn export_range_refusals_say_what_is_wrong() {
        for (stream, from, duration, says) in [
            ("bad name!", -10, 5, "bad stream name \"bad name!\""),
            (
                "news",
                -10,
                0,
                "the duration must be within 1..=86400 seconds, got 0",
            ),
            ("news", -10, 86_401, "within 1..=86400 seconds, got 86401"),
            (
                "news",
                1_800_000_001,
                5,
                "the start 1800000001 is in the future",
            ),
        ] {
            let e = ExportRange::resolve(stream, from, duration, NOW_MS).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}
