//! [`Recorder`]: one Hub stream's segmenter outputs -> write jobs for the
//! writer thread, on a bounded queue that never blocks the packager.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::TrySendError;

use ugc_core::StreamPath;

use super::writer::Job;
use super::{Archive, TrackKey, now_unix_ms};
use crate::packager::{ObserverFactory, SegmentObserver};
use crate::segmenter::{InitSegment, SegmenterOutput};

impl Archive {
    /// A recorder for the Hub stream `hub_name`, or `None` for names the
    /// archive does not keep.
    pub fn recorder(&self, hub_name: &StreamPath) -> Option<Recorder> {
        // Unique, increasing session ids even when two start in one ms.
        let now = now_unix_ms();
        let mut cur = self.inner.last_session.load(Ordering::Acquire);
        let session = loop {
            let next = now.max(cur.saturating_add(1));
            match self.inner.last_session.compare_exchange(
                cur,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break next,
                Err(c) => cur = c,
            }
        };
        self.recorder_in(hub_name, session)
    }

    /// [`Self::recorder`] under session `session`, given: the timeline id
    /// of aligned segments, the same at every origin, so that their
    /// archives name the stream's files alike. The packager gives each
    /// life of a stream name a larger one than the last.
    pub fn recorder_as(&self, hub_name: &StreamPath, session: u64) -> Option<Recorder> {
        let session = i64::try_from(session).unwrap_or(i64::MAX);
        self.inner.last_session.fetch_max(session, Ordering::AcqRel);
        self.recorder_in(hub_name, session)
    }

    fn recorder_in(&self, hub_name: &StreamPath, session: i64) -> Option<Recorder> {
        let key = TrackKey::of(hub_name)?;
        Some(Recorder {
            archive: self.clone(),
            key,
            session,
            init: None,
            init_sent: false,
            warned_full: false,
        })
    }
}

/// Records one Hub stream into the [`Archive`]; a [`SegmentObserver`] for
/// the packager.
pub struct Recorder {
    archive: Archive,
    key: TrackKey,
    session: i64,
    init: Option<Arc<InitSegment>>,
    init_sent: bool,
    warned_full: bool,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("key", &self.key)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// The recording session id.
    pub fn session(&self) -> i64 {
        self.session
    }

    /// The stream and rendition.
    pub fn key(&self) -> &TrackKey {
        &self.key
    }

    fn send(&mut self, job: Job) -> bool {
        match self.archive.inner.tx.try_send(job) {
            Ok(()) => {
                self.archive
                    .inner
                    .stats
                    .write_queue
                    .fetch_add(1, Ordering::Relaxed);
                self.warned_full = false;
                true
            }
            Err(TrySendError::Full(_)) => {
                self.archive
                    .inner
                    .stats
                    .segments_dropped
                    .fetch_add(1, Ordering::Relaxed);
                if !self.warned_full {
                    tracing::warn!(stream = %self.key.stream, rendition = %self.key.rendition,
                        "archive writer queue full: dropping segments (disk too slow?)");
                    self.warned_full = true;
                }
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

impl SegmentObserver for Recorder {
    fn on_output(&mut self, output: &SegmenterOutput, live: bool) {
        match output {
            SegmenterOutput::Init(init) => {
                self.init = Some(init.clone());
                self.init_sent = false;
            }
            SegmenterOutput::Segment(seg) => {
                if self.archive.depth_hours(&self.key.stream) == 0 {
                    return;
                }
                let Some(init) = self.init.clone() else {
                    return;
                };
                if !self.init_sent {
                    {
                        let mut active = self
                            .archive
                            .inner
                            .active
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        active.insert((self.key.clone(), self.session));
                    }
                    self.init_sent = self.send(Job::Init {
                        key: self.key.clone(),
                        session: self.session,
                        init: init.clone(),
                    });
                    if !self.init_sent {
                        return;
                    }
                }
                self.send(Job::Segment {
                    key: self.key.clone(),
                    session: self.session,
                    init,
                    seg: seg.clone(),
                    provisional: !live,
                });
            }
            SegmenterOutput::Ended => {
                let job = Job::Ended {
                    key: self.key.clone(),
                    session: self.session,
                };
                // The end must not be lost (it triggers the S3 upload): wait
                // briefly for room rather than drop it. The queue drains in
                // milliseconds unless the disk hangs.
                if let Err(TrySendError::Full(job)) = self.archive.inner.tx.try_send(job) {
                    let tx = self.archive.inner.tx.clone();
                    std::thread::spawn(move || {
                        let _ = tx.send(job);
                    });
                }
            }
            SegmenterOutput::Part { .. }
            | SegmenterOutput::PreloadHint { .. }
            | SegmenterOutput::Opened(_)
            | SegmenterOutput::PartChunk { .. } => {}
        }
    }
}

impl ObserverFactory for Archive {
    fn observe(&self, stream: &StreamPath) -> Option<Box<dyn SegmentObserver>> {
        self.recorder(stream)
            .map(|r| Box::new(r) as Box<dyn SegmentObserver>)
    }

    fn observe_session(
        &self,
        stream: &StreamPath,
        session: u64,
    ) -> Option<Box<dyn SegmentObserver>> {
        self.recorder_as(stream, session)
            .map(|r| Box::new(r) as Box<dyn SegmentObserver>)
    }
}
