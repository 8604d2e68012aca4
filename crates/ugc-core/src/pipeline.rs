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
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use crate::error::Result;
use crate::media::MediaEvent;

/// Produces the events of a stream, in order. `Ok(None)` means the source is
/// exhausted (after [`MediaEvent::End`] or without one).
///
/// Not object safe (it returns `impl Future`); box one as a [`BoxSource`]
/// where a pipeline is assembled at run time.
pub trait Source: Send {
    /// The next event; waits until there is one. Cancel safe
    /// implementations are not required: [`pump`] never drops a pending
    /// call.
    fn next_event(&mut self) -> impl Future<Output = Result<Option<MediaEvent>>> + Send;
}

/// Consumes the events of a stream, in order.
///
/// Not object safe (it returns `impl Future`); box one as a [`BoxSink`].
pub trait Sink: Send {
    /// Takes one event. May wait (backpressure) when the sink does I/O; a sink
    /// that must never hold up its source buffers or drops by policy.
    fn send(&mut self, event: MediaEvent) -> impl Future<Output = Result<()>> + Send;

    /// The source is exhausted (or failed): finish. A [`crate::HubPublisher`]
    /// ends its stream here, after the hub's grace time for a reconnect
    /// ([`crate::HubConfig::publisher_grace`]); a file writer would close
    /// its file. Called once by [`pump`]; does nothing by default.
    fn finish(&mut self) -> impl Future<Output = Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

/// Turns events into events, synchronously and without I/O. Pushes zero or
/// more events to `out` for each input.
///
/// A transform that works on threads of its own (the transcoding ladder)
/// also has output no input asked for: [`Transform::poll_output`]. The
/// trait is object safe: `Box<dyn Transform>` is a transform.
pub trait Transform: Send {
    /// Handles one input event.
    fn push(&mut self, event: MediaEvent, out: &mut Vec<MediaEvent>) -> Result<()>;

    /// Called once when the source is exhausted: emit what is still buffered.
    fn flush(&mut self, out: &mut Vec<MediaEvent>) -> Result<()> {
        let _ = out;
        Ok(())
    }

    /// Output that became ready without new input: pushes it to `out` and
    /// returns `Ready`, or registers `cx`'s waker and returns `Pending`
    /// (the default: a transform that only answers input). [`pump`] polls it
    /// whenever it waits for its source.
    fn poll_output(&mut self, cx: &mut Context<'_>, out: &mut Vec<MediaEvent>) -> Poll<Result<()>> {
        let _ = (cx, out);
        Poll::Pending
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

impl<S: Source + ?Sized> Source for &mut S {
    fn next_event(&mut self) -> impl Future<Output = Result<Option<MediaEvent>>> + Send {
        (**self).next_event()
    }
}

impl<K: Sink + ?Sized> Sink for &mut K {
    fn send(&mut self, event: MediaEvent) -> impl Future<Output = Result<()>> + Send {
        (**self).send(event)
    }

    fn finish(&mut self) -> impl Future<Output = Result<()>> + Send {
        (**self).finish()
    }
}

impl<T: Transform + ?Sized> Transform for &mut T {
    fn push(&mut self, event: MediaEvent, out: &mut Vec<MediaEvent>) -> Result<()> {
        (**self).push(event, out)
    }

    fn flush(&mut self, out: &mut Vec<MediaEvent>) -> Result<()> {
        (**self).flush(out)
    }

    fn poll_output(&mut self, cx: &mut Context<'_>, out: &mut Vec<MediaEvent>) -> Poll<Result<()>> {
        (**self).poll_output(cx, out)
    }
}

impl<T: Transform + ?Sized> Transform for Box<T> {
    fn push(&mut self, event: MediaEvent, out: &mut Vec<MediaEvent>) -> Result<()> {
        (**self).push(event, out)
    }

    fn flush(&mut self, out: &mut Vec<MediaEvent>) -> Result<()> {
        (**self).flush(out)
    }

    fn poll_output(&mut self, cx: &mut Context<'_>, out: &mut Vec<MediaEvent>) -> Poll<Result<()>> {
        (**self).poll_output(cx, out)
    }
}

/// A [`Source`] of the events of an iterator (a file demuxed in memory, a
/// test): see [`iter_source`].
#[derive(Debug, Clone)]
pub struct IterSource<I>(I);

/// The events of `events` as a [`Source`].
pub fn iter_source<I>(events: I) -> IterSource<I::IntoIter>
where
    I: IntoIterator<Item = MediaEvent>,
    I::IntoIter: Send,
{
    IterSource(events.into_iter())
}

impl<I: Iterator<Item = MediaEvent> + Send> Source for IterSource<I> {
    fn next_event(&mut self) -> impl Future<Output = Result<Option<MediaEvent>>> + Send {
        std::future::ready(Ok(self.0.next()))
    }
}

/// A boxed future of the object-safe stage traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe form of [`Source`], implemented for every source.
pub trait DynSource: Send {
    /// [`Source::next_event`], boxed.
    fn next_event_boxed(&mut self) -> BoxFuture<'_, Result<Option<MediaEvent>>>;
}

impl<S: Source> DynSource for S {
    fn next_event_boxed(&mut self) -> BoxFuture<'_, Result<Option<MediaEvent>>> {
        Box::pin(self.next_event())
    }
}

/// A source chosen at run time (an RTMP, SRT or relay ingest, a file); a
/// [`Source`] itself.
pub type BoxSource = Box<dyn DynSource>;

impl Source for BoxSource {
    fn next_event(&mut self) -> impl Future<Output = Result<Option<MediaEvent>>> + Send {
        (**self).next_event_boxed()
    }
}

/// The object-safe form of [`Sink`], implemented for every sink.
pub trait DynSink: Send {
    /// [`Sink::send`], boxed.
    fn send_boxed(&mut self, event: MediaEvent) -> BoxFuture<'_, Result<()>>;
    /// [`Sink::finish`], boxed.
    fn finish_boxed(&mut self) -> BoxFuture<'_, Result<()>>;
}

impl<K: Sink> DynSink for K {
    fn send_boxed(&mut self, event: MediaEvent) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.send(event))
    }

