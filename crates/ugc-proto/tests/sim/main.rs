//! Deterministic tests on simulated time: RTMP bytes in, origin HTTP
//! answers out, one clock (see `harness`).
#![allow(clippy::unwrap_used, missing_docs)]

mod harness;

mod ingest;
mod ll_hls;
