//! RTMP: server ingest and client push.
//!
//! A sans-IO core, layered as the protocol is:
//!
//! * [`handshake`]: C0/C1 -> S0/S1/S2, C2 (simple and digest flavours),
//!   phases as types.
//! * [`chunk`]: the chunk stream demuxer ([`ChunkDecoder`]) and muxer
//!   ([`ChunkEncoder`]), with bounded memory and widened timestamps.
//! * [`amf0`]: AMF0 values for commands and metadata.
//! * [`session`]: [`ServerSession`], the NetConnection/NetStream commands of
//!   a publisher, reporting [`ServerEvent`]s; policy (who may publish) is the
//!   caller's answer to [`ServerEvent::PublishRequested`].
//!
//! * [`client`]: [`ClientSession`], the publishing client used to push
//!   streams to other servers (restream).
//!
//! The tokio adapters (cargo feature `tokio`, on by default):
//!
//! * `server`: accepts connections; an accepted publisher is an
//!   `RtmpPublish`, a [`ugc_core::Source`] (`serve` pumps each into a
//!   [`ugc_core::Hub`]).
//! * `push`: the other direction. `RtmpPush` is a [`ugc_core::Sink`], one
//!   publish session to a target; `spawn_push` keeps a Hub stream pushed
//!   to a target (reconnects, backoff, a status).
//! * `restream`: the supervisor that keeps a push per stream and target
//!   its settings ask for.
//!
//! Not done here: playing (`play` is refused with `NetStream.Play.Failed`),
//! RTMPE/RTMPT, AMF3 values (AMF3 command messages whose values are AMF0, as
//! sent by some clients, are accepted).

pub mod amf0;
pub mod chunk;
pub mod client;
pub mod handshake;
pub mod session;

#[cfg(feature = "tokio")]
pub mod push;
#[cfg(feature = "tokio")]
pub mod restream;
#[cfg(feature = "tokio")]
pub mod server;

pub use amf0::Amf0Value;
pub use chunk::{ChunkDecoder, ChunkEncoder, ChunkLimits, Message};
pub use client::{ClientConfig, ClientEvent, ClientSession};
pub use session::{ServerEvent, ServerSession, SessionConfig};
