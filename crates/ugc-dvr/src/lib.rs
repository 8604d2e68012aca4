//! # ugc-dvr
//!
//! Segments of live streams: the sans-IO [`Segmenter`] (GOP-aligned fMP4
//! segments, LL-HLS parts, clean audio timing), the live window
//! ([`LiveStream`], [`LiveRegistry`]), HLS playlist rendering ([`playlist`])
//! and the thin tokio loop [`run_packager`] that feeds a Hub stream through
//! them.
//!
//! It does not parse protocols, serve HTTP or decide who may watch.
//! (The on-disk archive, retention and the S3 tier come later.)
//!
//! ```
//! use ugc_dvr::{LiveConfig, LiveStream, Segmenter, SegmenterConfig, Variant};
//! # use ugc_core::{Frame, MediaEvent, TrackId};
//! # let tracks = ugc_core::hub::tests_support::av_tracks();
//! let live = LiveStream::new(LiveConfig::default());
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
//!     seg.push(event, 1_700_000_000_000 + i as i64 * 33)?;
//!     while let Some(out) = seg.poll() {
//!         live.apply(out);
//!     }
//! }
//! let playlist = live.render_media_playlist(Variant::Fmp4);
//! assert!(playlist.contains("#EXT-X-MAP:URI=\"init-0.mp4\""));
//! assert!(playlist.ends_with("#EXT-X-ENDLIST\n"));
//! # Ok::<(), ugc_dvr::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
pub mod live;
pub mod packager;
pub mod playlist;
pub mod segmenter;

pub use error::Error;
pub use live::{LiveConfig, LiveRegistry, LiveStream, LiveUpdate, PartProgress, PlaylistQuery};
pub use packager::{PackagerConfig, package_hub, run_packager};
pub use playlist::{
    LowLatency, RenditionReport, Variant, VariantStream, format_program_date_time, part_uri,
};
pub use segmenter::{
    InitSegment, Part, Segment, SegmentStart, Segmenter, SegmenterConfig, SegmenterOutput,
    SegmenterStats,
};
