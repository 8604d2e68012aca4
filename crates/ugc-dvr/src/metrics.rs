//! The archive's and the S3 uploader's counters as `/metrics` families
//! ([`Archive::write_metrics`], `Uploader::write_metrics`).

use std::sync::atomic::Ordering::Relaxed;

use ugc_core::metrics::{Exposition, Family};

use crate::archive::{Archive, ArchiveStats};

impl Archive {
    /// The archive's families: `ugc_dvr_{segments_written,segments_dropped,
    /// write_errors,segments_expired,segments_imported,recordings_deleted}_total`, without
    /// labels.
    pub fn write_metrics(&self, m: &mut Exposition) {
        let archived: &[Family<ArchiveStats>] = &[
            Family::counter(
                "ugc_dvr_segments_written_total",
                "Segments written to the archive.",
                |a| a.segments_written.load(Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_segments_dropped_total",
                "Segments not archived: queue full, paused after an error, or a failed write.",
                |a| a.segments_dropped.load(Relaxed) as f64,
            ),
            Family::counter("ugc_dvr_write_errors_total", "Archive write errors.", |a| {
                a.write_errors.load(Relaxed) as f64
            }),
            Family::counter(
                "ugc_dvr_segments_expired_total",
                "Segments removed by retention.",
                |a| a.segments_expired.load(Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_segments_imported_total",
                "Segments copied into the archive from another origin (replication).",
                |a| a.segments_imported.load(Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_recordings_deleted_total",
                "Recordings deleted on request (API), with their objects in the remote tier.",
                |a| a.recordings_deleted.load(Relaxed) as f64,
            ),
        ];
        m.families(archived, std::slice::from_ref(self.stats()), |_| Vec::new());
    }
}

#[cfg(feature = "s3")]
impl crate::s3::Uploader {
    /// The uploader's families: `ugc_dvr_s3_{sessions_uploaded,retries,
    /// objects_deleted,aborted}_total`, without labels.
    pub fn write_metrics(&self, m: &mut Exposition) {
        use crate::s3::UploadStats;
        let uploaded: &[Family<UploadStats>] = &[
            Family::counter(
                "ugc_dvr_s3_sessions_uploaded_total",
                "Recording sessions uploaded to the object store and verified.",
                |u| u.uploaded.load(Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_s3_retries_total",
                "Object store requests retried.",
                |u| u.retries.load(Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_s3_objects_deleted_total",
                "Recordings past their depth deleted from the object store.",
                |u| u.deleted.load(Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_s3_aborted_total",
                "Multipart uploads aborted to start over.",
                |u| u.aborted.load(Relaxed) as f64,
            ),
        ];
        m.families(uploaded, std::slice::from_ref(self.stats()), |_| Vec::new());
    }
}
