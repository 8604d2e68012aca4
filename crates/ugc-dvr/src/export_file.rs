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