    fn finish_boxed(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.finish())
    }
}

/// A sink chosen at run time; a [`Sink`] itself.
pub type BoxSink = Box<dyn DynSink>;

impl Sink for BoxSink {
    fn send(&mut self, event: MediaEvent) -> impl Future<Output = Result<()>> + Send {
        (**self).send_boxed(event)
    }

    fn finish(&mut self) -> impl Future<Output = Result<()>> + Send {
        (**self).finish_boxed()
    }
}

/// What [`pump`] waits for: the source's next event, or output its
/// transform made on its own.
enum Step {
    Input(Result<Option<MediaEvent>>),
    Output(Result<()>),
}

/// Drives `source` through `transform` into `sink` until the source is
/// exhausted or any of them fails, then [`Sink::finish`]es the sink (also
/// after a failure, so a publisher's stream ends). Returns the first error.
///
/// While it waits for the source it also polls
/// [`Transform::poll_output`], so a transform working on threads of its own
/// delivers as soon as it has output. Pass stages by value or as `&mut`.
pub async fn pump<S: Source, T: Transform, K: Sink>(
    mut source: S,
    mut transform: T,
    mut sink: K,
) -> Result<()> {
    let result = drive(&mut source, &mut transform, &mut sink).await;
    // A source's end ends what it feeds, whatever ended it.
    drop(source);
    let finished = sink.finish().await;
    result.and(finished)
}

