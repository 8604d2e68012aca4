//! WHIP ingest (WebRTC-HTTP Ingestion Protocol, RFC 9725): browsers and OBS
//! publish over WebRTC.
//!
//! * [`session`]: one publisher's WebRTC session, sans-IO, on str0m (ICE
//!   lite, DTLS-SRTP, RTP depacketizing, NACK and PLI), and the conversion
//!   of its H.264 and Opus into the Hub's media model.
//! * [`server`] (feature `tokio`): the HTTP signalling routes and the UDP
//!   sockets every session shares, publishing into a [`ugc_core::Hub`].

#[cfg(feature = "tokio")]
pub mod server;
pub mod session;
mod peer;

pub use session::{OfferError, SessionSetup, WhipSession, WhipStats};
