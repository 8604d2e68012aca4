//! # ugc-codec
//!
//! Bitstreams and containers of the ugc streaming toolkit, as pure readers and
//! writers over bytes: no sockets, no files (but the logo PNG a ladder config
//! names), no clocks.
//!
//! * [`h264`]: `avcC` + SPS (dimensions, profile/level, VUI frame rate), RFC 6381
//!   codec strings, AVCC <-> Annex B.
//! * [`hevc`]: `hvcC` (codec string, NAL length size, picture size).
//! * [`aac`]: AudioSpecificConfig and ADTS headers.
//! * [`av1`]: OBUs, the sequence header and `av1C` (codec string, the
//!   record of an encoder's global header, samples without temporal
//!   delimiters).
//! * [`flv`]: FLV audio/video tag bodies (legacy and Enhanced RTMP) and
//!   [`flv::FlvIngest`], the RTMP publish-session assembler that produces
//!   [`ugc_core::MediaEvent`]s.
//! * [`fmp4`]: CMAF init segments and fragments.
//! * [`ts`]: MPEG-TS segments (H.264/H.265 + AAC).
//! * [`ladder`]: ABR ladder settings, rung planning (never upscale) and the
//!   per-rendition demux of the ladder's output; [`ladder::stats`]: the
//!   counters of running ladders and their registry (`/metrics`, JSON);
//!   `ladder::config` (feature `serde`): ladder profiles as a config file's
//!   `[transcode]` table.
//! * `transcode` (feature `ffmpeg`, links the system FFmpeg 5.1 through
//!   rsmpeg): the ladder itself, a [`ugc_core::Transform`] that decodes once,
//!   scales and encodes every rung on its own thread; the tokio loop that
//!   runs it between Hub streams, and the supervisor that keeps one per
//!   live stream whose settings want one.
//! * [`ts_demux`]: MPEG-TS demuxing (PAT/PMT, PES, H.264/H.265/AAC) into
//!   [`ugc_core::MediaEvent`]s, for SRT ingest.
//!
//! Every reader of peer bytes returns [`Error`] instead of panicking; the
//! fuzz targets in `fuzz/` hold it to that.
//!
//! Not here: sockets and protocol sessions (`ugc-proto`), segmenting and
//! playlists (`ugc-dvr`).
// Without `ffmpeg` nothing here is unsafe; with it, `transcode::raw` alone
// holds the FFI byte access rsmpeg 0.14 has no safe API for.
#![cfg_attr(not(feature = "ffmpeg"), forbid(unsafe_code))]
#![cfg_attr(feature = "ffmpeg", deny(unsafe_code))]
#![deny(missing_docs)]

pub mod aac;
pub mod av1;
pub mod error;
pub mod flv;
pub mod fmp4;
pub mod h264;
pub mod hevc;
pub mod ladder;
pub mod opus;
#[cfg(feature = "ffmpeg")]
pub mod transcode;
pub mod ts;
pub mod ts_demux;

pub use error::{Error, Result};
