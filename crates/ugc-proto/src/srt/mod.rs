//! SRT ingest, and SRT out (restream to an SRT listener).
//!
//! * [`streamid`]: the stream id parser (access-control syntax and bare
//!   keys), pure.
//! * [`listener`]: the sans-IO listener ([`SrtListener`]: handshakes, access
//!   decisions as events, encryption checks, panic containment) and
//!   [`SrtConnection`] (one established caller), over `srt-protocol`'s
//!   sans-IO state machines.
//! * [`caller`]: the sans-IO caller ([`SrtCaller`]: one outgoing
//!   handshake, panic-contained) that yields a sending [`SrtConnection`].
//! * [`push`] (feature `tokio`): [`push::SrtPush`], a [`ugc_core::Sink`]
//!   that muxes MPEG-TS and sends it to an `srt://` target; the restream
//!   supervisor runs it like an RTMP push.
//! * [`server`] (feature `tokio`): the UDP adapter; accepted publishers'
//!   MPEG-TS goes through [`ugc_codec::ts_demux::TsDemuxer`] into the
//!   [`ugc_core::Hub`], exactly like RTMP's FLV. Its
//!   publishers' statistics render as `/metrics` families and JSON
//!   (`SrtStatsRegistry::write_metrics`, `json`).

pub mod caller;
pub mod listener;
#[cfg(feature = "tokio")]
pub mod push;
#[cfg(feature = "tokio")]
pub mod server;
#[cfg(feature = "tokio")]
mod stats;
pub mod streamid;

pub use caller::{CallerConfig, CallerEvent, SrtCaller};
pub use listener::{
    CallerEncryption, ListenerConfig, ListenerEvent, ListenerStats, MIN_PACKET_SIZE, RejectCode,
    SrtConnection, SrtConnectionStats, SrtListener,
};
pub use streamid::{StreamId, StreamIdError};
