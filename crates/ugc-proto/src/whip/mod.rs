//! WHIP ingest (WebRTC-HTTP Ingestion Protocol, RFC 9725): browsers and OBS
//! publish over WebRTC; and WHEP play (WebRTC-HTTP Egress Protocol): a
//! browser watches with sub-second latency.
//!
//! * [`session`]: one publisher's WebRTC session, sans-IO, on str0m (ICE
//!   lite, DTLS-SRTP, RTP depacketizing, NACK and PLI), and the conversion
//!   of its H.264 and Opus into the Hub's media model.
//! * [`play`]: one viewer's WebRTC session, sans-IO, sending a Hub
//!   stream's H.264 and Opus.
//! * [`server`] (feature `tokio`): the HTTP signalling routes and the UDP
//!   sockets every session shares, publishing into a [`ugc_core::Hub`].

mod peer;
pub mod play;
#[cfg(feature = "tokio")]
pub mod server;
pub mod session;

pub use peer::{Packet, Transport};
pub use play::{WhepSession, WhepStats};
pub use session::{OfferError, SessionSetup, WhipSession, WhipStats};
