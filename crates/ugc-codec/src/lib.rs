//! ugc-codec (under construction).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod flv;
