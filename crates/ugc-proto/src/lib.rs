//! ugc-proto (under construction).
//!
//! * [`origin`]: the HTTP origin (HLS playlists and segments of live streams).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod origin;
