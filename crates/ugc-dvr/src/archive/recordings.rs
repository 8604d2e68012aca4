//! Recordings as a product: the archive's sessions of one stream grouped
//! into events (one publish of the stream, with every rendition the
//! ladder made of it), and deleting one.
//!
//! A recording session is one life of one Hub stream (`live/foo`,
//! `live/foo/720p`), so one event is several sessions that started a moment
//! apart (the ladder starts after the source). [`group_sessions`] joins the
//! sessions whose time spans overlap into one [`Recording`], whose id is the
//! earliest session's (its start, unix ms): stable while the event lasts
//! and after it, whatever retention, uploads or replication do to single
//! segments.

use std::collections::HashSet;
use std::io;

use ugc_core::StreamPath;

use super::index::Location;
use super::retention::{Expiry, apply};
use super::{Archive, TrackKey, UploadProgress, read};

/// One session of one rendition, as [`Archive::recordings`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// The rendition ([`super::SOURCE_RENDITION`] or a rung).
    pub rendition: String,
    /// The session (its start, unix ms).
    pub session: i64,
    /// Wall clock of its first archived segment, unix ms.
    pub start_ms: i64,
    /// Wall clock of the end of its last archived segment, unix ms.
    pub end_ms: i64,
    /// Archived segments.
    pub segments: usize,
    /// Bytes of its segments and init segments on local disk.
    pub local_bytes: u64,
    /// Bytes of its segments and init segments in the remote tier.
    pub remote_bytes: u64,
    /// Still being recorded.
    pub recording: bool,
    /// Its move to the remote tier, while queued or running.
    pub upload: Option<UploadProgress>,
}

/// Where a recording's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Only on this node's disk.
    Local,
    /// Only in the remote tier (S3).
    Remote,
    /// Partly on disk, partly in the remote tier (an upload or a
    /// rendition's upload still pending).
    Both,
}

impl Stored {
    /// `local`, `s3` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stored::Local => "local",
            Stored::Remote => "s3",
            Stored::Both => "both",
        }
    }
}

/// One event of a stream: overlapping sessions of its renditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// The earliest session's start (unix ms): the recording's id.
    pub id: i64,
    /// Wall clock of the first archived segment of any rendition.
    pub start_ms: i64,
    /// Wall clock of the end of the last archived segment of any rendition.
    pub end_ms: i64,
    /// Its sessions, by rendition then session.
    pub sessions: Vec<SessionSummary>,
}

impl Recording {
    /// `end_ms - start_ms`.
    pub fn duration_ms(&self) -> i64 {
        self.end_ms.saturating_sub(self.start_ms)
    }

