//! # ugc-core
//!
//! The media model, the pipeline traits and the live [`Hub`] of the ugc
//! streaming toolkit.
//!
//! * [`time`]: exact-integer timestamps ([`MediaTime`], [`Timescale`]) and
//!   32-bit wire clock widening.
//! * [`media`]: tracks ([`TrackInfo`]), frames ([`Frame`], one encoded access
//!   unit with a shared `Bytes` payload) and [`MediaEvent`].
//! * [`pipeline`]: the [`Source`] / [`Transform`] / [`Sink`] traits every
//!   ingest, transcoder, recorder and pusher implements, and [`pump`].
//! * [`hub`]: named live streams with GOP-shared fan-out, slow-reader
//!   skip-to-keyframe and replaceable publishers.
//! * [`auth`]: the [`Authorizer`] seam between ingest and the control plane.
//! * [`name`]: [`StreamPath`], the one typed name of a stream
//!   (`<app>/<name>[/<rendition>]`), and the allow-list of its segments.
//!
//! This crate has no sockets, no FFmpeg, no HTTP and no database; it reads no
//! clock (callers pass `now` where time matters).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod error;
pub mod fallback;
pub mod history;
pub mod hub;
pub mod media;
pub mod metrics;
pub mod name;
pub mod pipeline;
pub mod plan;
pub mod qoe;
pub mod silence;
pub mod time;
pub mod viewers;

pub use auth::{
    AllowAll, Authorizer, DenyKind, PlayDecision, PlayRequest, Protocol, PublishDecision,
    PublishRequest,
};
pub use error::{Error, Result};
pub use hub::{Hub, HubConfig, HubPublisher, HubReader, LowLatencyProbe, SourceRole, SourceSwitch};
pub use media::{
    AudioParams, Codec, DiscontinuityReason, Frame, MediaEvent, MediaKind, TrackId, TrackInfo,
    TrackParams, Tracks, VideoParams,
};
pub use name::{DEFAULT_APP, StreamPath};
pub use pipeline::{
    BoxSink, BoxSource, DynSink, DynSource, IterSource, Passthrough, Sink, Source, Transform,
    drive, iter_source, pump,
};
pub use time::{MediaTime, Rational, Timescale, Unwrapper32};
