//! ugc-codec (under construction).
//!
//! placeholder until wt-b lands: only the fMP4 / MPEG-TS writer signatures the
//! segmenter codes against.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
pub mod fmp4;
pub mod ts;

pub use error::Error;