    /// The rendition names, sorted, each once.
    pub fn renditions(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.sessions.iter().map(|s| s.rendition.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Bytes, local and remote.
    pub fn bytes(&self) -> u64 {
        self.sessions
            .iter()
            .map(|s| s.local_bytes.saturating_add(s.remote_bytes))
            .fold(0, u64::saturating_add)
    }

    /// Where its bytes are.
    pub fn stored(&self) -> Stored {
        let local = self.sessions.iter().any(|s| s.local_bytes > 0);
        let remote = self.sessions.iter().any(|s| s.remote_bytes > 0);
        match (local, remote) {
            (true, true) => Stored::Both,
            (false, true) => Stored::Remote,
            _ => Stored::Local,
        }
    }

    /// Some rendition is still being recorded.
    pub fn recording(&self) -> bool {
        self.sessions.iter().any(|s| s.recording)
    }

    /// The upload to the remote tier of its sessions still queued or
    /// running, summed; `None` when none is.
    pub fn upload(&self) -> Option<UploadProgress> {
        let mut sum: Option<UploadProgress> = None;
        for u in self.sessions.iter().filter_map(|s| s.upload) {
            let t = sum.get_or_insert(UploadProgress {
                uploading: false,
                bytes_done: 0,
                bytes_total: 0,
            });
            t.uploading |= u.uploading;
            t.bytes_done = t.bytes_done.saturating_add(u.bytes_done);
            t.bytes_total = t.bytes_total.saturating_add(u.bytes_total);
        }
        sum
    }
}

/// Groups sessions into recordings (pure): sessions whose spans
/// `[start_ms, end_ms]` overlap (directly or through another session)
/// form one recording. Newest recording first.
pub fn group_sessions(mut sessions: Vec<SessionSummary>) -> Vec<Recording> {
    sessions.sort_by(|a, b| {
        (a.start_ms, &a.rendition, a.session).cmp(&(b.start_ms, &b.rendition, b.session))
    });
    let mut out: Vec<Recording> = Vec::new();
    for s in sessions {
        match out.last_mut() {
            Some(r) if s.start_ms <= r.end_ms => {
                r.end_ms = r.end_ms.max(s.end_ms);
                r.id = r.id.min(s.session);
                r.sessions.push(s);
            }
            _ => out.push(Recording {
                id: s.session,
                start_ms: s.start_ms,
                end_ms: s.end_ms,
                sessions: vec![s],
            }),
        }
    }
    for r in &mut out {
        r.sessions
            .sort_by(|a, b| (&a.rendition, a.session).cmp(&(&b.rendition, b.session)));
    }
    out.reverse();
    out
}

/// Why [`Archive::delete_recording`] refused.
#[derive(Debug, thiserror::Error)]
pub enum DeleteRecordingError {
    /// No recording of this stream has this id.
    #[error("no such recording")]
    NotFound,
    /// Some rendition of it is still being recorded.
    #[error("the recording is still running")]
    Recording,
    /// Deleting failed.
    #[error("deleting the recording: {0}")]
    Io(#[from] io::Error),
}

impl Archive {
    /// The recordings of `stream` (`live/foo`; renditions are included),
    /// newest first.
    pub fn recordings(&self, stream: &StreamPath) -> Vec<Recording> {
        let stream = stream.source();
        let active = self.active_sessions();
        let mut sessions: Vec<SessionSummary> = Vec::new();
        let idx = read(&self.inner.index);
        for (key, t) in idx.iter().filter(|(k, _)| k.stream == stream) {
            let mut mine: Vec<SessionSummary> = Vec::new();
            for s in &t.segments {
                let at = match mine.iter().position(|m| m.session == s.name.session) {
                    Some(i) => i,
                    None => {
                        mine.push(SessionSummary {
                            rendition: key.rendition.clone(),
                            session: s.name.session,
                            start_ms: s.name.pdt_ms,
                            end_ms: s.name.end_ms(),
                            segments: 0,
                            local_bytes: 0,
                            remote_bytes: 0,
                            recording: active.contains(&(key.clone(), s.name.session)),
                            upload: None,
                        });
                        mine.len() - 1
                    }
                };
                let m = &mut mine[at];
                m.start_ms = m.start_ms.min(s.name.pdt_ms);
                m.end_ms = m.end_ms.max(s.name.end_ms());
                m.segments += 1;
                add(m, &s.location, s.size);
            }
            for (&(session, _), init) in &t.inits {
                if let Some(m) = mine.iter_mut().find(|m| m.session == session) {
                    add(m, &init.location, init.size);
                }
            }
            sessions.extend(mine);
        }
        drop(idx);
        if let Some(progress) = read(&self.inner.upload_progress).clone() {
            for s in &mut sessions {
                let key = TrackKey {
                    stream: stream.clone(),
                    rendition: s.rendition.clone(),
                };
                s.upload = progress(&key, s.session);
            }
        }
        group_sessions(sessions)
    }

    /// Deletes recording `id` of `stream` (see [`Archive::recordings`]):
    /// every segment and init segment of its sessions leaves the index and
    /// the disk, and each of its objects in the remote tier is handed to
    /// the object-expired hook (the S3 tier deletes it). A recording still
    /// being recorded is refused. Blocking (file deletions).
    pub fn delete_recording(
        &self,
        stream: &StreamPath,
        id: i64,
    ) -> Result<Recording, DeleteRecordingError> {
        let rec = self
            .recordings(stream)
            .into_iter()
            .find(|r| r.id == id)
            .ok_or(DeleteRecordingError::NotFound)?;
        if rec.recording() {
            return Err(DeleteRecordingError::Recording);
        }
        let stream = stream.source();
        let mut plan = Expiry::default();
        {
            let idx = read(&self.inner.index);
            for s in &rec.sessions {
                let key = TrackKey {
                    stream: stream.clone(),
                    rendition: s.rendition.clone(),
                };
                let Some(t) = idx.get(&key) else { continue };
                let mut objects: HashSet<&std::sync::Arc<str>> = HashSet::new();
                for seg in t.segments.iter().filter(|g| g.name.session == s.session) {
                    if let Location::Remote { object, .. } = &seg.location
                        && objects.insert(object)
                    {
                        plan.objects.push((key.clone(), s.session, object.clone()));
                    }
                    plan.segments.push((key.clone(), seg.clone()));
                }
                for (k, init) in t.inits.range((s.session, 0)..=(s.session, u32::MAX)) {
                    plan.inits.push((key.clone(), *k, init.clone()));
                }
            }
        }
        tracing::info!(stream = %stream, id, segments = plan.segments.len(),
            objects = plan.objects.len(), "archive: recording deleted");
        // Remembered first: replication must not copy it back meanwhile.
        self.remember_deleted(&stream, rec.start_ms, rec.end_ms)?;
        apply(self, &plan, false);
        self.inner
            .stats
            .recordings_deleted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(rec)
    }

    /// Deletes every ended recording of `stream` that overlaps
    /// `[from_ms, to_ms]` (another origin's deletion of the same event,
    /// whose sessions started a moment apart here) and remembers the span;
    /// how many were deleted. A running one is refused and nothing is
    /// deleted. Blocking.
    pub fn delete_span(
        &self,
        stream: &StreamPath,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<usize, DeleteRecordingError> {
        let hit: Vec<Recording> = self
            .recordings(stream)
            .into_iter()
            .filter(|r| r.start_ms < to_ms && r.end_ms > from_ms)
            .collect();
        if hit.iter().any(Recording::recording) {
            return Err(DeleteRecordingError::Recording);
        }
        let (mut lo, mut hi) = (from_ms, to_ms);
        for r in &hit {
            lo = lo.min(r.start_ms);
            hi = hi.max(r.end_ms);
        }
        self.remember_deleted(&stream.source(), lo, hi)?;
        let mut n = 0;
        for r in &hit {
            match self.delete_recording(stream, r.id) {
                Ok(_) | Err(DeleteRecordingError::NotFound) => n += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Spans `[from_ms, to_ms]` of `stream`'s recordings deleted on request
    /// (within the archive depth): replication does not copy them back.
    pub fn deleted_spans(&self, stream: &StreamPath) -> Vec<(i64, i64)> {
        let stream = stream.source();
        self.inner
            .deleted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(s, _, _)| *s == stream)
            .map(|&(_, f, t)| (f, t))
            .collect()
    }

    /// Every remembered deletion: (stream, from, to).
    pub fn deleted(&self) -> Vec<(StreamPath, i64, i64)> {
        self.inner
            .deleted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Adds a deleted span (merging it into one it overlaps) and rewrites
    /// `<root>/.deleted` crash-safely, forgetting spans past their
    /// stream's depth.
    fn remember_deleted(&self, stream: &StreamPath, from_ms: i64, to_ms: i64) -> io::Result<()> {
        let mut spans = self.inner.deleted.lock().unwrap_or_else(|e| e.into_inner());
        let now = super::now_unix_ms();
        let depth = &self.inner.config.depth;
        spans.retain(|(s, _, to)| {
            let hours = i64::from(depth(s)).max(1);
            *to >= now.saturating_sub(hours.saturating_mul(3_600_000))
        });
        match spans
            .iter_mut()
            .find(|(s, f, t)| s == stream && *f <= to_ms && from_ms <= *t)
        {
            Some(span) => {
                span.1 = span.1.min(from_ms);
                span.2 = span.2.max(to_ms);
            }
            None => spans.push((stream.clone(), from_ms, to_ms)),
        }
        let text: String = spans
            .iter()
            .map(|(s, f, t)| crate::replica::render_deleted(s, *f, *t))
            .collect();
        super::write_atomic(&self.inner.config.root, DELETED_FILE, &[text.as_bytes()])
    }
}

/// The file of remembered deletions under the archive root.
const DELETED_FILE: &str = ".deleted";

/// Reads `<root>/.deleted` (missing or unreadable: nothing remembered).
pub(super) fn load_deleted(root: &std::path::Path) -> Vec<(StreamPath, i64, i64)> {
    std::fs::read_to_string(root.join(DELETED_FILE))
        .map(|t| crate::replica::parse_deleted(&t))
        .unwrap_or_default()
}

fn add(m: &mut SessionSummary, location: &Location, size: u64) {
    match location {
        Location::Local => m.local_bytes = m.local_bytes.saturating_add(size),
        Location::Remote { .. } => m.remote_bytes = m.remote_bytes.saturating_add(size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(rendition: &str, session: i64, start_ms: i64, end_ms: i64) -> SessionSummary {
        SessionSummary {
            rendition: rendition.into(),
            session,
            start_ms,
            end_ms,
            segments: 1,
            local_bytes: 10,
            remote_bytes: 0,
            recording: false,
            upload: None,
        }
    }

    #[test]
    fn a_ladder_event_is_one_recording_and_a_republish_another() {
        let got = group_sessions(vec![
            s("720p", 1_500, 1_600, 60_000),
            s("src", 1_000, 1_000, 60_100),
            s("src", 90_000, 90_000, 120_000),
            s("360p", 1_400, 1_500, 59_900),
        ]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, 90_000, "newest first");
        assert_eq!(got[1].id, 1_000);
        assert_eq!(got[1].renditions(), vec!["360p", "720p", "src"]);
        assert_eq!((got[1].start_ms, got[1].end_ms), (1_000, 60_100));
        assert_eq!(got[1].bytes(), 30);
        assert_eq!(got[1].stored(), Stored::Local);
    }

    #[test]
    fn a_chain_of_overlaps_joins_and_the_id_is_the_earliest_session() {
        // A rung restarted inside the event: two sessions of 720p.
        let got = group_sessions(vec![
            s("src", 2_000, 2_000, 50_000),
            s("720p", 2_500, 2_600, 20_000),
            s("720p", 1_900, 20_500, 49_000),
        ]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, 1_900);
        assert_eq!(got[0].sessions.len(), 3);
        assert_eq!(got[0].renditions(), vec!["720p", "src"]);
    }

    #[test]
    fn where_bytes_are() {
        let mut a = s("src", 1, 1, 10);
        let mut b = s("720p", 2, 2, 10);
        a.local_bytes = 0;
        a.remote_bytes = 5;
        let r = &group_sessions(vec![a.clone(), b.clone()])[0];
        assert_eq!(r.stored(), Stored::Both);
        b.local_bytes = 0;
        b.remote_bytes = 7;
        let r = &group_sessions(vec![a, b])[0];
        assert_eq!(r.stored(), Stored::Remote);
        assert_eq!(r.bytes(), 12);
        assert!(group_sessions(Vec::new()).is_empty());
    }
}
