//! The archive's and the S3 uploader's counters as `/metrics` families
//! ([`Archive::write_metrics`], `Uploader::write_metrics`).

use std::sync::atomic::Ordering::Relaxed;

use ugc_core::metrics::{Exposition, Family};

use crate::archive::{Archive, ArchiveStats};

impl Archive {
    /// The archive's families: `ugc_dvr_{segments_written,segments_dropped,
    /// write_errors,segments_expired,segments_imported,segments_replaced,
    /// recordings_deleted,
    /// bytes_written}_total` and the gauge `ugc_dvr_write_queue`, without
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
                "ugc_dvr_segments_replaced_total",
                "Provisional segments (cut before this origin had seen enough of the stream) \
                 replaced by another origin's copy of the same time.",
                |a| a.segments_replaced.load(Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_recordings_deleted_total",
                "Recordings deleted on request (API), with their objects in the remote tier.",
                |a| a.recordings_deleted.load(Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_bytes_written_total",
                "Segment bytes written to the archive's local disk.",
                |a| a.bytes_written.load(Relaxed) as f64,
            ),
            Family::gauge(
                "ugc_dvr_write_queue",
                "Segments and init segments waiting for the archive's writer (the disk keeping up: near 0).",
                |a| a.write_queue.load(Relaxed) as f64,
            ),
        ];
        m.families(archived, std::slice::from_ref(self.stats()), |_| Vec::new());
    }
}

#[cfg(feature = "s3")]
impl crate::s3::Uploader {
    /// The uploader's families: `ugc_dvr_s3_{sessions_uploaded,retries,
    /// objects_deleted,aborted,bytes_uploaded,peer_objects,peer_segments}_total`
    /// and the gauge
    /// `ugc_dvr_s3_queue`, without labels.
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
            Family::counter(
                "ugc_dvr_s3_bytes_uploaded_total",
                "Recording bytes the object store accepted (parts of multipart uploads).",
                |u| u.bytes_uploaded.load(Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_s3_peer_objects_total",
                "Other nodes' recording objects in the shared bucket read into this archive's index.",
                |u| u.peer_objects.load(Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_s3_peer_segments_total",
                "Segments of other nodes' recording objects read into this archive's index.",
                |u| u.peer_segments.load(Relaxed) as f64,
            ),
            Family::gauge(
                "ugc_dvr_s3_queue",
                "Recording sessions waiting for their upload or being uploaded.",
                |u| u.queued.load(Relaxed) as f64,
            ),
        ];
        m.families(uploaded, std::slice::from_ref(self.stats()), |_| Vec::new());
    }
}

impl crate::live::PartStats {
    /// `ugc_llhls_part_interval_seconds` (histogram) and
    /// `ugc_llhls_parts_late_total`, without labels (the whole process).
    pub fn write_metrics(&self, m: &mut Exposition) {
        use ugc_core::metrics::Kind;
        let (buckets, sum, late) = self.read();
        m.family(
            "ugc_llhls_part_interval_seconds",
            Kind::Histogram,
            "Wall time between consecutive LL-HLS parts of a stream becoming available (players' blocking reloads wait this long).",
        )
        .histogram(&[], &crate::live::PART_INTERVAL_BOUNDS, &buckets, sum);
        m.family(
            "ugc_llhls_parts_late_total",
            Kind::Counter,
            "LL-HLS parts that became available over 1.5 part targets after the previous one.",
        )
        .sample(&[], late as f64);
    }
}
