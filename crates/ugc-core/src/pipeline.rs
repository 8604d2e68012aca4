//! The three shapes every part of a ugc pipeline takes.
//!
//! * A [`Source`] produces [`MediaEvent`]s: an ingest session, a Hub reader, a
//!   file being looped.
//! * A [`Transform`] turns events into events, synchronously and without I/O:
//!   a timestamp fixer, a transcoder (run off the async reactor), a filter.
//! * A [`Sink`] consumes events: a Hub publisher, a segmenter, a recorder, a
//!   restream pusher.
//!
//! [`pump`] drives `source -> transform -> sink` until the source ends.
//!
//! ```
//! use ugc_core::{Frame, Hub, MediaEvent, Result, Sink, Source, Transform, TrackId, pump};
//! use ugc_core::hub::HubConfig;
//!
//! /// A transform that drops every audio frame.
//! struct VideoOnly;
//! impl Transform for VideoOnly {
//!     fn push(&mut self, event: MediaEvent, out: &mut Vec<MediaEvent>) -> Result<()> {
//!         match &event {
//!             MediaEvent::Frame(f) if f.track == TrackId(2) => {}
//!             _ => out.push(event),
//!         }
//!         Ok(())
//!     }
//! }
//!
//! /// A sink that counts frames.
//! #[derive(Default)]
//! struct Count(usize);
//! impl Sink for Count {
//!     async fn send(&mut self, event: MediaEvent) -> Result<()> {
//!         if let MediaEvent::Frame(_) = event { self.0 += 1; }
//!         Ok(())
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let hub = Hub::new(HubConfig::default());
//! let stream = ugc_core::StreamPath::live("demo")?;
//! let mut reader = hub.subscribe(&stream);
//! let mut publisher = hub.publish(&stream);
//! # let tracks = ugc_core::hub::tests_support::av_tracks();
//! publisher.send(MediaEvent::Tracks(tracks)).await?;
//! for i in 0..4 {
//!     let data = bytes::Bytes::from_static(b"frame");
//!     publisher.send(MediaEvent::Frame(Frame { track: TrackId(1), dts: i * 33, pts: i * 33, keyframe: i == 0, data: data.clone() })).await?;
//!     publisher.send(MediaEvent::Frame(Frame { track: TrackId(2), dts: i * 21, pts: i * 21, keyframe: true, data })).await?;
//! }
//! drop(publisher);
//! hub.end(&stream);
//!
//! let mut count = Count::default();
//! pump(&mut reader, &mut VideoOnly, &mut count).await?;
//! assert_eq!(count.0, 4);
//! # Ok::<(), ugc_core::Error>(())
//! # }).unwrap();
//! ```

use std::future::Future;

use crate::error::Result;
use crate::media::MediaEvent;

/// Produces the events of a stream, in order. `Ok(None)` means the source is
/// exhausted (after [`MediaEvent::End`] or without one).
pub trait Source: Send {
    /// The next event; waits until there is one.
    fn next_event(&mut self) -> impl Future<Output = Result<Option<MediaEvent>>> + Send;
}

/// Consumes the events of a stream, in order.
pub trait Sink: Send {
    /// Takes one event. May wait (backpressure) when the sink does I/O; a sink
    /// that must never hold up its source buffers or drops by policy.
    fn send(&mut self, event: MediaEvent) -> impl Future<Output = Result<()>> + Send;
}

/// Turns events into events, synchronously and without I/O. Pushes zero or
/// more events to `out` for each input.
pub trait Transform: Send {
    /// Handles one input event.
    fn push(&mut self, event: MediaEvent, out: &mut Vec<MediaEvent>) -> Result<()>;

    /// Called once when the source is exhausted: emit what is still buffered.
    fn flush(&mut self, out: &mut Vec<MediaEvent>) -> Result<()> {
        let _ = out;
        Ok(())
    }
}

/// The identity transform.
#[derive(Debug, Default, Clone, Copy)]
pub struct Passthrough;

impl Transform for Passthrough {
    fn push(&mut self, event: MediaEvent, out: &mut Vec<MediaEvent>) -> Result<()> {
        out.push(event);
        Ok(())
    }
}

/// Drives `source` through `transform` into `sink` until the source is
/// exhausted; returns the first error of any of them.
pub async fn pump<S: Source, T: Transform, K: Sink>(
    source: &mut S,
    transform: &mut T,
    sink: &mut K,
) -> Result<()> {
    let mut out = Vec::new();
    while let Some(event) = source.next_event().await? {
        transform.push(event, &mut out)?;
        for e in out.drain(..) {
            sink.send(e).await?;
        }
    }
    transform.flush(&mut out)?;
    for e in out.drain(..) {
        sink.send(e).await?;
    }
    Ok(())
}
