//! The writer thread: all file I/O of the archive, fed by a bounded queue;
//! crash-safe writes, pausing a stream after a write error, session ends.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::index::{ArchivedInit, ArchivedSegment, Location};
use super::names::{self, SegmentName};
use super::retention::retention;
use super::{Archive, Inner, RecordingStatus, TrackKey, now_unix_ms, read, write};
use crate::segmenter::{InitSegment, Segment};

pub(super) enum Job {
    Init {
        key: TrackKey,
        session: i64,
        init: Arc<InitSegment>,
    },
    Segment {
        key: TrackKey,
        session: i64,
        init: Arc<InitSegment>,
        seg: Arc<Segment>,
        /// Held back from the live window (see [`SegmentName::provisional`]).
        provisional: bool,
    },
    Ended {
        key: TrackKey,
        session: i64,
    },
    Sweep,
    Barrier(std::sync::mpsc::Sender<()>),
}
/// Writes `data` to `dir/name` crash-safely: `.tmp`, fsync, rename, fsync
/// of the directory.
pub fn write_atomic(dir: &Path, name: &str, data: &[&[u8]]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{name}.tmp"));
    let result = (|| {
        // A live segment comes in dozens of CMAF chunks: one write each
        // would be dozens of syscalls.
        let mut f = io::BufWriter::with_capacity(64 * 1024, File::create(&tmp)?);
        for d in data {
            f.write_all(d)?;
        }
        let f = f.into_inner().map_err(io::IntoInnerError::into_error)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, dir.join(name))?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[derive(Default)]
struct TrackWriter {
    paused_until: Option<Instant>,
    inits_written: HashSet<(i64, u32)>,
}

struct Writer {
    tracks: HashMap<TrackKey, TrackWriter>,
}

pub(super) fn writer_loop(inner: std::sync::Weak<Inner>, rx: Receiver<Job>) {
    let mut w = Writer {
        tracks: HashMap::new(),
    };
    let sweep_every = match inner.upgrade() {
        Some(i) => i.config.sweep_interval,
        None => return,
    };
    let mut last_sweep = Instant::now();
    loop {
        let job = rx.recv_timeout(sweep_every.max(Duration::from_millis(100)));
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let archive = Archive { inner };
        match job {
            Ok(job) => w.handle(&archive, job),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if last_sweep.elapsed() >= sweep_every {
            retention(&archive, now_unix_ms());
            last_sweep = Instant::now();
        }
    }
}

impl Writer {
    fn handle(&mut self, archive: &Archive, job: Job) {
        if matches!(job, Job::Init { .. } | Job::Segment { .. }) {
            // Saturating: a job queued by an older archive handle is never
            // counted twice, but never below zero either.
            let _ = archive.inner.stats.write_queue.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |n| Some(n.saturating_sub(1)),
            );
        }
        match job {
            Job::Init { key, session, init } => {
                let tw = self.tracks.entry(key.clone()).or_default();
                if tw.paused_until.is_some_and(|t| Instant::now() < t) {
                    return;
                }
                if let Err(e) = write_init(archive, &key, session, &init) {
                    pause(archive, &key, tw, &e);
                } else {
                    tw.inits_written.insert((session, init.number));
                }
            }
            Job::Segment {
                key,
                session,
                init,
                seg,
                provisional,
            } => {
                let tw = self.tracks.entry(key.clone()).or_default();
                if tw.paused_until.is_some_and(|t| Instant::now() < t) {
                    archive
                        .inner
                        .stats
                        .segments_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                match write_segment(archive, &key, session, &init, &seg, provisional, tw) {
                    Ok(()) => {
                        if tw.paused_until.take().is_some() {
                            tracing::info!(stream = %key.stream, rendition = %key.rendition,
                                "recording resumed");
                            write(&archive.inner.status).remove(&key);
                        }
                        archive
                            .inner
                            .stats
                            .segments_written
                            .fetch_add(1, Ordering::Relaxed);
                        retention(archive, now_unix_ms());
                    }
                    Err(e) => {
                        archive
                            .inner
                            .stats
                            .segments_dropped
                            .fetch_add(1, Ordering::Relaxed);
                        pause(archive, &key, tw, &e);
                    }
                }
            }
            Job::Ended { key, session } => {
                archive
                    .inner
                    .active
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&(key.clone(), session));
                let hook = read(&archive.inner.on_session_end).clone();
                if let Some(h) = hook {
                    h(archive, &key, session);
                }
            }
            Job::Sweep => retention(archive, now_unix_ms()),
            Job::Barrier(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

fn pause(archive: &Archive, key: &TrackKey, tw: &mut TrackWriter, e: &io::Error) {
    archive
        .inner
        .stats
        .write_errors
        .fetch_add(1, Ordering::Relaxed);
    let pause = archive.inner.config.pause_on_error;
    if tw.paused_until.is_none() {
        tracing::error!(stream = %key.stream, rendition = %key.rendition, error = %e,
            "recording paused for {pause:?}: archive write failed (disk full?); live delivery continues");
    }
    tw.paused_until = Some(Instant::now() + pause);
    write(&archive.inner.status).insert(
        key.clone(),
        RecordingStatus {
            paused: Some(e.to_string()),
        },
    );
}

fn write_init(
    archive: &Archive,
    key: &TrackKey,
    session: i64,
    init: &InitSegment,
) -> io::Result<()> {
    let dir = archive.dir(key);
    write_atomic(
        &dir,
        &names::init_file_name(session, init.number),
        &[&init.data],
    )?;
    let mut idx = write(&archive.inner.index);
    idx.entry(key.clone()).or_default().inits.insert(
        (session, init.number),
        ArchivedInit {
            size: init.data.len() as u64,
            location: Location::Local,
        },
    );
    Ok(())
}

fn write_segment(
    archive: &Archive,
    key: &TrackKey,
    session: i64,
    init: &InitSegment,
    seg: &Segment,
    provisional: bool,
    tw: &mut TrackWriter,
) -> io::Result<()> {
    if seg.init != init.number {
        return Err(io::Error::other(format!(
            "segment {} needs init {} but the recorder has init {}",
            seg.msn, seg.init, init.number
        )));
    }
    if !tw.inits_written.contains(&(session, init.number)) {
        write_init(archive, key, session, init)?;
        tw.inits_written.insert((session, init.number));
    }
    let name = SegmentName {
        pdt_ms: seg.program_date_time_ms,
        duration_ms: u32::try_from(seg.duration_ms).unwrap_or(u32::MAX),
        dts_ms: seg.start_dts_ms,
        session,
        msn: seg.msn,
        init: seg.init,
        discontinuity: seg.discontinuity,
        provisional: None,
    };
    let pieces: Vec<&[u8]> = seg.data.pieces().iter().map(|p| &p[..]).collect();
    let name = if provisional {
        if archive.session_covers(key, session, name.mid_ms()) {
            // A peer's copy of these seconds of this timeline came first
            // (replication): the archive keeps that one.
            return Ok(());
        }
        SegmentName {
            provisional: Some(names::digest(&pieces)),
            ..name
        }
    } else {
        name
    };
    write_atomic(&archive.dir(key), &name.file_name(), &pieces)?;
    let size = seg.data.len() as u64;
    archive
        .inner
        .stats
        .bytes_written
        .fetch_add(size, Ordering::Relaxed);
    write(&archive.inner.index)
        .entry(key.clone())
        .or_default()
        .insert(ArchivedSegment {
            name,
            size,
            location: Location::Local,
        });
    archive.inner.local_bytes.fetch_add(size, Ordering::Relaxed);
    Ok(())
}
