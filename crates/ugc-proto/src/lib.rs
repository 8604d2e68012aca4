//! # ugc-proto
//!
//! Wire protocols of the ugc streaming toolkit, each a sans-IO core (bytes in,
//! events and bytes out, no sockets, tasks or clock reads) plus a thin tokio
//! adapter behind the `tokio` feature.
//!
//! * [`rtmp`]: RTMP server ingest ([`rtmp::ServerSession`],
//!   `rtmp::server::serve`) and the publishing client for restream
//!   ([`rtmp::ClientSession`]; the `rtmp::push::RtmpPush` sink over TCP
//!   or TLS, and `rtmp::push::spawn_push`, a supervised push of a Hub
//!   stream).
//! * [`srt`]: SRT ingest: stream ids, the panic-contained sans-IO listener
//!   ([`srt::SrtListener`]) and `srt::server::serve` (UDP, MPEG-TS into the
//!   Hub).
//! * `origin`: the HTTP origin (HLS playlists and segments of live streams),
//!   an axum router (feature `tokio`); `tls`: serving it over TLS with
//!   HTTP/2 and HTTP/1.1 (feature `tls`).
//! * `dvr`: the DVR routes (range and from-now playlists, archived
//!   segments, MP4 export with HTTP Range), a layer over the origin.
//! * [`relay`]: the inter-node relay, a Hub stream as fragmented MP4 over
//!   one long-lived HTTP response: sans-IO writer, reader and window, and
//!   (feature `tokio`) the serving route and a resuming puller `Source`.
//! * [`limits`]: connection caps per listener and per peer address, shared
//!   by the HTTP, HTTPS and RTMP listeners.
//! * `pacing` (feature `tokio`): the paced ingest runtime, one thread whose
//!   passes over the ingest sockets are a tick apart. (A stream whose
//!   publisher left ends by itself: `ugc_core::HubConfig::publisher_grace`.)
//!
//! Storage layout and auth policy are not here: publish requests go to a
//! [`ugc_core::Authorizer`] supplied by the caller.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "tokio")]
pub mod dvr;
#[cfg(feature = "tokio")]
pub mod dvr_sync;
pub mod error;
#[cfg(feature = "tokio")]
pub mod http;
pub mod limits;
#[cfg(feature = "tokio")]
pub mod origin;
#[cfg(feature = "tokio")]
pub mod pacing;
#[cfg(feature = "json")]
pub mod recordings;
pub mod relay;
pub mod rtmp;
pub mod srt;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "whip")]
pub mod whip;

/// The HTTP framework the origin's routers are made with: the same version
/// for an embedder's own routes ([`origin::serve`] serves them all).
#[cfg(feature = "tokio")]
pub use axum;
pub use error::{Error, Result};
