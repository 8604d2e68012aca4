//! # ugc-dvr
//!
//! Segments of live streams: the sans-IO [`Segmenter`] (GOP-aligned fMP4
//! segments, LL-HLS parts, clean audio timing), the live window
//! ([`LiveStream`], [`LiveRegistry`]), HLS playlist rendering ([`playlist`])
//! and the thin tokio loop [`run_packager`] that feeds a Hub stream through
//! them.
//!
//! The DVR: the [`archive`] keeps the same segments on disk (crash-safe
//! time index, retention by depth and size), [`range`] renders playlists
//! over any archived range, [`export`] builds a progressive MP4 of a range
//! without re-encoding, and `s3` (feature `s3`) moves finished recordings
//! to an S3-compatible bucket behind a local LRU + TTL cache.
//! [`policy`] maps per-stream settings to depth, rewind and S3 choices
//! (`config`, feature `serde`: the `[dvr]` table of a config file, and
//! opening the archive and its S3 tier from it),
//! [`export_file`] writes an archived range to a file (the export command's
//! core), and the archive and uploader render their counters as `/metrics`
//! families (`Archive::write_metrics`).
//!
//! It does not parse protocols, serve HTTP or decide who may watch.
//!
//! ```
//! use ugc_dvr::{LiveConfig, LiveStream, Segmenter, SegmenterConfig, Variant};
//! # use ugc_core::{Frame, MediaEvent, TrackId};
//! # let tracks = ugc_core::hub::tests_support::av_tracks();
//! // Media URIs carry the stream's session (here: its start, unix ms).
//! let live = LiveStream::with_session(LiveConfig::default(), 1_700_000_000_000);
//! let mut seg = Segmenter::new(SegmenterConfig::default());
//! let mut events = vec![MediaEvent::Tracks(tracks)];
//! for i in 0..200i64 {
//!     events.push(MediaEvent::Frame(Frame {
//!         track: TrackId(1), dts: i * 33, pts: i * 33, keyframe: i % 60 == 0,
//!         data: bytes::Bytes::from_static(b"frame"),
//!     }));
//! }
//! events.push(MediaEvent::End);
//! for (i, event) in events.into_iter().enumerate() {
//!     let now = 1_700_000_000_000 + i as i64 * 33;
//!     seg.push(event, now)?;
//!     while let Some(out) = seg.poll() {
//!         live.apply(out, now);
//!     }
//! }
//! let playlist = live.render_media_playlist(Variant::Fmp4);
//! assert!(playlist.contains("#EXT-X-MAP:URI=\"init-1700000000000-0.mp4\""));
//! assert!(playlist.ends_with("#EXT-X-ENDLIST\n"));
//! # Ok::<(), ugc_dvr::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod archive;
pub mod box_guard;
pub mod chunks;
#[cfg(feature = "serde")]
pub mod config;
pub mod error;
pub mod export;
pub mod export_file;
pub mod frame_rate;
pub mod live;
mod metrics;
pub mod packager;
pub mod playlist;
pub mod policy;
pub mod range;
pub mod replica;
#[cfg(feature = "s3")]
pub mod s3;
pub mod segmenter;
mod ts_counters;
pub mod variants;
pub mod vod;

pub use archive::{Archive, ArchiveConfig, Recorder, TrackKey};
pub use chunks::Chunks;
pub use error::Error;
pub use live::{LiveConfig, LiveRegistry, LiveStream, LiveUpdate, PartProgress, PlaylistQuery};
pub use packager::{
    HlsPackager, HlsTiming, ObserverFactory, PackagerConfig, SegmentObserver, TransformFactory,
    package_hub, run_packager, run_packager_observed, run_packager_transformed,
    run_packager_with_clock,
};
pub use playlist::{
    LowLatency, MediaFile, MediaFileError, RenditionReport, Variant, VariantStream,
    format_program_date_time, part_uri,
};
pub use segmenter::{
    InitSegment, Part, Segment, SegmentStart, Segmenter, SegmenterConfig, SegmenterOutput,
    SegmenterStats,
};