/// [`pump`] without the sink's [`Sink::finish`]: drives `source` through
/// `transform` into `sink` until the source is exhausted or a stage fails,
/// and returns, so the caller can log or close before finishing the sink
/// itself (a [`crate::HubPublisher`]'s finish waits out a grace time).
pub async fn drive<S: Source, T: Transform, K: Sink>(
    mut source: S,
    mut transform: T,
    mut sink: K,
) -> Result<()> {
    let (source, transform, sink) = (&mut source, &mut transform, &mut sink);
    let mut out = Vec::new();
    loop {
        let mut next = pin!(source.next_event());
        let event = loop {
            let step = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = transform.poll_output(cx, &mut out) {
                    return Poll::Ready(Step::Output(r));
                }
                next.as_mut().poll(cx).map(Step::Input)
            })
            .await;
            match step {
                Step::Output(r) => {
                    r?;
                    for e in out.drain(..) {
                        sink.send(e).await?;
                    }
                }
                Step::Input(r) => break r?,
            }
        };
        let Some(event) = event else {
            break;
        };
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::hub::tests_support::av_tracks;
    use crate::media::{Frame, TrackId};
    use crate::{Hub, HubConfig, StreamPath};

    fn frame(dts: i64) -> MediaEvent {
        MediaEvent::Frame(Frame {
            track: TrackId(1),
            dts,
            pts: dts,
            keyframe: dts == 0,
            data: bytes::Bytes::from_static(b"x"),
        })
    }

    /// A source of events from a list, then exhausted.
    struct List(std::vec::IntoIter<MediaEvent>);
    impl Source for List {
        async fn next_event(&mut self) -> Result<Option<MediaEvent>> {
            // Yield once so a transform's own output can come in between.
            tokio::task::yield_now().await;
            Ok(self.0.next())
        }
    }

    #[derive(Default, Clone)]
    struct Collect(Arc<Mutex<Vec<MediaEvent>>>, Arc<Mutex<bool>>);
    impl Sink for Collect {
        async fn send(&mut self, event: MediaEvent) -> Result<()> {
            self.0.lock().unwrap().push(event);
            Ok(())
        }
        async fn finish(&mut self) -> Result<()> {
            *self.1.lock().unwrap() = true;
            Ok(())
        }
    }

    /// A transform that works "on a thread": input goes to a worker over a
    /// channel; output comes back through `poll_output` (the worker wakes
    /// the pump), and `flush` waits for the rest.
    struct Threaded {
        tx: Option<std::sync::mpsc::Sender<MediaEvent>>,
        rx: std::sync::mpsc::Receiver<MediaEvent>,
        waker: Arc<Mutex<Option<std::task::Waker>>>,
    }
    impl Threaded {
        fn new() -> Self {
            let (tx, work) = std::sync::mpsc::channel::<MediaEvent>();
            let (done, rx) = std::sync::mpsc::channel();
            let waker: Arc<Mutex<Option<std::task::Waker>>> = Arc::default();
            let wake = waker.clone();
            std::thread::spawn(move || {
                for e in work {
                    let _ = done.send(e);
                    if let Some(w) = wake.lock().unwrap().take() {
                        w.wake();
                    }
                }
            });
            Threaded {
                tx: Some(tx),
                rx,
                waker,
            }
        }
    }
    impl Transform for Threaded {
        fn push(&mut self, event: MediaEvent, _out: &mut Vec<MediaEvent>) -> Result<()> {
            if let Some(tx) = &self.tx {
                let _ = tx.send(event);
            }
            Ok(())
        }
        fn flush(&mut self, out: &mut Vec<MediaEvent>) -> Result<()> {
            // Close the worker's input and take the rest of its output.
            self.tx = None;
            out.extend(self.rx.iter());
            Ok(())
        }
        fn poll_output(
            &mut self,
            cx: &mut Context<'_>,
            out: &mut Vec<MediaEvent>,
        ) -> Poll<Result<()>> {
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            let before = out.len();
            out.extend(self.rx.try_iter());
            if out.len() > before {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pump_takes_a_transforms_own_output_and_finishes_the_sink() {
        let events: Vec<_> = (0..50).map(|i| frame(i * 40)).collect();
        let sink = Collect::default();
        pump(
            List(events.clone().into_iter()),
            Threaded::new(),
            sink.clone(),
        )
        .await
        .unwrap();
        assert_eq!(*sink.0.lock().unwrap(), events);
        assert!(*sink.1.lock().unwrap(), "finished");
    }

    #[tokio::test]
    async fn boxed_stages_assemble_at_run_time() {
        let hub = Hub::new(HubConfig::default());
        let a = StreamPath::live("a").unwrap();
        let mut reader = hub.subscribe(&a);
        let mut events = vec![MediaEvent::Tracks(av_tracks())];
        events.extend((0..5).map(|i| frame(i * 40)));
        let source: BoxSource = Box::new(List(events.into_iter()));
        let transform: Box<dyn Transform> = Box::new(Passthrough);
        let sink: BoxSink = Box::new(hub.publish(&a));
        pump(source, transform, sink).await.unwrap();
        // The source's end ended the stream (no grace by default).
        assert!(hub.stream_names().is_empty());
        let mut frames = 0;
        while let Some(e) = reader.recv().await {
            frames += usize::from(matches!(e, MediaEvent::Frame(_)));
        }
        assert_eq!(frames, 5);
    }
}
